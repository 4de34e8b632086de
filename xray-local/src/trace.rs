//! Assembling documents into traces, and walking the result.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use xray_sdk::TraceId;

use crate::intake::{self, Document, DropReason};

/// How deep independent subsegments are attached under one another. serde_json already refuses
/// documents nested deeper than 127 levels (about 63 levels of subsegments in one document);
/// this bounds chains of separately sent pieces, so a hostile sender cannot make assembly
/// recurse without limit. Pieces past it stay orphans.
const MAX_ATTACH_DEPTH: usize = 256;

/// One assembled trace: its segments with every separately sent subsegment merged under its
/// parent.
///
/// Documents are kept as [`serde_json::Value`] exactly as the SDK sent them, so fields this crate
/// does not know about are still there to assert on.
///
/// It serializes as `{"trace_id", "complete", "segments", "orphans", "continued"}` (the form
/// the read API serves) and deserializes from the same; see [the JSON form](#the-json-form).
///
/// # Examples
///
/// ```
/// use serde_json::json;
///
/// let traces = xray_local::assemble([
///     json!({"name": "api", "id": "70de5b6f19ff9a0a", "start_time": 1.0, "end_time": 2.0,
///            "trace_id": "1-581cf771-a006649127e371903a2de979"}),
///     json!({"type": "subsegment", "name": "db", "id": "70de5b6f19ff9a0b",
///            "parent_id": "70de5b6f19ff9a0a", "start_time": 1.2, "end_time": 1.5,
///            "trace_id": "1-581cf771-a006649127e371903a2de979"}),
/// ])?;
/// let trace = &traces[0];
/// assert!(trace.is_complete());
/// let db = trace.find("db").unwrap();
/// assert_eq!(db.parent().and_then(|p| p.name()), Some("api"));
/// assert_eq!(trace.entities().count(), 2);
/// # Ok::<(), xray_local::DocumentError>(())
/// ```
///
/// # The JSON form
///
/// `trace_id`, `complete`, `segments` (the segment documents with their subsegments nested in
/// `subsegments`), `orphans` (left out when there are none) and `continued` (left out when
/// empty, which is almost always).
///
/// A tree of subsegments can be deeper than a JSON parser takes: serde_json refuses more than
/// 127 levels of nesting by default, and a trace's subsegments may nest 256 levels, each two
/// levels of JSON. So the JSON of a trace nests at most 100 levels (counting one array around
/// it, as `GET /traces` has; only an entity whose own fields nest deeper goes past, and never
/// past 127: the intake refuses deeper ones as [`DropReason::TooDeep`]). Where an entity's
/// subsegments would go past 100, the entity is written without its `subsegments`, and they
/// are listed in `continued` as
/// `{"in": .., "path": [..], "subsegments": [..]}`. `in` is `"segments"`, `"orphans"` or the
/// index of an earlier entry of `continued`; `path` indexes into that list (for an entry of
/// `continued`, into its `subsegments`), then down `subsegments` to the entity. Putting the
/// entries back, from the last to the first, gives the whole tree:
///
/// ```python
/// for c in reversed(trace.get("continued", [])):
///     within = c["in"]
///     entity = (trace[within] if isinstance(within, str)
///               else trace["continued"][within]["subsegments"])[c["path"][0]]
///     for i in c["path"][1:]:
///         entity = entity["subsegments"][i]
///     entity["subsegments"] = c["subsegments"]
/// ```
///
/// Deserializing a [`Trace`] does it, so nothing else sees the difference:
///
/// ```
/// use serde_json::{Value, json};
///
/// let trace_id = "1-581cf771-a006649127e371903a2de979";
/// let mut docs = vec![json!({"name": "api", "id": format!("{:016x}", 1), "trace_id": trace_id,
///                            "start_time": 1.0, "end_time": 2.0})];
/// for depth in 1..=200_u64 {
///     docs.push(json!({"type": "subsegment", "name": format!("level {depth}"),
///                      "id": format!("{:016x}", depth + 1), "parent_id": format!("{depth:016x}"),
///                      "trace_id": trace_id, "start_time": 1.0, "end_time": 2.0}));
/// }
/// let trace = xray_local::assemble(docs)?.remove(0);
/// assert_eq!(trace.find("level 200").map(|e| e.depth()), Some(200));
///
/// let text = serde_json::to_string(&trace).unwrap();
/// let plain: Value = serde_json::from_str(&text).unwrap(); // default limits
/// assert!(plain["continued"].as_array().is_some_and(|c| !c.is_empty()));
/// let back: xray_local::Trace = serde_json::from_str(&text).unwrap();
/// assert_eq!(back, trace);
/// # Ok::<(), xray_local::DocumentError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Trace {
    trace_id: TraceId,
    complete: bool,
    segments: Vec<Value>,
    orphans: Vec<Value>,
    /// What the read API asks of every trace held, worked out once per assembled trace.
    index: OnceLock<TraceIndex>,
}

/// Equal traces have the same id, completeness and documents (the index follows from them).
impl PartialEq for Trace {
    fn eq(&self, other: &Self) -> bool {
        self.trace_id == other.trace_id
            && self.complete == other.complete
            && self.segments == other.segments
            && self.orphans == other.orphans
    }
}

