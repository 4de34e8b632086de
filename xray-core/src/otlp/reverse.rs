//! OpenTelemetry spans as X-Ray segment documents, the way X-Ray reads them: the translator's
//! span-to-segment rules (collector-contrib `exporter/awsxrayexporter/internal/translator`:
//! `segment.go`, `http.go`, `cause.go`, `aws.go`, `sql.go`, `service.go`, `span_links.go`, "the
//! translator" below, with every feature gate and exporter option at its default), then the
//! reader of the residual `mapping.rs` sends.
//!
//! Each span goes through two stages.
//!
//! 1. `make_segment`: what the translator writes, numbers as Go writes them (a value it holds
//!    as a `float64` comes out integral when it is: `2.0` as `2`).
//! 2. `restore`: the translator's constant artefacts are removed (`normalise`, layer 3 of
//!    `mapping.rs`), then the residual (metadata namespace `AWS.xray.segment`) is applied. It
//!    reads only the translated document, never the span: it rebuilds what arrives at X-Ray.
//!
//! A span that did not come from the mapping carries no residual and comes out as the
//! translator makes it, normalised. `xray-core/tests/otlp/to_segments.py` is the same reader in
//! Python; the two must agree, and both must agree with `mapping.rs`.
//!
//! The input is untrusted: a span whose trace or span id has the wrong length (or is zero) is
//! skipped, nested attribute values are read to a bounded depth, and nothing here panics.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::{Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde_json::{Map, Number, Value};

use super::mapping::RESIDUAL_NAMESPACE;
use crate::SegmentId;

/// The translator's metadata rule (`makeXRayAttributes`): `aws.xray.metadata.<ns>`.
const METADATA_PREFIX: &str = "aws.xray.metadata.";
/// The translator's annotation rule (`makeXRayAttributes`): the keys to index.
const ANNOTATIONS_ATTR: &str = "aws.xray.annotations";
const DEFAULT_NS: &str = "default";
/// Blocks the translator builds from the resource for every span: a subsegment's own come
/// from the residual.
const RESOURCE_WIDE_TOP: &[&str] = &["origin", "service"];
const RESOURCE_WIDE_AWS: &[&str] = &[
    "ec2",
    "ecs",
    "eks",
    "elastic_beanstalk",
    "cloudwatch_logs",
    "xray",
];
/// How deep nested attribute values (arrays, key-value lists) and JSON values are followed.
/// The protobuf decoder stops at 100 nested messages and `serde_json` at 128 nested values,
/// so real input stays within this.
const MAX_DEPTH: usize = 128;

const KIND_INTERNAL: i32 = SpanKind::Internal as i32;
const KIND_SERVER: i32 = SpanKind::Server as i32;
const KIND_CLIENT: i32 = SpanKind::Client as i32;
const KIND_PRODUCER: i32 = SpanKind::Producer as i32;
const KIND_CONSUMER: i32 = SpanKind::Consumer as i32;
const STATUS_ERROR: i32 = StatusCode::Error as i32;

type Object = Map<String, Value>;

/// Segment documents (one per span) from an OTLP trace export request, as X-Ray turns spans
/// into segments: the OpenTelemetry collector's X-Ray translator rules, then the corrections
/// the segment-to-span mapping ([`to_spans`](super::to_spans)) carries in the metadata
/// namespace `AWS.xray.segment`. Spans from the mapping come back as the documents they were
/// made from; other spans (the AWS Distro for OpenTelemetry, any OpenTelemetry SDK) come out
/// as X-Ray makes them.
///
/// The documents are flat, in span order: a span of kind SERVER or without a valid parent span
/// id is a segment; any other span is a subsegment document with `"type": "subsegment"` and
/// its `parent_id` (children are not nested into their parents). A span marked
/// `aws.span.kind = LOCAL_ROOT` that is not SERVER or INTERNAL gives two documents, as the
/// translator makes them: the dependency subsegment, then the service segment.
///
/// Ids: the trace id is `1-xxxxxxxx-yyyyyyyyyyyyyyyyyyyyyyyy` from the 16 bytes of the OTLP
/// trace id, span ids are 16 hex digits; times are epoch seconds. A span whose trace id is not
/// 16 bytes, whose span id is not 8 bytes, whose parent span id is neither empty nor 8 bytes,
/// or whose trace or span id is zero is skipped: [`to_documents_counted`] also tells how many
/// were.
///
/// # Examples
///
/// ```
/// use xray_sdk::otlp::proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
/// use xray_sdk::otlp::proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
/// use xray_sdk::{Document, SegmentId, TraceId};
/// use xray_sdk::transport::{Finished, FinishedKind};
///
/// let trace_id = TraceId::new();
/// let mut doc = Document::new("orders", SegmentId::new(), 1_700_000_000.5);
/// doc.set_trace_id(trace_id);
/// doc.set_end_time(1_700_000_001.25);
/// let finished = Finished::from_document(FinishedKind::Segment, trace_id, &doc);
/// let (resource, spans) = xray_sdk::otlp::to_spans(&finished, "orders");
/// let request = ExportTraceServiceRequest {
///     resource_spans: vec![ResourceSpans {
///         resource: Some(resource),
///         scope_spans: vec![ScopeSpans {
///             spans,
///             ..Default::default()
///         }],
///         ..Default::default()
///     }],
/// };
/// let docs = xray_sdk::otlp::to_documents(&request);
/// assert_eq!(docs.len(), 1);
/// assert_eq!(docs[0]["name"], "orders");
/// assert_eq!(docs[0]["id"], doc.id().to_string());
/// assert_eq!(docs[0]["trace_id"], trace_id.to_string());
/// assert_eq!(docs[0]["end_time"], 1_700_000_001.25);
/// ```
pub fn to_documents(request: &ExportTraceServiceRequest) -> Vec<Value> {
    to_documents_counted(request).0
}

/// [`to_documents`], and how many spans were skipped because their ids cannot make a
/// document, so that a receiver can count what it could not keep.
///
/// # Examples
///
/// ```
/// use xray_sdk::otlp::proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
/// use xray_sdk::otlp::proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
///
/// let bad = Span {
///     trace_id: vec![0; 16], // zero: no trace
///     span_id: vec![1; 8],
///     name: "orders".into(),
///     ..Default::default()
/// };
/// let request = ExportTraceServiceRequest {
///     resource_spans: vec![ResourceSpans {
///         scope_spans: vec![ScopeSpans {
///             spans: vec![bad],
///             ..Default::default()
///         }],
///         ..Default::default()
///     }],
/// };
/// let (docs, skipped) = xray_sdk::otlp::to_documents_counted(&request);
/// assert!(docs.is_empty());
/// assert_eq!(skipped, 1);
/// ```
pub fn to_documents_counted(request: &ExportTraceServiceRequest) -> (Vec<Value>, usize) {
    let mut skipped = 0;
    let mut out = Vec::new();
    for resource_spans in &request.resource_spans {
        let res = resource_spans
            .resource
            .as_ref()
            .map(|r| Attrs::of(&r.attributes))
            .unwrap_or_default();
        for scope_spans in &resource_spans.scope_spans {
            for span in &scope_spans.spans {
                if !well_formed(span) {
                    skipped += 1;
                    continue;
                }
                for seg in segments_of(span, &res) {
                    out.push(restore(seg));
                }
            }
        }
    }
    (out, skipped)
}

/// Whether the span's ids can make a document: a 16-byte trace id and an 8-byte span id, both
/// non-zero, and an empty or 8-byte parent span id.
fn well_formed(span: &Span) -> bool {
    span.trace_id.len() == 16
        && span.trace_id.iter().any(|b| *b != 0)
        && span.span_id.len() == 8
        && span.span_id.iter().any(|b| *b != 0)
        && (span.parent_span_id.is_empty() || span.parent_span_id.len() == 8)
}

// ===== attribute values =====

/// An attribute value as `pcommon.Value` holds it: its accessors give the zero value for
/// another type.
#[derive(Clone, Copy)]
enum V<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Slice(&'a [AnyValue]),
    Map(&'a [KeyValue]),
    Bytes(&'a [u8]),
    Empty,
}

impl<'a> V<'a> {
    fn of(value: Option<&'a AnyValue>) -> Self {
        match value.and_then(|v| v.value.as_ref()) {
            Some(Any::StringValue(s)) => V::Str(s.as_str()),
            Some(Any::BoolValue(b)) => V::Bool(*b),
            Some(Any::IntValue(i)) => V::Int(*i),
            Some(Any::DoubleValue(d)) => V::Double(*d),
            Some(Any::ArrayValue(a)) => V::Slice(a.values.as_slice()),
            Some(Any::KvlistValue(l)) => V::Map(l.values.as_slice()),
            Some(Any::BytesValue(b)) => V::Bytes(b.as_slice()),
            // Profiles only; other signals treat it as absent.
            Some(Any::StringValueStrindex(_)) | None => V::Empty,
        }
    }

    /// `Value.Str()`.
    fn str(self) -> &'a str {
        match self {
            V::Str(s) => s,
            _ => "",
        }
    }

    /// `Value.Int()`.
    fn int(self) -> i64 {
        match self {
            V::Int(i) => i,
            _ => 0,
        }
    }

    fn is_unset(&self) -> bool {
        matches!(self, V::Empty)
    }

    /// `Value.AsString()`: scalars as text, the rest as compact JSON.
    fn stringify(self) -> String {
        match self {
            V::Str(s) => s.to_owned(),
            V::Bool(b) => b.to_string(),
            V::Int(i) => i.to_string(),
            V::Double(f) => go_format_float(f),
            V::Empty => String::new(),
            V::Slice(_) | V::Map(_) | V::Bytes(_) => {
                let mut out = String::new();
                self.write_json(&mut out, 0);
                out
            }
        }
    }

    /// `Value.AsRaw()` as `json.Marshal` writes it into a segment: bytes as base64, floats as
    /// Go writes them, an empty value as `null`.
    fn raw(self, depth: usize) -> Value {
        match self {
            V::Str(s) => Value::from(s),
            V::Bool(b) => Value::Bool(b),
            V::Int(i) => Value::from(i),
            V::Double(f) => go_number(f),
            V::Bytes(b) => Value::String(STANDARD.encode(b)),
            V::Empty => Value::Null,
            V::Slice(_) | V::Map(_) if depth >= MAX_DEPTH => Value::Null,
            V::Slice(items) => Value::Array(
                items
                    .iter()
                    .map(|item| V::of(Some(item)).raw(depth + 1))
                    .collect(),
            ),
            V::Map(kvs) => {
                let mut out = Object::new();
                for kv in kvs {
                    if !out.contains_key(kv.key.as_str()) {
                        out.insert(kv.key.clone(), V::of(kv.value.as_ref()).raw(depth + 1));
                    }
                }
                Value::Object(out)
            }
        }
    }

    /// The raw value as JSON text: compact, keys in wire order, non-ASCII escaped, floats
    /// written shortest.
    fn write_json(self, out: &mut String, depth: usize) {
        match self {
            V::Str(s) => push_json_string(out, s),
            V::Bool(b) => out.push_str(if b { "true" } else { "false" }),
            V::Int(i) => {
                let _ = write!(out, "{i}");
            }
            V::Double(f) => out.push_str(&float_repr(f)),
            V::Bytes(b) => push_json_string(out, &STANDARD.encode(b)),
            V::Empty => out.push_str("null"),
            V::Slice(_) | V::Map(_) if depth >= MAX_DEPTH => out.push_str("null"),
            V::Slice(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    V::of(Some(item)).write_json(out, depth + 1);
                }
                out.push(']');
            }
            V::Map(kvs) => {
                out.push('{');
                for (i, (key, value)) in Attrs::of(kvs).entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_json_string(out, key);
                    out.push(':');
                    value.write_json(out, depth + 1);
                }
                out.push('}');
            }
        }
    }
}

