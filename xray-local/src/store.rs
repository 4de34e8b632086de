//! The trace store: what the receiver writes and every reader waits on.
//!
//! One mutex guards everything and one condvar is notified on every change. The socket reader
//! never takes it: it queues what it parsed, and a filing thread moves the queue into the store
//! a batch at a time (one lock, one wake-up per batch). Filing is incremental: each insert
//! updates the counts that tell whether a trace may be complete, and a trace is assembled only
//! when it may be, or when a reader asks for it. A trace of many independent subsegments whose
//! segment has not come is therefore never assembled while its pieces stream in.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use xray_sdk::TraceId;

use crate::intake::{self, Document, DropReason};
use crate::trace::{Inserted, Pieces, Trace};

/// Counters of what the daemon received, kept since it started.
///
/// `received() == accepted() + dropped_total()` always holds. Datagrams the kernel dropped
/// before the daemon could read them (a full socket buffer) are in
/// [`kernel_dropped`](Self::kernel_dropped), where the system tells.
///
/// # Examples
///
/// ```
/// use xray_local::{DropReason, XRayLocal};
///
/// let local = XRayLocal::builder().udp_addr("127.0.0.1:0".parse()?).start()?;
/// let stats = local.stats();
/// assert_eq!(stats.received(), 0);
/// assert_eq!(stats.dropped(DropReason::InvalidJson), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    received: u64,
    accepted: u64,
    dropped: [u64; DropReason::ALL.len()],
    evicted_traces: u64,
    evicted_unsettled: u64,
    kernel_dropped: Option<u64>,
    stored_bytes: u64,
    assembled_bytes: u64,
}

impl Stats {
    /// Datagrams read from the socket.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Documents accepted into the store.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Datagrams refused for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(reason.index()).copied().unwrap_or(0)
    }

    /// Datagrams refused for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Traces removed to stay within the configured bounds.
    pub fn evicted_traces(&self) -> u64 {
        self.evicted_traces
    }

    /// Of [`evicted_traces`](Self::evicted_traces), those removed before every follower
    /// ([`XRayLocal::completed`](crate::XRayLocal::completed)) had read them, or before they
    /// settled at all: their latest documents were never shown. Eviction takes the traces
    /// every follower has read first, and within a quarter of a bound complete traces settle
    /// without waiting for the quiet period, so this stays 0 while followers keep up.
    pub fn evicted_unsettled(&self) -> u64 {
        self.evicted_unsettled
    }

    /// What the documents held now take in memory, parsed and indexed, in bytes: what
    /// [`max_bytes`](crate::XRayLocalBuilder::max_bytes) bounds, with
    /// [`assembled_bytes`](Self::assembled_bytes).
    pub fn stored_bytes(&self) -> u64 {
        self.stored_bytes
    }

    /// What the assembled traces kept for readers take now, in bytes. They are dropped,
    /// oldest first, before any trace is evicted to make room.
    pub fn assembled_bytes(&self) -> u64 {
        self.assembled_bytes
    }

    /// Datagrams the kernel dropped because the socket's receive buffer was full, before the
    /// daemon could read them: on Linux (read from `/proc/net/udp`), `None` elsewhere.
    pub fn kernel_dropped(&self) -> Option<u64> {
        self.kernel_dropped
    }
}

/// Where the kernel counts the datagrams it dropped for one socket: its inode, found in
/// `/proc/net/udp` and `/proc/net/udp6` (Linux).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SocketDrops {
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    inode: u64,
}

impl SocketDrops {
    /// The counter of `socket`, where the system has one.
    pub(crate) fn of(socket: &std::net::UdpSocket) -> Option<Self> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd as _;
            use std::os::unix::fs::MetadataExt as _;
            let fd = socket.as_raw_fd();
            let meta = std::fs::metadata(format!("/proc/self/fd/{fd}")).ok()?;
            Some(SocketDrops { inode: meta.ino() })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = socket;
            None
        }
    }

    /// The kernel's count now.
    fn read(self) -> Option<u64> {
        #[cfg(target_os = "linux")]
        {
            ["/proc/net/udp", "/proc/net/udp6"].iter().find_map(|path| {
                let table = std::fs::read_to_string(path).ok()?;
                table.lines().skip(1).find_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let inode: u64 = fields.get(9)?.parse().ok()?;
                    (inode == self.inode).then(|| fields.last()?.parse().ok())?
                })
            })
        }
        #[cfg(not(target_os = "linux"))]
        None
    }
}

