//! The web console's page time in headless Chromium: listing 10,000 traces, and opening a
//! trace of 10,000 subsegments. Each is timed in the page, from the request to the daemon's
//! read API to the drawn view with its layout done (`performance.now()` around the
//! console's own `xrayConsole.list()` and `xrayConsole.trace(id)`).
//!
//! - `console/list 10,000 traces`: the trace list, every summary a row;
//! - `console/open a trace of 10,000 subsegments`: its waterfall (the rows in view drawn, the
//!   scroll height every entity's) and the root's details;
//! - `baseline/...`: the same requests made from the page and parsed, nothing drawn.
//!
//! Run: `cargo bench -p xray-local --bench console` (Chromium and ChromeDriver from Debian's
//! `chromium` and `chromium-driver` packages).

#[path = "../tests/support/browser.rs"]
mod browser;

use std::net::UdpSocket;
use std::time::Duration;

use browser::Browser;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use xray_local::XRayLocal;

const TRACES: u64 = 10_000;
/// The big trace: a segment and 100 independent subsegments of 99 children each.
const CALLS: u64 = 100;
const CHILDREN: u64 = 99;

fn datagram(doc: &Value) -> Vec<u8> {
    let mut out = b"{\"format\":\"json\",\"version\":1}\n".to_vec();
    out.extend(serde_json::to_vec(doc).unwrap());
    out
}

/// A daemon holding 9,999 small traces and one of 10,000 subsegments; its id.
fn loaded() -> (XRayLocal, String) {
    let local = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .tcp_addr("127.0.0.1:0".parse().unwrap())
        .max_traces(2 * TRACES as usize)
        .quiet_period(Duration::from_millis(10))
        .start()
        .unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |doc: Value| socket.send_to(&datagram(&doc), local.udp_addr()).unwrap();
    let t0 = 1_796_000_000.0;
    let mut sent = 0;
    for n in 0..TRACES - 1 {
        let start = t0 + n as f64 * 0.01;
        let name = ["api", "orders", "web"][(n % 3) as usize];
        send(json!({
            "name": name,
            "id": format!("{:016x}", n + 1),
            "trace_id": format!("1-{:08x}-{:024x}", start as u64, n + 1),
            "start_time": start, "end_time": start + 0.02 + (n % 50) as f64 * 0.001,
            "fault": n.is_multiple_of(20),
            "http": {"request": {"method": "GET", "url": format!("http://api/items/{n}")},
                     "response": {"status": if n.is_multiple_of(20) { 500 } else { 200 }}},
            "annotations": {"n": n},
            "subsegments": [{"name": "DynamoDB", "id": format!("{:016x}", TRACES + n + 1),
                "namespace": "aws", "start_time": start + 0.001, "end_time": start + 0.01}],
        }));
        sent += 1;
        if sent % 500 == 0 {
            local.wait_for_stats(Duration::from_secs(30), |s| s.accepted() >= sent);
        }
    }
    let big = format!("1-{:08x}-{:024x}", t0 as u64, u64::MAX);
    let root = "b000000000000000".to_owned();
    let end = t0 + 2.0;
    send(
        json!({"name": "batch", "id": root, "trace_id": big, "start_time": t0,
                "end_time": end}),
    );
    sent += 1;
    for call in 0..CALLS {
        let start = t0 + call as f64 * 0.019;
        let children: Vec<Value> = (0..CHILDREN)
            .map(|c| {
                let s = start + c as f64 * 0.0001;
                json!({"name": format!("step {c}"), "id": format!("c{:07x}{:08x}", call, c),
                       "start_time": s, "end_time": s + 0.00009})
            })
            .collect();
        send(json!({"type": "subsegment", "name": format!("call {call}"),
                    "id": format!("a{:015x}", call), "trace_id": big, "parent_id": root,
                    "start_time": start, "end_time": start + 0.0105,
                    "subsegments": children}));
        sent += 1;
        local.wait_for_stats(Duration::from_secs(30), |s| s.accepted() >= sent);
    }
    let stats = local.stats();
    assert_eq!(stats.accepted(), sent, "every document held: {stats:?}");
    (local, big)
}

/// Milliseconds the page took for `script`, an async function body ending in the view drawn.
async fn page_ms(browser: &Browser, script: &str) -> f64 {
    let timed = format!(
        "const done = arguments[arguments.length - 1];
         (async () => {{
           const t = performance.now();
           {script}
           document.body.getBoundingClientRect();
           return performance.now() - t;
         }})().then(done, (e) => done(-1));"
    );
    let ms = browser
        .client
        .execute_async(&timed, Vec::new())
        .await
        .unwrap()
        .as_f64()
        .unwrap();
    assert!(ms >= 0.0, "the page failed: {script}");
    ms
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (local, big) = loaded();
    let browser = rt.block_on(Browser::start());
    rt.block_on(async {
        browser
            .client
            .goto(&format!("http://{}/", local.tcp_addr()))
            .await
            .unwrap();
        browser.until("window.xrayConsole", "the console").await;
    });
    let rows = "document.querySelectorAll('#trace-list tbody tr').length";
    let entities = "document.getElementById('rows').dataset.count";
    // What is measured draws what it says.
    rt.block_on(async {
        page_ms(&browser, "await xrayConsole.list();").await;
        assert_eq!(browser.eval(rows).await, json!(TRACES));
        page_ms(&browser, &format!("await xrayConsole.trace('{big}');")).await;
        assert_eq!(
            browser.eval(entities).await,
            json!((1 + CALLS + CALLS * CHILDREN).to_string())
        );
        // Drawn as the view scrolls: the last entity at the bottom.
        browser
            .eval("(() => { const r = document.getElementById('rows'); r.scrollTop = r.scrollHeight; r.dispatchEvent(new Event('scroll')); return 1; })()")
            .await;
        browser
            .until(
                &format!("[...document.querySelectorAll('#rows .row .label')].some(l => l.textContent === 'step {}')", CHILDREN - 1),
                "the last rows drawn on scrolling",
            )
            .await;
    });
    let list = "await xrayConsole.list();".to_owned();
    let trace = format!("await xrayConsole.trace('{big}');");
    let fetch_list = "const r = await fetch('/TraceSummaries', {method: 'POST', \
         headers: {'Content-Type': 'application/json'}, body: JSON.stringify({StartTime: 0, \
         EndTime: 4e9, MaxResults: 10000})}); JSON.parse(await r.text());"
        .to_owned();
    let fetch_trace = format!(
        "const r = await fetch('/Traces', {{method: 'POST', headers: {{'Content-Type': \
         'application/json'}}, body: JSON.stringify({{TraceIds: ['{big}']}})}}); \
         JSON.parse(await r.text()).Traces[0].Segments.forEach(s => JSON.parse(s.Document));"
    );
    let cases = [
        ("console", "list 10,000 traces", list),
        ("console", "open a trace of 10,000 subsegments", trace),
        ("baseline", "fetch and parse 10,000 summaries", fetch_list),
        ("baseline", "fetch and parse the trace", fetch_trace),
    ];
    for (group, name, script) in cases {
        let mut group = c.benchmark_group(group);
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(2));
        group.measurement_time(Duration::from_secs(15));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = 0.0;
                    for _ in 0..iters {
                        total += page_ms(&browser, &script).await;
                    }
                    Duration::from_secs_f64(total / 1000.0)
                })
            })
        });
        group.finish();
    }
    rt.block_on(browser.close());
}

criterion_group!(benches, bench);
criterion_main!(benches);
