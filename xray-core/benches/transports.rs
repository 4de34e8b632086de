//! The caller's cost of one finished segment through each UDP transport, beside a baseline in
//! the same run: one `serde_json::to_vec` of a struct shaped like the document plus one
//! loopback send. The A shape: a segment and one subsegment with one annotation and one
//! metadata entry, sampled by the sampler (a rule that samples all), sent to a sink whose
//! thread reads its socket.
//!
//! Run: `cargo bench -p xray-sdk --features otlp --bench transports`

use std::net::UdpSocket;

use criterion::{Criterion, criterion_group, criterion_main};
use xray_sdk::sampling::SamplingRequest;
use xray_sdk::{DaemonAddress, Recorder, TransportKind};

mod support;

use support::{Sink, a_shape, sample_all};

fn recorder(sink: &Sink, kind: TransportKind) -> Recorder {
    Recorder::builder()
        .ignore_environment()
        .with_service_name("orders")
        .with_sampler(sample_all())
        .with_daemon_address(DaemonAddress::new(sink.socket.local_addr().unwrap()))
        .with_transport_kind(kind)
        .build()
        .unwrap()
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
}

criterion_group!(benches, transports);
criterion_main!(benches);
