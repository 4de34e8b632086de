//! The live tree of one sampled segment.
//!
//! Every entity of the segment (the segment and its open subsegments) sits in a slot of one
//! vector behind one mutex. A handle is the tree's `Arc` plus a slot index and a generation, so
//! beginning a subsegment costs one short lock and no allocation of its own beyond its name,
//! and a stale handle (its entity already ended and its slot reused) can never touch another
//! entity. The lock is never held while user code runs or while anything is sent.
//!
//! When an entity has ended and all its children have, its document is moved into its parent's
//! `subsegments`: completed subtrees travel up as plain documents, and the segment's document
//! is complete, ready to serialize, the moment its last entity ends.

use parking_lot::Mutex;

use super::Recorder;
use crate::document::Document;
use crate::id::TraceId;

pub(crate) const ROOT: u32 = 0;
const NO_PARENT: u32 = u32::MAX;
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
    /// Completed subsegments held in the documents of open entities.
    held: usize,
}

struct Slot {
    generation: u32,
    live: Option<Live>,
}

/// An entity not yet sent. It has ended once its document has an end time.
struct Live {
    doc: Document,
    parent: u32,
    open_children: u32,
    depth: u16,
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
    Segment(Document),
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
            live: Some(Live {
                doc: root,
                parent: NO_PARENT,
                open_children: 0,
                depth: 0,
            }),
        });
        Self {
            slots,
            free: Vec::new(),
            held: 0,
        }
    }

    fn live(&mut self, slot: u32, generation: u32) -> Option<&mut Live> {
        self.slots
            .get_mut(slot as usize)
            .filter(|s| s.generation == generation)
            .and_then(|s| s.live.as_mut())
    }

    /// Runs `f` on the document of a live entity; `None` if it has been sent already.
    pub(crate) fn with_doc<R>(
        &mut self,
        slot: u32,
        generation: u32,
        f: impl FnOnce(&mut Document) -> R,
    ) -> Option<R> {
        self.live(slot, generation).map(|l| f(&mut l.doc))
    }

    /// Adds a child under a live entity; returns its slot and generation.
    #[inline]
    pub(crate) fn open(
        &mut self,
        parent: u32,
        generation: u32,
        doc: Document,
    ) -> Result<(u32, u32), OpenError> {
        let p = self.live(parent, generation).ok_or(OpenError::Gone)?;
        if p.depth >= MAX_DEPTH {
            return Err(OpenError::TooDeep);
        }
        p.open_children += 1;
        let depth = p.depth + 1;
        // `Live` is built where it is stored: a document is 176 bytes, and every move of it
        // is a copy.
        Ok(match self.free.pop() {
            Some(i) => {
                // Slots on the free list exist: `take` pushes only indices it found.
                let Some(slot) = self.slots.get_mut(i as usize) else {
                    return Err(OpenError::Gone);
                };
                slot.live = Some(Live {
                    doc,
                    parent,
                    open_children: 0,
                    depth,
                });
                (i, slot.generation)
            }
            None => {
                let i = self.slots.len() as u32;
                // Past a few hundred entities grow in fixed steps, not by doubling: an open
                // subsegment then costs its slot plus at most a small fraction of slack.
                if self.slots.len() == self.slots.capacity() && self.slots.capacity() >= GROWTH {
                    self.slots.reserve_exact(GROWTH);
                }
                self.slots.push(Slot {
                    generation: 0,
                    live: Some(Live {
                        doc,
                        parent,
                        open_children: 0,
                        depth,
                    }),
                });
                (i, 0)
            }
        })
    }

    /// Ends a live entity at `end_time`. Returns false if it had ended already.
    ///
    /// Completed entities move into their parents; documents ready to send are pushed to
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
        let Some(live) = self.live(slot, generation) else {
            return false;
        };
        if live.doc.end_time().is_some() {
            return false;
        }
        live.doc.set_end_time(end_time);

        let mut cur = slot;
        let mut completed_any = false;
        while let Some(Slot { live: Some(l), .. }) = self.slots.get(cur as usize) {
            if l.doc.end_time().is_none() || l.open_children > 0 {
                break;
            }
            let Some(l) = self.take(cur) else { break };
            if l.parent == NO_PARENT {
                if !tree.facade {
                    out.push(Outgoing::Segment(l.doc));
                }
                return true;
            }
            let Some(parent) = self
                .slots
                .get_mut(l.parent as usize)
                .and_then(|s| s.live.as_mut())
            else {
                break;
            };
            parent.open_children -= 1;
            parent.doc.add_subsegment(l.doc);
            self.held += 1;
            completed_any = true;
            cur = l.parent;
        }
        if completed_any && (tree.facade || self.held > threshold) {
            self.stream(tree.trace_id, out);
        }
        true
    }

    /// Sends every completed subtree held by an open entity as an independent subsegment.
    fn stream(&mut self, trace_id: TraceId, out: &mut Outbox) {
        for slot in &mut self.slots {
            let Some(l) = slot.live.as_mut() else {
                continue;
            };
            if l.doc.subsegments().is_empty() {
                continue;
            }
            let parent_id = l.doc.id();
            for mut child in l.doc.subsegments_mut().drain(..) {
                child.set_independent(trace_id, parent_id);
                out.push(Outgoing::Independent(child));
            }
        }
        self.held = 0;
    }

    #[inline]
    fn take(&mut self, slot: u32) -> Option<Live> {
        let s = self.slots.get_mut(slot as usize)?;
        // Returned as taken, without unwrapping and rewrapping (each a copy of the document).
        let live = s.live.take();
        if live.is_some() {
            s.generation = s.generation.wrapping_add(1);
            if slot != ROOT {
                self.free.push(slot);
            }
        }
        live
    }
}
