//! Segments per second through the background sender into a UDP sink whose thread reads its
//! socket and counts what arrives, beside a baseline in the same run: the same number of
//! datagrams of the same size sent straight from one thread with `send`.
//!
//! The shape is A: a segment and one subsegment with one annotation and one metadata entry,
//! sampled by the sampler (a rule that samples everything), never by a forced header.
//!
//! - `background_throughput/segment+subsegment`: each iteration records a batch and waits for
//!   the sender to drain (the producer waits for it), so the time covers both threads. After
//!   the measurement the bench fails if anything was lost, counted at the receiver.
//! - Then a sweep of offered rates, each held for a second, prints what the sink received,
//!   what the SDK dropped at its queue, and what was lost between the socket and the sink:
//!   loss counted at the receiver.
//!
//! On Linux with two cores or more, the producing thread and the SDK's sender thread share
//! core 0 and the sink reads on core 1, as a service beside its daemon would.
//!
//! Run: `cargo bench -p xray-sdk --bench throughput`

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use xray_sdk::sampling::SamplingRequest;
use xray_sdk::transport::{BackgroundEmitter, DAEMON_HEADER, UdpEmitter};
use xray_sdk::{InMemoryEmitter, Recorder};

mod support;

use support::{Sink, a_shape as record, sample_all};

/// A sink reading on core 1.
fn pinned_sink() -> Sink {
    Sink::start_with(|| pin(1))
}

/// Segments per iteration: well under what the sender's 4 MiB queue holds, so a sender that
/// keeps up never drops.
const BATCH: u64 = 2_000;

/// Pins the calling thread (and the threads it starts after) to `core`, where there is one.
fn pin(core: usize) {
    #[cfg(target_os = "linux")]
    {
        use nix::sched::{CpuSet, sched_setaffinity};
        use nix::unistd::Pid;
        if std::thread::available_parallelism().map_or(1, |n| n.get()) > core {
            let mut set = CpuSet::new();
            if set.set(core).is_ok() {
                let _ = sched_setaffinity(Pid::from_raw(0), &set);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = core;
}

/// One datagram as the recorder sends it, for the baseline.
fn sample_datagram(request: &SamplingRequest<'_>) -> Vec<u8> {
    let memory = InMemoryEmitter::new();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_service_name("orders")
        .with_sampler(sample_all())
        .with_emitter(memory.clone())
        .build()
        .unwrap();
    record(&recorder, request);
    let mut datagram = DAEMON_HEADER.to_vec();
    datagram.extend(memory.raw_documents().concat());
    datagram
}

fn background_recorder(sink: &Sink) -> (Recorder, Arc<BackgroundEmitter>) {
    let sender = Arc::new(BackgroundEmitter::new(
        UdpEmitter::new(sink.socket.local_addr().unwrap()).unwrap(),
    ));
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_service_name("orders")
        .with_sampler(sample_all())
        .with_emitter(sender.clone())
        .build()
        .unwrap();
    (recorder, sender)
}

fn throughput(c: &mut Criterion) {
    // The producer, and the sender threads it starts, on core 0.
    pin(0);
    let request = SamplingRequest::new();
    let mut g = c.benchmark_group("background_throughput");
    g.throughput(Throughput::Elements(BATCH));

    let sink = pinned_sink();
    let datagram = sample_datagram(&request);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.connect(sink.socket.local_addr().unwrap()).unwrap();
    g.bench_function("baseline/send", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                let _ = tx.send(&datagram);
            }
        })
    });
    drop(sink);

    let sink = pinned_sink();
    let (recorder, _sender) = background_recorder(&sink);
    g.bench_function("segment+subsegment", |b| {
        b.iter_custom(|iterations| {
            let start = Instant::now();
            for _ in 0..iterations {
                for _ in 0..BATCH {
                    record(&recorder, &request);
                }
                let outcome = recorder.flush(Duration::from_secs(30));
                assert_eq!(outcome.pending, 0, "sender stuck");
            }
            start.elapsed()
        })
    });
    g.finish();

    let stats = recorder.stats().transport;
    let received = sink.settle();
    println!(
        "producer waits for the sender: {} sent, {} lost in the SDK, {} received at the sink ({} lost on the way)",
        stats.sent,
        stats.lost(),
        received,
        stats.sent.saturating_sub(received)
    );
    drop(sink);

    sweep(&request);
}

/// Offered rates, each held for one second: what arrives, and where the rest was lost.
fn sweep(request: &SamplingRequest<'_>) {
    println!(
        "{:>12} {:>12} {:>12} {:>14} {:>14}",
        "offered/s", "received/s", "sent/s", "queue drops", "lost after send"
    );
    for rate in [50_000u64, 100_000, 200_000, 300_000, 400_000, 600_000, 0] {
        let sink = pinned_sink();
        let (recorder, _sender) = background_recorder(&sink);
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs(1) {
            // Paced: the n-th segment waits for its slot (0: as fast as it goes).
            if let Some(slot) = (n * 1_000_000_000).checked_div(rate) {
                let due = Duration::from_nanos(slot);
                while start.elapsed() < due {
                    std::hint::spin_loop();
                }
            }
            record(&recorder, request);
            n += 1;
        }
        let elapsed = start.elapsed().as_secs_f64();
        recorder.flush(Duration::from_secs(30));
        let stats = recorder.stats().transport;
        let received = sink.settle();
        let label = if rate == 0 {
            "free".to_owned()
        } else {
            rate.to_string()
        };
        println!(
            "{label:>12} {:>12.0} {:>12.0} {:>14} {:>14}",
            received as f64 / elapsed,
            stats.sent as f64 / elapsed,
            stats.dropped_full,
            stats.sent.saturating_sub(received),
        );
        assert_eq!(stats.queued, n, "every segment is counted");
    }
}

criterion_group!(benches, throughput);
criterion_main!(benches);
