//! Real servers on 127.0.0.1:0, service A calling service B through hyper-util's client, and
//! xray-local as the daemon.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, mpsc};
use tower::{Layer, ServiceExt};
use xray_local::{Trace, XRayLocal};
use xray_sdk::clock::ManualClock;
use xray_sdk::{DaemonAddress, Recorder, TraceHeader};
use xray_tower::{XRayClient, XRayClientLayer, XRayLayer};

use support::{ChannelBody, sampling_all};

const WAIT: Duration = Duration::from_secs(20);

type Plain = Client<HttpConnector, Full<Bytes>>;

fn plain_client() -> Plain {
    Client::builder(TokioExecutor::new()).build_http()
}

fn local() -> XRayLocal {
    XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        // B's segment arrives before A's: wait for the trace to be quiet, not just whole.
        .quiet_period(Duration::from_millis(200))
        .start()
        .expect("xray-local starts")
}

fn recorder_for(local: &XRayLocal) -> Recorder {
    sampling_all()
        .with_daemon_address(DaemonAddress::new(local.udp_addr()))
        .build()
        .unwrap()
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    addr
}

#[derive(Clone)]
struct AState {
    client: XRayClient<Plain>,
    b: SocketAddr,
}

/// A answers with what B answered: B's status, and as body the trace header B received.
async fn a_handler(State(s): State<AState>, path: Option<Path<u16>>) -> (StatusCode, String) {
    let uri = match path {
        Some(Path(code)) => format!("http://{}/b/{code}", s.b),
        None => format!("http://{}/b/200", s.b),
    };
    let req = Request::get(uri).body(Full::default()).unwrap();
    match s.client.oneshot(req).await {
        Ok(response) => {
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

async fn b_handler(Path(code): Path<u16>, headers: HeaderMap) -> (StatusCode, String) {
    let seen = headers
        .get("x-amzn-trace-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (StatusCode::from_u16(code).unwrap(), seen)
}

/// Starts B, then A calling B; returns A's address.
async fn a_and_b(recorder: &Recorder) -> SocketAddr {
    let b = Router::new()
        .route("/b/{code}", get(b_handler))
        .layer(XRayLayer::new("service-b").with_recorder(recorder.clone()));
    let b = serve(b).await;
    let client = XRayClientLayer::new()
        .with_recorder(recorder.clone())
        .with_traced(true)
        .layer(plain_client());
    let a = Router::new()
        .route("/a", get(a_handler))
        .route("/a/{code}", get(a_handler))
        .with_state(AState { client, b })
        .layer(XRayLayer::new("service-a").with_recorder(recorder.clone()));
    serve(a).await
}

async fn get_from(
    client: &Plain,
    uri: String,
    header: Option<&str>,
) -> (StatusCode, Option<String>, String) {
    let mut req = Request::get(uri);
    if let Some(h) = header {
        req = req.header("x-amzn-trace-id", h);
    }
    let response = client
        .request(req.body(Full::default()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let answered = response
        .headers()
        .get("x-amzn-trace-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        answered,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn root_of(answered: Option<String>) -> String {
    let header: TraceHeader = answered.expect("X-Amzn-Trace-Id answered").parse().unwrap();
    header.root().to_string()
}

async fn wait_trace(local: &Arc<XRayLocal>, id: String) -> Trace {
    let local = local.clone();
    let trace = tokio::task::spawn_blocking(move || local.wait_for_trace(&id, WAIT))
        .await
        .unwrap()
        .expect("the trace settles");
    xray_testkit::assert_all_valid(trace.segments().iter().chain(trace.orphans()));
    trace
}

/// Checks the A → B shape of a trace and returns B's segment's view of the remote call id.
fn assert_a_calls_b(trace: &Trace) {
    assert!(trace.is_complete(), "{trace:#?}");
    assert_eq!(trace.segments().len(), 2, "{trace:#?}");
    let a = trace.find("service-a").expect("A's segment");
    assert!(a.is_segment());
    let call = a
        .subsegments()
        .find(|s| s.name() == Some("127.0.0.1"))
        .expect("remote call");
    assert_eq!(
        call.get("namespace").and_then(|v| v.as_str()),
        Some("remote")
    );
    assert_eq!(call.get("traced").and_then(|v| v.as_bool()), Some(true));
    let b = trace.find("service-b").expect("B's segment");
    assert!(b.is_segment());
    assert_eq!(
        b.parent_id(),
        call.id(),
        "B's parent is A's remote subsegment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_b_in_one_trace() {
    let local = Arc::new(local());
    let recorder = recorder_for(&local);
    let a = a_and_b(&recorder).await;
    let (status, answered, b_saw) = get_from(&plain_client(), format!("http://{a}/a"), None).await;
    assert_eq!(status, 200);
    let root = root_of(answered);
    let trace = wait_trace(&local, root.clone()).await;
    assert_a_calls_b(&trace);

    let call = trace.find("127.0.0.1").unwrap();
    let b_saw: TraceHeader = b_saw.parse().unwrap();
    assert_eq!(b_saw.root().to_string(), root);
    assert_eq!(b_saw.parent().map(|p| p.to_string()).as_deref(), call.id());
    let a_doc = trace.find("service-a").unwrap();
    let request = &a_doc.doc()["http"]["request"];
    assert_eq!(request["client_ip"], "127.0.0.1");
    assert_eq!(request["url"], format!("http://{a}/a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_classes_flag_every_hop() {
    let local = Arc::new(local());
    let recorder = recorder_for(&local);
    let a = a_and_b(&recorder).await;
    let plain = plain_client();
    #[rustfmt::skip]
    let cases: &[(u16, bool, bool, bool)] = &[
        (200, false, false, false),
        (404, true,  false, false),
        (429, true,  true,  false),
        (500, false, false, true),
    ];
    for &(code, error, throttle, fault) in cases {
        let (status, answered, _) = get_from(&plain, format!("http://{a}/a/{code}"), None).await;
        assert_eq!(status.as_u16(), code);
        let trace = wait_trace(&local, root_of(answered)).await;
        assert_a_calls_b(&trace);
        for name in ["service-a", "127.0.0.1", "service-b"] {
            let e = trace.find(name).unwrap();
            let flag = |k: &str| e.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
            assert_eq!(
                (flag("error"), flag("throttle"), flag("fault")),
                (error, throttle, fault),
                "{name} on {code}"
            );
            assert_eq!(e.doc()["http"]["response"]["status"], code, "{name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_upstream_records_nothing_and_propagates() {
    let local = Arc::new(local());
    let recorder = recorder_for(&local);
    let a = a_and_b(&recorder).await;
    let plain = plain_client();
    let unsampled = "1-5759e988-bd862e3fe1be46a994272793";
    let (_, answered, b_saw) = get_from(
        &plain,
        format!("http://{a}/a"),
        Some(&format!(
            "Root={unsampled};Parent=53995c3f42cd8ad8;Sampled=0"
        )),
    )
    .await;
    assert_eq!(answered.as_deref(), Some(&*format!("Root={unsampled}")));
    let b_saw: TraceHeader = b_saw.parse().unwrap();
    assert_eq!(b_saw.root().to_string(), unsampled);
    assert_eq!(b_saw.sampled(), xray_sdk::header::Sampled::No);

    // A sampled request after it: once its documents are in, the unsampled ones would be too.
    let (_, answered, _) = get_from(&plain, format!("http://{a}/a"), None).await;
    let marker = wait_trace(&local, root_of(answered)).await;
    assert_a_calls_b(&marker);
    assert!(local.trace(unsampled).is_none());
    assert_eq!(
        local.stats().accepted(),
        2,
        "only the marker's two segments"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_make_a_thousand_traces() {
    const N: usize = 1000;
    let local = Arc::new(local());
    let recorder = recorder_for(&local);
    let a = a_and_b(&recorder).await;
    let plain = plain_client();
    // Bounded so that loopback UDP is never asked to hold more than a few hundred datagrams.
    let permits = Arc::new(Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..N {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let plain = plain.clone();
        tasks.spawn(async move {
            let (status, answered, _) = get_from(&plain, format!("http://{a}/a"), None).await;
            drop(permit);
            assert_eq!(status, 200);
            root_of(answered)
        });
    }
    let mut roots = HashSet::new();
    while let Some(root) = tasks.join_next().await {
        assert!(roots.insert(root.unwrap()), "trace ids are distinct");
    }
    assert_eq!(roots.len(), N);

    let waiting = local.clone();
    let stats = tokio::task::spawn_blocking(move || {
        waiting.wait_for_stats(WAIT, |s| s.received() >= 2 * N as u64)
    })
    .await
    .unwrap();
    assert_eq!(stats.received(), 2 * N as u64, "{stats:?}");
    assert_eq!(stats.accepted(), 2 * N as u64, "{stats:?}");
    assert_eq!(stats.dropped_total(), 0);
    assert_eq!(recorder.stats().transport.sent, 2 * N as u64);

    let waiting = local.clone();
    let traces = tokio::task::spawn_blocking(move || waiting.wait_for_traces(N, WAIT))
        .await
        .unwrap();
    assert_eq!(traces.len(), N);
    for trace in &traces {
        xray_testkit::assert_all_valid(trace.segments().iter().chain(trace.orphans()));
    }
    let ids: HashSet<String> = traces.iter().map(|t| t.id().to_string()).collect();
    assert_eq!(ids, roots);
    for trace in &traces {
        assert_a_calls_b(trace);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_response_ends_after_the_last_chunk() {
    let local = Arc::new(local());
    let start = 1_750_000_000_000_000;
    let clock = Arc::new(ManualClock::new(start));
    let recorder = sampling_all()
        .with_daemon_address(DaemonAddress::new(local.udp_addr()))
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let (tx, body) = ChannelBody::new();
    let body = Arc::new(std::sync::Mutex::new(Some(body)));
    let app = Router::new()
        .route(
            "/stream",
            get(move || {
                let body = body.lock().unwrap().take().expect("called once");
                async move { Body::new(body) }
            }),
        )
        .layer(XRayLayer::new("streamer").with_recorder(recorder));
    let addr = serve(app).await;

    let response = plain_client()
        .request(
            Request::get(format!("http://{addr}/stream"))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    let root = root_of(
        response
            .headers()
            .get("x-amzn-trace-id")
            .map(|v| v.to_str().unwrap().to_owned()),
    );
    let mut body = response.into_body();
    clock.advance_micros(1_000_000);
    tx.send(Ok(Bytes::from_static(b"first,"))).unwrap();
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        "first,"
    );
    clock.advance_micros(2_000_000);
    tx.send(Ok(Bytes::from_static(b"last"))).unwrap();
    drop(tx);
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "last");

    let trace = wait_trace(&local, root).await;
    let segment = trace.find("streamer").unwrap();
    let start_s = start as f64 / 1e6;
    assert_eq!(segment.start_time(), Some(start_s));
    assert_eq!(segment.end_time(), Some(start_s + 3.0));
    assert_eq!(segment.doc()["http"]["response"]["content_length"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_panic_drops_the_connection_and_records_a_fault() {
    let local = Arc::new(local());
    let recorder = recorder_for(&local);
    let app = Router::new()
        .route(
            "/boom",
            get(|| async {
                if std::hint::black_box(true) {
                    panic!("handler exploded");
                }
            }),
        )
        .layer(XRayLayer::new("panicky").with_recorder(recorder));
    let addr = serve(app).await;
    let root = "1-6759e988-bd862e3fe1be46a994272793";
    let req = Request::get(format!("http://{addr}/boom"))
        .header("x-amzn-trace-id", format!("Root={root};Sampled=1"))
        .body(Full::default())
        .unwrap();
    // Without a panic-catching layer, hyper's connection task unwinds and the connection
    // closes before any response.
    let outcome = plain_client().request(req).await;
    assert!(outcome.is_err(), "{outcome:?}");

    let trace = wait_trace(&local, root.to_owned()).await;
    let segment = trace.find("panicky").unwrap();
    assert_eq!(segment.get("fault").and_then(|v| v.as_bool()), Some(true));
    let exception = &segment.doc()["cause"]["exceptions"][0];
    assert_eq!(exception["message"], "handler exploded");
    assert!(segment.doc()["http"].get("response").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_mid_request_still_ends_the_segment() {
    let local = Arc::new(local());
    let recorder = recorder_for(&local);
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    let app = Router::new()
        .route(
            "/hang",
            get(move || {
                let started_tx = started_tx.clone();
                async move {
                    let _ = started_tx.send(());
                    std::future::pending::<()>().await;
                }
            }),
        )
        .layer(XRayLayer::new("patient").with_recorder(recorder));
    let addr = serve(app).await;
    let root = "1-7759e988-bd862e3fe1be46a994272793";
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!(
                "GET /hang HTTP/1.1\r\nHost: {addr}\r\nX-Amzn-Trace-Id: Root={root};Sampled=1\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    started.recv().await.expect("the handler runs");
    drop(stream);

    let trace = wait_trace(&local, root.to_owned()).await;
    let segment = trace.find("patient").unwrap();
    assert!(!segment.is_in_progress());
    assert!(segment.end_time().is_some());
    assert!(segment.doc()["http"].get("response").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_server_through_the_tower_adapter() {
    let local = Arc::new(local());
    let recorder = recorder_for(&local);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let echo = XRayLayer::new("hyper-echo")
        .with_recorder(recorder)
        .layer(tower::service_fn(
            |req: Request<hyper::body::Incoming>| async move {
                let body = req.into_body().collect().await?.to_bytes();
                Ok::<_, hyper::Error>(http::Response::new(Full::new(body)))
            },
        ));
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            // A hyper server loop hands the peer address to the layer as an extension.
            let svc = echo.clone().map_request(move |mut req: Request<_>| {
                req.extensions_mut().insert(peer);
                req
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc)),
            );
        }
    });

    let response = plain_client()
        .request(
            Request::post(format!("http://{addr}/echo"))
                .body(Full::new(Bytes::from_static(b"ping")))
                .unwrap(),
        )
        .await
        .unwrap();
    let root = root_of(
        response
            .headers()
            .get("x-amzn-trace-id")
            .map(|v| v.to_str().unwrap().to_owned()),
    );
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "ping"
    );

    let trace = wait_trace(&local, root).await;
    let segment = trace.find("hyper-echo").unwrap();
    let http = &segment.doc()["http"];
    assert_eq!(http["request"]["method"], "POST");
    assert_eq!(http["request"]["client_ip"], "127.0.0.1");
    assert_eq!(http["response"]["status"], 200);
    assert_eq!(http["response"]["content_length"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_panic_under_catch_panic_answers_500_and_records_the_cause() {
    let local = Arc::new(local());
    let recorder = recorder_for(&local);
    // CatchPanic outside the X-Ray layer: the layer records the panic on its way out, then
    // CatchPanic turns it into a 500. (Inside, the layer would only see a 500 without cause.)
    let app = Router::new()
        .route(
            "/boom",
            get(|| async {
                if std::hint::black_box(true) {
                    panic!("handler exploded");
                }
            }),
        )
        .layer(XRayLayer::new("caught").with_recorder(recorder))
        .layer(tower_http::catch_panic::CatchPanicLayer::new());
    let addr = serve(app).await;
    let root = "1-8759e988-bd862e3fe1be46a994272793";
    let (status, _, _) = get_from(
        &plain_client(),
        format!("http://{addr}/boom"),
        Some(&format!("Root={root};Sampled=1")),
    )
    .await;
    assert_eq!(status, 500);

    let trace = wait_trace(&local, root.to_owned()).await;
    let segment = trace.find("caught").unwrap();
    assert_eq!(segment.get("fault").and_then(|v| v.as_bool()), Some(true));
    assert_eq!(
        segment.doc()["cause"]["exceptions"][0]["message"],
        "handler exploded"
    );
}
