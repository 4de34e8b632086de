//! Environment plugins: where the application runs (Elastic Beanstalk, EKS, ECS, EC2), found
//! once at start-up and written on every segment as the `aws` block and the `origin`.
//!
//! Every official X-Ray SDK has these plugins. [`detect`] runs the selected ones within one
//! second in all and returns an [`Environment`]; [`Environment::apply`] writes it on a segment
//! document, and its [`Display`](std::fmt::Display) is a one-line summary for the start-up log.
//! A plugin that does not apply (no Beanstalk file, no ECS variable) costs a file check or an
//! environment lookup; one that fails or runs out of time contributes nothing and is logged
//! once, at `DEBUG` under the target `xray_sdk::plugins`, with the underlying (OS) error.
//! Detection never panics and never waits past its budget.
//!
//! ```
//! use xray_sdk::plugins::{self, DetectOptions, Plugin};
//! use xray_sdk::{Document, SegmentId, TraceId};
//!
//! // The file the Elastic Beanstalk platform writes for the X-Ray daemon.
//! let dir = std::env::temp_dir().join(format!("xray-plugins-doc-mod-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let conf = dir.join("environment.conf");
//! std::fs::write(
//!     &conf,
//!     r#"{"deployment_id":23,"version_label":"v1.4","environment_name":"orders-prod"}"#,
//! )?;
//!
//! let options = DetectOptions::new()
//!     .ignore_environment()
//!     .with_plugins([Plugin::ElasticBeanstalk])
//!     .with_elastic_beanstalk_config(&conf);
//! let env = plugins::detect(&options);
//! assert_eq!(env.origin.as_deref(), Some("AWS::ElasticBeanstalk::Environment"));
//! assert!(env.to_string().contains("orders-prod"));
//!
//! let mut segment = Document::new("orders", SegmentId::new(), 1_735_689_600.0);
//! segment.set_trace_id(TraceId::new());
//! env.apply(&mut segment);
//! let json = serde_json::to_value(&segment)?;
//! assert_eq!(json["origin"], "AWS::ElasticBeanstalk::Environment");
//! assert_eq!(json["aws"]["elastic_beanstalk"]["deployment_id"], 23);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The plugins
//!
//! | plugin | applies when | reads | writes |
//! |---|---|---|---|
//! | [`ElasticBeanstalk`](Plugin::ElasticBeanstalk) | `/var/elasticbeanstalk/xray/environment.conf` exists | that JSON file | `aws.elastic_beanstalk` (`environment_name`, `version_label`, `deployment_id`) |
//! | [`Eks`](Plugin::Eks) | `KUBERNETES_SERVICE_HOST` is set and the service account token file exists | the host name, `/proc/self/cgroup` or `/proc/self/mountinfo`, the cluster name if given | `aws.eks` (`pod`, `container_id`, `cluster_name`); the Container Insights log group |
//! | [`Ecs`](Plugin::Ecs) | `ECS_CONTAINER_METADATA_URI_V4` (or `ECS_CONTAINER_METADATA_URI`) is set | `GET ${uri}` and `GET ${uri}/task` | `aws.ecs` (`container`, `container_id`, `container_arn`); the `awslogs` log group with its ARN |
//! | [`Ec2`](Plugin::Ec2) | the instance metadata service answers | IMDSv2: `PUT /latest/api/token`, then `GET /latest/dynamic/instance-identity/document` with the token | `aws.ec2` (`instance_id`, `availability_zone`, `instance_size`, `ami_id`) |
//!
//! EC2 falls back to IMDSv1 (no token) only when the token request is answered 403, 404 or 405,
//! the AWS SDKs' rule, and never with `AWS_EC2_METADATA_V1_DISABLED=true`; the X-Ray SDKs fall
//! back after any failure, which after a timeout only spends the budget twice. EC2 is not tried
//! in an ECS task on Fargate, which has no instance metadata.
//!
//! EKS: the Java SDK, the only one with this plugin, reads the cluster name from the Kubernetes
//! API (the `amazon-cloudwatch/cluster-info` config map) over HTTPS. xray-sdk has no TLS, so
//! the cluster name comes from [`DetectOptions::with_eks_cluster_name`] or from the
//! `k8s.cluster.name` entry of `OTEL_RESOURCE_ATTRIBUTES` (OpenTelemetry's resource variable),
//! and is otherwise left out.
//!
//! # Origin
//!
//! When several plugins apply, the origin is the most specific environment:
//! Elastic Beanstalk > EKS > ECS > EC2, as the Java SDK resolves it
//! (`AWSXRayRecorderBuilder.ORIGIN_PRIORITY`) and the developer guide's Python configuration
//! page documents. (Python, Go, Node, .NET and Ruby let the last plugin configured win.) Every
//! block found is written, whichever gives the origin: on ECS with the EC2 launch type, a
//! segment carries both `aws.ecs` and `aws.ec2`.
//!
//! # Environment variables
//!
//! Read through [`DetectOptions::with_env`]'s lookup (the process environment by default).
//!
//! | variable | effect |
//! |---|---|
//! | `AWS_XRAY_PLUGINS` | which plugins run: names separated by commas (`ec2`, `ecs`, `eks`, `elastic_beanstalk`; the SDKs' class names `EC2Plugin`, `ECSPlugin`, `EKSPlugin`, `ElasticBeanstalkPlugin` too, in any case); `none` (or `off`, `false`, `0`, `no`) turns detection off; `all` runs every plugin. Overrides [`DetectOptions::with_plugins`]. The environment-variable spelling of the .NET SDK's `AWSXRayPlugins` setting: no other SDK configures plugins outside code |
//! | `AWS_XRAY_SDK_ENABLED` / `AWS_XRAY_SDK_DISABLED` | a disabled SDK detects nothing |
//! | `LAMBDA_TASK_ROOT` | in AWS Lambda nothing is detected: the service writes the function's segment and its origin |
//! | `AWS_EC2_METADATA_DISABLED` | `true`: the EC2 plugin does not run (the AWS SDKs' switch) |
//! | `AWS_EC2_METADATA_V1_DISABLED` | `true`: no IMDSv1 fallback |
//! | `AWS_EC2_METADATA_SERVICE_ENDPOINT` | the instance metadata URL (`http://…`), e.g. `http://127.0.0.1:1338` |
//! | `IMDS_ENDPOINT` | the same as `host[:port]`, as the Java X-Ray SDK reads it; the variable above wins |
//! | `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE` | `IPv6`: `http://[fd00:ec2::254]` instead of `http://169.254.169.254` |
//! | `ECS_CONTAINER_METADATA_URI_V4`, `ECS_CONTAINER_METADATA_URI` | the task metadata endpoint, v4 preferred (set by ECS) |
//! | `AWS_EXECUTION_ENV` | `AWS_ECS_FARGATE`: EC2 is not tried (set by Fargate) |
//! | `KUBERNETES_SERVICE_HOST` | with the token file, the sign of Kubernetes (set by the kubelet) |
//! | `OTEL_RESOURCE_ATTRIBUTES` | `k8s.cluster.name=<name>`: the EKS cluster name |
//! | `HOSTNAME` | the host name (`aws.ecs.container`, `aws.eks.pod`), else `/proc/sys/kernel/hostname` |
//!
//! Locations set on [`DetectOptions`] (endpoints, files) take precedence over the variables that
//! locate them; the switches (`AWS_XRAY_PLUGINS`, `AWS_EC2_METADATA_DISABLED`) override the
//! code, as the `AWS_XRAY_*` variables do for [`RecorderBuilder`](crate::RecorderBuilder).

