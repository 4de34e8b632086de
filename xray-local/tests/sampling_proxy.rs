//! The sampling proxy of a forwarding xray-local: an SDK's centralized sampler gets X-Ray's
//! rules and targets through it. X-Ray is a real HTTP server on 127.0.0.1 that answers as the
//! X-Ray API documents (`tests/data/sampling/*.json`, moto has no sampling API) and keeps every
//! request, whose SigV4 signature botocore then recomputes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use xray_local::{ForwardConfig, XRayLocal};
use xray_sdk::sampling::{CentralizedSampler, SamplingRequest};
use xray_sdk::{DaemonAddress, Recorder};

#[path = "support/xray_api.rs"]
mod xray_api;

use xray_api::{Received, TARGETS, Xray};

const ACCESS_KEY: &str = "AKIDEXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const TOKEN: &str = "session/token+with=odd";
const REGION: &str = "eu-west-3";

fn forwarding_daemon(endpoint: &str) -> XRayLocal {
    let credentials =
        Credentials::new(ACCESS_KEY, SECRET_KEY, Some(TOKEN.to_owned()), None, "test");
    XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .forward(
            ForwardConfig::new(REGION)
                .endpoint(endpoint)
                .credentials(SharedCredentialsProvider::new(credentials)),
        )
        .start()
        .unwrap()
}

/// A POST over a fresh connection; returns the status and the body.
fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

fn assert_signed(xray: &Xray, request: &Received) {
    let url = format!("{}{}", xray.url(), request.path);
    xray_testkit::assert_sigv4_by_botocore(&xray_testkit::SignedRequest {
        method: "POST",
        url: &url,
        headers: &request.headers,
        body: &request.body,
        access_key: ACCESS_KEY,
        secret_key: SECRET_KEY,
        token: Some(TOKEN),
        region: REGION,
    });
}

#[test]
fn a_centralized_sampler_samples_by_the_rules_x_ray_gives_through_the_proxy() {
    let xray = Xray::start();
    let daemon = forwarding_daemon(&xray.url());
    let sampler = Arc::new(
        CentralizedSampler::builder(daemon.tcp_addr())
            .with_background_polling(false)
            .build(),
    );
    assert_eq!(sampler.refresh_rules_now().unwrap(), 2);
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_daemon_address(DaemonAddress::new(daemon.udp_addr()))
        .with_sampler(sampler.clone())
        .build()
        .unwrap();
    for _ in 0..5 {
        let req = SamplingRequest::new().with_url_path("/blocked/a");
        assert!(!recorder.begin_segment_with("api", None, &req).is_sampled());
    }
    let req = SamplingRequest::new().with_url_path("/orders");
    let segment = recorder.begin_segment_with("api", None, &req);
    assert!(segment.is_sampled());
    assert_eq!(segment.sampling_rule(), Some("Default"));
    segment.end();
    assert!(sampler.refresh_targets_now().unwrap() >= 1);

    let received = xray.received();
    let paths: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/GetSamplingRules", "/SamplingTargets"]);
    for request in &received {
        assert_signed(&xray, request);
    }
    let targets: serde_json::Value = serde_json::from_slice(&received[1].body).unwrap();
    let names: Vec<&str> = targets["SamplingStatisticsDocuments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["RuleName"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"blocked"), "{targets}");
    daemon.shutdown();
}

#[test]
fn bodies_go_byte_for_byte_and_only_the_sampling_api_is_forwarded() {
    let xray = Xray::start();
    let daemon = forwarding_daemon(&xray.url());
    // A member this crate does not know, and odd spacing: both must reach X-Ray unchanged.
    let body = r#"{ "SamplingStatisticsDocuments": [],  "SamplingBoostStatisticsDocuments": [{"RuleName":"x"}] }"#;
    let (status, answer) = post(daemon.tcp_addr(), "/SamplingTargets", body);
    assert_eq!(status, 200);
    assert_eq!(answer, TARGETS);
    // The rest of the X-Ray API is not reachable through the daemon's identity.
    for path in [
        "/TraceSegments",
        "/Traces",
        "/TraceGraph",
        "/CreateSamplingRule",
    ] {
        let (status, _) = post(daemon.tcp_addr(), path, "{}");
        assert!((400..500).contains(&status), "{path}: {status}");
    }
    let received = xray.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].path, "/SamplingTargets");
    assert_eq!(received[0].body, body.as_bytes());
    assert_signed(&xray, &received[0]);
    daemon.shutdown();
}