/// The times of a trace that a query over every trace held reads: worked out once, so that
/// `GetTraceSummaries` over 100,000 traces walks no entity to place one in its time range.
#[derive(Debug, Clone, Default)]
pub(crate) struct TraceIndex {
    /// The earliest start and the latest end of its entities.
    pub(crate) ended: Option<(f64, f64)>,
    /// The earliest start and the latest end, an entity in progress counting by its start.
    pub(crate) active: Option<(f64, f64)>,
    /// Each segment's `end_time`.
    pub(crate) segment_ends: Vec<f64>,
    /// The nodes of the service map the trace touches (segments, AWS and remote calls), by
    /// name, with the flags any of their entities carries.
    pub(crate) nodes: Vec<NodeFlags>,
    /// Every annotation key of every entity, once.
    pub(crate) annotation_keys: Vec<String>,
    /// The root segment's facts, when there is a segment.
    pub(crate) root: Option<RootFacts>,
    /// Whether any entity is throttled.
    pub(crate) throttled: bool,
}

/// A node's name and whether any of its entities is marked fault, error or throttle.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeFlags {
    pub(crate) name: String,
    pub(crate) fault: bool,
    pub(crate) error: bool,
    pub(crate) throttle: bool,
}

/// What trace-level keywords read of the root segment.
#[derive(Debug, Clone, Default)]
pub(crate) struct RootFacts {
    pub(crate) duration: Option<f64>,
    pub(crate) status: Option<f64>,
    pub(crate) fault: bool,
    pub(crate) error: bool,
}

impl TraceIndex {
    /// What the index takes on the heap.
    fn footprint(&self) -> usize {
        self.segment_ends.capacity() * size_of::<f64>()
            + self.nodes.capacity() * size_of::<NodeFlags>()
            + self.nodes.iter().map(|n| n.name.capacity()).sum::<usize>()
            + self.annotation_keys.capacity() * size_of::<String>()
            + self
                .annotation_keys
                .iter()
                .map(String::capacity)
                .sum::<usize>()
    }
}

impl Trace {
    /// What the assembled trace takes on the heap, as [`intake::footprint`] counts, its
    /// index included once worked out.
    pub(crate) fn footprint(&self) -> usize {
        size_of::<Trace>()
            + self.index.get().map_or(0, TraceIndex::footprint)
            + (self.segments.capacity() + self.orphans.capacity()) * size_of::<Value>()
            + self
                .segments
                .iter()
                .chain(&self.orphans)
                .map(intake::footprint)
                .sum::<usize>()
    }

    /// The trace id.
    pub fn id(&self) -> TraceId {
        self.trace_id
    }

    /// The trace's times, worked out on first use.
    pub(crate) fn index(&self) -> &TraceIndex {
        self.index.get_or_init(|| {
            let mut index = TraceIndex::default();
            let (mut first, mut last_end, mut last_seen) =
                (f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY);
            for entity in self.entities() {
                let start = entity.start_time();
                let end = entity.end_time();
                if let Some(start) = start {
                    first = first.min(start);
                }
                if let Some(end) = end {
                    last_end = last_end.max(end);
                }
                if let Some(seen) = end.or(start) {
                    last_seen = last_seen.max(seen);
                }
                if entity.is_segment()
                    && let Some(end) = end
                {
                    index.segment_ends.push(end);
                }
                let (fault, error, throttle) = (
                    entity.flag("fault"),
                    entity.flag("error"),
                    entity.flag("throttle"),
                );
                index.throttled |= throttle;
                if crate::filter::is_service_node(&entity)
                    && let Some(name) = entity.name()
                {
                    match index.nodes.iter_mut().find(|n| n.name == name) {
                        Some(node) => {
                            node.fault |= fault;
                            node.error |= error;
                            node.throttle |= throttle;
                        }
                        None => index.nodes.push(NodeFlags {
                            name: name.to_owned(),
                            fault,
                            error,
                            throttle,
                        }),
                    }
                }
                if let Some(map) = entity.get("annotations").and_then(Value::as_object) {
                    for key in map.keys() {
                        if !index.annotation_keys.contains(key) {
                            index.annotation_keys.push(key.clone());
                        }
                    }
                }
            }
            index.root = crate::filter::root(self).map(|root| {
                let flag = |name: &str| root.flag(name);
                RootFacts {
                    duration: root.duration(),
                    status: root
                        .get("http")
                        .and_then(|h| h.get("response")?.get("status")?.as_f64()),
                    fault: flag("fault"),
                    error: flag("error"),
                }
            });
            if first.is_finite() {
                index.ended = last_end.is_finite().then_some((first, last_end));
                index.active = last_seen.is_finite().then_some((first, last_seen));
            }
            index
        })
    }

    /// The segment documents of the trace, each with its subsegments assembled, ordered by
    /// `start_time`.
    pub fn segments(&self) -> &[Value] {
        &self.segments
    }