mod ec2;
mod ecs;
mod eks;
mod elastic_beanstalk;
mod host;
mod http;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::{Clock as _, SystemClock};
use crate::config::{self, ENV_LAMBDA_TASK_ROOT, ENV_SDK_DISABLED, ENV_SDK_ENABLED};
use crate::diag::LogLimiter;
use crate::document::{Aws, CloudwatchLogs, Document, Ec2, Ecs, Eks, ElasticBeanstalk};

/// The environment variable choosing the plugins: names separated by commas, or `none`.
pub const ENV_PLUGINS: &str = "AWS_XRAY_PLUGINS";
/// The task metadata endpoint v4, set by ECS in every container.
pub const ENV_ECS_CONTAINER_METADATA_URI_V4: &str = "ECS_CONTAINER_METADATA_URI_V4";
/// The task metadata endpoint v3, read when v4's variable is not set.
pub const ENV_ECS_CONTAINER_METADATA_URI: &str = "ECS_CONTAINER_METADATA_URI";
/// The instance metadata service's URL (the AWS SDKs' variable).
pub const ENV_EC2_METADATA_SERVICE_ENDPOINT: &str = "AWS_EC2_METADATA_SERVICE_ENDPOINT";
/// `IPv6` chooses the instance metadata service's IPv6 address (the AWS SDKs' variable).
pub const ENV_EC2_METADATA_SERVICE_ENDPOINT_MODE: &str = "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE";
/// The instance metadata service as `host[:port]` (the Java X-Ray SDK's variable).
pub const ENV_IMDS_ENDPOINT: &str = "IMDS_ENDPOINT";
/// `true` turns the EC2 plugin off (the AWS SDKs' variable).
pub const ENV_EC2_METADATA_DISABLED: &str = "AWS_EC2_METADATA_DISABLED";
/// `true` forbids the IMDSv1 fallback (the AWS SDKs' variable).
pub const ENV_EC2_METADATA_V1_DISABLED: &str = "AWS_EC2_METADATA_V1_DISABLED";
/// Set by the kubelet in every container.
pub const ENV_KUBERNETES_SERVICE_HOST: &str = "KUBERNETES_SERVICE_HOST";
/// OpenTelemetry's resource attributes; `k8s.cluster.name` names the EKS cluster.
pub const ENV_OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
/// The host name, set in every Docker and Kubernetes container.
const ENV_HOSTNAME: &str = "HOSTNAME";
/// `AWS_ECS_FARGATE` on Fargate.
const ENV_AWS_EXECUTION_ENV: &str = "AWS_EXECUTION_ENV";

