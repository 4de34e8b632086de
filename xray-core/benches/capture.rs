//! `#[capture]` against the same function without it, each group with its baseline measured in
//! the same run:
//!
//! - `unsampled`: the current segment is not sampled; the captured call should cost one
//!   thread-local read over `baseline`.
//! - `no_context`: nothing is current and the recorder ignores it.
//! - `sampled`: one sampled segment per iteration, sent to an emitter that drops it;
//!   `baseline` calls the plain function in that segment, `manual` writes the subsegment by
//!   hand with `begin_subsegment` + `enter`, `capture` uses the attribute with an annotation.
//!
//! Run: `cargo bench -p xray-sdk --bench capture`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use xray_sdk::config::ContextMissing;
use xray_sdk::sampling::{LocalSampler, SamplingRules};
use xray_sdk::transport::{Datagram, EmitError, Emitter};
use xray_sdk::{Recorder, capture};

#[derive(Debug)]
struct Discard;

impl Emitter for Discard {
    fn emit(&self, datagram: Datagram<'_>) -> Result<(), EmitError> {
        black_box(datagram);
        Ok(())
    }
}

fn recorder(rate: f64) -> Recorder {
    Recorder::builder()
        .ignore_environment()
        .with_emitter(Discard)
        .with_context_missing(ContextMissing::IgnoreError)
        .with_sampler(Arc::new(LocalSampler::new(
            SamplingRules::builder()
                .with_default(0, rate)
                .build()
                .expect("rules"),
        )))
        .build()
        .expect("recorder")
}

#[inline(never)]
fn plain(order_id: u64) -> u64 {
    black_box(order_id).wrapping_mul(31)
}

#[inline(never)]
#[capture(annotate(order_id))]
fn captured(order_id: u64) -> u64 {
    black_box(order_id).wrapping_mul(31)
}

fn unsampled(c: &mut Criterion) {
    let recorder = recorder(0.0);
    let segment = recorder.begin_segment("bench");
    let _current = segment.enter();
    let mut g = c.benchmark_group("capture/unsampled");
    g.bench_function("baseline", |b| b.iter(|| plain(black_box(7))));
    g.bench_function("capture", |b| b.iter(|| captured(black_box(7))));
    g.finish();
}

fn no_context(c: &mut Criterion) {
    let mut g = c.benchmark_group("capture/no_context");
    let recorder = recorder(1.0);
    #[capture(recorder = &recorder)]
    fn with_recorder(recorder: &Recorder, order_id: u64) -> u64 {
        black_box(order_id).wrapping_mul(31)
    }
    g.bench_function("baseline", |b| b.iter(|| plain(black_box(7))));
    g.bench_function("capture", |b| {
        b.iter(|| with_recorder(&recorder, black_box(7)))
    });
    g.finish();
}

fn sampled(c: &mut Criterion) {
    let recorder = recorder(1.0);
    let mut g = c.benchmark_group("capture/sampled");
    g.bench_function("baseline", |b| {
        b.iter(|| {
            let segment = recorder.begin_segment("bench");
            let _current = segment.enter();
            plain(black_box(7))
        })
    });
    g.bench_function("manual", |b| {
        b.iter(|| {
            let segment = recorder.begin_segment("bench");
            let _current = segment.enter();
            let sub = recorder.begin_subsegment("plain");
            let _inner = sub.enter();
            sub.put_annotation("order_id", 7_u64);
            plain(black_box(7))
        })
    });
    g.bench_function("capture", |b| {
        b.iter(|| {
            let segment = recorder.begin_segment("bench");
            let _current = segment.enter();
            captured(black_box(7))
        })
    });
    g.finish();
}

criterion_group!(benches, unsampled, no_context, sampled);
criterion_main!(benches);
