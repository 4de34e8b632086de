//! One segment document as one OpenTelemetry span, for the OTLP transports (`T1S` datagrams,
//! OTLP/HTTP to X-Ray).
//!
//! X-Ray turns spans into segments by the rules of the OpenTelemetry collector's X-Ray exporter
//! (collector-contrib `exporter/awsxrayexporter/internal/translator`, "the translator" below).
//! A span made here goes through those rules and comes out as the segment it was made from.
//! It is built in three layers.
//!
//! 1. Attributes the translator reads carry every field it has a rule for: the name, the kind
//!    (segment or subsegment), `http`, `aws`, `sql`, `user`, `cause` (exception events), the
//!    flags (HTTP status and span status), annotations (`aws.xray.annotations`) and metadata
//!    (`aws.xray.metadata.<namespace>`). Each is commented with the translator function that
//!    reads it.
//! 2. A residual carries what those rules cannot rebuild exactly: fields they have no attribute
//!    for (`in_progress`, `traced`, `precursor_ids`, `resource_arn`, `aws.retries`, exception
//!    ids and chains, ...) and values they change (the SDK name, `sql.url`, ...). It is a JSON
//!    object sent as the metadata namespace `AWS.xray.segment` (attribute
//!    `aws.xray.metadata.AWS.xray.segment`), so it arrives in the segment through the
//!    translator's metadata rule. Its keys are JSON pointers (RFC 6901) into the segment
//!    document; its values are what belongs there, `null` meaning "remove what the rules put
//!    there". A key `json:<pointer>` holds its value as JSON text: the translator parses
//!    metadata numbers into `float64`, which would round integers beyond 2^53 and print `1.0`
//!    as `1`. Spans whose segment the rules rebuild exactly carry no residual.
//! 3. The reader that applies the residual first normalises what the translator wrote: it drops
//!    `false` flags, `null` members and empty objects of `http`/`aws`/`sql`/`service`,
//!    `auto_instrumentation: false`, `content_length: 0`, empty exception `type`/`message` and
//!    `remote: false`, the resource-wide blocks (`origin`, `service`, `aws.ec2`/`ecs`/`eks`/
//!    `elastic_beanstalk`/`cloudwatch_logs`/`xray`) of subsegments, the `otel.resource.*` and
//!    attribute leftovers (`LEFTOVER_KEYS`) of `metadata.default`, and rounds times to the
//!    microsecond. The residual is computed against that normalised output, so the two must
//!    agree; `xray-core/tests/otlp/to_segments.py` is such a reader.
//!
//! Stacks are written in the Java format (`\tat label(path:line)`, one exception per event),
//! with the resource attribute `telemetry.sdk.language = java`: the translator picks its stack
//! parser by that attribute and has none for Rust. The AWS collector receiver does the same
//! for X-Ray segments. A side effect: the translator's `aws.xray.sdk` becomes
//! `<telemetry.sdk.name> for java`; the residual restores the real block.
//!
//! The spans of one segment tree share the `resource` of its segment: the translator builds
//! `origin`, `service` and the `aws` environment blocks of every span from it. A segment span
//! (`span` with `segment: true`) must sit under the resource of that same segment, since its
//! residual is computed from it.

use std::fmt::Write as _;

use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};
use serde_json::{Map, Value};

use crate::document::{Aws, Exception, Service, Sql};
use crate::{AnnotationValue, Cause, Document, SegmentId, TraceId};

/// The metadata namespace of the residual. `AWS.` namespaces are reserved for AWS SDKs, so no
/// application metadata can collide with it (a document that carries it anyway has it restored
/// through the residual).
pub(super) const RESIDUAL_NAMESPACE: &str = "AWS.xray.segment";
/// The translator's metadata rule (`makeXRayAttributes`): `aws.xray.metadata.<ns>` holding a
/// JSON object string becomes `metadata.<ns>`, `default` merged into `metadata.default`.
const METADATA_PREFIX: &str = "aws.xray.metadata.";
/// The translator's annotation rule (`makeXRayAttributes`): the string array of attribute keys
/// to index.
const ANNOTATION_KEYS: &str = "aws.xray.annotations";
/// `telemetry.sdk.language`: selects the translator's stack parser (`parseException`).
const STACK_LANGUAGE: &str = "java";
/// The largest integer a `float64` holds exactly.
const MAX_SAFE_INT: u64 = 1 << 53;
/// `db.system` values for which the translator writes a `sql` block (`isSQL`).
const SQL_SYSTEMS: &[&str] = &[
    "db2",
    "derby",
    "hive",
    "mariadb",
    "mssql",
    "mysql",
    "oracle",
    "other_sql",
    "postgresql",
    "sqlite",
    "teradata",
];
/// Attributes this mapping emits that some translator version does not consume, so they land
/// in `metadata.default` (old versions ignore the new HTTP names, newer ones may ignore the old
/// ones behind a feature gate; `peer.service`, `rpc.system`, `aws.service` and
/// `aws.dynamodb.table_names` are read but never removed). The reader drops them from
/// `metadata.default`; a document whose own `default` namespace uses one of these keys sends
/// that namespace in the residual instead.
const LEFTOVER_KEYS: &[&str] = &[
    "aws.account_id",
    "aws.dynamodb.table_names",
    "aws.operation",
    "aws.queue_url",
    "aws.region",
    "aws.request_id",
    "aws.service",
    "aws.table_name",
    "client.address",
    "db.connection_string",
    "db.name",
    "db.statement",
    "db.system",
    "db.user",
    "enduser.id",
    "http.client_ip",
    "http.method",
    "http.request.method",
    "http.response.status_code",
    "http.status_code",
    "http.url",
    "http.user_agent",
    "net.peer.ip",
    "network.peer.address",
    "peer.service",
    "rpc.system",
    "url.full",
    "user_agent.original",
    "aws.xray.annotations",
];
/// Span flags: sampled (W3C trace flags), and "the is-remote bit below is known".
const FLAGS_SAMPLED_KNOWN: u32 = 0x01 | 0x100;
/// Span flags: the parent is in another process (a segment's upstream caller).
const FLAG_PARENT_REMOTE: u32 = 0x200;

