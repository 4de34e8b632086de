//! A trivial query (`SELECT 1`) over loopback to a real PostgreSQL server (the Debian
//! package, started for the bench), through sqlx's pool and through `XRayPool`, in the same
//! run: the overhead per query of recording it.
//!
//! - `sqlx`: the plain pool, the baseline;
//! - `xray-sqlx/recorded`: each query a subsegment of a sampled segment, the segment ended and
//!   sent every 100 queries to a UDP sink whose thread reads its socket;
//! - `xray-sqlx/unsampled`: under an unsampled segment.
//!
//! Then the three interleaved a query at a time, each timed on its own, whose overheads over
//! plain sqlx are printed, and the wrapper's cost on SQLite in memory.
//!
//! Run: `cargo bench -p xray-sqlx --bench query`

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sqlx::postgres::PgPoolOptions;
use xray_sdk::{DaemonAddress, FutureExt as _, Recorder, SamplerKind};
use xray_sqlx::XRayPool;
use xray_testkit::postgres::Postgres;

/// Queries per segment in the recorded case: the segment's own cost is spread over them.
const PER_SEGMENT: u64 = 100;

fn sink() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let reader = socket.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        while reader.recv(&mut buf).is_ok() {}
    });
    socket
}

fn queries(c: &mut Criterion) {
    let server = Postgres::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let raw = rt.block_on(async {
        PgPoolOptions::new()
            .max_connections(1)
            .connect(&server.url())
            .await
            .unwrap()
    });
    let pool = XRayPool::new(raw.clone());
    // For the bench's whole run: the queries' futures borrow them.
    let (raw, pool): (&'static sqlx::PgPool, &'static XRayPool<sqlx::Postgres>) =
        (Box::leak(Box::new(raw)), Box::leak(Box::new(pool)));
    let daemon = sink();
    let recorder = |kind| {
        Recorder::builder()
            .ignore_environment()
            .with_service_name("bench")
            .with_sampler_kind(kind)
            .with_daemon_address(DaemonAddress::new(daemon.local_addr().unwrap()))
            .build()
            .unwrap()
    };
    let sampled = recorder(SamplerKind::Always);
    let unsampled = recorder(SamplerKind::Never);

    // Every case runs its queries 100 to a `block_on`, so that the runtime's own cost is the
    // same in each; the recorded case begins and ends a segment around each hundred.
    let run = |iters: u64, segment: Option<&Recorder>, pool_query: &dyn Fn() -> Query| {
        let start = Instant::now();
        let mut left = iters;
        while left > 0 {
            let n = left.min(PER_SEGMENT);
            left -= n;
            let batch = async {
                for _ in 0..n {
                    pool_query().await.unwrap();
                }
            };
            match segment {
                Some(recorder) => {
                    let segment = recorder.begin_segment("bench");
                    rt.block_on(batch.with_context(segment.entity().clone()));
                    segment.end();
                }
                None => rt.block_on(batch),
            }
        }
        start.elapsed()
    };
    let plain = || -> Query { Box::pin(sqlx::query("SELECT 1").execute(raw)) };
    let traced = || -> Query { Box::pin(sqlx::query("SELECT 1").execute(pool)) };

    let mut g = c.benchmark_group("SELECT 1");
    g.bench_function("sqlx", |b| b.iter_custom(|iters| run(iters, None, &plain)));
    g.bench_function("xray-sqlx/recorded", |b| {
        b.iter_custom(|iters| run(iters, Some(&sampled), &traced))
    });
    g.bench_function("xray-sqlx/unsampled", |b| {
        b.iter_custom(|iters| run(iters, Some(&unsampled), &traced))
    });
    g.finish();

    // Interleaved: plain, recorded and unsampled queries take turns one query at a time (the
    // order rotating), each timed on its own, so that the drift of a loopback round trip on a
    // shared machine (whole batches run 10 % slower or faster) falls on all three alike. The
    // recorded queries share a sampled segment per round, whose begin and end are timed too
    // and charged to them. The overhead is the median of the differences between neighbouring
    // queries, over the plain queries' median.
    let mut plain_times = Vec::with_capacity(ROUNDS * PER_SEGMENT as usize);
    let mut recorded_over = Vec::with_capacity(ROUNDS * PER_SEGMENT as usize);
    let mut unsampled_over = Vec::with_capacity(ROUNDS * PER_SEGMENT as usize);
    let mut segment_cost = Duration::ZERO;
    for round in 0..ROUNDS {
        let begun = Instant::now();
        let segment = sampled.begin_segment("bench");
        let quiet = unsampled.begin_segment("bench");
        segment_cost += begun.elapsed();
        let (recording, not) = (segment.entity().clone(), quiet.entity().clone());
        rt.block_on(async {
            for i in 0..PER_SEGMENT as usize {
                let mut times = [Duration::ZERO; 3];
                for turn in 0..3 {
                    let arm = (turn + i + round) % 3;
                    let start = Instant::now();
                    match arm {
                        0 => plain().await.map(drop).unwrap(),
                        1 => traced()
                            .with_context(recording.clone())
                            .await
                            .map(drop)
                            .unwrap(),
                        _ => traced().with_context(not.clone()).await.map(drop).unwrap(),
                    }
                    times[arm] = start.elapsed();
                }
                let [p, r, u] = times.map(|t| t.as_secs_f64());
                plain_times.push(p);
                recorded_over.push(r - p);
                unsampled_over.push(u - p);
            }
        });
        let ending = Instant::now();
        segment.end();
        quiet.end();
        segment_cost += ending.elapsed();
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let base = median(&mut plain_times);
    let per_query_segment = segment_cost.as_secs_f64() / (ROUNDS as f64 * PER_SEGMENT as f64);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (recorded_mean, plain_mean) = (mean(&recorded_over), mean(&plain_times));
    let recorded = median(&mut recorded_over) + per_query_segment;
    let quiet = median(&mut unsampled_over);
    println!(
        "interleaved, {ROUNDS} rounds of {PER_SEGMENT} queries of each kind: plain sqlx, median \
         {:.1} µs a query; recorded +{:.2} µs (of which the segment's begin and end {:.2} µs) \
         = {:.4}; unsampled {:+.2} µs = {:.4}; by means, which outliers move: recorded \
         {:+.2} µs = {:.4}",
        base * 1e6,
        recorded * 1e6,
        per_query_segment * 1e6,
        1.0 + recorded / base,
        quiet * 1e6,
        1.0 + quiet / base,
        (recorded_mean + per_query_segment) * 1e6,
        1.0 + (recorded_mean + per_query_segment) / plain_mean,
    );
    drop(server);

    // The wrapper's own cost per query, where a query costs little: SQLite in memory.
    let lite = rt.block_on(async {
        sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap()
    });
    let lite: &'static sqlx::SqlitePool = Box::leak(Box::new(lite));
    let lite_traced: &'static XRayPool<sqlx::Sqlite> =
        Box::leak(Box::new(XRayPool::new(lite.clone())));
    let time = |recorded: bool| {
        let segment = sampled.begin_segment("bench");
        let start = Instant::now();
        rt.block_on(
            async {
                for _ in 0..PER_SEGMENT {
                    if recorded {
                        sqlx::query("SELECT 1").execute(lite_traced).await.unwrap();
                    } else {
                        sqlx::query("SELECT 1").execute(lite).await.unwrap();
                    }
                }
            }
            .with_context(segment.entity().clone()),
        );
        segment.end();
        start.elapsed().as_secs_f64() / PER_SEGMENT as f64
    };
    let (mut plain_lite, mut traced_lite) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        plain_lite.push(time(false));
        traced_lite.push(time(true));
    }
    println!(
        "SQLite in memory, per query, medians: sqlx {:.2} µs, recorded {:.2} µs",
        median(&mut plain_lite) * 1e6,
        median(&mut traced_lite) * 1e6
    );
}

/// Rounds of the interleaved comparison.
const ROUNDS: usize = 400;

/// One query's future.
type Query = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<sqlx::postgres::PgQueryResult, sqlx::Error>>>,
>;

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = queries
}
criterion_main!(benches);
