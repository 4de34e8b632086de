//! The recorder's hot paths, each beside a baseline measured in the same run:
//! `baseline/serialize+send` is one `serde_json::to_vec` of a struct shaped like the emitted
//! document plus one loopback UDP send of the same bytes.
//!
//! Run: `cargo bench -p xray-core --bench recorder`

use std::net::UdpSocket;

use criterion::{Criterion, criterion_group, criterion_main};
use xray_core::{DaemonAddress, Recorder, SamplingRequest, TraceHeader};

mod support;

use support::baseline_doc;

fn sink() -> (UdpSocket, UdpSocket) {
    // Nobody reads the sink: the kernel drops what overflows its buffer, and the sender's cost
    // is the same as with a reading daemon.
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.connect(sink.local_addr().unwrap()).unwrap();
    tx.set_nonblocking(true).unwrap();
    (sink, tx)
}

fn recorder(sink: &UdpSocket, background: bool) -> Recorder {
    Recorder::builder()
        .ignore_environment()
        .with_service_name("orders")
        .with_daemon_address(DaemonAddress::new(sink.local_addr().unwrap()))
        .with_background_sender(background)
        .build()
        .unwrap()
}

fn sampled_header() -> TraceHeader {
    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
        .parse()
        .unwrap()
}

fn emit(c: &mut Criterion) {
    let (sink_socket, tx) = sink();
    let mut g = c.benchmark_group("segment+subsegment");
    let doc = baseline_doc();
    g.bench_function("baseline/serialize+send", |b| {
        b.iter(|| {
            let bytes = serde_json::to_vec(&doc).unwrap();
            let _ = tx.send(&bytes);
        })
    });
    let header = sampled_header();
    let request = SamplingRequest::new();
    for (label, background) in [("sync", false), ("background", true)] {
        let r = recorder(&sink_socket, background);
        g.bench_function(label, |b| {
            b.iter(|| {
                let s = r.begin_segment_with("orders", Some(&header), &request);
                let sub = s.begin_subsegment("work");
                let _ = sub.put_annotation("order_id", 42);
                sub.end();
                s.end();
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("segment_of_100");
    let r = recorder(&sink_socket, false);
    g.bench_function("100 subsegments, emitted", |b| {
        b.iter(|| {
            let s = r.begin_segment_with("orders", Some(&header), &request);
            for _ in 0..100 {
                s.begin_subsegment("work").end();
            }
            s.end();
        })
    });
    g.finish();

    let mut g = c.benchmark_group("unsampled");
    let unsampled: TraceHeader = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0"
        .parse()
        .unwrap();
    g.bench_function("baseline/struct", |b| {
        b.iter(|| std::hint::black_box((1u64, 2u64, false)))
    });
    g.bench_function("segment+subsegment", |b| {
        b.iter(|| {
            let s = r.begin_segment_with("orders", Some(&unsampled), &request);
            let sub = s.begin_subsegment("work");
            let _ = sub.put_annotation("order_id", 42);
            sub.end();
            s.end();
        })
    });
    g.finish();
}

criterion_group!(benches, emit);
criterion_main!(benches);
