//! Under Lambda Managed Instances one process serves several invocations at once, so
//! `_X_AMZN_TRACE_ID` is absent and aws-sdk-rust's recursion-detection interceptor adds no
//! header. Each invocation's header (from the Runtime API's `Lambda-Runtime-Trace-Id`) must
//! still reach every AWS call made for it, `Lineage` included, sampled or not.
//!
//! This binary holds a single test because it sets process environment variables.

mod aws_common;

use aws_common::{REGION, Scripted, ScriptedServer, credentials, http_client};
use aws_sdk_dynamodb::types::AttributeValue;
use xray_aws_sdk::XRayInterceptor;
use xray_sdk::header::Sampled;
use xray_sdk::{FutureExt as _, InMemoryEmitter, Recorder, TraceHeader};

/// Three concurrent invocations: two sampled, one not, each with its own `Lineage`.
const INVOCATIONS: [&str; 3] = [
    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:1",
    "Root=1-5759e989-0d862e3fe1be46a994272794;Parent=63995c3f42cd8ad9;Sampled=1;Lineage=68fd508a:2",
    "Root=1-5759e98a-1d862e3fe1be46a994272795;Parent=73995c3f42cd8ada;Sampled=0;Lineage=c512fbe3:3",
];

#[test]
#[allow(unsafe_code)]
fn every_invocation_sends_its_own_header_and_lineage() {
    // SAFETY: this is the only test of this binary and no other thread exists yet.
    unsafe {
        std::env::set_var("AWS_LAMBDA_FUNCTION_NAME", "orders-fn");
        std::env::remove_var("_X_AMZN_TRACE_ID");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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
    let emitter = InMemoryEmitter::new();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_emitter(emitter.clone())
        .build()
        .unwrap();

    let invocation = |header: &'static str| {
        let client = client.clone();
        let recorder = recorder.clone();
        async move {
            let invocation = recorder.begin_lambda_invocation(Some(header));
            client
                .get_item()
                .table_name("orders")
                .key("pk", AttributeValue::S("a".into()))
                .send()
                .with_context(invocation.entity().clone())
                .await
                .unwrap();
            invocation.end();
        }
    };
    rt.block_on(async {
        let [a, b, c] = INVOCATIONS.map(|h| tokio::spawn(invocation(h)));
        let (a, b, c) = tokio::join!(a, b, c);
        a.unwrap();
        b.unwrap();
        c.unwrap();
    });

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    let docs = xray_testkit::checked(emitter.documents());
    let mut seen = Vec::new();
    for request in &requests {
        let values: Vec<&str> = request
            .iter()
            .filter(|(k, _)| k == "x-amzn-trace-id")
            .map(|(_, v)| v.as_str())
            .collect();
        // Exactly one header: ours, with no second one from recursion detection.
        assert_eq!(values.len(), 1, "{request:?}");
        let sent: TraceHeader = values[0].parse().unwrap();
        let incoming: TraceHeader = INVOCATIONS
            .iter()
            .map(|h| h.parse::<TraceHeader>().unwrap())
            .find(|h| h.root() == sent.root())
            .unwrap_or_else(|| panic!("{} belongs to no invocation", values[0]));
        seen.push(incoming.root());
        assert_eq!(sent.lineage(), incoming.lineage(), "{}", values[0]);
        assert_eq!(sent.sampled(), incoming.sampled(), "{}", values[0]);
        let parent = sent.parent().expect("a parent");
        if incoming.sampled() == Sampled::Yes {
            // The parent is the call's own subsegment, sent under the invocation's trace.
            let call = docs
                .iter()
                .find(|d| d["trace_id"] == incoming.root().to_string())
                .unwrap_or_else(|| panic!("no document for {}", incoming.root()));
            assert_eq!(call["name"], "DynamoDB");
            assert_eq!(call["id"], parent.to_string());
            assert_eq!(
                call["parent_id"],
                incoming.parent().unwrap().to_string(),
                "{call}"
            );
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen.len(),
        3,
        "every invocation's call carried its own root"
    );
    // The unsampled invocation recorded nothing.
    assert_eq!(docs.len(), 2, "{docs:?}");
}
