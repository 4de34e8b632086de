//! The export seam: what the recorder hands a transport, and what a transport reports.
//!
//! The recorder knows nothing of wire formats. When a segment completes, or a subsegment is
//! sent ahead of its segment, it hands the [`Transport`] a [`Finished`] view of the entities
//! and goes on. Each transport owns its framing, its size budget, its batching and its retries,
//! and counts what became of what it was given in neutral [`TransportStats`].

#[cfg(feature = "otlp")]
mod otlp_udp;
mod segment;
mod stats;

use std::cell::RefCell;
use std::fmt;
use std::time::Instant;

#[cfg(feature = "otlp")]
pub use otlp_udp::{MAX_OTLP_REQUEST_LEN, OTLP_SAMPLED_PREFIX, OtlpUdpTransport};
pub use segment::SegmentTransport;
// The byte-level sinks of `SegmentTransport`.
pub use crate::emitter::{
    BackgroundEmitter, DAEMON_HEADER, Datagram, Delivery, EmitError, Emitter, InMemoryEmitter,
    MAX_DATAGRAM_LEN, UdpEmitter,
};
pub use stats::{FlushOutcome, TransportCounters, TransportErrorKind, TransportStats};

use crate::document::{Document, WriteError, close_subsegments, open_element};
use crate::id::{SegmentId, TraceId};
use crate::recorder::Arena;

/// Where finished entities go: the seam between the recorder and the wire.
///
/// The recorder calls [`export`](Self::export) on the thread that ended the last entity of a
/// segment (or of a streamed subtree). Implementations:
///
/// - must not block the caller: a full queue is a counted drop, not a wait;
/// - must never panic, and never report an error to the caller: they count what happened in
///   their [`TransportStats`] and log at most once per interval;
/// - may be called concurrently from many threads.
///
/// [`SegmentTransport`] (segment documents to the X-Ray daemon over UDP) is the default. With
/// the `otlp` feature, `OtlpUdpTransport` sends OpenTelemetry spans in the `T1S` framing.
///
/// # Examples
///
/// A transport that writes each finished segment tree as one line of JSON:
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Instant;
/// use xray_sdk::Recorder;
/// use xray_sdk::transport::{Finished, Transport, TransportCounters, TransportStats};
///
/// #[derive(Debug, Default)]
/// struct JsonLines {
///     lines: Mutex<Vec<String>>,
///     counters: TransportCounters,
/// }
///
/// impl Transport for JsonLines {
///     fn export(&self, finished: &Finished<'_>) {
///         self.counters.queued(1);
///         let mut out = Vec::new();
///         match finished.write_json(&mut out) {
///             Ok(()) => {
///                 self.lines.lock().unwrap().push(String::from_utf8_lossy(&out).into_owned());
///                 self.counters.sent(1);
///             }
///             Err(_) => self.counters.failed(1, xray_sdk::transport::TransportErrorKind::Encode),
///         }
///     }
///
///     fn flush(&self, _deadline: Instant) -> bool {
///         true
///     }
///
///     fn stats(&self) -> TransportStats {
///         self.counters.snapshot()
///     }
/// }
///
/// let lines = Arc::new(JsonLines::default());
/// let recorder = Recorder::builder()
///     .ignore_environment()
///     .with_transport(lines.clone())
///     .build()?;
/// let segment = recorder.begin_segment("job");
/// segment.begin_subsegment("step").end();
/// segment.end();
///
/// let lines = lines.lines.lock().unwrap();
/// assert!(lines[0].contains(r#""subsegments":[{"name":"step""#));
/// assert_eq!(recorder.stats().transport.sent, 1);
/// # Ok::<(), xray_sdk::ConfigError>(())
/// ```
pub trait Transport: Send + Sync + fmt::Debug {
    /// Takes one finished segment tree or independent subsegment. It must not block: what
    /// cannot be queued is dropped and counted.
    fn export(&self, finished: &Finished<'_>);

    /// Waits until everything exported so far has left the process, or `deadline` passes.
    /// Returns whether nothing is left pending. Whether what left arrived is in
    /// [`stats`](Self::stats).
    fn flush(&self, deadline: Instant) -> bool;

    /// Flushes, then stops taking entities: the process is about to exit. It must return by
    /// `deadline`, however slow or hung the network, and give up (counting it as failed) what
    /// it could not send by then. Returns whether nothing was left pending. The default only
    /// flushes.
    fn shutdown(&self, deadline: Instant) -> bool {
        self.flush(deadline)
    }

    /// What became of what this transport was given, since it was made.
    fn stats(&self) -> TransportStats;

    /// A short description for the recorder's start-up log line, such as
    /// `segment documents over UDP to 127.0.0.1:2000`. The default is the type's name.
    fn describe(&self) -> String {
        std::any::type_name::<Self>().to_owned()
    }
}

impl<T: Transport + ?Sized> Transport for std::sync::Arc<T> {
    fn export(&self, finished: &Finished<'_>) {
        (**self).export(finished)
    }