#[test]
fn an_x_ray_that_is_down_is_a_counted_502_not_a_hang() {
    // A port that was free a moment ago: nothing listens there.
    let port = xray_testkit::moto::free_port();
    let daemon = forwarding_daemon(&format!("http://127.0.0.1:{port}"));
    let (status, answer) = post(daemon.tcp_addr(), "/GetSamplingRules", "{}");
    assert_eq!(status, 502, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("did not answer")
    );
    let sampler = CentralizedSampler::builder(daemon.tcp_addr())
        .with_background_polling(false)
        .build();
    assert!(sampler.refresh_rules_now().is_err());
    let (status, stats) = {
        let mut stream = TcpStream::connect(daemon.tcp_addr()).unwrap();
        write!(
            stream,
            "GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.contains(" 200 "), body.to_owned())
    };
    assert!(status);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["sampling_proxy"]["failed"], 2, "{stats}");
    assert_eq!(stats["sampling_proxy"]["forwarded"], 0, "{stats}");
    daemon.shutdown();
}

#[test]
fn with_local_sampling_the_local_rules_answer_even_when_forwarding() {
    let xray = Xray::start();
    let daemon = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .forward(ForwardConfig::new(REGION).endpoint(xray.url()).credentials(
            SharedCredentialsProvider::new(Credentials::new("a", "b", None, None, "test")),
        ))
        .local_sampling()
        .start()
        .unwrap();
    let sampler = CentralizedSampler::builder(daemon.tcp_addr())
        .with_background_polling(false)
        .build();
    // The local Default rule only.
    assert_eq!(sampler.refresh_rules_now().unwrap(), 1);
    assert!(xray.received().is_empty());
    daemon.shutdown();
}

#[test]
fn with_a_role_arn_x_ray_sees_the_assumed_role_not_the_daemon_s_own_keys() {
    use std::io::BufRead as _;
    // moto's STS hands out the role's credentials; X-Ray is the stand-in above.
    let moto = xray_testkit::moto::Moto::start();
    let xray = Xray::start();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_xray-local"))
        .args([
            "-o",
            "-b",
            "127.0.0.1:0",
            "-n",
            "us-east-1",
            "--endpoint",
            &xray.url(),
        ])
        .args(["-r", "arn:aws:iam::123456789012:role/xray-daemon"])
        .env("AWS_ACCESS_KEY_ID", "AKIDDAEMONOWNKEY0000")
        .env("AWS_SECRET_ACCESS_KEY", "daemon-secret")
        .env("AWS_ENDPOINT_URL_STS", &moto.endpoint)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let tcp: SocketAddr = first
        .trim()
        .rsplit_once(" tcp ")
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .1
        .parse()
        .unwrap();
    let (status, answer) = post(tcp, "/GetSamplingRules", "{}");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200, "{answer}");
    let received = xray.received();
    assert_eq!(received.len(), 1);
    let header = |name: &str| {
        received[0]
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let auth = header("authorization").expect("signed");
    assert!(!auth.contains("AKIDDAEMONOWNKEY0000"), "{auth}");
    let key = auth
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').next())
        .unwrap();
    assert!(
        key.starts_with("ASIA"),
        "moto's temporary key for the role: {auth}"
    );
    assert!(header("x-amz-security-token").is_some(), "a session token");
}
