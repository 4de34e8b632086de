//! AWS X-Ray subsegments for the outgoing requests of `reqwest` clients, through
//! `reqwest-middleware`.
//!
//! [`XRayMiddleware`] records a `remote` subsegment for every request and sends the
//! `X-Amzn-Trace-Id` header to the callee, with the same fields as `xray-tower`'s
//! `XRayClientLayer`: both go through [`xray_sdk::outgoing`].
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is 1.94.
#![deny(missing_docs)]

use http::Extensions;
use reqwest::header::{CONTENT_LENGTH, HeaderValue};
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};
use xray_sdk::outgoing::{self, OutgoingCall};
use xray_sdk::{Recorder, Subsegment};

/// A [`reqwest_middleware::Middleware`] that records a `remote` subsegment for every request
/// of a `reqwest` client and sends the trace header to the callee: what
/// `xray-tower`'s `XRayClientLayer` does for tower clients, with the same fields.
///
/// The subsegment begins under the current context (the segment or subsegment the calling
/// task is in) and covers the call until the response head arrives, a transport error, or the
/// request future being dropped. With no current context the request goes out unchanged.
/// Requests to the daemon's own address are never traced. Added after a retry middleware, it
/// records each attempt; before one, the whole call.
///
/// # Examples
///
/// ```
/// use reqwest_middleware::ClientBuilder;
/// use xray_sdk::{FutureExt, Recorder};
/// use xray_reqwest::XRayMiddleware;
///
/// # async fn run(recorder: Recorder) -> Result<(), reqwest_middleware::Error> {
/// let client = ClientBuilder::new(reqwest::Client::new())
///     .with(XRayMiddleware::new())
///     .build();
/// let segment = recorder.begin_segment("checkout");
/// let response = client
///     .get("http://inventory.internal/items/42")
///     .send()
///     .with_context(segment.entity().clone())
///     .await?;
/// # drop(response);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct XRayMiddleware {
    recorder: Option<Recorder>,
    traced: bool,
}

impl XRayMiddleware {
    /// A middleware recording with the global recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records with `recorder` instead of the global one.
    pub fn with_recorder(mut self, recorder: Recorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// Declares the callees instrumented with X-Ray (`traced: true` on each subsegment), so
    /// the service map joins their segments to these calls.
    pub fn with_traced(mut self, traced: bool) -> Self {
        self.traced = traced;
        self
    }

    fn begin(&self, req: &mut Request) -> Option<Subsegment> {
        let url = req.url();
        let recorded = || recorded_url(url);
        let call = OutgoingCall::new(
            req.method().as_str(),
            url.host_str(),
            url.port_or_known_default(),
            &recorded,
        )
        .with_traced(self.traced);
        let recorder = self.recorder.as_ref().unwrap_or_else(|| Recorder::global());
        let (subsegment, header) = outgoing::begin_call(recorder, &call)?;
        // The header is ids and the incoming header's fields, which were checked to be visible
        // ASCII; `insert` replaces a header that names another parent.
        if let Ok(value) = HeaderValue::try_from(header) {
            req.headers_mut().insert("x-amzn-trace-id", value);
        }
        Some(subsegment)
    }
}

/// The URL as recorded: scheme, host, port and path, without user information (it can hold a
/// password), query string or fragment.
fn recorded_url(url: &reqwest::Url) -> String {
    let mut out = format!("{}://", url.scheme());
    out.push_str(url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        out.push(':');
        out.push_str(&port.to_string());
    }
    out.push_str(url.path());
    out
}

#[async_trait::async_trait]
impl Middleware for XRayMiddleware {
    async fn handle(
        &self,
        mut req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let subsegment = self.begin(&mut req);
        let result = next.run(req, extensions).await;
        if let Some(subsegment) = subsegment {
            let outcome = result.as_ref().map(|r| {
                let length = r
                    .headers()
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<i64>().ok());
                (r.status().as_u16(), length)
            });
            outgoing::end_call(subsegment, outcome);
        }
        result
    }
}
