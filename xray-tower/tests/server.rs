//! XRayLayer on services called directly (no network): what each request records and answers.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::{Layer, ServiceExt, service_fn};
use xray_sdk::clock::ManualClock;
use xray_sdk::{Recorder, TraceHeader};
use xray_testkit::capture::Capture;
use xray_tower::{SegmentNaming, XRayLayer};

use support::{ChannelBody, in_memory, sampling_all};

const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";

fn app(recorder: &Recorder) -> Router {
    Router::new()
        .route("/ok", get(|| async { "fine" }))
        .route(
            "/status/{code}",
            get(
                |axum::extract::Path(code): axum::extract::Path<u16>| async move {
                    StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT)
                },
            ),
        )
        .route(
            "/work",
            get(|| async {
                let current = xray_sdk::current().expect("the segment is current in handlers");
                let child = current.begin_subsegment("load");
                child.put_annotation("rows", 3);
                child.end();
                "worked"
            }),
        )
        .layer(XRayLayer::new("api").with_recorder(recorder.clone()))
}

fn get_req(uri: &str) -> http::request::Builder {
    Request::get(uri).header("host", "api.example.com")
}

async fn call(app: Router, req: Request<Body>) -> Response<Bytes> {
    let response = app.oneshot(req).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    Response::from_parts(parts, bytes)
}

fn only(docs: Vec<Value>) -> Value {
    assert_eq!(docs.len(), 1, "one document expected: {docs:#?}");
    docs.into_iter().next().expect("one document")
}

#[tokio::test]
async fn records_request_and_response() {
    let (recorder, emitter) = in_memory();
    let req = get_req("/ok?token=secret")
        .header("user-agent", "curl/8")
        .header("x-forwarded-for", " 203.0.113.9 , 10.0.0.1")
        .body(Body::empty())
        .unwrap();
    let response = call(app(&recorder), req).await;
    assert_eq!(response.body(), "fine");

    let doc = only(xray_testkit::checked(emitter.documents()));
    assert_eq!(doc["name"], "api");
    let http = &doc["http"];
    assert_eq!(http["request"]["method"], "GET");
    assert_eq!(http["request"]["url"], "http://api.example.com/ok");
    assert_eq!(http["request"]["user_agent"], "curl/8");
    assert_eq!(http["request"]["client_ip"], "203.0.113.9");
    assert_eq!(http["request"]["x_forwarded_for"], true);
    assert_eq!(http["response"]["status"], 200);
    assert_eq!(http["response"]["content_length"], 4);
    assert!(doc.get("error").is_none() && doc.get("fault").is_none());

    let header = response.headers()["x-amzn-trace-id"].to_str().unwrap();
    assert_eq!(
        header,
        format!("Root={}", doc["trace_id"].as_str().unwrap())
    );
}

#[tokio::test]
async fn client_ip_from_connect_info_without_forwarded_for() {
    let (recorder, emitter) = in_memory();
    let mut req = get_req("/ok").body(Body::empty()).unwrap();
    let peer: SocketAddr = "192.0.2.7:5555".parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(peer));
    call(app(&recorder), req).await;
    let doc = only(xray_testkit::checked(emitter.documents()));
    assert_eq!(doc["http"]["request"]["client_ip"], "192.0.2.7");
    assert!(doc["http"]["request"].get("x_forwarded_for").is_none());
}

#[tokio::test]
async fn status_classes_map_to_flags() {
    #[rustfmt::skip]
    let cases: &[(u16, bool, bool, bool)] = &[
        // status, error, throttle, fault
        (200, false, false, false),
        (302, false, false, false),
        (404, true,  false, false),
        (429, true,  true,  false),
        (500, false, false, true),
        (503, false, false, true),
    ];
    for &(status, error, throttle, fault) in cases {
        let (recorder, emitter) = in_memory();
        let req = get_req(&format!("/status/{status}"))
            .body(Body::empty())
            .unwrap();
        let response = call(app(&recorder), req).await;
        assert_eq!(response.status().as_u16(), status);
        let doc = only(xray_testkit::checked(emitter.documents()));
        assert_eq!(doc["http"]["response"]["status"], status);
        let flag = |k: &str| doc.get(k).and_then(Value::as_bool).unwrap_or(false);
        assert_eq!(
            (flag("error"), flag("throttle"), flag("fault")),
            (error, throttle, fault),
            "status {status}"
        );
    }
}