/// The longest detection may take, and the default budget.
pub const MAX_DETECT_BUDGET: Duration = Duration::from_secs(1);

const DEFAULT_CGROUP: &str = "/proc/self/cgroup";
const DEFAULT_MOUNTINFO: &str = "/proc/self/mountinfo";

// ===== Plugin =====

/// One environment plugin.
///
/// Names parse case-insensitively, in the short form or as the SDKs' class names.
///
/// # Examples
///
/// ```
/// use xray_sdk::plugins::Plugin;
///
/// assert_eq!("ECSPlugin".parse::<Plugin>()?, Plugin::Ecs);
/// assert_eq!("elastic_beanstalk".parse::<Plugin>()?, Plugin::ElasticBeanstalk);
/// assert_eq!(Plugin::Eks.origin(), "AWS::EKS::Container");
/// assert_eq!(Plugin::ALL[0], Plugin::ElasticBeanstalk); // the most specific first
/// assert!("DockerPlugin".parse::<Plugin>().is_err());
/// # Ok::<(), xray_sdk::plugins::ParsePluginError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Plugin {
    /// Elastic Beanstalk: `AWS::ElasticBeanstalk::Environment`.
    ElasticBeanstalk,
    /// EKS, or any Kubernetes: `AWS::EKS::Container`.
    Eks,
    /// ECS: `AWS::ECS::Container`.
    Ecs,
    /// EC2: `AWS::EC2::Instance`.
    Ec2,
}

impl Plugin {
    /// Every plugin, the most specific environment first: the origin precedence, and the
    /// order they run in.
    pub const ALL: [Plugin; 4] = [
        Plugin::ElasticBeanstalk,
        Plugin::Eks,
        Plugin::Ecs,
        Plugin::Ec2,
    ];

    /// The short name, also the key of its block in `aws`: `elastic_beanstalk`, `eks`, `ecs`,
    /// `ec2`.
    pub const fn name(self) -> &'static str {
        match self {
            Plugin::ElasticBeanstalk => "elastic_beanstalk",
            Plugin::Eks => "eks",
            Plugin::Ecs => "ecs",
            Plugin::Ec2 => "ec2",
        }
    }

    /// The segment `origin` it stands for.
    pub const fn origin(self) -> &'static str {
        match self {
            Plugin::ElasticBeanstalk => "AWS::ElasticBeanstalk::Environment",
            Plugin::Eks => "AWS::EKS::Container",
            Plugin::Ecs => "AWS::ECS::Container",
            Plugin::Ec2 => "AWS::EC2::Instance",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Plugin::ElasticBeanstalk => 1,
            Plugin::Eks => 2,
            Plugin::Ecs => 4,
            Plugin::Ec2 => 8,
        }
    }

    fn log(self) -> &'static LogLimiter {
        static LOGS: [LogLimiter; 4] = [
            LogLimiter::new(60),
            LogLimiter::new(60),
            LogLimiter::new(60),
            LogLimiter::new(60),
        ];
        let [eb, eks, ecs, ec2] = &LOGS;
        match self {
            Plugin::ElasticBeanstalk => eb,
            Plugin::Eks => eks,
            Plugin::Ecs => ecs,
            Plugin::Ec2 => ec2,
        }
    }
}

impl fmt::Display for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Plugin {
    type Err = ParsePluginError;

    /// `ec2`, `ecs`, `eks`, `elastic_beanstalk` (or `elasticbeanstalk`, `beanstalk`), with or
    /// without a `Plugin` suffix (`EC2Plugin`, `ElasticBeanstalkPlugin`), in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let folded: String = s
            .trim()
            .chars()
            .filter(|c| !matches!(c, '_' | '-'))
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let short = folded.strip_suffix("plugin").unwrap_or(&folded);
        match short {
            "ec2" => Ok(Plugin::Ec2),
            "ecs" => Ok(Plugin::Ecs),
            "eks" => Ok(Plugin::Eks),
            "elasticbeanstalk" | "beanstalk" => Ok(Plugin::ElasticBeanstalk),
            _ => Err(ParsePluginError {
                value: s.chars().take(64).collect(),
            }),
        }
    }
}

/// A plugin name that is not one of the four.
///
/// # Examples
///
/// ```
/// use xray_sdk::plugins::Plugin;
///
/// let err = "DockerPlugin".parse::<Plugin>().unwrap_err();
/// assert!(err.to_string().contains("DockerPlugin"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown X-Ray plugin {value:?} (AWS_XRAY_PLUGINS); expected ec2, ecs, eks or \
     elastic_beanstalk"
)]
pub struct ParsePluginError {
    value: String,
}

/// A set of plugins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PluginSet(u8);

impl PluginSet {
    const NONE: PluginSet = PluginSet(0);
    const ALL: PluginSet = PluginSet(0b1111);

    fn contains(self, p: Plugin) -> bool {
        self.0 & p.bit() != 0
    }

    fn with(self, p: Plugin) -> PluginSet {
        PluginSet(self.0 | p.bit())
    }

    fn without(self, p: Plugin) -> PluginSet {
        PluginSet(self.0 & !p.bit())
    }
}

