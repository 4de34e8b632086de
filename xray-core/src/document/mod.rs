//! The segment document: the JSON the X-Ray daemon receives for every segment and subsegment.
//!
//! [`Document`] is one segment or subsegment; subsegments nest in
//! [`Document::subsegments`]. Serialization goes straight from these types through `serde`,
//! omitting every empty field; deserialization ignores fields it does not know, so documents
//! written by any X-Ray SDK can be read back.
//!
//! ```
//! use xray_sdk::{Document, SegmentId, TraceId};
//! use xray_sdk::document::seconds_from_micros;
//!
//! let mut segment = Document::new("orders-api", SegmentId::new(), seconds_from_micros(1_735_689_600_120_511));
//! segment.set_trace_id(TraceId::new());
//! segment.set_http_status(503);
//! segment.put_annotation("tenant", "blue")?;
//! segment.set_end_time(seconds_from_micros(1_735_689_600_318_204));
//!
//! let json = serde_json::to_string(&segment).unwrap();
//! assert!(json.contains(r#""start_time":1735689600.120511"#));
//! assert!(json.contains(r#""fault":true"#));
//! # Ok::<(), xray_sdk::document::AnnotationError>(())
//! ```

mod annotation;
mod aws;
mod cause;
mod http;
mod json;
mod metadata;
mod trim;

use std::cell::RefCell;
use std::error::Error;
use std::sync::Arc;

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{SegmentId, TraceId};

pub use annotation::{AnnotationError, AnnotationValue, Annotations};
pub use aws::{Aws, CloudwatchLogs, Ec2, Ecs, Eks, ElasticBeanstalk, Service, Sql, XRaySdk};
pub use cause::{Cause, CauseDetails, Exception, StackFrame};
pub use http::{Http, HttpRequest, HttpResponse, MAX_FIELD_CHARS, StatusFlags, capped_field};
pub use json::WriteError;
pub use metadata::{DEFAULT_METADATA_NAMESPACE, Metadata, MetadataError};
pub use trim::Trimmed;

pub(crate) use annotation::is_valid_key;
pub(crate) use json::{close_subsegments, open_element, sdk_block};
pub(crate) use metadata::is_reserved_namespace;

/// The longest name the service accepts, in characters.
const MAX_NAME_CHARS: usize = 200;
/// The name used when sanitising leaves nothing: the service refuses an empty name.
const FALLBACK_NAME: &str = "unnamed";
/// Times at or above this many seconds cannot be rounded to microseconds in an `f64`
/// (2^53 microseconds), so they are written as they are.
const MAX_ROUNDED_SECS: f64 = 9_007_199_254.0;

/// Converts microseconds since the Unix epoch (what a [`Clock`](crate::clock::Clock) returns) into
/// the
/// epoch seconds a document carries.
///
/// One correctly rounded division, so the result prints as the exact microsecond value
/// (`1735689600.120511`), without float noise.
///
/// # Examples
///
/// ```
/// use xray_sdk::document::seconds_from_micros;
///
/// assert_eq!(seconds_from_micros(1_735_689_600_120_511).to_string(), "1735689600.120511");
/// ```
pub fn seconds_from_micros(micros: u64) -> f64 {
    // Below 2^53 the integer converts exactly; one division then rounds once.
    micros as f64 / 1_000_000.0
}

/// The `namespace` of a subsegment.
///
/// # Examples
///
/// ```
/// use xray_sdk::Namespace;
///
/// assert_eq!(Namespace::from("aws"), Namespace::Aws);
/// assert_eq!(Namespace::from("local").as_str(), "local");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Namespace {
    /// A call to an AWS service through an AWS SDK.
    Aws,
    /// A call to any other downstream service.
    Remote,
    /// Any other value, as sent by another SDK (Python sends `local`).
    Other(Box<str>),
}

impl Namespace {
    /// The value written in the document.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Aws => "aws",
            Self::Remote => "remote",
            Self::Other(s) => s,
        }
    }
}

impl From<&str> for Namespace {
    /// `aws` and `remote` become [`Namespace::Aws`] and [`Namespace::Remote`]; any other
    /// string is kept as [`Namespace::Other`].
    fn from(s: &str) -> Self {
        match s {
            "aws" => Self::Aws,
            "remote" => Self::Remote,
            other => Self::Other(other.into()),
        }
    }
}

