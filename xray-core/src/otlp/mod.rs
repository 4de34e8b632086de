//! Finished entities as OpenTelemetry spans: the segment-to-span mapping X-Ray's own
//! translator reads back, and the packing of spans into `ExportTraceServiceRequest`s within a
//! byte budget. Shared by the OTLP transports (`OtlpUdpTransport` here, and the OTLP/HTTP
//! transport of the `xray-otlp-http` crate). Requires the `otlp` feature.
//!
//! The reverse, [`to_documents`], turns spans back into segment documents as X-Ray does: the
//! translator's rules, then the corrections the mapping carries.
//!
//! The span types are those of [`opentelemetry_proto`] (re-exported as [`proto`]), generated
//! from the OpenTelemetry protobuf definitions.

mod mapping;
mod reverse;

pub use opentelemetry_proto as proto;
pub use reverse::{to_documents, to_documents_counted};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use crate::transport::{Finished, FinishedEntity, FinishedKind};

/// The instrumentation scope of every span: this SDK.
fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "xray-rs".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

/// Every entity of `finished` as a span, parents before children, with the resource they
/// share. `service_name` names the resource of independent subsegments, whose segment is not
/// at hand; a segment's resource is named after the segment.
///
/// Each span carries the segment fields as the attributes X-Ray's OpenTelemetry translator
/// reads, so that X-Ray rebuilds the same segment document from it.
///
/// # Examples
///
/// ```
/// use xray_sdk::{Document, SegmentId, TraceId};
/// use xray_sdk::transport::{Finished, FinishedKind};
///
/// let trace_id = TraceId::new();
/// let mut doc = Document::new("orders", SegmentId::new(), 1.0);
/// doc.set_trace_id(trace_id);
/// doc.set_end_time(2.0);
/// let finished = Finished::from_document(FinishedKind::Segment, trace_id, &doc);
/// let (_resource, spans) = xray_sdk::otlp::to_spans(&finished, "orders");
/// assert_eq!(spans.len(), 1);
/// assert_eq!(spans[0].span_id, doc.id().as_u64().to_be_bytes());
/// ```
pub fn to_spans(finished: &Finished<'_>, service_name: &str) -> (Resource, Vec<Span>) {
    let trace_id = finished.trace_id();
    let root = finished.root();
    let doc = root.document();
    let segment = finished.kind() == FinishedKind::Segment;
    let mut out = Vec::with_capacity(finished.len());
    out.push(mapping::span(doc, trace_id, finished.parent_id(), segment));
    for child in root.children() {
        push_subtree(child, doc.id(), trace_id, &mut out);
    }
    let resource = if segment {
        mapping::resource(doc)
    } else {
        mapping::resource_for(service_name)
    };
    (resource, out)
}

fn push_subtree(
    e: FinishedEntity<'_>,
    parent: crate::SegmentId,
    trace_id: crate::TraceId,
    out: &mut Vec<Span>,
) {
    let doc = e.document();
    out.push(mapping::span(doc, trace_id, Some(parent), false));
    for child in e.children() {
        push_subtree(child, doc.id(), trace_id, out);
    }
}

/// Bytes a length-delimited field of `len` bytes takes: its tag, its length, itself.
fn field_len(len: usize) -> usize {
    1 + prost::length_delimiter_len(len) + len
}

/// Packs `spans` into encoded requests of at most `max_bytes` each, every one with its own
/// copy of the resource and scope. Calls `emit(bytes, spans_in_it)` for each, and
/// `too_large(span)` for a span that cannot fit even alone. Returns nothing: the callbacks
/// count.
pub(crate) fn pack(
    resource: &Resource,
    spans: Vec<Span>,
    max_bytes: usize,
    buf: &mut Vec<u8>,
    mut emit: impl FnMut(&[u8], usize),
    mut too_large: impl FnMut(&Span),
) {
    let scope = scope();
    // Resource, scope and the three nested length prefixes (at most 5 bytes each over what the
    // estimate below counts): a bound, so an estimate that fits always encodes within budget.
    let fixed = field_len(resource.encoded_len()) + field_len(scope.encoded_len()) + 15 + 2 * 2;
    let mut batch: Vec<Span> = Vec::new();
    let mut batch_len = fixed;
    let mut flush = |batch: &mut Vec<Span>, buf: &mut Vec<u8>| {
        if batch.is_empty() {
            return;
        }
        let n = batch.len();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope.clone()),
                    spans: std::mem::take(batch),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        buf.clear();
        buf.reserve(request.encoded_len());
        if request.encode(buf).is_ok() {
            emit(buf, n);
        }
    };
    for span in spans {
        let len = field_len(span.encoded_len());
        if fixed + len > max_bytes {
            too_large(&span);
            continue;
        }
        if batch_len + len > max_bytes {
            flush(&mut batch, buf);
            batch_len = fixed;
        }
        batch_len += len;
        batch.push(span);
    }
    flush(&mut batch, buf);
}