/// An attribute map in wire order; `Map.Get` finds the first of duplicate keys, so only the
/// first is kept.
#[derive(Clone, Default)]
struct Attrs<'a> {
    entries: Vec<(&'a str, V<'a>)>,
}

impl<'a> Attrs<'a> {
    fn of(kvs: &'a [KeyValue]) -> Self {
        let mut seen = HashSet::with_capacity(kvs.len());
        let entries = kvs
            .iter()
            .filter(|kv| seen.insert(kv.key.as_str()))
            .map(|kv| (kv.key.as_str(), V::of(kv.value.as_ref())))
            .collect();
        Self { entries }
    }

    fn get(&self, key: &str) -> Option<V<'a>> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|&(_, v)| v)
    }

    fn contains(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| *k == key)
    }

    fn remove(&mut self, key: &str) -> Option<V<'a>> {
        let at = self.entries.iter().position(|(k, _)| *k == key)?;
        Some(self.entries.remove(at).1)
    }

    fn push(&mut self, key: &'a str, value: V<'a>) {
        self.entries.push((key, value));
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// One span event: its name, attributes and time.
struct Ev<'a> {
    name: &'a str,
    attrs: Attrs<'a>,
    time: u64,
}

// ===== segment.go =====

/// `MakeSegmentsFromSpan`: one segment, or for a local root that is also a dependency
/// (`aws.span.kind = LOCAL_ROOT`, kind neither SERVER nor INTERNAL) a dependency subsegment
/// and a service segment with a new id.
fn segments_of<'a>(span: &'a Span, res: &Attrs<'a>) -> Vec<Object> {
    let attrs = Attrs::of(&span.attributes);
    let dependency_kind = matches!(span.kind, KIND_CLIENT | KIND_CONSUMER | KIND_PRODUCER);
    if !is_local_root(&attrs) {
        let mut seg = make_segment(
            span,
            &span.span_id,
            &span.parent_span_id,
            attrs.clone(),
            res,
        );
        if dependency_kind
            && seg.contains_key("type")
            && !seg.contains_key("namespace")
            && attrs.contains("aws.remote.service")
        {
            set(&mut seg, "namespace", "remote");
        }
        return vec![seg];
    }
    if matches!(span.kind, KIND_SERVER | KIND_INTERNAL) {
        let mut seg = make_segment(span, &span.span_id, &span.parent_span_id, attrs, res);
        seg.remove("type");
        seg.remove("namespace");
        return vec![seg];
    }

    let service_id = SegmentId::new().as_u64().to_be_bytes();
    let mut dep = make_segment(span, &span.span_id, &service_id, attrs.clone(), res);
    set(&mut dep, "type", "subsegment");
    if !dep.contains_key("namespace") {
        set(&mut dep, "namespace", "remote");
    }
    if span.kind == KIND_CONSUMER {
        dep.remove("links");
    }
    if let Some(v) = attrs.get("aws.remote.service") {
        set(&mut dep, "name", trim_aws_sdk_prefix(v.str(), &attrs));
    }

    let svc_attrs = Attrs {
        entries: attrs
            .entries
            .iter()
            .copied()
            .filter(|(k, _)| {
                !matches!(
                    *k,
                    "aws.remote.service"
                        | "aws.remote.operation"
                        | "remoteTarget"
                        | "K8s.RemoteNamespace"
                )
            })
            .collect(),
    };
    let mut svc = make_segment(span, &service_id, &span.parent_span_id, svc_attrs, res);
    if let Some(v) = attrs.get("aws.local.service") {
        set(&mut svc, "name", v.str());
    }
    svc.remove("http");
    if let Some(Value::Object(aws)) = svc.get_mut("aws") {
        for key in [
            "operation",
            "account_id",
            "region",
            "request_id",
            "queue_url",
            "table_name",
            "table_names",
        ] {
            aws.remove(key);
        }
    }
    if let Some(Value::Object(metadata)) = svc.get_mut("metadata") {
        for namespace in metadata.values_mut() {
            if let Value::Object(ns) = namespace {
                ns.retain(|k, _| k.starts_with("otel.resource."));
            }
        }
    }
    svc.remove("type");
    svc.remove("namespace");
    if span.kind != KIND_CONSUMER {
        svc.remove("links");
    }
    vec![dep, svc]
}

fn is_local_root(attrs: &Attrs<'_>) -> bool {
    attrs
        .get("aws.span.kind")
        .is_some_and(|v| v.str() == "LOCAL_ROOT")
}

/// `isAwsSdkSpan`: `rpc.system = aws-api`.
fn is_aws_sdk_span(attrs: &Attrs<'_>) -> bool {
    attrs
        .get("rpc.system")
        .is_some_and(|v| v.str() == "aws-api")
}

/// `trimAwsSdkPrefix`: `AWS.SDK.` or `AWS::` cut from the remote service of an AWS SDK span.
fn trim_aws_sdk_prefix<'s>(name: &'s str, attrs: &Attrs<'_>) -> &'s str {
    if is_aws_sdk_span(attrs) {
        if let Some(rest) = name.strip_prefix("AWS.SDK.") {
            return rest;
        }
        if let Some(rest) = name.strip_prefix("AWS::") {
            return rest;
        }
    }
    name
}

/// `MakeSegment`: the segment of one span, with `span_id`, `parent_span_id` and `attributes`
/// in place of the span's own (`MakeSegmentsFromSpan` changes them).
fn make_segment<'a>(
    span: &'a Span,
    span_id: &[u8],
    parent_span_id: &[u8],
    attributes: Attrs<'a>,
    res: &Attrs<'a>,
) -> Object {
    let kind = span.kind;
    let parent_id = span_id_of(parent_span_id);
    let seg_type = if kind != KIND_SERVER && !parent_id.is_empty() {
        "subsegment"
    } else {
        ""
    };
    let store_resource = seg_type.is_empty();
    let events: Vec<Ev<'a>> = span
        .events
        .iter()
        .map(|e| Ev {
            name: e.name.as_str(),
            attrs: Attrs::of(&e.attributes),
            time: e.time_unix_nano,
        })
        .collect();

    let start = span.start_time_unix_nano as f64 / 1e9;
    let end = span.end_time_unix_nano as f64 / 1e9;
    let (http_filtered, http) = make_http(&attributes, kind, &events);
    let (flags, cause_filtered, cause) = make_cause(span, &attributes, http_filtered, &events, res);
    let origin = determine_origin(res);
    let (aws_filtered, aws) = make_aws(cause_filtered, res);
    let service = make_service(res);
    let (sql_filtered, sql) = make_sql(span, aws_filtered);
    let xray = make_xray_attributes(sql_filtered, res, store_resource);
    let links = make_span_links(&span.links);

    // The name and namespace, in `MakeSegment`'s order.
    let mut name = String::new();
    let mut namespace = "";
    if kind == KIND_SERVER
        && let Some(v) = attributes.get("aws.local.service")
    {
        name = v.str().to_owned();
    }
    if kind == KIND_INTERNAL
        && is_local_root(&attributes)
        && let Some(v) = attributes.get("aws.local.service")
    {
        name = v.str().to_owned();
    }
    if matches!(kind, KIND_CLIENT | KIND_PRODUCER | KIND_CONSUMER)
        && let Some(v) = attributes.get("aws.remote.service")
    {
        name = trim_aws_sdk_prefix(v.str(), &attributes).to_owned();
    }
    if name.is_empty()
        && let Some(v) = attributes.get("peer.service")
    {
        name = v.str().to_owned();
    }
    if is_aws_sdk_span(&attributes) {
        namespace = "aws";
    }
    if name.is_empty()
        && let Some(v) = attributes.get("aws.service")
    {
        name = v.str().to_owned();
        if namespace.is_empty() {
            namespace = "aws";
        }
    }
    if name.is_empty()
        && let Some(v) = attributes.get("db.name")
    {
        name = v.str().to_owned();
        if let Some(c) = attributes.get("db.connection_string") {
            let connection = c.str();
            let host = url_hostname(connection.strip_prefix("jdbc:").unwrap_or(connection));
            if !host.is_empty() {
                name.push('@');
                name.push_str(host);
            }
        }
    }
    if name.is_empty()
        && kind == KIND_SERVER
        && let Some(v) = res.get("service.name")
    {
        name = v.str().to_owned();
    }
    for key in ["rpc.service", "http.host", "net.peer.name"] {
        if name.is_empty()
            && let Some(v) = attributes.get(key)
        {
            name = v.str().to_owned();
        }
    }
    if name.is_empty() {
        name = fix_segment_name(&span.name);
    }
    if namespace.is_empty() && kind == KIND_CLIENT {
        namespace = "remote";
    }

    let mut seg = Object::new();
    set(&mut seg, "name", name);
    put(&mut seg, "id", go_string(span_id_of(span_id)));
    set(&mut seg, "start_time", go_number(start));
    put(&mut seg, "service", service);
    put(&mut seg, "origin", go_text(origin));
    put(&mut seg, "user", xray.user.and_then(go_text));
    put(
        &mut seg,
        "links",
        (!links.is_empty()).then_some(Value::Array(links)),
    );
    set(&mut seg, "trace_id", trace_id_of(&span.trace_id));
    set(&mut seg, "end_time", go_number(end));
    put(&mut seg, "http", http);
    set(&mut seg, "fault", flags.fault);
    set(&mut seg, "error", flags.error);
    set(&mut seg, "throttle", flags.throttle);
    put(&mut seg, "cause", cause);
    put(&mut seg, "aws", aws);
    if !xray.annotations.is_empty() {
        set(&mut seg, "annotations", xray.annotations);
    }
    if !xray.metadata.is_empty() {
        set(&mut seg, "metadata", xray.metadata);
    }
    put(&mut seg, "namespace", go_text(namespace));
    put(&mut seg, "parent_id", go_string(parent_id));
    put(&mut seg, "type", go_text(seg_type));
    put(&mut seg, "sql", sql);
    seg
}

