//! Bytes per span on the wire: what `OtlpUdpTransport` sends for the A shape (a segment and a
//! subsegment with one annotation and one metadata entry), against what `opentelemetry-otlp`
//! sends for the same spans. Its OTLP/HTTP exporter builds the body with
//! `opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope` and
//! protobuf-encodes the `ExportTraceServiceRequest` (`build_trace_export_body`): the same
//! spans, attribute for attribute, go through that code here.
#![cfg(feature = "otlp")]

use std::borrow::Cow;
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use prost::Message as _;
use xray_sdk::otlp::proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use xray_sdk::otlp::proto::tonic::trace::v1 as proto;
use xray_sdk::sampling::{LocalSampler, SamplingRules};
use xray_sdk::transport::DAEMON_HEADER;
use xray_sdk::{DaemonAddress, Recorder, TransportKind};

/// The A shape through the real transport, as the datagram's protobuf (base64 removed).
fn a_shape_on_the_wire() -> Vec<u8> {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let all = SamplingRules::builder()
        .with_default(0, 1.0)
        .build()
        .unwrap();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_service_name("orders")
        .with_sampler(Arc::new(LocalSampler::new(all)))
        .with_daemon_address(DaemonAddress::new(sink.local_addr().unwrap()))
        .with_transport_kind(TransportKind::OtlpUdp)
        .build()
        .unwrap();
    let segment = recorder.begin_segment("orders");
    let sub = segment.begin_subsegment("load-basket");
    sub.put_annotation("order_id", 42);
    sub.put_metadata("basket", &serde_json::json!({"items": 3}));
    sub.end();
    segment.end();
    let mut buf = vec![0u8; 70_000];
    let n = sink.recv(&mut buf).expect("a datagram");
    let body = buf[..n]
        .strip_prefix(DAEMON_HEADER)
        .and_then(|rest| rest.strip_prefix(b"T1S"))
        .expect("header line, then T1S");
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

fn value(any: &AnyValue) -> Value {
    match any.value.as_ref().expect("a value") {
        any_value::Value::StringValue(s) => Value::String(s.clone().into()),
        any_value::Value::BoolValue(b) => Value::Bool(*b),
        any_value::Value::IntValue(i) => Value::I64(*i),
        any_value::Value::DoubleValue(d) => Value::F64(*d),
        any_value::Value::ArrayValue(array) => {
            let strings: Vec<StringValue> = array
                .values
                .iter()
                .map(|v| match &v.value {
                    Some(any_value::Value::StringValue(s)) => StringValue::from(s.clone()),
                    other => panic!("an array of strings only here, not {other:?}"),
                })
                .collect();
            Value::Array(Array::String(strings))
        }
        other => panic!("no such attribute in the A shape: {other:?}"),
    }
}

fn key_values(attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> Vec<KeyValue> {
    attributes
        .iter()
        .map(|kv| KeyValue::new(kv.key.clone(), value(kv.value.as_ref().expect("a value"))))
        .collect()
}

/// The same span as the OpenTelemetry SDK holds it.
fn span_data(span: &proto::Span, scope: &InstrumentationScope) -> SpanData {
    let id = |bytes: &[u8]| SpanId::from_bytes(bytes.try_into().expect("8 bytes"));
    let kind = match span.kind {
        2 => SpanKind::Server,
        3 => SpanKind::Client,
        4 => SpanKind::Producer,
        5 => SpanKind::Consumer,
        _ => SpanKind::Internal,
    };
    let status = match &span.status {
        Some(s) if s.code == 2 => Status::error(s.message.clone()),
        Some(s) if s.code == 1 => Status::Ok,
        _ => Status::Unset,
    };
    assert!(
        span.events.is_empty() && span.links.is_empty(),
        "not in the A shape"
    );
    SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes(span.trace_id.as_slice().try_into().expect("16 bytes")),
            id(&span.span_id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: if span.parent_span_id.is_empty() {
            SpanId::INVALID
        } else {
            id(&span.parent_span_id)
        },
        parent_span_is_remote: false,
        span_kind: kind,
        name: Cow::Owned(span.name.clone()),
        start_time: UNIX_EPOCH + Duration::from_nanos(span.start_time_unix_nano),
        end_time: UNIX_EPOCH + Duration::from_nanos(span.end_time_unix_nano),
        attributes: key_values(&span.attributes),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    }
}

#[test]
fn a_span_costs_no_more_bytes_than_opentelemetry_otlp_sends() {
    let ours = a_shape_on_the_wire();
    let request = ExportTraceServiceRequest::decode(&ours[..]).unwrap();
    let resource_spans = &request.resource_spans[0];
    let scope_spans = &resource_spans.scope_spans[0];
    let spans = &scope_spans.spans;
    assert_eq!(spans.len(), 2, "the segment and its subsegment");

    let scope = scope_spans.scope.as_ref().map_or_else(
        || InstrumentationScope::builder("").build(),
        |s| {
            InstrumentationScope::builder(s.name.clone())
                .with_version(s.version.clone())
                .build()
        },
    );
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_attributes(key_values(
            &resource_spans
                .resource
                .as_ref()
                .expect("a resource")
                .attributes,
        ))
        .build();
    let theirs = ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(
            spans.iter().map(|s| span_data(s, &scope)).collect(),
            &ResourceAttributesWithSchema::from(&resource),
        ),
    }
    .encode_to_vec();

    // The same content: both decode to the same spans.
    let decoded = ExportTraceServiceRequest::decode(&theirs[..]).unwrap();
    let their_spans = &decoded.resource_spans[0].scope_spans[0].spans;
    assert_eq!(their_spans.len(), spans.len());
    for (a, b) in spans.iter().zip(their_spans) {
        assert_eq!(
            (&a.name, &a.span_id, &a.attributes),
            (&b.name, &b.span_id, &b.attributes)
        );
    }

    eprintln!(
        "A shape: {} bytes for {} spans ({} a span); opentelemetry-otlp: {} bytes ({} a span)",
        ours.len(),
        spans.len(),
        ours.len() / spans.len(),
        theirs.len(),
        theirs.len() / spans.len()
    );
    assert!(
        ours.len() <= theirs.len(),
        "ours {} bytes, opentelemetry-otlp {}",
        ours.len(),
        theirs.len()
    );
}
