//! Helpers shared by the integration tests: a plain UDP socket standing in for an SDK.
#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use serde_json::{Value, json};
use xray_local::XRayLocal;
use xray_sdk::{SegmentId, TraceId};

pub mod raw_http;

/// Long enough for a loaded CI machine; waits return as soon as the condition holds.
pub const WAIT: Duration = Duration::from_secs(10);

pub const HEADER: &str = r#"{"format":"json","version":1}"#;

pub fn start() -> XRayLocal {
    XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .start()
        .unwrap()
}

/// A daemon with its TCP API on a free loopback port, settling traces 50 ms after their
/// last document: for the read API and the console.
pub fn start_with_api() -> XRayLocal {
    XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .tcp_addr("127.0.0.1:0".parse().unwrap())
        .quiet_period(Duration::from_millis(50))
        .start()
        .unwrap()
}

/// The time now, in epoch seconds.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A socket that sends datagrams to the daemon, as an SDK's emitter does.
pub struct Sdk {
    socket: UdpSocket,
    to: SocketAddr,
}

impl Sdk {
    pub fn new(local: &XRayLocal) -> Self {
        Sdk {
            socket: UdpSocket::bind("127.0.0.1:0").unwrap(),
            to: local.udp_addr(),
        }
    }

    pub fn send_raw(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.to).unwrap();
    }

    pub fn send(&self, doc: &Value) {
        self.send_raw(datagram(doc).as_bytes());
    }
}

pub fn datagram(doc: &Value) -> String {
    format!("{HEADER}\n{doc}")
}

pub fn trace_id() -> String {
    TraceId::new().to_string()
}

pub fn id() -> String {
    SegmentId::new().to_string()
}

pub fn segment(trace_id: &str, id: &str, name: &str, start: f64, end: f64) -> Value {
    json!({"name": name, "id": id, "trace_id": trace_id, "start_time": start, "end_time": end})
}

pub fn independent(
    trace_id: &str,
    id: &str,
    parent: &str,
    name: &str,
    start: f64,
    end: f64,
) -> Value {
    json!({"type": "subsegment", "name": name, "id": id, "trace_id": trace_id,
           "parent_id": parent, "start_time": start, "end_time": end})
}

/// One HTTP/1.1 request over a fresh connection; returns the status and the body.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, raw_http::body_of(head, body).unwrap())
}

/// A POST whose answer must be JSON.
pub fn post_json(addr: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    let (status, text) = http(addr, "POST", path, body);
    (status, serde_json::from_str(&text).unwrap())
}

/// A GET whose answer must be JSON.
pub fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, text) = http(addr, "GET", path, "");
    (status, serde_json::from_str(&text).unwrap())
}
