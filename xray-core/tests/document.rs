//! The document API: names, times, annotations, metadata, status flags, causes, and the JSON
//! it produces. Every document built here is validated against the segment schema.

mod support;

use std::backtrace::Backtrace;
use std::error::Error;
use std::fmt;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use serde_json::{Value, json};
use support::{Schema, to_checked_json};
use xray_sdk::document::{
    AnnotationError, Aws, CloudwatchLogs, Ec2, Ecs, Eks, ElasticBeanstalk, Exception, HttpRequest,
    Service, SpanLink, Sql, StackFrame, StatusFlags, XRaySdk, seconds_from_micros,
};
use xray_sdk::{AnnotationValue, Cause, Document, Namespace, SegmentId, TraceId};

const T0: f64 = 1_735_689_600.120_511;

fn doc(name: &str) -> Document {
    let mut d = Document::new(name, SegmentId::new(), T0);
    d.set_trace_id(TraceId::new());
    d
}

/// The JSON of `d`, after checking it has no null and passes the segment schema.
fn json_of(d: &Document) -> Value {
    to_checked_json(Schema::get(), d)
}

// ===== size =====

#[test]
fn an_open_document_stays_within_184_bytes() {
    let size = std::mem::size_of::<Document>();
    assert!(size <= 184, "Document is {size} bytes");
}

// ===== names =====

#[test]
fn names_lose_characters_the_service_refuses() {
    let d = doc("a?b;c*(d)!$~^<>e\\f\tg\"h'i");
    assert_eq!(d.name(), "abcdefghi");
    let kept = "Orders API_v2.1:/x%&#=+-@ é 注文 ٣";
    assert_eq!(doc(kept).name(), kept);
    json_of(&doc(kept));
}

#[test]
fn names_are_cut_to_200_characters_on_a_char_boundary() {
    let long = "é".repeat(250);
    let d = doc(&long);
    assert_eq!(d.name().chars().count(), 200);
    assert_eq!(d.name(), "é".repeat(200));

    // Refused characters do not count towards the 200.
    let mixed = "日!".repeat(300);
    assert_eq!(doc(&mixed).name(), "日".repeat(200));

    let exact = "x".repeat(200);
    assert_eq!(doc(&exact).name(), exact);
    json_of(&doc(&long));
}

proptest! {
    /// ASCII names, the common case, against the documented rule.
    #[test]
    fn ascii_names_keep_exactly_the_accepted_characters(name in "[\\x00-\\x7f]{0,220}") {
        let kept: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || " _.:/%&#=+-@".contains(*c))
            .take(200)
            .collect();
        let expected = if kept.is_empty() { "unnamed".to_owned() } else { kept };
        let d = doc(&name);
        prop_assert_eq!(d.name(), expected.as_str());
    }
}

#[test]
fn names_are_never_empty() {
    for bad in ["", "???", "\t\n", "<>()"] {
        let mut d = doc(bad);
        assert!(!d.name().is_empty(), "{bad:?}");
        json_of(&d);
        d.set_name(bad);
        assert!(!d.name().is_empty(), "{bad:?}");
    }
    let mut d = doc("first");
    d.set_name("second!");
    assert_eq!(d.name(), "second");
}

// ===== times =====

