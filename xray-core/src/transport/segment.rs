//! Segment documents for the X-Ray daemon: the daemon framing, the 64 KB split and trim.

use std::time::Instant;

use super::{CountedEmitter, Finished, Transport, TransportStats, with_buf};
use crate::clock::{Clock as _, SystemClock};
use crate::diag::LogLimiter;
use crate::document::Document;
use crate::emitter::{DAEMON_HEADER, Emitter, MAX_DATAGRAM_LEN};

/// Sends X-Ray segment documents, one per datagram, through an [`Emitter`]: the X-Ray daemon's
/// own protocol, and the recorder's default transport (with a [`UdpEmitter`] to
/// `AWS_XRAY_DAEMON_ADDRESS`).
///
/// Each datagram is the [`DAEMON_HEADER`] line and one JSON document, at most
/// [`MAX_DATAGRAM_LEN`] bytes. A segment too large for one is split: each subsegment is sent
/// on its own as an independent subsegment (recursively), then the segment without them. A
/// single entity still too large is trimmed ([`Document::trim_to_fit`]), and dropped only if
/// even that is not enough. All of it is counted in [`TransportStats`] (`split`, `truncated`,
/// `dropped_too_large`).
///
/// [`UdpEmitter`]: crate::transport::UdpEmitter
///
/// # Examples
///
/// ```
/// use xray_sdk::{InMemoryEmitter, Recorder};
/// use xray_sdk::transport::SegmentTransport;
///
/// let emitter = InMemoryEmitter::new();
/// let recorder = Recorder::builder()
///     .ignore_environment()
///     .with_transport(SegmentTransport::new(emitter.clone()))
///     .build()?;
/// recorder.begin_segment("job").end();
/// assert_eq!(emitter.documents()[0]["name"], "job");
/// # Ok::<(), xray_sdk::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct SegmentTransport {
    out: CountedEmitter,
    size_log: LogLimiter,
}

impl SegmentTransport {
    /// Sends through `emitter`.
    pub fn new<E: Emitter + 'static>(emitter: E) -> Self {
        Self {
            out: CountedEmitter::new(Box::new(emitter)),
            size_log: LogLimiter::default(),
        }
    }

    /// The emitter datagrams go through.
    pub fn emitter(&self) -> &dyn Emitter {
        &*self.out.emitter
    }

    /// Sends a plain document, splitting or trimming it to fit one datagram.
    fn send_document(&self, mut doc: Document, buf: &mut Vec<u8>) {
        if serialize(&doc, buf) {
            self.emit(buf);
            return;
        }
        if !doc.subsegments().is_empty() {
            // Too large as a whole: send each child on its own (recursively split in turn),
            // then the parent without them.
            let trace_id = doc.trace_id();
            let parent_id = doc.id();
            for mut child in std::mem::take(doc.subsegments_mut()) {
                if let Some(trace_id) = trace_id {
                    child.set_independent(trace_id, parent_id);
                }
                self.out.counters.split(1);
                self.send_document(child, buf);
            }
            self.send_document(doc, buf);
            return;
        }
        let before = buf.len();
        let trimmed = doc.trim_to_fit(MAX_DATAGRAM_LEN - DAEMON_HEADER.len());
        if serialize(&doc, buf) {
            self.out.counters.truncated(1);
            if self.size_log.allow(SystemClock.now_micros()) {
                tracing::warn!(
                    target: "xray_sdk::transport",
                    id = %doc.id(),
                    name = %doc.name(),
                    bytes = before,
                    trimmed = ?trimmed,
                    "X-Ray document over the 64 KB limit; large fields were trimmed to send it"
                );
            }
            self.emit(buf);
        } else {
            self.out.counters.queued(1);
            self.out.counters.dropped_too_large(1);
            if self.size_log.allow(SystemClock.now_micros()) {
                tracing::error!(
                    target: "xray_sdk::transport",
                    id = %doc.id(),
                    name = %doc.name(),
                    bytes = buf.len(),
                    "X-Ray document over the 64 KB limit even after trimming; not sent"
                );
            }
        }
    }

    fn emit(&self, buf: &[u8]) {
        self.out.emit(buf);
    }
}

impl Transport for SegmentTransport {
    fn export(&self, finished: &Finished<'_>) {
        with_buf(|buf| {
            buf.clear();
            buf.extend_from_slice(DAEMON_HEADER);
            if finished.write_json(buf).is_ok() && buf.len() <= MAX_DATAGRAM_LEN {
                self.emit(buf);
            } else {
                self.send_document(finished.to_document(), buf);
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
        "segment documents, one UDP datagram each".to_owned()
    }
}

/// Writes header + document into `buf`; true if the result fits one datagram.
fn serialize(doc: &Document, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    buf.extend_from_slice(DAEMON_HEADER);
    doc.write_json(buf).is_ok() && buf.len() <= MAX_DATAGRAM_LEN
}
