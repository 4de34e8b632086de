//! `Document::write_json` (what the recorder sends) against the `Serialize` impl: for random
//! documents with every kind of field, both must parse to the same JSON value, numbers compared
//! bit for bit.

use std::fmt;

use proptest::prelude::*;
use serde_json::{Value, json};
use xray_sdk::document::{Ec2, HttpRequest, Service, Sql, XRaySdk};
use xray_sdk::{Cause, Document, Namespace, SegmentId, TraceId};

/// Same value, with numbers of the same kind (integer or float) and floats equal bit for bit.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                x.is_f64()
                    && y.is_f64()
                    && x.as_f64().map(f64::to_bits) == y.as_f64().map(f64::to_bits)
            } else {
                x == y
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn assert_same_json(doc: &Document) {
    let mut fast = b"prefix".to_vec();
    doc.write_json(&mut fast).expect("write_json");
    let fast: Value = serde_json::from_slice(&fast[6..]).expect("write_json output is JSON");
    let slow = serde_json::to_value(doc).expect("serializes");
    assert!(
        same(&fast, &slow),
        "write_json:\n{fast:#}\nserde:\n{slow:#}"
    );
}

#[derive(Debug)]
struct Failure(String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

/// Any text: quotes, backslashes, control characters, non-ASCII, long strings.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9._-]{0,12}",
        any::<String>(),
        "[\"\\\\\u{0}-\u{1f}\u{7f}a-zé€😀 ]{0,20}",
        "[a-zé]{240,260}",
    ]
}

fn time() -> impl Strategy<Value = f64> {
    prop_oneof![
        (0u64..4_000_000_000_000_000).prop_map(|us| us as f64 / 1e6),
        any::<f64>(),
        -1e10..1e10f64,
        Just(-0.0),
        // Around zero and on rounding ties.
        prop::sample::select(vec![
            -4e-7,
            4e-7,
            -5e-7,
            5e-7,
            -1.5e-6,
            2.5e-6,
            0.4999999e-6
        ]),
        (-1_000_000i64..1_000_000).prop_map(|n| n as f64 / 2e6),
        Just(9_007_199_254.0),
        Just(1e300),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e20..1e20f64).prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        (text(), any::<i32>()).prop_map(|(k, v)| json!({ k: [v, null, {"x": "y"}] })),
    ]
}

#[derive(Debug, Clone)]
enum Edit {
    TraceId(u32, u128),
    ParentId(u64),
    Independent(u32, u128, u64),
    End(f64),
    InProgress(bool),
    Namespace(String),
    Origin(String),
    User(String),
    ResourceArn(String),
    Service(Option<String>, Option<String>, Option<String>),
    Traced(bool),
    Http(
        Option<String>,
        Option<String>,
        Option<u16>,
        Option<i64>,
        bool,
    ),
    AwsCall(Option<String>, Option<String>, Option<u32>, String, Value),
    AwsSdk(Option<String>, Option<String>),
    AwsEnv(Option<String>, String),
    Sql(Option<String>, Option<String>),
    Flags(bool, bool, bool),
    Cause(String, bool),
    Annotation(String, Value),
    Metadata(String, String, Value),
    Precursor(u64),
}

fn edit() -> impl Strategy<Value = Edit> {
    let o = || proptest::option::of(text());
    prop_oneof![
        (any::<u32>(), any::<u128>()).prop_map(|(e, r)| Edit::TraceId(e, r)),
        any::<u64>().prop_map(Edit::ParentId),
        (any::<u32>(), any::<u128>(), any::<u64>())
            .prop_map(|(e, r, p)| Edit::Independent(e, r, p)),
        time().prop_map(Edit::End),
        any::<bool>().prop_map(Edit::InProgress),
        prop_oneof![Just("aws".to_owned()), Just("remote".to_owned()), text()]
            .prop_map(Edit::Namespace),
        text().prop_map(Edit::Origin),
        text().prop_map(Edit::User),
        text().prop_map(Edit::ResourceArn),
        (o(), o(), o()).prop_map(|(a, b, c)| Edit::Service(a, b, c)),
        any::<bool>().prop_map(Edit::Traced),
        (
            o(),
            o(),
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<i64>()),
            any::<bool>()
        )
            .prop_map(|(m, u, s, l, x)| Edit::Http(m, u, s, l, x)),
        (
            o(),
            o(),
            proptest::option::of(any::<u32>()),
            text(),
            json_value()
        )
            .prop_map(|(op, r, n, k, v)| Edit::AwsCall(op, r, n, k, v)),
        (o(), o()).prop_map(|(a, b)| Edit::AwsSdk(a, b)),
        (o(), text()).prop_map(|(a, b)| Edit::AwsEnv(a, b)),
        (o(), o()).prop_map(|(a, b)| Edit::Sql(a, b)),
        (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(a, b, c)| Edit::Flags(a, b, c)),
        (text(), any::<bool>()).prop_map(|(m, r)| Edit::Cause(m, r)),
        (
            "[A-Za-z0-9_]{1,20}",
            prop_oneof![
                text().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                any::<bool>().prop_map(Value::from),
            ]
        )
            .prop_map(|(k, v)| Edit::Annotation(k, v)),
        (text(), text(), json_value()).prop_map(|(n, k, v)| Edit::Metadata(n, k, v)),
        any::<u64>().prop_map(Edit::Precursor),
    ]
}

