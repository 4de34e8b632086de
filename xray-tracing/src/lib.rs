//! AWS X-Ray subsegments from `tracing` spans.
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
//!   the cause and marks the subsegment a fault.
//! - Spans created with no X-Ray context, or in a trace that is not sampled, record nothing:
//!   the layer looks at the current context once and returns.
//!
//! Which spans become subsegments is chosen with tracing-subscriber's per-layer filters: a
//! library's debug spans rarely belong in a trace.
//!
//! # Example
//!
//! ```
//! use tracing_subscriber::filter::{LevelFilter, Targets};
//! use tracing_subscriber::prelude::*;
//! use xray_core::{InMemoryEmitter, Recorder};
//! use xray_tracing::XRaySpanLayer;
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
//! # Ok::<(), xray_core::ConfigError>(())
//! ```
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is 1.94.
#![deny(missing_docs)]

mod fields;
mod layer;

pub use layer::XRaySpanLayer;
