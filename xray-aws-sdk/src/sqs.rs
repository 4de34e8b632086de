//! Trace propagation through Amazon SQS messages.
//!
//! X-Ray links a consumer to its producer through the `AWSTraceHeader` message system
//! attribute. Amazon SQS fills it from the `X-Amzn-Trace-Id` header of a traced `SendMessage`
//! call (which [`XRayInterceptor`](crate::XRayInterceptor) sets), and Amazon SNS fills it for
//! the messages it delivers to a subscribed queue from the header of a traced `Publish` (see
//! [`sns`](crate::sns)); [`message_trace_header`] gives the value to set it explicitly (for
//! queues that do not, or to choose the parent), and [`begin_message_segment`] continues the
//! producer's trace when a message is processed.
//!
//! # In AWS Lambda
//!
//! An SQS event hands the function each message as a record, its system attributes under
//! `attributes`: the header is `Records[].attributes.AWSTraceHeader`, which
//! [`record_trace_header`] reads. Lambda reads it too: X-Ray links the traces of the batch's
//! producers to the invocation's (trace linking, X-Ray's guide, *Tracing event-driven
//! applications*), so the invocation's own header (`lambda_runtime::Context::xray_trace_id`,
//! for [`Recorder::begin_lambda_invocation`]) names the invocation's trace, linked to the
//! producers' rather than one of them. A record is handled either
//!
//! - under the invocation, with [`begin_record_subsegment`], which follows each record's
//!   sampling decision (next section). This is what the official X-Ray SDKs do in Lambda,
//!   where they begin no segment of their own; or
//! - as a segment of its own in the producer's trace, with [`begin_record_segment`], as
//!   [`begin_message_segment`] does for a message received with `ReceiveMessage`.
//!
//! With the typed events of the `aws_lambda_events` crate, where a record's `attributes` is a
//! map of strings, pass `attributes.get("AWSTraceHeader")` to [`begin_message_segment`]
//! instead.
//!
//! # Batches and oversampling
//!
//! A sampled invocation samples whatever is done under it, so the downstream calls made for each
//! message of its batch are recorded even for messages whose producer's trace was not sampled; and
//! X-Ray bounds what one trace holds (at most 20 linked traces a segment, 100 links a trace, and a
//! maximum document size, which a traced function sending many messages in one invocation can
//! exceed: the same guide). The official SDKs answer this in one way, which they call oversampling
//! mitigation: for each message, a subsegment of the invocation when the message's `AWSTraceHeader`
//! says `Sampled=1`, and otherwise a subsegment *without sampling*, which records nothing and sends
//! `Sampled=0` on every call made under it. A message without the attribute is not sampled. Java
//! has `SQSMessageHelper.isSampled` with `AWSXRay.beginSubsegmentWithoutSampling`
//! (aws-xray-sdk-java's README, *Oversampling Mitigation*), Python `SqsMessageHelper.isSampled`
//! with `begin_subsegment_without_sampling`, Node.js `SqsMessageHelper.isSampled` with
//! `addNewSubsegmentWithoutSampling`, .NET `BeginSubsegmentWithoutSampling`.
//!
//! [`begin_record_subsegment`] is that rule, built from
//! [`xray_sdk::header::is_sqs_message_sampled`] and
//! [`Entity::begin_subsegment_without_sampling`]. One difference: the SDKs look for the text
//! `Sampled=1` anywhere in the attribute, where `is_sqs_message_sampled` reads the `Sampled`
//! field itself, so a `Sampled=1` inside another field's value does not count.
//!
//! Outside Lambda no rule is needed: each message received gets its own segment with
//! [`begin_message_segment`], which obeys that message's decision.
//!
//! ```
//! use serde_json::json;
//! use xray_aws_sdk::sqs;
//!
//! let emitter = xray_sdk::InMemoryEmitter::new();
//! let recorder = xray_sdk::Recorder::builder()
//!     .ignore_environment()
//!     .with_emitter(emitter.clone())
//!     .build()
//!     .unwrap();
//! // In a handler: the invocation's own header (`event.context.xray_trace_id`) and the
//! // event's records (`event.payload["Records"]`).
//! let invocation = recorder.begin_lambda_invocation(Some(
//!     "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
//! ));
//! let records = json!([
//!     { "messageId": "m-1", "body": "…", "attributes": {
//!         "AWSTraceHeader": "Root=1-67891233-abcdef012345678912345678;Parent=463ac35c9f6413ad;Sampled=1" } },
//!     { "messageId": "m-2", "body": "…", "attributes": {
//!         "AWSTraceHeader": "Root=1-67891233-abcdef012345678912345679;Parent=463ac35c9f6413ae;Sampled=0" } },
//! ]);
//! for record in records.as_array().into_iter().flatten() {
//!     let work = sqs::begin_record_subsegment(&invocation, "process-message", record);
//!     let _current = work.enter();
//!     // Calls made here (through `XRayInterceptor`, `xray-tower`, ...) carry the
//!     // message's decision downstream.
//! }
//!
//! // Only the sampled message's work is sent.
//! assert_eq!(emitter.documents().len(), 1);
//! ```