#[test]
fn times_are_written_with_microsecond_precision() {
    let mut d = Document::new(
        "t",
        SegmentId::new(),
        seconds_from_micros(1_735_689_600_120_511),
    );
    d.set_trace_id(TraceId::new());
    d.set_end_time(seconds_from_micros(1_735_689_600_318_204));
    let text = serde_json::to_string(&d).unwrap();
    assert!(text.contains(r#""start_time":1735689600.120511"#), "{text}");
    assert!(text.contains(r#""end_time":1735689600.318204"#), "{text}");
    json_of(&d);

    // Float noise from arithmetic done elsewhere is rounded away.
    let noisy = 1_735_689_600.0 + 0.120_511 + 1e-8;
    d.set_start_time(noisy);
    let text = serde_json::to_string(&d).unwrap();
    assert!(text.contains(r#""start_time":1735689600.120511"#), "{text}");
}

#[test]
fn non_finite_times_never_reach_the_wire_as_null() {
    let mut d = Document::new("t", SegmentId::new(), f64::NAN);
    d.set_trace_id(TraceId::new());
    d.set_end_time(f64::INFINITY);
    let v = json_of(&d);
    assert_eq!(v["start_time"], json!(0.0));
    assert_eq!(v["end_time"], json!(0.0));
}

proptest! {
    #[test]
    fn any_epoch_microsecond_prints_exactly(micros in 1_000_000_000_000_000_u64..4_000_000_000_000_000) {
        let mut d = Document::new("t", SegmentId::new(), seconds_from_micros(micros));
        d.set_end_time(seconds_from_micros(micros + 1));
        let text = serde_json::to_string(&d).unwrap();
        json_of(&d);
        let expect = |m: u64| {
            let frac = format!("{:06}", m % 1_000_000);
            let frac = frac.trim_end_matches('0');
            format!("{}.{}", m / 1_000_000, if frac.is_empty() { "0" } else { frac })
        };
        let start = format!(r#""start_time":{}"#, expect(micros));
        let end = format!(r#""end_time":{}"#, expect(micros + 1));
        prop_assert!(text.contains(&start), "{} not in {}", start, text);
        prop_assert!(text.contains(&end), "{} not in {}", end, text);
    }
}

#[test]
fn in_progress_and_end_time_exclude_each_other() {
    let mut d = doc("t");
    d.set_in_progress(true);
    let v = json_of(&d);
    assert_eq!(v["in_progress"], json!(true));
    assert!(v.get("end_time").is_none());

    d.set_end_time(T0 + 1.0);
    assert!(!d.in_progress());
    let v = json_of(&d);
    assert!(v.get("in_progress").is_none());
    assert!(v["end_time"].is_number());

    d.set_in_progress(true);
    assert_eq!(d.end_time(), None);
}

// ===== annotations =====

#[test]
fn annotation_keys_follow_the_service_rules() {
    let mut d = doc("t");
    for good in ["a", "A_1", "_", &"k".repeat(500)] {
        assert_eq!(d.put_annotation(good, 1), Ok(()), "{good}");
    }
    for bad in ["", "with-dash", "with.dot", "spa ce", "é", &"k".repeat(501)] {
        assert_eq!(
            d.put_annotation(bad, 1),
            Err(AnnotationError::InvalidKey),
            "{bad}"
        );
    }
    let v = json_of(&d);
    assert_eq!(v["annotations"].as_object().unwrap().len(), 4);
}

#[test]
fn annotation_values_are_checked() {
    let mut d = doc("t");
    assert_eq!(
        d.put_annotation("nan", f64::NAN),
        Err(AnnotationError::NonFiniteNumber)
    );
    assert_eq!(
        d.put_annotation("inf", f64::INFINITY),
        Err(AnnotationError::NonFiniteNumber)
    );
    assert_eq!(
        d.put_annotation("ninf", f32::NEG_INFINITY),
        Err(AnnotationError::NonFiniteNumber)
    );
    assert_eq!(
        AnnotationValue::try_from(json!([1])),
        Err(AnnotationError::UnsupportedType)
    );
    assert_eq!(
        AnnotationValue::try_from(Value::Null),
        Err(AnnotationError::UnsupportedType)
    );
    // Nothing was stored, so there is no annotations object at all.
    assert!(json_of(&d).get("annotations").is_none());

    d.put_annotation("big", u64::MAX).unwrap();
    d.put_annotation("neg", -5_i64).unwrap();
    d.put_annotation("f", 0.25_f32).unwrap();
    d.put_annotation("yes", true).unwrap();
    d.put_annotation("s", "text").unwrap();
    let v = json_of(&d);
    assert_eq!(
        serde_json::to_string(&v["annotations"]).unwrap(),
        r#"{"big":18446744073709551615,"f":0.25,"neg":-5,"s":"text","yes":true}"#
    );
}

#[test]
fn long_annotation_strings_are_cut_to_1000_characters() {
    let mut d = doc("t");
    d.put_annotation("s", "ü".repeat(1500)).unwrap();
    let Some(AnnotationValue::String(s)) = d.annotations().and_then(|a| a.get("s")) else {
        panic!("missing");
    };
    assert_eq!(s.chars().count(), 1000);
    assert!(s.chars().all(|c| c == 'ü'));
    json_of(&d);
}

#[test]
fn annotations_keep_insertion_order_and_replace_repeated_keys() {
    let mut d = doc("t");
    d.put_annotation("zeta", 1).unwrap();
    d.put_annotation("alpha", 2).unwrap();
    d.put_annotation("zeta", "again").unwrap();
    let keys: Vec<&str> = d.annotations().unwrap().iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["zeta", "alpha"]);
    let text = serde_json::to_string(&d).unwrap();
    assert!(
        text.contains(r#""annotations":{"zeta":"again","alpha":2}"#),
        "{text}"
    );
    json_of(&d);
}

/// Collects the level of every event, to see that refusals are logged.
#[derive(Clone, Default)]
struct Levels(Arc<Mutex<Vec<tracing::Level>>>);

impl tracing::Subscriber for Levels {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        self.0.lock().unwrap().push(*event.metadata().level());
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn refused_annotations_and_metadata_are_logged_as_warnings() {
    let levels = Levels::default();
    tracing::subscriber::with_default(levels.clone(), || {
        let mut d = doc("t");
        d.put_annotation("ok", 1).unwrap();
        assert!(d.put_annotation("bad key", 1).is_err());
        assert!(d.put_metadata_in("AWS.x", "k", &1).is_err());
        json_of(&d);
    });
    let warns = levels
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|l| **l == tracing::Level::WARN)
        .count();
    assert_eq!(warns, 2);
}

// ===== metadata =====

#[test]
fn metadata_goes_to_default_and_refuses_reserved_namespaces() {
    let mut d = doc("t");
    d.put_metadata("basket", &json!({"items": 3})).unwrap();
    d.put_metadata_in("orders", "ids", &[1, 2, 3]).unwrap();
    d.put_metadata_in("orders", "ids", &[4]).unwrap();
    d.put_metadata_in("AWSish", "k", &"not reserved").unwrap();
    let err = d.put_metadata_in("AWS.custom", "k", &1).unwrap_err();
    assert!(err.is_reserved_namespace());
    assert!(err.source().is_none());

    d.put_reserved_metadata("AWS.SDK", "operation", &"GetItem")
        .unwrap();

    let v = json_of(&d);
    assert_eq!(v["metadata"]["default"]["basket"]["items"], json!(3));
    assert_eq!(v["metadata"]["orders"]["ids"], json!([4]));
    assert_eq!(v["metadata"]["AWS.SDK"]["operation"], json!("GetItem"));
    assert!(v["metadata"].get("AWS.custom").is_none());
}

#[test]
fn unserializable_metadata_is_a_typed_error() {
    let mut map = std::collections::HashMap::new();
    map.insert((1, 2), "tuple keys cannot be JSON object keys");
    let mut d = doc("t");
    let err = d.put_metadata("m", &map).unwrap_err();
    assert!(!err.is_reserved_namespace());
    assert!(err.source().is_some());
    assert!(json_of(&d).get("metadata").is_none());
}

// ===== status flags =====

#[test]
#[rustfmt::skip]
fn status_codes_map_to_flags() {
    // status, error, throttle, fault
    let table = [
        (100, false, false, false),
        (200, false, false, false),
        (302, false, false, false),
        (399, false, false, false),
        (400, true,  false, false),
        (404, true,  false, false),
        (428, true,  false, false),
        (429, true,  true,  false),
        (430, true,  false, false),
        (499, true,  false, false),
        (500, false, false, true),
        (503, false, false, true),
        (599, false, false, true),
        (600, false, false, false),
    ];
    for (status, error, throttle, fault) in table {
        let f = StatusFlags::from_status(status);
        assert_eq!((f.error, f.throttle, f.fault), (error, throttle, fault), "{status}");

        let mut d = doc("t");
        d.set_http_status(status);
        let v = json_of(&d);
        assert_eq!(v["http"]["response"]["status"], json!(status));
        for (field, want) in [("error", error), ("throttle", throttle), ("fault", fault)] {
            let got = v.get(field).cloned();
            assert_eq!(got, want.then_some(json!(true)), "{status} {field}");
        }
    }
}

// ===== causes =====

#[derive(Debug)]
struct Leaf;
impl fmt::Display for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection refused")
    }
}
impl Error for Leaf {}

#[derive(Debug)]
struct Middle(Leaf);
impl fmt::Display for Middle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("query failed")
    }
}
impl Error for Middle {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}

#[derive(Debug)]
struct Outer(Middle);
impl fmt::Display for Outer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("checkout failed")
    }
}
impl Error for Outer {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn a_cause_follows_the_source_chain() {
    let err = Outer(Middle(Leaf));
    let cause = Cause::from_typed_error(&err);
    let details = cause.details().expect("details");
    let ex = &details.exceptions;
    assert_eq!(ex.len(), 3);
    let messages: Vec<_> = ex.iter().map(|e| e.message.as_deref().unwrap()).collect();
    assert_eq!(
        messages,
        ["checkout failed", "query failed", "connection refused"]
    );
    assert_eq!(ex[0].cause, Some(ex[1].id));
    assert_eq!(ex[1].cause, Some(ex[2].id));
    assert_eq!(ex[2].cause, None);
    assert!(ex[0].id != ex[1].id && ex[1].id != ex[2].id && ex[0].id != ex[2].id);
    assert!(ex[0].kind.as_deref().unwrap().ends_with("Outer"));
    assert_eq!(ex[1].kind, None);
    assert!(details.working_directory.is_some());
    assert_eq!(cause.exception_id(), Some(ex[0].id));

    let mut d = doc("t");
    d.add_cause(cause);
    assert!(d.fault());
    let v = json_of(&d);
    let ids: Vec<&str> = v["cause"]["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(v["cause"]["exceptions"][0]["cause"].as_str(), Some(ids[1]));
    assert_eq!(v["cause"]["exceptions"][1]["cause"].as_str(), Some(ids[2]));
}

#[derive(Debug)]
struct Loop;
impl fmt::Display for Loop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("I am my own source")
    }
}
impl Error for Loop {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self)
    }
}

