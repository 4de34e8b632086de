//! `-p/--proxy-address` (`ForwardConfig::proxy`): uploads, telemetry and the sampling proxy all
//! reach X-Ray through the given HTTP proxy. The proxy is a real forward proxy on 127.0.0.1
//! (absolute-form requests, as HTTP clients send plain-HTTP requests through a proxy) that
//! keeps the request line of each request; X-Ray is the stand-in of `support/xray_api.rs`.

#[path = "support/xray_api.rs"]
mod xray_api;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xray_api::Xray;
use xray_local::{ForwardConfig, XRayLocal};

/// A forward proxy: relays each request to the host its absolute URL names and keeps its
/// request line.
struct Proxy {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let kept = Arc::clone(&kept);
                std::thread::spawn(move || {
                    let _ = relay(stream, &kept);
                });
            }
        });
        Proxy { url, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Relays the request of one client connection over a new upstream connection, and closes
/// both (the request asked the upstream for `Connection: close`, and the answer says so).
fn relay(client: TcpStream, seen: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(());
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(());
    };
    let rest = target.strip_prefix("http://").unwrap_or(target);
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    seen.lock().unwrap().push(format!("{method} {target}"));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        if header.trim().is_empty() {
            break;
        }
        let lower = header.to_ascii_lowercase();
        if lower.starts_with("proxy-") || lower.starts_with("connection:") {
            continue;
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        head.push_str(&header);
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let mut upstream = TcpStream::connect(host)?;
    upstream.write_all(head.as_bytes())?;
    upstream.write_all(&body)?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response)?;
    client.write_all(&response)
}

fn post(addr: SocketAddr, path: &str, body: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn uploads_telemetry_and_sampling_calls_all_go_through_the_proxy() {
    let xray = Xray::start();
    let proxy = Proxy::start();
    let daemon = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .forward(
            xray.forward_config()
                .idle(Duration::from_millis(20))
                .telemetry(Some(Duration::from_millis(200)))
                .proxy(proxy.url.as_str())
                .unwrap(),
        )
        .start()
        .unwrap();
    let datagram = "{\"format\":\"json\",\"version\":1}\n{\"name\":\"via-proxy\",\
                    \"id\":\"0000000000000001\",\"trace_id\":\"1-5759e988-000000000000000000000001\",\
                    \"start_time\":1.0,\"end_time\":2.0}";
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(datagram.as_bytes(), daemon.udp_addr())
        .unwrap();
    assert_eq!(post(daemon.tcp_addr(), "/GetSamplingRules", "{}"), 200);

    let wanted = ["/TraceSegments", "/TelemetryRecords", "/GetSamplingRules"];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = proxy.seen();
        let all = wanted.iter().all(|path| {
            seen.iter()
                .any(|l| l == &format!("POST {}{path}", xray.url()))
        });
        if all {
            break;
        }
        assert!(Instant::now() < deadline, "through the proxy: {seen:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Once stopped: X-Ray got exactly what went through the proxy, nothing around it.
    daemon.shutdown();
    std::thread::sleep(Duration::from_millis(300));
    let at_xray: Vec<String> = xray.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(at_xray.len(), proxy.seen().len(), "{at_xray:?}");
}

#[test]
fn a_proxy_address_that_is_no_url_is_refused() {
    for bad in ["not a url", "ftp://proxy:21", ""] {
        assert!(ForwardConfig::new("us-east-1").proxy(bad).is_err(), "{bad}");
    }
    assert!(
        ForwardConfig::new("us-east-1")
            .proxy("http://192.0.2.0:3128")
            .is_ok()
    );
}
