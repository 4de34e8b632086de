//! Datagram framing and document validation.
//!
//! The checks follow the daemon's framing (a JSON header line, `\n`, one JSON document) and then go
//! further than the daemon, which forwards the body unread: a document the X-Ray service would
//! refuse for a missing or ill-typed core field is refused here, so a test sees the problem at
//! once instead of an assembled trace with a hole in it. Everything else in the document is kept
//! as it came, so any SDK's extra fields pass through untouched.

use std::fmt;

use serde_json::{Map, Value};
use xray_sdk::TraceId;

/// Why a datagram or a document was refused.
///
/// Each reason has its own counter in [`Stats`](crate::Stats).
///
/// # Examples
///
/// ```
/// use xray_local::DropReason;
///
/// assert_eq!(DropReason::InvalidHeader.as_str(), "invalid_header");
/// assert!(DropReason::ALL.contains(&DropReason::Oversize));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DropReason {
    /// The datagram is longer than the largest accepted size (64 KiB unless configured).
    Oversize,
    /// There is no `\n` after the header line, or nothing after it.
    MissingBody,
    /// The header line is not `{"format":"json","version":1}` (any whitespace, `format`
    /// compared case-insensitively).
    InvalidHeader,
    /// The document is not UTF-8 JSON, or nests deeper than 127 levels of objects and arrays
    /// (serde_json's limit; about 63 levels of subsegments in one document).
    InvalidJson,
    /// The document is JSON but not an object.
    NotAnObject,
    /// `name` is missing or not a string.
    InvalidName,
    /// `id` is missing or not 16 hex digits.
    InvalidId,
    /// `trace_id` is missing or not a valid trace id.
    InvalidTraceId,
    /// `start_time` is missing or not a number.
    InvalidStartTime,
    /// An independent subsegment (`"type": "subsegment"`) has no `parent_id`, or a `parent_id`
    /// is present but not 16 hex digits.
    InvalidParentId,
    /// A `T1S`/`T1U` body (OpenTelemetry spans, as the AWS OpenTelemetry distributions send
    /// them) that is not base64 of an OTLP `ExportTraceServiceRequest`, or whose spans give no
    /// valid document.
    InvalidOtlp,
    /// An OpenTelemetry span whose ids cannot make a document: a trace id that is not 16
    /// bytes or is zero, a span id that is not 8 bytes or is zero, or a parent span id that
    /// is neither empty nor 8 bytes. Counted per span; the other spans of its request are kept.
    InvalidSpan,
    /// A segment or subsegment nests more than 120 levels of objects and arrays in its own
    /// fields, its `subsegments` aside (`metadata` nested that deep, say): close to
    /// [`InvalidJson`](Self::InvalidJson)'s 127. Subsegments may nest as deep as a document
    /// can, and separately sent ones 256 levels; the bound keeps the JSON of every trace
    /// readable by a JSON parser's default limits ([the JSON form](crate::Trace#the-json-form)).
    TooDeep,
    /// Valid, but the queue between the socket reader and the store was full: documents
    /// arrived faster than they could be filed, for longer than the queue could absorb.
    Backlog,
}

impl DropReason {
    /// Every reason, in declaration order.
    pub const ALL: [DropReason; 14] = [
        DropReason::Oversize,
        DropReason::MissingBody,
        DropReason::InvalidHeader,
        DropReason::InvalidJson,
        DropReason::NotAnObject,
        DropReason::InvalidName,
        DropReason::InvalidId,
        DropReason::InvalidTraceId,
        DropReason::InvalidStartTime,
        DropReason::InvalidParentId,
        DropReason::InvalidOtlp,
        DropReason::InvalidSpan,
        DropReason::TooDeep,
        DropReason::Backlog,
    ];

