//! `xray-fuzz soak`: mixed traffic through a layered axum service into xray-local, for an hour
//! or the minutes given, checking that memory stays flat and that no document is lost without
//! a count.
//!
//! Two services on 127.0.0.1, both behind [`XRayLayer`]: `soak-a` calls `soak-b` through a
//! hyper client behind [`XRayClientLayer`] (and, for one path, a port nothing listens on), and
//! `soak-b` answers with subsegments, annotations, metadata, errors, 4xx and 5xx statuses, a
//! segment of 120 subsegments (streamed) and one too large for a datagram (split or trimmed).
//! One recorder, sampling every new trace, sends through its background sender to an
//! [`XRayLocal`] in this process. A load loop of concurrent clients keeps a steady rate, some
//! requests carrying a trace header of their own (sampled, not sampled, asking, malformed).
//!
//! Every minute (or a quarter of a short run) it prints the resident memory, the requests
//! sent and how they ended, the recorder's counters and xray-local's. At the end, after the
//! load stops, a flush and a settle wait, it fails if:
//!
//! - resident memory grew past the warm-up mark (two minutes in, or a third of a short run)
//!   by more than the given share (50 %) and more than 32 MiB;
//! - the recorder still holds documents, or its counters do not add up;
//! - documents the recorder sent are not all at xray-local: received there, or dropped by
//!   the kernel (the socket's own counter); a difference is a loss nobody counted;
//! - xray-local refused documents the SDK made (any reason but a full intake queue);
//! - no request succeeded, or a thread panicked.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use tower::{Layer as _, ServiceExt as _};
use xray_local::{DropReason, Stats, XRayLocal};
use xray_sdk::recorder::RecorderStats;
use xray_sdk::{DaemonAddress, Recorder, SamplerKind};
use xray_tower::{XRayClient, XRayClientLayer, XRayLayer};

const MIB: f64 = 1024.0 * 1024.0;

/// What `soak` was asked for.
#[derive(Debug, Clone)]
pub(crate) struct SoakOptions {
    /// How long the load runs; fractions allowed (0.2 is 12 seconds).
    pub(crate) minutes: f64,
    /// The seed of the load's choices.
    pub(crate) seed: u64,
    /// Requests per second, all clients together.
    pub(crate) rate: u32,
    /// Clients sending at once.
    pub(crate) concurrency: usize,
    /// How much resident memory may grow past the warm-up mark, in percent (and 32 MiB).
    pub(crate) max_growth_percent: f64,
}

type Plain = Client<HttpConnector, Full<Bytes>>;

fn plain_client() -> Plain {
    Client::builder(TokioExecutor::new()).build_http()
}

