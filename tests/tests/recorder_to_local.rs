//! xray-sdk's recorder sending to the xray-local daemon over real UDP: what the SDK splits
//! (streaming, the size guard, Lambda) the daemon puts back together as one trace.

use std::sync::Arc;
use std::time::Duration;

use xray_local::XRayLocal;
use xray_sdk::sampling::{LocalSampler, SamplingRules};
use xray_sdk::{DaemonAddress, Recorder, TraceHeader};

fn daemon() -> XRayLocal {
    XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .quiet_period(Duration::from_millis(200))
        .start()
        .expect("xray-local starts")
}

fn recorder(daemon: &XRayLocal, threshold: usize) -> Recorder {
    Recorder::builder()
        .ignore_environment()
        .with_daemon_address(DaemonAddress::new(daemon.udp_addr()))
        .with_sampler(Arc::new(LocalSampler::new(
            SamplingRules::builder()
                .with_default(0, 1.0)
                .build()
                .unwrap(),
        )))
        .with_streaming_threshold(threshold)
        .build()
        .unwrap()
}

#[test]
fn a_streamed_segment_is_reassembled_by_the_daemon() {
    let daemon = daemon();
    let recorder = recorder(&daemon, 5);
    let segment = recorder.begin_segment("orders");
    let trace_id = segment.trace_id();
    let outer = segment.begin_subsegment("outer");
    for i in 0..20 {
        let s = outer.begin_subsegment("step");
        s.put_annotation("i", i);
    }
    outer.end();
    segment.end();
    assert!(recorder.stats().streamed > 0, "{:?}", recorder.stats());

    let trace = daemon
        .wait_for_trace(trace_id, Duration::from_secs(10))
        .expect("the trace arrives");
    xray_testkit::assert_all_valid(trace.segments().iter().chain(trace.orphans()));
    assert!(trace.is_complete());
    assert_eq!(trace.segments().len(), 1);
    assert!(trace.orphans().is_empty());
    let outer = trace.find("outer").expect("outer subsegment");
    assert_eq!(outer.subsegments().count(), 20);
    assert_eq!(trace.find_all("step").count(), 20);
    assert_eq!(daemon.stats().dropped_total(), 0);
}

#[test]
fn an_oversize_segment_is_split_and_reassembled() {
    let daemon = daemon();
    let recorder = recorder(&daemon, usize::MAX);
    let segment = recorder.begin_segment("reports");
    let trace_id = segment.trace_id();
    for _ in 0..6 {
        let s = segment.begin_subsegment("chunk");
        s.put_metadata("rows", &vec!["x".repeat(100); 150]);
    }
    segment.end();
    assert_eq!(recorder.stats().transport.split, 6);

    let trace = daemon
        .wait_for_trace(trace_id, Duration::from_secs(10))
        .expect("the trace arrives");
    xray_testkit::assert_all_valid(trace.segments().iter().chain(trace.orphans()));
    assert_eq!(trace.find_all("chunk").count(), 6);
    assert!(trace.orphans().is_empty());
    assert_eq!(daemon.stats().dropped_total(), 0);
}

#[test]
fn lambda_subsegments_arrive_under_the_function_segment_id() {
    let daemon = daemon();
    let addr = daemon.udp_addr().to_string();
    let recorder = Recorder::builder()
        .with_env(move |k| match k {
            "LAMBDA_TASK_ROOT" => Some("/var/task".into()),
            "AWS_XRAY_DAEMON_ADDRESS" => Some(addr.clone()),
            _ => None,
        })
        .build()
        .unwrap();
    let header: TraceHeader =
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
            .parse()
            .unwrap();
    let facade = recorder.begin_lambda_invocation(Some(&header.to_string()));
    {
        let _g = facade.enter();
        recorder.begin_subsegment("handler").end();
    }
    facade.end();
    // Lambda sends the function's segment itself; here the daemon sees only the orphan pieces.
    daemon.wait_for_stats(Duration::from_secs(10), |s| s.accepted() >= 1);
    let trace = daemon.trace(header.root()).expect("trace held");
    let handler = trace.find("handler").expect("handler subsegment");
    assert_eq!(handler.parent_id(), Some("53995c3f42cd8ad8"));
    assert_eq!(
        handler.get("type").and_then(|t| t.as_str()),
        Some("subsegment")
    );
}
