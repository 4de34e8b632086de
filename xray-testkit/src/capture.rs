//! Capturing what a piece of code records, and asserting on it by name, parent, annotation,
//! flags and `aws` fields, with failure messages that say what was there instead.
//!
//! ```
//! use xray_testkit::capture::Capture;
//!
//! let capture = Capture::new();
//! let recorder = capture.recorder();
//!
//! // The code under test.
//! let segment = recorder.begin_segment("orders");
//! let sub = segment.begin_subsegment("DynamoDB");
//! sub.put_annotation("table", "orders");
//! sub.set_fault();
//! sub.end();
//! segment.end();
//!
//! let orders = capture.segment("orders");
//! let dynamodb = orders.subsegment("DynamoDB");
//! dynamodb
//!     .assert_annotation("table", "orders")
//!     .assert_fault(true)
//!     .assert_parent(&orders);
//! assert_eq!(capture.entity("DynamoDB").trace_id(), orders.trace_id());
//! ```
//!
//! Every document the recorder sent is checked against the segment-document schema when it
//! is read ([`Capture::documents`]): a test of any behaviour is also a test of the wire form.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;
use xray_sdk::{InMemoryEmitter, Recorder, RecorderBuilder, SamplerKind};

/// A recorder whose documents are kept in memory, and the views to assert on them.
///
/// [`Capture::new`] samples every request and ignores the environment, so that what a test
/// sees does not depend on where it runs. [`Capture::with_builder`] starts from the same
/// builder, for a test that needs another sampler, a clock or a service name.
#[derive(Debug, Clone)]
pub struct Capture {
    recorder: Recorder,
    emitter: InMemoryEmitter,
}

impl Default for Capture {
    fn default() -> Self {
        Self::new()
    }
}

impl Capture {
    /// A recorder that samples everything, ignores the environment, and keeps every
    /// document it sends.
    pub fn new() -> Capture {
        Self::with_builder(|b| b)
    }

    /// As [`new`](Self::new), with `configure` applied to the builder first; the emitter
    /// is set after it, so it cannot be replaced.
    ///
    /// # Panics
    ///
    /// If the builder refuses its configuration: a test's mistake, said in the message.
    pub fn with_builder(configure: impl FnOnce(RecorderBuilder) -> RecorderBuilder) -> Capture {
        let emitter = InMemoryEmitter::new();
        let builder = Recorder::builder()
            .ignore_environment()
            .with_service_name("test")
            .with_sampler_kind(SamplerKind::Always);
        let recorder = configure(builder)
            .with_emitter(emitter.clone())
            .build()
            .unwrap_or_else(|err| panic!("the capture's recorder cannot be built: {err}"));
        Capture { recorder, emitter }
    }

