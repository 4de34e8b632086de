use std::fmt;
use std::sync::Arc;

use super::{Inner, Recorder, send};
use crate::clock::{SharedClock, SystemClock};
use crate::config::{
    self, ConfigError, ContextMissing, DaemonAddress, ENV_CONTEXT_MISSING, ENV_DAEMON_ADDRESS,
    ENV_LAMBDA_TASK_ROOT, ENV_SAMPLER, ENV_SAMPLING_RULES, ENV_SDK_DISABLED, ENV_SDK_ENABLED,
    ENV_TRACING_NAME, ENV_TRANSPORT, SamplerKind, TransportKind,
};
use crate::diag::LogLimiter;
use crate::emitter::{BackgroundEmitter, EmitError, Emitter, UdpEmitter};
use crate::plugins::DetectOptions;
use crate::sampling::{
    CentralizedSampler, FixedSampler, LocalSampler, ParentBasedSampler, SamplingRules,
    SharedSampler,
};
use crate::transport::{SegmentTransport, Transport};

type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Builds a [`Recorder`].
///
/// Environment variables override what the builder sets, as in every official X-Ray SDK:
///
/// | variable | effect |
/// |---|---|
/// | `AWS_XRAY_DAEMON_ADDRESS` | the daemon: `host:port`, or `tcp:host:port udp:host:port`; a bad value fails [`build`](Self::build) |
/// | `AWS_XRAY_TRACING_NAME` | the name of every segment, whatever the code asks |
/// | `AWS_XRAY_CONTEXT_MISSING` | `RUNTIME_ERROR`, `LOG_ERROR` (default) or `IGNORE_ERROR`; a bad value fails [`build`](Self::build) |
/// | `AWS_XRAY_SDK_ENABLED` | `false` disables the SDK: every call is a no-op |
/// | `AWS_XRAY_SDK_DISABLED` | `true` disables the SDK |
/// | `LAMBDA_TASK_ROOT` | set in AWS Lambda: subsegments are sent as soon as they end |
/// | `XRAY_TRANSPORT` | `udp` (default) or `otlp-udp`: see [`with_transport_kind`](Self::with_transport_kind); a bad value fails [`build`](Self::build) |
/// | `XRAY_SAMPLER` | `centralized` (default), `local`, `always` or `never`: see [`with_sampler_kind`](Self::with_sampler_kind); a bad value fails [`build`](Self::build) |
/// | `XRAY_SAMPLING_RULES` | a local rules file: see [`with_sampling_rules_file`](Self::with_sampling_rules_file) |
///
/// Without configuration: the service name is the executable's file name, the daemon is
/// `127.0.0.1:2000`, sampling follows the rules managed in X-Ray (fetched through the daemon,
/// as every official SDK does; the default local rules, one request a second then 5 %, decide
/// until the daemon answers and in AWS Lambda), a caller's `Sampled=1` or `Sampled=0` is
/// obeyed, and streaming starts above 100 completed subsegments.
///
/// To sample everything in development, set `XRAY_SAMPLER=always` (or call
/// `.with_sampler_kind(SamplerKind::Always)`).
///
/// [`build`](Self::build) logs one `INFO` line under the target `xray_sdk::recorder` naming
/// the service, the daemon, the sampler and the transport.
///
/// # Examples
///
/// ```
/// use xray_sdk::Recorder;
/// use xray_sdk::config::ContextMissing;
///
/// let recorder = Recorder::builder()
///     .with_service_name("orders")
///     .with_daemon_address("127.0.0.1:2000".parse()?)
///     .with_context_missing(ContextMissing::IgnoreError)
///     .build()?;
/// assert_eq!(recorder.service_name(), "orders");
/// # Ok::<(), xray_sdk::ConfigError>(())
/// ```
pub struct RecorderBuilder {
    env: Option<EnvLookup>,
    service_name: Option<String>,
    daemon: Option<DaemonAddress>,
    emitter: Option<Box<dyn Emitter>>,
    transport: Option<Box<dyn Transport>>,
    transport_kind: TransportKind,
    background: bool,
    sampler: Option<SharedSampler>,
    sampler_kind: SamplerKind,
    rules_file: Option<std::path::PathBuf>,
    clock: Option<SharedClock>,
    context_missing: Option<ContextMissing>,
    streaming_threshold: Option<usize>,
    max_subsegments: usize,
    max_open_segments: usize,
    grace_period: std::time::Duration,
    enabled: Option<bool>,
    honor_upstream: bool,
    service_version: Option<String>,
    origin: Option<String>,
    /// The environment named a daemon that cannot be used: nothing is sent.
    daemon_unusable: bool,
    /// `None`: the default, detection on when the environment is read.
    detect: Option<DetectOptions>,
}

