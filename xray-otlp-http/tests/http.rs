//! OtlpHttpTransport against a real HTTP server on 127.0.0.1 that decodes what it receives
//! with the OpenTelemetry protobuf types, answering as each test scripts it.

use std::collections::VecDeque;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, error::CredentialsError, future};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use prost::Message;
use xray_otlp_http::OtlpHttpTransport;
use xray_sdk::Recorder;
use xray_sdk::otlp::proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use xray_sdk::sampling::{LocalSampler, SamplingRules};
use xray_sdk::transport::{Transport, TransportErrorKind};

/// What the server answers, in turn; the last answer repeats.
#[derive(Clone)]
enum Answer {
    Ok,
    Status(u16),
    Partial(i64),
    Garbage,
    Slow(Duration),
}

#[derive(Clone, Debug)]
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    request: ExportTraceServiceRequest,
}

#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<Answer>>,
    received: Mutex<Vec<Received>>,
}

async fn handle(State(script): State<Arc<Script>>, headers: HeaderMap, body: Bytes) -> Response {
    let answer = {
        let mut answers = script.answers.lock();
        if answers.len() > 1 {
            answers.pop_front()
        } else {
            answers.front().cloned()
        }
    }
    .unwrap_or(Answer::Ok);
    let gzip = headers.get("content-encoding").is_some_and(|v| v == "gzip");
    let raw = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .expect("the body is gzip");
        out
    } else {
        body.to_vec()
    };
    let request = ExportTraceServiceRequest::decode(&raw[..]).expect("the body is OTLP protobuf");
    script.received.lock().push(Received {
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: body.to_vec(),
        request,
    });
    match answer {
        Answer::Ok => ExportTraceServiceResponse::default()
            .encode_to_vec()
            .into_response(),
        Answer::Status(s) => StatusCode::from_u16(s).unwrap().into_response(),
        Answer::Partial(n) => ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: n,
                error_message: "too old".into(),
            }),
        }
        .encode_to_vec()
        .into_response(),
        Answer::Garbage => b"\xff\xff not protobuf".to_vec().into_response(),
        Answer::Slow(d) => {
            tokio::time::sleep(d).await;
            ExportTraceServiceResponse::default()
                .encode_to_vec()
                .into_response()
        }
    }
}

/// A receiver on its own runtime thread; it lives as long as the test.
struct Receiver {
    addr: SocketAddr,
    script: Arc<Script>,
}

impl Receiver {
    fn start(answers: &[Answer]) -> Self {
        let script = Arc::new(Script::default());
        script.answers.lock().extend(answers.iter().cloned());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(handle))
            .with_state(script.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        Self { addr, script }
    }

    fn url(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.script.received.lock().clone()
    }

    fn spans(&self) -> usize {
        self.received()
            .iter()
            .flat_map(|r| &r.request.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum()
    }
}

fn fast(url: &str) -> xray_otlp_http::OtlpHttpTransportBuilder {
    OtlpHttpTransport::builder(url)
        .with_service_name("orders")
        .with_batch_delay(Duration::from_millis(5))
        .with_timeout(Duration::from_secs(2))
        .with_retries(4, Duration::from_millis(5), Duration::from_millis(20))
}

fn recorder(transport: OtlpHttpTransport) -> Recorder {
    let all = SamplingRules::builder()
        .with_default(0, 1.0)
        .build()
        .unwrap();
    Recorder::builder()
        .ignore_environment()
        .with_sampler(Arc::new(LocalSampler::new(all)))
        .with_transport(transport)
        .build()
        .unwrap()
}

/// A segment with two subsegments, one nested: three spans.
fn record(recorder: &Recorder) -> xray_sdk::TraceId {
    let segment = recorder.begin_segment("orders");
    let a = segment.begin_subsegment("load");
    a.put_annotation("items", 3);
    a.begin_subsegment("query").end();
    a.end();
    let id = segment.trace_id();
    segment.end();
    id
}

#[test]
fn spans_arrive_as_gzip_protobuf_and_decode_with_the_real_types() {
    let rx = Receiver::start(&[Answer::Ok]);
    let recorder = recorder(fast(&rx.url()).build().unwrap());
    let trace_id = record(&recorder);
    let outcome = recorder.flush(Duration::from_secs(10));
    assert!(outcome.is_complete(), "{outcome:?}");
    assert_eq!(outcome.sent, 3);

    let received = rx.received();
    assert_eq!(received.len(), 1);
    let headers = &received[0].headers;
    let header = |k: &str| {
        headers
            .iter()
            .find(|(h, _)| h == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("content-type"), Some("application/x-protobuf"));
    assert_eq!(header("content-encoding"), Some("gzip"));
    assert_eq!(header("authorization"), None, "unsigned unless asked");

    let rs = &received[0].request.resource_spans[0];
    let spans = &rs.scope_spans[0].spans;
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), 3);
    assert!(names.contains(&"orders") && names.contains(&"load") && names.contains(&"query"));
    let hex = trace_id.to_string().replace('-', "");
    for s in spans {
        let got: String = s.trace_id.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, hex[1..], "every span is in the trace");
    }
    // Parent links: the root has none; each subsegment names its parent's span id.
    let by_name = |n: &str| spans.iter().find(|s| s.name == n).unwrap();
    assert!(by_name("orders").parent_span_id.is_empty());
    assert_eq!(by_name("load").parent_span_id, by_name("orders").span_id);
    assert_eq!(by_name("query").parent_span_id, by_name("load").span_id);
    let stats = recorder.stats().transport;
    assert_eq!((stats.queued, stats.sent, stats.lost()), (3, 3, 0));
}

