//! XRayClientLayer around a stand-in HTTP client: the subsegment and the header it sends.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{HeaderMap, Request, Response, StatusCode};
use serde_json::Value;
use tower::{Layer, ServiceExt, service_fn};
use xray_sdk::config::ContextMissing;
use xray_sdk::{FutureExt, Recorder, TraceHeader};
use xray_tower::XRayClientLayer;

use support::{in_memory, sampling_all};

const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";

/// A client answering `status` and keeping the headers of every request it was given.
type Seen = Arc<Mutex<Vec<HeaderMap>>>;

fn client(
    status: u16,
) -> (
    impl tower::Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone,
    Seen,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let svc = service_fn(move |req: Request<()>| {
        kept.lock().unwrap().push(req.headers().clone());
        async move {
            let mut response = Response::new(());
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            response
                .headers_mut()
                .insert("content-length", "42".parse().unwrap());
            Ok::<_, Infallible>(response)
        }
    });
    (svc, seen)
}

fn sent_header(seen: &Seen) -> Option<String> {
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "one request sent");
    seen[0]
        .get("x-amzn-trace-id")
        .map(|v| v.to_str().unwrap().to_owned())
}

fn subsegments(doc: &Value) -> &Vec<Value> {
    doc["subsegments"].as_array().expect("subsegments")
}

#[tokio::test]
async fn records_a_remote_subsegment_and_sends_its_id() {
    let (recorder, emitter) = in_memory();
    let (inner, seen) = client(200);
    let svc = XRayClientLayer::new()
        .with_recorder(recorder.clone())
        .with_traced(true)
        .layer(inner);
    let segment = recorder.begin_segment("caller");
    let req = Request::post("http://user:pw@orders.internal:8080/v1/orders?id=7#frag")
        // Replaced, not appended: this one names another parent.
        .header(
            "x-amzn-trace-id",
            "Root=1-00000000-000000000000000000000000;Sampled=1",
        )
        .body(())
        .unwrap();
    svc.oneshot(req)
        .with_context(segment.entity().clone())
        .await
        .unwrap();
    let trace_id = segment.trace_id();
    segment.end();

    let docs = xray_testkit::checked(emitter.documents());
    let call = &subsegments(&docs[0])[0];
    assert_eq!(call["name"], "orders.internal");
    assert_eq!(call["namespace"], "remote");
    assert_eq!(call["traced"], true);
    assert_eq!(call["http"]["request"]["method"], "POST");
    assert_eq!(
        call["http"]["request"]["url"],
        "http://orders.internal:8080/v1/orders"
    );
    assert_eq!(call["http"]["response"]["status"], 200);
    assert_eq!(call["http"]["response"]["content_length"], 42);

    let sent = sent_header(&seen).expect("header sent");
    let sent: TraceHeader = sent.parse().unwrap();
    assert_eq!(sent.root(), trace_id);
    assert_eq!(
        sent.parent().unwrap().to_string(),
        call["id"].as_str().unwrap()
    );
    assert_eq!(sent.sampled(), xray_sdk::header::Sampled::Yes);
    let all = seen.lock().unwrap()[0]
        .get_all("x-amzn-trace-id")
        .iter()
        .count();
    assert_eq!(all, 1);
}

#[tokio::test]
async fn status_classes_map_to_flags() {
    #[rustfmt::skip]
    let cases: &[(u16, bool, bool, bool)] = &[
        (204, false, false, false),
        (403, true,  false, false),
        (429, true,  true,  false),
        (502, false, false, true),
    ];
    for &(status, error, throttle, fault) in cases {
        let (recorder, emitter) = in_memory();
        let (inner, _) = client(status);
        let svc = XRayClientLayer::new()
            .with_recorder(recorder.clone())
            .layer(inner);
        let segment = recorder.begin_segment("caller");
        svc.oneshot(Request::get("http://b.internal/").body(()).unwrap())
            .with_context(segment.entity().clone())
            .await
            .unwrap();
        segment.end();
        let docs = xray_testkit::checked(emitter.documents());
        let call = &subsegments(&docs[0])[0];
        let flag = |k: &str| call.get(k).and_then(Value::as_bool).unwrap_or(false);
        assert_eq!(
            (flag("error"), flag("throttle"), flag("fault")),
            (error, throttle, fault),
            "status {status}"
        );
        assert!(
            docs[0].get("fault").is_none(),
            "the caller's own segment is untouched"
        );
    }
}

