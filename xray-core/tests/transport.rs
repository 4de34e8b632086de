//! The export seam: what a transport receives, what it reports, and what a flush says.

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use xray_sdk::sampling::{LocalSampler, SamplingRules, SharedSampler};
use xray_sdk::transport::{
    BackgroundEmitter, DAEMON_HEADER, Finished, FinishedKind, MAX_DATAGRAM_LEN, SegmentTransport,
    Transport, TransportCounters, TransportErrorKind, TransportStats, UdpEmitter,
};
use xray_sdk::{Document, InMemoryEmitter, Recorder, SegmentId};

fn sample_all() -> SharedSampler {
    Arc::new(LocalSampler::new(
        SamplingRules::builder()
            .with_default(0, 1.0)
            .build()
            .unwrap(),
    ))
}

/// What one `export` call carried, read through the public view.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    kind: FinishedKind,
    root: String,
    parent: Option<SegmentId>,
    entities: usize,
    /// Names in depth-first order, walked through `children()`.
    names: Vec<String>,
    json: serde_json::Value,
}

#[derive(Debug, Default)]
struct Recording {
    seen: Mutex<Vec<Seen>>,
    counters: TransportCounters,
}

fn walk(e: xray_sdk::transport::FinishedEntity<'_>, names: &mut Vec<String>) {
    names.push(e.document().name().to_owned());
    for c in e.children() {
        walk(c, names);
    }
}

impl Transport for Recording {
    fn export(&self, finished: &Finished<'_>) {
        self.counters.queued(finished.len() as u64);
        let mut names = Vec::new();
        walk(finished.root(), &mut names);
        let mut out = Vec::new();
        finished.write_json(&mut out).unwrap();
        self.seen.lock().push(Seen {
            kind: finished.kind(),
            root: finished.root().document().name().to_owned(),
            parent: finished.parent_id(),
            entities: finished.len(),
            names,
            json: serde_json::from_slice(&out).unwrap(),
        });
        self.counters.sent(finished.len() as u64);
    }

    fn flush(&self, _deadline: Instant) -> bool {
        true
    }

    fn stats(&self) -> TransportStats {
        self.counters.snapshot()
    }
}

fn recorder_with(transport: Arc<Recording>, threshold: usize) -> Recorder {
    Recorder::builder()
        .ignore_environment()
        .with_sampler(sample_all())
        .with_streaming_threshold(threshold)
        .with_transport(transport)
        .build()
        .unwrap()
}

#[test]
fn a_transport_receives_the_finished_tree_not_bytes() {
    let t = Arc::new(Recording::default());
    let recorder = recorder_with(t.clone(), 100);
    let segment = recorder.begin_segment("root");
    let a = segment.begin_subsegment("a");
    a.begin_subsegment("a1").end();
    a.end();
    segment.begin_subsegment("b").end();
    segment.end();

    let seen = t.seen.lock().clone();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.kind, FinishedKind::Segment);
    assert_eq!(s.root, "root");
    assert_eq!(s.parent, None);
    assert_eq!(s.entities, 4);
    assert_eq!(s.names, ["root", "a", "a1", "b"]);
    assert_eq!(s.json["subsegments"][0]["subsegments"][0]["name"], "a1");
    assert_eq!(s.json["subsegments"][1]["name"], "b");
    // The recorder reads the transport's counters.
    assert_eq!(recorder.stats().transport.sent, 4);
}

#[test]
fn streamed_subtrees_arrive_as_independent_subsegments() {
    let t = Arc::new(Recording::default());
    let recorder = recorder_with(t.clone(), 0);
    let segment = recorder.begin_segment("root");
    let segment_id = segment.id();
    let a = segment.begin_subsegment("a");
    a.begin_subsegment("a1").end();
    a.end();
    segment.end();

    let seen = t.seen.lock().clone();
    let kinds: Vec<_> = seen.iter().map(|s| (s.kind, s.root.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (FinishedKind::Streamed, "a1"),
            (FinishedKind::Streamed, "a"),
            (FinishedKind::Segment, "root")
        ]
    );
    assert_eq!(seen[1].parent, Some(segment_id));
    assert_eq!(seen[1].json["type"], "subsegment");
    assert_eq!(recorder.stats().streamed, 2);
}

