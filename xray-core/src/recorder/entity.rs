use std::any::Any;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;

use super::Recorder;
use super::reentry::{self, Updating};
use super::refused;
use super::registry::Due;
use super::tree::{OpenError, Outbox, ROOT, State, Tree};
use crate::context::{ContextGuard, WithContext};
use crate::document::{
    AnnotationError, AnnotationValue, Cause, Document, MetadataError, SanitizedName, Service,
    StackFrame, XRaySdk, is_reserved_namespace, is_valid_key,
};
use crate::header::{Sampled, TraceHeader};
use crate::id::{SegmentId, TraceId};

/// A reference to a segment or subsegment: what the current context holds, what child
/// subsegments are begun from, and where annotations, metadata and errors go.
///
/// Cloning is cheap (an `Arc` increment) and an `Entity` never ends what it refers to: the
/// [`Segment`] and [`Subsegment`] owners do, explicitly or when dropped. An entity that is not
/// recorded (not sampled, SDK disabled, no context) still has ids, so the trace header it
/// produces carries `Sampled=0` downstream; every recording call on it returns at once and
/// allocates nothing.
#[derive(Clone)]
pub struct Entity {
    trace_id: TraceId,
    id: SegmentId,
    sampled: bool,
    node: Option<Node>,
    /// The incoming header's extra fields (`Lineage` first among them), in wire form, carried
    /// onto every outgoing header of the trace; shared by every entity of the segment.
    forward: Option<Arc<str>>,
}

#[derive(Clone)]
struct Node {
    tree: Arc<Tree>,
    slot: u32,
    generation: u32,
}

impl fmt::Debug for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entity")
            .field("trace_id", &self.trace_id)
            .field("id", &self.id)
            .field("sampled", &self.sampled)
            .field("recording", &self.node.is_some())
            .finish()
    }
}

impl Entity {
    const fn unrecorded(trace_id: TraceId, id: SegmentId, sampled: bool) -> Self {
        Self {
            trace_id,
            id,
            sampled,
            node: None,
            forward: None,
        }
    }

    /// This entity, forwarding `fields` on its outgoing headers.
    #[inline]
    fn forwarding(mut self, fields: Option<Arc<str>>) -> Self {
        self.forward = fields;
        self
    }

    /// The root of a new tree: a sampled segment, or a Lambda facade.
    ///
    /// A segment is registered with the recorder's open segments, which bound how many it
    /// holds: registering may evict the oldest, or find segments past their grace period, and
    /// those are sent here, once no lock is held. A facade is never sent, and not registered.
    fn root(recorder: &Recorder, trace_id: TraceId, doc: Document, facade: bool) -> Self {
        let id = doc.id();
        let state = Mutex::new(State::new(doc));
        let mut due = Due::default();
        let tree = if facade {
            Arc::new(Tree {
                recorder: recorder.clone(),
                trace_id,
                facade,
                root_id: id,
                key: None,
                state,
            })
        } else {
            let now = recorder.inner.clock.now_micros();
            Arc::new_cyclic(|weak| Tree {
                recorder: recorder.clone(),
                trace_id,
                facade,
                root_id: id,
                key: recorder
                    .inner
                    .open
                    .insert(weak.clone(), id.as_u64(), now, &mut due),
                state,
            })
        };
        recorder.send_due(due);
        Self {
            trace_id,
            id,
            sampled: true,
            node: Some(Node {
                tree,
                slot: ROOT,
                generation: 0,
            }),
            forward: None,
        }
    }

    /// The segment this entity belongs to: itself for a segment, its segment for a
    /// subsegment. In AWS Lambda that is the function's segment, which Lambda records and
    /// sends itself: what is put on it is not sent, as in every official SDK, so annotate a
    /// subsegment there (the handler's, say). An entity
    /// that records nothing (unsampled, or not recorded) gives itself: whatever is put on
    /// either is dropped alike.
    ///
    /// # Examples
    ///
    /// ```
    /// use xray_sdk::{InMemoryEmitter, Recorder, current_segment};
    ///
    /// let emitter = InMemoryEmitter::new();
    /// let recorder = Recorder::builder().with_emitter(emitter.clone()).build()?;
    /// let segment = recorder.begin_segment("checkout");
    /// let sub = segment.begin_subsegment("pricing");
    /// {
    ///     let _current = sub.enter();
    ///     // Deep inside a call, annotate the request's segment.
    ///     current_segment().unwrap().put_annotation("customer_tier", "gold");
    ///     assert_eq!(sub.entity().segment().id(), segment.id());
    /// }
    /// sub.end();
    /// segment.end();
    /// assert_eq!(emitter.documents()[0]["annotations"]["customer_tier"], "gold");
    /// # Ok::<(), xray_sdk::ConfigError>(())
    /// ```
    pub fn segment(&self) -> Entity {
        match &self.node {
            Some(node) if node.slot != ROOT => Entity {
                trace_id: self.trace_id,
                id: node.tree.root_id,
                sampled: self.sampled,
                node: Some(Node {
                    tree: Arc::clone(&node.tree),
                    slot: ROOT,
                    generation: 0,
                }),
                forward: self.forward.clone(),
            },
            _ => self.clone(),
        }
    }

