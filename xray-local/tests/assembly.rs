//! Assembly of documents into traces, over real UDP.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Sdk, WAIT, id, independent, segment, start, trace_id};
use xray_local::{Trace, XRayLocal};

/// `name (parent name) depth` for every entity, in iteration order.
fn shape(trace: &Trace) -> Vec<String> {
    trace
        .entities()
        .map(|e| {
            let parent = e.parent().and_then(|p| p.name()).unwrap_or("-");
            format!("{} ({parent}) {}", e.name().unwrap_or("?"), e.depth())
        })
        .collect()
}

/// Sends every document, then waits until the daemon has read them all.
fn send_all(local: &XRayLocal, docs: &[serde_json::Value]) {
    let sdk = Sdk::new(local);
    let before = local.stats().received();
    for doc in docs {
        sdk.send(doc);
    }
    let n = before + docs.len() as u64;
    let stats = local.wait_for_stats(WAIT, |s| s.received() >= n);
    assert_eq!(stats.accepted(), n, "every document accepted");
}

#[test]
fn pieces_in_any_order_assemble_to_the_same_tree() {
    let t = trace_id();
    let (s, a, b, c) = (id(), id(), id(), id());
    let docs = [
        json!({"name": "api", "id": s, "trace_id": t, "start_time": 10.0, "end_time": 11.0,
               "subsegments": [{"name": "embedded", "id": c, "start_time": 10.05, "end_time": 10.06}]}),
        independent(&t, &a, &s, "a", 10.1, 10.5),
        independent(&t, &b, &a, "b", 10.2, 10.3),
    ];
    let expected = ["api (-) 0", "embedded (api) 1", "a (api) 1", "b (a) 2"];
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]] {
        let local = start();
        let sent: Vec<_> = order.iter().map(|&i| docs[i].clone()).collect();
        send_all(&local, &sent);
        let trace = local.wait_for_trace(&t, WAIT).unwrap();
        assert!(trace.is_complete(), "order {order:?}");
        assert_eq!(shape(&trace), expected, "order {order:?}");
        assert!(trace.orphans().is_empty());
    }
}

#[test]
fn grandchild_before_child_before_segment() {
    let local = start();
    let t = trace_id();
    let (s, c, g) = (id(), id(), id());
    send_all(
        &local,
        &[
            independent(&t, &g, &c, "grandchild", 1.3, 1.4),
            independent(&t, &c, &s, "child", 1.2, 1.5),
        ],
    );
    let partial = local.trace(&t).unwrap();
    assert!(!partial.is_complete(), "no segment yet");
    assert_eq!(shape(&partial), ["child (-) 0", "grandchild (child) 1"]);
    assert!(partial.segments().is_empty());
    assert_eq!(
        partial.orphans().len(),
        1,
        "the grandchild hangs under the orphan child"
    );

    send_all(&local, &[segment(&t, &s, "api", 1.0, 2.0)]);
    let trace = local.wait_for_trace(&t, WAIT).unwrap();
    assert!(trace.is_complete());
    assert_eq!(
        shape(&trace),
        ["api (-) 0", "child (api) 1", "grandchild (child) 2"]
    );
    let g_entity = trace.find_by_id(&g).unwrap();
    assert_eq!(g_entity.parent_id(), Some(c.as_str()));
    assert_eq!(g_entity.root_doc()["name"], "api");
}

#[test]
fn streamed_subsegments_join_their_parent_embedded_in_the_final_segment() {
    // JAVA/PY streaming: finished subtrees go out early as independent subsegments whose
    // parent (here `handler`, still open then) only arrives embedded in the segment at the end.
    let local = start();
    let t = trace_id();
    let (s, handler) = (id(), id());
    let streamed: Vec<_> = (0..5)
        .map(|i| {
            independent(
                &t,
                &id(),
                &handler,
                &format!("query-{i}"),
                1.1 + i as f64 * 0.1,
                1.15 + i as f64 * 0.1,
            )
        })
        .collect();
    send_all(&local, &streamed);
    send_all(
        &local,
        &[
            json!({"name": "api", "id": s, "trace_id": t, "start_time": 1.0, "end_time": 2.0,
                 "subsegments": [{"name": "handler", "id": handler, "start_time": 1.05,
                                  "end_time": 1.9,
                                  "subsegments": [{"name": "render", "id": id(),
                                                   "start_time": 1.7, "end_time": 1.8}]}]}),
        ],
    );
    let trace = local.wait_for_trace(&t, WAIT).unwrap();
    assert!(trace.is_complete());
    let handler_entity = trace.find("handler").unwrap();
    let children: Vec<_> = handler_entity
        .subsegments()
        .filter_map(|e| e.name())
        .collect();
    assert_eq!(
        children,
        [
            "query-0", "query-1", "query-2", "query-3", "query-4", "render"
        ],
        "merged and ordered by start time"
    );
    assert_eq!(trace.entities().count(), 8);
}

