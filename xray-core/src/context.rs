//! The current context: which segment or subsegment new work belongs to.
//!
//! Sync code enters an entity with [`Entity::enter`]; the returned guard makes it current on
//! this thread until dropped. Async code wraps a future with [`FutureExt::with_context`] (or
//! [`Subsegment::instrument`]): the entity is entered around every `poll`, so the context
//! survives `.await`, work-stealing runtimes and `spawn`, whichever thread polls.
//!
//! The context is a stack per thread, its newest entry current. Each [`ContextGuard`] removes
//! its own entry when dropped, in whatever order guards are dropped, so what is current
//! afterwards is the newest entity still entered. When a poll of a [`WithContext`] returns, the
//! entries made during that poll and still there are removed too: a guard held across an
//! `.await` stops applying at the `.await`, instead of staying current while other futures run
//! on the thread (the branches of a `tokio::join!`, other tasks) and taking their subsegments
//! into its trace.

use std::cell::RefCell;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::clock::{Clock, SystemClock};
use crate::diag::LogLimiter;
use crate::recorder::{Entity, Segment, Subsegment};

/// The entities entered on one thread, oldest first: the last one is current.
struct Stack {
    /// Each entry with its token. Tokens only grow, so the entries stay sorted by token
    /// whatever is removed from the middle.
    entries: Vec<(u64, Entity)>,
    /// The token of the next entry.
    next: u64,
}

impl Stack {
    fn push(&mut self, entity: Entity) -> u64 {
        let token = self.next;
        self.next = self.next.wrapping_add(1);
        self.entries.push((token, entity));
        token
    }
}

thread_local! {
    static STACK: RefCell<Stack> = const {
        RefCell::new(Stack {
            entries: Vec::new(),
            next: 0,
        })
    };
}

/// A guard held across an `.await` was found when a poll returned: one line a minute.
static HELD_ACROSS_AWAIT_LOG: LogLimiter = LogLimiter::new(60);

/// The entity current on this thread, if any.
///
/// # Examples
///
/// ```
/// use xray_sdk::{current, Recorder, InMemoryEmitter};
///
/// let recorder = Recorder::builder().with_emitter(InMemoryEmitter::new()).build()?;
/// assert!(current().is_none());
/// let segment = recorder.begin_segment("checkout");
/// {
///     let _guard = segment.enter();
///     assert_eq!(current().unwrap().id(), segment.id());
/// }
/// assert!(current().is_none());
/// # Ok::<(), xray_sdk::ConfigError>(())
/// ```
pub fn current() -> Option<Entity> {
    STACK
        .try_with(|s| {
            s.try_borrow()
                .ok()
                .and_then(|s| s.entries.last().map(|(_, e)| e.clone()))
        })
        .ok()
        .flatten()
}

/// The segment of the current entity ([`Entity::segment`]): where a request's annotations,
/// user and flags go, from anywhere in the code that serves it. `None` outside any segment.
///
/// ```
/// use xray_sdk::{InMemoryEmitter, Recorder, current_segment};
///
/// let recorder = Recorder::builder().with_emitter(InMemoryEmitter::new()).build()?;
/// assert!(current_segment().is_none());
/// let segment = recorder.begin_segment("checkout");
/// let sub = segment.begin_subsegment("pricing");
/// let _current = sub.enter();
/// assert_eq!(current_segment().unwrap().id(), segment.id());
/// # Ok::<(), xray_sdk::ConfigError>(())
/// ```
pub fn current_segment() -> Option<Entity> {
    current().map(|entity| entity.segment())
}

/// Whether the entity current on this thread is recording (`None`: nothing is current),
/// without cloning it: the `#[capture]` fast path for unsampled requests.
pub(crate) fn current_is_recording() -> Option<bool> {
    STACK
        .try_with(|s| {
            s.try_borrow()
                .ok()
                .and_then(|s| s.entries.last().map(|(_, e)| e.is_recording()))
        })
        .ok()
        .flatten()
}