    fn flush(&self, deadline: Instant) -> bool {
        (**self).flush(deadline)
    }

    fn shutdown(&self, deadline: Instant) -> bool {
        (**self).shutdown(deadline)
    }

    fn stats(&self) -> TransportStats {
        (**self).stats()
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn export(&self, finished: &Finished<'_>) {
        (**self).export(finished)
    }

    fn flush(&self, deadline: Instant) -> bool {
        (**self).flush(deadline)
    }

    fn shutdown(&self, deadline: Instant) -> bool {
        (**self).shutdown(deadline)
    }

    fn stats(&self) -> TransportStats {
        (**self).stats()
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

thread_local! {
    // One reusable serialization buffer per thread: the steady state allocates nothing here.
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's serialization buffer (a fresh one if it is in use).
pub(crate) fn with_buf(f: impl FnOnce(&mut Vec<u8>)) {
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

/// A datagram sink and the counters of the transport above it.
#[derive(Debug)]
pub(crate) struct CountedEmitter {
    pub(crate) emitter: Box<dyn Emitter>,
    /// The emitter sends later and counts what it sends (asked once, not per datagram).
    sends_later: bool,
    pub(crate) counters: TransportCounters,
}

impl CountedEmitter {
    pub(crate) fn new(emitter: Box<dyn Emitter>) -> Self {
        let sends_later = emitter.delivery().is_some();
        Self {
            emitter,
            sends_later,
            counters: TransportCounters::new(),
        }
    }

    /// Hands one framed datagram to the emitter and counts the outcome: an item queued, then
    /// sent, dropped or failed.
    pub(crate) fn emit(&self, bytes: &[u8]) {
        emit_counted(&*self.emitter, self.sends_later, &self.counters, bytes);
    }

    /// Waits for the emitter, then tells whether nothing is pending.
    pub(crate) fn flush(&self, deadline: Instant) -> bool {
        let timeout = deadline.saturating_duration_since(Instant::now());
        self.emitter.flush(timeout) && self.stats().pending() == 0
    }

    /// Shuts the emitter down by `deadline` (it gives up, and counts, what it could not send),
    /// then tells whether nothing is pending.
    pub(crate) fn shutdown(&self, deadline: Instant) -> bool {
        let timeout = deadline.saturating_duration_since(Instant::now());
        self.emitter.shutdown(timeout) && self.stats().pending() == 0
    }

    /// The counters, with what the emitter sent later (if it does).
    pub(crate) fn stats(&self) -> TransportStats {
        stats_with_delivery(&self.counters, &*self.emitter)
    }
}

fn emit_counted(
    emitter: &dyn Emitter,
    sends_later: bool,
    counters: &TransportCounters,
    bytes: &[u8],
) {
    let Some(datagram) = Datagram::new(bytes) else {
        return;
    };
    counters.queued(1);
    match emitter.emit(datagram) {
        // An emitter that sends later counts what it sends itself.
        Ok(()) if sends_later => {}
        Ok(()) => counters.sent(1),
        Err(EmitError::Full) => counters.dropped_full(1),
        Err(EmitError::TooLarge) => counters.dropped_too_large(1),
        Err(e) => counters.failed(1, e.kind()),
    }
}

fn stats_with_delivery(counters: &TransportCounters, emitter: &dyn Emitter) -> TransportStats {
    let mut stats = counters.snapshot();
    if let Some(d) = emitter.delivery() {
        stats.sent = d.sent;
        stats.failed += d.failed;
        if d.last_error.is_some() {
            stats.last_error = d.last_error;
        }
    }
    stats
}

impl EmitError {
    /// The neutral kind of this error.
    pub fn kind(&self) -> TransportErrorKind {
        match self {
            EmitError::ConnectionRefused => TransportErrorKind::Refused,
            EmitError::Full => TransportErrorKind::Io,
            EmitError::TooLarge => TransportErrorKind::TooLarge,
            EmitError::Closed => TransportErrorKind::Closed,
            EmitError::Io(_) => TransportErrorKind::Io,
        }
    }
}

/// What kind of [`Finished`] a transport receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FinishedKind {
    /// A completed segment, with every subsegment not sent ahead of it.
    Segment,
    /// A completed subtree sent ahead of its segment (streaming): an independent subsegment.
    Streamed,
    /// A subsegment of an AWS Lambda invocation, whose segment Lambda itself sends.
    Lambda,
}

/// A finished segment tree or independent subsegment, as the recorder hands it to a
/// [`Transport`]: a borrowed view, valid for the duration of the
/// [`export`](Transport::export) call.
#[derive(Clone, Copy)]
pub struct Finished<'a> {
    kind: FinishedKind,
    trace_id: TraceId,
    root: FinishedEntity<'a>,
}

impl<'a> Finished<'a> {
    /// The view of a completed segment's tree; `None` if it has no root.
    pub(crate) fn segment(trace_id: TraceId, arena: &'a Arena) -> Option<Self> {
        let (doc, _) = arena.node(crate::recorder::ROOT)?;
        Some(Self {
            kind: FinishedKind::Segment,
            trace_id,
            root: FinishedEntity {
                doc,
                tree: Some((arena, crate::recorder::ROOT)),
            },
        })
    }

    /// A view of a plain document: a segment with its nested subsegments, or an independent
    /// subsegment (`kind` says which).
    ///
    /// The recorder makes these itself; this is for a transport's own tests, or for sending a
    /// document built by hand.
    ///
    /// # Examples
    ///
    /// ```
    /// use xray_sdk::{Document, SegmentId, TraceId};
    /// use xray_sdk::transport::{Finished, FinishedKind};
    ///
    /// let trace_id = TraceId::new();
    /// let mut doc = Document::new("job", SegmentId::new(), 1.0);
    /// doc.set_trace_id(trace_id);
    /// doc.set_end_time(2.0);
    /// let finished = Finished::from_document(FinishedKind::Segment, trace_id, &doc);
    /// assert_eq!(finished.root().document().name(), "job");
    /// ```
    pub fn from_document(kind: FinishedKind, trace_id: TraceId, document: &'a Document) -> Self {
        Self {
            kind,
            trace_id,
            root: FinishedEntity::plain(document),
        }
    }

    /// What this is: a segment, a streamed subsegment or a Lambda subsegment.
    pub fn kind(&self) -> FinishedKind {
        self.kind
    }

    /// The trace every entity belongs to.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The parent of the root entity: the upstream caller of a segment (if any), or the
    /// entity an independent subsegment belongs under.
    pub fn parent_id(&self) -> Option<SegmentId> {
        self.root.document().parent_id()
    }

    /// The top entity: the segment, or the independent subsegment.
    pub fn root(&self) -> FinishedEntity<'a> {
        self.root
    }

    /// How many entities the view holds, the root included.
    pub fn len(&self) -> usize {
        self.root.count()
    }

    /// Always false: a view holds at least its root.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Appends the whole view as one X-Ray segment document (subsegments nested) to `out`:
    /// the JSON the daemon takes. See [`Document::write_json`].
    ///
    /// # Errors
    ///
    /// A value given to the document through `serde` (metadata, a cause's details) that
    /// fails to serialize: `out` then holds a partial document.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), WriteError> {
        self.root.write_json(out)
    }

    /// A plain document holding the whole view, subsegments nested: for splitting or
    /// trimming one that is over a size budget. It copies every entity.
    pub fn to_document(&self) -> Document {
        self.root.to_document()
    }
}

impl fmt::Debug for Finished<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Finished")
            .field("kind", &self.kind)
            .field("trace_id", &self.trace_id)
            .field("root", &self.root.document().name())
            .field("entities", &self.len())
            .finish()
    }
}

