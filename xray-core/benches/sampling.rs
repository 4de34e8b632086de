//! The cost of one sampling decision, beside a baseline of what any decision must at least do:
//! one random draw and one atomic read-modify-write; and beside a wall-clock read, which every
//! decision on a rule with a per-second target makes. Read the results as ratios to the baselines.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use rand::RngExt;
use xray_sdk::clock::{Clock, SystemClock};
use xray_sdk::sampling::{LocalSampler, Sampler, SamplingRequest, SamplingRule, SamplingRules};

fn twenty_rules() -> SamplingRules {
    let mut builder = SamplingRules::builder();
    for i in 0..19 {
        builder = builder.with_rule(
            SamplingRule::new(format!("svc{i}.example.com"), "GET", format!("/api/v{i}/*"))
                .with_fixed_target(1)
                .with_rate(0.05),
        );
    }
    builder
        .with_rule(
            SamplingRule::new("*.example.com", "POST", "/orders/*")
                .with_fixed_target(1)
                .with_rate(0.05),
        )
        .build()
        .expect("valid rules")
}

fn bench(c: &mut Criterion) {
    let request = SamplingRequest::new()
        .with_host("api.example.com")
        .with_method("POST")
        .with_url_path("/orders/12345");

    let mut group = c.benchmark_group("sampling");

    let counter = AtomicU64::new(0);
    let mut rng = rand::rng();
    group.bench_function("baseline: rand draw + atomic fetch_add", |b| {
        b.iter(|| {
            counter.fetch_add(1, Ordering::Relaxed);
            black_box(rng.random::<f64>() < black_box(0.05))
        })
    });

    // What reading the wall clock costs: every decision on a rule with a target reads it once.
    let clock = SystemClock;
    group.bench_function("baseline: SystemClock::now_secs", |b| {
        b.iter(|| black_box(&clock).now_secs())
    });

    // Past the first request of each second the default rule's reservoir is used up, so this
    // measures the common path: one atomic load and one draw.
    let default = LocalSampler::default();
    group.bench_function("decision: default rules", |b| {
        b.iter(|| default.should_sample(black_box(&request)).is_sampled())
    });

    // Nineteen rules fail on the host pattern before the last one matches.
    let twenty = LocalSampler::new(twenty_rules());
    group.bench_function("decision: 20 rules, last matches", |b| {
        b.iter(|| twenty.should_sample(black_box(&request)).is_sampled())
    });

    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
