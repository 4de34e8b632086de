use std::fmt;
use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;

use super::Recorder;
use super::tree::{OpenError, Outbox, Outgoing, ROOT, State, Tree};
use crate::context::{ContextGuard, WithContext};
use crate::document::{
    AnnotationError, AnnotationValue, Cause, Document, MetadataError, SanitizedName, Service,
    XraySdk,
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
    fn root(recorder: &Recorder, trace_id: TraceId, doc: Document, facade: bool) -> Self {
        Self {
            trace_id,
            id: doc.id(),
            sampled: true,
            node: Some(Node {
                tree: Arc::new(Tree {
                    recorder: recorder.clone(),
                    trace_id,
                    facade,
                    state: Mutex::new(State::new(doc)),
                }),
                slot: ROOT,
                generation: 0,
            }),
            forward: None,
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
    /// use xray_core::{Recorder, SamplingRequest, TraceHeader};
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

    /// Makes this entity current on this thread until the guard is dropped.
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
        let opened = node
            .tree
            .state
            .lock()
            .open(node.slot, node.generation, name, id, start);
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
                    target: "xray_core::recorder",
                    parent = %self.id,
                    "subsegment begun under an entity already sent; it is not recorded"
                );
                Subsegment::unrecorded(self.trace_id, self.sampled, self.forward.clone())
            }
            Err(OpenError::TooDeep) => {
                recorder.too_deep();
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
    /// use xray_core::{InMemoryEmitter, Recorder};
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
    /// # Ok::<(), xray_core::ConfigError>(())
    /// ```
    pub fn begin_subsegment_without_sampling(&self, name: &str) -> Subsegment {
        let _ = name;
        Subsegment::unrecorded(self.trace_id, false, self.forward.clone())
    }

    /// Edits this entity's document directly: for fields without a dedicated setter. Does
    /// nothing when the entity is not recorded. The closure runs under the segment's lock:
    /// keep it short.
    pub fn update<R>(&self, f: impl FnOnce(&mut Document) -> R) -> Option<R> {
        let node = self.node.as_ref()?;
        node.tree
            .state
            .lock()
            .with_doc(node.slot, node.generation, f)
    }

    /// Adds an annotation: an indexed key-value pair that filter expressions can search.
    ///
    /// A key must be 1 to 500 ASCII letters, digits or `_`; a value a string (up to 1,000
    /// characters), an integer, a finite float or a bool. A bad one is refused with a typed
    /// error, logged, and never sent. Entities not recorded accept anything and record nothing.
    #[inline]
    pub fn put_annotation(
        &self,
        key: &str,
        value: impl Into<AnnotationValue>,
    ) -> Result<(), AnnotationError> {
        if self.node.is_none() {
            return Ok(());
        }
        self.update(|doc| doc.put_annotation(key, value))
            .unwrap_or(Ok(()))
    }

    /// Adds metadata under the `default` namespace: any serializable value, not indexed.
    pub fn put_metadata<T: serde::Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), MetadataError> {
        self.put_metadata_in("default", key, value)
    }

    /// Adds metadata under `namespace` (namespaces starting with `AWS.` are reserved).
    pub fn put_metadata_in<T: serde::Serialize + ?Sized>(
        &self,
        namespace: &str,
        key: &str,
        value: &T,
    ) -> Result<(), MetadataError> {
        if self.node.is_none() {
            return Ok(());
        }
        // Serialize outside the lock: user `Serialize` impls are user code.
        let value = match serde_json::to_value(value) {
            Ok(v) => v,
            Err(e) => {
                let e = MetadataError::NotSerializable(Box::new(e));
                tracing::warn!(target: "xray_core::document", error = %e, "metadata dropped");
                return Err(e);
            }
        };
        self.update(|doc| doc.put_metadata_in(namespace, key, &value))
            .unwrap_or(Ok(()))
    }

    /// Records an error and its `source()` chain as the cause, and marks the entity as a
    /// fault (unless an HTTP status already classified it).
    pub fn add_error(&self, error: &(dyn std::error::Error + 'static)) {
        if self.node.is_none() {
            return;
        }
        let cause = Cause::from_error(error);
        self.update(|doc| doc.add_cause(cause));
    }

    /// Marks the entity as an error (a client-side problem, 4xx).
    pub fn set_error(&self) {
        self.update(|doc| doc.set_error(true));
    }

    /// Marks the entity as throttled (429).
    pub fn set_throttle(&self) {
        self.update(|doc| doc.set_throttle(true));
    }

    /// Marks the entity as a fault (a server-side problem, 5xx).
    pub fn set_fault(&self) {
        self.update(|doc| doc.set_fault(true));
    }

    /// Links this entity to a span of another trace (or of this one), such as the producer of
    /// a message this work consumes. Links reach X-Ray through the OpenTelemetry transports
    /// (`OtlpUdpTransport`, and OTLP/HTTP); see [`SpanLink`](crate::SpanLink).
    ///
    /// # Examples
    ///
    /// ```
    /// use xray_core::{Recorder, SegmentId, SpanLink, TraceId};
    ///
    /// let recorder = Recorder::builder().ignore_environment().build()?;
    /// let segment = recorder.begin_segment("consumer");
    /// let producer = SpanLink::new(TraceId::new(), SegmentId::new()).with_attribute("queue", "orders");
    /// segment.add_link(producer);
    /// segment.end();
    /// # Ok::<(), xray_core::ConfigError>(())
    /// ```
    pub fn add_link(&self, link: crate::SpanLink) {
        self.update(|doc| doc.add_link(link));
    }
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
                let mut sdk = XraySdk::rust();
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
    /// completes or is dropped.
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
    /// `fut` completes or is dropped.
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
    /// use xray_core::{InMemoryEmitter, Recorder};
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
    /// # Ok::<(), xray_core::ConfigError>(())
    /// ```
    pub fn discard(mut self) {
        self.owner.discard();
    }
}

// ===== impl Owner =====

/// Ends its entity once: at `finish`, or when dropped. What [`Segment`] and [`Subsegment`]
/// share; an entity that is not recorded has nothing to end.
struct Owner {
    entity: Entity,
    done: bool,
}

impl Owner {
    #[inline]
    fn new(entity: Entity) -> Self {
        let done = entity.node.is_none();
        Self { entity, done }
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
        self.finish();
    }
}

fn end_entity(node: &Node, discard: bool) {
    let tree = &node.tree;
    let recorder = &tree.recorder;
    let end_time = now_secs(recorder);
    let mut out = Outbox::default();
    let threshold = recorder.inner.streaming_threshold;
    {
        let mut state = tree.state.lock();
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
        );
    }
    for doc in out {
        match doc {
            Outgoing::Segment(arena) => recorder.send_segment(tree.trace_id, &arena),
            Outgoing::Independent(doc) => recorder.send_independent(&doc, tree.facade),
        }
    }
}
