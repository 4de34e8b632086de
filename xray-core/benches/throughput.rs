//! Segments per second through the background sender, from one producing thread into a UDP
//! sink, beside a baseline measured in the same run: the same number of datagrams of the same
//! size sent straight from one thread with `send`.
//!
//! Each iteration records a batch of segments (each with one annotated subsegment) and waits
//! for the sender to drain, so the time covers both the producing thread and the sender. After
//! the measurement, the bench fails if the recorder or its sender dropped or failed to send
//! anything: the rate counts only what was handed to the kernel.
//!
//! Run: `cargo bench -p xray-core --bench throughput`

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use xray_core::{
    BackgroundEmitter, DAEMON_HEADER, InMemoryEmitter, Recorder, SamplingRequest, TraceHeader,
    UdpEmitter,
};

/// Segments per iteration: well under what the sender's 4 MiB queue holds, so a sender that
/// keeps up never drops.
const BATCH: u64 = 2_000;

fn header() -> TraceHeader {
    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
        .parse()
        .unwrap()
}

fn record(recorder: &Recorder, header: &TraceHeader, request: &SamplingRequest<'_>) {
    let s = recorder.begin_segment_with("orders", Some(header), request);
    let sub = s.begin_subsegment("work");
    let _ = sub.put_annotation("order_id", 42);
    sub.end();
    s.end();
}

/// One datagram as the recorder sends it, for the baseline.
fn sample_datagram(header: &TraceHeader, request: &SamplingRequest<'_>) -> Vec<u8> {
    let memory = InMemoryEmitter::new();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_service_name("orders")
        .with_emitter(memory.clone())
        .build()
        .unwrap();
    record(&recorder, header, request);
    let mut datagram = DAEMON_HEADER.to_vec();
    datagram.extend(memory.raw_documents().concat());
    datagram
}

fn throughput(c: &mut Criterion) {
    // Nobody reads the sink: the kernel drops what overflows its buffer, past our send.
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let header = header();
    let request = SamplingRequest::new();

    let mut g = c.benchmark_group("background_throughput");
    g.throughput(Throughput::Elements(BATCH));

    let datagram = sample_datagram(&header, &request);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.connect(sink.local_addr().unwrap()).unwrap();
    g.bench_function("baseline/send", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                let _ = tx.send(&datagram);
            }
        })
    });

    let sender = Arc::new(BackgroundEmitter::new(
        UdpEmitter::new(sink.local_addr().unwrap()).unwrap(),
    ));
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_service_name("orders")
        .with_emitter(sender.clone())
        .build()
        .unwrap();
    g.bench_function("segment+subsegment", |b| {
        b.iter_custom(|iterations| {
            let start = Instant::now();
            for _ in 0..iterations {
                for _ in 0..BATCH {
                    record(&recorder, &header, &request);
                }
                assert!(
                    recorder.flush(Duration::from_secs(30)).pending == 0,
                    "sender stuck"
                );
            }
            start.elapsed()
        })
    });
    g.finish();

    let stats = recorder.stats().transport;
    assert!(stats.sent > 0);
    assert_eq!(
        (stats.lost(), sender.dropped(), sender.failed()),
        (0, 0, 0),
        "segments were lost: {stats:?}"
    );
}

criterion_group!(benches, throughput);
criterion_main!(benches);
