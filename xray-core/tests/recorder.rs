//! The recorder end to end: real UDP sockets on 127.0.0.1, documents parsed back as JSON.

mod support;
mod util;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use util::{UdpSink, walk};
use xray_sdk::clock::ManualClock;
use xray_sdk::config::ContextMissing;
use xray_sdk::sampling::{LocalSampler, SamplingRequest, SamplingRules, SharedSampler};
use xray_sdk::transport::TransportErrorKind;
use xray_sdk::{DaemonAddress, InMemoryEmitter, Recorder, RecorderBuilder, TraceHeader, current};

/// Validates every document against the segment-document schema (and that no `null` is
/// written), then hands them back.
fn checked(docs: Vec<Value>) -> Vec<Value> {
    xray_testkit::checked(docs)
}

/// Rules that sample every request, so that tests see every segment.
fn sample_all() -> SharedSampler {
    Arc::new(LocalSampler::new(
        SamplingRules::builder()
            .with_default(0, 1.0)
            .build()
            .unwrap(),
    ))
}

/// Rules that sample nothing: only a caller's `Sampled=1` records a trace.
fn sample_none() -> SharedSampler {
    Arc::new(LocalSampler::new(
        SamplingRules::builder()
            .with_default(0, 0.0)
            .build()
            .unwrap(),
    ))
}

fn udp_recorder(sink: &UdpSink) -> Recorder {
    Recorder::builder()
        .ignore_environment()
        .with_sampler(sample_all())
        .with_service_name("orders")
        .with_daemon_address(DaemonAddress::new(sink.addr()))
        .build()
        .expect("recorder")
}

/// A recorder sampling everything into memory, streaming past `threshold` completed
/// subsegments.
fn streaming_recorder(threshold: usize) -> (Recorder, InMemoryEmitter) {
    let emitter = InMemoryEmitter::with_capacity(100_000);
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_sampler(sample_all())
        .with_emitter(emitter.clone())
        .with_streaming_threshold(threshold)
        .build()
        .expect("recorder");
    (recorder, emitter)
}

fn memory_recorder() -> (Recorder, InMemoryEmitter) {
    let emitter = InMemoryEmitter::with_capacity(100_000);
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_sampler(sample_all())
        .with_service_name("orders")
        .with_emitter(emitter.clone())
        .build()
        .expect("recorder");
    (recorder, emitter)
}

#[derive(Debug)]
struct Boom;
impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("inventory unavailable")
    }
}
impl std::error::Error for Boom {}

#[test]
fn every_field_arrives_over_udp() {
    let sink = UdpSink::start();
    let recorder = udp_recorder(&sink);
    let header: TraceHeader =
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
            .parse()
            .unwrap();
    let segment = recorder.begin_segment_with("orders", Some(&header), &SamplingRequest::new());
    segment.put_annotation("tenant", "blue");
    segment.put_annotation("priority", true);
    segment.put_metadata("basket", &json!({"items": 3}));
    let sub = segment.begin_subsegment("load-basket");
    sub.put_annotation("count", 3);
    sub.add_error(&Boom);
    let sub_id = sub.id();
    sub.end();
    let seg_id = segment.id();
    segment.end();

    let docs = checked(sink.documents(1));
    assert_eq!(docs.len(), 1);
    let d = &docs[0];
    assert_eq!(d["name"], "orders");
    assert_eq!(d["id"], seg_id.to_string());
    assert_eq!(d["trace_id"], "1-5759e988-bd862e3fe1be46a994272793");
    assert_eq!(d["parent_id"], "53995c3f42cd8ad8");
    assert!(d["start_time"].as_f64().unwrap() <= d["end_time"].as_f64().unwrap());
    assert!(d.get("in_progress").is_none());
    assert_eq!(d["annotations"]["tenant"], "blue");
    assert_eq!(d["annotations"]["priority"], true);
    assert_eq!(d["metadata"]["default"]["basket"]["items"], 3);
    assert_eq!(d["aws"]["xray"]["sdk"], "X-Ray for Rust");
    let s = &d["subsegments"][0];
    assert_eq!(s["name"], "load-basket");
    assert_eq!(s["id"], sub_id.to_string());
    assert_eq!(s["annotations"]["count"], 3);
    assert_eq!(s["fault"], true);
    assert_eq!(
        s["cause"]["exceptions"][0]["message"],
        "inventory unavailable"
    );
    assert!(
        s.get("type").is_none(),
        "embedded subsegments carry no type"
    );
    assert_eq!(recorder.stats().transport.sent, 1);
}

