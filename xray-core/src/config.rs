//! Configuration read from the environment, as the official X-Ray SDKs read it.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

/// The environment variable naming the daemon: `host:port`, or `tcp:host:port udp:host:port`.
pub const ENV_DAEMON_ADDRESS: &str = "AWS_XRAY_DAEMON_ADDRESS";
/// The environment variable that forces the segment name.
pub const ENV_TRACING_NAME: &str = "AWS_XRAY_TRACING_NAME";
/// The environment variable choosing the [`ContextMissing`] strategy.
pub const ENV_CONTEXT_MISSING: &str = "AWS_XRAY_CONTEXT_MISSING";
/// The environment variable that disables the SDK when `false` (also `n`, `no`, `f`, `off`, `0`).
pub const ENV_SDK_ENABLED: &str = "AWS_XRAY_SDK_ENABLED";
/// The environment variable that disables the SDK when `true`.
pub const ENV_SDK_DISABLED: &str = "AWS_XRAY_SDK_DISABLED";
/// Set by AWS Lambda in every function's environment.
pub const ENV_LAMBDA_TASK_ROOT: &str = "LAMBDA_TASK_ROOT";
/// The transport finished segments go through: `udp` (segment documents, the default) or
/// `otlp-udp` (OpenTelemetry spans in `T1S` datagrams, with the `otlp` feature).
pub const ENV_TRANSPORT: &str = "XRAY_TRANSPORT";
/// The sampler new traces are decided by: `centralized` (the default), `local`, `always` or
/// `never`; see [`SamplerKind`].
pub const ENV_SAMPLER: &str = "XRAY_SAMPLER";
/// A local sampling rules file (the official SDKs' JSON format): the rules of the `local`
/// sampler, and the fallback of the `centralized` one.
pub const ENV_SAMPLING_RULES: &str = "XRAY_SAMPLING_RULES";
/// Set by AWS Lambda to the current invocation's trace header in single-concurrency functions.
pub const ENV_LAMBDA_TRACE_ID: &str = "_X_AMZN_TRACE_ID";

/// Why a configuration value was refused.
///
/// # Examples
///
/// ```
/// use xray_sdk::DaemonAddress;
///
/// let err = "tcp:127.0.0.1:2000".parse::<DaemonAddress>().unwrap_err();
/// assert!(err.to_string().contains("AWS_XRAY_DAEMON_ADDRESS"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The daemon address is not `host:port` nor `tcp:host:port udp:host:port`.
    #[error(
        "invalid daemon address {value:?} (AWS_XRAY_DAEMON_ADDRESS): {reason}; expected \
         `host:port` or `tcp:host:port udp:host:port`"
    )]
    DaemonAddress {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The context-missing strategy is not one of the three known names.
    #[error(
        "invalid context-missing strategy {value:?} (AWS_XRAY_CONTEXT_MISSING); expected \
         RUNTIME_ERROR, LOG_ERROR or IGNORE_ERROR"
    )]
    ContextMissing {
        /// The value given.
        value: String,
    },
    /// The transport is not one of the known names, or needs a feature not compiled in.
    #[error("invalid transport {value:?} (XRAY_TRANSPORT): {reason}")]
    Transport {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The sampler is not one of the known names.
    #[error(
        "invalid sampler {value:?} (XRAY_SAMPLER); expected centralized, local, always or never"
    )]
    Sampler {
        /// The value given.
        value: String,
    },
}

impl ConfigError {
    /// The environment variable the refused value belongs to.
    ///
    /// # Examples
    ///
    /// ```
    /// use xray_sdk::DaemonAddress;
    ///
    /// let err = "nonsense".parse::<DaemonAddress>().unwrap_err();
    /// assert_eq!(err.variable(), "AWS_XRAY_DAEMON_ADDRESS");
    /// assert_eq!(
    ///     err.to_string(),
    ///     "invalid daemon address \"nonsense\" (AWS_XRAY_DAEMON_ADDRESS): the port is missing; \
    ///      expected `host:port` or `tcp:host:port udp:host:port`"
    /// );
    /// ```
    pub fn variable(&self) -> &'static str {
        match self {
            Self::DaemonAddress { .. } => ENV_DAEMON_ADDRESS,
            Self::ContextMissing { .. } => ENV_CONTEXT_MISSING,
            Self::Transport { .. } => ENV_TRANSPORT,
            Self::Sampler { .. } => ENV_SAMPLER,
        }
    }
}

