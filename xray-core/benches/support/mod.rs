//! What the benches share: the baseline document, a plain serde struct shaped like the A
//! segment the recorder emits (one subsegment with an annotation and a metadata entry, the
//! SDK's `service` and `aws.xray` blocks), so `serde_json::to_vec` of it costs what
//! serializing that segment naively would; the A shape itself, recorded through the sampler;
//! and a UDP sink whose thread reads its socket.
#![allow(dead_code)]

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use xray_sdk::Recorder;
use xray_sdk::sampling::{LocalSampler, SamplingRequest, SamplingRules, SharedSampler};

#[derive(Serialize)]
pub(crate) struct Sub {
    name: &'static str,
    id: String,
    start_time: f64,
    end_time: f64,
    annotations: Annotations,
    metadata: Metadata,
}

#[derive(Serialize)]
pub(crate) struct Metadata {
    default: Basket,
}

#[derive(Serialize)]
pub(crate) struct Basket {
    basket: u64,
}

#[derive(Serialize)]
pub(crate) struct Annotations {
    order_id: u64,
}

#[derive(Serialize)]
pub(crate) struct Seg {
    name: &'static str,
    id: String,
    trace_id: String,
    start_time: f64,
    end_time: f64,
    service: Svc,
    aws: Aws,
    subsegments: Vec<Sub>,
}

#[derive(Serialize)]
pub(crate) struct Svc {
    runtime: &'static str,
    runtime_version: &'static str,
}

#[derive(Serialize)]
pub(crate) struct Aws {
    xray: Xray,
}

#[derive(Serialize)]
pub(crate) struct Xray {
    sdk: &'static str,
    sdk_version: &'static str,
    package: &'static str,
}

pub(crate) fn baseline_doc() -> Seg {
    Seg {
        name: "orders",
        id: "53995c3f42cd8ad8".into(),
        trace_id: "1-5759e988-bd862e3fe1be46a994272793".into(),
        start_time: 1735689600.120511,
        end_time: 1735689600.318204,
        service: Svc {
            runtime: "rust",
            runtime_version: "1.95.0",
        },
        aws: Aws {
            xray: Xray {
                sdk: "X-Ray for Rust",
                sdk_version: "0.1.0",
                package: "xray-sdk",
            },
        },
        subsegments: vec![Sub {
            name: "work",
            id: "7bc7afe4abe3b9bc".into(),
            start_time: 1735689600.131002,
            end_time: 1735689600.149877,
            annotations: Annotations { order_id: 42 },
            metadata: Metadata {
                default: Basket { basket: 3 },
            },
        }],
    }
}

/// A sampler that samples everything, by its rule: decisions go through the sampler, as in
/// production, not through a forced `Sampled=1` header.
pub(crate) fn sample_all() -> SharedSampler {
    let all = SamplingRules::builder()
        .with_default(0, 1.0)
        .build()
        .unwrap();
    Arc::new(LocalSampler::new(all))
}

/// The A shape: a segment and one subsegment with one annotation and one metadata entry.
pub(crate) fn a_shape(r: &Recorder, request: &SamplingRequest<'_>) {
    let s = r.begin_segment_with("orders", None, request);
    let sub = s.begin_subsegment("work");
    sub.put_annotation("order_id", 42);
    sub.put_metadata("basket", &3);
    sub.end();
    s.end();
}

/// A UDP socket with a thread that reads everything sent to it and counts the datagrams, as
/// a daemon would.
pub(crate) struct Sink {
    pub(crate) socket: UdpSocket,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
}

impl Sink {
    /// Starts the reader; `pin` runs first on its thread (to pin it to a core, say).
    pub(crate) fn start_with(pin: impl FnOnce() + Send + 'static) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        // As much room as the system allows a socket without privileges (rmem_max).
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(4 * 1024 * 1024);
        let reader = socket.try_clone().unwrap();
        reader
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let (s, r) = (stop.clone(), received.clone());
        std::thread::spawn(move || {
            pin();
            let mut buf = vec![0u8; 65_536];
            while !s.load(Ordering::Relaxed) {
                if reader.recv(&mut buf).is_ok() {
                    r.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self {
            socket,
            stop,
            received,
        }
    }

    pub(crate) fn start() -> Self {
        Self::start_with(|| {})
    }

    /// Datagrams read so far.
    pub(crate) fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits until the count stops moving (the socket's queue is drained) and returns it.
    pub(crate) fn settle(&self) -> u64 {
        let mut last = self.received();
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let now = self.received();
            if now == last {
                return now;
            }
            last = now;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
