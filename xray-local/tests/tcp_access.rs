//! Who may call the TCP API, and where it listens: a web page gets no trace (DNS rebinding,
//! cross-origin requests), SDKs keep working, and a wildcard UDP address does not expose the
//! API.

mod support;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use serde_json::{Value, json};
use support::raw_http::{local, request};
use support::{Sdk, WAIT, id, segment, trace_id};
use xray_local::XRayLocal;

/// A daemon holding one trace; returns it with the trace's id.
fn holding_a_trace(builder: xray_local::XRayLocalBuilder) -> (XRayLocal, String) {
    let daemon = builder.start().unwrap();
    let t = trace_id();
    Sdk::new(&daemon).send(&segment(&t, &id(), "secret-service", 1.0, 2.0));
    daemon.wait_for_trace(&t, WAIT).expect("the trace arrives");
    (daemon, t)
}

fn on_loopback() -> xray_local::XRayLocalBuilder {
    XRayLocal::builder().udp_addr("127.0.0.1:0".parse().unwrap())
}

fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    request(addr, "GET", path, headers, "", WAIT).unwrap()
}

#[test]
fn a_foreign_host_gets_403_and_no_trace_data() {
    let (daemon, t) = holding_a_trace(on_loopback());
    let addr = daemon.tcp_addr();
    let rebound = format!("evil.example:{}", addr.port());
    for path in [
        "/traces".to_owned(),
        format!("/traces/{t}"),
        "/map".to_owned(),
    ] {
        let (status, body) = get(addr, &path, &[("Host", rebound.as_str())]);
        assert_eq!(status, 403, "GET {path}: {body}");
        assert!(
            !body.contains(&t) && !body.contains("secret-service"),
            "{body}"
        );
        let error: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["__type"], "AccessDeniedException");
    }
    // An absolute-form target names the host too.
    let (status, body) = get(
        addr,
        &format!("http://{rebound}/traces"),
        &[("Host", addr.to_string().as_str())],
    );
    assert_eq!(status, 403, "{body}");

    // Loopback names and addresses are answered.
    for host in [
        addr.to_string(),
        format!("localhost:{}", addr.port()),
        "LOCALHOST.".to_owned(),
        "[::1]".to_owned(),
    ] {
        let (status, body) = get(addr, "/traces", &[("Host", host.as_str())]);
        assert_eq!(status, 200, "Host {host}: {body}");
        assert!(body.contains(&t), "{body}");
    }
    let (_, stats) = support::get_json(addr, "/stats");
    assert_eq!(stats["tcp"]["forbidden"], 4, "{stats}");
}

#[test]
fn a_cross_origin_text_plain_post_is_refused() {
    let (daemon, t) = holding_a_trace(on_loopback());
    let addr = daemon.tcp_addr();
    let host = addr.to_string();
    let report = json!({"SamplingStatisticsDocuments": [{
        "RuleName": "Default", "ClientID": "59ea0cebf2ac3fca7f86e2f2",
        "Timestamp": 1.0, "RequestCount": 10, "SampledCount": 1, "BorrowCount": 0,
    }]})
    .to_string();
    // What a form or a no-preflight fetch from another site sends.
    let browser = [
        ("Host", host.as_str()),
        ("Origin", "http://evil.example"),
        ("Content-Type", "text/plain"),
    ];
    for path in ["/SamplingTargets", "/GetSamplingRules", "/v1/traces"] {
        let (status, body) = request(addr, "POST", path, &browser, &report, WAIT).unwrap();
        assert_eq!(status, 403, "POST {path}: {body}");
    }
    assert!(daemon.sampling_statistics().is_empty());
    assert_eq!(daemon.sampling_calls().sampling_targets(), 0);

    // Nor can another origin read traces, loopback Host or not; `Origin: null` (a sandboxed
    // page, a file) is another origin too.
    for origin in ["http://evil.example", "null", "http://localhost:3000"] {
        let (status, body) = get(
            addr,
            "/traces",
            &[("Host", host.as_str()), ("Origin", origin)],
        );
        assert_eq!(status, 403, "Origin {origin}: {body}");
        assert!(!body.contains(&t));
    }
    // A rebound page is same-origin as far as its browser knows, but its host is not ours.
    let rebound = format!("evil.example:{}", addr.port());
    let origin = format!("http://{rebound}");
    let rebound_post = [
        ("Host", rebound.as_str()),
        ("Origin", origin.as_str()),
        ("Content-Type", "text/plain"),
    ];
    let (status, _) = request(
        addr,
        "POST",
        "/SamplingTargets",
        &rebound_post,
        &report,
        WAIT,
    )
    .unwrap();
    assert_eq!(status, 403);
    // Browsers without Origin still say where a request comes from.
    let (status, _) = get(
        addr,
        "/traces",
        &[("Host", host.as_str()), ("Sec-Fetch-Site", "cross-site")],
    );
    assert_eq!(status, 403);
    assert!(daemon.sampling_statistics().is_empty());
}

#[test]
fn an_sdk_request_is_answered() {
    let (daemon, t) = holding_a_trace(on_loopback());
    let addr = daemon.tcp_addr();
    // As the SDKs send it: Host is the daemon address, no Origin.
    let (status, body) = local(addr, "POST", "/GetSamplingRules", "{}", WAIT).unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = local(addr, "GET", "/traces", "", WAIT).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&t));
    // SDKs reach a daemon by whatever name their network gives it: the sampling API answers
    // any Host.
    let sdk = [
        ("Host", "xray-daemon:2000"),
        ("Content-Type", "application/json"),
    ];
    let (status, body) = request(addr, "POST", "/GetSamplingRules", &sdk, "{}", WAIT).unwrap();
    assert_eq!(status, 200, "{body}");
    // No Host at all (HTTP/1.0 clients) is no browser.
    let (status, _) = get(addr, "/stats", &[]);
    assert_eq!(status, 200);
    // The daemon's own origin is not foreign.
    let host = addr.to_string();
    let own = format!("http://{host}");
    let (status, _) = get(
        addr,
        "/traces",
        &[("Host", host.as_str()), ("Origin", own.as_str())],
    );
    assert_eq!(status, 200);
}