    /// A short `snake_case` name, stable across releases.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Oversize => "oversize",
            DropReason::MissingBody => "missing_body",
            DropReason::InvalidHeader => "invalid_header",
            DropReason::InvalidJson => "invalid_json",
            DropReason::NotAnObject => "not_an_object",
            DropReason::InvalidName => "invalid_name",
            DropReason::InvalidId => "invalid_id",
            DropReason::InvalidTraceId => "invalid_trace_id",
            DropReason::InvalidStartTime => "invalid_start_time",
            DropReason::InvalidParentId => "invalid_parent_id",
            DropReason::InvalidOtlp => "invalid_otlp",
            DropReason::InvalidSpan => "invalid_span",
            DropReason::TooDeep => "too_deep",
            DropReason::Backlog => "backlog",
        }
    }

    /// The position of this reason in [`DropReason::ALL`].
    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    const fn describe(self) -> &'static str {
        match self {
            DropReason::Oversize => "the datagram is larger than the accepted maximum",
            DropReason::MissingBody => "no `\\n` and document after the header line",
            DropReason::InvalidHeader => {
                "the header line is not {\"format\":\"json\",\"version\":1}"
            }
            DropReason::InvalidJson => {
                "the document is not UTF-8 JSON, or nests deeper than 127 levels"
            }
            DropReason::NotAnObject => "the document is not a JSON object",
            DropReason::InvalidName => "`name` is missing or not a string",
            DropReason::InvalidId => "`id` is missing or not 16 hex digits",
            DropReason::InvalidTraceId => "`trace_id` is missing or not a valid trace id",
            DropReason::InvalidStartTime => "`start_time` is missing or not a number",
            DropReason::InvalidParentId => {
                "`parent_id` is missing on an independent subsegment or not 16 hex digits"
            }
            DropReason::InvalidOtlp => {
                "a T1S/T1U body is not base64 of an OTLP ExportTraceServiceRequest with spans"
            }
            DropReason::InvalidSpan => {
                "an OpenTelemetry span's trace, span or parent span id cannot make a document"
            }
            DropReason::TooDeep => {
                "a segment or subsegment nests more than 120 levels in its own fields"
            }
            DropReason::Backlog => {
                "the intake queue is full: documents arrive faster than they are filed"
            }
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.describe())
    }
}

/// A document that passed validation.
#[derive(Debug, Clone)]
pub(crate) struct Document {
    pub(crate) trace_id: TraceId,
    pub(crate) id: String,
    /// `Some` for an independent subsegment: the id of the entity it belongs under.
    pub(crate) parent_id: Option<String>,
    pub(crate) in_progress: bool,
    pub(crate) value: Value,
}

/// What one datagram holds: a segment document, or the documents of OpenTelemetry spans.
#[derive(Debug)]
pub(crate) enum Parsed {
    One(Document),
    /// The span documents that passed, and why each of the others was refused: each refusal
    /// is counted, so that no span is lost in silence.
    Spans(Vec<Document>, Vec<DropReason>),
}

impl IntoIterator for Parsed {
    type Item = Document;
    type IntoIter = std::iter::Chain<std::option::IntoIter<Document>, std::vec::IntoIter<Document>>;

    fn into_iter(self) -> Self::IntoIter {
        match self {
            Parsed::One(doc) => Some(doc).into_iter().chain(Vec::new()),
            Parsed::Spans(docs, _) => None.into_iter().chain(docs),
        }
    }
}

/// The prefixes of OTLP bodies: sampled and unsampled spans.
const OTLP_PREFIXES: [&[u8]; 2] = [b"T1S", b"T1U"];

/// Splits a datagram into header and body, checks the header and validates the body: a
/// segment document, or `T1S`/`T1U` followed by base64 of an OTLP export request, whose spans
/// become segment documents as X-Ray converts them.
pub(crate) fn parse_datagram(datagram: &[u8]) -> Result<Parsed, DropReason> {
    // The daemon splits at the first newline; the header never contains one.
    let newline = datagram
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(DropReason::MissingBody)?;
    let (header, rest) = datagram.split_at(newline);
    let body = rest.get(1..).unwrap_or_default();
    if !is_valid_header(header) {
        return Err(DropReason::InvalidHeader);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(DropReason::MissingBody);
    }
    if let Some(encoded) = OTLP_PREFIXES.iter().find_map(|p| body.strip_prefix(*p)) {
        return parse_otlp(encoded.trim_ascii())
            .map(|(docs, refused)| Parsed::Spans(docs, refused));
    }
    let value: Value = serde_json::from_slice(body).map_err(|_| DropReason::InvalidJson)?;
    validate(value).map(Parsed::One)
}

