//! The Lambda SQS record helpers, from a table of records: which continue their producer's
//! trace, and which are sampled in a batch (the official SDKs' oversampling mitigation).

use serde_json::{Value, json};
use xray_aws_sdk::sqs;
use xray_sdk::{InMemoryEmitter, Recorder};

const PRODUCER: &str = "1-5759e988-bd862e3fe1be46a994272793";
const INVOCATION: &str =
    "Root=1-67891233-abcdef012345678912345678;Parent=463ac35c9f6413ad;Sampled=1";

struct Case {
    name: &'static str,
    /// The record's `attributes.AWSTraceHeader`; `Value::Null` for a record without one.
    attribute: Value,
    /// Whether its work in a sampled invocation is sampled.
    sampled: bool,
    /// Whether its own segment continues the producer's trace.
    continues: bool,
}

fn header(rest: &str) -> Value {
    json!(format!("Root={PRODUCER};Parent=53995c3f42cd8ad8{rest}"))
}

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    vec![
        Case { name: "sampled",          attribute: header(";Sampled=1"), sampled: true,  continues: true },
        Case { name: "not sampled",      attribute: header(";Sampled=0"), sampled: false, continues: true },
        Case { name: "no decision",      attribute: header(""),           sampled: false, continues: true },
        Case { name: "decision asked",   attribute: header(";Sampled=?"), sampled: false, continues: true },
        Case { name: "no attribute",     attribute: Value::Null,          sampled: false, continues: false },
        Case { name: "not a string",     attribute: json!(7),             sampled: false, continues: false },
        Case { name: "not a header",     attribute: json!("Sampled=1"),   sampled: true,  continues: false },
    ]
}

fn record(attribute: &Value) -> Value {
    let mut attributes = json!({ "ApproximateReceiveCount": "1" });
    if !attribute.is_null() {
        attributes[sqs::AWS_TRACE_HEADER] = attribute.clone();
    }
    json!({
        "messageId": "m-1",
        "body": "order 42",
        "attributes": attributes,
        "eventSource": "aws:sqs",
    })
}

#[test]
fn records_continue_and_sample_as_their_attribute_says() {
    let emitter = InMemoryEmitter::new();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_emitter(emitter.clone())
        .build()
        .unwrap();
    let invocation = recorder.begin_lambda_invocation(Some(INVOCATION));
    for case in cases() {
        let record = record(&case.attribute);
        let sent = |name: &str| {
            let docs = xray_testkit::checked(emitter.documents());
            docs.into_iter().find(|d| d["name"] == name)
        };

        let work = sqs::begin_record_subsegment(&invocation, case.name, &record);
        assert_eq!(work.is_recording(), case.sampled, "{}", case.name);
        assert_eq!(work.trace_id(), invocation.trace_id(), "{}", case.name);
        work.end();
        assert_eq!(sent(case.name).is_some(), case.sampled, "{}", case.name);

        let name = format!("worker {}", case.name);
        let segment = sqs::begin_record_segment(&recorder, &name, &record);
        let continued = segment.trace_id().to_string() == PRODUCER;
        assert_eq!(continued, case.continues, "{}", case.name);
        let recorded = segment.is_recording();
        segment.end();
        if let Some(doc) = sent(&name) {
            assert!(recorded, "{}", case.name);
            if case.continues {
                assert_eq!(doc["parent_id"], "53995c3f42cd8ad8", "{}", case.name);
            }
        }
    }
}

/// The official SDKs look for the text `Sampled=1` anywhere in the attribute; the `Sampled`
/// field is what counts here.
#[test]
fn a_sampled_1_inside_another_field_does_not_sample_the_record() {
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_emitter(InMemoryEmitter::new())
        .build()
        .unwrap();
    let invocation = recorder.begin_lambda_invocation(Some(INVOCATION));
    let record = record(&header(";Sampled=0;Note=Sampled=1"));
    let work = sqs::begin_record_subsegment(&invocation, "process-message", &record);
    assert!(!work.is_recording());
}