/// `url.Parse(s).Hostname()`, or "" where Go finds no host (or fails on the port).
fn url_hostname(s: &str) -> &str {
    let rest = scheme_len(s).map_or(s, |n| s.get(n..).unwrap_or(""));
    let Some(authority) = rest.strip_prefix("//") else {
        return "";
    };
    let end = authority.find(['/', '?', '#']).unwrap_or(authority.len());
    let authority = authority.get(..end).unwrap_or("");
    let mut host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(colon) = host.rfind(':')
        && host.rfind(']').is_none_or(|bracket| bracket < colon)
    {
        let port = host.get(colon + 1..).unwrap_or("");
        if !port.is_empty() && !port.bytes().all(|b| b.is_ascii_digit()) {
            return "";
        }
        host = host.get(..colon).unwrap_or("");
    }
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// The length of a URL's `scheme:` prefix (`[A-Za-z][A-Za-z0-9+.-]*:`), if it has one.
fn scheme_len(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    if !bytes.first()?.is_ascii_alphabetic() {
        return None;
    }
    let n = 1 + bytes
        .iter()
        .skip(1)
        .take_while(|&&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'.' | b'-'))
        .count();
    (bytes.get(n) == Some(&b':')).then_some(n + 1)
}

/// `fixSegmentName`: characters outside `[ 0-9\p{L}N_.:/%&#=+\-@]` removed, cut to 200 bytes
/// (a cut character becomes U+FFFD), `span` if nothing is left.
fn fix_segment_name(name: &str) -> String {
    let kept: String = name.chars().filter(|&c| is_segment_name_char(c)).collect();
    if kept.len() > 200 {
        String::from_utf8_lossy(kept.as_bytes().get(..200).unwrap_or_default()).into_owned()
    } else if kept.is_empty() {
        "span".to_owned()
    } else {
        kept
    }
}

/// A character `fixSegmentName` keeps. Letters are Unicode's alphabetic characters, which
/// include a few marks and letter-like numbers the category `L` leaves out.
fn is_segment_name_char(c: char) -> bool {
    c == ' ' || c.is_ascii_digit() || c.is_alphabetic() || "N_.:/%&#=+-@".contains(c)
}

/// `fixAnnotationKey`: characters other than ASCII letters, digits and `.` (the `allowDot`
/// gate, on by default) become `_`.
fn fix_annotation_key(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `determineAwsOrigin`: the origin from `cloud.platform` (and `aws.ecs.launchtype`), none for
/// a provider other than AWS.
fn determine_origin(res: &Attrs<'_>) -> &'static str {
    if res.is_empty() {
        return "";
    }
    if let Some(provider) = res.get("cloud.provider")
        && provider.str() != "aws"
    {
        return "";
    }
    let Some(platform) = res.get("cloud.platform") else {
        return "";
    };
    match platform.str() {
        "aws_app_runner" => "AWS::AppRunner::Service",
        "aws_eks" => "AWS::EKS::Container",
        "aws_elastic_beanstalk" => "AWS::ElasticBeanstalk::Environment",
        "aws_ecs" => match res.get("aws.ecs.launchtype").map(V::str) {
            Some("ec2") => "AWS::ECS::EC2",
            Some("fargate") => "AWS::ECS::Fargate",
            _ => "AWS::ECS::Container",
        },
        "aws_ec2" => "AWS::EC2::Instance",
        _ => "",
    }
}

/// What `makeXRayAttributes` gives: the user, the annotations and the metadata.
struct XRayAttributes<'a> {
    user: Option<&'a str>,
    annotations: Object,
    metadata: Object,
}

/// `makeXRayAttributes`: `enduser.id` is the user; the attributes listed in
/// `aws.xray.annotations` (scalars only) are annotations under `fixAnnotationKey`;
/// `aws.xray.metadata.<ns>` holding a JSON object (or null) is the namespace `<ns>` (any case of
/// `default` merged into `default`, numbers as `float64`); every other attribute, and for a
/// segment every resource attribute as `otel.resource.<key>`, goes in `metadata.default`.
fn make_xray_attributes<'a>(
    mut attributes: Attrs<'a>,
    res: &Attrs<'a>,
    store_resource: bool,
) -> XRayAttributes<'a> {
    let user = attributes.remove("enduser.id").map(V::str);
    let mut annotations = Object::new();
    let mut metadata = Object::new();
    if attributes.is_empty() && (!store_resource || res.is_empty()) {
        return XRayAttributes {
            user,
            annotations,
            metadata,
        };
    }
    let mut default = Object::new();
    let mut indexed: HashSet<&str> = HashSet::new();
    if let Some(V::Slice(items)) = attributes.get(ANNOTATIONS_ATTR) {
        for item in items {
            if let V::Str(key) = V::of(Some(item)) {
                indexed.insert(key);
            }
        }
        attributes.remove(ANNOTATIONS_ATTR);
    }
    if store_resource {
        for &(key, value) in &res.entries {
            let key = format!("otel.resource.{key}");
            match annotation_value(value) {
                Some(annotation) if indexed.contains(key.as_str()) => {
                    annotations.insert(fix_annotation_key(&key), annotation);
                }
                _ => {
                    if !value.is_unset() {
                        default.insert(key, value.raw(0));
                    }
                }
            }
        }
    }
    for &(key, value) in &attributes.entries {
        if indexed.contains(key) {
            if let Some(annotation) = annotation_value(value) {
                annotations.insert(fix_annotation_key(key), annotation);
            }
        } else if let (Some(namespace), V::Str(text)) = (key.strip_prefix(METADATA_PREFIX), value) {
            match go_json_object(text) {
                None => {
                    default.insert(key.to_owned(), Value::from(text));
                }
                Some(parsed) => {
                    if namespace.eq_ignore_ascii_case(DEFAULT_NS) {
                        if let Value::Object(members) = parsed {
                            default.extend(members);
                        }
                    } else {
                        metadata.insert(namespace.to_owned(), parsed);
                    }
                }
            }
        } else if !value.is_unset() {
            default.insert(key.to_owned(), value.raw(0));
        }
    }
    if !default.is_empty() {
        set(&mut metadata, DEFAULT_NS, default);
    }
    XRayAttributes {
        user,
        annotations,
        metadata,
    }
}

/// An annotation value: strings, integers, floats and booleans; nothing else.
fn annotation_value(value: V<'_>) -> Option<Value> {
    match value {
        V::Str(s) => Some(Value::from(s)),
        V::Int(i) => Some(Value::from(i)),
        V::Double(f) => Some(go_number(f)),
        V::Bool(b) => Some(Value::Bool(b)),
        _ => None,
    }
}

/// `json.Unmarshal` into `map[string]any`: an object (numbers as `float64`) or null; `None`
/// for anything else, which the translator keeps as the attribute's text.
fn go_json_object(text: &str) -> Option<Value> {
    let mut value: Value = serde_json::from_str(text).ok()?;
    match value {
        Value::Null => Some(Value::Null),
        Value::Object(_) => {
            go_floats(&mut value, 0);
            Some(value)
        }
        _ => None,
    }
}

/// `makeSpanLinks`: each link's trace id, span id and attributes.
fn make_span_links(links: &[Link]) -> Vec<Value> {
    links
        .iter()
        .map(|link| {
            let mut entry = Object::new();
            set(&mut entry, "trace_id", trace_id_of(&link.trace_id));
            set(&mut entry, "id", hex(&link.span_id));
            let attrs = Attrs::of(&link.attributes);
            if !attrs.is_empty() {
                let raw: Object = attrs
                    .entries
                    .iter()
                    .map(|&(k, v)| (k.to_owned(), v.raw(0)))
                    .collect();
                set(&mut entry, "attributes", raw);
            }
            Value::Object(entry)
        })
        .collect()
}

// ===== http.go =====

type Parts<'k> = HashMap<&'k str, String>;

/// `makeHTTP`: the `http` block from the old and the stable HTTP attributes (each consumed),
/// the URL built from its parts when there is no full URL, and the response size from a
/// `message` event. Returns the attributes it did not consume.
fn make_http<'a>(
    attributes: &Attrs<'a>,
    kind: i32,
    events: &[Ev<'a>],
) -> (Attrs<'a>, Option<Value>) {
    let mut filtered = Attrs::default();
    if attributes.is_empty() {
        return (filtered, None);
    }
    let mut method: Option<&str> = None;
    let mut client_ip: Option<&str> = None;
    let mut user_agent: Option<&str> = None;
    let mut status: Option<i64> = None;
    let mut parts: Parts<'a> = HashMap::new();
    let (mut has_http, mut has_url, mut has_peer) = (false, false, false);

    for &(key, value) in &attributes.entries {
        match key {
            "http.method" | "http.request.method" => {
                method = go_str(value.str());
                has_http = true;
            }
            "http.client_ip" => {
                client_ip = go_str(value.str());
                has_http = true;
            }
            "http.user_agent" | "user_agent.original" => {
                user_agent = go_str(value.str());
                has_http = true;
            }
            "http.status_code" | "http.response.status_code" => {
                status = Some(value.int());
                has_http = true;
            }
            "http.url" | "url.full" => {
                parts.insert("http.url", value.str().to_owned());
                has_http = true;
                has_url = true;
            }
            "http.scheme" | "url.scheme" => {
                parts.insert("http.scheme", value.str().to_owned());
                has_http = true;
            }
            "http.host" | "http.server_name" => {
                parts.insert(key, value.str().to_owned());
                has_http = true;
                has_url = true;
            }
            "http.target" => {
                parts.insert(key, value.str().to_owned());
                has_http = true;
            }
            "net.host.port" => {
                parts.insert(key, port_of(value));
                has_http = true;
            }
            "host.name" | "net.host.name" | "net.peer.name" => {
                parts.insert(key, value.str().to_owned());
                has_url = true;
            }
            "net.peer.port" | "server.port" => {
                parts.insert(key, port_of(value));
            }
            "net.peer.ip" => {
                if client_ip.is_none() {
                    client_ip = go_str(value.str());
                }
                parts.insert(key, value.str().to_owned());
                has_url = true;
                has_peer = true;
            }
            "network.peer.address" => {
                if is_ip(value.str()) {
                    if client_ip.is_none() {
                        client_ip = go_str(value.str());
                    }
                    has_url = true;
                    has_peer = true;
                }
            }
            "client.address" => {
                if is_ip(value.str()) {
                    client_ip = go_str(value.str());
                }
            }
            "url.path" | "url.query" => {
                parts.insert(key, value.str().to_owned());
                has_http = true;
            }
            "server.address" => {
                parts.insert(key, value.str().to_owned());
                has_url = true;
            }
            // `network.peer.port` too: only the `EmitV1HTTPNetworkConventions` gate reads it.
            _ => filtered.push(key, value),
        }
    }

    let forwarded = !has_peer && client_ip.is_some();
    if !has_http {
        return (filtered, None);
    }
    let url = has_url.then(|| {
        if kind == KIND_SERVER {
            server_url(&parts)
        } else {
            client_url(&parts)
        }
    });
    let content_length = response_size(attributes, events);

    let mut request = Object::new();
    if forwarded {
        set(&mut request, "x_forwarded_for", true);
    }
    put(&mut request, "method", method.map(Value::from));
    put(&mut request, "url", url.map(Value::from));
    put(&mut request, "user_agent", user_agent.map(Value::from));
    put(&mut request, "client_ip", client_ip.map(Value::from));
    let mut response = Object::new();
    put(&mut response, "status", status.map(Value::from));
    set(&mut response, "content_length", content_length);
    let mut http = Object::new();
    set(&mut http, "request", request);
    set(&mut http, "response", response);
    (filtered, Some(Value::Object(http)))
}

