//! Wall-clock time, injected so that tests can drive it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time, as microseconds since the Unix epoch.
///
/// The recorder stamps segments with it and the samplers count requests per second with it.
/// [`SystemClock`] is the default; [`ManualClock`] is for tests that must not sleep.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Microseconds since the Unix epoch.
    fn now_micros(&self) -> u64;

    /// Whole seconds since the Unix epoch.
    fn now_secs(&self) -> u64 {
        self.now_micros() / 1_000_000
    }
}

/// A shared, cheaply cloned [`Clock`].
pub type SharedClock = Arc<dyn Clock>;

/// The system's wall clock.
///
/// # Examples
///
/// ```
/// use xray_core::{Clock, SystemClock};
///
/// assert!(SystemClock.now_secs() > 1_700_000_000);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            // Not `as_micros`: its u128 arithmetic costs more than the clock read.
            .map_or(0, |d| {
                d.as_secs() * 1_000_000 + u64::from(d.subsec_micros())
            })
    }
}

/// A clock that moves only when told to.
///
/// # Examples
///
/// ```
/// use xray_core::{Clock, ManualClock};
///
/// let clock = ManualClock::new(1_735_689_600_000_000);
/// clock.advance_micros(1_500_000);
/// assert_eq!(clock.now_secs(), 1_735_689_601);
/// ```
#[derive(Debug, Default)]
pub struct ManualClock {
    micros: AtomicU64,
}

impl ManualClock {
    /// A clock that reads `micros` microseconds since the Unix epoch.
    pub fn new(micros: u64) -> Self {
        Self {
            micros: AtomicU64::new(micros),
        }
    }

    /// Sets the time.
    pub fn set_micros(&self, micros: u64) {
        self.micros.store(micros, Ordering::Relaxed);
    }

    /// Moves the time forward.
    pub fn advance_micros(&self, micros: u64) {
        self.micros.fetch_add(micros, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> u64 {
        self.micros.load(Ordering::Relaxed)
    }
}

/// The system clock's microseconds, for rate-limited diagnostics.
pub(crate) fn now_micros_for_logs() -> u64 {
    SystemClock.now_micros()
}