#[test]
fn a_looping_source_chain_is_bounded() {
    let cause = Cause::from_error(&Loop);
    let n = cause.details().unwrap().exceptions.len();
    assert!((2..=64).contains(&n), "{n} exceptions");
}

#[test]
fn an_error_sets_fault_unless_the_status_says_client_error() {
    let mut d = doc("t");
    d.add_error(&Leaf);
    assert!(d.fault() && !d.error());

    let mut d = doc("t");
    d.set_http_status(404);
    d.add_error(&Leaf);
    assert!(d.error() && !d.fault());

    let mut d = doc("t");
    d.set_http_status(502);
    d.add_error(&Leaf);
    assert!(d.fault());

    // A second error adds its exceptions to the first.
    d.add_error(&Middle(Leaf));
    assert_eq!(d.cause().unwrap().details().unwrap().exceptions.len(), 3);
    json_of(&d);
}

#[test]
fn a_cause_can_reference_a_child_exception() {
    let mut child = Document::new("render", SegmentId::new(), T0);
    child.add_error(&Leaf);
    child.set_end_time(T0 + 0.2);
    let id = child.cause().unwrap().exception_id().unwrap();

    let mut parent = doc("checkout");
    parent.add_subsegment(child);
    parent.add_cause(Cause::Reference(id));
    parent.set_end_time(T0 + 0.4);
    let v = json_of(&parent);
    assert_eq!(v["cause"], json!(id.to_string()));
    assert_eq!(v["fault"], json!(true));
    assert_eq!(
        v["subsegments"][0]["cause"]["exceptions"][0]["id"],
        json!(id.to_string())
    );
}

