//! `otlp::to_documents`, the span-to-segment direction: every `segment_docs` scenario comes
//! back from its spans as the document it was (what `segment_docs.rs` checks with the Python
//! translator of `tests/otlp/to_segments.py`), and on the same spans and on spans of other
//! OpenTelemetry SDKs it gives exactly what that Python translator gives.
#![cfg(feature = "otlp")]

mod support;

use std::backtrace::Backtrace;
use std::collections::HashSet;
use std::io::Write as _;
use std::process::{Command, Stdio};

use base64::Engine as _;
use prost::Message as _;
use serde_json::Value;
use support::scenarios::build;
use support::{Schema, check_assertions, load_json, to_checked_json};
use xray_sdk::document::{CloudwatchLogs, Ecs, SpanLink};
use xray_sdk::otlp::proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use xray_sdk::otlp::proto::tonic::common::v1::any_value::Value as Any;
use xray_sdk::otlp::proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use xray_sdk::otlp::proto::tonic::resource::v1::Resource;
use xray_sdk::otlp::proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use xray_sdk::otlp::proto::tonic::trace::v1::status::StatusCode;
use xray_sdk::otlp::proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use xray_sdk::otlp::{to_documents, to_spans};
use xray_sdk::transport::{Finished, FinishedKind};
use xray_sdk::{Cause, Document, SegmentId, TraceId};

/// The ECS scenario of `segment_docs.rs` (what the CloudWatch agent's round trip loses).
fn ecs_scenario() -> Document {
    let mut doc = Document::new("api", SegmentId::new(), 1_478_293_361.271);
    doc.set_trace_id(TraceId::new());
    doc.set_end_time(1_478_293_361.449);
    doc.set_origin("AWS::ECS::Container");
    let aws = doc.aws_mut();
    let mut ecs = Ecs::default();
    ecs.container = Some("api-7d9f".into());
    ecs.container_id = Some("0123456789abcdef".into());
    ecs.container_arn = Some("arn:aws:ecs:us-east-1:123456789012:container/abc".into());
    aws.ecs = Some(ecs);
    let mut logs = CloudwatchLogs::default();
    logs.log_group = Some("/ecs/api".into());
    logs.arn = Some("arn:aws:logs:us-east-1:123456789012:log-group:/ecs/api:*".into());
    aws.cloudwatch_logs = vec![logs];
    doc.set_http_status(503);
    let err = std::io::Error::other("the upstream timed out");
    doc.add_cause(Cause::from_typed_error(&err).with_backtrace(&Backtrace::force_capture()));
    doc
}

fn vector_files() -> Vec<String> {
    let dir = support::data_path("segment_docs");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("segment_docs directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no vectors in {}", dir.display());
    files
}

fn assertions(vector: &Value) -> &[Value] {
    let a = vector["assertions"].as_array().expect("assertions array");
    assert!(!a.is_empty(), "vector without assertions");
    a
}

/// Every scenario, built: (name, document).
fn scenarios() -> Vec<(String, Document)> {
    let mut out: Vec<(String, Document)> = vector_files()
        .into_iter()
        .map(|file| {
            let vector = load_json(&format!("segment_docs/{file}"));
            let doc = build(&file, &vector);
            (file, doc)
        })
        .collect();
    out.push(("ecs".to_owned(), ecs_scenario()));
    out.push(("links".to_owned(), links_scenario()));
    out
}

/// A consumer segment linked to the producers of the two messages it handles, and a
/// subsegment linked to a span of its own trace: links go as span links and come back.
fn links_scenario() -> Document {
    let trace_id = TraceId::new();
    let mut doc = Document::new("consumer", SegmentId::new(), 1_478_293_361.271);
    doc.set_trace_id(trace_id);
    doc.set_end_time(1_478_293_361.449);
    doc.add_link(SpanLink::new(
        "1-5759e988-bd862e3fe1be46a994272793".parse().unwrap(),
        SegmentId::from_u64(0x53995c3f42cd8ad8),
    ));
    doc.add_link(
        SpanLink::new(TraceId::new(), SegmentId::new())
            .with_attribute("queue", "orders")
            .with_attribute("attempt", 2)
            .with_attribute("delay_s", 1.5)
            .with_attribute("redelivered", true)
            .with_attribute("tags", serde_json::json!(["a", "b"]))
            .with_attribute(
                "origin",
                serde_json::json!({"region": "eu-west-3", "shard": 7}),
            ),
    );
    let mut child = Document::new("batch-item", SegmentId::new(), 1_478_293_361.3);
    child.set_end_time(1_478_293_361.4);
    child.add_link(SpanLink::new(trace_id, doc.id()));
    doc.add_subsegment(child);
    doc
}

