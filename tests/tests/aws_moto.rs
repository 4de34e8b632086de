//! `XRayInterceptor` end to end: real aws-sdk-rust clients (SigV4-signed, static test
//! credentials) against a moto server, documents collected by `xray-local`, and the trace
//! header checked in moto's own record of the requests it served.

mod aws_common;

use std::time::Duration;

use aws_common::{
    Moto, REGION, aws, call_header, collector_and_recorder, credentials, http_client,
    recorded_header, requests_carrying, the_one,
};
use aws_sdk_dynamodb::operation::RequestId as _;
use serde_json::Value;
use xray_aws_sdk::{XRayInterceptor, sqs};
use xray_sdk::FutureExt as _;

const WAIT: Duration = Duration::from_secs(20);

fn status(e: &xray_local::TraceEntity<'_>) -> Option<u64> {
    e.get("http")?.get("response")?.get("status")?.as_u64()
}

fn content_length(e: &xray_local::TraceEntity<'_>) -> Option<i64> {
    e.get("http")?
        .get("response")?
        .get("content_length")?
        .as_i64()
}

/// Moto received a request carrying this subsegment as `Parent`, SigV4-signed without the
/// trace header among the signed headers (so setting it after signing keeps the signature
/// valid).
fn assert_server_saw_parent(moto: &Moto, trace_id: &str, sub: &xray_local::TraceEntity<'_>) {
    let expected = call_header(trace_id, sub);
    let ours = requests_carrying(moto, &expected);
    assert!(!ours.is_empty(), "moto never saw {expected}");
    for r in &ours {
        let auth = recorded_header(r, "authorization").expect("signed");
        assert!(auth.starts_with("AWS4-HMAC-SHA256 "), "{auth}");
        let signed = auth
            .split("SignedHeaders=")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .expect("SignedHeaders");
        assert!(signed.contains("host"), "{signed}");
        assert!(!signed.contains("x-amzn-trace-id"), "{signed}");
    }
}