    /// Independent subsegments whose parent has not arrived (yet), each with whatever was
    /// attached under it, ordered by `start_time`.
    pub fn orphans(&self) -> &[Value] {
        &self.orphans
    }

    /// Whether the trace looks finished: it has at least one segment, no entity is
    /// `in_progress`, and no subsegment is waiting for its parent.
    ///
    /// This is a heuristic: a downstream service's segment may still arrive later.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Every entity depth-first: each segment then its subsegments, then each orphan and its
    /// subsegments.
    pub fn entities(&self) -> Entities<'_> {
        let mut stack = Vec::new();
        for root in self.orphans.iter().rev() {
            stack.push(TraceEntity::root(root, true));
        }
        for root in self.segments.iter().rev() {
            stack.push(TraceEntity::root(root, false));
        }
        Entities { stack }
    }

    /// The first entity (in [`Trace::entities`] order) with this `name`.
    pub fn find(&self, name: &str) -> Option<TraceEntity<'_>> {
        self.entities().find(|e| e.name() == Some(name))
    }

    /// Every entity with this `name`.
    pub fn find_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = TraceEntity<'a>> + 'a {
        self.entities().filter(move |e| e.name() == Some(name))
    }

    /// The entity with this `id`.
    pub fn find_by_id(&self, id: &str) -> Option<TraceEntity<'_>> {
        self.entities().find(|e| e.id() == Some(id))
    }

    /// The segments that answered each call, by the calling subsegment's id (the segment's
    /// `parent_id`).
    pub(crate) fn answering(&self) -> HashMap<&str, Vec<TraceEntity<'_>>> {
        let mut answered: HashMap<&str, Vec<TraceEntity<'_>>> = HashMap::new();
        for segment in self.entities().filter(TraceEntity::is_segment) {
            if let Some(parent) = segment.get("parent_id").and_then(Value::as_str) {
                answered.entry(parent).or_default().push(segment);
            }
        }
        answered
    }
}

// ===== impl Serialize, Deserialize for Trace =====

/// Where trees are cut: the deepest nesting of objects and arrays in the JSON of a trace,
/// counting one array around it (`GET /traces`), unless one entity's own fields go deeper.
/// Well under serde_json's default limit, with room left for a consumer that puts an answer
/// inside something of its own.
const MAX_NESTING: usize = 100;
/// The most levels serde_json's `from_str` takes (`remaining_depth` starts at 128 and an error
/// is raised when it reaches 0); Python's `json` takes about 990.
const PARSER_LIMIT: usize = 127;
/// The level of the entities of `segments` and `orphans`: inside the array of traces, the
/// trace, and the list.
const ROOT_LEVEL: usize = 4;
/// The level of the entities of an entry of `continued`: inside the array of traces, the
/// trace, `continued`, the entry, and its `subsegments`.
const CONTINUED_LEVEL: usize = 6;

// Whatever the tree, every answer parses: an entity is written inline only where it stays
// within `MAX_NESTING`, else in `continued`, and the intake refuses an entity whose own fields
// nest deeper than `MAX_ENTITY_NESTING`, so even such an entity stays within the parser's
// limit in a root list or in `continued`.
const _: () = assert!(CONTINUED_LEVEL - 1 + intake::MAX_ENTITY_NESTING <= PARSER_LIMIT);
const _: () = assert!(ROOT_LEVEL - 1 + intake::MAX_ENTITY_NESTING <= PARSER_LIMIT);
const _: () = assert!(MAX_NESTING <= PARSER_LIMIT);

/// The list an entry of `continued` continues in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
enum Within {
    List(List),
    /// An earlier entry of `continued`.
    Continued(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum List {
    Segments,
    Orphans,
}

/// Subsegments listed apart from their parent, which is written without them.
#[derive(Debug)]
struct Cut<'a> {
    within: Within,
    path: Vec<usize>,
    subsegments: &'a [Value],
}

/// Where a trace is cut so that its JSON nests at most [`MAX_NESTING`] levels: the entities
/// written without their `subsegments` (by address: they are borrowed from the trace for the
/// time of one serialization) and the entries of `continued`.
#[derive(Debug)]
struct Plan<'a> {
    cut: HashSet<*const Value>,
    continued: Vec<Cut<'a>>,
}

