//! Forwarding: documents a second that reach X-Ray, counted at the receiver. X-Ray is a fast
//! local HTTP sink that speaks the `PutTraceSegments` shape: it parses each request's
//! `TraceSegmentDocuments` and counts them, and answers `{"UnprocessedTraceSegments":[]}`.
//!
//! - `forward/2000 documents`: sends 2,000 one-segment traces of the A shape (about 520 bytes)
//!   over UDP and waits until the sink has counted all of them; the baseline is the same
//!   daemon without forwarding, waiting until all are accepted.
//! - Then a sweep of offered rates, each held for two seconds, prints what the sink counted,
//!   the rate it was counted at (up to the last document), what was lost (sent and never
//!   counted), and the resident memory of the whole process: the daemon with its trace store
//!   (up to 10,000 traces), the sink, and the bench's 200,000 prepared datagrams.
//!
//! Run: `cargo bench -p xray-local --bench forward`

mod support;

use std::convert::Infallible;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use support::datagram;
use xray_local::{ForwardConfig, XRayLocal};

const BATCH: u64 = 2_000;

#[derive(serde::Deserialize)]
struct PutTraceSegments {
    #[serde(rename = "TraceSegmentDocuments")]
    documents: Vec<serde::de::IgnoredAny>,
}

/// The sink: counts the documents of every `PutTraceSegments` it parses.
struct Sink {
    addr: SocketAddr,
    documents: Arc<AtomicU64>,
    _runtime: tokio::runtime::Runtime,
}

impl Sink {
    fn start() -> Sink {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let documents = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&documents);
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let counted = Arc::clone(&counted);
                        async move {
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            if let Ok(put) = body.as_ref().map_err(|_| ()).and_then(|b| {
                                serde_json::from_slice::<PutTraceSegments>(b).map_err(|_| ())
                            }) {
                                counted.fetch_add(put.documents.len() as u64, Ordering::Relaxed);
                            }
                            let mut response = Response::new(Full::new(Bytes::from_static(
                                br#"{"UnprocessedTraceSegments":[]}"#,
                            )));
                            response.headers_mut().insert(
                                hyper::header::CONTENT_TYPE,
                                hyper::header::HeaderValue::from_static("application/json"),
                            );
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Sink {
            addr,
            documents,
            _runtime: runtime,
        }
    }

    fn count(&self) -> u64 {
        self.documents.load(Ordering::Relaxed)
    }
}

fn forwarding(sink: &Sink) -> XRayLocal {
    XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .forward(
            ForwardConfig::new("us-east-1")
                .endpoint(format!("http://{}", sink.addr))
                .credentials(SharedCredentialsProvider::new(Credentials::new(
                    "AKIDEXAMPLE",
                    "secret",
                    None,
                    None,
                    "bench",
                )))
                .telemetry(None),
        )
        .start()
        .unwrap()
}

/// Resident memory of this process, in MiB (`VmRSS`).
fn resident_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn wait(what: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !what() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until `count` reaches `target` or stops growing for a second; returns when it last
/// grew.
fn settle(count: impl Fn() -> u64, target: u64) -> Instant {
    let mut last = (count(), Instant::now());
    while last.0 < target && last.1.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(1));
        let now = count();
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    last.1
}

fn forward(c: &mut Criterion) {
    let datagrams: Vec<Vec<u8>> = (0..BATCH * 100).map(datagram).collect();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut g = c.benchmark_group("forward");
    g.throughput(Throughput::Elements(BATCH));

    let plain = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .start()
        .unwrap();
    let mut next = 0usize;
    g.bench_function("baseline/accepted, not forwarded", |b| {
        b.iter_custom(|iterations| {
            let start = Instant::now();
            for _ in 0..iterations {
                let before = plain.stats().accepted();
                for _ in 0..BATCH {
                    let _ = tx.send_to(&datagrams[next % datagrams.len()], plain.udp_addr());
                    next += 1;
                }
                wait(|| plain.stats().accepted() >= before + BATCH);
            }
            start.elapsed()
        })
    });
    drop(plain);

    let sink = Sink::start();
    let daemon = forwarding(&sink);
    g.bench_function(format!("{BATCH} documents"), |b| {
        b.iter_custom(|iterations| {
            let start = Instant::now();
            for _ in 0..iterations {
                let before = sink.count();
                for _ in 0..BATCH {
                    let _ = tx.send_to(&datagrams[next % datagrams.len()], daemon.udp_addr());
                    next += 1;
                }
                wait(|| sink.count() >= before + BATCH);
            }
            start.elapsed()
        })
    });
    g.finish();
    drop(daemon);
    drop(sink);

    println!(
        "{:>10} {:>10} {:>10} {:>10} {:>8} {:>8}",
        "offered/s", "sent", "at X-Ray", "per s", "lost %", "RSS MiB"
    );
    for rate in [10_000u64, 25_000, 50_000, 75_000, 100_000] {
        let sink = Sink::start();
        let daemon = forwarding(&sink);
        let held = Duration::from_secs(2);
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < held && (sent as usize) < datagrams.len() {
            if let Some(wait) =
                Duration::from_nanos(sent * 1_000_000_000 / rate).checked_sub(start.elapsed())
            {
                std::thread::sleep(wait);
            }
            for _ in 0..50 {
                if let Some(d) = datagrams.get(sent as usize) {
                    let _ = tx.send_to(d, daemon.udp_addr());
                    sent += 1;
                }
            }
        }
        let last_grew = settle(|| sink.count(), sent);
        let took = last_grew.duration_since(start);
        let counted = sink.count();
        println!(
            "{rate:>10} {sent:>10} {counted:>10} {:>10.0} {:>8.2} {:>8.0}",
            counted as f64 / took.as_secs_f64(),
            100.0 * (sent - counted.min(sent)) as f64 / sent as f64,
            resident_mib()
        );
        drop(daemon);
    }
}

criterion_group!(benches, forward);
criterion_main!(benches);
