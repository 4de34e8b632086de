//! The service map: which services call which, how often, how well and how fast.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::trace::{Trace, TraceEntity};

/// Services and the calls between them, built from traces as the X-Ray console's service map.
///
/// Nodes are the services that sent segments (named after the segment) and the downstream
/// resources they called: a subsegment in the `aws` namespace becomes a node named after the
/// subsegment (for example `DynamoDB`), one in the `remote` namespace a node named after the
/// subsegment (the SDKs name it after the host). When a segment's `parent_id` is such a
/// subsegment in another service's segment, the call links the two services (`A -> B`) and no
/// separate node is made for the subsegment. The statistics of an edge are those of the
/// caller's subsegment (what the caller saw); those of a node are those of its segments, or of
/// the subsegments that stand for it.
///
/// # Examples
///
/// ```
/// use serde_json::json;
/// use xray_local::ServiceMap;
///
/// let traces = xray_local::assemble([json!({
///     "name": "api", "id": "70de5b6f19ff9a0a", "start_time": 1.0, "end_time": 1.5,
///     "trace_id": "1-581cf771-a006649127e371903a2de979",
///     "subsegments": [{"name": "DynamoDB", "id": "70de5b6f19ff9a0b", "namespace": "aws",
///                      "start_time": 1.1, "end_time": 1.2, "fault": true}],
/// })])?;
/// let map = ServiceMap::from_traces(&traces);
/// let edge = &map.edges()[0];
/// assert_eq!((edge.from(), edge.to()), ("api", "DynamoDB"));
/// assert_eq!(edge.stats().requests(), 1);
/// assert_eq!(edge.stats().fault_rate(), 1.0);
/// # Ok::<(), xray_local::DocumentError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServiceMap {
    nodes: Vec<MapNode>,
    edges: Vec<MapEdge>,
}

/// A node of a [`ServiceMap`].
///
/// # Examples
///
/// ```
/// # use serde_json::json;
/// # let traces = xray_local::assemble([json!({
/// #     "name": "api", "id": "70de5b6f19ff9a0a", "start_time": 1.0, "end_time": 1.5,
/// #     "trace_id": "1-581cf771-a006649127e371903a2de979"})])?;
/// let map = xray_local::ServiceMap::from_traces(&traces);
/// assert_eq!(map.nodes()[0].name(), "api");
/// assert_eq!(map.nodes()[0].kind(), "service");
/// # Ok::<(), xray_local::DocumentError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapNode {
    name: String,
    kind: String,
    #[serde(flatten)]
    stats: CallStats,
    #[serde(skip)]
    histogram: Histogram,
}

/// An edge (caller to callee) of a [`ServiceMap`].
///
/// # Examples
///
/// ```
/// # use serde_json::json;
/// # let traces = xray_local::assemble([json!({
/// #     "name": "api", "id": "70de5b6f19ff9a0a", "start_time": 1.0, "end_time": 1.5,
/// #     "trace_id": "1-581cf771-a006649127e371903a2de979",
/// #     "subsegments": [{"name": "S3", "id": "70de5b6f19ff9a0b", "namespace": "aws",
/// #                      "start_time": 1.1, "end_time": 1.2}]})])?;
/// let map = xray_local::ServiceMap::from_traces(&traces);
/// assert_eq!(map.edges()[0].to(), "S3");
/// # Ok::<(), xray_local::DocumentError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapEdge {
    from: String,
    to: String,
    #[serde(flatten)]
    stats: CallStats,
    #[serde(skip)]
    histogram: Histogram,
}

/// How many requests took each duration, to the millisecond: the read API's
/// `ResponseTimeHistogram` and `DurationHistogram`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Histogram(BTreeMap<u64, u64>);

impl Histogram {
    fn add(&mut self, entity: &TraceEntity<'_>) {
        if let Some(seconds) = entity.duration().filter(|d| d.is_finite() && *d >= 0.0) {
            *self.0.entry((seconds * 1000.0).round() as u64).or_default() += 1;
        }
    }

    /// `(seconds, count)` by duration.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.0.iter().map(|(&ms, &n)| (ms as f64 / 1000.0, n))
    }
}

/// Request count, error / throttle / fault counts and total time of a node or an edge.
///
/// # Examples
///
/// ```
/// let stats = xray_local::CallStats::default();
/// assert_eq!(stats.requests(), 0);
/// assert_eq!(stats.error_rate(), 0.0);
/// assert_eq!(stats.average_latency(), None);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CallStats {
    requests: u64,
    errors: u64,
    throttles: u64,
    faults: u64,
    /// Requests that had both a start and an end time.
    timed: u64,
    total_seconds: f64,
}

impl CallStats {
    /// Requests counted.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Requests with `error` (client errors, 4xx).
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// Requests with `throttle` (429).
    pub fn throttles(&self) -> u64 {
        self.throttles
    }

    /// Requests with `fault` (server errors, 5xx).
    pub fn faults(&self) -> u64 {
        self.faults
    }

