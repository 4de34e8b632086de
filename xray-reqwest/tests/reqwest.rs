//! XRayMiddleware on a real reqwest client, calling a real HTTP server on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use xray_reqwest::XRayMiddleware;
use xray_sdk::config::ContextMissing;
use xray_sdk::header::Sampled;
use xray_sdk::{FutureExt, Recorder, TraceHeader};
use xray_testkit::capture::Capture;

/// A builder for a recorder that samples every new trace and reads no environment.
fn sampling_all() -> xray_sdk::RecorderBuilder {
    let rules = xray_sdk::sampling::SamplingRules::builder()
        .with_default(0, 1.0)
        .build()
        .expect("valid rules");
    Recorder::builder()
        .ignore_environment()
        .with_service_name("test")
        .with_sampler(Arc::new(xray_sdk::sampling::LocalSampler::new(rules)))
}

/// The headers of every request the server received.
type Seen = Arc<Mutex<Vec<HeaderMap>>>;

/// An HTTP server on a free loopback port answering `status` with a 5-byte body.
async fn server(status: u16) -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let kept = seen.clone();
    let app = Router::new().fallback(any(move |headers: HeaderMap| {
        let kept = kept.clone();
        async move {
            kept.lock().unwrap().push(headers);
            (StatusCode::from_u16(status).unwrap(), "hello")
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

fn client(recorder: &Recorder) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(
            XRayMiddleware::new()
                .with_recorder(recorder.clone())
                .with_traced(true),
        )
        .build()
}

fn trace_headers(seen: &Seen) -> Vec<Option<String>> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|h| {
            h.get("x-amzn-trace-id")
                .map(|v| v.to_str().unwrap().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn records_a_remote_subsegment_and_sends_its_id() {
    let capture = Capture::new();
    let recorder = capture.recorder();
    let (addr, seen) = server(503).await;
    let segment = recorder.begin_segment("caller");
    let url = format!("http://user:secret@{addr}/v1/orders?id=7");
    let response = client(recorder)
        .post(&url)
        .header(
            "x-amzn-trace-id",
            "Root=1-00000000-000000000000000000000000;Sampled=1",
        )
        .send()
        .with_context(segment.entity().clone())
        .await
        .unwrap();
    // The application sees the response as the server sent it.
    assert_eq!(response.status(), 503);
    assert_eq!(response.text().await.unwrap(), "hello");
    let trace_id = segment.trace_id();
    segment.end();

    let caller = capture.segment("caller");
    let call = caller.subsegment("127.0.0.1");
    call.assert_parent(&caller)
        .assert_namespace("remote")
        .assert_fault(true);
    assert!(call.flag("traced"), "{}", call.json());
    assert_eq!(call.http_status(), Some(503));
    let http = &call.json()["http"];
    assert_eq!(http["request"]["method"], "POST");
    assert_eq!(http["request"]["url"], format!("http://{addr}/v1/orders"));
    assert_eq!(http["response"]["content_length"], 5);

    // One header, replacing the application's, naming the subsegment as parent.
    let sent = trace_headers(&seen);
    assert_eq!(sent.len(), 1);
    let header: TraceHeader = sent[0].as_deref().unwrap().parse().unwrap();
    assert_eq!(header.root(), trace_id);
    assert_eq!(header.parent().unwrap().to_string(), call.id());
    assert_eq!(header.sampled(), Sampled::Yes);
}

#[tokio::test]
async fn a_connection_error_is_a_fault_with_its_cause() {
    let capture = Capture::new();
    let recorder = capture.recorder();
    // Bound, then closed: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let segment = recorder.begin_segment("caller");
    let result = client(recorder)
        .get(format!("http://{closed}/"))
        .send()
        .with_context(segment.entity().clone())
        .await;
    assert!(result.is_err(), "the error reaches the application");
    segment.end();

    let call = capture.segment("caller").subsegment("127.0.0.1");
    call.assert_fault(true);
    assert_eq!(call.http_status(), None);
    assert!(
        call.exception_messages().iter().any(|m| !m.is_empty()),
        "{}",
        call.json()
    );
}

#[tokio::test]
async fn no_context_sends_the_request_unchanged() {
    let emitter = xray_sdk::InMemoryEmitter::new();
    let recorder = sampling_all()
        .with_emitter(emitter.clone())
        .with_context_missing(ContextMissing::RuntimeError)
        .build()
        .unwrap();
    let (addr, seen) = server(200).await;
    let response = client(&recorder)
        .get(format!("http://{addr}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(trace_headers(&seen), [None]);
    assert!(emitter.documents().is_empty());
    assert_eq!(recorder.stats().context_missing, 1);
}

#[tokio::test]
async fn calls_to_the_daemon_are_not_traced() {
    let (addr, seen) = server(200).await;
    let emitter = xray_sdk::InMemoryEmitter::new();
    let recorder = sampling_all()
        .with_emitter(emitter.clone())
        .with_daemon_address(addr.to_string().parse().unwrap())
        .build()
        .unwrap();
    let segment = recorder.begin_segment("caller");
    client(&recorder)
        .post(format!("http://{addr}/GetSamplingRules"))
        .send()
        .with_context(segment.entity().clone())
        .await
        .unwrap();
    segment.end();
    let docs = xray_testkit::checked(emitter.documents());
    assert!(docs[0].get("subsegments").is_none(), "{:#?}", docs[0]);
    assert_eq!(trace_headers(&seen), [None]);
}