#[test]
fn in_progress_fragment_is_replaced_by_the_completed_document() {
    let local = start();
    let t = trace_id();
    let s = id();
    let fragment =
        json!({"name": "api", "id": s, "trace_id": t, "start_time": 1.0, "in_progress": true});
    send_all(&local, std::slice::from_ref(&fragment));
    let now = local.trace(&t).unwrap();
    assert!(!now.is_complete());
    assert!(now.find("api").unwrap().is_in_progress());
    assert!(
        local
            .wait_for_trace(&t, Duration::from_millis(50))
            .is_none(),
        "in progress: not settled"
    );

    let done = segment(&t, &s, "api", 1.0, 1.25);
    send_all(&local, &[done]);
    let trace = local.wait_for_trace(&t, WAIT).unwrap();
    assert!(trace.is_complete());
    assert_eq!(trace.segments().len(), 1);
    assert_eq!(trace.segments()[0]["end_time"], json!(1.25));
    assert_eq!(trace.find("api").unwrap().duration(), Some(0.25));

    // A fragment delayed past its completed version does not undo it.
    send_all(&local, &[fragment]);
    let trace = local.trace(&t).unwrap();
    assert!(trace.is_complete());
    assert_eq!(trace.segments()[0]["end_time"], json!(1.25));
}

#[test]
fn embedded_in_progress_subsegment_is_replaced_by_its_independent_version() {
    // GO flushes a closed segment with still-open subsegments as in_progress; the finished
    // subsegment may then come on its own.
    let local = start();
    let t = trace_id();
    let (s, sub) = (id(), id());
    send_all(
        &local,
        &[
            json!({"name": "api", "id": s, "trace_id": t, "start_time": 1.0, "end_time": 2.0,
                 "subsegments": [{"name": "slow", "id": sub, "start_time": 1.5, "in_progress": true}]}),
        ],
    );
    assert!(!local.trace(&t).unwrap().is_complete());
    send_all(&local, &[independent(&t, &sub, &s, "slow", 1.5, 2.5)]);
    let trace = local.wait_for_trace(&t, WAIT).unwrap();
    assert_eq!(shape(&trace), ["api (-) 0", "slow (api) 1"]);
    assert_eq!(trace.find("slow").unwrap().end_time(), Some(2.5));
}

#[test]
fn segments_of_several_services_share_the_trace() {
    let local = start();
    let t = trace_id();
    let (front, call, back) = (id(), id(), id());
    let mut downstream = segment(&t, &back, "backend", 1.2, 1.6);
    downstream["parent_id"] = json!(call);
    send_all(
        &local,
        &[
            downstream,
            json!({"name": "frontend", "id": front, "trace_id": t, "start_time": 1.0,
                   "end_time": 2.0, "subsegments": [{"name": "backend", "id": call,
                   "namespace": "remote", "start_time": 1.1, "end_time": 1.7}]}),
        ],
    );
    let trace = local.wait_for_trace(&t, WAIT).unwrap();
    let names: Vec<_> = trace.segments().iter().map(|s| s["name"].clone()).collect();
    assert_eq!(names, [json!("frontend"), json!("backend")]);
    let backend_segment = trace
        .entities()
        .find(|e| e.is_segment() && e.name() == Some("backend"));
    assert_eq!(backend_segment.unwrap().parent_id(), Some(call.as_str()));
    assert_eq!(trace.find_all("backend").count(), 2);
}

#[test]
fn orphans_settle_after_the_idle_timeout() {
    // In AWS Lambda the parent segment is the Lambda service's and never reaches this daemon.
    let local = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .idle_timeout(Duration::from_millis(20))
        .start()
        .unwrap();
    let t = trace_id();
    send_all(
        &local,
        &[independent(&t, &id(), &id(), "handler", 1.0, 2.0)],
    );
    let trace = local.wait_for_trace(&t, WAIT).unwrap();
    assert!(!trace.is_complete());
    assert_eq!(trace.orphans().len(), 1);
    assert!(trace.find("handler").unwrap().is_orphaned());
}

#[test]
fn a_quiet_period_holds_back_a_complete_trace() {
    let local = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .quiet_period(Duration::from_secs(600))
        .start()
        .unwrap();
    let t = trace_id();
    send_all(&local, &[segment(&t, &id(), "api", 1.0, 2.0)]);
    assert!(local.trace(&t).unwrap().is_complete());
    assert!(
        local
            .wait_for_trace(&t, Duration::from_millis(50))
            .is_none()
    );
}

