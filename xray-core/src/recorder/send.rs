//! Handing finished entities to the transport, and the recorder's own counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Recorder;
use super::registry::Due;
use super::tree::{Arena, Outbox, Outgoing, SentAhead, Tree};
use crate::diag::LogLimiter;
use crate::document::Document;
use crate::transport::{Finished, FinishedKind, TransportStats};

#[derive(Debug, Default)]
pub(crate) struct Stats {
    streamed: AtomicU64,
    pub(crate) context_missing: AtomicU64,
    too_deep: AtomicU64,
    too_many: AtomicU64,
    sent_in_progress: AtomicU64,
    evicted: AtomicU64,
    size_log: LogLimiter,
    limit_log: LogLimiter,
    ahead_log: LogLimiter,
}

/// Counters of a [`Recorder`] and its transport, since it was built.
///
/// # Examples
///
/// ```
/// use xray_sdk::{InMemoryEmitter, Recorder};
///
/// let recorder = Recorder::builder().with_emitter(InMemoryEmitter::new()).build()?;
/// recorder.begin_segment("job").end();
/// assert_eq!(recorder.stats().transport.sent, 1);
/// # Ok::<(), xray_sdk::ConfigError>(())
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
    /// Subsegments not recorded because their segment already held its maximum
    /// ([`RecorderBuilder::with_max_subsegments_per_segment`], 10,000 by default) of
    /// subsegments open, or ended and not yet sent. Like those of an unsampled trace, they still
    /// have ids and put `Sampled=1` on the headers of the calls made under them; what would
    /// nest under them is not recorded either.
    ///
    /// [`RecorderBuilder::with_max_subsegments_per_segment`]: crate::RecorderBuilder::with_max_subsegments_per_segment
    pub too_many_subsegments: u64,
    /// Segments sent before they completed, as they stood, every entity still open marked
    /// `in_progress` (X-Ray shows them as pending): segments that ended while a subsegment was
    /// still open and stayed so for the grace period
    /// ([`RecorderBuilder::with_grace_period`]), and those counted in
    /// [`evicted`](Self::evicted). Each subsegment that ends later is sent on its own, and
    /// replaces its in-progress copy (except under an evicted segment).
    ///
    /// [`RecorderBuilder::with_grace_period`]: crate::RecorderBuilder::with_grace_period
    pub sent_in_progress: u64,
    /// Segments given up before they completed: the oldest, when a new segment began and the
    /// recorder held [`RecorderBuilder::with_max_open_segments`] (10,000 by default) segments
    /// not yet sent, and those still open at [`Recorder::shutdown`]. Each was sent as it stood
    /// (see [`sent_in_progress`](Self::sent_in_progress)) and its memory freed; what is recorded
    /// on it afterwards, its end included, is dropped.
    ///
    /// [`RecorderBuilder::with_max_open_segments`]: crate::RecorderBuilder::with_max_open_segments
    pub evicted: u64,
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
            too_many_subsegments: l(&stats.too_many),
            sent_in_progress: l(&stats.sent_in_progress),
            evicted: l(&stats.evicted),
            transport: self.inner.transport.stats(),
        }
    }

    pub(crate) fn too_many(&self) {
        let stats = &self.inner.stats;
        bump(&stats.too_many);
        if stats.limit_log.allow(self.inner.clock.now_micros()) {
            tracing::warn!(
                target: "xray_sdk::recorder",
                max = self.inner.max_subsegments,
                "a segment holds its maximum of subsegments; new ones are not recorded \
                 (counted in `too_many_subsegments`)"
            );
        }
    }

    /// Sends the trees in `due` ahead of their completion: the evicted ones forgotten, the
    /// expired ones kept for their open subsegments.
    pub(crate) fn send_due(&self, due: Due) {
        if due.is_empty() {
            return;
        }
        for tree in due.evicted {
            self.send_ahead(&tree, true);
        }
        for tree in due.expired {
            self.send_ahead(&tree, false);
        }
    }

    /// Sends `tree` as it stands, its open entities in progress, and counts it (see
    /// `State::send_ahead`). With `forget`, the tree is emptied: an eviction.
    ///
    /// Called from inside an `Entity::update` closure (a segment begun there evicts another),
    /// it never waits for a tree's lock: it is done once the closure returns.
    pub(crate) fn send_ahead(&self, tree: &Arc<Tree>, forget: bool) {
        let mut out = Outbox::default();
        let Some(mut state) = super::reentry::lock(&tree.state) else {
            let later = tree.clone();
            let deferred = super::reentry::defer(Box::new(move || {
                later.recorder.send_ahead(&later, forget);
            }));
            if !deferred && forget {
                // The thread is being torn down: given up without being sent.
                bump(&self.inner.stats.evicted);
            }
            return;
        };
        let sent = state.send_ahead(tree.trace_id, forget, &mut out);
        drop(state);
        let stats = &self.inner.stats;
        if sent == SentAhead::Segment {
            bump(&stats.sent_in_progress);
        }
        if forget && sent != SentAhead::Nothing {
            bump(&stats.evicted);
        }
        if sent != SentAhead::Nothing && stats.ahead_log.allow(self.inner.clock.now_micros()) {
            if forget {
                tracing::warn!(
                    target: "xray_sdk::recorder",
                    trace_id = %tree.trace_id,
                    max_open_segments = self.inner.max_open_segments,
                    "X-Ray segment given up before it completed (too many open segments, or \
                     shutdown): sent as it stood, in progress; what it records from now on is \
                     dropped (counted in `evicted`)"
                );
            } else {
                tracing::warn!(
                    target: "xray_sdk::recorder",
                    trace_id = %tree.trace_id,
                    "X-Ray segment ended but a subsegment is still open after the grace \
                     period: sent with it in progress; it is sent again when it ends \
                     (counted in `sent_in_progress`)"
                );
            }
        }
        self.send_out(tree, out);
    }

    /// Hands what one operation on `tree` sent to the transport.
    pub(crate) fn send_out(&self, tree: &Tree, out: Outbox) {
        for doc in out {
            match doc {
                Outgoing::Segment(arena) => {
                    self.send_segment(tree.trace_id, &arena);
                    arena.recycle();
                }
                Outgoing::Independent(doc) => self.send_independent(&doc, tree.facade),
                Outgoing::InProgress(doc) => self.send_in_progress(tree.trace_id, &doc),
            }
        }
    }

    /// Hands a segment, or an independent subsegment, sent before it completed to the
    /// transport.
    fn send_in_progress(&self, trace_id: crate::TraceId, doc: &Document) {
        let kind = if doc.is_independent() {
            FinishedKind::Streamed
        } else {
            FinishedKind::Segment
        };
        self.inner
            .transport
            .export(&Finished::from_document(kind, trace_id, doc));
    }

    pub(crate) fn too_deep(&self) {
        let stats = &self.inner.stats;
        bump(&stats.too_deep);
        if stats.size_log.allow(self.inner.clock.now_micros()) {
            tracing::warn!(
                target: "xray_sdk::recorder",
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
