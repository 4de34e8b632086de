//! Outgoing requests of a `reqwest` client, through `reqwest-middleware`.

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};
use xray_core::{Recorder, Subsegment};

use crate::client::{Call, begin_call, end_call, set_header};

/// A [`reqwest_middleware::Middleware`] that records a `remote` subsegment for every request
/// of a `reqwest` client and sends the trace header to the callee: what
/// [`XRayClientLayer`](crate::XRayClientLayer) does for tower clients, with the same fields.
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
/// use xray_core::{FutureExt, Recorder};
/// use xray_tower::XRayMiddleware;
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
        let call = Call {
            method: req.method().as_str(),
            host: url.host_str(),
            port: url.port_or_known_default(),
            url: &|| recorded_url(url),
        };
        let recorder = self.recorder.as_ref().unwrap_or_else(|| Recorder::global());
        let (subsegment, header) = begin_call(recorder, self.traced, &call)?;
        set_header(req.headers_mut(), header);
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
            let outcome = result.as_ref().map(|r| (r.status().as_u16(), r.headers()));
            end_call(subsegment, outcome);
        }
        result
    }
}
