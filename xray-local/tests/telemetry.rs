//! `PutTelemetryRecords` from a forwarding xray-local, as the AWS daemon sends them: the
//! interval's counts, nothing before the first datagram, the failed calls by kind. X-Ray is a
//! real HTTP server on 127.0.0.1 answering as the API documents (moto keeps no records).

#[path = "support/xray_api.rs"]
mod xray_api;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use serde_json::Value;
use xray_api::Xray;
use xray_local::XRayLocal;

const RESOURCE: &str = "arn:aws:ec2:eu-west-3:123456789012:instance/i-0123456789abcdef0";

fn daemon(xray: &Xray) -> XRayLocal {
    XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .forward(
            xray.forward_config()
                .idle(Duration::from_millis(20))
                .retries(2, Duration::from_millis(5), Duration::from_millis(10))
                .resource_arn(RESOURCE)
                .telemetry(Some(Duration::from_millis(200))),
        )
        .start()
        .unwrap()
}

/// Every telemetry record X-Ray received so far, with the request fields of its call.
fn records(xray: &Xray) -> Vec<(Value, Value)> {
    xray.received()
        .iter()
        .filter(|r| r.path == "/TelemetryRecords")
        .flat_map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            let records = body["TelemetryRecords"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            records.into_iter().map(move |rec| (body.clone(), rec))
        })
        .collect()
}

fn sum(records: &[(Value, Value)], pointer: &str) -> u64 {
    records
        .iter()
        .map(|(_, r)| r.pointer(pointer).and_then(Value::as_u64).unwrap_or(0))
        .sum()
}

fn send(daemon: &XRayLocal, datagrams: &[String]) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for d in datagrams {
        socket.send_to(d.as_bytes(), daemon.udp_addr()).unwrap();
    }
}

fn segment(i: usize) -> String {
    format!(
        "{{\"format\":\"json\",\"version\":1}}\n{{\"name\":\"t\",\"id\":\"{i:016x}\",\
         \"trace_id\":\"1-5759e988-{i:024x}\",\"start_time\":1.0,\"end_time\":2.0}}"
    )
}

/// Waits until `done` holds for the records, or fails after 10 s.
fn until(xray: &Xray, done: impl Fn(&[(Value, Value)]) -> bool) -> Vec<(Value, Value)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let records = records(xray);
        if done(&records) {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "{} records so far, the last: {:?}; calls: {:?}",
            records.len(),
            records.last(),
            xray.received()
                .iter()
                .map(|r| r.path.clone())
                .collect::<std::collections::BTreeSet<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn each_interval_s_counts_reach_x_ray_and_nothing_before_the_first_datagram() {
    let xray = Xray::start();
    let daemon = daemon(&xray);
    // Three intervals with nothing received: no call at all.
    std::thread::sleep(Duration::from_millis(700));
    assert!(records(&xray).is_empty(), "{:?}", records(&xray));

    let mut datagrams: Vec<String> = (1..=5).map(segment).collect();
    datagrams.push("not a header\n{}".to_owned());
    datagrams.push("{\"format\":\"json\",\"version\":1}".to_owned());
    send(&daemon, &datagrams);
    let records = until(&xray, |r| {
        sum(r, "/SegmentsReceivedCount") >= 7 && sum(r, "/SegmentsSentCount") >= 5
    });
    assert_eq!(sum(&records, "/SegmentsReceivedCount"), 7);
    assert_eq!(sum(&records, "/SegmentsSentCount"), 5);
    assert_eq!(sum(&records, "/SegmentsRejectedCount"), 2);
    assert_eq!(sum(&records, "/SegmentsSpilloverCount"), 0);
    for (call, record) in &records {
        assert_eq!(call["ResourceARN"], RESOURCE);
        assert!(
            call["Hostname"].as_str().is_some_and(|h| !h.is_empty()),
            "{call}"
        );
        assert!(record["Timestamp"].as_f64().is_some(), "{record}");
        assert!(call["TelemetryRecords"].as_array().unwrap().len() <= 10);
    }
    daemon.shutdown();
}

#[test]
fn failed_uploads_are_counted_by_kind() {
    let xray = Xray::start_with(503);
    let daemon = daemon(&xray);
    send(&daemon, &[segment(9)]);
    // Two attempts, each a 503.
    let records = until(&xray, |r| {
        sum(r, "/BackendConnectionErrors/HTTPCode5XXCount") >= 2
    });
    assert_eq!(
        sum(&records, "/BackendConnectionErrors/HTTPCode5XXCount"),
        2
    );
    assert_eq!(
        sum(&records, "/BackendConnectionErrors/HTTPCode4XXCount"),
        0
    );
    assert_eq!(sum(&records, "/SegmentsSentCount"), 0);
    assert_eq!(sum(&records, "/SegmentsReceivedCount"), 1);
    daemon.shutdown();
}
