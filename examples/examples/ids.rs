//! Generate a trace id and a segment id and print them as they appear on the wire.
use xray_sdk::{SegmentId, TraceId};

fn main() {
    println!("trace id:   {}", TraceId::new());
    println!("segment id: {}", SegmentId::new());
}