/// A segment or subsegment document.
///
/// The same type serves segments, subsegments embedded in a parent's `subsegments`, and
/// independent subsegments sent on their own (see [`Document::set_independent`]). Rarely used
/// blocks live behind pointers and empty ones allocate nothing, so an open subsegment costs
/// 144 bytes on 64-bit targets plus its name (shared with recent documents of the same name
/// made on the same thread).
///
/// Names are sanitised when set: characters outside what the service accepts (Unicode letters,
/// numbers and spaces, and `_ . : / % & # = + - @`) are removed, the result is cut to 200
/// characters, and an empty result becomes `unnamed`.
///
/// # Examples
///
/// ```
/// use xray_sdk::{Document, Namespace, SegmentId, TraceId};
///
/// let trace = TraceId::new();
/// let parent = SegmentId::new();
/// let mut call = Document::new("payments.example.net", SegmentId::new(), 1_735_689_600.15123);
/// call.set_namespace(Namespace::Remote);
/// call.set_independent(trace, parent);
/// call.set_traced(true);
/// call.set_in_progress(true);
///
/// let json = serde_json::to_value(&call).unwrap();
/// assert_eq!(json["type"], "subsegment");
/// assert_eq!(json["in_progress"], true);
/// assert!(json.get("end_time").is_none());
///
/// let back: Document = serde_json::from_value(json).unwrap();
/// assert_eq!(back, call);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Shared: documents made on one thread with the same name share one string (see
    /// [`shared_name`]).
    name: Arc<str>,
    id: SegmentId,
    /// `trace_id` and `parent_id`, boxed: most documents are embedded subsegments with neither,
    /// and an open subsegment should cost as little memory as possible.
    link: Option<Box<Link>>,
    start_time: f64,
    end_time: EndTime,
    subsegments: Vec<Document>,
    annotations: Option<Box<Annotations>>,
    metadata: Option<Box<Metadata>>,
    http: Option<Box<Http>>,
    /// Shared: a recorder gives every segment the same SDK block without allocating it.
    aws: Option<Arc<Aws>>,
    sql: Option<Arc<Sql>>,
    cause: Option<Box<Cause>>,
    /// Shared like `aws`.
    service: Option<Arc<Service>>,
    rare: Option<Box<Rare>>,
    // One byte next to the flags; an `Option<Namespace>` field would take 24.
    namespace: NamespaceTag,
    in_progress: bool,
    independent: bool,
    traced: bool,
    error: bool,
    throttle: bool,
    fault: bool,
}

/// An end time, NaN when there is none: saves the 8 bytes of an `Option<f64>`. Equality
/// treats two missing end times as equal.
#[derive(Debug, Clone, Copy)]
struct EndTime(f64);

impl EndTime {
    const NONE: Self = Self(f64::NAN);
}

impl PartialEq for EndTime {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0 || (self.0.is_nan() && other.0.is_nan())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NamespaceTag {
    None,
    Aws,
    Remote,
    /// The string is in `Rare::namespace`.
    Other,
}

/// The ids that tie a document into its trace.
#[derive(Debug, Clone, Default, PartialEq)]
struct Link {
    trace_id: Option<TraceId>,
    parent_id: Option<SegmentId>,
}

/// A link from an entity to a span of another trace, or of this one: what OpenTelemetry calls
/// a span link, for work that starts from more than one cause (a batch of queue messages, a
/// fan-in). X-Ray keeps links that reach it as OpenTelemetry spans (the OTLP endpoint and
/// `T1S`); the classic segment format has no field for them, so a daemon that only takes
/// segments drops `links`.
///
/// # Examples
///
/// ```
/// use xray_sdk::{Document, SegmentId, TraceId};
/// use xray_sdk::document::SpanLink;
///
/// let producer = TraceId::new();
/// let mut doc = Document::new("consume", SegmentId::new(), 1.0);
/// doc.add_link(SpanLink::new(producer, SegmentId::from_u64(0x53995c3f42cd8ad8)));
/// assert_eq!(doc.links()[0].trace_id, producer);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SpanLink {
    /// The trace of the linked span.
    pub trace_id: TraceId,
    /// The linked span (a segment or subsegment id).
    pub id: SegmentId,
    /// Attributes of the link: strings, numbers, booleans and arrays or objects of them.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

impl SpanLink {
    /// A link to the span `id` of the trace `trace_id`, with no attributes.
    pub fn new(trace_id: TraceId, id: SegmentId) -> Self {
        SpanLink {
            trace_id,
            id,
            attributes: serde_json::Map::new(),
        }
    }