/// Parses `AWS_XRAY_PLUGINS`: `None` turns detection off.
fn parse_plugin_list(list: &str) -> Option<PluginSet> {
    static UNKNOWN_LOG: LogLimiter = LogLimiter::new(60);
    let t = list.trim();
    let is = |words: &[&str]| words.iter().any(|w| t.eq_ignore_ascii_case(w));
    if is(&["none", "off", "false", "0", "no"]) {
        return None;
    }
    if is(&["all", "default"]) {
        return Some(PluginSet::ALL);
    }
    let mut set = PluginSet::NONE;
    for name in t.split([',', ';', ' ']).filter(|n| !n.trim().is_empty()) {
        match name.parse::<Plugin>() {
            Ok(p) => set = set.with(p),
            Err(e) => {
                if UNKNOWN_LOG.allow(SystemClock.now_micros()) {
                    tracing::warn!(
                        target: "xray_sdk::plugins",
                        error = %e,
                        "ignoring a plugin name"
                    );
                }
            }
        }
    }
    Some(set)
}

fn is_true(v: &str) -> bool {
    v.trim().eq_ignore_ascii_case("true")
}

// ===== DetectOptions =====

type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What [`detect`] looks for, and where.
///
/// By default: every plugin, within [`MAX_DETECT_BUDGET`] (one second), at the standard
/// endpoints and paths, with the process environment read when [`detect`] runs (see the
/// [module documentation](crate::plugins) for the variables). The locations can be changed for
/// tests or
/// unusual hosts; cloning is cheap, and the options can be moved to the thread that detects.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use xray_sdk::plugins::{self, DetectOptions, Plugin};
///
/// // Off entirely: no file, no variable, no network.
/// let env = plugins::detect(&DetectOptions::disabled());
/// assert!(env.is_empty());
///
/// // `AWS_XRAY_PLUGINS` picks the plugins, whatever the code says.
/// let options = DetectOptions::new()
///     .with_env(|key| (key == "AWS_XRAY_PLUGINS").then(|| "EC2Plugin, ECSPlugin".to_owned()))
///     .with_plugins([Plugin::ElasticBeanstalk])
///     .with_budget(Duration::from_millis(300));
/// assert_eq!(options.effective_plugins(), [Plugin::Ecs, Plugin::Ec2]);
///
/// let off = DetectOptions::new()
///     .with_env(|key| (key == "AWS_XRAY_PLUGINS").then(|| "none".to_owned()));
/// assert!(off.effective_plugins().is_empty());
/// ```
#[derive(Clone)]
pub struct DetectOptions {
    env: Option<EnvLookup>,
    enabled: bool,
    plugins: PluginSet,
    budget: Duration,
    ec2_endpoint: Option<String>,
    ecs_metadata_uri: Option<String>,
    beanstalk_config: PathBuf,
    kubernetes_token: PathBuf,
    cgroup: PathBuf,
    mountinfo: PathBuf,
    hostname: Option<String>,
    eks_cluster_name: Option<String>,
}