    /// `errors / requests`, 0 when there were none.
    pub fn error_rate(&self) -> f64 {
        rate(self.errors, self.requests)
    }

    /// `faults / requests`, 0 when there were none.
    pub fn fault_rate(&self) -> f64 {
        rate(self.faults, self.requests)
    }

    /// Mean duration in seconds of the requests that finished.
    pub fn average_latency(&self) -> Option<f64> {
        (self.timed > 0).then(|| self.total_seconds / self.timed as f64)
    }

    /// Seconds over the requests that had both a start and an end time.
    pub(crate) fn total_seconds(&self) -> f64 {
        self.total_seconds
    }

    fn add(&mut self, entity: &TraceEntity<'_>) {
        let flag = |name: &str| u64::from(entity.get(name).and_then(Value::as_bool) == Some(true));
        self.requests += 1;
        self.errors += flag("error");
        self.throttles += flag("throttle");
        self.faults += flag("fault");
        if let Some(d) = entity.duration() {
            self.timed += 1;
            self.total_seconds += d;
        }
    }
}

fn rate(n: u64, of: u64) -> f64 {
    if of == 0 { 0.0 } else { n as f64 / of as f64 }
}

impl MapNode {
    /// The service or resource name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `service` for a node made from segments (or the segment's `origin`, such as
    /// `AWS::EC2::Instance`, when it has one), `aws` or `remote` for a downstream resource.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The node's statistics.
    pub fn stats(&self) -> &CallStats {
        &self.stats
    }

    pub(crate) fn histogram(&self) -> &Histogram {
        &self.histogram
    }
}

impl MapEdge {
    /// The caller.
    pub fn from(&self) -> &str {
        &self.from
    }

    /// The callee.
    pub fn to(&self) -> &str {
        &self.to
    }

    /// The calls' statistics, as the caller saw them.
    pub fn stats(&self) -> &CallStats {
        &self.stats
    }

    pub(crate) fn histogram(&self) -> &Histogram {
        &self.histogram
    }
}

impl ServiceMap {
    /// Builds the map of these traces (a slice of them, or any iterator over traces or
    /// references to them: each is read once and may be dropped after). Nodes and edges are
    /// ordered by name.
    pub fn from_traces<T: Borrow<Trace>>(traces: impl IntoIterator<Item = T>) -> ServiceMap {
        let mut nodes: BTreeMap<String, MapNode> = BTreeMap::new();
        let mut edges: BTreeMap<(String, String), (CallStats, Histogram)> = BTreeMap::new();
        for trace in traces {
            let trace: &Trace = trace.borrow();
            // Segments by the id of the subsegment that called them.
            let called = trace.answering();
            for entity in trace.entities() {
                if entity.is_segment() {
                    let Some(name) = entity.name() else { continue };
                    let kind = entity
                        .get("origin")
                        .and_then(Value::as_str)
                        .unwrap_or("service");
                    node(&mut nodes, name, kind).add(&entity);
                    continue;
                }
                let Some(namespace @ ("aws" | "remote")) =
                    entity.get("namespace").and_then(Value::as_str)
                else {
                    continue;
                };
                // The caller is the service whose segment holds this subsegment; orphan
                // subsegments have no known caller.
                if entity.is_orphaned() {
                    continue;
                }
                let Some(caller) = entity.root_doc().get("name").and_then(Value::as_str) else {
                    continue;
                };
                let callees: Vec<&str> = match entity.id().and_then(|id| called.get(id)) {
                    Some(segments) => segments.iter().filter_map(|s| s.name()).collect(),
                    None => {
                        let Some(name) = entity.name() else { continue };
                        node(&mut nodes, name, namespace).add(&entity);
                        vec![name]
                    }
                };
                for callee in callees {
                    let (stats, histogram) = edges
                        .entry((caller.to_owned(), callee.to_owned()))
                        .or_default();
                    stats.add(&entity);
                    histogram.add(&entity);
                }
            }
        }
        ServiceMap {
            nodes: nodes.into_values().collect(),
            edges: edges
                .into_iter()
                .map(|((from, to), (stats, histogram))| MapEdge {
                    from,
                    to,
                    stats,
                    histogram,
                })
                .collect(),
        }
    }

    /// The nodes, by name.
    pub fn nodes(&self) -> &[MapNode] {
        &self.nodes
    }

    /// The edges, by caller then callee.
    pub fn edges(&self) -> &[MapEdge] {
        &self.edges
    }
}

fn node<'a>(nodes: &'a mut BTreeMap<String, MapNode>, name: &str, kind: &str) -> &'a mut MapNode {
    nodes.entry(name.to_owned()).or_insert_with(|| MapNode {
        name: name.to_owned(),
        kind: kind.to_owned(),
        stats: CallStats::default(),
        histogram: Histogram::default(),
    })
}

impl MapNode {
    fn add(&mut self, entity: &TraceEntity<'_>) {
        self.stats.add(entity);
        self.histogram.add(entity);
    }
}