    /// The trace this entity belongs to.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// This entity's id: the `Parent` of requests it makes.
    pub fn id(&self) -> SegmentId {
        self.id
    }

    /// Whether the trace is sampled.
    pub fn is_sampled(&self) -> bool {
        self.sampled
    }

    /// Whether anything set on this entity is recorded (sampled and not yet sent).
    pub fn is_recording(&self) -> bool {
        self.node.is_some()
    }

    /// The header to send on a request made from this entity: this trace, this entity as
    /// parent, the sampling decision (`Sampled=1` or `Sampled=0`), then the extra fields of
    /// the header the trace came in with (`Lineage`, application fields), unchanged and in
    /// their order. `Self` is never among them.
    ///
    /// # Examples
    ///
    /// ```
    /// use xray_sdk::{Recorder, TraceHeader};
    /// use xray_sdk::sampling::SamplingRequest;
    ///
    /// let recorder = Recorder::builder().ignore_environment().build()?;
    /// let incoming: TraceHeader =
    ///     "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0;Lineage=a87bd80c:0|2ab5c7d1:1".parse()?;
    /// let segment = recorder.begin_segment_with("api", Some(&incoming), &SamplingRequest::new());
    /// let call = segment.begin_subsegment("downstream");
    /// let outgoing = call.trace_header();
    /// assert_eq!(outgoing.lineage(), Some("a87bd80c:0|2ab5c7d1:1"));
    /// assert_eq!(outgoing.parent(), Some(call.id()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn trace_header(&self) -> TraceHeader {
        TraceHeader::new(self.trace_id)
            .with_parent(self.id)
            .with_sampled(if self.sampled {
                Sampled::Yes
            } else {
                Sampled::No
            })
            .with_forwarded(self.forward.as_deref())
    }

    /// Makes this entity current on this thread until the guard is dropped: for sync code.
    ///
    /// Guards may be dropped in any order; each removes only its own entry (see
    /// [`ContextGuard`]). In async code, do not hold the guard across an `.await`: other
    /// futures run on the thread while this one waits, and would record into this entity's
    /// trace. Wrap the future instead, with
    /// [`FutureExt::with_context`](crate::FutureExt::with_context) or
    /// [`Subsegment::instrument`], which make the entity current around each poll only.
    pub fn enter(&self) -> ContextGuard {
        crate::context::enter(self.clone())
    }

    /// Begins a subsegment under this entity.
    pub fn begin_subsegment(&self, name: &str) -> Subsegment {
        let Some(node) = &self.node else {
            return Subsegment::unrecorded(self.trace_id, self.sampled, self.forward.clone());
        };
        let recorder = &node.tree.recorder;
        let id = SegmentId::new();
        let name = SanitizedName::new(name);
        let start = now_secs(recorder);
        let max = recorder.inner.max_subsegments;
        let Some(mut state) = reentry::lock(&node.tree.state) else {
            // Inside an `update` closure that holds this lock: a slot cannot be had now.
            refused::nested(recorder, "begin_subsegment");
            return Subsegment::unrecorded(self.trace_id, self.sampled, self.forward.clone());
        };
        let opened = state.open(node.slot, node.generation, name, id, start, max);
        drop(state);
        match opened {
            Ok((slot, generation)) => Subsegment {
                owner: Owner::new(Entity {
                    trace_id: self.trace_id,
                    id,
                    sampled: true,
                    node: Some(Node {
                        tree: node.tree.clone(),
                        slot,
                        generation,
                    }),
                    forward: self.forward.clone(),
                }),
            },
            Err(OpenError::Gone) => {
                tracing::debug!(
                    target: "xray_sdk::recorder",
                    parent = %self.id,
                    "subsegment begun under an entity already sent; it is not recorded"
                );
                Subsegment::unrecorded(self.trace_id, self.sampled, self.forward.clone())
            }
            Err(OpenError::TooDeep) => {
                recorder.too_deep();
                Subsegment::unrecorded(self.trace_id, self.sampled, self.forward.clone())
            }
            Err(OpenError::TooMany) => {
                recorder.too_many();
                Subsegment::unrecorded(self.trace_id, self.sampled, self.forward.clone())
            }
        }
    }

    /// Begins a subsegment under this entity that is not sampled, whatever this entity's
    /// decision: it records nothing and is never sent, and the header it produces carries
    /// `Sampled=0`, so the calls made under it are not sampled downstream either. `name` is
    /// taken for symmetry with [`begin_subsegment`](Self::begin_subsegment), so that one can
    /// stand for the other; nothing records it.
    ///
    /// This is the official SDKs' oversampling mitigation (`beginSubsegmentWithoutSampling` in
    /// Java, `begin_subsegment_without_sampling` in Python, `addNewSubsegmentWithoutSampling`
    /// in Node.js): in a Lambda function handling a batch of SQS messages, the work for each
    /// message the producer did not sample goes under such a subsegment, so that a sampled
    /// invocation does not sample every message's downstream calls.
    ///
    /// # Examples
    ///
    /// ```
    /// use xray_sdk::{InMemoryEmitter, Recorder};
    ///
    /// let emitter = InMemoryEmitter::new();
    /// let recorder = Recorder::builder()
    ///     .ignore_environment()
    ///     .with_emitter(emitter.clone())
    ///     .build()?;
    /// let invocation = recorder.begin_lambda_invocation(Some(
    ///     "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    /// ));
    /// let skipped = invocation.begin_subsegment_without_sampling("message");
    /// assert!(!skipped.is_sampled() && !skipped.is_recording());
    /// assert_eq!(skipped.trace_id(), invocation.trace_id());
    /// assert!(skipped.trace_header().to_string().ends_with(";Sampled=0"));
    /// skipped.end();
    /// invocation.begin_subsegment("message").end();
    ///
    /// // Only the sampled one is sent (a Lambda facade sends each subsegment as it ends).
    /// let docs = emitter.documents();
    /// assert_eq!(docs.len(), 1);
    /// assert_eq!(docs[0]["name"], "message");
    /// # Ok::<(), xray_sdk::ConfigError>(())
    /// ```
    pub fn begin_subsegment_without_sampling(&self, name: &str) -> Subsegment {
        let _ = name;
        Subsegment::unrecorded(self.trace_id, false, self.forward.clone())
    }

    /// Edits this entity's document directly: for fields without a dedicated setter. Does
    /// nothing, and returns `None`, when the entity is not recorded (or was sent already).
    ///
    /// The closure runs under the segment's lock: keep it short, and record through `doc`
    /// rather than through entity handles. A call made from inside it that needs a lock it
    /// cannot take at once (this segment's, held by the closure; or any other segment's, held
    /// by another thread at that moment) never waits for it, since that could wait forever:
    ///
    /// - annotations, metadata, errors, flags, links and ends are done once the closure returns
    ///   (the outermost one, if `update`s are nested), in the order they were made;
    /// - a nested `update` returns `None` without running its closure, and a subsegment begun
    ///   there records nothing (it still has ids, and propagates the trace header): both are
    ///   counted in [`RefusedStats::nested`](crate::recorder::RefusedStats::nested) and logged.
    ///
    /// # Examples
    ///
    /// ```
    /// use xray_sdk::{InMemoryEmitter, Recorder, SamplerKind};
    ///
    /// let emitter = InMemoryEmitter::new();
    /// let recorder = Recorder::builder()
    ///     .ignore_environment()
    ///     .with_sampler_kind(SamplerKind::Always)
    ///     .with_emitter(emitter.clone())
    ///     .build()?;
    /// let segment = recorder.begin_segment("orders");
    /// segment.update(|doc| {
    ///     doc.set_error(true);
    ///     segment.put_annotation("late", true); // done once the closure returns
    /// });
    /// segment.end();
    ///
    /// let doc = &emitter.documents()[0];
    /// assert_eq!(doc["error"], true);
    /// assert_eq!(doc["annotations"]["late"], true);
    /// # Ok::<(), xray_sdk::ConfigError>(())
    /// ```
    pub fn update<R>(&self, f: impl FnOnce(&mut Document) -> R) -> Option<R> {
        let node = self.node.as_ref()?;
        let Some(state) = reentry::lock(&node.tree.state) else {
            refused::nested(&node.tree.recorder, "update");
            return None;
        };
        // Dropped after the closure, or while a panic in it unwinds: the lock is released,
        // then what calls made inside the closure left for later is done.
        let mut updating = Updating::enter(state)?;
        updating
            .state()
            .and_then(|state| state.with_doc(node.slot, node.generation, f))
    }

    /// Adds an annotation: an indexed key-value pair that filter expressions can search.
    ///
    /// A key must be 1 to 500 ASCII letters, digits or `_`; a value a string (up to 1,000
    /// characters; longer ones are cut), an integer, a finite float or a bool.
    ///
    /// Nothing is returned, so that tracing can never fail the application: a bad key or value
    /// is refused and never sent, counted in
    /// [`RefusedStats::annotations`](crate::recorder::RefusedStats::annotations), and logged as a
    /// warning
    /// naming the key and the [`AnnotationError`] (at most once a minute). The key is checked
    /// whether the entity is recorded or not, so that a bad one shows in development, where most
    /// requests are not sampled; the value only when it is recorded.
    ///
    /// # Examples
    ///
    /// ```
    /// use xray_sdk::{InMemoryEmitter, Recorder, SamplerKind};
    ///
    /// let emitter = InMemoryEmitter::new();
    /// let recorder = Recorder::builder()
    ///     .ignore_environment()
    ///     .with_sampler_kind(SamplerKind::Always)
    ///     .with_emitter(emitter.clone())
    ///     .build()?;
    /// let segment = recorder.begin_segment("orders");
    /// segment.put_annotation("tenant", "blue");
    /// segment.put_annotation("not valid!", 1); // refused: counted and logged
    /// segment.end();
    ///
    /// assert_eq!(emitter.documents()[0]["annotations"], serde_json::json!({"tenant": "blue"}));
    /// assert_eq!(recorder.refused().annotations, 1);
    /// # Ok::<(), xray_sdk::ConfigError>(())
    /// ```
    #[inline]
    pub fn put_annotation(&self, key: &str, value: impl Into<AnnotationValue>) {
        let Some(node) = &self.node else {
            if !is_valid_key(key) {
                refused::annotation(None, key, AnnotationError::InvalidKey);
            }
            return;
        };
        node.put_annotation(key, value.into());
    }

    /// Adds metadata under the `default` namespace: any serializable value, not indexed. See
    /// [`put_metadata_in`](Self::put_metadata_in).
    pub fn put_metadata<T: serde::Serialize + ?Sized>(&self, key: &str, value: &T) {
        self.put_metadata_in(crate::document::DEFAULT_METADATA_NAMESPACE, key, value);
    }

    /// Adds metadata under `namespace`: any serializable value, not indexed.
    ///
    /// Nothing is returned, so that tracing can never fail the application: a namespace
    /// starting with `AWS.` (reserved for AWS SDKs), or a value whose `Serialize` fails, is
    /// refused and never sent, counted in
    /// [`RefusedStats::metadata`](crate::recorder::RefusedStats::metadata), and logged as a warning
    /// naming
    /// the key and the [`MetadataError`] (at most once a minute). The namespace is checked
    /// whether the entity is recorded or not; the value is serialized, and so checked, only
    /// when it is recorded: an unsampled request serializes nothing.
    pub fn put_metadata_in<T: serde::Serialize + ?Sized>(
        &self,
        namespace: &str,
        key: &str,
        value: &T,
    ) {
        if is_reserved_namespace(namespace) {
            refused::metadata(
                self.recorder(),
                namespace,
                key,
                &MetadataError::ReservedNamespace,
            );
            return;
        }
        let Some(node) = &self.node else {
            return;
        };
        // Serialized outside the lock: user `Serialize` impls are user code.
        match serde_json::to_value(value) {
            Ok(value) => node.put_metadata(namespace, key, value),
            Err(e) => refused::metadata(
                Some(&node.tree.recorder),
                namespace,
                key,
                &MetadataError::NotSerializable(Box::new(e)),
            ),
        }
    }

    /// Records an error and its `source()` chain as the cause, and marks the entity as a
    /// fault (unless an HTTP status already classified it).
    pub fn add_error(&self, error: &(dyn std::error::Error + 'static)) {
        if self.node.is_none() {
            return;
        }
        self.add_cause(Cause::from_error(error));
    }

    /// Adds a cause: what [`add_error`](Self::add_error) and `#[capture]` record.
    pub(crate) fn add_cause(&self, cause: Cause) {
        if let Some(node) = &self.node {
            node.record("add_error", move |doc| doc.add_cause(cause));
        }
    }

    /// Records a panic as a fault, with the panic's message as the cause (type `panic`): the
    /// payload's text when it is a `&str` or a `String`, as `panic!` makes them.
    ///
    /// For code that catches a panic (`std::panic::catch_unwind`) and resumes it. The futures
    /// of [`Segment::instrument`], [`Subsegment::instrument`] and `#[capture]` do this
    /// themselves; and a [`Segment`] or [`Subsegment`] dropped while a panic unwinds through
    /// the code it covers ends as a fault with the cause `panicked`, the message being out of
    /// reach of a destructor.
    pub fn record_panic(&self, payload: &(dyn Any + Send)) {
        self.record_panic_with(Some(payload), None);
    }

    /// [`record_panic`](Self::record_panic), with `frame` as the cause's stack; without a
    /// payload, the message is `panicked`.
    pub(crate) fn record_panic_with(
        &self,
        payload: Option<&(dyn Any + Send)>,
        frame: Option<StackFrame>,
    ) {
        let Some(node) = &self.node else {
            return;
        };
        let message = match payload {
            Some(p) => p
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| p.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("panicked with a payload that is not a string"),
            None => "panicked",
        };
        let mut cause = Cause::from_message(&message, Some("panic"), None);
        if let (Some(frame), Cause::Details(details)) = (frame, &mut cause)
            && let Some(first) = details.exceptions.first_mut()
        {
            first.stack.push(frame);
        }
        // Without a payload, the fallback of an owner dropped while unwinding: a panic recorded
        // already (with its message, by code that caught it) is enough.
        let fallback = payload.is_none();
        node.record("record_panic", move |doc| {
            if fallback && records_panic(doc) {
                return;
            }
            doc.add_cause(cause);
            doc.set_fault(true);
        });
    }

    /// Marks the entity as an error (a client-side problem, 4xx).
    pub fn set_error(&self) {
        if let Some(node) = &self.node {
            node.record("set_error", |doc| doc.set_error(true));
        }
    }

    /// Marks the entity as throttled (429).
    pub fn set_throttle(&self) {
        if let Some(node) = &self.node {
            node.record("set_throttle", |doc| doc.set_throttle(true));
        }
    }

    /// Marks the entity as a fault (a server-side problem, 5xx).
    pub fn set_fault(&self) {
        if let Some(node) = &self.node {
            node.record("set_fault", |doc| doc.set_fault(true));
        }
    }

    /// Links this entity to a span of another trace (or of this one), such as the producer of
    /// a message this work consumes. Links reach X-Ray through the OpenTelemetry transports
    /// (`OtlpUdpTransport`, and OTLP/HTTP); see [`SpanLink`](crate::document::SpanLink).
    ///
    /// # Examples
    ///
    /// ```
    /// use xray_sdk::{Recorder, SegmentId, TraceId};
    /// use xray_sdk::document::SpanLink;
    ///
    /// let recorder = Recorder::builder().ignore_environment().build()?;
    /// let segment = recorder.begin_segment("consumer");
    /// let producer = SpanLink::new(TraceId::new(), SegmentId::new()).with_attribute("queue", "orders");
    /// segment.add_link(producer);
    /// segment.end();
    /// # Ok::<(), xray_sdk::ConfigError>(())
    /// ```
    pub fn add_link(&self, link: crate::document::SpanLink) {
        if let Some(node) = &self.node {
            node.record("add_link", move |doc| doc.add_link(link));
        }
    }

    /// The recorder of a recorded entity.
    fn recorder(&self) -> Option<&Recorder> {
        self.node.as_ref().map(|n| &n.tree.recorder)
    }
}

