use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::invocation::Invocation;

pin_project_lite::pin_project! {
    /// The future of [`XRayLambda`](crate::XRayLambda): the handler's future, run with the
    /// invocation's context.
    ///
    /// Every poll enters the handler subsegment (or the facade) on the polling thread and
    /// leaves it before returning, as [`xray_sdk::FutureExt::with_context`] does, so the
    /// context follows this invocation across `.await` and threads and never leaks into
    /// another invocation polled on the same thread. When the handler's future completes, the
    /// handler subsegment and then the facade end; an `Err` is first recorded on the handler
    /// subsegment as a fault with its message. A panic while polling is recorded the same way
    /// and resumed. Dropped before completing, it ends them too.
    pub struct InvocationFuture<F> {
        #[pin]
        inner: F,
        invocation: Option<Invocation>,
    }
}

impl<F> InvocationFuture<F> {
    pub(crate) fn new(inner: F, invocation: Option<Invocation>) -> Self {
        Self { inner, invocation }
    }
}

impl<F> fmt::Debug for InvocationFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvocationFuture")
            .field("invocation", &self.invocation)
            .finish_non_exhaustive()
    }
}

impl<F, T, E> Future for InvocationFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: fmt::Display,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let polled = {
            let _current = this.invocation.as_ref().map(Invocation::enter);
            let inner = this.inner;
            // Costs nothing unless a panic unwinds through here.
            catch_unwind(AssertUnwindSafe(|| inner.poll(cx)))
        };
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(result)) => {
                if let Some(invocation) = this.invocation.take() {
                    if let Err(error) = &result {
                        invocation.record_error(error);
                    }
                    invocation.end();
                }
                Poll::Ready(result)
            }
            Err(payload) => {
                if let Some(invocation) = this.invocation.take() {
                    invocation.record_panic(&*payload);
                    invocation.end();
                }
                resume_unwind(payload)
            }
        }
    }
}
