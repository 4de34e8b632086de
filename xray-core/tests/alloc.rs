//! Heap use of the hot paths, measured with a counting global allocator.
//!
//! One test function only, and only its thread is counted: the test harness's own thread
//! allocates when it first waits for the test, which on a loaded machine can fall inside a
//! measured section. Every path measured here runs on the test's thread (the local sampler
//! and the in-memory emitter start no thread of their own).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use xray_sdk::sampling::SamplingRequest;
use xray_sdk::{InMemoryEmitter, Recorder, SamplerKind, TraceHeader};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Whether this thread's heap use is counted.
    static COUNTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn counted() -> bool {
    COUNTED.try_with(std::cell::Cell::get).unwrap_or(false)
}

// SAFETY: forwards to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counted() {
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counted() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn heap_use_of_hot_paths() {
    COUNTED.with(|c| c.set(true));
    let emitter = InMemoryEmitter::with_capacity(100_000);
    // Local sampling: the centralized sampler's poller thread would allocate as it polls, and
    // this allocator counts every thread.
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_sampler_kind(SamplerKind::Local)
        .with_emitter(emitter.clone())
        .build()
        .unwrap();
    let header: TraceHeader =
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
            .parse()
            .unwrap();
    let request = SamplingRequest::new();

    // Warm up thread-locals (the id generator, the context stack).
    {
        let s = recorder.begin_segment_with("api", Some(&header), &request);
        let _g = s.enter();
        let sub = recorder.begin_subsegment("work");
        sub.put_annotation("order_id", 42);
    }

    // An unsampled segment with one annotated subsegment: no heap allocation at all.
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..1_000 {
        let s = recorder.begin_segment_with("api", Some(&header), &request);
        let sub = s.begin_subsegment("work");
        sub.put_annotation("order_id", 42);
        let _ = sub.trace_header();
        sub.end();
        s.end();
    }
    assert_eq!(
        ALLOCS.load(Ordering::Relaxed) - before,
        0,
        "unsampled path allocated"
    );

    // The same, unsampled by the sampler (a rule that samples nothing) rather than by the
    // header, with a metadata entry too.
    let none = xray_sdk::sampling::SamplingRules::builder()
        .with_default(0, 0.0)
        .build()
        .unwrap();
    let by_sampler = Recorder::builder()
        .ignore_environment()
        .with_sampler(std::sync::Arc::new(xray_sdk::sampling::LocalSampler::new(
            none,
        )))
        .with_emitter(emitter.clone())
        .build()
        .unwrap();
    by_sampler.begin_segment_with("api", None, &request).end();
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..1_000 {
        let s = by_sampler.begin_segment_with("api", None, &request);
        let sub = s.begin_subsegment("work");
        sub.put_annotation("order_id", 42);
        sub.put_metadata("basket", &3);
        sub.end();
        s.end();
    }
    assert_eq!(
        ALLOCS.load(Ordering::Relaxed) - before,
        0,
        "the path unsampled by the sampler allocated"
    );

    // Memory held per open subsegment, with 10,000 open under one sampled segment.
    let segment = recorder.begin_segment("batch");
    let base = LIVE_BYTES.load(Ordering::Relaxed);
    let open: Vec<_> = (0..10_000)
        .map(|_| segment.begin_subsegment("item"))
        .collect();
    let handles = open.capacity() * std::mem::size_of_val(&open[0]);
    let per_open = (LIVE_BYTES.load(Ordering::Relaxed) - base - handles) / open.len();
    assert!(per_open <= 200, "{per_open} bytes per open subsegment");

    // The segment is full (10,000 by default): more subsegments are counted, not recorded,
    // and hold nothing.
    let base = LIVE_BYTES.load(Ordering::Relaxed);
    let more: Vec<_> = (0..10_000)
        .map(|_| segment.begin_subsegment("item"))
        .collect();
    let handles = more.capacity() * std::mem::size_of_val(&more[0]);
    let held = LIVE_BYTES.load(Ordering::Relaxed) - base - handles;
    assert!(
        held < 1_000,
        "{held} bytes for 10,000 subsegments past the bound"
    );
    assert_eq!(recorder.stats().too_many_subsegments, 10_000);
    drop(more);
    drop(open);
    segment.end();
    assert_eq!(emitter.len() as u64, recorder.stats().transport.sent);

    // Segments never ended: past the bound the oldest is sent in progress and its tree freed;
    // what stays is what the leaked handle itself pins (its tree's header), not its documents.
    let all = xray_sdk::sampling::SamplingRules::builder()
        .with_default(0, 1.0)
        .build()
        .unwrap();
    let leaky = Recorder::builder()
        .ignore_environment()
        .with_sampler(std::sync::Arc::new(xray_sdk::sampling::LocalSampler::new(
            all,
        )))
        .with_emitter(InMemoryEmitter::with_capacity(0))
        .with_max_open_segments(1_000)
        .build()
        .unwrap();
    // Fill the bound once: the registry and the send buffer exist from then on.
    for _ in 0..1_100 {
        std::mem::forget(leaky.begin_segment("leak"));
    }
    let base = LIVE_BYTES.load(Ordering::Relaxed);
    let leaked = 20_000;
    for _ in 0..leaked {
        std::mem::forget(leaky.begin_segment("leak"));
    }
    let per_leak = (LIVE_BYTES.load(Ordering::Relaxed) - base) / leaked;
    assert!(per_leak <= 300, "{per_leak} bytes per leaked segment");
    assert_eq!(leaky.stats().evicted, 1_100 + leaked as u64 - 1_000);
}
