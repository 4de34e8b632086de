//! The `segment_docs` conformance vectors: each scenario is built with the document API,
//! serialized, validated against the segment schema, and checked against the file's
//! JSON-pointer assertions. Each file's example document must also survive a round trip
//! through our types and pass the same assertions.

mod support;

use std::backtrace::Backtrace;
use std::fmt;

use serde_json::Value;
use support::{Schema, check_assertions, load_json, to_checked_json};
use xray_core::{
    AnnotationValue, Cause, Clock, Document, HttpRequest, ManualClock, Namespace, SegmentId, Sql,
    TraceId, XraySdk, seconds_from_micros,
};

/// The clock every scenario starts from: 2016-11-04T21:02:41.271Z, the vectors' start time.
fn clock() -> ManualClock {
    ManualClock::new(1_478_293_361_271_000)
}

fn now(clock: &ManualClock) -> f64 {
    seconds_from_micros(clock.now_micros())
}

/// A segment named `name`, started now, with a fresh trace id.
fn segment(name: &str, clock: &ManualClock) -> Document {
    let mut doc = Document::new(name, SegmentId::new(), now(clock));
    doc.set_trace_id(TraceId::new());
    doc
}

fn end(doc: &mut Document, clock: &ManualClock, after_micros: u64) {
    clock.advance_micros(after_micros);
    doc.set_end_time(now(clock));
}