/// Makes an entity current on this thread until dropped: see [`Entity::enter`].
///
/// Dropping it removes the entry it made, and only that one, whatever the order guards are
/// dropped in: after `let a = x.enter(); let b = y.enter(); drop(a);`, `y` is current, and
/// after `drop(b)` nothing is.
///
/// # Not across `.await`
///
/// The context belongs to the thread, not to the future: a guard held across an `.await`
/// would leave its entity current while the future waits, for whatever else runs on the
/// thread meanwhile (the other branches of a `tokio::join!` or `select!`, other tasks), and
/// their subsegments would join its trace. In async code, wrap the future instead:
/// [`FutureExt::with_context`], [`FutureExt::in_current_context`], [`Segment::instrument`] or
/// [`Subsegment::instrument`] make the entity current around each poll only.
///
/// The guard is neither `Send` nor `Sync`, so a future that holds one across an `.await` cannot
/// be handed to a multi-threaded `tokio::spawn`:
///
/// ```compile_fail,E0277
/// # use xray_sdk::Recorder;
/// fn spawn<F: std::future::Future + Send>(_: F) {}
///
/// let segment = Recorder::disabled().begin_segment("job");
/// spawn(async move {
///     let _guard = segment.enter();
///     std::future::ready(()).await; // the guard is held across this `.await`: not `Send`
/// });
/// ```
///
/// A future that is never sent can still hold one (one given to `block_on`, or a branch of a
/// `join!`), and no type can forbid that. Inside a [`WithContext`] (what the wrappers above
/// build, and what `#[capture]` and the tower layers poll through) such a guard stops applying
/// when the poll returns, and a warning is logged (once a minute, target `xray_sdk::context`);
/// outside one, nothing can see the `.await`. Clippy can flag the pattern everywhere: with
/// `await-holding-invalid-types = [{ path = "xray_sdk::context::ContextGuard", reason = "use
/// FutureExt::with_context" }]` in `clippy.toml`, `clippy::await_holding_invalid_type` reports
/// each guard held across an `.await`.
#[must_use = "the entity is current only while the guard lives"]
#[derive(Debug)]
pub struct ContextGuard {
    /// The token of the entry this guard made; `None` if it made none (the thread's context
    /// was being torn down).
    token: Option<u64>,
    _not_send: PhantomData<*const ()>,
}

pub(crate) fn enter(entity: Entity) -> ContextGuard {
    let token = STACK
        .try_with(|s| s.try_borrow_mut().ok().map(|mut s| s.push(entity)))
        .ok()
        .flatten();
    ContextGuard {
        token,
        _not_send: PhantomData,
    }
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        let Some(token) = self.token else {
            return;
        };
        let mut out_of_order = false;
        // The entry leaves the borrow before it drops, and the log line is written after: a
        // subscriber may read the context.
        let removed = STACK
            .try_with(|s| {
                let mut s = s.try_borrow_mut().ok()?;
                if s.entries.last().is_some_and(|(t, _)| *t == token) {
                    return s.entries.pop();
                }
                // Not on top: dropped before a guard made after it. Its entry is removed where
                // it is; the newest entry left stays current. Not found: a poll boundary took it
                // (see `PollScope`).
                let at = s.entries.iter().rposition(|(t, _)| *t == token)?;
                out_of_order = true;
                Some(s.entries.remove(at))
            })
            .ok()
            .flatten();
        drop(removed);
        if out_of_order {
            tracing::debug!(
                target: "xray_sdk::context",
                "a context guard was dropped before one entered after it; the context is \
                 restored to the newest entity still entered"
            );
        }
    }
}

/// One poll of a [`WithContext`]: enters its entity, and on drop removes every entry made since
/// it began, its own included.
struct PollScope {
    /// The token of the first entry that belongs to this poll; `None` if the context could not
    /// be reached.
    first: Option<u64>,
    /// Whether the first entry is the future's own entity.
    pushed: bool,
}

impl PollScope {
    fn enter(entity: Option<&Entity>) -> Self {
        let first = STACK
            .try_with(|s| {
                let mut s = s.try_borrow_mut().ok()?;
                let first = s.next;
                if let Some(entity) = entity {
                    s.push(entity.clone());
                }
                Some(first)
            })
            .ok()
            .flatten();
        Self {
            first,
            pushed: entity.is_some(),
        }
    }
}

impl Drop for PollScope {
    fn drop(&mut self) {
        let Some(first) = self.first else {
            return;
        };
        let pushed = self.pushed;
        let mut own = None;
        let mut held = Vec::new();
        let _ = STACK.try_with(|s| {
            let Ok(mut s) = s.try_borrow_mut() else {
                return;
            };
            // Everything from `first` on was entered during this poll.
            let from = s.entries.partition_point(|(t, _)| *t < first);
            let only_own = pushed
                && s.entries.len() == from + 1
                && s.entries.last().is_some_and(|(t, _)| *t == first);
            if only_own {
                // The usual case: one pop, nothing allocated.
                own = s.entries.pop();
            } else if s.entries.len() > from {
                held.extend(s.entries.drain(from..));
            }
        });
        // Entries other than the future's own were made by guards still alive as the poll
        // returns: held across an `.await`.
        let held_across_await = held.iter().any(|(t, _)| !(pushed && *t == first));
        drop(own);
        drop(held);
        if held_across_await && HELD_ACROSS_AWAIT_LOG.allow(SystemClock.now_micros()) {
            tracing::warn!(
                target: "xray_sdk::context",
                "an X-Ray context guard (`Entity::enter`) was held across an `.await`; it stopped \
                 applying there. Wrap the future with `FutureExt::with_context` or \
                 `Subsegment::instrument` instead"
            );
        }
    }
}

