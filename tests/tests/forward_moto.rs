//! xray-local as a daemon that forwards: segments sent over real UDP are uploaded with
//! `PutTraceSegments` to moto's X-Ray API and read back with `BatchGetTraces`, field for field.

mod aws_common;

use std::sync::Arc;
use std::time::Duration;

use aws_common::{Moto, REGION, credentials, http_client};
use aws_credential_types::provider::SharedCredentialsProvider;
use xray_local::{ForwardConfig, Trace, XRayLocal};
use xray_sdk::sampling::{LocalSampler, SamplingRules};
use xray_sdk::{DaemonAddress, Recorder};

fn recorder(local: &XRayLocal, threshold: usize) -> Recorder {
    let all = SamplingRules::builder()
        .with_default(0, 1.0)
        .build()
        .unwrap();
    Recorder::builder()
        .ignore_environment()
        .with_service_name("forwarded")
        .with_daemon_address(DaemonAddress::new(local.udp_addr()))
        .with_sampler(Arc::new(LocalSampler::new(all)))
        .with_streaming_threshold(threshold)
        .build()
        .unwrap()
}

/// Every document of `trace_ids` as moto's X-Ray API holds them, assembled as xray-local
/// assembles what it receives.
async fn read_back(moto: &Moto, trace_ids: &[String]) -> Vec<Trace> {
    let config = aws_sdk_xray::Config::builder()
        .region(aws_sdk_xray::config::Region::new(REGION))
        .credentials_provider(credentials())
        .endpoint_url(&moto.endpoint)
        .http_client(http_client())
        .build();
    let client = aws_sdk_xray::Client::from_conf(config);
    let mut docs = Vec::new();
    for chunk in trace_ids.chunks(5) {
        let mut token = None;
        loop {
            let out = client
                .batch_get_traces()
                .set_trace_ids(Some(chunk.to_vec()))
                .set_next_token(token.clone())
                .send()
                .await
                .expect("BatchGetTraces");
            for trace in out.traces() {
                for segment in trace.segments() {
                    let doc: serde_json::Value =
                        serde_json::from_str(segment.document().unwrap_or("null")).unwrap();
                    docs.push(doc);
                }
            }
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
    }
    xray_local::assemble(docs).expect("documents X-Ray holds are valid")
}

/// Every entity of the trees, depth first, with siblings in (start_time, id) order, each
/// without its `subsegments`.
fn canonical(roots: &[serde_json::Value]) -> Vec<serde_json::Value> {
    fn key(v: &serde_json::Value) -> (f64, String) {
        (
            v["start_time"].as_f64().unwrap_or(0.0),
            v["id"].as_str().unwrap_or("").to_owned(),
        )
    }
    fn walk(nodes: &[serde_json::Value], out: &mut Vec<serde_json::Value>) {
        let mut nodes: Vec<&serde_json::Value> = nodes.iter().collect();
        nodes.sort_by(|a, b| {
            let (ka, kb) = (key(a), key(b));
            ka.0.total_cmp(&kb.0).then(ka.1.cmp(&kb.1))
        });
        for n in nodes {
            let mut own = n.clone();
            if let Some(o) = own.as_object_mut() {
                o.remove("subsegments");
            }
            out.push(own);
            if let Some(children) = n["subsegments"].as_array() {
                walk(children, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(roots, &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_sent_over_udp_reach_xray_field_for_field() {
    let moto = Moto::start();
    let forward = ForwardConfig::new(REGION)
        .endpoint(&moto.endpoint)
        .credentials(SharedCredentialsProvider::new(credentials()))
        .idle(Duration::from_millis(100));
    let local = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .quiet_period(Duration::from_millis(200))
        .forward(forward)
        .start()
        .unwrap();

    let mut ids = Vec::new();
    // A plain trace, with an annotated subsegment.
    let whole = recorder(&local, 100);
    let s = whole.begin_segment("checkout");
    let sub = s.begin_subsegment("charge");
    sub.put_annotation("amount", 42);
    sub.put_metadata("card", &"visa");
    sub.end();
    ids.push(s.trace_id().to_string());
    s.end();
    // Streamed pieces: every subsegment sent on its own as it ends.
    let streaming = recorder(&local, 0);
    let s = streaming.begin_segment("batch");
    for i in 0..20 {
        let sub = s.begin_subsegment("item");
        sub.put_annotation("index", i);
        sub.end();
    }
    ids.push(s.trace_id().to_string());
    s.end();
    // A trace of 10,000 subsegments, streamed a hundred at a time as independent
    // subsegments, each forwarded as it came. The producer waits for the daemon to read what
    // was sent, so that a loaded machine's socket buffer does not overflow.
    let big = recorder(&local, 100);
    let s = big.begin_segment("import");
    for i in 0..10_000 {
        s.begin_subsegment("row").end();
        if i % 500 == 499 {
            let sent = whole.stats().transport.sent
                + streaming.stats().transport.sent
                + big.stats().transport.sent;
            tokio::task::block_in_place(|| {
                local.wait_for_stats(Duration::from_secs(10), |st| st.received() >= sent)
            });
        }
    }
    ids.push(s.trace_id().to_string());
    s.end();

    let mut sent: Vec<Trace> = Vec::new();
    for id in &ids {
        let trace = tokio::task::block_in_place(|| {
            local.wait_for_trace(id.as_str(), Duration::from_secs(60))
        })
        .unwrap_or_else(|| panic!("xray-local assembles the trace: {:?}", local.stats()));
        sent.push(trace);
    }
    assert!(tokio::task::block_in_place(
        || local.flush_forwarding(Duration::from_secs(60))
    ));
    let stats = local.forward_stats().expect("forwarding");
    let received = local.stats().accepted();
    assert_eq!(stats.queued, received, "{stats:?}");
    assert_eq!(stats.uploaded, received, "{stats:?}");
    assert_eq!(
        (stats.rejected, stats.failed, stats.dropped_buffer_full),
        (0, 0, 0),
        "{stats:?}"
    );

    let mut back = read_back(&moto, &ids).await;
    back.sort_by_key(|t| ids.iter().position(|i| *i == t.id().to_string()));
    assert_eq!(back.len(), 3);
    for (sent, back) in sent.iter().zip(&back) {
        assert_eq!(sent.id(), back.id());
        assert_eq!(sent.entities().count(), back.entities().count());
        // Siblings that started in the same microsecond may come back in another order.
        let (a, b) = (canonical(sent.segments()), canonical(back.segments()));
        if let Some((i, (x, y))) = a.iter().zip(&b).enumerate().find(|(_, (x, y))| x != y) {
            panic!(
                "trace {}: entity {i} differs:\nsent: {x}\nback: {y}",
                sent.id()
            );
        }
        assert_eq!(a.len(), b.len());
    }
    assert_eq!(back[2].entities().count(), 10_001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_region_nothing_is_forwarded() {
    let local = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .start()
        .unwrap();
    assert!(local.forward_stats().is_none());
    assert!(local.flush_forwarding(Duration::from_millis(10)));
}