impl fmt::Debug for RecorderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecorderBuilder")
            .field("reads_environment", &self.env.is_some())
            .field("service_name", &self.service_name)
            .field("daemon", &self.daemon)
            .field("emitter", &self.emitter)
            .field("transport", &self.transport)
            .field("transport_kind", &self.transport_kind)
            .field("background", &self.background)
            .field("sampler", &self.sampler)
            .field("sampler_kind", &self.sampler_kind)
            .field("rules_file", &self.rules_file)
            .field("context_missing", &self.context_missing)
            .field("streaming_threshold", &self.streaming_threshold)
            .field("max_subsegments", &self.max_subsegments)
            .field("max_open_segments", &self.max_open_segments)
            .field("grace_period", &self.grace_period)
            .field("enabled", &self.enabled)
            .field("honor_upstream", &self.honor_upstream)
            .finish()
    }
}

impl Default for RecorderBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RecorderBuilder {
    /// The default streaming threshold: completed subsegments held before they are sent early.
    pub const DEFAULT_STREAMING_THRESHOLD: usize = 100;

    /// The default maximum of subsegments one segment holds, open or ended and not yet sent:
    /// 10,000. That is already past what X-Ray keeps of one trace (500 KB of documents, and a
    /// subsegment's is at least about 100 bytes), at about 200 bytes of memory each.
    pub const DEFAULT_MAX_SUBSEGMENTS_PER_SEGMENT: usize = 10_000;

    /// The default maximum of segments the recorder holds before they are sent: 10,000 sampled
    /// requests in flight at once, about 1 KB each when they hold a few subsegments.
    pub const DEFAULT_MAX_OPEN_SEGMENTS: usize = 10_000;

    /// The default grace period: how long a segment that ended waits for subsegments still
    /// open before it is sent with them in progress, 30 s.
    pub const DEFAULT_GRACE_PERIOD: std::time::Duration = std::time::Duration::from_secs(30);

    /// A builder with the defaults, reading the process environment at [`build`](Self::build).
    pub fn new() -> Self {
        Self {
            env: Some(Arc::new(|k| std::env::var(k).ok())),
            service_name: None,
            daemon: None,
            emitter: None,
            transport: None,
            transport_kind: TransportKind::Segments,
            background: false,
            sampler: None,
            sampler_kind: SamplerKind::Centralized,
            rules_file: None,
            clock: None,
            context_missing: None,
            streaming_threshold: None,
            max_subsegments: Self::DEFAULT_MAX_SUBSEGMENTS_PER_SEGMENT,
            max_open_segments: Self::DEFAULT_MAX_OPEN_SEGMENTS,
            grace_period: Self::DEFAULT_GRACE_PERIOD,
            enabled: None,
            honor_upstream: true,
            service_version: None,
            origin: None,
            daemon_unusable: false,
            detect: None,
        }
    }

    /// Reads configuration through `lookup` instead of the process environment (for tests, or
    /// configuration kept elsewhere).
    pub fn with_env<F>(mut self, lookup: F) -> Self
    where
        F: Fn(&str) -> Option<String> + Send + Sync + 'static,
    {
        self.env = Some(Arc::new(lookup));
        self
    }

    /// Ignores the environment: only what the builder sets counts.
    pub fn ignore_environment(mut self) -> Self {
        self.env = None;
        self
    }

    /// The default segment name.
    pub fn with_service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// The application's version, sent as `service.version` on every segment.
    pub fn with_service_version(mut self, version: impl Into<String>) -> Self {
        self.service_version = Some(version.into());
        self
    }