impl<'a> Plan<'a> {
    fn new(segments: &'a [Value], orphans: &'a [Value]) -> Plan<'a> {
        let mut plan = Plan {
            cut: HashSet::new(),
            continued: Vec::new(),
        };
        plan.walk(Within::List(List::Segments), segments, ROOT_LEVEL);
        plan.walk(Within::List(List::Orphans), orphans, ROOT_LEVEL);
        // Entries added while walking entry `next` come after it: an entry always continues
        // an earlier one, which is what lets a reader put them back from the last.
        let mut next = 0;
        while let Some(subsegments) = plan.continued.get(next).map(|c| c.subsegments) {
            plan.walk(Within::Continued(next), subsegments, CONTINUED_LEVEL);
            next += 1;
        }
        plan
    }

    /// Walks the entities of one list, whose objects are at `level`, and cuts off the
    /// subsegments of every entity whose children would reach past [`MAX_NESTING`].
    fn walk(&mut self, within: Within, list: &'a [Value], level: usize) {
        // Depth-first without recursion: each frame is a list of siblings, the index of the
        // next one and the level of their objects; `path` holds the index of each frame's
        // parent, so that only a cut copies it.
        let mut frames: Vec<(&'a [Value], usize, usize)> = vec![(list, 0, level)];
        let mut path: Vec<usize> = Vec::new();
        while let Some(frame) = frames.last_mut() {
            let (siblings, i, level) = *frame;
            let Some(doc) = siblings.get(i) else {
                frames.pop();
                path.pop();
                continue;
            };
            frame.1 += 1;
            let Some(children) = doc.get("subsegments").and_then(Value::as_array) else {
                continue;
            };
            // The array is at `level + 1`; a child's object at `level + 2` and its deepest
            // field `entity_nesting - 1` below that.
            let fits = children
                .iter()
                .all(|child| level + 1 + intake::entity_nesting(child) <= MAX_NESTING);
            if fits {
                path.push(i);
                frames.push((children, 0, level + 2));
            } else {
                self.cut.insert(std::ptr::from_ref(doc));
                let mut at = path.clone();
                at.push(i);
                self.continued.push(Cut {
                    within,
                    path: at,
                    subsegments: children,
                });
            }
        }
    }
}

/// A list of entities as the plan writes them.
struct Entries<'p, 'a> {
    list: &'a [Value],
    plan: &'p Plan<'a>,
}

impl Serialize for Entries<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.list.len()))?;
        for doc in self.list {
            seq.serialize_element(&Shown {
                doc,
                plan: self.plan,
            })?;
        }
        seq.end()
    }
}

/// One entity as the plan writes it: as it is, its `subsegments` written the same way or, if
/// cut, left out.
struct Shown<'p, 'a> {
    doc: &'a Value,
    plan: &'p Plan<'a>,
}

impl Serialize for Shown<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Value::Object(map) = self.doc else {
            return self.doc.serialize(serializer);
        };
        let cut = self.plan.cut.contains(&std::ptr::from_ref(self.doc));
        let len = map.len() - usize::from(cut && map.contains_key("subsegments"));
        let mut out = serializer.serialize_map(Some(len))?;
        for (key, value) in map {
            match value {
                Value::Array(list) if key == "subsegments" => {
                    if !cut {
                        out.serialize_entry(
                            key,
                            &Entries {
                                list,
                                plan: self.plan,
                            },
                        )?;
                    }
                }
                _ => out.serialize_entry(key, value)?,
            }
        }
        out.end()
    }
}

/// An entry of `continued` as written.
struct ShownCut<'p, 'a> {
    cut: &'p Cut<'a>,
    plan: &'p Plan<'a>,
}

impl Serialize for ShownCut<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("Continued", 3)?;
        out.serialize_field("in", &self.cut.within)?;
        out.serialize_field("path", &self.cut.path)?;
        out.serialize_field(
            "subsegments",
            &Entries {
                list: self.cut.subsegments,
                plan: self.plan,
            },
        )?;
        out.end()
    }
}

struct AllCuts<'p, 'a>(&'p Plan<'a>);

impl Serialize for AllCuts<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.continued.len()))?;
        for cut in &self.0.continued {
            seq.serialize_element(&ShownCut { cut, plan: self.0 })?;
        }
        seq.end()
    }
}

impl Serialize for Trace {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let plan = Plan::new(&self.segments, &self.orphans);
        let fields =
            3 + usize::from(!self.orphans.is_empty()) + usize::from(!plan.continued.is_empty());
        let mut out = serializer.serialize_struct("Trace", fields)?;
        out.serialize_field("trace_id", &self.trace_id)?;
        out.serialize_field("complete", &self.complete)?;
        out.serialize_field(
            "segments",
            &Entries {
                list: &self.segments,
                plan: &plan,
            },
        )?;
        if self.orphans.is_empty() {
            out.skip_field("orphans")?;
        } else {
            out.serialize_field(
                "orphans",
                &Entries {
                    list: &self.orphans,
                    plan: &plan,
                },
            )?;
        }
        if plan.continued.is_empty() {
            out.skip_field("continued")?;
        } else {
            out.serialize_field("continued", &AllCuts(&plan))?;
        }
        out.end()
    }
}

/// A trace as written, before the entries of `continued` are put back.
#[derive(Deserialize)]
struct WireTrace {
    trace_id: TraceId,
    complete: bool,
    segments: Vec<Value>,
    #[serde(default)]
    orphans: Vec<Value>,
    #[serde(default)]
    continued: Vec<WireCut>,
}

#[derive(Deserialize)]
struct WireCut {
    #[serde(rename = "in")]
    within: Within,
    path: Vec<usize>,
    subsegments: Vec<Value>,
}

impl<'de> Deserialize<'de> for Trace {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        WireTrace::deserialize(deserializer)?
            .rejoin()
            .map_err(serde::de::Error::custom)
    }
}