#[tokio::test]
async fn continues_upstream_trace() {
    let (recorder, emitter) = in_memory();
    let req = get_req("/ok")
        .header(
            "x-amzn-trace-id",
            format!("Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1"),
        )
        .body(Body::empty())
        .unwrap();
    let response = call(app(&recorder), req).await;
    let doc = only(xray_testkit::checked(emitter.documents()));
    assert_eq!(doc["trace_id"], ROOT);
    assert_eq!(doc["parent_id"], "53995c3f42cd8ad8");
    // Not asked with `Sampled=?`: only the root comes back.
    assert_eq!(
        response.headers()["x-amzn-trace-id"],
        format!("Root={ROOT}")
    );
}

#[tokio::test]
async fn upstream_not_sampled_records_nothing_but_answers() {
    let (recorder, emitter) = in_memory();
    let req = get_req("/work")
        .header("x-amzn-trace-id", format!("Root={ROOT};Sampled=0"))
        .body(Body::empty())
        .unwrap();
    let response = call(app(&recorder), req).await;
    assert_eq!(response.body(), "worked");
    assert!(xray_testkit::checked(emitter.documents()).is_empty());
    assert_eq!(
        response.headers()["x-amzn-trace-id"],
        format!("Root={ROOT}")
    );
}

#[tokio::test]
async fn sampling_requested_gets_the_decision_and_nothing_echoed() {
    let (recorder, _emitter) = in_memory();
    let req = get_req("/ok")
        .header(
            "x-amzn-trace-id",
            format!("Root={ROOT};Sampled=?;Foo=bar;Self=1-67891233-abcdef012345678912345678"),
        )
        .body(Body::empty())
        .unwrap();
    let response = call(app(&recorder), req).await;
    assert_eq!(
        response.headers()["x-amzn-trace-id"],
        format!("Root={ROOT};Sampled=1")
    );

    let never = Recorder::builder()
        .ignore_environment()
        .with_emitter(xray_sdk::InMemoryEmitter::new())
        .with_sampler(Arc::new(xray_sdk::sampling::LocalSampler::new(
            xray_sdk::sampling::SamplingRules::builder()
                .with_default(0, 0.0)
                .build()
                .unwrap(),
        )))
        .build()
        .unwrap();
    let req = get_req("/ok")
        .header("x-amzn-trace-id", format!("Root={ROOT};Sampled=?"))
        .body(Body::empty())
        .unwrap();
    let response = call(app(&never), req).await;
    assert_eq!(
        response.headers()["x-amzn-trace-id"],
        format!("Root={ROOT};Sampled=0")
    );
}

#[tokio::test]
async fn malformed_header_starts_a_new_trace() {
    for bad in [
        "Root=garbage;Sampled=1",
        "Parent=53995c3f42cd8ad8",
        &"x".repeat(5000),
    ] {
        let (recorder, emitter) = in_memory();
        let req = get_req("/ok")
            .header("x-amzn-trace-id", bad)
            .body(Body::empty())
            .unwrap();
        let response = call(app(&recorder), req).await;
        let doc = only(xray_testkit::checked(emitter.documents()));
        assert!(doc.get("parent_id").is_none());
        let answered = response.headers()["x-amzn-trace-id"].to_str().unwrap();
        let answered: TraceHeader = answered.parse().unwrap();
        assert_eq!(
            answered.root().to_string(),
            doc["trace_id"].as_str().unwrap()
        );
    }
}

#[tokio::test]
async fn handler_work_nests_under_the_segment() {
    let capture = Capture::new();
    let req = get_req("/work").body(Body::empty()).unwrap();
    call(app(capture.recorder()), req).await;
    let api = capture.segment("api");
    api.subsegment("load")
        .assert_parent(&api)
        .assert_annotation("rows", 3);
}

