//! Messaging hops end to end: an SNS topic and an EventBridge rule delivering to SQS queues,
//! and an SQS batch handled as a Lambda function handles it; real aws-sdk-rust clients traced
//! by `XRayInterceptor` against a moto server, documents collected by `xray-local`, and what
//! each service was sent read from moto's own record of the requests.
//!
//! moto (5.2) does not carry a trace across these hops as AWS does: its SNS delivers to SQS
//! without the Publish call's `X-Amzn-Trace-Id` (`moto/sns/models.py`, `Subscription.publish`
//! calls `send_message` without system attributes), and its EventBridge delivers to SQS
//! without the entry's `TraceHeader` (`moto/events/models.py`, `Rule._send_to_sqs_queue`).
//! So the tests check that the producer sent the header (moto recorded it), that the message
//! or event arrived, and continue the trace from the header AWS delivers with it: the message's
//! `AWSTraceHeader`, which where moto leaves it out is the header the producer sent.

mod aws_common;

use std::time::Duration;

use aws_common::{
    Moto, REGION, aws, call_header, collector_and_recorder, credentials, http_client,
    recorded_body, recorded_header, requests_carrying, the_one, wait_for,
};
use aws_sdk_sqs::types::{
    Message, MessageSystemAttributeName, MessageSystemAttributeNameForSends,
    MessageSystemAttributeValue, QueueAttributeName,
};
use serde_json::{Value, json};
use xray_aws_sdk::{XRayInterceptor, eventbridge, sqs};
use xray_local::XRayLocal;
use xray_sdk::{FutureExt as _, Recorder, SegmentId, TraceId};

const WAIT: Duration = Duration::from_secs(20);

/// A client of the SDK crate `$sdk` calling `$moto`, traced by `XRayInterceptor`.
macro_rules! client {
    ($sdk:ident, $moto:expr) => {
        $sdk::Client::from_conf(
            $sdk::Config::builder()
                .region($sdk::config::Region::new(REGION))
                .credentials_provider(credentials())
                .endpoint_url(&$moto.endpoint)
                .http_client(http_client())
                .interceptor(XRayInterceptor::new())
                .build(),
        )
    };
}

/// Creates the queue `name`: its URL and ARN.
async fn create_queue(client: &aws_sdk_sqs::Client, name: &str) -> (String, String) {
    let url = client
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let attributes = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap();
    let arn = attributes
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .expect("QueueArn")
        .clone();
    (url, arn)
}

/// Receives from the queue, asking for the `AWSTraceHeader` system attribute, until `n`
/// messages have come (20 tries of at most a second each).
async fn receive(client: &aws_sdk_sqs::Client, queue_url: &str, n: usize) -> Vec<Message> {
    let mut messages = Vec::new();
    for _ in 0..20 {
        let out = client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::AwsTraceHeader)
            .send()
            .await
            .unwrap();
        messages.extend(out.messages().iter().cloned());
        if messages.len() >= n {
            return messages;
        }
    }
    panic!("{} of {n} messages arrived", messages.len());
}

/// A received message as a Lambda SQS event hands it to the function: its system attributes
/// by name under `attributes`.
fn lambda_record(message: &Message, queue_arn: &str) -> Value {
    let attributes: serde_json::Map<String, Value> = message
        .attributes()
        .into_iter()
        .flatten()
        .map(|(name, value)| (name.as_str().to_owned(), Value::from(value.as_str())))
        .collect();
    json!({
        "messageId": message.message_id(),
        "receiptHandle": message.receipt_handle(),
        "body": message.body(),
        "attributes": attributes,
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    })
}

/// Gives `record` the `AWSTraceHeader` AWS delivers with it when moto delivered none: `sent`,
/// the header the producer gave the service (see the module documentation).
fn delivered_as_aws_does(record: &mut Value, sent: &str) {
    if sqs::record_trace_header(record).is_none() {
        record["attributes"][sqs::AWS_TRACE_HEADER] = Value::from(sent);
    }
}

