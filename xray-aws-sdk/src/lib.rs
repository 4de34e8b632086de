//! AWS X-Ray subsegments for aws-sdk-rust calls.
//!
//! # Overview
//!
//! [`XRayInterceptor`] is a Smithy interceptor: added to a service client's configuration, it
//! records each operation the client performs as an `aws` subsegment of the current X-Ray
//! segment (service, operation, region, request id, retries, status, whitelisted parameters
//! such as `table_name` or `queue_url`, and errors), and sends the trace header to the called
//! service so that X-Ray-integrated services continue the trace.
//!
//! The parameters recorded per operation follow the X-Ray SDKs' parameter whitelist (vendored
//! from the X-Ray SDK for Python, see `data/README.md`): they are read from the serialized
//! request and response, so the interceptor works with every service crate without depending
//! on any.
//!
//! Messaging hops carry the trace too: [`sqs`] through Amazon SQS messages (their
//! `AWSTraceHeader` system attribute, and the records of a Lambda SQS event, with the official
//! SDKs' oversampling mitigation for batches), [`sns`] through Amazon SNS topics (the header of
//! the `Publish` call, which the interceptor sets; where each kind of subscription receives it)
//! and [`eventbridge`] through Amazon EventBridge events (each `PutEvents` entry's
//! `TraceHeader`; where each kind of target receives it).
//!
//! # What is recorded
//!
//! | field | value |
//! |---|---|
//! | `name` | the Smithy service id, as the official SDKs name services: `DynamoDB`, `SQS`, `S3`, `Lambda` |
//! | `namespace` | `aws` |
//! | `aws.operation` | the operation, e.g. `GetItem` |
//! | `aws.region` | the client's region |
//! | `aws.request_id` | `x-amzn-requestid`, else `x-amz-request-id` |
//! | `aws.id_2` | S3's `x-amz-id-2` |
//! | `aws.retries` | attempts minus one |
//! | `aws.<member>` | whitelisted members: `table_name`, `queue_url`, `bucket_name`, `key`, `function_name`, `consumed_capacity`, `message_id`, ...; map keys (`table_names`) and list counts (`message_count`) where the whitelist asks |
//! | `http.response` | `status` and `content_length` of the last attempt |
//! | `error`, `throttle`, `fault` | from the status (4xx, 429, 5xx); a throttling error code sets `throttle` too |
//! | `cause` | a service error: its code as `type`, its message, `remote: true`; any other failure (connection, timeout) with its error chain, as a fault; a call cut short (its future dropped, or the operation timeout) as a `Cancelled` fault |
//!
//! Item contents, message bodies, object data, payloads and credentials are never recorded:
//! bodies are read only for the JSON and query protocols, and only whitelisted members are
//! kept. Calls to X-Ray itself (`GetSamplingRules`, `GetSamplingTargets`, `PutTraceSegments`)
//! are not traced. A presigned request gets no trace header and no subsegment: the SDK
//! prepares it but never sends it.
//!
//! # Usage
//!
//! ```
//! use xray_aws_sdk::XRayInterceptor;
//!
//! # async fn handler(client: &aws_sdk_dynamodb::Client) {
//! // In a handler running inside a segment, each call is one subsegment.
//! let item = client.get_item().table_name("orders").send().await;
//! # let _ = item;
//! # }
//! let config = aws_sdk_dynamodb::Config::builder()
//!     .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
//!     .interceptor(XRayInterceptor::new())
//!     .build();
//! let client = aws_sdk_dynamodb::Client::from_conf(config);
//! # let _ = client;
//! ```
//!
//! # Supported Rust Versions
//!
//! The minimum supported Rust version is the workspace's `rust-version` (1.94).
#![deny(missing_docs)]

pub mod eventbridge;
mod extract;
mod interceptor;
mod propagation;
pub mod sns;
pub mod sqs;
mod whitelist;

pub use interceptor::XRayInterceptor;
