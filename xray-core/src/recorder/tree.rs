//! The live tree of one sampled segment.
//!
//! Every entity of the segment sits in a slot of one vector behind one mutex. A handle is the
//! tree's `Arc` plus a slot index and a generation, so beginning a subsegment costs one short
//! lock and no allocation of its own beyond its name, and a stale handle (its entity already
//! ended and its slot reused) can never touch another entity. The lock is never held while
//! user code runs or while anything is sent.
//!
//! A document stays in its slot from the moment it begins until it is sent: an entity that has
//! ended, with all its children, is only marked done and linked into its parent's list of
//! completed children. Nothing is moved on the way, so ending a subsegment costs a few stores,
//! and when the segment completes the whole vector leaves the lock at once (an [`Arena`]) and
//! is handed to the transport as one [`Finished`](crate::Finished) view. Completed subtrees sent ahead of their segment
//! (streaming, Lambda) are taken out of the vector as plain [`Document`]s, freeing their slots.
//! A discarded subsegment is dropped with its subtree once that completes, and nothing under
//! it is streamed.

use parking_lot::Mutex;

use super::Recorder;
use crate::document::{Document, SanitizedName};
use crate::id::{SegmentId, TraceId};

pub(crate) const ROOT: u32 = 0;
/// No slot: the root's parent, the end of a list of children.
const NONE: u32 = u32::MAX;
const GROWTH: usize = 256;
const INITIAL_SLOTS: usize = 4;

pub(crate) struct Tree {
    pub(crate) recorder: Recorder,
    pub(crate) trace_id: TraceId,
    /// A Lambda facade: the root is never sent, and every subsegment is sent as it completes.
    pub(crate) facade: bool,
    pub(crate) state: Mutex<State>,
}

pub(crate) struct State {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Completed subsegments held under open entities.
    held: usize,
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
}

/// The documents one `end` sends: nearly always none or one, which need no allocation.
#[derive(Default)]
pub(crate) struct Outbox {
    first: Option<Outgoing>,
    more: Vec<Outgoing>,
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
        // Room for a few subsegments: most segments never grow the vector.
        let mut slots = Vec::with_capacity(INITIAL_SLOTS);
        slots.push(Slot {
            generation: 0,
            entry: Some(Entry::new(root, NONE, 0)),
        });
        Self {
            slots,
            free: Vec::new(),
            held: 0,
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

    /// Adds a child under a live entity; returns its slot and generation.
    #[inline]
    pub(crate) fn open(
        &mut self,
        parent: u32,
        generation: u32,
        name: SanitizedName,
        id: SegmentId,
        start_time: f64,
    ) -> Result<(u32, u32), OpenError> {
        let p = self.live(parent, generation).ok_or(OpenError::Gone)?;
        if p.depth >= MAX_DEPTH {
            return Err(OpenError::TooDeep);
        }
        p.open_children += 1;
        let depth = p.depth + 1;
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                // Past a few hundred entities grow in fixed steps, not by doubling: an open
                // subsegment then costs its slot plus at most a small fraction of slack.
                if self.slots.len() == self.slots.capacity() && self.slots.capacity() >= GROWTH {
                    self.slots.reserve_exact(GROWTH);
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
                if !tree.facade {
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
        if completed_any && (tree.facade || self.held > threshold) {
            self.stream(tree.trace_id, out);
        }
        true
    }

    /// Sends every completed subtree held by an open entity as an independent subsegment.
    fn stream(&mut self, trace_id: TraceId, out: &mut Outbox) {
        for i in 0..self.slots.len() {
            let open_with_children = self
                .slots
                .get(i)
                .and_then(|s| s.entry.as_ref())
                .is_some_and(|e| !e.done && e.first_child != NONE);
            // A discarded entity, and anything under one, keeps its completed children, to
            // drop them with it.
            if !open_with_children || self.doomed(i as u32) {
                continue;
            }
            let Some(e) = self.slots.get_mut(i).and_then(|s| s.entry.as_mut()) else {
                continue;
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
        self.held = 0;
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