#[test]
fn backtrace_text_becomes_bounded_frames() {
    let text = "\
   0: app::render::invoice
             at ./src/render.rs:88:5
   1: app::handler
             at /srv/app/src/handler.rs:12:9
   2: core::ops::function::FnOnce::call_once
   3: main
             at ./src/main.rs:3
";
    let (frames, truncated) = StackFrame::parse_backtrace(text, 10);
    assert_eq!(truncated, 0);
    assert_eq!(frames.len(), 4);
    assert_eq!(
        frames[0],
        StackFrame::new("app::render::invoice", "./src/render.rs", 88)
    );
    assert_eq!(
        frames[1],
        StackFrame::new("app::handler", "/srv/app/src/handler.rs", 12)
    );
    assert_eq!(
        frames[2].label.as_deref(),
        Some("core::ops::function::FnOnce::call_once")
    );
    assert_eq!(frames[2].path, None);
    assert_eq!(frames[3], StackFrame::new("main", "./src/main.rs", 3));

    let (frames, truncated) = StackFrame::parse_backtrace(text, 2);
    assert_eq!(frames.len(), 2);
    assert_eq!(truncated, 2);

    let (frames, truncated) = StackFrame::parse_backtrace("disabled backtrace", 10);
    assert!(frames.is_empty());
    assert_eq!(truncated, 0);
}