use serde_json::Value;
use xray_sdk::{Entity, Recorder, Segment, Subsegment};

use crate::propagation;

/// The name of the SQS message system attribute that carries the trace header.
pub const AWS_TRACE_HEADER: &str = "AWSTraceHeader";

/// The value to put in a message's [`AWS_TRACE_HEADER`] system attribute: the trace header of
/// the current entity (`Root=...;Parent=<current entity>;Sampled=1|0`), or `None` outside any
/// segment.
///
/// # Examples
///
/// ```
/// use aws_sdk_sqs::types::{MessageSystemAttributeNameForSends, MessageSystemAttributeValue};
/// use xray_aws_sdk::sqs;
///
/// # fn send(client: &aws_sdk_sqs::Client) -> Result<(), aws_sdk_sqs::error::BuildError> {
/// let mut send = client.send_message().queue_url("https://sqs.example/1/q").message_body("hi");
/// if let Some(header) = sqs::message_trace_header() {
///     let value = MessageSystemAttributeValue::builder()
///         .data_type("String")
///         .string_value(header)
///         .build()?;
///     send = send.message_system_attributes(MessageSystemAttributeNameForSends::AwsTraceHeader, value);
/// }
/// # let _ = send;
/// # Ok(())
/// # }
/// // Outside a segment there is nothing to propagate.
/// assert!(sqs::message_trace_header().is_none());
/// ```
pub fn message_trace_header() -> Option<String> {
    propagation::current_header()
}

/// Begins the segment that processes one received message, in the producer's trace.
///
/// `aws_trace_header` is the message's [`AWS_TRACE_HEADER`] system attribute (ask for it with
/// `message_system_attribute_names` on `ReceiveMessage`). When it is valid, the segment has
/// the producer's trace id, the producer's entity as parent, and obeys its sampling decision
/// (`Sampled=1` recorded, `Sampled=0` not); without it, or when it does not parse, a new trace
/// begins and the recorder's sampler decides.
///
/// # Examples
///
/// ```
/// use xray_aws_sdk::sqs;
///
/// let recorder = xray_sdk::Recorder::builder()
///     .ignore_environment()
///     .with_emitter(xray_sdk::InMemoryEmitter::new())
///     .build()
///     .unwrap();
/// let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
/// let segment = sqs::begin_message_segment(&recorder, "orders-worker", Some(header));
/// assert_eq!(segment.trace_id().to_string(), "1-5759e988-bd862e3fe1be46a994272793");
/// assert!(segment.is_sampled());
/// ```
pub fn begin_message_segment(
    recorder: &Recorder,
    name: &str,
    aws_trace_header: Option<&str>,
) -> Segment {
    propagation::begin_continued(recorder, name, aws_trace_header, AWS_TRACE_HEADER)
}

