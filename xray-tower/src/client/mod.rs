//! Outgoing requests: a `remote` subsegment per call and the trace header for the callee.

mod future;
mod layer;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use tower::Service;
use xray_core::{HttpRequest, HttpResponse, Namespace, Recorder, Subsegment};

pub use future::ResponseFuture;
pub use layer::XRayClientLayer;

use crate::record::{X_AMZN_TRACE_ID, capped, header_value, record_error};

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
        let call = Call {
            method: req.method().as_str(),
            host,
            port: uri.port_u16().or(match uri.scheme_str() {
                Some("https") => Some(443),
                Some("http") => Some(80),
                _ => None,
            }),
            url: &|| without_userinfo(uri),
        };
        let (subsegment, header) = begin_call(self.recorder(), self.traced, &call)?;
        set_header(req.headers_mut(), header);
        Some(subsegment)
    }
}

/// What a traced call records of an outgoing request, whatever the client.
pub(crate) struct Call<'a> {
    pub(crate) method: &'a str,
    /// The host, as the URL (or the `Host` header) names it.
    pub(crate) host: Option<&'a str>,
    /// The port the request goes to, the scheme's default if the URL has none.
    pub(crate) port: Option<u16>,
    /// The URL as recorded: without user information or query string. Made only for a call
    /// that is recorded.
    pub(crate) url: &'a dyn Fn() -> String,
}

/// Begins the subsegment of an outgoing call; returns it with the trace header to send. `None`
/// when the call is not traced (SDK disabled, a call to the daemon, no current context).
pub(crate) fn begin_call(
    recorder: &Recorder,
    traced: bool,
    call: &Call<'_>,
) -> Option<(Subsegment, Option<HeaderValue>)> {
    if !recorder.is_enabled() || is_daemon(recorder, call.host, call.port) {
        return None;
    }
    let host = call.host.unwrap_or("unknown host");
    let Some(parent) = xray_core::current() else {
        // Applies the context-missing strategy (log, ignore); the request goes out as it
        // came, without a header, so the callee decides for itself.
        drop(recorder.begin_subsegment(host));
        return None;
    };
    let subsegment = parent.begin_subsegment(host);
    if subsegment.is_recording() {
        let mut request = HttpRequest::default();
        request.method = Some(call.method.to_owned());
        request.set_url(&capped(&(call.url)()));
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
    Some((subsegment, header_value(text)))
}

/// Sets the trace header [`begin_call`] made.
pub(crate) fn set_header(headers: &mut HeaderMap, value: Option<HeaderValue>) {
    if let Some(value) = value {
        // `insert` replaces: a header already on the request names another parent.
        headers.insert(X_AMZN_TRACE_ID, value);
    }
}

/// Ends a call's subsegment with its outcome: the response's status and `Content-Length`, or
/// the transport error as the cause (a fault).
pub(crate) fn end_call<E: fmt::Display>(
    subsegment: Subsegment,
    outcome: Result<(u16, &HeaderMap), &E>,
) {
    match outcome {
        Ok((status, headers)) => {
            let length = headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok());
            subsegment.update(|doc| {
                doc.set_http_status(status);
                if length.is_some() {
                    doc.http_mut()
                        .response
                        .get_or_insert_with(HttpResponse::default)
                        .content_length = length;
                }
            });
        }
        Err(error) => record_error(&subsegment, error),
    }
    subsegment.end();
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

/// Whether a call to `host:port` goes to the daemon (its UDP or TCP address), which the SDK
/// itself calls for sampling rules: tracing those calls would trace the tracer.
fn is_daemon(recorder: &Recorder, host: Option<&str>, port: Option<u16>) -> bool {
    let (Some(host), Some(port)) = (host, port) else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        match host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => return false,
        }
    };
    let daemon = recorder.daemon_address();
    [daemon.udp(), daemon.tcp()]
        .iter()
        .any(|a| a.port() == port && (a.ip() == ip || (a.ip().is_loopback() && ip.is_loopback())))
}
