//! OpenTelemetry spans into xray-local: `T1S` datagrams on the UDP port (as the AWS
//! OpenTelemetry distributions send them on Lambda, and xray-sdk's `OtlpUdpTransport`) and
//! OTLP/HTTP on the TCP port (`xray-otlp-http`). They are shown like segments, and forwarded
//! in the form `PutTraceSegments` takes: `T1S` and base64 of an export request.

#[path = "support/xray_api.rs"]
mod xray_api;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use prost::Message as _;
use serde_json::Value;
use xray_api::Xray;
use xray_local::{DropReason, Trace, XRayLocal};
use xray_otlp_http::OtlpHttpTransport;
use xray_sdk::otlp::proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use xray_sdk::sampling::{LocalSampler, SamplingRules};
use xray_sdk::{DaemonAddress, Recorder, TraceId, TransportKind};

fn sample_all() -> Arc<LocalSampler> {
    Arc::new(LocalSampler::new(
        SamplingRules::builder()
            .with_default(0, 1.0)
            .build()
            .unwrap(),
    ))
}

/// A segment with a subsegment (an annotation, an HTTP call) and a grandchild.
fn record(recorder: &Recorder) -> TraceId {
    let segment = recorder.begin_segment("orders");
    segment.put_annotation("tenant", "blue");
    let load = segment.begin_subsegment("load");
    load.put_annotation("items", 3);
    load.begin_subsegment("query").end();
    load.end();
    let id = segment.trace_id();
    segment.end();
    id
}

/// The trace as xray-local shows it: the segment, with its subsegments nested.
fn assert_shown(trace: &Trace) {
    let segments = trace.segments();
    assert_eq!(segments.len(), 1, "{segments:?}");
    let segment = &segments[0];
    assert_eq!(segment["name"], "orders");
    assert_eq!(segment["annotations"]["tenant"], "blue");
    let load = &segment["subsegments"][0];
    assert_eq!(load["name"], "load", "{segment}");
    assert_eq!(load["annotations"]["items"], 3);
    assert_eq!(load["subsegments"][0]["name"], "query", "{segment}");
    assert!(trace.orphans().is_empty());
}

fn forwarding(xray: &Xray) -> XRayLocal {
    XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .forward(
            xray.forward_config()
                .idle(Duration::from_millis(20))
                .telemetry(None),
        )
        .start()
        .unwrap()
}

