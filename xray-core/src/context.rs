//! The current context: which segment or subsegment new work belongs to.
//!
//! Sync code enters an entity with [`Entity::enter`]; the returned guard makes it current on
//! this thread until dropped. Async code wraps a future with [`FutureExt::with_context`] (or
//! [`Subsegment::instrument`]): the entity is entered around every `poll`, so the context
//! survives `.await`, work-stealing runtimes and `spawn`, whichever thread polls.

use std::cell::RefCell;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::recorder::{Entity, Segment, Subsegment};

thread_local! {
    // The stack of entered entities; its top is the current context.
    static STACK: RefCell<Vec<Entity>> = const { RefCell::new(Vec::new()) };
}

/// The entity current on this thread, if any.
///
/// # Examples
///
/// ```
/// use xray_core::{current, Recorder, InMemoryEmitter};
///
/// let recorder = Recorder::builder().with_emitter(InMemoryEmitter::new()).build()?;
/// assert!(current().is_none());
/// let segment = recorder.begin_segment("checkout");
/// {
///     let _guard = segment.enter();
///     assert_eq!(current().unwrap().id(), segment.id());
/// }
/// assert!(current().is_none());
/// # Ok::<(), xray_core::ConfigError>(())
/// ```
pub fn current() -> Option<Entity> {
    STACK
        .try_with(|s| s.try_borrow().ok().and_then(|s| s.last().cloned()))
        .ok()
        .flatten()
}

/// Whether the entity current on this thread is recording (`None`: nothing is current),
/// without cloning it: the `#[capture]` fast path for unsampled requests.
pub(crate) fn current_is_recording() -> Option<bool> {
    STACK
        .try_with(|s| {
            s.try_borrow()
                .ok()
                .and_then(|s| s.last().map(Entity::is_recording))
        })
        .ok()
        .flatten()
}

/// Makes an entity current on this thread until dropped. Not `Send`: it must be dropped on
/// the thread that created it.
#[must_use = "the entity is current only while the guard lives"]
#[derive(Debug)]
pub struct ContextGuard {
    pushed: bool,
    _not_send: PhantomData<*const ()>,
}

pub(crate) fn enter(entity: Entity) -> ContextGuard {
    let pushed = STACK
        .try_with(|s| match s.try_borrow_mut() {
            Ok(mut s) => {
                s.push(entity);
                true
            }
            Err(_) => false,
        })
        .unwrap_or(false);
    ContextGuard {
        pushed,
        _not_send: PhantomData,
    }
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        if self.pushed {
            let _ = STACK.try_with(|s| {
                if let Ok(mut s) = s.try_borrow_mut() {
                    s.pop();
                }
            });
        }
    }
}

pin_project_lite::pin_project! {
    /// A future that makes an entity current on every poll. Built by
    /// [`FutureExt::with_context`], [`FutureExt::in_current_context`],
    /// [`Segment::instrument`] and [`Subsegment::instrument`].
    ///
    /// When it owns a [`Segment`] or [`Subsegment`], that entity ends when the future completes, or when it
    /// is dropped before completing (a cancelled request, a timed-out task).
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
        let _guard = this.entity.as_ref().map(|e| enter(e.clone()));
        let out = this.inner.poll(cx);
        if out.is_ready()
            && let Some(owned) = this.owned.take()
        {
            owned.end();
        }
        out
    }
}

/// Carries the X-Ray context into futures.
///
/// # Examples
///
/// ```
/// use xray_core::{current, FutureExt, InMemoryEmitter, Recorder};
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
/// # Ok::<(), xray_core::ConfigError>(())
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
