//! OpenTelemetry export requests for the OTLP targets: made at random with the attributes
//! X-Ray's translator reads, taken from the real segment-to-span mapping, and mutated as
//! messages (not only as bytes, which mostly stop at the protobuf decoder).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngExt;
use rand::rngs::SmallRng;
use serde_json::{Map, Value};
use xray_sdk::otlp::proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use xray_sdk::otlp::proto::tonic::common::v1::any_value::Value as Any;
use xray_sdk::otlp::proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use xray_sdk::otlp::proto::tonic::resource::v1::Resource;
use xray_sdk::otlp::proto::tonic::trace::v1::span::{Event, Link};
use xray_sdk::otlp::proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use xray_sdk::{InMemoryEmitter, Recorder, SamplerKind, TransportKind};

use crate::mutate::{JsonMutator, NUMBERS, pick};

/// The span attributes X-Ray's translator reads, and the mapping's own.
pub(crate) const SPAN_KEYS: &[&str] = &[
    "aws.xray.metadata.AWS.xray.segment",
    "aws.xray.metadata.default",
    "aws.xray.metadata.app",
    "aws.xray.annotations",
    "tenant",
    "aws.operation",
    "aws.region",
    "aws.request_id",
    "aws.requestId",
    "aws.queue_url",
    "aws.queue.url",
    "aws.table_name",
    "aws.table.name",
    "aws.dynamodb.table_names",
    "aws.service",
    "aws.remote.service",
    "aws.remote.operation",
    "aws.local.service",
    "aws.span.kind",
    "aws.http.error.event",
    "aws.http.error_message",
    "rpc.system",
    "rpc.service",
    "rpc.method",
    "http.method",
    "http.request.method",
    "http.url",
    "url.full",
    "url.path",
    "url.query",
    "url.scheme",
    "http.target",
    "http.host",
    "http.scheme",
    "http.server_name",
    "http.status_code",
    "http.response.status_code",
    "http.status_text",
    "http.user_agent",
    "user_agent.original",
    "http.client_ip",
    "client.address",
    "net.peer.ip",
    "net.peer.name",
    "net.peer.port",
    "net.host.name",
    "net.host.port",
    "network.peer.address",
    "network.peer.port",
    "server.address",
    "server.port",
    "peer.service",
    "db.system",
    "db.statement",
    "db.name",
    "db.user",
    "db.connection_string",
    "messaging.url",
    "message.type",
    "messaging.message_payload_size_bytes",
    "enduser.id",
    "exception.type",
    "exception.message",
    "exception.stacktrace",
];

/// The resource attributes the translator reads.
pub(crate) const RESOURCE_KEYS: &[&str] = &[
    "service.name",
    "service.namespace",
    "service.version",
    "service.instance.id",
    "telemetry.sdk.name",
    "telemetry.sdk.language",
    "telemetry.sdk.version",
    "telemetry.auto.version",
    "telemetry.distro.version",
    "cloud.provider",
    "cloud.platform",
    "cloud.account.id",
    "cloud.availability_zone",
    "aws.account_id",
    "host.id",
    "host.name",
    "host.type",
    "host.image.id",
    "container.id",
    "container.name",
    "container.image.tag",
    "aws.ecs.cluster.arn",
    "aws.ecs.container.arn",
    "aws.ecs.task.arn",
    "aws.ecs.task.family",
    "aws.ecs.launchtype",
    "aws.log.group.names",
    "aws.log.group.arns",
];

/// Values the translator matches on.
const WORDS: &[&str] = &[
    "aws",
    "aws-api",
    "aws_ec2",
    "aws_ecs",
    "aws_eks",
    "aws_lambda",
    "aws_elastic_beanstalk",
    "LOCAL_ROOT",
    "Server",
    "java",
    "python",
    "DynamoDB",
    "SQS",
    "AWS::SQS",
    "GetItem",
    "us-east-1",
    "GET",
    "POST",
    "https://example.com/a?b=c",
    "/orders/1",
    "postgresql",
    "mysql",
    "SELECT 1",
    "RECEIVED",
    "java.io.IOException",
    "boom\n\tat a.b.C.d(C.java:12)\n\tat e.f(G.java)",
    "Traceback (most recent call last):\n  File \"a.py\", line 3, in f",
    "",
];