/// A port attribute: its string, or its integer as text.
fn port_of(value: V<'_>) -> String {
    match value.str() {
        "" => value.int().to_string(),
        s => s.to_owned(),
    }
}

/// Whether `s` is an IP address without a zone (`net.ParseIP`).
fn is_ip(s: &str) -> bool {
    !s.contains('%') && s.parse::<std::net::IpAddr>().is_ok()
}

/// `extractResponseSizeFromAttributes`, then `extractResponseSizeFromEvents`: the payload size
/// of a `message.type = RECEIVED` attribute set, or 0.
fn response_size(attributes: &Attrs<'_>, events: &[Ev<'_>]) -> i64 {
    let size = size_of(attributes);
    if size != 0 {
        return size;
    }
    events
        .iter()
        .map(|e| size_of(&e.attrs))
        .find(|&size| size != 0)
        .unwrap_or(0)
}

fn size_of(attributes: &Attrs<'_>) -> i64 {
    let received = attributes
        .get("message.type")
        .is_some_and(|t| t.str() == "RECEIVED");
    match attributes.get("messaging.message_payload_size_bytes") {
        Some(size) if received => size.int(),
        _ => 0,
    }
}

/// The path, query or target after the host of a URL built from parts.
fn url_tail(parts: &Parts<'_>, mut url: String) -> String {
    if let Some(target) = parts.get("http.target") {
        url.push_str(target);
        return url;
    }
    url.push_str(parts.get("url.path").map_or("/", String::as_str));
    if let Some(query) = parts.get("url.query") {
        if !query.starts_with('?') {
            url.push('?');
        }
        url.push_str(query);
    }
    url
}

fn with_port(scheme: &str, host: &str, port: &str) -> String {
    let mut url = format!("{scheme}://{host}");
    let default_port = (scheme == "http" && port == "80") || (scheme == "https" && port == "443");
    if !port.is_empty() && !default_port {
        url.push(':');
        url.push_str(port);
    }
    url
}

/// `constructClientURL`.
fn client_url(parts: &Parts<'_>) -> String {
    if let Some(url) = parts.get("http.url") {
        return url.clone();
    }
    let get = |key: &str| parts.get(key).map(String::as_str);
    let scheme = get("http.scheme").unwrap_or("http");
    let (host, port) = match get("http.host") {
        Some(host) => (host, ""),
        None => (
            get("net.peer.name")
                .or_else(|| get("net.peer.ip"))
                .or_else(|| get("server.address"))
                .unwrap_or(""),
            get("net.peer.port")
                .or_else(|| get("network.peer.port"))
                .unwrap_or(""),
        ),
    };
    url_tail(parts, with_port(scheme, host, port))
}

/// `constructServerURL`.
fn server_url(parts: &Parts<'_>) -> String {
    if let Some(url) = parts.get("http.url") {
        return url.clone();
    }
    let get = |key: &str| parts.get(key).map(String::as_str);
    let scheme = get("http.scheme").unwrap_or("http");
    let (host, port) = match get("http.host") {
        Some(host) => (host, ""),
        None => (
            get("http.server_name")
                .or_else(|| get("net.host.name"))
                .or_else(|| get("host.name"))
                .or_else(|| get("server.address"))
                .unwrap_or(""),
            get("net.host.port")
                .or_else(|| get("server.port"))
                .unwrap_or(""),
        ),
    };
    url_tail(parts, with_port(scheme, host, port))
}

// ===== cause.go =====

/// The `error`, `fault` and `throttle` flags.
struct Flags {
    error: bool,
    fault: bool,
    throttle: bool,
}

/// An exception of a `cause` block.
struct Exc {
    id: String,
    message: String,
    kind: String,
    remote: Option<bool>,
    stack: Vec<Frame>,
    cause: Option<String>,
}

impl Exc {
    /// A new exception, with a new random id (as `parseException` draws one).
    fn new(kind: &str, message: String, remote: Option<bool>) -> Self {
        Self {
            id: new_id(),
            message,
            kind: kind.to_owned(),
            remote,
            stack: Vec::new(),
            cause: None,
        }
    }

    fn into_value(self) -> Value {
        let mut out = Object::new();
        set(&mut out, "id", self.id);
        set(&mut out, "message", self.message);
        set(&mut out, "type", self.kind);
        if let Some(remote) = self.remote {
            set(&mut out, "remote", remote);
        }
        if !self.stack.is_empty() {
            let stack: Vec<Value> = self.stack.into_iter().map(Frame::into_value).collect();
            set(&mut out, "stack", stack);
        }
        if let Some(cause) = self.cause {
            set(&mut out, "cause", cause);
        }
        Value::Object(out)
    }
}

/// A stack frame.
struct Frame {
    path: String,
    line: i64,
    label: String,
}

impl Frame {
    fn new(path: &str, line: i64, label: &str) -> Self {
        Self {
            path: path.to_owned(),
            line,
            label: label.to_owned(),
        }
    }

    fn into_value(self) -> Value {
        let mut out = Object::new();
        set(&mut out, "path", self.path);
        set(&mut out, "line", self.line);
        set(&mut out, "label", self.label);
        Value::Object(out)
    }
}

/// `makeCause`: the flags, and the cause: the `exception` events (and for an AWS SDK span its
/// `HTTP request failure` events), else for status ERROR the status message (or
/// `http.status_text`, which is then consumed). With an HTTP status in 400..=599 the status
/// decides the flags (4xx error, 429 throttle, 5xx fault), else fault = status ERROR.
fn make_cause<'a>(
    span: &'a Span,
    all_attributes: &Attrs<'a>,
    attributes: Attrs<'a>,
    events: &[Ev<'a>],
    res: &Attrs<'a>,
) -> (Flags, Attrs<'a>, Option<Value>) {
    let (status_code, status_message) = span
        .status
        .as_ref()
        .map_or((0, ""), |s| (s.code, s.message.as_str()));
    let mut filtered = attributes;
    let mut cause = None;
    let aws_sdk = is_aws_sdk_span(all_attributes);
    let has_exceptions = events
        .iter()
        .any(|e| e.name == "exception" || (aws_sdk && e.name == "HTTP request failure"));

    if has_exceptions {
        let lang = res.get("telemetry.sdk.language").map_or("", V::str);
        let remote = matches!(span.kind, KIND_CLIENT | KIND_PRODUCER);
        let mut exceptions = Vec::new();
        for event in events {
            if event.name == "exception" {
                let text = |key: &str| event.attrs.get(key).map_or("", V::str);
                exceptions.extend(parse_exception(
                    text("exception.type"),
                    text("exception.message"),
                    text("exception.stacktrace"),
                    remote,
                    lang,
                ));
            } else if aws_sdk
                && event.name == "HTTP request failure"
                && let (Some(code), Some(message)) = (
                    event.attrs.get("http.response.status_code"),
                    event.attrs.get("aws.http.error_message"),
                )
            {
                let micros = event.time / 1000;
                let text = format!(
                    "{}@{:.6}@{}",
                    code.stringify(),
                    micros as f64 / 1_000_000.0,
                    message.str()
                );
                exceptions.push(Exc::new("aws.http.error.event", text, Some(true)));
            }
        }
        let mut block = Object::new();
        if !exceptions.is_empty() {
            let list: Vec<Value> = exceptions.into_iter().map(Exc::into_value).collect();
            set(&mut block, "exceptions", list);
        }
        cause = Some(Value::Object(block));
    } else if status_code == STATUS_ERROR {
        let mut message = status_message;
        let source = std::mem::take(&mut filtered);
        for (key, value) in source.entries {
            if key == "http.status_text" {
                if message.is_empty() {
                    message = value.str();
                }
            } else {
                filtered.push(key, value);
            }
        }
        if !message.is_empty() {
            let exception = Exc::new("", message.to_owned(), None).into_value();
            let mut block = Object::new();
            set(&mut block, "exceptions", Value::Array(vec![exception]));
            cause = Some(Value::Object(block));
        }
    }

    let code_attr = all_attributes
        .get("http.status_code")
        .or_else(|| all_attributes.get("http.response.status_code"));
    let code = code_attr.map_or(0, V::int);
    let mut flags = Flags {
        error: false,
        fault: false,
        throttle: false,
    };
    if code_attr.is_none() || !(400..=599).contains(&code) {
        flags.fault = status_code == STATUS_ERROR;
    } else if code <= 499 {
        flags.error = true;
        flags.throttle = code == 429;
    } else {
        flags.fault = true;
    }
    (flags, filtered, cause)
}

/// `parseException`: the exception, and those of its stack trace's causes, by the parser of
/// the resource's `telemetry.sdk.language`.
fn parse_exception(
    kind: &str,
    message: &str,
    stacktrace: &str,
    remote: bool,
    lang: &str,
) -> Vec<Exc> {
    let mut exceptions = vec![Exc::new(kind, message.to_owned(), Some(remote))];
    if stacktrace.is_empty() {
        return exceptions;
    }
    match lang {
        "java" | "php" => fill_java(stacktrace, &mut exceptions),
        "python" => fill_python(stacktrace, &mut exceptions),
        "javascript" | "nodejs" | "webjs" => fill_javascript(stacktrace, &mut exceptions),
        "dotnet" => fill_dotnet(stacktrace, &mut exceptions),
        "go" => fill_go(stacktrace, &mut exceptions),
        _ => {}
    }
    exceptions
}

/// Adds a frame to the exception being read (the last).
fn push_frame(exceptions: &mut [Exc], frame: Frame) {
    if let Some(exc) = exceptions.last_mut() {
        exc.stack.push(frame);
    }
}

/// A new exception caused by the last: the last gets its id as `cause`.
fn caused(exceptions: &mut Vec<Exc>, kind: &str, message: String, remote: Option<bool>) {
    let new = Exc::new(kind, message, remote);
    if let Some(last) = exceptions.last_mut() {
        last.cause = Some(new.id.clone());
    }
    exceptions.push(new);
}

/// The lines `textproto.Reader.ReadLine` returns until EOF.
fn go_lines(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut lines: Vec<&str> = text.split('\n').collect();
    if text.ends_with('\n') {
        lines.pop();
    }
    lines
        .into_iter()
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .collect()
}

