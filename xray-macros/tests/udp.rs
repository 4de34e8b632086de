//! End to end over a real UDP socket: captured sync and async functions, sent by a recorder
//! that streams finished subsegments early, reassembled by `xray-local`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use xray_local::XRayLocal;
use xray_sdk::sampling::{LocalSampler, SamplingRules};
use xray_sdk::{DaemonAddress, FutureExt, Recorder, capture};

#[derive(Debug)]
struct Unavailable;

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stock service unavailable")
    }
}

impl std::error::Error for Unavailable {}

#[capture(annotate(sku))]
fn reserve(sku: &str) -> Result<u32, Unavailable> {
    if sku == "gone" {
        Err(Unavailable)
    } else {
        Ok(1)
    }
}

#[capture(name = "pay", metadata(amount))]
async fn pay(amount: u64) -> bool {
    tokio::task::yield_now().await;
    amount > 0
}

#[capture(name = "checkout")]
async fn checkout(skus: &[&str]) -> usize {
    let reserved = skus.iter().filter(|s| reserve(s).is_ok()).count();
    pay(reserved as u64 * 100).await;
    reserved
}

#[test]
fn a_captured_call_tree_arrives_whole() {
    let local = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .quiet_period(Duration::from_millis(200))
        .start()
        .unwrap();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_service_name("shop")
        .with_daemon_address(DaemonAddress::new(local.udp_addr()))
        .with_sampler(Arc::new(LocalSampler::new(
            SamplingRules::builder()
                .with_default(0, 1.0)
                .build()
                .unwrap(),
        )))
        // Stream every finished subtree at once, so the trace arrives in several pieces.
        .with_streaming_threshold(1)
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();

    let segment = recorder.begin_segment("shop");
    let trace_id = segment.trace_id();
    let entity = segment.entity().clone();
    let n = rt
        .block_on(rt.spawn(checkout(&["a", "gone", "b"]).with_context(entity)))
        .unwrap();
    assert_eq!(n, 2);
    segment.end();
    assert!(recorder.flush(Duration::from_secs(5)).is_complete());

    let trace = local
        .wait_for_trace(trace_id, Duration::from_secs(10))
        .expect("the trace arrives");
    xray_testkit::assert_all_valid(trace.segments().iter().chain(trace.orphans()));
    assert!(trace.is_complete());
    let checkout = trace.find("checkout").expect("checkout");
    assert_eq!(checkout.parent().and_then(|p| p.name()), Some("shop"));
    let reserves: Vec<_> = trace.find_all("reserve").collect();
    assert_eq!(reserves.len(), 3);
    for r in &reserves {
        assert_eq!(r.parent().and_then(|p| p.name()), Some("checkout"));
    }
    let failed: Vec<_> = reserves
        .iter()
        .filter(|r| r.get("fault") == Some(&serde_json::Value::Bool(true)))
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].doc()["annotations"]["sku"], "gone");
    assert_eq!(
        failed[0].doc()["cause"]["exceptions"][0]["message"],
        "stock service unavailable"
    );
    let pay = trace.find("pay").expect("pay");
    assert_eq!(pay.parent().and_then(|p| p.name()), Some("checkout"));
    assert_eq!(pay.doc()["metadata"]["default"]["amount"], 200);
}