#[test]
fn lambda_subsegments_are_marked_as_such() {
    let t = Arc::new(Recording::default());
    let recorder = recorder_with(t.clone(), 0);
    let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    let facade = recorder.begin_lambda_invocation(Some(header));
    facade.begin_subsegment("work").end();
    facade.end();

    let seen = t.seen.lock().clone();
    assert_eq!(seen.len(), 1, "the facade is never exported");
    assert_eq!(seen[0].kind, FinishedKind::Lambda);
    assert_eq!(seen[0].parent, Some("53995c3f42cd8ad8".parse().unwrap()));
}

/// A link slower than any producer: each datagram takes 2 ms to go out.
#[derive(Debug)]
struct SlowLink(UdpEmitter);

impl xray_sdk::transport::Emitter for SlowLink {
    fn emit(
        &self,
        datagram: xray_sdk::transport::Datagram<'_>,
    ) -> Result<(), xray_sdk::transport::EmitError> {
        std::thread::sleep(Duration::from_millis(2));
        self.0.emit(datagram)
    }
}

#[test]
fn a_flush_after_a_burst_into_a_full_queue_reports_the_loss() {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Room for a few datagrams only, before a link that takes 2 ms a datagram: most of the
    // burst must be dropped.
    let slow = SlowLink(UdpEmitter::new(sink.local_addr().unwrap()).unwrap());
    let queue = BackgroundEmitter::with_capacity(slow, 2048);
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_sampler(sample_all())
        .with_emitter(queue)
        .build()
        .unwrap();
    for _ in 0..200 {
        recorder.begin_segment("burst").end();
    }
    let outcome = recorder.flush(Duration::from_secs(5));
    let stats = recorder.stats().transport;
    assert!(!outcome.is_complete(), "{outcome:?} {stats:?}");
    assert!(outcome.lost > 0, "{outcome:?}");
    assert_eq!(outcome.lost, stats.dropped_full);
    assert_eq!(outcome.sent + outcome.lost, 200, "{outcome:?}");
    assert_eq!(stats.queued, 200);
    assert_eq!(stats.pending(), 0);

    // What the sink can read is what was counted as sent.
    sink.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    let mut received = 0;
    while sink.recv(&mut buf).is_ok() {
        received += 1;
    }
    assert_eq!(received, outcome.sent, "{outcome:?} {stats:?}");

    // The next flush covers only what came after.
    recorder.begin_segment("alone").end();
    let next = recorder.flush(Duration::from_secs(5));
    assert!(next.is_complete(), "{next:?}");
    assert_eq!(next.sent, 1);
}

#[test]
fn a_failing_background_send_is_counted_as_failed_not_sent() {
    // Nothing listens at this address: the sender thread's sends are refused.
    let addr = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let queue = BackgroundEmitter::new(UdpEmitter::new(addr).unwrap());
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_sampler(sample_all())
        .with_emitter(queue)
        .build()
        .unwrap();
    for _ in 0..20 {
        recorder.begin_segment("lost").end();
        // Refusals arrive on the next send after an ICMP error: give them time.
        recorder.flush(Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(2));
    }
    let stats = recorder.stats().transport;
    assert_eq!(stats.queued, 20);
    assert_eq!(stats.sent + stats.failed, 20, "{stats:?}");
    assert!(stats.failed > 0, "{stats:?}");
    assert_eq!(stats.last_error, Some(TransportErrorKind::Refused));
}

#[test]
fn a_transport_given_takes_precedence_and_opens_no_socket() {
    let emitter = InMemoryEmitter::new();
    let t = Arc::new(Recording::default());
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_sampler(sample_all())
        .with_emitter(emitter.clone())
        .with_transport(t.clone())
        .build()
        .unwrap();
    recorder.begin_segment("one").end();
    assert_eq!(t.seen.lock().len(), 1);
    assert!(emitter.is_empty());
}

