//! A captured function on an unsampled request, or with no context, allocates nothing and
//! evaluates no annotation: measured with a counting global allocator.
//!
//! One test function only: the allocator counts every thread of this process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use xray_sdk::config::ContextMissing;
use xray_sdk::sampling::SamplingRequest;
use xray_sdk::{InMemoryEmitter, Recorder, SamplerKind, TraceHeader, capture};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[capture(annotate(order_id, tier = tier.to_uppercase()), metadata(tags = vec![tier]))]
fn sync_call(order_id: u64, tier: &str) -> Result<u64, std::fmt::Error> {
    Ok(order_id + tier.len() as u64)
}

#[capture(annotate(tier = tier.to_uppercase()))]
async fn async_call(tier: &str) -> usize {
    tier.len()
}

fn poll_once<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("the captured future never waits"),
    }
}

fn allocations(mut f: impl FnMut()) -> usize {
    f(); // warm up thread-locals
    let before = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..1000 {
        f();
    }
    ALLOCS.load(Ordering::SeqCst) - before
}

#[test]
fn unrecorded_calls_allocate_nothing() {
    let recorder = Recorder::builder()
        .ignore_environment()
        // The centralized sampler's poller thread would allocate; this allocator counts every
        // thread.
        .with_sampler_kind(SamplerKind::Local)
        .with_emitter(InMemoryEmitter::new())
        .with_context_missing(ContextMissing::IgnoreError)
        .build()
        .unwrap();
    Recorder::builder()
        .ignore_environment()
        // The centralized sampler's poller thread would allocate; this allocator counts every
        // thread.
        .with_sampler_kind(SamplerKind::Local)
        .with_emitter(InMemoryEmitter::new())
        .with_context_missing(ContextMissing::IgnoreError)
        .build()
        .unwrap()
        .install_global()
        .unwrap();
    let header: TraceHeader =
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
            .parse()
            .unwrap();
    let segment = recorder.begin_segment_with("api", Some(&header), &SamplingRequest::new());
    assert!(!segment.is_recording());

    let unsampled = {
        let _current = segment.enter();
        allocations(|| {
            assert_eq!(sync_call(1, "gold"), Ok(5));
            assert_eq!(poll_once(async_call("gold")), 4);
        })
    };
    assert_eq!(unsampled, 0, "allocations on an unsampled request");

    let no_context = allocations(|| {
        assert_eq!(sync_call(1, "gold"), Ok(5));
        assert_eq!(poll_once(async_call("gold")), 4);
    });
    assert_eq!(no_context, 0, "allocations without a context");

    // The same calls, recorded, do allocate: the counter sees them.
    let sampled = recorder.begin_segment_with(
        "api",
        Some(
            &"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
                .parse()
                .unwrap(),
        ),
        &SamplingRequest::new(),
    );
    let _current = sampled.enter();
    assert!(allocations(|| assert_eq!(sync_call(1, "gold"), Ok(5))) > 0);
}
