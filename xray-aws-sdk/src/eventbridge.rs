//! Trace propagation through Amazon EventBridge events.
//!
//! # Putting events
//!
//! EventBridge takes an event's trace from the `TraceHeader` field of its `PutEvents` entry,
//! or, for an entry without one, from the `X-Amzn-Trace-Id` header of the call, which
//! [`XRayInterceptor`](crate::XRayInterceptor) sets with the `EventBridge` subsegment of the
//! call as parent. The field wins over the header. [`entry_trace_header`] gives the value to
//! set it explicitly: to make another entity the parent, or to put events of several traces
//! in one call.
//!
//! # Receiving
//!
//! The event EventBridge delivers to a target does not carry the header: EventBridge's guide
//! says so (*Amazon EventBridge integration with AWS X-Ray*: "The trace header is not
//! available on the event that's delivered to the invocation target"), and the event's JSON
//! (`version`, `id`, `detail-type`, `source`, `account`, `time`, `region`, `resources`,
//! `detail`) has no field for it. EventBridge passes it with the delivery instead, and only
//! for events that came from a `PutEvents` call that carried one (not for scheduled events,
//! partner events or events of AWS services):
//!
//! | target | where the header is | continue the trace with |
//! |---|---|---|
//! | AWS Lambda | the invocation's own header, `lambda_runtime::Context::xray_trace_id` | [`Recorder::begin_lambda_invocation`](xray_sdk::Recorder::begin_lambda_invocation) |
//! | Amazon SQS | the message's `AWSTraceHeader` system attribute, as for a rule's dead-letter queue; in a Lambda SQS event, `Records[].attributes.AWSTraceHeader` | [`sqs::begin_message_segment`](crate::sqs::begin_message_segment), [`sqs::begin_record_segment`](crate::sqs::begin_record_segment) |
//!
//! Archived and replayed events have no header.

use crate::propagation;

/// The value to put in a `PutEvents` entry's `TraceHeader` field: the trace header of the
/// current entity (`Root=...;Parent=<current entity>;Sampled=1|0`), or `None` outside any
/// segment.
///
/// # Examples
///
/// ```
/// use aws_sdk_eventbridge::types::PutEventsRequestEntry;
/// use xray_aws_sdk::eventbridge;
///
/// let entry = PutEventsRequestEntry::builder()
///     .source("orders")
///     .detail_type("OrderPlaced")
///     .detail(r#"{"order":42}"#)
///     .set_trace_header(eventbridge::entry_trace_header())
///     .build();
/// // Outside a segment there is nothing to propagate.
/// assert_eq!(entry.trace_header(), None);
///
/// let recorder = xray_sdk::Recorder::builder()
///     .ignore_environment()
///     .with_emitter(xray_sdk::InMemoryEmitter::new())
///     .build()
///     .unwrap();
/// let segment = recorder.begin_segment("orders-api");
/// let _current = segment.enter();
/// let header = eventbridge::entry_trace_header().unwrap();
/// assert!(header.starts_with(&format!("Root={};Parent={}", segment.trace_id(), segment.id())));
/// ```
pub fn entry_trace_header() -> Option<String> {
    propagation::current_header()
}
