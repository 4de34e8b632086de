//! AWS X-Ray for AWS Lambda functions written with `lambda_runtime` or `lambda_http`.
//!
//! [`XRayLambdaLayer`] is a tower layer for the handler service. For every invocation it takes
//! the invocation's own trace header (`lambda_runtime::Context::xray_trace_id`, which the
//! runtime reads from the Runtime API's `Lambda-Runtime-Trace-Id`), begins the invocation's
//! facade with [`Recorder::begin_lambda_invocation`](xray_sdk::Recorder::begin_lambda_invocation),
//! opens a handler subsegment under it and runs the handler with that subsegment as the current
//! context: every subsegment the handler begins (`#[capture]` functions, AWS SDK calls through
//! `xray-aws-sdk`, HTTP calls through `xray-tower` or `xray-reqwest`) nests under it and is sent
//! as soon as it ends. The facade and the handler subsegment end when the handler's future
//! completes, fails, panics or is dropped.
//!
//! # Usage
//!
//! Lambda in one line: wrap the handler, and run it as usual.
//!
//! ```no_run
//! use lambda_runtime::tower::ServiceBuilder;
//! use lambda_runtime::{Error, LambdaEvent, service_fn};
//! use serde_json::{Value, json};
//! use xray_sdk::Recorder;
//! use xray_lambda::XRayLambdaLayer;
//!
//! async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
//!     let lookup = Recorder::global().begin_subsegment("lookup"); // under this invocation
//!     let name = event.payload["name"].as_str().unwrap_or("world").to_owned();
//!     lookup.end();
//!     Ok(json!({ "message": format!("hello, {name}") }))
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Error> {
//!     lambda_runtime::run(ServiceBuilder::new().layer(XRayLambdaLayer::new()).service(service_fn(handler))).await
//! }
//! ```
//!
//! ## Lambda Managed Instances (concurrent invocations)
//!
//! With `AWS_LAMBDA_MAX_CONCURRENCY` above 1, `lambda_runtime::run_concurrent` (feature
//! `concurrency-tokio` of `lambda_runtime`) runs that many invocations at once in one process.
//! The layer needs nothing more: each invocation is traced under the header it came with, and
//! the context follows each handler's future across `.await`, whichever thread polls it. The
//! process-wide `_X_AMZN_TRACE_ID` is never read: under concurrency `lambda_runtime` does not
//! set it, and it could belong to any invocation in flight.
//!
//! ```no_run
//! # use lambda_runtime::tower::ServiceBuilder;
//! # use lambda_runtime::{Error, LambdaEvent, service_fn};
//! # use serde_json::Value;
//! # use xray_lambda::XRayLambdaLayer;
//! # async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> { Ok(event.payload) }
//! #[tokio::main]
//! async fn main() -> Result<(), Error> {
//!     let service = ServiceBuilder::new().layer(XRayLambdaLayer::new()).service(service_fn(handler));
//!     // Concurrent under Managed Instances, sequential elsewhere: the same binary runs on both.
//!     lambda_runtime::run_concurrent(service).await
//! }
//! ```
//!
//! ## `lambda_http`
//!
//! The same layer wraps a `lambda_http` service: `lambda_http` puts the invocation's
//! `lambda_runtime::Context` in each request's extensions, and the layer reads the header from
//! there (never from the request's own `X-Amzn-Trace-Id`).
//!
//! ```no_run
//! use lambda_http::tower::ServiceBuilder;
//! use lambda_http::{Error, Request, service_fn};
//! use xray_lambda::XRayLambdaLayer;
//!
//! async fn hello(_request: Request) -> Result<&'static str, Error> {
//!     Ok("hello")
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Error> {
//!     lambda_http::run(ServiceBuilder::new().layer(XRayLambdaLayer::new()).service(service_fn(hello))).await
//! }
//! ```
//!
//! The layer uses the global recorder ([`Recorder::global`](xray_sdk::Recorder::global))
//! unless given one with [`XRayLambdaLayer::with_recorder`]. Keep its default synchronous UDP
//! sender in Lambda: Lambda freezes the process once the response is posted, and datagrams
//! still queued in a background sender would leave only at the next invocation.
//!
//! # What is recorded
//!
//! | document | when | fields |
//! |---|---|---|
//! | the handler subsegment, `## <function name>` (`AWS_LAMBDA_FUNCTION_NAME`; `## handler` when it is empty) | every sampled invocation | `parent_id` = the header's `Parent` (Lambda's own function segment), the annotation `ColdStart` (`true` for the first invocation of the process), and on failure `fault` with the error's message (or the panic's) as the `cause` |
//! | your subsegments | as they end | `parent_id` = the handler subsegment |
//!
//! The facade itself is never sent: Lambda emits the function's segment. Nothing is recorded
//! for an unsampled invocation (`Sampled=0`, or a header without `Parent`), and it gets no
//! handler subsegment, but its context is still current, so calls made from the handler carry
//! `Sampled=0` and the invocation's `Lineage` (Lambda's recursive-loop detection) downstream.
//! An invocation without a trace header, or a disabled recorder, runs the handler untouched.
//!
//! # Handler errors
//!
//! The official X-Ray SDKs never record a handler's error themselves: the function's segment
//! belongs to Lambda, and their facade refuses every change ("FacadeSegments cannot be
//! mutated.", `FacadeSegment` in the Java and Python SDKs). Lambda gets the error from the
//! runtime instead: the official runtimes send it in the `Lambda-Runtime-Function-XRay-Error-Cause`
//! header of `/invocation/{id}/error` (the Java runtime interface client, .NET's
//! `Amazon.Lambda.RuntimeSupport`, Ruby's `aws_lambda_ric`), for Lambda to record on its own
//! segment. `lambda_runtime` 1.5 sends no such header, so with the facade alone the error's
//! message would reach no trace.
//!
//! Powertools for AWS Lambda (`Tracer.capture_lambda_handler` in Python, `captureLambdaHandler`
//! in TypeScript, `@Tracing` in Java) solves this with a `## <handler>` subsegment around the
//! handler, on which the exception is recorded, and a `ColdStart` annotation. This layer does
//! the same: an `Err` from the handler marks the handler subsegment as a fault with the
//! error's `Display` text as the cause, and a panic does the same with the panic's message
//! (the panic then continues to `lambda_runtime`, which reports it as the invocation's error).
//! The error itself goes back to `lambda_runtime` unchanged: tracing never fails an
//! invocation. [`XRayLambdaLayer::without_handler_subsegment`] puts your subsegments directly
//! under Lambda's segment instead, as the X-Ray SDKs do, and then records no error.
//!
//! The layer therefore asks the handler's error type to implement `Display`, as
//! `lambda_runtime::Error`, `String`, `&str`, `anyhow::Error` and every `std::error::Error` do.
//! `lambda_runtime::Diagnostic` does not: return your own error type, converted with
//! `impl From<MyError> for Diagnostic`.
//!
//! # Feature flags
//!
//! None. The `lambda_http` support needs only the `http` crate, which `lambda_runtime` depends
//! on already, so it costs nothing to have; this crate does not depend on `lambda_http`.
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is 1.94.
#![deny(missing_docs)]

mod future;
mod invocation;
mod layer;
mod service;

pub use future::InvocationFuture;
pub use layer::XRayLambdaLayer;
pub use service::XRayLambda;
