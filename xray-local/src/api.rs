//! The read operations of the X-Ray API, at the service's paths and in its shapes:
//! `GetTraceSummaries` (`POST /TraceSummaries`), `BatchGetTraces` (`POST /Traces`),
//! `GetServiceGraph` (`POST /ServiceGraph`) and `GetTraceGraph` (`POST /TraceGraph`). A script
//! written for X-Ray (the AWS CLI, boto3, aws-sdk-xray) reads from xray-local unchanged but for
//! its endpoint.
//!
//! Computed from the traces held, as the X-Ray API reference describes each field: the root
//! segment is the one without a `parent_id`; a summary's fault and error flags are the root's,
//! its throttle flag any segment's.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use xray_sdk::TraceId;

use crate::filter::{Filter, node_type, root, trace_duration};
use crate::map::{CallStats, Histogram, ServiceMap};
use crate::sampling::ApiError;
use crate::store::Store;
use crate::trace::{Trace, TraceEntity};

/// Summaries in one page of `GetTraceSummaries`.
pub(crate) const SUMMARIES_PER_PAGE: usize = 100;

/// The most summaries a page holds when the request asks for more with `MaxResults`, an
/// xray-local extension the console uses (X-Ray itself has no such member and pages by 100).
pub(crate) const MAX_SUMMARIES_PER_PAGE: usize = 10_000;

/// Trace ids in one `BatchGetTraces` or `GetTraceGraph` request, as the service allows.
const MAX_TRACE_IDS: usize = 5;

/// The body of a request: a JSON object (an empty body is `{}`, as botocore reads it).
fn request(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid("the request body is not a JSON object")),
        Err(err) => Err(ApiError::invalid(format!(
            "the request body is not JSON: {err}"
        ))),
    }
}

/// A required timestamp member, in epoch seconds (any JSON number).
fn time(request: &Map<String, Value>, member: &str) -> Result<f64, ApiError> {
    request
        .get(member)
        .and_then(Value::as_f64)
        .ok_or_else(|| ApiError::invalid(format!("{member} is required, in epoch seconds")))
}

/// `TraceIds`: 1 to 5 ids.
fn trace_ids(request: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let ids: Vec<String> = request
        .get("TraceIds")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid("TraceIds is required: a list of 1 to 5 trace ids"))?
        .iter()
        .map(|id| id.as_str().map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or_else(|| ApiError::invalid("TraceIds holds a value that is not a string"))?;
    if ids.is_empty() || ids.len() > MAX_TRACE_IDS {
        return Err(ApiError::invalid(format!(
            "TraceIds holds {} ids; 1 to {MAX_TRACE_IDS} are allowed",
            ids.len()
        )));
    }
    Ok(ids)
}

/// A page offset from `NextToken`, as this server writes it.
fn page_start(request: &Map<String, Value>) -> Result<usize, ApiError> {
    match request.get("NextToken") {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(token)) => token
            .strip_prefix("page-")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| ApiError::invalid("NextToken is not one this server gave")),
        Some(_) => Err(ApiError::invalid("NextToken is not a string")),
    }
}

/// Earliest start and latest end (the start, for an entity in progress) over the trace's
/// entities.
fn span(trace: &Trace) -> Option<(f64, f64)> {
    trace.index().active
}

/// Whether the trace falls in `[start, end)` the way `TimeRangeType` asks.
fn in_range(trace: &Trace, kind: &str, start: f64, end: f64) -> bool {
    match kind {
        // Traces active in the window.
        "Event" => span(trace).is_some_and(|(first, last)| first < end && last >= start),
        // A segment that ended in the window.
        "Service" => trace
            .index()
            .segment_ends
            .iter()
            .any(|&t| t >= start && t < end),
        // `TraceId`, the default: the trace's start as its id writes it.
        _ => {
            let t = f64::from(trace.id().epoch_seconds());
            t >= start && t < end
        }
    }
}