// ===== impl Node =====

impl Node {
    /// Applies `op` to this entity's document under the segment's lock; or, from inside an
    /// [`Entity::update`] closure that holds a lock in the way, once that returns (see
    /// `reentry`). `op` is the crate's own code: no user code runs under the lock but
    /// `update`'s closure.
    #[inline]
    fn record(&self, operation: &'static str, op: impl FnOnce(&mut Document) + 'static) {
        match reentry::lock(&self.tree.state) {
            Some(mut state) => {
                let _ = state.with_doc(self.slot, self.generation, op);
            }
            None => self.defer(operation, op),
        }
    }

    /// Leaves `op` for when the outermost `update` of this thread has released its lock.
    #[cold]
    #[inline(never)]
    fn defer(&self, operation: &'static str, op: impl FnOnce(&mut Document) + 'static) {
        let node = self.clone();
        if !reentry::defer(Box::new(move || node.record(operation, op))) {
            refused::nested(&self.tree.recorder, operation);
        }
    }

    /// Adds an annotation, checked first: the check runs outside the lock, and a refusal is
    /// counted and logged here, once.
    fn put_annotation(&self, key: &str, value: AnnotationValue) {
        let refusal = if !is_valid_key(key) {
            Some(AnnotationError::InvalidKey)
        } else if matches!(value, AnnotationValue::Float(f) if !f.is_finite()) {
            Some(AnnotationError::NonFiniteNumber)
        } else {
            None
        };
        if let Some(error) = refusal {
            refused::annotation(Some(&self.tree.recorder), key, error);
            return;
        }
        match reentry::lock(&self.tree.state) {
            Some(mut state) => {
                let _ = state.with_doc(self.slot, self.generation, |doc| {
                    doc.put_annotation(key, value)
                });
            }
            None => {
                let key = key.to_owned();
                self.defer("put_annotation", move |doc| {
                    let _ = doc.put_annotation(&key, value);
                });
            }
        }
    }

