//! Outside any segment, and under an unsampled one, a query through `XRayPool` costs what it
//! costs through sqlx's pool: the same heap allocations, counted by this binary's allocator
//! (so this file holds one test), and nothing recorded.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use sqlx::SqlitePool;
use xray_sdk::{FutureExt as _, InMemoryEmitter, Recorder, SamplerKind};
use xray_sqlx::XRayPool;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only a counter is added.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const QUERIES: u64 = 200;

/// Allocations made by `QUERIES` runs of `SELECT 1` through `executor`.
async fn allocations<'a, E>(executor: E) -> u64
where
    E: sqlx::Executor<'a, Database = sqlx::Sqlite> + Copy,
{
    // Warm: the statement cache and the connection are made before counting.
    for _ in 0..20 {
        sqlx::query("SELECT 1").execute(executor).await.unwrap();
    }
    let before = ALLOCS.load(Relaxed);
    for _ in 0..QUERIES {
        sqlx::query("SELECT 1").execute(executor).await.unwrap();
    }
    ALLOCS.load(Relaxed) - before
}

#[tokio::test(flavor = "current_thread")]
async fn unrecorded_queries_cost_what_sqlx_costs() {
    let raw = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    let pool = XRayPool::new(raw.clone()).with_sanitized_queries(true);
    let emitter = InMemoryEmitter::new();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_sampler_kind(SamplerKind::Never)
        .with_emitter(emitter.clone())
        .build()
        .unwrap();

    let plain = allocations::<&SqlitePool>(&raw).await;
    let outside = allocations(&pool).await;
    let segment = recorder.begin_segment("orders");
    let unsampled = allocations(&pool)
        .with_context(segment.entity().clone())
        .await;
    segment.end();
    // Through sqlx alone, in the same run: the baseline moves by a few allocations from run
    // to run (the SQLite worker's channel), never by one per query.
    let again = allocations::<&SqlitePool>(&raw).await;
    let baseline = plain.max(again);
    let slack = QUERIES / 10;
    println!(
        "allocations per {QUERIES} queries: sqlx {plain} and {again}, XRayPool outside a \
         segment {outside}, unsampled {unsampled}"
    );
    assert!(
        outside <= baseline + slack,
        "outside a segment: {outside} against {baseline}"
    );
    assert!(
        unsampled <= baseline + slack,
        "unsampled: {unsampled} against {baseline}"
    );
    assert!(emitter.documents().is_empty());
}