/// Bounds and completion rules of a [`Store`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoreConfig {
    pub(crate) max_traces: usize,
    pub(crate) max_bytes: usize,
    pub(crate) quiet_period: Duration,
    pub(crate) idle_timeout: Option<Duration>,
}

#[derive(Debug)]
pub(crate) struct Store {
    inner: Mutex<Inner>,
    changed: Condvar,
    config: StoreConfig,
    kernel: Option<SocketDrops>,
}

#[derive(Debug, Default)]
struct Inner {
    traces: HashMap<TraceId, Entry>,
    /// Trace ids by first arrival: eviction takes from the front.
    order: VecDeque<TraceId>,
    /// What the documents cost, as [`intake::document_cost`] counts.
    bytes: usize,
    /// The assembled traces kept for readers.
    cache: Cache,
    stats: Stats,
    /// Traces changed since they last settled (or never settled).
    unsettled: HashSet<TraceId>,
    /// Settled traces by settle sequence number, for readers that follow completions.
    settled: BTreeMap<u64, TraceId>,
    next_seq: u64,
    /// Where each follower of completions ([`Store::follow`]) has read up to.
    followers: Vec<std::sync::Weak<std::sync::atomic::AtomicU64>>,
    shut_down: bool,
}

#[derive(Debug)]
struct Entry {
    pieces: Pieces,
    bytes: usize,
    last_update: Instant,
    /// The assembled trace, rebuilt when `None`.
    cached: Option<Arc<Trace>>,
    /// What `cached` costs, counted in [`Cache::bytes`].
    cached_bytes: usize,
    settled_seq: Option<u64>,
}

/// The assembled traces kept for readers. They count against the byte bound beside the
/// documents (an assembled trace is a copy of its documents), and are dropped, oldest first,
/// before any trace is evicted.
#[derive(Debug, Default)]
struct Cache {
    /// Trace ids in the order their trace was assembled; an id whose trace has been evicted,
    /// changed or assembled again since is skipped when it comes up.
    queue: VecDeque<TraceId>,
    bytes: usize,
}

impl Store {
    pub(crate) fn new(config: StoreConfig, kernel: Option<SocketDrops>) -> Self {
        Store {
            inner: Mutex::new(Inner::default()),
            changed: Condvar::new(),
            config,
            kernel,
        }
    }

    /// `stats` with the kernel's count of dropped datagrams.
    fn with_kernel(&self, mut stats: Stats) -> Stats {
        stats.kernel_dropped = self.kernel.and_then(SocketDrops::read);
        stats
    }

    /// Counts a refused datagram.
    pub(crate) fn record_drop(&self, reason: DropReason) {
        let mut inner = self.inner.lock();
        inner.stats.received += 1;
        if let Some(n) = inner.stats.dropped.get_mut(reason.index()) {
            *n += 1;
        }
        drop(inner);
        self.changed.notify_all();
    }

    /// Files accepted documents under their traces, under one lock, and wakes the waiters
    /// once. Each counts against the byte bound by what it costs parsed, not by the size of
    /// its datagram.
    pub(crate) fn insert_batch(&self, docs: Vec<(Document, usize, Instant)>) {
        let docs: Vec<_> = docs
            .into_iter()
            .map(|(doc, _, now)| {
                let cost = intake::document_cost(&doc);
                (doc, cost, now)
            })
            .collect();
        let mut guard = self.inner.lock();
        for (doc, cost, now) in docs {
            guard.insert(doc, cost, now, &self.config);
        }
        drop(guard);
        self.changed.notify_all();
    }

    /// Marks the store closed and wakes every waiter.
    pub(crate) fn shut_down(&self) {
        self.inner.lock().shut_down = true;
        self.changed.notify_all();
    }

    pub(crate) fn stats(&self) -> Stats {
        let stats = self.inner.lock().snapshot();
        self.with_kernel(stats)
    }

    /// Every trace (settled or not) by first arrival, each a copy.
    pub(crate) fn traces(&self) -> Vec<Trace> {
        self.ids()
            .into_iter()
            .filter_map(|id| self.assembled(id))
            .map(Arc::unwrap_or_clone)
            .collect()
    }