/// `fillJavaStacktrace`: `\tat label(path:line)` frames, `Caused by: Type: message` causes
/// (the message running on to the next frame line).
fn fill_java(stacktrace: &str, exceptions: &mut Vec<Exc>) {
    let lines = go_lines(stacktrace);
    if lines.len() < 2 {
        return;
    }
    let remote = exceptions.first().and_then(|e| e.remote);
    let mut idx = 1;
    let mut line = lines.get(idx).copied().unwrap_or("");
    loop {
        if line.starts_with("\tat ") {
            if let Some(frame) = java_frame(line) {
                push_frame(exceptions, frame);
            }
        } else if let Some(rest) = line.strip_prefix("Caused by: ") {
            let (kind, mut message) = match rest.find(':') {
                Some(colon) => (
                    rest.get(..colon).unwrap_or(""),
                    skip_chars(rest.get(colon + 1..).unwrap_or(""), 1).to_owned(),
                ),
                None => (rest, String::new()),
            };
            loop {
                idx += 1;
                let Some(&next) = lines.get(idx) else {
                    line = "";
                    break;
                };
                line = next;
                if is_java_frame_line(line) {
                    break;
                }
                message.push_str(line);
            }
            caused(exceptions, kind, message, remote);
            continue;
        }
        idx += 1;
        match lines.get(idx) {
            Some(&next) => line = next,
            None => break,
        }
    }
}

fn is_java_frame_line(line: &str) -> bool {
    line.starts_with("\tat ") && line.contains('(') && line.ends_with(')')
}

/// One `\tat label(path:line)` line: the label after its first `/`, the path before its first
/// `:`.
fn java_frame(line: &str) -> Option<Frame> {
    let paren = line.find('(')?;
    if !line.ends_with(')') {
        return None;
    }
    let label = line.get(4..paren).unwrap_or("");
    let label = label.split_once('/').map_or(label, |(_, after)| after);
    let inner = line.get(paren + 1..line.len() - 1).unwrap_or("");
    let (path, number) = match inner.split_once(':') {
        Some((path, number)) => (path, go_atoi(number)),
        None => (inner, 0),
    };
    Some(Frame::new(path, number, label))
}

/// `fillPythonStacktrace`: the traceback read bottom up, `  File "path", line N, in label`
/// frames, and a cause for each `During handling of the above exception` separator.
fn fill_python(stacktrace: &str, exceptions: &mut Vec<Exc>) {
    const DURING: &str = "During handling of the above exception, another exception occurred:";
    let lines: Vec<&str> = stacktrace.split('\n').collect();
    let Some(mut idx) = lines.len().checked_sub(2) else {
        return;
    };
    let remote = exceptions.first().and_then(|e| e.remote);
    let mut line = lines.get(idx).copied().unwrap_or("");
    loop {
        if line.starts_with("  File ") {
            let fields: Vec<&str> = line.split(',').collect();
            if let [file_part, number, label] = fields.as_slice() {
                let path = char_slice(file_part, 8, file_part.chars().count().saturating_sub(1));
                let number = number.strip_prefix(" line ").map_or(0, go_atoi);
                let label = label.strip_prefix(" in ").unwrap_or("");
                push_frame(exceptions, Frame::new(path, number, label));
            }
        } else if line.starts_with(DURING) {
            let Some(nxt) = (0..idx)
                .rev()
                .find(|&i| lines.get(i).is_some_and(|l| l.starts_with("  File ")))
            else {
                return;
            };
            let message = lines.get(nxt + 2..idx - 1).unwrap_or_default().join("\n");
            idx = nxt;
            let Some(colon) = message.find(':') else {
                return;
            };
            let kind = message.get(..colon).unwrap_or("");
            let text = skip_chars(message.get(colon + 1..).unwrap_or(""), 1).to_owned();
            caused(exceptions, kind, text, remote);
            line = lines.get(idx).copied().unwrap_or("");
            continue;
        }
        if idx == 0 {
            break;
        }
        idx -= 1;
        line = lines.get(idx).copied().unwrap_or("");
    }
}

/// `fillJavaScriptStacktrace`: `    at label (path:line:column)` and `    at path:line:column`
/// frames.
fn fill_javascript(stacktrace: &str, exceptions: &mut [Exc]) {
    let lines = go_lines(stacktrace);
    if lines.len() < 2 {
        return;
    }
    for line in lines.iter().skip(1) {
        let Some(after_at) = line.strip_prefix("    at ") else {
            continue;
        };
        let (mut label, mut path) = ("", "");
        match line.find('(') {
            Some(paren) if line.ends_with(')') => {
                label = line.get(7..paren).unwrap_or("");
                path = line.get(paren + 1..line.len() - 1).unwrap_or("");
            }
            Some(_) => {}
            None => path = after_at,
        }
        let mut number = 0;
        let first = path.find(':');
        let second = first.and_then(|f| {
            path.get(f + 1..)
                .and_then(|rest| rest.find(':'))
                .map(|s| s + f + 1)
        });
        match (first, second) {
            (Some(f), Some(s)) if f != s => {
                number = go_atoi(path.get(f + 1..s).unwrap_or(""));
                path = path.get(..f).unwrap_or("");
            }
            (None, _) if path.contains("native") => path = "native",
            _ => {}
        }
        if !path.is_empty() || !label.is_empty() || number != 0 {
            push_frame(exceptions, Frame::new(path, number, label));
        }
    }
}

/// `fillDotnetStacktrace`: `at label in path:line N` and `at label(...)` frames.
fn fill_dotnet(stacktrace: &str, exceptions: &mut [Exc]) {
    let lines = go_lines(stacktrace);
    if lines.len() < 2 {
        return;
    }
    for raw in lines.iter().skip(1) {
        let line = py_strip(raw);
        if !line.starts_with("at ") {
            continue;
        }
        if line.contains(" in ") {
            let mut fields = line.split(" in ");
            let label = fields.next().and_then(|f| f.get(3..)).unwrap_or("");
            let location = fields.next().unwrap_or("");
            let (path, number) = match location.rfind(':') {
                Some(colon) => {
                    let mut text = location.get(colon + 1..).unwrap_or("");
                    if text.starts_with("line") {
                        text = skip_chars(text, 5);
                    }
                    (location.get(..colon).unwrap_or(""), go_atoi(text))
                }
                None => (location, 0),
            };
            push_frame(exceptions, Frame::new(path, number, label));
        } else if let Some(close) = line.rfind(')') {
            push_frame(
                exceptions,
                Frame::new("", 0, line.get(3..=close).unwrap_or("")),
            );
        }
    }
}

/// `fillGoStacktrace`: pairs of lines, the function then `\tpath:line +0x..`, after an optional
/// `goroutine N [running]:` line; a frame without a location keeps the previous one.
fn fill_go(stacktrace: &str, exceptions: &mut [Exc]) {
    let lines = go_lines(stacktrace);
    if lines.len() < 2 {
        return;
    }
    let read = |i: usize| lines.get(i).copied().unwrap_or("");
    let mut idx = 1;
    let mut line = read(idx);
    let (mut path, mut number) = ("", 0);
    loop {
        if is_goroutine_line(line) {
            idx += 1;
            line = read(idx);
        }
        let label = line;
        idx += 1;
        line = read(idx);
        if let Some((p, n)) = go_path_line(line) {
            path = p;
            number = go_atoi(n);
        }
        push_frame(exceptions, Frame::new(path, number, label));
        idx += 1;
        if idx >= lines.len() {
            break;
        }
        line = read(idx);
    }
}

/// Whether the line matches `^goroutine.*\brunning\b.*:$` (ASCII word boundaries).
fn is_goroutine_line(line: &str) -> bool {
    if !line.starts_with("goroutine") || !line.ends_with(':') {
        return false;
    }
    let bytes = line.as_bytes();
    let last = bytes.len() - 1;
    let is_word = |i: usize| {
        bytes
            .get(i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    };
    (9..bytes.len()).any(|p| {
        p + 7 <= last
            && bytes.get(p..p + 7) == Some(&b"running"[..])
            && !is_word(p - 1)
            && !is_word(p + 7)
    })
}

/// The first match of `([^:\s]+):(\d+)` (ASCII classes): the path and the line number.
fn go_path_line(line: &str) -> Option<(&str, &str)> {
    let bytes = line.as_bytes();
    let allowed = |c: u8| c != b':' && !matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let mut i = 0;
    while i < bytes.len() {
        if !bytes.get(i).is_some_and(|&c| allowed(c)) {
            i += 1;
            continue;
        }
        let start = i;
        while bytes.get(i).is_some_and(|&c| allowed(c)) {
            i += 1;
        }
        if bytes.get(i) == Some(&b':') {
            let digits = bytes
                .get(i + 1..)
                .unwrap_or_default()
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if digits > 0 {
                return Some((line.get(start..i)?, line.get(i + 1..i + 1 + digits)?));
            }
        }
    }
    None
}

/// `strconv.Atoi` as the stack parsers use it: errors give 0; out of range saturates.
fn go_atoi(s: &str) -> i64 {
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, s.get(1..).unwrap_or("")),
        Some(b'+') => (false, s.get(1..).unwrap_or("")),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    let magnitude = digits.bytes().fold(0_u128, |n, b| {
        n.saturating_mul(10).saturating_add(u128::from(b - b'0'))
    });
    let signed = if negative {
        0_i128.saturating_sub_unsigned(magnitude)
    } else {
        i128::try_from(magnitude).unwrap_or(i128::MAX)
    };
    i64::try_from(signed).unwrap_or(if negative { i64::MIN } else { i64::MAX })
}

// ===== aws.go, service.go, sql.go =====

/// The resource attributes `makeAws` reads, as strings ("" when absent or not a string).
#[derive(Default)]
struct Env<'a> {
    cloud: &'a str,
    platform: &'a str,
    account: &'a str,
    zone: &'a str,
    host_id: &'a str,
    host_type: &'a str,
    ami: &'a str,
    pod: &'a str,
    namespace: &'a str,
    deploy_id: &'a str,
    version_label: &'a str,
    sdk_name: &'a str,
    sdk_language: &'a str,
    sdk_version: &'a str,
    auto_version: &'a str,
    container_id: &'a str,
    container: &'a str,
    cluster: &'a str,
    cluster_arn: &'a str,
    container_arn: &'a str,
    task_arn: &'a str,
    task_family: &'a str,
    launch_type: &'a str,
}

