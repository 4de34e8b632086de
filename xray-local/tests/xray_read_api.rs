//! The X-Ray read API on xray-local, read by real clients: aws-sdk-xray with an endpoint
//! override, and boto3 (from PyPI) with `endpoint_url`, as a script written for X-Ray reads it.

mod support;

use aws_sdk_xray::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_xray::primitives::DateTime;
use serde_json::{Value, json};
use xray_local::XRayLocal;

use support::{Sdk, WAIT, id, now, start_with_api, trace_id};

fn client(local: &XRayLocal) -> aws_sdk_xray::Client {
    let config = aws_sdk_xray::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDLOCAL", "local", None, None, "test"))
        .endpoint_url(format!("http://{}", local.tcp_addr()))
        .build();
    aws_sdk_xray::Client::from_conf(config)
}

/// Three traces: `api` failing (a DynamoDB call faulted, a `payments` service throttled
/// behind a remote call), `api` answering 404, and `web` answering 200, one second apart.
struct Scene {
    failing: String,
    not_found: String,
    fine: String,
    t0: f64,
}

fn scene(local: &XRayLocal) -> Scene {
    let sdk = Sdk::new(local);
    let t0 = now() - 30.0;
    let (failing, not_found, fine) = (trace_id(), trace_id(), trace_id());
    let remote_call = id();
    sdk.send(&json!({
        "name": "api", "id": id(), "trace_id": failing, "start_time": t0, "end_time": t0 + 0.5,
        "origin": "AWS::EC2::Instance", "user": "alice", "fault": true,
        "aws": {"ec2": {"instance_id": "i-0abc", "availability_zone": "us-east-1a"}},
        "annotations": {"tenant": "blue", "items": 3},
        "http": {"request": {"method": "GET", "url": "http://api.example.com/orders",
                             "user_agent": "curl/8", "client_ip": "192.0.2.1"},
                 "response": {"status": 500}},
        "subsegments": [
            {"name": "DynamoDB", "id": id(), "start_time": t0 + 0.1, "end_time": t0 + 0.2,
             "namespace": "aws", "fault": true, "aws": {"table_name": "orders"}},
            {"name": "payments", "id": remote_call, "start_time": t0 + 0.2,
             "end_time": t0 + 0.4, "namespace": "remote", "error": true, "throttle": true},
        ],
    }));
    sdk.send(&json!({
        "name": "payments", "id": id(), "trace_id": failing, "parent_id": remote_call,
        "start_time": t0 + 0.25, "end_time": t0 + 0.35, "error": true, "throttle": true,
        "annotations": {"tenant": "blue"},
    }));
    sdk.send(&json!({
        "name": "api", "id": id(), "trace_id": not_found, "start_time": t0 + 1.0,
        "end_time": t0 + 1.1, "error": true,
        "http": {"request": {"method": "GET", "url": "http://api.example.com/missing"},
                 "response": {"status": 404}},
    }));
    sdk.send(&json!({
        "name": "web", "id": id(), "trace_id": fine, "start_time": t0 + 2.0,
        "end_time": t0 + 2.3, "http": {"response": {"status": 200}},
    }));
    assert_eq!(local.wait_for_traces(3, WAIT).len(), 3);
    Scene {
        failing,
        not_found,
        fine,
        t0,
    }
}