    /// The ids of every trace (settled or not) by first arrival: a reader of many traces
    /// takes them one at a time with [`assembled`](Self::assembled), so that no more than
    /// one is copied at once.
    pub(crate) fn ids(&self) -> Vec<TraceId> {
        let mut inner = self.inner.lock();
        inner.settle(&self.config, Instant::now());
        inner.order.iter().copied().collect()
    }

    /// Every trace held (settled or not), assembled, in no particular order: the cached ones
    /// taken under one lock, the others assembled one at a time after it, so that a reader
    /// of every trace (`GetTraceSummaries`) looks up no id and holds the lock only to copy
    /// pointers.
    pub(crate) fn assembled_all(&self) -> Vec<Arc<Trace>> {
        let (mut ready, missing) = {
            let mut inner = self.inner.lock();
            inner.settle(&self.config, Instant::now());
            let mut ready = Vec::with_capacity(inner.traces.len());
            let mut missing = Vec::new();
            for (id, entry) in &inner.traces {
                match &entry.cached {
                    Some(trace) => ready.push(Arc::clone(trace)),
                    None => missing.push(*id),
                }
            }
            (ready, missing)
        };
        ready.extend(missing.into_iter().filter_map(|id| self.assembled(id)));
        ready
    }

    /// The trace as it is now, assembled (or taken from the cache).
    pub(crate) fn assembled(&self, id: TraceId) -> Option<Arc<Trace>> {
        let mut inner = self.inner.lock();
        let Inner { traces, cache, .. } = &mut *inner;
        let trace = traces.get_mut(&id)?.trace(id, cache);
        inner.evict(&self.config);
        Some(trace)
    }

    pub(crate) fn trace(&self, id: TraceId) -> Option<Trace> {
        self.assembled(id).map(Arc::unwrap_or_clone)
    }

    pub(crate) fn wait_for_trace(&self, id: TraceId, timeout: Duration) -> Option<Trace> {
        self.wait(timeout, |inner| {
            let Inner { traces, cache, .. } = inner;
            let entry = traces.get_mut(&id)?;
            entry.settled_seq?;
            Some(Arc::unwrap_or_clone(entry.trace(id, cache)))
        })
    }

    pub(crate) fn wait_for_traces(&self, n: usize, timeout: Duration) -> Vec<Trace> {
        let settled = |inner: &mut Inner| {
            let Inner {
                order,
                traces,
                cache,
                ..
            } = inner;
            order
                .iter()
                .filter_map(|id| {
                    let entry = traces.get_mut(id)?;
                    entry.settled_seq?;
                    Some(Arc::unwrap_or_clone(entry.trace(*id, cache)))
                })
                .collect::<Vec<_>>()
        };
        if let Some(all) = self.wait(timeout, |inner| {
            (inner.settled.len() >= n).then(|| settled(inner))
        }) {
            return all;
        }
        let mut inner = self.inner.lock();
        inner.settle(&self.config, Instant::now());
        settled(&mut inner)
    }

    pub(crate) fn wait_for_stats(
        &self,
        timeout: Duration,
        mut until: impl FnMut(&Stats) -> bool,
    ) -> Stats {
        let stats = self
            .wait(timeout, |inner| {
                let stats = inner.snapshot();
                until(&stats).then_some(stats)
            })
            .unwrap_or_else(|| self.inner.lock().snapshot());
        self.with_kernel(stats)
    }

    /// A new follower of completions, reading from the start: what it has read is what
    /// eviction takes first.
    pub(crate) fn follow(&self) -> Arc<std::sync::atomic::AtomicU64> {
        let cursor = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut inner = self.inner.lock();
        inner.followers.retain(|f| f.strong_count() > 0);
        inner.followers.push(Arc::downgrade(&cursor));
        cursor
    }