/// One entity of a finished segment tree as a span. `trace_id` is the trace, `parent` the
/// parent entity's id (None for a root segment); `segment` is true for a segment (root
/// or not), false for a subsegment. Children are NOT included (the caller walks the tree and
/// calls this per entity).
///
/// Kind (the translator's `MakeSegment` makes a subsegment of any span that is not SERVER and
/// has a parent): SERVER for a segment; CLIENT for a subsegment in namespace `aws` or `remote`
/// (the translator then writes `namespace: remote`, or `aws` with `rpc.system = aws-api`, and
/// marks its exceptions `remote`); INTERNAL for any other subsegment.
///
/// Times are Unix nanoseconds of the times rounded to the microsecond, as the JSON writer
/// rounds them. A document without an end time (in progress) gets end = start: a span always
/// ends, and X-Ray's OTLP endpoint refuses timestamps far in the past (an end of 0); the
/// residual removes `end_time` again and carries `in_progress`.
pub(crate) fn span(
    doc: &Document,
    trace_id: TraceId,
    parent: Option<SegmentId>,
    segment: bool,
) -> Span {
    let namespace = doc.namespace();
    let client = !segment && matches!(namespace, Some("aws" | "remote"));
    let aws_call = !segment && namespace == Some("aws");
    let kind = if segment {
        SpanKind::Server
    } else if client {
        SpanKind::Client
    } else {
        SpanKind::Internal
    };
    let start = unix_nanos(doc.start_time());
    let end = doc.end_time().map_or(start, unix_nanos);
    let mut m = Mapped::default();

    identity(&mut m, doc, parent, segment, client);
    let sql_url = sql(&mut m, doc);
    let span_name = name(&mut m, doc, segment, aws_call, sql_url.as_ref());
    http(&mut m, doc, end);

    // Flags. `makeCause`: with an `http.status_code` (ACC and older) or
    // `http.response.status_code` (newer) in 400..=599 the status code decides (4xx error,
    // 429 throttle, 5xx fault); otherwise fault = span status ERROR. Both status attributes
    // are written (see `http`), and the status is ERROR exactly when the document has `fault`.
    let status_error = doc.fault();
    let (error, throttle, fault) = match doc.http_status().filter(|c| (400..=599).contains(c)) {
        Some(code) => (code < 500, code == 429, code >= 500),
        None => (false, false, status_error),
    };
    for (pointer, native, want) in [
        ("/error", error, doc.error()),
        ("/throttle", throttle, doc.throttle()),
        ("/fault", fault, doc.fault()),
    ] {
        if native != want {
            m.carry(pointer, want.then_some(Value::Bool(true)));
        }
    }

    let message = cause(&mut m, doc, client, end, status_error);
    if segment {
        segment_env(&mut m, doc);
    } else {
        aws(&mut m, doc, None);
        segment_fields(&mut m, doc, None);
    }
    annotations(&mut m, doc);
    metadata(&mut m, doc);

    if !m.residual.is_empty() {
        let json = serde_json::to_string(&m.residual).unwrap_or_default();
        let mut key = String::with_capacity(METADATA_PREFIX.len() + RESIDUAL_NAMESPACE.len());
        key.push_str(METADATA_PREFIX);
        key.push_str(RESIDUAL_NAMESPACE);
        m.put(&key, Any::StringValue(json));
    }

    let remote_parent = if segment && parent.is_some() {
        FLAG_PARENT_REMOTE
    } else {
        0
    };
    Span {
        trace_id: trace_id_bytes(trace_id),
        span_id: doc.id().as_u64().to_be_bytes().to_vec(),
        parent_span_id: parent
            .map(|p| p.as_u64().to_be_bytes().to_vec())
            .unwrap_or_default(),
        flags: FLAGS_SAMPLED_KNOWN | remote_parent,
        name: span_name,
        kind: kind as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: m.attributes,
        events: m.events,
        links: links(doc),
        status: Some(Status {
            message,
            code: if status_error {
                StatusCode::Error as i32
            } else {
                StatusCode::Unset as i32
            },
        }),
        ..Default::default()
    }
}

/// The resource of a segment's spans, from the segment document (service name = segment name,
/// service.version, origin -> cloud.platform/cloud.provider,
/// aws.ec2/ecs/eks/beanstalk/cloudwatch_logs -> resource attributes as the translator reads them,
/// telemetry.sdk.* from aws.xray sdk).
///
/// The attributes are those the translator's `makeAws`, `makeService` and
/// `determineAwsOrigin` read, under the names the collector's X-Ray receiver writes them.
/// `cloud.account.id` is not used: the translator would give the account to every subsegment;
/// the segment's `aws.account_id` goes on its span instead.
pub(crate) fn resource(segment: &Document) -> Resource {
    let f = facts(segment);
    let mut attributes = vec![kv("service.name", text(segment.name()))];
    push_opt(&mut attributes, "service.version", f.service_version);
    if f.provider_aws {
        attributes.push(kv("cloud.provider", text("aws")));
    }
    push_opt(&mut attributes, "cloud.platform", f.platform);
    push_opt(&mut attributes, "aws.ecs.launchtype", f.launch_type);
    push_opt(&mut attributes, "cloud.availability_zone", f.zone);
    push_opt(&mut attributes, "host.id", f.host_id);
    push_opt(&mut attributes, "host.type", f.host_type);
    push_opt(&mut attributes, "host.image.id", f.host_image);
    push_opt(&mut attributes, "container.name", f.container_name);
    push_opt(&mut attributes, "container.id", f.container_id);
    push_opt(&mut attributes, "aws.ecs.container.arn", f.container_arn);
    push_opt(&mut attributes, "k8s.cluster.name", f.cluster);
    push_opt(&mut attributes, "k8s.pod.name", f.pod);
    push_opt(&mut attributes, "service.namespace", f.eb_environment);
    if let Some(deployment) = f.eb_deployment {
        attributes.push(kv("service.instance.id", text(&deployment.to_string())));
    }
    if !f.log_names.is_empty() {
        attributes.push(kv("aws.log.group.names", strings(&f.log_names)));
    }
    if !f.log_arns.is_empty() {
        attributes.push(kv("aws.log.group.arns", strings(&f.log_arns)));
    }
    push_opt(&mut attributes, "telemetry.sdk.name", f.sdk_name);
    push_opt(&mut attributes, "telemetry.sdk.version", f.sdk_version);
    attributes.push(kv("telemetry.sdk.language", text(STACK_LANGUAGE)));
    Resource {
        attributes,
        ..Default::default()
    }
}

/// The resource of an independent subsegment sent without its segment: only what is known (a
/// service name given by the caller).
///
/// Plus `telemetry.sdk.language = java`, which selects the translator's stack parser.
pub(crate) fn resource_for(service_name: &str) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", text(service_name)),
            kv("telemetry.sdk.language", text(STACK_LANGUAGE)),
        ],
        ..Default::default()
    }
}

// ===== the span's parts =====

/// What a span is being given: its attributes and events, and the residual.
#[derive(Default)]
struct Mapped {
    attributes: Vec<KeyValue>,
    events: Vec<Event>,
    /// JSON pointer (or `json:` + pointer) -> the value the segment must have there.
    residual: Map<String, Value>,
}

impl Mapped {
    fn put(&mut self, key: &str, value: Any) {
        self.attributes.push(kv(key, value));
    }

    fn put_str(&mut self, key: &str, value: &str) {
        self.put(key, text(value));
    }

    /// Records that the segment must hold `want` at `pointer` (`None`: nothing there).
    fn carry(&mut self, pointer: &str, want: Option<Value>) {
        let value = want.unwrap_or(Value::Null);
        if go_exact(&value) {
            self.residual.insert(pointer.to_owned(), value);
        } else {
            let json = serde_json::to_string(&value).unwrap_or_default();
            self.residual
                .insert(format!("json:{pointer}"), Value::String(json));
        }
    }

