//! The live tree of one sampled segment.
//!
//! Every entity of the segment sits in a slot of one vector behind one mutex. A handle is the
//! tree's `Arc` plus a slot index and a generation, so beginning a subsegment costs one short
//! lock and no allocation of its own beyond its name, and a stale handle (its entity already
//! ended and its slot reused) can never touch another entity. The lock is never held while
//! anything is sent, and user code runs under it only in `Entity::update`'s closure; a
//! recording call made from there does not take the lock a second time (which would wait
//! forever) but is done once the closure returns, or refused (see `reentry`).
//!
//! A document stays in its slot from the moment it begins until it is sent: an entity that has
//! ended, with all its children, is only marked done and linked into its parent's list of
//! completed children. Nothing is moved on the way, so ending a subsegment costs a few stores,
//! and when the segment completes the whole vector leaves the lock at once (an [`Arena`]) and
//! is handed to the transport as one [`Finished`](crate::transport::Finished) view. Completed
//! subtrees sent ahead of their segment
//! (streaming, Lambda) are taken out of the vector as plain [`Document`]s, freeing their slots.
//! A discarded subsegment is dropped with its subtree once that completes, and nothing under
//! it is streamed.
//!
//! Beginning and ending cost O(1), amortised, however many entities are open: streaming visits
//! only the entities that hold completed children (the `holders` worklist), never every slot
//! (which made ending a million open subsegments quadratic: 97.7 s), and the vector grows by a
//! fraction of its size. A tree holds at most the recorder's `max_subsegments` subsegments,
//! open or completed and not yet sent; past that, new ones are not recorded and are counted.
//!
//! A segment can also leave ahead of its completion ([`State::send_ahead`]): as it stands, with
//! every open entity marked `in_progress`, the X-Ray way of sending a request still running.
//! That happens when it ended and a subsegment outlived it by the grace period, when the
//! recorder holds too many open segments, and at shutdown.

use parking_lot::Mutex;

use super::Recorder;
use crate::document::{Document, SanitizedName};
use crate::id::{SegmentId, TraceId};

pub(crate) const ROOT: u32 = 0;
/// No slot: the root's parent, the end of a list of children.
const NONE: u32 = u32::MAX;
const GROWTH: usize = 256;
const INITIAL_SLOTS: usize = 4;
/// The largest slot vector kept for reuse (about 45 KB): a thread keeps at most one.
const MAX_SPARE_SLOTS: usize = 256;

thread_local! {
    /// The slot vector of the last segment this thread sent, emptied, for the next segment
    /// begun here: a steady workload grows no vector, and allocates none, for its slots.
    static SPARE_SLOTS: std::cell::Cell<Vec<Slot>> = const { std::cell::Cell::new(Vec::new()) };
}

pub(crate) struct Tree {
    pub(crate) recorder: Recorder,
    pub(crate) trace_id: TraceId,
    /// A Lambda facade: the root is never sent, and every subsegment is sent as it completes.
    pub(crate) facade: bool,
    /// The id of the root: the segment (or facade) every entity of the tree belongs to.
    pub(crate) root_id: SegmentId,
    /// Where the recorder's registry of open segments holds this tree (`None` for a facade,
    /// which is not registered).
    pub(crate) key: Option<super::registry::Key>,
    pub(crate) state: Mutex<State>,
}

pub(crate) struct State {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Completed subsegments held under open entities.
    held: usize,
    /// Subsegments in the tree, open or completed and not yet sent: what the recorder's
    /// `max_subsegments` bounds.
    entities: usize,
    /// Entities whose list of completed children may be non-empty, pushed when a list starts:
    /// what [`stream`](Self::stream) visits instead of every slot, so that streaming costs what
    /// it sends. A slot may appear twice, or hold another entity by now; `stream` skips those.
    holders: Vec<u32>,
    /// The segment was sent ahead of its completion, its open entities in progress
    /// ([`send_ahead`](Self::send_ahead)): from then on every subtree is sent on its own as it
    /// completes, as under a Lambda facade, replacing its in-progress copy.
    root_sent: bool,
}

pub(crate) struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

