//! AWS X-Ray instrumentation for Rust.
//!
//! `xray-core` holds the vocabulary every other `xray-*` crate speaks:
//!
//! - [`TraceId`] and [`SegmentId`], the identifiers of traces and of the segments in them.
//! - [`TraceHeader`], the `X-Amzn-Trace-Id` header: parsed from requests, written on outgoing
//!   calls ([`TraceHeader::downstream`]) and responses ([`TraceHeader::response`]).
//! - [`Sampler`], [`LocalSampler`] and [`SamplingRules`], which decide what gets traced.
//!
//! # Diagnostics
//!
//! The crate never panics and never returns an error into application code because tracing
//! failed. What goes wrong is reported through the [`tracing`](https://docs.rs/tracing) facade,
//! under targets that start with `xray_core`.
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is 1.94.
#![deny(missing_docs)]

#[doc(hidden)]
pub mod __private;
mod clock;
mod config;
mod context;
mod diag;
mod document;
mod emitter;
mod header;
mod id;
mod recorder;
mod sampling;

#[cfg(feature = "macros")]
#[doc(inline)]
pub use xray_macros::capture;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use config::{
    ConfigError, ContextMissing, DaemonAddress, ENV_CONTEXT_MISSING, ENV_DAEMON_ADDRESS,
    ENV_LAMBDA_TASK_ROOT, ENV_LAMBDA_TRACE_ID, ENV_SDK_DISABLED, ENV_SDK_ENABLED, ENV_TRACING_NAME,
};
pub use context::{ContextGuard, FutureExt, WithContext, current};
pub use document::{
    AnnotationError, AnnotationValue, Annotations, Aws, Cause, CauseDetails, CloudwatchLogs,
    DEFAULT_METADATA_NAMESPACE, Document, Ec2, Ecs, Eks, ElasticBeanstalk, Exception, Http,
    HttpRequest, HttpResponse, Metadata, MetadataError, Namespace, Service, Sql, StackFrame,
    StatusFlags, Trimmed, XraySdk, seconds_from_micros,
};
pub use emitter::{
    BackgroundEmitter, DAEMON_HEADER, Datagram, EmitError, Emitter, InMemoryEmitter,
    MAX_DATAGRAM_LEN, UdpEmitter,
};
pub use header::{
    DownstreamHeader, ExtraFieldError, ExtraFields, ParseTraceHeaderError, ResponseHeader, Sampled,
    TraceHeader, is_sqs_message_sampled,
};
pub use id::{ParseIdError, SegmentId, TraceId};
pub use recorder::{
    ContextMissingError, Entity, Recorder, RecorderBuilder, RecorderStats, Segment,
    SetGlobalRecorderError, Subsegment,
};
pub use sampling::{
    DecidingRule, LocalSampler, RulesError, RulesErrorKind, Sampler, SamplingDecision,
    SamplingExplanation, SamplingReason, SamplingRequest, SamplingRule, SamplingRules,
    SamplingRulesBuilder, SharedSampler, wildcard_match, wildcard_match_case_sensitive,
};
