//! Centralized sampling end to end: xray-core's CentralizedSampler polling xray-local's
//! sampling proxy over real HTTP, and the decisions showing in the documents it then receives.

use std::sync::Arc;
use std::time::Duration;

use xray_core::{CentralizedSampler, DaemonAddress, Recorder, SamplingRequest};
use xray_local::{SamplingRule, XrayLocal};

#[test]
fn rules_from_the_daemon_decide_and_statistics_flow_back() {
    let mut orders = SamplingRule::new("orders", 10, 0.0, 0);
    orders.url_path = "/orders*".into();
    let mut health = SamplingRule::new("health", 5, 0.0, 0);
    health.url_path = "/health".into();
    let mut default = SamplingRule::default_rule();
    default.fixed_rate = 1.0;
    let daemon = XrayLocal::builder()
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