/// The trace header of one record of a Lambda SQS event: its
/// `attributes.AWSTraceHeader`, or `None` when the record has none (the producer was not
/// traced and set none) or is not shaped like an SQS record.
///
/// # Examples
///
/// ```
/// use serde_json::json;
/// use xray_aws_sdk::sqs;
///
/// let record = json!({
///     "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
///     "body": "order 42",
///     "attributes": {
///         "ApproximateReceiveCount": "1",
///         "AWSTraceHeader": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
///     },
///     "eventSource": "aws:sqs",
/// });
/// assert_eq!(
///     sqs::record_trace_header(&record),
///     Some("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"),
/// );
/// assert_eq!(sqs::record_trace_header(&json!({ "attributes": {} })), None);
/// ```
pub fn record_trace_header(record: &Value) -> Option<&str> {
    record.get("attributes")?.get(AWS_TRACE_HEADER)?.as_str()
}

/// Begins the segment that processes one record of a Lambda SQS event, in the producer's
/// trace: [`begin_message_segment`] with the record's [`record_trace_header`], so the same
/// rules apply (the producer's trace id and entity as parent, its `Sampled=1` or `Sampled=0`
/// obeyed; without a valid header, a new trace the sampler decides).
///
/// Inside a Lambda function, see the [module documentation](crate::sqs#in-aws-lambda) for the
/// alternative the official SDKs use, [`begin_record_subsegment`].
///
/// # Examples
///
/// ```
/// use serde_json::json;
/// use xray_aws_sdk::sqs;
///
/// let recorder = xray_sdk::Recorder::builder()
///     .ignore_environment()
///     .with_emitter(xray_sdk::InMemoryEmitter::new())
///     .build()
///     .unwrap();
/// let record = json!({
///     "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
///     "attributes": {
///         "AWSTraceHeader": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
///     },
/// });
/// let segment = sqs::begin_record_segment(&recorder, "orders-worker", &record);
/// assert_eq!(segment.trace_id().to_string(), "1-5759e988-bd862e3fe1be46a994272793");
/// assert!(!segment.is_sampled(), "the producer's Sampled=0 is obeyed");
/// ```
pub fn begin_record_segment(recorder: &Recorder, name: &str, record: &Value) -> Segment {
    begin_message_segment(recorder, name, record_trace_header(record))
}

/// Begins the subsegment of `parent` (the Lambda invocation's segment, or any entity) that
/// processes one record of a Lambda SQS event, sampled only when the record's
/// `AWSTraceHeader` says `Sampled=1`: the official SDKs' oversampling mitigation (see the
/// [module documentation](crate::sqs#batches-and-oversampling)).
///
/// For a sampled record it is `parent.begin_subsegment(name)`, so it is recorded when
/// `parent` is; for any other record (`Sampled=0`, no decision, no attribute) it is
/// [`parent.begin_subsegment_without_sampling(name)`](Entity::begin_subsegment_without_sampling):
/// nothing is recorded and the calls made under it send `Sampled=0`. Either way it stays in
/// `parent`'s trace; Lambda links that trace to the producer's.
///
/// # Examples
///
/// ```
/// use serde_json::json;
/// use xray_aws_sdk::sqs;
///
/// let recorder = xray_sdk::Recorder::builder()
///     .ignore_environment()
///     .with_emitter(xray_sdk::InMemoryEmitter::new())
///     .build()
///     .unwrap();
/// let invocation = recorder.begin_lambda_invocation(Some(
///     "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
/// ));
/// let unsampled = json!({ "attributes": {
///     "AWSTraceHeader": "Root=1-67891233-abcdef012345678912345678;Parent=463ac35c9f6413ad;Sampled=0",
/// } });
/// let work = sqs::begin_record_subsegment(&invocation, "process-message", &unsampled);
/// assert!(!work.is_recording());
/// assert_eq!(work.trace_id(), invocation.trace_id(), "still the invocation's trace");
/// assert!(work.trace_header().to_string().ends_with(";Sampled=0"));
/// ```
pub fn begin_record_subsegment(parent: &Entity, name: &str, record: &Value) -> Subsegment {
    if record_trace_header(record).is_some_and(xray_sdk::header::is_sqs_message_sampled) {
        parent.begin_subsegment(name)
    } else {
        parent.begin_subsegment_without_sampling(name)
    }
}