/// The documents of every `PutTraceSegments` X-Ray received, waiting for at least `n`.
fn forwarded(xray: &Xray, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let docs: Vec<String> = xray
            .received()
            .iter()
            .filter(|r| r.path == "/TraceSegments")
            .flat_map(|r| {
                let body: Value = serde_json::from_slice(&r.body).unwrap();
                body["TraceSegmentDocuments"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        if docs.len() >= n {
            return docs;
        }
        assert!(Instant::now() < deadline, "forwarded so far: {docs:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spans_of(t1s: &str) -> ExportTraceServiceRequest {
    let encoded = t1s.strip_prefix("T1S").expect("a T1S document");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap()
}

fn span_names(request: &ExportTraceServiceRequest) -> Vec<String> {
    let mut names: Vec<String> = request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| s.name.clone())
        .collect();
    names.sort();
    names
}

#[test]
fn t1s_datagrams_are_shown_as_segments_and_forwarded_as_they_came() {
    let xray = Xray::start();
    let daemon = forwarding(&xray);
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_daemon_address(DaemonAddress::new(daemon.udp_addr()))
        .with_sampler(sample_all())
        .with_transport_kind(TransportKind::OtlpUdp)
        .build()
        .unwrap();
    let id = record(&recorder);
    assert!(recorder.flush(Duration::from_secs(5)).is_complete());
    let trace = daemon
        .wait_for_trace(id, Duration::from_secs(10))
        .expect("the spans' trace is shown");
    assert_shown(&trace);

    // Forwarded unchanged: one T1S document with the three spans.
    let docs = forwarded(&xray, 1);
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(span_names(&spans_of(&docs[0])), ["load", "orders", "query"]);
    daemon.shutdown();
}

#[test]
fn otlp_http_on_the_tcp_port_is_shown_and_forwarded_as_t1s() {
    let xray = Xray::start();
    let daemon = forwarding(&xray);
    let transport = OtlpHttpTransport::builder(format!("http://{}/v1/traces", daemon.tcp_addr()))
        .with_service_name("orders")
        .with_batch_delay(Duration::from_millis(5))
        .build()
        .unwrap();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_sampler(sample_all())
        .with_transport(transport)
        .build()
        .unwrap();
    let id = record(&recorder);
    let flushed = recorder.flush(Duration::from_secs(10));
    assert!(flushed.is_complete(), "{flushed:?}");
    assert_eq!(recorder.stats().transport.failed, 0);
    let trace = daemon
        .wait_for_trace(id, Duration::from_secs(10))
        .expect("the spans' trace is shown");
    assert_shown(&trace);

    let docs = forwarded(&xray, 1);
    let names: Vec<String> = docs.iter().flat_map(|d| span_names(&spans_of(d))).collect();
    assert_eq!(names, ["load", "orders", "query"]);
    daemon.shutdown();
}

/// A POST over a fresh connection; returns the status and the body.
fn post(addr: std::net::SocketAddr, content_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response);
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    (status, response)
}

#[test]
fn bad_spans_are_refused_and_counted_and_the_daemon_goes_on() {
    let daemon = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .start()
        .unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let header = "{\"format\":\"json\",\"version\":1}\n";
    for body in [
        "T1S!!! not base64 !!!".to_owned(),
        // Base64 of bytes that are no export request.
        format!(
            "T1S{}",
            base64::engine::general_purpose::STANDARD.encode([0xff_u8; 64])
        ),
        // A valid, empty request: no spans, nothing to show.
        format!(
            "T1U{}",
            base64::engine::general_purpose::STANDARD
                .encode(ExportTraceServiceRequest::default().encode_to_vec())
        ),
    ] {
        socket
            .send_to(format!("{header}{body}").as_bytes(), daemon.udp_addr())
            .unwrap();
    }
    let stats = daemon.wait_for_stats(Duration::from_secs(10), |s| {
        s.dropped(DropReason::InvalidOtlp) >= 3
    });
    assert_eq!(stats.dropped(DropReason::InvalidOtlp), 3);

    let (status, _) = post(daemon.tcp_addr(), "application/x-protobuf", &[0xff; 32]);
    assert_eq!(status, 400);
    let (status, _) = post(daemon.tcp_addr(), "application/json", b"{}");
    assert_eq!(status, 415);
    let stats = daemon.wait_for_stats(Duration::from_secs(10), |s| {
        s.dropped(DropReason::InvalidOtlp) >= 4
    });
    assert_eq!(stats.dropped(DropReason::InvalidOtlp), 4);

    // Still serving: a good segment is shown.
    let good = format!(
        "{header}{{\"name\":\"ok\",\"id\":\"0000000000000001\",\
         \"trace_id\":\"1-5759e988-000000000000000000000001\",\"start_time\":1.0,\"end_time\":2.0}}"
    );
    socket.send_to(good.as_bytes(), daemon.udp_addr()).unwrap();
    let stats = daemon.wait_for_stats(Duration::from_secs(10), |s| s.accepted() >= 1);
    assert_eq!(stats.accepted(), 1);
    daemon.shutdown();
}

#[test]
fn spans_whose_ids_make_no_document_are_counted_and_their_neighbours_kept() {
    use xray_sdk::otlp::proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let daemon = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .start()
        .unwrap();
    let span = |trace_id: Vec<u8>, span_id: Vec<u8>, name: &str| Span {
        trace_id,
        span_id,
        name: name.to_owned(),
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_001_000_000_000,
        ..Default::default()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    span(vec![7; 16], vec![1; 8], "kept"),
                    span(vec![0; 16], vec![2; 8], "zero trace id"),
                    span(vec![7; 16], vec![3; 4], "short span id"),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let bytes = request.encode_to_vec();

    // As a T1S datagram.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let datagram = format!(
        "{{\"format\":\"json\",\"version\":1}}\nT1S{}",
        base64::engine::general_purpose::STANDARD.encode(&bytes)
    );
    socket
        .send_to(datagram.as_bytes(), daemon.udp_addr())
        .unwrap();
    let stats = daemon.wait_for_stats(Duration::from_secs(10), |s| s.received() >= 3);
    assert_eq!(stats.received(), 3, "{stats:?}");
    assert_eq!(stats.accepted(), 1, "{stats:?}");
    assert_eq!(stats.dropped(DropReason::InvalidSpan), 2, "{stats:?}");

    // And over OTLP/HTTP.
    let (status, _) = post(daemon.tcp_addr(), "application/x-protobuf", &bytes);
    assert_eq!(status, 200);
    let stats = daemon.wait_for_stats(Duration::from_secs(10), |s| s.received() >= 6);
    assert_eq!(stats.received(), 6, "{stats:?}");
    assert_eq!(stats.accepted(), 2, "{stats:?}");
    assert_eq!(stats.dropped(DropReason::InvalidSpan), 4, "{stats:?}");
    daemon.shutdown();
}
