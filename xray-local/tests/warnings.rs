//! Malformed datagrams are logged at most once per reason per interval.
//!
//! This file holds a single test because it installs a process-wide `tracing` subscriber (the
//! daemon logs from its own thread).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use support::{HEADER, Sdk, WAIT, start};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use xray_local::DropReason;

/// Counts warning events.
struct CountWarnings(Arc<AtomicUsize>);

impl Subscriber for CountWarnings {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if *event.metadata().level() == Level::WARN {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn one_warning_per_reason_however_many_drops() {
    let warnings = Arc::new(AtomicUsize::new(0));
    tracing::subscriber::set_global_default(CountWarnings(Arc::clone(&warnings))).unwrap();

    let local = start();
    let sdk = Sdk::new(&local);
    for _ in 0..20 {
        sdk.send_raw(b"no newline");
        sdk.send_raw(format!("{HEADER}\n[]").as_bytes());
    }
    let stats = local.wait_for_stats(WAIT, |s| s.received() >= 40);
    assert_eq!(stats.dropped(DropReason::MissingBody), 20);
    assert_eq!(stats.dropped(DropReason::NotAnObject), 20);
    assert_eq!(warnings.load(Ordering::SeqCst), 2);
}
