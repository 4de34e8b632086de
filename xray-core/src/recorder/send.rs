//! Handing finished entities to the transport, and the recorder's own counters.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Recorder;
use super::tree::Arena;
use crate::diag::LogLimiter;
use crate::document::Document;
use crate::transport::{Finished, FinishedKind, TransportStats};

#[derive(Debug, Default)]
pub(crate) struct Stats {
    streamed: AtomicU64,
    pub(crate) context_missing: AtomicU64,
    too_deep: AtomicU64,
    size_log: LogLimiter,
}

/// Counters of a [`Recorder`] and its transport, since it was built.
///
/// # Examples
///
/// ```
/// use xray_core::{InMemoryEmitter, Recorder};
///
/// let recorder = Recorder::builder().with_emitter(InMemoryEmitter::new()).build()?;
/// recorder.begin_segment("job").end();
/// assert_eq!(recorder.stats().transport.sent, 1);
/// # Ok::<(), xray_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecorderStats {
    /// Completed subsegments handed to the transport ahead of their segment (streaming, or
    /// Lambda).
    pub streamed: u64,
    /// Times code asked for the current segment and there was none.
    pub context_missing: u64,
    /// Subsegments not recorded because they would nest deeper than 48 levels (what would nest
    /// under them is not recorded either).
    pub too_deep: u64,
    /// What the transport did with what it was given: sent, dropped, failed, split, trimmed.
    pub transport: TransportStats,
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

impl Recorder {
    pub(crate) fn stats_snapshot(&self) -> RecorderStats {
        let stats = &self.inner.stats;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RecorderStats {
            streamed: l(&stats.streamed),
            context_missing: l(&stats.context_missing),
            too_deep: l(&stats.too_deep),
            transport: self.inner.transport.stats(),
        }
    }

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

    /// Hands a completed subtree sent ahead of its segment to the transport.
    pub(crate) fn send_independent(&self, doc: &Document, lambda: bool) {
        bump(&self.inner.stats.streamed);
        let Some(trace_id) = doc.trace_id() else {
            return;
        };
        let kind = if lambda {
            FinishedKind::Lambda
        } else {
            FinishedKind::Streamed
        };
        self.inner
            .transport
            .export(&Finished::from_document(kind, trace_id, doc));
    }

    /// Hands a completed segment to the transport, straight from its tree.
    pub(crate) fn send_segment(&self, trace_id: crate::TraceId, arena: &Arena) {
        if let Some(finished) = Finished::segment(trace_id, arena) {
            self.inner.transport.export(&finished);
        }
    }
}
