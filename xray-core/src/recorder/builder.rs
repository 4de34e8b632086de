use std::fmt;
use std::sync::Arc;

use super::{Inner, Recorder, send};
use crate::clock::{SharedClock, SystemClock};
use crate::config::{
    self, ConfigError, ContextMissing, DaemonAddress, ENV_CONTEXT_MISSING, ENV_DAEMON_ADDRESS,
    ENV_LAMBDA_TASK_ROOT, ENV_SDK_DISABLED, ENV_SDK_ENABLED, ENV_TRACING_NAME, ENV_TRANSPORT,
    TransportKind,
};
use crate::diag::LogLimiter;
use crate::emitter::{BackgroundEmitter, EmitError, Emitter, UdpEmitter};
use crate::sampling::{CentralizedSampler, LocalSampler, SamplingRules, SharedSampler};
use crate::transport::{SegmentTransport, Transport};

type EnvLookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

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
///
/// Without configuration: the service name is the executable's file name, the daemon is
/// `127.0.0.1:2000`, sampling uses the default rules (one request a second, then 5 %), and
/// streaming starts above 100 completed subsegments.
///
/// # Examples
///
/// ```
/// use xray_core::{ContextMissing, Recorder};
///
/// let recorder = Recorder::builder()
///     .with_service_name("orders")
///     .with_daemon_address("127.0.0.1:2000".parse()?)
///     .with_context_missing(ContextMissing::IgnoreError)
///     .build()?;
/// assert_eq!(recorder.service_name(), "orders");
/// # Ok::<(), xray_core::ConfigError>(())
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
    centralized: bool,
    rules_file: Option<std::path::PathBuf>,
    clock: Option<SharedClock>,
    context_missing: Option<ContextMissing>,
    streaming_threshold: Option<usize>,
    enabled: Option<bool>,
    honor_upstream: bool,
    service_version: Option<String>,
    origin: Option<String>,
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
            .field("centralized", &self.centralized)
            .field("context_missing", &self.context_missing)
            .field("streaming_threshold", &self.streaming_threshold)
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

    /// A builder with the defaults, reading the process environment at [`build`](Self::build).
    pub fn new() -> Self {
        Self {
            env: Some(Box::new(|k| std::env::var(k).ok())),
            service_name: None,
            daemon: None,
            emitter: None,
            transport: None,
            transport_kind: TransportKind::Segments,
            background: false,
            sampler: None,
            centralized: false,
            rules_file: None,
            clock: None,
            context_missing: None,
            streaming_threshold: None,
            enabled: None,
            honor_upstream: true,
            service_version: None,
            origin: None,
        }
    }

    /// Reads configuration through `lookup` instead of the process environment (for tests, or
    /// configuration kept elsewhere).
    pub fn with_env<F>(mut self, lookup: F) -> Self
    where
        F: Fn(&str) -> Option<String> + Send + Sync + 'static,
    {
        self.env = Some(Box::new(lookup));
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
    /// [`with_emitter`](Self::with_emitter) and [`with_background_sender`](Self::with_background_sender).
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

    /// Decides which new traces are recorded.
    pub fn with_sampler(mut self, sampler: SharedSampler) -> Self {
        self.sampler = Some(sampler);
        self
    }

    /// Samples with the local rules in this file (the official SDKs' JSON format, versions 1
    /// and 2) instead of the default rules; with centralized sampling, these are its fallback.
    ///
    /// A file that cannot be read or is malformed does not fail [`build`](Self::build): the
    /// error, naming the file and the faulty field, is logged at `ERROR` level under the target
    /// `xray_core::sampling`, and the default rules (one request a second, then 5 %) are used.
    pub fn with_sampling_rules_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.rules_file = Some(path.into());
        self
    }

    /// Samples with the rules managed in X-Ray (default `false`): a [`CentralizedSampler`]
    /// polling the daemon's TCP address, on the recorder's clock, with the local rules (the
    /// default ones, or [`with_sampling_rules_file`](Self::with_sampling_rules_file)'s) as
    /// fallback. A sampler given with [`with_sampler`](Self::with_sampler) takes precedence;
    /// in AWS Lambda (and when the SDK is disabled) the local sampler is kept, since there the
    /// function's caller decides and no daemon proxy is reachable.
    pub fn with_centralized_sampling(mut self, centralized: bool) -> Self {
        self.centralized = centralized;
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

    /// Enables or disables the SDK (the environment can still disable it).
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.enabled = Some(enabled);
        self
    }

    /// Whether an incoming `Sampled=1` / `Sampled=0` decides (the default, `true`).
    ///
    /// Set `false` at an untrusted edge, such as a public endpoint: there any client could send
    /// `Sampled=1` on every request and make this service record (and pay for) all of its
    /// traffic, or `Sampled=0` to hide its requests. With `false` the local sampler decides
    /// every new segment, and the trace id and parent from the header are still kept.
    pub fn with_upstream_decisions(mut self, honor: bool) -> Self {
        self.honor_upstream = honor;
        self
    }

    /// Builds the recorder. Fails only on a malformed environment value
    /// (`AWS_XRAY_DAEMON_ADDRESS`, `AWS_XRAY_CONTEXT_MISSING`, `XRAY_TRANSPORT`).
    pub fn build(mut self) -> Result<Recorder, ConfigError> {
        let env = self.env.take();
        let get = |k: &str| env.as_ref().and_then(|e| e(k)).filter(|v| !v.is_empty());

        if let Some(v) = get(ENV_DAEMON_ADDRESS) {
            self.daemon = Some(v.parse()?);
        }
        if let Some(v) = get(ENV_TRANSPORT) {
            self.transport_kind = v.parse()?;
        }
        if let Some(v) = get(ENV_CONTEXT_MISSING) {
            self.context_missing = Some(v.parse()?);
        }
        let forced_name = get(ENV_TRACING_NAME);
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
            None if !enabled || self.transport.is_some() => Box::new(Unavailable),
            None => match UdpEmitter::new(daemon.udp()) {
                Ok(e) => Box::new(e),
                Err(e) => {
                    tracing::error!(
                        target: "xray_core::emitter",
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
                        target: "xray_core::sampling",
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
        let sampler: SharedSampler = match self.sampler {
            Some(sampler) => sampler,
            None if self.centralized && enabled && !lambda => Arc::new(
                CentralizedSampler::builder(daemon.tcp())
                    .with_clock(clock.clone())
                    .with_fallback(local())
                    .build(),
            ),
            None => Arc::new(local()),
        };
        let streaming_threshold = self.streaming_threshold.unwrap_or(if lambda {
            0
        } else {
            Self::DEFAULT_STREAMING_THRESHOLD
        });
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
                honor_upstream: self.honor_upstream,
                lambda,
                service: Arc::new(super::entity::service_block(self.service_version)),
                origin: self.origin.map(Into::into),
                stats: send::Stats::default(),
                flushed: Default::default(),
                missing_log: LogLimiter::new(60),
            }),
        }
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
