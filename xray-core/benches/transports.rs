//! The caller's cost of one finished segment through each UDP transport, beside a baseline in
//! the same run: one `serde_json::to_vec` of a struct shaped like the document plus one
//! loopback send. The A shape: a segment and one subsegment with one annotation and one
//! metadata entry, sampled by the sampler (a rule that samples all), sent to a sink whose
//! thread reads its socket.
//!
//! Run: `cargo bench -p xray-core --features otlp --bench transports`

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use xray_core::{
    DaemonAddress, LocalSampler, Recorder, SamplingRequest, SamplingRules, TransportKind,
};

mod support;

/// A socket with a thread that reads everything sent to it, counting datagrams.
struct Sink {
    socket: UdpSocket,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
}

impl Sink {
    fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let reader = socket.try_clone().unwrap();
        reader
            .set_read_timeout(Some(std::time::Duration::from_millis(50)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let (s, r) = (stop.clone(), received.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !s.load(Ordering::Relaxed) {
                if reader.recv(&mut buf).is_ok() {
                    r.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self {
            socket,
            stop,
            received,
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn recorder(sink: &Sink, kind: TransportKind) -> Recorder {
    let all = SamplingRules::builder()
        .with_default(0, 1.0)
        .build()
        .unwrap();
    Recorder::builder()
        .ignore_environment()
        .with_service_name("orders")
        .with_sampler(Arc::new(LocalSampler::new(all)))
        .with_daemon_address(DaemonAddress::new(sink.socket.local_addr().unwrap()))
        .with_transport_kind(kind)
        .build()
        .unwrap()
}

fn a_shape(r: &Recorder, request: &SamplingRequest<'_>) {
    let s = r.begin_segment_with("orders", None, request);
    let sub = s.begin_subsegment("work");
    let _ = sub.put_annotation("order_id", 42);
    let _ = sub.put_metadata("basket", &3);
    sub.end();
    s.end();
}

fn transports(c: &mut Criterion) {
    let sink = Sink::start();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.connect(sink.socket.local_addr().unwrap()).unwrap();
    let doc = support::baseline_doc();
    let request = SamplingRequest::new();
    let mut g = c.benchmark_group("transport/A");
    g.bench_function("baseline/serialize+send", |b| {
        b.iter(|| {
            let bytes = serde_json::to_vec(&doc).unwrap();
            let _ = tx.send(&bytes);
        })
    });
    for (label, kind) in [
        ("udp segments", TransportKind::Segments),
        ("udp otlp (T1S)", TransportKind::OtlpUdp),
    ] {
        let r = recorder(&sink, kind);
        g.bench_function(label, |b| b.iter(|| a_shape(&r, &request)));
        let stats = r.stats().transport;
        assert_eq!(stats.lost(), 0, "{label}: {stats:?}");
    }
    g.finish();
    let _ = sink.received.load(Ordering::Relaxed);
}

criterion_group!(benches, transports);
criterion_main!(benches);
