//! Wall-clock time, injected so that tests can drive it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd"
)))]
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
/// use xray_sdk::clock::{Clock, SystemClock};
///
/// assert!(SystemClock.now_secs() > 1_700_000_000);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd"
    ))]
    fn now_micros(&self) -> u64 {
        // `clock_gettime` straight (a vDSO call on Linux): `SystemTime::now` and
        // `duration_since` add checked conversions that cost more than the read.
        use nix::time::{ClockId, clock_gettime};
        clock_gettime(ClockId::CLOCK_REALTIME).map_or(0, |t| {
            let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
            let micros = u64::try_from(t.tv_nsec()).unwrap_or(0) / 1_000;
            secs * 1_000_000 + micros
        })
    }

    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd"
    )))]
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
/// use xray_sdk::clock::{Clock, ManualClock};
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

#[cfg(test)]
mod tests {
    use super::{Clock, SystemClock};
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn the_system_clock_reads_the_wall_clock_in_microseconds() {
        let std_micros = || {
            let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            u64::try_from(d.as_micros()).unwrap()
        };
        let before = std_micros();
        let ours = SystemClock.now_micros();
        let after = std_micros();
        assert!(
            before <= ours && ours <= after,
            "{before} <= {ours} <= {after}"
        );
    }
}