#[test]
fn a_captured_backtrace_becomes_the_stack_of_the_outer_exception() {
    let cause = Cause::from_error(&Middle(Leaf)).with_backtrace(&Backtrace::force_capture());
    let ex = &cause.details().unwrap().exceptions;
    assert!(!ex[0].stack.is_empty());
    assert!(ex[0].stack.len() <= 50);
    assert!(ex[1].stack.is_empty());
    let first = ex[0].stack[0].label.as_deref().unwrap();
    assert!(!first.starts_with("std::backtrace"), "{first}");
    assert!(ex[0].stack.iter().any(|f| {
        f.label
            .as_deref()
            .is_some_and(|l| l.contains("a_captured_backtrace_becomes"))
    }));

    let nothing = Cause::from_error(&Leaf).with_backtrace(&Backtrace::disabled());
    assert!(nothing.details().unwrap().exceptions[0].stack.is_empty());
}

// ===== whole documents =====

/// A segment with every field set, with an embedded and an independent subsegment.
fn full_document() -> Document {
    let mut d = doc("orders-api");
    d.set_parent_id(SegmentId::new());
    d.set_end_time(T0 + 0.2);
    d.set_origin("AWS::ECS::Container");
    d.set_user("alice");
    d.set_resource_arn("arn:aws:ecs:eu-west-1:123456789012:task/abc");
    let mut service = Service::rust();
    service.version = Some("2.4.1".into());
    service.runtime_version = Some("1.95.0".into());
    d.set_service(service);

    let mut req = HttpRequest::default();
    req.method = Some("POST".into());
    req.set_url("https://orders.example.net/v1/orders?debug=1");
    req.user_agent = Some("curl/8.5.0".into());
    req.client_ip = Some("198.51.100.7".into());
    req.x_forwarded_for = true;
    d.http_mut().request = Some(req);
    d.set_http_status(429);
    d.http_mut().response.as_mut().unwrap().content_length = Some(57);

    let aws: &mut Aws = d.aws_mut();
    aws.account_id = Some("123456789012".into());
    let mut ec2 = Ec2::default();
    ec2.instance_id = Some("i-0abc".into());
    ec2.availability_zone = Some("eu-west-1a".into());
    ec2.instance_size = Some("m5.large".into());
    ec2.ami_id = Some("ami-1".into());
    aws.ec2 = Some(ec2);
    let mut ecs = Ecs::default();
    ecs.container = Some("ip-10-0-3-17".into());
    ecs.container_id = Some("c0ffee".into());
    ecs.container_arn = Some("arn:aws:ecs:container".into());
    aws.ecs = Some(ecs);
    let mut eks = Eks::default();
    eks.pod = Some("pod-1".into());
    eks.cluster_name = Some("prod".into());
    eks.container_id = Some("c0ffee".into());
    aws.eks = Some(eks);
    let mut eb = ElasticBeanstalk::default();
    eb.environment_name = Some("prod".into());
    eb.version_label = Some("v7".into());
    eb.deployment_id = Some(42);
    aws.elastic_beanstalk = Some(eb);
    let mut logs = CloudwatchLogs::default();
    logs.log_group = Some("/app/orders".into());
    logs.arn = Some("arn:aws:logs:group".into());
    aws.cloudwatch_logs.push(logs);
    let mut sdk = XRaySdk::rust();
    sdk.sampling_rule_name = Some("orders".into());
    aws.xray = Some(sdk);

    d.put_annotation("tenant", "blue").unwrap();
    d.put_metadata("basket", &json!({"items": 3})).unwrap();
    d.add_cause(Cause::from_error(&Outer(Middle(Leaf))).with_remote(true));

    let mut call = Document::new("DynamoDB", SegmentId::new(), T0 + 0.01);
    call.set_namespace(Namespace::Aws);
    let aws = call.aws_mut();
    aws.operation = Some("PutItem".into());
    aws.region = Some("eu-west-1".into());
    aws.request_id = Some("Q2KJ8D2B".into());
    aws.id_2 = Some("ext-id".into());
    aws.retries = Some(1);
    aws.insert_field("table_name", "orders");
    call.set_http_status(200);
    call.set_end_time(T0 + 0.02);
    d.add_subsegment(call);

    let mut db = Document::new("orders@db.internal", SegmentId::new(), T0 + 0.03);
    db.set_namespace(Namespace::Remote);
    let mut sql = Sql::default();
    sql.connection_string = Some("host=db.internal dbname=orders".into());
    sql.url = Some("postgresql://db.internal/orders".into());
    sql.sanitized_query = Some("SELECT 1".into());
    sql.database_type = Some("PostgreSQL".into());
    sql.database_version = Some("16".into());
    sql.driver_version = Some("tokio-postgres 0.7".into());
    sql.user = Some("orders".into());
    sql.preparation = Some("statement".into());
    db.set_sql(sql);
    db.add_precursor_id(d.subsegments()[0].id());
    db.set_end_time(T0 + 0.04);
    d.add_subsegment(db);
    d
}