    /// The first trace that settled after `cursor`; moves the cursor past it.
    pub(crate) fn next_settled(
        &self,
        cursor: &std::sync::atomic::AtomicU64,
        timeout: Option<Duration>,
    ) -> Option<Trace> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut take = |inner: &mut Inner| {
            let (&seq, &id) = inner.settled.range(cursor.load(Relaxed)..).next()?;
            cursor.store(seq + 1, Relaxed);
            let Inner { traces, cache, .. } = inner;
            let trace = traces.get_mut(&id).map(|e| e.trace(id, cache));
            trace.map(Arc::unwrap_or_clone)
        };
        match timeout {
            Some(timeout) => self.wait(timeout, take),
            None => {
                let mut guard = self.inner.lock();
                self.wait_locked(&mut guard, None, &mut take)
            }
        }
    }

    /// Waits until `ready` returns `Some`, the timeout passes, or the store shuts down with
    /// nothing left to settle. Settles traces before every check.
    fn wait<T>(
        &self,
        timeout: Duration,
        mut ready: impl FnMut(&mut Inner) -> Option<T>,
    ) -> Option<T> {
        // A timeout too large to add to `now` means "no timeout".
        let deadline = Instant::now().checked_add(timeout);
        let mut guard = self.inner.lock();
        self.wait_locked(&mut guard, Some(deadline), &mut ready)
    }

    /// `deadline`: `None` waits without end, `Some(None)` was a timeout too large to represent.
    fn wait_locked<T>(
        &self,
        guard: &mut MutexGuard<'_, Inner>,
        deadline: Option<Option<Instant>>,
        ready: &mut impl FnMut(&mut Inner) -> Option<T>,
    ) -> Option<T> {
        let deadline = deadline.flatten();
        loop {
            let now = Instant::now();
            let next_settle = guard.settle(&self.config, now);
            if let Some(value) = ready(guard) {
                return Some(value);
            }
            if deadline.is_some_and(|d| now >= d) || (guard.shut_down && next_settle.is_none()) {
                return None;
            }
            let wake = match (deadline, next_settle) {
                (Some(d), Some(s)) => Some(d.min(s)),
                (d, s) => d.or(s),
            };
            match wake {
                Some(at) => {
                    self.changed.wait_until(guard, at);
                }
                None => self.changed.wait(guard),
            }
        }
    }
}

impl Inner {
    /// The counters, with what is held now.
    fn snapshot(&self) -> Stats {
        Stats {
            stored_bytes: self.bytes as u64,
            assembled_bytes: self.cache.bytes as u64,
            ..self.stats
        }
    }

    /// Files one accepted document under its trace.
    fn insert(&mut self, doc: Document, size: usize, now: Instant, config: &StoreConfig) {
        self.stats.received += 1;
        self.stats.accepted += 1;
        let trace_id = doc.trace_id;
        let order = &mut self.order;
        let entry = self.traces.entry(trace_id).or_insert_with(|| {
            order.push_back(trace_id);
            Entry {
                pieces: Pieces::default(),
                bytes: 0,
                last_update: now,
                cached: None,
                cached_bytes: 0,
                settled_seq: None,
            }
        });
        let old_size = match entry.pieces.insert(doc, size) {
            Inserted::New => 0,
            Inserted::Replaced(old) => old,
            Inserted::Stale => return,
        };
        entry.bytes = entry.bytes.saturating_sub(old_size) + size;
        entry.last_update = now;
        entry.drop_cache(&mut self.cache);
        if let Some(seq) = entry.settled_seq.take() {
            self.settled.remove(&seq);
        }
        self.unsettled.insert(trace_id);
        self.bytes = self.bytes.saturating_sub(old_size) + size;
        self.evict(config);
    }

    /// Where every follower has read up to: settled traces before it have been shown to all.
    /// `None` with no follower: then eviction goes by first arrival alone.
    fn shown_before(&mut self) -> Option<u64> {
        self.followers.retain(|f| f.strong_count() > 0);
        self.followers
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            .min()
    }

