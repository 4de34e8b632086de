//! The targets: one per parser that reads what another process sent.

mod centralized;
mod daemon_address;
mod filter;
mod header;
mod local_http;
mod local_intake;
mod otlp;
mod sampling_rules;

use crate::corpus::Corpus;
use crate::harness::Target;

/// Every target, in the order `all` runs them.
pub(crate) const NAMES: &[&str] = &[
    "header",
    "daemon-address",
    "sampling-rules",
    "centralized",
    "local-intake",
    "local-http",
    "filter",
    "otlp",
];

/// What each target reads, for `list`.
pub(crate) const ABOUT: &[(&str, &str)] = &[
    (
        "header",
        "TraceHeader::parse and is_sqs_message_sampled: the X-Amzn-Trace-Id header",
    ),
    (
        "daemon-address",
        "DaemonAddress's FromStr: AWS_XRAY_DAEMON_ADDRESS",
    ),
    (
        "sampling-rules",
        "SamplingRules::from_json and the local sampler's decisions",
    ),
    (
        "centralized",
        "CentralizedSampler against a proxy on 127.0.0.1 answering GetSamplingRules and SamplingTargets with fuzzed HTTP",
    ),
    (
        "local-intake",
        "xray-local's UDP intake and trace assembly: daemon-framed documents and T1S/T1U spans over real UDP",
    ),
    (
        "local-http",
        "xray-local's TCP server: OTLP/HTTP, the sampling API and the read API with fuzzed requests",
    ),
    ("filter", "xray_local::Filter::parse and Filter::matches"),
    (
        "otlp",
        "xray_sdk::otlp::to_documents on ExportTraceServiceRequests decoded from fuzzed protobuf",
    ),
];

/// The target called `name`, with its seeds.
///
/// # Errors
///
/// An unknown name, a corpus that cannot be read, or a daemon that cannot start.
pub(crate) fn make(name: &str, corpus: &Corpus) -> Result<Box<dyn Target>, String> {
    let target: Box<dyn Target> = match name {
        "header" => Box::new(header::HeaderTarget::new(corpus)?),
        "daemon-address" => Box::new(daemon_address::DaemonAddressTarget::new(corpus)?),
        "sampling-rules" => Box::new(sampling_rules::SamplingRulesTarget::new(corpus)?),
        "centralized" => Box::new(centralized::CentralizedTarget::new(corpus)?),
        "local-intake" => Box::new(local_intake::LocalIntakeTarget::new(corpus)?),
        "local-http" => Box::new(local_http::LocalHttpTarget::new(corpus)?),
        "filter" => Box::new(filter::FilterTarget::new(corpus)?),
        "otlp" => Box::new(otlp::OtlpTarget::new(corpus)?),
        other => return Err(format!("no target `{other}`; `xray-fuzz list` names them")),
    };
    Ok(target)
}

/// The static name of a target, for reports.
pub(crate) fn static_name(name: &str) -> Option<&'static str> {
    NAMES.iter().copied().find(|n| *n == name)
}
