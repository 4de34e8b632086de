//! Neutral counters of what a transport did with what it was given.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::clock::{Clock as _, SystemClock};
use crate::diag::LogLimiter;

/// What became of the items a [`Transport`](crate::transport::Transport) was given, since it was
/// made.
///
/// An item is what the transport sends: a segment document for [`SegmentTransport`]
/// (a segment split to fit counts once per piece), a span for the OTLP transports. Every item
/// taken in ([`queued`](Self::queued)) ends in exactly one of `sent`, `dropped_full`,
/// `dropped_too_large` or `failed`, or is still [`pending`](Self::pending).
///
/// [`SegmentTransport`]: crate::transport::SegmentTransport
///
/// # Examples
///
/// ```
/// use xray_sdk::{InMemoryEmitter, Recorder};
///
/// let recorder = Recorder::builder().with_emitter(InMemoryEmitter::new()).build()?;
/// recorder.begin_segment("job").end();
/// let stats = recorder.stats().transport;
/// assert_eq!((stats.queued, stats.sent, stats.pending()), (1, 1, 0));
/// # Ok::<(), xray_sdk::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportStats {
    /// Items taken in.
    pub queued: u64,
    /// Items handed to the network (UDP) or accepted by the receiver (HTTP).
    pub sent: u64,
    /// Items dropped because a queue or buffer was full, rather than block the caller.
    pub dropped_full: u64,
    /// Items dropped because they could not be made to fit the transport's size limit.
    pub dropped_too_large: u64,
    /// Items lost to a failure: refused, unreachable, rejected, timed out, shut down.
    pub failed: u64,
    /// Items sent again after a failure that might pass (throttling, 5xx, timeouts), once per
    /// retry.
    pub retried: u64,
    /// Entities sent apart from their parent because the whole was over the size limit.
    pub split: u64,
    /// Items sent with fields trimmed to fit the size limit.
    pub truncated: u64,
    /// The kind of the last failure, if any.
    pub last_error: Option<TransportErrorKind>,
}

impl TransportStats {
    /// Items taken in but not yet sent, dropped or failed.
    pub fn pending(&self) -> u64 {
        self.queued.saturating_sub(self.lost() + self.sent)
    }

    /// Items dropped or failed, whatever the reason.
    pub fn lost(&self) -> u64 {
        self.dropped_full + self.dropped_too_large + self.failed
    }
}

/// Why a transport failed to deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The peer refused the connection or datagram (nothing listens there).
    Refused,
    /// The network or the peer found the message too large.
    TooLarge,
    /// The transport was shut down, or its socket could not be opened.
    Closed,
    /// The peer did not answer in time.
    Timeout,
    /// The peer asked us to slow down (HTTP 429 or a throttling error).
    Throttled,
    /// The peer failed (HTTP 5xx).
    Server,
    /// The peer refused the content (HTTP 4xx other than 429).
    Rejected,
    /// No usable credentials to sign with.
    Credentials,
    /// The peer's answer could not be understood.
    BadResponse,
    /// The item could not be encoded.
    Encode,
    /// Any other I/O error.
    Io,
}

impl TransportErrorKind {
    const ALL: [TransportErrorKind; 11] = [
        TransportErrorKind::Refused,
        TransportErrorKind::TooLarge,
        TransportErrorKind::Closed,
        TransportErrorKind::Timeout,
        TransportErrorKind::Throttled,
        TransportErrorKind::Server,
        TransportErrorKind::Rejected,
        TransportErrorKind::Credentials,
        TransportErrorKind::BadResponse,
        TransportErrorKind::Encode,
        TransportErrorKind::Io,
    ];

    fn code(self) -> u8 {
        Self::ALL
            .iter()
            .position(|k| *k == self)
            .map_or(0, |i| i as u8 + 1)
    }

    fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }

    /// A short description, for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            TransportErrorKind::Refused => "refused (is the receiver running?)",
            TransportErrorKind::TooLarge => "too large",
            TransportErrorKind::Closed => "closed",
            TransportErrorKind::Timeout => "timed out",
            TransportErrorKind::Throttled => "throttled",
            TransportErrorKind::Server => "server error",
            TransportErrorKind::Rejected => "rejected",
            TransportErrorKind::Credentials => "no usable credentials",
            TransportErrorKind::BadResponse => "bad response",
            TransportErrorKind::Encode => "could not be encoded",
            TransportErrorKind::Io => "I/O error",
        }
    }
}

