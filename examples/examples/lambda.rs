//! An AWS Lambda function on `lambda_runtime`, traced with xray-core.
//!
//! Each invocation is traced under its own trace header, taken from the invocation's context,
//! so concurrent invocations in one process never share a trace. The function's own segment is
//! emitted by Lambda; the subsegments below are sent as soon as they end.
//!
//! Build it for Lambda (e.g. with `cargo lambda`); run locally it only says it is not in Lambda.
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};
use xray_core::Recorder;

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let recorder = Recorder::global();
    let invocation = recorder.begin_lambda_invocation(event.context.xray_trace_id.as_deref());
    invocation
        .instrument(async move {
            let greet = recorder.begin_subsegment("greet");
            let name = event.payload["name"].as_str().unwrap_or("world").to_owned();
            let _ = greet.put_annotation("name_length", name.len() as u64);
            greet.end();
            Ok(json!({ "message": format!("hello, {name}") }))
        })
        .await
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        eprintln!("not running in AWS Lambda (AWS_LAMBDA_RUNTIME_API is not set)");
        return Ok(());
    }
    lambda_runtime::run(service_fn(handler)).await
}