impl WireTrace {
    /// Puts every entry of `continued` back under its entity, from the last: each continues
    /// a list written before it, so the paths are still those written.
    fn rejoin(self) -> Result<Trace, String> {
        let WireTrace {
            trace_id,
            complete,
            mut segments,
            mut orphans,
            mut continued,
        } = self;
        for k in (0..continued.len()).rev() {
            let Some(entry) = continued.get_mut(k) else {
                continue;
            };
            let within = entry.within;
            let path = std::mem::take(&mut entry.path);
            let subsegments = std::mem::take(&mut entry.subsegments);
            let list: &mut [Value] = match within {
                Within::List(List::Segments) => segments.as_mut_slice(),
                Within::List(List::Orphans) => orphans.as_mut_slice(),
                Within::Continued(j) if j < k => continued
                    .get_mut(j)
                    .map(|earlier| earlier.subsegments.as_mut_slice())
                    .unwrap_or_default(),
                Within::Continued(j) => {
                    return Err(format!(
                        "continued[{k}] is in continued[{j}], which is not an earlier entry"
                    ));
                }
            };
            let entity = entity_at(list, &path)
                .ok_or_else(|| format!("continued[{k}]: no entity at path {path:?}"))?;
            if entity
                .insert("subsegments".to_owned(), Value::Array(subsegments))
                .is_some()
            {
                return Err(format!(
                    "continued[{k}]: the entity at path {path:?} has subsegments already"
                ));
            }
        }
        Ok(Trace {
            trace_id,
            complete,
            segments,
            orphans,
            index: OnceLock::new(),
        })
    }
}

/// The entity at `path`: an index into `list`, then into each `subsegments` down.
fn entity_at<'v>(list: &'v mut [Value], path: &[usize]) -> Option<&'v mut Map<String, Value>> {
    let (first, rest) = path.split_first()?;
    let mut node = list.get_mut(*first)?;
    for &i in rest {
        node = node.get_mut("subsegments")?.as_array_mut()?.get_mut(i)?;
    }
    node.as_object_mut()
}

/// One segment or subsegment inside a [`Trace`], with where it sits.
///
/// # Examples
///
/// ```
/// use serde_json::json;
///
/// let traces = xray_local::assemble([json!({
///     "name": "api", "id": "70de5b6f19ff9a0a", "start_time": 1.0, "end_time": 2.0,
///     "trace_id": "1-581cf771-a006649127e371903a2de979",
///     "subsegments": [{"name": "db", "id": "70de5b6f19ff9a0b", "start_time": 1.2,
///                      "end_time": 1.5, "annotations": {"table": "orders"}}],
/// })])?;
/// let db = traces[0].find("db").unwrap();
/// assert_eq!(db.depth(), 1);
/// assert_eq!(db.duration(), Some(0.3).map(|d: f64| (d * 1e6).round() / 1e6));
/// assert_eq!(db.annotation("table").and_then(|v| v.as_str()), Some("orders"));
/// assert!(!db.is_segment());
/// # Ok::<(), xray_local::DocumentError>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TraceEntity<'a> {
    doc: &'a Value,
    parent: Option<&'a Value>,
    root: &'a Value,
    depth: usize,
    orphan: bool,
}

impl<'a> TraceEntity<'a> {
    fn root(doc: &'a Value, orphan: bool) -> Self {
        TraceEntity {
            doc,
            parent: None,
            root: doc,
            depth: 0,
            orphan,
        }
    }

