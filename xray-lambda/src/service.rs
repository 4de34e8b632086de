use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::task::{Context, Poll};

use lambda_runtime::LambdaEvent;
use tower::Service;
use xray_sdk::Recorder;

use crate::future::InvocationFuture;
use crate::invocation::{HandlerName, Invocation};

/// The service [`XRayLambdaLayer`](crate::XRayLambdaLayer) makes: traces every invocation of
/// the handler `S`.
///
/// It is a `Service<LambdaEvent<A>>` when `S` is one (a `lambda_runtime` handler), and a
/// `Service<http::Request<B>>` when `S` is one (a `lambda_http` handler, whose requests carry
/// the invocation's `lambda_runtime::Context` in their extensions). The response and error
/// types are `S`'s: tracing never turns into an error for the invocation. `S::Error` must
/// implement `Display`, so that a failed invocation's message can be recorded.
#[derive(Debug, Clone)]
pub struct XRayLambda<S> {
    inner: S,
    recorder: Option<Recorder>,
    handler: HandlerName,
}

// ===== impl XRayLambda =====

impl<S> XRayLambda<S> {
    /// Wraps `inner`, with the global recorder and a handler subsegment named
    /// `## <function name>`; [`XRayLambdaLayer`](crate::XRayLambdaLayer) sets the rest.
    pub fn new(inner: S) -> Self {
        Self::from_parts(inner, None, HandlerName::Function)
    }

    pub(crate) fn from_parts(inner: S, recorder: Option<Recorder>, handler: HandlerName) -> Self {
        Self {
            inner,
            recorder,
            handler,
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

    fn begin(&self, context: Option<&lambda_runtime::Context>) -> Option<Invocation> {
        match context {
            Some(context) => Invocation::begin(self.recorder(), &self.handler, context),
            None => {
                tracing::debug!(
                    target: "xray_lambda",
                    "the request carries no lambda_runtime::Context in its extensions (it did \
                     not come through lambda_http); it is not traced"
                );
                None
            }
        }
    }

    /// Calls the inner service with the invocation's context current, since a service may do
    /// work in `call` before it returns its future; a panic there is recorded, the
    /// invocation ended, and the panic resumed.
    fn call_traced<R>(
        &mut self,
        invocation: Option<Invocation>,
        request: R,
    ) -> InvocationFuture<<S as Service<R>>::Future>
    where
        S: Service<R>,
    {
        let Some(invocation) = invocation else {
            return InvocationFuture::new(self.inner.call(request), None);
        };
        let called = {
            let _current = invocation.enter();
            let inner = &mut self.inner;
            catch_unwind(AssertUnwindSafe(move || inner.call(request)))
        };
        match called {
            Ok(future) => InvocationFuture::new(future, Some(invocation)),
            Err(payload) => {
                invocation.record_panic(&*payload);
                invocation.end();
                resume_unwind(payload)
            }
        }
    }
}

impl<S, A> Service<LambdaEvent<A>> for XRayLambda<S>
where
    S: Service<LambdaEvent<A>>,
    S::Error: fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = InvocationFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, event: LambdaEvent<A>) -> Self::Future {
        let invocation = self.begin(Some(&event.context));
        self.call_traced(invocation, event)
    }
}

impl<S, B> Service<http::Request<B>> for XRayLambda<S>
where
    S: Service<http::Request<B>>,
    S::Error: fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = InvocationFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // `lambda_http` inserts the invocation's context (`RequestExt::with_lambda_context`).
        let context = request.extensions().get::<lambda_runtime::Context>();
        let invocation = self.begin(context);
        self.call_traced(invocation, request)
    }
}