    /// Adds an attribute.
    pub fn with_attribute(
        mut self,
        key: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }
}

/// Fields most documents never carry: the segment-only strings, `precursor_ids` and `links`.
#[derive(Debug, Clone, Default, PartialEq)]
struct Rare {
    /// A namespace other than `aws` and `remote`.
    namespace: Option<Box<str>>,
    origin: Option<String>,
    user: Option<String>,
    resource_arn: Option<String>,
    precursor_ids: Vec<SegmentId>,
    links: Vec<SpanLink>,
}

// ===== impl Document =====

impl Document {
    /// A document with a sanitised `name`, an `id` and a start time in epoch seconds (see
    /// [`seconds_from_micros`]).
    ///
    /// A start time that is NaN or infinite becomes 0: JSON cannot carry it.
    pub fn new(name: &str, id: SegmentId, start_time: f64) -> Self {
        Self::with_name(SanitizedName::new(name), id, start_time)
    }

    /// [`Document::new`] with a name already sanitised.
    #[inline]
    pub(crate) fn with_name(name: SanitizedName, id: SegmentId, start_time: f64) -> Self {
        Self {
            name: name.0,
            id,
            link: None,
            start_time: finite_or_zero(start_time),
            end_time: EndTime::NONE,
            subsegments: Vec::new(),
            annotations: None,
            metadata: None,
            http: None,
            aws: None,
            sql: None,
            cause: None,
            service: None,
            rare: None,
            namespace: NamespaceTag::None,
            in_progress: false,
            independent: false,
            traced: false,
            error: false,
            throttle: false,
            fault: false,
        }
    }

    // ----- identity -----

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Replaces the name, sanitised as described on [`Document`].
    pub fn set_name(&mut self, name: &str) {
        self.name = sanitize_name(name);
    }

    /// The id.
    pub fn id(&self) -> SegmentId {
        self.id
    }

    /// The trace id: always set on segments and independent subsegments, optional on embedded
    /// subsegments.
    pub fn trace_id(&self) -> Option<TraceId> {
        self.link.as_ref().and_then(|l| l.trace_id)
    }

    /// Sets the trace id.
    pub fn set_trace_id(&mut self, trace_id: TraceId) {
        self.link_mut().trace_id = Some(trace_id);
    }

    /// The parent: for a segment, the caller's subsegment from the incoming header; for an
    /// independent subsegment, its parent segment or subsegment.
    pub fn parent_id(&self) -> Option<SegmentId> {
        self.link.as_ref().and_then(|l| l.parent_id)
    }

    /// Sets the parent id.
    pub fn set_parent_id(&mut self, parent_id: SegmentId) {
        self.link_mut().parent_id = Some(parent_id);
    }

    fn link_mut(&mut self) -> &mut Link {
        self.link.get_or_insert_with(Box::default)
    }

    /// Whether this is a subsegment sent on its own (`"type": "subsegment"`).
    pub fn is_independent(&self) -> bool {
        self.independent
    }

    /// Makes this a subsegment sent on its own: writes `"type": "subsegment"`, the trace id and
    /// the parent's id, which the service needs to attach it.
    pub fn set_independent(&mut self, trace_id: TraceId, parent_id: SegmentId) {
        self.independent = true;
        self.link = Some(Box::new(Link {
            trace_id: Some(trace_id),
            parent_id: Some(parent_id),
        }));
    }

    /// The subsegment namespace, as written in the document.
    pub fn namespace(&self) -> Option<&str> {
        match self.namespace {
            NamespaceTag::None => None,
            NamespaceTag::Aws => Some(Namespace::Aws.as_str()),
            NamespaceTag::Remote => Some(Namespace::Remote.as_str()),
            NamespaceTag::Other => self.rare.as_ref()?.namespace.as_deref(),
        }
    }

    /// Sets the subsegment namespace.
    pub fn set_namespace(&mut self, namespace: Namespace) {
        self.namespace = match namespace {
            Namespace::Aws => NamespaceTag::Aws,
            Namespace::Remote => NamespaceTag::Remote,
            Namespace::Other(other) => {
                self.rare_mut().namespace = Some(other);
                NamespaceTag::Other
            }
        };
    }

    // ----- timing -----

    /// The start, in epoch seconds.
    pub fn start_time(&self) -> f64 {
        self.start_time
    }

    /// Sets the start, in epoch seconds (NaN or infinity becomes 0).
    pub fn set_start_time(&mut self, seconds: f64) {
        self.start_time = finite_or_zero(seconds);
    }

    /// The end, in epoch seconds, once ended.
    pub fn end_time(&self) -> Option<f64> {
        (!self.end_time.0.is_nan()).then_some(self.end_time.0)
    }