    /// Adds metadata already serialized, under a namespace already checked.
    fn put_metadata(&self, namespace: &str, key: &str, value: serde_json::Value) {
        match reentry::lock(&self.tree.state) {
            Some(mut state) => {
                let _ = state.with_doc(self.slot, self.generation, |doc| {
                    doc.put_metadata_in(namespace, key, &value)
                });
            }
            None => {
                let (namespace, key) = (namespace.to_owned(), key.to_owned());
                self.defer("put_metadata", move |doc| {
                    let _ = doc.put_metadata_in(&namespace, &key, &value);
                });
            }
        }
    }
}

/// Whether `doc` records a panic already.
fn records_panic(doc: &Document) -> bool {
    doc.cause().and_then(Cause::details).is_some_and(|d| {
        d.exceptions
            .iter()
            .any(|e| e.kind.as_deref() == Some("panic"))
    })
}

fn now_secs(recorder: &Recorder) -> f64 {
    crate::document::seconds_from_micros(recorder.inner.clock.now_micros())
}

/// The compiler that built this crate, for `service.runtime_version`.
const RUSTC_VERSION: &str = env!("XRAY_RUSTC_VERSION");

/// The `service` block of a recorder's segments.
pub(super) fn service_block(version: Option<String>) -> Service {
    let mut service = Service::rust();
    service.version = version;
    service.runtime_version = Some(RUSTC_VERSION.to_owned());
    service
}