impl std::fmt::Display for TransportErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lock-free counters behind a [`TransportStats`], for writing a transport.
///
/// Each call is one relaxed atomic add. [`failed`](Self::failed) and the drops also log a
/// warning, at most once a minute per counter set, under the target `xray_sdk::transport`.
#[derive(Debug, Default)]
pub struct TransportCounters {
    queued: AtomicU64,
    sent: AtomicU64,
    dropped_full: AtomicU64,
    dropped_too_large: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    split: AtomicU64,
    truncated: AtomicU64,
    last_error: AtomicU8,
    log: LogLimiter,
}

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

impl TransportCounters {
    /// Counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// `n` items taken in.
    pub fn queued(&self, n: u64) {
        add(&self.queued, n);
    }

    /// `n` items sent.
    pub fn sent(&self, n: u64) {
        add(&self.sent, n);
    }

    /// `n` items dropped because a queue was full.
    pub fn dropped_full(&self, n: u64) {
        add(&self.dropped_full, n);
        self.warn("queue full; dropped rather than block", None);
    }

    /// `n` items dropped because they could not be made to fit.
    pub fn dropped_too_large(&self, n: u64) {
        add(&self.dropped_too_large, n);
        self.warn("too large to send, even trimmed; dropped", None);
    }

    /// `n` items lost to a failure of `kind`.
    pub fn failed(&self, n: u64, kind: TransportErrorKind) {
        add(&self.failed, n);
        self.last_error.store(kind.code(), Ordering::Relaxed);
        self.warn("could not be delivered", Some(kind));
    }

    /// A failure of `kind` that is being retried (`n` items in the attempt).
    pub fn retried(&self, n: u64, kind: TransportErrorKind) {
        add(&self.retried, n);
        self.last_error.store(kind.code(), Ordering::Relaxed);
    }

    /// A problem of `kind` that lost nothing (an unreadable answer to a success, say): it
    /// shows as `last_error` and counts no item.
    pub fn noted(&self, kind: TransportErrorKind) {
        self.last_error.store(kind.code(), Ordering::Relaxed);
    }

    /// `n` entities sent apart from their parent.
    pub fn split(&self, n: u64) {
        add(&self.split, n);
    }

    /// `n` items sent trimmed.
    pub fn truncated(&self, n: u64) {
        add(&self.truncated, n);
    }

    /// The counters now.
    pub fn snapshot(&self) -> TransportStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TransportStats {
            queued: l(&self.queued),
            sent: l(&self.sent),
            dropped_full: l(&self.dropped_full),
            dropped_too_large: l(&self.dropped_too_large),
            failed: l(&self.failed),
            retried: l(&self.retried),
            split: l(&self.split),
            truncated: l(&self.truncated),
            last_error: TransportErrorKind::from_code(self.last_error.load(Ordering::Relaxed)),
        }
    }

    fn warn(&self, what: &str, kind: Option<TransportErrorKind>) {
        if self.log.allow(SystemClock.now_micros()) {
            tracing::warn!(
                target: "xray_sdk::transport",
                error = kind.map(|k| k.as_str()),
                stats = ?self.snapshot(),
                "X-Ray data {what}"
            );
        }
    }
}

/// What [`Recorder::flush`](crate::Recorder::flush) found: what the transport delivered and
/// lost since the previous flush, and what it still holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlushOutcome {
    /// Items sent since the previous flush.
    pub sent: u64,
    /// Items dropped or failed since the previous flush.
    pub lost: u64,
    /// Items still pending when the flush returned (its deadline passed).
    pub pending: u64,
}

impl FlushOutcome {
    /// Whether everything exported since the previous flush was sent: nothing lost, nothing
    /// pending.
    pub fn is_complete(&self) -> bool {
        self.lost == 0 && self.pending == 0
    }
}