    /// The entity's document (its `subsegments` included).
    pub fn doc(&self) -> &'a Value {
        self.doc
    }

    /// A field of the document.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.doc.get(key)
    }

    /// `name`, when it is a string.
    pub fn name(&self) -> Option<&'a str> {
        self.doc.get("name").and_then(Value::as_str)
    }

    /// `id`, when it is a string.
    pub fn id(&self) -> Option<&'a str> {
        self.doc.get("id").and_then(Value::as_str)
    }

    /// The entity this one is nested in, or `None` for a segment or an orphan.
    pub fn parent(&self) -> Option<TraceEntity<'a>> {
        self.parent.map(|doc| TraceEntity {
            doc,
            parent: None,
            root: self.root,
            depth: self.depth.saturating_sub(1),
            orphan: self.orphan,
        })
    }

    /// The `id` of the parent: the enclosing entity's, else the document's own `parent_id`
    /// (for a segment: the caller's subsegment in another service).
    pub fn parent_id(&self) -> Option<&'a str> {
        match self.parent {
            Some(parent) => parent.get("id").and_then(Value::as_str),
            None => self.doc.get("parent_id").and_then(Value::as_str),
        }
    }

    /// The top-level document this entity is in (a segment, or an orphan subsegment).
    pub fn root_doc(&self) -> &'a Value {
        self.root
    }

    /// 0 for a segment or an orphan, 1 for their direct subsegments, and so on.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Whether this entity is a segment (a root that is not an orphan subsegment).
    pub fn is_segment(&self) -> bool {
        self.depth == 0 && !self.orphan
    }

    /// Whether this entity is a call to an AWS service or a remote one: a subsegment in the
    /// `aws` or `remote` namespace.
    pub(crate) fn is_call(&self) -> bool {
        !self.is_segment()
            && matches!(
                self.get("namespace").and_then(Value::as_str),
                Some("aws" | "remote")
            )
    }

    /// Whether the entity's boolean field `name` (`fault`, `error`, `throttle`) is true.
    pub(crate) fn flag(&self, name: &str) -> bool {
        self.get(name).and_then(Value::as_bool) == Some(true)
    }

    /// Whether this entity is, or is inside, a subsegment whose parent has not arrived.
    pub fn is_orphaned(&self) -> bool {
        self.orphan
    }

    /// `start_time` in epoch seconds.
    pub fn start_time(&self) -> Option<f64> {
        self.doc.get("start_time").and_then(Value::as_f64)
    }

    /// `end_time` in epoch seconds; `None` while in progress.
    pub fn end_time(&self) -> Option<f64> {
        self.doc.get("end_time").and_then(Value::as_f64)
    }

    /// `end_time - start_time` in seconds, when both are there.
    pub fn duration(&self) -> Option<f64> {
        let d = self.end_time()? - self.start_time()?;
        // Round to microseconds: the wire precision, and it hides f64 noise in comparisons.
        Some((d * 1e6).round() / 1e6)
    }

    /// Whether the document says `"in_progress": true`.
    pub fn is_in_progress(&self) -> bool {
        self.doc.as_object().is_some_and(intake::is_in_progress)
    }

    /// The annotation with this key.
    pub fn annotation(&self, key: &str) -> Option<&'a Value> {
        self.doc.get("annotations").and_then(|a| a.get(key))
    }

    /// The direct subsegments of this entity.
    pub fn subsegments(&self) -> impl Iterator<Item = TraceEntity<'a>> + 'a {
        let parent = *self;
        subsegments_of(self.doc)
            .iter()
            .map(move |doc| parent.child(doc))
    }

    fn child(&self, doc: &'a Value) -> TraceEntity<'a> {
        TraceEntity {
            doc,
            parent: Some(self.doc),
            root: self.root,
            depth: self.depth + 1,
            orphan: self.orphan,
        }
    }
}

fn subsegments_of(doc: &Value) -> &[Value] {
    doc.get("subsegments")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Iterator over the entities of a [`Trace`], depth-first; see [`Trace::entities`].
///
/// # Examples
///
/// ```
/// use serde_json::json;
///
/// let traces = xray_local::assemble([json!({
///     "name": "api", "id": "70de5b6f19ff9a0a", "start_time": 1.0, "end_time": 2.0,
///     "trace_id": "1-581cf771-a006649127e371903a2de979",
///     "subsegments": [{"name": "db", "id": "70de5b6f19ff9a0b", "start_time": 1.2,
///                      "end_time": 1.5, "fault": true}],
/// })])?;
/// let faulted: Vec<_> = traces[0]
///     .entities()
///     .filter(|e| e.get("fault") == Some(&json!(true)))
///     .filter_map(|e| e.name())
///     .collect();
/// assert_eq!(faulted, ["db"]);
/// # Ok::<(), xray_local::DocumentError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Entities<'a> {
    stack: Vec<TraceEntity<'a>>,
}

impl<'a> Iterator for Entities<'a> {
    type Item = TraceEntity<'a>;

    fn next(&mut self) -> Option<TraceEntity<'a>> {
        let entity = self.stack.pop()?;
        for doc in subsegments_of(entity.doc).iter().rev() {
            self.stack.push(entity.child(doc));
        }
        Some(entity)
    }
}

/// A document given to [`assemble`] is not a valid segment document.
///
/// # Examples
///
/// ```
/// let err = xray_local::assemble([serde_json::json!([1, 2])]).unwrap_err();
/// assert_eq!(err.index(), 0);
/// assert_eq!(err.reason(), xray_local::DropReason::NotAnObject);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("document {index} is not a valid segment document: {reason}")]
#[non_exhaustive]
pub struct DocumentError {
    index: usize,
    reason: DropReason,
}

impl DocumentError {
    /// The position of the document in the input.
    pub fn index(&self) -> usize {
        self.index
    }

    /// What is wrong with it.
    pub fn reason(&self) -> DropReason {
        self.reason
    }
}

/// Assembles documents (segments, independent subsegments, in-progress fragments, in any
/// order) into traces, as the daemon does with what it receives.
///
/// Traces come back in the order their first document appears.
///
/// # Errors
///
/// [`DocumentError`] names the first document that lacks a valid `name`, `id`, `trace_id`,
/// `start_time` or (for `"type": "subsegment"`) `parent_id`.
///
/// # Examples
///
/// ```
/// use serde_json::json;
///
/// let trace_id = "1-581cf771-a006649127e371903a2de979";
/// let traces = xray_local::assemble([
///     json!({"name": "api", "id": "70de5b6f19ff9a0a", "trace_id": trace_id,
///            "start_time": 1.0, "in_progress": true}),
///     json!({"name": "api", "id": "70de5b6f19ff9a0a", "trace_id": trace_id,
///            "start_time": 1.0, "end_time": 2.0}),
/// ])?;
/// assert_eq!(traces.len(), 1);
/// assert!(traces[0].is_complete());
/// # Ok::<(), xray_local::DocumentError>(())
/// ```
pub fn assemble<I>(documents: I) -> Result<Vec<Trace>, DocumentError>
where
    I: IntoIterator<Item = Value>,
{
    let mut order = Vec::new();
    let mut by_trace: HashMap<TraceId, Pieces> = HashMap::new();
    for (index, value) in documents.into_iter().enumerate() {
        let doc = intake::validate(value).map_err(|reason| DocumentError { index, reason })?;
        let trace_id = doc.trace_id;
        by_trace
            .entry(trace_id)
            .or_insert_with(|| {
                order.push(trace_id);
                Pieces::default()
            })
            .insert(doc, 0);
    }
    Ok(order
        .into_iter()
        .filter_map(|id| by_trace.get(&id).map(|p| p.build(id)))
        .collect())
}