#[test]
fn wait_for_traces_and_completed_see_every_trace() {
    let local = start();
    let ids: Vec<String> = (0..3).map(|_| trace_id()).collect();
    let mut completed = local.completed();
    send_all(
        &local,
        &ids.iter()
            .enumerate()
            .map(|(i, t)| segment(t, &id(), &format!("svc-{i}"), 1.0, 2.0))
            .collect::<Vec<_>>(),
    );
    let traces = local.wait_for_traces(3, WAIT);
    let got: Vec<String> = traces.iter().map(|t| t.id().to_string()).collect();
    assert_eq!(got, ids, "by first arrival");
    let mut seen: Vec<String> = (0..3)
        .map(|_| completed.next_timeout(WAIT).unwrap().id().to_string())
        .collect();
    seen.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(seen, expected);
    assert!(
        completed.next_timeout(Duration::from_millis(20)).is_none(),
        "each trace once"
    );

    local.shutdown();
    assert!(
        completed.next().is_none(),
        "the iterator ends after shutdown"
    );
    assert!(
        local.wait_for_traces(4, WAIT).len() == 3,
        "returns at once after shutdown"
    );
}

#[test]
fn oldest_traces_are_evicted_past_max_traces() {
    let local = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .max_traces(3)
        .start()
        .unwrap();
    let ids: Vec<String> = (0..5).map(|_| trace_id()).collect();
    let mut docs: Vec<_> = ids[..3]
        .iter()
        .map(|t| segment(t, &id(), "api", 1.0, 2.0))
        .collect();
    // The first trace gets a second document after the younger ones: eviction still goes by
    // first arrival.
    docs.push(segment(&ids[0], &id(), "api", 1.0, 2.0));
    docs.extend(ids[3..].iter().map(|t| segment(t, &id(), "api", 1.0, 2.0)));
    send_all(&local, &docs);
    let kept: Vec<String> = local.traces().iter().map(|t| t.id().to_string()).collect();
    assert_eq!(kept, ids[2..]);
    assert_eq!(local.stats().evicted_traces(), 2);
    assert!(local.trace(&ids[0]).is_none());
}

#[test]
fn oldest_traces_are_evicted_past_max_bytes() {
    let doc = |t: &str| {
        let mut doc = segment(t, &id(), "api", 1.0, 2.0);
        doc["metadata"] = json!({"default": {"pad": "x".repeat(500)}});
        doc
    };
    // What one such document costs the store.
    let probe = start();
    send_all(&probe, &[doc(&trace_id())]);
    let cost = probe.stats().stored_bytes() as usize;
    assert!(cost > 500, "{cost}");

    let local = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .max_bytes(2 * cost + cost / 2)
        .start()
        .unwrap();
    let ids: Vec<String> = (0..4).map(|_| trace_id()).collect();
    let docs: Vec<_> = ids.iter().map(|t| doc(t)).collect();
    send_all(&local, &docs);
    let kept = local.traces();
    assert_eq!(kept.len(), 2, "room for two and a half documents");
    let stats = local.stats();
    assert_eq!(stats.evicted_traces(), 2);
    assert_eq!(stats.stored_bytes() as usize, 2 * cost);
    assert!(stats.stored_bytes() + stats.assembled_bytes() <= (2 * cost + cost / 2) as u64);
    assert_eq!(kept[1].id().to_string(), ids[3]);
}

#[test]
fn shutdown_releases_the_port() {
    let local = start();
    let addr = local.udp_addr();
    local.shutdown();
    local.shutdown();
    // The socket is closed by shutdown itself, before the value is dropped.
    std::net::UdpSocket::bind(addr).expect("the port is free again");
    drop(local);
}

#[test]
fn text_that_is_not_a_trace_id_finds_nothing() {
    let local = start();
    assert!(local.wait_for_trace("not-a-trace-id", WAIT).is_none());
    assert!(local.trace("1-zz").is_none());
}

#[test]
fn traces_evicted_before_they_settled_are_counted_apart() {
    let local = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .max_traces(1)
        .start()
        .unwrap();
    // A trace that settles (it is complete and waited for), then one that never can (its
    // subsegment's parent never comes), then another.
    let seen = trace_id();
    send_all(&local, &[segment(&seen, &id(), "api", 1.0, 2.0)]);
    assert!(
        local
            .wait_for_trace(&seen, Duration::from_secs(5))
            .is_some()
    );
    let waiting = trace_id();
    send_all(
        &local,
        &[independent(&waiting, &id(), &id(), "call", 1.0, 1.5)],
    );
    send_all(&local, &[segment(&trace_id(), &id(), "api", 1.0, 2.0)]);
    let stats = local.stats();
    assert_eq!(stats.evicted_traces(), 2, "{stats:?}");
    assert_eq!(stats.evicted_unsettled(), 1, "{stats:?}");
}
