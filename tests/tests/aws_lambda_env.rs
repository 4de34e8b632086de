//! Inside AWS Lambda the SDK's recursion-detection interceptor sets `X-Amzn-Trace-Id` from
//! `_X_AMZN_TRACE_ID`; `XRayInterceptor` replaces that value with its own subsegment as
//! parent, so the service sees exactly one header, ours, and the invocation's `Lineage` stays
//! in it.
//!
//! This binary holds a single test because it sets process environment variables.

mod aws_common;

use std::time::Duration;

use aws_common::{
    REGION, Scripted, ScriptedServer, collector_and_recorder, credentials, http_client,
};
use aws_sdk_dynamodb::types::AttributeValue;
use xray_aws_sdk::XRayInterceptor;
use xray_sdk::FutureExt as _;

const LAMBDA_HEADER: &str =
    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:1";

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
        Scripted::json(200, "r3", "{}"),
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

    // The invocation itself, read from `_X_AMZN_TRACE_ID`: the call's header is the
    // invocation's root, the call's subsegment as parent, and the invocation's `Lineage`.
    let invocation = recorder.begin_lambda_invocation(None);
    let lambda_root = invocation.trace_id();
    assert_eq!(
        lambda_root.to_string(),
        "1-5759e988-bd862e3fe1be46a994272793"
    );
    rt.block_on(get().with_context(invocation.entity().clone()))
        .unwrap();
    invocation.end();
    // The invocation's segment is Lambda's own, so its subsegment arrives alone and the trace
    // never looks complete: poll for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let sub_id = loop {
        let found = local
            .trace(lambda_root)
            .and_then(|t| t.find("DynamoDB").and_then(|e| e.id().map(str::to_owned)));
        if let Some(id) = found {
            break id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the invocation's call arrives"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let requests = server.requests();
    let third: Vec<&str> = requests[2]
        .iter()
        .filter(|(k, _)| k == "x-amzn-trace-id")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        third,
        [format!("Root={lambda_root};Parent={sub_id};Sampled=1;Lineage=a87bd80c:1").as_str()]
    );
}