// ===== impl Pieces =====

/// The documents received for one trace, one per entity id, in arrival order.
///
/// Beside them it keeps what tells, without assembling, that the trace cannot be complete
/// yet: whether a segment came, how many pieces hold an entity in progress, and how many
/// pieces wait for a parent no piece holds. Keeping these costs each insert a few hash
/// operations; assembling costs the whole trace, so the store assembles only a trace that
/// [`may be complete`](Self::may_be_complete).
#[derive(Debug, Default)]
pub(crate) struct Pieces {
    docs: Vec<Stored>,
    by_id: HashMap<String, usize>,
    /// Pieces without a parent: segments.
    segments: usize,
    /// Entities in progress that no completed version of the same id supersedes.
    in_progress: HashSet<String>,
    /// Entities seen completed.
    completed: HashSet<String>,
    /// The id of every entity inside every piece.
    known: HashSet<String>,
    /// Parent id -> pieces waiting for it (ids no piece holds yet).
    waiting: HashMap<String, usize>,
    /// Pieces waiting for a parent: the sum of `waiting`.
    missing: usize,
}

/// A stored document and the size of the datagram that carried it.
#[derive(Debug)]
struct Stored {
    document: Document,
    size: usize,
}

/// What [`Pieces::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inserted {
    /// A new entity.
    New,
    /// Replaced the earlier document with the same id; carries the old size.
    Replaced(usize),
    /// An in-progress fragment that arrived after its completed version: ignored.
    Stale,
}

impl Pieces {
    /// Adds a document. A completed document replaces the in-progress fragment with the same
    /// id; a fragment arriving after the completed version is ignored.
    pub(crate) fn insert(&mut self, document: Document, size: usize) -> Inserted {
        if let Some(slot) = self
            .by_id
            .get(&document.id)
            .and_then(|&i| self.docs.get_mut(i))
        {
            if document.in_progress && !slot.document.in_progress {
                return Inserted::Stale;
            }
            let old = slot.size;
            *slot = Stored { document, size };
            // Rare (an in-progress fragment completed): count everything again.
            self.recount();
            return Inserted::Replaced(old);
        }
        self.count(&document);
        self.by_id.insert(document.id.clone(), self.docs.len());
        self.docs.push(Stored { document, size });
        Inserted::New
    }

    /// False when the trace is certainly not complete: no segment, an entity in progress, or
    /// a piece whose parent no piece holds. True means [`build`](Self::build) decides.
    pub(crate) fn may_be_complete(&self) -> bool {
        self.segments > 0 && self.in_progress.is_empty() && self.missing == 0
    }

    /// Adds one new piece to the counts.
    fn count(&mut self, document: &Document) {
        // Generous where unsure: a completed entity supersedes an in-progress one of the same
        // id wherever each sits, so this never rules out a trace that assembly finds complete.
        let mut stack = vec![&document.value];
        while let Some(doc) = stack.pop() {
            if let Some(id) = doc.get("id").and_then(Value::as_str) {
                if doc.as_object().is_some_and(intake::is_in_progress) {
                    if !self.completed.contains(id) {
                        self.in_progress.insert(id.to_owned());
                    }
                } else {
                    self.in_progress.remove(id);
                    self.completed.insert(id.to_owned());
                }
                if self.known.insert(id.to_owned())
                    && let Some(n) = self.waiting.remove(id)
                {
                    self.missing -= n;
                }
            }
            stack.extend(subsegments_of(doc));
        }
        match &document.parent_id {
            None => self.segments += 1,
            Some(parent) if !self.known.contains(parent) => {
                *self.waiting.entry(parent.clone()).or_default() += 1;
                self.missing += 1;
            }
            Some(_) => {}
        }
    }

    fn recount(&mut self) {
        self.segments = 0;
        self.in_progress.clear();
        self.completed.clear();
        self.known.clear();
        self.waiting.clear();
        self.missing = 0;
        let docs = std::mem::take(&mut self.docs);
        for d in &docs {
            self.count(&d.document);
        }
        self.docs = docs;
    }

    /// Assembles the pieces into a [`Trace`].
    pub(crate) fn build(&self, trace_id: TraceId) -> Trace {
        let (segments, orphans) = assemble_pieces(&self.docs);
        let complete =
            !segments.is_empty() && orphans.is_empty() && !segments.iter().any(has_in_progress);
        Trace {
            trace_id,
            complete,
            segments,
            orphans,
            index: OnceLock::new(),
        }
    }
}