#[test]
fn a_bad_annotation_is_refused_and_never_sent() {
    let (recorder, emitter) = memory_recorder();
    let segment = recorder.begin_segment("orders");
    segment.put_annotation("bad key!", 1);
    segment.put_annotation("nan", f64::NAN);
    segment.put_annotation("good", 1);
    segment.end();
    let doc = &checked(emitter.documents())[0];
    assert_eq!(doc["annotations"], json!({"good": 1}));
    assert_eq!(recorder.refused().annotations, 2);
}

#[test]
fn many_threads_produce_separate_complete_traces() {
    let sink = UdpSink::start();
    let recorder = udp_recorder(&sink);
    let threads = 8;
    let per_thread = 25;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let recorder = recorder.clone();
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    let segment = recorder.begin_segment("orders");
                    let _g = segment.enter();
                    segment.put_annotation("thread", t);
                    segment.put_annotation("n", i);
                    for _ in 0..3 {
                        let sub = recorder.begin_subsegment("work");
                        sub.put_annotation("thread", t);
                        sub.put_annotation("n", i);
                    }
                    drop(_g);
                    segment.end();
                    // Pace the burst so the loopback socket buffer never overflows.
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let docs = checked(sink.documents(threads * per_thread));
    assert_eq!(docs.len(), threads * per_thread);
    let mut traces = HashSet::new();
    for d in &docs {
        assert!(traces.insert(d["trace_id"].as_str().unwrap().to_owned()));
        let subs = d["subsegments"].as_array().unwrap();
        assert_eq!(subs.len(), 3);
        for s in subs {
            assert_eq!(s["annotations"]["thread"], d["annotations"]["thread"]);
            assert_eq!(s["annotations"]["n"], d["annotations"]["n"]);
        }
    }
}

#[test]
fn tokio_tasks_keep_their_context_across_awaits_and_threads() {
    use xray_sdk::FutureExt;
    let (recorder, emitter) = memory_recorder();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let recorder = recorder.clone();
            let segment = recorder.begin_segment("orders");
            segment.put_annotation("n", i);
            let expected = segment.id();
            tasks.push(tokio::spawn(segment.instrument(async move {
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                    assert_eq!(current().map(|e| e.id()), Some(expected));
                    let sub = recorder.begin_subsegment("step");
                    sub.put_annotation("n", i);
                    let inner = tokio::spawn(
                        async move {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            current().map(|e| e.id())
                        }
                        .in_current_context(),
                    );
                    // Not entered: the spawned task sees the segment, not this subsegment.
                    assert_eq!(inner.await.unwrap(), Some(expected));
                    sub.end();
                }
            })));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let docs = checked(emitter.documents());
    assert_eq!(docs.len(), 200);
    for d in &docs {
        let subs = d["subsegments"].as_array().unwrap();
        assert_eq!(subs.len(), 3);
        for s in subs {
            assert_eq!(s["annotations"]["n"], d["annotations"]["n"]);
        }
    }
}

#[test]
fn a_dropped_future_ends_its_subsegment() {
    let (recorder, emitter) = memory_recorder();
    let segment = recorder.begin_segment("orders");
    {
        let _g = segment.enter();
        let sub = recorder.begin_subsegment("cancelled");
        let fut = sub.instrument(std::future::pending::<()>());
        drop(fut);
    }
    segment.end();
    let docs = checked(emitter.documents());
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["subsegments"][0]["name"], "cancelled");
    assert!(docs[0]["subsegments"][0]["end_time"].is_number());
}

#[test]
fn ten_thousand_subsegments_each_arrive_exactly_once() {
    for threshold in [100, usize::MAX] {
        let (recorder, emitter) = streaming_recorder(threshold);
        let segment = recorder.begin_segment("batch");
        let mut ids = HashSet::new();
        for _ in 0..10_000 {
            let sub = segment.begin_subsegment("item");
            ids.insert(sub.id().to_string());
        }
        let seg_id = segment.id().to_string();
        segment.end();

        let mut seen = HashMap::new();
        for raw in emitter.raw_documents() {
            assert!(
                raw.len() + util::HEADER.len() <= 63 * 1024,
                "datagram over budget"
            );
            let doc: Value = serde_json::from_slice(&raw).unwrap();
            let mut all = Vec::new();
            walk(&doc, &mut all);
            for e in all {
                *seen
                    .entry(e["id"].as_str().unwrap().to_owned())
                    .or_insert(0) += 1;
            }
            if doc.get("type").is_some() {
                assert_eq!(doc["type"], "subsegment");
                assert_eq!(doc["parent_id"], seg_id.as_str());
                assert!(doc["trace_id"].is_string());
            }
        }
        assert_eq!(seen.remove(&seg_id), Some(1), "threshold {threshold}");
        assert_eq!(seen.len(), 10_000);
        assert!(seen.values().all(|&n| n == 1));
        assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), ids);
    }
}