/// `POST /TraceSummaries`: the traces in the window that match `FilterExpression`, most
/// recent first, a page at a time.
pub(crate) fn trace_summaries(store: &Arc<Store>, body: &[u8]) -> Result<Value, ApiError> {
    let request = request(body)?;
    let (start, end) = (time(&request, "StartTime")?, time(&request, "EndTime")?);
    let kind = match request.get("TimeRangeType").and_then(Value::as_str) {
        None => "TraceId",
        Some(kind @ ("TraceId" | "Event" | "Service")) => kind,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "TimeRangeType {other:?} is not one of TraceId, Event, Service"
            )));
        }
    };
    let filter = match request.get("FilterExpression").and_then(Value::as_str) {
        Some(text) if !text.trim().is_empty() => Some(
            Filter::parse(text)
                .map_err(|err| ApiError::invalid(format!("Invalid filter expression: {err}")))?,
        ),
        _ => None,
    };
    let from = page_start(&request)?;
    let per_page = match request.get("MaxResults") {
        None | Some(Value::Null) => SUMMARIES_PER_PAGE,
        Some(value) => value
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=MAX_SUMMARIES_PER_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "MaxResults is a whole number from 1 to {MAX_SUMMARIES_PER_PAGE}"
                ))
            })?,
    };
    let mut processed = 0u64;
    // (start time, summary) of every match; held as summaries, one trace assembled at a time.
    let mut matched: Vec<(f64, TraceId)> = Vec::new();
    for trace in store.assembled_all() {
        let id = trace.id();
        if !in_range(&trace, kind, start, end) {
            continue;
        }
        processed += 1;
        if filter.as_ref().is_none_or(|f| f.matches(&trace)) {
            let first = span(&trace).map_or(0.0, |(first, _)| first);
            matched.push((first, id));
        }
    }
    // The most recent first.
    matched.sort_by(|a, b| b.0.total_cmp(&a.0));
    let page: Vec<Value> = matched
        .iter()
        .skip(from)
        .take(per_page)
        .filter_map(|&(_, id)| store.assembled(id).map(|t| summary(&t)))
        .collect();
    let approximate = matched.get(from).map_or(end, |&(first, _)| first);
    let mut answer = json!({
        "TraceSummaries": page,
        "ApproximateTime": approximate,
        "TracesProcessedCount": processed,
    });
    if from + per_page < matched.len() {
        answer["NextToken"] = json!(format!("page-{}", from + per_page));
    }
    Ok(answer)
}

/// A `ServiceId`: a service's name and type.
fn service_id(name: &str, kind: Option<&str>) -> Value {
    let mut id = json!({"Name": name, "Names": [name]});
    if let Some(kind) = kind {
        id["Type"] = json!(kind);
    }
    id
}

/// The service an entity belongs to: its segment's name and `origin`.
fn owner(entity: &TraceEntity<'_>) -> Option<Value> {
    let segment = entity.root_doc();
    let name = segment.get("name")?.as_str()?;
    Some(service_id(
        name,
        segment.get("origin").and_then(Value::as_str),
    ))
}

/// The `ServiceId`s of a trace: its segments' services, then the AWS resources and remote
/// services its subsegments called.
fn service_ids(trace: &Trace) -> Vec<Value> {
    let mut ids: Vec<Value> = Vec::new();
    let mut push = |id: Value| {
        if !ids.contains(&id) {
            ids.push(id);
        }
    };
    for entity in trace.entities() {
        if entity.is_segment() {
            if let Some(id) = owner(&entity) {
                push(id);
            }
            continue;
        }
        let Some(name) = entity.name() else { continue };
        if let Some("aws" | "remote") = entity.get("namespace").and_then(Value::as_str) {
            push(service_id(name, node_type(&entity).as_deref()));
        }
    }
    ids
}

/// An annotation value in the API's tagged form.
fn annotation_value(value: &Value) -> Option<Value> {
    Some(match value {
        Value::Number(n) => json!({"NumberValue": n.as_f64()?}),
        Value::Bool(b) => json!({"BooleanValue": b}),
        Value::String(s) => json!({"StringValue": s}),
        _ => return None,
    })
}