#[test]
fn allow_host_opens_the_read_api_to_a_name() {
    let (daemon, t) = holding_a_trace(on_loopback().allow_host("xray-daemon"));
    let addr = daemon.tcp_addr();
    let (status, body) = get(addr, "/traces", &[("Host", "Xray-Daemon:2000")]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&t));
    let (status, _) = get(addr, "/traces", &[("Host", "evil.example")]);
    assert_eq!(status, 403);
    assert!(
        daemon.exposure().contains("xray-daemon"),
        "{}",
        daemon.exposure()
    );

    let (daemon, _) = holding_a_trace(on_loopback().allow_host("*"));
    let (status, _) = get(daemon.tcp_addr(), "/traces", &[("Host", "evil.example")]);
    assert_eq!(status, 200);
    // Another origin stays refused whatever the hosts.
    let (status, _) = get(
        daemon.tcp_addr(),
        "/traces",
        &[
            ("Host", "evil.example"),
            ("Origin", "http://elsewhere.example"),
        ],
    );
    assert_eq!(status, 403);
}

#[test]
fn a_wildcard_udp_address_keeps_the_api_on_loopback() {
    let daemon = XRayLocal::builder()
        .udp_addr("0.0.0.0:0".parse().unwrap())
        .start()
        .unwrap();
    assert_eq!(daemon.udp_addr().ip(), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(daemon.tcp_addr().ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    let exposure = daemon.exposure();
    assert!(
        exposure.contains(&format!("udp {} (every interface)", daemon.udp_addr())),
        "{exposure}"
    );
    assert!(
        exposure.contains(&format!("tcp {} (loopback only)", daemon.tcp_addr())),
        "{exposure}"
    );
    assert!(exposure.contains("/GetSamplingRules") && exposure.contains("/traces"));
    // A non-loopback address in Host reaches nothing but loopback here.
    let (status, _) = get(daemon.tcp_addr(), "/stats", &[("Host", "192.0.2.1:2000")]);
    assert_eq!(status, 403);

    // Told explicitly, it listens everywhere, and answers a Host with any IP address (a
    // rebinding attack needs a name).
    let daemon = XRayLocal::builder()
        .udp_addr("0.0.0.0:0".parse().unwrap())
        .tcp_addr("0.0.0.0:0".parse().unwrap())
        .start()
        .unwrap();
    assert!(daemon.tcp_addr().ip().is_unspecified());
    assert!(
        daemon
            .exposure()
            .contains(&format!("tcp {} (every interface)", daemon.tcp_addr())),
        "{}",
        daemon.exposure()
    );
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, daemon.tcp_addr().port()));
    let (status, _) = get(loopback, "/stats", &[("Host", "192.0.2.1:2000")]);
    assert_eq!(status, 200);
    let (status, _) = get(loopback, "/stats", &[("Host", "evil.example:2000")]);
    assert_eq!(status, 403);
}

// ===== the binary =====

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary; returns the TCP address of its first line and its `exposed:` line.
fn spawn(args: &[&str]) -> (Running, SocketAddr, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xray-local"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_REGION")
        .env_remove("ECS_ENABLE_CONTAINER_METADATA")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let running = Running(child);
    let (tx, rx) = mpsc::channel();
    // Reads to the end, so that the binary never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(WAIT).expect("a first line on stderr");
    let tcp = first
        .strip_prefix("xray-local: listening on udp ")
        .and_then(|rest| rest.split_once(" tcp "))
        .and_then(|(_, tcp)| tcp.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {first}"));
    let exposed = loop {
        let line = rx
            .recv_timeout(WAIT)
            .expect("a line saying what is exposed where");
        if line.contains("exposed: ") {
            break line;
        }
    };
    (running, tcp, exposed)
}

#[test]
fn the_binary_binds_the_api_to_loopback_beside_a_wildcard_udp_address() {
    let (_running, tcp, exposed) = spawn(&["--udp", "0.0.0.0:0"]);
    assert_eq!(tcp.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST), "{exposed}");
    assert!(exposed.contains("(every interface)"), "{exposed}");
    assert!(
        exposed.contains(&format!("tcp {tcp} (loopback only)")),
        "{exposed}"
    );
    let (status, _) = local(tcp, "POST", "/GetSamplingRules", "{}", WAIT).unwrap();
    assert_eq!(status, 200);

    // The AWS daemon's flags still choose, and --allow-host reaches the read API.
    let (_running, tcp, exposed) = spawn(&[
        "-b",
        "0.0.0.0:0",
        "-t",
        "0.0.0.0:0",
        "--allow-host",
        "xray-daemon",
    ]);
    assert!(tcp.ip().is_unspecified(), "{exposed}");
    assert!(
        exposed.contains(&format!("tcp {tcp} (every interface)")),
        "{exposed}"
    );
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, tcp.port()));
    let (status, _) = get(loopback, "/stats", &[("Host", "xray-daemon:2000")]);
    assert_eq!(status, 200);
    let (status, _) = get(loopback, "/stats", &[("Host", "evil.example:2000")]);
    assert_eq!(status, 403);
}
