//! What the interceptor and the messaging modules share: an entity's trace header written
//! out, and a segment that continues a header a message or event arrived with.

use xray_sdk::sampling::SamplingRequest;
use xray_sdk::{Entity, Recorder, Segment, TraceHeader};

/// `entity`'s outgoing trace header, written out: `Root=...;Parent=<entity>;Sampled=1|0`,
/// then the extra fields the trace came in with.
pub(crate) fn header_of(entity: &Entity) -> String {
    // Root, Parent and Sampled take 78 bytes; the rest leaves room for a short Lineage.
    let mut value = String::with_capacity(96);
    entity.trace_header().write_to(&mut value);
    value
}

/// The current entity's trace header, written out; `None` outside any segment.
pub(crate) fn current_header() -> Option<String> {
    xray_sdk::current().map(|entity| header_of(&entity))
}

/// Begins segment `name` in the trace of `header` (its `Root`, its `Parent` as parent, its
/// `Sampled=1` or `Sampled=0` obeyed), or, without a header or when it does not parse, in a
/// new trace the recorder's sampler decides. `carrier` says where the header came from, for
/// the debug log.
pub(crate) fn begin_continued(
    recorder: &Recorder,
    name: &str,
    header: Option<&str>,
    carrier: &'static str,
) -> Segment {
    let header = header.and_then(|h| match TraceHeader::parse(h) {
        Ok(header) => Some(header),
        Err(e) => {
            tracing::debug!(target: "xray_aws_sdk", error = %e, carrier, "trace header ignored");
            None
        }
    });
    recorder.begin_segment_with(name, header.as_ref(), &SamplingRequest::new())
}
