//! Calls that reach a segment's lock from inside [`Entity::update`](super::Entity::update).
//!
//! `update` runs its closure under the segment's lock, and a `parking_lot::Mutex` taken twice
//! by one thread waits forever. A recording call made from inside the closure on any entity of
//! the same segment (`put_annotation` on the entity being updated, ending one of its
//! subsegments) would take that lock again. So while an `update` closure runs, its thread is
//! marked, and a call that finds its lock taken does not wait for it:
//!
//! - what needs no answer (annotations, metadata, errors, flags, links, ends) is kept, in the
//!   order it was made, and done once the outermost `update` of the thread has released its
//!   lock;
//! - what needs one at once (a nested `update`, a subsegment begun) is refused: counted in
//!   [`RefusedStats::nested`](super::RefusedStats::nested) and logged.
//!
//! A call that finds the lock free takes it as usual, and so does one made outside any
//! `update`: another thread holds the lock then, briefly, and it is waited for. The common path
//! is one `try_lock`, the cost of a `lock`; the thread-local is read only when the lock is
//! taken. Waiting is never done from inside an `update` closure, not even for a lock another
//! thread holds: two threads updating two segments, each recording on the other's, would wait
//! for each other forever.

use std::cell::{Cell, RefCell};

use parking_lot::{Mutex, MutexGuard};

thread_local! {
    /// How many `update` closures this thread is inside (nested ones count too).
    static UPDATING: Cell<u32> = const { Cell::new(0) };
    /// What was left for later by calls made inside them, oldest first.
    static DEFERRED: RefCell<Vec<Box<dyn FnOnce()>>> = const { RefCell::new(Vec::new()) };
}

/// Whether this thread is inside an `update` closure.
fn inside_update() -> bool {
    UPDATING.try_with(|n| n.get() > 0).unwrap_or(false)
}

/// Takes `mutex`, unless that would wait from inside an `update` closure: `None` then.
#[inline]
pub(super) fn lock<T>(mutex: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    if let Some(guard) = mutex.try_lock() {
        return Some(guard);
    }
    if inside_update() {
        return None;
    }
    Some(mutex.lock())
}

/// Leaves `call` to run once the outermost `update` of this thread has released its lock.
/// Returns false if it cannot (the thread is being torn down): `call` is dropped, not run.
#[cold]
pub(super) fn defer(call: Box<dyn FnOnce()>) -> bool {
    DEFERRED
        .try_with(|d| match d.try_borrow_mut() {
            Ok(mut d) => {
                d.push(call);
                true
            }
            Err(_) => false,
        })
        .unwrap_or(false)
}

/// The lock of one `update`, held while its closure runs. Dropping it (after the closure, or
/// while a panic in it unwinds) releases the lock, then, for the outermost one, runs what was
/// deferred meanwhile.
pub(super) struct Updating<'a, T> {
    guard: Option<MutexGuard<'a, T>>,
}

impl<'a, T> Updating<'a, T> {
    /// Marks this thread as inside an `update` closure. `None` if the mark cannot be made (the
    /// thread is being torn down): the caller must not run the closure then, since nothing
    /// could tell a call from inside it that the lock is held.
    pub(super) fn enter(guard: MutexGuard<'a, T>) -> Option<Self> {
        UPDATING.try_with(|n| n.set(n.get() + 1)).ok()?;
        Some(Self { guard: Some(guard) })
    }

    /// What the lock protects.
    pub(super) fn state(&mut self) -> Option<&mut T> {
        self.guard.as_deref_mut()
    }
}

impl<T> Drop for Updating<'_, T> {
    fn drop(&mut self) {
        // First the lock: what was deferred may need it.
        drop(self.guard.take());
        let outermost = UPDATING
            .try_with(|n| {
                let left = n.get().saturating_sub(1);
                n.set(left);
                left == 0
            })
            .unwrap_or(true);
        if outermost {
            run_deferred();
        }
    }
}

/// Runs what calls made inside `update` closures left for later. No lock is held here, and
/// none of it is user code, so none of it defers anything again; the loop is only a guard.
fn run_deferred() {
    loop {
        let calls = DEFERRED
            .try_with(|d| d.try_borrow_mut().map(|mut d| std::mem::take(&mut *d)))
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        if calls.is_empty() {
            return;
        }
        for call in calls {
            call();
        }
    }
}
