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
//! - [`Sampler`] decides which new traces are recorded: by default a [`ParentBasedSampler`]
//!   (the caller's `Sampled=1|0` first) around a [`CentralizedSampler`] (X-Ray's rules,
//!   through the daemon) that falls back to a [`LocalSampler`] and its [`SamplingRules`].
//!   Unsampled requests still carry ids, so `Sampled=0` propagates, but record nothing and
//!   allocate nothing.
//! - [`Transport`]: where finished segments go. The recorder hands it a [`Finished`] view of
//!   each completed segment tree or independent subsegment, never bytes, and reads its
//!   [`TransportStats`] into [`Recorder::stats`]. [`SegmentTransport`] (the default) sends
//!   segment documents to the daemon, one datagram each, within [`MAX_DATAGRAM_LEN`]: a
//!   segment too large is split into independent subsegments, and a single entity too large
//!   is trimmed ([`Document::trim_to_fit`]), never silently dropped. Write your own against the
//!   trait (its docs have an example) and pass it to [`RecorderBuilder::with_transport`].
//! - [`Emitter`], the datagram sink under the UDP transports: [`UdpEmitter`] (the default),
//!   [`BackgroundEmitter`] (a bounded queue and a sender thread), and [`InMemoryEmitter`] for
//!   tests.
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
mod clock;
mod config;
mod context;
mod diag;
mod document;
mod emitter;
mod header;
mod http1;
mod id;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod outgoing;
pub mod plugins;
mod recorder;
mod sampling;
mod transport;

#[cfg(feature = "macros")]
#[doc(inline)]
pub use xray_macros::capture;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use config::{
    ConfigError, ContextMissing, DaemonAddress, ENV_CONTEXT_MISSING, ENV_DAEMON_ADDRESS,
    ENV_LAMBDA_TASK_ROOT, ENV_LAMBDA_TRACE_ID, ENV_SAMPLER, ENV_SAMPLING_RULES, ENV_SDK_DISABLED,
    ENV_SDK_ENABLED, ENV_TRACING_NAME, ENV_TRANSPORT, SamplerKind, TransportKind,
};
pub use context::{ContextGuard, FutureExt, WithContext, current, current_segment};
pub use document::{
    AnnotationError, AnnotationValue, Annotations, Aws, Cause, CauseDetails, CloudwatchLogs,
    DEFAULT_METADATA_NAMESPACE, Document, Ec2, Ecs, Eks, ElasticBeanstalk, Exception, Http,
    HttpRequest, HttpResponse, MAX_FIELD_CHARS, Metadata, MetadataError, Namespace, Service,
    SpanLink, Sql, StackFrame, StatusFlags, Trimmed, XraySdk, capped_field, seconds_from_micros,
};
pub use emitter::{
    BackgroundEmitter, DAEMON_HEADER, Datagram, Delivery, EmitError, Emitter, InMemoryEmitter,
    MAX_DATAGRAM_LEN, UdpEmitter,
};
pub use header::{
    DownstreamHeader, ExtraFieldError, ExtraFields, ParseTraceHeaderError, ResponseHeader, Sampled,
    TraceHeader, is_sqs_message_sampled,
};
pub use id::{ParseIdError, SegmentId, TraceId};
pub use recorder::{
    ContextMissingError, Entity, Recorder, RecorderBuilder, RecorderStats, RefusedStats, Segment,
    SetGlobalRecorderError, Subsegment,
};
pub use sampling::{
    CentralizedSampler, CentralizedSamplerBuilder, DecidingRule, FixedSampler, LocalSampler,
    ParentBasedSampler, RuleStatistics, RulesError, RulesErrorKind, Sampler, SamplingDecision,
    SamplingExplanation, SamplingProxyError, SamplingProxyErrorKind, SamplingReason,
    SamplingRequest, SamplingRule, SamplingRules, SamplingRulesBuilder, SharedSampler,
    wildcard_match, wildcard_match_case_sensitive,
};
pub use transport::{
    Children, Finished, FinishedEntity, FinishedKind, FlushOutcome, SegmentTransport, Transport,
    TransportCounters, TransportErrorKind, TransportStats,
};
#[cfg(feature = "otlp")]
pub use transport::{MAX_OTLP_REQUEST_LEN, OTLP_SAMPLED_PREFIX, OtlpUdpTransport};
