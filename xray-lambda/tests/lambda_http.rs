//! The layer on a `lambda_http` handler, under the real `lambda_http::run` (the sequential
//! runtime), against a stand-in Lambda Runtime API delivering API Gateway HTTP API events
//! (payload format 2.0): the invocation's header comes from the `lambda_runtime::Context` that
//! `lambda_http` puts in the request's extensions.
//!
//! This binary holds a single test because it sets process environment variables.

#[path = "support/runtime_api.rs"]
mod stand_in;

use std::time::Duration;

use lambda_http::{Error, Request, RequestExt, service_fn};
use serde_json::{Value, json};
use stand_in::{AnswerKind, Event, RuntimeApi};
use tower::ServiceBuilder;
use xray_lambda::XRayLambdaLayer;
use xray_sdk::{InMemoryEmitter, Recorder, TraceHeader};

const FUNCTION_NAME: &str = "orders-http";
const SAMPLED: &str = "Root=1-67748580-00000000000000000000a11c;Parent=53995c3f42cd8ad8;\
                       Sampled=1;Lineage=10:a87bd80c:1";
const UNSAMPLED: &str = "Root=1-67748580-00000000000000000000b0b0;Parent=53995c3f42cd8ad9;\
                         Sampled=0;Lineage=11:a87bd80c:1";

/// An API Gateway HTTP API request, as the AWS documentation shows payload format 2.0.
fn api_gateway_event(name: &str) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/hello",
        "rawQueryString": format!("name={name}"),
        "headers": {
            "accept": "*/*",
            "host": "abc123.execute-api.us-east-1.amazonaws.com",
            "user-agent": "curl/8.5.0",
            "x-forwarded-proto": "https"
        },
        "queryStringParameters": { "name": name },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": "GET",
                "path": "/hello",
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.1",
                "userAgent": "curl/8.5.0"
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Dec/2026:12:00:00 +0000",
            "timeEpoch": 1_796_126_400_000_u64
        },
        "isBase64Encoded": false
    })
}

async fn hello(recorder: Recorder, request: Request) -> Result<String, Error> {
    let name = request
        .query_string_parameters_ref()
        .and_then(|q| q.first("name"))
        .unwrap_or("world")
        .to_owned();
    let greet = recorder.begin_subsegment("greet");
    greet.put_annotation("name_length", name.len() as u64);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let downstream = greet.trace_header().to_string();
    greet.end();
    Ok(json!({ "message": format!("hello, {name}"), "downstream": downstream }).to_string())
}

#[test]
#[allow(unsafe_code)]
fn lambda_http_requests_are_traced_under_their_invocation() {
    let api = RuntimeApi::bind(vec![
        Event {
            request_id: "http-1".into(),
            trace_header: Some(SAMPLED.into()),
            payload: api_gateway_event("Ada"),
        },
        Event {
            request_id: "http-2".into(),
            trace_header: Some(UNSAMPLED.into()),
            payload: api_gateway_event("Grace"),
        },
    ]);
    // SAFETY: this is the only test of this binary, and no other thread exists yet: the
    // stand-in has only bound its port, and the tokio runtime is built below.
    unsafe {
        std::env::set_var("AWS_LAMBDA_RUNTIME_API", api.address());
        std::env::set_var("AWS_LAMBDA_FUNCTION_NAME", FUNCTION_NAME);
        std::env::set_var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128");
        std::env::set_var("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
        std::env::set_var(
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/12/01/[$LATEST]0123456789abcdef",
        );
        std::env::set_var("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/orders-http");
    }

    let emitter = InMemoryEmitter::new();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_emitter(emitter.clone())
        .build()
        .unwrap();
    let handler_recorder = recorder.clone();
    let service = ServiceBuilder::new()
        .layer(XRayLambdaLayer::new().with_recorder(recorder))
        .service(service_fn(move |request: Request| {
            hello(handler_recorder.clone(), request)
        }));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    api.serve(rt.handle());
    // `lambda_http::run`'s future is not `Send`: it runs on a thread of its own, on the
    // runtime's handle, until told to stop.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = rt.handle().clone();
    let lambda = std::thread::spawn(move || {
        handle.block_on(async move {
            tokio::select! {
                _ = lambda_http::run(service) => {}
                _ = stopped => {}
            }
        });
    });

    let answers = api.wait_for_answers(2, Duration::from_secs(30));
    // The sampled invocation sends its handler subsegment and "greet".
    let arrived = emitter.wait_for(2, Duration::from_secs(5));
    let _ = stop.send(());
    let _ = lambda.join();
    rt.shutdown_timeout(Duration::from_secs(1));

    assert!(arrived, "documents: {:#?}", emitter.documents());
    assert!(api.init_errors().is_empty(), "{:?}", api.init_errors());
    for answer in &answers {
        assert_eq!(answer.kind, AnswerKind::Response, "{answer:?}");
        assert_eq!(answer.body["statusCode"], 200, "{answer:?}");
    }
    let body_of = |request_id: &str| -> Value {
        let answer = answers
            .iter()
            .find(|a| a.request_id == request_id)
            .expect("an answer");
        serde_json::from_str(answer.body["body"].as_str().expect("a body")).expect("JSON")
    };

    // Both calls from the handler would carry their invocation's trace and Lineage.
    let sampled: TraceHeader = SAMPLED.parse().unwrap();
    let unsampled: TraceHeader = UNSAMPLED.parse().unwrap();
    for (request_id, header, name) in [("http-1", &sampled, "Ada"), ("http-2", &unsampled, "Grace")]
    {
        let body = body_of(request_id);
        assert_eq!(body["message"], format!("hello, {name}"));
        let downstream: TraceHeader = body["downstream"].as_str().unwrap().parse().unwrap();
        assert_eq!(downstream.root(), header.root(), "{request_id}");
        assert_eq!(downstream.sampled(), header.sampled(), "{request_id}");
        assert_eq!(downstream.lineage(), header.lineage(), "{request_id}");
    }

    // Only the sampled invocation is recorded: the handler subsegment under Lambda's segment,
    // "greet" under it.
    let docs = xray_testkit::checked(emitter.documents());
    assert_eq!(docs.len(), 2, "{docs:#?}");
    let root = sampled.root().to_string();
    assert!(docs.iter().all(|d| d["trace_id"] == root), "{docs:#?}");
    let handler = docs
        .iter()
        .find(|d| d["name"] == "## orders-http")
        .expect("the handler");
    let greet = docs.iter().find(|d| d["name"] == "greet").expect("greet");
    assert_eq!(handler["parent_id"], "53995c3f42cd8ad8");
    assert_eq!(greet["parent_id"], handler["id"]);
    assert_eq!(greet["annotations"]["name_length"], 3);
}