/// The documents of an OTLP export request in base64, and the reasons the invalid ones were
/// refused. A request that holds no span at all is refused whole.
fn parse_otlp(encoded: &[u8]) -> Result<(Vec<Document>, Vec<DropReason>), DropReason> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| DropReason::InvalidOtlp)?;
    let request = decode_otlp(&bytes).ok_or(DropReason::InvalidOtlp)?;
    let mut docs = Vec::new();
    let (values, skipped) = xray_sdk::otlp::to_documents_counted(&request);
    let mut refused = vec![DropReason::InvalidSpan; skipped];
    for value in values {
        match validate(value) {
            Ok(doc) => docs.push(doc),
            Err(reason) => refused.push(reason),
        }
    }
    if docs.is_empty() && refused.is_empty() {
        return Err(DropReason::InvalidOtlp);
    }
    Ok((docs, refused))
}

/// An OTLP export request from its protobuf bytes.
pub(crate) fn decode_otlp(
    bytes: &[u8],
) -> Option<xray_sdk::otlp::proto::tonic::collector::trace::v1::ExportTraceServiceRequest> {
    use prost::Message as _;
    xray_sdk::otlp::proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(bytes)
        .ok()
}

fn is_valid_header(header: &[u8]) -> bool {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(header) else {
        return false;
    };
    let format_ok = map
        .get("format")
        .and_then(Value::as_str)
        .is_some_and(|f| f.eq_ignore_ascii_case("json"));
    let version_ok = map.get("version").and_then(Value::as_u64) == Some(1);
    format_ok && version_ok
}