/// `makeAws`: the call fields from span attributes (consumed), the environment blocks (`ec2`,
/// `ecs`, `eks`, `elastic_beanstalk`, `cloudwatch_logs`, `xray`) from the resource; no block at
/// all for a cloud provider other than AWS.
fn make_aws<'a>(attributes: Attrs<'a>, res: &Attrs<'a>) -> (Attrs<'a>, Option<Value>) {
    let mut r = Env::default();
    let mut log_groups: Option<Vec<&'a str>> = None;
    let mut log_group_arns: Option<Vec<&'a str>> = None;
    for &(key, value) in &res.entries {
        let slot = match key {
            "cloud.provider" => &mut r.cloud,
            "cloud.platform" => &mut r.platform,
            "cloud.account.id" => &mut r.account,
            "cloud.availability_zone" => &mut r.zone,
            "host.id" => &mut r.host_id,
            "host.type" => &mut r.host_type,
            "host.image.id" => &mut r.ami,
            "k8s.pod.name" => &mut r.pod,
            "service.namespace" => &mut r.namespace,
            "service.instance.id" => &mut r.deploy_id,
            "service.version" => &mut r.version_label,
            "telemetry.sdk.name" => &mut r.sdk_name,
            "telemetry.sdk.language" => &mut r.sdk_language,
            "telemetry.sdk.version" => &mut r.sdk_version,
            "telemetry.auto.version" | "telemetry.distro.version" => &mut r.auto_version,
            "container.id" => &mut r.container_id,
            "k8s.cluster.name" => &mut r.cluster,
            "aws.ecs.cluster.arn" => &mut r.cluster_arn,
            "aws.ecs.container.arn" => &mut r.container_arn,
            "aws.ecs.task.arn" => &mut r.task_arn,
            "aws.ecs.task.family" => &mut r.task_family,
            "aws.ecs.launchtype" => &mut r.launch_type,
            "container.name" => {
                if r.container.is_empty() {
                    r.container = value.str();
                }
                continue;
            }
            "aws.log.group.names" => {
                log_groups = Some(normalize_to_slice(value));
                continue;
            }
            "aws.log.group.arns" => {
                log_group_arns = Some(normalize_to_slice(value));
                continue;
            }
            _ => continue,
        };
        *slot = value.str();
    }

    let mut account = r.account;
    let operation = attributes
        .get("aws.operation")
        .or_else(|| attributes.get("rpc.method"))
        .map_or("", V::str);
    let (mut region, mut request_id, mut queue_url, mut table_name) = ("", "", "", "");
    let mut filtered = Attrs::default();
    for &(key, value) in &attributes.entries {
        match key {
            "rpc.method" | "aws.operation" => {}
            "aws.account_id" => {
                if !value.is_unset() {
                    account = value.str();
                }
            }
            "aws.region" => region = value.str(),
            "aws.request_id" | "aws.requestId" => request_id = value.str(),
            "aws.queue_url" | "aws.queue.url" => queue_url = value.str(),
            "aws.table_name" | "aws.table.name" => table_name = value.str(),
            _ => filtered.push(key, value),
        }
    }
    if !matches!(r.cloud, "aws" | "") {
        return (filtered, None);
    }

    let mut table_names: Option<Vec<&str>> = None;
    if let Some(v) = attributes.get("messaging.url") {
        queue_url = v.str();
    }
    match attributes.get("aws.dynamodb.table_names") {
        Some(V::Slice([])) => {}
        Some(V::Slice([one])) => table_name = V::of(Some(one)).str(),
        Some(V::Slice(many)) => {
            table_name = "";
            table_names = Some(many.iter().map(|item| V::of(Some(item)).str()).collect());
        }
        Some(V::Str(s)) => table_name = s,
        _ => {}
    }

    let platform = r.platform;
    let ec2 = (platform == "aws_ec2" || !r.host_id.is_empty()).then(|| {
        object([
            ("instance_id", nullable(r.host_id)),
            ("availability_zone", nullable(r.zone)),
            ("instance_size", nullable(r.host_type)),
            ("ami_id", nullable(r.ami)),
        ])
    });
    let ecs = (platform == "aws_ecs").then(|| {
        let mut ecs = Object::new();
        for (key, value) in [
            ("container", r.container),
            ("container_id", r.container_id),
            ("task_arn", r.task_arn),
            ("task_family", r.task_family),
            ("cluster_arn", r.cluster_arn),
            ("container_arn", r.container_arn),
            ("availability_zone", r.zone),
            ("launch_type", r.launch_type),
        ] {
            put(&mut ecs, key, go_text(value));
        }
        Value::Object(ecs)
    });
    let eb = (platform == "aws_elastic_beanstalk" && !r.deploy_id.is_empty()).then(|| {
        object([
            ("environment_name", nullable(r.namespace)),
            ("version_label", nullable(r.version_label)),
            ("deployment_id", Value::from(deployment_id(r.deploy_id))),
        ])
    });
    let eks = (platform == "aws_eks" || !r.cluster.is_empty()).then(|| {
        object([
            ("cluster_name", nullable(r.cluster)),
            ("pod", nullable(r.pod)),
            ("container_id", nullable(r.container_id)),
        ])
    });
    let cwl: Option<Vec<Value>> = match (log_group_arns, log_groups) {
        (Some(arns), _) if !arns.is_empty() => Some(
            arns.iter()
                .map(|&arn| {
                    let mut entry = Object::new();
                    set(&mut entry, "log_group", nullable(parse_log_group(arn)));
                    if !arn.is_empty() {
                        set(&mut entry, "arn", arn);
                    }
                    Value::Object(entry)
                })
                .collect(),
        ),
        (_, Some(names)) if !names.is_empty() => Some(
            names
                .iter()
                .map(|&name| object([("log_group", nullable(name))]))
                .collect(),
        ),
        _ => None,
    };

    let sdk = if !r.sdk_name.is_empty() && !r.sdk_language.is_empty() {
        format!("{} for {}", r.sdk_name, r.sdk_language)
    } else {
        r.sdk_name.to_owned()
    };
    let mut xray = Object::new();
    put(&mut xray, "sdk", go_string(sdk));
    put(&mut xray, "sdk_version", go_text(r.sdk_version));
    set(
        &mut xray,
        "auto_instrumentation",
        !r.auto_version.is_empty(),
    );

    let mut aws = Object::new();
    put(&mut aws, "elastic_beanstalk", eb);
    put(&mut aws, "cloudwatch_logs", cwl.map(Value::Array));
    put(&mut aws, "ecs", ecs);
    put(&mut aws, "ec2", ec2);
    put(&mut aws, "eks", eks);
    set(&mut aws, "xray", xray);
    put(&mut aws, "account_id", go_text(account));
    put(&mut aws, "operation", go_text(operation));
    put(&mut aws, "region", go_text(region));
    put(&mut aws, "request_id", go_text(request_id));
    put(&mut aws, "queue_url", go_text(queue_url));
    put(&mut aws, "table_name", go_text(table_name));
    put(&mut aws, "table_names", table_names.map(Value::from));
    (filtered, Some(Value::Object(aws)))
}

/// `normalizeToSlice`: a string as its non-empty `&`-separated parts, a slice as its strings.
fn normalize_to_slice(value: V<'_>) -> Vec<&str> {
    match value {
        V::Str(s) => s.split('&').filter(|item| !item.is_empty()).collect(),
        V::Slice(items) => items.iter().map(|item| V::of(Some(item)).str()).collect(),
        _ => Vec::new(),
    }
}

/// `parseLogGroup`: the seventh `:` field of a log group ARN, or the ARN.
fn parse_log_group(arn: &str) -> &str {
    arn.split(':').nth(6).unwrap_or(arn)
}

/// The Elastic Beanstalk deployment id: a decimal `int64`, else 0.
fn deployment_id(s: &str) -> i64 {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    s.parse().unwrap_or(0)
}

/// `makeService`: the version from `service.version`, else `container.image.tag`.
fn make_service(res: &Attrs<'_>) -> Option<Value> {
    let version = res
        .get("service.version")
        .or_else(|| res.get("container.image.tag"))?;
    let mut service = Object::new();
    put(&mut service, "version", go_text(version.str()));
    Some(Value::Object(service))
}

/// `makeSQL`: a `sql` block for a SQL `db.system` (the `db.*` attributes consumed), with
/// `connection_string` = (`db.connection_string` or `localhost`) + `/` + `db.name` and the span
/// name as `url`. Other spans keep every attribute.
fn make_sql<'a>(span: &'a Span, attributes: Attrs<'a>) -> (Attrs<'a>, Option<Value>) {
    let mut filtered = Attrs::default();
    let (mut connection, mut system, mut instance, mut statement, mut user) = ("", "", "", "", "");
    for &(key, value) in &attributes.entries {
        match key {
            "db.connection_string" => connection = value.str(),
            "db.name" => instance = value.str(),
            "db.statement" => statement = value.str(),
            "db.system" => system = value.str(),
            "db.user" => user = value.str(),
            // The stable names (`db.namespace`, ...) too: only the `EmitV1DBConventions` gate
            // reads them.
            _ => filtered.push(key, value),
        }
    }
    if !is_sql(system) {
        return (attributes, None);
    }
    let host = if connection.is_empty() {
        "localhost"
    } else {
        connection
    };
    let mut sql = Object::new();
    set(&mut sql, "connection_string", format!("{host}/{instance}"));
    put(&mut sql, "url", go_text(&span.name));
    put(&mut sql, "sanitized_query", go_text(statement));
    put(&mut sql, "database_type", go_text(system));
    put(&mut sql, "user", go_text(user));
    (filtered, Some(Value::Object(sql)))
}

/// `isSQL`: the `db.system` values of SQL databases.
fn is_sql(system: &str) -> bool {
    matches!(
        system,
        "db2"
            | "mssql"
            | "oracle"
            | "derby"
            | "hive"
            | "mariadb"
            | "mysql"
            | "other_sql"
            | "postgresql"
            | "sqlite"
            | "teradata"
    )
}

// ===== restoring what the mapping carried =====

/// Applies the residual of the mapping to a translated segment: takes it out of the metadata,
/// normalises the segment, then sets each JSON pointer in key order (`null` removes;
/// `json:<pointer>` keys hold JSON text).
fn restore(mut seg: Object) -> Value {
    let mut residual = Object::new();
    if let Some(Value::Object(metadata)) = seg.get_mut("metadata")
        && matches!(metadata.get(RESIDUAL_NAMESPACE), Some(Value::Object(_)))
        && let Some(Value::Object(carried)) = metadata.remove(RESIDUAL_NAMESPACE)
    {
        residual = carried;
    }
    let subsegment = seg.get("type").and_then(Value::as_str) == Some("subsegment")
        || residual.get("/type").and_then(Value::as_str) == Some("subsegment");
    normalise(&mut seg, subsegment);
    let mut doc = Value::Object(seg);
    let mut keys: Vec<String> = residual.keys().cloned().collect();
    keys.sort_unstable();
    for key in keys {
        let Some(value) = residual.remove(&key) else {
            continue;
        };
        if let Some(pointer) = key.strip_prefix("json:") {
            let Some(parsed) = value
                .as_str()
                .and_then(|text| serde_json::from_str::<Value>(text).ok())
            else {
                continue;
            };
            set_pointer(&mut doc, pointer, parsed);
        } else {
            set_pointer(&mut doc, &key, value);
        }
    }
    doc
}

