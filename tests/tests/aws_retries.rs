//! `XRayInterceptor` against a scripted HTTP server: retries, throttling, faults, the trace
//! header on every attempt, and calls made outside any segment.

mod aws_common;

use std::time::Duration;

use aws_common::{
    REGION, Scripted, ScriptedServer, collector_and_recorder, credentials, http_client,
};
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use xray_aws_sdk::XRayInterceptor;
use xray_sdk::FutureExt as _;

const WAIT: Duration = Duration::from_secs(20);

fn client(endpoint: &str, max_attempts: u32) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .region(aws_sdk_dynamodb::config::Region::new(REGION))
        .credentials_provider(credentials())
        .endpoint_url(endpoint)
        .http_client(http_client())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(max_attempts)
                .with_initial_backoff(Duration::from_millis(1)),
        )
        .interceptor(XRayInterceptor::new())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

async fn get_item(client: &aws_sdk_dynamodb::Client) -> bool {
    client
        .get_item()
        .table_name("orders")
        .key("pk", AttributeValue::S("a".into()))
        .send()
        .await
        .is_ok()
}

/// Runs one `GetItem` inside a segment and returns the recorded subsegment document.
async fn traced_get_item(server: &ScriptedServer, max_attempts: u32) -> (bool, Value, String) {
    let (local, recorder) = collector_and_recorder();
    let client = client(&server.endpoint, max_attempts);
    let segment = recorder.begin_segment("api");
    let trace_id = segment.trace_id();
    let ok = get_item(&client)
        .with_context(segment.entity().clone())
        .await;
    segment.end();
    let trace = local.wait_for_trace(trace_id, WAIT).expect("trace arrives");
    xray_testkit::assert_all_valid(trace.segments().iter().chain(trace.orphans()));
    let subs: Vec<_> = trace.find_all("DynamoDB").collect();
    assert_eq!(
        subs.len(),
        1,
        "one subsegment per operation, not per attempt"
    );
    (ok, subs[0].doc().clone(), trace_id.to_string())
}

const ITEM: &str = r#"{"Item":{"pk":{"S":"a"}}}"#;
const INTERNAL: &str =
    r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"try again"}"#;
const THROTTLED: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate exceeded"}"#;

#[tokio::test]
async fn a_retried_call_is_one_subsegment_with_its_retry_count() {
    let server = ScriptedServer::start(vec![
        Scripted::json(500, "req-1", INTERNAL),
        Scripted::json(200, "req-2", ITEM),
    ]);
    let (ok, doc, trace_id) = traced_get_item(&server, 3).await;
    assert!(ok);
    assert_eq!(doc["aws"]["retries"], 1);
    assert_eq!(doc["aws"]["request_id"], "req-2");
    assert_eq!(doc["http"]["response"]["status"], 200);
    assert_eq!(doc["http"]["response"]["content_length"], ITEM.len());
    assert_eq!(doc.get("fault"), None);
    assert_eq!(doc.get("error"), None);
    assert_eq!(doc.get("cause"), None);

    // Both attempts carried this subsegment as Parent.
    let expected = format!(
        "Root={trace_id};Parent={};Sampled=1",
        doc["id"].as_str().unwrap()
    );
    assert_eq!(
        server.trace_headers(),
        vec![Some(expected.clone()), Some(expected)]
    );
}

#[tokio::test]
async fn a_throttling_error_sets_throttle_and_error() {
    let server = ScriptedServer::start(vec![Scripted::json(400, "req-t", THROTTLED)]);
    let (ok, doc, _) = traced_get_item(&server, 1).await;
    assert!(!ok);
    assert_eq!(doc["aws"]["retries"], 0);
    assert_eq!(doc["http"]["response"]["status"], 400);
    assert_eq!(doc["throttle"], true);
    assert_eq!(doc["error"], true);
    assert_eq!(doc.get("fault"), None);
    let ex = &doc["cause"]["exceptions"][0];
    assert_eq!(ex["type"], "ThrottlingException");
    assert_eq!(ex["message"], "Rate exceeded");
    assert_eq!(ex["remote"], true);
}