pin_project_lite::pin_project! {
    /// A future that makes an entity current on every poll. Built by
    /// [`FutureExt::with_context`], [`FutureExt::in_current_context`],
    /// [`Segment::instrument`] and [`Subsegment::instrument`].
    ///
    /// When it owns a [`Segment`] or [`Subsegment`], that entity ends when the future completes,
    /// or when it is dropped before completing (a cancelled request, a timed-out task). A panic
    /// in a poll is recorded on the entity it owns (a fault, with the panic's message as the
    /// cause), which then ends, and the panic goes on unwinding from here: nothing is caught
    /// for good, so an executor that catches panics still sees it.
    ///
    /// When a poll returns, whatever was entered during it and is still entered (a
    /// [`ContextGuard`] held across an `.await`) stops being current, and a warning is logged.
    #[derive(Debug)]
    pub struct WithContext<F> {
        #[pin]
        inner: F,
        entity: Option<Entity>,
        owned: Option<Owned>,
    }
}

#[derive(Debug)]
enum Owned {
    Segment(Segment),
    Subsegment(Subsegment),
}

impl Owned {
    fn entity(&self) -> &Entity {
        match self {
            Owned::Segment(s) => s.entity(),
            Owned::Subsegment(s) => s.entity(),
        }
    }

    fn end(self) {
        match self {
            Owned::Segment(s) => s.end(),
            Owned::Subsegment(s) => s.end(),
        }
    }
}

impl<F> WithContext<F> {
    pub(crate) fn owning(inner: F, subsegment: Subsegment) -> Self {
        Self {
            inner,
            entity: Some(subsegment.entity().clone()),
            owned: Some(Owned::Subsegment(subsegment)),
        }
    }

    pub(crate) fn owning_segment(inner: F, segment: Segment) -> Self {
        Self {
            inner,
            entity: Some(segment.entity().clone()),
            owned: Some(Owned::Segment(segment)),
        }
    }

    /// The entity this future makes current.
    pub fn entity(&self) -> Option<&Entity> {
        self.entity.as_ref()
    }
}

impl<F: Future> Future for WithContext<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let polled = {
            let _scope = PollScope::enter(this.entity.as_ref());
            let inner = this.inner;
            // Costs nothing unless a panic unwinds through here. `AssertUnwindSafe`: nothing
            // here looks at the future after a panic, which is resumed at once.
            catch_unwind(AssertUnwindSafe(|| inner.poll(cx)))
        };
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => {
                if let Some(owned) = this.owned.take() {
                    owned.end();
                }
                Poll::Ready(out)
            }
            Err(payload) => {
                if let Some(owned) = this.owned.take() {
                    owned.entity().record_panic(&*payload);
                    owned.end();
                }
                resume_unwind(payload)
            }
        }
    }
}

/// Carries the X-Ray context into futures.
///
/// This is how async code should make an entity current, rather than holding the guard of
/// [`Entity::enter`] across an `.await` (see [`ContextGuard`]): the entity is entered around
/// each poll only, so the context follows the future, and never leaks to what else the thread
/// runs while the future waits.
///
/// # Examples
///
/// ```
/// use xray_sdk::{current, FutureExt, InMemoryEmitter, Recorder};
///
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     let mut f = std::pin::pin!(f);
/// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
/// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
/// # }
/// let recorder = Recorder::builder().with_emitter(InMemoryEmitter::new()).build()?;
/// let segment = recorder.begin_segment("worker");
/// let id = segment.id();
/// let seen = block_on(async { current().map(|e| e.id()) }.with_context(segment.entity().clone()));
/// assert_eq!(seen, Some(id));
/// # Ok::<(), xray_sdk::ConfigError>(())
/// ```
pub trait FutureExt: Future + Sized {
    /// Makes `entity` current whenever this future is polled.
    fn with_context(self, entity: Entity) -> WithContext<Self> {
        WithContext {
            inner: self,
            entity: Some(entity),
            owned: None,
        }
    }

    /// Captures the entity current now (if any) and makes it current whenever this future is
    /// polled: use it before handing a future to `spawn`.
    fn in_current_context(self) -> WithContext<Self> {
        WithContext {
            inner: self,
            entity: current(),
            owned: None,
        }
    }
}

impl<F: Future> FutureExt for F {}