    /// Ends the document at `seconds` (NaN or infinity becomes 0); clears `in_progress`.
    pub fn set_end_time(&mut self, seconds: f64) {
        self.end_time = EndTime(finite_or_zero(seconds));
        self.in_progress = false;
    }

    /// Whether this is an in-progress fragment.
    pub fn in_progress(&self) -> bool {
        self.in_progress
    }

    /// Marks the document in progress (which removes the end time) or not.
    pub fn set_in_progress(&mut self, in_progress: bool) {
        self.in_progress = in_progress;
        if in_progress {
            self.end_time = EndTime::NONE;
        }
    }

    // ----- segment-only fields -----

    /// `origin`, the kind of resource running the application, e.g. `AWS::ECS::Container`.
    pub fn origin(&self) -> Option<&str> {
        self.rare.as_ref()?.origin.as_deref()
    }

    /// Sets `origin`.
    pub fn set_origin(&mut self, origin: impl Into<String>) {
        self.rare_mut().origin = Some(origin.into());
    }

    /// `user`, the user who made the request (indexed for search; written cut to 250
    /// characters).
    pub fn user(&self) -> Option<&str> {
        self.rare.as_ref()?.user.as_deref()
    }

    /// Sets `user`.
    pub fn set_user(&mut self, user: impl Into<String>) {
        self.rare_mut().user = Some(user.into());
    }

    /// `resource_arn`, the ARN of the resource running the application.
    pub fn resource_arn(&self) -> Option<&str> {
        self.rare.as_ref()?.resource_arn.as_deref()
    }

    /// Sets `resource_arn`.
    pub fn set_resource_arn(&mut self, arn: impl Into<String>) {
        self.rare_mut().resource_arn = Some(arn.into());
    }

    /// The `service` block.
    pub fn service(&self) -> Option<&Service> {
        self.service.as_deref()
    }

    /// Sets the `service` block.
    pub fn set_service(&mut self, service: Service) {
        self.service = Some(Arc::new(service));
    }

    // ----- http, aws, sql -----

    /// The `http` block.
    pub fn http(&self) -> Option<&Http> {
        self.http.as_deref()
    }

    /// The `http` block, created empty if missing.
    pub fn http_mut(&mut self) -> &mut Http {
        self.http.get_or_insert_with(Box::default)
    }

    /// Records the response status in `http.response.status` and sets the flags it implies
    /// (see [`StatusFlags`]); flags already set stay set.
    pub fn set_http_status(&mut self, status: u16) {
        self.http_mut()
            .response
            .get_or_insert_with(HttpResponse::default)
            .status = Some(status);
        self.apply_status_flags(StatusFlags::from_status(status));
    }

    /// The response status, if recorded.
    pub fn http_status(&self) -> Option<u16> {
        self.http.as_ref()?.response.as_ref()?.status
    }

    /// Sets every flag that is set in `flags`.
    pub fn apply_status_flags(&mut self, flags: StatusFlags) {
        self.error |= flags.error;
        self.throttle |= flags.throttle;
        self.fault |= flags.fault;
    }

    /// The `aws` block.
    pub fn aws(&self) -> Option<&Aws> {
        self.aws.as_deref()
    }

    /// The `aws` block, created empty if missing.
    pub fn aws_mut(&mut self) -> &mut Aws {
        Arc::make_mut(self.aws.get_or_insert_with(Arc::default))
    }

    /// Sets the `service` block to one shared with other documents (no copy until changed).
    pub(crate) fn set_shared_service(&mut self, service: Arc<Service>) {
        self.service = Some(service);
    }

    /// Sets the `aws` block to one shared with other documents (no copy until changed).
    pub(crate) fn set_shared_aws(&mut self, aws: Arc<Aws>) {
        self.aws = Some(aws);
    }

    /// The `sql` block.
    pub fn sql(&self) -> Option<&Sql> {
        self.sql.as_deref()
    }

    /// Sets the `sql` block. An `Arc<Sql>` is shared, not copied: a database client whose
    /// queries all describe the same connection makes the block once and sets it on each.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use xray_sdk::{Document, SegmentId};
    /// use xray_sdk::document::Sql;
    ///
    /// let mut connection = Sql::default();
    /// connection.database_type = Some("PostgreSQL".into());
    /// let connection = Arc::new(connection);
    /// let mut doc = Document::new("orders@db", SegmentId::new(), 1.0);
    /// doc.set_sql(Arc::clone(&connection));
    /// assert_eq!(doc.sql().and_then(|s| s.database_type.as_deref()), Some("PostgreSQL"));
    /// ```
    pub fn set_sql(&mut self, sql: impl Into<Arc<Sql>>) {
        self.sql = Some(sql.into());
    }

