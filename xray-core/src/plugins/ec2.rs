//! EC2: the instance identity document from the instance metadata service, through IMDSv2.
//!
//! `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds: 60` (the TTL every
//! official SDK asks for), then `GET /latest/dynamic/instance-identity/document` with
//! `X-aws-ec2-metadata-token`. The document's `instanceId`, `availabilityZone`,
//! `instanceType` and `imageId` become `aws.ec2`'s `instance_id`, `availability_zone`,
//! `instance_size` and `ami_id` (Java `EC2Plugin.java`, Node `ec2_plugin.js`, .NET
//! `EC2Plugin.cs`; Python and Ruby write `instance_type`, Go only the id and zone). No
//! `instanceId`, no EC2 (Java `EC2Plugin.isEnabled`).
//!
//! IMDSv1 fallback: the X-Ray SDKs (Python, Go, Java, Node, .NET, Ruby) retry without a
//! token after *any* token failure. Here the fallback follows the AWS SDKs' rule instead
//! (SDK reference guide, "IMDS credential provider"): only when the token request is
//! answered 403, 404 or 405, i.e. by a metadata service that does not do IMDSv2, and never
//! when `AWS_EC2_METADATA_V1_DISABLED=true`. After a timeout or a refused connection the
//! same request without a token cannot fare better, and would spend the budget twice.

use std::time::Instant;

use serde_json::Value;

use super::http::{self, Url};
use super::{
    DetectOptions, ENV_EC2_METADATA_SERVICE_ENDPOINT, ENV_EC2_METADATA_SERVICE_ENDPOINT_MODE,
    ENV_EC2_METADATA_V1_DISABLED, ENV_IMDS_ENDPOINT, Failure, is_true,
};
use crate::document::Ec2;

/// The IPv4 endpoint, the default.
const ENDPOINT_V4: &str = "http://169.254.169.254";
/// The IPv6 endpoint (`AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6`).
const ENDPOINT_V6: &str = "http://[fd00:ec2::254]";
const TOKEN_PATH: &str = "/latest/api/token";
const IDENTITY_PATH: &str = "/latest/dynamic/instance-identity/document";
const TTL_HEADER: &str = "X-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "X-aws-ec2-metadata-token";
/// Every official SDK asks for a 60 s token: it is used once, right away.
const TOKEN_TTL_SECS: &str = "60";
/// IMDS tokens are about 60 characters; anything far longer is not one.
const MAX_TOKEN: usize = 4096;

/// The metadata service's base URL: set in code, else `AWS_EC2_METADATA_SERVICE_ENDPOINT` (the
/// AWS SDKs' variable, a URL), else `IMDS_ENDPOINT` (the Java X-Ray SDK's, `host[:port]`),
/// else the IPv6 address when `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6`, else
/// `http://169.254.169.254`.
fn endpoint(opts: &DetectOptions) -> String {
    if let Some(e) = &opts.ec2_endpoint {
        return e.clone();
    }
    if let Some(e) = opts.var(ENV_EC2_METADATA_SERVICE_ENDPOINT) {
        return e;
    }
    if let Some(e) = opts.var(ENV_IMDS_ENDPOINT) {
        return if e.contains("://") {
            e
        } else {
            format!("http://{e}")
        };
    }
    if opts
        .var(ENV_EC2_METADATA_SERVICE_ENDPOINT_MODE)
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("ipv6"))
    {
        return ENDPOINT_V6.to_owned();
    }
    ENDPOINT_V4.to_owned()
}

/// Whether the metadata service was named, in code or by a variable, rather than assumed.
fn endpoint_named(opts: &DetectOptions) -> bool {
    opts.ec2_endpoint.is_some()
        || opts.var(ENV_EC2_METADATA_SERVICE_ENDPOINT).is_some()
        || opts.var(ENV_IMDS_ENDPOINT).is_some()
}

