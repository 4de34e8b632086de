//! Trace propagation through Amazon SQS messages.
//!
//! X-Ray links a consumer to its producer through the `AWSTraceHeader` message system
//! attribute. Amazon SQS fills it from the `X-Amzn-Trace-Id` header of a traced `SendMessage`
//! call (which [`XRayInterceptor`](crate::XRayInterceptor) sets); [`message_trace_header`]
//! gives the value to set it explicitly (for queues that do not, or to choose the parent), and
//! [`begin_message_segment`] continues the producer's trace when a message is processed.

use xray_core::{Recorder, SamplingRequest, Segment, TraceHeader};

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
    let entity = xray_core::current()?;
    let mut value = String::with_capacity(96);
    entity.trace_header().write_to(&mut value);
    Some(value)
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
/// let recorder = xray_core::Recorder::builder()
///     .ignore_environment()
///     .with_emitter(xray_core::InMemoryEmitter::new())
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
    let header = aws_trace_header.and_then(|h| match TraceHeader::parse(h) {
        Ok(header) => Some(header),
        Err(e) => {
            tracing::debug!(target: "xray_aws_sdk", error = %e, "AWSTraceHeader ignored");
            None
        }
    });
    recorder.begin_segment_with(name, header.as_ref(), &SamplingRequest::new())
}