/// JSON pointers the mapping's residual may carry (keys of the `AWS.xray.segment`
/// metadata), ill-formed ones included.
const POINTERS: &[&str] = &[
    "/name",
    "/id",
    "/trace_id",
    "/parent_id",
    "/type",
    "/start_time",
    "/end_time",
    "/in_progress",
    "/origin",
    "/namespace",
    "/error",
    "/fault",
    "/throttle",
    "/subsegments",
    "/subsegments/0",
    "/subsegments/-",
    "/annotations/k",
    "/metadata/default/k",
    "/http/request/url",
    "/http/response/status",
    "/aws/xray/sdk",
    "/cause/exceptions/0/message",
    "/links/0/id",
    "/service/version",
    "/sql/url",
    "/~1weird~0",
    "/-",
    "",
    "no-slash",
    "json:/aws",
    "json:/metadata",
    "json:",
];

/// Ids one batch shares, so that its spans name each other as parents.
#[derive(Debug, Clone)]
pub(crate) struct Ids {
    traces: Vec<[u8; 16]>,
    spans: Vec<[u8; 8]>,
}

impl Ids {
    /// One to three trace ids and two to eight span ids, all non-zero.
    pub(crate) fn random(rng: &mut SmallRng) -> Ids {
        let mut traces = Vec::new();
        for _ in 0..rng.random_range(1..=3) {
            let mut id = [0u8; 16];
            rng.fill(&mut id[..]);
            // A plausible epoch second in the first four bytes, as X-Ray ids have.
            id[..4].copy_from_slice(&rng.random_range(0x5000_0000u32..0x7000_0000).to_be_bytes());
            traces.push(id);
        }
        let mut spans = Vec::new();
        for _ in 0..rng.random_range(2..=8) {
            let mut id = [0u8; 8];
            rng.fill(&mut id[..]);
            id[0] |= 1;
            spans.push(id);
        }
        Ids { traces, spans }
    }

    /// The trace ids, as X-Ray writes them (`1-xxxxxxxx-yyyyyyyyyyyyyyyyyyyyyyyy`).
    pub(crate) fn trace_texts(&self) -> Vec<String> {
        self.traces.iter().map(trace_text).collect()
    }

    /// A trace id as X-Ray writes it, from the pool.
    pub(crate) fn trace_text(&self, rng: &mut SmallRng) -> String {
        pick(rng, &self.traces).map(trace_text).unwrap_or_default()
    }

    /// A span id as X-Ray writes it (16 hex digits), from the pool.
    pub(crate) fn span_text(&self, rng: &mut SmallRng) -> String {
        pick(rng, &self.spans)
            .map(|id| hex(&id[..]))
            .unwrap_or_default()
    }

    /// A trace id for a span: from the pool, now and then of the wrong length or zero.
    fn trace_bytes(&self, rng: &mut SmallRng) -> Vec<u8> {
        match rng.random_range(0..40u32) {
            0 => vec![0; 16],
            1 => vec![7; 15],
            2 => Vec::new(),
            _ => pick(rng, &self.traces)
                .map(|id| id.to_vec())
                .unwrap_or_default(),
        }
    }