/// Which sampler decides new traces. Read from `XRAY_SAMPLER`; see
/// [`RecorderBuilder::with_sampler_kind`](crate::RecorderBuilder::with_sampler_kind).
///
/// # Examples
///
/// ```
/// use xray_sdk::SamplerKind;
///
/// assert_eq!("Centralized".parse::<SamplerKind>()?, SamplerKind::Centralized);
/// assert_eq!("always".parse::<SamplerKind>()?, SamplerKind::Always);
/// assert!("sometimes".parse::<SamplerKind>().is_err());
/// # Ok::<(), xray_sdk::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SamplerKind {
    /// `centralized` (the default): the rules managed in X-Ray, through the daemon's proxy,
    /// with the local rules as the fallback while the proxy cannot be reached; local in AWS
    /// Lambda, where no proxy is reachable and the function's caller decides.
    #[default]
    Centralized,
    /// `local`: the local rules only (the default rules, one request a second then 5 %, or the
    /// rules file).
    Local,
    /// `always`: every new trace (development, tests).
    Always,
    /// `never`: no new trace; callers' `Sampled=1` are still obeyed.
    Never,
}

impl FromStr for SamplerKind {
    type Err = ConfigError;

    /// Case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        [
            ("centralized", Self::Centralized),
            ("local", Self::Local),
            ("always", Self::Always),
            ("never", Self::Never),
        ]
        .into_iter()
        .find(|(name, _)| t.eq_ignore_ascii_case(name))
        .map(|(_, kind)| kind)
        .ok_or_else(|| ConfigError::Sampler {
            value: s.chars().take(64).collect(),
        })
    }
}

impl fmt::Display for SamplerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Centralized => "centralized",
            Self::Local => "local",
            Self::Always => "always",
            Self::Never => "never",
        })
    }
}

/// Where the X-Ray daemon listens: UDP for segment documents, TCP for the sampling API proxy.
///
/// # Examples
///
/// ```
/// use xray_sdk::DaemonAddress;
///
/// let one: DaemonAddress = "127.0.0.1:2000".parse()?;
/// assert_eq!(one.udp(), one.tcp());
///
/// let two: DaemonAddress = "udp:127.0.0.1:2001 tcp:127.0.0.1:2002".parse()?;
/// assert_eq!(two.udp().port(), 2001);
/// assert_eq!(two.tcp().port(), 2002);
/// # Ok::<(), xray_sdk::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaemonAddress {
    udp: SocketAddr,
    tcp: SocketAddr,
}

impl DaemonAddress {
    /// The default daemon address, `127.0.0.1:2000` for both UDP and TCP.
    pub const DEFAULT: DaemonAddress = DaemonAddress {
        udp: SocketAddr::V4(std::net::SocketAddrV4::new(
            std::net::Ipv4Addr::LOCALHOST,
            2000,
        )),
        tcp: SocketAddr::V4(std::net::SocketAddrV4::new(
            std::net::Ipv4Addr::LOCALHOST,
            2000,
        )),
    };

    /// Both halves at one address.
    pub const fn new(addr: SocketAddr) -> Self {
        Self {
            udp: addr,
            tcp: addr,
        }
    }

    /// Separate UDP and TCP addresses.
    pub const fn split(udp: SocketAddr, tcp: SocketAddr) -> Self {
        Self { udp, tcp }
    }

    /// Where segment documents are sent.
    pub const fn udp(&self) -> SocketAddr {
        self.udp
    }

    /// Where the sampling API proxy answers.
    pub const fn tcp(&self) -> SocketAddr {
        self.tcp
    }
}

impl Default for DaemonAddress {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for DaemonAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.udp == self.tcp {
            write!(f, "{}", self.udp)
        } else {
            write!(f, "tcp:{} udp:{}", self.tcp, self.udp)
        }
    }
}

impl FromStr for DaemonAddress {
    type Err = ConfigError;

