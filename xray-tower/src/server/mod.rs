//! Incoming requests: a segment per request.

mod body;
mod future;
mod layer;

use std::fmt;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::task::{Context, Poll};

use http::header::{CONTENT_LENGTH, HOST, USER_AGENT};
use http::{HeaderMap, HeaderName, Request, Response};
use tower::Service;
use xray_sdk::document::HttpRequest;
use xray_sdk::sampling::SamplingRequest;
use xray_sdk::{Recorder, Segment, TraceHeader};

pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use layer::XRayLayer;

use crate::naming::SegmentNaming;
use crate::record::{X_AMZN_TRACE_ID, capped, record_panic};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The service [`XRayLayer`] makes: records a segment for every request to `S`.
///
/// The error type is `S`'s: tracing never turns into an error for the caller.
#[derive(Debug, Clone)]
pub struct XRay<S> {
    inner: S,
    naming: SegmentNaming,
    recorder: Option<Recorder>,
}

impl<S> XRay<S> {
    /// Wraps `inner`, naming segments with `naming`, with the global recorder.
    pub fn new(inner: S, naming: impl Into<SegmentNaming>) -> Self {
        Self {
            inner,
            naming: naming.into(),
            recorder: None,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn recorder(&self) -> &Recorder {
        self.recorder.as_ref().unwrap_or_else(|| Recorder::global())
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for XRay<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: fmt::Display,
    ResBody: http_body::Body,
    ResBody::Error: fmt::Display,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let recorder = self.recorder();
        if !recorder.is_enabled() {
            return ResponseFuture::new(self.inner.call(req), None);
        }
        let segment = begin(recorder, &self.naming, &req);
        // The service may do work before returning its future (axum routes here): that work
        // belongs to the segment too.
        let called = {
            let _guard = segment.enter();
            catch_unwind(AssertUnwindSafe(|| self.inner.call(req)))
        };
        match called {
            Ok(fut) => ResponseFuture::new(fut, Some(segment)),
            Err(payload) => {
                record_panic(&segment, &*payload);
                segment.end();
                resume_unwind(payload)
            }
        }
    }
}

/// Begins the request's segment and, when it records, its `http.request`.
fn begin<B>(recorder: &Recorder, naming: &SegmentNaming, req: &Request<B>) -> Segment {
    let headers = req.headers();
    let upstream = upstream_header(headers);
    let host = header_str(headers, &HOST).or_else(|| req.uri().authority().map(|a| a.as_str()));
    let method = req.method().as_str();
    let path = req.uri().path();
    let mut sampling = SamplingRequest::new()
        .with_method(method)
        .with_url_path(path);
    if let Some(host) = host {
        sampling = sampling.with_host(host);
    }
    let segment = recorder.begin_segment_with(naming.name_for(host), upstream.as_ref(), &sampling);
    if segment.is_recording() {
        let request = http_request(req, host);
        segment.update(|doc| doc.http_mut().request = Some(request));
    }
    segment
}

/// The caller's trace header; a malformed one starts a new trace.
fn upstream_header(headers: &HeaderMap) -> Option<TraceHeader> {
    let value = headers.get(X_AMZN_TRACE_ID)?;
    let Ok(text) = value.to_str() else {
        tracing::debug!(
            target: "xray_tower",
            "X-Amzn-Trace-Id is not visible ASCII; starting a new trace"
        );
        return None;
    };
    match TraceHeader::parse(text) {
        Ok(header) => Some(header),
        Err(error) => {
            tracing::debug!(
                target: "xray_tower",
                %error,
                "malformed X-Amzn-Trace-Id; starting a new trace"
            );
            None
        }
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn http_request<B>(req: &Request<B>, host: Option<&str>) -> HttpRequest {
    let headers = req.headers();
    let mut out = HttpRequest::default();
    out.method = Some(req.method().as_str().to_owned());
    let path = req.uri().path();
    match host {
        Some(host) => {
            let scheme = req.uri().scheme_str().unwrap_or("http");
            out.set_url(&capped(&format!("{scheme}://{host}{path}")));
        }
        None => out.set_url(&capped(path)),
    }
    out.user_agent = header_str(headers, &USER_AGENT).map(capped);
    // The first hop of X-Forwarded-For is the original client as the first proxy saw it; the
    // client can forge it, which `x_forwarded_for: true` tells the reader.
    let forwarded = header_str(headers, &X_FORWARDED_FOR)
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    match forwarded {
        Some(ip) => {
            out.client_ip = Some(capped(ip));
            out.x_forwarded_for = true;
        }
        None => out.client_ip = peer_addr(req).map(|a| a.ip().to_string()),
    }
    out
}

/// The peer address, where the server put it in the request's extensions: axum's
/// `ConnectInfo<SocketAddr>` (feature `axum`), or a bare `SocketAddr` (what a hyper server
/// loop can insert per connection).
fn peer_addr<B>(req: &Request<B>) -> Option<SocketAddr> {
    let ext = req.extensions();
    #[cfg(feature = "axum")]
    if let Some(info) = ext.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0);
    }
    ext.get::<SocketAddr>().copied()
}

/// The response's `Content-Length`, if it states one.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, &CONTENT_LENGTH)?.trim().parse().ok()
}