fn assert_common(e: &xray_local::TraceEntity<'_>, parent_id: &str) {
    assert_eq!(e.get("namespace"), Some(&Value::from("aws")));
    assert_eq!(e.parent_id(), Some(parent_id));
    assert_eq!(aws(e)["region"], REGION);
    assert_eq!(aws(e)["retries"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_calls_are_subsegments_with_whitelisted_parameters() {
    let moto = Moto::start();
    let (local, recorder) = collector_and_recorder();
    let client = aws_common::dynamodb_client(&moto.endpoint);
    use aws_sdk_dynamodb::types::*;

    let segment = recorder.begin_segment("orders-api");
    let trace_id = segment.trace_id();
    let segment_id = segment.id().to_string();
    let entity = segment.entity().clone();
    let (put_rid, get_rid, query_rid) = async {
        client
            .create_table()
            .table_name("orders")
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .provisioned_throughput(
                ProvisionedThroughput::builder()
                    .read_capacity_units(5)
                    .write_capacity_units(5)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let put = client
            .put_item()
            .table_name("orders")
            .item("pk", AttributeValue::S("order-1".into()))
            .item(
                "secret",
                AttributeValue::S("item-content-never-recorded".into()),
            )
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .unwrap();
        let get = client
            .get_item()
            .table_name("orders")
            .key("pk", AttributeValue::S("order-1".into()))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .unwrap();
        assert!(get.item().is_some());
        let query = client
            .query()
            .table_name("orders")
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S("order-1".into()))
            .limit(10)
            .send()
            .await
            .unwrap();
        assert_eq!(query.count(), 1);
        let missing = client
            .get_item()
            .table_name("no-such-table")
            .key("pk", AttributeValue::S("x".into()))
            .send()
            .await;
        assert!(missing.is_err());
        (
            put.request_id().map(str::to_owned),
            get.request_id().map(str::to_owned),
            query.request_id().map(str::to_owned),
        )
    }
    .with_context(entity)
    .await;
    segment.end();

    let trace = local.wait_for_trace(trace_id, WAIT).expect("trace arrives");
    xray_testkit::assert_all_valid(trace.segments().iter().chain(trace.orphans()));
    let root = trace.find("orders-api").unwrap();
    assert!(root.is_segment());

    let create = the_one(&trace, "DynamoDB", "CreateTable");
    assert_common(&create, &segment_id);
    assert_eq!(aws(&create)["table_name"], "orders");
    assert_eq!(
        aws(&create)["provisioned_throughput"]["ReadCapacityUnits"],
        5
    );
    assert_eq!(status(&create), Some(200));

    let put = the_one(&trace, "DynamoDB", "PutItem");
    assert_common(&put, &segment_id);
    assert_eq!(aws(&put)["table_name"], "orders");
    assert_eq!(aws(&put)["consumed_capacity"]["TableName"], "orders");
    assert_eq!(aws(&put)["request_id"].as_str(), put_rid.as_deref());
    assert!(put_rid.is_some());
    assert!(
        !put.doc()
            .to_string()
            .contains("item-content-never-recorded")
    );
    assert!(content_length(&put).is_some_and(|n| n > 0));

    let get = trace
        .find_all("DynamoDB")
        .find(|e| aws(e)["operation"] == "GetItem" && aws(e)["table_name"] == "orders")
        .expect("the GetItem on orders");
    assert_common(&get, &segment_id);
    assert_eq!(aws(&get)["consistent_read"], true);
    assert_eq!(aws(&get)["consumed_capacity"]["TableName"], "orders");
    assert_eq!(aws(&get)["request_id"].as_str(), get_rid.as_deref());
    assert_eq!(get.get("error"), None);

    let query = the_one(&trace, "DynamoDB", "Query");
    assert_common(&query, &segment_id);
    assert_eq!(aws(&query)["table_name"], "orders");
    assert_eq!(aws(&query)["limit"], 10);
    assert_eq!(aws(&query)["request_id"].as_str(), query_rid.as_deref());
    assert_eq!(aws(&query).get("key_condition_expression"), None);

    let failed = trace
        .find_all("DynamoDB")
        .find(|e| aws(e)["table_name"] == "no-such-table")
        .expect("the failed GetItem");
    assert_eq!(status(&failed), Some(400));
    assert_eq!(failed.get("error"), Some(&Value::Bool(true)));
    assert_eq!(failed.get("fault"), None);
    assert_eq!(failed.get("throttle"), None);
    let ex = &failed.get("cause").unwrap()["exceptions"][0];
    assert_eq!(ex["type"], "ResourceNotFoundException");
    assert_eq!(ex["remote"], true);
    assert!(ex["message"].as_str().is_some_and(|m| !m.is_empty()));

    for sub in [&create, &put, &get, &query, &failed] {
        assert_server_saw_parent(&moto, &trace_id.to_string(), sub);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_calls_are_subsegments_and_messages_carry_the_trace() {
    let moto = Moto::start();
    let (local, recorder) = collector_and_recorder();
    let client = aws_common::sqs_client(&moto.endpoint);
    use aws_sdk_sqs::types::*;

    let segment = recorder.begin_segment("producer");
    let trace_id = segment.trace_id();
    let segment_id = segment.id().to_string();
    let entity = segment.entity().clone();
    let (queue_url, message_id, received) = async {
        let queue_url = client
            .create_queue()
            .queue_name("jobs")
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_owned();
        let header = sqs::message_trace_header().expect("inside a segment");
        let sent = client
            .send_message()
            .queue_url(&queue_url)
            .message_body("message-body-never-recorded")
            .message_attributes(
                "tenant",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("t1")
                    .build()
                    .unwrap(),
            )
            .message_system_attributes(
                MessageSystemAttributeNameForSends::AwsTraceHeader,
                MessageSystemAttributeValue::builder()
                    .data_type("String")
                    .string_value(header)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let received = client
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(5)
            .message_system_attribute_names(MessageSystemAttributeName::AwsTraceHeader)
            .send()
            .await
            .unwrap();
        (queue_url, sent.message_id().unwrap().to_owned(), received)
    }
    .with_context(entity)
    .await;
    segment.end();

    let trace = local.wait_for_trace(trace_id, WAIT).expect("trace arrives");
    xray_testkit::assert_all_valid(trace.segments().iter().chain(trace.orphans()));
    let create = the_one(&trace, "SQS", "CreateQueue");
    assert_common(&create, &segment_id);
    assert_eq!(aws(&create)["queue_name"], "jobs");

    let send = the_one(&trace, "SQS", "SendMessage");
    assert_common(&send, &segment_id);
    assert_eq!(aws(&send)["queue_url"], queue_url.as_str());
    assert_eq!(aws(&send)["message_id"], message_id.as_str());
    assert_eq!(
        aws(&send)["message_attribute_names"],
        serde_json::json!(["tenant"])
    );
    assert!(
        !send
            .doc()
            .to_string()
            .contains("message-body-never-recorded")
    );

    let recv = the_one(&trace, "SQS", "ReceiveMessage");
    assert_common(&recv, &segment_id);
    assert_eq!(aws(&recv)["queue_url"], queue_url.as_str());
    assert_eq!(aws(&recv)["max_number_of_messages"], 5);
    assert_eq!(aws(&recv)["message_count"], 1);
    assert!(
        !recv
            .doc()
            .to_string()
            .contains("message-body-never-recorded")
    );

    for sub in [&create, &send, &recv] {
        assert_server_saw_parent(&moto, &trace_id.to_string(), sub);
    }

    // The consumer continues the producer's trace from the message's AWSTraceHeader.
    let message = &received.messages()[0];
    let attr = message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::AwsTraceHeader))
        .expect("moto returns AWSTraceHeader")
        .clone();
    let consumer = sqs::begin_message_segment(&recorder, "worker", Some(&attr));
    assert_eq!(consumer.trace_id(), trace_id);
    let consumer_id = consumer.id().to_string();
    consumer.end();
    // Bounded wait for the second segment of the trace.
    let mut trace = None;
    for _ in 0..400 {
        trace = local.trace(trace_id).filter(|t| t.find("worker").is_some());
        if trace.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let trace = trace.expect("consumer segment arrives");
    let worker = trace.find("worker").unwrap();
    assert_eq!(worker.id(), Some(consumer_id.as_str()));
    assert_eq!(
        worker.get("parent_id"),
        Some(&Value::from(segment_id.as_str()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_calls_record_bucket_and_key_from_the_url() {
    let moto = Moto::start();
    let (local, recorder) = collector_and_recorder();
    let config = aws_sdk_s3::Config::builder()
        .region(aws_sdk_s3::config::Region::new(REGION))
        .credentials_provider(credentials())
        .endpoint_url(&moto.endpoint)
        .force_path_style(true)
        .http_client(http_client())
        .interceptor(XRayInterceptor::new())
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);

    let segment = recorder.begin_segment("uploader");
    let trace_id = segment.trace_id();
    let segment_id = segment.id().to_string();
    let entity = segment.entity().clone();
    let body = b"object-data-never-recorded".to_vec();
    let body_len = body.len() as i64;
    async {
        client
            .create_bucket()
            .bucket("photos")
            .send()
            .await
            .unwrap();
        client
            .put_object()
            .bucket("photos")
            .key("2024/cat pic.jpg")
            .body(body.into())
            .send()
            .await
            .unwrap();
        let got = client
            .get_object()
            .bucket("photos")
            .key("2024/cat pic.jpg")
            .send()
            .await
            .unwrap();
        got.body.collect().await.unwrap();
    }
    .with_context(entity)
    .await;
    segment.end();

    let trace = local.wait_for_trace(trace_id, WAIT).expect("trace arrives");
    xray_testkit::assert_all_valid(trace.segments().iter().chain(trace.orphans()));
    let create = the_one(&trace, "S3", "CreateBucket");
    assert_common(&create, &segment_id);
    assert_eq!(aws(&create)["bucket_name"], "photos");

    for op in ["PutObject", "GetObject"] {
        let sub = the_one(&trace, "S3", op);
        assert_common(&sub, &segment_id);
        assert_eq!(aws(&sub)["bucket_name"], "photos", "{op}");
        assert_eq!(aws(&sub)["key"], "2024/cat pic.jpg", "{op}");
        assert_eq!(status(&sub), Some(200));
        assert!(
            aws(&sub)["request_id"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "{op}"
        );
        assert!(!sub.doc().to_string().contains("object-data-never-recorded"));
        assert_server_saw_parent(&moto, &trace_id.to_string(), &sub);
    }
    let get = the_one(&trace, "S3", "GetObject");
    assert_eq!(content_length(&get), Some(body_len));
}

#[tokio::test]
async fn a_presigned_request_gets_no_trace_header_and_no_subsegment() {
    let (local, recorder) = collector_and_recorder();
    let config = aws_sdk_s3::Config::builder()
        .region(aws_sdk_s3::config::Region::new(REGION))
        .credentials_provider(credentials())
        .endpoint_url("http://127.0.0.1:9")
        .force_path_style(true)
        .http_client(http_client())
        .interceptor(XRayInterceptor::new())
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
    let segment = recorder.begin_segment("presigner");
    let trace_id = segment.trace_id();
    let presigned = client
        .get_object()
        .bucket("photos")
        .key("cat.jpg")
        .presigned(
            aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(60)).unwrap(),
        )
        .with_context(segment.entity().clone())
        .await
        .unwrap();
    segment.end();
    assert!(presigned.uri().contains("X-Amz-Signature="));
    assert!(
        presigned
            .headers()
            .all(|(k, _)| !k.eq_ignore_ascii_case("x-amzn-trace-id"))
    );
    // Nothing was called: the segment arrives without an S3 subsegment.
    let trace = local.wait_for_trace(trace_id, WAIT).expect("trace arrives");
    xray_testkit::assert_all_valid(trace.segments().iter().chain(trace.orphans()));
    assert!(trace.find("presigner").is_some());
    assert_eq!(trace.entities().count(), 1, "{trace:#?}");
}