/// One trace's `TraceSummary`.
pub(crate) fn summary(trace: &Trace) -> Value {
    let root = root(trace);
    let flag = |e: &TraceEntity<'_>, name: &str| e.get(name).and_then(Value::as_bool) == Some(true);
    let mut out = json!({
        "Id": trace.id().to_string(),
        "HasFault": root.as_ref().is_some_and(|r| flag(r, "fault")),
        "HasError": root.as_ref().is_some_and(|r| flag(r, "error")),
        "HasThrottle": trace.entities().any(|e| flag(&e, "throttle")),
        "IsPartial": trace.entities().any(|e| e.is_in_progress()) || !trace.is_complete(),
        "Revision": trace.segments().len() + trace.orphans().len(),
        "ServiceIds": service_ids(trace),
    });
    if let Some((first, _)) = span(trace) {
        out["StartTime"] = json!(first);
    }
    if let Some(duration) = trace_duration(trace) {
        out["Duration"] = json!(duration);
    }
    if let Some(root) = &root {
        if let Some(response) = root.duration() {
            out["ResponseTime"] = json!(response);
        }
        if let Some(id) = owner(root) {
            out["EntryPoint"] = id;
        }
        let http = root.get("http");
        let part = |part: &str, field: &str| http.and_then(|h| h.get(part)?.get(field)).cloned();
        let mut summary_http = Map::new();
        for (key, value) in [
            ("HttpURL", part("request", "url")),
            ("HttpMethod", part("request", "method")),
            ("UserAgent", part("request", "user_agent")),
            ("ClientIp", part("request", "client_ip")),
            ("HttpStatus", part("response", "status")),
        ] {
            if let Some(value) = value {
                summary_http.insert(key.to_owned(), value);
            }
        }
        if !summary_http.is_empty() {
            out["Http"] = Value::Object(summary_http);
        }
    }
    // Annotations from every entity, each value once, with the services that recorded it.
    let mut annotations: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut users: Vec<Value> = Vec::new();
    let (mut arns, mut instances, mut zones) = (Vec::new(), Vec::new(), Vec::new());
    for entity in trace.entities() {
        let service = owner(&entity);
        if let Some(map) = entity.get("annotations").and_then(Value::as_object) {
            for (key, value) in map {
                let Some(tagged) = annotation_value(value) else {
                    continue;
                };
                let values = annotations.entry(key.clone()).or_default();
                let entry = match values.iter_mut().find(|v| v["AnnotationValue"] == tagged) {
                    Some(entry) => entry,
                    None => {
                        values.push(json!({"AnnotationValue": tagged, "ServiceIds": []}));
                        values.last_mut().expect("just pushed")
                    }
                };
                if let (Some(service), Some(list)) = (&service, entry["ServiceIds"].as_array_mut())
                    && !list.contains(service)
                {
                    list.push(service.clone());
                }
            }
        }
        if !entity.is_segment() {
            continue;
        }
        if let Some(user) = entity.get("user").and_then(Value::as_str)
            && !users.iter().any(|u| u["UserName"] == user)
        {
            users.push(json!({"UserName": user, "ServiceIds": service.iter().collect::<Vec<_>>()}));
        }
        let ec2 = entity.get("aws").and_then(|a| a.get("ec2"));
        for (list, key, value) in [
            (&mut arns, "ARN", entity.get("resource_arn")),
            (&mut instances, "Id", ec2.and_then(|e| e.get("instance_id"))),
            (
                &mut zones,
                "Name",
                ec2.and_then(|e| e.get("availability_zone")),
            ),
        ] {
            if let Some(value) = value.and_then(Value::as_str) {
                let item = json!({ key: value });
                if !list.contains(&item) {
                    list.push(item);
                }
            }
        }
    }
    out["FaultRootCauses"] = json!(flag_root_causes(trace, "fault"));
    out["ErrorRootCauses"] = json!(flag_root_causes(trace, "error"));
    out["ResponseTimeRootCauses"] = json!(response_time_root_causes(trace));
    out["Annotations"] = json!(annotations);
    out["Users"] = json!(users);
    out["ResourceARNs"] = json!(arns);
    out["InstanceIds"] = json!(instances);
    out["AvailabilityZones"] = json!(zones);
    out
}

// ===== root causes =====
//
// X-Ray does not publish how it finds root causes; xray-local derives them from the trace's
// tree as the console presents them. A fault (or error) root cause is an entity that carries
// the flag while none of its children does (its subsegments, and the segments that answered it
// when it is a call), given as the path to it from its service's segment, its exceptions on
// the last entity; a call that no segment answered adds its inferred node. The response-time
// root cause follows the slowest child from the root segment down, each entity with its share
// of the root's time (`Coverage`).

