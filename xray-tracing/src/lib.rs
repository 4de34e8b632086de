//! AWS X-Ray subsegments from `tracing` spans, and X-Ray ids on `tracing` log lines.
//!
//! [`XRaySpanLayer`] is a `tracing-subscriber` layer: every span it sees, created while an
//! X-Ray segment or subsegment is current, becomes a subsegment under it, named after the span,
//! from the span's creation to its close. While the span is entered, its subsegment is the
//! current X-Ray context, so what runs inside nests under it: `#[capture]` functions, aws-sdk
//! calls through `xray-aws-sdk`, outgoing HTTP calls through `xray-tower`, and spans within
//! spans. Code already instrumented with `#[tracing::instrument]` then shows in X-Ray as it is.
//!
//! - The span's fields are recorded as metadata (namespace `tracing`), or as annotations for
//!   the fields named with [`XRaySpanLayer::with_annotations`] (annotations are indexed: X-Ray
//!   filter expressions search them, and a trace keeps at most 50).
//! - An `ERROR` event inside a span (what `#[instrument(err)]` emits) records its message as
//!   the cause and marks the subsegment a fault. The exception's `type` is the event's
//!   `error.type` (or `exception.type`) field where it has one, and left out otherwise: an
//!   event carries the error's text, not its type.
//! - Spans created with no X-Ray context, or in a trace that is not sampled, record nothing:
//!   the layer looks at the current context once and returns.
//!
//! Which spans become subsegments is chosen with tracing-subscriber's per-layer filters: a
//! library's debug spans rarely belong in a trace.
//!
//! # `RUST_LOG`, `EnvFilter` and lost subsegments
//!
//! **A filter added as a layer of its own filters every layer.** With
//! `registry().with(EnvFilter::from_default_env()).with(XRaySpanLayer::new())` and
//! `RUST_LOG=warn`, every `info` span is disabled before this layer sees it, and its
//! subsegment is never made. tracing gives a layer no way around a global filter. Put the log
//! level on the log output's layer instead, and this layer sees the spans it is given:
//!
//! ```
//! use tracing_subscriber::{EnvFilter, prelude::*};
//!
//! let subscriber = tracing_subscriber::registry()
//!     .with(xray_tracing_subscriber::XRaySpanLayer::new())
//!     .with(tracing_subscriber::fmt::layer().with_filter(EnvFilter::new("warn")));
//! # drop(subscriber);
//! ```
//!
//! # With tower-http's `TraceLayer`
//!
//! tower-http's `TraceLayer` opens a `request` span per request. Inside `XRayLayer` (with
//! `XRayLayer` outermost), that span becomes a `request` subsegment of the
//! request's segment, timing the same work again; outside it, the span is opened before the
//! segment exists and records nothing. Either is harmless; to keep it out of the trace, give
//! this layer a per-layer filter such as
//! `Targets::new().with_target("tower_http", LevelFilter::OFF).with_default(LevelFilter::TRACE)`.
//!
//! [`XRayEventFormat`] puts the trace id and the entity id on every log line written inside an
//! X-Ray context, in JSON or text: see [Log correlation](#log-correlation).
//!
//! # Example
//!
//! ```
//! use tracing_subscriber::filter::{LevelFilter, Targets};
//! use tracing_subscriber::prelude::*;
//! use xray_sdk::{InMemoryEmitter, Recorder};
//! use xray_tracing_subscriber::XRaySpanLayer;
//!
//! let emitter = InMemoryEmitter::new();
//! let recorder = Recorder::builder().with_emitter(emitter.clone()).build()?;
//! let subscriber = tracing_subscriber::registry().with(
//!     XRaySpanLayer::new()
//!         .with_annotations(["order_id"])
//!         .with_filter(Targets::new().with_default(LevelFilter::INFO)),
//! );
//!
//! tracing::subscriber::with_default(subscriber, || {
//!     let segment = recorder.begin_segment("checkout");
//!     let _current = segment.enter();
//!     let span = tracing::info_span!("reserve", order_id = 42, items = 3);
//!     span.in_scope(|| {
//!         // Nests under the `reserve` subsegment.
//!         recorder.begin_subsegment("inventory").end();
//!     });
//!     drop(span);
//! });
//!
//! let doc = &emitter.documents()[0];
//! let reserve = &doc["subsegments"][0];
//! assert_eq!(reserve["name"], "reserve");
//! assert_eq!(reserve["annotations"]["order_id"], 42);
//! assert_eq!(reserve["metadata"]["tracing"]["items"], 3);
//! assert_eq!(reserve["subsegments"][0]["name"], "inventory");
//! # Ok::<(), xray_sdk::ConfigError>(())
//! ```
//!
//! # Log correlation
//!
//! [`XRayEventFormat`] wraps the event formatter of `tracing-subscriber`'s fmt layer: every
//! line written while an X-Ray segment or subsegment is current carries the trace id and the id
//! of that entity (the segment, or the subsegment of the span, `#[capture]` function or call
//! it was logged in), so a request's log lines are found from its trace, and its trace from a
//! log line. A layer cannot add fields to another layer's events: the ids are added where the
//! line is written.
//!
//! | formatter | what a line inside a context gets |
//! |---|---|
//! | [`XRayEventFormat::json`] around `fmt::format().json()` | two more members of its JSON object: `"xray_trace_id":"1-5759e988-bd862e3fe1be46a994272793","xray_entity_id":"53995c3f42cd8ad8"` |
//! | [`XRayEventFormat::text`] around `fmt::format()`, `.compact()`, `.pretty()` | two more fields at its end: `xray_trace_id=1-… xray_entity_id=…` |
//! | either, [`with_combined_key`](XRayEventFormat::with_combined_key)`(LogFields::COMBINED_KEY)` | one field, the AWS X-Ray SDK for Java's: `"AWS-XRAY-TRACE-ID":"1-…@53995c3f42cd8ad8"` |
//!
//! Lines outside any X-Ray context are written exactly as the inner formatter writes them.
//! With a formatter of your own, or another logging stack, [`log_fields`] returns the ids of
//! the current context.
//!
//! The keys: `xray_trace_id` is the key AWS Lambda Powertools loggers (Python, Java,
//! TypeScript) give the trace id, so one CloudWatch Logs Insights query, `filter
//! xray_trace_id = "1-…"`, finds the lines of Rust services and of Powertools functions alike;
//! the entity id is beside it under `xray_entity_id`. The Java SDK instead puts
//! `<trace id>@<entity id>` in the logging MDC under `AWS-XRAY-TRACE-ID`
//! (`SLF4JSegmentListener`), which [`with_combined_key`](XRayEventFormat::with_combined_key)
//! reproduces for fleets searched that way; [`with_keys`](XRayEventFormat::with_keys) names
//! the two fields otherwise.
//!
//! ```
//! use std::io;
//! use std::sync::{Arc, Mutex};
//! use tracing_subscriber::fmt;
//! use tracing_subscriber::prelude::*;
//! use xray_sdk::{InMemoryEmitter, Recorder};
//! use xray_tracing_subscriber::XRayEventFormat;
//!
//! // An in-memory log, for the example; a service writes to stdout or a file.
//! #[derive(Clone, Default)]
//! struct Log(Arc<Mutex<Vec<u8>>>);
//! impl io::Write for Log {
//!     fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
//!         self.0.lock().unwrap().extend_from_slice(bytes);
//!         Ok(bytes.len())
//!     }
//!     fn flush(&mut self) -> io::Result<()> {
//!         Ok(())
//!     }
//! }
//! let log = Log::default();
//! let writer = log.clone();
//!
//! let recorder = Recorder::builder().with_emitter(InMemoryEmitter::new()).build()?;
//! let subscriber = tracing_subscriber::registry().with(
//!     fmt::layer()
//!         .json()
//!         .with_writer(move || writer.clone())
//!         .map_event_format(XRayEventFormat::json),
//! );
//!
//! let segment = recorder.begin_segment("checkout");
//! tracing::subscriber::with_default(subscriber, || {
//!     let _current = segment.enter();
//!     tracing::info!(order_id = 42, "reserved");
//! });
//!
//! // {"timestamp":"…","level":"INFO","fields":{"message":"reserved","order_id":42},
//! //  "target":"…","xray_trace_id":"1-…","xray_entity_id":"…"}
//! let line: serde_json::Value = serde_json::from_slice(&log.0.lock().unwrap())?;
//! assert_eq!(line["fields"]["order_id"], 42);
//! assert_eq!(line["xray_trace_id"], segment.trace_id().to_string());
//! assert_eq!(line["xray_entity_id"], segment.id().to_string());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The JSON formatter needs `tracing-subscriber`'s `json` feature, in the application's own
//! dependency on it: `tracing-subscriber = { version = "0.3", features = ["json"] }`. Configure
//! the fmt layer first (`.json()`, `.flatten_event(true)`, `.with_writer(…)`): its format
//! options apply to `Format` only, so [`map_event_format`] comes last.
//! `tracing_subscriber::fmt()` has the same `map_event_format`.
//!
//! [`map_event_format`]: tracing_subscriber::fmt::Layer::map_event_format
//!
//! # Unsampled requests
//!
//! Every entity here has real ids, sampled or not: an unsampled segment has its request's
//! trace id (the incoming header's `Root`, else a new one) and a new random segment id, and
//! every subsegment begun under it a new random id of its own. The same holds with the SDK
//! disabled (`AWS_XRAY_SDK_ENABLED=false`). So the lines of an unsampled request carry its
//! trace id as a sampled request's do, and as that id goes downstream in `X-Amzn-Trace-Id`
//! (with `Sampled=0`), searching the logs for it finds the request in every service it
//! reached, although X-Ray holds no trace for it. Its entity ids name nothing in X-Ray, since
//! nothing was sent, but still tell one subsegment's lines from another's.
//! [`LogFields::is_sampled`] tells the two cases apart. In AWS Lambda, the invocation's entity
//! id is that of the function segment Lambda records, from the invocation's trace header.
//!
//! The official SDKs differ here, and `AWS_XRAY_NOOP_ID` is how two of them choose:
//!
//! | SDK | ids of an unsampled request |
//! |---|---|
//! | Python, Go | no-op ids, `1-00000000-000000000000000000000000` and `0000000000000000`, unless `AWS_XRAY_NOOP_ID=false`, which gives real ones |
//! | Java | no `AWS_XRAY_NOOP_ID`: the servlet filter gives a no-op segment the request's real trace id (incoming, else new) and an empty entity id; `beginSegmentWithSampling` gives the all-zero trace id unless the recorder is built `withForcedTraceIdGeneration()`; `SLF4JSegmentListener` leaves unsampled entities out of the MDC |
//! | .NET | no `AWS_XRAY_NOOP_ID`: a real trace id and entity id for every segment and subsegment, sampled or not |
//! | this crate | real ids always, as Python and Go with `AWS_XRAY_NOOP_ID=false`; the variable is not read |
//!
//! A context whose trace id is the all-zero no-op id (a request from an upstream service that
//! used no-op ids, or [`Subsegment::none`](xray_sdk::Subsegment::none) entered by hand) adds
//! nothing to a line: that id would match every such request.
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is 1.94.
#![deny(missing_docs)]

mod correlation;
mod fields;
mod layer;

pub use correlation::{LogFields, XRayEventFormat, log_fields};
pub use layer::XRaySpanLayer;