/// The translator's output with its constant artefacts removed (layer 3 of `mapping.rs`):
/// times rounded to the microsecond, `false` flags, the resource-wide blocks of a subsegment,
/// `null` members and empty objects of `aws`/`http`/`sql`/`service`,
/// `auto_instrumentation: false`, `content_length: 0`, empty exception `type`/`message`,
/// `remote: false`, and the attribute leftovers and `otel.resource.*` of `metadata.default`.
fn normalise(seg: &mut Object, subsegment: bool) {
    for key in ["start_time", "end_time"] {
        if let Some(t) = seg.get(key).and_then(Value::as_f64) {
            set(seg, key, round_micros(t));
        }
    }
    for flag in ["fault", "error", "throttle"] {
        if seg.get(flag) == Some(&Value::Bool(false)) {
            seg.remove(flag);
        }
    }
    if subsegment {
        for key in RESOURCE_WIDE_TOP {
            seg.remove(*key);
        }
        if let Some(Value::Object(aws)) = seg.get_mut("aws") {
            for key in RESOURCE_WIDE_AWS {
                aws.remove(*key);
            }
        }
    }
    if let Some(Value::Object(aws)) = seg.get_mut("aws") {
        strip_nulls(aws, 0);
        if let Some(Value::Object(xray)) = aws.get_mut("xray")
            && xray.get("auto_instrumentation") == Some(&Value::Bool(false))
        {
            xray.remove("auto_instrumentation");
        }
        for key in ["ec2", "ecs", "eks", "elastic_beanstalk", "xray"] {
            drop_empty(aws, key);
        }
    }
    drop_empty(seg, "aws");
    if let Some(Value::Object(http)) = seg.get_mut("http") {
        strip_nulls(http, 0);
        if let Some(Value::Object(response)) = http.get_mut("response")
            && matches!(
                response.get("content_length"),
                Some(Value::Number(n)) if n.as_i64() == Some(0)
            )
        {
            response.remove("content_length");
        }
        drop_empty(http, "request");
        drop_empty(http, "response");
    }
    drop_empty(seg, "http");
    for key in ["sql", "service"] {
        if let Some(Value::Object(block)) = seg.get_mut(key) {
            strip_nulls(block, 0);
        }
        drop_empty(seg, key);
    }
    if let Some(Value::Object(cause)) = seg.get_mut("cause")
        && let Some(Value::Array(exceptions)) = cause.get_mut("exceptions")
    {
        for exc in exceptions.iter_mut().filter_map(Value::as_object_mut) {
            for key in ["type", "message"] {
                if exc.get(key).and_then(Value::as_str) == Some("") {
                    exc.remove(key);
                }
            }
            if exc.get("remote") == Some(&Value::Bool(false)) {
                exc.remove("remote");
            }
        }
    }
    if let Some(Value::Object(metadata)) = seg.get_mut("metadata") {
        if let Some(Value::Object(default)) = metadata.get_mut(DEFAULT_NS) {
            default.retain(|k, _| !super::mapping::is_leftover_key(k));
        }
        drop_empty(metadata, DEFAULT_NS);
    }
    drop_empty(seg, "metadata");
}

/// Removes `null` members of objects, nested ones included (array items stay).
fn strip_nulls(map: &mut Object, depth: usize) {
    map.retain(|_, v| !v.is_null());
    if depth >= MAX_DEPTH {
        return;
    }
    for value in map.values_mut() {
        strip_nulls_in(value, depth + 1);
    }
}

fn strip_nulls_in(value: &mut Value, depth: usize) {
    match value {
        Value::Object(map) => strip_nulls(map, depth),
        Value::Array(items) if depth < MAX_DEPTH => {
            for item in items {
                strip_nulls_in(item, depth + 1);
            }
        }
        _ => {}
    }
}

/// Removes `parent[key]` if it is an empty object.
fn drop_empty(parent: &mut Object, key: &str) {
    if matches!(parent.get(key), Some(Value::Object(m)) if m.is_empty()) {
        parent.remove(key);
    }
}

/// Epoch seconds rounded to the microsecond (half to even).
fn round_micros(t: f64) -> f64 {
    (t * 1_000_000.0).round_ties_even() / 1_000_000.0
}