// ===== impl Segment =====

/// A segment: one request or unit of work in this service. Ends when [`end`](Self::end) is
/// called or when dropped; the document is sent when the segment and all its subsegments have
/// ended.
///
/// Dropping a `Segment` without calling `end` ends it at the drop, exactly as `end` would: a
/// request handler that returns early, panics or is cancelled (its future dropped) still sends
/// its segment, ended where it stopped. Only a handle that is never dropped keeps the segment
/// open; the recorder then sends it, in progress, when it evicts it (see
/// [`RecorderStats::evicted`](crate::recorder::RecorderStats::evicted)).
///
/// A segment that ends while subsegments are still open waits for them for the
/// [grace period](crate::RecorderBuilder::with_grace_period) (30 s by default); past it, it is
/// sent with those marked `in_progress`, and each is sent on its own when it ends.
///
/// Derefs to [`Entity`] for annotations, metadata, errors and subsegments.
pub struct Segment {
    owner: Owner,
    requested: bool,
    rule: Option<Arc<str>>,
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("entity", &self.owner.entity)
            .field("requested", &self.requested)
            .finish()
    }
}

impl std::ops::Deref for Segment {
    type Target = Entity;

    fn deref(&self) -> &Entity {
        &self.owner.entity
    }
}

impl Segment {
    // Inlined into `begin_segment_with`: the unsampled path is a few stores.
    #[inline]
    pub(crate) fn begin(
        recorder: &Recorder,
        name: &str,
        trace_id: TraceId,
        parent: Option<SegmentId>,
        sampled: bool,
        requested: bool,
        rule: Option<Arc<str>>,
    ) -> Segment {
        let id = SegmentId::new();
        if !sampled {
            return Segment {
                owner: Owner::new(Entity::unrecorded(trace_id, id, false)),
                requested,
                rule: None,
            };
        }
        Self::begin_recorded(recorder, name, trace_id, id, parent, requested, rule)
    }