impl fmt::Debug for DetectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DetectOptions")
            .field("reads_environment", &self.env.is_some())
            .field("enabled", &self.enabled)
            .field("plugins", &self.configured_plugins())
            .field("budget", &self.budget)
            .field("ec2_endpoint", &self.ec2_endpoint)
            .field("ecs_metadata_uri", &self.ecs_metadata_uri)
            .field("beanstalk_config", &self.beanstalk_config)
            .field("kubernetes_token", &self.kubernetes_token)
            .field("cgroup", &self.cgroup)
            .field("mountinfo", &self.mountinfo)
            .field("hostname", &self.hostname)
            .field("eks_cluster_name", &self.eks_cluster_name)
            .finish()
    }
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl DetectOptions {
    /// Every plugin, the standard locations, the process environment, a one-second budget.
    pub fn new() -> Self {
        Self {
            env: Some(Arc::new(|k: &str| std::env::var(k).ok())),
            enabled: true,
            plugins: PluginSet::ALL,
            budget: MAX_DETECT_BUDGET,
            ec2_endpoint: None,
            ecs_metadata_uri: None,
            beanstalk_config: PathBuf::from(elastic_beanstalk::DEFAULT_CONFIG),
            kubernetes_token: PathBuf::from(eks::DEFAULT_TOKEN_FILE),
            cgroup: PathBuf::from(DEFAULT_CGROUP),
            mountinfo: PathBuf::from(DEFAULT_MOUNTINFO),
            hostname: None,
            eks_cluster_name: None,
        }
    }

    /// Detection off: [`detect`] returns an empty [`Environment`] at once, reading nothing
    /// (not even the environment).
    pub fn disabled() -> Self {
        Self::new().with_enabled(false)
    }

    /// Turns detection on or off. Off, no variable can turn it back on.
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Runs only these plugins (all by default). `AWS_XRAY_PLUGINS`, when set, decides instead.
    pub fn with_plugins(mut self, plugins: impl IntoIterator<Item = Plugin>) -> Self {
        self.plugins = plugins.into_iter().fold(PluginSet::NONE, PluginSet::with);
        self
    }

    /// The time all plugins together may take, at most (and by default) one second; a longer
    /// budget is cut to one second. Every connection, write and read is given what is left.
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = budget.min(MAX_DETECT_BUDGET);
        self
    }

    /// The instance metadata service's base URL (`http://host[:port]`), instead of
    /// `AWS_EC2_METADATA_SERVICE_ENDPOINT`, `IMDS_ENDPOINT` or `http://169.254.169.254`.
    pub fn with_ec2_endpoint(mut self, url: impl Into<String>) -> Self {
        self.ec2_endpoint = Some(url.into());
        self
    }

    /// The task metadata URI (what ECS puts in `ECS_CONTAINER_METADATA_URI_V4`). Setting it
    /// makes the ECS plugin apply.
    pub fn with_ecs_metadata_uri(mut self, uri: impl Into<String>) -> Self {
        self.ecs_metadata_uri = Some(uri.into());
        self
    }

    /// The Elastic Beanstalk environment file, instead of
    /// `/var/elasticbeanstalk/xray/environment.conf`.
    pub fn with_elastic_beanstalk_config(mut self, path: impl AsRef<Path>) -> Self {
        self.beanstalk_config = path.as_ref().to_path_buf();
        self
    }

    /// The Kubernetes service account token whose presence, with `KUBERNETES_SERVICE_HOST`,
    /// means Kubernetes, instead of `/var/run/secrets/kubernetes.io/serviceaccount/token`. It
    /// is never read.
    pub fn with_kubernetes_token_file(mut self, path: impl AsRef<Path>) -> Self {
        self.kubernetes_token = path.as_ref().to_path_buf();
        self
    }

    /// The files the container id is read from, instead of `/proc/self/cgroup` and
    /// `/proc/self/mountinfo`.
    pub fn with_cgroup_files(
        mut self,
        cgroup: impl AsRef<Path>,
        mountinfo: impl AsRef<Path>,
    ) -> Self {
        self.cgroup = cgroup.as_ref().to_path_buf();
        self.mountinfo = mountinfo.as_ref().to_path_buf();
        self
    }

    /// The host name written as `aws.ecs.container` and `aws.eks.pod`, instead of `HOSTNAME`
    /// or the kernel's.
    pub fn with_hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// The EKS cluster name, instead of `OTEL_RESOURCE_ATTRIBUTES`' `k8s.cluster.name` (as the
    /// Java SDK's `new EKSPlugin(clusterName)`).
    pub fn with_eks_cluster_name(mut self, name: impl Into<String>) -> Self {
        self.eks_cluster_name = Some(name.into());
        self
    }

    /// Reads variables through `lookup` instead of the process environment.
    pub fn with_env<F>(mut self, lookup: F) -> Self
    where
        F: Fn(&str) -> Option<String> + Send + Sync + 'static,
    {
        self.env = Some(Arc::new(lookup));
        self
    }

    /// Reads no variable: only what the options say counts. ECS then applies only with
    /// [`with_ecs_metadata_uri`](Self::with_ecs_metadata_uri), and Kubernetes never.
    pub fn ignore_environment(mut self) -> Self {
        self.env = None;
        self
    }

    /// The plugins [`detect`] would run now, in the order it runs them: those selected, unless
    /// `AWS_XRAY_PLUGINS` chooses; none when detection is off, the SDK is disabled or the
    /// process runs in AWS Lambda; not EC2 with `AWS_EC2_METADATA_DISABLED=true`.
    pub fn effective_plugins(&self) -> Vec<Plugin> {
        let set = self.effective_set();
        Plugin::ALL
            .into_iter()
            .filter(|p| set.contains(*p))
            .collect()
    }

    fn configured_plugins(&self) -> Vec<Plugin> {
        Plugin::ALL
            .into_iter()
            .filter(|p| self.plugins.contains(*p))
            .collect()
    }

    fn effective_set(&self) -> PluginSet {
        if !self.enabled {
            return PluginSet::NONE;
        }
        let sdk_on = config::sdk_enabled(
            self.var(ENV_SDK_ENABLED).as_deref(),
            self.var(ENV_SDK_DISABLED).as_deref(),
        );
        if !sdk_on || self.var(ENV_LAMBDA_TASK_ROOT).is_some() {
            return PluginSet::NONE;
        }
        let mut set = self.plugins;
        if let Some(list) = self.var(ENV_PLUGINS) {
            match parse_plugin_list(&list) {
                Some(chosen) => set = chosen,
                None => return PluginSet::NONE,
            }
        }
        if self
            .var(ENV_EC2_METADATA_DISABLED)
            .is_some_and(|v| is_true(&v))
        {
            set = set.without(Plugin::Ec2);
        }
        set
    }

    /// A variable, if set and not blank.
    fn var(&self, key: &str) -> Option<String> {
        self.env
            .as_ref()
            .and_then(|lookup| lookup(key))
            .filter(|v| !v.trim().is_empty())
    }

    fn hostname(&self) -> Option<String> {
        self.hostname
            .clone()
            .or_else(|| host::hostname(self.var(ENV_HOSTNAME)))
    }

    fn on_fargate(&self, env: &Environment) -> bool {
        env.ecs_task.as_ref().is_some_and(EcsTask::is_fargate)
            || self
                .var(ENV_AWS_EXECUTION_ENV)
                .is_some_and(|v| v.trim() == "AWS_ECS_FARGATE")
    }
}