/// One entity of a [`Finished`] view, with its completed children.
#[derive(Clone, Copy)]
pub struct FinishedEntity<'a> {
    doc: &'a Document,
    /// Where the entity sits in a completed segment's tree; `None` for a plain document (its
    /// children nested in it).
    tree: Option<(&'a Arena, u32)>,
}

impl<'a> FinishedEntity<'a> {
    /// A plain document (its children nested in it) as an entity.
    pub(crate) fn plain(doc: &'a Document) -> Self {
        Self { doc, tree: None }
    }

    /// This entity's fields. Its children are [`children`](Self::children); only for an entity
    /// built as a plain document are they also in `document().subsegments()`.
    pub fn document(&self) -> &'a Document {
        self.doc
    }

    /// The entity's children, in the order they completed.
    pub fn children(&self) -> Children<'a> {
        Children {
            docs: self.doc.subsegments().iter(),
            tree: self
                .tree
                .and_then(|(arena, slot)| Some((arena, arena.first_child(slot)?))),
        }
    }

    /// How many entities this subtree holds, this one included.
    pub fn count(&self) -> usize {
        1 + self.children().map(|c| c.count()).sum::<usize>()
    }

    /// Appends this entity and its subtree as one JSON document. This is the one writer of
    /// segment JSON in the crate: [`Document::write_json`] and every transport come here.
    ///
    /// # Errors
    ///
    /// As [`Finished::write_json`].
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), WriteError> {
        self.write_tree(out).map_err(WriteError::new)
    }

    fn write_tree(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        self.doc.write_fields(out)?;
        let mut open = false;
        for child in self.children() {
            open_element(out, &mut open);
            child.write_tree(out)?;
        }
        close_subsegments(out, open);
        Ok(())
    }

    /// A plain document holding this entity and its subtree, subsegments nested.
    pub fn to_document(&self) -> Document {
        let mut doc = self.doc.clone();
        if self.tree.is_some() {
            let own = doc.subsegments().len();
            let copies: Vec<Document> =
                self.children().skip(own).map(|c| c.to_document()).collect();
            for c in copies {
                doc.add_subsegment(c);
            }
        }
        doc
    }
}

impl fmt::Debug for FinishedEntity<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FinishedEntity")
            .field("name", &self.doc.name())
            .field("id", &self.doc.id())
            .finish()
    }
}

/// The children of a [`FinishedEntity`], in the order they completed.
#[derive(Clone)]
pub struct Children<'a> {
    docs: std::slice::Iter<'a, Document>,
    /// The next child in the tree, if any.
    tree: Option<(&'a Arena, u32)>,
}

impl<'a> Iterator for Children<'a> {
    type Item = FinishedEntity<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(doc) = self.docs.next() {
            return Some(FinishedEntity::plain(doc));
        }
        let (arena, slot) = self.tree?;
        let (doc, next) = arena.node(slot)?;
        self.tree = next.map(|n| (arena, n));
        Some(FinishedEntity {
            doc,
            tree: Some((arena, slot)),
        })
    }
}

impl fmt::Debug for Children<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Children").finish_non_exhaustive()
    }
}