/// How the load's requests ended.
#[derive(Debug, Default)]
struct Counts {
    sent: AtomicU64,
    ok: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Runs the soak; `Err` says which bound was broken.
pub(crate) fn run(options: &SoakOptions) -> Result<(), String> {
    if !(options.minutes > 0.0 && options.minutes.is_finite()) {
        return Err(format!(
            "--minutes {} is not a positive number",
            options.minutes
        ));
    }
    let duration = Duration::from_secs_f64(options.minutes * 60.0);
    let warm_up = Duration::from_secs(120).min(duration / 3);
    let interval = Duration::from_secs(60)
        .min(duration / 4)
        .max(Duration::from_secs(1));
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let local = XRayLocal::builder()
        .udp_addr(loopback)
        .tcp_addr(loopback)
        .max_traces(1_000)
        .start()
        .map_err(|err| format!("xray-local does not start: {err}"))?;
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_service_name("soak")
        .with_daemon_address(DaemonAddress::new(local.udp_addr()))
        .with_sampler_kind(SamplerKind::Always)
        .with_background_sender(true)
        .build()
        .map_err(|err| format!("the recorder does not build: {err}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("xray-fuzz-soak")
        .build()
        .map_err(|err| format!("no tokio runtime: {err}"))?;

    let a = runtime.block_on(start_services(recorder.clone()))?;
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let deadline = started + duration;
    let concurrency = options.concurrency.max(1);
    let period = Duration::from_secs_f64(concurrency as f64 / f64::from(options.rate.max(1)));
    let clients: Vec<_> = (0..concurrency)
        .map(|i| {
            let counts = Arc::clone(&counts);
            let seed = options.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            runtime.spawn(load_loop(a, counts, seed, deadline, period))
        })
        .collect();
    println!(
        "soak: {:.1} min of {} requests/s from {concurrency} clients into xray-local at {} \
         (seed {}; warm-up {:.0} s, a report every {:.0} s)",
        options.minutes,
        options.rate,
        local.udp_addr(),
        options.seed,
        warm_up.as_secs_f64(),
        interval.as_secs_f64()
    );

    let mut rss_at_warm_up = None;
    let mut next_report = started + interval;
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        std::thread::sleep(left.min(Duration::from_millis(250)));
        if rss_at_warm_up.is_none() && started.elapsed() >= warm_up {
            rss_at_warm_up = rss_bytes();
        }
        if Instant::now() >= next_report {
            report(started, &counts, &recorder.stats(), &local);
            next_report += interval;
        }
    }
    runtime.block_on(async {
        for client in clients {
            let _ = client.await;
        }
    });
    // A segment ends with its response body, just after the client has read it.
    std::thread::sleep(Duration::from_millis(500));
    runtime.shutdown_timeout(Duration::from_secs(2));
    let _ = recorder.flush(Duration::from_secs(5));

    // Settle: everything sent has reached the socket, or the kernel's drop counter.
    let settle_until = Instant::now() + Duration::from_secs(10);
    loop {
        let sent = recorder.stats().transport.sent;
        let stats = local.stats();
        if stats.received() + stats.kernel_dropped().unwrap_or(0) >= sent
            || Instant::now() >= settle_until
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss_at_end = rss_bytes();
    let recorded = recorder.stats();
    let stats = local.stats();
    report(started, &counts, &recorded, &local);
    verdict(
        options,
        &counts,
        &recorded,
        &stats,
        rss_at_warm_up,
        rss_at_end,
    )
}

fn verdict(
    options: &SoakOptions,
    counts: &Counts,
    recorded: &RecorderStats,
    stats: &Stats,
    rss_at_warm_up: Option<u64>,
    rss_at_end: Option<u64>,
) -> Result<(), String> {
    let mut failures = Vec::new();
    let t = &recorded.transport;
    if t.pending() > 0 {
        failures.push(format!(
            "the recorder still holds {} documents after its flush",
            t.pending()
        ));
    }
    if t.sent + t.lost() > t.queued {
        failures.push(format!(
            "the recorder's counters do not add up: {} sent and {} lost of {} queued",
            t.sent,
            t.lost(),
            t.queued
        ));
    }
    match stats.kernel_dropped() {
        Some(kernel) => {
            let arrived = stats.received() + kernel;
            if arrived != t.sent {
                failures.push(format!(
                    "a loss nobody counted: the recorder sent {} documents, xray-local received \
                     {} and the kernel dropped {kernel}: {} unaccounted",
                    t.sent,
                    stats.received(),
                    i128::from(t.sent) - i128::from(arrived)
                ));
            }
        }
        None => {
            println!(
                "soak: this system does not count a socket's drops; checking received <= sent"
            );
            if stats.received() > t.sent {
                failures.push(format!(
                    "xray-local received {} documents, the recorder sent {}",
                    stats.received(),
                    t.sent
                ));
            }
        }
    }
    let refused: Vec<String> = DropReason::ALL
        .iter()
        .filter(|r| **r != DropReason::Backlog && stats.dropped(**r) > 0)
        .map(|r| format!("{} {}", r.as_str(), stats.dropped(*r)))
        .collect();
    if !refused.is_empty() {
        failures.push(format!(
            "xray-local refused documents the SDK made: {}",
            refused.join(", ")
        ));
    }
    if let (Some(warm), Some(end)) = (rss_at_warm_up, rss_at_end) {
        let bound = warm as f64 * (1.0 + options.max_growth_percent / 100.0);
        let grown = end.saturating_sub(warm) as f64;
        if end as f64 > bound && grown > 32.0 * MIB {
            failures.push(format!(
                "resident memory grew from {:.1} MiB after the warm-up to {:.1} MiB, more than \
                 {}% and 32 MiB",
                warm as f64 / MIB,
                end as f64 / MIB,
                options.max_growth_percent
            ));
        }
        println!(
            "soak: resident memory {:.1} MiB after the warm-up, {:.1} MiB at the end",
            warm as f64 / MIB,
            end as f64 / MIB
        );
    } else {
        println!("soak: resident memory is not known on this system; not checked");
    }
    if load(&counts.ok) == 0 {
        failures.push(format!(
            "no request succeeded of {} sent",
            load(&counts.sent)
        ));
    }
    let panics = crate::harness::take_panics();
    if !panics.is_empty() {
        failures.push(format!("threads panicked: {}", panics.join("; ")));
    }
    if failures.is_empty() {
        println!(
            "soak: passed: {} requests, {} documents sent and {} received, nothing lost without \
             a count",
            load(&counts.sent),
            t.sent,
            stats.received()
        );
        Ok(())
    } else {
        Err(failures.join("\n  "))
    }
}

fn report(started: Instant, counts: &Counts, recorded: &RecorderStats, local: &XRayLocal) {
    let t = &recorded.transport;
    let stats = local.stats();
    let traces = local.traces().len();
    let dropped: Vec<String> = DropReason::ALL
        .iter()
        .filter(|r| stats.dropped(**r) > 0)
        .map(|r| format!("{} {}", r.as_str(), stats.dropped(*r)))
        .collect();
    println!(
        "soak {:6.1} min: rss {} | requests {} (ok {}, 4xx {}, 5xx {}, failed {}, timed out {}) | \
         recorder queued {} sent {} dropped_full {} dropped_too_large {} failed {} pending {} \
         (split {}, truncated {}, streamed {}, last error {}) | xray-local received {} accepted \
         {} dropped [{}] kernel {} | traces held {traces} (evicted {})",
        started.elapsed().as_secs_f64() / 60.0,
        rss_bytes().map_or_else(|| "?".to_owned(), |b| format!("{:.1} MiB", b as f64 / MIB)),
        load(&counts.sent),
        load(&counts.ok),
        load(&counts.client_errors),
        load(&counts.server_errors),
        load(&counts.failed),
        load(&counts.timed_out),
        t.queued,
        t.sent,
        t.dropped_full,
        t.dropped_too_large,
        t.failed,
        t.pending(),
        t.split,
        t.truncated,
        recorded.streamed,
        t.last_error.map_or("none", |k| k.as_str()),
        stats.received(),
        stats.accepted(),
        dropped.join(", "),
        stats
            .kernel_dropped()
            .map_or_else(|| "?".to_owned(), |k| k.to_string()),
        stats.evicted_traces(),
    );
}

/// This process's resident memory, from `/proc/self/status` (Linux).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

// ===== the services =====

/// Starts `soak-b`, then `soak-a` calling it; returns `soak-a`'s address.
async fn start_services(recorder: Recorder) -> Result<SocketAddr, String> {
    let b = Router::new()
        .route("/b/status/{code}", get(b_status))
        .route("/b/work", get(b_work))
        .route("/b/many", get(b_many))
        .route("/b/big", get(b_big))
        .route("/b/fail", get(b_fail))
        .with_state(recorder.clone())
        .layer(XRayLayer::new("soak-b").with_recorder(recorder.clone()));
    let b = serve(b).await?;
    // A port that was free a moment ago: calls to it fail to connect.
    let closed = std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .and_then(|l| l.local_addr())
        .map_err(|err| format!("no free port: {err}"))?;
    let client = XRayClientLayer::new()
        .with_recorder(recorder.clone())
        .with_traced(true)
        .layer(plain_client());
    let a = Router::new()
        .route("/a/{what}", get(a_call))
        .with_state(AState { client, b, closed })
        .layer(XRayLayer::new("soak-a").with_recorder(recorder));
    serve(a).await
}

async fn serve(app: Router) -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .map_err(|err| format!("cannot listen: {err}"))?;
    let addr = listener
        .local_addr()
        .map_err(|err| format!("no address: {err}"))?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

#[derive(Clone)]
struct AState {
    client: XRayClient<Plain>,
    b: SocketAddr,
    closed: SocketAddr,
}

/// `soak-a`: calls `soak-b` (or the closed port) and answers with what came back.
async fn a_call(State(s): State<AState>, Path(what): Path<String>) -> (StatusCode, String) {
    let uri = match what.as_str() {
        "direct" => return (StatusCode::OK, "direct".to_owned()),
        "work" => format!("http://{}/b/work", s.b),
        "many" => format!("http://{}/b/many", s.b),
        "big" => format!("http://{}/b/big", s.b),
        "fail" => format!("http://{}/b/fail", s.b),
        "down" => format!("http://{}/", s.closed),
        code => format!("http://{}/b/status/{code}", s.b),
    };
    let Ok(request) = Request::get(uri).body(Full::<Bytes>::default()) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "bad uri".to_owned());
    };
    match s.client.oneshot(request).await {
        Ok(response) => {
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
        Err(err) => (StatusCode::BAD_GATEWAY, err.to_string()),
    }
}

async fn b_status(Path(code): Path<u16>) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST)
}

