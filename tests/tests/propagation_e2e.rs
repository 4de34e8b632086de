//! The trace header across every hop: a request carrying `Lineage` and an application field
//! enters service A (axum + `XRayLayer`), which calls service B twice (a tower client through
//! `XRayClientLayer`, and reqwest through `XRayMiddleware`); B calls DynamoDB and sends an SQS
//! message (moto), and a consumer continues the trace from the message. Every hop's wire
//! header is read where it arrived: by the servers, in moto's record of its requests, and in
//! the message's `AWSTraceHeader` attribute.

mod aws_common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_common::{Moto, recorded_header};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_sqs::types::{
    MessageSystemAttributeName, MessageSystemAttributeNameForSends, MessageSystemAttributeValue,
};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};
use xray_aws_sdk::sqs;
use xray_reqwest::XRayMiddleware;
use xray_sdk::header::Sampled;
use xray_sdk::{TraceHeader, TraceId};
use xray_tower::{XRayClient, XRayClientLayer, XRayLayer};

const WAIT: Duration = Duration::from_secs(20);
const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";
/// What every hop must carry on, unchanged and in this order, after `Sampled`.
const FIELDS: &str = "Lineage=a87bd80c:1|68fd508a:5;Tenant=blue";

/// The trace headers a server received, in arrival order.
type Seen = Arc<Mutex<Vec<String>>>;

