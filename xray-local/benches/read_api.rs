//! X-Ray's `GetTraceSummaries` over 100,000 held traces, asked over HTTP on loopback as a
//! client of the read API asks it (a new connection per request, the answer read to its end).
//!
//! The traces arrive over UDP before the measurements: each a segment of one of five services
//! with an HTTP block, an annotation and two subsegments (a DynamoDB call and a remote call),
//! one in ten faulted and one in seven throttled.
//!
//! - `summaries/filter service(..) {..}`, `filter annotation`, `filter responsetime`: a first
//!   page of summaries for a filter, the time range holding every trace;
//! - `summaries/no filter`: a first page of every trace;
//! - `baseline/GET /stats`: the same HTTP round trip to a route that reads no trace.
//!
//! Run: `cargo bench -p xray-local --bench read_api`

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use xray_local::XRayLocal;

const TRACES: u64 = 100_000;
const SERVICES: [&str; 5] = ["api", "orders", "payments", "search", "web"];

fn document(n: u64, t0: f64) -> Vec<u8> {
    let start = t0 + n as f64 * 0.001;
    let service = SERVICES[(n % 5) as usize];
    let doc = json!({
        "name": service, "id": format!("{:016x}", n * 3 + 1),
        "trace_id": format!("1-{:08x}-{:024x}", start as u64, n + 1),
        "start_time": start, "end_time": start + 0.05 + (n % 100) as f64 * 0.004,
        "fault": n.is_multiple_of(10),
        "http": {"request": {"method": "GET", "url": format!("http://{service}/items/{}", n % 50)},
                 "response": {"status": if n.is_multiple_of(10) { 500 } else { 200 }}},
        "annotations": {"tenant": if n.is_multiple_of(3) { "blue" } else { "green" }, "n": n},
        "subsegments": [
            {"name": "DynamoDB", "id": format!("{:016x}", n * 3 + 2), "namespace": "aws",
             "start_time": start + 0.001, "end_time": start + 0.01,
             "aws": {"table_name": "items", "operation": "GetItem"}},
            {"name": "inventory", "id": format!("{:016x}", n * 3 + 3), "namespace": "remote",
             "start_time": start + 0.01, "end_time": start + 0.04, "throttle": n.is_multiple_of(7),
             "error": n.is_multiple_of(7)},
        ],
    });
    let mut out = b"{\"format\":\"json\",\"version\":1}\n".to_vec();
    out.extend(serde_json::to_vec(&doc).unwrap());
    out
}

/// A daemon holding `TRACES` traces, every one accepted.
fn loaded() -> XRayLocal {
    let local = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .tcp_addr("127.0.0.1:0".parse().unwrap())
        .max_traces(TRACES as usize)
        .max_bytes(4 << 30)
        .quiet_period(Duration::from_millis(10))
        .start()
        .unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let t0 = 1_796_000_000.0;
    for chunk in (0..TRACES).collect::<Vec<_>>().chunks(500) {
        for &n in chunk {
            socket.send_to(&document(n, t0), local.udp_addr()).unwrap();
        }
        // Paced, so that the socket buffer never overflows: every trace is held.
        let want = chunk[chunk.len() - 1] + 1;
        local.wait_for_stats(Duration::from_secs(30), |s| s.accepted() >= want);
    }
    let stats = local.stats();
    assert_eq!(stats.accepted(), TRACES, "every trace held: {stats:?}");
    local
}

/// One request on a new connection; the status and the body.
fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = std::str::from_utf8(&out[9..12]).unwrap().parse().unwrap();
    (status, out.split_off(head_end + 4))
}

fn summaries(addr: SocketAddr, filter: Option<&str>) -> Value {
    let mut body = json!({"StartTime": 0, "EndTime": 4_000_000_000u64});
    if let Some(filter) = filter {
        body["FilterExpression"] = json!(filter);
    }
    let (status, answer) = request(addr, "POST", "/TraceSummaries", &body.to_string());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    // Chunked or not, the JSON object is the body's one brace-delimited span.
    let text = String::from_utf8(answer).unwrap();
    let json = &text[text.find('{').unwrap()..=text.rfind('}').unwrap()];
    serde_json::from_str(json).unwrap()
}

fn bench(c: &mut Criterion) {
    let local = loaded();
    let addr = local.tcp_addr();
    let filters = [
        ("filter service(..) {..}", r#"service("api") { fault }"#),
        (
            "filter annotation",
            r#"annotation.tenant = "blue" AND http.status = 500"#,
        ),
        ("filter responsetime", "responsetime > 0.4"),
    ];
    // What each filter matches, checked once: the bench measures answers, not errors.
    // Each matches thousands (10,000, 3,334 and 12,000): a full first page and a next one.
    for (name, filter) in filters {
        let answer = summaries(addr, Some(filter));
        let page = answer["TraceSummaries"].as_array().unwrap().len();
        assert_eq!(answer["TracesProcessedCount"], json!(TRACES), "{name}");
        assert_eq!(page, 100, "{name}");
        assert!(answer["NextToken"].is_string(), "{name}");
    }
    let mut group = c.benchmark_group("summaries");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    for (name, filter) in filters {
        group.bench_function(name, |b| b.iter(|| summaries(addr, Some(filter))));
    }
    group.bench_function("no filter", |b| b.iter(|| summaries(addr, None)));
    group.finish();
    let mut group = c.benchmark_group("baseline");
    group.bench_function("GET /stats", |b| {
        b.iter(|| request(addr, "GET", "/stats", ""))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