#[test]
fn throttling_and_server_errors_are_retried_then_delivered() {
    let rx = Receiver::start(&[Answer::Status(429), Answer::Status(503), Answer::Ok]);
    let recorder = recorder(fast(&rx.url()).build().unwrap());
    record(&recorder);
    let outcome = recorder.flush(Duration::from_secs(10));
    assert!(outcome.is_complete(), "{outcome:?}");
    let stats = recorder.stats().transport;
    assert_eq!(stats.sent, 3);
    assert_eq!(stats.retried, 6, "two retries of three spans: {stats:?}");
    assert_eq!(rx.received().len(), 3);
}

#[test]
fn exhausted_retries_are_counted_as_failed() {
    let rx = Receiver::start(&[Answer::Status(500)]);
    let recorder = recorder(fast(&rx.url()).build().unwrap());
    record(&recorder);
    let outcome = recorder.flush(Duration::from_secs(10));
    assert_eq!((outcome.sent, outcome.lost, outcome.pending), (0, 3, 0));
    let stats = recorder.stats().transport;
    assert_eq!(stats.failed, 3);
    assert_eq!(stats.last_error, Some(TransportErrorKind::Server));
    assert_eq!(rx.received().len(), 4, "four attempts");
}

#[test]
fn a_client_error_is_not_retried() {
    let rx = Receiver::start(&[Answer::Status(400)]);
    let recorder = recorder(fast(&rx.url()).build().unwrap());
    record(&recorder);
    recorder.flush(Duration::from_secs(10));
    let stats = recorder.stats().transport;
    assert_eq!((stats.failed, stats.retried), (3, 0));
    assert_eq!(stats.last_error, Some(TransportErrorKind::Rejected));
    assert_eq!(rx.received().len(), 1);
}

#[test]
fn a_partial_success_counts_the_rejected_spans() {
    let rx = Receiver::start(&[Answer::Partial(1)]);
    let recorder = recorder(fast(&rx.url()).build().unwrap());
    record(&recorder);
    let outcome = recorder.flush(Duration::from_secs(10));
    assert_eq!((outcome.sent, outcome.lost), (2, 1));
    assert_eq!(
        recorder.stats().transport.last_error,
        Some(TransportErrorKind::Rejected)
    );
}

#[test]
fn a_garbage_answer_to_a_success_still_counts_the_spans_sent() {
    let rx = Receiver::start(&[Answer::Garbage]);
    let recorder = recorder(fast(&rx.url()).build().unwrap());
    record(&recorder);
    let outcome = recorder.flush(Duration::from_secs(10));
    assert!(outcome.is_complete(), "{outcome:?}");
    assert_eq!(
        recorder.stats().transport.last_error,
        Some(TransportErrorKind::BadResponse)
    );
}

#[test]
fn a_refused_connection_is_retried_then_counted() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let recorder = recorder(
        fast(&format!("http://127.0.0.1:{port}/v1/traces"))
            .build()
            .unwrap(),
    );
    record(&recorder);
    let outcome = recorder.flush(Duration::from_secs(10));
    assert_eq!((outcome.sent, outcome.lost), (0, 3));
    let stats = recorder.stats().transport;
    assert_eq!(stats.last_error, Some(TransportErrorKind::Refused));
    assert_eq!(stats.retried, 9, "three retries of three spans: {stats:?}");
}

#[test]
fn a_slow_receiver_times_out() {
    let rx = Receiver::start(&[Answer::Slow(Duration::from_secs(5))]);
    let recorder = recorder(
        fast(&rx.url())
            .with_timeout(Duration::from_millis(100))
            .with_retries(2, Duration::from_millis(5), Duration::from_millis(5))
            .build()
            .unwrap(),
    );
    record(&recorder);
    let outcome = recorder.flush(Duration::from_secs(10));
    assert_eq!((outcome.sent, outcome.lost), (0, 3));
    assert_eq!(
        recorder.stats().transport.last_error,
        Some(TransportErrorKind::Timeout)
    );
}

