//! What a recording call refuses, and how that is told: never as an error returned into the
//! application (a request must not fail because its tracing did), but counted in
//! [`RefusedStats`] and logged as a warning, at most once a minute for each kind, with the
//! typed reason.
//!
//! Bad input (an annotation key X-Ray cannot index, a reserved metadata namespace) is refused
//! the same way whether the entity is recorded or not, so that it shows in development, where
//! most requests are not sampled; only recorded entities have a recorder to count it.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Recorder;
use crate::clock::{Clock, SystemClock};
use crate::diag::LogLimiter;
use crate::document::{AnnotationError, MetadataError};

/// Counters of what recording calls refused, since the recorder was built: see
/// [`Recorder::refused`].
///
/// Each refusal is also logged as a warning (target `xray_sdk::recorder`, at most once a
/// minute for each kind) with its reason. Refusals on entities that are not recorded (not
/// sampled) are logged the same way, but not counted: they have no recorder.
///
/// # Examples
///
/// ```
/// use xray_sdk::{InMemoryEmitter, Recorder, SamplerKind};
///
/// let recorder = Recorder::builder()
///     .ignore_environment()
///     .with_sampler_kind(SamplerKind::Always)
///     .with_emitter(InMemoryEmitter::new())
///     .build()?;
/// let segment = recorder.begin_segment("orders");
/// segment.put_annotation("not a key", 1); // refused: the key has spaces
/// segment.put_metadata_in("AWS.mine", "k", &1); // refused: the namespace is reserved
/// assert_eq!(recorder.refused().annotations, 1);
/// assert_eq!(recorder.refused().metadata, 1);
/// # Ok::<(), xray_sdk::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefusedStats {
    /// Annotations not recorded: a key that is not 1 to 500 ASCII letters, digits or
    /// underscores, or a float that is NaN or infinite (see
    /// [`AnnotationError`]).
    pub annotations: u64,
    /// Metadata not recorded: a namespace starting with `AWS.`, or a value whose `Serialize`
    /// failed (see [`MetadataError`]).
    pub metadata: u64,
    /// Calls made from inside an [`Entity::update`](super::Entity::update) closure that needed
    /// the lock the closure holds and an answer at once: a nested `update` (which returned
    /// `None`), or a subsegment begun (which records nothing). The other calls made there are
    /// done once the closure returns, and are not counted.
    pub nested: u64,
}

/// The counters behind [`RefusedStats`], one set per recorder.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    annotations: AtomicU64,
    metadata: AtomicU64,
    nested: AtomicU64,
}

// One line a minute for each kind, for the whole process: an entity that is not recorded has
// no recorder, and so no limiter of its own.
static ANNOTATION_LOG: LogLimiter = LogLimiter::new(60);
static METADATA_LOG: LogLimiter = LogLimiter::new(60);
static NESTED_LOG: LogLimiter = LogLimiter::new(60);

/// The longest part of a refused key or namespace that is logged, in characters: keys can come
/// from request data, of any length.
const MAX_LOGGED_CHARS: usize = 64;

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn now_micros(recorder: Option<&Recorder>) -> u64 {
    match recorder {
        Some(r) => r.inner.clock.now_micros(),
        None => SystemClock.now_micros(),
    }
}

fn shown(text: &str) -> &str {
    match text.char_indices().nth(MAX_LOGGED_CHARS) {
        Some((cut, _)) => text.get(..cut).unwrap_or(text),
        None => text,
    }
}

/// An annotation refused; `recorder` is the entity's, if it is recorded.
#[cold]
#[inline(never)]
pub(crate) fn annotation(recorder: Option<&Recorder>, key: &str, error: AnnotationError) {
    if let Some(r) = recorder {
        bump(&r.inner.refused.annotations);
    }
    if ANNOTATION_LOG.allow(now_micros(recorder)) {
        tracing::warn!(
            target: "xray_sdk::recorder",
            key = shown(key),
            %error,
            "X-Ray annotation refused, not recorded (counted in `Recorder::refused`; one line a \
             minute)"
        );
    }
}

/// Metadata refused; `recorder` is the entity's, if it is recorded.
#[cold]
#[inline(never)]
pub(crate) fn metadata(
    recorder: Option<&Recorder>,
    namespace: &str,
    key: &str,
    error: &MetadataError,
) {
    if let Some(r) = recorder {
        bump(&r.inner.refused.metadata);
    }
    if METADATA_LOG.allow(now_micros(recorder)) {
        let source = std::error::Error::source(error).map(ToString::to_string);
        tracing::warn!(
            target: "xray_sdk::recorder",
            namespace = shown(namespace),
            key = shown(key),
            %error,
            source = source.as_deref().unwrap_or(""),
            "X-Ray metadata refused, not recorded (counted in `Recorder::refused`; one line a \
             minute)"
        );
    }
}

/// A call from inside an `update` closure that needed the closure's lock at once.
#[cold]
#[inline(never)]
pub(crate) fn nested(recorder: &Recorder, operation: &'static str) {
    bump(&recorder.inner.refused.nested);
    if NESTED_LOG.allow(now_micros(Some(recorder))) {
        tracing::warn!(
            target: "xray_sdk::recorder",
            operation,
            "X-Ray call made inside an `Entity::update` closure on the segment it updates, which \
             needs that segment's lock now: refused (a nested `update` returns `None`, a \
             subsegment records nothing). Make the call after the closure returns (counted in \
             `Recorder::refused`)"
        );
    }
}

impl Recorder {
    /// Counters of what recording calls refused: bad annotations and metadata, and calls made
    /// inside an [`Entity::update`](super::Entity::update) closure that could not be done.
    pub fn refused(&self) -> RefusedStats {
        let c = &self.inner.refused;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RefusedStats {
            annotations: l(&c.annotations),
            metadata: l(&c.metadata),
            nested: l(&c.nested),
        }
    }
}