/// `[{Name, Message}]` of the entity's own exceptions.
fn exceptions(entity: &TraceEntity<'_>) -> Vec<Value> {
    entity
        .get("cause")
        .and_then(|c| c.get("exceptions"))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|e| {
                    let mut out = Map::new();
                    if let Some(name) = e.get("type").and_then(Value::as_str) {
                        out.insert("Name".to_owned(), json!(name));
                    }
                    if let Some(message) = e.get("message").and_then(Value::as_str) {
                        out.insert("Message".to_owned(), json!(message));
                    }
                    Value::Object(out)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A root cause's `Service`: the entity's service, or the node a call inferred.
fn cause_service(entity: &TraceEntity<'_>, inferred: bool, path: Vec<Value>) -> Value {
    let (name, kind) = if inferred {
        (entity.name().unwrap_or_default(), node_type(entity))
    } else {
        let segment = entity.root_doc();
        (
            segment
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            segment
                .get("origin")
                .and_then(Value::as_str)
                .map(str::to_owned),
        )
    };
    let mut service = json!({
        "Name": name, "Names": [name], "Inferred": inferred, "EntityPath": path,
    });
    if let Some(kind) = kind {
        service["Type"] = json!(kind);
    }
    if let Some(account) = entity
        .root_doc()
        .get("aws")
        .and_then(|a| a.get("account_id"))
        .filter(|_| !inferred)
    {
        service["AccountId"] = account.clone();
    }
    service
}

/// `FaultRootCauses` (`flag` = `fault`) or `ErrorRootCauses` (`error`).
pub(crate) fn flag_root_causes(trace: &Trace, flag: &str) -> Vec<Value> {
    let answered = trace.answering();
    let client_impacting = root(trace).is_some_and(|r| r.flag(flag));
    let mut causes = Vec::new();
    let mut path: Vec<TraceEntity<'_>> = Vec::new();
    for segment in trace.entities().filter(|e| e.is_segment()) {
        walk_flags(segment, flag, &answered, &mut path, &mut |path| {
            let Some(last) = path.last() else { return };
            let entity_path: Vec<Value> = path
                .iter()
                .map(|e| {
                    let own = std::ptr::eq(e.doc(), last.doc());
                    json!({
                        "Name": e.name().unwrap_or_default(),
                        "Exceptions": if own { exceptions(e) } else { Vec::new() },
                        "Remote": e.is_call(),
                    })
                })
                .collect();
            let mut services = vec![cause_service(last, false, entity_path)];
            let unanswered = last.id().is_none_or(|id| !answered.contains_key(id));
            if last.is_call() && unanswered {
                let inferred = vec![json!({
                    "Name": last.name().unwrap_or_default(), "Exceptions": exceptions(last),
                    "Remote": true,
                })];
                services.push(cause_service(last, true, inferred));
            }
            causes.push(json!({"Services": services, "ClientImpacting": client_impacting}));
        });
    }
    causes
}

fn walk_flags<'a>(
    entity: TraceEntity<'a>,
    flag: &str,
    answered: &std::collections::HashMap<&str, Vec<TraceEntity<'a>>>,
    path: &mut Vec<TraceEntity<'a>>,
    found: &mut impl FnMut(&[TraceEntity<'a>]),
) {
    path.push(entity);
    let child_flagged = entity.subsegments().any(|c| c.flag(flag))
        || entity
            .id()
            .and_then(|id| answered.get(id))
            .is_some_and(|segments| segments.iter().any(|s| s.flag(flag)));
    if entity.flag(flag) && !child_flagged {
        found(path);
    }
    for child in entity.subsegments() {
        walk_flags(child, flag, answered, path, found);
    }
    path.pop();
}

/// `ResponseTimeRootCauses`: the slowest path from the root segment, by service.
pub(crate) fn response_time_root_causes(trace: &Trace) -> Vec<Value> {
    let Some(root) = root(trace) else {
        return Vec::new();
    };
    let Some(total) = root.duration().filter(|d| *d > 0.0) else {
        return Vec::new();
    };
    let answered = trace.answering();
    let coverage = |e: &TraceEntity<'_>| {
        e.duration()
            .map_or(0.0, |d| ((d / total) * 1000.0).round() / 1000.0)
    };
    let mut services: Vec<Value> = Vec::new();
    let mut current: Vec<Value> = Vec::new();
    let mut owner = root;
    let mut at = root;
    // At most one step per entity: the walk cannot loop on a malformed tree.
    for _ in 0..=trace.entities().count() {
        current.push(
            json!({"Name": at.name().unwrap_or_default(), "Coverage": coverage(&at),
                            "Remote": at.is_call()}),
        );
        let answers = at.id().and_then(|id| answered.get(id));
        let slowest = at
            .subsegments()
            .chain(answers.into_iter().flatten().copied())
            .filter(|c| c.duration().is_some())
            .max_by(|a, b| {
                a.duration()
                    .unwrap_or(0.0)
                    .total_cmp(&b.duration().unwrap_or(0.0))
            });
        let Some(next) = slowest else {
            break;
        };
        if next.is_segment() {
            services.push(cause_service(&owner, false, std::mem::take(&mut current)));
            owner = next;
        }
        at = next;
    }
    services.push(cause_service(&owner, false, current));
    if at.is_call() && at.id().is_none_or(|id| !answered.contains_key(id)) {
        let inferred = vec![json!({"Name": at.name().unwrap_or_default(),
                                   "Coverage": coverage(&at), "Remote": true})];
        services.push(cause_service(&at, true, inferred));
    }
    vec![json!({"Services": services, "ClientImpacting": true})]
}

/// `POST /Traces`: each trace's segment documents, as JSON strings, subsegments embedded;
/// ids not held come back in `UnprocessedTraceIds`.
pub(crate) fn batch_get_traces(store: &Arc<Store>, body: &[u8]) -> Result<Value, ApiError> {
    let request = request(body)?;
    let ids = trace_ids(&request)?;
    let mut traces = Vec::new();
    let mut unprocessed = Vec::new();
    for text in ids {
        let Some(trace) = text.parse().ok().and_then(|id| store.assembled(id)) else {
            unprocessed.push(json!(text));
            continue;
        };
        let segments: Vec<Value> = trace
            .segments()
            .iter()
            .chain(trace.orphans())
            .map(|doc| {
                json!({
                    "Id": doc.get("id").cloned().unwrap_or(Value::Null),
                    "Document": doc.to_string(),
                })
            })
            .collect();
        let mut out = json!({
            "Id": trace.id().to_string(),
            "LimitExceeded": false,
            "Segments": segments,
        });
        if let Some(duration) = trace_duration(&trace) {
            out["Duration"] = json!(duration);
        }
        traces.push(out);
    }
    Ok(json!({"Traces": traces, "UnprocessedTraceIds": unprocessed}))
}

/// `POST /ServiceGraph`: the map of the traces active in `[StartTime, EndTime)`.
pub(crate) fn service_graph(store: &Arc<Store>, body: &[u8]) -> Result<Value, ApiError> {
    let request = request(body)?;
    let (start, end) = (time(&request, "StartTime")?, time(&request, "EndTime")?);
    let traces = || {
        store
            .ids()
            .into_iter()
            .filter_map(|id| store.assembled(id))
            .filter(move |t| in_range(t, "Event", start, end))
    };
    let roots = root_services(traces());
    let map = ServiceMap::from_traces(traces());
    Ok(json!({
        "StartTime": start,
        "EndTime": end,
        "Services": services(&map, &roots, start, end),
        "ContainsOldGroupVersions": false,
    }))
}

/// `POST /TraceGraph`: the map of the traces named.
pub(crate) fn trace_graph(store: &Arc<Store>, body: &[u8]) -> Result<Value, ApiError> {
    let request = request(body)?;
    let ids = trace_ids(&request)?;
    let traces: Vec<Arc<Trace>> = ids
        .iter()
        .filter_map(|id| id.parse().ok().and_then(|id| store.assembled(id)))
        .collect();
    let (start, end) = traces
        .iter()
        .filter_map(|t| span(t))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(s, e), (a, b)| {
            (s.min(a), e.max(b))
        });
    let roots = root_services(traces.iter().cloned());
    let map = ServiceMap::from_traces(traces.iter().map(|t| &**t));
    let (start, end) = if start.is_finite() {
        (start, end)
    } else {
        (0.0, 0.0)
    };
    Ok(json!({"Services": services(&map, &roots, start, end)}))
}

/// The names of the services that are the root of some trace.
fn root_services(traces: impl Iterator<Item = Arc<Trace>>) -> Vec<String> {
    let mut roots: Vec<String> = Vec::new();
    for trace in traces {
        if let Some(name) = root(&trace).and_then(|r| r.name())
            && !roots.iter().any(|r| r == name)
        {
            roots.push(name.to_owned());
        }
    }
    roots
}

/// Statistics in the API's shape (`ServiceStatistics`, `EdgeStatistics`).
fn statistics(stats: &CallStats) -> Value {
    let (errors, throttles, faults) = (stats.errors(), stats.throttles(), stats.faults());
    json!({
        "OkCount": stats.requests().saturating_sub(errors + faults),
        "ErrorStatistics": {
            "ThrottleCount": throttles,
            "OtherCount": errors.saturating_sub(throttles),
            "TotalCount": errors,
        },
        "FaultStatistics": {"OtherCount": faults, "TotalCount": faults},
        "TotalCount": stats.requests(),
        "TotalResponseTime": stats.total_seconds(),
    })
}

/// A histogram in the API's shape: `[{Value: seconds, Count}]`, by duration.
fn histogram(histogram: &Histogram) -> Value {
    histogram
        .entries()
        .map(|(value, count)| json!({"Value": value, "Count": count}))
        .collect()
}

/// The map as the API's `Service` list: a `client` node before each root service, then
/// every node with its edges to the nodes it called.
fn services(map: &ServiceMap, roots: &[String], start: f64, end: f64) -> Vec<Value> {
    let clients = map
        .nodes()
        .iter()
        .filter(|n| roots.iter().any(|r| r == n.name()))
        .count();
    let reference = |name: &str| {
        map.nodes()
            .iter()
            .position(|n| n.name() == name)
            .map(|i| i + clients)
    };
    let edge = |to: usize, stats: &CallStats, times: &Histogram| {
        json!({
            "ReferenceId": to,
            "StartTime": start,
            "EndTime": end,
            "SummaryStatistics": statistics(stats),
            "ResponseTimeHistogram": histogram(times),
            "Aliases": [],
        })
    };
    let mut out = Vec::new();
    for (i, node) in map
        .nodes()
        .iter()
        .filter(|n| roots.iter().any(|r| r == n.name()))
        .enumerate()
    {
        let Some(to) = reference(node.name()) else {
            continue;
        };
        out.push(json!({
            "ReferenceId": i,
            "Type": "client",
            "State": "unknown",
            "Root": false,
            "StartTime": start,
            "EndTime": end,
            "Edges": [edge(to, node.stats(), node.histogram())],
            "SummaryStatistics": statistics(node.stats()),
            "DurationHistogram": [],
            "ResponseTimeHistogram": [],
        }));
    }
    for (i, node) in map.nodes().iter().enumerate() {
        let edges: Vec<Value> = map
            .edges()
            .iter()
            .filter(|e| e.from() == node.name())
            .filter_map(|e| Some(edge(reference(e.to())?, e.stats(), e.histogram())))
            .collect();
        let (kind, state) = match node.kind() {
            "service" => (None, "active"),
            "aws" => (Some(format!("AWS::{}", node.name())), "unknown"),
            "remote" => (Some("remote".to_owned()), "unknown"),
            origin => (Some(origin.to_owned()), "active"),
        };
        let mut service = json!({
            "ReferenceId": i + clients,
            "Name": node.name(),
            "Names": [node.name()],
            "Root": roots.iter().any(|r| r == node.name()),
            "State": state,
            "StartTime": start,
            "EndTime": end,
            "Edges": edges,
            "SummaryStatistics": statistics(node.stats()),
            "DurationHistogram": histogram(node.histogram()),
            "ResponseTimeHistogram": histogram(node.histogram()),
        });
        if let Some(kind) = kind {
            service["Type"] = json!(kind);
        }
        out.push(service);
    }
    out
}