#[tokio::test]
async fn unsampled_trace_is_propagated_as_sampled_0() {
    let (recorder, emitter) = in_memory();
    let (inner, seen) = client(200);
    let svc = XRayClientLayer::new()
        .with_recorder(recorder.clone())
        .layer(inner);
    let upstream: TraceHeader = format!("Root={ROOT};Sampled=0").parse().unwrap();
    let segment = recorder.begin_segment_with(
        "caller",
        Some(&upstream),
        &xray_sdk::sampling::SamplingRequest::new(),
    );
    svc.oneshot(Request::get("http://b.internal/").body(()).unwrap())
        .with_context(segment.entity().clone())
        .await
        .unwrap();
    segment.end();
    assert!(xray_testkit::checked(emitter.documents()).is_empty());
    let sent: TraceHeader = sent_header(&seen).unwrap().parse().unwrap();
    assert_eq!(sent.root().to_string(), ROOT);
    assert_eq!(sent.sampled(), xray_sdk::header::Sampled::No);
    assert!(sent.parent().is_some());
}

#[tokio::test]
async fn no_context_sends_the_request_unchanged() {
    for strategy in [ContextMissing::LogError, ContextMissing::RuntimeError] {
        let emitter = xray_sdk::InMemoryEmitter::new();
        let recorder = sampling_all()
            .with_emitter(emitter.clone())
            .with_context_missing(strategy)
            .build()
            .unwrap();
        let (inner, seen) = client(200);
        let svc = XRayClientLayer::new()
            .with_recorder(recorder.clone())
            .layer(inner);
        let response = svc
            .oneshot(Request::get("http://b.internal/").body(()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(sent_header(&seen), None);
        assert!(xray_testkit::checked(emitter.documents()).is_empty());
        assert_eq!(recorder.stats().context_missing, 1, "{strategy:?}");
    }
}

#[tokio::test]
async fn calls_to_the_daemon_are_not_traced() {
    let emitter = xray_sdk::InMemoryEmitter::new();
    let recorder = sampling_all()
        .with_emitter(emitter.clone())
        .with_daemon_address("127.0.0.1:2999".parse().unwrap())
        .build()
        .unwrap();
    let (inner, seen) = client(200);
    let svc = XRayClientLayer::new()
        .with_recorder(recorder.clone())
        .layer(inner);
    let segment = recorder.begin_segment("caller");
    for uri in [
        "http://127.0.0.1:2999/GetSamplingRules",
        "http://localhost:2999/SamplingTargets",
    ] {
        svc.clone()
            .oneshot(Request::post(uri).body(()).unwrap())
            .with_context(segment.entity().clone())
            .await
            .unwrap();
    }
    segment.end();
    let docs = xray_testkit::checked(emitter.documents());
    assert!(docs[0].get("subsegments").is_none(), "{:#?}", docs[0]);
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|h| h.get("x-amzn-trace-id").is_none())
    );
}

#[tokio::test]
async fn transport_error_is_a_fault_with_cause() {
    let (recorder, emitter) = in_memory();
    let inner = service_fn(|_req: Request<()>| async {
        Err::<Response<()>, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ))
    });
    let svc = XRayClientLayer::new()
        .with_recorder(recorder.clone())
        .layer(inner);
    let segment = recorder.begin_segment("caller");
    let err = svc
        .oneshot(Request::get("http://down.internal/").body(()).unwrap())
        .with_context(segment.entity().clone())
        .await
        .expect_err("the error comes through");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    segment.end();
    let docs = xray_testkit::checked(emitter.documents());
    let call = &subsegments(&docs[0])[0];
    assert_eq!(call["fault"], true);
    assert_eq!(
        call["cause"]["exceptions"][0]["message"],
        "connection refused"
    );
    assert_eq!(
        call["cause"]["exceptions"][0]["type"],
        "std::io::error::Error"
    );
}

#[tokio::test]
async fn disabled_recorder_sends_unchanged() {
    let recorder = Recorder::disabled();
    let (inner, seen) = client(200);
    let svc = XRayClientLayer::new()
        .with_recorder(recorder.clone())
        .layer(inner);
    let segment = recorder.begin_segment("caller");
    svc.oneshot(Request::get("http://b.internal/").body(()).unwrap())
        .with_context(segment.entity().clone())
        .await
        .unwrap();
    assert_eq!(sent_header(&seen), None);
}