    /// Parses either form. Host names are resolved here, once, so that sending never waits on
    /// a name lookup.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let err = |reason| ConfigError::DaemonAddress {
            value: value.chars().take(128).collect(),
            reason,
        };
        let value_trimmed = value.trim();
        if value_trimmed.is_empty() {
            return Err(err("the value is empty"));
        }
        let parts: Vec<&str> = value_trimmed.split(' ').collect();
        match parts.as_slice() {
            [single] => {
                if single.starts_with("tcp:") || single.starts_with("udp:") {
                    return Err(err("both the tcp: and the udp: address must be given"));
                }
                resolve(single).map(Self::new).map_err(err)
            }
            [a, b] => {
                let (mut udp, mut tcp) = (None, None);
                for part in [a, b] {
                    if let Some(rest) = part.strip_prefix("udp:") {
                        if udp.replace(resolve(rest).map_err(err)?).is_some() {
                            return Err(err("udp: is given twice"));
                        }
                    } else if let Some(rest) = part.strip_prefix("tcp:") {
                        if tcp.replace(resolve(rest).map_err(err)?).is_some() {
                            return Err(err("tcp: is given twice"));
                        }
                    } else {
                        return Err(err("each of two addresses must start with tcp: or udp:"));
                    }
                }
                match (udp, tcp) {
                    (Some(udp), Some(tcp)) => Ok(Self { udp, tcp }),
                    _ => Err(err("both the tcp: and the udp: address must be given")),
                }
            }
            _ => Err(err("expected one address, or two separated by one space")),
        }
    }
}

fn resolve(host_port: &str) -> Result<SocketAddr, &'static str> {
    if let Ok(addr) = host_port.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = host_port.rsplit_once(':') else {
        return Err("the port is missing");
    };
    if host.is_empty() {
        return Err("the host is missing");
    }
    if port.parse::<u16>().is_err() {
        return Err("the port is not a number from 0 to 65535");
    }
    (host, port.parse::<u16>().unwrap_or_default())
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| {
            let all: Vec<SocketAddr> = addrs.by_ref().collect();
            // Prefer IPv4, as the daemon's default listener is IPv4.
            all.iter()
                .find(|a| a.is_ipv4())
                .or_else(|| all.first())
                .copied()
        })
        .ok_or("the host name does not resolve")
}

/// What to do when code asks for the current segment and there is none (startup code, a task
/// spawned without its context, a call outside any request).
///
/// The application's own work is never failed by tracing: even with
/// [`RuntimeError`](ContextMissing::RuntimeError) the error is returned only by the `try_*`
/// calls that ask for it, never raised as a panic.
///
/// # Examples
///
/// ```
/// use xray_sdk::config::ContextMissing;
///
/// assert_eq!("log_error".parse::<ContextMissing>()?, ContextMissing::LogError);
/// assert_eq!(ContextMissing::default(), ContextMissing::LogError);
/// # Ok::<(), xray_sdk::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ContextMissing {
    /// `RUNTIME_ERROR`: the `try_*` calls return a `ContextMissingError`;
    /// the others log, as with `LogError`.
    RuntimeError,
    /// `LOG_ERROR` (the default): log an error, at most once per interval, and carry on.
    #[default]
    LogError,
    /// `IGNORE_ERROR`: carry on silently.
    IgnoreError,
}

impl FromStr for ContextMissing {
    type Err = ConfigError;

    /// Case-insensitive, as the Java SDK reads it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("RUNTIME_ERROR") {
            Ok(Self::RuntimeError)
        } else if t.eq_ignore_ascii_case("LOG_ERROR") {
            Ok(Self::LogError)
        } else if t.eq_ignore_ascii_case("IGNORE_ERROR") {
            Ok(Self::IgnoreError)
        } else {
            Err(ConfigError::ContextMissing {
                value: s.chars().take(64).collect(),
            })
        }
    }
}

