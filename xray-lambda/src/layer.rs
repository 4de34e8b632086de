use std::sync::Arc;

use tower::Layer;
use xray_sdk::Recorder;

use crate::invocation::HandlerName;
use crate::service::XRayLambda;

/// Traces every invocation of a Lambda handler under its own trace header; wraps services in
/// [`XRayLambda`].
///
/// Works on a `lambda_runtime` handler (any `tower::Service<LambdaEvent<A>>`, such as
/// `service_fn(handler)`) for `lambda_runtime::run` and `run_concurrent`, and on a
/// `lambda_http` handler (a `tower::Service<http::Request<B>>`) for `lambda_http::run`. It is
/// `Clone`, as `run_concurrent` needs: one clone serves each concurrent invocation.
///
/// See the [crate documentation](crate) for what is recorded.
///
/// # Examples
///
/// One invocation, handed to the layer as `lambda_runtime` would hand it:
///
/// ```
/// use lambda_runtime::{Context, Error, LambdaEvent, service_fn};
/// use tower::{ServiceBuilder, ServiceExt};
/// use xray_sdk::{InMemoryEmitter, Recorder};
/// use xray_lambda::XRayLambdaLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let emitter = InMemoryEmitter::new();
/// let recorder = Recorder::builder()
///     .ignore_environment()
///     .with_emitter(emitter.clone())
///     .build()?;
///
/// let handler = service_fn(|event: LambdaEvent<String>| async move {
///     // The invocation's context is current inside the handler.
///     let lookup = xray_sdk::current().expect("a context").begin_subsegment("lookup");
///     lookup.end();
///     Ok::<_, Error>(format!("hello, {}", event.payload))
/// });
/// let service = ServiceBuilder::new()
///     .layer(XRayLambdaLayer::new().with_recorder(recorder))
///     .service(handler);
///
/// let mut context = Context::default();
/// context.xray_trace_id =
///     Some("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into());
/// let answer = service.oneshot(LambdaEvent::new("Ada".to_owned(), context)).await?;
/// assert_eq!(answer, "hello, Ada");
///
/// // Each subsegment is sent as it ends; the handler's hangs under Lambda's own segment.
/// let docs = emitter.documents();
/// assert_eq!(docs[0]["name"], "lookup");
/// assert_eq!(docs[1]["name"], "## handler"); // `## <function name>` inside Lambda
/// assert_eq!(docs[1]["parent_id"], "53995c3f42cd8ad8");
/// assert_eq!(docs[0]["parent_id"], docs[1]["id"]);
/// assert_eq!(docs[1]["trace_id"], "1-5759e988-bd862e3fe1be46a994272793");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct XRayLambdaLayer {
    recorder: Option<Recorder>,
    handler: HandlerName,
}

impl XRayLambdaLayer {
    /// A layer recording with the global recorder ([`Recorder::global`], read at each
    /// invocation), with a handler subsegment named `## <function name>`.
    pub fn new() -> Self {
        Self {
            recorder: None,
            handler: HandlerName::Function,
        }
    }

    /// Records with `recorder` instead of the global one.
    pub fn with_recorder(mut self, recorder: Recorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// Names the handler subsegment `name` instead of `## <function name>`. Powertools for AWS
    /// Lambda names it `## ` followed by the handler's name.
    pub fn with_handler_name(mut self, name: impl Into<String>) -> Self {
        let name: String = name.into();
        self.handler = HandlerName::Fixed(Arc::from(name));
        self
    }

    /// Records no handler subsegment: the handler runs with the facade as its context, so its
    /// subsegments hang directly under Lambda's function segment, as with the official X-Ray
    /// SDKs. A handler error or panic is then not recorded (the facade cannot carry it), and
    /// there is no `ColdStart` annotation.
    pub fn without_handler_subsegment(mut self) -> Self {
        self.handler = HandlerName::Off;
        self
    }
}

impl Default for XRayLambdaLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for XRayLambdaLayer {
    type Service = XRayLambda<S>;

    fn layer(&self, inner: S) -> XRayLambda<S> {
        XRayLambda::from_parts(inner, self.recorder.clone(), self.handler.clone())
    }
}
