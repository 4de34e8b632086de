//! Many subsegments open at once under one segment, as a fan-out or a batch job holds them:
//! ending 10^3 to 10^6 of them with streaming (the default threshold, 100 completed
//! subsegments), beside the baseline in the same run, the same with streaming off; and
//! beginning as many, beside the baseline of building and storing as many documents.
//!
//! Every arm must be linear: criterion's throughput (subsegments per second) stays flat from
//! 10^3 to 10^6. Before streaming visited only the entities that hold completed children, it
//! visited every slot of the tree each time it sent, and ending 10^6 open subsegments took
//! 97.7 s with streaming against 14 ms per 10^5 without.
//!
//! The transport counts the entities of each finished view and sends nothing, so that the
//! arms measure the recorder, not a socket; the per-segment bound is lifted
//! (`with_max_subsegments_per_segment(usize::MAX)`).
//!
//! Run: `cargo bench -p xray-sdk --bench open_children`

use std::time::Instant;

use criterion::{
    BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use xray_sdk::transport::{Finished, Transport, TransportCounters, TransportStats};
use xray_sdk::{Document, Recorder, RecorderBuilder, Segment, SegmentId, Subsegment};

mod support;

use support::sample_all;

/// Counts what it is given (walking each view, as a transport does) and sends nothing.
#[derive(Debug, Default)]
struct Counting {
    counters: TransportCounters,
}

impl Transport for Counting {
    fn export(&self, finished: &Finished<'_>) {
        let n = finished.len() as u64;
        self.counters.queued(n);
        self.counters.sent(n);
    }

    fn flush(&self, _deadline: Instant) -> bool {
        true
    }

    fn stats(&self) -> TransportStats {
        self.counters.snapshot()
    }
}

const COUNTS: [usize; 4] = [1_000, 10_000, 100_000, 1_000_000];

fn recorder(threshold: usize) -> Recorder {
    Recorder::builder()
        .ignore_environment()
        .with_sampler(sample_all())
        .with_transport(Counting::default())
        .with_streaming_threshold(threshold)
        .with_max_subsegments_per_segment(usize::MAX)
        .build()
        .unwrap()
}

/// A segment with `n` subsegments open under it.
fn open(r: &Recorder, n: usize) -> (Segment, Vec<Subsegment>) {
    let segment = r.begin_segment("batch");
    let children = (0..n).map(|_| segment.begin_subsegment("item")).collect();
    (segment, children)
}

fn end_open_children(c: &mut Criterion) {
    let mut g = c.benchmark_group("end_open_children");
    // Each iteration is one big segment: a few samples of one iteration each.
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    for n in COUNTS {
        g.throughput(Throughput::Elements(n as u64));
        for (arm, threshold) in [
            ("streaming", RecorderBuilder::DEFAULT_STREAMING_THRESHOLD),
            ("baseline/no_streaming", usize::MAX),
        ] {
            let r = recorder(threshold);
            g.bench_with_input(BenchmarkId::new(arm, n), &n, |b, &n| {
                b.iter_batched(
                    || open(&r, n),
                    // In the order they began; the segment last.
                    |(segment, children)| {
                        drop(children);
                        segment.end();
                    },
                    BatchSize::PerIteration,
                )
            });
        }
    }
    g.finish();
}

fn begin_open_children(c: &mut Criterion) {
    let mut g = c.benchmark_group("begin_open_children");
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    let r = recorder(RecorderBuilder::DEFAULT_STREAMING_THRESHOLD);
    for n in COUNTS {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("baseline/documents", n), &n, |b, &n| {
            // What an open subsegment is at least: its document, built and stored (and, as
            // below, dropped after the measurement).
            b.iter_batched(
                || (),
                |()| {
                    (0..n)
                        .map(|_| Document::new("item", SegmentId::new(), 1.0))
                        .collect::<Vec<_>>()
                },
                BatchSize::PerIteration,
            )
        });
        // The output (the segment and its open subsegments) is dropped, ending them, after
        // the measurement.
        g.bench_with_input(BenchmarkId::new("subsegments", n), &n, |b, &n| {
            b.iter_batched(
                || r.begin_segment("batch"),
                |segment| {
                    let children: Vec<Subsegment> =
                        (0..n).map(|_| segment.begin_subsegment("item")).collect();
                    (segment, children)
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, end_open_children, begin_open_children);
criterion_main!(benches);
