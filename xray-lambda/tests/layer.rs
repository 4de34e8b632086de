//! The layer on single invocations, handed over as `lambda_runtime` and `lambda_http` hand them
//! (a `LambdaEvent`, or an `http::Request` carrying the `Context` in its extensions), without a
//! runtime loop: the options, the untraced cases, and a handler future dropped early.

use std::future::Future;
use std::pin::pin;
use std::task::{Context as TaskContext, Waker};

use lambda_runtime::{Context, Error, LambdaEvent, service_fn};
use serde_json::Value;
use tower::{Service, ServiceBuilder, ServiceExt};
use xray_lambda::XRayLambdaLayer;
use xray_sdk::{InMemoryEmitter, Recorder};

const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";
const PARENT: &str = "53995c3f42cd8ad8";
const HEADER: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=10:a87bd80c:1";

fn recorder() -> (Recorder, InMemoryEmitter) {
    let emitter = InMemoryEmitter::new();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_emitter(emitter.clone())
        .build()
        .unwrap();
    (recorder, emitter)
}

/// The context `lambda_runtime` builds from a `/next` answer's headers.
fn context(header: Option<&str>, function_name: &str) -> Context {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "lambda-runtime-deadline-ms",
        http::HeaderValue::from_static("4102444800000"),
    );
    if let Some(header) = header {
        headers.insert("lambda-runtime-trace-id", header.parse().unwrap());
    }
    let config = lambda_runtime::Config {
        function_name: function_name.into(),
        ..Default::default()
    };
    Context::new("req-1", std::sync::Arc::new(config), &headers).unwrap()
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A handler that records "work" and fails when asked.
async fn work(event: LambdaEvent<Value>) -> Result<&'static str, Error> {
    let current = xray_sdk::current().expect("the invocation's context is current");
    current.begin_subsegment("work").end();
    match event.payload.as_str() {
        Some("fail") => Err("out of stock".into()),
        _ => Ok("done"),
    }
}

#[test]
fn a_handler_error_is_a_fault_on_the_handler_subsegment() {
    let (recorder, emitter) = recorder();
    let service = ServiceBuilder::new()
        .layer(XRayLambdaLayer::new().with_recorder(recorder))
        .service(service_fn(work));
    let event = LambdaEvent::new(Value::from("fail"), context(Some(HEADER), "orders-fn"));
    let error = block_on(service.oneshot(event)).unwrap_err();
    assert_eq!(error.to_string(), "out of stock");

    let docs = xray_testkit::checked(emitter.documents());
    assert_eq!(docs.len(), 2, "{docs:#?}");
    let (inner, handler) = (&docs[0], &docs[1]);
    assert_eq!(inner["name"], "work");
    assert_eq!(handler["name"], "## orders-fn");
    assert_eq!(handler["trace_id"], ROOT);
    assert_eq!(handler["parent_id"], PARENT);
    assert_eq!(inner["parent_id"], handler["id"]);
    assert_eq!(handler["fault"], true);
    assert_eq!(handler["cause"]["exceptions"][0]["message"], "out of stock");
    assert!(
        handler["annotations"]["ColdStart"].is_boolean(),
        "{handler}"
    );
    assert_ne!(inner["fault"], true);
}

#[test]
fn the_handler_subsegment_can_be_renamed() {
    let (recorder, emitter) = recorder();
    let service = ServiceBuilder::new()
        .layer(
            XRayLambdaLayer::new()
                .with_recorder(recorder)
                .with_handler_name("## handle_order"),
        )
        .service(service_fn(work));
    let event = LambdaEvent::new(Value::Null, context(Some(HEADER), "orders-fn"));
    assert_eq!(block_on(service.oneshot(event)).unwrap(), "done");
    let docs = xray_testkit::checked(emitter.documents());
    assert_eq!(docs[1]["name"], "## handle_order");
    assert_ne!(docs[1]["fault"], true);
}

#[test]
fn without_the_handler_subsegment_work_hangs_under_lambdas_segment() {
    let (recorder, emitter) = recorder();
    let service = ServiceBuilder::new()
        .layer(
            XRayLambdaLayer::new()
                .with_recorder(recorder)
                .without_handler_subsegment(),
        )
        .service(service_fn(work));
    let event = LambdaEvent::new(Value::from("fail"), context(Some(HEADER), "orders-fn"));
    assert!(block_on(service.oneshot(event)).is_err());
    // Only "work", directly under the facade (Lambda's segment); the error has nowhere to go.
    let docs = xray_testkit::checked(emitter.documents());
    assert_eq!(docs.len(), 1, "{docs:#?}");
    assert_eq!(docs[0]["name"], "work");
    assert_eq!(docs[0]["parent_id"], PARENT);
    assert_eq!(docs[0]["trace_id"], ROOT);
}

