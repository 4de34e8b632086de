//! The recorder: configuration, segments, and where finished documents go.

mod builder;
mod entity;
mod reentry;
mod refused;
mod registry;
mod send;
mod tree;

use std::fmt;
use std::sync::{Arc, OnceLock};

pub use builder::RecorderBuilder;
pub use entity::{Entity, Segment, Subsegment};
pub use refused::RefusedStats;
pub use send::RecorderStats;
pub(crate) use tree::{Arena, ROOT};

use crate::clock::SharedClock;
use crate::config::{ContextMissing, DaemonAddress};
use crate::diag::LogLimiter;
use crate::header::{Sampled, TraceHeader};
use crate::id::TraceId;
use crate::sampling::{SamplingRequest, SharedSampler};
use crate::transport::{FlushOutcome, Transport, TransportStats};

/// Creates segments and sends them to the daemon when they are complete.
///
/// A `Recorder` is a cheap handle (one `Arc`); clone it freely. Build one with
/// [`Recorder::builder`], or use the process-wide [`Recorder::global`], which the tower layers,
/// the AWS SDK interceptor and `#[capture]` use unless given another.
///
/// # Bounds
///
/// What the recorder holds, and how long the host waits for it, is bounded; whatever a bound
/// costs is counted in [`stats`](Self::stats), never lost in silence:
///
/// - A segment holds at most
///   [`with_max_subsegments_per_segment`](RecorderBuilder::with_max_subsegments_per_segment)
///   (10,000) subsegments open or ended and not yet sent; past that, new ones are not recorded
///   (`too_many_subsegments`), and still propagate the trace header.
/// - A segment that ends while a subsegment is still open waits for it for the
///   [grace period](RecorderBuilder::with_grace_period) (30 s), then is sent with the open
///   subsegments marked `in_progress` (`sent_in_progress`); each is sent again, complete, when
///   it ends. [`Segment`] and [`Subsegment`] end their entity when dropped, so only a handle
///   that is never dropped (kept forever, or leaked with `mem::forget`) stays open.
/// - The recorder holds at most [`with_max_open_segments`](RecorderBuilder::with_max_open_segments)
///   (10,000) segments not yet sent; beginning one more evicts the oldest, which is sent as it
///   stands, in progress, and forgotten (`evicted`). A segment never ended is evicted so.
/// - [`shutdown`](Self::shutdown) never waits past its timeout and says what it could not
///   send; dropping the recorder (its last clone) waits at most
///   [`BackgroundEmitter::DROP_TIMEOUT`](crate::transport::BackgroundEmitter::DROP_TIMEOUT) for a
///   background sender, however slow or hung the network.
///
/// # Examples
///
/// ```
/// use xray_sdk::{InMemoryEmitter, Recorder};
///
/// let emitter = InMemoryEmitter::new();
/// let recorder = Recorder::builder()
///     .with_service_name("orders")
///     .with_emitter(emitter.clone())
///     .build()?;
///
/// let segment = recorder.begin_segment("orders");
/// let sub = segment.begin_subsegment("load-basket");
/// sub.put_annotation("items", 3);
/// sub.end();
/// segment.end();
///
/// let docs = emitter.documents();
/// assert_eq!(docs[0]["name"], "orders");
/// assert_eq!(docs[0]["subsegments"][0]["annotations"]["items"], 3);
/// # Ok::<(), xray_sdk::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Recorder {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) enabled: bool,
    pub(crate) service_name: Box<str>,
    pub(crate) daemon: DaemonAddress,
    pub(crate) forced_name: Option<Box<str>>,
    pub(crate) context_missing: ContextMissing,
    pub(crate) transport: Box<dyn Transport>,
    pub(crate) sampler: SharedSampler,
    pub(crate) clock: SharedClock,
    pub(crate) streaming_threshold: usize,
    /// The most subsegments one segment holds, open or ended and not yet sent.
    pub(crate) max_subsegments: usize,
    /// The most segments the recorder holds before they are sent.
    pub(crate) max_open_segments: usize,
    /// The segments not yet sent: their bound and their grace period.
    pub(crate) open: registry::OpenSegments,
    pub(crate) lambda: bool,
    /// The `service` block of every segment, built once.
    pub(crate) service: Arc<crate::document::Service>,
    pub(crate) origin: Option<Box<str>>,
    /// What environment detection found, once it has run: the `aws` block and origin of
    /// every segment begun after that.
    pub(crate) environment: Arc<std::sync::OnceLock<Detected>>,
    pub(crate) stats: send::Stats,
    /// The transport's counters at the last flush, to tell what that flush covers.
    pub(crate) flushed: parking_lot::Mutex<TransportStats>,
    pub(crate) missing_log: LogLimiter,
    /// What recording calls refused: bad input, and calls made inside `Entity::update`.
    pub(crate) refused: refused::Counters,
}

