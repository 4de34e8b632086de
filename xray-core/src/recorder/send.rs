//! Serializing documents into datagrams, within the size budget, and counting the outcome.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Recorder;
use super::tree::Arena;
use crate::diag::LogLimiter;
use crate::document::Document;
use crate::emitter::{DAEMON_HEADER, Datagram, EmitError, MAX_DATAGRAM_LEN};

thread_local! {
    // One reusable serialization buffer per thread: the steady state allocates nothing here.
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    sent: AtomicU64,
    streamed: AtomicU64,
    split: AtomicU64,
    truncated: AtomicU64,
    oversize_dropped: AtomicU64,
    refused: AtomicU64,
    full: AtomicU64,
    too_large: AtomicU64,
    other_failures: AtomicU64,
    pub(crate) context_missing: AtomicU64,
    too_deep: AtomicU64,
    emit_log: LogLimiter,
    size_log: LogLimiter,
}

/// Counters of a [`Recorder`]'s output, since it was built.
///
/// # Examples
///
/// ```
/// use xray_core::{InMemoryEmitter, Recorder};
///
/// let recorder = Recorder::builder().with_emitter(InMemoryEmitter::new()).build()?;
/// recorder.begin_segment("job").end();
/// assert_eq!(recorder.stats().sent, 1);
/// # Ok::<(), xray_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecorderStats {
    /// Documents handed to the emitter successfully.
    pub sent: u64,
    /// Completed subsegments sent ahead of their segment (streaming, or Lambda).
    pub streamed: u64,
    /// Subsegments sent on their own because their parent's document was over the size budget.
    pub split: u64,
    /// Documents sent with fields trimmed to fit the size budget.
    pub truncated: u64,
    /// Documents that could not be made to fit and were not sent.
    pub oversize_dropped: u64,
    /// Datagrams refused because nothing listened at the daemon address.
    pub refused: u64,
    /// Datagrams dropped because a buffer or queue was full.
    pub full: u64,
    /// Datagrams the network found too large.
    pub too_large: u64,
    /// Datagrams lost to any other failure.
    pub other_failures: u64,
    /// Times code asked for the current segment and there was none.
    pub context_missing: u64,
    /// Subsegments not recorded because they would nest deeper than 48 levels (what would nest
    /// under them is not recorded either).
    pub too_deep: u64,
}

impl Stats {
    pub(crate) fn snapshot(&self) -> RecorderStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RecorderStats {
            sent: l(&self.sent),
            streamed: l(&self.streamed),
            split: l(&self.split),
            truncated: l(&self.truncated),
            oversize_dropped: l(&self.oversize_dropped),
            refused: l(&self.refused),
            full: l(&self.full),
            too_large: l(&self.too_large),
            other_failures: l(&self.other_failures),
            context_missing: l(&self.context_missing),
            too_deep: l(&self.too_deep),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

impl Recorder {
    pub(crate) fn too_deep(&self) {
        let stats = &self.inner.stats;
        bump(&stats.too_deep);
        if stats.size_log.allow(self.inner.clock.now_micros()) {
            tracing::warn!(
                target: "xray_core::recorder",
                max_depth = super::tree::MAX_DEPTH,
                "subsegments nested too deep; the deeper ones are not recorded"
            );
        }
    }

    /// Sends a finished document, splitting or trimming it to fit one datagram.
    pub(crate) fn send(&self, doc: Document, streamed: bool) {
        if streamed {
            bump(&self.inner.stats.streamed);
        }
        with_buf(|buf| self.send_with(doc, buf));
    }

    /// Sends a completed segment straight from its tree; only one over the size budget is
    /// first turned into a plain document to be split or trimmed.
    pub(crate) fn send_segment(&self, arena: Arena) {
        with_buf(|buf| {
            buf.clear();
            buf.extend_from_slice(DAEMON_HEADER);
            if arena.write_json(buf).is_ok() && buf.len() <= MAX_DATAGRAM_LEN {
                self.emit(buf);
            } else if let Some(doc) = arena.into_document() {
                self.send_with(doc, buf);
            }
        });
    }

    fn send_with(&self, mut doc: Document, buf: &mut Vec<u8>) {
        if serialize(&doc, buf) {
            self.emit(buf);
            return;
        }
        let stats = &self.inner.stats;
        if !doc.subsegments().is_empty() {
            // Too large as a whole: send each child on its own (recursively split in turn),
            // then the parent without them.
            let trace_id = doc.trace_id();
            let parent_id = doc.id();
            for mut child in std::mem::take(doc.subsegments_mut()) {
                if let Some(trace_id) = trace_id {
                    child.set_independent(trace_id, parent_id);
                }
                bump(&stats.split);
                self.send_with(child, buf);
            }
            self.send_with(doc, buf);
            return;
        }
        let before = buf.len();
        let trimmed = doc.trim_to_fit(MAX_DATAGRAM_LEN - DAEMON_HEADER.len());
        if serialize(&doc, buf) {
            bump(&stats.truncated);
            if stats.size_log.allow(self.inner.clock.now_micros()) {
                tracing::warn!(
                    target: "xray_core::emitter",
                    id = %doc.id(),
                    name = %doc.name(),
                    bytes = before,
                    trimmed = ?trimmed,
                    "X-Ray document over the 64 KB limit; large fields were trimmed to send it"
                );
            }
            self.emit(buf);
        } else {
            bump(&stats.oversize_dropped);
            if stats.size_log.allow(self.inner.clock.now_micros()) {
                tracing::error!(
                    target: "xray_core::emitter",
                    id = %doc.id(),
                    name = %doc.name(),
                    bytes = buf.len(),
                    "X-Ray document over the 64 KB limit even after trimming; not sent"
                );
            }
        }
    }

    fn emit(&self, buf: &[u8]) {
        let stats = &self.inner.stats;
        let Some(datagram) = Datagram::new(buf) else {
            return;
        };
        match self.inner.emitter.emit(datagram) {
            Ok(()) => bump(&stats.sent),
            Err(e) => {
                bump(match e {
                    EmitError::ConnectionRefused => &stats.refused,
                    EmitError::Full => &stats.full,
                    EmitError::TooLarge => &stats.too_large,
                    _ => &stats.other_failures,
                });
                if stats.emit_log.allow(self.inner.clock.now_micros()) {
                    tracing::warn!(
                        target: "xray_core::emitter",
                        error = %e,
                        stats = ?stats.snapshot(),
                        "X-Ray documents are not reaching the daemon"
                    );
                }
            }
        }
    }
}

/// Runs `f` with this thread's serialization buffer (a fresh one if it is in use).
fn with_buf(f: impl FnOnce(&mut Vec<u8>)) {
    let mut buf = BUF
        .try_with(|b| b.try_borrow_mut().map(|mut b| std::mem::take(&mut *b)).ok())
        .ok()
        .flatten()
        .unwrap_or_default();
    f(&mut buf);
    // Keep the buffer for the next document, unless one huge document grew it.
    if buf.capacity() <= 4 * MAX_DATAGRAM_LEN {
        let _ = BUF.try_with(|b| {
            if let Ok(mut b) = b.try_borrow_mut() {
                *b = buf;
            }
        });
    }
}

/// Writes header + document into `buf`; true if the result fits one datagram.
fn serialize(doc: &Document, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    buf.extend_from_slice(DAEMON_HEADER);
    doc.write_json(buf).is_ok() && buf.len() <= MAX_DATAGRAM_LEN
}