// ===== detect =====

/// Why a plugin contributed nothing (or less than it could), for the log and the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure(String);

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Failure(message.into())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs the plugins `options` select, the most specific first (Elastic Beanstalk, EKS, ECS,
/// EC2), and returns what they found, with the origin of the most specific.
///
/// Synchronous: run it once, at start-up, off the request path (the recorder's builder runs
/// it on a thread of its own). It takes at most the budget (one second by default) and never
/// panics: a plugin that fails or runs out of time contributes nothing, is listed in
/// [`Environment::problems`], and is logged once at `DEBUG` (target `xray_sdk::plugins`) with
/// the error. Response bodies and files are read up to 64 KiB.
///
/// # Examples
///
/// ```
/// use xray_sdk::plugins::{self, DetectOptions, Plugin};
///
/// // No Beanstalk file and no Kubernetes token at these paths: nothing applies, nothing fails.
/// let missing = std::env::temp_dir().join("xray-plugins-doc-detect-no-such-file");
/// let options = DetectOptions::new()
///     .ignore_environment()
///     .with_plugins([Plugin::ElasticBeanstalk, Plugin::Eks])
///     .with_elastic_beanstalk_config(&missing)
///     .with_kubernetes_token_file(&missing);
/// let env = plugins::detect(&options);
/// assert!(env.is_empty());
/// assert_eq!(env.problems().count(), 0);
/// assert_eq!(env.to_string(), "no AWS environment detected");
/// ```
pub fn detect(options: &DetectOptions) -> Environment {
    let mut env = Environment::default();
    let plugins = options.effective_set();
    if plugins == PluginSet::NONE {
        return env;
    }
    let started = Instant::now();
    let deadline = started + options.budget;

    if plugins.contains(Plugin::ElasticBeanstalk) {
        match guarded(|| elastic_beanstalk::detect(&options.beanstalk_config)) {
            Ok(Some(eb)) => env.elastic_beanstalk = Some(eb),
            Ok(None) => {}
            Err(f) => env.failed(Plugin::ElasticBeanstalk, f),
        }
    }
    if plugins.contains(Plugin::Eks) {
        match guarded(|| eks::detect(options)) {
            Ok(Some((eks, logs))) => {
                env.eks = Some(eks);
                env.add_logs(logs);
            }
            Ok(None) => {}
            Err(f) => env.failed(Plugin::Eks, f),
        }
    }
    if plugins.contains(Plugin::Ecs) {
        match guarded(|| ecs::detect(options, deadline)) {
            Ok(Some(found)) => {
                env.ecs = Some(found.ecs);
                env.ecs_task = found.task;
                env.add_logs(found.logs);
                if let Some(f) = found.task_failure {
                    env.failed(Plugin::Ecs, Failure::new(format!("no task metadata: {f}")));
                }
            }
            Ok(None) => {}
            Err(f) => env.failed(Plugin::Ecs, f),
        }
    }
    // A Fargate task has no instance metadata: the calls could only time out.
    if plugins.contains(Plugin::Ec2) && !options.on_fargate(&env) {
        match guarded(|| ec2::detect(options, deadline)) {
            Ok(Some(ec2)) => env.ec2 = Some(ec2),
            Ok(None) => {}
            Err(f) => env.failed(Plugin::Ec2, f),
        }
    }

    let origin = env.detected().next().map(|p| p.origin().to_owned());
    env.origin = origin;
    tracing::debug!(
        target: "xray_sdk::plugins",
        elapsed_ms = started.elapsed().as_millis() as u64,
        environment = %env,
        "environment detected"
    );
    env
}

/// Runs one plugin; a panic (a bug) is its failure, never the caller's.
fn guarded<T>(f: impl FnOnce() -> Result<Option<T>, Failure>) -> Result<Option<T>, Failure> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(Failure::new("internal error (the plugin panicked)")))
}

// ===== Environment =====

