//! Centralized sampling end to end: xray-sdk's CentralizedSampler polling xray-local's
//! sampling proxy over real HTTP, and the decisions showing in the documents it then receives.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xray_local::{CentralizedRule, XRayLocal};
use xray_sdk::clock::ManualClock;
use xray_sdk::sampling::{CentralizedSampler, DecidingRule, SamplingRequest};
use xray_sdk::{DaemonAddress, Recorder};

/// The daemon's proxy, with one rule, `everything`, that samples all.
fn daemon_at(addr: SocketAddr) -> XRayLocal {
    let mut everything = CentralizedRule::new("everything", 1, 1.0, 0);
    everything.url_path = "*".into();
    // The port was free a moment ago, or was this test's own daemon's: retry while the old
    // listener lets go of it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let started = XRayLocal::builder()
            .udp_addr(addr)
            .tcp_addr(addr)
            .rules(vec![everything.clone(), CentralizedRule::default_rule()])
            .unwrap()
            .start();
        match started {
            Ok(daemon) => return daemon,
            Err(e) if Instant::now() < deadline => {
                eprintln!("daemon not started yet: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("daemon does not start on {addr}: {e}"),
        }
    }
}

/// Waits until the recorder's sampler is decided by `rule`.
fn wait_for_rule(recorder: &Recorder, rule: &DecidingRule) {
    let request = SamplingRequest::new().with_url_path("/orders");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = recorder.sampler().explain(&request);
        if now.decision().rule() == rule {
            return;
        }
        assert!(Instant::now() < deadline, "still {now}, not {rule:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Nothing in code but the environment: the recorder samples by the daemon's rules, keeps to
/// the local rules while the daemon is not there, and takes the daemon's rules again when it
/// returns.
#[test]
fn a_recorder_from_the_environment_alone_follows_the_daemons_rules() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let clock = Arc::new(ManualClock::new(1_735_689_600_000_000));
    let recorder = Recorder::builder()
        .with_env(move |key| (key == "AWS_XRAY_DAEMON_ADDRESS").then(|| addr.to_string()))
        // Nothing beyond loopback, whatever machine the test runs on.
        .with_environment_detection(xray_sdk::plugins::DetectOptions::disabled())
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let everything = DecidingRule::Centralized("everything".into());

    // No daemon yet: the local default rules decide.
    wait_for_rule(&recorder, &DecidingRule::LocalDefault);

    // The daemon starts: its rules are fetched at the next retry (every 10 s without rules).
    let daemon = daemon_at(addr);
    wait_for_rule(&recorder, &everything);
    let segment = recorder.begin_segment_with(
        "orders",
        None,
        &SamplingRequest::new().with_url_path("/orders"),
    );
    assert!(segment.is_sampled());
    assert_eq!(segment.sampling_rule(), Some("everything"));
    let trace_id = segment.trace_id();
    segment.end();
    let trace = daemon
        .wait_for_trace(trace_id, Duration::from_secs(10))
        .expect("the sampled trace reaches the daemon");
    assert_eq!(
        trace.segments()[0]["aws"]["xray"]["sampling_rule_name"],
        "everything"
    );

    // The daemon goes away and the rules outlive their hour: the local rules decide again.
    drop(daemon);
    clock.advance_micros(3_601 * 1_000_000);
    wait_for_rule(&recorder, &DecidingRule::LocalDefault);

    // It comes back: so do its rules.
    let _daemon = daemon_at(addr);
    wait_for_rule(&recorder, &everything);
}

#[test]
fn rules_from_the_daemon_decide_and_statistics_flow_back() {
    let mut orders = CentralizedRule::new("orders", 10, 0.0, 0);
    orders.url_path = "/orders*".into();
    let mut health = CentralizedRule::new("health", 5, 0.0, 0);
    health.url_path = "/health".into();
    let mut default = CentralizedRule::default_rule();
    default.fixed_rate = 1.0;
    let daemon = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .rules(vec![health, orders, default])
        .unwrap()
        .start()
        .unwrap();

    let sampler = Arc::new(
        CentralizedSampler::builder(daemon.tcp_addr())
            .with_background_polling(false)
            .build(),
    );
    assert_eq!(sampler.refresh_rules_now().unwrap(), 3);
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_daemon_address(DaemonAddress::new(daemon.udp_addr()))
        .with_sampler(sampler.clone())
        .build()
        .unwrap();

    // Rate 0 and no reservoir: never sampled.
    for _ in 0..10 {
        let req = SamplingRequest::new()
            .with_url_path("/health")
            .with_method("GET");
        assert!(!recorder.begin_segment_with("api", None, &req).is_sampled());
    }
    // The Default rule at rate 1: always sampled, and named in the document.
    let req = SamplingRequest::new()
        .with_url_path("/checkout")
        .with_method("POST");
    let segment = recorder.begin_segment_with("api", None, &req);
    assert!(segment.is_sampled());
    assert_eq!(segment.sampling_rule(), Some("Default"));
    let trace_id = segment.trace_id();
    segment.end();
    let trace = daemon
        .wait_for_trace(trace_id, Duration::from_secs(10))
        .expect("sampled trace arrives");
    xray_testkit::assert_all_valid(trace.segments().iter().chain(trace.orphans()));
    let doc = &trace.segments()[0];
    assert_eq!(doc["aws"]["xray"]["sampling_rule_name"], "Default");

    // The counters reach the daemon's SamplingTargets endpoint.
    assert!(sampler.refresh_targets_now().unwrap() >= 1);
    let stats = daemon.sampling_statistics();
    let health = stats.iter().find(|s| s.rule_name == "health").unwrap();
    assert_eq!((health.request_count, health.sampled_count), (10, 0));
    assert_eq!(health.client_id.len(), 24);
    let default = stats.iter().find(|s| s.rule_name == "Default").unwrap();
    // No quota assigned yet: the Default rule's reservoir of 1 lends the request (a borrow),
    // which the SDKs count apart from SampledCount.
    assert_eq!(
        (
            default.request_count,
            default.sampled_count,
            default.borrow_count
        ),
        (1, 0, 1)
    );
}