#[test]
fn an_invocation_without_a_trace_header_runs_untraced() {
    let (recorder, emitter) = recorder();
    let service = ServiceBuilder::new()
        .layer(XRayLambdaLayer::new().with_recorder(recorder))
        .service(service_fn(|_: LambdaEvent<Value>| async {
            Ok::<_, Error>(xray_sdk::current().is_none())
        }));
    let event = LambdaEvent::new(Value::Null, context(None, "orders-fn"));
    assert!(block_on(service.oneshot(event)).unwrap(), "no context");
    assert!(emitter.documents().is_empty());
}

#[test]
fn a_disabled_recorder_leaves_the_handler_alone() {
    let service = ServiceBuilder::new()
        .layer(XRayLambdaLayer::new().with_recorder(Recorder::disabled()))
        .service(service_fn(|_: LambdaEvent<Value>| async {
            Ok::<_, Error>(xray_sdk::current().is_none())
        }));
    let event = LambdaEvent::new(Value::Null, context(Some(HEADER), "orders-fn"));
    assert!(block_on(service.oneshot(event)).unwrap(), "no context");
}

#[test]
fn an_unsampled_invocation_records_nothing_but_propagates() {
    let (recorder, emitter) = recorder();
    let service = ServiceBuilder::new()
        .layer(XRayLambdaLayer::new().with_recorder(recorder))
        .service(service_fn(|_: LambdaEvent<Value>| async {
            let current = xray_sdk::current().expect("a context");
            let call = current.begin_subsegment("call");
            Ok::<_, Error>(call.trace_header().to_string())
        }));
    let header = HEADER.replace("Sampled=1", "Sampled=0");
    let event = LambdaEvent::new(Value::Null, context(Some(header.as_str()), "orders-fn"));
    let downstream = block_on(service.oneshot(event)).unwrap();
    assert!(
        downstream.starts_with(&format!("Root={ROOT};Parent=")),
        "{downstream}"
    );
    assert!(
        downstream.ends_with(";Sampled=0;Lineage=10:a87bd80c:1"),
        "{downstream}"
    );
    assert!(emitter.documents().is_empty());
}

#[test]
fn a_handler_future_dropped_early_still_ends_the_invocation() {
    let (recorder, emitter) = recorder();
    let mut service = ServiceBuilder::new()
        .layer(XRayLambdaLayer::new().with_recorder(recorder))
        .service(service_fn(|_: LambdaEvent<Value>| async {
            let current = xray_sdk::current().expect("a context");
            let _open = current.begin_subsegment("never finishes");
            std::future::pending::<()>().await;
            Ok::<_, Error>(())
        }));
    let event = LambdaEvent::new(Value::Null, context(Some(HEADER), "orders-fn"));
    {
        let mut future = pin!(Service::call(&mut service, event));
        let mut cx = TaskContext::from_waker(Waker::noop());
        assert!(future.as_mut().poll(&mut cx).is_pending());
    } // dropped here, as when lambda_runtime shuts down mid-invocation
    let docs = xray_testkit::checked(emitter.documents());
    let names: Vec<&str> = docs.iter().filter_map(|d| d["name"].as_str()).collect();
    assert_eq!(names, ["never finishes", "## orders-fn"], "{docs:#?}");
}

#[test]
fn a_lambda_http_request_is_traced_from_the_context_in_its_extensions() {
    let (recorder, emitter) = recorder();
    let service = ServiceBuilder::new()
        .layer(XRayLambdaLayer::new().with_recorder(recorder))
        .service(service_fn(|_: http::Request<String>| async {
            let current = xray_sdk::current().expect("a context");
            current.begin_subsegment("work").end();
            Ok::<_, Error>("done")
        }));
    // What `lambda_http` does (`RequestExt::with_lambda_context`): the Context as an extension.
    // The request's own X-Amzn-Trace-Id is not the invocation's and is ignored.
    let mut request = http::Request::builder()
        .uri("https://example.com/orders")
        .header(
            "x-amzn-trace-id",
            "Root=1-67748580-47f4d70085ac735f281b4ee1;Sampled=1",
        )
        .body(String::new())
        .unwrap();
    request
        .extensions_mut()
        .insert(context(Some(HEADER), "orders-http"));
    assert_eq!(block_on(service.oneshot(request)).unwrap(), "done");
    let docs = xray_testkit::checked(emitter.documents());
    assert_eq!(docs.len(), 2, "{docs:#?}");
    assert_eq!(docs[1]["name"], "## orders-http");
    assert_eq!(docs[1]["parent_id"], PARENT);
    assert!(docs.iter().all(|d| d["trace_id"] == ROOT), "{docs:#?}");
}

#[test]
fn an_http_request_without_a_lambda_context_runs_untraced() {
    let (recorder, emitter) = recorder();
    let service = ServiceBuilder::new()
        .layer(XRayLambdaLayer::new().with_recorder(recorder))
        .service(service_fn(|_: http::Request<String>| async {
            Ok::<_, Error>(xray_sdk::current().is_none())
        }));
    let request = http::Request::new(String::new());
    assert!(block_on(service.oneshot(request)).unwrap(), "no context");
    assert!(emitter.documents().is_empty());
}