    /// The `sql` block to change in place, made empty if there is none (copied first if it
    /// is shared with other documents).
    pub fn sql_mut(&mut self) -> &mut Sql {
        Arc::make_mut(self.sql.get_or_insert_with(Arc::default))
    }

    /// Whether the callee is instrumented too, so the service should expect a segment whose
    /// parent is this subsegment. Written at the top level of the subsegment.
    pub fn traced(&self) -> bool {
        self.traced
    }

    /// Sets `traced`.
    pub fn set_traced(&mut self, traced: bool) {
        self.traced = traced;
    }

    // ----- flags and cause -----

    /// A client error (4xx).
    pub fn error(&self) -> bool {
        self.error
    }

    /// Sets `error`.
    pub fn set_error(&mut self, error: bool) {
        self.error = error;
    }

    /// Throttled (429).
    pub fn throttle(&self) -> bool {
        self.throttle
    }

    /// Sets `throttle`.
    pub fn set_throttle(&mut self, throttle: bool) {
        self.throttle = throttle;
    }

    /// A server error (5xx, or an error without a client-error status).
    pub fn fault(&self) -> bool {
        self.fault
    }

    /// Sets `fault`.
    pub fn set_fault(&mut self, fault: bool) {
        self.fault = fault;
    }

    /// The `cause`.
    pub fn cause(&self) -> Option<&Cause> {
        self.cause.as_deref()
    }

    /// Replaces the `cause` and touches no flag.
    pub fn set_cause(&mut self, cause: Cause) {
        self.cause = Some(Box::new(cause));
    }

    /// Adds a cause: exceptions accumulate across calls. Unless a 4xx status is recorded (the
    /// status flags already tell a client error), `fault` is set.
    pub fn add_cause(&mut self, cause: Cause) {
        match &mut self.cause {
            Some(mine) => mine.merge(cause),
            None => self.cause = Some(Box::new(cause)),
        }
        if !self.http_status().is_some_and(|s| (400..500).contains(&s)) {
            self.fault = true;
        }
    }

