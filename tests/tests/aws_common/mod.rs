//! Shared setup for the AWS SDK end-to-end tests: a recorder sending to `xray-local`, static
//! credentials, and a moto server on a free loopback port.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use xray_core::{DaemonAddress, LocalSampler, Recorder, SamplingRules};
use xray_local::XrayLocal;

pub const REGION: &str = "us-east-1";
pub const ACCESS_KEY: &str = "AKIDEXAMPLETESTKEY00";
pub const SECRET_KEY: &str = "test-secret-key-not-real";

/// A local collector and a recorder that samples everything and sends there.
pub fn collector_and_recorder() -> (XrayLocal, Recorder) {
    let local = XrayLocal::builder()
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

pub fn credentials() -> aws_sdk_dynamodb::config::Credentials {
    aws_sdk_dynamodb::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "static-test")
}

pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new().build_http()
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