/// What the firmware says of the machine, on Linux: EC2 instances (Nitro and Xen alike) name
/// Amazon EC2 as the DMI system vendor, carry their instance id as the board asset tag, or
/// have a hypervisor UUID that starts with `ec2`. Elsewhere nothing is known, and the service
/// is asked.
fn firmware_says_ec2() -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    let read = |path: &str| {
        super::host::read_bounded(std::path::Path::new(path), 256)
            .map(|b| String::from_utf8_lossy(&b).trim().to_ascii_lowercase())
            .unwrap_or_default()
    };
    read("/sys/devices/virtual/dmi/id/sys_vendor").contains("amazon ec2")
        || read("/sys/devices/virtual/dmi/id/board_asset_tag").starts_with("i-")
        || read("/sys/hypervisor/uuid").starts_with("ec2")
}

/// The instance, `None` when this is no EC2 instance, or why there is none. Unless the
/// metadata service was named, it is asked only when the firmware says EC2, so that a laptop,
/// a CI runner or another cloud never sends a packet to the link-local address. On EC2 a
/// token request that fails (no route, refused, or no answer before the deadline), or a
/// service that answers without an `instanceId`, is an error.
pub(super) fn detect(opts: &DetectOptions, deadline: Instant) -> Result<Option<Ec2>, Failure> {
    if !endpoint_named(opts) && !firmware_says_ec2() {
        return Ok(None);
    }
    detect_from_service(opts, deadline).map(Some)
}

fn detect_from_service(opts: &DetectOptions, deadline: Instant) -> Result<Ec2, Failure> {
    let base = Url::parse(&endpoint(opts)).map_err(Failure::new)?;
    let v1_allowed = !opts
        .var(ENV_EC2_METADATA_V1_DISABLED)
        .is_some_and(|v| is_true(&v));

    let token_url = base.join(TOKEN_PATH);
    let ttl = [(TTL_HEADER, TOKEN_TTL_SECS)];
    let token =
        match http::send("PUT", &token_url, &ttl, deadline) {
            Ok(r) if r.status == 200 => Some(parse_token(&r.body).ok_or_else(|| {
                Failure::new(format!("PUT {token_url}: the answer is not a token"))
            })?),
            // A metadata service without IMDSv2: ask without a token.
            Ok(r) if matches!(r.status, 403..=405) && v1_allowed => None,
            Ok(r) => {
                let why = if v1_allowed {
                    ""
                } else {
                    " (no IMDSv1 fallback: AWS_EC2_METADATA_V1_DISABLED)"
                };
                return Err(Failure::new(format!(
                    "PUT {token_url}: HTTP {}{why}",
                    r.status
                )));
            }
            Err(e) => return Err(Failure::new(format!("PUT {token_url}: {e}"))),
        };

    let doc_url = base.join(IDENTITY_PATH);
    let headers: Vec<(&str, &str)> = token
        .as_deref()
        .map(|t| (TOKEN_HEADER, t))
        .into_iter()
        .collect();
    let response = http::send("GET", &doc_url, &headers, deadline)
        .map_err(|e| Failure::new(format!("GET {doc_url}: {e}")))?;
    if response.status != 200 {
        return Err(Failure::new(format!(
            "GET {doc_url}: HTTP {}",
            response.status
        )));
    }
    parse_identity(&response.body).ok_or_else(|| {
        Failure::new(format!(
            "GET {doc_url}: no instanceId in the identity document"
        ))
    })
}

/// The token: printable ASCII, as it goes back in a header.
fn parse_token(body: &[u8]) -> Option<String> {
    let token = std::str::from_utf8(body).ok()?.trim();
    let valid = !token.is_empty()
        && token.len() <= MAX_TOKEN
        && token.bytes().all(|b| b.is_ascii_graphic());
    valid.then(|| token.to_owned())
}

fn parse_identity(body: &[u8]) -> Option<Ec2> {
    let doc: Value = serde_json::from_slice(body).ok()?;
    let text = |key: &str| {
        doc.get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    Some(Ec2 {
        instance_id: Some(text("instanceId")?),
        availability_zone: text("availabilityZone"),
        instance_size: text("instanceType"),
        ami_id: text("imageId"),
    })
}