#[test]
fn segment_transport_counts_documents_that_cannot_fit() {
    let emitter = InMemoryEmitter::new();
    let transport = SegmentTransport::new(emitter.clone());
    // Precursor ids are never trimmed: 5,000 of them (about 100 kB) cannot be sent.
    let trace_id = xray_sdk::TraceId::new();
    let mut doc = Document::new("many-precursors", SegmentId::new(), 1.0);
    for _ in 0..5_000 {
        doc.add_precursor_id(SegmentId::new());
    }
    doc.set_trace_id(trace_id);
    doc.set_end_time(2.0);
    transport.export(&Finished::from_document(
        FinishedKind::Segment,
        trace_id,
        &doc,
    ));
    let stats = transport.stats();
    assert_eq!(
        (stats.queued, stats.dropped_too_large, stats.sent),
        (1, 1, 0)
    );
    assert!(emitter.is_empty());
}

#[test]
fn trimming_measures_with_the_writer_that_sends() {
    // Around the limit, in steps finer than the old 96-byte slack: every trimmed document
    // fits the datagram, marker included, and none is trimmed that already fit.
    let budget = MAX_DATAGRAM_LEN - DAEMON_HEADER.len();
    for extra in (0..400).step_by(7) {
        let mut doc = Document::new("big", SegmentId::new(), 1.0);
        doc.set_end_time(2.0);
        doc.put_annotation("kept", "yes").unwrap();
        let base = doc.serialized_len();
        let filler = budget - base - 400 + extra;
        doc.put_metadata("blob", &"x".repeat(filler)).unwrap();
        let before = doc.serialized_len();
        let trimmed = doc.trim_to_fit(budget);
        let mut out = Vec::new();
        doc.write_json(&mut out).unwrap();
        assert!(out.len() <= budget, "{extra}: {} > {budget}", out.len());
        assert_eq!(out.len(), doc.serialized_len());
        if before <= budget {
            assert!(trimmed.is_empty(), "{extra}: trimmed a document that fit");
        } else {
            assert_eq!(trimmed, [xray_sdk::document::Trimmed::Metadata], "{extra}");
            let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(json["annotations"]["kept"], "yes");
            assert_eq!(json["metadata"]["AWS.xray"]["trimmed"][0], "metadata");
        }
    }
}

#[test]
fn a_batch_of_datagrams_goes_out_in_order() {
    use xray_sdk::transport::{Datagram, Emitter};
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let emitter = UdpEmitter::new(sink.local_addr().unwrap()).unwrap();
    // More than one `sendmmsg` call holds (64), in sizes that vary.
    let bytes: Vec<Vec<u8>> = (0..150)
        .map(|i| {
            let mut b = DAEMON_HEADER.to_vec();
            b.extend(format!("{{\"name\":\"{}\"}}", "n".repeat(i)).bytes());
            b
        })
        .collect();
    let datagrams: Vec<Datagram<'_>> = bytes.iter().filter_map(|b| Datagram::new(b)).collect();
    let mut failures = Vec::new();
    let sent = emitter.emit_batch(&datagrams, &mut |e| failures.push(e.to_string()));
    assert_eq!(sent, 150, "{failures:?}");
    let mut buf = vec![0u8; 1024];
    for expected in &bytes {
        let n = sink.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &expected[..]);
    }
}

#[test]
fn a_batch_to_nobody_reports_each_refusal_and_goes_on() {
    use xray_sdk::transport::{Datagram, Emitter};
    let addr = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let emitter = UdpEmitter::new(addr).unwrap();
    let mut b = DAEMON_HEADER.to_vec();
    b.extend_from_slice(br#"{"name":"a"}"#);
    let datagrams = vec![Datagram::new(&b).unwrap(); 10];
    let mut total_sent = 0;
    let mut refused = 0;
    for _ in 0..5 {
        total_sent += emitter.emit_batch(&datagrams, &mut |e| {
            assert!(
                matches!(e, xray_sdk::transport::EmitError::ConnectionRefused),
                "{e}"
            );
            refused += 1;
        });
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(total_sent + refused, 50);
    assert!(refused > 0);
}
