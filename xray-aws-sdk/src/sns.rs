//! Trace propagation through Amazon SNS topics.
//!
//! # Publishing
//!
//! Nothing is set on the message. Unlike SQS's `SendMessage`, SNS's `Publish` and
//! `PublishBatch` have no message system attributes (their members are the topic or target,
//! the message, its subject and structure, `MessageAttributes`, and the FIFO group and
//! deduplication ids): SNS takes the trace from the `X-Amzn-Trace-Id` header of the call,
//! which [`XRayInterceptor`](crate::XRayInterceptor) sets, with the `SNS` subsegment of the
//! call as parent, and passes it to the subscriptions. Every entry of a `PublishBatch` shares
//! the one header of its call.
//!
//! ```
//! use xray_aws_sdk::XRayInterceptor;
//!
//! let config = aws_sdk_sns::Config::builder()
//!     .region(aws_sdk_sns::config::Region::new("us-east-1"))
//!     .interceptor(XRayInterceptor::new())
//!     .build();
//! let client = aws_sdk_sns::Client::from_conf(config);
//! # async fn publish(client: &aws_sdk_sns::Client) {
//! // Inside a segment: the call is a subsegment, and its header is what subscribers receive.
//! let sent = client
//!     .publish()
//!     .topic_arn("arn:aws:sns:us-east-1:123456789012:orders")
//!     .message("order 42")
//!     .send()
//!     .await;
//! # let _ = sent;
//! # }
//! # let _ = client;
//! ```
//!
//! # Receiving
//!
//! A notification does not carry the header in its body either: a Lambda SNS record
//! (`Records[].Sns`) has the message, its ids, timestamp, signature fields and
//! `MessageAttributes`, and no trace field, and neither has the JSON envelope SNS writes to a
//! queue without raw message delivery. Where the header does arrive depends on the
//! subscription:
//!
//! | subscription | where the header is | continue the trace with |
//! |---|---|---|
//! | AWS Lambda | the invocation's own header, `lambda_runtime::Context::xray_trace_id`: Lambda's segment for the function is already in the publisher's trace | [`Recorder::begin_lambda_invocation`](xray_sdk::Recorder::begin_lambda_invocation) |
//! | Amazon SQS | the delivered message's `AWSTraceHeader` system attribute; in a Lambda SQS event, `Records[].attributes.AWSTraceHeader` | [`sqs::begin_message_segment`](crate::sqs::begin_message_segment), [`sqs::begin_record_segment`](crate::sqs::begin_record_segment) |
//! | HTTP/S | not documented: SNS's list of the headers of its POST names only its own `x-amz-sns-*` ones | `xray-tower`'s server layer continues an `X-Amzn-Trace-Id` if one arrives |
//!
//! In a Lambda function subscribed to a topic (SNS invokes it once per notification):
//!
//! ```
//! use serde_json::json;
//!
//! let emitter = xray_sdk::InMemoryEmitter::new();
//! let recorder = xray_sdk::Recorder::builder()
//!     .ignore_environment()
//!     .with_emitter(emitter.clone())
//!     .build()
//!     .unwrap();
//! // In a handler: `event.context.xray_trace_id` and `event.payload`.
//! let invocation_header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
//! let payload = json!({ "Records": [{
//!     "EventSource": "aws:sns",
//!     "Sns": { "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e", "Message": "order 42",
//!              "TopicArn": "arn:aws:sns:us-east-1:123456789012:orders", "MessageAttributes": {} },
//! }] });
//!
//! let invocation = recorder.begin_lambda_invocation(Some(invocation_header));
//! let work = invocation.begin_subsegment("handle-order");
//! let message_id = payload["Records"][0]["Sns"]["MessageId"].as_str().unwrap_or_default();
//! work.put_annotation("message_id", message_id);
//! work.end();
//!
//! // The work is in the publisher's trace, under Lambda's segment for the function.
//! let doc = &emitter.documents()[0];
//! assert_eq!(doc["trace_id"], "1-5759e988-bd862e3fe1be46a994272793");
//! assert_eq!(doc["parent_id"], "53995c3f42cd8ad8");
//! ```
