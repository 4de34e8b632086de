//! A trivial query (`SELECT 1`) over loopback to a real PostgreSQL server (the Debian
//! package, started for the bench), through sqlx's pool and through `XRayPool`, in the same
//! run: the overhead per query of recording it.
//!
//! - `sqlx`: the plain pool, the baseline;
//! - `xray-sqlx/recorded`: each query a subsegment of a sampled segment, the segment ended and
//!   sent every 100 queries to a UDP sink whose thread reads its socket;
//! - `xray-sqlx/unsampled`: under an unsampled segment.
//!
//! Then alternating rounds of each, whose paired medians are printed (recorded, recorded with
//! its segments kept in memory rather than sent, and unsampled, each over plain sqlx), and
//! the same on SQLite in memory, where a query costs little.
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
    // The same recording, its segments kept in memory instead of sent: the wrapper's and the
    // recorder's cost without the sink's thread taking a core from PostgreSQL's round trip.
    let kept = xray_sdk::InMemoryEmitter::with_capacity(64);
    let in_memory = Recorder::builder()
        .ignore_environment()
        .with_service_name("bench")
        .with_sampler_kind(SamplerKind::Always)
        .with_emitter(kept.clone())
        .build()
        .unwrap();
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

    // Paired: batches of each kind, alternating (ABBA), so that the drift of a loopback round
    // trip on a shared machine falls on both alike; the median of the ratios is printed.
    let mut ratios = Vec::with_capacity(PAIRS);
    let mut unsampled_ratios = Vec::with_capacity(PAIRS);
    let mut in_memory_ratios = Vec::with_capacity(PAIRS);
    let mut medians = (Vec::with_capacity(PAIRS), Vec::with_capacity(PAIRS));
    for round in 0..PAIRS {
        let (p, r, u) = if round % 2 == 0 {
            let p = run(PER_SEGMENT, None, &plain);
            let r = run(PER_SEGMENT, Some(&sampled), &traced);
            (p, r, run(PER_SEGMENT, Some(&unsampled), &traced))
        } else {
            let u = run(PER_SEGMENT, Some(&unsampled), &traced);
            let r = run(PER_SEGMENT, Some(&sampled), &traced);
            (run(PER_SEGMENT, None, &plain), r, u)
        };
        ratios.push(r.as_secs_f64() / p.as_secs_f64());
        unsampled_ratios.push(u.as_secs_f64() / p.as_secs_f64());
        let m = run(PER_SEGMENT, Some(&in_memory), &traced);
        let p2 = run(PER_SEGMENT, None, &plain);
        in_memory_ratios.push(m.as_secs_f64() / p2.as_secs_f64());
        let _ = kept.take();
        medians.0.push(p.as_secs_f64() / PER_SEGMENT as f64);
        medians.1.push(r.as_secs_f64() / PER_SEGMENT as f64);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut quarter, mut three) = (ratios.clone(), ratios.clone());
    quarter.sort_by(f64::total_cmp);
    three.sort_by(f64::total_cmp);
    println!(
        "paired, {PAIRS} rounds of {PER_SEGMENT} queries each: unsampled / sqlx = {:.4}",
        median(&mut unsampled_ratios)
    );
    println!(
        "paired, {PAIRS} rounds of {PER_SEGMENT} queries each: recorded, segments kept in \
         memory / sqlx = {:.4}",
        median(&mut in_memory_ratios)
    );
    println!(
        "paired, {PAIRS} rounds of {PER_SEGMENT} queries each: recorded / sqlx = {:.4} \
         (quartiles {:.4} to {:.4}); per query, medians: sqlx {:.1} µs, recorded {:.1} µs",
        median(&mut ratios),
        quarter[PAIRS / 4],
        three[3 * PAIRS / 4],
        median(&mut medians.0) * 1e6,
        median(&mut medians.1) * 1e6,
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
    for _ in 0..PAIRS {
        plain_lite.push(time(false));
        traced_lite.push(time(true));
    }
    println!(
        "SQLite in memory, per query, medians: sqlx {:.2} µs, recorded {:.2} µs",
        median(&mut plain_lite) * 1e6,
        median(&mut traced_lite) * 1e6
    );
}

/// Rounds of the paired comparison.
const PAIRS: usize = 400;

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