fn seen_header(seen: &Seen, headers: &HeaderMap) {
    let value = headers
        .get("x-amzn-trace-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(none)")
        .to_owned();
    seen.lock().unwrap().push(value);
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[derive(Clone)]
struct B {
    seen: Seen,
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

/// B writes an item and queues a message carrying the trace, as a producer does.
async fn b_handler(State(b): State<B>, headers: HeaderMap) -> StatusCode {
    seen_header(&b.seen, &headers);
    b.dynamodb
        .put_item()
        .table_name("orders")
        .item("pk", AttributeValue::S("order-1".into()))
        .send()
        .await
        .unwrap();
    let header = sqs::message_trace_header().expect("inside B's segment");
    b.sqs
        .send_message()
        .queue_url(&b.queue_url)
        .message_body("order-1")
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
    StatusCode::OK
}

type Plain = Client<HttpConnector, Full<Bytes>>;

#[derive(Clone)]
struct A {
    seen: Seen,
    tower: XRayClient<Plain>,
    reqwest: reqwest_middleware::ClientWithMiddleware,
    b: SocketAddr,
}

/// A calls B once through each client.
async fn a_handler(State(a): State<A>, headers: HeaderMap) -> StatusCode {
    seen_header(&a.seen, &headers);
    let request = http::Request::get(format!("http://{}/b", a.b))
        .body(Full::default())
        .unwrap();
    let by_tower = a.tower.oneshot(request).await.unwrap().status();
    let by_reqwest = a
        .reqwest
        .get(format!("http://{}/b", a.b))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!((by_tower.as_u16(), by_reqwest.as_u16()), (200, 200));
    StatusCode::OK
}

/// The header is `Root=ROOT;Parent=<an entity of the trace>;Sampled=1;FIELDS`: the trace, the
/// decision and the fields arrived unchanged. Returns the parent.
fn assert_carried(hop: &str, header: &str) -> String {
    let parsed: TraceHeader = header
        .parse()
        .unwrap_or_else(|e| panic!("{hop}: {header}: {e}"));
    assert_eq!(parsed.root().to_string(), ROOT, "{hop}: {header}");
    assert_eq!(parsed.sampled(), Sampled::Yes, "{hop}: {header}");
    let parent = parsed.parent().expect("a parent").to_string();
    assert_eq!(
        header,
        format!("Root={ROOT};Parent={parent};Sampled=1;{FIELDS}"),
        "{hop}"
    );
    parent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_and_its_fields_survive_every_hop() {
    let moto = Moto::start();
    let (local, recorder) = aws_common::collector_and_recorder();

    let dynamodb = aws_common::dynamodb_client(&moto.endpoint);
    let sqs_client = aws_common::sqs_client(&moto.endpoint);
    dynamodb
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
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    let queue_url = sqs_client
        .create_queue()
        .queue_name("orders")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();

    let b_seen = Seen::default();
    let b = Router::new()
        .route("/b", get(b_handler))
        .with_state(B {
            seen: b_seen.clone(),
            dynamodb,
            sqs: sqs_client.clone(),
            queue_url: queue_url.clone(),
        })
        .layer(XRayLayer::new("service-b").with_recorder(recorder.clone()));
    let b = serve(b).await;

    let a_seen = Seen::default();
    let a = Router::new()
        .route("/a", get(a_handler))
        .with_state(A {
            seen: a_seen.clone(),
            tower: XRayClientLayer::new()
                .with_recorder(recorder.clone())
                .layer(Client::builder(TokioExecutor::new()).build_http()),
            reqwest: reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
                .with(XRayMiddleware::new().with_recorder(recorder.clone()))
                .build(),
            b,
        })
        .layer(XRayLayer::new("service-a").with_recorder(recorder.clone()));
    let a = serve(a).await;

    // The caller: Lambda's `Lineage`, an application field, and a `Self` from a load balancer
    // that must go no further.
    let incoming = format!(
        "Self=1-67891233-abcdef012345678912345678;Root={ROOT};Parent=53995c3f42cd8ad8;\
         Sampled=1;{FIELDS}"
    );
    let response = reqwest::Client::new()
        .get(format!("http://{a}/a"))
        .header("x-amzn-trace-id", &incoming)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    // The consumer, outside any segment, reads the message and continues the trace.
    let received = sqs_client
        .receive_message()
        .queue_url(&queue_url)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::AwsTraceHeader)
        .send()
        .await
        .unwrap();
    let messages = received.messages();
    assert_eq!(messages.len(), 2, "one message per call into B");
    let mut attributes = Vec::new();
    for message in messages {
        let attribute = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::AwsTraceHeader))
            .expect("the message carries AWSTraceHeader")
            .clone();
        let consumer = sqs::begin_message_segment(&recorder, "consumer", Some(&attribute));
        assert_eq!(consumer.trace_id().to_string(), ROOT);
        // The consumer's own calls carry the fields on.
        let call = consumer.begin_subsegment("downstream");
        let onward = call.trace_header().to_string();
        assert_eq!(
            assert_carried("consumer's call", &onward),
            call.id().to_string()
        );
        call.end();
        consumer.end();
        attributes.push(attribute);
    }

    let root: TraceId = ROOT.parse().unwrap();
    let mut trace = None;
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        trace = local.trace(root).filter(|t| {
            t.find_all("consumer").count() == 2 && t.find_all("service-b").count() == 2
        });
        if trace.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let trace = trace.expect("every segment of the trace arrives");
    xray_testkit::assert_all_valid(trace.segments().iter().chain(trace.orphans()));
    let name_of = |id: &str| {
        trace
            .find_by_id(id)
            .and_then(|e| e.name().map(str::to_owned))
            .unwrap_or_else(|| format!("no entity {id}"))
    };

    // Hop 1: A received what the caller sent.
    assert_eq!(*a_seen.lock().unwrap(), [incoming]);
    let service_a = trace.find("service-a").unwrap();
    assert_eq!(service_a.parent_id(), Some("53995c3f42cd8ad8"));

    // Hop 2: B, once from each client, each time with A's call subsegment as the parent.
    let b_headers = b_seen.lock().unwrap().clone();
    assert_eq!(b_headers.len(), 2);
    for header in &b_headers {
        let parent = assert_carried("A -> B", header);
        assert_eq!(name_of(&parent), b.ip().to_string(), "{header}");
    }
    assert_ne!(
        b_headers[0], b_headers[1],
        "each call has its own subsegment"
    );

    // Hop 3: moto's record of B's DynamoDB and SQS calls.
    let mut aws_calls = Vec::new();
    for request in moto.recorded_requests() {
        let Some(header) = recorded_header(&request, "x-amzn-trace-id") else {
            continue;
        };
        if header.contains(ROOT) {
            let parent = assert_carried("B -> AWS", header);
            aws_calls.push(name_of(&parent));
        }
    }
    aws_calls.sort();
    assert_eq!(aws_calls, ["DynamoDB", "DynamoDB", "SQS", "SQS"]);

    // Hop 4: the messages' AWSTraceHeader, with B's segment as the parent.
    for attribute in &attributes {
        let parent = assert_carried("B -> SQS message", attribute);
        assert_eq!(name_of(&parent), "service-b");
    }
    // Nothing carried `Self` on.
    for header in b_headers.iter().chain(&attributes) {
        assert!(!header.contains("Self="), "{header}");
    }
}
