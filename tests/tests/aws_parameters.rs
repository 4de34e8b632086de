//! The parameter whitelist's descriptors (map keys, list counts, renames) and member-name
//! conversion, checked on real SDK requests answered by a scripted server.

mod aws_common;

use std::time::Duration;

use aws_common::{
    REGION, Scripted, ScriptedServer, collector_and_recorder, credentials, http_client,
};
use serde_json::Value;
use xray_aws_sdk::XRayInterceptor;
use xray_sdk::FutureExt as _;

const WAIT: Duration = Duration::from_secs(20);

/// Runs `call` inside a segment and returns the `aws` blocks of its subsegments, in order.
async fn aws_blocks<F: std::future::Future<Output = ()>>(call: F) -> Vec<Value> {
    let (local, recorder) = collector_and_recorder();
    let segment = recorder.begin_segment("api");
    let trace_id = segment.trace_id();
    call.with_context(segment.entity().clone()).await;
    segment.end();
    let trace = local.wait_for_trace(trace_id, WAIT).expect("trace arrives");
    xray_testkit::assert_all_valid(trace.segments().iter().chain(trace.orphans()));
    let root = trace.find("api").unwrap();
    root.doc()["subsegments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["aws"].clone())
        .collect()
}

fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .region(aws_sdk_sqs::config::Region::new(REGION))
            .credentials_provider(credentials())
            .endpoint_url(endpoint)
            .http_client(http_client())
            .interceptor(XRayInterceptor::new())
            .build(),
    )
}

fn dynamodb_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .region(aws_sdk_dynamodb::config::Region::new(REGION))
            .credentials_provider(credentials())
            .endpoint_url(endpoint)
            .http_client(http_client())
            .interceptor(XRayInterceptor::new())
            .build(),
    )
}

#[tokio::test]
async fn sqs_counts_and_acronym_member_names() {
    let server = ScriptedServer::start(vec![
        Scripted::json(
            200,
            "r1",
            r#"{"QueueUrl":"http://sqs.local/123456789012/jobs"}"#,
        ),
        Scripted::json(
            200,
            "r2",
            r#"{"Successful":[{"Id":"a","MessageId":"m1","MD5OfMessageBody":"x"},{"Id":"b","MessageId":"m2","MD5OfMessageBody":"y"}],"Failed":[{"Id":"c","SenderFault":true,"Code":"X"}]}"#,
        ),
    ]);
    let client = sqs_client(&server.endpoint);
    let blocks = aws_blocks(async {
        client
            .get_queue_url()
            .queue_name("jobs")
            .queue_owner_aws_account_id("123456789012")
            .send()
            .await
            .unwrap();
        let entry = |id: &str| {
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(id)
                .message_body("secret body")
                .build()
                .unwrap()
        };
        client
            .send_message_batch()
            .queue_url("http://sqs.local/123456789012/jobs")
            .entries(entry("a"))
            .entries(entry("b"))
            .entries(entry("c"))
            .send()
            .await
            .unwrap();
    })
    .await;
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0]["operation"], "GetQueueUrl");
    assert_eq!(blocks[0]["queue_name"], "jobs");
    assert_eq!(blocks[0]["queue_owner_aws_account_id"], "123456789012");
    assert_eq!(blocks[0]["queue_url"], "http://sqs.local/123456789012/jobs");
    assert_eq!(blocks[1]["operation"], "SendMessageBatch");
    assert_eq!(blocks[1]["message_count"], 3);
    assert_eq!(blocks[1]["successful_count"], 2);
    assert_eq!(blocks[1]["failed_count"], 1);
    assert_eq!(blocks[1].get("entries"), None);
    assert!(!blocks[1].to_string().contains("secret body"));
}

#[tokio::test]
async fn dynamodb_map_keys_and_list_counts() {
    let server = ScriptedServer::start(vec![
        Scripted::json(
            200,
            "r1",
            r#"{"Responses":{"orders":[],"users":[]},"UnprocessedKeys":{},"ConsumedCapacity":[{"TableName":"orders","CapacityUnits":1.0}]}"#,
        ),
        Scripted::json(200, "r2", r#"{"TableNames":["orders","users","carts"]}"#),
    ]);
    let client = dynamodb_client(&server.endpoint);
    let blocks = aws_blocks(async {
        use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
        let keys = |v: &str| {
            KeysAndAttributes::builder()
                .keys([("pk".to_owned(), AttributeValue::S(v.into()))].into())
                .build()
                .unwrap()
        };
        client
            .batch_get_item()
            .request_items("orders", keys("secret-key-1"))
            .request_items("users", keys("secret-key-2"))
            .send()
            .await
            .unwrap();
        client.list_tables().limit(3).send().await.unwrap();
    })
    .await;
    assert_eq!(blocks.len(), 2);
    let mut tables: Vec<&str> = blocks[0]["table_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    tables.sort_unstable();
    assert_eq!(tables, ["orders", "users"]);
    assert_eq!(blocks[0]["consumed_capacity"][0]["CapacityUnits"], 1.0);
    assert!(!blocks[0].to_string().contains("secret-key"));
    assert_eq!(blocks[1]["operation"], "ListTables");
    assert_eq!(blocks[1]["limit"], 3);
    assert_eq!(blocks[1]["table_count"], 3);
    assert_eq!(blocks[1].get("table_names"), None);
}

#[tokio::test]
async fn lambda_members_come_from_the_path_query_headers_and_status() {
    let server = ScriptedServer::start(vec![Scripted {
        status: 200,
        headers: vec![
            ("content-type", "application/json".to_owned()),
            ("x-amzn-requestid", "r1".to_owned()),
            ("x-amz-function-error", "Unhandled".to_owned()),
        ],
        body: r#"{"errorMessage":"secret-response-payload"}"#.to_owned(),
    }]);
    let client = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::Config::builder()
            .region(aws_sdk_lambda::config::Region::new(REGION))
            .credentials_provider(credentials())
            .endpoint_url(&server.endpoint)
            .http_client(http_client())
            .interceptor(XRayInterceptor::new())
            .build(),
    );
    let blocks = aws_blocks(async {
        let out = client
            .invoke()
            .function_name("resize-image")
            .qualifier("live")
            .invocation_type(aws_sdk_lambda::types::InvocationType::RequestResponse)
            .payload(aws_sdk_lambda::primitives::Blob::new(
                r#"{"secret":"request-payload"}"#,
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(out.function_error(), Some("Unhandled"));
    })
    .await;
    assert_eq!(blocks.len(), 1);
    let aws = &blocks[0];
    assert_eq!(aws["operation"], "Invoke");
    assert_eq!(aws["function_name"], "resize-image");
    assert_eq!(aws["qualifier"], "live");
    assert_eq!(aws["invocation_type"], "RequestResponse");
    assert_eq!(aws["status_code"], 200);
    assert_eq!(aws["function_error"], "Unhandled");
    assert_eq!(aws["request_id"], "r1");
    assert!(!aws.to_string().contains("secret"));
}
