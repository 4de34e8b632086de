//! An AWS Lambda function on `lambda_runtime`, traced with `xray-lambda`.
//!
//! `XRayLambdaLayer` traces each invocation under its own trace header, taken from the
//! invocation's context, so concurrent invocations in one process (Lambda Managed Instances,
//! `AWS_LAMBDA_MAX_CONCURRENCY`, which `run_concurrent` honours) never share a trace. The
//! function's own segment is emitted by Lambda; the layer's `## <function name>` subsegment
//! and the `greet` subsegment below it are sent as soon as they end.
//!
//! Build it for Lambda (e.g. with `cargo lambda`); run locally it only says it is not in Lambda.
//! `examples/tests/lambda_example.rs` runs this binary against a stand-in Runtime API.
use lambda_runtime::tower::ServiceBuilder;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};
use xray_lambda::XRayLambdaLayer;
use xray_sdk::Recorder;

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    // Under the invocation's context, which the layer makes current.
    let greet = Recorder::global().begin_subsegment("greet");
    let name = event.payload["name"].as_str().unwrap_or("world").to_owned();
    greet.put_annotation("name_length", name.len() as u64);
    greet.end();
    Ok(json!({ "message": format!("hello, {name}") }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        eprintln!("not running in AWS Lambda (AWS_LAMBDA_RUNTIME_API is not set)");
        return Ok(());
    }
    let service = ServiceBuilder::new()
        .layer(XRayLambdaLayer::new())
        .service(service_fn(handler));
    lambda_runtime::run_concurrent(service).await
}
