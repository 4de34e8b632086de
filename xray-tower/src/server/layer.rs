use tower::Layer;
use xray_sdk::Recorder;

use super::XRay;
use crate::naming::SegmentNaming;

/// Records a segment for every incoming HTTP request; wraps services in [`XRay`].
///
/// Works on any `tower::Service<http::Request<B>>` returning `http::Response<B2>`: an
/// `axum::Router` (`Router::layer`), or a hyper service through hyper-util's
/// `TowerToHyperService`.
///
/// Per request it reads `X-Amzn-Trace-Id`, lets the recorder decide sampling (an upstream
/// `Sampled=1`/`0`, else the sampler with the request's host, method and path), records
/// `http.request` and `http.response` with the `error`/`throttle`/`fault` flags, runs the inner
/// service with the segment as the current context, answers with `X-Amzn-Trace-Id: Root=…`
/// (and `Sampled=` when the caller asked with `Sampled=?`), and ends the segment when the
/// response body has been sent or dropped.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use axum::{Router, routing::get};
/// use tower::ServiceExt;
/// use xray_sdk::{InMemoryEmitter, Recorder};
/// use xray_sdk::sampling::{LocalSampler, SamplingRules};
/// use xray_tower::XRayLayer;
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
/// let app = Router::new()
///     .route("/hello", get(|| async { "hello" }))
///     .layer(XRayLayer::new("greeter").with_recorder(recorder));
///
/// let request = http::Request::get("http://example.com/hello").body(axum::body::Body::empty())?;
/// let response = app.oneshot(request).await?;
/// assert!(response.headers().contains_key("x-amzn-trace-id"));
/// drop(response); // the segment ends when the body is sent or dropped
///
/// let docs = emitter.documents();
/// assert_eq!(docs[0]["name"], "greeter");
/// assert_eq!(docs[0]["http"]["response"]["status"], 200);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct XRayLayer {
    pub(crate) naming: SegmentNaming,
    pub(crate) recorder: Option<Recorder>,
}

impl XRayLayer {
    /// A layer naming segments with `naming` (a `&str` or `String` is a fixed name) and
    /// recording with the global recorder ([`Recorder::global`]), read at each request.
    pub fn new(naming: impl Into<SegmentNaming>) -> Self {
        Self {
            naming: naming.into(),
            recorder: None,
        }
    }

    /// Records with `recorder` instead of the global one.
    pub fn with_recorder(mut self, recorder: Recorder) -> Self {
        self.recorder = Some(recorder);
        self
    }
}

impl<S> Layer<S> for XRayLayer {
    type Service = XRay<S>;

    fn layer(&self, inner: S) -> XRay<S> {
        XRay {
            inner,
            naming: self.naming.clone(),
            recorder: self.recorder.clone(),
        }
    }
}