    /// A span id: from the pool, now and then of the wrong length or zero.
    fn span_bytes(&self, rng: &mut SmallRng) -> Vec<u8> {
        match rng.random_range(0..40u32) {
            0 => vec![0; 8],
            1 => vec![7; 9],
            _ => pick(rng, &self.spans)
                .map(|id| id.to_vec())
                .unwrap_or_default(),
        }
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// An OTLP trace id as X-Ray writes it.
pub(crate) fn trace_text(id: &[u8; 16]) -> String {
    let h = hex(id);
    format!(
        "1-{}-{}",
        h.get(..8).unwrap_or_default(),
        h.get(8..).unwrap_or_default()
    )
}

/// Whether `to_documents` makes a document of the span (its documented rule): a 16-byte and
/// an 8-byte id, neither zero, and an empty or 8-byte parent id.
pub(crate) fn well_formed(span: &Span) -> bool {
    span.trace_id.len() == 16
        && span.trace_id.iter().any(|b| *b != 0)
        && span.span_id.len() == 8
        && span.span_id.iter().any(|b| *b != 0)
        && (span.parent_span_id.is_empty() || span.parent_span_id.len() == 8)
}

/// Every span of the request.
pub(crate) fn spans(request: &ExportTraceServiceRequest) -> impl Iterator<Item = &Span> {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
}

// ===== made at random =====

/// A request of one or two resources, each with one to six spans.
pub(crate) fn random_request(rng: &mut SmallRng, ids: &Ids) -> ExportTraceServiceRequest {
    let resource_spans = (0..rng.random_range(1..=2))
        .map(|_| {
            let n = rng.random_range(0..=6);
            let attributes = random_attributes(rng, RESOURCE_KEYS, n);
            let spans = (0..rng.random_range(1..=6))
                .map(|_| random_span(rng, ids))
                .collect();
            ResourceSpans {
                resource: Some(Resource {
                    attributes,
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "xray-fuzz".to_owned(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

fn random_span(rng: &mut SmallRng, ids: &Ids) -> Span {
    let start: u64 = rng.random_range(1_500_000_000_000_000_000..1_900_000_000_000_000_000);
    let end = match rng.random_range(0..10u32) {
        0 => 0,
        1 => start.saturating_sub(1),
        2 => u64::MAX,
        _ => start.saturating_add(rng.random_range(0..5_000_000_000)),
    };
    let n = rng.random_range(0..=8);
    let mut attributes = random_attributes(rng, SPAN_KEYS, n);
    if rng.random_bool(0.2) {
        attributes.push(residual(rng));
    }
    let events = if rng.random_bool(0.2) {
        vec![Event {
            time_unix_nano: start,
            name: if rng.random_bool(0.8) {
                "exception".to_owned()
            } else {
                "aws.http.error.event".to_owned()
            },
            attributes: random_attributes(
                rng,
                &[
                    "exception.type",
                    "exception.message",
                    "exception.stacktrace",
                ],
                3,
            ),
            ..Default::default()
        }]
    } else {
        Vec::new()
    };
    let links = if rng.random_bool(0.1) {
        vec![Link {
            trace_id: ids.trace_bytes(rng),
            span_id: ids.span_bytes(rng),
            attributes: random_attributes(rng, SPAN_KEYS, 1),
            ..Default::default()
        }]
    } else {
        Vec::new()
    };
    Span {
        trace_id: ids.trace_bytes(rng),
        span_id: ids.span_bytes(rng),
        parent_span_id: if rng.random_bool(0.4) {
            Vec::new()
        } else {
            ids.span_bytes(rng)
        },
        name: pick(rng, WORDS)
            .map(|w| (*w).to_owned())
            .unwrap_or_default(),
        // Internal, server, client, producer, consumer; unspecified and unknown now and then.
        kind: match rng.random_range(0..20u32) {
            0 => 0,
            1 => 9,
            k => i32::try_from(k % 5 + 1).unwrap_or(1),
        },
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes,
        events,
        links,
        status: rng.random_bool(0.3).then(|| Status {
            message: pick(rng, WORDS)
                .map(|w| (*w).to_owned())
                .unwrap_or_default(),
            code: rng.random_range(0..=3),
        }),
        ..Default::default()
    }
}

fn random_attributes(rng: &mut SmallRng, keys: &[&str], n: usize) -> Vec<KeyValue> {
    (0..n)
        .map(|_| {
            let key = if rng.random_bool(0.9) {
                pick(rng, keys).map(|k| (*k).to_owned()).unwrap_or_default()
            } else {
                pick(rng, WORDS)
                    .map(|w| (*w).to_owned())
                    .unwrap_or_default()
            };
            let value = random_any(rng, 0);
            KeyValue {
                key,
                value: Some(value),
                ..Default::default()
            }
        })
        .collect()
}

fn random_any(rng: &mut SmallRng, depth: usize) -> AnyValue {
    let top = if depth >= 3 { 6u32 } else { 8 };
    let value = match rng.random_range(0..top) {
        0 | 1 => Some(Any::StringValue(
            pick(rng, WORDS)
                .map(|w| (*w).to_owned())
                .unwrap_or_default(),
        )),
        2 => Some(Any::BoolValue(rng.random_bool(0.5))),
        3 => Some(Any::IntValue(match rng.random_range(0..4u32) {
            0 => i64::MIN,
            1 => i64::MAX,
            2 => -1,
            _ => rng.random_range(0..600),
        })),
        4 => Some(Any::DoubleValue(match rng.random_range(0..5u32) {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => -0.0,
            3 => 1e300,
            _ => rng.random_range(0.0..600.0),
        })),
        5 => match rng.random_range(0..3u32) {
            0 => None,
            1 => Some(Any::BytesValue(vec![0, 0xff, 0x80])),
            _ => Some(Any::StringValueStrindex(rng.random_range(-1..3))),
        },
        6 => Some(Any::ArrayValue(ArrayValue {
            values: (0..rng.random_range(0..4))
                .map(|_| random_any(rng, depth + 1))
                .collect(),
        })),
        _ => Some(Any::KvlistValue(KeyValueList {
            values: random_attributes_at(rng, depth + 1),
        })),
    };
    AnyValue { value }
}

fn random_attributes_at(rng: &mut SmallRng, depth: usize) -> Vec<KeyValue> {
    (0..rng.random_range(0..4))
        .map(|_| KeyValue {
            key: pick(rng, WORDS)
                .map(|w| (*w).to_owned())
                .unwrap_or_default(),
            value: Some(random_any(rng, depth)),
            ..Default::default()
        })
        .collect()
}

/// `depth` arrays nested in an attribute value: past the protobuf decoder's limit of 100
/// nested messages, and the converter's of 128 levels.
fn deep_any(depth: usize) -> AnyValue {
    let mut value = AnyValue {
        value: Some(Any::IntValue(1)),
    };
    for _ in 0..depth {
        value = AnyValue {
            value: Some(Any::ArrayValue(ArrayValue {
                values: vec![value],
            })),
        };
    }
    value
}

/// The mapping's residual attribute, `aws.xray.metadata.AWS.xray.segment`: JSON pointers into
/// the document and what goes there, as text (what the mapping sends) or not.
fn residual(rng: &mut SmallRng) -> KeyValue {
    let json = JsonMutator {
        keys: POINTERS,
        seeds: &[],
    };
    let mut map = Map::new();
    for _ in 0..rng.random_range(1..=4) {
        let key = pick(rng, POINTERS)
            .map(|p| (*p).to_owned())
            .unwrap_or_default();
        let value = if key.starts_with("json:") {
            Value::String(if rng.random_bool(0.7) {
                serde_json::to_string(&json.random_value(rng, 1)).unwrap_or_default()
            } else {
                "{not json".to_owned()
            })
        } else {
            json.random_value(rng, 1)
        };
        map.insert(key, value);
    }
    let text = serde_json::to_string(&Value::Object(map)).unwrap_or_default();
    KeyValue {
        key: "aws.xray.metadata.AWS.xray.segment".to_owned(),
        value: Some(AnyValue {
            value: Some(if rng.random_bool(0.9) {
                Any::StringValue(text)
            } else {
                Any::KvlistValue(KeyValueList::default())
            }),
        }),
        ..Default::default()
    }
}

// ===== mutated =====

/// Changes a few spans, attributes and ids of `request`.
pub(crate) fn mutate_request(
    rng: &mut SmallRng,
    request: &mut ExportTraceServiceRequest,
    ids: &Ids,
) {
    for _ in 0..rng.random_range(1..=3) {
        let all: Vec<(usize, usize, usize)> = request
            .resource_spans
            .iter()
            .enumerate()
            .flat_map(|(r, rs)| {
                rs.scope_spans
                    .iter()
                    .enumerate()
                    .flat_map(move |(s, ss)| (0..ss.spans.len()).map(move |i| (r, s, i)))
            })
            .collect();
        let at = pick(rng, &all).copied();
        let choice = rng.random_range(0..12u32);
        if choice >= 10 {
            if choice == 10 {
                // A span copied, so that two share an id.
                let copy = if let Some(at) = at {
                    span_at(request, at).cloned()
                } else {
                    None
                };
                if let (Some(copy), Some(first)) = (
                    copy,
                    request
                        .resource_spans
                        .first_mut()
                        .and_then(|r| r.scope_spans.first_mut()),
                ) {
                    first.spans.push(copy);
                }
            } else {
                let extra = random_request(rng, ids);
                request.resource_spans.extend(extra.resource_spans);
            }
            continue;
        }
        let Some(at) = at else {
            continue;
        };
        let Some(span) = span_at_mut(request, at) else {
            continue;
        };
        match choice {
            0 => span.trace_id = ids.trace_bytes(rng),
            1 => span.span_id = ids.span_bytes(rng),
            2 => span.parent_span_id = ids.span_bytes(rng),
            3 => span.kind = rng.random_range(-1..8),
            4 => {
                let n = rng.random_range(1..=4);
                span.attributes.extend(random_attributes(rng, SPAN_KEYS, n));
            }
            5 => span.attributes.push(residual(rng)),
            6 => {
                if !span.attributes.is_empty() {
                    let i = rng.random_range(0..span.attributes.len());
                    if let Some(attribute) = span.attributes.get_mut(i) {
                        attribute.value = Some(random_any(rng, 0));
                    }
                }
            }
            7 => {
                let depth = rng.random_range(50..=140);
                span.attributes.push(KeyValue {
                    key: "deep".to_owned(),
                    value: Some(deep_any(depth)),
                    ..Default::default()
                });
            }
            8 => {
                span.name = match rng.random_range(0..3u32) {
                    0 => String::new(),
                    1 => "n".repeat(rng.random_range(200..=5000)),
                    _ => pick(rng, NUMBERS)
                        .map(|n| (*n).to_owned())
                        .unwrap_or_default(),
                };
            }
            _ => {
                span.start_time_unix_nano = rng.random();
                span.end_time_unix_nano = rng.random();
            }
        }
    }
}

/// Gives the spans of `request` (a seed, with ids of its own) trace and span ids of the pool,
/// most of them, so that they join the batch's other documents.
pub(crate) fn adopt(rng: &mut SmallRng, request: &mut ExportTraceServiceRequest, ids: &Ids) {
    for resource in &mut request.resource_spans {
        for scope in &mut resource.scope_spans {
            for span in &mut scope.spans {
                if rng.random_bool(0.9) {
                    span.trace_id = ids.trace_bytes(rng);
                }
                if rng.random_bool(0.5) {
                    span.span_id = ids.span_bytes(rng);
                }
                if !span.parent_span_id.is_empty() && rng.random_bool(0.5) {
                    span.parent_span_id = ids.span_bytes(rng);
                }
            }
        }
    }
}

fn span_at(request: &ExportTraceServiceRequest, (r, s, i): (usize, usize, usize)) -> Option<&Span> {
    request
        .resource_spans
        .get(r)?
        .scope_spans
        .get(s)?
        .spans
        .get(i)
}

fn span_at_mut(
    request: &mut ExportTraceServiceRequest,
    (r, s, i): (usize, usize, usize),
) -> Option<&mut Span> {
    request
        .resource_spans
        .get_mut(r)?
        .scope_spans
        .get_mut(s)?
        .spans
        .get_mut(i)
}

// ===== from the mapping =====

/// Protobuf requests the real segment-to-span mapping makes (`OtlpUdpTransport`'s `T1S`
/// datagrams, caught in memory): the residual, annotations, metadata, errors and subsegments
/// as the SDK sends them. Empty if the recorder cannot be built.
pub(crate) fn mapping_seeds() -> Vec<Vec<u8>> {
    let emitter = InMemoryEmitter::new();
    let Ok(recorder) = Recorder::builder()
        .ignore_environment()
        .with_service_name("orders")
        .with_sampler_kind(SamplerKind::Always)
        .with_transport_kind(TransportKind::OtlpUdp)
        .with_emitter(emitter.clone())
        .build()
    else {
        return Vec::new();
    };
    let segment = recorder.begin_segment("orders");
    segment.put_annotation("tenant", "blue");
    segment.put_metadata(
        "cart",
        &serde_json::json!({"items": [1, 2.5, "x"], "ok": true}),
    );
    let load = segment.begin_subsegment("load");
    load.put_annotation("items", 3);
    load.set_error();
    load.begin_subsegment("query").end();
    load.end();
    let call = segment.begin_subsegment("payments");
    call.set_throttle();
    call.end();
    segment.set_fault();
    segment.end();
    let quiet = recorder.begin_segment("health");
    quiet.end();
    let _ = recorder.flush(Duration::from_secs(1));
    emitter
        .raw_documents()
        .iter()
        .filter_map(|doc| {
            let body = doc
                .strip_prefix(b"T1S")
                .or_else(|| doc.strip_prefix(b"T1U"))?;
            STANDARD.decode(body.trim_ascii()).ok()
        })
        .collect()
}
