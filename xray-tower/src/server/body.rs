use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use xray_sdk::Segment;
use xray_sdk::document::HttpResponse;

use crate::record::{record_error, record_panic};

pin_project_lite::pin_project! {
    /// The response body of [`XRay`](super::XRay): the inner body, holding the request's
    /// segment until the last frame has been read, the body fails, or the body is dropped
    /// (the server dropped it after sending it, or the client went away).
    ///
    /// Frames are polled with the segment current, so work a streaming body does is recorded
    /// under it. When the response head stated no length, the bytes sent are recorded as
    /// `content_length` once the body completes.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        segment: Option<Segment>,
        sent: u64,
        length_known: bool,
    }
}

impl<B> ResponseBody<B> {
    pub(super) fn new(inner: B, segment: Option<Segment>, length_known: bool) -> Self {
        Self {
            inner,
            segment,
            sent: 0,
            length_known,
        }
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("segment", &self.segment)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Error: fmt::Display,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let Some(segment) = this.segment.as_ref() else {
            return this.inner.poll_frame(cx);
        };
        let polled = {
            let _guard = segment.enter();
            let inner = this.inner.as_mut();
            catch_unwind(AssertUnwindSafe(|| inner.poll_frame(cx)))
        };
        match polled {
            Ok(Poll::Ready(Some(Ok(frame)))) => {
                if let Some(data) = frame.data_ref() {
                    *this.sent = this.sent.saturating_add(data.remaining() as u64);
                }
                // hyper drops a body that reports its end instead of polling it once more, so
                // the last frame is where the length is known.
                if this.inner.is_end_stream() {
                    complete(this.segment.take(), *this.sent, *this.length_known);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Ok(Poll::Ready(None)) => {
                complete(this.segment.take(), *this.sent, *this.length_known);
                Poll::Ready(None)
            }
            Ok(Poll::Ready(Some(Err(error)))) => {
                if let Some(segment) = this.segment.take() {
                    record_error(&segment, &error);
                    segment.end();
                }
                Poll::Ready(Some(Err(error)))
            }
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => {
                if let Some(segment) = this.segment.take() {
                    record_panic(&segment, &*payload);
                    segment.end();
                }
                resume_unwind(payload)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Ends the segment of a body sent in full, recording the bytes sent when the head gave no
/// length.
fn complete(segment: Option<Segment>, sent: u64, length_known: bool) {
    let Some(segment) = segment else { return };
    if !length_known && segment.is_recording() {
        let sent = i64::try_from(sent).ok();
        segment.update(|doc| {
            doc.http_mut()
                .response
                .get_or_insert_with(HttpResponse::default)
                .content_length = sent;
        });
    }
    segment.end();
}