#[test]
fn no_null_is_ever_written() {
    // `to_checked_json` fails on any null; both documents also pass the schema.
    let full = json_of(&full_document());
    let empty = json_of(&Document::new("e", SegmentId::new(), T0));

    let keys: Vec<&str> = empty
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 3, "{empty}");

    for field in [
        "name",
        "id",
        "trace_id",
        "parent_id",
        "start_time",
        "end_time",
        "origin",
        "user",
        "resource_arn",
        "service",
        "http",
        "aws",
        "error",
        "throttle",
        "cause",
        "annotations",
        "metadata",
        "subsegments",
    ] {
        assert!(full.get(field).is_some(), "full document lacks {field}");
    }
    assert!(full["subsegments"][1]["precursor_ids"].is_array());
    assert!(full["subsegments"][1]["sql"]["connection_string"].is_string());
    assert_eq!(full["aws"]["xray"]["sampling_rule_name"], json!("orders"));
    assert_eq!(
        full["http"]["request"]["url"],
        json!("https://orders.example.net/v1/orders")
    );
}

#[test]
fn strings_the_service_limits_to_250_characters_are_cut() {
    let long = "ä".repeat(300);
    let mut d = doc("t");
    d.set_user(long.clone());
    let mut req = HttpRequest::default();
    req.method = Some(long.clone());
    req.set_url(&format!("https://example.net/{long}"));
    req.user_agent = Some(long.clone());
    req.client_ip = Some(long.clone());
    d.http_mut().request = Some(req);
    let mut sql = Sql::default();
    sql.user = Some(long.clone());
    d.set_sql(sql);
    // The model keeps the whole value; only the wire is cut.
    assert_eq!(d.user(), Some(long.as_str()));
    let v = json_of(&d);
    let request = &v["http"]["request"];
    for s in [
        &v["user"],
        &request["method"],
        &request["url"],
        &request["user_agent"],
        &request["client_ip"],
        &v["sql"]["user"],
    ] {
        assert_eq!(s.as_str().unwrap().chars().count(), 250, "{s}");
    }
}

#[test]
fn independent_subsegments_carry_type_trace_and_parent() {
    let trace = TraceId::new();
    let parent = SegmentId::new();
    let mut call = Document::new("payments.example.net", SegmentId::new(), T0);
    call.set_namespace(Namespace::Remote);
    call.set_traced(true);
    call.set_end_time(T0 + 0.1);
    let embedded = json_of(&call);
    for field in ["type", "trace_id", "parent_id"] {
        assert!(embedded.get(field).is_none(), "{field}");
    }
    call.set_independent(trace, parent);
    let v = json_of(&call);
    assert_eq!(v["type"], json!("subsegment"));
    assert_eq!(v["trace_id"], json!(trace.to_string()));
    assert_eq!(v["parent_id"], json!(parent.to_string()));
    assert_eq!(v["traced"], json!(true));
    assert!(v["http"].is_null(), "no empty http block: {v}");
}