    /// The segment `origin` (such as `AWS::ECS::Container`), also the service type that
    /// sampling rules match.
    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// How the environment the service runs in is detected: EC2, ECS, EKS and Elastic
    /// Beanstalk, whose blocks (`aws.ec2`, `aws.ecs`, …) and `origin` go on every segment, as
    /// the official SDKs' plugins put them (see [`plugins`](crate::plugins)).
    ///
    /// By default detection runs when the builder reads the environment (not after
    /// [`ignore_environment`](Self::ignore_environment)), outside AWS Lambda, with every
    /// plugin; `AWS_XRAY_PLUGINS` selects plugins or turns it off (`none`). It runs once, on a
    /// thread of its own, within one second: the first segments may be sent before it is done,
    /// without those blocks. [`with_origin`](Self::with_origin) takes precedence over the
    /// detected origin.
    ///
    /// # Examples
    ///
    /// ```
    /// use xray_sdk::Recorder;
    /// use xray_sdk::plugins::DetectOptions;
    ///
    /// let recorder = Recorder::builder()
    ///     .with_environment_detection(DetectOptions::disabled())
    ///     .build()?;
    /// # drop(recorder);
    /// # Ok::<(), xray_sdk::ConfigError>(())
    /// ```
    pub fn with_environment_detection(mut self, options: DetectOptions) -> Self {
        self.detect = Some(options);
        self
    }

    /// Where the daemon listens (the default emitter sends there).
    pub fn with_daemon_address(mut self, daemon: DaemonAddress) -> Self {
        self.daemon = Some(daemon);
        self
    }