    /// Records, under `path`, every difference between what the translator will write
    /// (`native`, normalised as the module docs say) and what the document holds (`want`):
    /// objects member by member, arrays of equal length item by item, anything else whole.
    fn diff(&mut self, path: &mut String, native: Option<&Value>, want: Option<&Value>) {
        match (native, want) {
            (Some(Value::Object(n)), Some(Value::Object(w))) => {
                for (key, w_value) in w {
                    let len = push_token(path, key);
                    self.diff(path, n.get(key), Some(w_value));
                    path.truncate(len);
                }
                for key in n.keys().filter(|k| !w.contains_key(k.as_str())) {
                    let len = push_token(path, key);
                    self.carry(path.as_str(), None);
                    path.truncate(len);
                }
            }
            (Some(Value::Array(n)), Some(Value::Array(w))) if n.len() == w.len() => {
                for (i, (n_item, w_item)) in n.iter().zip(w).enumerate() {
                    let len = path.len();
                    let _ = write!(path, "/{i}");
                    self.diff(path, Some(n_item), Some(w_item));
                    path.truncate(len);
                }
            }
            (n, w) if n == w => {}
            (_, w) => self.carry(path.as_str(), w.cloned()),
        }
    }
}

/// Type, namespace, timing flags and the other top-level fields without a translator rule.
fn identity(
    m: &mut Mapped,
    doc: &Document,
    parent: Option<SegmentId>,
    segment: bool,
    client: bool,
) {
    // `MakeSegment`: `type: subsegment` needs a parent span id.
    if !segment && parent.is_none() {
        m.carry("/type", Some(Value::from("subsegment")));
    }
    // `MakeSegment`: namespace `aws` from `rpc.system = aws-api` (set in `name`), `remote`
    // for any other CLIENT span; nothing else has a rule.
    let namespace = doc.namespace();
    let native = if client { namespace } else { None };
    if native != namespace {
        m.carry("/namespace", namespace.map(Value::from));
    }
    // No rule reads `in_progress` (the receiver's `aws.xray.inprogress` is not read back); the
    // translator always writes `end_time`.
    if doc.in_progress() {
        m.carry("/in_progress", Some(Value::Bool(true)));
    }
    if doc.end_time().is_none() {
        m.carry("/end_time", None);
    }
    // No rule for `traced`, `resource_arn`, `precursor_ids`.
    if doc.traced() {
        m.carry("/traced", Some(Value::Bool(true)));
    }
    if let Some(arn) = doc.resource_arn() {
        m.carry("/resource_arn", Some(Value::from(arn)));
    }
    let precursors = doc.precursor_ids();
    if !precursors.is_empty() {
        let ids = precursors
            .iter()
            .map(|id| Value::String(id.to_string()))
            .collect();
        m.carry("/precursor_ids", Some(Value::Array(ids)));
    }
    // `makeXRayAttributes`: `enduser.id` -> `user` (an empty string is dropped).
    if let Some(user) = doc.user() {
        let user = cap(user);
        if user.is_empty() {
            m.carry("/user", Some(Value::from("")));
        } else {
            m.put_str("enduser.id", user);
        }
    }
}

/// `sql`, by `makeSQL`: `db.system` (one of `SQL_SYSTEMS`, else no block), `db.statement`,
/// `db.user`, and `connection_string` = (`db.connection_string` or `localhost`) + `/` +
/// `db.name`; `sql.url` is the span name. Returns the URL, which then names the span.
fn sql(m: &mut Mapped, doc: &Document) -> Option<SqlUrl> {
    let sql = doc.sql().filter(|s| **s != Sql::default())?;
    let system = sql
        .database_type
        .as_deref()
        .map(str::to_ascii_lowercase)
        .filter(|t| SQL_SYSTEMS.contains(&t.as_str()))
        .unwrap_or_else(|| "other_sql".to_owned());
    m.put_str("db.system", &system);
    let statement = non_empty(sql.sanitized_query.as_deref());
    if let Some(q) = statement {
        m.put_str("db.statement", q);
    }
    let user = sql.user.as_deref().map(cap).filter(|u| !u.is_empty());
    if let Some(u) = user {
        m.put_str("db.user", u);
    }
    // Split at the last `/` so that the translator's concatenation gives the string back.
    let mut db_name = false;
    let connection = match non_empty(sql.connection_string.as_deref()) {
        Some(c) => match c.rsplit_once('/') {
            Some((left, right)) if !left.is_empty() => {
                m.put_str("db.connection_string", left);
                m.put_str("db.name", right);
                db_name = true;
                c.to_owned()
            }
            _ => {
                m.put_str("db.connection_string", c);
                format!("{c}/")
            }
        },
        None => "localhost/".to_owned(),
    };
    let url = non_empty(sql.url.as_deref()).map(str::to_owned);

    let mut native = Map::new();
    native.insert("connection_string".to_owned(), Value::String(connection));
    let span_name = url.as_deref().unwrap_or(doc.name());
    if !span_name.is_empty() {
        native.insert("url".to_owned(), Value::from(span_name));
    }
    if let Some(q) = statement {
        native.insert("sanitized_query".to_owned(), Value::from(q));
    }
    native.insert("database_type".to_owned(), Value::String(system));
    if let Some(u) = user {
        native.insert("user".to_owned(), Value::from(u));
    }
    let want = serde_json::to_value(sql).ok();
    m.diff(
        &mut String::from("/sql"),
        Some(&Value::Object(native)),
        want.as_ref(),
    );
    Some(SqlUrl { url, db_name })
}

/// What `sql` decided about the span's name.
struct SqlUrl {
    /// `sql.url`, which the translator reads from the span name.
    url: Option<String>,
    /// Whether `db.name` was written: it takes part in the translator's choice of name.
    db_name: bool,
}

/// The segment name, by `MakeSegment`'s chain: (`aws.local.service` / `aws.remote.service`,
/// never written), `peer.service`, `aws.service`, `db.name`, the resource's `service.name`
/// (SERVER only), `rpc.service`, `http.host`, `net.peer.name`, then the span name with
/// characters outside `[ 0-9\p{L}N_.:/%&#=+\-@]` removed and cut to 200 bytes. When that
/// chain would not give the document's name, `peer.service` is written, which wins over all
/// but the never-written two. Returns the span name.
fn name(
    m: &mut Mapped,
    doc: &Document,
    segment: bool,
    aws_call: bool,
    sql: Option<&SqlUrl>,
) -> String {
    let name = doc.name();
    if aws_call {
        // `isAwsSdkSpan` -> namespace `aws`; `aws.service` names the subsegment, as the
        // receiver writes it.
        m.put_str("rpc.system", "aws-api");
        if !name.is_empty() {
            m.put_str("aws.service", name);
        }
    }
    let span_name = sql
        .and_then(|s| s.url.clone())
        .unwrap_or_else(|| name.to_owned());
    let exact = if aws_call && !name.is_empty() {
        true
    } else if sql.is_some_and(|s| s.db_name) {
        false
    } else if segment {
        // The resource's `service.name` is this segment's name.
        !name.is_empty()
    } else {
        span_name == name && survives_segment_name_fix(name)
    };
    if !exact {
        if name.is_empty() {
            m.carry("/name", Some(Value::from("")));
        } else {
            m.put_str("peer.service", name);
        }
    }
    span_name
}