async fn b_work(State(recorder): State<Recorder>) -> String {
    {
        let sub = recorder.begin_subsegment("work");
        sub.put_annotation("items", 3);
        sub.put_metadata(
            "order",
            &serde_json::json!({"id": 17, "lines": [1, 2, 3], "note": "é\u{1f600}"}),
        );
        sub.begin_subsegment("query").end();
        sub.end();
    }
    tokio::time::sleep(Duration::from_millis(2)).await;
    "worked".to_owned()
}

/// More subsegments than the streaming threshold (100): some are sent ahead.
async fn b_many(State(recorder): State<Recorder>) -> String {
    for i in 0..120u32 {
        let sub = recorder.begin_subsegment("step");
        sub.put_annotation("i", i);
        sub.end();
    }
    "many".to_owned()
}

/// A segment too large for one datagram: split into pieces, or trimmed.
async fn b_big(State(recorder): State<Recorder>) -> String {
    let sub = recorder.begin_subsegment("big");
    sub.put_metadata("blob", &"x".repeat(80 * 1024));
    sub.end();
    "big".to_owned()
}

async fn b_fail(State(recorder): State<Recorder>) -> StatusCode {
    let sub = recorder.begin_subsegment("disk");
    sub.add_error(&std::io::Error::other("disk on fire"));
    sub.end();
    StatusCode::INTERNAL_SERVER_ERROR
}

