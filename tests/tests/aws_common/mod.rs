//! Shared setup for the AWS SDK end-to-end tests: a recorder sending to `xray-local`, static
//! credentials, and a moto server on a free loopback port.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use xray_local::XRayLocal;
use xray_sdk::sampling::{LocalSampler, SamplingRules};
use xray_sdk::{DaemonAddress, Recorder, TraceId};

pub const REGION: &str = "us-east-1";
pub const ACCESS_KEY: &str = "AKIDEXAMPLETESTKEY00";
pub const SECRET_KEY: &str = "test-secret-key-not-real";

/// A local collector and a recorder that samples everything and sends there.
pub fn collector_and_recorder() -> (XRayLocal, Recorder) {
    let local = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .quiet_period(Duration::from_millis(200))
        .start()
        .unwrap();
    let rules = SamplingRules::builder()
        .with_default(0, 1.0)
        .build()
        .unwrap();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_service_name("aws-e2e")
        .with_daemon_address(DaemonAddress::new(local.udp_addr()))
        .with_sampler(Arc::new(LocalSampler::new(rules)))
        .build()
        .unwrap();
    (local, recorder)
}

// Each test file uses some of these.
#[allow(unused_imports)]
pub use xray_testkit::moto::{Moto, TempDir, free_port};

/// A DynamoDB client for `endpoint`, traced by `XRayInterceptor`, with the test credentials.
#[allow(dead_code)]
pub fn dynamodb_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .region(aws_sdk_dynamodb::config::Region::new(REGION))
            .credentials_provider(credentials())
            .endpoint_url(endpoint)
            .http_client(http_client())
            .interceptor(xray_aws_sdk::XRayInterceptor::new())
            .build(),
    )
}

/// An SQS client for `endpoint`, traced by `XRayInterceptor`, with the test credentials.
#[allow(dead_code)]
pub fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .region(aws_sdk_sqs::config::Region::new(REGION))
            .credentials_provider(credentials())
            .endpoint_url(endpoint)
            .http_client(http_client())
            .interceptor(xray_aws_sdk::XRayInterceptor::new())
            .build(),
    )
}

pub fn credentials() -> aws_sdk_dynamodb::config::Credentials {
    aws_sdk_dynamodb::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "static-test")
}

pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new().build_http()
}

// ===== reading what was recorded =====

/// The `aws` block of a subsegment.
pub fn aws<'a>(e: &xray_local::TraceEntity<'a>) -> &'a Value {
    e.get("aws").expect("aws block")
}

/// The only `name` entity of the trace whose `aws.operation` is `op`.
pub fn the_one<'a>(
    trace: &'a xray_local::Trace,
    name: &'a str,
    op: &str,
) -> xray_local::TraceEntity<'a> {
    let found: Vec<_> = trace
        .find_all(name)
        .filter(|e| e.get("aws").and_then(|a| a.get("operation")) == Some(&Value::from(op)))
        .collect();
    assert_eq!(found.len(), 1, "{name} {op}");
    found.into_iter().next().unwrap()
}

/// The trace as it is once `until` holds for it, polling `local` for at most 20 s.
pub fn wait_for(
    local: &XRayLocal,
    trace_id: TraceId,
    until: impl Fn(&xray_local::Trace) -> bool,
) -> xray_local::Trace {
    for _ in 0..400 {
        if let Some(trace) = local.trace(trace_id).filter(&until) {
            return trace;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "trace {trace_id} never got what was waited for: {:#?}",
        local.trace(trace_id)
    );
}

/// The header named `name` (any case) of a request moto recorded.
pub fn recorded_header<'a>(request: &'a Value, name: &str) -> Option<&'a str> {
    request
        .get("headers")?
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

/// The body of a request moto recorded, as text: moto's server records bodies base64-encoded
/// (`body_encoded`).
pub fn recorded_body(request: &Value) -> String {
    let body = request
        .get("body")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if request.get("body_encoded") != Some(&Value::Bool(true)) {
        return body.to_owned();
    }
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_default()
}

/// The `X-Amzn-Trace-Id` a traced call sends: its subsegment `sub` as parent, sampled.
pub fn call_header(trace_id: &str, sub: &xray_local::TraceEntity<'_>) -> String {
    format!("Root={trace_id};Parent={};Sampled=1", sub.id().unwrap())
}

/// The requests moto served that carried `X-Amzn-Trace-Id: header`.
pub fn requests_carrying(moto: &Moto, header: &str) -> Vec<Value> {
    moto.recorded_requests()
        .into_iter()
        .filter(|r| recorded_header(r, "x-amzn-trace-id") == Some(header))
        .collect()
}

/// The headers of each request a [`ScriptedServer`] served.
type Seen = std::sync::Mutex<Vec<Vec<(String, String)>>>;

/// One scripted HTTP response.
#[derive(Clone)]
pub struct Scripted {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Scripted {
    /// An awsJson 1.0 response.
    pub fn json(status: u16, request_id: &str, body: &str) -> Scripted {
        Scripted {
            status,
            headers: vec![
                ("content-type", "application/x-amz-json-1.0".to_owned()),
                ("x-amzn-requestid", request_id.to_owned()),
            ],
            body: body.to_owned(),
        }
    }
}

/// An HTTP/1.1 server on 127.0.0.1 that answers requests with the scripted responses in order
/// (then 500s), and records each request's headers.
pub struct ScriptedServer {
    pub endpoint: String,
    seen: Arc<Seen>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
    addr: SocketAddr,
}

impl ScriptedServer {
    pub fn start(script: Vec<Scripted>) -> ScriptedServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let script = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(
            script,
        )));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (seen, script) = (seen2.clone(), script.clone());
                std::thread::spawn(move || serve(conn, &seen, &script));
            }
        });
        ScriptedServer {
            endpoint: format!("http://{addr}"),
            seen,
            stop,
            handle: Some(handle),
            addr,
        }
    }

    /// The headers of every request served, in order (names lower-cased).
    pub fn requests(&self) -> Vec<Vec<(String, String)>> {
        self.seen.lock().unwrap().clone()
    }

    /// The `x-amzn-trace-id` of each request (`None` where absent).
    pub fn trace_headers(&self) -> Vec<Option<String>> {
        self.requests()
            .iter()
            .map(|h| {
                h.iter()
                    .find(|(k, _)| k == "x-amzn-trace-id")
                    .map(|(_, v)| v.clone())
            })
            .collect()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve(
    mut conn: TcpStream,
    seen: &Seen,
    script: &std::sync::Mutex<std::collections::VecDeque<Scripted>>,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    loop {
        // Read one request head.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let headers: Vec<(String, String)> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + len);
        seen.lock().unwrap().push(headers);
        let reply = script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Scripted::json(500, "unscripted", "{}"));
        let mut out = format!("HTTP/1.1 {} Scripted\r\n", reply.status);
        for (k, v) in &reply.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!(
            "content-length: {}\r\n\r\n{}",
            reply.body.len(),
            reply.body
        ));
        if conn.write_all(out.as_bytes()).is_err() {
            return;
        }
    }
}
