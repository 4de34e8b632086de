//! The recorder's hot paths as plain loops, for instruction counts under callgrind, which
//! (unlike wall time) are repeatable on a busy machine.
//!
//! `cargo bench -p xray-sdk --bench paths` runs each path briefly (a smoke run). To count:
//! `cargo bench -p xray-sdk --bench paths --no-run`, then
//! `valgrind --tool=callgrind target/release/deps/paths-<hash> <path> <iterations>` with
//! `<path>` one of `baseline`, `sync`, `segment_of_100`, `unsampled`; divide the instructions
//! by the iterations (run twice with different counts to subtract the setup).

use std::hint::black_box;
use std::net::UdpSocket;

use xray_sdk::sampling::SamplingRequest;
use xray_sdk::{DaemonAddress, Recorder, TraceHeader};

mod support;

use support::baseline_doc;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let only = args.next();
    let iterations: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(1_000);

    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.connect(sink.local_addr().unwrap()).unwrap();
    tx.set_nonblocking(true).unwrap();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_service_name("orders")
        .with_daemon_address(DaemonAddress::new(sink.local_addr().unwrap()))
        .build()
        .unwrap();
    let sampled: TraceHeader =
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
            .parse()
            .unwrap();
    let unsampled: TraceHeader = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0"
        .parse()
        .unwrap();
    let request = SamplingRequest::new();
    let doc = baseline_doc();

    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if run("baseline") {
        for _ in 0..iterations {
            let bytes = serde_json::to_vec(black_box(&doc)).unwrap();
            let _ = tx.send(&bytes);
        }
    }
    let segment = |header: &TraceHeader| {
        let s = recorder.begin_segment_with("orders", Some(header), &request);
        let sub = s.begin_subsegment("work");
        sub.put_annotation("order_id", 42);
        sub.end();
        s.end();
    };
    if run("sync") {
        for _ in 0..iterations {
            segment(&sampled);
        }
    }
    if run("segment_of_100") {
        for _ in 0..iterations {
            let s = recorder.begin_segment_with("orders", Some(&sampled), &request);
            for _ in 0..100 {
                s.begin_subsegment("work").end();
            }
            s.end();
        }
    }
    if run("unsampled") {
        for _ in 0..iterations {
            segment(&unsampled);
        }
    }
}