    /// The recorder to hand to the code under test.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Waits until `n` documents have been sent, for code that sends from another thread
    /// or task; false if fewer came within `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        self.emitter.wait_for(n, timeout)
    }

    /// Every document sent so far, in order, each checked against the schema.
    ///
    /// # Panics
    ///
    /// If a document does not match the segment-document schema, with the schema's errors.
    pub fn documents(&self) -> Vec<Value> {
        crate::checked(self.emitter.documents())
    }

    /// Forgets what was sent so far.
    pub fn clear(&self) {
        let _ = self.emitter.take();
    }

    /// Every entity of every document, depth first: each document, then its subsegments.
    pub fn entities(&self) -> Vec<EntityView> {
        let mut out = Vec::new();
        for doc in self.documents() {
            let parent = doc
                .get("parent_id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let trace_id = doc
                .get("trace_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            flatten(&doc, parent, &trace_id, &mut out);
        }
        out
    }

    /// The one segment named `name`.
    ///
    /// # Panics
    ///
    /// If there is none, or more than one: the message lists the segments there are.
    pub fn segment(&self, name: &str) -> EntityView {
        let segments: Vec<EntityView> = self
            .documents()
            .iter()
            .filter(|d| d.get("type").and_then(Value::as_str) != Some("subsegment"))
            .map(|d| {
                let trace_id = d
                    .get("trace_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let parent = d
                    .get("parent_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                EntityView::new(d.clone(), parent, trace_id.to_owned())
            })
            .collect();
        one(segments, name, "segment", "sent")
    }

    /// The one entity named `name`, at any depth of any document.
    ///
    /// # Panics
    ///
    /// If there is none, or more than one: the message lists the names there are.
    pub fn entity(&self, name: &str) -> EntityView {
        one(self.entities(), name, "entity", "recorded")
    }
}

/// Pushes `doc` and its subsegments, each with the id of its parent and the trace id.
fn flatten(doc: &Value, parent: Option<String>, trace_id: &str, out: &mut Vec<EntityView>) {
    let id = doc.get("id").and_then(Value::as_str).map(str::to_owned);
    out.push(EntityView::new(doc.clone(), parent, trace_id.to_owned()));
    if let Some(Value::Array(subs)) = doc.get("subsegments") {
        for sub in subs {
            flatten(sub, id.clone(), trace_id, out);
        }
    }
}

/// The one view named `name` among `views`, or a panic saying what there was.
fn one(views: Vec<EntityView>, name: &str, what: &str, verb: &str) -> EntityView {
    let names: Vec<String> = views.iter().map(|v| format!("`{}`", v.name())).collect();
    let mut found: Vec<EntityView> = views.into_iter().filter(|v| v.name() == name).collect();
    match found.len() {
        1 => found.remove(0),
        0 => panic!(
            "no {what} named `{name}` was {verb}; there are: [{}]",
            names.join(", ")
        ),
        n => panic!("{n} {what}s named `{name}` were {verb}, where one was expected"),
    }
}

/// One recorded segment or subsegment, with its subsegments.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityView {
    doc: Value,
    parent_id: Option<String>,
    trace_id: String,
}

impl EntityView {
    fn new(doc: Value, parent_id: Option<String>, trace_id: String) -> Self {
        EntityView {
            doc,
            parent_id,
            trace_id,
        }
    }

    /// The entity's name.
    pub fn name(&self) -> &str {
        self.doc.get("name").and_then(Value::as_str).unwrap_or("")
    }

    /// Its id, 16 hex digits.
    pub fn id(&self) -> &str {
        self.doc.get("id").and_then(Value::as_str).unwrap_or("")
    }

    /// The trace id: the document's, which the subsegments inside it share.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// The id of the entity it is under: its parent in the tree, or a separately sent
    /// subsegment's `parent_id`, or the `parent_id` a segment carries from the caller.
    pub fn parent_id(&self) -> Option<&str> {
        self.parent_id.as_deref()
    }

    /// Its direct subsegments, in the order they were written.
    pub fn subsegments(&self) -> Vec<EntityView> {
        self.doc
            .get("subsegments")
            .and_then(Value::as_array)
            .map(|subs| {
                subs.iter()
                    .map(|s| {
                        EntityView::new(
                            s.clone(),
                            Some(self.id().to_owned()),
                            self.trace_id.clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The one direct subsegment named `name`.
    ///
    /// # Panics
    ///
    /// If there is none, or more than one: the message lists this entity's subsegments.
    pub fn subsegment(&self, name: &str) -> EntityView {
        let subs = self.subsegments();
        let names: Vec<String> = subs.iter().map(|s| format!("`{}`", s.name())).collect();
        let mut found: Vec<EntityView> = subs.into_iter().filter(|s| s.name() == name).collect();
        match found.len() {
            1 => found.remove(0),
            0 => panic!(
                "`{}` has no subsegment named `{name}`; its subsegments: [{}]",
                self.name(),
                names.join(", ")
            ),
            n => panic!(
                "`{}` has {n} subsegments named `{name}`, where one was expected",
                self.name()
            ),
        }
    }

    /// An annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&Value> {
        self.doc.get("annotations")?.get(key)
    }

    /// A metadata value, under `namespace` (`default` for what `put_metadata` records).
    pub fn metadata(&self, namespace: &str, key: &str) -> Option<&Value> {
        self.doc.get("metadata")?.get(namespace)?.get(key)
    }

    /// A field of the `aws` block (`operation`, `table_name`, `request_id`, ...).
    pub fn aws(&self, key: &str) -> Option<&Value> {
        self.doc.get("aws")?.get(key)
    }

    /// A field of the `sql` block.
    pub fn sql(&self, key: &str) -> Option<&Value> {
        self.doc.get("sql")?.get(key)
    }

    /// The `namespace`: `aws`, `remote`, or none.
    pub fn namespace(&self) -> Option<&str> {
        self.doc.get("namespace").and_then(Value::as_str)
    }

    /// The response status in the `http` block.
    pub fn http_status(&self) -> Option<u64> {
        self.doc
            .get("http")?
            .get("response")?
            .get("status")?
            .as_u64()
    }

    /// Whether a flag (`fault`, `error`, `throttle`, `in_progress`) is set.
    pub fn flag(&self, flag: &str) -> bool {
        self.doc.get(flag).and_then(Value::as_bool) == Some(true)
    }

    /// The messages of the recorded exceptions, in order.
    pub fn exception_messages(&self) -> Vec<&str> {
        self.exceptions()
            .filter_map(|e| e.get("message").and_then(Value::as_str))
            .collect()
    }

    /// The types of the recorded exceptions, in order (those without a type left out).
    pub fn exception_types(&self) -> Vec<&str> {
        self.exceptions()
            .filter_map(|e| e.get("type").and_then(Value::as_str))
            .collect()
    }

    fn exceptions(&self) -> impl Iterator<Item = &Value> {
        self.doc
            .get("cause")
            .and_then(|c| c.get("exceptions"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    }

    /// The document itself, for what the views do not cover.
    pub fn json(&self) -> &Value {
        &self.doc
    }

    /// Asserts an annotation's value.
    #[track_caller]
    pub fn assert_annotation(&self, key: &str, expected: impl Into<Value>) -> &Self {
        self.assert_field(
            "annotation",
            key,
            self.annotation(key),
            &expected.into(),
            || keys(self.doc.get("annotations")),
        )
    }

    /// Asserts a metadata value under `namespace`.
    #[track_caller]
    pub fn assert_metadata(&self, namespace: &str, key: &str, expected: impl Into<Value>) -> &Self {
        let what = format!("metadata `{namespace}`");
        self.assert_field(
            &what,
            key,
            self.metadata(namespace, key),
            &expected.into(),
            || keys(self.doc.get("metadata").and_then(|m| m.get(namespace))),
        )
    }

    /// Asserts a field of the `aws` block.
    #[track_caller]
    pub fn assert_aws(&self, key: &str, expected: impl Into<Value>) -> &Self {
        self.assert_field("aws field", key, self.aws(key), &expected.into(), || {
            keys(self.doc.get("aws"))
        })
    }

    /// Asserts a field of the `sql` block.
    #[track_caller]
    pub fn assert_sql(&self, key: &str, expected: impl Into<Value>) -> &Self {
        self.assert_field("sql field", key, self.sql(key), &expected.into(), || {
            keys(self.doc.get("sql"))
        })
    }

    /// Asserts the `namespace`.
    #[track_caller]
    pub fn assert_namespace(&self, expected: &str) -> &Self {
        assert!(
            self.namespace() == Some(expected),
            "`{}` has namespace {:?}, expected `{expected}`",
            self.name(),
            self.namespace()
        );
        self
    }

    /// Asserts the `fault` flag.
    #[track_caller]
    pub fn assert_fault(&self, expected: bool) -> &Self {
        self.assert_flag("fault", expected)
    }

    /// Asserts the `error` flag.
    #[track_caller]
    pub fn assert_error(&self, expected: bool) -> &Self {
        self.assert_flag("error", expected)
    }

    /// Asserts the `throttle` flag.
    #[track_caller]
    pub fn assert_throttle(&self, expected: bool) -> &Self {
        self.assert_flag("throttle", expected)
    }

    /// Asserts that this entity is directly under `parent`.
    #[track_caller]
    pub fn assert_parent(&self, parent: &EntityView) -> &Self {
        assert!(
            self.parent_id() == Some(parent.id()),
            "`{}` is under {}, not under `{}` ({})",
            self.name(),
            self.parent_id()
                .map_or("nothing".to_owned(), |p| format!("the entity {p}")),
            parent.name(),
            parent.id()
        );
        self
    }

    #[track_caller]
    fn assert_flag(&self, flag: &str, expected: bool) -> &Self {
        let actual = self.flag(flag);
        if actual != expected {
            let mut message = format!(
                "`{}` has `{flag}` {}, expected {}",
                self.name(),
                if actual { "set" } else { "unset" },
                if expected { "set" } else { "unset" }
            );
            let causes = self.exception_messages();
            if !causes.is_empty() {
                let _ = write!(message, "; its exceptions: {causes:?}");
            }
            panic!("{message}");
        }
        self
    }

    #[track_caller]
    fn assert_field(
        &self,
        what: &str,
        key: &str,
        actual: Option<&Value>,
        expected: &Value,
        present: impl FnOnce() -> Vec<String>,
    ) -> &Self {
        match actual {
            Some(value) if value == expected => self,
            Some(value) => panic!(
                "`{}` has {what} `{key}` = {value}, expected {expected}",
                self.name()
            ),
            None => panic!(
                "`{}` has no {what} `{key}` (expected {expected}); it has: [{}]",
                self.name(),
                present().join(", ")
            ),
        }
    }
}

/// The keys of an object, quoted, for failure messages.
fn keys(object: Option<&Value>) -> Vec<String> {
    object
        .and_then(Value::as_object)
        .map(|o| o.keys().map(|k| format!("`{k}`")).collect())
        .unwrap_or_default()
}
