//! A trivial query (`SELECT 1`) over loopback to a real PostgreSQL server (the Debian
//! package, started for the bench), through sqlx's pool and through `XRayPool`, in the same
//! run: the overhead per query of recording it.
//!
//! - `sqlx`: the plain pool, the baseline;
//! - `xray-sqlx/recorded`: each query a subsegment of a sampled segment, the segment ended and
//!   sent every 100 queries to a UDP sink whose thread reads its socket;
//! - `xray-sqlx/unsampled`: under an unsampled segment.
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
    drop(server);
}

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
