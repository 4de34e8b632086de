use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use xray_sdk::Subsegment;

pin_project_lite::pin_project! {
    /// The response future of [`XRayClient`](super::XRayClient).
    ///
    /// The subsegment covers the call until the response head arrives: it ends then, on a
    /// transport error (recorded as the cause, with `fault`), or when this future is dropped.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        subsegment: Option<Subsegment>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, subsegment: Option<Subsegment>) -> Self {
        Self { inner, subsegment }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("subsegment", &self.subsegment)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: fmt::Display,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let Some(subsegment) = this.subsegment.take() {
            let outcome = out.as_ref().map(|r| (r.status().as_u16(), r.headers()));
            super::end_call(subsegment, outcome);
        }
        Poll::Ready(out)
    }
}
