//! The recorder's open segments: how many it holds at most, and when one that ended before its
//! subsegments stops waiting for them.
//!
//! Every recorded segment (not a Lambda facade, which is never sent) is registered when it
//! begins and leaves when it completes. An entry sits in one of three lists, each oldest first:
//!
//! - `open`: the segment has not ended;
//! - `lingering`: the segment ended with subsegments still open, and waits for them until the
//!   grace period has passed since it ended;
//! - `sent`: the grace period passed, the segment was sent with those subsegments in progress,
//!   and they are sent, each on its own, as they end.
//!
//! Past the bound, beginning a segment evicts one: the oldest `sent`, else the oldest
//! `lingering`, else the oldest `open`, which is sent as it stands and forgotten. Segments that
//! leak (a handle kept forever, `mem::forget`) are among the oldest, so they go first, and what
//! the recorder holds for them stays bounded.
//!
//! The lists are linked through the slots of a slab, so every operation is O(1). The lock is
//! held for a few stores: never while anything is sent, and never together with a tree's lock
//! (what is due is handed back in a [`Due`] and sent by the caller). The registry is split into
//! up to 8 shards by segment id, so that threads beginning and ending segments at once rarely
//! meet on one lock; each shard holds its share of the bound, and a bound under 2,048 is kept by
//! one shard, exactly.

use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use super::tree::Tree;

const NONE: u32 = u32::MAX;
const MAX_SHARDS: usize = 8;
/// The least bound per shard: below twice this, one shard.
const SHARD_MIN: usize = 1024;
/// Segments past their grace period handled per segment begun: more than one, so a backlog
/// drains, since each lingering segment was begun once.
const EXPIRED_PER_BEGIN: usize = 2;

/// Where a tree is registered. Stale once it left: every operation then does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    shard: u32,
    slot: u32,
    generation: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Open = 0,
    Lingering = 1,
    Sent = 2,
}

/// Trees to send ahead of their completion, found under a shard's lock and sent by the caller
/// once it is released.
#[derive(Default)]
pub(crate) struct Due {
    /// To send as they stand and forget: evicted past the bound, or open at shutdown.
    pub(crate) evicted: Vec<Arc<Tree>>,
    /// Past the grace period: to send with their open subsegments in progress, keeping these.
    pub(crate) expired: Vec<Arc<Tree>>,
}

impl Due {
    pub(crate) fn is_empty(&self) -> bool {
        self.evicted.is_empty() && self.expired.is_empty()
    }
}

struct Entry {
    tree: Weak<Tree>,
    generation: u32,
    used: bool,
    list: List,
    /// When it joined its list, in microseconds since the epoch.
    since: u64,
    prev: u32,
    next: u32,
}

#[derive(Clone, Copy)]
struct Ends {
    head: u32,
    tail: u32,
}

struct Shard {
    entries: Vec<Entry>,
    free: Vec<u32>,
    lists: [Ends; 3],
    len: usize,
}

/// The registry of a recorder's open segments; see the module docs.
pub(crate) struct OpenSegments {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    grace_micros: u64,
}

impl std::fmt::Debug for OpenSegments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenSegments")
            .field("shards", &self.shards.len())
            .field("per_shard", &self.per_shard)
            .field("grace_micros", &self.grace_micros)
            .finish()
    }
}

// ===== impl Shard =====

impl Shard {
    fn new() -> Self {
        let empty = Ends {
            head: NONE,
            tail: NONE,
        };
        Self {
            entries: Vec::new(),
            free: Vec::new(),
            lists: [empty; 3],
            len: 0,
        }
    }

    fn get(&self, key: Key) -> Option<&Entry> {
        self.entries
            .get(key.slot as usize)
            .filter(|e| e.used && e.generation == key.generation)
    }

    fn ends(&mut self, list: List) -> &mut Ends {
        // Three lists, three ends: the index is always in range.
        &mut self.lists[list as usize]
    }

    fn head(&self, list: List) -> u32 {
        self.lists[list as usize].head
    }

    /// Appends the entry in `slot` (in no list) to `list`.
    fn push_back(&mut self, slot: u32, list: List, since: u64) {
        let tail = self.ends(list).tail;
        if let Some(e) = self.entries.get_mut(slot as usize) {
            e.list = list;
            e.since = since;
            e.prev = tail;
            e.next = NONE;
        }
        match self.entries.get_mut(tail as usize) {
            Some(t) => t.next = slot,
            None => self.ends(list).head = slot,
        }
        self.ends(list).tail = slot;
    }

    /// Takes the entry in `slot` out of its list.
    fn unlink(&mut self, slot: u32) {
        let Some(e) = self.entries.get(slot as usize) else {
            return;
        };
        let (list, prev, next) = (e.list, e.prev, e.next);
        match self.entries.get_mut(prev as usize) {
            Some(p) => p.next = next,
            None => self.ends(list).head = next,
        }
        match self.entries.get_mut(next as usize) {
            Some(n) => n.prev = prev,
            None => self.ends(list).tail = prev,
        }
    }

    /// Moves the entry in `slot` to the end of `list`.
    fn move_to(&mut self, slot: u32, list: List, since: u64) {
        self.unlink(slot);
        self.push_back(slot, list, since);
    }