/// `http`, by `makeHTTP`. Both the old and the stable semantic-convention names are written:
/// old translators read only `http.method`, `http.url`, `http.user_agent`, `http.client_ip`,
/// `http.status_code` (the AWS fork derives the flags from `http.status_code` only); newer
/// ones read both, and a feature gate (`exporter.awsxray.DontEmitV0HTTPNetworkConventions`)
/// may stop them reading the old ones. A client IP from `X-Forwarded-For` goes in
/// `http.client_ip`/`client.address`, which make `x_forwarded_for: true`; a peer address in
/// `net.peer.ip`/`network.peer.address`, which do not. The content length goes in an event
/// `message` with `message.type = RECEIVED` (`extractResponseSizeFromEvents`), which no other
/// rule reads.
fn http(m: &mut Mapped, doc: &Document, end: u64) {
    let Some(http) = doc.http() else {
        return;
    };
    let req = http.request.as_ref();
    let resp = http.response.as_ref();
    let method = req
        .and_then(|r| r.method.as_deref())
        .map(cap)
        .filter(|s| !s.is_empty());
    let url = req
        .and_then(|r| r.url.as_deref())
        .map(cap)
        .filter(|s| !s.is_empty());
    let user_agent = req
        .and_then(|r| r.user_agent.as_deref())
        .map(cap)
        .filter(|s| !s.is_empty());
    let client_ip = req
        .and_then(|r| r.client_ip.as_deref())
        .map(cap)
        .filter(|s| !s.is_empty());
    let forwarded = req.is_some_and(|r| r.x_forwarded_for);
    let status = resp.and_then(|r| r.status);
    let content_length = resp.and_then(|r| r.content_length).filter(|n| *n != 0);

    if let Some(v) = method {
        m.put_str("http.method", v);
        m.put_str("http.request.method", v);
    }
    if let Some(v) = url {
        m.put_str("http.url", v);
        m.put_str("url.full", v);
    }
    if let Some(v) = user_agent {
        m.put_str("http.user_agent", v);
        m.put_str("user_agent.original", v);
    }
    if let Some(v) = client_ip {
        if forwarded {
            m.put_str("http.client_ip", v);
            m.put_str("client.address", v);
        } else {
            m.put_str("net.peer.ip", v);
            m.put_str("network.peer.address", v);
        }
    }
    if let Some(s) = status {
        m.put("http.status_code", Any::IntValue(i64::from(s)));
        m.put("http.response.status_code", Any::IntValue(i64::from(s)));
    }
    if let Some(n) = content_length {
        m.events.push(Event {
            time_unix_nano: end,
            name: "message".to_owned(),
            attributes: vec![
                kv("message.type", text("RECEIVED")),
                kv("messaging.message_payload_size_bytes", Any::IntValue(n)),
                kv("messaging.message.body.size", Any::IntValue(n)),
            ],
            ..Default::default()
        });
    }

    // What the translator will write, normalised.
    let has_http = method.is_some()
        || user_agent.is_some()
        || status.is_some()
        || url.is_some()
        || (client_ip.is_some() && forwarded);
    let native = has_http.then(|| {
        let mut request = Map::new();
        if let Some(v) = method {
            request.insert("method".to_owned(), Value::from(v));
        }
        match url {
            Some(v) => {
                request.insert("url".to_owned(), Value::from(v));
            }
            // A peer address makes the translator build a URL from host attributes.
            None if client_ip.is_some() && !forwarded => {
                request.insert("url".to_owned(), Value::Null);
            }
            None => {}
        }
        if let Some(v) = user_agent {
            request.insert("user_agent".to_owned(), Value::from(v));
        }
        if let Some(v) = client_ip {
            request.insert("client_ip".to_owned(), Value::from(v));
            if forwarded {
                request.insert("x_forwarded_for".to_owned(), Value::Bool(true));
            }
        }
        let mut response = Map::new();
        if let Some(s) = status {
            response.insert("status".to_owned(), Value::from(s));
        }
        if let Some(n) = content_length {
            response.insert("content_length".to_owned(), Value::from(n));
        }
        let mut block = Map::new();
        if !request.is_empty() {
            block.insert("request".to_owned(), Value::Object(request));
        }
        if !response.is_empty() {
            block.insert("response".to_owned(), Value::Object(response));
        }
        Value::Object(block)
    });
    let want = if http.request.is_some() || http.response.is_some() {
        serde_json::to_value(http).ok()
    } else {
        None
    };
    m.diff(&mut String::from("/http"), native.as_ref(), want.as_ref());
}

/// `cause`, by `makeCause`: one `exception` event per exception (`exception.type`,
/// `exception.message`, `exception.stacktrace` in the Java format). The translator gives each
/// a new id, `remote` from the span kind (CLIENT), no `cause` link, `truncated`, `skipped`,
/// `working_directory` or `paths`: the residual carries those. A cause that is an exception id
/// becomes the span status message when the status is ERROR (as the receiver does; the
/// translator makes an exception of it) and is carried whole. Returns the status message.
fn cause(m: &mut Mapped, doc: &Document, client: bool, at: u64, status_error: bool) -> String {
    let Some(cause) = doc.cause() else {
        return String::new();
    };
    match cause {
        Cause::Reference(id) => {
            let id = id.to_string();
            m.carry("/cause", Some(Value::from(id.as_str())));
            if status_error { id } else { String::new() }
        }
        Cause::Details(d) => {
            if d.exceptions.is_empty() && d.paths.is_empty() && d.working_directory.is_none() {
                // The JSON writer writes no `cause` either.
                return String::new();
            }
            let mut predicted = Vec::with_capacity(d.exceptions.len());
            for e in &d.exceptions {
                let (event, native) = exception_event(e, client, at);
                m.events.push(event);
                predicted.push(native);
            }
            let native = (!predicted.is_empty()).then(|| {
                let mut block = Map::new();
                block.insert("exceptions".to_owned(), Value::Array(predicted));
                Value::Object(block)
            });
            let want = serde_json::to_value(cause).ok();
            m.diff(&mut String::from("/cause"), native.as_ref(), want.as_ref());
            String::new()
        }
    }
}

/// One `exception` event, and the exception the translator will make of it (normalised).
fn exception_event(e: &Exception, client: bool, at: u64) -> (Event, Value) {
    let mut attributes = Vec::with_capacity(3);
    let mut native = Map::new();
    // `parseException` draws a new random id.
    native.insert("id".to_owned(), Value::Null);
    if let Some(kind) = non_empty(e.kind.as_deref()) {
        attributes.push(kv("exception.type", text(kind)));
        native.insert("type".to_owned(), Value::from(kind));
    }
    if let Some(message) = non_empty(e.message.as_deref()) {
        attributes.push(kv("exception.message", text(message)));
        native.insert("message".to_owned(), Value::from(message));
    }
    if client {
        native.insert("remote".to_owned(), Value::Bool(true));
    }
    if !e.stack.is_empty() {
        let (stacktrace, frames) = java_stack(e);
        attributes.push(kv("exception.stacktrace", Any::StringValue(stacktrace)));
        if !frames.is_empty() {
            native.insert("stack".to_owned(), Value::Array(frames));
        }
    }
    let event = Event {
        time_unix_nano: at,
        name: "exception".to_owned(),
        attributes,
        ..Default::default()
    };
    (event, Value::Object(native))
}