    /// Sends the datagrams through `emitter` instead of a UDP socket to the daemon (the
    /// transport, [`SegmentTransport`] by default, still frames them).
    pub fn with_emitter<E: Emitter + 'static>(mut self, emitter: E) -> Self {
        self.emitter = Some(Box::new(emitter));
        self
    }

    /// Hands finished segments to `transport` instead of the default [`SegmentTransport`]
    /// (segment documents over UDP to the daemon). It takes precedence over
    /// [`with_emitter`](Self::with_emitter) and
    /// [`with_background_sender`](Self::with_background_sender).
    pub fn with_transport<T: Transport + 'static>(mut self, transport: T) -> Self {
        self.transport = Some(Box::new(transport));
        self
    }

    /// Which built-in transport carries finished segments over the daemon address (or the
    /// emitter given with [`with_emitter`](Self::with_emitter)): segment documents (the
    /// default) or, with the `otlp` feature, OpenTelemetry spans in `T1S` datagrams.
    /// `XRAY_TRANSPORT` overrides it; [`with_transport`](Self::with_transport) takes
    /// precedence over both.
    pub fn with_transport_kind(mut self, kind: TransportKind) -> Self {
        self.transport_kind = kind;
        self
    }

    /// Sends from a background thread: the caller only queues the datagram (bounded; what does
    /// not fit is dropped and counted). Applies to the default UDP emitter and to one given
    /// with [`with_emitter`](Self::with_emitter).
    pub fn with_background_sender(mut self, background: bool) -> Self {
        self.background = background;
        self
    }

    /// Decides which new traces are recorded, instead of the sampler
    /// [`with_sampler_kind`](Self::with_sampler_kind) and `XRAY_SAMPLER` choose. Unless
    /// [`with_upstream_decisions(false)`](Self::with_upstream_decisions) is set, it is wrapped
    /// in a [`ParentBasedSampler`], so that a caller's `Sampled=1` or `Sampled=0` decides first.
    pub fn with_sampler(mut self, sampler: SharedSampler) -> Self {
        self.sampler = Some(sampler);
        self
    }

    /// Which built-in sampler decides new traces (default [`SamplerKind::Centralized`]);
    /// `XRAY_SAMPLER` overrides it, and [`with_sampler`](Self::with_sampler) takes precedence
    /// over both.
    ///
    /// # Examples
    ///
    /// ```
    /// use xray_sdk::{Recorder, SamplerKind};
    /// use xray_sdk::sampling::{DecidingRule, SamplingRequest};
    ///
    /// let recorder = Recorder::builder()
    ///     .ignore_environment()
    ///     .with_sampler_kind(SamplerKind::Always)
    ///     .build()?;
    /// let segment = recorder.begin_segment("dev");
    /// assert!(segment.is_sampled());
    /// # Ok::<(), xray_sdk::ConfigError>(())
    /// ```
    pub fn with_sampler_kind(mut self, kind: SamplerKind) -> Self {
        self.sampler_kind = kind;
        self
    }

    /// Samples with the local rules in this file (the official SDKs' JSON format, versions 1
    /// and 2) instead of the default rules; with centralized sampling, these are its fallback.
    /// `XRAY_SAMPLING_RULES` overrides it.
    ///
    /// A file that cannot be read or is malformed does not fail [`build`](Self::build): the
    /// error, naming the file and the faulty field or the operating system's error, is logged
    /// at `ERROR` level under the target `xray_sdk::sampling`, and the default rules (one
    /// request a second, then 5 %) are used.
    pub fn with_sampling_rules_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.rules_file = Some(path.into());
        self
    }

    /// Samples with the rules managed in X-Ray (`true`, the default: a [`CentralizedSampler`]
    /// polling the daemon's TCP address, on the recorder's clock, with the local rules, the
    /// default ones or [`with_sampling_rules_file`](Self::with_sampling_rules_file)'s, as
    /// fallback) or with the local rules alone (`false`). Same as
    /// [`with_sampler_kind`](Self::with_sampler_kind) with `Centralized` or `Local`. In AWS
    /// Lambda (and when the SDK is disabled) the local sampler is used, since there the
    /// function's caller decides and no daemon proxy is reachable.
    pub fn with_centralized_sampling(mut self, centralized: bool) -> Self {
        self.sampler_kind = if centralized {
            SamplerKind::Centralized
        } else {
            SamplerKind::Local
        };
        self
    }

    /// The time source for segment times and sampling.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// What to do when there is no current segment where one is needed.
    pub fn with_context_missing(mut self, strategy: ContextMissing) -> Self {
        self.context_missing = Some(strategy);
        self
    }

    /// Completed subsegments a segment may hold before they are sent ahead of it as
    /// independent subsegments (default 100; 0 in AWS Lambda).
    pub fn with_streaming_threshold(mut self, threshold: usize) -> Self {
        self.streaming_threshold = Some(threshold);
        self
    }

    /// The most subsegments one segment holds at once, open or ended and not yet sent (default
    /// [`DEFAULT_MAX_SUBSEGMENTS_PER_SEGMENT`](Self::DEFAULT_MAX_SUBSEGMENTS_PER_SEGMENT),
    /// 10,000). Streaming sends completed ones ahead (see
    /// [`with_streaming_threshold`](Self::with_streaming_threshold)), so it mostly bounds how
    /// many are open at once.
    ///
    /// Past it, a new subsegment is not recorded: it is counted in
    /// [`RecorderStats::too_many_subsegments`](crate::recorder::RecorderStats::too_many_subsegments), and,
    /// like an unsampled one, still has an id and puts the trace header, `Sampled=1`, on the
    /// calls made under it.
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
    ///     .with_max_subsegments_per_segment(2)
    ///     .build()?;
    /// let segment = recorder.begin_segment("batch");
    /// let open: Vec<_> = (0..3).map(|_| segment.begin_subsegment("item")).collect();
    /// assert!(open[1].is_recording() && !open[2].is_recording());
    /// assert!(open[2].trace_header().to_string().ends_with(";Sampled=1"));
    /// assert_eq!(recorder.stats().too_many_subsegments, 1);
    /// # Ok::<(), xray_sdk::ConfigError>(())
    /// ```
    pub fn with_max_subsegments_per_segment(mut self, max: usize) -> Self {
        self.max_subsegments = max;
        self
    }

    /// The most segments the recorder holds before they are sent: begun and not ended, or
    /// ended and waiting for a subsegment (default
    /// [`DEFAULT_MAX_OPEN_SEGMENTS`](Self::DEFAULT_MAX_OPEN_SEGMENTS), 10,000; at least 1).
    /// Unsampled segments hold nothing and do not count.
    ///
    /// Beginning a segment past it evicts one: the oldest of those sent already in progress
    /// (see [`with_grace_period`](Self::with_grace_period)), else of those waiting for a
    /// subsegment, else of those open. It is sent as it stands, its open entities marked
    /// `in_progress`, its memory is freed, and it is counted in
    /// [`RecorderStats::evicted`](crate::recorder::RecorderStats::evicted); what it records
    /// afterwards is
    /// dropped. Segments whose handles leak are so bounded. Above 2,048 the bound is kept per
    /// shard (up to 8, by segment id), so eviction may start slightly below it.
    pub fn with_max_open_segments(mut self, max: usize) -> Self {
        self.max_open_segments = max.max(1);
        self
    }

    /// How long a segment that ended waits for subsegments still open (default
    /// [`DEFAULT_GRACE_PERIOD`](Self::DEFAULT_GRACE_PERIOD), 30 s), by the recorder's clock.
    ///
    /// Within it, the segment is sent whole when its last subsegment ends. Past it, the segment
    /// is sent as it stands, those still open marked `in_progress` (counted in
    /// [`RecorderStats::sent_in_progress`](crate::recorder::RecorderStats::sent_in_progress)), and
    /// each of
    /// them is sent as an independent subsegment when it ends, which replaces its in-progress
    /// copy. The period is checked when a segment begins and at
    /// [`Recorder::flush`](crate::Recorder::flush); with `Duration::ZERO` the segment is sent so
    /// when it ends.
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
    ///     .with_grace_period(Duration::ZERO)
    ///     .build()?;
    /// let segment = recorder.begin_segment("api");
    /// let background = segment.begin_subsegment("background");
    /// segment.end();
    /// let docs = emitter.documents();
    /// assert_eq!(docs[0]["subsegments"][0]["in_progress"], true);
    /// background.end(); // sent again, complete, on its own
    /// let docs = emitter.documents();
    /// assert_eq!(docs[1]["type"], "subsegment");
    /// assert!(docs[1]["end_time"].is_number());
    /// # Ok::<(), xray_sdk::ConfigError>(())
    /// ```
    pub fn with_grace_period(mut self, grace: std::time::Duration) -> Self {
        self.grace_period = grace;
        self
    }

    /// Enables or disables the SDK (the environment can still disable it).
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.enabled = Some(enabled);
        self
    }

    /// Whether an incoming `Sampled=1` / `Sampled=0` decides (the default, `true`): with `true`
    /// the sampler is wrapped in a [`ParentBasedSampler`].
    ///
    /// Set `false` at an untrusted edge, such as a public endpoint: there any client could send
    /// `Sampled=1` on every request and make this service record (and pay for) all of its
    /// traffic, or `Sampled=0` to hide its requests. With `false` the sampler decides every new
    /// segment (it still sees the caller's decision in [`SamplingRequest::upstream`]), and the
    /// trace id and parent from the header are kept.
    ///
    /// [`SamplingRequest::upstream`]: crate::sampling::SamplingRequest::upstream
    pub fn with_upstream_decisions(mut self, honor: bool) -> Self {
        self.honor_upstream = honor;
        self
    }

    /// Builds the recorder. Fails only on a malformed environment value
    /// (`AWS_XRAY_DAEMON_ADDRESS`, `AWS_XRAY_CONTEXT_MISSING`, `XRAY_TRANSPORT`,
    /// `XRAY_SAMPLER`); the error names the variable and the value. A daemon host name that
    /// does not resolve is such a value.
    pub fn build(self) -> Result<Recorder, ConfigError> {
        self.build_with(Err)
    }

    /// Builds the recorder whatever the environment holds: a malformed value is logged at
    /// `ERROR` level, naming the variable, the value and what is used instead, and the rest of
    /// the configuration still applies. What [`Recorder::global`] uses.
    ///
    /// A daemon address that cannot be used (a host name that does not resolve, a typo) is not
    /// replaced by the default address, where another daemon, or none, may listen: segments
    /// are then counted as failed ([`TransportErrorKind::Closed`]) and never sent, and the
    /// sampler keeps to the local rules.
    ///
    /// [`TransportErrorKind::Closed`]: crate::transport::TransportErrorKind::Closed
    pub fn build_lenient(self) -> Recorder {
        match self.build_with(|e| {
            tracing::error!(
                target: "xray_sdk::recorder",
                variable = e.variable(),
                error = %e,
                "invalid X-Ray configuration in the environment; {}",
                match e {
                    ConfigError::DaemonAddress { .. } =>
                        "segments will not be sent (counted as failed) until it is fixed",
                    _ => "using the default for this variable",
                }
            );
            Ok(())
        }) {
            Ok(recorder) => recorder,
            // Unreachable: the handler above never fails.
            Err(_) => RecorderBuilder::new().assemble(None, false),
        }
    }

    fn build_with(
        mut self,
        mut on_error: impl FnMut(ConfigError) -> Result<(), ConfigError>,
    ) -> Result<Recorder, ConfigError> {
        let env = self.env.take();
        let get = |k: &str| env.as_ref().and_then(|e| e(k)).filter(|v| !v.is_empty());

        if let Some(v) = get(ENV_DAEMON_ADDRESS) {
            match v.parse() {
                Ok(daemon) => self.daemon = Some(daemon),
                Err(e) => {
                    on_error(e)?;
                    self.daemon_unusable = true;
                }
            }
        }
        if let Some(v) = get(ENV_TRANSPORT) {
            match v.parse() {
                Ok(kind) => self.transport_kind = kind,
                Err(e) => on_error(e)?,
            }
        }
        if let Some(v) = get(ENV_CONTEXT_MISSING) {
            match v.parse() {
                Ok(strategy) => self.context_missing = Some(strategy),
                Err(e) => on_error(e)?,
            }
        }
        if let Some(v) = get(ENV_SAMPLER) {
            match v.parse() {
                Ok(kind) => self.sampler_kind = kind,
                Err(e) => on_error(e)?,
            }
        }
        if let Some(v) = get(ENV_SAMPLING_RULES) {
            self.rules_file = Some(v.into());
        }
        self.detect = match (self.detect.take(), &env) {
            (Some(options), _) => Some(options),
            // The builder's own lookup, so that `with_env` covers detection too.
            (None, Some(lookup)) => {
                let lookup = lookup.clone();
                Some(DetectOptions::new().with_env(move |k| lookup(k)))
            }
            (None, None) => None,
        };
        let forced_name = get(ENV_TRACING_NAME).map(|name| {
            // Sanitised here, once: every segment carries it, and a name X-Ray refuses would
            // otherwise be reported on each of them.
            let clean = crate::document::sanitized_name(&name);
            if *clean != *name {
                tracing::warn!(
                    target: "xray_sdk::recorder",
                    variable = ENV_TRACING_NAME,
                    value = ?name.chars().take(256).collect::<String>(),
                    used = %clean,
                    "segment name has characters X-Ray does not accept, or is over 200 \
                     characters; using it sanitised"
                );
            }
            clean.to_string()
        });
        let env_enabled = config::sdk_enabled(
            get(ENV_SDK_ENABLED).as_deref(),
            get(ENV_SDK_DISABLED).as_deref(),
        );
        let lambda = get(ENV_LAMBDA_TASK_ROOT).is_some();
        if !env_enabled {
            self.enabled = Some(false);
        }
        Ok(self.assemble(forced_name, lambda))
    }

    pub(super) fn assemble(self, forced_name: Option<String>, lambda: bool) -> Recorder {
        let enabled = self.enabled.unwrap_or(true);
        let daemon = self.daemon.unwrap_or_default();
        let emitter: Box<dyn Emitter> = match self.emitter {
            Some(e) => e,
            None if !enabled || self.transport.is_some() || self.daemon_unusable => {
                Box::new(Unavailable)
            }
            None => match UdpEmitter::new(daemon.udp()) {
                Ok(e) => Box::new(e),
                Err(e) => {
                    tracing::error!(
                        target: "xray_sdk::emitter",
                        error = %e,
                        daemon = %daemon.udp(),
                        "could not open a UDP socket for the X-Ray daemon; segments will be \
                         counted as failed and not sent"
                    );
                    Box::new(Unavailable)
                }
            },
        };
        let emitter: Box<dyn Emitter> = if self.background && enabled {
            Box::new(BackgroundEmitter::new(emitter))
        } else {
            emitter
        };
        let service_name = self.service_name.unwrap_or_else(default_service_name);
        let transport: Box<dyn Transport> = match (self.transport, self.transport_kind) {
            (Some(t), _) => t,
            (None, TransportKind::Segments) => Box::new(SegmentTransport::new(emitter)),
            #[cfg(feature = "otlp")]
            (None, TransportKind::OtlpUdp) => Box::new(crate::transport::OtlpUdpTransport::new(
                emitter,
                &service_name,
            )),
        };
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let local = || {
            let rules = match &self.rules_file {
                Some(path) => SamplingRules::from_file(path).unwrap_or_else(|e| {
                    tracing::error!(
                        target: "xray_sdk::sampling",
                        path = %path.display(),
                        error = %e,
                        "invalid X-Ray sampling rules file; using the default rules (one \
                         request a second, then 5 %)"
                    );
                    SamplingRules::default()
                }),
                None => SamplingRules::default(),
            };
            LocalSampler::new(rules).with_clock(clock.clone())
        };
        // The built-in samplers; in Lambda, disabled, or without a usable daemon, the
        // centralized one becomes local.
        let kind = match self.sampler_kind {
            SamplerKind::Centralized if !enabled || lambda || self.daemon_unusable => {
                SamplerKind::Local
            }
            kind => kind,
        };
        let custom = self.sampler.is_some();
        let sampler: SharedSampler = match self.sampler {
            Some(sampler) => sampler,
            None => match kind {
                SamplerKind::Centralized => Arc::new(
                    CentralizedSampler::builder(daemon.tcp())
                        .with_clock(clock.clone())
                        .with_fallback(local())
                        .build(),
                ),
                SamplerKind::Always => Arc::new(FixedSampler::always()),
                SamplerKind::Never => Arc::new(FixedSampler::never()),
                _ => Arc::new(local()),
            },
        };
        let sampler: SharedSampler = if self.honor_upstream {
            Arc::new(ParentBasedSampler::new(sampler))
        } else {
            sampler
        };
        if enabled {
            let sampling = if custom {
                "custom".to_owned()
            } else {
                match (kind, &self.rules_file) {
                    (SamplerKind::Centralized, Some(path)) => format!(
                        "centralized through {}, falling back to the rules in {}",
                        daemon.tcp(),
                        path.display()
                    ),
                    (SamplerKind::Centralized, None) => format!(
                        "centralized through {}, falling back to the default rules",
                        daemon.tcp()
                    ),
                    (SamplerKind::Local, Some(path)) => {
                        format!("local, rules in {}", path.display())
                    }
                    (SamplerKind::Local, None) => "local, default rules".to_owned(),
                    (kind, _) => kind.to_string(),
                }
            };
            tracing::info!(
                target: "xray_sdk::recorder",
                service = %forced_name.as_deref().unwrap_or(&service_name),
                daemon = %if self.daemon_unusable { "unusable (see the error above)".to_owned() } else { daemon.to_string() },
                sampler = %sampling,
                upstream_decisions = if self.honor_upstream { "obeyed" } else { "ignored" },
                transport = %transport.describe(),
                lambda,
                "X-Ray recorder ready"
            );
        }
        let streaming_threshold = self.streaming_threshold.unwrap_or(if lambda {
            0
        } else {
            Self::DEFAULT_STREAMING_THRESHOLD
        });
        let environment = Arc::new(std::sync::OnceLock::new());
        if enabled
            && !lambda
            && let Some(options) = self.detect
        {
            start_detection(options, environment.clone());
        }
        Recorder {
            inner: Arc::new(Inner {
                enabled,
                service_name: service_name.into(),
                daemon,
                forced_name: forced_name.map(Into::into),
                context_missing: self.context_missing.unwrap_or_default(),
                transport,
                sampler,
                clock,
                streaming_threshold,
                max_subsegments: self.max_subsegments,
                max_open_segments: self.max_open_segments,
                open: super::registry::OpenSegments::new(self.max_open_segments, self.grace_period),
                lambda,
                service: Arc::new(super::entity::service_block(self.service_version)),
                origin: self.origin.map(Into::into),
                environment,
                stats: send::Stats::default(),
                flushed: Default::default(),
                missing_log: LogLimiter::new(60),
                refused: Default::default(),
            }),
        }
    }
}