#[derive(Debug)]
struct TestException(&'static str);

impl fmt::Display for TestException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for TestException {}

/// Builds the scenario of one vector file (its `scenario` prose, with values from its example).
fn build(file: &str, vector: &Value) -> Document {
    let clock = clock();
    match file {
        "01_segment_closed_minimal.json" => {
            let mut doc = segment("test", &clock);
            end(&mut doc, &clock, 178_000);
            doc
        }
        "03_segment_http_500_fault.json" => {
            let mut doc = segment("my-service", &clock);
            let mut req = HttpRequest::default();
            req.method = Some("GET".into());
            req.set_url("http://localhost/fault");
            req.client_ip = Some("127.0.0.1".into());
            req.user_agent = Some("curl/7.64.1".into());
            doc.http_mut().request = Some(req);
            doc.set_http_status(500);
            if let Some(resp) = doc.http_mut().response.as_mut() {
                resp.content_length = Some(0);
            }
            doc.aws_mut().xray = Some(XraySdk::rust());
            end(&mut doc, &clock, 178_000);
            doc
        }
        "05_segment_exception_cause.json" => {
            let mut doc = segment("test", &clock);
            let one = TestException("test message one");
            let cause = Cause::from_error_with_type(&one, "TestException")
                .with_remote(true)
                .with_backtrace(&Backtrace::force_capture());
            doc.add_cause(cause);
            let two = TestException("test message two");
            let cause = Cause::from_error_with_type(&two, "TestException")
                .with_backtrace(&Backtrace::force_capture());
            doc.add_cause(cause);
            end(&mut doc, &clock, 178_000);
            doc
        }
        "07_annotations.json" => {
            let mut doc = segment("test", &clock);
            let inputs = vector["inputs"].as_array().expect("inputs");
            for pair in inputs {
                let (Some(key), Some(value)) = (pair[0].as_str(), pair.get(1)) else {
                    panic!("bad input {pair}");
                };
                // Bad keys and non-scalar values are refused; the assertions check they are gone.
                if let Ok(value) = AnnotationValue::try_from(value.clone()) {
                    let _ = doc.put_annotation(key, value);
                }
            }
            end(&mut doc, &clock, 178_000);
            doc
        }
        "09_subsegment_aws_dynamodb_getitem.json" => {
            let mut doc = Document::new("DynamoDB", SegmentId::new(), now(&clock));
            doc.set_namespace(Namespace::Aws);
            let aws = doc.aws_mut();
            aws.operation = Some("GetItem".into());
            aws.region = Some("us-east-1".into());
            aws.request_id = Some("123".into());
            aws.retries = Some(0);
            assert!(aws.insert_field("table_name", "TestTableName"));
            assert!(aws.insert_field("consistent_read", true));
            assert!(aws.insert_field("consumed_capacity", 10));
            doc.set_http_status(200);
            end(&mut doc, &clock, 50_000);
            doc
        }
        "11_subsegment_remote_http.json" => {
            let url = vector["input_url"].as_str().expect("input_url");
            let mut doc = Document::new("httpbin.org", SegmentId::new(), now(&clock));
            doc.set_namespace(Namespace::Remote);
            let mut req = HttpRequest::default();
            req.method = Some("GET".into());
            req.set_url(url);
            doc.http_mut().request = Some(req);
            doc.set_http_status(200);
            if let Some(resp) = doc.http_mut().response.as_mut() {
                resp.content_length = Some(20);
            }
            end(&mut doc, &clock, 50_000);
            doc
        }
        "13_segment_with_embedded_subsegment.json" => {
            let mut doc = segment("test", &clock);
            let mut child = Document::new("test", SegmentId::new(), now(&clock));
            end(&mut child, &clock, 500_000);
            doc.add_subsegment(child);
            end(&mut doc, &clock, 500_000);
            doc
        }
        "15_subsegment_sql.json" => {
            let mut doc = Document::new("test", SegmentId::new(), now(&clock));
            doc.set_namespace(Namespace::Remote);
            let mut sql = Sql::default();
            sql.url = Some(
                "jdbc:postgresql://aawijb5u25wdoy.cpamxznpdoq8.us-west-2.rds.amazonaws.com:5432/ebdb"
                    .into(),
            );
            sql.preparation = Some("statement".into());
            sql.database_type = Some("PostgreSQL".into());
            sql.database_version = Some("9.5.4".into());
            sql.driver_version = Some("PostgreSQL 9.4.1211.jre7".into());
            sql.user = Some("dbuser".into());
            sql.sanitized_query = Some("SELECT  *  FROM  customers  WHERE  customer_id=?;".into());
            doc.set_sql(sql);
            end(&mut doc, &clock, 1_000_000);
            doc
        }
        other => panic!("no scenario builder for {other}: add one"),
    }
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

#[test]
fn built_scenarios_pass_the_vector_assertions() {
    let schema = Schema::get();
    let mut failures = Vec::new();
    for file in vector_files() {
        let vector = load_json(&format!("segment_docs/{file}"));
        let doc = build(&file, &vector);
        let json = to_checked_json(schema, &doc);
        for f in check_assertions(&json, assertions(&vector)) {
            failures.push(format!("{file}: {f}\n{json:#}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn example_documents_round_trip_through_our_types() {
    let schema = Schema::get();
    let mut failures = Vec::new();
    for file in vector_files() {
        let vector = load_json(&format!("segment_docs/{file}"));
        let doc: Document = serde_json::from_value(vector["document"].clone())
            .unwrap_or_else(|e| panic!("{file}: example does not parse: {e}"));
        let json = to_checked_json(schema, &doc);
        for f in check_assertions(&json, assertions(&vector)) {
            failures.push(format!("{file}: {f}\n{json:#}"));
        }
        // Parsing what we wrote gives the same document back.
        let again: Document = serde_json::from_value(json).expect("our output parses");
        if again != doc {
            failures.push(format!("{file}: round trip changed the document"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_assertion_checker_rejects_documents_that_break_assertions() {
    // Each vector's example, with every asserted path removed or changed, must fail at least
    // one assertion: the checker is not vacuous.
    for file in vector_files() {
        let vector = load_json(&format!("segment_docs/{file}"));
        let mut broken = vector["document"].clone();
        for a in assertions(&vector) {
            let path = a["path"].as_str().expect("path");
            if let Some(v) = broken.pointer_mut(path) {
                *v = Value::String("\u{1F4A5}".into());
            } else if let Some((parent, leaf)) = path.rsplit_once('/')
                && let Some(Value::Object(o)) = broken.pointer_mut(parent)
            {
                o.insert(leaf.to_owned(), Value::String("\u{1F4A5}".into()));
            }
        }
        let failures = check_assertions(&broken, assertions(&vector));
        assert!(!failures.is_empty(), "{file}: a broken document passed");
    }
}

// ===== the same scenarios as OpenTelemetry spans =====

/// Each scenario goes out through `OtlpUdpTransport` on a real UDP socket, is decoded by an
/// independent implementation of X-Ray's span-to-segment translator in Python (with the
/// `opentelemetry-proto` package's own decoder), and must come back as the document it was:
/// every assertion holds, and nothing is lost.
#[cfg(feature = "otlp")]
mod otlp {
    use std::io::Write as _;
    use std::net::UdpSocket;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use serde_json::Value;
    use xray_core::{
        Cause, CloudwatchLogs, DAEMON_HEADER, Document, Ecs, Finished, FinishedKind,
        OtlpUdpTransport, SegmentId, TraceId, Transport, UdpEmitter,
    };

    use super::support::{Schema, check_assertions, load_json, to_checked_json};
    use super::{assertions, build, vector_files};

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

    /// Sends `doc` as spans over UDP and returns what the Python translator makes of them:
    /// one flat document per span.
    fn through_spans(doc: &Document) -> Vec<Value> {
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        sink.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let transport = OtlpUdpTransport::new(
            UdpEmitter::new(sink.local_addr().unwrap()).unwrap(),
            "scenario",
        );
        let trace_id = doc.trace_id().unwrap_or_default();
        let kind = if doc.is_independent() {
            FinishedKind::Streamed
        } else {
            FinishedKind::Segment
        };
        transport.export(&Finished::from_document(kind, trace_id, doc));
        let mut lines = String::new();
        let mut buf = vec![0u8; 70_000];
        while let Ok(n) = sink.recv(&mut buf) {
            let body = buf[..n]
                .strip_prefix(DAEMON_HEADER)
                .and_then(|b| b.strip_prefix(b"T1S"))
                .expect("T1S datagram");
            lines.push_str(std::str::from_utf8(body).expect("base64 is ASCII"));
            lines.push('\n');
        }
        assert_eq!(transport.stats().lost(), 0, "{:?}", transport.stats());
        ensure_decoder();
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
            .unwrap()
            .write_all(lines.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
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

    fn round_trip(name: &str, doc: &Document, failures: &mut Vec<String>) -> Value {
        let sent = to_checked_json(Schema::get(), doc);
        let flat = through_spans(doc);
        let mut back = nest(&flat, &doc.id().to_string());
        // A scenario of a lone embedded subsegment has no trace of its own: every span needs
        // one, so it was sent under a fresh trace id, which is not part of the document.
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
        back
    }

    #[test]
    fn every_scenario_survives_the_span_round_trip() {
        let mut failures = Vec::new();
        for file in vector_files() {
            let vector = load_json(&format!("segment_docs/{file}"));
            let doc = build(&file, &vector);
            let back = round_trip(&file, &doc, &mut failures);
            for f in check_assertions(&back, assertions(&vector)) {
                failures.push(format!("{file}: {f}\n{back:#}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// What the CloudWatch agent's round trip is known to lose: `cloudwatch_logs` and the ECS
    /// origin (with the `ecs` block), besides a cause with a stack.
    #[test]
    fn what_the_cloudwatch_agent_loses_survives() {
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
        doc.add_cause(
            Cause::from_typed_error(&err)
                .with_backtrace(&std::backtrace::Backtrace::force_capture()),
        );
        let mut failures = Vec::new();
        let back = round_trip("ecs", &doc, &mut failures);
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert_eq!(back["origin"], "AWS::ECS::Container");
        assert_eq!(back["aws"]["cloudwatch_logs"][0]["log_group"], "/ecs/api");
    }
}