/// What [`detect`] found: the origin and the `aws` blocks to write on every segment.
///
/// The fields are public so that an application can complete or correct what was found (say,
/// an EKS cluster name known only to it) before handing it on; [`apply`](Self::apply) writes
/// them as they are.
///
/// # Examples
///
/// ```
/// use xray_sdk::plugins::Environment;
/// use xray_sdk::{Document, SegmentId};
/// use xray_sdk::document::Ec2;
///
/// let mut ec2 = Ec2::default();
/// ec2.instance_id = Some("i-0b5a4678fc325be98".into());
/// ec2.availability_zone = Some("us-west-2c".into());
/// let mut env = Environment::default();
/// env.ec2 = Some(ec2);
/// env.origin = Some("AWS::EC2::Instance".into());
///
/// let mut segment = Document::new("orders", SegmentId::new(), 1_735_689_600.0);
/// env.apply(&mut segment);
/// assert_eq!(segment.origin(), Some("AWS::EC2::Instance"));
/// let aws = segment.aws().unwrap();
/// assert_eq!(aws.ec2.as_ref().unwrap().availability_zone.as_deref(), Some("us-west-2c"));
/// assert_eq!(
///     env.summary(),
///     "AWS::EC2::Instance; ec2 instance_id=i-0b5a4678fc325be98 availability_zone=us-west-2c"
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Environment {
    /// The segment `origin`: the most specific environment found.
    pub origin: Option<String>,
    /// `aws.ec2`.
    pub ec2: Option<Ec2>,
    /// `aws.ecs`.
    pub ecs: Option<Ecs>,
    /// The ECS task, from the task metadata endpoint. Not written on segments: neither the
    /// X-Ray SDKs nor the segment schema have fields for it.
    pub ecs_task: Option<EcsTask>,
    /// `aws.eks`.
    pub eks: Option<Eks>,
    /// `aws.elastic_beanstalk`.
    pub elastic_beanstalk: Option<ElasticBeanstalk>,
    /// `aws.cloudwatch_logs`: the ECS container's `awslogs` group, the EKS Container Insights
    /// application group.
    pub cloudwatch_logs: Vec<CloudwatchLogs>,
    problems: Vec<(Plugin, String)>,
}

impl Environment {
    /// Whether nothing was found (problems aside).
    pub fn is_empty(&self) -> bool {
        self.origin.is_none() && !self.has_blocks()
    }

    /// The plugins that found their environment, the most specific first.
    pub fn detected(&self) -> impl Iterator<Item = Plugin> + '_ {
        Plugin::ALL.into_iter().filter(|p| match p {
            Plugin::ElasticBeanstalk => self.elastic_beanstalk.is_some(),
            Plugin::Eks => self.eks.is_some(),
            Plugin::Ecs => self.ecs.is_some(),
            Plugin::Ec2 => self.ec2.is_some(),
        })
    }

    /// The plugins that failed, or found less than they could, with why.
    ///
    /// Off AWS the EC2 plugin is among them (its calls go unanswered); a plugin whose
    /// environment is plainly absent (no file, no variable) is not.
    pub fn problems(&self) -> impl Iterator<Item = (Plugin, &str)> + '_ {
        self.problems.iter().map(|(p, why)| (*p, why.as_str()))
    }

    /// Writes the origin and every block found on `doc`, replacing what it had there, and adds
    /// the log groups it lacks. Fields the environment does not have are left as they are;
    /// an empty environment changes nothing.
    pub fn apply(&self, doc: &mut Document) {
        if let Some(origin) = &self.origin {
            doc.set_origin(origin.clone());
        }
        if self.has_blocks() {
            self.fill_aws(doc.aws_mut());
        }
    }

    /// Writes the blocks found into `aws`, as [`apply`](Self::apply) does: for building one
    /// `aws` block to share between segments.
    ///
    /// # Examples
    ///
    /// ```
    /// use xray_sdk::plugins::Environment;
    /// use xray_sdk::document::{Aws, CloudwatchLogs, XRaySdk};
    ///
    /// let mut group = CloudwatchLogs::default();
    /// group.log_group = Some("/ecs/orders".into());
    /// let mut env = Environment::default();
    /// env.cloudwatch_logs.push(group);
    ///
    /// let mut aws = Aws::default();
    /// aws.xray = Some(XRaySdk::rust());
    /// env.fill_aws(&mut aws);
    /// env.fill_aws(&mut aws); // no duplicate
    /// assert_eq!(aws.cloudwatch_logs.len(), 1);
    /// assert!(aws.xray.is_some());
    /// ```
    pub fn fill_aws(&self, aws: &mut Aws) {
        if let Some(v) = &self.ec2 {
            aws.ec2 = Some(v.clone());
        }
        if let Some(v) = &self.ecs {
            aws.ecs = Some(v.clone());
        }
        if let Some(v) = &self.eks {
            aws.eks = Some(v.clone());
        }
        if let Some(v) = &self.elastic_beanstalk {
            aws.elastic_beanstalk = Some(v.clone());
        }
        for log in &self.cloudwatch_logs {
            if !aws.cloudwatch_logs.contains(log) {
                aws.cloudwatch_logs.push(log.clone());
            }
        }
    }

    /// One line for the start-up log: the origin, what each plugin found, and what failed
    /// (the same as the [`Display`](fmt::Display) output).
    ///
    /// # Examples
    ///
    /// ```
    /// use xray_sdk::plugins::{self, DetectOptions};
    ///
    /// let env = plugins::detect(&DetectOptions::disabled());
    /// assert_eq!(env.summary(), "no AWS environment detected");
    /// ```
    pub fn summary(&self) -> String {
        self.to_string()
    }

    fn has_blocks(&self) -> bool {
        self.ec2.is_some()
            || self.ecs.is_some()
            || self.eks.is_some()
            || self.elastic_beanstalk.is_some()
            || !self.cloudwatch_logs.is_empty()
    }

    fn add_logs(&mut self, logs: Option<CloudwatchLogs>) {
        if let Some(log) = logs
            && !self.cloudwatch_logs.contains(&log)
        {
            self.cloudwatch_logs.push(log);
        }
    }

    fn failed(&mut self, plugin: Plugin, failure: Failure) {
        if plugin.log().allow(SystemClock.now_micros()) {
            tracing::debug!(
                target: "xray_sdk::plugins",
                plugin = plugin.name(),
                error = %failure,
                "environment plugin found nothing, or less than it could"
            );
        }
        self.problems.push((plugin, failure.0));
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn field(f: &mut fmt::Formatter<'_>, key: &str, value: Option<&str>) -> fmt::Result {
            match value {
                Some(v) => write!(f, " {key}={v}"),
                None => Ok(()),
            }
        }
        match &self.origin {
            Some(origin) => f.write_str(origin)?,
            None if self.has_blocks() => f.write_str("no origin")?,
            None => f.write_str("no AWS environment detected")?,
        }
        if let Some(eb) = &self.elastic_beanstalk {
            f.write_str("; elastic_beanstalk")?;
            field(f, "environment_name", eb.environment_name.as_deref())?;
            field(f, "version_label", eb.version_label.as_deref())?;
            if let Some(id) = eb.deployment_id {
                write!(f, " deployment_id={id}")?;
            }
        }
        if let Some(eks) = &self.eks {
            f.write_str("; eks")?;
            field(f, "cluster_name", eks.cluster_name.as_deref())?;
            field(f, "pod", eks.pod.as_deref())?;
            field(f, "container_id", eks.container_id.as_deref())?;
        }
        if let Some(ecs) = &self.ecs {
            f.write_str("; ecs")?;
            field(f, "container", ecs.container.as_deref())?;
            field(f, "container_id", ecs.container_id.as_deref())?;
            if let Some(task) = &self.ecs_task {
                field(f, "cluster", task.cluster.as_deref())?;
                field(f, "family", task.family.as_deref())?;
                field(f, "revision", task.revision.as_deref())?;
                field(f, "launch_type", task.launch_type.as_deref())?;
                field(f, "availability_zone", task.availability_zone.as_deref())?;
            }
        }
        if let Some(ec2) = &self.ec2 {
            f.write_str("; ec2")?;
            field(f, "instance_id", ec2.instance_id.as_deref())?;
            field(f, "instance_size", ec2.instance_size.as_deref())?;
            field(f, "availability_zone", ec2.availability_zone.as_deref())?;
            field(f, "ami_id", ec2.ami_id.as_deref())?;
        }
        let mut groups = self
            .cloudwatch_logs
            .iter()
            .filter_map(|l| l.log_group.as_deref());
        if let Some(first) = groups.next() {
            write!(f, "; cloudwatch_logs {first}")?;
            for g in groups {
                write!(f, ", {g}")?;
            }
        }
        for (plugin, why) in &self.problems {
            write!(f, "; {plugin}: {why}")?;
        }
        Ok(())
    }
}