/// Which built-in transport the recorder sends through, over the daemon address (or the
/// emitter given to the builder). Read from `XRAY_TRANSPORT`; see
/// [`RecorderBuilder::with_transport_kind`](crate::RecorderBuilder::with_transport_kind).
///
/// # Examples
///
/// ```
/// use xray_sdk::TransportKind;
///
/// assert_eq!("udp".parse::<TransportKind>()?, TransportKind::Segments);
/// assert!("carrier-pigeon".parse::<TransportKind>().is_err());
/// # Ok::<(), xray_sdk::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TransportKind {
    /// Segment documents, one per UDP datagram, to the daemon: `udp`. The default.
    #[default]
    Segments,
    /// OpenTelemetry spans, base64 protobuf in `T1S` UDP datagrams, to the daemon address
    /// (AWS Lambda's X-Ray endpoint takes them): `otlp-udp`. Needs the `otlp` feature.
    #[cfg(feature = "otlp")]
    OtlpUdp,
}

impl FromStr for TransportKind {
    type Err = ConfigError;

    /// Case-insensitive: `udp` (or `segments`), `otlp-udp`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let err = |reason| ConfigError::Transport {
            value: s.chars().take(64).collect(),
            reason,
        };
        if t.eq_ignore_ascii_case("udp") || t.eq_ignore_ascii_case("segments") {
            Ok(Self::Segments)
        } else if t.eq_ignore_ascii_case("otlp-udp") {
            #[cfg(feature = "otlp")]
            return Ok(Self::OtlpUdp);
            #[cfg(not(feature = "otlp"))]
            Err(err("this build of xray-sdk lacks the `otlp` feature"))
        } else {
            Err(err("expected `udp` or `otlp-udp`"))
        }
    }
}

/// Reads `AWS_XRAY_SDK_ENABLED` / `AWS_XRAY_SDK_DISABLED`: disabled when the first is
/// `false`, `f`, `n`, `no`, `off` or `0`, or the second is `true` (case-insensitive). Any other
/// value leaves the SDK enabled, as the Python SDK does.
pub(crate) fn sdk_enabled(enabled: Option<&str>, disabled: Option<&str>) -> bool {
    let off = enabled.is_some_and(|v| {
        let v = v.trim();
        ["false", "f", "n", "no", "off", "0"]
            .iter()
            .any(|o| v.eq_ignore_ascii_case(o))
    });
    let disabled = disabled.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    !(off || disabled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_address_forms() {
        let a: DaemonAddress = "tcp:127.0.0.1:2000 udp:127.0.0.2:2001".parse().unwrap();
        assert_eq!(a.tcp().to_string(), "127.0.0.1:2000");
        assert_eq!(a.udp().to_string(), "127.0.0.2:2001");
        assert_eq!(a.to_string(), "tcp:127.0.0.1:2000 udp:127.0.0.2:2001");
        let b: DaemonAddress = "localhost:2000".parse().unwrap();
        assert_eq!(b.udp().port(), 2000);
        assert!(b.udp().ip().is_loopback());
        let c: DaemonAddress = "[::1]:2000".parse().unwrap();
        assert!(c.udp().is_ipv6());
    }

    #[test]
    fn daemon_address_errors() {
        for bad in [
            "",
            "127.0.0.1",
            "127.0.0.1:notaport",
            "127.0.0.1:70000",
            ":2000",
            "tcp:127.0.0.1:2000",
            "udp:127.0.0.1:2000 udp:127.0.0.1:2001",
            "tcp:127.0.0.1:2000  udp:127.0.0.1:2001",
            "127.0.0.1:2000 127.0.0.1:2001",
            "a:1 b:2 c:3",
        ] {
            assert!(
                matches!(
                    bad.parse::<DaemonAddress>(),
                    Err(ConfigError::DaemonAddress { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn enabled_values() {
        assert!(sdk_enabled(None, None));
        assert!(sdk_enabled(Some("true"), None));
        assert!(sdk_enabled(Some("garbage"), None));
        for off in ["false", "FALSE", "f", "n", "no", "off", "0"] {
            assert!(!sdk_enabled(Some(off), None), "{off}");
        }
        assert!(!sdk_enabled(None, Some("TRUE")));
        assert!(sdk_enabled(None, Some("false")));
    }

    #[test]
    fn context_missing_values() {
        assert_eq!(
            "RUNTIME_ERROR".parse::<ContextMissing>(),
            Ok(ContextMissing::RuntimeError)
        );
        assert_eq!(
            " ignore_error ".parse::<ContextMissing>(),
            Ok(ContextMissing::IgnoreError)
        );
        assert!("PANIC".parse::<ContextMissing>().is_err());
    }
}