/// An entity not yet sent.
struct Entry {
    doc: Document,
    parent: u32,
    open_children: u32,
    /// Children that have completed, in the order they did, linked through `next_sibling`.
    first_child: u32,
    last_child: u32,
    next_sibling: u32,
    depth: u16,
    /// Ended, with every child: it waits in its parent's list to be sent.
    done: bool,
    /// Not to be sent: when it completes, it and its subtree are dropped.
    discarded: bool,
}

/// Why a subsegment could not be added.
pub(crate) enum OpenError {
    /// The parent was sent already.
    Gone,
    /// The parent is nested [`MAX_DEPTH`] deep.
    TooDeep,
    /// The segment holds its maximum of subsegments, open or completed and not yet sent.
    TooMany,
}

/// The deepest nesting recorded. Deeper documents would risk the stack of whatever serializes
/// or parses them (serde_json, for one, refuses input nested more than 128 levels, and every
/// level of subsegments is two levels of JSON).
pub(crate) const MAX_DEPTH: u16 = 48;

/// A document leaving the tree.
pub(crate) enum Outgoing {
    /// The finished segment, with every subsegment not already sent.
    Segment(Arena),
    /// A completed subtree sent ahead of its segment.
    Independent(Document),
    /// A copy of a segment, or of an independent subsegment, sent before it completed: its
    /// open entities are marked in progress (see [`State::send_ahead`]).
    InProgress(Document),
}

/// The documents one `end` sends: nearly always none or one, which need no allocation.
#[derive(Default)]
pub(crate) struct Outbox {
    first: Option<Outgoing>,
    more: Vec<Outgoing>,
    /// The segment completed: it is done with, whether or not it was sent now.
    completed: bool,
}

impl Outbox {
    #[inline]
    fn push(&mut self, doc: Outgoing) {
        if self.first.is_none() {
            self.first = Some(doc);
        } else {
            self.more.push(doc);
        }
    }

    /// Whether the segment completed in the call that filled this outbox.
    #[inline]
    pub(crate) fn completed(&self) -> bool {
        self.completed
    }
}

/// What [`State::send_ahead`] sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SentAhead {
    /// Nothing: the segment had completed, or was sent ahead already and is kept.
    Nothing,
    /// The segment, with its open entities in progress.
    Segment,
    /// The segment had been sent ahead already: only its open subsegments, in progress.
    Subsegments,
}

impl IntoIterator for Outbox {
    type Item = Outgoing;
    type IntoIter = std::iter::Chain<std::option::IntoIter<Outgoing>, std::vec::IntoIter<Outgoing>>;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.more)
    }
}

impl State {
    pub(crate) fn new(root: Document) -> Self {
        // The vector of the last segment sent from this thread, else room for a few
        // subsegments: most segments never grow the vector.
        let mut slots = SPARE_SLOTS
            .try_with(std::cell::Cell::take)
            .unwrap_or_default();
        if slots.capacity() == 0 {
            slots.reserve_exact(INITIAL_SLOTS);
        }
        slots.push(Slot {
            generation: 0,
            entry: Some(Entry::new(root, NONE, 0)),
        });
        Self {
            slots,
            free: Vec::new(),
            held: 0,
            entities: 0,
            holders: Vec::new(),
            root_sent: false,
        }
    }

    fn live(&mut self, slot: u32, generation: u32) -> Option<&mut Entry> {
        self.slots
            .get_mut(slot as usize)
            .filter(|s| s.generation == generation)
            .and_then(|s| s.entry.as_mut())
            .filter(|e| !e.done)
    }

    /// Runs `f` on the document of a live entity; `None` if it has completed already.
    pub(crate) fn with_doc<R>(
        &mut self,
        slot: u32,
        generation: u32,
        f: impl FnOnce(&mut Document) -> R,
    ) -> Option<R> {
        self.live(slot, generation).map(|e| f(&mut e.doc))
    }

