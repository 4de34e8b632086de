//! The TCP API cannot be locked out or stalled: idle connections, slow clients and a heavy
//! read-API query leave the sampling API answering within the SDKs' timeout.

mod support;

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::raw_http::{closed_after, local};
use support::{Sdk, WAIT, get_json, id, segment, trace_id};
use xray_local::XRayLocal;

/// What the SDKs allow a sampling call (2 s), with room to spare: the upper bound asserted.
const SAMPLING_BOUND: Duration = Duration::from_secs(1);
/// Traces sent between two looks at the daemon's progress while loading.
const CHUNK: u64 = 200;

#[test]
fn sampling_answers_within_a_second_beside_300_idle_connections() {
    let local_daemon = support::start();
    let addr = local_daemon.tcp_addr();
    // More than the daemon keeps open (256); they connect and send nothing.
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    // Let the daemon accept them all.
    std::thread::sleep(Duration::from_millis(300));

    let started = Instant::now();
    let answer = local(addr, "POST", "/GetSamplingRules", "{}", WAIT);
    let elapsed = started.elapsed();
    let (status, body) = answer.expect("GetSamplingRules answers beside 300 idle connections");
    assert_eq!(status, 200, "{body}");
    let rules: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        rules["SamplingRuleRecords"][0]["SamplingRule"]["RuleName"],
        "Default"
    );
    assert!(
        elapsed < SAMPLING_BOUND,
        "GetSamplingRules took {elapsed:?} beside 300 idle connections"
    );

    // The excess was closed, and counted; the bound held.
    let (status, stats) = get_json(addr, "/stats");
    assert_eq!(status, 200);
    let tcp = &stats["tcp"];
    assert!(tcp["closed_for_room"].as_u64().unwrap() >= 44, "{stats}");
    assert!(tcp["open"].as_u64().unwrap() <= 256, "{stats}");
    assert_eq!(tcp["max_open"], 256, "{stats}");
    drop(idle);
}

#[test]
fn silent_and_slow_clients_are_closed_after_a_short_timeout() {
    let daemon = support::start();
    let addr = daemon.tcp_addr();
    let every = Duration::from_millis(200);
    let limit = Duration::from_secs(20);
    // Sends nothing at all.
    let silent = std::thread::spawn(move || closed_after(addr, b"", b"", every, limit));
    // Sends its head a byte every 200 ms: 100 bytes of padding would take 20 s.
    let slow_head = std::thread::spawn(move || {
        let padding = format!("Host: 127.0.0.1\r\nX-Padding: {}\r\n\r\n", "a".repeat(100));
        closed_after(
            addr,
            b"GET /stats HTTP/1.1\r\n",
            padding.as_bytes(),
            every,
            limit,
        )
    });
    // Sends its head at once, then a body of 1,000 bytes a byte every 200 ms.
    let slow_body = std::thread::spawn(move || {
        let head = "POST /SamplingTargets HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                    Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
        closed_after(addr, head.as_bytes(), &[b' '; 1000], every, limit)
    });

    let silent = silent.join().unwrap();
    let slow_head = slow_head.join().unwrap();
    let slow_body = slow_body.join().unwrap();
    // The head timeout is 5 s, the body timeout 10 s; the bounds leave room for a busy machine.
    assert!(
        silent.is_some_and(|t| t < Duration::from_secs(9)),
        "a silent connection was closed after {silent:?}"
    );
    assert!(
        slow_head.is_some_and(|t| t < Duration::from_secs(9)),
        "a connection sending its head slowly was closed after {slow_head:?}"
    );
    assert!(
        slow_body.is_some_and(|t| t < Duration::from_secs(14)),
        "a connection sending its body slowly was closed after {slow_body:?}"
    );

    let (_, stats) = get_json(addr, "/stats");
    assert!(stats["tcp"]["timed_out"].as_u64().unwrap() >= 3, "{stats}");
    // Still serving.
    let (status, _) = local(addr, "POST", "/GetSamplingRules", "{}", WAIT).unwrap();
    assert_eq!(status, 200);
}

/// Sends `n` traces of a segment and ten `remote` subsegments (service nodes, so that
/// `service(..)` looks at each), pacing on the daemon; returns how many traces it holds.
fn load(daemon: &XRayLocal, n: u64) -> usize {
    let sdk = Sdk::new(daemon);
    let mut sent = 0;
    while sent < n {
        for _ in 0..CHUNK.min(n - sent) {
            let t = trace_id();
            let mut doc = segment(&t, &id(), "api", 1.0, 2.0);
            doc["subsegments"] = (0..10)
                .map(|i| {
                    json!({"name": format!("call-{i}"), "id": id(), "namespace": "remote",
                           "start_time": 1.1, "end_time": 1.2})
                })
                .collect();
            sdk.send(&doc);
            sent += 1;
        }
        // Datagrams the kernel dropped never arrive: wait a little, not for all of them.
        daemon.wait_for_stats(Duration::from_secs(2), |s| s.received() + CHUNK / 2 >= sent);
    }
    let received = daemon
        .wait_for_stats(Duration::from_secs(5), |s| s.received() >= n)
        .received();
    daemon
        .wait_for_traces(usize::try_from(received).unwrap(), WAIT)
        .len()
}

/// A filter of about 4 KB that matches nothing, so that every clause is tried on every trace.
fn heavy_filter() -> String {
    let mut expr = String::new();
    for i in 0.. {
        let clause = format!("service(\"absent-{i:04}\")");
        if expr.len() + clause.len() + 4 > 4000 {
            break;
        }
        if !expr.is_empty() {
            expr.push_str(" OR ");
        }
        expr.push_str(&clause);
    }
    let mut encoded = String::new();
    for b in expr.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    encoded
}

#[test]
fn a_heavy_read_query_does_not_hold_up_the_sampling_api() {
    let daemon = support::start();
    let held = load(&daemon, 10_000);
    assert!(held >= 5_000, "only {held} traces arrived");
    let addr = daemon.tcp_addr();
    let path = format!("/traces?filter={}", heavy_filter());

    // Three clients ask the heavy query over and over until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (stop, path) = (Arc::clone(&stop), path.clone());
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match local(addr, "GET", &path, "", Duration::from_secs(120)) {
                        Ok((status, _)) => statuses.push(status),
                        Err(err) => panic!("the heavy query failed: {err}"),
                    }
                }
                statuses
            })
        })
        .collect();
    // Let the queries get going.
    std::thread::sleep(Duration::from_millis(300));

    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        let (status, body) =
            local(addr, "POST", "/GetSamplingRules", "{}", WAIT).expect("GetSamplingRules");
        slowest = slowest.max(started.elapsed());
        assert_eq!(status, 200, "{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let statuses: Vec<u16> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();

    // The query was valid and answered (503 is the read lane being full), so the sampling
    // calls above really ran beside it.
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| matches!(s, 200 | 503)),
        "{statuses:?}"
    );
    assert!(
        slowest < SAMPLING_BOUND,
        "GetSamplingRules took {slowest:?} beside a heavy read query"
    );
}