/// The tokens of a JSON pointer (RFC 6901): none for `""`, `None` if it does not start with
/// `/`.
fn pointer_tokens(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

/// Sets `value` at `pointer` (`null`: removes what is there), creating missing objects on the
/// way; a pointer through a scalar, or to an array index out of range, changes nothing.
fn set_pointer(doc: &mut Value, pointer: &str, value: Value) {
    let Some(tokens) = pointer_tokens(pointer) else {
        return;
    };
    let Some((last, path)) = tokens.split_last() else {
        return;
    };
    let remove = value.is_null();
    let mut node = doc;
    for token in path {
        node = match node {
            Value::Array(items) => {
                let Some(i) = list_index(token, items.len()) else {
                    return;
                };
                match items.get_mut(i) {
                    Some(item) => item,
                    None => return,
                }
            }
            Value::Object(map) => {
                let container = matches!(
                    map.get(token.as_str()),
                    Some(Value::Object(_) | Value::Array(_))
                );
                if !container {
                    if remove {
                        return;
                    }
                    map.insert(token.clone(), Value::Object(Map::new()));
                }
                match map.get_mut(token.as_str()) {
                    Some(child) => child,
                    None => return,
                }
            }
            _ => return,
        };
    }
    match node {
        Value::Array(items) => {
            if let Some(i) = list_index(last, items.len()) {
                if remove {
                    items.remove(i);
                } else if let Some(slot) = items.get_mut(i) {
                    *slot = value;
                }
            }
        }
        Value::Object(map) => {
            if remove {
                map.remove(last.as_str());
            } else {
                map.insert(last.clone(), value);
            }
        }
        _ => {}
    }
}

/// An array index token: a decimal integer (surrounding whitespace, a sign and `_` between
/// digits allowed) below `len`.
fn list_index(token: &str, len: usize) -> Option<usize> {
    let t = py_strip(token);
    let (negative, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let mut n: usize = 0;
    for b in digits.bytes() {
        if b == b'_' {
            continue;
        }
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(usize::from(b - b'0'))?;
    }
    if negative && n != 0 {
        return None;
    }
    (n < len).then_some(n)
}

// ===== ids, numbers and text =====

/// `convertToAmazonTraceID`: `1-` + the first 4 bytes + `-` + the other 12, in hex (an id of
/// another length is zero-padded on the left, then cut to 16 bytes).
fn trace_id_of(raw: &[u8]) -> String {
    let n = raw.len().min(16);
    let mut bytes = [0_u8; 16];
    if let (Some(dst), Some(src)) = (bytes.get_mut(16 - n..), raw.get(..n)) {
        dst.copy_from_slice(src);
    }
    let (epoch, random) = bytes.split_at(4);
    format!("1-{}-{}", hex(epoch), hex(random))
}

/// A span id in hex; "" unless it is 8 bytes and not zero.
fn span_id_of(raw: &[u8]) -> String {
    if raw.len() != 8 || raw.iter().all(|b| *b == 0) {
        return String::new();
    }
    hex(raw)
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().saturating_mul(2));
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A new random id, as the translator draws for exceptions and split segments.
fn new_id() -> String {
    SegmentId::new().to_string()
}

/// `awsxray.String`: nothing for an empty string.
fn go_str(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn go_text(s: &str) -> Option<Value> {
    go_str(s).map(Value::from)
}

fn go_string(s: String) -> Option<Value> {
    if s.is_empty() {
        None
    } else {
        Some(Value::String(s))
    }
}

/// A string, or `null` for an empty one (a `*string` field the translator leaves nil).
fn nullable(s: &str) -> Value {
    go_text(s).unwrap_or(Value::Null)
}

fn set(map: &mut Object, key: &str, value: impl Into<Value>) {
    map.insert(key.to_owned(), value.into());
}

fn put(map: &mut Object, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        map.insert(key.to_owned(), value);
    }
}

fn object<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// Whether Go writes the `float64` without a fraction: integral and below 1e21.
fn is_go_integral(f: f64) -> bool {
    f.is_finite() && f.fract() == 0.0 && f.abs() < 1e21
}

/// A `float64` as `encoding/json` writes it, as JSON reads it back: integral values as
/// integers (as floats beyond `u64`), others as floats, `null` for NaN and infinities (which
/// Go cannot write).
fn go_number(f: f64) -> Value {
    go_num(f).map_or(Value::Null, Value::Number)
}

fn go_num(f: f64) -> Option<Number> {
    if is_go_integral(f) {
        if (i64::MIN as f64..i64::MAX as f64).contains(&f) {
            return Some(Number::from(f as i64));
        }
        if (0.0..u64::MAX as f64).contains(&f) {
            return Some(Number::from(f as u64));
        }
    }
    Number::from_f64(f)
}

/// Every number of a parsed JSON value as the `float64` Go holds it, written as Go writes it.
fn go_floats(value: &mut Value, depth: usize) {
    match value {
        Value::Number(n) => {
            if let Some(num) = n.as_f64().and_then(go_num) {
                *n = num;
            }
        }
        Value::Array(items) if depth < MAX_DEPTH => {
            for item in items {
                go_floats(item, depth + 1);
            }
        }
        Value::Object(map) if depth < MAX_DEPTH => {
            for item in map.values_mut() {
                go_floats(item, depth + 1);
            }
        }
        _ => {}
    }
}

/// `strconv.FormatFloat(f, 'g', -1, 64)` as the JSON encoder uses it: integral values below
/// 1e21 as integers, others shortest.
fn go_format_float(f: f64) -> String {
    if is_go_integral(f) {
        (f as i128).to_string()
    } else {
        float_repr(f)
    }
}

/// The shortest text that reads back as `f`: fixed notation (with `.0` when integral) for
/// exponents -4 to 15, else `d.ddde±XX`; `NaN` and `Infinity` for the rest.
fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return String::from(if f > 0.0 { "Infinity" } else { "-Infinity" });
    }
    let scientific = format!("{f:e}");
    let (mantissa, exponent) = scientific
        .split_once('e')
        .unwrap_or((scientific.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..16).contains(&exponent) {
        let mut fixed = f.to_string();
        if !fixed.contains('.') {
            fixed.push_str(".0");
        }
        fixed
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
    }
}

/// A JSON string with everything outside printable ASCII escaped (`\uXXXX`, UTF-16).
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0_u16; 2];
                for unit in c.encode_utf16(&mut units).iter() {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// `s` without the whitespace around it (Unicode whitespace and the ASCII separators
/// U+001C..U+001F).
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// `s` without its first `n` characters.
fn skip_chars(s: &str, n: usize) -> &str {
    s.char_indices()
        .nth(n)
        .map_or("", |(i, _)| s.get(i..).unwrap_or(""))
}

/// Characters `start..end` of `s` (clamped to its length).
fn char_slice(s: &str, start: usize, end: usize) -> &str {
    if start >= end {
        return "";
    }
    let byte_at = |n: usize| s.char_indices().nth(n).map_or(s.len(), |(i, _)| i);
    s.get(byte_at(start)..byte_at(end)).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::ArrayValue;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
    use serde_json::json;

    use super::*;
    use crate::transport::{Finished, FinishedKind};
    use crate::{Document, TraceId};

    const TRACE: [u8; 16] = [
        0x5f, 0x84, 0xc7, 0x00, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56,
        0x78,
    ];
    const TRACE_ID: &str = "1-5f84c700-123456789abcdef012345678";
    const ROOT: u64 = 0x1111_2222_3333_4444;
    const CHILD: u64 = 0x5555_6666_7777_8888;

    fn kv(key: &str, value: Any) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn text(s: &str) -> Any {
        Any::StringValue(s.to_owned())
    }

    fn span(
        id: u64,
        parent: Option<u64>,
        kind: SpanKind,
        name: &str,
        attributes: Vec<KeyValue>,
    ) -> Span {
        Span {
            trace_id: TRACE.to_vec(),
            span_id: id.to_be_bytes().to_vec(),
            parent_span_id: parent.map(|p| p.to_be_bytes().to_vec()).unwrap_or_default(),
            name: name.to_owned(),
            kind: kind as i32,
            start_time_unix_nano: 1_700_000_000_100_000_000,
            end_time_unix_nano: 1_700_000_000_350_000_000,
            attributes,
            ..Default::default()
        }
    }

    fn resource(service: &str) -> Resource {
        Resource {
            attributes: vec![kv("service.name", text(service))],
            ..Default::default()
        }
    }

    fn request(resource: Resource, spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn http_attributes_make_the_http_block() {
        let attributes = vec![
            kv("http.request.method", text("GET")),
            kv("url.full", text("https://example.com/orders")),
            kv("http.response.status_code", Any::IntValue(503)),
        ];
        let server = span(ROOT, None, SpanKind::Server, "GET /orders", attributes);
        let docs = to_documents(&request(resource("orders"), vec![server]));
        let want = json!({
            "name": "orders",
            "id": "1111222233334444",
            "trace_id": TRACE_ID,
            "start_time": 1_700_000_000.1,
            "end_time": 1_700_000_000.35,
            "http": {
                "request": {"method": "GET", "url": "https://example.com/orders"},
                "response": {"status": 503}
            },
            "fault": true
        });
        assert_eq!(docs, [want]);
    }

    #[test]
    fn listed_attributes_become_annotations() {
        let keys = ["tenant", "retries", "ratio"]
            .iter()
            .map(|k| AnyValue {
                value: Some(text(k)),
            })
            .collect();
        let attributes = vec![
            kv("tenant", text("acme")),
            kv("retries", Any::IntValue(2)),
            kv("ratio", Any::DoubleValue(0.5)),
            kv("cart.size", Any::IntValue(3)),
            kv(
                "aws.xray.annotations",
                Any::ArrayValue(ArrayValue { values: keys }),
            ),
        ];
        let server = span(ROOT, None, SpanKind::Server, "job", attributes);
        let docs = to_documents(&request(resource("jobs"), vec![server]));
        assert_eq!(docs.len(), 1);
        assert_eq!(
            docs[0]["annotations"],
            json!({"tenant": "acme", "retries": 2, "ratio": 0.5})
        );
        assert_eq!(docs[0]["metadata"], json!({"default": {"cart.size": 3}}));
    }

    #[test]
    fn spans_with_malformed_ids_are_skipped() {
        let mut short_trace = span(ROOT, None, SpanKind::Server, "a", Vec::new());
        short_trace.trace_id.truncate(8);
        let mut short_span = span(CHILD, None, SpanKind::Server, "b", Vec::new());
        short_span.span_id.truncate(4);
        let mut short_parent = span(CHILD, Some(ROOT), SpanKind::Internal, "c", Vec::new());
        short_parent.parent_span_id.truncate(3);
        let mut zero_span = span(CHILD, None, SpanKind::Server, "d", Vec::new());
        zero_span.span_id = vec![0; 8];
        let good = span(ROOT, None, SpanKind::Server, "e", Vec::new());
        let spans = vec![short_trace, short_span, short_parent, zero_span, good];
        let docs = to_documents(&request(resource("svc"), spans));
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0]["id"], "1111222233334444");
        assert_eq!(docs[0]["name"], "svc");
    }

    #[test]
    fn a_span_with_a_parent_is_a_subsegment() {
        let root = span(ROOT, None, SpanKind::Server, "GET /", Vec::new());
        let child = span(
            CHILD,
            Some(ROOT),
            SpanKind::Internal,
            "load-orders",
            Vec::new(),
        );
        let docs = to_documents(&request(resource("orders"), vec![root, child]));
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["name"], "orders");
        assert!(docs[0].get("type").is_none());
        let want = json!({
            "name": "load-orders",
            "id": "5555666677778888",
            "trace_id": TRACE_ID,
            "start_time": 1_700_000_000.1,
            "end_time": 1_700_000_000.35,
            "parent_id": "1111222233334444",
            "type": "subsegment"
        });
        assert_eq!(docs[1], want);
    }

    #[test]
    fn a_segment_from_the_mapping_comes_back_as_it_was() {
        let trace_id = TraceId::new();
        let mut doc = Document::new("orders", SegmentId::new(), 1_478_293_361.271);
        doc.set_trace_id(trace_id);
        assert!(doc.put_annotation("tier", "gold").is_ok());
        let mut child = Document::new("load", SegmentId::new(), 1_478_293_361.3);
        child.set_end_time(1_478_293_361.35);
        doc.add_subsegment(child);
        doc.set_end_time(1_478_293_361.449);

        let finished = Finished::from_document(FinishedKind::Segment, trace_id, &doc);
        let (resource, spans) = crate::otlp::to_spans(&finished, "orders");
        let docs = to_documents(&request(resource, spans));
        assert_eq!(docs.len(), 2, "{docs:#?}");

        // Nested as the segment had it: the subsegment without what only independent
        // documents carry.
        let mut sub = docs[1].clone();
        assert_eq!(sub["parent_id"], doc.id().to_string());
        assert_eq!(sub["type"], "subsegment");
        if let Value::Object(o) = &mut sub {
            for key in ["trace_id", "parent_id", "type"] {
                o.remove(key);
            }
        }
        let mut back = docs[0].clone();
        if let Value::Object(o) = &mut back {
            o.insert("subsegments".to_owned(), Value::Array(vec![sub]));
        }
        let text = serde_json::to_string(&doc).expect("the document serializes");
        let sent: Value = serde_json::from_str(&text).expect("and is JSON");
        assert_eq!(back, sent);
    }

    #[test]
    fn pointers_set_and_remove_as_the_residual_says() {
        let mut doc = json!({"a": [1, 2, 3], "b": 1});
        set_pointer(&mut doc, "/a/1", Value::Null);
        set_pointer(&mut doc, "/c/d~1e", json!(true));
        set_pointer(&mut doc, "/b/x", json!(1));
        set_pointer(&mut doc, "/a/9", json!(0));
        set_pointer(&mut doc, "/a/x/y", json!(0));
        set_pointer(&mut doc, "/gone/deeper", Value::Null);
        set_pointer(&mut doc, "no-slash", json!(0));
        assert_eq!(doc, json!({"a": [1, 3], "b": {"x": 1}, "c": {"d/e": true}}));
    }

    #[test]
    fn helpers_follow_go() {
        assert_eq!(
            url_hostname("mysql://db.example.com:3306/shop"),
            "db.example.com"
        );
        assert_eq!(url_hostname("//[::1]:5432"), "::1");
        assert_eq!(url_hostname("db.example.com"), "");
        assert_eq!(url_hostname("//host:port"), "");
        assert_eq!(float_repr(1e-5), "1e-05");
        assert_eq!(float_repr(2.0), "2.0");
        assert_eq!(float_repr(1e16), "1e+16");
        assert_eq!(go_format_float(2.0), "2");
        assert_eq!(go_format_float(0.25), "0.25");
        assert_eq!(go_number(2.0), json!(2));
        assert_eq!(go_number(2.5), json!(2.5));
        assert_eq!(go_atoi("-99999999999999999999"), i64::MIN);
        assert_eq!(go_atoi("12x"), 0);
        assert!(is_goroutine_line("goroutine 1 [running]:"));
        assert!(!is_goroutine_line("goroutine 1 [runningx]:"));
        assert_eq!(
            go_path_line("\t/app/main.go:12 +0x1d"),
            Some(("/app/main.go", "12"))
        );
        assert_eq!(fix_segment_name("a(b)c"), "abc");
        assert_eq!(fix_segment_name("(%)").len(), 1);
        assert_eq!(fix_segment_name("()"), "span");
        assert_eq!(
            trace_id_of(&[1, 2]),
            format!("1-00000000-{}0102", "0".repeat(20))
        );
    }

    #[test]
    fn stacks_parse_by_language() {
        let java = "java.lang.IllegalStateException: failed\n\
                    \tat com.shop.Checkout.run(Checkout.java:42)\n\
                    Caused by: java.io.IOException: disk full\n\
                    \tat com.shop.Disk.write(Disk.java:9)\n\
                    \t... 3 more";
        let exceptions = parse_exception("E", "failed", java, false, "java");
        assert_eq!(exceptions.len(), 2);
        assert_eq!(exceptions[0].stack.len(), 1);
        assert_eq!(exceptions[0].stack[0].label, "com.shop.Checkout.run");
        assert_eq!(exceptions[0].stack[0].line, 42);
        assert_eq!(
            exceptions[0].cause.as_deref(),
            Some(exceptions[1].id.as_str())
        );
        assert_eq!(exceptions[1].kind, "java.io.IOException");
        assert_eq!(exceptions[1].message, "disk full");
        assert_eq!(exceptions[1].stack[0].path, "Disk.java");

        let python = "Traceback (most recent call last):\n  \
                      File \"/app/a.py\", line 10, in handler\n    do()\n\
                      ValueError: bad\n";
        let exceptions = parse_exception("ValueError", "bad", python, false, "python");
        assert_eq!(exceptions.len(), 1);
        assert_eq!(exceptions[0].stack.len(), 1);
        assert_eq!(exceptions[0].stack[0].path, "/app/a.py");
        assert_eq!(exceptions[0].stack[0].line, 10);
        assert_eq!(exceptions[0].stack[0].label, "handler");

        let go = "panic: boom\n\ngoroutine 1 [running]:\nmain.handler()\n\t/app/main.go:12 +0x1d";
        let exceptions = parse_exception("panic", "boom", go, false, "go");
        let labels: Vec<&str> = exceptions[0]
            .stack
            .iter()
            .map(|f| f.label.as_str())
            .collect();
        assert_eq!(labels, ["", "main.handler()"]);
        assert_eq!(exceptions[0].stack[1].path, "/app/main.go");
    }
}
