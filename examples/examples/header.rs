//! Read an incoming `X-Amzn-Trace-Id`, then print the header to send on an outgoing call and
//! the one to return to the caller.
use xray_sdk::{SegmentId, TraceHeader};

fn main() {
    let incoming = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=?;Lineage=10:1234abcd:3";

    let header = match incoming.parse::<TraceHeader>() {
        Ok(header) => header,
        Err(err) => {
            // No usable trace context: a real server would start a new trace here.
            eprintln!("{err}");
            return;
        }
    };
    println!("incoming:   {header}");

    // The caller asked us to decide (`Sampled=?`); say we sample.
    let sampled = header.sampled().decision().unwrap_or(true);

    // An outgoing call is recorded as a subsegment; its id becomes the callee's Parent.
    let subsegment = SegmentId::new();
    println!("downstream: {}", header.downstream(subsegment, sampled));
    println!("response:   {}", header.response(sampled));
}