#[tokio::test]
async fn a_call_failing_every_attempt_is_a_fault() {
    let server = ScriptedServer::start(vec![
        Scripted::json(500, "req-1", INTERNAL),
        Scripted::json(500, "req-2", INTERNAL),
    ]);
    let (ok, doc, _) = traced_get_item(&server, 2).await;
    assert!(!ok);
    assert_eq!(doc["aws"]["retries"], 1);
    assert_eq!(doc["aws"]["request_id"], "req-2");
    assert_eq!(doc["fault"], true);
    assert_eq!(doc.get("error"), None);
    let ex = &doc["cause"]["exceptions"][0];
    assert_eq!(ex["type"], "InternalServerError");
    assert_eq!(ex["remote"], true);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_connection_failure_is_a_fault_without_status() {
    let port = aws_common::free_port(); // nothing listens there
    let (local, recorder) = collector_and_recorder();
    let client = client(&format!("http://127.0.0.1:{port}"), 1);
    let segment = recorder.begin_segment("api");
    let trace_id = segment.trace_id();
    let ok = get_item(&client)
        .with_context(segment.entity().clone())
        .await;
    segment.end();
    assert!(!ok);
    let trace = local.wait_for_trace(trace_id, WAIT).expect("trace arrives");
    xray_testkit::assert_all_valid(trace.segments().iter().chain(trace.orphans()));
    let sub = trace.find("DynamoDB").unwrap();
    let doc = sub.doc();
    assert_eq!(doc["fault"], true);
    assert_eq!(doc.get("http"), None);
    let ex = &doc["cause"]["exceptions"][0];
    assert_eq!(ex.get("remote"), None);
    assert!(ex["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn outside_a_segment_calls_succeed_untouched() {
    let server = ScriptedServer::start(vec![Scripted::json(200, "req-1", ITEM)]);
    let client = client(&server.endpoint, 1);
    assert!(get_item(&client).await);
    assert_eq!(server.trace_headers(), vec![None]);
}

#[tokio::test]
async fn an_unsampled_trace_records_nothing_and_sends_sampled_0() {
    let server = ScriptedServer::start(vec![Scripted::json(200, "req-1", ITEM)]);
    let emitter = xray_sdk::InMemoryEmitter::new();
    let rules = xray_sdk::sampling::SamplingRules::builder()
        .with_default(0, 0.0)
        .build()
        .unwrap();
    let recorder = xray_sdk::Recorder::builder()
        .ignore_environment()
        .with_emitter(emitter.clone())
        .with_sampler(std::sync::Arc::new(xray_sdk::sampling::LocalSampler::new(
            rules,
        )))
        .build()
        .unwrap();
    let client = client(&server.endpoint, 1);
    let segment = recorder.begin_segment("api");
    assert!(!segment.is_sampled());
    let trace_id = segment.trace_id();
    assert!(
        get_item(&client)
            .with_context(segment.entity().clone())
            .await
    );
    segment.end();
    assert!(recorder.flush(Duration::from_secs(5)).is_complete());
    assert!(emitter.is_empty());
    let headers = server.trace_headers();
    let header = headers[0].as_deref().expect("header sent");
    let parsed = xray_sdk::TraceHeader::parse(header).unwrap();
    assert_eq!(parsed.root(), trace_id);
    assert_eq!(parsed.sampled(), xray_sdk::header::Sampled::No);
    assert!(parsed.parent().is_some());
}

#[tokio::test]
async fn a_call_cut_short_by_the_operation_timeout_is_a_fault() {
    // Accepts connections (the kernel does, from the backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let (local, recorder) = collector_and_recorder();
    let config = aws_sdk_dynamodb::Config::builder()
        .region(aws_sdk_dynamodb::config::Region::new(REGION))
        .credentials_provider(credentials())
        .endpoint_url(&endpoint)
        .http_client(http_client())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_millis(300))
                .build(),
        )
        .interceptor(XRayInterceptor::new())
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    let segment = recorder.begin_segment("api");
    let trace_id = segment.trace_id();
    let ok = get_item(&client)
        .with_context(segment.entity().clone())
        .await;
    segment.end();
    assert!(!ok);
    let trace = local.wait_for_trace(trace_id, WAIT).expect("trace arrives");
    xray_testkit::assert_all_valid(trace.segments().iter().chain(trace.orphans()));
    let doc = trace.find("DynamoDB").unwrap().doc().clone();
    assert_eq!(doc["fault"], true);
    assert_eq!(doc["aws"]["retries"], 0);
    assert_eq!(doc["cause"]["exceptions"][0]["type"], "Cancelled");
    drop(silent);
}