#[tokio::test]
async fn dynamic_naming_uses_matching_hosts_only() {
    let (recorder, emitter) = in_memory();
    let layer =
        XRayLayer::new(SegmentNaming::dynamic("*.example.com", "fallback")).with_recorder(recorder);
    let app = Router::new().route("/", get(|| async { "" })).layer(layer);
    for host in ["shop.example.com", "attacker.test"] {
        let req = Request::get("/")
            .header("host", host)
            .body(Body::empty())
            .unwrap();
        call(app.clone(), req).await;
    }
    let names: Vec<_> = xray_testkit::checked(emitter.documents())
        .iter()
        .map(|d| d["name"].clone())
        .collect();
    assert_eq!(names, ["shop.example.com", "fallback"]);
}

#[tokio::test]
async fn inner_error_is_a_fault_with_cause() {
    let capture = Capture::new();
    let svc = XRayLayer::new("api")
        .with_recorder(capture.recorder().clone())
        .layer(service_fn(|_req: Request<Body>| async {
            Err::<Response<Body>, _>("backend unavailable".to_owned())
        }));
    let err = svc
        .oneshot(get_req("/").body(Body::empty()).unwrap())
        .await
        .expect_err("the inner error comes through unchanged");
    assert_eq!(err, "backend unavailable");
    let api = capture.segment("api");
    api.assert_fault(true);
    assert_eq!(api.exception_messages(), ["backend unavailable"]);
}

#[tokio::test]
async fn panicking_handler_is_a_fault_and_still_panics() {
    let (recorder, emitter) = in_memory();
    let app = Router::new()
        .route(
            "/boom",
            get(|| async {
                if std::hint::black_box(true) {
                    panic!("handler exploded");
                }
                ""
            }),
        )
        .layer(XRayLayer::new("api").with_recorder(recorder));
    let req = get_req("/boom").body(Body::empty()).unwrap();
    let joined = tokio::spawn(app.oneshot(req)).await;
    assert!(joined.expect_err("the panic goes on").is_panic());
    let doc = only(xray_testkit::checked(emitter.documents()));
    assert_eq!(doc["fault"], true);
    let exception = &doc["cause"]["exceptions"][0];
    assert_eq!(exception["message"], "handler exploded");
    assert_eq!(exception["type"], "panic");
}

#[tokio::test]
async fn dropped_request_future_still_ends_the_segment() {
    let (recorder, emitter) = in_memory();
    let (_never_tx, never_rx) = tokio::sync::oneshot::channel::<()>();
    let never_rx = Arc::new(tokio::sync::Mutex::new(Some(never_rx)));
    let svc = XRayLayer::new("api")
        .with_recorder(recorder)
        .layer(service_fn(move |_req: Request<Body>| {
            let never_rx = never_rx.clone();
            async move {
                let rx = never_rx.lock().await.take();
                if let Some(rx) = rx {
                    let _ = rx.await;
                }
                Ok::<_, Infallible>(Response::new(Body::empty()))
            }
        }));
    let fut = svc.oneshot(get_req("/slow").body(Body::empty()).unwrap());
    let mut fut = Box::pin(fut);
    // Poll once so the request is under way, then give up on it.
    assert!(futures_poll_once(fut.as_mut()).await.is_none());
    assert!(xray_testkit::checked(emitter.documents()).is_empty());
    drop(fut);
    let doc = only(xray_testkit::checked(emitter.documents()));
    assert!(doc["end_time"].as_f64().is_some());
    assert!(doc["http"].get("response").is_none());
}