/// The spans the OTLP transports send for `doc`, in one request (the transports split them
/// into datagrams or requests of a bounded size, each with the same resource).
fn request_for(doc: &Document) -> ExportTraceServiceRequest {
    let trace_id = doc.trace_id().unwrap_or_default();
    let kind = if doc.is_independent() {
        FinishedKind::Streamed
    } else {
        FinishedKind::Segment
    };
    let (resource, spans) = to_spans(&Finished::from_document(kind, trace_id, doc), "scenario");
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Nests flat documents under their parents (in arrival order) into the one rooted at
/// `root`; the children lose the `trace_id`, `parent_id` and `type` that only independent
/// documents carry.
fn nest(flat: &[Value], root: &str) -> Value {
    let mut doc = flat
        .iter()
        .find(|d| d["id"] == root)
        .unwrap_or_else(|| panic!("no span for {root}: {flat:#?}"))
        .clone();
    let children: Vec<Value> = flat
        .iter()
        .filter(|d| d["parent_id"] == root && d["id"] != root)
        .map(|d| {
            let id = d["id"].as_str().unwrap_or_default().to_owned();
            let mut child = nest(flat, &id);
            if let Value::Object(o) = &mut child {
                o.remove("trace_id");
                o.remove("parent_id");
                o.remove("type");
            }
            child
        })
        .collect();
    if !children.is_empty()
        && let Value::Object(o) = &mut doc
    {
        o.insert("subsegments".into(), Value::Array(children));
    }
    doc
}

#[test]
fn every_scenario_comes_back_from_its_spans_as_it_was() {
    let schema = Schema::get();
    let mut failures = Vec::new();
    let vectors: Vec<(String, Value)> = vector_files()
        .into_iter()
        .map(|file| {
            let vector = load_json(&format!("segment_docs/{file}"));
            (file, vector)
        })
        .collect();
    for (name, doc) in scenarios() {
        let sent = to_checked_json(schema, &doc);
        let flat = to_documents(&request_for(&doc));
        let mut back = nest(&flat, &doc.id().to_string());
        // A lone embedded subsegment has no trace of its own: it was sent under a fresh one.
        if doc.trace_id().is_none()
            && let Value::Object(o) = &mut back
        {
            o.remove("trace_id");
        }
        if back != sent {
            failures.push(format!(
                "{name}: the document changed on the way\nsent: {sent:#}\nback: {back:#}"
            ));
        }
        if let Some((_, vector)) = vectors.iter().find(|(file, _)| *file == name) {
            for f in check_assertions(&back, assertions(vector)) {
                failures.push(format!("{name}: {f}\n{back:#}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ===== spans of other SDKs =====

fn kv(key: &str, value: Any) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> Any {
    Any::StringValue(v.to_owned())
}

fn list(items: Vec<Any>) -> Any {
    Any::ArrayValue(ArrayValue {
        values: items
            .into_iter()
            .map(|v| AnyValue { value: Some(v) })
            .collect(),
    })
}

fn kvlist(items: Vec<KeyValue>) -> Any {
    Any::KvlistValue(KeyValueList { values: items })
}

fn event(name: &str, time: u64, attributes: Vec<KeyValue>) -> Event {
    Event {
        time_unix_nano: time,
        name: name.to_owned(),
        attributes,
        ..Default::default()
    }
}

fn exception(kind: &str, message: &str, stack: &str) -> Event {
    event(
        "exception",
        1_700_000_000_300_000_000,
        vec![
            kv("exception.type", s(kind)),
            kv("exception.message", s(message)),
            kv("exception.stacktrace", s(stack)),
        ],
    )
}

const TRACE: [u8; 16] = [
    0x65, 0x4a, 0x1b, 0x2c, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c,
];

fn span(
    id: u64,
    parent: Option<u64>,
    kind: SpanKind,
    name: &str,
    attributes: Vec<KeyValue>,
) -> Span {
    Span {
        trace_id: TRACE.to_vec(),
        span_id: id.to_be_bytes().to_vec(),
        parent_span_id: parent.map(|p| p.to_be_bytes().to_vec()).unwrap_or_default(),
        name: name.to_owned(),
        kind: kind as i32,
        start_time_unix_nano: 1_700_000_000_123_456_789,
        end_time_unix_nano: 1_700_000_001_000_000_000,
        attributes,
        ..Default::default()
    }
}

fn with_status(mut span: Span, message: &str) -> Span {
    span.status = Some(Status {
        message: message.to_owned(),
        code: StatusCode::Error as i32,
    });
    span
}

fn with_events(mut span: Span, events: Vec<Event>) -> Span {
    span.events = events;
    span
}

fn resource_spans(resource: Vec<KeyValue>, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: resource,
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

const JAVA_STACK: &str = "java.lang.IllegalStateException: checkout failed\n\
    \tat com.shop.Checkout.run(Checkout.java:42)\n\
    \tat com.shop.api/com.shop.Main.main(Main.java)\n\
    Caused by: java.io.IOException: disk full\n  on /var\n\
    \tat com.shop.Disk.write(Disk.java:9)\n\
    \t... 3 more";

const PYTHON_STACK: &str = "Traceback (most recent call last):\n\
    \x20 File \"/app/a.py\", line 10, in handler\n\
    \x20   do()\n\
    KeyError: 'k'\n\
    \n\
    During handling of the above exception, another exception occurred:\n\
    \n\
    Traceback (most recent call last):\n\
    \x20 File \"/app/c.py\", line 5, in outer\n\
    \x20   handler()\n\
    ValueError: bad\n";

const NODE_STACK: &str = "Error: nope\n    at handler (/app/index.js:10:15)\n    \
    at /app/lib.js:3:1\n    at native\n    at process (node:internal/x:1:2)";

const DOTNET_STACK: &str = "System.Exception: bad\r\n   at App.Run() in C:\\app\\Run.cs:line 12\r\n   \
    at App.Main()";

const GO_STACK: &str = "panic: boom\n\ngoroutine 1 [running]:\nmain.handler()\n\t/app/main.go:12 \
    +0x1d\nmain.main()\n\t/app/main.go:5 +0x25\n";

/// Spans as other OpenTelemetry SDKs and the AWS Distro for OpenTelemetry send them: every
/// rule of the translator, a resource per language and platform.
fn foreign_request() -> ExportTraceServiceRequest {
    let java = vec![
        kv("service.name", s("checkout")),
        kv("service.version", s("1.4.2")),
        kv("cloud.provider", s("aws")),
        kv("cloud.platform", s("aws_ec2")),
        kv("host.id", s("i-0abc")),
        kv("cloud.availability_zone", s("us-east-1a")),
        kv("host.type", s("m5.large")),
        kv("telemetry.sdk.name", s("opentelemetry")),
        kv("telemetry.sdk.language", s("java")),
        kv("telemetry.sdk.version", s("1.30.0")),
        kv("telemetry.auto.version", s("1.30.0")),
        kv("aws.log.group.names", s("/app/a&/app/b")),
    ];
    let root = with_events(
        with_status(
            span(
                1,
                None,
                SpanKind::Server,
                "POST /checkout",
                vec![
                    kv("http.method", s("POST")),
                    kv("http.target", s("/checkout?x=1")),
                    kv("http.host", s("shop.example.com")),
                    kv("http.scheme", s("https")),
                    kv("net.host.port", Any::IntValue(443)),
                    kv("http.status_code", Any::IntValue(500)),
                    kv("http.user_agent", s("curl/8.0")),
                    kv("http.client_ip", s("203.0.113.9")),
                    kv("enduser.id", s("alice")),
                    kv("tenant", s("acme")),
                    kv("tenant", s("shadowed")),
                    kv(
                        "aws.xray.annotations",
                        list(vec![s("tenant"), s("missing"), Any::IntValue(3), s("flag")]),
                    ),
                    kv("flag", Any::BoolValue(false)),
                    kv("cart.items", Any::IntValue(3)),
                    kv("cart.total", Any::DoubleValue(12.5)),
                    kv("cart.ratio", Any::DoubleValue(2.0)),
                    kv(
                        "cart.tags",
                        list(vec![
                            s("a"),
                            Any::IntValue(1),
                            Any::DoubleValue(1.0),
                            s("é"),
                        ]),
                    ),
                    kv(
                        "cart.meta",
                        kvlist(vec![
                            kv("k", s("v")),
                            kv("k", s("dup")),
                            kv("n", Any::DoubleValue(0.5)),
                        ]),
                    ),
                    kv("raw", Any::BytesValue(vec![1, 2, 3])),
                    KeyValue {
                        key: "unset".to_owned(),
                        ..Default::default()
                    },
                    kv(
                        "aws.xray.metadata.app",
                        s(
                            r#"{"build": 7, "ratio": 1.0, "list": [1, 2.5, null], "big": 12345678901234567890}"#,
                        ),
                    ),
                    kv("aws.xray.metadata.DEFAULT", s(r#"{"merged": true}"#)),
                    kv("aws.xray.metadata.bad", s("{not json")),
                    kv("aws.xray.metadata.empty", s("null")),
                ],
            ),
            "boom",
        ),
        vec![
            exception(
                "java.lang.IllegalStateException",
                "checkout failed",
                JAVA_STACK,
            ),
            event(
                "message",
                1_700_000_000_900_000_000,
                vec![
                    kv("message.type", s("RECEIVED")),
                    kv("messaging.message_payload_size_bytes", Any::IntValue(1234)),
                ],
            ),
        ],
    );
    let dynamodb = with_events(
        span(
            2,
            Some(1),
            SpanKind::Client,
            "DynamoDB.GetItem",
            vec![
                kv("rpc.system", s("aws-api")),
                kv("rpc.service", s("DynamoDB")),
                kv("rpc.method", s("GetItem")),
                kv("aws.region", s("us-east-1")),
                kv("aws.dynamodb.table_names", list(vec![s("orders")])),
                kv("aws.request_id", s("REQ1")),
                kv("http.status_code", Any::IntValue(429)),
            ],
        ),
        vec![event(
            "HTTP request failure",
            1_700_000_000_200_000_123,
            vec![
                kv("http.response.status_code", Any::IntValue(503)),
                kv("aws.http.error_message", s("slow down")),
            ],
        )],
    );
    let sql = span(
        3,
        Some(1),
        SpanKind::Client,
        "SELECT shop",
        vec![
            kv("db.system", s("mysql")),
            kv("db.name", s("shop")),
            kv(
                "db.connection_string",
                s("jdbc:mysql://db.example.com:3306"),
            ),
            kv("db.statement", s("SELECT 1")),
            kv("db.user", s("app")),
        ],
    );
    let mut queue = span(
        4,
        Some(1),
        SpanKind::Producer,
        "orders send",
        vec![
            kv("aws.span.kind", s("LOCAL_ROOT")),
            kv("aws.local.service", s("checkout")),
            kv("aws.remote.service", s("AWS::SQS")),
            kv("aws.remote.operation", s("SendMessage")),
            kv("rpc.system", s("aws-api")),
            kv(
                "messaging.url",
                s("https://sqs.us-east-1.amazonaws.com/123/q"),
            ),
        ],
    );
    queue.links = vec![Link {
        trace_id: TRACE.to_vec(),
        span_id: 9_u64.to_be_bytes().to_vec(),
        attributes: vec![
            kv("link.kind", s("follows")),
            kv("unset", Any::BoolValue(true)),
        ],
        ..Default::default()
    }];
    let mut consumer = span(
        5,
        Some(1),
        SpanKind::Consumer,
        "orders receive",
        vec![kv("aws.remote.service", s("orders-queue"))],
    );
    consumer.links = vec![Link {
        trace_id: vec![1, 2, 3],
        span_id: vec![4, 5],
        ..Default::default()
    }];
    let client = span(
        6,
        Some(1),
        SpanKind::Client,
        "GET",
        vec![
            kv("http.method", s("GET")),
            kv("http.target", s("/v1")),
            kv("net.peer.name", s("api.example.com")),
            kv("net.peer.port", Any::IntValue(8080)),
            kv("network.peer.address", s("10.0.0.1")),
            kv("http.status_code", Any::IntValue(404)),
        ],
    );
    let internal = with_status(
        span(
            7,
            Some(1),
            SpanKind::Internal,
            "render \u{1F4A5} page (v2)",
            vec![kv("http.status_text", s("I'm a teapot"))],
        ),
        "",
    );

    let python = with_events(
        span(
            10,
            None,
            SpanKind::Server,
            "py",
            vec![kv("url.full", s("http://py.example.com/x"))],
        ),
        vec![exception("ValueError", "bad", PYTHON_STACK)],
    );
    let node = with_events(
        span(11, None, SpanKind::Internal, "job:run", Vec::new()),
        vec![exception("Error", "nope", NODE_STACK)],
    );
    let dotnet = with_events(
        span(12, None, SpanKind::Server, "dotnet", Vec::new()),
        vec![exception("System.Exception", "bad", DOTNET_STACK)],
    );
    let go = with_events(
        span(13, None, SpanKind::Server, "go", Vec::new()),
        vec![exception("panic", "boom", GO_STACK)],
    );
    let fargate_root = span(
        14,
        Some(99),
        SpanKind::Server,
        "GET /items",
        vec![
            kv("url.full", s("https://api.example.com/items?page=2")),
            kv("http.request.method", s("GET")),
            kv("http.response.status_code", Any::IntValue(200)),
            kv("client.address", s("198.51.100.7")),
            kv("user_agent.original", s("Mozilla/5.0")),
        ],
    );
    let fargate_call = span(
        15,
        Some(14),
        SpanKind::Client,
        "GET",
        vec![
            kv("url.full", s("http://inventory:8080/stock")),
            kv("http.request.method", s("GET")),
            kv("http.response.status_code", Any::IntValue(503)),
        ],
    );

    ExportTraceServiceRequest {
        resource_spans: vec![
            resource_spans(
                java,
                vec![root, dynamodb, sql, queue, consumer, client, internal],
            ),
            resource_spans(
                vec![
                    kv("service.name", s("py")),
                    kv("cloud.provider", s("gcp")),
                    kv("telemetry.sdk.language", s("python")),
                ],
                vec![python],
            ),
            resource_spans(
                vec![
                    kv("service.name", s("node")),
                    kv("telemetry.sdk.language", s("nodejs")),
                    kv("telemetry.distro.version", s("0.5.0")),
                ],
                vec![node],
            ),
            resource_spans(
                vec![
                    kv("service.name", s("dotnet")),
                    kv("telemetry.sdk.language", s("dotnet")),
                    kv("cloud.platform", s("aws_elastic_beanstalk")),
                    kv("service.namespace", s("prod")),
                    kv("service.instance.id", s("42")),
                    kv("service.version", s("v1")),
                ],
                vec![dotnet],
            ),
            resource_spans(
                vec![
                    kv("service.name", s("go")),
                    kv("telemetry.sdk.language", s("go")),
                    kv("cloud.platform", s("aws_eks")),
                    kv("k8s.cluster.name", s("c1")),
                    kv("k8s.pod.name", s("p1")),
                    kv("container.id", s("cid")),
                ],
                vec![go],
            ),
            resource_spans(
                vec![
                    kv("service.name", s("api")),
                    kv("cloud.provider", s("aws")),
                    kv("cloud.platform", s("aws_ecs")),
                    kv("aws.ecs.launchtype", s("fargate")),
                    kv("container.name", s("api")),
                    kv("container.id", s("abc123")),
                    kv("aws.ecs.task.arn", s("arn:aws:ecs:us-east-1:123:task/t")),
                    kv("container.image.tag", s("v9")),
                    kv(
                        "aws.log.group.arns",
                        list(vec![s("arn:aws:logs:us-east-1:123:log-group:/ecs/api:*")]),
                    ),
                ],
                vec![fargate_root, fargate_call],
            ),
        ],
    }
}

#[test]
fn spans_of_other_sdks_make_x_ray_documents() {
    let docs = to_documents(&foreign_request());
    // One per span, and two for the local root that is a dependency (PRODUCER).
    assert_eq!(docs.len(), 14, "{docs:#?}");
    let by_id = |id: u64| {
        let id = format!("{id:016x}");
        docs.iter()
            .find(|d| d["id"] == id.as_str())
            .unwrap_or_else(|| panic!("no document {id}: {docs:#?}"))
    };

    let root = by_id(1);
    assert_eq!(root["name"], "checkout");
    assert_eq!(root["trace_id"], "1-654a1b2c-0102030405060708090a0b0c");
    assert_eq!(root["origin"], "AWS::EC2::Instance");
    assert_eq!(root["user"], "alice");
    assert_eq!(root["fault"], true);
    assert_eq!(root["http"]["request"]["method"], "POST");
    assert_eq!(
        root["http"]["request"]["url"],
        "https://shop.example.com/checkout?x=1"
    );
    assert_eq!(root["http"]["request"]["x_forwarded_for"], true);
    assert_eq!(root["http"]["response"]["status"], 500);
    assert_eq!(root["http"]["response"]["content_length"], 1234);
    assert_eq!(
        root["annotations"],
        serde_json::json!({"tenant": "acme", "flag": false})
    );
    assert_eq!(root["metadata"]["app"]["ratio"], 1);
    assert_eq!(
        root["metadata"]["app"]["big"],
        12_345_678_901_234_567_168_u64
    );
    assert_eq!(root["metadata"]["default"]["merged"], true);
    assert_eq!(root["metadata"]["default"]["cart.ratio"], 2);
    assert_eq!(root["metadata"]["default"]["cart.meta"]["k"], "v");
    assert_eq!(root["metadata"]["default"]["raw"], "AQID");
    assert_eq!(
        root["metadata"]["default"]["aws.xray.metadata.bad"],
        "{not json"
    );
    assert!(root["metadata"]["empty"].is_null());
    assert_eq!(root["aws"]["ec2"]["instance_id"], "i-0abc");
    assert_eq!(root["aws"]["xray"]["sdk"], "opentelemetry for java");
    assert_eq!(root["aws"]["xray"]["auto_instrumentation"], true);
    assert_eq!(root["aws"]["cloudwatch_logs"][1]["log_group"], "/app/b");
    assert_eq!(root["service"]["version"], "1.4.2");
    let exceptions = root["cause"]["exceptions"].as_array().expect("exceptions");
    assert_eq!(exceptions.len(), 2);
    assert_eq!(exceptions[0]["stack"][1]["label"], "com.shop.Main.main");
    assert_eq!(exceptions[0]["cause"], exceptions[1]["id"]);
    assert_eq!(exceptions[1]["message"], "disk full  on /var");

    let dynamodb = by_id(2);
    assert_eq!(dynamodb["type"], "subsegment");
    assert_eq!(dynamodb["parent_id"], "0000000000000001");
    assert_eq!(dynamodb["name"], "DynamoDB");
    assert_eq!(dynamodb["namespace"], "aws");
    assert_eq!(dynamodb["error"], true);
    assert_eq!(dynamodb["throttle"], true);
    assert_eq!(dynamodb["aws"]["operation"], "GetItem");
    assert_eq!(dynamodb["aws"]["table_name"], "orders");
    assert!(dynamodb["aws"].get("ec2").is_none());
    assert!(dynamodb.get("origin").is_none());
    assert_eq!(
        dynamodb["cause"]["exceptions"][0]["message"],
        "503@1700000000.200000@slow down"
    );

    let sql = by_id(3);
    assert_eq!(sql["name"], "shop@db.example.com");
    assert_eq!(sql["namespace"], "remote");
    assert_eq!(
        sql["sql"]["connection_string"],
        "jdbc:mysql://db.example.com:3306/shop"
    );
    assert_eq!(sql["sql"]["url"], "SELECT shop");

    let dependency = by_id(4);
    assert_eq!(dependency["name"], "SQS");
    assert_eq!(dependency["type"], "subsegment");
    assert_eq!(
        dependency["aws"]["queue_url"],
        "https://sqs.us-east-1.amazonaws.com/123/q"
    );
    assert_eq!(dependency["links"][0]["id"], "0000000000000009");
    let service = docs
        .iter()
        .find(|d| d["id"] == dependency["parent_id"])
        .expect("the service segment of the local root");
    assert_eq!(service["name"], "checkout");
    assert!(service.get("type").is_none());
    assert!(service.get("links").is_none());

    assert_eq!(by_id(5)["namespace"], "remote");
    assert_eq!(
        by_id(5)["links"][0]["trace_id"],
        format!("1-00000000-{}010203", "0".repeat(18))
    );
    assert_eq!(by_id(5)["links"][0]["id"], "0405");
    let client = by_id(6);
    assert_eq!(client["name"], "api.example.com");
    assert_eq!(
        client["http"]["request"]["url"],
        "http://api.example.com:8080/v1"
    );
    assert_eq!(client["http"]["request"]["client_ip"], "10.0.0.1");
    assert!(client["http"]["request"].get("x_forwarded_for").is_none());
    assert_eq!(client["error"], true);
    let internal = by_id(7);
    assert_eq!(internal["name"], "render  page v2");
    assert_eq!(
        internal["cause"]["exceptions"][0]["message"],
        "I'm a teapot"
    );

    assert!(by_id(10).get("origin").is_none());
    assert!(by_id(10).get("aws").is_none());
    assert_eq!(
        by_id(10)["cause"]["exceptions"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(by_id(11)["name"], "job:run");
    assert_eq!(by_id(11)["cause"]["exceptions"][0]["stack"][0]["line"], 10);
    assert_eq!(by_id(11)["aws"]["xray"]["auto_instrumentation"], true);
    assert_eq!(by_id(12)["aws"]["elastic_beanstalk"]["deployment_id"], 42);
    assert_eq!(by_id(12)["cause"]["exceptions"][0]["stack"][0]["line"], 12);
    assert_eq!(by_id(13)["aws"]["eks"]["cluster_name"], "c1");
    assert_eq!(by_id(13)["origin"], "AWS::EKS::Container");
    let fargate = by_id(14);
    assert_eq!(fargate["origin"], "AWS::ECS::Fargate");
    assert_eq!(fargate["service"]["version"], "v9");
    assert_eq!(fargate["aws"]["ecs"]["launch_type"], "fargate");
    assert_eq!(
        fargate["aws"]["cloudwatch_logs"][0]["log_group"],
        "/ecs/api"
    );
    assert_eq!(fargate["http"]["request"]["client_ip"], "198.51.100.7");
    assert_eq!(fargate["http"]["request"]["x_forwarded_for"], true);
    assert_eq!(fargate["parent_id"], "0000000000000063");
    assert!(fargate.get("type").is_none());
    let call = by_id(15);
    assert_eq!(call["name"], "GET");
    assert_eq!(call["namespace"], "remote");
    assert_eq!(call["fault"], true);
    assert!(call.get("origin").is_none());
}

#[test]
fn hostile_spans_give_what_can_be_kept() {
    // A value nested far deeper than anything decoded from the wire.
    let mut deep = Any::IntValue(1);
    for i in 0..400 {
        deep = if i % 2 == 1 {
            list(vec![deep])
        } else {
            kvlist(vec![kv("k", deep)])
        };
    }
    let nested_json = "[".repeat(1000) + &"]".repeat(1000);
    let good = span(
        1,
        None,
        SpanKind::Server,
        "ok",
        vec![
            kv("deep", deep),
            kv(
                "aws.xray.metadata.deep",
                s(&format!("{{\"a\": {nested_json}}}")),
            ),
            kv(
                "aws.xray.metadata.AWS.xray.segment",
                s(r#"{"/a/b": 1, "bad": 2, "/x/0/y": 3, "json:/z": "{"}"#),
            ),
        ],
    );
    let mut short_trace = span(2, None, SpanKind::Server, "short trace", Vec::new());
    short_trace.trace_id.truncate(8);
    let mut long_span = span(3, None, SpanKind::Server, "long span", Vec::new());
    long_span.span_id.push(0);
    let mut zero_trace = span(4, None, SpanKind::Server, "zero trace", Vec::new());
    zero_trace.trace_id = vec![0; 16];
    let mut bad_parent = span(5, Some(1), SpanKind::Internal, "bad parent", Vec::new());
    bad_parent.parent_span_id.truncate(2);
    let request = ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans::default(),
            resource_spans(
                Vec::new(),
                vec![short_trace, long_span, good, zero_trace, bad_parent],
            ),
        ],
    };
    let docs = to_documents(&request);
    assert_eq!(docs.len(), 1, "{docs:#?}");
    let doc = &docs[0];
    assert_eq!(doc["name"], "ok");
    assert!(doc["metadata"]["default"]["deep"].is_array());
    assert!(doc["metadata"]["default"]["aws.xray.metadata.deep"].is_string());
    assert_eq!(doc["a"]["b"], 1);
    // Missing objects on the way are created, as for any pointer.
    assert_eq!(doc["x"]["0"]["y"], 3);
    assert!(doc.get("z").is_none());
}

// ===== against the Python translator =====

/// Makes sure python3 can decode OTLP (the `opentelemetry-proto` package); CI installs it.
fn ensure_decoder() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        xray_testkit::ensure_python_package(
            "import opentelemetry.proto.collector.trace.v1.trace_service_pb2",
            "opentelemetry-proto",
        )
    });
}

/// What `tests/otlp/to_segments.py` makes of the requests: one flat document per span.
fn python_documents(requests: &[ExportTraceServiceRequest]) -> Vec<Value> {
    ensure_decoder();
    let mut lines = String::new();
    for request in requests {
        let bytes = request.encode_to_vec();
        lines.push_str(&base64::engine::general_purpose::STANDARD.encode(bytes));
        lines.push('\n');
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/otlp/to_segments.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(lines.as_bytes())
        .expect("the script reads its input");
    let out = child.wait_with_output().expect("the script ends");
    assert!(
        out.status.success(),
        "the translator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout).expect("a JSON array") {
        Value::Array(docs) => docs,
        other => panic!("not an array: {other}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Replaces the ids both translators draw at random (exception ids and their `cause` links,
/// the id of a split service segment) with a placeholder.
fn mask_random_ids(docs: &mut [Value], known: &HashSet<String>) {
    for doc in docs {
        for key in ["id", "parent_id"] {
            if let Some(Value::String(id)) = doc.get_mut(key)
                && !known.contains(id.as_str())
            {
                *id = "<random>".to_owned();
            }
        }
        if let Some(Value::Array(exceptions)) = doc.pointer_mut("/cause/exceptions") {
            for exc in exceptions.iter_mut().filter_map(Value::as_object_mut) {
                for key in ["id", "cause"] {
                    if exc.contains_key(key) {
                        exc.insert(key.to_owned(), Value::from("<random>"));
                    }
                }
            }
        }
    }
}

#[test]
fn rust_and_the_python_translator_agree() {
    let scenarios = scenarios();
    let mut requests: Vec<ExportTraceServiceRequest> =
        scenarios.iter().map(|(_, doc)| request_for(doc)).collect();
    requests.push(foreign_request());
    let known: HashSet<String> = requests
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .flat_map(|span| [hex(&span.span_id), hex(&span.parent_span_id)])
        .collect();

    let mut rust: Vec<Value> = requests.iter().flat_map(to_documents).collect();
    let mut python = python_documents(&requests);
    mask_random_ids(&mut rust, &known);
    mask_random_ids(&mut python, &known);
    assert_eq!(
        rust.len(),
        python.len(),
        "rust: {rust:#?}\npython: {python:#?}"
    );
    let failures: Vec<String> = rust
        .iter()
        .zip(&python)
        .filter(|(r, p)| r != p)
        .map(|(r, p)| format!("rust:   {r:#}\npython: {p:#}"))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
