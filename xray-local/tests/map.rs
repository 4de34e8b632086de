//! The service map's nodes, edges and statistics.

use serde_json::{Value, json};
use xray_local::ServiceMap;

fn trace(n: u32, fault: bool, callee_sent: bool) -> Vec<Value> {
    let trace_id = format!("1-581cf771-a006649127e371903a2de9{n:02}");
    let mut docs = vec![json!({
        "name": "web", "id": format!("10000000000000{n:02}"), "trace_id": trace_id,
        "start_time": 1.0, "end_time": 1.4,
        "subsegments": [
            {"name": "api.internal", "id": format!("20000000000000{n:02}"), "namespace": "remote",
             "start_time": 1.1, "end_time": 1.3, "fault": fault},
            {"name": "SQS", "id": format!("30000000000000{n:02}"), "namespace": "aws",
             "start_time": 1.0, "end_time": 1.1, "error": true},
            {"name": "local-work", "id": format!("40000000000000{n:02}"),
             "start_time": 1.3, "end_time": 1.4},
        ],
    })];
    if callee_sent {
        docs.push(json!({
            "name": "api", "id": format!("50000000000000{n:02}"), "trace_id": trace_id,
            "parent_id": format!("20000000000000{n:02}"), "start_time": 1.15, "end_time": 1.25,
            "fault": fault,
        }));
    }
    docs
}

#[test]
fn calls_into_instrumented_services_link_the_services() {
    let docs: Vec<Value> = [trace(1, true, true), trace(2, false, true)].concat();
    let traces = xray_local::assemble(docs).unwrap();
    let map = ServiceMap::from_traces(&traces);

    let nodes: Vec<(&str, &str, u64)> = map
        .nodes()
        .iter()
        .map(|n| (n.name(), n.kind(), n.stats().requests()))
        .collect();
    assert_eq!(
        nodes,
        [
            ("SQS", "aws", 2),
            ("api", "service", 2),
            ("web", "service", 2)
        ]
    );
    let edges: Vec<(&str, &str, u64, f64, f64)> = map
        .edges()
        .iter()
        .map(|e| {
            (
                e.from(),
                e.to(),
                e.stats().requests(),
                e.stats().fault_rate(),
                e.stats().error_rate(),
            )
        })
        .collect();
    assert_eq!(
        edges,
        [("web", "SQS", 2, 0.0, 1.0), ("web", "api", 2, 0.5, 0.0)]
    );
    let api_edge = &map.edges()[1];
    let latency = api_edge.stats().average_latency().unwrap();
    assert!(
        (latency - 0.2).abs() < 1e-9,
        "the caller's 200 ms, not the callee's 100 ms"
    );
    let api = &map.nodes()[1];
    assert!((api.stats().average_latency().unwrap() - 0.1).abs() < 1e-9);
}

#[test]
fn calls_to_uninstrumented_hosts_become_remote_nodes() {
    let traces = xray_local::assemble(trace(3, true, false)).unwrap();
    let map = ServiceMap::from_traces(&traces);
    let names: Vec<&str> = map.nodes().iter().map(|n| n.name()).collect();
    assert_eq!(names, ["SQS", "api.internal", "web"]);
    assert_eq!(map.nodes()[1].kind(), "remote");
    assert_eq!(map.edges()[1].to(), "api.internal");
    assert_eq!(map.edges()[1].stats().faults(), 1);
    assert!(ServiceMap::from_traces(&[]).nodes().is_empty());
}
