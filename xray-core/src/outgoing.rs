//! Outgoing HTTP calls: what every client integration records, in one place.
//!
//! A client integration (a tower layer, a `reqwest` middleware, a hand-written client) needs
//! three steps: [`begin_call`] when the request leaves, which opens a `remote` subsegment under
//! the current context and gives the `X-Amzn-Trace-Id` value to send; the call itself; and
//! [`end_call`] with its outcome. The integration only translates its own request and response
//! types into [`OutgoingCall`] and a status.
//!
//! # Examples
//!
//! ```
//! use xray_sdk::outgoing::{OutgoingCall, begin_call, end_call};
//! use xray_sdk::{InMemoryEmitter, Recorder};
//!
//! let emitter = InMemoryEmitter::new();
//! let recorder = Recorder::builder().with_emitter(emitter.clone()).build()?;
//! let segment = recorder.begin_segment("checkout");
//! let _current = segment.enter();
//!
//! let call = OutgoingCall::new("GET", Some("inventory.internal"), Some(80), &|| {
//!     "http://inventory.internal/items/42".to_owned()
//! });
//! let (subsegment, header) = begin_call(&recorder, &call).expect("a current segment");
//! assert!(header.starts_with(&format!("Root={};Parent={}", segment.trace_id(), subsegment.id())));
//! // ... send the request with `X-Amzn-Trace-Id: {header}` ...
//! end_call::<std::io::Error>(subsegment, Ok((200, Some(17))));
//! drop(_current);
//! segment.end();
//!
//! let doc = &emitter.documents()[0];
//! let sub = &doc["subsegments"][0];
//! assert_eq!(sub["name"], "inventory.internal");
//! assert_eq!(sub["namespace"], "remote");
//! assert_eq!(sub["http"]["request"]["url"], "http://inventory.internal/items/42");
//! assert_eq!(sub["http"]["response"]["status"], 200);
//! assert_eq!(sub["http"]["response"]["content_length"], 17);
//! # Ok::<(), xray_sdk::ConfigError>(())
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use crate::document::{Cause, HttpRequest, HttpResponse, Namespace, capped_field};
use crate::recorder::{Entity, Recorder, Subsegment};

/// What a traced call records of an outgoing request, whatever the client.
#[derive(Clone, Copy)]
pub struct OutgoingCall<'a> {
    method: &'a str,
    host: Option<&'a str>,
    port: Option<u16>,
    url: &'a dyn Fn() -> String,
    traced: bool,
}

impl fmt::Debug for OutgoingCall<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingCall")
            .field("method", &self.method)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("traced", &self.traced)
            .finish_non_exhaustive()
    }
}

impl<'a> OutgoingCall<'a> {
    /// A call with its method, the host as the URL (or the `Host` header) names it, the port it
    /// goes to (the scheme's default when the URL has none), and the URL to record.
    ///
    /// `url` is called only for a call that is recorded. It should give the URL without user
    /// information (which can hold a password); the query string and fragment are cut here, and
    /// the rest is capped at [`MAX_FIELD_CHARS`](crate::document::MAX_FIELD_CHARS) characters.
    pub fn new(
        method: &'a str,
        host: Option<&'a str>,
        port: Option<u16>,
        url: &'a dyn Fn() -> String,
    ) -> Self {
        Self {
            method,
            host,
            port,
            url,
            traced: false,
        }
    }

    /// Declares the callee instrumented with X-Ray (`traced: true`), so that the service map
    /// joins its segment to this call.
    pub fn with_traced(mut self, traced: bool) -> Self {
        self.traced = traced;
        self
    }
}

/// Begins the subsegment of an outgoing call under the current context, and returns it with
/// the `X-Amzn-Trace-Id` value to send: `Root`, `Parent` = this subsegment, `Sampled=1|0`,
/// then the incoming header's extra fields ([`Entity::trace_header`]). An unsampled decision
/// is propagated too, so that the callee does not record a trace nobody records upstream.
///
/// `None` when the call is not traced: the SDK is disabled, the call goes to the daemon (the
/// SDK's own sampling calls), or there is no current context, in which case the recorder's
/// context-missing strategy applies and the request should go out as it came, without a header,
/// so that the callee decides for itself.
pub fn begin_call(recorder: &Recorder, call: &OutgoingCall<'_>) -> Option<(Subsegment, String)> {
    if !recorder.is_enabled() || is_daemon(recorder, call.host, call.port) {
        return None;
    }
    let host = call.host.unwrap_or("unknown host");
    let Some(parent) = crate::current() else {
        drop(recorder.begin_subsegment(host));
        return None;
    };
    let subsegment = parent.begin_subsegment(host);
    if subsegment.is_recording() {
        let mut request = HttpRequest {
            method: Some(capped_field(call.method).to_owned()),
            ..HttpRequest::default()
        };
        request.set_url(&(call.url)());
        subsegment.update(|doc| {
            doc.set_namespace(Namespace::Remote);
            doc.set_traced(call.traced);
            doc.http_mut().request = Some(request);
        });
    }
    let mut header = String::with_capacity(96);
    subsegment.trace_header().write_to(&mut header);
    Some((subsegment, header))
}

/// Ends a call's subsegment with its outcome: the response's status and `Content-Length`, or
/// the transport error, recorded as the cause (a fault).
pub fn end_call<E: fmt::Display + ?Sized>(
    subsegment: Subsegment,
    outcome: Result<(u16, Option<i64>), &E>,
) {
    match outcome {
        Ok((status, length)) => {
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

/// Records an error known only by its message as the cause of `entity` (a fault, unless a 4xx
/// status is recorded), with the error's type name. For errors that implement
/// [`std::error::Error`], [`Cause::from_typed_error`] also records their `source()` chain.
///
/// Middleware errors are often `Box<dyn Error + Send + Sync>` or types that implement only
/// `Display`: this takes any of them.
pub fn record_error<E: fmt::Display + ?Sized>(entity: &Entity, error: &E) {
    if !entity.is_recording() {
        return;
    }
    let cause = Cause::from_message(&error, Some(std::any::type_name::<E>()), None);
    entity.add_cause(cause);
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