// ===== EcsTask =====

/// The ECS task, as the task metadata endpoint describes it (`GET ${uri}/task`).
///
/// # Examples
///
/// ```
/// use xray_sdk::plugins::EcsTask;
///
/// let mut task = EcsTask::default();
/// task.launch_type = Some("FARGATE".into());
/// assert!(task.is_fargate());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EcsTask {
    /// `Cluster`: the cluster's ARN or short name.
    pub cluster: Option<String>,
    /// `TaskARN`.
    pub task_arn: Option<String>,
    /// `Family`: the task definition's family.
    pub family: Option<String>,
    /// `Revision`: the task definition's revision.
    pub revision: Option<String>,
    /// `AvailabilityZone` (Fargate platform 1.4 and later).
    pub availability_zone: Option<String>,
    /// `LaunchType`: `EC2`, `FARGATE` or `EXTERNAL` (agent 1.45 and later).
    pub launch_type: Option<String>,
}

impl EcsTask {
    /// Whether the task runs on Fargate.
    pub fn is_fargate(&self) -> bool {
        self.launch_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("FARGATE"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_lists() {
        let all = Some(PluginSet::ALL);
        assert_eq!(parse_plugin_list("all"), all);
        assert_eq!(parse_plugin_list(" NONE "), None);
        assert_eq!(parse_plugin_list("off"), None);
        assert_eq!(
            parse_plugin_list("EC2Plugin,ECSPlugin, ElasticBeanstalkPlugin"),
            Some(
                PluginSet::NONE
                    .with(Plugin::Ec2)
                    .with(Plugin::Ecs)
                    .with(Plugin::ElasticBeanstalk)
            )
        );
        assert_eq!(
            parse_plugin_list("eks DockerPlugin"),
            Some(PluginSet::NONE.with(Plugin::Eks))
        );
        assert_eq!(parse_plugin_list("DockerPlugin"), Some(PluginSet::NONE));
    }

    #[test]
    fn names_round_trip() {
        for p in Plugin::ALL {
            assert_eq!(p.name().parse::<Plugin>(), Ok(p));
            assert_eq!(p.to_string(), p.name());
        }
    }
}