#[test]
fn a_full_queue_drops_and_counts_and_stays_bounded() {
    let rx = Receiver::start(&[Answer::Slow(Duration::from_millis(200))]);
    let recorder = recorder(
        fast(&rx.url())
            .with_max_queue_bytes(4_096)
            .with_batch_delay(Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    for _ in 0..200 {
        record(&recorder);
    }
    let stats = recorder.stats().transport;
    assert_eq!(stats.queued, 600);
    assert!(stats.dropped_full > 0, "{stats:?}");
    // What was kept is at most what 4 KiB holds: a few dozen spans.
    assert!(stats.queued - stats.dropped_full < 100, "{stats:?}");
    let outcome = recorder.flush(Duration::from_secs(20));
    assert_eq!(outcome.pending, 0, "{outcome:?}");
    assert_eq!(outcome.sent, rx.spans() as u64);
    assert_eq!(outcome.sent + outcome.lost, 600);
}

#[test]
fn shutdown_returns_by_its_deadline_with_a_hung_receiver() {
    let rx = Receiver::start(&[Answer::Slow(Duration::from_secs(30))]);
    let recorder = recorder(
        fast(&rx.url())
            .with_timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    );
    record(&recorder);
    let start = Instant::now();
    let outcome = recorder.shutdown(Duration::from_millis(300));
    // Bounded by the deadline (with room for a loaded machine), not by the 30 s answer.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(outcome.pending, 3, "{outcome:?}");
    // After a shutdown, what comes is refused and counted.
    record(&recorder);
    let stats = recorder.stats().transport;
    assert_eq!(stats.failed, 3, "{stats:?}");
    assert_eq!(stats.last_error, Some(TransportErrorKind::Closed));
}

#[derive(Debug)]
struct NoCredentials;

impl ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(Err(CredentialsError::not_loaded("none in this test")))
    }
}

#[test]
fn missing_credentials_fail_the_spans_and_nothing_is_sent() {
    let rx = Receiver::start(&[Answer::Ok]);
    let recorder = recorder(
        fast(&rx.url())
            .with_sigv4("us-east-1", NoCredentials)
            .build()
            .unwrap(),
    );
    record(&recorder);
    let outcome = recorder.flush(Duration::from_secs(10));
    assert_eq!((outcome.sent, outcome.lost), (0, 3));
    assert_eq!(
        recorder.stats().transport.last_error,
        Some(TransportErrorKind::Credentials)
    );
    assert!(rx.received().is_empty());
}

#[test]
fn expired_credentials_are_not_used() {
    let rx = Receiver::start(&[Answer::Ok]);
    let expired = Credentials::new(
        "AKIDEXAMPLE",
        "secret",
        None,
        Some(SystemTime::now() - Duration::from_secs(3600)),
        "test",
    );
    let recorder = recorder(
        fast(&rx.url())
            .with_sigv4("us-east-1", expired)
            .build()
            .unwrap(),
    );
    record(&recorder);
    let outcome = recorder.flush(Duration::from_secs(10));
    assert_eq!((outcome.sent, outcome.lost), (0, 3));
    assert_eq!(
        recorder.stats().transport.last_error,
        Some(TransportErrorKind::Credentials)
    );
    assert!(rx.received().is_empty());
}

#[test]
fn the_sigv4_signature_is_the_one_botocore_computes() {
    for token in [None, Some("session-token/with+odd=chars")] {
        let rx = Receiver::start(&[Answer::Ok]);
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token.map(str::to_owned),
            None,
            "test",
        );
        let recorder = recorder(
            fast(&rx.url())
                .with_sigv4("eu-west-3", creds)
                .build()
                .unwrap(),
        );
        record(&recorder);
        assert!(recorder.flush(Duration::from_secs(10)).is_complete());
        let received = rx.received();
        assert_eq!(received.len(), 1);
        let url = rx.url();
        xray_testkit::assert_sigv4_by_botocore(&xray_testkit::SignedRequest {
            method: "POST",
            url: &url,
            headers: &received[0].headers,
            body: &received[0].body,
            access_key: "AKIDEXAMPLE",
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token,
            region: "eu-west-3",
        });
    }
}

#[test]
fn a_bad_endpoint_is_a_build_error() {
    assert!(OtlpHttpTransport::builder("not a url").build().is_err());
    assert!(
        OtlpHttpTransport::builder("ftp://127.0.0.1/v1/traces")
            .build()
            .is_err()
    );
    let t = OtlpHttpTransport::builder("http://127.0.0.1:9/v1/traces")
        .build()
        .unwrap();
    assert_eq!(t.stats().queued, 0);
}