#[test]
fn documents_round_trip() {
    let full = full_document();
    let text = serde_json::to_string(&full).unwrap();
    let back: Document = serde_json::from_str(&text).unwrap();
    assert_eq!(back, full);
    assert_eq!(serde_json::to_string(&back).unwrap(), text);
}

// ===== reading documents from other SDKs =====

#[test]
fn parsing_tolerates_other_sdks() {
    let input = json!({
        "name": "svc",
        "id": "53995c3f42cd8ad8",
        "trace_id": "1-5759e988-bd862e3fe1be46a994272793",
        "start_time": 1478293361,
        "end_time": null,
        "in_progress": false,
        "namespace": "local",
        "unknown_field": {"nested": [1, 2]},
        "links": [],
        "http": {
            "request": {"method": "GET", "traced": true, "extra": 1},
            "response": {"status": "200", "content_length": "12"}
        },
        "aws": {"xray": {"sdk": "X-Ray for Java", "rule_name": "r1"}, "ec2": {"instance_type": "t3"}},
        "annotations": {"ok": 1, "bad": {"x": 1}, "also_bad": null, "list": [1]},
        "cause": "9cd995651cedb0df",
        "subsegments": [{
            "name": "child", "id": "4a0d5b9c8e7f6a1f", "start_time": 1478293361.5,
            "type": "subsegment", "trace_id": "1-5759e988-bd862e3fe1be46a994272793",
            "parent_id": "53995c3f42cd8ad8", "in_progress": true
        }]
    });
    let d: Document = serde_json::from_value(input).unwrap();
    assert_eq!(d.namespace(), Some("local"));
    assert!(d.traced());
    assert_eq!(d.http_status(), Some(200));
    assert_eq!(
        d.http().unwrap().response.as_ref().unwrap().content_length,
        Some(12)
    );
    let aws = d.aws().unwrap();
    assert_eq!(
        aws.xray.as_ref().unwrap().sampling_rule_name.as_deref(),
        Some("r1")
    );
    assert_eq!(
        aws.ec2.as_ref().unwrap().instance_size.as_deref(),
        Some("t3")
    );
    let a = d.annotations().unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a.get("ok"), Some(&AnnotationValue::Int(1)));
    assert!(matches!(d.cause(), Some(Cause::Reference(_))));
    assert_eq!(d.end_time(), None);
    assert!(d.subsegments()[0].is_independent());
    assert!(d.subsegments()[0].in_progress());

    // Written back: traced moves to the top level and the schema accepts the result.
    let v = json_of(&d);
    assert_eq!(v["traced"], json!(true));
    assert!(v["http"]["request"].get("traced").is_none());
    assert!(v.get("unknown_field").is_none());
    assert_eq!(v["namespace"], json!("local"));
}

#[test]
fn exceptions_parse_with_every_field() {
    let input = json!({
        "id": "5191dce9527727df", "message": "m", "type": "T", "remote": true,
        "truncated": 3, "skipped": 1, "cause": "6a1b2c3d4e5f6a7b",
        "stack": [{"path": "a.rs", "line": 1, "label": "f"}]
    });
    let e: Exception = serde_json::from_value(input.clone()).unwrap();
    assert_eq!(e.truncated, 3);
    assert_eq!(e.skipped, 1);
    assert_eq!(serde_json::to_value(&e).unwrap(), input);
}

#[test]
fn links_are_written_read_back_and_left_out_when_empty() {
    let schema = Schema::get();
    let mut doc = Document::new("consumer", SegmentId::new(), 1.0);
    doc.set_trace_id(TraceId::new());
    doc.set_end_time(2.0);
    let plain = to_checked_json(schema, &doc);
    assert!(plain.get("links").is_none(), "{plain}");
    let producer = TraceId::new();
    doc.add_link(SpanLink::new(producer, SegmentId::from_u64(7)).with_attribute("queue", "orders"));
    let json = to_checked_json(schema, &doc);
    assert_eq!(json["links"][0]["trace_id"], producer.to_string());
    assert_eq!(json["links"][0]["id"], "0000000000000007");
    assert_eq!(json["links"][0]["attributes"]["queue"], "orders");
    let back: Document = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back.links(), doc.links());
    assert_eq!(to_checked_json(schema, &back), json);
}
