//! The daemon's intake: documents a second accepted with nothing lost, while a follower reads
//! every settled trace as the `xray-local` program does (with printing off).
//!
//! - `intake/2000 documents`: sends 2,000 one-segment traces of the A shape (a segment and one
//!   subsegment with an annotation and a metadata entry, about 520 bytes) from one thread and
//!   waits until all are accepted; the baseline sends the same datagrams to a socket that only
//!   reads them.
//! - Then a sweep of offered rates, each held for one second, prints what was accepted and
//!   what was lost: in the kernel (a full socket buffer, from `/proc/net/udp`) and in the
//!   daemon (its intake queue), counted by the daemon against what was sent.
//!
//! Run: `cargo bench -p xray-local --bench intake`

mod support;

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use support::datagram;
use xray_local::{DropReason, XRayLocal};

const BATCH: u64 = 2_000;

/// A daemon and a follower that takes every settled trace.
struct Daemon {
    local: Arc<XRayLocal>,
    stop: Arc<AtomicBool>,
    follower: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    fn start() -> Self {
        let local = Arc::new(
            XRayLocal::builder()
                .udp_addr("127.0.0.1:0".parse().unwrap())
                .max_traces(1_000_000)
                .start()
                .unwrap(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (local.clone(), stop.clone());
        let follower = std::thread::spawn(move || {
            let mut completed = l.completed();
            while !s.load(Ordering::Relaxed) {
                let _ = completed.next_timeout(Duration::from_millis(20));
            }
        });
        Self {
            local,
            stop,
            follower: Some(follower),
        }
    }
}

impl Drop for Daemon {
    /// Stops the follower and the daemon, and frees what it holds, before the next
    /// measurement starts: a daemon of the previous one, freeing its traces on another thread,
    /// would take the cores from it.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(follower) = self.follower.take() {
            let _ = follower.join();
        }
        self.local.shutdown();
    }
}

fn intake(c: &mut Criterion) {
    let datagrams: Vec<Vec<u8>> = (0..BATCH * 200).map(datagram).collect();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();

    let mut g = c.benchmark_group("intake");
    g.throughput(Throughput::Elements(BATCH));
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let _ = socket2::SockRef::from(&sink).set_recv_buffer_size(4 * 1024 * 1024);
    let reader = sink.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        while reader.recv(&mut buf).is_ok() {}
    });
    g.bench_function("baseline/send to a reading socket", |b| {
        b.iter(|| {
            for d in datagrams.iter().take(BATCH as usize) {
                let _ = tx.send_to(d, sink.local_addr().unwrap());
            }
        })
    });

    let daemon = Daemon::start();
    let addr = daemon.local.udp_addr();
    let mut next = 0usize;
    g.bench_function(format!("{BATCH} documents"), |b| {
        b.iter_custom(|iterations| {
            let start = Instant::now();
            for _ in 0..iterations {
                let before = daemon.local.stats().received();
                for _ in 0..BATCH {
                    let d = &datagrams[next % datagrams.len()];
                    next += 1;
                    let _ = tx.send_to(d, addr);
                }
                daemon
                    .local
                    .wait_for_stats(Duration::from_secs(10), |s| s.received() >= before + BATCH);
            }
            start.elapsed()
        })
    });
    g.finish();
    drop(daemon);

    println!(
        "{:>10} {:>10} {:>10} {:>8} {:>8} {:>8}",
        "offered/s", "sent", "accepted", "kernel", "backlog", "lost %"
    );
    for rate in [10_000u64, 25_000, 50_000, 100_000, 150_000, 200_000, 0] {
        let daemon = Daemon::start();
        let addr = daemon.local.udp_addr();
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < Duration::from_secs(1) && (sent as usize) < datagrams.len() {
            // Paced in bursts of 50 with a sleep between, so the pacing takes no core of its
            // own from the daemon.
            if let Some(slot) = (sent * 1_000_000_000).checked_div(rate)
                && let Some(wait) = Duration::from_nanos(slot).checked_sub(start.elapsed())
            {
                std::thread::sleep(wait);
            }
            for _ in 0..50 {
                if let Some(d) = datagrams.get(sent as usize) {
                    let _ = tx.send_to(d, addr);
                    sent += 1;
                }
            }
        }
        let stats = daemon
            .local
            .wait_for_stats(Duration::from_secs(10), |s| s.received() >= sent);
        // Let the count settle: what is not read by now was dropped.
        std::thread::sleep(Duration::from_millis(200));
        let stats = if stats.received() < sent {
            daemon.local.stats()
        } else {
            stats
        };
        let kernel = stats.kernel_dropped().unwrap_or(0);
        let backlog = stats.dropped(DropReason::Backlog);
        let label = if rate == 0 {
            "free".to_owned()
        } else {
            rate.to_string()
        };
        println!(
            "{label:>10} {sent:>10} {:>10} {kernel:>8} {backlog:>8} {:>8.2}",
            stats.accepted(),
            100.0 * (sent - stats.accepted().min(sent)) as f64 / sent as f64
        );
    }
}

criterion_group!(benches, intake);
criterion_main!(benches);