    /// This segment, forwarding `fields` (an incoming header's extra fields) on the outgoing
    /// headers of it and of everything begun under it.
    #[inline]
    pub(crate) fn forwarding(mut self, fields: Option<Arc<str>>) -> Segment {
        self.owner.entity.forward = fields;
        self
    }

    /// The recording half of [`Segment::begin`], kept out of line so the unsampled path
    /// stays small.
    #[inline(never)]
    fn begin_recorded(
        recorder: &Recorder,
        name: &str,
        trace_id: TraceId,
        id: SegmentId,
        parent: Option<SegmentId>,
        requested: bool,
        rule: Option<Arc<str>>,
    ) -> Segment {
        let inner = &recorder.inner;
        let mut doc = Document::new(name, id, now_secs(recorder));
        doc.set_trace_id(trace_id);
        if let Some(parent) = parent {
            doc.set_parent_id(parent);
        }
        // Both blocks are shared, built once: a segment allocates neither.
        doc.set_shared_service(inner.service.clone());
        let detected = inner.environment.get();
        match (rule.as_deref(), detected) {
            (None, None) => doc.set_shared_aws(crate::document::sdk_block().clone()),
            (None, Some(env)) => doc.set_shared_aws(env.aws.clone()),
            (Some(rule), _) => {
                if let Some(env) = detected {
                    doc.set_shared_aws(env.aws.clone());
                }
                let mut sdk = XRaySdk::rust();
                sdk.sampling_rule_name = Some(rule.to_owned());
                doc.aws_mut().xray = Some(sdk);
            }
        }
        if let Some(origin) = inner.origin() {
            doc.set_origin(origin);
        }
        Segment {
            owner: Owner::new(Entity::root(recorder, trace_id, doc, false)),
            requested,
            rule,
        }
    }