/// The stack in the Java format `fillJavaStacktrace` parses, and the frames it will parse out
/// of it. The first line (`Type: first line of the message`) is skipped by the parser; each
/// frame is `\tat label(path:line)`. The parser cuts the label at the first `(` and drops what
/// precedes a `/`, and cuts the path at the first `:`: labels get `(`/`)` written as `[`/`]`,
/// and frames that still do not come back exactly (a missing field, a `/` in the label, a `:`
/// in the path) are carried in the residual.
fn java_stack(e: &Exception) -> (String, Vec<Value>) {
    let mut out = String::with_capacity(e.stack.len().saturating_mul(64).saturating_add(64));
    push_line_safe(
        &mut out,
        non_empty(e.kind.as_deref()).unwrap_or("Error"),
        false,
    );
    if let Some(message) = non_empty(e.message.as_deref()) {
        out.push_str(": ");
        let first = message.split(['\n', '\r']).next().unwrap_or("");
        out.push_str(first);
    }
    let mut frames = Vec::with_capacity(e.stack.len());
    for frame in &e.stack {
        out.push('\n');
        let begin = out.len();
        out.push_str("\tat ");
        push_line_safe(&mut out, frame.label.as_deref().unwrap_or(""), true);
        out.push('(');
        push_line_safe(&mut out, frame.path.as_deref().unwrap_or(""), false);
        if let Some(line) = frame.line {
            let _ = write!(out, ":{line}");
        }
        out.push(')');
        let parsed = parse_java_frame(out.get(begin..).unwrap_or(""));
        frames.push(parsed);
    }
    if e.truncated > 0 {
        // Java's own marker for left-out frames; the parser skips it.
        let _ = write!(out, "\n\t... {} more", e.truncated);
    }
    (out, frames)
}

/// A frame line as `fillJavaStacktrace` reads it: `{path, line, label}`, or null if the line
/// is not a frame.
fn parse_java_frame(line: &str) -> Value {
    let Some(body) = line.strip_prefix("\tat ") else {
        return Value::Null;
    };
    let Some((label, rest)) = body.split_once('(') else {
        return Value::Null;
    };
    let Some(inner) = rest.strip_suffix(')') else {
        return Value::Null;
    };
    let label = label.split_once('/').map_or(label, |(_, after)| after);
    let (path, number) = match inner.split_once(':') {
        Some((path, number)) => (path, go_atoi(number)),
        None => (inner, 0),
    };
    let mut frame = Map::new();
    frame.insert("path".to_owned(), Value::from(path));
    frame.insert("line".to_owned(), Value::from(number));
    frame.insert("label".to_owned(), Value::from(label));
    Value::Object(frame)
}

/// `aws`, by `makeAws`: the call fields from span attributes (`aws.account_id`,
/// `aws.operation`, `aws.region`, `aws.request_id`, `aws.queue_url`, `aws.table_name`,
/// `aws.dynamodb.table_names` with two or more names -> `table_names`), and for a segment the
/// environment blocks the resource gives (`env`). Everything else (`retries`, `id_2`,
/// `function_name`, ...) goes in the residual.
fn aws(m: &mut Mapped, doc: &Document, env: Option<&Facts<'_>>) {
    let aws = doc.aws();
    let mut native = Map::new();
    if let Some(a) = aws {
        for (key, attribute, value) in [
            ("account_id", "aws.account_id", a.account_id.as_deref()),
            ("operation", "aws.operation", a.operation.as_deref()),
            ("region", "aws.region", a.region.as_deref()),
            ("request_id", "aws.request_id", a.request_id.as_deref()),
        ] {
            if let Some(v) = non_empty(value) {
                m.put_str(attribute, v);
                native.insert(key.to_owned(), Value::from(v));
            }
        }
        let mut table_name = false;
        if let Some(Value::String(v)) = a.field("table_name")
            && !v.is_empty()
        {
            m.put_str("aws.table_name", v);
            native.insert("table_name".to_owned(), Value::from(v.as_str()));
            table_name = true;
        }
        if let Some(Value::String(v)) = a.field("queue_url")
            && !v.is_empty()
        {
            m.put_str("aws.queue_url", v);
            native.insert("queue_url".to_owned(), Value::from(v.as_str()));
        }
        // One name would become `table_name`, and any list clears `table_name`.
        if !table_name
            && let Some(Value::Array(items)) = a.field("table_names")
            && items.len() >= 2
            && items.iter().all(Value::is_string)
        {
            let names = items
                .iter()
                .map(|v| AnyValue {
                    value: Some(text(v.as_str().unwrap_or(""))),
                })
                .collect();
            m.put(
                "aws.dynamodb.table_names",
                Any::ArrayValue(ArrayValue { values: names }),
            );
            native.insert("table_names".to_owned(), Value::Array(items.clone()));
        }
    }
    if let Some(f) = env {
        predicted_env(f, &mut native);
    }
    let native = (!native.is_empty()).then_some(Value::Object(native));
    let want = aws
        .filter(|a| **a != Aws::default())
        .and_then(|a| serde_json::to_value(a).ok());
    m.diff(&mut String::from("/aws"), native.as_ref(), want.as_ref());
}

/// What a segment's `aws` and `service` blocks and its origin add to its span.
struct EnvPart {
    aws: Option<Aws>,
    service: Option<Service>,
    origin: Option<String>,
    attributes: Vec<KeyValue>,
    residual: Map<String, Value>,
}

thread_local! {
    static LAST_ENV: std::cell::RefCell<Option<EnvPart>> = const { std::cell::RefCell::new(None) };
}

/// [`aws`] and [`segment_fields`] for a segment. What they add depends only on its `aws` and
/// `service` blocks and its origin, which are the same for every segment a recorder makes: it
/// is computed once per thread and reused while those stay equal.
fn segment_env(m: &mut Mapped, doc: &Document) {
    let reuse = |part: &EnvPart, m: &mut Mapped| {
        m.attributes.extend(part.attributes.iter().cloned());
        for (k, v) in &part.residual {
            m.residual.insert(k.clone(), v.clone());
        }
    };
    let hit = LAST_ENV
        .try_with(|last| {
            let last = last.borrow();
            match &*last {
                Some(p)
                    if p.aws.as_ref() == doc.aws()
                        && p.service.as_ref() == doc.service()
                        && p.origin.as_deref() == doc.origin() =>
                {
                    reuse(p, m);
                    true
                }
                _ => false,
            }
        })
        .unwrap_or(false);
    if hit {
        return;
    }
    let env = facts(doc);
    let mut part = Mapped::default();
    aws(&mut part, doc, Some(&env));
    segment_fields(&mut part, doc, Some(&env));
    let part = EnvPart {
        aws: doc.aws().cloned(),
        service: doc.service().cloned(),
        origin: doc.origin().map(str::to_owned),
        attributes: part.attributes,
        residual: part.residual,
    };
    reuse(&part, m);
    let _ = LAST_ENV.try_with(|last| *last.borrow_mut() = Some(part));
}

