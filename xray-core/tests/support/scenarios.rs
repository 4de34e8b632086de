//! The scenarios of the `segment_docs` vectors, built with the document API: shared by the
//! tests that check them as documents and as OpenTelemetry spans.

use std::backtrace::Backtrace;
use std::fmt;

use serde_json::Value;
use xray_sdk::clock::{Clock, ManualClock};
use xray_sdk::document::{HttpRequest, Sql, XRaySdk, seconds_from_micros};
use xray_sdk::{AnnotationValue, Cause, Document, Namespace, SegmentId, TraceId};

/// The clock every scenario starts from: 2016-11-04T21:02:41.271Z, the vectors' start time.
pub(crate) fn clock() -> ManualClock {
    ManualClock::new(1_478_293_361_271_000)
}

pub(crate) fn now(clock: &ManualClock) -> f64 {
    seconds_from_micros(clock.now_micros())
}

/// A segment named `name`, started now, with a fresh trace id.
pub(crate) fn segment(name: &str, clock: &ManualClock) -> Document {
    let mut doc = Document::new(name, SegmentId::new(), now(clock));
    doc.set_trace_id(TraceId::new());
    doc
}

pub(crate) fn end(doc: &mut Document, clock: &ManualClock, after_micros: u64) {
    clock.advance_micros(after_micros);
    doc.set_end_time(now(clock));
}

#[derive(Debug)]
pub(crate) struct TestException(&'static str);

impl fmt::Display for TestException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for TestException {}

/// Builds the scenario of one vector file (its `scenario` prose, with values from its example).
pub(crate) fn build(file: &str, vector: &Value) -> Document {
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
            doc.aws_mut().xray = Some(XRaySdk::rust());
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
