use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use xray_sdk::Segment;
use xray_sdk::document::HttpResponse;

use super::body::ResponseBody;
use crate::record::{X_AMZN_TRACE_ID, header_value, record_error, record_panic};

pin_project_lite::pin_project! {
    /// The response future of [`XRay`](super::XRay).
    ///
    /// Polls the inner future with the segment current. When the response arrives it records
    /// the status and hands the segment to the [`ResponseBody`]; when the inner service fails
    /// or panics, the segment ends as a fault with the cause (the panic then continues); when
    /// this future is dropped first (the client went away), the segment ends with it.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        segment: Option<Segment>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, segment: Option<Segment>) -> Self {
        Self { inner, segment }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("segment", &self.segment)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: fmt::Display,
    B: http_body::Body,
    B::Error: fmt::Display,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let polled = {
            let _guard = this.segment.as_ref().map(|s| s.enter());
            let inner = this.inner;
            // Costs nothing unless a panic unwinds through here.
            catch_unwind(AssertUnwindSafe(|| inner.poll(cx)))
        };
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(Ok(mut response))) => {
                let segment = this.segment.take();
                let mut length_known = false;
                if let Some(segment) = &segment {
                    length_known = on_response(segment, &mut response);
                }
                Poll::Ready(Ok(
                    response.map(|body| ResponseBody::new(body, segment, length_known))
                ))
            }
            Ok(Poll::Ready(Err(error))) => {
                if let Some(segment) = this.segment.take() {
                    record_error(&segment, &error);
                    segment.end();
                }
                Poll::Ready(Err(error))
            }
            Err(payload) => {
                if let Some(segment) = this.segment.take() {
                    record_panic(&segment, &*payload);
                    segment.end();
                }
                resume_unwind(payload)
            }
        }
    }
}

/// Records the status and length, and sets the response's trace header. Returns whether the
/// body length was known from the head.
fn on_response<B: http_body::Body>(segment: &Segment, response: &mut Response<B>) -> bool {
    let status = response.status().as_u16();
    let length =
        super::content_length(response.headers()).or_else(|| response.body().size_hint().exact());
    if segment.is_recording() {
        segment.update(|doc| {
            doc.set_http_status(status);
            if let Some(length) = length {
                let http = doc.http_mut();
                http.response
                    .get_or_insert_with(HttpResponse::default)
                    .content_length = i64::try_from(length).ok();
            }
        });
    }
    // Built from the segment's own ids, never from the request's header text.
    let mut text = String::with_capacity(64);
    segment.response_header().write_to(&mut text);
    if let Some(value) = header_value(text) {
        response.headers_mut().insert(X_AMZN_TRACE_ID, value);
    }
    length.is_some()
}