async fn futures_poll_once<F: std::future::Future + Unpin>(mut f: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test]
async fn streaming_body_ends_the_segment_after_the_last_chunk() {
    let start = 1_750_000_000_000_000;
    let clock = Arc::new(ManualClock::new(start));
    let emitter = xray_sdk::InMemoryEmitter::new();
    let recorder = sampling_all()
        .with_emitter(emitter.clone())
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let (tx, body) = ChannelBody::new();
    let body = std::sync::Mutex::new(Some(body));
    let svc = XRayLayer::new("stream")
        .with_recorder(recorder)
        .layer(service_fn(move |_req: Request<Body>| {
            let body = body.lock().unwrap().take().expect("called once");
            async move { Ok::<_, Infallible>(Response::new(body)) }
        }));
    let response = svc
        .oneshot(get_req("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let mut body = response.into_body();

    clock.advance_micros(1_000_000);
    tx.send(Ok(Bytes::from_static(b"hello "))).unwrap();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "hello ");
    assert!(
        xray_testkit::checked(emitter.documents()).is_empty(),
        "still sending"
    );

    clock.advance_micros(2_000_000);
    tx.send(Ok(Bytes::from_static(b"world"))).unwrap();
    drop(tx);
    body.frame().await.unwrap().unwrap();
    assert!(body.frame().await.is_none());

    let doc = only(xray_testkit::checked(emitter.documents()));
    let start_s = start as f64 / 1e6;
    assert_eq!(doc["start_time"].as_f64().unwrap(), start_s);
    assert_eq!(doc["end_time"].as_f64().unwrap(), start_s + 3.0);
    assert_eq!(doc["http"]["response"]["content_length"], 11);
}

#[tokio::test]
async fn failing_body_is_a_fault() {
    let (recorder, emitter) = in_memory();
    let (tx, body) = ChannelBody::new();
    let body = std::sync::Mutex::new(Some(body));
    let svc = XRayLayer::new("stream")
        .with_recorder(recorder)
        .layer(service_fn(move |_req: Request<Body>| {
            let body = body.lock().unwrap().take().expect("called once");
            async move { Ok::<_, Infallible>(Response::new(body)) }
        }));
    let response = svc
        .oneshot(get_req("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    tx.send(Err("disk gone".to_owned())).unwrap();
    let err = response
        .into_body()
        .collect()
        .await
        .expect_err("body fails");
    assert_eq!(err, "disk gone");
    let doc = only(xray_testkit::checked(emitter.documents()));
    assert_eq!(doc["fault"], true);
    assert_eq!(doc["cause"]["exceptions"][0]["message"], "disk gone");
}

#[tokio::test]
async fn disabled_recorder_passes_through() {
    let emitter = xray_sdk::InMemoryEmitter::new();
    let recorder = sampling_all()
        .with_emitter(emitter.clone())
        .with_enabled(false)
        .build()
        .unwrap();
    let response = call(app(&recorder), get_req("/ok").body(Body::empty()).unwrap()).await;
    assert_eq!(response.body(), "fine");
    assert!(response.headers().get("x-amzn-trace-id").is_none());
    assert!(xray_testkit::checked(emitter.documents()).is_empty());
}

#[tokio::test]
async fn tracing_name_from_the_environment_wins() {
    let emitter = xray_sdk::InMemoryEmitter::new();
    let recorder = sampling_all()
        .with_env(|k| (k == xray_sdk::config::ENV_TRACING_NAME).then(|| "forced".to_owned()))
        .with_emitter(emitter.clone())
        .build()
        .unwrap();
    call(app(&recorder), get_req("/ok").body(Body::empty()).unwrap()).await;
    assert_eq!(
        only(xray_testkit::checked(emitter.documents()))["name"],
        "forced"
    );
}

#[tokio::test]
async fn oversized_client_values_are_cut() {
    let (recorder, emitter) = in_memory();
    let long = "a".repeat(10_000);
    let req = get_req(&format!("/ok?{long}"))
        .header("user-agent", &long)
        .header("x-forwarded-for", &long)
        .body(Body::empty())
        .unwrap();
    call(app(&recorder), req).await;
    let doc = only(xray_testkit::checked(emitter.documents()));
    let request = &doc["http"]["request"];
    assert_eq!(request["user_agent"].as_str().unwrap().len(), 250);
    assert_eq!(request["client_ip"].as_str().unwrap().len(), 250);
    assert_eq!(request["url"], "http://api.example.com/ok");
}
