//! Inside AWS Lambda the SDK's recursion-detection interceptor sets `X-Amzn-Trace-Id` from
//! `_X_AMZN_TRACE_ID`; `XRayInterceptor` replaces that value with its own subsegment as
//! parent, so the service sees exactly one header, ours.
//!
//! This binary holds a single test because it sets process environment variables.

mod aws_common;

use std::time::Duration;

use aws_common::{
    REGION, Scripted, ScriptedServer, collector_and_recorder, credentials, http_client,
};
use aws_sdk_dynamodb::types::AttributeValue;
use xray_aws_sdk::XRayInterceptor;
use xray_core::FutureExt as _;

const LAMBDA_HEADER: &str =
    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

#[test]
#[allow(unsafe_code)]
fn the_recursion_detection_header_is_replaced() {
    // SAFETY: this is the only test of this binary and no other thread exists yet.
    unsafe {
        std::env::set_var("AWS_LAMBDA_FUNCTION_NAME", "orders-fn");
        std::env::set_var("_X_AMZN_TRACE_ID", LAMBDA_HEADER);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = ScriptedServer::start(vec![
        Scripted::json(200, "r1", "{}"),
        Scripted::json(200, "r2", "{}"),
    ]);
    let config = aws_sdk_dynamodb::Config::builder()
        .region(aws_sdk_dynamodb::config::Region::new(REGION))
        .credentials_provider(credentials())
        .endpoint_url(&server.endpoint)
        .http_client(http_client())
        .interceptor(XRayInterceptor::new())
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    let get = || {
        client
            .get_item()
            .table_name("orders")
            .key("pk", AttributeValue::S("a".into()))
            .send()
    };

    // Outside a segment the Lambda header goes through untouched.
    rt.block_on(get()).unwrap();

    let (local, recorder) = collector_and_recorder();
    let segment = recorder.begin_segment("handler");
    let trace_id = segment.trace_id();
    rt.block_on(get().with_context(segment.entity().clone()))
        .unwrap();
    segment.end();
    let trace = local
        .wait_for_trace(trace_id, Duration::from_secs(20))
        .expect("trace arrives");
    xray_testkit::assert_all_valid(trace.segments().iter().chain(trace.orphans()));
    let sub = trace.find("DynamoDB").unwrap();
    let ours = format!("Root={trace_id};Parent={};Sampled=1", sub.id().unwrap());

    let requests = server.requests();
    let values = |i: usize| -> Vec<&str> {
        requests[i]
            .iter()
            .filter(|(k, _)| k == "x-amzn-trace-id")
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(values(0), [LAMBDA_HEADER]);
    assert_eq!(values(1), [ours.as_str()]);
}
