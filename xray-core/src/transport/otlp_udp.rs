//! OpenTelemetry spans over UDP, in the framing of the AWS distributions' X-Ray UDP span
//! exporter (`T1S`), for AWS Lambda.

use std::time::Instant;

use base64::Engine as _;

use super::{CountedEmitter, Finished, Transport, TransportStats};
use crate::emitter::{DAEMON_HEADER, Emitter, MAX_DATAGRAM_LEN};

thread_local! {
    // The encoded request, reused like the datagram buffer.
    static PROTO: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The prefix of a datagram of sampled spans.
pub const OTLP_SAMPLED_PREFIX: &[u8] = b"T1S";

/// The most bytes of protobuf one datagram carries: what base64 of it, after the header line
/// and the prefix, fits in [`MAX_DATAGRAM_LEN`] (48,357 bytes).
pub const MAX_OTLP_REQUEST_LEN: usize =
    (MAX_DATAGRAM_LEN - DAEMON_HEADER.len() - OTLP_SAMPLED_PREFIX.len()) / 4 * 3;

/// Sends each finished segment as OpenTelemetry spans, in UDP datagrams byte-compatible with
/// the AWS distributions' X-Ray UDP span exporter: the [`DAEMON_HEADER`] line, `T1S`, then the
/// standard base64 of one protobuf `ExportTraceServiceRequest`.
///
/// This is what AWS Lambda's X-Ray endpoint (at `AWS_XRAY_DAEMON_ADDRESS`) takes besides
/// segment documents; X-Ray turns the spans back into segments with its OpenTelemetry
/// translator. Every entity becomes one span, and every segment field maps to the span fields
/// and attributes that translator reads (annotations, metadata, `aws`, `http`, `sql`, `cause`
/// with its stacks, `origin`, `namespace`, `user`).
///
/// The spans of one segment are packed into as few requests as fit [`MAX_OTLP_REQUEST_LEN`],
/// each with its own copy of the resource; a span too large alone is dropped and counted in
/// `dropped_too_large`. The counters count datagrams: an item is one datagram of spans.
/// Only sampled traces are recorded, so every datagram is `T1S`.
///
/// # What X-Ray makes of the spans
///
/// The fields X-Ray's translator has a rule for arrive in their places. Those it has none for
/// (`in_progress`, `traced`, `precursor_ids`, `resource_arn`, exception ids and chains,
/// `cause.working_directory`, DynamoDB's `consistent_read`, and a few more) travel in the
/// reserved metadata namespace `AWS.xray.segment` as JSON-pointer corrections, so they
/// arrive as that metadata rather than in their fields; a reader that applies them rebuilds
/// the document exactly (the crate's round-trip tests check this with an independent
/// implementation of the translator). Stacks are written in the Java format, the
/// one the translator parses into frames for every SDK it knows, and the resource says
/// `telemetry.sdk.language = java` because the translator picks its stack parser from that
/// attribute: X-Ray then shows the frames, at the price of an SDK name that ends in
/// "for java".
///
/// Requires the `otlp` feature. Choose it with
/// [`RecorderBuilder::with_transport_kind`](crate::RecorderBuilder::with_transport_kind) or
/// `XRAY_TRANSPORT=otlp-udp`, or build one over any [`Emitter`].
///
/// # Examples
///
/// ```
/// use std::net::UdpSocket;
/// use xray_sdk::Recorder;
/// use xray_sdk::transport::{OtlpUdpTransport, UdpEmitter};
///
/// let daemon = UdpSocket::bind("127.0.0.1:0")?;
/// let transport = OtlpUdpTransport::new(UdpEmitter::new(daemon.local_addr()?)?, "orders");
/// let recorder = Recorder::builder()
///     .ignore_environment()
///     .with_transport(transport)
///     .build()?;
/// let segment = recorder.begin_segment_with(
///     "orders",
///     Some(&"Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1".parse()?),
///     &Default::default(),
/// );
/// segment.end();
///
/// let mut buf = vec![0u8; 65_536];
/// let n = daemon.recv(&mut buf)?;
/// assert!(buf[..n].starts_with(b"{\"format\":\"json\",\"version\":1}\nT1S"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct OtlpUdpTransport {
    out: CountedEmitter,
    service_name: Box<str>,
}

impl OtlpUdpTransport {
    /// Sends through `emitter`. `service_name` names the resource of subsegments sent without
    /// their segment (streamed, or in Lambda); a segment's spans carry its own name.
    pub fn new<E: Emitter + 'static>(emitter: E, service_name: &str) -> Self {
        Self {
            out: CountedEmitter::new(Box::new(emitter)),
            service_name: service_name.into(),
        }
    }

    fn emit(&self, proto: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(DAEMON_HEADER);
        out.extend_from_slice(OTLP_SAMPLED_PREFIX);
        append_base64(proto, out);
        self.out.emit(out);
    }
}

/// Appends the standard base64 of `input`, padded, to `out`.
fn append_base64(input: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let len = base64::encoded_len(input.len(), true).unwrap_or(0);
    out.resize(start + len, 0);
    let written = out.get_mut(start..).map_or(0, |tail| {
        base64::engine::general_purpose::STANDARD
            .encode_slice(input, tail)
            .unwrap_or(0)
    });
    out.truncate(start + written);
}

impl Transport for OtlpUdpTransport {
    fn export(&self, finished: &Finished<'_>) {
        let (resource, spans) = crate::otlp::to_spans(finished, &self.service_name);
        super::with_buf(|datagram| {
            let mut proto = PROTO.with(|p| std::mem::take(&mut *p.borrow_mut()));
            crate::otlp::pack(
                &resource,
                spans,
                MAX_OTLP_REQUEST_LEN,
                &mut proto,
                |bytes, _spans| self.emit(bytes, datagram),
                |_span| {
                    self.out.counters.queued(1);
                    self.out.counters.dropped_too_large(1);
                },
            );
            if proto.capacity() <= 2 * MAX_DATAGRAM_LEN {
                PROTO.with(|p| *p.borrow_mut() = proto);
            }
        });
    }

    fn flush(&self, deadline: Instant) -> bool {
        self.out.flush(deadline)
    }

    fn shutdown(&self, deadline: Instant) -> bool {
        self.out.shutdown(deadline)
    }

    fn stats(&self) -> TransportStats {
        self.out.stats()
    }

    fn describe(&self) -> String {
        "OpenTelemetry spans in T1S UDP datagrams".to_owned()
    }
}