/// `origin` (`determineAwsOrigin`) and `service` (`makeService`), which the translator takes
/// from the resource for every span: only a segment's are its own (`env`).
fn segment_fields(m: &mut Mapped, doc: &Document, env: Option<&Facts<'_>>) {
    let origin = env.and_then(|f| origin_of(f.platform?, f.launch_type));
    if origin != doc.origin() {
        m.carry("/origin", doc.origin().map(Value::from));
    }
    let native = env.and_then(|f| f.service_version).map(|v| {
        let mut block = Map::new();
        block.insert("version".to_owned(), Value::from(v));
        Value::Object(block)
    });
    let want = doc
        .service()
        .filter(|s| **s != Service::default())
        .and_then(|s| serde_json::to_value(s).ok());
    m.diff(
        &mut String::from("/service"),
        native.as_ref(),
        want.as_ref(),
    );
}

/// Annotations, by `makeXRayAttributes`: one attribute per key, listed in the string array
/// `aws.xray.annotations`. Keys outside `[A-Za-z0-9_]` (which the translator would rewrite or
/// confuse with other attributes) and values no attribute holds (integers above `i64::MAX`)
/// go in the residual, as do integral floats (the translator writes `2.0` as `2`).
fn annotations(m: &mut Mapped, doc: &Document) {
    let Some(annotations) = doc.annotations() else {
        return;
    };
    let mut keys = Vec::with_capacity(annotations.len());
    for (key, value) in annotations.iter() {
        let native = match value {
            AnnotationValue::String(s) => Some(text(s)),
            AnnotationValue::Int(i) => Some(Any::IntValue(*i)),
            AnnotationValue::Float(f) => Some(Any::DoubleValue(*f)),
            AnnotationValue::Bool(b) => Some(Any::BoolValue(*b)),
            AnnotationValue::UInt(_) => None,
        };
        let native = native.filter(|_| is_plain_key(key));
        let exact = match (&native, value) {
            (None, _) => false,
            (Some(_), AnnotationValue::Float(f)) => go_float_exact(*f),
            (Some(_), _) => true,
        };
        if let Some(v) = native {
            m.put(key, v);
            keys.push(AnyValue {
                value: Some(text(key)),
            });
        }
        if !exact {
            m.carry(
                &pointer_to("/annotations", key),
                serde_json::to_value(value).ok(),
            );
        }
    }
    if !keys.is_empty() {
        m.put(
            ANNOTATION_KEYS,
            Any::ArrayValue(ArrayValue { values: keys }),
        );
    }
}

/// Metadata, by `makeXRayAttributes`: each namespace as `aws.xray.metadata.<ns>`, a JSON
/// object string. What that rule cannot give back goes in the residual: a namespace that is
/// not an object, one spelt like `default` in another case (merged into `default`), an empty
/// or colliding `default`, numbers a `float64` changes.
fn metadata(m: &mut Mapped, doc: &Document) {
    let Some(metadata) = doc.metadata() else {
        return;
    };
    for (namespace, value) in metadata.iter() {
        let native = namespace != RESIDUAL_NAMESPACE
            && value.as_object().is_some_and(|o| {
                if namespace == "default" {
                    !o.is_empty() && !o.keys().any(|k| is_leftover_key(k))
                } else {
                    !namespace.eq_ignore_ascii_case("default")
                }
            })
            && go_exact(value);
        let json = if native {
            serde_json::to_string(value).ok()
        } else {
            None
        };
        match json {
            Some(json) => {
                let mut key = String::with_capacity(METADATA_PREFIX.len() + namespace.len());
                key.push_str(METADATA_PREFIX);
                key.push_str(namespace);
                m.put(&key, Any::StringValue(json));
            }
            None => m.carry(&pointer_to("/metadata", namespace), Some(value.clone())),
        }
    }
}

// ===== resource-wide facts =====

/// What the resource of a segment says, as the translator reads it. Empty strings are left
/// out: the translator drops them anyway.
struct Facts<'a> {
    platform: Option<&'static str>,
    launch_type: Option<&'static str>,
    provider_aws: bool,
    service_version: Option<&'a str>,
    zone: Option<&'a str>,
    host_id: Option<&'a str>,
    host_type: Option<&'a str>,
    host_image: Option<&'a str>,
    container_name: Option<&'a str>,
    container_id: Option<&'a str>,
    container_arn: Option<&'a str>,
    cluster: Option<&'a str>,
    pod: Option<&'a str>,
    eb_environment: Option<&'a str>,
    eb_deployment: Option<i64>,
    log_names: Vec<&'a str>,
    log_arns: Vec<&'a str>,
    sdk_name: Option<&'a str>,
    sdk_version: Option<&'a str>,
}

/// The resource facts of a segment: `origin` -> `cloud.platform` (+ `aws.ecs.launchtype`),
/// `aws.ec2` -> `host.*`/`cloud.availability_zone`, `aws.ecs` -> `container.*`, `aws.eks` ->
/// `k8s.*`/`container.id`, `aws.elastic_beanstalk` -> `service.namespace`/`service.instance.id`
/// /`service.version`, `aws.cloudwatch_logs` -> `aws.log.group.*`, `aws.xray` ->
/// `telemetry.sdk.*`. The names are those the collector's X-Ray receiver writes.
fn facts(doc: &Document) -> Facts<'_> {
    let aws = doc.aws();
    let (platform, launch_type) = match doc.origin().and_then(platform_of) {
        Some((p, l)) => (Some(p), l),
        None => (None, None),
    };
    let ec2 = aws.and_then(|a| a.ec2.as_ref());
    let ecs = aws.and_then(|a| a.ecs.as_ref());
    let eks = aws.and_then(|a| a.eks.as_ref());
    let eb = aws.and_then(|a| a.elastic_beanstalk.as_ref());
    let xray = aws.and_then(|a| a.xray.as_ref());
    let logs = aws
        .map(|a| a.cloudwatch_logs.as_slice())
        .unwrap_or_default();
    let version_label = non_empty(eb.and_then(|b| b.version_label.as_deref()));
    Facts {
        platform,
        launch_type,
        provider_aws: platform.is_some()
            || ec2.is_some()
            || ecs.is_some()
            || eks.is_some()
            || eb.is_some()
            || !logs.is_empty(),
        service_version: non_empty(doc.service().and_then(|s| s.version.as_deref()))
            .or(version_label),
        zone: non_empty(ec2.and_then(|e| e.availability_zone.as_deref())),
        host_id: non_empty(ec2.and_then(|e| e.instance_id.as_deref())),
        host_type: non_empty(ec2.and_then(|e| e.instance_size.as_deref())),
        host_image: non_empty(ec2.and_then(|e| e.ami_id.as_deref())),
        container_name: non_empty(ecs.and_then(|e| e.container.as_deref())),
        // One `container.id` serves both blocks; ECS's wins, EKS's is carried if it differs.
        container_id: non_empty(ecs.and_then(|e| e.container_id.as_deref()))
            .or_else(|| non_empty(eks.and_then(|e| e.container_id.as_deref()))),
        container_arn: non_empty(ecs.and_then(|e| e.container_arn.as_deref())),
        cluster: non_empty(eks.and_then(|e| e.cluster_name.as_deref())),
        pod: non_empty(eks.and_then(|e| e.pod.as_deref())),
        eb_environment: non_empty(eb.and_then(|b| b.environment_name.as_deref())),
        eb_deployment: eb.and_then(|b| b.deployment_id),
        log_names: logs
            .iter()
            .filter_map(|l| non_empty(l.log_group.as_deref()))
            .collect(),
        log_arns: logs
            .iter()
            .filter_map(|l| non_empty(l.arn.as_deref()))
            .collect(),
        sdk_name: non_empty(xray.and_then(|x| x.sdk.as_deref())),
        sdk_version: non_empty(xray.and_then(|x| x.sdk_version.as_deref())),
    }
}

