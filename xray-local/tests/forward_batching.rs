//! When forwarding sends a partial batch: after the idle time, even for a document that
//! arrives after a quiet spell, with no flush asked for. X-Ray is the stand-in of
//! `support/xray_api.rs`.

#[path = "support/xray_api.rs"]
mod xray_api;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use xray_api::Xray;
use xray_local::XRayLocal;

#[test]
fn a_lone_document_after_a_quiet_spell_goes_within_the_idle_time() {
    let xray = Xray::start();
    let daemon = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .forward(
            xray.forward_config()
                .idle(Duration::from_millis(100))
                .telemetry(None),
        )
        .start()
        .unwrap();
    // Long enough for the batcher to have gone to sleep on an empty queue.
    std::thread::sleep(Duration::from_millis(500));
    let datagram = "{\"format\":\"json\",\"version\":1}\n{\"name\":\"late\",\"id\":\"0000000000000001\",\
                    \"trace_id\":\"1-5759e988-000000000000000000000001\",\"start_time\":1.0,\"end_time\":2.0}";
    let sent = Instant::now();
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(datagram.as_bytes(), daemon.udp_addr())
        .unwrap();
    let deadline = sent + Duration::from_secs(10);
    while !xray.received().iter().any(|r| r.path == "/TraceSegments") {
        assert!(Instant::now() < deadline, "the partial batch never left");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(daemon.forward_stats().unwrap().uploaded, 1);
    daemon.shutdown();
}

#[test]
fn unprocessed_documents_go_again_only_when_the_reason_passes() {
    let xray = Xray::start_scripted(
        200,
        vec![
            r#"{"UnprocessedTraceSegments":[
                {"Id":"0000000000000001","ErrorCode":"ThrottlingException","Message":"slow down"},
                {"Id":"0000000000000002","ErrorCode":"InvalidTraceId","Message":"Invalid segment"}]}"#,
        ],
    );
    let daemon = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .forward(
            xray.forward_config()
                .idle(Duration::from_millis(200))
                .retries(3, Duration::from_millis(5), Duration::from_millis(10))
                .telemetry(None),
        )
        .start()
        .unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 1..=3 {
        let datagram = format!(
            "{{\"format\":\"json\",\"version\":1}}\n{{\"name\":\"d\",\"id\":\"{i:016x}\",\
             \"trace_id\":\"1-5759e988-{i:024x}\",\"start_time\":1.0,\"end_time\":2.0}}"
        );
        socket
            .send_to(datagram.as_bytes(), daemon.udp_addr())
            .unwrap();
    }
    daemon.wait_for_stats(Duration::from_secs(10), |s| s.accepted() >= 3);
    assert!(daemon.flush_forwarding(Duration::from_secs(10)));
    let stats = daemon.forward_stats().unwrap();
    assert_eq!(
        (
            stats.queued,
            stats.uploaded,
            stats.rejected,
            stats.retried_batches
        ),
        (3, 2, 1, 1),
        "{stats:?}"
    );
    let calls: Vec<serde_json::Value> = xray
        .received()
        .iter()
        .filter(|r| r.path == "/TraceSegments")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(
        calls[0]["TraceSegmentDocuments"].as_array().unwrap().len(),
        3
    );
    let again = calls[1]["TraceSegmentDocuments"].as_array().unwrap();
    assert_eq!(again.len(), 1);
    assert!(
        again[0]
            .as_str()
            .unwrap()
            .contains("\"id\":\"0000000000000001\"")
    );
    daemon.shutdown();
}