fn apply(d: &mut Document, e: Edit) {
    match e {
        Edit::TraceId(e, r) => d.set_trace_id(TraceId::from_parts(e, r)),
        Edit::ParentId(p) => d.set_parent_id(SegmentId::from_u64(p)),
        Edit::Independent(e, r, p) => {
            d.set_independent(TraceId::from_parts(e, r), SegmentId::from_u64(p))
        }
        Edit::End(t) => d.set_end_time(t),
        Edit::InProgress(b) => d.set_in_progress(b),
        Edit::Namespace(n) => d.set_namespace(Namespace::from(n.as_str())),
        Edit::Origin(v) => d.set_origin(v),
        Edit::User(v) => d.set_user(v),
        Edit::ResourceArn(v) => d.set_resource_arn(v),
        Edit::Service(version, runtime, runtime_version) => {
            let mut s = Service::default();
            s.version = version;
            s.runtime = runtime;
            s.runtime_version = runtime_version;
            d.set_service(s);
        }
        Edit::Traced(b) => d.set_traced(b),
        Edit::Http(method, url, status, len, xff) => {
            let mut req = HttpRequest::default();
            req.method = method;
            if let Some(url) = url {
                req.set_url(&url);
            }
            req.x_forwarded_for = xff;
            d.http_mut().request = Some(req);
            if let Some(status) = status {
                d.set_http_status(status);
            }
            if let Some(len) = len
                && let Some(resp) = d.http_mut().response.as_mut()
            {
                resp.content_length = Some(len);
            }
        }
        Edit::AwsCall(op, region, retries, key, value) => {
            let aws = d.aws_mut();
            aws.operation = op;
            aws.region = region;
            aws.request_id = Some("req-1".into());
            aws.id_2 = Some("x\"y".into());
            aws.retries = retries;
            aws.insert_field(&key, value);
        }
        Edit::AwsSdk(version, rule) => {
            let mut sdk = XRaySdk::rust();
            sdk.sdk_version = version;
            sdk.sampling_rule_name = rule;
            d.aws_mut().xray = Some(sdk);
        }
        Edit::AwsEnv(account, instance) => {
            let aws = d.aws_mut();
            aws.account_id = account;
            let mut ec2 = Ec2::default();
            ec2.instance_id = Some(instance);
            aws.ec2 = Some(ec2);
        }
        Edit::Sql(url, query) => {
            let mut sql = Sql::default();
            sql.url = url;
            sql.sanitized_query = query;
            d.set_sql(sql);
        }
        Edit::Flags(e, t, f) => {
            d.set_error(e);
            d.set_throttle(t);
            d.set_fault(f);
        }
        Edit::Cause(msg, remote) => {
            d.add_cause(Cause::from_error(&Failure(msg)).with_remote(remote));
        }
        Edit::Annotation(k, v) => {
            if let Ok(v) = xray_sdk::AnnotationValue::try_from(v) {
                let _ = d.put_annotation(&k, v);
            }
        }
        Edit::Metadata(ns, k, v) => {
            let _ = d.put_metadata_in(&ns, &k, &v);
        }
        Edit::Precursor(id) => d.add_precursor_id(SegmentId::from_u64(id)),
    }
}

fn document() -> impl Strategy<Value = Document> {
    let leaf = (
        text(),
        any::<u64>(),
        time(),
        proptest::collection::vec(edit(), 0..6),
    )
        .prop_map(|(name, id, start, edits)| {
            let mut d = Document::new(&name, SegmentId::from_u64(id), start);
            for e in edits {
                apply(&mut d, e);
            }
            d
        });
    leaf.prop_recursive(3, 24, 4, |inner| {
        (
            text(),
            any::<u64>(),
            time(),
            proptest::collection::vec(edit(), 0..8),
            proptest::collection::vec(inner, 0..4),
        )
            .prop_map(|(name, id, start, edits, children)| {
                let mut d = Document::new(&name, SegmentId::from_u64(id), start);
                for e in edits {
                    apply(&mut d, e);
                }
                for c in children {
                    d.add_subsegment(c);
                }
                d
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn write_json_matches_serialize(doc in document()) {
        assert_same_json(&doc);
    }

    #[test]
    fn times_match_serialize(start in time(), end in time()) {
        let mut doc = Document::new("t", SegmentId::from_u64(1), start);
        doc.set_end_time(end);
        assert_same_json(&doc);
    }
}

#[test]
fn the_comparison_tells_floats_from_integers_and_signed_zeros() {
    assert!(!same(&json!(1.0), &json!(1)));
    assert!(!same(&json!(-0.0), &json!(0.0)));
    assert!(!same(&json!(1.0), &json!(1.0000000000000002)));
    assert!(!same(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
    assert!(same(&json!({"a": [1.5, "x"]}), &json!({"a": [1.5, "x"]})));
}

#[test]
fn a_deserialized_document_writes_what_it_read() {
    let text = r#"{"name":"x","id":"53995c3f42cd8ad8","start_time":1.5,"end_time":2.25,
        "aws":{"xray":{"sdk":"X-Ray for Go","rule_name":"r"},"table_name":"t","retries":2},
        "service":{"runtime":"go"},"http":{"request":{"method":"GET","traced":true}},
        "annotations":{"a":1,"b":-2,"c":1.5,"d":"s\n","e":false},
        "subsegments":[{"name":"y","id":"53995c3f42cd8ad9","start_time":1.75,"in_progress":true}]}"#;
    let doc: Document = serde_json::from_str(text).unwrap();
    assert_same_json(&doc);
}
