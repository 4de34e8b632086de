//! Diagnostics that cannot flood the host's logs.

use std::sync::atomic::{AtomicU64, Ordering};

/// Allows one log line per interval; callers count what they do not log.
///
/// The check is one relaxed load on the common path, so a failure storm (a daemon that is down
/// and 100,000 segments a second) costs the host no more than the counting.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    next_allowed_micros: AtomicU64,
    interval_micros: u64,
}

impl LogLimiter {
    pub(crate) const fn new(interval_secs: u64) -> Self {
        Self {
            next_allowed_micros: AtomicU64::new(0),
            interval_micros: interval_secs * 1_000_000,
        }
    }

    /// True at most once per interval, for the first caller past it.
    pub(crate) fn allow(&self, now_micros: u64) -> bool {
        let next = self.next_allowed_micros.load(Ordering::Relaxed);
        now_micros >= next
            && self
                .next_allowed_micros
                .compare_exchange(
                    next,
                    now_micros + self.interval_micros,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}

impl Default for LogLimiter {
    /// One line a minute, the interval every diagnostic of the crate uses.
    fn default() -> Self {
        LogLimiter::new(60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_interval() {
        let l = LogLimiter::new(10);
        assert!(l.allow(1));
        assert!(!l.allow(2));
        assert!(!l.allow(10_000_000));
        assert!(l.allow(10_000_001));
    }
}