/// The environment blocks `makeAws` builds from the resource, normalised.
fn predicted_env(f: &Facts<'_>, aws: &mut Map<String, Value>) {
    let mut insert = |key: &str, value: Option<Value>| {
        if let Some(v) = value {
            aws.insert(key.to_owned(), v);
        }
    };
    // Built when `cloud.platform = aws_ec2` or `host.id` is set.
    if f.platform == Some("aws_ec2") || f.host_id.is_some() {
        insert(
            "ec2",
            object_of(&[
                ("instance_id", f.host_id),
                ("availability_zone", f.zone),
                ("instance_size", f.host_type),
                ("ami_id", f.host_image),
            ]),
        );
    }
    // Built only when `cloud.platform = aws_ecs`; the zone and launch type come along.
    if f.platform == Some("aws_ecs") {
        insert(
            "ecs",
            object_of(&[
                ("container", f.container_name),
                ("container_id", f.container_id),
                ("availability_zone", f.zone),
                ("container_arn", f.container_arn),
                ("launch_type", f.launch_type),
            ]),
        );
    }
    // Built when `cloud.platform = aws_eks` or `k8s.cluster.name` is set.
    if f.platform == Some("aws_eks") || f.cluster.is_some() {
        insert(
            "eks",
            object_of(&[
                ("cluster_name", f.cluster),
                ("pod", f.pod),
                ("container_id", f.container_id),
            ]),
        );
    }
    // Built only for `cloud.platform = aws_elastic_beanstalk` with a `service.instance.id`;
    // `version_label` is `service.version`.
    if f.platform == Some("aws_elastic_beanstalk")
        && let Some(deployment) = f.eb_deployment
    {
        let mut block = Map::new();
        if let Some(v) = f.eb_environment {
            block.insert("environment_name".to_owned(), Value::from(v));
        }
        if let Some(v) = f.service_version {
            block.insert("version_label".to_owned(), Value::from(v));
        }
        block.insert("deployment_id".to_owned(), Value::from(deployment));
        insert("elastic_beanstalk", Some(Value::Object(block)));
    }
    // ARNs win; the log group is the ARN's seventh `:` field.
    if !f.log_arns.is_empty() {
        let entries = f
            .log_arns
            .iter()
            .map(|&arn| {
                let mut entry = Map::new();
                entry.insert("arn".to_owned(), Value::from(arn));
                let group = arn.split(':').nth(6).unwrap_or(arn);
                if !group.is_empty() {
                    entry.insert("log_group".to_owned(), Value::from(group));
                }
                Value::Object(entry)
            })
            .collect();
        insert("cloudwatch_logs", Some(Value::Array(entries)));
    } else if !f.log_names.is_empty() {
        let entries = f
            .log_names
            .iter()
            .map(|&name| {
                let mut entry = Map::new();
                entry.insert("log_group".to_owned(), Value::from(name));
                Value::Object(entry)
            })
            .collect();
        insert("cloudwatch_logs", Some(Value::Array(entries)));
    }
    // `sdk` = `telemetry.sdk.name + " for " + telemetry.sdk.language`. A name already ending
    // in " for java" is left as it is by some versions: not predicted, always carried.
    let sdk = f.sdk_name.map(|n| {
        let ends_for_java = n.len() >= 9
            && n.get(n.len() - 9..)
                .is_some_and(|t| t.eq_ignore_ascii_case(" for java"));
        if ends_for_java {
            Value::Null
        } else {
            Value::String(format!("{n} for {STACK_LANGUAGE}"))
        }
    });
    let mut xray = Map::new();
    if let Some(v) = sdk {
        xray.insert("sdk".to_owned(), v);
    }
    if let Some(v) = f.sdk_version {
        xray.insert("sdk_version".to_owned(), Value::from(v));
    }
    if !xray.is_empty() {
        insert("xray", Some(Value::Object(xray)));
    }
}

/// `origin` -> (`cloud.platform`, `aws.ecs.launchtype`).
fn platform_of(origin: &str) -> Option<(&'static str, Option<&'static str>)> {
    Some(match origin {
        "AWS::EC2::Instance" => ("aws_ec2", None),
        "AWS::ECS::Container" => ("aws_ecs", None),
        "AWS::ECS::EC2" => ("aws_ecs", Some("ec2")),
        "AWS::ECS::Fargate" => ("aws_ecs", Some("fargate")),
        "AWS::ElasticBeanstalk::Environment" => ("aws_elastic_beanstalk", None),
        "AWS::EKS::Container" => ("aws_eks", None),
        "AWS::AppRunner::Service" => ("aws_app_runner", None),
        // No origin rule: the platform is still right for the resource, the origin is carried.
        "AWS::Lambda::Function" => ("aws_lambda", None),
        _ => return None,
    })
}

/// The origin `determineAwsOrigin` derives from the platform.
fn origin_of(platform: &str, launch_type: Option<&str>) -> Option<&'static str> {
    Some(match (platform, launch_type) {
        ("aws_ec2", _) => "AWS::EC2::Instance",
        ("aws_ecs", Some("ec2")) => "AWS::ECS::EC2",
        ("aws_ecs", Some("fargate")) => "AWS::ECS::Fargate",
        ("aws_ecs", _) => "AWS::ECS::Container",
        ("aws_elastic_beanstalk", _) => "AWS::ElasticBeanstalk::Environment",
        ("aws_eks", _) => "AWS::EKS::Container",
        ("aws_app_runner", _) => "AWS::AppRunner::Service",
        _ => return None,
    })
}

// ===== helpers =====

/// The document's links as span links, which the translator turns back into `links`
/// (`makeSpanLinks`). An attribute that is JSON `null` has no OTLP form and is left out.
fn links(doc: &Document) -> Vec<Link> {
    doc.links()
        .iter()
        .map(|link| Link {
            trace_id: trace_id_bytes(link.trace_id),
            span_id: link.id.as_u64().to_be_bytes().to_vec(),
            attributes: link
                .attributes
                .iter()
                .filter_map(|(k, v)| Some(kv(k, any_of(v, 0)?)))
                .collect(),
            ..Default::default()
        })
        .collect()
}