    /// Removes traces while over a bound: with followers, first the oldest that every
    /// follower has been shown; then, and without followers, by first arrival (counted apart
    /// when not settled, or settled but not read by every follower).
    ///
    /// Over the byte bound, assembled traces kept for readers go first, oldest first.
    fn evict(&mut self, config: &StoreConfig) {
        loop {
            let over_bytes = self.bytes.saturating_add(self.cache.bytes) > config.max_bytes;
            if self.traces.len() <= config.max_traces && !over_bytes {
                break;
            }
            if over_bytes
                && self.cache.bytes > 0
                && self.traces.len() <= config.max_traces
                && let Some(id) = self.cache.queue.pop_front()
            {
                if let Some(entry) = self.traces.get_mut(&id) {
                    entry.drop_cache(&mut self.cache);
                }
                continue;
            }
            let shown = self.shown_before();
            let victim =
                shown.and_then(|shown| self.settled.range(..shown).next().map(|(_, &id)| id));
            let id = match victim {
                Some(id) => {
                    // Usually at or near the front: the oldest traces settle first.
                    if let Some(at) = self.order.iter().position(|o| *o == id) {
                        self.order.remove(at);
                    }
                    id
                }
                None => match self.order.pop_front() {
                    Some(id) => id,
                    None => break,
                },
            };
            if let Some(mut entry) = self.traces.remove(&id) {
                self.bytes = self.bytes.saturating_sub(entry.bytes);
                entry.drop_cache(&mut self.cache);
                if let Some(seq) = entry.settled_seq {
                    self.settled.remove(&seq);
                }
                let unread = entry
                    .settled_seq
                    .zip(shown)
                    .is_some_and(|(seq, shown)| seq >= shown);
                if self.unsettled.remove(&id) || unread {
                    self.stats.evicted_unsettled += 1;
                }
                self.stats.evicted_traces += 1;
                tracing::debug!(trace_id = %id, "evicted the oldest trace to stay within bounds");
            }
        }
        // Ids of caches dropped with their trace or by a change stay queued until they come
        // up: past twice the traces held, the queue keeps only the live ones.
        if self.cache.queue.len() > 2 * self.traces.len() + 64 {
            let traces = &self.traces;
            let mut seen = HashSet::new();
            self.cache.queue.retain(|id| {
                traces.get(id).is_some_and(|e| e.cached.is_some()) && seen.insert(*id)
            });
        }
    }

    /// Settles every changed trace whose time has come; returns when the next one will be due.
    fn settle(&mut self, config: &StoreConfig, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut done = Vec::new();
        // Within a quarter of a bound, a complete trace settles at once instead of after the
        // quiet period, which only waits for late pieces: shown now rather than evicted unseen.
        let pressed = self.traces.len().saturating_mul(4) >= config.max_traces.saturating_mul(3)
            || self.bytes.saturating_mul(4) >= config.max_bytes.saturating_mul(3);
        let assembled_before = self.cache.bytes;
        let Inner {
            unsettled,
            traces,
            cache,
            ..
        } = self;
        for &id in &*unsettled {
            let Some(entry) = traces.get_mut(&id) else {
                done.push((id, None));
                continue;
            };
            // Assembling is the costly part: only for a trace that may be complete.
            let complete = entry.pieces.may_be_complete() && entry.trace(id, cache).is_complete();
            let quiet_until = if pressed {
                Some(now)
            } else {
                entry.last_update.checked_add(config.quiet_period)
            };
            let idle_until = config
                .idle_timeout
                .and_then(|t| entry.last_update.checked_add(t));
            let due = [complete.then_some(quiet_until).flatten(), idle_until]
                .into_iter()
                .flatten()
                .min();
            match due {
                Some(at) if at <= now => done.push((id, Some(()))),
                Some(at) => next = Some(next.map_or(at, |n| n.min(at))),
                None => {}
            }
        }
        for (id, settled) in done {
            self.unsettled.remove(&id);
            if settled.is_some()
                && let Some(entry) = self.traces.get_mut(&id)
            {
                let seq = self.next_seq;
                self.next_seq += 1;
                entry.settled_seq = Some(seq);
                self.settled.insert(seq, id);
            }
        }
        if self.cache.bytes > assembled_before {
            self.evict(config);
        }
        next
    }
}

impl Entry {
    /// The assembled trace, assembling it first if documents arrived since; what a new one
    /// costs is counted in `cache`.
    fn trace(&mut self, id: TraceId, cache: &mut Cache) -> Arc<Trace> {
        if let Some(trace) = &self.cached {
            return Arc::clone(trace);
        }
        let trace = Arc::new(self.pieces.build(id));
        // Worked out now, so that its cost is counted with the trace's.
        trace.index();
        self.cached_bytes = trace.footprint();
        cache.bytes += self.cached_bytes;
        cache.queue.push_back(id);
        self.cached = Some(Arc::clone(&trace));
        trace
    }

    /// Forgets the assembled trace (documents arrived, or room is needed).
    fn drop_cache(&mut self, cache: &mut Cache) {
        if self.cached.take().is_some() {
            cache.bytes = cache.bytes.saturating_sub(self.cached_bytes);
            self.cached_bytes = 0;
        }
    }
}
