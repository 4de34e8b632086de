//! Cost of reading and writing `X-Amzn-Trace-Id`, next to baselines measured in the same run:
//! splitting the same input on `;` (the least any parser must do), and pushing the same bytes
//! into a `String` (the least any writer must do). Read the results as ratios to the baselines.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use xray_sdk::{SegmentId, TraceHeader};

const FULL: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
const WITH_LINEAGE: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=10:1234abcd:3";

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.bench_function("baseline: split(';').count()", |b| {
        b.iter(|| black_box(FULL).split(';').count())
    });
    group.bench_function("TraceHeader::parse (Root, Parent, Sampled)", |b| {
        b.iter(|| TraceHeader::parse(black_box(FULL)))
    });
    group.bench_function("baseline: split(';').count() with Lineage", |b| {
        b.iter(|| black_box(WITH_LINEAGE).split(';').count())
    });
    group.bench_function("TraceHeader::parse with Lineage", |b| {
        b.iter(|| TraceHeader::parse(black_box(WITH_LINEAGE)))
    });
    group.finish();
}

fn format(c: &mut Criterion) {
    let header = TraceHeader::parse(WITH_LINEAGE).unwrap_or_else(|e| panic!("{e}"));
    let subsegment = SegmentId::from_u64(0x0123456789abcdef);
    let expected = header.downstream(subsegment, true).to_string();
    let mut buf = String::with_capacity(256);

    let mut group = c.benchmark_group("format downstream");
    group.bench_function("baseline: String::push_str of the same bytes", |b| {
        b.iter(|| {
            buf.clear();
            buf.push_str(black_box(&expected));
            black_box(buf.len())
        })
    });
    group.bench_function("DownstreamHeader::write_to (reused String)", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&header)
                .downstream(black_box(subsegment), true)
                .write_to(&mut buf);
            black_box(buf.len())
        })
    });
    group.bench_function("DownstreamHeader via to_string (new String)", |b| {
        b.iter(|| {
            black_box(&header)
                .downstream(black_box(subsegment), true)
                .to_string()
        })
    });
    group.finish();
}

criterion_group!(benches, parse, format);
criterion_main!(benches);
