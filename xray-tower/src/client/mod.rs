//! Outgoing requests: a `remote` subsegment per call and the trace header for the callee.

mod future;
mod layer;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::task::{Context, Poll};

use http::{Request, Response, Uri};
use tower::Service;
use xray_core::{HttpRequest, Namespace, Recorder, Subsegment};

pub use future::ResponseFuture;
pub use layer::XRayClientLayer;

use crate::record::{X_AMZN_TRACE_ID, capped, header_value};

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
        let recorder = self.recorder();
        if !recorder.is_enabled() || is_daemon(recorder, req.uri()) {
            return None;
        }
        let host = req
            .uri()
            .host()
            .or_else(|| {
                req.headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .unwrap_or("unknown host");
        let Some(parent) = xray_core::current() else {
            // Applies the context-missing strategy (log, ignore); the request goes out as it
            // came, without a header, so the callee decides for itself.
            drop(recorder.begin_subsegment(host));
            return None;
        };
        let subsegment = parent.begin_subsegment(host);
        if subsegment.is_recording() {
            let mut request = HttpRequest::default();
            request.method = Some(req.method().as_str().to_owned());
            request.set_url(&capped(&without_userinfo(req.uri())));
            let traced = self.traced;
            subsegment.update(|doc| {
                doc.set_namespace(Namespace::Remote);
                doc.set_traced(traced);
                doc.http_mut().request = Some(request);
            });
        }
        // Root, Parent = this subsegment, Sampled=1|0: the unsampled decision is propagated
        // too, so the callee does not start recording a trace nobody records upstream.
        let mut text = String::with_capacity(80);
        subsegment.trace_header().write_to(&mut text);
        if let Some(value) = header_value(text) {
            // `insert` replaces: a header already on the request names another parent.
            req.headers_mut().insert(X_AMZN_TRACE_ID, value);
        }
        Some(subsegment)
    }
}

/// The URL as recorded: no user information (it can hold a password); the query string is cut
/// by [`HttpRequest::set_url`].
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

/// Whether `uri` points at the daemon (its UDP or TCP address), which the SDK itself calls
/// for sampling rules: tracing those calls would trace the tracer.
fn is_daemon(recorder: &Recorder, uri: &Uri) -> bool {
    let Some(host) = uri.host() else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        match host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => return false,
        }
    };
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    let daemon = recorder.daemon_address();
    [daemon.udp(), daemon.tcp()]
        .iter()
        .any(|a| a.port() == port && (a.ip() == ip || (a.ip().is_loopback() && ip.is_loopback())))
}
