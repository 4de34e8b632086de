//! Reading whitelisted members out of serialized requests and responses.
//!
//! Members live in different places per protocol: the JSON body (awsJson 1.0/1.1: DynamoDB,
//! SQS), form fields (awsQuery: SNS), or the URL and headers (restJson/restXml: Lambda's
//! function name in the path, S3's bucket and key in the host or path). Bodies are read only
//! for the awsJson and awsQuery protocols, never for REST payloads (an S3 object, a Lambda
//! payload), and only the whitelisted members are kept: other members are skipped by the
//! parser without being allocated, so item contents and message bodies are never copied.

use std::fmt;

use aws_smithy_runtime_api::http::Headers;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::whitelist::{Rule, Take};

/// Bodies larger than this are not parsed (a 16 MB `BatchWriteItem` would cost milliseconds
/// for one `table_names` field).
const MAX_PARSED_BODY: usize = 1024 * 1024;

/// The wire protocol, guessed from the request's content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// awsJson 1.0 / 1.1: the body is a JSON object of the input members.
    AwsJson,
    /// awsQuery / ec2Query: the body is form fields named after the input members.
    Query,
    /// REST protocols: members bound to the URL, headers, or a payload we never read.
    Rest,
}

impl Protocol {
    pub(crate) fn of(headers: &Headers) -> Self {
        match headers.get("content-type") {
            Some(ct) if ct.starts_with("application/x-amz-json") => Self::AwsJson,
            Some(ct) if ct.starts_with("application/x-www-form-urlencoded") => Self::Query,
            _ => Self::Rest,
        }
    }
}

/// Where a REST protocol puts a member.
#[derive(Debug, Clone, Copy)]
enum Location {
    /// The path segment after this one (`/functions/{FunctionName}/...`).
    PathAfter(&'static str),
    /// A query parameter.
    Query(&'static str),
    /// A header.
    Header(&'static str),
    /// The S3 bucket: the first label of a virtual-hosted name, else the first path segment.
    S3Bucket,
    /// The S3 key: the path after the bucket.
    S3Key,
    /// The response status code.
    Status,
}

/// The HTTP bindings of the whitelisted REST members (Smithy `@httpLabel`, `@httpQuery`,
/// `@httpHeader`, `@httpResponseCode` traits of the services' models).
fn binding(service_id: &str, member: &str) -> Option<Location> {
    use Location::*;
    Some(match (service_id, member) {
        ("Lambda", "FunctionName") => PathAfter("functions"),
        ("Lambda", "Qualifier") => Query("Qualifier"),
        ("Lambda", "InvocationType") => Header("x-amz-invocation-type"),
        ("Lambda", "LogType") => Header("x-amz-log-type"),
        ("Lambda", "FunctionError") => Header("x-amz-function-error"),
        ("Lambda", "StatusCode" | "Status") => Status,
        ("SageMaker Runtime", "EndpointName") => PathAfter("endpoints"),
        ("S3", "Bucket") => S3Bucket,
        ("S3", "Key") => S3Key,
        ("S3", "VersionId") => Query("versionId"),
        ("S3", "Prefix") => Query("prefix"),
        ("S3", "CopySource") => Header("x-amz-copy-source"),
        _ => return None,
    })
}

/// The parts of an HTTP message members may be read from.
pub(crate) struct Message<'a> {
    pub(crate) protocol: Protocol,
    pub(crate) uri: &'a str,
    pub(crate) status: Option<u16>,
    pub(crate) headers: &'a Headers,
    pub(crate) body: Option<&'a [u8]>,
}

/// The `(key, value)` pairs to record for `rules` found in `msg`.
pub(crate) fn extract(service_id: &str, rules: &[Rule], msg: &Message<'_>) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    if rules.is_empty() {
        return out;
    }
    match msg.protocol {
        Protocol::AwsJson => {
            if let Some(body) = msg.body.filter(|b| b.len() <= MAX_PARSED_BODY) {
                let mut de = serde_json::Deserializer::from_slice(body);
                if let Ok(found) = (Picker { rules }).deserialize(&mut de) {
                    out.extend(found);
                }
            }
        }
        Protocol::Query => {
            if let Some(body) = msg.body.filter(|b| b.len() <= MAX_PARSED_BODY) {
                form_fields(rules, body, &mut out);
            }
        }
        Protocol::Rest => {}
    }
    for rule in rules {
        if out.iter().any(|(k, _)| *k == rule.key) {
            continue;
        }
        if let Some(loc) = binding(service_id, &rule.member)
            && let Some(v) = locate(loc, msg)
        {
            out.push((rule.key.clone(), v));
        }
    }
    out
}

fn locate(loc: Location, msg: &Message<'_>) -> Option<Value> {
    let (host, path, query) = split_uri(msg.uri);
    match loc {
        Location::PathAfter(label) => {
            let mut segs = path.split('/');
            segs.by_ref().find(|s| *s == label)?;
            segs.next()
                .filter(|s| !s.is_empty())
                .map(|s| Value::from(percent_decode(s)))
        }
        Location::Query(name) => query
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| Value::from(percent_decode(v))),
        Location::Header(name) => msg
            .headers
            .get(name)
            .map(|v| Value::from(percent_decode(v))),
        Location::Status => msg.status.map(Value::from),
        Location::S3Bucket => {
            let (bucket, _) = s3_bucket_and_key(host, path);
            bucket.map(|b| Value::from(percent_decode(b)))
        }
        Location::S3Key => {
            let (_, key) = s3_bucket_and_key(host, path);
            key.filter(|k| !k.is_empty())
                .map(|k| Value::from(percent_decode(k)))
        }
    }
}