/// A JSON value as an OTLP value: integers that fit `i64` as integers, other numbers as
/// doubles, arrays and objects nested up to 32 deep.
fn any_of(value: &Value, depth: usize) -> Option<Any> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => Any::BoolValue(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Any::IntValue(i),
            None => Any::DoubleValue(n.as_f64()?),
        },
        Value::String(s) => text(s),
        _ if depth >= 32 => return None,
        Value::Array(items) => Any::ArrayValue(ArrayValue {
            values: items
                .iter()
                .filter_map(|v| {
                    Some(AnyValue {
                        value: Some(any_of(v, depth + 1)?),
                    })
                })
                .collect(),
        }),
        Value::Object(map) => Any::KvlistValue(KeyValueList {
            values: map
                .iter()
                .filter_map(|(k, v)| Some(kv(k, any_of(v, depth + 1)?)))
                .collect(),
        }),
    })
}

fn kv(key: &str, value: Any) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn text(value: &str) -> Any {
    Any::StringValue(value.to_owned())
}

fn strings(values: &[&str]) -> Any {
    Any::ArrayValue(ArrayValue {
        values: values
            .iter()
            .map(|v| AnyValue {
                value: Some(text(v)),
            })
            .collect(),
    })
}

fn push_opt(attributes: &mut Vec<KeyValue>, key: &str, value: Option<&str>) {
    if let Some(v) = value {
        attributes.push(kv(key, text(v)));
    }
}

/// An object of the pairs that have a value; `None` if none has.
fn object_of(pairs: &[(&str, Option<&str>)]) -> Option<Value> {
    let map: Map<String, Value> = pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| ((*k).to_owned(), Value::from(v))))
        .collect();
    (!map.is_empty()).then_some(Value::Object(map))
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// The first [`MAX_FIELD_CHARS`](crate::document::MAX_FIELD_CHARS) characters (the service's limit
/// for
/// `user`, the `http.request` strings and `sql.user`), as the JSON writer writes them.
fn cap(s: &str) -> &str {
    crate::document::capped_field(s)
}

/// Appends `s` with line breaks as spaces (one stack line must stay one line), and for a label
/// `(`/`)` as `[`/`]` (the parser cuts the label at the first `(`).
fn push_line_safe(out: &mut String, s: &str, label: bool) {
    for c in s.chars() {
        out.push(match c {
            '\n' | '\r' => ' ',
            '(' if label => '[',
            ')' if label => ']',
            c => c,
        });
    }
}

/// Appends `/` + `token` escaped as a JSON pointer token; returns the length before.
fn push_token(path: &mut String, token: &str) -> usize {
    let len = path.len();
    path.push('/');
    for c in token.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
    len
}

fn pointer_to(base: &str, token: &str) -> String {
    let mut pointer = String::with_capacity(base.len() + token.len() + 1);
    pointer.push_str(base);
    push_token(&mut pointer, token);
    pointer
}

/// An annotation key the translator keeps as it is and that no other attribute can have (all
/// of those have a `.`).
fn is_plain_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub(super) fn is_leftover_key(key: &str) -> bool {
    LEFTOVER_KEYS.contains(&key) || key.starts_with("otel.resource.")
}

/// Whether `fixSegmentName` leaves `name` as it is (checked for ASCII only: anything else is
/// treated as changed, which only costs a `peer.service`).
fn survives_segment_name_fix(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b' ' | b'_'
                        | b'.'
                        | b':'
                        | b'/'
                        | b'%'
                        | b'&'
                        | b'#'
                        | b'='
                        | b'+'
                        | b'-'
                        | b'@'
                )
        })
}

/// Whether a JSON value comes back unchanged through Go's `json.Unmarshal` into `any` and
/// `json.Marshal` (numbers become `float64`, written shortest, integral ones without a point).
fn go_exact(value: &Value) -> bool {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.unsigned_abs() <= MAX_SAFE_INT
            } else if let Some(u) = n.as_u64() {
                u <= MAX_SAFE_INT
            } else {
                n.as_f64().is_some_and(go_float_exact)
            }
        }
        Value::Array(items) => items.iter().all(go_exact),
        Value::Object(map) => map.values().all(go_exact),
        Value::Null | Value::Bool(_) | Value::String(_) => true,
    }
}

/// Whether Go writes the float so that it reads back as a float: not integral, or in exponent
/// form (1e21 and beyond).
fn go_float_exact(f: f64) -> bool {
    f.fract() != 0.0 || f.abs() >= 1e21
}

/// Go's `strconv.Atoi` as the stack parsers use it (errors give 0, overflow saturates).
fn go_atoi(s: &str) -> i64 {
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, s.get(1..).unwrap_or("")),
        Some(b'+') => (false, s.get(1..).unwrap_or("")),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    let n = digits.bytes().fold(0_i64, |n, b| {
        n.saturating_mul(10).saturating_add(i64::from(b - b'0'))
    });
    if negative { -n } else { n }
}

/// Epoch seconds -> Unix nanoseconds, rounded to the microsecond as the JSON writer rounds
/// (negative or non-finite -> 0).
fn unix_nanos(seconds: f64) -> u64 {
    if seconds.is_nan() || seconds <= 0.0 {
        return 0;
    }
    // `as` saturates; microseconds fit exactly in an f64 until the year 2255.
    let micros = (seconds * 1_000_000.0).round() as u64;
    micros.saturating_mul(1_000)
}

/// `1-EEEEEEEE-RRRRRRRRRRRRRRRRRRRRRRRR` -> the 16 bytes epoch (4) ‖ random (12), which
/// `convertToAmazonTraceID` turns back into the same id.
fn trace_id_bytes(trace_id: TraceId) -> Vec<u8> {
    let random = trace_id.random() & ((1_u128 << 96) - 1);
    let bits = (u128::from(trace_id.epoch_seconds()) << 96) | random;
    bits.to_be_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_keep_epoch_and_random_bits() {
        let id: Result<TraceId, _> = "1-5759e988-bd862e3fe1be46a994272793".parse();
        let bytes = id.map(trace_id_bytes).unwrap_or_default();
        let want: [u8; 16] = [
            0x57, 0x59, 0xe9, 0x88, 0xbd, 0x86, 0x2e, 0x3f, 0xe1, 0xbe, 0x46, 0xa9, 0x94, 0x27,
            0x27, 0x93,
        ];
        assert_eq!(bytes, want);
    }

    #[test]
    fn times_are_whole_microseconds() {
        assert_eq!(unix_nanos(1_735_689_600.120_511), 1_735_689_600_120_511_000);
        assert_eq!(unix_nanos(f64::NAN), 0);
        assert_eq!(unix_nanos(-1.0), 0);
    }

    #[test]
    fn java_frames_read_back_as_written() {
        let frame = parse_java_frame("\tat app::render[T](src/render.rs:88)");
        assert_eq!(frame["label"], "app::render[T]");
        assert_eq!(frame["path"], "src/render.rs");
        assert_eq!(frame["line"], 88);
        assert_eq!(go_atoi("12x"), 0);
    }

    #[test]
    fn pointers_escape_slash_and_tilde() {
        assert_eq!(pointer_to("/metadata", "a/b~c"), "/metadata/a~1b~0c");
    }

    #[test]
    fn go_rounds_integral_floats_and_big_integers() {
        assert!(go_exact(&serde_json::json!({"a": [1, 2.5, "x", null]})));
        assert!(!go_exact(&serde_json::json!({"a": 2.0})));
        assert!(!go_exact(&serde_json::json!(9_007_199_254_740_993_u64)));
    }
}