fn has_in_progress(root: &Value) -> bool {
    let mut stack = vec![root];
    while let Some(doc) = stack.pop() {
        if doc.as_object().is_some_and(intake::is_in_progress) {
            return true;
        }
        stack.extend(subsegments_of(doc));
    }
    false
}

fn start_time(doc: &Value) -> f64 {
    doc.get("start_time").and_then(Value::as_f64).unwrap_or(0.0)
}

fn sort_by_start(docs: &mut [Value]) {
    docs.sort_by(|a, b| start_time(a).total_cmp(&start_time(b)));
}

/// Builds the segment trees, then the trees of the pieces whose parent never showed up.
fn assemble_pieces(pieces: &[Stored]) -> (Vec<Value>, Vec<Value>) {
    let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, piece) in pieces.iter().enumerate() {
        if let Some(parent) = &piece.document.parent_id {
            children.entry(parent.as_str()).or_default().push(i);
        }
    }
    let mut ctx = Attach {
        pieces,
        children,
        used: vec![false; pieces.len()],
    };

    let mut segments = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        if piece.document.parent_id.is_none() {
            segments.push(ctx.build(i, 0));
        }
    }

    // Orphan roots are the unattached pieces whose parent is not inside another unattached
    // piece; a cycle of pieces has no such root, so whatever is left is then taken as is.
    let mut unattached_ids = HashSet::new();
    for (i, piece) in pieces.iter().enumerate() {
        if !ctx.is_used(i) {
            collect_ids(&piece.document.value, &mut unattached_ids);
        }
    }
    let mut orphans = Vec::new();
    for strict in [true, false] {
        for (i, piece) in pieces.iter().enumerate() {
            let parent_unattached = piece
                .document
                .parent_id
                .as_deref()
                .is_some_and(|p| unattached_ids.contains(p));
            if !ctx.is_used(i) && (!strict || !parent_unattached) {
                orphans.push(ctx.build(i, 0));
            }
        }
    }
    sort_by_start(&mut segments);
    sort_by_start(&mut orphans);
    (segments, orphans)
}

fn collect_ids<'a>(root: &'a Value, ids: &mut HashSet<&'a str>) {
    let mut stack = vec![root];
    while let Some(doc) = stack.pop() {
        if let Some(id) = doc.get("id").and_then(Value::as_str) {
            ids.insert(id);
        }
        stack.extend(subsegments_of(doc));
    }
}

struct Attach<'a> {
    pieces: &'a [Stored],
    children: HashMap<&'a str, Vec<usize>>,
    used: Vec<bool>,
}

impl Attach<'_> {
    fn is_used(&self, i: usize) -> bool {
        self.used.get(i).copied().unwrap_or(true)
    }

    /// Clones piece `i` and attaches its descendants.
    fn build(&mut self, i: usize, depth: usize) -> Value {
        if let Some(used) = self.used.get_mut(i) {
            *used = true;
        }
        let mut value = self
            .pieces
            .get(i)
            .map_or(Value::Null, |p| p.document.value.clone());
        self.attach(&mut value, depth);
        value
    }

    /// Puts the pieces whose `parent_id` is this node's id into its `subsegments` (replacing an
    /// embedded entry with the same id, which is how a streamed or in-progress child gets its
    /// final version), then does the same for every child.
    fn attach(&mut self, node: &mut Value, depth: usize) {
        let Value::Object(map) = node else {
            return;
        };
        let kids: Vec<usize> = match map.get("id").and_then(Value::as_str) {
            Some(id) if depth < MAX_ATTACH_DEPTH => self
                .children
                .get(id)
                .map(|kids| kids.iter().copied().filter(|&k| !self.is_used(k)).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        if !kids.is_empty() {
            let subs = map
                .entry("subsegments")
                .or_insert_with(|| Value::Array(Vec::new()));
            if !subs.is_array() {
                *subs = Value::Array(Vec::new());
            }
            if let Value::Array(arr) = subs {
                // The embedded entries by id, looked up once each: a node with thousands of
                // pieces under it is attached in linear time.
                let embedded: HashMap<String, usize> = arr
                    .iter()
                    .enumerate()
                    .filter_map(|(i, c)| Some((c.get("id")?.as_str()?.to_owned(), i)))
                    .collect();
                for k in kids {
                    if let Some(used) = self.used.get_mut(k) {
                        *used = true;
                    }
                    let Some(piece) = self.pieces.get(k) else {
                        continue;
                    };
                    let child = piece.document.value.clone();
                    match embedded
                        .get(piece.document.id.as_str())
                        .and_then(|&i| arr.get_mut(i))
                    {
                        Some(slot) => *slot = child,
                        None => arr.push(child),
                    }
                }
                sort_by_start(arr);
            }
        }
        if let Some(Value::Array(arr)) = map.get_mut("subsegments") {
            for child in arr {
                self.attach(child, depth + 1);
            }
        }
    }
}
