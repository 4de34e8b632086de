//! Outgoing requests: a `remote` subsegment per call and the trace header for the callee.

mod future;
mod layer;

use std::fmt;
use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response, Uri};
use tower::Service;
use xray_sdk::outgoing::{self, OutgoingCall};
use xray_sdk::{Recorder, Subsegment};

pub use future::ResponseFuture;
pub use layer::XRayClientLayer;

use crate::record::{X_AMZN_TRACE_ID, header_value};

/// The service [`XRayClientLayer`] makes: traces every request sent through `S`.
///
/// The error type is `S`'s: tracing never turns into an error for the caller.
#[derive(Debug, Clone)]
pub struct XRayClient<S> {
    inner: S,
    recorder: Option<Recorder>,
    traced: bool,
}

impl<S> XRayClient<S> {
    /// Wraps `inner`, with the global recorder.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            recorder: None,
            traced: false,
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for XRayClient<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let subsegment = self.begin(&mut req);
        ResponseFuture::new(self.inner.call(req), subsegment)
    }
}

impl<S> XRayClient<S> {
    /// Begins the call's subsegment and sets the request's trace header; `None` when the call
    /// is not traced (SDK disabled, a call to the daemon, no current context).
    fn begin<B>(&self, req: &mut Request<B>) -> Option<Subsegment> {
        let uri = req.uri();
        let host = uri.host().or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        let port = uri.port_u16().or(match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        });
        let url = || without_userinfo(uri);
        let call =
            OutgoingCall::new(req.method().as_str(), host, port, &url).with_traced(self.traced);
        let (subsegment, header) = outgoing::begin_call(self.recorder(), &call)?;
        set_header(req.headers_mut(), header);
        Some(subsegment)
    }
}

/// Sets the trace header [`outgoing::begin_call`] made.
fn set_header(headers: &mut HeaderMap, text: String) {
    if let Some(value) = header_value(text) {
        // `insert` replaces: a header already on the request names another parent.
        headers.insert(X_AMZN_TRACE_ID, value);
    }
}

/// Ends a call's subsegment with its outcome: the response's status and `Content-Length`, or
/// the transport error as the cause (a fault).
fn end_call<E: fmt::Display>(subsegment: Subsegment, outcome: Result<(u16, &HeaderMap), &E>) {
    let outcome = outcome.map(|(status, headers)| {
        let length = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok());
        (status, length)
    });
    outgoing::end_call(subsegment, outcome);
}

/// The URL as recorded: no user information (it can hold a password); the query string is cut
/// by [`outgoing::begin_call`].
fn without_userinfo(uri: &Uri) -> String {
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => {
            let host_port = authority
                .as_str()
                .rsplit_once('@')
                .map_or(authority.as_str(), |(_, h)| h);
            format!("{scheme}://{host_port}{}", uri.path())
        }
        _ => uri.path().to_owned(),
    }
}
