//! xray-local forwarding against a scripted HTTP server that answers as X-Ray's API does when
//! moto cannot: throttling, server errors, unprocessed documents, and an endpoint that is
//! down. Nothing within the buffer is lost silently: every document is counted.

mod aws_common;

use std::sync::Arc;
use std::time::Duration;

use aws_common::{REGION, Scripted, ScriptedServer, credentials, free_port};
use aws_credential_types::provider::SharedCredentialsProvider;
use xray_local::{ForwardConfig, ForwardStats, XRayLocal};
use xray_sdk::sampling::{LocalSampler, SamplingRules};
use xray_sdk::{DaemonAddress, Recorder};

/// A restJson1 answer of X-Ray's API.
fn answer(status: u16, error_type: Option<&str>, body: &str) -> Scripted {
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("x-amzn-requestid", "req-1".to_owned()),
    ];
    if let Some(t) = error_type {
        headers.push(("x-amzn-errortype", t.to_owned()));
    }
    Scripted {
        status,
        headers,
        body: body.to_owned(),
    }
}

const OK: &str = r#"{"UnprocessedTraceSegments":[]}"#;

/// Sends `n` one-segment traces through xray-local forwarding to `endpoint`; returns the
/// forwarder's counters once it has settled everything.
fn forward(endpoint: &str, n: usize) -> ForwardStats {
    let config = ForwardConfig::new(REGION)
        .endpoint(endpoint)
        .credentials(SharedCredentialsProvider::new(credentials()))
        .idle(Duration::from_millis(50))
        .retries(3, Duration::from_millis(5), Duration::from_millis(20));
    let local = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .forward(config)
        .start()
        .unwrap();
    let all = SamplingRules::builder()
        .with_default(0, 1.0)
        .build()
        .unwrap();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_daemon_address(DaemonAddress::new(local.udp_addr()))
        .with_sampler(Arc::new(LocalSampler::new(all)))
        .build()
        .unwrap();
    for _ in 0..n {
        recorder.begin_segment("api").end();
    }
    local.wait_for_stats(Duration::from_secs(10), |s| s.accepted() >= n as u64);
    assert!(local.flush_forwarding(Duration::from_secs(30)));
    local.forward_stats().unwrap()
}

#[test]
fn throttling_is_retried_with_backoff_then_delivered() {
    let server = ScriptedServer::start(vec![
        answer(
            429,
            Some("ThrottledException"),
            r#"{"message":"Rate exceeded"}"#,
        ),
        answer(200, None, OK),
    ]);
    let stats = forward(&server.endpoint, 2);
    assert_eq!((stats.queued, stats.uploaded), (2, 2), "{stats:?}");
    assert_eq!(
        (stats.retried_batches, stats.backend_errors),
        (1, 1),
        "{stats:?}"
    );
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn unprocessed_documents_are_counted_as_rejected() {
    let server = ScriptedServer::start(vec![answer(
        200,
        None,
        r#"{"UnprocessedTraceSegments":[{"Id":"6226467e3f845502","ErrorCode":"InvalidTraceId","Message":"Invalid segment"}]}"#,
    )]);
    let stats = forward(&server.endpoint, 2);
    assert_eq!((stats.uploaded, stats.rejected), (1, 1), "{stats:?}");
    assert_eq!(stats.retried_batches, 0);
}

#[test]
fn server_errors_past_the_retries_count_the_documents_failed() {
    // The scripted server answers 500 once its script is done: here, at once.
    let server = ScriptedServer::start(vec![]);
    let stats = forward(&server.endpoint, 3);
    assert_eq!(
        (stats.queued, stats.uploaded, stats.failed),
        (3, 0, 3),
        "{stats:?}"
    );
    assert_eq!(stats.retried_batches, 2, "three attempts: {stats:?}");
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn a_client_error_is_not_retried() {
    let server = ScriptedServer::start(vec![answer(
        400,
        Some("InvalidRequestException"),
        r#"{"message":"bad"}"#,
    )]);
    let stats = forward(&server.endpoint, 1);
    assert_eq!((stats.failed, stats.retried_batches), (1, 0), "{stats:?}");
}

#[test]
fn an_endpoint_that_is_down_is_retried_then_counted() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let stats = forward(&endpoint, 2);
    assert_eq!((stats.uploaded, stats.failed), (0, 2), "{stats:?}");
    assert_eq!(stats.backend_errors, 3, "{stats:?}");
}

#[test]
fn a_full_buffer_drops_the_oldest_and_counts_them() {
    let port = free_port();
    let config = ForwardConfig::new(REGION)
        .endpoint(format!("http://127.0.0.1:{port}"))
        .credentials(SharedCredentialsProvider::new(credentials()))
        .buffer_bytes(2_000)
        .idle(Duration::from_secs(60))
        .retries(1, Duration::from_millis(1), Duration::from_millis(1));
    let local = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .forward(config)
        .start()
        .unwrap();
    let sdk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..40u32 {
        let doc = format!(
            r#"{{"format":"json","version":1}}
{{"name":"api","id":"{:016x}","trace_id":"1-5759e988-{:024x}","start_time":1.0,"end_time":2.0}}"#,
            i + 1,
            i + 1
        );
        sdk.send_to(doc.as_bytes(), local.udp_addr()).unwrap();
    }
    local.wait_for_stats(Duration::from_secs(10), |s| s.accepted() >= 40);
    let stats = local.forward_stats().unwrap();
    assert_eq!(stats.queued, 40);
    // About 140 bytes a document: 2,000 bytes hold 14.
    assert!(stats.dropped_buffer_full >= 20, "{stats:?}");
    assert!(local.flush_forwarding(Duration::from_secs(10)));
    let stats = local.forward_stats().unwrap();
    assert_eq!(
        stats.uploaded + stats.rejected + stats.failed + stats.dropped_buffer_full,
        40,
        "every document is accounted for: {stats:?}"
    );
}
