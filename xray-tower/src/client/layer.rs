use tower::Layer;
use xray_sdk::Recorder;

use super::XRayClient;

/// Traces outgoing HTTP requests; wraps any tower HTTP client service in [`XRayClient`]
/// (hyper-util's legacy `Client`, or anything else that is a
/// `Service<http::Request<B>, Response = http::Response<B2>>`).
///
/// Each request made while a segment or subsegment is current gets a subsegment named after
/// the target host, in the `remote` namespace, with `http.request` (method, URL without query
/// string), `http.response` (status, length), the flags the status implies and transport
/// errors as the cause. The request carries `X-Amzn-Trace-Id: Root=…;Parent=<subsegment>;
/// Sampled=1|0`, replacing any such header already on it; an unsampled trace is propagated as
/// `Sampled=0`.
///
/// With no current context the recorder's context-missing strategy applies and the request
/// is sent unchanged. Requests to the daemon's own address are never traced.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use tower::{Layer, ServiceExt, service_fn};
/// use xray_sdk::{FutureExt, InMemoryEmitter, Recorder};
/// use xray_sdk::sampling::{LocalSampler, SamplingRules};
/// use xray_tower::XRayClientLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let emitter = InMemoryEmitter::new();
/// let always = SamplingRules::builder().with_default(0, 1.0).build()?;
/// let recorder = Recorder::builder()
///     .ignore_environment()
///     .with_emitter(emitter.clone())
///     .with_sampler(Arc::new(LocalSampler::new(always)))
///     .build()?;
///
/// // Stands in for an HTTP client: answers with the trace header it was sent.
/// let client = service_fn(|req: http::Request<()>| async move {
///     let sent = req.headers()["x-amzn-trace-id"].clone();
///     Ok::<_, std::convert::Infallible>(http::Response::new(sent))
/// });
/// let client = XRayClientLayer::new().with_recorder(recorder.clone()).layer(client);
///
/// let segment = recorder.begin_segment("checkout");
/// let request = http::Request::get("http://payments.internal/charge?card=secret").body(())?;
/// let response = client.oneshot(request).with_context(segment.entity().clone()).await?;
/// segment.end();
///
/// let docs = emitter.documents();
/// let call = &docs[0]["subsegments"][0];
/// assert_eq!(call["name"], "payments.internal");
/// assert_eq!(call["namespace"], "remote");
/// assert_eq!(call["http"]["request"]["url"], "http://payments.internal/charge");
/// let sent = response.body().to_str()?;
/// assert!(sent.contains(&format!("Parent={}", call["id"].as_str().unwrap())));
/// assert!(sent.ends_with(";Sampled=1"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct XRayClientLayer {
    recorder: Option<Recorder>,
    traced: bool,
}

impl XRayClientLayer {
    /// A layer recording with the global recorder ([`Recorder::global`]), read at each
    /// request.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records with `recorder` instead of the global one.
    pub fn with_recorder(mut self, recorder: Recorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// Declares the callees instrumented with X-Ray (`traced: true` on each subsegment), so
    /// the service expects their segments under these subsegments. Default `false`.
    pub fn with_traced(mut self, traced: bool) -> Self {
        self.traced = traced;
        self
    }
}

impl<S> Layer<S> for XRayClientLayer {
    type Service = XRayClient<S>;

    fn layer(&self, inner: S) -> XRayClient<S> {
        XRayClient {
            inner,
            recorder: self.recorder.clone(),
            traced: self.traced,
        }
    }
}