/// Checks the fields every top-level document needs.
pub(crate) fn validate(value: Value) -> Result<Document, DropReason> {
    let Value::Object(map) = &value else {
        return Err(DropReason::NotAnObject);
    };
    if !map.get("name").is_some_and(Value::is_string) {
        return Err(DropReason::InvalidName);
    }
    let id = match map.get("id").and_then(Value::as_str) {
        Some(id) if is_segment_id(id) => id.to_owned(),
        _ => return Err(DropReason::InvalidId),
    };
    let trace_id = map
        .get("trace_id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<TraceId>().ok())
        .ok_or(DropReason::InvalidTraceId)?;
    if !map.get("start_time").is_some_and(Value::is_number) {
        return Err(DropReason::InvalidStartTime);
    }
    let independent = map.get("type").and_then(Value::as_str) == Some("subsegment");
    let parent_id = match map.get("parent_id") {
        None if independent => return Err(DropReason::InvalidParentId),
        None => None,
        Some(Value::String(p)) if is_segment_id(p) => Some(p.clone()),
        Some(_) => return Err(DropReason::InvalidParentId),
    };
    if too_deep(&value) {
        return Err(DropReason::TooDeep);
    }
    let in_progress = is_in_progress(map);
    Ok(Document {
        trace_id,
        id,
        // A segment's `parent_id` names the caller in another service: it is kept in the
        // document but the segment stays a root of the trace.
        parent_id: parent_id.filter(|_| independent),
        in_progress,
        value,
    })
}

/// The most levels of objects and arrays an entity may take up in its own fields, its
/// `subsegments` aside, its own object included: [`DropReason::TooDeep`] past it.
pub(crate) const MAX_ENTITY_NESTING: usize = 120;

/// Whether an entity of the document (the document itself or any subsegment in it) is deeper
/// than [`MAX_ENTITY_NESTING`] in its own fields.
fn too_deep(doc: &Value) -> bool {
    let mut entities = vec![doc];
    while let Some(entity) = entities.pop() {
        if entity_nesting(entity) > MAX_ENTITY_NESTING {
            return true;
        }
        if let Some(Value::Array(subsegments)) = entity.get("subsegments") {
            entities.extend(subsegments);
        }
    }
    false
}

/// The levels of objects and arrays an entity takes up, its `subsegments` list aside: 1 for
/// an object of numbers and strings, 3 with `"http": {"request": {..}}`. Anything else in a
/// `subsegments` list counts whole: 0 for a number, 1 for `[]`.
pub(crate) fn entity_nesting(entity: &Value) -> usize {
    let Value::Object(map) = entity else {
        return nesting(entity);
    };
    let fields = map
        .iter()
        .filter(|(key, value)| !(*key == "subsegments" && value.is_array()))
        .map(|(_, value)| nesting(value))
        .max()
        .unwrap_or(0);
    1 + fields
}

/// The levels of objects and arrays of a value, without recursion: 0 for a number or a string,
/// 1 for `{}` or `[1, 2]`, 2 for `[[1]]`.
fn nesting(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1)];
    while let Some((value, level)) = stack.pop() {
        match value {
            Value::Array(items) => {
                deepest = deepest.max(level);
                stack.extend(items.iter().map(|v| (v, level + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(level);
                stack.extend(map.values().map(|v| (v, level + 1)));
            }
            _ => {}
        }
    }
    deepest
}

pub(crate) fn is_in_progress(map: &Map<String, Value>) -> bool {
    map.get("in_progress").and_then(Value::as_bool) == Some(true)
}

fn is_segment_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What a value takes on the heap once parsed, in bytes: each string's and array's buffer,
/// each map's nodes and keys, and the allocator's overhead per allocation. An estimate from the
/// layout of `serde_json`'s types: a map is a `BTreeMap` whose nodes hold 11 entries each
/// (about 630 bytes a node, even for a map of one entry), so a document of many small objects
/// costs twenty times its JSON text or more. The store's byte bound counts this.
pub(crate) fn footprint(value: &Value) -> usize {
    /// The allocator's bookkeeping and rounding per allocation.
    const PER_ALLOC: usize = 16;
    /// A leaf node of a `BTreeMap<String, Value>`: 11 keys, 11 values, a parent link and two
    /// counts.
    const NODE: usize = 11 * (size_of::<String>() + size_of::<Value>()) + 16 + PER_ALLOC;
    /// Entries a node holds on average: a little over two thirds of 11.
    const PER_NODE: usize = 7;
    let mut total = size_of::<Value>();
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::String(s) if s.capacity() > 0 => total += s.capacity() + PER_ALLOC,
            Value::Array(items) => {
                if items.capacity() > 0 {
                    total += items.capacity() * size_of::<Value>() + PER_ALLOC;
                }
                stack.extend(items);
            }
            Value::Object(map) if !map.is_empty() => {
                total += map.len().div_ceil(PER_NODE) * NODE;
                for (key, value) in map {
                    total += key.capacity() + PER_ALLOC;
                    stack.push(value);
                }
            }
            _ => {}
        }
    }
    total
}

/// What a document costs the store: its parsed value, its ids, and the indexes that the
/// store keeps of every entity in it (each id in two or three sets), in bytes.
pub(crate) fn document_cost(doc: &Document) -> usize {
    /// One id in one index: the string, its buffer, the table's slot.
    const PER_INDEX: usize = size_of::<String>() + 16 + 16 + 8;
    let mut entities = 0;
    let mut stack = vec![&doc.value];
    while let Some(entity) = stack.pop() {
        entities += 1;
        if let Some(Value::Array(subsegments)) = entity.get("subsegments") {
            stack.extend(subsegments);
        }
    }
    size_of::<Document>()
        + doc.id.capacity()
        + doc.parent_id.as_ref().map_or(0, String::capacity)
        + footprint(&doc.value)
        + entities * 3 * PER_INDEX
}