    pub(crate) fn facade(
        recorder: &Recorder,
        trace_id: TraceId,
        id: SegmentId,
        sampled: bool,
        forward: Option<Arc<str>>,
    ) -> Segment {
        let entity = if sampled {
            let doc = Document::new("facade", id, now_secs(recorder));
            Entity::root(recorder, trace_id, doc, true)
        } else {
            Entity::unrecorded(trace_id, id, false)
        }
        .forwarding(forward);
        Segment {
            owner: Owner::new(entity),
            requested: false,
            rule: None,
        }
    }

    pub(crate) fn unsampled(trace_id: TraceId) -> Segment {
        Segment {
            owner: Owner::new(Entity::unrecorded(trace_id, SegmentId::new(), false)),
            requested: false,
            rule: None,
        }
    }

    /// The entity this segment is, for the context or for passing by hand.
    pub fn entity(&self) -> &Entity {
        &self.owner.entity
    }

    /// The name of the centralized sampling rule that sampled this segment, if one did.
    pub fn sampling_rule(&self) -> Option<&str> {
        self.rule.as_deref()
    }

    /// The `X-Amzn-Trace-Id` a server returns to its caller: `Root`, plus `Sampled` when the
    /// caller asked with `Sampled=?`.
    pub fn response_header(&self) -> TraceHeader {
        let h = TraceHeader::new(self.owner.entity.trace_id);
        if self.requested {
            h.with_sampled(if self.owner.entity.sampled {
                Sampled::Yes
            } else {
                Sampled::No
            })
        } else {
            h
        }
    }

    /// Runs `fut` with this segment current on every poll, and ends the segment when `fut`
    /// completes or is dropped. A poll that panics ends it as a fault, with the panic's message
    /// as the cause, and the panic goes on unwinding (see [`WithContext`]).
    pub fn instrument<F: Future>(self, fut: F) -> WithContext<F> {
        WithContext::owning_segment(fut, self)
    }

    /// Ends the segment now.
    pub fn end(mut self) {
        self.owner.finish();
    }
}

// ===== impl Subsegment =====

/// A subsegment: one piece of work inside a segment (a call to another service, a database
/// query, a function). Ends when [`end`](Self::end) is called or when dropped.
///
/// Dropping a `Subsegment` without calling `end` ends it at the drop, exactly as `end` would
/// (a future wrapped with [`instrument`](Self::instrument) and dropped before it completes
/// ends its subsegment where it was dropped). A subsegment whose handle is never dropped stays
/// open: its segment is then sent after the
/// [grace period](crate::RecorderBuilder::with_grace_period), with it marked `in_progress`.
///
/// Dropped while a panic unwinds through the code it covers, a subsegment (or a segment) ends
/// as a fault, with the cause `panicked`: the message is out of reach of a destructor. Code
/// that catches the panic records it with its message ([`Entity::record_panic`]), as
/// [`instrument`](Self::instrument) and `#[capture]` do.
///
/// Derefs to [`Entity`] for annotations, metadata, errors and nested subsegments.
pub struct Subsegment {
    owner: Owner,
}

impl fmt::Debug for Subsegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subsegment")
            .field("entity", &self.owner.entity)
            .finish()
    }
}

impl std::ops::Deref for Subsegment {
    type Target = Entity;

    fn deref(&self) -> &Entity {
        &self.owner.entity
    }
}

impl Subsegment {
    /// A subsegment that records nothing (what is returned when there is no context).
    pub fn none() -> Subsegment {
        Subsegment {
            owner: Owner::new(Entity::unrecorded(
                TraceId::from_parts(0, 0),
                SegmentId::from_u64(0),
                false,
            )),
        }
    }

    fn unrecorded(trace_id: TraceId, sampled: bool, forward: Option<Arc<str>>) -> Subsegment {
        Subsegment {
            owner: Owner::new(
                Entity::unrecorded(trace_id, SegmentId::new(), sampled).forwarding(forward),
            ),
        }
    }

    /// The entity this subsegment is.
    pub fn entity(&self) -> &Entity {
        &self.owner.entity
    }