/// Detects the environment on a thread of its own, and publishes what segments will carry.
fn start_detection(options: DetectOptions, into: Arc<std::sync::OnceLock<super::Detected>>) {
    let spawned = std::thread::Builder::new()
        .name("xray-detect".to_owned())
        .spawn(move || {
            let env = crate::plugins::detect(&options);
            if env.is_empty() {
                tracing::debug!(target: "xray_sdk::recorder", "no AWS environment detected");
                return;
            }
            tracing::info!(target: "xray_sdk::recorder", environment = %env, "X-Ray environment detected");
            let mut aws = (**crate::document::sdk_block()).clone();
            env.fill_aws(&mut aws);
            let _ = into.set(super::Detected {
                aws: Arc::new(aws),
                origin: env.origin.map(Into::into),
            });
        });
    if let Err(error) = spawned {
        tracing::warn!(
            target: "xray_sdk::recorder",
            %error,
            "could not start environment detection; segments carry no environment blocks"
        );
    }
}

fn default_service_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-service".to_owned())
}

/// Stands in for a UDP socket that could not be opened.
#[derive(Debug)]
struct Unavailable;

impl Emitter for Unavailable {
    fn emit(&self, _: crate::emitter::Datagram<'_>) -> Result<(), EmitError> {
        Err(EmitError::Closed)
    }
}
