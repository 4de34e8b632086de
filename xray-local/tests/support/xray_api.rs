//! A stand-in for the X-Ray API on 127.0.0.1, answering as its documentation says (moto has
//! no sampling API, and keeps no telemetry records): the sampling operations from
//! `tests/data/sampling/*.json`, `PutTraceSegments` and `PutTelemetryRecords` with success.
//! It keeps every request: path, headers and body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use parking_lot::Mutex;

pub(crate) const RULES: &str = include_str!("../data/sampling/GetSamplingRules.json");
pub(crate) const TARGETS: &str = include_str!("../data/sampling/SamplingTargets.json");

/// One request as received (each test reads the parts it checks).
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

/// The stand-in X-Ray: answers the two sampling operations from the documented shapes.
pub(crate) struct Xray {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Xray {
    pub(crate) fn start() -> Xray {
        Xray::start_with(200)
    }

    /// `PutTraceSegments` answers `uploads` (a 5xx, say) instead of success.
    pub(crate) fn start_with(uploads: u16) -> Xray {
        Xray::start_scripted(uploads, Vec::new())
    }

    /// `PutTraceSegments` answers `script`'s bodies (with 200) in order, then `uploads`.
    pub(crate) fn start_scripted(uploads: u16, script: Vec<&'static str>) -> Xray {
        let script = Arc::new(Mutex::new(std::collections::VecDeque::from(script)));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&received);
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let kept = Arc::clone(&kept);
                let script = Arc::clone(&script);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        answer(uploads, Arc::clone(&script), Arc::clone(&kept), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Xray {
            addr,
            received,
            _runtime: runtime,
        }
    }

    /// Forwarding to this X-Ray: test credentials, partial batches after 20 ms, no telemetry.
    #[allow(dead_code)] // not every test forwards
    pub(crate) fn forward_config(&self) -> xray_local::ForwardConfig {
        use aws_credential_types::provider::SharedCredentialsProvider;
        let credentials =
            aws_credential_types::Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        xray_local::ForwardConfig::new("eu-west-3")
            .endpoint(self.url())
            .credentials(SharedCredentialsProvider::new(credentials))
            .idle(std::time::Duration::from_millis(20))
            .telemetry(None)
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().clone()
    }
}

async fn answer(
    uploads: u16,
    script: Arc<Mutex<std::collections::VecDeque<&'static str>>>,
    kept: Arc<Mutex<Vec<Received>>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    kept.lock().push(Received {
        path: path.clone(),
        headers,
        body,
    });
    let scripted = if path == "/TraceSegments" {
        script.lock().pop_front()
    } else {
        None
    };
    let (status, text) = match path.as_str() {
        _ if scripted.is_some() => (200, scripted.unwrap_or_default()),
        "/GetSamplingRules" => (200, RULES),
        "/SamplingTargets" => (200, TARGETS),
        "/TraceSegments" if uploads == 200 => (200, r#"{"UnprocessedTraceSegments":[]}"#),
        "/TraceSegments" => (uploads, r#"{"message":"scripted failure"}"#),
        "/TelemetryRecords" => (200, "{}"),
        _ => (404, r#"{"message":"unknown operation"}"#),
    };
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