    /// Adds a child under a live entity, unless the tree holds `max` subsegments already;
    /// returns its slot and generation.
    #[inline]
    pub(crate) fn open(
        &mut self,
        parent: u32,
        generation: u32,
        name: SanitizedName,
        id: SegmentId,
        start_time: f64,
        max: usize,
    ) -> Result<(u32, u32), OpenError> {
        let full = self.entities >= max;
        let p = self.live(parent, generation).ok_or(OpenError::Gone)?;
        if p.depth >= MAX_DEPTH {
            return Err(OpenError::TooDeep);
        }
        if full {
            return Err(OpenError::TooMany);
        }
        p.open_children += 1;
        let depth = p.depth + 1;
        self.entities += 1;
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                // Past a few hundred entities grow by a sixteenth (at least `GROWTH` slots), not
                // by doubling: an open subsegment then costs its slot plus at most a sixteenth
                // of slack, and growing stays amortised O(1). (Fixed steps copied the whole
                // vector every `GROWTH` subsegments: quadratic in a segment of a million.)
                if self.slots.len() == self.slots.capacity() && self.slots.capacity() >= GROWTH {
                    self.slots
                        .reserve_exact(GROWTH.max(self.slots.capacity() / 16));
                }
                self.slots.push(Slot {
                    generation: 0,
                    entry: None,
                });
                self.slots.len() as u32 - 1
            }
        };
        // Slots on the free list exist: `take_subtree` pushes only indices it found.
        let Some(slot) = self.slots.get_mut(i as usize) else {
            return Err(OpenError::Gone);
        };
        // The document is built where it is stored, not moved there: it is 144 bytes, and
        // every move of it is a copy.
        slot.entry = Some(Entry::new(
            Document::with_name(name, id, start_time),
            parent,
            depth,
        ));
        Ok((i, slot.generation))
    }

    /// Marks a live subsegment to be dropped with its subtree once that completes, instead of
    /// being sent (the root has no parent to leave, and is never marked).
    pub(crate) fn discard(&mut self, slot: u32, generation: u32) {
        if let Some(entry) = self.live(slot, generation) {
            entry.discarded = entry.parent != NONE;
        }
    }

    /// Ends a live entity at `end_time`. Returns false if it had ended already.
    ///
    /// Completed entities join their parents' lists; documents ready to send are pushed to
    /// `out`. `threshold` is the streaming threshold (0 sends every completed subtree at once).
    pub(crate) fn end(
        &mut self,
        slot: u32,
        generation: u32,
        end_time: f64,
        tree: &Tree,
        threshold: usize,
        out: &mut Outbox,
    ) -> bool {
        let Some(entry) = self.live(slot, generation) else {
            return false;
        };
        if entry.doc.end_time().is_some() {
            return false;
        }
        entry.doc.set_end_time(end_time);

        let mut cur = slot;
        let mut completed_any = false;
        while let Some(Slot {
            generation: g,
            entry: Some(e),
        }) = self.slots.get_mut(cur as usize)
        {
            if e.doc.end_time().is_none() || e.open_children > 0 {
                break;
            }
            // Done: handles to it no longer reach it.
            e.done = true;
            *g = g.wrapping_add(1);
            let parent = e.parent;
            let discarded = e.discarded;
            if parent == NONE {
                out.completed = true;
                if tree.facade || self.root_sent {
                    // The root is never sent (a facade) or was sent ahead: what completed
                    // under it since goes on its own, as it would have under an open root.
                    self.stream_children(ROOT, tree.trace_id, out);
                } else {
                    out.push(Outgoing::Segment(Arena {
                        slots: std::mem::take(&mut self.slots),
                    }));
                }
                return true;
            }
            let Some(p) = self
                .slots
                .get_mut(parent as usize)
                .and_then(|s| s.entry.as_mut())
            else {
                break;
            };
            p.open_children -= 1;
            if discarded {
                // Dropped with its subtree; the parent may have completed with it. Completed
                // children dropped with it stay counted in `held`: at worst the next stream
                // comes early.
                let _ = self.take_subtree(cur);
                cur = parent;
                continue;
            }
            let last = std::mem::replace(&mut p.last_child, cur);
            if last == NONE {
                p.first_child = cur;
                // Its list starts: `stream` will visit it.
                self.holders.push(parent);
            } else if let Some(prev) = self
                .slots
                .get_mut(last as usize)
                .and_then(|s| s.entry.as_mut())
            {
                prev.next_sibling = cur;
            }
            self.held += 1;
            completed_any = true;
            cur = parent;
        }
        if completed_any && (tree.facade || self.root_sent || self.held > threshold) {
            self.stream(tree.trace_id, out);
        }
        true
    }

    /// Sends every completed subtree held by an open entity as an independent subsegment.
    ///
    /// Only the entities on the `holders` worklist are visited: the cost is what is sent (plus
    /// at most one visit per list started since the last stream), not the number of slots.
    fn stream(&mut self, trace_id: TraceId, out: &mut Outbox) {
        let mut holders = std::mem::take(&mut self.holders);
        for &i in &holders {
            let open_with_children = self
                .slots
                .get(i as usize)
                .and_then(|s| s.entry.as_ref())
                .is_some_and(|e| !e.done && e.first_child != NONE);
            // A discarded entity, and anything under one, keeps its completed children, to
            // drop them with it. (It leaves the worklist: its list never empties, so nothing
            // pushes it again, and it is never streamed.) A completed one is sent with its
            // parent, its children with it.
            if !open_with_children || self.doomed(i) {
                continue;
            }
            self.stream_children(i, trace_id, out);
        }
        // `stream_children` pushes nothing: the worklist is empty, and keeps its allocation.
        holders.clear();
        self.holders = holders;
        self.held = 0;
    }

    /// Sends the completed children of the entity in `slot`, each with its subtree, as
    /// independent subsegments, freeing their slots.
    fn stream_children(&mut self, slot: u32, trace_id: TraceId, out: &mut Outbox) {
        let Some(e) = self
            .slots
            .get_mut(slot as usize)
            .and_then(|s| s.entry.as_mut())
        else {
            return;
        };
        let parent_id = e.doc.id();
        let mut child = std::mem::replace(&mut e.first_child, NONE);
        e.last_child = NONE;
        while let Some((mut doc, next)) = self.take_subtree(child) {
            doc.set_independent(trace_id, parent_id);
            out.push(Outgoing::Independent(doc));
            child = next;
        }
    }

    /// Sends the segment as it stands, ahead of its completion, with every open entity marked
    /// `in_progress` (no end time), as X-Ray takes a request still running: the segment with
    /// its whole subtree, completed subsegments included (they leave the tree). Once the
    /// segment was sent that way, only copies of its open subsegments are sent, each as an
    /// independent subsegment. Discarded subtrees are left out.
    ///
    /// With `forget`, the tree is then emptied: its memory is freed and every handle to it
    /// is stale, so what they record afterwards is dropped. Without, the open entities stay,
    /// and from now on each subtree is sent on its own as it completes, replacing its
    /// in-progress copy (the service keeps the last document of each id); a segment already
    /// sent ahead is then left as it is.
    ///
    /// O(entities), on a path taken once per segment at most, and never for one that
    /// completes in time.
    pub(crate) fn send_ahead(
        &mut self,
        trace_id: TraceId,
        forget: bool,
        out: &mut Outbox,
    ) -> SentAhead {
        let root = self.slots.get(ROOT as usize).and_then(|s| s.entry.as_ref());
        let Some(root_id) = root.filter(|e| !e.done).map(|e| e.doc.id()) else {
            return SentAhead::Nothing;
        };
        let sent_before = self.root_sent;
        if sent_before && !forget {
            return SentAhead::Nothing;
        }
        let (first_open, next_open) = self.open_index();
        let sent = if sent_before {
            let mut child = first_open.get(ROOT as usize).copied().unwrap_or(NONE);
            while child != NONE {
                if let Some(mut doc) = self.snapshot(child, &first_open, &next_open) {
                    doc.set_independent(trace_id, root_id);
                    out.push(Outgoing::InProgress(doc));
                }
                child = next_open.get(child as usize).copied().unwrap_or(NONE);
            }
            SentAhead::Subsegments
        } else {
            if let Some(doc) = self.snapshot(ROOT, &first_open, &next_open) {
                out.push(Outgoing::InProgress(doc));
            }
            SentAhead::Segment
        };
        self.held = 0;
        if forget {
            self.slots = Vec::new();
            self.free = Vec::new();
            self.holders = Vec::new();
            self.entities = 0;
        } else {
            self.root_sent = true;
        }
        sent
    }

    /// The open entities (not discarded) by parent, which no list links: the first open child
    /// of the entity in slot `s` is `first[s]`, the next after child `c` is `next[c]`, `NONE`
    /// at the end, in slot order.
    fn open_index(&self) -> (Vec<u32>, Vec<u32>) {
        let n = self.slots.len();
        let mut first = vec![NONE; n];
        let mut next = vec![NONE; n];
        for i in (0..n).rev() {
            let Some(e) = self.slots.get(i).and_then(|s| s.entry.as_ref()) else {
                continue;
            };
            if e.done || e.discarded || e.parent == NONE {
                continue;
            }
            let Some(head) = first.get_mut(e.parent as usize) else {
                continue;
            };
            let after = std::mem::replace(head, i as u32);
            if let Some(link) = next.get_mut(i) {
                *link = after;
            }
        }
        (first, next)
    }

    /// A copy of the entity in `slot` as it stands, with its subtree: its completed children
    /// (moved out of the tree, freeing their slots) and copies of its open ones, each copy
    /// marked in progress if it has not ended.
    fn snapshot(&mut self, slot: u32, first_open: &[u32], next_open: &[u32]) -> Option<Document> {
        let e = self.slots.get_mut(slot as usize)?.entry.as_mut()?;
        let mut doc = e.doc.clone();
        if doc.end_time().is_none() {
            doc.set_in_progress(true);
        }
        let mut child = std::mem::replace(&mut e.first_child, NONE);
        e.last_child = NONE;
        while let Some((d, next)) = self.take_subtree(child) {
            doc.add_subsegment(d);
            child = next;
        }
        let mut open = first_open.get(slot as usize).copied().unwrap_or(NONE);
        while open != NONE {
            if let Some(d) = self.snapshot(open, first_open, next_open) {
                doc.add_subsegment(d);
            }
            open = next_open.get(open as usize).copied().unwrap_or(NONE);
        }
        Some(doc)
    }

    /// Whether the entity in `slot`, or one of its ancestors, is discarded.
    fn doomed(&self, mut slot: u32) -> bool {
        while let Some(e) = self.slots.get(slot as usize).and_then(|s| s.entry.as_ref()) {
            if e.discarded {
                return true;
            }
            slot = e.parent;
        }
        false
    }

    /// Takes a completed subtree out as one document, freeing its slots; returns it with its
    /// next sibling. `None` for [`NONE`], the end of a list.
    fn take_subtree(&mut self, slot: u32) -> Option<(Document, u32)> {
        let e = self.slots.get_mut(slot as usize)?.entry.take()?;
        self.free.push(slot);
        self.entities = self.entities.saturating_sub(1);
        let mut doc = e.doc;
        let mut child = e.first_child;
        while let Some((d, next)) = self.take_subtree(child) {
            doc.add_subsegment(d);
            child = next;
        }
        Some((doc, e.next_sibling))
    }
}