fn window() -> (DateTime, DateTime) {
    let now = now() as i64;
    (
        DateTime::from_secs(now - 600),
        DateTime::from_secs(now + 600),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_summaries_carry_the_services_fields_and_filter() {
    let local = start_with_api();
    let scene = scene(&local);
    let xray = client(&local);
    let (from, to) = window();

    let all = xray
        .get_trace_summaries()
        .start_time(from)
        .end_time(to)
        .send()
        .await
        .expect("GetTraceSummaries");
    let ids: Vec<&str> = all
        .trace_summaries()
        .iter()
        .filter_map(|s| s.id())
        .collect();
    // The most recent first.
    assert_eq!(ids, [&scene.fine, &scene.not_found, &scene.failing]);
    assert_eq!(all.traces_processed_count(), Some(3));
    assert!(all.next_token().is_none());

    let faulted = xray
        .get_trace_summaries()
        .start_time(from)
        .end_time(to)
        .filter_expression("fault")
        .send()
        .await
        .expect("GetTraceSummaries with a filter");
    let [summary] = faulted.trace_summaries() else {
        panic!("one trace has a fault: {faulted:?}");
    };
    assert_eq!(summary.id(), Some(scene.failing.as_str()));
    assert_eq!(summary.has_fault(), Some(true));
    // The root answered 500: the payments service's error is not the trace's.
    assert_eq!(summary.has_error(), Some(false));
    // Any segment's throttle is the trace's.
    assert_eq!(summary.has_throttle(), Some(true));
    assert_eq!(summary.is_partial(), Some(false));
    assert_eq!(summary.duration(), Some(0.5));
    assert_eq!(summary.response_time(), Some(0.5));
    let start = summary.start_time().expect("StartTime").as_secs_f64();
    assert!(
        (start - scene.t0).abs() < 1e-3,
        "{start} against {}",
        scene.t0
    );
    let http = summary.http().expect("Http");
    assert_eq!(http.http_status(), Some(500));
    assert_eq!(http.http_method(), Some("GET"));
    assert_eq!(http.http_url(), Some("http://api.example.com/orders"));
    assert_eq!(http.user_agent(), Some("curl/8"));
    assert_eq!(http.client_ip(), Some("192.0.2.1"));
    let entry = summary.entry_point().expect("EntryPoint");
    assert_eq!(
        (entry.name(), entry.r#type()),
        (Some("api"), Some("AWS::EC2::Instance"))
    );
    let services: Vec<(Option<&str>, Option<&str>)> = summary
        .service_ids()
        .iter()
        .map(|s| (s.name(), s.r#type()))
        .collect();
    for expected in [
        (Some("api"), Some("AWS::EC2::Instance")),
        (Some("DynamoDB"), Some("AWS::DynamoDB::Table")),
        (Some("payments"), Some("remote")),
        (Some("payments"), None),
    ] {
        assert!(services.contains(&expected), "{expected:?} in {services:?}");
    }
    let annotations = summary.annotations().expect("Annotations");
    let tenant = &annotations["tenant"];
    assert_eq!(
        tenant.len(),
        1,
        "one value, recorded by two services: {tenant:?}"
    );
    let value = tenant[0].annotation_value().expect("AnnotationValue");
    assert_eq!(
        value.as_string_value().ok().map(String::as_str),
        Some("blue")
    );
    let by: Vec<_> = tenant[0]
        .service_ids()
        .iter()
        .filter_map(|s| s.name())
        .collect();
    assert_eq!(by, ["api", "payments"]);
    let items = annotations["items"][0].annotation_value().unwrap();
    assert_eq!(items.as_number_value().ok(), Some(&3.0));
    assert_eq!(summary.users()[0].user_name(), Some("alice"));
    assert_eq!(summary.instance_ids()[0].id(), Some("i-0abc"));
    assert_eq!(summary.availability_zones()[0].name(), Some("us-east-1a"));

    for (filter, expected) in [
        ("http.status = 404", vec![scene.not_found.as_str()]),
        (
            r#"annotation.tenant = "blue""#,
            vec![scene.failing.as_str()],
        ),
        ("duration > 0.2", vec![scene.fine.as_str(), &scene.failing]),
    ] {
        let out = xray
            .get_trace_summaries()
            .start_time(from)
            .end_time(to)
            .filter_expression(filter)
            .send()
            .await
            .expect(filter);
        let ids: Vec<&str> = out
            .trace_summaries()
            .iter()
            .filter_map(|s| s.id())
            .collect();
        assert_eq!(ids, expected, "{filter}");
    }

    // Outside the window, nothing; a window is required.
    let before = xray
        .get_trace_summaries()
        .start_time(DateTime::from_secs(1))
        .end_time(DateTime::from_secs(2))
        .send()
        .await
        .unwrap();
    assert!(before.trace_summaries().is_empty());
    assert_eq!(before.traces_processed_count(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_filter_is_an_invalid_request_that_says_why() {
    let local = start_with_api();
    let xray = client(&local);
    let (from, to) = window();
    let err = xray
        .get_trace_summaries()
        .start_time(from)
        .end_time(to)
        .filter_expression("responsetime > ")
        .send()
        .await
        .expect_err("refused");
    let service = err.into_service_error();
    assert!(service.is_invalid_request_exception(), "{service:?}");
    let message = service.meta().message().unwrap_or_default();
    assert!(message.contains("filter"), "{message}");

    let (status, body) = support::http(local.tcp_addr(), "POST", "/TraceSummaries", "{}");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("StartTime is required"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summaries_come_a_page_at_a_time_through_the_paginator() {
    let local = start_with_api();
    let sdk = Sdk::new(&local);
    let t0 = now() - 60.0;
    let ids: Vec<String> = (0..150).map(|_| trace_id()).collect();
    for (i, trace) in ids.iter().enumerate() {
        let start = t0 + i as f64 * 0.01;
        sdk.send(&support::segment(trace, &id(), "api", start, start + 0.001));
    }
    assert_eq!(local.wait_for_traces(150, WAIT).len(), 150);
    let xray = client(&local);
    let (from, to) = window();
    let first = xray
        .get_trace_summaries()
        .start_time(from)
        .end_time(to)
        .send()
        .await
        .unwrap();
    assert_eq!(first.trace_summaries().len(), 100);
    assert!(first.next_token().is_some());
    let pages: Vec<_> = xray
        .get_trace_summaries()
        .start_time(from)
        .end_time(to)
        .into_paginator()
        .send()
        .try_collect()
        .await
        .expect("every page");
    assert_eq!(pages.len(), 2);
    let mut seen: Vec<String> = pages
        .iter()
        .flat_map(|p| p.trace_summaries())
        .filter_map(|s| s.id().map(str::to_owned))
        .collect();
    // Newest first across pages.
    let expected: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, expected);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_get_traces_returns_segment_documents_and_the_ids_not_held() {
    let local = start_with_api();
    let scene = scene(&local);
    let xray = client(&local);
    let unknown = trace_id();
    let out = xray
        .batch_get_traces()
        .trace_ids(&scene.failing)
        .trace_ids(&scene.fine)
        .trace_ids(&unknown)
        .send()
        .await
        .expect("BatchGetTraces");
    assert_eq!(out.unprocessed_trace_ids(), [unknown]);
    let failing = out
        .traces()
        .iter()
        .find(|t| t.id() == Some(scene.failing.as_str()))
        .expect("the failing trace");
    assert_eq!(failing.duration(), Some(0.5));
    assert_eq!(failing.limit_exceeded(), Some(false));
    let docs: Vec<Value> = failing
        .segments()
        .iter()
        .map(|s| serde_json::from_str(s.document().unwrap()).unwrap())
        .collect();
    let names: Vec<&str> = docs.iter().filter_map(|d| d["name"].as_str()).collect();
    assert_eq!(names, ["api", "payments"]);
    assert_eq!(docs[0]["subsegments"][0]["name"], "DynamoDB");
    for (segment, doc) in failing.segments().iter().zip(&docs) {
        assert_eq!(segment.id(), doc["id"].as_str());
    }

    let err = xray
        .batch_get_traces()
        .set_trace_ids(Some((0..6).map(|_| trace_id()).collect()))
        .send()
        .await
        .expect_err("six ids are too many");
    assert!(err.into_service_error().is_invalid_request_exception());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_graph_has_nodes_edges_and_statistics() {
    let local = start_with_api();
    let scene = scene(&local);
    let xray = client(&local);
    let (from, to) = window();
    let graph = xray
        .get_service_graph()
        .start_time(from)
        .end_time(to)
        .send()
        .await
        .expect("GetServiceGraph");
    let services = graph.services();
    let by_name = |name: &str, kind: Option<&str>| {
        services
            .iter()
            .find(|s| s.name() == Some(name) && s.r#type() == kind)
            .unwrap_or_else(|| panic!("{name} {kind:?} in {services:#?}"))
    };
    let reference = |s: &aws_sdk_xray::types::Service| s.reference_id().unwrap();
    let api = by_name("api", Some("AWS::EC2::Instance"));
    assert_eq!(api.root(), Some(true));
    assert_eq!(api.state(), Some("active"));
    let stats = api.summary_statistics().unwrap();
    assert_eq!(stats.total_count(), Some(2));
    assert_eq!(stats.fault_statistics().unwrap().total_count(), Some(1));
    assert_eq!(stats.error_statistics().unwrap().total_count(), Some(1));
    let dynamodb = by_name("DynamoDB", Some("AWS::DynamoDB"));
    let payments = by_name("payments", None);
    let edge_to = |from: &aws_sdk_xray::types::Service, to: &aws_sdk_xray::types::Service| {
        from.edges()
            .iter()
            .find(|e| e.reference_id() == Some(reference(to)))
            .unwrap_or_else(|| panic!("an edge to {:?} in {from:#?}", to.name()))
            .clone()
    };
    let to_dynamodb = edge_to(api, dynamodb);
    let stats = to_dynamodb.summary_statistics().unwrap();
    assert_eq!(stats.total_count(), Some(1));
    assert_eq!(stats.fault_statistics().unwrap().total_count(), Some(1));
    let to_payments = edge_to(api, payments);
    let throttled = to_payments.summary_statistics().unwrap();
    assert_eq!(
        throttled.error_statistics().unwrap().throttle_count(),
        Some(1)
    );
    // A client node calls each root service.
    let clients: Vec<_> = services
        .iter()
        .filter(|s| s.r#type() == Some("client"))
        .collect();
    assert_eq!(clients.len(), 2, "{services:#?}");
    let web = by_name("web", None);
    assert!(clients.iter().any(|c| {
        c.edges()
            .iter()
            .any(|e| e.reference_id() == Some(reference(web)))
    }));
    let mut references: Vec<i32> = services.iter().map(reference).collect();
    references.sort_unstable();
    references.dedup();
    assert_eq!(references.len(), services.len(), "unique reference ids");

    let graph = xray
        .get_trace_graph()
        .trace_ids(&scene.fine)
        .send()
        .await
        .expect("GetTraceGraph");
    let names: Vec<_> = graph
        .services()
        .iter()
        .map(|s| (s.name(), s.r#type()))
        .collect();
    assert_eq!(names, [(None, Some("client")), (Some("web"), None)]);
    let _ = scene.not_found;
}

#[test]
fn boto3_reads_it_as_it_reads_x_ray() {
    xray_testkit::ensure_python_package("import boto3", "boto3");
    let local = start_with_api();
    let scene = scene(&local);
    let script = r#"
import json, sys, time
import boto3
from botocore import UNSIGNED
from botocore.config import Config
endpoint, failing = sys.argv[1], sys.argv[2]
xray = boto3.client("xray", endpoint_url=endpoint, region_name="us-east-1",
                    config=Config(signature_version=UNSIGNED))
now = time.time()
summaries = xray.get_trace_summaries(StartTime=now - 600, EndTime=now + 600,
                                     FilterExpression="fault")["TraceSummaries"]
paged = [s["Id"] for page in xray.get_paginator("get_trace_summaries").paginate(
    StartTime=now - 600, EndTime=now + 600) for s in page["TraceSummaries"]]
traces = xray.batch_get_traces(TraceIds=[failing])["Traces"]
graph = xray.get_service_graph(StartTime=now - 600, EndTime=now + 600)["Services"]
print(json.dumps({
    "faulted": [s["Id"] for s in summaries],
    "status": summaries[0]["Http"]["HttpStatus"],
    "paged": paged,
    "documents": [json.loads(s["Document"])["name"] for s in traces[0]["Segments"]],
    "nodes": sorted(s.get("Name", s.get("Type")) for s in graph),
}))
"#;
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            &format!("http://{}", local.tcp_addr()),
            &scene.failing,
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: Value = serde_json::from_slice(&out.stdout).expect("the script's JSON");
    assert_eq!(read["faulted"], json!([scene.failing]));
    assert_eq!(read["status"], 500);
    assert_eq!(
        read["paged"],
        json!([scene.fine, scene.not_found, scene.failing])
    );
    assert_eq!(read["documents"], json!(["api", "payments"]));
    assert_eq!(
        read["nodes"],
        json!(["DynamoDB", "api", "client", "client", "payments", "web"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summaries_name_root_causes_and_the_graph_has_histograms() {
    let local = start_with_api();
    let scene = scene(&local);
    let xray = client(&local);
    let (from, to) = window();
    let answer = xray
        .get_trace_summaries()
        .start_time(from)
        .end_time(to)
        .filter_expression("fault")
        .send()
        .await
        .expect("GetTraceSummaries");
    let [summary] = answer.trace_summaries() else {
        panic!("one faulted trace: {answer:?}");
    };
    assert_eq!(summary.id(), Some(scene.failing.as_str()));
    let path = |services: &[aws_sdk_xray::types::FaultRootCauseService]| -> Vec<String> {
        services
            .iter()
            .map(|s| {
                let names: Vec<&str> = s.entity_path().iter().filter_map(|e| e.name()).collect();
                format!(
                    "{}{}: {}",
                    s.name().unwrap_or_default(),
                    if s.inferred() == Some(true) {
                        " (inferred)"
                    } else {
                        ""
                    },
                    names.join(" > ")
                )
            })
            .collect()
    };
    // The fault that no child carries: the DynamoDB call, under api, and its inferred node.
    let [fault] = summary.fault_root_causes() else {
        panic!("one fault root cause: {summary:?}");
    };
    assert_eq!(fault.client_impacting(), Some(true));
    assert_eq!(
        path(fault.services()),
        ["api: api > DynamoDB", "DynamoDB (inferred): DynamoDB"]
    );
    assert_eq!(fault.services()[1].r#type(), Some("AWS::DynamoDB::Table"));
    assert_eq!(fault.services()[0].entity_path()[1].remote(), Some(true));
    // The error: the payments service, which answered api's call; the root answered 500, so
    // the error did not reach the client as one.
    let [error] = summary.error_root_causes() else {
        panic!("one error root cause: {summary:?}");
    };
    assert_eq!(error.client_impacting(), Some(false));
    let names: Vec<_> = error.services().iter().filter_map(|s| s.name()).collect();
    assert_eq!(names, ["payments"]);
    // The response time: the slowest path, api's call to payments and payments itself.
    let [slow] = summary.response_time_root_causes() else {
        panic!("one response-time root cause: {summary:?}");
    };
    let services: Vec<(String, Vec<(String, f64)>)> = slow
        .services()
        .iter()
        .map(|s| {
            (
                s.name().unwrap_or_default().to_owned(),
                s.entity_path()
                    .iter()
                    .map(|e| {
                        (
                            e.name().unwrap_or_default().to_owned(),
                            e.coverage().unwrap(),
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        services,
        [
            (
                "api".to_owned(),
                vec![("api".to_owned(), 1.0), ("payments".to_owned(), 0.4)]
            ),
            ("payments".to_owned(), vec![("payments".to_owned(), 0.2)]),
        ]
    );
    // A trace without faults has none to name.
    let fine = xray
        .get_trace_summaries()
        .start_time(from)
        .end_time(to)
        .filter_expression(r#"service("web")"#)
        .send()
        .await
        .unwrap();
    assert!(fine.trace_summaries()[0].fault_root_causes().is_empty());

    // The graph's histograms: each node's durations, each edge's response times, by the
    // millisecond.
    let graph = xray
        .get_service_graph()
        .start_time(from)
        .end_time(to)
        .send()
        .await
        .expect("GetServiceGraph");
    let api = graph
        .services()
        .iter()
        .find(|s| s.name() == Some("api"))
        .expect("api");
    let histogram: Vec<(f64, i32)> = api
        .duration_histogram()
        .iter()
        .map(|h| (h.value(), h.count()))
        .collect();
    assert_eq!(
        histogram,
        [(0.1, 1), (0.5, 1)],
        "the 404 and the failing trace"
    );
    let ids: std::collections::HashMap<i32, &str> = graph
        .services()
        .iter()
        .filter_map(|s| Some((s.reference_id()?, s.name().unwrap_or("client"))))
        .collect();
    let to_payments = api
        .edges()
        .iter()
        .find(|e| e.reference_id().and_then(|r| ids.get(&r).copied()) == Some("payments"))
        .expect("an edge to payments");
    let times: Vec<(f64, i32)> = to_payments
        .response_time_histogram()
        .iter()
        .map(|h| (h.value(), h.count()))
        .collect();
    assert_eq!(times, [(0.2, 1)]);
}
