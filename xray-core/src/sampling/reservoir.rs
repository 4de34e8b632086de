//! The per-rule, per-second reservoir, lock-free.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts the requests a rule took in the current whole epoch second.
///
/// One `AtomicU64` packs the second (high 32 bits, the epoch second truncated to `u32`, which is
/// unambiguous until 2106 and only ever compared for equality) and the count taken in it (low
/// 32 bits). A take is a load plus one compare-exchange; once the second's target is reached a
/// take is a single load and writes nothing, so a saturated rule adds no cache-line traffic
/// between threads.
///
/// `Relaxed` ordering is enough: the word publishes no other memory, and the compare-exchange
/// alone makes each increment count exactly once.
#[derive(Debug, Default)]
pub(crate) struct Reservoir {
    state: AtomicU64,
}

/// What a take saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Take {
    /// Whether the request was admitted.
    pub(crate) taken: bool,
    /// Requests admitted in this second before this one.
    pub(crate) used_before: u64,
}

impl Reservoir {
    /// Admits one request if fewer than `target` were admitted in second `now_secs`.
    ///
    /// A target above `u32::MAX` per second behaves as `u32::MAX`.
    pub(crate) fn take(&self, now_secs: u64, target: u64) -> Take {
        let target = clamp(target);
        let second = now_secs as u32;
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let used = used_in(current, second);
            if used >= target {
                return Take {
                    taken: false,
                    used_before: u64::from(used),
                };
            }
            let next = pack(second, used + 1);
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Take {
                        taken: true,
                        used_before: u64::from(used),
                    };
                }
                Err(seen) => current = seen,
            }
        }
    }

    /// What [`take`](Self::take) would do, without admitting anything.
    pub(crate) fn peek(&self, now_secs: u64, target: u64) -> Take {
        let used = used_in(self.state.load(Ordering::Relaxed), now_secs as u32);
        Take {
            taken: used < clamp(target),
            used_before: u64::from(used),
        }
    }
}

fn clamp(target: u64) -> u32 {
    u32::try_from(target).unwrap_or(u32::MAX)
}

fn pack(second: u32, used: u32) -> u64 {
    (u64::from(second) << 32) | u64::from(used)
}

/// The count taken in `second`; a word stamped with any other second (older, or newer after the
/// clock stepped back) counts as a fresh second, as the SDKs reset whenever the second changes.
fn used_in(word: u64, second: u32) -> u32 {
    if (word >> 32) as u32 == second {
        word as u32
    } else {
        0
    }
}