#[test]
fn nested_subtrees_arrive_whole_in_the_order_they_completed() {
    let (recorder, emitter) = memory_recorder();
    let segment = recorder.begin_segment("root");
    let a = segment.begin_subsegment("a");
    let b = segment.begin_subsegment("b");
    let a1 = a.begin_subsegment("a1");
    let a1x = a1.begin_subsegment("a1x");
    let a_id = a.id();
    // `a` ends first but completes last: its subtree is still open.
    a.end();
    assert!(a1.is_recording(), "a child outlives its ended parent");
    b.end();
    a1x.end();
    a1.put_annotation("late", true);
    a1.end();
    // A document embedded by hand comes before the subsegments recorded under the segment.
    segment.update(|doc| {
        doc.add_subsegment(xray_sdk::Document::new(
            "manual",
            xray_sdk::SegmentId::new(),
            1.0,
        ))
    });
    segment.end();

    let docs = checked(emitter.documents());
    assert_eq!(docs.len(), 1);
    let names = |d: &Value| -> Vec<String> {
        d["subsegments"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let root = &docs[0];
    assert_eq!(names(root), ["manual", "b", "a"]);
    let a = &root["subsegments"][2];
    assert_eq!(a["id"], a_id.to_string());
    assert_eq!(names(a), ["a1"]);
    assert_eq!(a["subsegments"][0]["annotations"]["late"], true);
    assert_eq!(names(&a["subsegments"][0]), ["a1x"]);
    assert!(root["subsegments"][1].get("subsegments").is_none());
    // Read back as a `Document`, the tree serializes to the same JSON value.
    let doc: xray_sdk::Document = serde_json::from_value(root.clone()).unwrap();
    assert_eq!(&serde_json::to_value(&doc).unwrap(), root);
}

#[test]
fn a_discarded_subsegment_and_everything_under_it_is_left_out() {
    for threshold in [0, 100] {
        let (recorder, emitter) = streaming_recorder(threshold);
        let segment = recorder.begin_segment("root");
        let prepared = segment.begin_subsegment("prepared");
        let inner = prepared.begin_subsegment("inner");
        let done_inner = prepared.begin_subsegment("done-inner");
        // Discarded while its children are open: each goes when it ends, even with streaming
        // (threshold 0) sending every other completed subtree at once.
        prepared.discard();
        done_inner.end();
        segment.begin_subsegment("kept").end();
        inner.put_annotation("still", true);
        inner.end();
        segment.end();

        let docs = checked(emitter.documents());
        let mut names = Vec::new();
        for d in &docs {
            walk_names(d, &mut names);
        }
        names.sort();
        assert_eq!(names, ["kept", "root"], "threshold {threshold}");
        assert_eq!(recorder.stats().transport.dropped_too_large, 0);
    }
}

#[test]
fn nothing_under_a_discarded_subsegment_is_streamed() {
    let (recorder, emitter) = streaming_recorder(0);
    let segment = recorder.begin_segment("root");
    let doomed = segment.begin_subsegment("doomed");
    let child = doomed.begin_subsegment("child");
    let handle = doomed.entity().clone();
    doomed.discard();
    // Completes under `child`, which is open and not itself discarded.
    child.begin_subsegment("grandchild").end();
    let late = handle.begin_subsegment("begun-after");
    late.end();
    child.end();
    segment.end();
    let mut names = Vec::new();
    for d in checked(emitter.documents()) {
        walk_names(&d, &mut names);
    }
    assert_eq!(names, ["root"]);
}

fn walk_names(doc: &Value, out: &mut Vec<String>) {
    out.push(doc["name"].as_str().unwrap().to_owned());
    for s in doc["subsegments"].as_array().into_iter().flatten() {
        walk_names(s, out);
    }
}

#[test]
fn a_segment_completes_when_its_last_open_child_is_discarded() {
    let (recorder, emitter) = memory_recorder();
    let segment = recorder.begin_segment("root");
    let sub = segment.begin_subsegment("prepared");
    segment.end();
    assert!(emitter.documents().is_empty(), "a child is still open");
    sub.discard();
    let docs = checked(emitter.documents());
    assert_eq!(docs.len(), 1);
    assert!(docs[0].get("subsegments").is_none());
}

#[test]
fn streaming_sends_completed_subtrees_ahead_of_the_segment() {
    let (recorder, emitter) = streaming_recorder(2);
    let segment = recorder.begin_segment("api");
    let open = segment.begin_subsegment("open");
    for _ in 0..3 {
        segment.begin_subsegment("done").end();
    }
    // Three completed subsegments exceed the threshold of 2: they left already.
    assert_eq!(emitter.len(), 3);
    for d in checked(emitter.documents()) {
        assert_eq!(d["type"], "subsegment");
        assert_eq!(d["parent_id"], segment.id().to_string());
    }
    open.end();
    segment.end();
    let docs = checked(emitter.documents());
    assert_eq!(docs.len(), 4);
    let seg = &docs[3];
    assert_eq!(seg["subsegments"].as_array().unwrap().len(), 1);
    assert_eq!(seg["subsegments"][0]["name"], "open");
    assert_eq!(recorder.stats().streamed, 3);
}

#[test]
fn an_oversize_document_is_split_then_trimmed_never_lost() {
    let (recorder, emitter) = memory_recorder();
    let blob = "x".repeat(30_000);
    let segment = recorder.begin_segment("big");
    for _ in 0..3 {
        let s = segment.begin_subsegment("part");
        s.put_metadata("blob", &blob);
    }
    let huge = segment.begin_subsegment("huge");
    huge.put_metadata("blob", &"y".repeat(200_000));
    huge.put_annotation("kept", true);
    drop(huge);
    segment.end();
    let docs = emitter.raw_documents();
    assert_eq!(
        docs.len(),
        5,
        "four subsegments sent alone, then the segment"
    );
    for raw in &docs {
        assert!(raw.len() + util::HEADER.len() <= 63 * 1024);
    }
    let parsed = checked(emitter.documents());
    let huge = parsed.iter().find(|d| d["name"] == "huge").unwrap();
    assert_eq!(huge["annotations"]["kept"], true);
    assert_eq!(huge["type"], "subsegment");
    let stats = recorder.stats().transport;
    assert_eq!(stats.split, 4);
    assert_eq!(stats.truncated, 1);
    assert_eq!(stats.dropped_too_large, 0);
}

#[test]
fn a_daemon_that_is_down_is_counted_not_raised() {
    // Bind then drop a socket: nothing listens at that port afterwards.
    let addr = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_sampler(sample_all())
        .with_daemon_address(DaemonAddress::new(addr))
        .build()
        .unwrap();
    for _ in 0..5 {
        recorder.begin_segment("orders").end();
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = recorder.stats().transport;
    assert_eq!(stats.queued, 5);
    assert_eq!(stats.sent + stats.failed, 5);
    assert!(stats.failed >= 1, "{stats:?}");
    assert_eq!(
        stats.last_error,
        Some(TransportErrorKind::Refused),
        "{stats:?}"
    );
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn sdk_disabled_by_environment_records_nothing() {
    let sink = UdpSink::start();
    for pairs in [
        [("AWS_XRAY_SDK_ENABLED", "false")],
        [("AWS_XRAY_SDK_DISABLED", "true")],
    ] {
        let mut pairs = pairs.to_vec();
        let addr = sink.addr().to_string();
        pairs.push(("AWS_XRAY_DAEMON_ADDRESS", &addr));
        let recorder = Recorder::builder().with_env(env(&pairs)).build().unwrap();
        assert!(!recorder.is_enabled());
        let segment = recorder.begin_segment("orders");
        assert!(!segment.is_recording());
        segment.put_annotation("a", 1);
        segment.begin_subsegment("x").end();
        segment.end();
    }
    assert!(sink.settle(Duration::from_millis(100)).is_empty());
}

#[test]
fn environment_overrides_the_builder() {
    let sink = UdpSink::start();
    let addr = format!("tcp:127.0.0.1:9 udp:{}", sink.addr());
    let recorder = Recorder::builder()
        .with_service_name("from-code")
        .with_env(env(&[
            ("AWS_XRAY_DAEMON_ADDRESS", &addr),
            ("AWS_XRAY_TRACING_NAME", "from-env"),
        ]))
        .build()
        .unwrap();
    recorder.begin_segment("from-code").end();
    let docs = checked(sink.documents(1));
    assert_eq!(docs[0]["name"], "from-env");
}

#[test]
fn bad_environment_values_are_typed_errors() {
    let e = Recorder::builder()
        .with_env(env(&[("AWS_XRAY_DAEMON_ADDRESS", "nonsense")]))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("AWS_XRAY_DAEMON_ADDRESS"), "{e}");
    let e = Recorder::builder()
        .with_env(env(&[("AWS_XRAY_CONTEXT_MISSING", "PANIC")]))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("AWS_XRAY_CONTEXT_MISSING"), "{e}");
}

#[test]
fn context_missing_strategies() {
    for (strategy, counted, is_err) in [
        (ContextMissing::LogError, 1, false),
        (ContextMissing::IgnoreError, 0, false),
        (ContextMissing::RuntimeError, 0, true),
    ] {
        let recorder = Recorder::builder()
            .ignore_environment()
            .with_sampler(sample_all())
            .with_emitter(InMemoryEmitter::new())
            .with_context_missing(strategy)
            .build()
            .unwrap();
        let r = recorder.try_begin_subsegment("orphan");
        assert_eq!(r.is_err(), is_err, "{strategy:?}");
        if let Ok(sub) = r {
            assert!(!sub.is_recording());
        }
        assert_eq!(recorder.stats().context_missing, counted, "{strategy:?}");
        // The infallible call never fails the application, whatever the strategy.
        assert!(!recorder.begin_subsegment("orphan").is_recording());
    }
}

#[test]
fn context_missing_from_the_environment() {
    let recorder = Recorder::builder()
        .with_emitter(InMemoryEmitter::new())
        .with_env(env(&[("AWS_XRAY_CONTEXT_MISSING", "RUNTIME_ERROR")]))
        .build()
        .unwrap();
    assert!(recorder.try_begin_subsegment("orphan").is_err());
}

#[test]
fn lambda_facade_sends_each_subsegment_as_it_ends() {
    let sink = UdpSink::start();
    let addr = sink.addr().to_string();
    let recorder = Recorder::builder()
        .with_env(env(&[
            ("LAMBDA_TASK_ROOT", "/var/task"),
            ("AWS_XRAY_DAEMON_ADDRESS", &addr),
        ]))
        .build()
        .unwrap();
    let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    let facade = recorder.begin_lambda_invocation(Some(header));
    let _g = facade.enter();
    let a = recorder.begin_subsegment("first");
    let nested = a.begin_subsegment("nested");
    nested.end();
    a.end();
    // Sent as soon as it ended, before the invocation ends.
    let docs = checked(sink.documents(2));
    assert_eq!(docs.len(), 2);
    let first = docs.iter().find(|d| d["name"] == "first").unwrap();
    assert_eq!(first["type"], "subsegment");
    assert_eq!(first["trace_id"], "1-5759e988-bd862e3fe1be46a994272793");
    assert_eq!(first["parent_id"], "53995c3f42cd8ad8");
    let nested = docs.iter().find(|d| d["name"] == "nested").unwrap();
    assert_eq!(nested["parent_id"], first["id"]);
    recorder.begin_subsegment("second").end();
    drop(_g);
    facade.end();
    let all = sink.settle(Duration::from_millis(100));
    assert_eq!(all.len(), 3, "the facade itself is never sent");

    // Sampled=0: nothing at all.
    let unsampled = recorder.begin_lambda_invocation(Some(
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
    ));
    assert!(!unsampled.is_recording());
    unsampled.begin_subsegment("x").end();
    assert_eq!(sink.settle(Duration::from_millis(100)).len(), 3);
}

#[test]
fn concurrent_lambda_invocations_never_share_a_trace() {
    let (recorder, emitter) = {
        let emitter = InMemoryEmitter::new();
        let r = Recorder::builder()
            .with_env(env(&[("LAMBDA_TASK_ROOT", "/var/task")]))
            .with_emitter(emitter.clone())
            .build()
            .unwrap();
        (r, emitter)
    };
    let handles: Vec<_> = (0..8u32)
        .map(|i| {
            let recorder = recorder.clone();
            std::thread::spawn(move || {
                let header = format!("Root=1-5759e988-{i:024x};Parent={:016x};Sampled=1", i + 1);
                for _ in 0..20 {
                    let facade = recorder.begin_lambda_invocation(Some(&header));
                    let _g = facade.enter();
                    let s = recorder.begin_subsegment("handler");
                    s.put_annotation("invocation", i);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let docs = checked(emitter.documents());
    assert_eq!(docs.len(), 160);
    for d in docs {
        let i = d["annotations"]["invocation"].as_u64().unwrap();
        assert_eq!(d["trace_id"], format!("1-5759e988-{i:024x}"));
        assert_eq!(d["parent_id"], format!("{:016x}", i + 1));
    }
}

#[test]
fn unsampled_segments_propagate_but_send_nothing() {
    let (recorder, emitter) = memory_recorder();
    let header: TraceHeader = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0"
        .parse()
        .unwrap();
    let segment = recorder.begin_segment_with("orders", Some(&header), &SamplingRequest::new());
    assert!(!segment.is_sampled());
    let sub = segment.begin_subsegment("call");
    let down = sub.trace_header().to_string();
    assert!(down.starts_with("Root=1-5759e988-bd862e3fe1be46a994272793;Parent="));
    assert!(down.ends_with(";Sampled=0"));
    drop(sub);
    segment.end();
    assert!(emitter.is_empty());
}

#[test]
fn response_header_reports_the_decision_when_asked() {
    let (recorder, _emitter) = memory_recorder();
    let asked: TraceHeader = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=?"
        .parse()
        .unwrap();
    let s = recorder.begin_segment_with("orders", Some(&asked), &SamplingRequest::new());
    // The default rules take the first request of each second.
    assert_eq!(
        s.response_header().to_string(),
        "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
    );
    let told: TraceHeader = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
        .parse()
        .unwrap();
    let s = recorder.begin_segment_with("orders", Some(&told), &SamplingRequest::new());
    assert_eq!(
        s.response_header().to_string(),
        "Root=1-5759e988-bd862e3fe1be46a994272793"
    );
}

#[test]
fn ignoring_upstream_decisions_at_an_untrusted_edge() {
    let emitter = InMemoryEmitter::new();
    let clock = Arc::new(ManualClock::new(1_735_689_600_000_000));
    let recorder = RecorderBuilder::new()
        .ignore_environment()
        .with_emitter(emitter.clone())
        .with_clock(clock)
        .with_upstream_decisions(false)
        .build()
        .unwrap();
    let forced: TraceHeader = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
        .parse()
        .unwrap();
    let sampled = (0..100)
        .filter(|_| {
            recorder
                .begin_segment_with("edge", Some(&forced), &SamplingRequest::new())
                .is_sampled()
        })
        .count();
    // One a second from the reservoir, then 5 %: far from the 100 a client asked for.
    assert!(sampled < 30, "{sampled}");
}

#[test]
fn global_recorder_defaults_without_configuration() {
    // Reading the global recorder without installing one gives a working default.
    let r = Recorder::global();
    assert!(!r.service_name().is_empty());
    assert!(
        Recorder::builder()
            .build()
            .unwrap()
            .install_global()
            .is_err()
    );
}

#[test]
fn nesting_depth_is_bounded_and_documents_stay_parseable() {
    let (recorder, emitter) = memory_recorder();
    let segment = recorder.begin_segment("deep");
    let mut chain: Vec<xray_sdk::Subsegment> = Vec::new();
    for _ in 0..100 {
        let next = match chain.last() {
            Some(parent) => parent.begin_subsegment("level"),
            None => segment.begin_subsegment("level"),
        };
        chain.push(next);
    }
    while let Some(s) = chain.pop() {
        s.end();
    }
    segment.end();
    // serde_json refuses input nested deeper than 128 levels: the document must parse.
    let docs = checked(emitter.documents());
    assert_eq!(docs.len(), 1);
    let mut depth = 0;
    let mut node = &docs[0];
    while let Some(child) = node.get("subsegments").and_then(|s| s.get(0)) {
        depth += 1;
        node = child;
    }
    assert_eq!(depth, 48);
    // One refusal: what would nest under the refused subsegment is not recorded either.
    assert_eq!(recorder.stats().too_deep, 1);
}

#[test]
fn a_segment_waits_for_subsegments_that_outlive_it() {
    let (recorder, emitter) = memory_recorder();
    let segment = recorder.begin_segment("api");
    let background = segment.begin_subsegment("background");
    segment.end();
    assert!(
        emitter.is_empty(),
        "sent only when every subsegment has ended"
    );
    let late = background.begin_subsegment("late child");
    drop(background);
    assert!(emitter.is_empty());
    late.end();
    let docs = checked(emitter.documents());
    assert_eq!(docs.len(), 1);
    assert_eq!(
        docs[0]["subsegments"][0]["subsegments"][0]["name"],
        "late child"
    );
    let seg_end = docs[0]["end_time"].as_f64().unwrap();
    let child_end = docs[0]["subsegments"][0]["end_time"].as_f64().unwrap();
    assert!(child_end >= seg_end);
}

#[test]
fn ten_thousand_subsegments_over_udp() {
    let sink = UdpSink::start();
    let recorder = udp_recorder(&sink);
    let segment = recorder.begin_segment("batch");
    let mut ids = HashSet::new();
    for _ in 0..10_000 {
        let sub = segment.begin_subsegment("item");
        ids.insert(sub.id().to_string());
    }
    ids.insert(segment.id().to_string());
    segment.end();
    let sent = recorder.stats().transport.sent as usize;
    let datagrams = sink.wait_for(sent);
    assert_eq!(datagrams.len(), sent, "the loopback socket lost datagrams");
    let mut seen = HashMap::new();
    for d in checked(sink.documents(sent)) {
        let mut all = Vec::new();
        walk(&d, &mut all);
        for e in all {
            *seen
                .entry(e["id"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
        }
    }
    assert!(seen.values().all(|&n| n == 1));
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), ids);
}

#[test]
fn one_segment_shared_by_many_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<xray_sdk::Entity>();
    assert_send_sync::<xray_sdk::Segment>();
    assert_send_sync::<xray_sdk::Subsegment>();

    let (recorder, emitter) = memory_recorder();
    let segment = recorder.begin_segment("fan-out");
    std::thread::scope(|scope| {
        for t in 0..8 {
            let entity = segment.entity().clone();
            scope.spawn(move || {
                for _ in 0..100 {
                    let s = entity.begin_subsegment("part");
                    s.put_annotation("thread", t);
                    let inner = s.begin_subsegment("inner");
                    drop(s); // the parent ends first; the child keeps it open
                    inner.end();
                }
            });
        }
    });
    segment.end();
    let docs = checked(emitter.documents());
    let mut all = Vec::new();
    for d in &docs {
        walk(d, &mut all);
    }
    assert_eq!(all.iter().filter(|e| e["name"] == "part").count(), 800);
    assert_eq!(all.iter().filter(|e| e["name"] == "inner").count(), 800);
}

#[test]
fn background_sender_and_flush() {
    let sink = UdpSink::start();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_sampler(sample_all())
        .with_daemon_address(DaemonAddress::new(sink.addr()))
        .with_background_sender(true)
        .build()
        .unwrap();
    for _ in 0..50 {
        recorder.begin_segment("job").end();
    }
    assert!(recorder.flush(Duration::from_secs(5)).is_complete());
    assert_eq!(recorder.stats().transport.sent, 50);
    assert_eq!(sink.wait_for(50).len(), 50);
}

#[test]
fn a_rules_file_is_used_and_a_bad_one_falls_back_to_the_defaults() {
    use xray_sdk::sampling::DecidingRule;
    let dir = std::env::temp_dir().join(format!("xray-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.json");
    std::fs::write(
        &good,
        r#"{"version": 2, "default": {"fixed_target": 0, "rate": 0.0},
            "rules": [{"description": "all checkouts", "host": "*", "http_method": "*",
                       "url_path": "/checkout*", "fixed_target": 0, "rate": 1.0}]}"#,
    )
    .unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"version": 2, "rules": []}"#).unwrap();
    let req = SamplingRequest::new().with_url_path("/checkout/42");

    let recorder = Recorder::builder()
        .ignore_environment()
        .with_emitter(InMemoryEmitter::new())
        .with_sampling_rules_file(&good)
        .build()
        .unwrap();
    assert_eq!(
        recorder.sampler().explain(&req).decision().rule(),
        &DecidingRule::Local(0)
    );
    assert!(recorder.begin_segment_with("api", None, &req).is_sampled());

    for path in [bad, dir.join("missing.json")] {
        let recorder = Recorder::builder()
            .ignore_environment()
            .with_emitter(InMemoryEmitter::new())
            .with_sampling_rules_file(&path)
            .build()
            .expect("a bad rules file never fails the build");
        assert_eq!(
            recorder.sampler().explain(&req).decision().rule(),
            &DecidingRule::LocalDefault,
            "{}",
            path.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn outgoing_headers_carry_the_incoming_extra_fields_but_never_self() {
    let incoming: TraceHeader = "Self=1-67891234-12456789abcdef012345678;\
         Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;\
         Lineage=a87bd80c:0|2ab5c7d1:1;Tenant=blue"
        .parse()
        .unwrap();
    let sink = UdpSink::start();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_daemon_address(DaemonAddress::new(sink.addr()))
        .with_sampler(sample_all())
        .build()
        .unwrap();
    for upstream in [
        incoming.clone(),
        incoming.clone().with_sampled(xray_sdk::header::Sampled::No),
    ] {
        let segment = recorder.begin_segment_with("api", Some(&upstream), &SamplingRequest::new());
        let call = segment.begin_subsegment("call");
        let nested = call.begin_subsegment("retry");
        for entity in [segment.entity(), call.entity(), nested.entity()] {
            let sampled = if segment.is_sampled() { 1 } else { 0 };
            assert_eq!(
                entity.trace_header().to_string(),
                format!(
                    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent={};Sampled={sampled};\
                     Lineage=a87bd80c:0|2ab5c7d1:1;Tenant=blue",
                    entity.id()
                )
            );
        }
        nested.end();
        call.end();
        segment.end();
    }
    // A new trace has nothing to forward.
    let fresh = recorder.begin_segment("fresh");
    assert_eq!(fresh.trace_header().extra().count(), 0);
    fresh.end();
}

#[test]
fn a_lambda_invocation_forwards_the_lineage_it_was_invoked_with() {
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_daemon_address(DaemonAddress::new(UdpSink::start().addr()))
        .build()
        .unwrap();
    let invocation = recorder.begin_lambda_invocation(Some(
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;\
         Lineage=a87bd80c:0",
    ));
    let call = invocation.begin_subsegment("DynamoDB");
    assert_eq!(call.trace_header().lineage(), Some("a87bd80c:0"));
    call.end();
    invocation.end();
}

#[test]
fn a_root_in_upper_case_is_recorded_and_forwarded_as_received() {
    let sink = UdpSink::start();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_daemon_address(DaemonAddress::new(sink.addr()))
        .with_sampler(sample_all())
        .build()
        .unwrap();
    let upper = "1-632BB806-BD862E3FE1BE46A994272793";
    let incoming: TraceHeader = format!("Root={upper};Parent=53995c3f42cd8ad8;Sampled=1")
        .parse()
        .unwrap();
    let segment = recorder.begin_segment_with("api", Some(&incoming), &SamplingRequest::new());
    let call = segment.begin_subsegment("call");
    assert_eq!(
        call.trace_header().to_string(),
        format!("Root={upper};Parent={};Sampled=1", call.id())
    );
    call.end();
    segment.end();
    let docs = checked(sink.documents(1));
    assert_eq!(docs[0]["trace_id"], upper);
    assert_eq!(docs[0]["parent_id"], "53995c3f42cd8ad8");
}

#[test]
fn a_malformed_root_starts_a_new_trace_that_keeps_the_rest_of_the_header() {
    let sink = UdpSink::start();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_daemon_address(DaemonAddress::new(sink.addr()))
        .with_sampler(sample_none())
        .build()
        .unwrap();
    // The sampler samples nothing: the caller's `Sampled=1` is what records this trace.
    let incoming: TraceHeader =
        "Root=1-5759e988-bd862e3fe1be46a99427279;Parent=bad;Sampled=1;Lineage=a87bd80c:0"
            .parse()
            .unwrap();
    let segment = recorder.begin_segment_with("api", Some(&incoming), &SamplingRequest::new());
    assert!(segment.is_sampled());
    assert_eq!(segment.trace_id(), incoming.root());
    let call = segment.begin_subsegment("call");
    assert_eq!(
        call.trace_header().to_string(),
        format!(
            "Root={};Parent={};Sampled=1;Lineage=a87bd80c:0",
            incoming.root(),
            call.id()
        )
    );
    call.end();
    segment.end();
    let docs = checked(sink.documents(1));
    assert_eq!(docs[0]["trace_id"], incoming.root().to_string());
    // `Parent=bad` is no segment id: a document naming it would be refused.
    assert!(docs[0].get("parent_id").is_none(), "{}", docs[0]);
}