/// `(host, path, query)` of an absolute or origin-form URI; the host without its port.
fn split_uri(uri: &str) -> (&str, &str, &str) {
    let (before_query, query) = uri.split_once('?').unwrap_or((uri, ""));
    let (host, path) = match before_query.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("")),
            None => (rest, ""),
        },
        None => ("", before_query),
    };
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    (host, path, query)
}

/// The bucket and key of an S3 request: `bucket.s3....amazonaws.com/key` (virtual-hosted) or
/// `host/bucket/key` (path style, as with custom endpoints).
fn s3_bucket_and_key<'a>(host: &'a str, path: &'a str) -> (Option<&'a str>, Option<&'a str>) {
    let path = path.strip_prefix('/').unwrap_or(path);
    if let Some((label, rest)) = host.split_once('.')
        && rest.starts_with("s3")
        && !label.is_empty()
    {
        return (Some(label), Some(path));
    }
    match path.split_once('/') {
        Some((bucket, key)) => (Some(bucket).filter(|b| !b.is_empty()), Some(key)),
        None => (Some(path).filter(|b| !b.is_empty()), None),
    }
}

fn form_fields(rules: &[Rule], body: &[u8], out: &mut Vec<(String, Value)>) {
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    for pair in text.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if let Some(rule) = rules
            .iter()
            .find(|r| r.take == Take::Value && r.member == k)
        {
            out.push((rule.key.clone(), Value::from(percent_decode(v))));
        }
    }
}

/// Decodes `%XX` escapes and `+` (form encoding); invalid escapes are kept as they are.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b),
                }
            }
            b'+' => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ===== selective JSON parsing =====

/// Reads a top-level JSON object, keeping only the members named by `rules`; everything else is
/// skipped by `IgnoredAny`, which allocates nothing.
struct Picker<'r> {
    rules: &'r [Rule],
}

impl<'de> DeserializeSeed<'de> for Picker<'_> {
    type Value = Vec<(String, Value)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Picker<'_> {
    type Value = Vec<(String, Value)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let Some(rule) = self.rules.iter().find(|r| r.member == key) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let value = match rule.take {
                Take::Value => map.next_value::<Value>()?,
                Take::Keys => map.next_value_seed(Keys)?,
                Take::Count => map.next_value_seed(Count)?,
            };
            if !value.is_null() {
                out.push((rule.key.clone(), value));
            }
        }
        Ok(out)
    }
}

/// The keys of a JSON object, values skipped.
struct Keys;

impl<'de> DeserializeSeed<'de> for Keys {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Keys {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut keys = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            map.next_value::<IgnoredAny>()?;
            keys.push(Value::from(k));
        }
        Ok(Value::Array(keys))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// The length of a JSON array, elements skipped.
struct Count;

impl<'de> DeserializeSeed<'de> for Count {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut n: u64 = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            n += 1;
        }
        Ok(Value::from(n))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

// ===== error responses =====

/// The error code and message of an error response: JSON `__type`/`code` and
/// `message`/`Message`, the `x-amzn-query-error` or `x-amzn-errortype` header, or XML
/// `<Code>` and `<Message>`.
pub(crate) fn error_code_and_message(
    headers: &Headers,
    body: Option<&[u8]>,
) -> (Option<String>, Option<String>) {
    let mut code = None;
    let mut message = None;
    let body = body.filter(|b| b.len() <= MAX_PARSED_BODY);
    if let Some(body) = body {
        let trimmed = body.trim_ascii_start();
        if trimmed.first() == Some(&b'{') {
            if let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(trimmed) {
                code = ["__type", "code", "Code"]
                    .iter()
                    .find_map(|k| obj.get(*k).and_then(Value::as_str))
                    .map(clean_code);
                message = ["message", "Message", "errorMessage"]
                    .iter()
                    .find_map(|k| obj.get(*k).and_then(Value::as_str))
                    .map(str::to_owned);
            }
        } else if trimmed.first() == Some(&b'<')
            && let Ok(text) = std::str::from_utf8(trimmed)
        {
            code = xml_element(text, "Code").map(clean_code);
            message = xml_element(text, "Message").map(str::to_owned);
        }
    }
    if code.is_none() {
        code = headers
            .get("x-amzn-query-error")
            .map(|v| v.split(';').next().unwrap_or(v))
            .or_else(|| headers.get("x-amzn-errortype"))
            .map(clean_code);
    }
    (code.filter(|c| !c.is_empty()), message)
}

/// `com.amazonaws.dynamodb.v20120810#ResourceNotFoundException` and
/// `ResourceNotFoundException:http://internal.amazon.com/...` both give
/// `ResourceNotFoundException`.
fn clean_code(raw: &str) -> String {
    let s = raw.rsplit_once('#').map_or(raw, |(_, c)| c);
    let s = s.split_once(':').map_or(s, |(c, _)| c);
    s.trim().to_owned()
}

fn xml_element<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let len = text.get(start..)?.find(&close)?;
    text.get(start..start + len)
}

/// Error codes that mean the request was throttled (the codes aws-sdk-rust's retry classifier
/// treats as throttling).
pub(crate) fn is_throttling_code(code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "ProvisionedThroughputExceededException"
            | "TransactionInProgressException"
            | "RequestLimitExceeded"
            | "BandwidthLimitExceeded"
            | "LimitExceededException"
            | "RequestThrottled"
            | "SlowDown"
            | "PriorRequestNotComplete"
            | "EC2ThrottledException"
    )
}