/// The environment as segments carry it: one shared `aws` block (the SDK's and the
/// environment's) and the origin.
#[derive(Debug)]
pub(crate) struct Detected {
    pub(crate) aws: Arc<crate::document::Aws>,
    pub(crate) origin: Option<Box<str>>,
}

impl Inner {
    /// The origin segments carry and sampling rules see: the builder's, else the detected
    /// environment's.
    pub(crate) fn origin(&self) -> Option<&str> {
        self.origin
            .as_deref()
            .or_else(|| self.environment.get()?.origin.as_deref())
    }
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("enabled", &self.inner.enabled)
            .field("service_name", &self.inner.service_name)
            .field("transport", &self.inner.transport)
            .field("sampler", &self.inner.sampler)
            .field("context_missing", &self.inner.context_missing)
            .field("streaming_threshold", &self.inner.streaming_threshold)
            .field("max_subsegments", &self.inner.max_subsegments)
            .field("max_open_segments", &self.inner.max_open_segments)
            .field("lambda", &self.inner.lambda)
            .finish()
    }
}

/// There was no current segment where one was needed, and the context-missing strategy is
/// [`ContextMissing::RuntimeError`].
///
/// Only the `try_*` calls return it; the others log and carry on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no X-Ray segment is current for {operation:?}")]
pub struct ContextMissingError {
    operation: &'static str,
}

impl ContextMissingError {
    /// What was attempted without a context.
    pub fn operation(&self) -> &'static str {
        self.operation
    }
}

static GLOBAL: OnceLock<Recorder> = OnceLock::new();

/// The global recorder was already set (or already read, which fixes it).
#[derive(Debug, thiserror::Error)]
#[error("the global X-Ray recorder is already set")]
pub struct SetGlobalRecorderError {
    _private: (),
}

impl Recorder {
    /// A builder starting from the defaults and the environment; see [`RecorderBuilder`].
    pub fn builder() -> RecorderBuilder {
        RecorderBuilder::new()
    }

