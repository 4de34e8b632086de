//! AWS X-Ray instrumentation for Rust.
//!
//! `xray-sdk` records what a service does as X-Ray *segments* (one per request or unit of
//! work) and *subsegments* (the calls and steps inside it), and sends them to the X-Ray daemon,
//! which forwards them to AWS X-Ray. The other `xray-*` crates build on it: `xray-tower`
//! (axum and hyper), `xray-aws-sdk` (aws-sdk-rust calls), `xray-macros` (`#[capture]`) and
//! `xray-local` (a local daemon and trace viewer).
//!
//! # Quick start
//!
//! ```
//! use xray_sdk::{InMemoryEmitter, Recorder};
//!
//! // In production: `Recorder::global()`, configured from the environment, sending to the
//! // daemon at 127.0.0.1:2000. Here the documents are kept in memory.
//! let emitter = InMemoryEmitter::new();
//! let recorder = Recorder::builder().with_emitter(emitter.clone()).build()?;
//!
//! let segment = recorder.begin_segment("checkout");
//! {
//!     let _current = segment.enter();
//!     let charge = recorder.begin_subsegment("charge-card");
//!     charge.put_annotation("amount_cents", 4200); // returns nothing: never fails the request
//! } // `charge` ends here
//! segment.end(); // the segment is sent once it and its subsegments have ended
//!
//! assert_eq!(emitter.documents()[0]["subsegments"][0]["name"], "charge-card");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Concepts
//!
//! - [`Recorder`]: configuration, sampling and emission. [`Recorder::global`] is the
//!   process-wide one the integrations use.
//! - [`Segment`] and [`Subsegment`] own an entity and end it when dropped (a drop without
//!   `end()` ends it there, as `end()` would); [`Entity`] is a cheap handle to either, for
//!   annotations ([`Entity::put_annotation`]), metadata, errors ([`Entity::add_error`]) and any
//!   other field ([`Entity::update`] with [`Document`]).
//! - The current context: [`Entity::enter`] for sync code, [`FutureExt::with_context`],
//!   [`FutureExt::in_current_context`] and [`Subsegment::instrument`] for futures, which
//!   re-enter the entity on every poll, whichever thread polls. [`current`] reads it.
//! - [`TraceHeader`], the `X-Amzn-Trace-Id` header: parsed from requests, written on outgoing
//!   calls ([`Entity::trace_header`], [`TraceHeader::downstream`]) and responses
//!   ([`Segment::response_header`]).
//! - [`sampling`] decides which new traces are recorded: by default a
//!   [`ParentBasedSampler`](sampling::ParentBasedSampler) (the caller's `Sampled=1|0` first)
//!   around a [`CentralizedSampler`](sampling::CentralizedSampler) (X-Ray's rules, through the
//!   daemon) that falls back to a [`LocalSampler`](sampling::LocalSampler) and its
//!   [`SamplingRules`](sampling::SamplingRules). Unsampled requests still carry ids, so
//!   `Sampled=0` propagates, but record nothing and allocate nothing.
//! - [`transport`]: where finished segments go. The recorder hands a
//!   [`Transport`](transport::Transport) a [`Finished`](transport::Finished) view of each
//!   completed segment tree or independent subsegment, never bytes, and reads its
//!   [`TransportStats`](transport::TransportStats) into [`Recorder::stats`].
//!   [`SegmentTransport`](transport::SegmentTransport) (the default) sends segment documents to
//!   the daemon, one datagram each, within [`MAX_DATAGRAM_LEN`](transport::MAX_DATAGRAM_LEN): a
//!   segment too large is split into independent subsegments, and a single entity too large is
//!   trimmed ([`Document::trim_to_fit`]), never silently dropped. Write your own against the
//!   trait (its docs have an example) and pass it to [`RecorderBuilder::with_transport`]. Under
//!   the UDP transports, an [`Emitter`](transport::Emitter) sinks the datagrams:
//!   [`UdpEmitter`](transport::UdpEmitter) (the default),
//!   [`BackgroundEmitter`](transport::BackgroundEmitter) (a bounded queue and a sender thread),
//!   and [`InMemoryEmitter`] for tests.
//!
//! # Where the names are
//!
//! The root holds the everyday names: the recorder and its entities, the context, the header,
//! the ids, the document and the values put in it, and the builder's choices. The rest of the
//! vocabulary is grouped by subject, as in `opentelemetry-sdk` and `tower`:
//!
//! | module | what is in it |
//! |---|---|
//! | [`document`] | the segment document and its blocks (`http`, `aws`, `sql`, `cause`, ...) |
//! | [`header`] | the `X-Amzn-Trace-Id` header, its extra fields, the downstream and response forms |
//! | [`sampling`] | samplers, local rules, centralized sampling and its statistics |
//! | [`transport`] | the export seam, its transports and statistics, the datagram emitters |
//! | [`recorder`] | the recorder's statistics and errors |
//! | [`config`] | the environment variables and the builder's choices |
//! | [`context`] | the current entity: guards and future wrappers |
//! | [`clock`] | the clock the recorder stamps entities with |
//! | [`id`] | trace and segment ids |
//! | [`outgoing`], [`plugins`], `otlp` | outgoing messages' headers, platform plugins, the span mapping |
//!
//! # Environment variables
//!
//! Read by [`RecorderBuilder::build`] (and so by [`Recorder::global`]); they override the
//! builder, as in every official X-Ray SDK.
//!
//! | variable | effect |
//! |---|---|
//! | `AWS_XRAY_DAEMON_ADDRESS` | the daemon: `host:port`, or `tcp:host:port udp:host:port` |
//! | `AWS_XRAY_TRACING_NAME` | the name of every segment |
//! | `AWS_XRAY_CONTEXT_MISSING` | `RUNTIME_ERROR`, `LOG_ERROR` (default) or `IGNORE_ERROR` |
//! | `AWS_XRAY_SDK_ENABLED` / `AWS_XRAY_SDK_DISABLED` | `false` / `true` turns every call into a no-op |
//! | `LAMBDA_TASK_ROOT` | in AWS Lambda: see [`Recorder::begin_lambda_invocation`] |
//! | `XRAY_TRANSPORT` | `udp` (segment documents, the default) or `otlp-udp` (OpenTelemetry spans as `T1S` datagrams, `otlp` feature); see [`TransportKind`] |
//! | `XRAY_SAMPLER` | `centralized` (the default: the rules managed in X-Ray, through the daemon, with the local rules as fallback; local in Lambda), `local`, `always` or `never`; see [`SamplerKind`] |
//! | `XRAY_SAMPLING_RULES` | a local sampling rules file (the official SDKs' JSON format): the `local` sampler's rules and the `centralized` one's fallback |
//!
//! A bad value fails [`RecorderBuilder::build`] with an error naming the variable and the
//! value; [`Recorder::global`] logs it instead and keeps that one setting's default.
//! Every build logs one `INFO` line (target `xray_sdk::recorder`) with the service name,
//! the daemon, the sampler and the transport in use.
//!
//! # AWS Lambda
//!
//! Lambda emits the function's segment itself. Call [`Recorder::begin_lambda_invocation`] with
//! the invocation's trace header (`lambda_runtime::Context::xray_trace_id`) and run the handler
//! inside it: its subsegments are sent as soon as they end. Each invocation uses its own
//! header, so concurrent invocations in one process never see each other's trace; the
//! `_X_AMZN_TRACE_ID` variable is only read as a fallback, and never written.
//!
//! # Diagnostics
//!
//! The crate never panics and never returns an error into application code because tracing
//! failed: a daemon that is down, a full buffer or an oversize document are counted
//! ([`Recorder::stats`]) and logged at most once a minute. So is bad input: the recording
//! calls return nothing, and an annotation key X-Ray cannot index or metadata that will not
//! serialize is refused, counted ([`Recorder::refused`]) and logged with its typed reason.
//! [`Recorder::flush`] says what was sent and what was lost since the previous flush.
//!
//! What the recorder holds is bounded, and so is every wait (see [`Recorder`]'s *Bounds*):
//! subsegments per segment, open segments (past the bound the oldest is sent in progress and
//! evicted), how long an ended segment waits for a subsegment still open (then it is sent with
//! it `in_progress`), and how long [`Recorder::shutdown`] and dropping the recorder wait for a
//! slow or hung network. Each of them is counted. Logs go through the
//! [`tracing`](https://docs.rs/tracing) facade, under targets that start with `xray_sdk`.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `macros` | yes | `#[capture]` (brings in `syn`) |
//! | `otlp` | no | `OtlpUdpTransport`: spans in the AWS distributions' `T1S` UDP framing, with the segment-to-span mapping X-Ray's translator reads (brings in `opentelemetry-proto` and `prost`) |
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is 1.94.
#![deny(missing_docs)]
// On docs.rs, items behind a feature are marked with the feature they need.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[doc(hidden)]
pub mod __private;
pub mod clock;
pub mod config;
pub mod context;
mod diag;
pub mod document;
mod emitter;
pub mod header;
mod http1;
pub mod id;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod outgoing;
pub mod plugins;
pub mod recorder;
pub mod sampling;
pub mod transport;

#[cfg(feature = "macros")]
#[doc(inline)]
pub use xray_macros::capture;

// The everyday names; the rest of the vocabulary is in the modules above.
pub use config::{ConfigError, DaemonAddress, SamplerKind, TransportKind};
pub use context::{FutureExt, current, current_segment};
pub use document::{AnnotationValue, Cause, Document, Namespace};
pub use emitter::InMemoryEmitter;
pub use header::TraceHeader;
pub use id::{SegmentId, TraceId};
pub use recorder::{Entity, Recorder, RecorderBuilder, Segment, Subsegment};