// ===== the load =====

const PATHS: &[(&str, u32)] = &[
    ("work", 40),
    ("direct", 15),
    ("200", 10),
    ("404", 8),
    ("429", 4),
    ("500", 6),
    ("fail", 5),
    ("down", 3),
    ("many", 2),
    ("big", 2),
    ("notanumber", 1),
];

fn pick_path(rng: &mut SmallRng) -> &'static str {
    let total: u32 = PATHS.iter().map(|(_, w)| w).sum();
    let mut roll = rng.random_range(0..total);
    for &(path, weight) in PATHS {
        if roll < weight {
            return path;
        }
        roll -= weight;
    }
    "work"
}

/// One client: a request every `period` until `deadline`, without catching up on a late
/// one (so that a slow service is not flooded).
async fn load_loop(
    a: SocketAddr,
    counts: Arc<Counts>,
    seed: u64,
    deadline: Instant,
    period: Duration,
) {
    let client = plain_client();
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut next = Instant::now();
    while Instant::now() < deadline {
        let path = pick_path(&mut rng);
        let mut builder = Request::get(format!("http://{a}/a/{path}"));
        let root = format!(
            "1-{:08x}-{:024x}",
            rng.random::<u32>(),
            rng.random::<u128>() & ((1u128 << 96) - 1)
        );
        builder = match rng.random_range(0..20u32) {
            0 => builder.header("x-amzn-trace-id", format!("Root={root};Sampled=1")),
            1 => builder.header("x-amzn-trace-id", format!("Root={root};Sampled=0")),
            2 => builder.header(
                "x-amzn-trace-id",
                format!("Root={root};Sampled=?;Lineage=a87bd80c:1"),
            ),
            3 => builder.header("x-amzn-trace-id", "Root=fake;Parent=xyz;Tenant=blue"),
            _ => builder,
        };
        let Ok(request) = builder.body(Full::<Bytes>::default()) else {
            continue;
        };
        counts.sent.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(Duration::from_secs(10), client.request(request)).await {
            Ok(Ok(response)) => {
                let status = response.status();
                let _ = response.into_body().collect().await;
                let counter = if status.is_success() {
                    &counts.ok
                } else if status.is_client_error() {
                    &counts.client_errors
                } else {
                    &counts.server_errors
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(_)) => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                counts.timed_out.fetch_add(1, Ordering::Relaxed);
            }
        }
        next += period;
        match next.checked_duration_since(Instant::now()) {
            Some(wait) => tokio::time::sleep(wait).await,
            None => next = Instant::now(),
        }
    }
}