    /// The process-wide recorder.
    ///
    /// Set it once with [`install_global`](Self::install_global). Until then (or if never set)
    /// this is a recorder built from the environment with the defaults: the service name is the
    /// executable's name, the daemon is `127.0.0.1:2000`. A bad value in the environment is
    /// logged, naming the variable, and only that setting keeps its default (see
    /// [`RecorderBuilder::build_lenient`]). After the first read, the global recorder cannot
    /// change. The read is one atomic load.
    pub fn global() -> &'static Recorder {
        GLOBAL.get_or_init(|| Recorder::builder().build_lenient())
    }

    /// Makes this recorder the process-wide one. Fails if one was set or read before.
    pub fn install_global(self) -> Result<(), SetGlobalRecorderError> {
        GLOBAL
            .set(self)
            .map_err(|_| SetGlobalRecorderError { _private: () })
    }

    /// A recorder that records nothing and sends nothing.
    pub fn disabled() -> Recorder {
        RecorderBuilder::new()
            .with_enabled(false)
            .with_service_name("disabled")
            .assemble(None, false)
    }

    /// Whether the SDK is enabled (`AWS_XRAY_SDK_ENABLED` and the builder).
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled
    }

    /// The default segment name.
    pub fn service_name(&self) -> &str {
        self.inner
            .forced_name
            .as_deref()
            .unwrap_or(&self.inner.service_name)
    }

    /// Where the daemon listens: the configured or default address, whatever the emitter.
    ///
    /// HTTP client instrumentation uses it to leave the SDK's own calls to the daemon
    /// (the sampling API proxy) untraced.
    ///
    /// # Examples
    ///
    /// ```
    /// use xray_sdk::{InMemoryEmitter, Recorder};
    ///
    /// let recorder = Recorder::builder()
    ///     .ignore_environment()
    ///     .with_daemon_address("127.0.0.1:3000".parse()?)
    ///     .with_emitter(InMemoryEmitter::new())
    ///     .build()?;
    /// assert_eq!(recorder.daemon_address().udp().port(), 3000);
    /// # Ok::<(), xray_sdk::ConfigError>(())
    /// ```
    pub fn daemon_address(&self) -> DaemonAddress {
        self.inner.daemon
    }

    /// The sampler deciding new traces; [`Sampler::explain`](crate::sampling::Sampler::explain)
    /// tells
    /// why a request would be sampled or not.
    pub fn sampler(&self) -> &SharedSampler {
        &self.inner.sampler
    }

    /// Counters of what was recorded, and of what the transport sent, split, trimmed and lost.
    pub fn stats(&self) -> RecorderStats {
        self.stats_snapshot()
    }

    /// Waits until the transport has sent everything exported so far, or `timeout` passes:
    /// for short-lived processes, before they exit. It never waits past `timeout`.
    ///
    /// The outcome covers what was exported since the previous flush: what was sent, what was
    /// lost (dropped or failed), and what is still pending. Only
    /// [`is_complete`](FlushOutcome::is_complete) means nothing was lost.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use xray_sdk::{InMemoryEmitter, Recorder};
    /// use xray_sdk::sampling::{LocalSampler, SamplingRules};
    ///
    /// let all = SamplingRules::builder().with_default(0, 1.0).build()?;
    /// let recorder = Recorder::builder()
    ///     .ignore_environment()
    ///     .with_sampler(Arc::new(LocalSampler::new(all)))
    ///     .with_emitter(InMemoryEmitter::with_capacity(1))
    ///     .build()?;
    /// recorder.begin_segment("kept").end();
    /// recorder.begin_segment("no room").end();
    /// let outcome = recorder.flush(Duration::from_secs(1));
    /// assert_eq!((outcome.sent, outcome.lost), (1, 1));
    /// assert!(!outcome.is_complete());
    /// assert!(recorder.flush(Duration::from_secs(1)).is_complete()); // nothing new
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Segments whose grace period has passed (see [Bounds](#bounds)) are sent first.
    pub fn flush(&self, timeout: std::time::Duration) -> FlushOutcome {
        let mut due = registry::Due::default();
        self.inner
            .open
            .expired(self.inner.clock.now_micros(), &mut due);
        self.send_due(due);
        self.settle(timeout, |t, deadline| t.flush(deadline))
    }

    /// For the end of the process: sends every segment not yet sent as it stands, then
    /// flushes within `timeout` and shuts the transport down. It never waits past `timeout`,
    /// however slow or hung the network, and what it could not send is in the outcome: `lost`
    /// (given up at the deadline, counted as failed with [`TransportErrorKind::Closed`]) and
    /// `pending` (still in the hands of a send that has not returned).
    ///
    /// Segments still open, and ended segments still waiting for a subsegment, are sent with
    /// their open entities marked `in_progress`, and forgotten: they are counted in
    /// [`RecorderStats::evicted`], and what they record afterwards is dropped. After a
    /// shutdown, a background sender ([`BackgroundEmitter`](crate::transport::BackgroundEmitter))
    /// and
    /// `xray-otlp-http` refuse what comes, counted as failed.
    ///
    /// [`TransportErrorKind::Closed`]: crate::transport::TransportErrorKind::Closed
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use xray_sdk::{InMemoryEmitter, Recorder, SamplerKind};
    ///
    /// let emitter = InMemoryEmitter::new();
    /// let recorder = Recorder::builder()
    ///     .ignore_environment()
    ///     .with_sampler_kind(SamplerKind::Always)
    ///     .with_emitter(emitter.clone())
    ///     .build()?;
    /// let running = recorder.begin_segment("still running");
    /// let outcome = recorder.shutdown(Duration::from_secs(1));
    /// assert!(outcome.is_complete());
    /// assert_eq!(recorder.stats().evicted, 1);
    /// assert_eq!(emitter.documents()[0]["in_progress"], true);
    /// drop(running); // ends nothing: the segment was given up
    /// assert_eq!(emitter.len(), 1);
    /// # Ok::<(), xray_sdk::ConfigError>(())
    /// ```
    pub fn shutdown(&self, timeout: std::time::Duration) -> FlushOutcome {
        let mut due = registry::Due::default();
        self.inner.open.drain(&mut due);
        self.send_due(due);
        self.settle(timeout, |t, deadline| t.shutdown(deadline))
    }

    fn settle(
        &self,
        timeout: std::time::Duration,
        f: impl FnOnce(&dyn Transport, std::time::Instant) -> bool,
    ) -> FlushOutcome {
        let deadline = std::time::Instant::now() + timeout;
        // One flush at a time, so that each outcome covers its own span of exports.
        let mut last = self.inner.flushed.lock();
        f(&*self.inner.transport, deadline);
        let now = self.inner.transport.stats();
        let outcome = FlushOutcome {
            sent: now.sent.saturating_sub(last.sent),
            lost: now.lost().saturating_sub(last.lost()),
            pending: now.pending(),
        };
        *last = now;
        outcome
    }

    /// Begins a new trace with a segment named `name`; the sampler decides with only the
    /// service name known.
    pub fn begin_segment(&self, name: &str) -> Segment {
        self.begin_segment_with(name, None, &SamplingRequest::new())
    }

    /// Begins a segment for an incoming request.
    ///
    /// With a `header`, the segment continues its trace (its `Root`, with `Parent` as parent);
    /// an upstream `Sampled=1` or `Sampled=0` is obeyed unless the recorder ignores upstream
    /// decisions. Otherwise the sampler decides with `request` (whose service name defaults to
    /// the segment's name).
    pub fn begin_segment_with(
        &self,
        name: &str,
        header: Option<&TraceHeader>,
        request: &SamplingRequest<'_>,
    ) -> Segment {
        let inner = &self.inner;
        let name = inner.forced_name.as_deref().unwrap_or(name);
        let trace_id = header.map_or_else(TraceId::new, |h| h.root());
        let parent = header.and_then(|h| h.parent());
        let upstream = header.map_or(Sampled::Unknown, |h| h.sampled());
        let requested = upstream == Sampled::Requested;
        let (sampled, rule) = if !inner.enabled {
            (false, None)
        } else {
            // The sampler sees the caller's decision; the default one obeys it
            // (`ParentBasedSampler`, unless upstream decisions are ignored).
            let mut req = request.with_trace_id(trace_id).with_upstream(upstream);
            if req.service_name().is_none() {
                req = req.with_service_name(name);
            }
            if req.service_type().is_none()
                && let Some(origin) = inner.origin()
            {
                req = req.with_service_type(origin);
            }
            let d = inner.sampler.should_sample(&req);
            (d.is_sampled(), d.rule_name().map(Arc::from))
        };
        let forward = header.and_then(TraceHeader::forwarded);
        Segment::begin(self, name, trace_id, parent, sampled, requested, rule).forwarding(forward)
    }

    /// Begins the segment of one AWS Lambda invocation: a facade built from the invocation's
    /// trace header, never sent itself, under which every subsegment is sent as soon as it
    /// ends.
    ///
    /// Pass the invocation's own header (`lambda_runtime::Context::xray_trace_id`): with
    /// concurrent invocations in one process, each must use its own. Given `None`, the
    /// `_X_AMZN_TRACE_ID` environment variable is read, which is right only for
    /// single-concurrency functions. Without a usable header (`Root` and `Parent`), nothing is
    /// recorded.
    pub fn begin_lambda_invocation(&self, trace_header: Option<&str>) -> Segment {
        let from_env;
        let raw = match trace_header {
            Some(h) => Some(h),
            None => {
                from_env = std::env::var(crate::config::ENV_LAMBDA_TRACE_ID).ok();
                from_env.as_deref()
            }
        };
        let header = raw.and_then(|h| h.parse::<TraceHeader>().ok());
        match header {
            Some(h) if self.inner.enabled => match h.parent() {
                Some(parent) => {
                    let forward = h.forwarded();
                    Segment::facade(self, h.root(), parent, h.sampled() == Sampled::Yes, forward)
                }
                None => Segment::unsampled(h.root()),
            },
            Some(h) => Segment::unsampled(h.root()),
            None => {
                self.context_missing("begin_lambda_invocation");
                Segment::unsampled(TraceId::new())
            }
        }
    }

    /// Begins a subsegment under the current entity, or, with no current entity, applies the
    /// context-missing strategy and returns a subsegment that records nothing.
    pub fn begin_subsegment(&self, name: &str) -> Subsegment {
        match crate::context::current().map(|e| e.begin_subsegment(name)) {
            Some(s) => s,
            None => {
                self.context_missing("begin_subsegment");
                Subsegment::none()
            }
        }
    }

    /// Like [`begin_subsegment`](Self::begin_subsegment), but with the
    /// [`ContextMissing::RuntimeError`] strategy a missing context is an error.
    pub fn try_begin_subsegment(&self, name: &str) -> Result<Subsegment, ContextMissingError> {
        match crate::context::current().map(|e| e.begin_subsegment(name)) {
            Some(s) => Ok(s),
            None if self.inner.context_missing == ContextMissing::RuntimeError => {
                Err(ContextMissingError {
                    operation: "begin_subsegment",
                })
            }
            None => {
                self.context_missing("begin_subsegment");
                Ok(Subsegment::none())
            }
        }
    }

    /// Applies the context-missing strategy for `operation`.
    pub(crate) fn context_missing(&self, operation: &'static str) {
        let inner = &self.inner;
        if inner.context_missing == ContextMissing::IgnoreError || !inner.enabled {
            return;
        }
        inner
            .stats
            .context_missing
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if inner.missing_log.allow(inner.clock.now_micros()) {
            tracing::error!(
                target: "xray_sdk::context",
                operation,
                "no X-Ray segment is current; nothing is recorded (enter a segment, or wrap \
                 futures with `with_context`/`in_current_context`)"
            );
        }
    }
}
