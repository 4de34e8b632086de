//! The intake keeps up while something follows the traces, as the `xray-local` program always
//! does: filing stays off the socket reader's path, and a trace of many independent
//! subsegments is not assembled again for every piece that arrives.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::{Sdk, id, independent, segment, start, trace_id};
use xray_local::DropReason;

/// Pieces of the one big trace, and the rate they are sent at: the shape of the load probe
/// that lost 87 % before (40,000 at about 4,300 a second), halved to keep the test short.
const PIECES: usize = 20_000;
const RATE: f64 = 5_000.0;

#[test]
fn a_trace_of_twenty_thousand_independent_subsegments_loses_nothing_while_followed() {
    let local = Arc::new(start());
    let sdk = Sdk::new(&local);

    // A follower, as the program runs one: it waits on every settled trace.
    let stop = Arc::new(AtomicBool::new(false));
    let follower = {
        let (local, stop) = (Arc::clone(&local), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut completed = local.completed();
            let mut seen = 0;
            while !stop.load(Ordering::Relaxed) {
                if completed.next_timeout(Duration::from_millis(50)).is_some() {
                    seen += 1;
                }
            }
            seen
        })
    };

    let t = trace_id();
    let root = id();
    let start_at = Instant::now();
    for i in 0..PIECES {
        let due = Duration::from_secs_f64(i as f64 / RATE);
        if let Some(wait) = due.checked_sub(start_at.elapsed()) {
            std::thread::sleep(wait);
        }
        let begin = 1.0 + i as f64 * 1e-4;
        sdk.send(&independent(&t, &id(), &root, "call", begin, begin + 1e-5));
    }
    // The segment comes last, as an SDK sends it when its subsegments have streamed.
    sdk.send(&segment(&t, &root, "api", 1.0, 9.0));

    let trace = local
        .wait_for_trace(&t, Duration::from_secs(30))
        .expect("the trace settles");
    stop.store(true, Ordering::Relaxed);
    let seen = follower.join().unwrap();

    let stats = local.stats();
    assert_eq!(stats.dropped(DropReason::Backlog), 0, "{stats:?}");
    assert_eq!(stats.received(), PIECES as u64 + 1, "{stats:?}");
    assert_eq!(stats.accepted(), PIECES as u64 + 1, "{stats:?}");
    if let Some(kernel) = stats.kernel_dropped() {
        assert_eq!(
            kernel, 0,
            "the system dropped datagrams the daemon did not read in time"
        );
    }
    assert!(trace.is_complete());
    assert_eq!(trace.entities().count(), PIECES + 1);
    assert!(trace.orphans().is_empty());
    assert!(seen >= 1, "the follower saw the trace");
}

#[test]
fn the_kernel_count_of_dropped_datagrams_is_read() {
    let local = start();
    let stats = local.stats();
    if cfg!(target_os = "linux") {
        assert_eq!(stats.kernel_dropped(), Some(0), "{stats:?}");
    } else {
        assert_eq!(stats.kernel_dropped(), None);
    }
}
