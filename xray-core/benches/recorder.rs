//! The recorder's hot paths, each beside a baseline measured in the same run:
//! `baseline/serialize+send` is one `serde_json::to_vec` of a struct shaped like the emitted
//! document plus one loopback UDP send of the same bytes.
//!
//! Every path sends to a sink whose thread reads its socket, as a daemon does, and every
//! decision goes through the sampler (a rule that samples all, or none), never through a
//! forced `Sampled=` header. The A shape is a segment and one subsegment with one annotation
//! and one metadata entry.
//!
//! Run: `cargo bench -p xray-sdk --bench recorder`

use std::net::UdpSocket;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use xray_sdk::sampling::{LocalSampler, SamplingRequest, SamplingRules, SharedSampler};
use xray_sdk::{DaemonAddress, Recorder};

mod support;

use support::{Sink, a_shape, baseline_doc, sample_all};

fn recorder(sink: &Sink, background: bool, sampler: SharedSampler) -> Recorder {
    Recorder::builder()
        .ignore_environment()
        .with_service_name("orders")
        .with_sampler(sampler)
        .with_daemon_address(DaemonAddress::new(sink.socket.local_addr().unwrap()))
        .with_background_sender(background)
        .build()
        .unwrap()
}

fn sample_none() -> SharedSampler {
    let none = SamplingRules::builder()
        .with_default(0, 0.0)
        .build()
        .unwrap();
    Arc::new(LocalSampler::new(none))
}

fn emit(c: &mut Criterion) {
    let sink = Sink::start();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.connect(sink.socket.local_addr().unwrap()).unwrap();
    let request = SamplingRequest::new();

    let mut g = c.benchmark_group("segment+subsegment");
    let doc = baseline_doc();
    g.bench_function("baseline/serialize+send", |b| {
        b.iter(|| {
            let bytes = serde_json::to_vec(&doc).unwrap();
            let _ = tx.send(&bytes);
        })
    });
    for (label, background) in [("sync", false), ("background", true)] {
        let r = recorder(&sink, background, sample_all());
        g.bench_function(label, |b| b.iter(|| a_shape(&r, &request)));
    }
    g.finish();

    let mut g = c.benchmark_group("segment_of_100");
    let r = recorder(&sink, false, sample_all());
    g.bench_function("100 subsegments, emitted", |b| {
        b.iter(|| {
            let s = r.begin_segment_with("orders", None, &request);
            for _ in 0..100 {
                s.begin_subsegment("work").end();
            }
            s.end();
        })
    });
    g.finish();

    let mut g = c.benchmark_group("unsampled");
    let r = recorder(&sink, false, sample_none());
    g.bench_function("baseline/struct", |b| {
        b.iter(|| std::hint::black_box((1u64, 2u64, false)))
    });
    g.bench_function("segment+subsegment", |b| b.iter(|| a_shape(&r, &request)));
    g.finish();
}

criterion_group!(benches, emit);
criterion_main!(benches);
