//! OtlpUdpTransport on real UDP sockets: the `T1S` framing, the datagram budget, and what the
//! spans decode to with the OpenTelemetry protobuf types.
#![cfg(feature = "otlp")]

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use prost::Message as _;
use xray_sdk::otlp::proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use xray_sdk::otlp::proto::tonic::trace::v1::Span;
use xray_sdk::sampling::{LocalSampler, SamplingRules};
use xray_sdk::transport::{DAEMON_HEADER, MAX_DATAGRAM_LEN};
use xray_sdk::{ConfigError, DaemonAddress, Recorder, RecorderBuilder, TransportKind};

fn sink() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // Room for a burst of large datagrams.
    socket2::SockRef::from(&s)
        .set_recv_buffer_size(8 * 1024 * 1024)
        .unwrap();
    s
}

fn builder(sink: &UdpSocket) -> RecorderBuilder {
    let all = SamplingRules::builder()
        .with_default(0, 1.0)
        .build()
        .unwrap();
    Recorder::builder()
        .ignore_environment()
        .with_service_name("orders")
        .with_sampler(Arc::new(LocalSampler::new(all)))
        .with_daemon_address(DaemonAddress::new(sink.local_addr().unwrap()))
}

/// Every datagram waiting at the sink, decoded; each is checked for the framing and size.
fn receive(sink: &UdpSocket) -> Vec<ExportTraceServiceRequest> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while let Ok(n) = sink.recv(&mut buf) {
        let datagram = &buf[..n];
        assert!(n <= MAX_DATAGRAM_LEN, "a datagram of {n} bytes");
        let body = datagram
            .strip_prefix(DAEMON_HEADER)
            .and_then(|rest| rest.strip_prefix(b"T1S"))
            .expect("header line, then T1S");
        let proto = base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("standard base64");
        out.push(ExportTraceServiceRequest::decode(&proto[..]).expect("OTLP protobuf"));
    }
    out
}

fn spans(requests: &[ExportTraceServiceRequest]) -> Vec<&Span> {
    requests
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .collect()
}

#[test]
fn a_segment_arrives_as_one_t1s_datagram_of_spans() {
    let sink = sink();
    let recorder = builder(&sink)
        .with_transport_kind(TransportKind::OtlpUdp)
        .build()
        .unwrap();
    let segment = recorder.begin_segment("orders");
    let load = segment.begin_subsegment("load");
    load.begin_subsegment("query").end();
    load.end();
    let trace_id = segment.trace_id();
    segment.end();

    let requests = receive(&sink);
    assert_eq!(requests.len(), 1);
    let spans = spans(&requests);
    assert_eq!(spans.len(), 3);
    let hex: String = trace_id.to_string().replace('-', "")[1..].to_owned();
    for s in &spans {
        let got: String = s.trace_id.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, hex, "the X-Ray trace id, epoch first");
    }
    let by_name = |n: &str| spans.iter().find(|s| s.name == n).unwrap();
    assert_eq!(by_name("load").parent_span_id, by_name("orders").span_id);
    assert_eq!(by_name("query").parent_span_id, by_name("load").span_id);
    let stats = recorder.stats().transport;
    assert_eq!((stats.queued, stats.sent), (1, 1), "one datagram");
}

#[test]
fn the_environment_chooses_the_transport() {
    let sink = sink();
    let recorder = builder(&sink)
        .with_env(|k| (k == "XRAY_TRANSPORT").then(|| "otlp-udp".to_owned()))
        .build()
        .unwrap();
    recorder.begin_segment("orders").end();
    assert_eq!(spans(&receive(&sink)).len(), 1);

    let bad = Recorder::builder()
        .with_env(|k| (k == "XRAY_TRANSPORT").then(|| "carrier-pigeon".to_owned()))
        .build();
    assert!(matches!(bad, Err(ConfigError::Transport { .. })), "{bad:?}");
}

#[test]
fn a_large_segment_is_split_across_datagrams_within_the_budget() {
    let sink = sink();
    let recorder = builder(&sink)
        .with_transport_kind(TransportKind::OtlpUdp)
        .with_streaming_threshold(usize::MAX)
        .build()
        .unwrap();
    let segment = recorder.begin_segment("orders");
    for i in 0..1_500 {
        let sub = segment.begin_subsegment("step");
        sub.put_annotation("index", i);
        sub.end();
    }
    segment.end();

    let requests = receive(&sink);
    assert!(requests.len() > 1, "one datagram cannot hold 1,501 spans");
    // Each request stands alone: it carries its resource.
    for r in &requests {
        assert!(r.resource_spans[0].resource.is_some());
    }
    let spans = spans(&requests);
    assert_eq!(spans.len(), 1_501, "nothing lost");
    let stats = recorder.stats().transport;
    assert_eq!(stats.sent, requests.len() as u64);
    assert_eq!(stats.lost(), 0);
}

#[test]
fn a_span_too_large_for_a_datagram_is_dropped_and_counted_not_the_others() {
    let sink = sink();
    let recorder = builder(&sink)
        .with_transport_kind(TransportKind::OtlpUdp)
        .build()
        .unwrap();
    let segment = recorder.begin_segment("orders");
    let big = segment.begin_subsegment("big");
    big.put_metadata("blob", &"x".repeat(100_000));
    big.end();
    segment.begin_subsegment("small").end();
    segment.end();

    let requests = receive(&sink);
    let names: Vec<&str> = spans(&requests).iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"orders") && names.contains(&"small"),
        "{names:?}"
    );
    assert!(!names.contains(&"big"));
    let stats = recorder.stats().transport;
    assert_eq!(stats.dropped_too_large, 1, "{stats:?}");
}

#[test]
fn a_receiver_that_is_down_is_counted_not_raised() {
    // Nothing listens at this address.
    let addr = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let all = SamplingRules::builder()
        .with_default(0, 1.0)
        .build()
        .unwrap();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_sampler(Arc::new(LocalSampler::new(all)))
        .with_daemon_address(DaemonAddress::new(addr))
        .with_transport_kind(TransportKind::OtlpUdp)
        .build()
        .unwrap();
    for _ in 0..5 {
        recorder.begin_segment("orders").end();
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = recorder.stats().transport;
    assert_eq!(stats.queued, 5);
    assert_eq!(stats.sent + stats.failed, 5, "{stats:?}");
    assert!(stats.failed >= 1, "{stats:?}");
    assert_eq!(
        stats.last_error,
        Some(xray_sdk::transport::TransportErrorKind::Refused)
    );
}