    /// Records `err` and its `source()` chain: [`Cause::from_error`] then
    /// [`Document::add_cause`].
    pub fn add_error(&mut self, err: &(dyn Error + 'static)) {
        self.add_cause(Cause::from_error(err));
    }

    // ----- annotations and metadata -----

    /// The annotations.
    pub fn annotations(&self) -> Option<&Annotations> {
        self.annotations.as_deref().filter(|a| !a.is_empty())
    }

    /// Adds or replaces an annotation. A bad key or value is refused, logged as a warning, and
    /// leaves the document unchanged.
    pub fn put_annotation(
        &mut self,
        key: &str,
        value: impl Into<AnnotationValue>,
    ) -> Result<(), AnnotationError> {
        let annotations = self.annotations.get_or_insert_with(Box::default);
        let result = annotations.insert(key, value);
        if annotations.is_empty() {
            self.annotations = None;
        }
        if let Err(err) = &result {
            tracing::warn!(target: "xray_sdk::document", error = %err, "annotation dropped");
        }
        result
    }

    /// The metadata.
    pub fn metadata(&self) -> Option<&Metadata> {
        self.metadata.as_deref().filter(|m| !m.is_empty())
    }

    /// Stores `value` under `key` in the `default` metadata namespace.
    pub fn put_metadata<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> Result<(), MetadataError> {
        self.put_metadata_in(DEFAULT_METADATA_NAMESPACE, key, value)
    }

    /// Stores `value` under `key` in `namespace`. Namespaces starting with `AWS.` are
    /// reserved for AWS SDKs and refused. Errors are logged as warnings too.
    pub fn put_metadata_in<T: Serialize + ?Sized>(
        &mut self,
        namespace: &str,
        key: &str,
        value: &T,
    ) -> Result<(), MetadataError> {
        let result = self.metadata_mut().insert(namespace, key, value);
        self.after_metadata(&result);
        result
    }

    /// Stores `value` under a namespace reserved for AWS SDKs (`AWS.` prefix). For the `xray-*`
    /// integration crates only; applications use [`Document::put_metadata_in`].
    pub fn put_reserved_metadata<T: Serialize + ?Sized>(
        &mut self,
        namespace: &str,
        key: &str,
        value: &T,
    ) -> Result<(), MetadataError> {
        let result = self.metadata_mut().insert_reserved(namespace, key, value);
        self.after_metadata(&result);
        result
    }

    fn metadata_mut(&mut self) -> &mut Metadata {
        self.metadata.get_or_insert_with(Box::default)
    }

    fn after_metadata(&mut self, result: &Result<(), MetadataError>) {
        if self.metadata.as_ref().is_some_and(|m| m.is_empty()) {
            self.metadata = None;
        }
        if let Err(err) = result {
            tracing::warn!(target: "xray_sdk::document", error = %err, "metadata dropped");
        }
    }

    // ----- nesting -----

    /// The embedded subsegments.
    pub fn subsegments(&self) -> &[Document] {
        &self.subsegments
    }

    /// The embedded subsegments, to change.
    pub fn subsegments_mut(&mut self) -> &mut Vec<Document> {
        &mut self.subsegments
    }

    /// Embeds `child` in `subsegments`.
    #[inline]
    pub fn add_subsegment(&mut self, child: Document) {
        self.subsegments.push(child);
    }

    /// Ids of sibling subsegments that ended before this one started.
    pub fn precursor_ids(&self) -> &[SegmentId] {
        self.rare.as_ref().map_or(&[], |r| &r.precursor_ids)
    }

    /// Adds a precursor id.
    pub fn add_precursor_id(&mut self, id: SegmentId) {
        self.rare_mut().precursor_ids.push(id);
    }

    /// Links to spans of other traces (or of this one); see [`SpanLink`].
    pub fn links(&self) -> &[SpanLink] {
        self.rare.as_ref().map_or(&[], |r| &r.links)
    }

    /// Adds a link.
    pub fn add_link(&mut self, link: SpanLink) {
        self.rare_mut().links.push(link);
    }

    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }
}

// ===== serialization =====

impl Serialize for Document {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("name", &*self.name)?;
        m.serialize_entry("id", &self.id)?;
        if let Some(t) = self.trace_id() {
            m.serialize_entry("trace_id", &t)?;
        }
        if let Some(p) = self.parent_id() {
            m.serialize_entry("parent_id", &p)?;
        }
        if self.independent {
            m.serialize_entry("type", "subsegment")?;
        }
        m.serialize_entry("start_time", &Time(self.start_time))?;
        if let Some(end) = self.end_time() {
            m.serialize_entry("end_time", &Time(end))?;
        }
        if self.in_progress {
            m.serialize_entry("in_progress", &true)?;
        }
        if let Some(ns) = self.namespace() {
            m.serialize_entry("namespace", ns)?;
        }
        if let Some(r) = &self.rare {
            if let Some(v) = &r.origin {
                m.serialize_entry("origin", v)?;
            }
            if let Some(v) = &r.user {
                m.serialize_entry("user", http::prefix_chars(v, http::MAX_FIELD_CHARS))?;
            }
            if let Some(v) = &r.resource_arn {
                m.serialize_entry("resource_arn", v)?;
            }
        }
        if let Some(v) = self
            .service
            .as_deref()
            .filter(|v| **v != Service::default())
        {
            m.serialize_entry("service", v)?;
        }
        if self.traced {
            m.serialize_entry("traced", &true)?;
        }
        if let Some(v) = self
            .http
            .as_deref()
            .filter(|h| h.request.is_some() || h.response.is_some())
        {
            m.serialize_entry("http", v)?;
        }
        if let Some(v) = self.aws.as_deref().filter(|v| **v != Aws::default()) {
            m.serialize_entry("aws", v)?;
        }
        if let Some(v) = self.sql.as_deref().filter(|v| **v != Sql::default()) {
            m.serialize_entry("sql", v)?;
        }
        if self.error {
            m.serialize_entry("error", &true)?;
        }
        if self.throttle {
            m.serialize_entry("throttle", &true)?;
        }
        if self.fault {
            m.serialize_entry("fault", &true)?;
        }
        if let Some(v) = self.cause.as_deref().filter(|c| !cause_is_empty(c)) {
            m.serialize_entry("cause", v)?;
        }
        if let Some(v) = self.annotations() {
            m.serialize_entry("annotations", v)?;
        }
        if let Some(v) = self.metadata() {
            m.serialize_entry("metadata", v)?;
        }
        let precursors = self.precursor_ids();
        if !precursors.is_empty() {
            m.serialize_entry("precursor_ids", precursors)?;
        }
        if !self.links().is_empty() {
            m.serialize_entry("links", self.links())?;
        }
        if !self.subsegments.is_empty() {
            m.serialize_entry("subsegments", &self.subsegments)?;
        }
        m.end()
    }
}