    /// Runs `fut` with this subsegment current on every poll, and ends the subsegment when
    /// `fut` completes or is dropped. A poll that panics ends it as a fault, with the panic's
    /// message as the cause, and the panic goes on unwinding (see [`WithContext`]).
    pub fn instrument<F: Future>(self, fut: F) -> WithContext<F> {
        WithContext::owning(fut, self)
    }

    /// Ends the subsegment now.
    pub fn end(mut self) {
        self.owner.finish();
    }

    /// Ends the subsegment without recording it: it, and everything begun under it, is left
    /// out of the trace. For work that turned out not to be worth a subsegment, such as a
    /// request that was prepared but never sent.
    ///
    /// Subsegments begun under it may still be open; they are dropped when they end. Those
    /// already sent ahead of the segment (streaming, Lambda) stay sent.
    ///
    /// # Examples
    ///
    /// ```
    /// use xray_sdk::{InMemoryEmitter, Recorder};
    ///
    /// let emitter = InMemoryEmitter::new();
    /// let recorder = Recorder::builder().with_emitter(emitter.clone()).build()?;
    /// let segment = recorder.begin_segment("job");
    /// segment.begin_subsegment("kept").end();
    /// segment.begin_subsegment("never sent").discard();
    /// segment.end();
    ///
    /// let doc = &emitter.documents()[0];
    /// assert_eq!(doc["subsegments"].as_array().unwrap().len(), 1);
    /// assert_eq!(doc["subsegments"][0]["name"], "kept");
    /// # Ok::<(), xray_sdk::ConfigError>(())
    /// ```
    pub fn discard(mut self) {
        self.owner.discard();
    }
}

// ===== impl Owner =====

/// Ends its entity once: at `finish`, or when dropped. What [`Segment`] and [`Subsegment`]
/// share; an entity that is not recorded has nothing to end.
///
/// Dropped while a panic unwinds through the code it covers, it records a fault first, with
/// the cause `panicked` (a destructor cannot read the panic's message; the futures of
/// `instrument` and `#[capture]` catch the panic, and record it with its message).
struct Owner {
    entity: Entity,
    done: bool,
    /// Begun while this thread was already unwinding (in a destructor a panic runs): being
    /// dropped while unwinding then says nothing about the work it covers.
    begun_unwinding: bool,
}

impl Owner {
    #[inline]
    fn new(entity: Entity) -> Self {
        let done = entity.node.is_none();
        // One relaxed load when no thread is panicking; never read for unrecorded entities.
        let begun_unwinding = !done && std::thread::panicking();
        Self {
            entity,
            done,
            begun_unwinding,
        }
    }

    /// Dropped by a panic unwinding through the code it covers.
    #[cold]
    #[inline(never)]
    fn unwound(&self) {
        self.entity.record_panic_with(None, None);
    }

    #[inline]
    fn finish(&mut self) {
        self.close(false);
    }

    fn discard(&mut self) {
        self.close(true);
    }

    /// Ends the entity, or discards it, unless that was done already.
    #[inline]
    fn close(&mut self, discard: bool) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        if let Some(node) = &self.entity.node {
            end_entity(node, discard);
        }
    }
}

impl Drop for Owner {
    #[inline]
    fn drop(&mut self) {
        if !self.done && !self.begun_unwinding && std::thread::panicking() {
            self.unwound();
        }
        self.finish();
    }
}

fn end_entity(node: &Node, discard: bool) {
    end_entity_at(node, discard, node.tree.recorder.inner.clock.now_micros());
}

/// Ends the entity at `now`, the time its owner ended it.
fn end_entity_at(node: &Node, discard: bool, now: u64) {
    let tree = &node.tree;
    let recorder = &tree.recorder;
    let end_time = crate::document::seconds_from_micros(now);
    let mut out = Outbox::default();
    let threshold = recorder.inner.streaming_threshold;
    let ended = {
        let Some(mut state) = reentry::lock(&tree.state) else {
            // Inside an `update` closure that holds this lock: ended once the closure returns,
            // at the time it was ended.
            let node = node.clone();
            if !reentry::defer(Box::new(move || end_entity_at(&node, discard, now))) {
                refused::nested(recorder, "end");
            }
            return;
        };
        if discard {
            state.discard(node.slot, node.generation);
        }
        state.end(
            node.slot,
            node.generation,
            end_time,
            tree,
            threshold,
            &mut out,
        )
    };
    let completed = out.completed();
    recorder.send_out(tree, out);
    // The registry is told after the tree's lock is released: the two are never held together.
    let Some(key) = tree.key else {
        return;
    };
    let open = &recorder.inner.open;
    if completed {
        open.remove(key);
    } else if ended && node.slot == ROOT && open.ended_early(key, now) && open.sends_at_once() {
        // The segment ended with subsegments open, and there is no grace period.
        recorder.send_ahead(tree, false);
    }
}