impl Entry {
    #[inline]
    fn new(doc: Document, parent: u32, depth: u16) -> Self {
        Self {
            doc,
            parent,
            open_children: 0,
            first_child: NONE,
            last_child: NONE,
            next_sibling: NONE,
            depth,
            done: false,
            discarded: false,
        }
    }
}

/// A completed segment: every entity of its tree, the root at [`ROOT`], each linked to its
/// completed children.
pub(crate) struct Arena {
    slots: Vec<Slot>,
}

impl Arena {
    /// Frees the entities, and keeps the emptied vector for the next segment begun on this
    /// thread unless it is large.
    pub(crate) fn recycle(self) {
        let mut slots = self.slots;
        slots.clear();
        if slots.capacity() <= MAX_SPARE_SLOTS {
            let _ = SPARE_SLOTS.try_with(|spare| spare.set(slots));
        }
    }

    fn entry(&self, slot: u32) -> Option<&Entry> {
        self.slots.get(slot as usize)?.entry.as_ref()
    }

    /// The document in `slot` and its next sibling, if the slot holds an entity.
    pub(crate) fn node(&self, slot: u32) -> Option<(&Document, Option<u32>)> {
        let e = self.entry(slot)?;
        Some((&e.doc, (e.next_sibling != NONE).then_some(e.next_sibling)))
    }

    /// The first completed child of the entity in `slot`.
    pub(crate) fn first_child(&self, slot: u32) -> Option<u32> {
        let e = self.entry(slot)?;
        (e.first_child != NONE).then_some(e.first_child)
    }
}