fn cause_is_empty(c: &Cause) -> bool {
    match c {
        Cause::Reference(_) => false,
        Cause::Details(d) => {
            d.exceptions.is_empty() && d.paths.is_empty() && d.working_directory.is_none()
        }
    }
}

/// Epoch seconds, written rounded to the microsecond so no float noise reaches the wire.
struct Time(f64);

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        if !t.is_finite() {
            // Unreachable through the setters; JSON has no NaN and serde_json would write null.
            return s.serialize_f64(0.0);
        }
        if t.abs() >= MAX_ROUNDED_SECS {
            return s.serialize_f64(t);
        }
        // The product is exact to well under a microsecond here; the division of an integral
        // value rounds once, so the shortest representation is the microsecond decimal.
        s.serialize_f64((t * 1_000_000.0).round() / 1_000_000.0)
    }
}

// ===== deserialization =====

/// Every field as the wire carries it; converted into the compact [`Document`].
#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    name: Option<String>,
    id: SegmentId,
    #[serde(default)]
    trace_id: Option<TraceId>,
    #[serde(default)]
    parent_id: Option<SegmentId>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    start_time: Option<f64>,
    #[serde(default)]
    end_time: Option<f64>,
    #[serde(default)]
    in_progress: Option<bool>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    origin: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    resource_arn: Option<String>,
    #[serde(default)]
    service: Option<Service>,
    #[serde(default)]
    traced: Option<bool>,
    #[serde(default)]
    http: Option<Http>,
    #[serde(default)]
    aws: Option<Aws>,
    #[serde(default)]
    sql: Option<Sql>,
    #[serde(default)]
    error: Option<bool>,
    #[serde(default)]
    throttle: Option<bool>,
    #[serde(default)]
    fault: Option<bool>,
    #[serde(default)]
    cause: Option<Cause>,
    #[serde(default)]
    annotations: Option<Annotations>,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    precursor_ids: Option<Vec<SegmentId>>,
    #[serde(default)]
    links: Option<Vec<SpanLink>>,
    #[serde(default)]
    subsegments: Option<Vec<Document>>,
}

impl<'de> Deserialize<'de> for Document {
    /// Reads a document from any SDK: unknown fields are ignored, the name is kept as sent,
    /// and `traced` is honoured at the top level or in `http.request`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        let mut http = w.http;
        let nested_traced = http
            .as_mut()
            .and_then(|h| h.request.as_mut())
            .is_some_and(|r| std::mem::take(&mut r.traced));
        let precursor_ids = w.precursor_ids.unwrap_or_default();
        let links = w.links.unwrap_or_default();
        let (namespace, other_namespace) = match w.namespace.as_deref().map(Namespace::from) {
            None => (NamespaceTag::None, None),
            Some(Namespace::Aws) => (NamespaceTag::Aws, None),
            Some(Namespace::Remote) => (NamespaceTag::Remote, None),
            Some(Namespace::Other(s)) => (NamespaceTag::Other, Some(s)),
        };
        let rare = (other_namespace.is_some()
            || w.origin.is_some()
            || w.user.is_some()
            || w.resource_arn.is_some()
            || !precursor_ids.is_empty()
            || !links.is_empty())
        .then(|| {
            Box::new(Rare {
                namespace: other_namespace,
                origin: w.origin,
                user: w.user,
                resource_arn: w.resource_arn,
                precursor_ids,
                links,
            })
        });
        let in_progress = w.in_progress.unwrap_or(false);
        Ok(Self {
            name: w.name.unwrap_or_default().into(),
            id: w.id,
            link: (w.trace_id.is_some() || w.parent_id.is_some()).then(|| {
                Box::new(Link {
                    trace_id: w.trace_id,
                    parent_id: w.parent_id,
                })
            }),
            start_time: finite_or_zero(w.start_time.unwrap_or(0.0)),
            end_time: EndTime(w.end_time.map_or(f64::NAN, finite_or_zero)),
            subsegments: w.subsegments.unwrap_or_default(),
            annotations: w.annotations.filter(|a| !a.is_empty()).map(Box::new),
            metadata: w.metadata.filter(|m| !m.is_empty()).map(Box::new),
            http: http.map(Box::new),
            aws: w.aws.map(Arc::new),
            sql: w.sql.map(Arc::new),
            cause: w.cause.map(Box::new),
            service: w.service.map(Arc::new),
            rare,
            namespace,
            in_progress,
            independent: w.kind.as_deref() == Some("subsegment"),
            traced: w.traced.unwrap_or(false) || nested_traced,
            error: w.error.unwrap_or(false),
            throttle: w.throttle.unwrap_or(false),
            fault: w.fault.unwrap_or(false),
        })
    }
}