/// Processes `record` in a segment of its own and checks that xray-local receives it in the
/// producer's trace, with `parent_id` (the producer's entity) as parent.
fn assert_consumer_continues(
    local: &XRayLocal,
    recorder: &Recorder,
    record: &Value,
    trace_id: TraceId,
    parent_id: &str,
) {
    let consumer = sqs::begin_record_segment(recorder, "orders-worker", record);
    assert_eq!(consumer.trace_id(), trace_id);
    assert!(consumer.is_sampled(), "the producer's Sampled=1 is obeyed");
    let id = consumer.id().to_string();
    consumer.end();
    let trace = wait_for(local, trace_id, |t| {
        t.entities().any(|e| e.id() == Some(id.as_str()))
    });
    xray_testkit::assert_all_valid(trace.segments().iter().chain(trace.orphans()));
    let worker = trace
        .entities()
        .find(|e| e.id() == Some(id.as_str()))
        .unwrap();
    assert_eq!(worker.name(), Some("orders-worker"));
    assert_eq!(worker.get("parent_id"), Some(&Value::from(parent_id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sns_publish_carries_the_trace_to_a_subscribed_queue() {
    let moto = Moto::start();
    let (local, recorder) = collector_and_recorder();
    let sns = client!(aws_sdk_sns, moto);
    let queues = client!(aws_sdk_sqs, moto);
    // Set up outside any segment: these calls are not traced.
    let (queue_url, queue_arn) = create_queue(&queues, "orders").await;
    let topic_arn = sns
        .create_topic()
        .name("orders")
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_owned();
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(&queue_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();

    let segment = recorder.begin_segment("orders-api");
    let trace_id = segment.trace_id();
    let segment_id = segment.id().to_string();
    async {
        sns.publish()
            .topic_arn(&topic_arn)
            .message("order 42")
            .send()
            .await
            .unwrap();
        let entry = aws_sdk_sns::types::PublishBatchRequestEntry::builder()
            .id("order-43")
            .message("order 43")
            .build()
            .unwrap();
        let batch = sns
            .publish_batch()
            .topic_arn(&topic_arn)
            .publish_batch_request_entries(entry)
            .send()
            .await
            .unwrap();
        assert!(batch.failed().is_empty(), "{batch:?}");
    }
    .with_context(segment.entity().clone())
    .await;
    segment.end();

    let trace = local.wait_for_trace(trace_id, WAIT).expect("trace arrives");
    xray_testkit::assert_all_valid(trace.segments().iter().chain(trace.orphans()));
    let mut sent = Vec::new();
    for (operation, body) in [("Publish", "order 42"), ("PublishBatch", "order 43")] {
        let call = the_one(&trace, "SNS", operation);
        assert_eq!(call.parent_id(), Some(segment_id.as_str()));
        assert_eq!(aws(&call)["topic_arn"], topic_arn.as_str());
        // What SNS is given: the call's own header, its subsegment as parent (Publish has no
        // message system attributes).
        let header = call_header(&trace_id.to_string(), &call);
        assert!(
            !requests_carrying(&moto, &header).is_empty(),
            "moto never saw {header}"
        );
        sent.push((body, header, call.id().unwrap().to_owned()));
    }

    // The consumer: each delivery, handed over as a Lambda SQS event record.
    let messages = receive(&queues, &queue_url, sent.len()).await;
    for (body, header, parent_id) in &sent {
        let message = messages
            .iter()
            .find(|m| m.body() == Some(*body))
            .expect("SNS delivered it to the queue");
        let mut record = lambda_record(message, &queue_arn);
        delivered_as_aws_does(&mut record, header);
        assert_consumer_continues(&local, &recorder, &record, trace_id, parent_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eventbridge_entry_carries_the_trace_to_a_queue_target() {
    let moto = Moto::start();
    let (local, recorder) = collector_and_recorder();
    let events = client!(aws_sdk_eventbridge, moto);
    let queues = client!(aws_sdk_sqs, moto);
    // Set up outside any segment: these calls are not traced.
    let (queue_url, queue_arn) = create_queue(&queues, "placed-orders").await;
    events
        .put_rule()
        .name("orders")
        .event_pattern(r#"{"source":["orders"]}"#)
        .send()
        .await
        .unwrap();
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id("placed-orders")
        .arn(&queue_arn)
        .build()
        .unwrap();
    events
        .put_targets()
        .rule("orders")
        .targets(target)
        .send()
        .await
        .unwrap();

    let segment = recorder.begin_segment("orders-api");
    let trace_id = segment.trace_id();
    let (header, place_id) = async {
        // The entry takes the header of the entity current while it is built: here the
        // `place-order` subsegment, which becomes the consumer's parent.
        let place = recorder.begin_subsegment("place-order");
        let place_id = place.id().to_string();
        let header = async {
            let header = eventbridge::entry_trace_header().expect("inside a subsegment");
            let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .source("orders")
                .detail_type("OrderPlaced")
                .detail(r#"{"order":42}"#)
                .trace_header(&header)
                .build();
            let out = events.put_events().entries(entry).send().await.unwrap();
            assert!(
                out.entries().iter().all(|e| e.error_code().is_none()),
                "{out:?}"
            );
            header
        }
        .with_context(place.entity().clone())
        .await;
        place.end();
        (header, place_id)
    }
    .with_context(segment.entity().clone())
    .await;
    segment.end();
    assert!(
        header.starts_with(&format!("Root={trace_id};Parent={place_id};Sampled=1")),
        "{header}"
    );

    let trace = local.wait_for_trace(trace_id, WAIT).expect("trace arrives");
    xray_testkit::assert_all_valid(trace.segments().iter().chain(trace.orphans()));
    let call = the_one(&trace, "EventBridge", "PutEvents");
    assert_eq!(call.parent_id(), Some(place_id.as_str()));
    // What EventBridge was given: the call's header, and the entry's TraceHeader, which wins.
    let call_requests = requests_carrying(&moto, &call_header(&trace_id.to_string(), &call));
    assert_eq!(call_requests.len(), 1, "moto saw the PutEvents call once");
    let body: Value = serde_json::from_str(&recorded_body(&call_requests[0])).unwrap();
    assert_eq!(body["Entries"][0]["TraceHeader"], header.as_str());
    assert_eq!(
        recorded_header(&call_requests[0], "x-amz-target"),
        Some("AWSEvents.PutEvents")
    );

    // The event arrives without the header, as EventBridge documents for every target.
    let messages = receive(&queues, &queue_url, 1).await;
    let delivered = messages[0].body().unwrap();
    let event: Value = serde_json::from_str(delivered).unwrap();
    assert_eq!(event["source"], "orders");
    assert_eq!(event["detail"]["order"], 42);
    assert!(!delivered.contains(&trace_id.to_string()), "{delivered}");

    // The consumer, handed the delivery as a Lambda SQS event record.
    let mut record = lambda_record(&messages[0], &queue_arn);
    delivered_as_aws_does(&mut record, &header);
    assert_consumer_continues(&local, &recorder, &record, trace_id, &place_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lambda_batch_samples_each_message_as_its_producer_did() {
    let moto = Moto::start();
    let (local, recorder) = collector_and_recorder();
    let queues = client!(aws_sdk_sqs, moto);
    let (queue_url, queue_arn) = create_queue(&queues, "batch").await;
    // Messages of two producers, one whose trace is sampled and one whose trace is not.
    let producer = |sampled: u8| {
        format!(
            "Root={};Parent={};Sampled={sampled}",
            TraceId::new(),
            SegmentId::new()
        )
    };
    for (body, header) in [("sampled", producer(1)), ("unsampled", producer(0))] {
        let attribute = MessageSystemAttributeValue::builder()
            .data_type("String")
            .string_value(header)
            .build()
            .unwrap();
        queues
            .send_message()
            .queue_url(&queue_url)
            .message_body(body)
            .message_system_attributes(
                MessageSystemAttributeNameForSends::AwsTraceHeader,
                attribute,
            )
            .send()
            .await
            .unwrap();
    }
    let records: Vec<Value> = receive(&queues, &queue_url, 2)
        .await
        .iter()
        .map(|m| lambda_record(m, &queue_arn))
        .collect();

    // One sampled invocation handles both, in its own trace (Lambda links it to the
    // producers'); each message's work follows its producer's decision.
    let invocation_trace = TraceId::new();
    let invocation = recorder.begin_lambda_invocation(Some(&format!(
        "Root={invocation_trace};Parent={};Sampled=1",
        SegmentId::new()
    )));
    for record in &records {
        let work = sqs::begin_record_subsegment(&invocation, "process-message", record);
        let receipt = record["receiptHandle"].as_str().unwrap().to_owned();
        async {
            queues
                .delete_message()
                .queue_url(&queue_url)
                .receipt_handle(receipt)
                .send()
                .await
                .unwrap();
        }
        .with_context(work.entity().clone())
        .await;
        work.end();
    }
    invocation.end();
    // Two documents: the sampled message's work and its call, nothing of the other's.
    assert_eq!(recorder.flush(Duration::from_secs(5)).sent, 2);

    let trace = wait_for(&local, invocation_trace, |t| {
        t.find("process-message").is_some() && t.find("SQS").is_some()
    });
    xray_testkit::assert_all_valid(trace.segments().iter().chain(trace.orphans()));
    assert_eq!(trace.find_all("process-message").count(), 1, "{trace:#?}");
    let work = trace.find("process-message").unwrap();
    let delete = the_one(&trace, "SQS", "DeleteMessage");
    assert_eq!(delete.parent_id(), work.id());
    let sampled_call = call_header(&invocation_trace.to_string(), &delete);
    assert_eq!(requests_carrying(&moto, &sampled_call).len(), 1);
    // The other message's call went out with Sampled=0 in the invocation's trace.
    let root = format!("Root={invocation_trace};");
    let unsampled = moto
        .recorded_requests()
        .into_iter()
        .filter(|r| {
            recorded_header(r, "x-amzn-trace-id")
                .is_some_and(|h| h.starts_with(&root) && h.ends_with(";Sampled=0"))
        })
        .count();
    assert_eq!(unsampled, 1);
}