    fn insert(&mut self, tree: Weak<Tree>, now: u64) -> (u32, u32) {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.entries.push(Entry {
                    tree: Weak::new(),
                    generation: 0,
                    used: false,
                    list: List::Open,
                    since: 0,
                    prev: NONE,
                    next: NONE,
                });
                self.entries.len() as u32 - 1
            }
        };
        let generation = match self.entries.get_mut(slot as usize) {
            Some(e) => {
                e.tree = tree;
                e.used = true;
                e.generation
            }
            None => 0,
        };
        self.len += 1;
        self.push_back(slot, List::Open, now);
        (slot, generation)
    }

    /// Removes the entry in `slot` and returns its tree (none if the slot is free).
    fn release(&mut self, slot: u32) -> Weak<Tree> {
        if !self.entries.get(slot as usize).is_some_and(|e| e.used) {
            return Weak::new();
        }
        self.unlink(slot);
        let Some(e) = self.entries.get_mut(slot as usize) else {
            return Weak::new();
        };
        e.used = false;
        e.generation = e.generation.wrapping_add(1);
        let tree = std::mem::take(&mut e.tree);
        self.len -= 1;
        self.free.push(slot);
        tree
    }

    /// Moves lingering entries whose grace period has passed to `sent`, at most `limit`, and
    /// hands their trees to `due`.
    fn expire(&mut self, now: u64, grace: u64, limit: usize, due: &mut Due) {
        for _ in 0..limit {
            let head = self.head(List::Lingering);
            let Some(e) = self.entries.get(head as usize) else {
                return;
            };
            if now.saturating_sub(e.since) < grace {
                return;
            }
            let tree = e.tree.upgrade();
            match tree {
                Some(tree) => {
                    self.move_to(head, List::Sent, now);
                    due.expired.push(tree);
                }
                None => {
                    self.release(head);
                }
            }
        }
    }
}

// ===== impl OpenSegments =====

impl OpenSegments {
    /// A registry holding at most `max` segments (at least one), whose segments wait `grace`
    /// for subsegments that outlive them.
    pub(crate) fn new(max: usize, grace: Duration) -> Self {
        let max = max.max(1);
        let shards = (max / SHARD_MIN).clamp(1, MAX_SHARDS);
        Self {
            shards: (0..shards).map(|_| Mutex::new(Shard::new())).collect(),
            per_shard: max.div_ceil(shards),
            grace_micros: u64::try_from(grace.as_micros()).unwrap_or(u64::MAX),
        }
    }

    /// Whether a segment that ends with subsegments open is sent at once (a grace period of 0).
    pub(crate) fn sends_at_once(&self) -> bool {
        self.grace_micros == 0
    }

    fn shard(&self, key: Key) -> Option<&Mutex<Shard>> {
        self.shards.get(key.shard as usize)
    }

    /// Registers a tree (its segment's id picks the shard). Hands `due` the segment evicted to
    /// make room, if any, and up to two segments whose grace period has passed.
    pub(crate) fn insert(&self, tree: Weak<Tree>, id: u64, now: u64, due: &mut Due) -> Option<Key> {
        let index = (id % self.shards.len() as u64) as usize;
        let mut s = self.shards.get(index)?.lock();
        let (slot, generation) = s.insert(tree, now);
        if s.len > self.per_shard {
            // The new entry is the youngest `open` one, and another exists: it is never the
            // one evicted.
            let victim = [List::Sent, List::Lingering, List::Open]
                .into_iter()
                .map(|l| s.head(l))
                .find(|&h| h != NONE);
            if let Some(tree) = victim.and_then(|v| s.release(v).upgrade()) {
                due.evicted.push(tree);
            }
        }
        s.expire(now, self.grace_micros, EXPIRED_PER_BEGIN, due);
        Some(Key {
            shard: index as u32,
            slot,
            generation,
        })
    }

    /// The segment completed: it leaves.
    pub(crate) fn remove(&self, key: Key) {
        let Some(shard) = self.shard(key) else {
            return;
        };
        let mut s = shard.lock();
        if s.get(key).is_some() {
            s.release(key.slot);
        }
    }

    /// The segment ended with subsegments still open, at `now`: it waits for them for the
    /// grace period (`lingering`), or, with a grace period of 0, is about to be sent at once
    /// (`sent`). Returns whether it is still registered.
    pub(crate) fn ended_early(&self, key: Key, now: u64) -> bool {
        let Some(shard) = self.shard(key) else {
            return false;
        };
        let mut s = shard.lock();
        if s.get(key).is_none_or(|e| e.list != List::Open) {
            return false;
        }
        let list = if self.sends_at_once() {
            List::Sent
        } else {
            List::Lingering
        };
        s.move_to(key.slot, list, now);
        true
    }

    /// Hands `due` every segment whose grace period has passed.
    pub(crate) fn expired(&self, now: u64, due: &mut Due) {
        for shard in self.shards.iter() {
            shard.lock().expire(now, self.grace_micros, usize::MAX, due);
        }
    }

    /// Removes every segment and hands them to `due` to be sent as they stand: the shutdown.
    pub(crate) fn drain(&self, due: &mut Due) {
        for shard in self.shards.iter() {
            let mut s = shard.lock();
            // Oldest first within each list, those waiting for a subsegment before the open.
            for list in [List::Sent, List::Lingering, List::Open] {
                let mut slot = s.head(list);
                while let Some(e) = s.entries.get(slot as usize) {
                    let next = e.next;
                    if let Some(tree) = s.release(slot).upgrade() {
                        due.evicted.push(tree);
                    }
                    slot = next;
                }
            }
        }
    }
}