// ===== helpers =====

fn finite_or_zero(t: f64) -> f64 {
    if t.is_finite() { t } else { 0.0 }
}

/// Keeps the characters the service accepts in a name (Unicode letters, numbers, space
/// separators, and `_ . : / % & # = + - @`), cut to 200 characters; never empty.
/// A name as documents carry it: sanitised, and shared with other documents of the same name.
pub(crate) struct SanitizedName(Arc<str>);

impl SanitizedName {
    #[inline]
    pub(crate) fn new(name: &str) -> Self {
        Self(sanitize_name(name))
    }
}

/// `name` as a document would carry it, for names fixed at start-up (`AWS_XRAY_TRACING_NAME`),
/// so that they are sanitised, and reported, once rather than on every segment.
pub(crate) fn sanitized_name(name: &str) -> Arc<str> {
    sanitize_name(name)
}

fn sanitize_name(name: &str) -> Arc<str> {
    // Nearly every name is short ASCII the service accepts as it is: one check, and usually
    // no copy (see `shared_name`).
    if (1..=MAX_NAME_CHARS).contains(&name.len()) && name.bytes().all(is_plain_name_byte) {
        return shared_name(name);
    }
    let mut out = String::with_capacity(name.len().min(MAX_NAME_CHARS * 4));
    let mut kept = 0;
    let mut dropped = false;
    for c in name.chars() {
        if !is_name_char(c) {
            dropped = true;
            continue;
        }
        if kept == MAX_NAME_CHARS {
            dropped = true;
            break;
        }
        out.push(c);
        kept += 1;
    }
    if out.is_empty() {
        out.push_str(FALLBACK_NAME);
    }
    if dropped {
        // Once a minute at most: a service names its segments the same way every time, so
        // one bad name would otherwise log on every request.
        static LOG: crate::diag::LogLimiter = crate::diag::LogLimiter::new(60);
        if LOG.allow(crate::clock::now_micros_for_logs()) {
            tracing::debug!(
                target: "xray_sdk::document",
                name = %out,
                "segment name sanitised: characters X-Ray does not accept were dropped, or it \
                 was cut to 200 characters (logged once a minute)"
            );
        }
    }
    out.into()
}

/// Names recently made on this thread. A service uses a handful of names over and over:
/// sharing them saves an allocation and a free per document (a reference count instead).
struct NameCache {
    names: [Option<Arc<str>>; NAME_CACHE_LEN],
    next: usize,
}

const NAME_CACHE_LEN: usize = 4;

thread_local! {
    static NAMES: RefCell<NameCache> = const {
        RefCell::new(NameCache {
            names: [const { None }; NAME_CACHE_LEN],
            next: 0,
        })
    };
}

/// `name`, already valid, as a string shared with recent documents of the same name.
fn shared_name(name: &str) -> Arc<str> {
    NAMES
        .try_with(|cache| {
            let mut cache = cache.try_borrow_mut().ok()?;
            if let Some(hit) = cache.names.iter().flatten().find(|n| ***n == *name) {
                return Some(hit.clone());
            }
            let fresh: Arc<str> = name.into();
            let next = cache.next;
            cache.next = (next + 1) % NAME_CACHE_LEN;
            if let Some(slot) = cache.names.get_mut(next) {
                *slot = Some(fresh.clone());
            }
            Some(fresh)
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| name.into())
}

/// An ASCII byte [`is_name_char`] accepts.
fn is_plain_name_byte(b: u8) -> bool {
    PLAIN_NAME_BYTES[b as usize]
}

/// The ASCII bytes [`is_name_char`] accepts, as a table.
const PLAIN_NAME_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b' ' | b'_' | b'.' | b':' | b'/' | b'%' | b'&' | b'#' | b'=' | b'+' | b'-' | b'@'
            );
        b += 1;
    }
    t
};

fn is_name_char(c: char) -> bool {
    // \p{Z} is exactly the White_Space characters that are not control characters.
    c.is_alphanumeric()
        || (c.is_whitespace() && !c.is_control())
        || matches!(
            c,
            '_' | '.' | ':' | '/' | '%' | '&' | '#' | '=' | '+' | '-' | '@'
        )
}
