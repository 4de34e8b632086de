//! The `segment_docs` conformance vectors: each scenario is built with the document API,
//! serialized, validated against the segment schema, and checked against the file's
//! JSON-pointer assertions. Each file's example document must also survive a round trip
//! through our types and pass the same assertions.

mod support;

use serde_json::Value;
use support::scenarios::build;
use support::{Schema, check_assertions, load_json, to_checked_json};
use xray_sdk::Document;

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
    use xray_sdk::document::{CloudwatchLogs, Ecs};
    use xray_sdk::transport::{
        DAEMON_HEADER, Finished, FinishedKind, OtlpUdpTransport, Transport, UdpEmitter,
    };
    use xray_sdk::{Cause, Document, SegmentId, TraceId};

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
