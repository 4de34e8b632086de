//! The web console in a real browser: headless Chromium (Debian's package) driven through
//! WebDriver. The page is loaded from xray-local's TCP address; the tests filter the trace
//! list, open a trace and read its waterfall and details, read the service map, see new
//! traces arrive without a reload, and check that script-carrying strings from documents
//! are shown as text and never run.
//!
//! `XRAY_CONSOLE_SCREENSHOT=path.png` keeps the screenshot the first test takes (the README's
//! picture is made so).

mod support;

#[path = "support/browser.rs"]
mod browser;

use std::time::Duration;

use serde_json::{Value, json};
use xray_local::XRayLocal;

use browser::Browser;
use support::{Sdk, WAIT, id, now, start_with_api, trace_id};

/// One browser at a time: two Chromiums on a two-core machine slow each other past the waits.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn page(local: &XRayLocal, fragment: &str) -> String {
    format!("http://{}/{fragment}", local.tcp_addr())
}

/// Two traces of `api` (one failing: a DynamoDB fault, an exception with its stack, a
/// PostgreSQL query, a throttled `payments` service behind a remote call) and one of `web`.
struct Scene {
    failing: String,
    fine: String,
}

fn scene(local: &XRayLocal) -> Scene {
    let sdk = Sdk::new(local);
    let t0 = now() - 20.0;
    let (failing, fine, web) = (trace_id(), trace_id(), trace_id());
    let remote_call = id();
    sdk.send(&json!({
        "name": "api", "id": id(), "trace_id": failing, "start_time": t0, "end_time": t0 + 0.5,
        "origin": "AWS::EC2::Instance", "fault": true,
        "annotations": {"tenant": "blue", "items": 3},
        "metadata": {"default": {"cart": {"lines": 2}}},
        "http": {"request": {"method": "POST", "url": "http://api.example.com/orders"},
                 "response": {"status": 500}},
        "cause": {"working_directory": "/srv/api", "exceptions": [{
            "id": id(), "type": "OrderError", "message": "the order could not be stored",
            "stack": [{"path": "src/orders.rs", "line": 42, "label": "store_order"},
                      {"path": "src/main.rs", "line": 7, "label": "main"}]}]},
        "subsegments": [
            {"name": "DynamoDB", "id": id(), "start_time": t0 + 0.05, "end_time": t0 + 0.15,
             "namespace": "aws", "fault": true,
             "aws": {"table_name": "orders", "operation": "PutItem"}},
            {"name": "payments", "id": remote_call, "start_time": t0 + 0.15,
             "end_time": t0 + 0.35, "namespace": "remote", "error": true, "throttle": true,
             "http": {"request": {"method": "POST", "url": "http://payments/charge"},
                      "response": {"status": 429}}},
            {"name": "app@db.internal", "id": id(), "start_time": t0 + 0.35,
             "end_time": t0 + 0.4, "namespace": "remote",
             "sql": {"url": "postgresql://db.internal:5432/app",
                     "database_type": "PostgreSQL", "user": "app"}},
        ],
    }));
    sdk.send(&json!({
        "name": "payments", "id": id(), "trace_id": failing, "parent_id": remote_call,
        "start_time": t0 + 0.2, "end_time": t0 + 0.3, "error": true, "throttle": true,
    }));
    sdk.send(&json!({
        "name": "api", "id": id(), "trace_id": fine, "start_time": t0 + 2.0,
        "end_time": t0 + 2.1,
        "http": {"request": {"method": "GET", "url": "http://api.example.com/orders/7"},
                 "response": {"status": 200}},
    }));
    sdk.send(&json!({
        "name": "web", "id": id(), "trace_id": web, "start_time": t0 + 4.0,
        "end_time": t0 + 4.2,
        "http": {"request": {"method": "GET", "url": "http://web.example.com/"},
                 "response": {"status": 200}},
    }));
    assert!(local.wait_for_trace(failing.as_str(), WAIT).is_some());
    assert!(local.wait_for_trace(fine.as_str(), WAIT).is_some());
    assert!(local.wait_for_trace(web.as_str(), WAIT).is_some());
    Scene { failing, fine }
}

const ROWS: &str = "document.querySelectorAll('#trace-list tbody tr')";

/// The text of each cell of the trace list, row by row.
async fn list(browser: &Browser) -> Vec<Vec<String>> {
    let rows = browser
        .eval(&format!(
            "[...{ROWS}].map(r => [...r.cells].map(c => c.textContent))"
        ))
        .await;
    serde_json::from_value(rows).unwrap()
}

async fn search(browser: &Browser, filter: &str) {
    let input = browser
        .client
        .find(fantoccini::Locator::Id("filter"))
        .await
        .unwrap();
    input.clear().await.unwrap();
    input.send_keys(filter).await.unwrap();
    browser
        .client
        .find(fantoccini::Locator::Id("search"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_lists_filters_opens_a_trace_and_draws_the_map() {
    let _one = ONE_BROWSER.lock().await;
    let local = start_with_api();
    let scene = scene(&local);
    let browser = Browser::start().await;
    browser.client.goto(&page(&local, "")).await.unwrap();

    // The list: every trace, newest first, with the summary's columns.
    browser
        .until(&format!("{ROWS}.length === 3"), "three traces listed")
        .await;
    let rows = list(&browser).await;
    assert_eq!(rows[0][2], "web", "{rows:?}");
    let failing = rows.iter().find(|r| r[0] == scene.failing).expect("listed");
    assert_eq!(failing[2], "api");
    assert_eq!(failing[3], "POST");
    assert_eq!(failing[4], "http://api.example.com/orders");
    assert_eq!(failing[5], "500");
    assert_eq!(failing[6], "500.0 ms");
    assert!(failing[8].contains("fault"), "{failing:?}");
    assert!(failing[8].contains("throttle"), "{failing:?}");
    assert!(failing[9].contains("payments") && failing[9].contains("DynamoDB"));

    // Filters, in X-Ray's language, narrow the list.
    search(&browser, r#"service("api") { fault }"#).await;
    browser
        .until(&format!("{ROWS}.length === 1"), "the fault filter")
        .await;
    assert_eq!(list(&browser).await[0][0], scene.failing);
    search(&browser, "http.status = 200").await;
    browser
        .until(&format!("{ROWS}.length === 2"), "the status filter")
        .await;
    search(&browser, r#"edge("api", "payments") { throttle }"#).await;
    browser
        .until(&format!("{ROWS}.length === 1"), "the edge filter")
        .await;
    // A malformed filter says why, and an unsupported form says that it is one.
    search(&browser, "responsetime >").await;
    browser
        .until(
            "document.getElementById('status').className === 'error'",
            "a malformed filter is reported",
        )
        .await;
    search(&browser, r#"group.name = "prod""#).await;
    browser
        .until(
            "document.getElementById('status').textContent.includes('not supported')",
            "an unsupported form is named",
        )
        .await;
    assert_eq!(browser.eval(&format!("{ROWS}.length")).await, json!(0));
    search(&browser, "").await;
    browser
        .until(&format!("{ROWS}.length === 3"), "the filter cleared")
        .await;

    // A trace: its waterfall on one time axis, segments under the subsegment that called them.
    let row = format!(
        "[...{ROWS}].find(r => r.dataset.traceId === '{}')",
        scene.failing
    );
    browser.eval(&format!("{row}.click()")).await;
    browser
        .until(
            "document.querySelectorAll('#rows .row').length === 5",
            "the waterfall",
        )
        .await;
    let names: Vec<String> = serde_json::from_value(
        browser
            .eval("[...document.querySelectorAll('#rows .row .label')].map(l => l.textContent)")
            .await,
    )
    .unwrap();
    assert_eq!(
        names,
        ["api", "DynamoDB", "payments", "payments", "app@db.internal"]
    );
    let bars: Vec<(f64, f64, String)> = serde_json::from_value(
        browser
            .eval(
                "[...document.querySelectorAll('#rows .bar')].map(b => \
                 [parseFloat(b.style.left), parseFloat(b.style.width), b.className])",
            )
            .await,
    )
    .unwrap();
    // The root spans the axis; DynamoDB starts a tenth of the way and takes a fifth.
    assert!(
        (bars[0].0 - 0.0).abs() < 0.01 && (bars[0].1 - 100.0).abs() < 0.01,
        "{bars:?}"
    );
    assert!(
        (bars[1].0 - 10.0).abs() < 0.01 && (bars[1].1 - 20.0).abs() < 0.01,
        "{bars:?}"
    );
    assert!(
        bars[0].2.contains("fault") && bars[1].2.contains("fault"),
        "{bars:?}"
    );
    assert!(bars[2].2.contains("throttle"), "{bars:?}");
    // The root's details: annotations, metadata, http, the exception with its stack, raw JSON.
    let details = || async {
        browser
            .eval("document.getElementById('details').textContent")
            .await
            .as_str()
            .unwrap()
            .to_owned()
    };
    let text = details().await;
    for expected in [
        "tenant",
        "blue",
        "\"lines\": 2",
        "http://api.example.com/orders",
        "OrderError: the order could not be stored",
        "at store_order (src/orders.rs:42)",
        "at main (src/main.rs:7)",
        "AWS::EC2::Instance",
        "\"trace_id\"",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} not in the details: {text}"
        );
    }
    // A subsegment's aws block, another's sql block.
    browser
        .eval("document.querySelectorAll('#rows .row')[1].click()")
        .await;
    let text = details().await;
    assert!(
        text.contains("\"table_name\": \"orders\"") && text.contains("PutItem"),
        "{text}"
    );
    browser
        .eval("document.querySelectorAll('#rows .row')[4].click()")
        .await;
    let text = details().await;
    assert!(
        text.contains("SQL") && text.contains("postgresql://db.internal:5432/app"),
        "{text}"
    );

    // The map: nodes by type, edges with latency and error, fault and throttle rates.
    browser.eval("location.hash = '#/map'").await;
    browser
        .until(
            "document.querySelectorAll('#map .node').length === 7",
            "the map's nodes",
        )
        .await;
    let nodes: Vec<(String, String)> = serde_json::from_value(
        browser
            .eval(
                "[...document.querySelectorAll('#map .node')].map(n => \
                 [n.dataset.name, n.getAttribute('class')])",
            )
            .await,
    )
    .unwrap();
    for (name, kind) in [
        ("api", "service"),
        ("web", "service"),
        ("payments", "service"),
        ("DynamoDB", "aws"),
        ("app@db.internal", "remote"),
    ] {
        assert!(
            nodes.iter().any(|(n, k)| n == name && k.contains(kind)),
            "{name} ({kind}) not among {nodes:?}"
        );
    }
    // A client before each root service, as X-Ray draws it.
    assert_eq!(
        nodes.iter().filter(|(_, k)| k.contains("client")).count(),
        2
    );
    let edges: Vec<Vec<String>> = serde_json::from_value(
        browser
            .eval(
                "[...document.querySelectorAll('#edge-list tbody tr')].map(r => \
                 [...r.cells].map(c => c.textContent))",
            )
            .await,
    )
    .unwrap();
    let to_payments = edges
        .iter()
        .find(|e| e[0] == "api" && e[1] == "payments")
        .unwrap_or_else(|| panic!("no api → payments edge in {edges:?}"));
    assert_eq!(to_payments[2], "1");
    assert_eq!(to_payments[3], "200.0 ms");
    assert_eq!(to_payments[4], "100.0 %");
    assert_eq!(to_payments[6], "100.0 %");
    let client_to_api = edges
        .iter()
        .find(|e| e[0] == "client" && e[1] == "api")
        .unwrap_or_else(|| panic!("no client → api edge in {edges:?}"));
    assert_eq!(client_to_api[2], "2");
    assert_eq!(client_to_api[5], "50.0 %");
    let labels = browser
        .eval("document.querySelector('#map .edge[data-to=\"payments\"]').textContent")
        .await;
    assert!(labels.as_str().unwrap().contains("thr 100.0 %"), "{labels}");

    // The README's picture: the trace's view.
    browser
        .eval(&format!("location.hash = '#/trace/{}'", scene.failing))
        .await;
    browser
        .until(
            "document.querySelectorAll('#rows .row').length === 5",
            "the trace again",
        )
        .await;
    let png = browser.client.screenshot().await.unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    if let Some(path) = std::env::var_os("XRAY_CONSOLE_SCREENSHOT") {
        std::fs::write(path, &png).unwrap();
    }
    let _ = scene.fine;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_traces_appear_without_a_reload() {
    let _one = ONE_BROWSER.lock().await;
    let local = start_with_api();
    let scene = scene(&local);
    let browser = Browser::start().await;
    browser
        .client
        .goto(&page(&local, "#/traces"))
        .await
        .unwrap();
    browser
        .until(&format!("{ROWS}.length === 3"), "three traces")
        .await;
    // A mark on the page: a reload would clear it.
    browser.eval("window.__loadedOnce = true").await;
    // Half a filter in the box, not searched for: the refresh keeps the list's own filter.
    browser
        .client
        .find(fantoccini::Locator::Id("filter"))
        .await
        .unwrap()
        .send_keys("responsetime >")
        .await
        .unwrap();
    let sdk = Sdk::new(&local);
    let late = trace_id();
    let t0 = now();
    sdk.send(&json!({
        "name": "late", "id": id(), "trace_id": late, "start_time": t0, "end_time": t0 + 0.01,
    }));
    browser
        .until(
            &format!("[...{ROWS}].some(r => r.dataset.traceId === '{late}')"),
            "the new trace listed",
        )
        .await;
    assert_eq!(
        browser.eval("window.__loadedOnce === true").await,
        json!(true)
    );
    assert_eq!(list(&browser).await[0][0], late, "the newest first");
    let status = browser
        .eval("document.getElementById('status').className")
        .await;
    assert_eq!(status, json!(""), "the half-typed filter was not used");
    let _ = scene.failing;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strings_from_documents_are_shown_as_text_and_never_run() {
    let _one = ONE_BROWSER.lock().await;
    let local = start_with_api();
    let sdk = Sdk::new(&local);
    let hostile = trace_id();
    let t0 = now() - 5.0;
    let call = id();
    let name = r#"<img src=x onerror="window.__ran.push('name')">"#;
    let doc = json!({
        "name": name, "id": id(), "trace_id": hostile, "start_time": t0, "end_time": t0 + 0.2,
        "fault": true,
        "annotations": {
            "<script>window.__ran.push('key')</script>": "<b onmouseover=\"window.__ran.push('value')\">v</b>",
        },
        "metadata": {"default": {"<svg onload=window.__ran.push('meta')>": "</pre><script>window.__ran.push('pre')</script>"}},
        "http": {"request": {"method": "<i>GET</i>", "url": "javascript:window.__ran.push('url')"},
                 "response": {"status": 500}},
        "cause": {"exceptions": [{"id": id(), "type": "<script>window.__ran.push('type')</script>",
            "message": "<iframe src=\"javascript:window.top.__ran.push('message')\"></iframe>",
            "stack": [{"path": "<style>body{display:none}</style>", "line": 1,
                       "label": "<a href=\"javascript:window.__ran.push('label')\">x</a>"}]}]},
        "subsegments": [{"name": "</text><script>window.__ran.push('svg')</script>", "id": call,
            "start_time": t0 + 0.05, "end_time": t0 + 0.1, "namespace": "remote"}],
    });
    sdk.send(&doc);
    assert!(local.wait_for_trace(hostile.as_str(), WAIT).is_some());
    let browser = Browser::start().await;
    browser.client.goto(&page(&local, "")).await.unwrap();
    // Anything that runs records itself here.
    browser.eval("window.__ran = []").await;
    browser
        .until(&format!("{ROWS}.length === 1"), "the trace listed")
        .await;
    let rows = list(&browser).await;
    assert_eq!(rows[0][2], name, "the name is shown as its characters");
    assert_eq!(rows[0][3], "<i>GET</i>");
    browser.eval(&format!("{ROWS}[0].click()")).await;
    browser
        .until(
            "document.querySelectorAll('#rows .row').length === 2",
            "the waterfall",
        )
        .await;
    let details = browser
        .eval("document.getElementById('details').textContent")
        .await;
    let details = details.as_str().unwrap();
    for text in [
        "<script>window.__ran.push('key')</script>",
        "<b onmouseover=\"window.__ran.push('value')\">v</b>",
        "</pre><script>window.__ran.push('pre')</script>",
        "javascript:window.__ran.push('url')",
        "<iframe src=\"javascript:window.top.__ran.push('message')\"></iframe>",
        "<a href=\"javascript:window.__ran.push('label')\">x</a>",
    ] {
        assert!(
            details.contains(text),
            "{text:?} not shown as text: {details}"
        );
    }
    // Hover and click what markup would have made active.
    browser
        .eval(
            "document.querySelectorAll('#details *, #rows *').forEach(e => { \
               e.dispatchEvent(new MouseEvent('mouseover', {bubbles: true})); })",
        )
        .await;
    browser.eval("location.hash = '#/map'").await;
    browser
        .until(
            "document.querySelectorAll('#map .node').length >= 2",
            "the map",
        )
        .await;
    let node_names = browser
        .eval("[...document.querySelectorAll('#map .node text')].map(t => t.textContent)")
        .await;
    assert!(
        node_names
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str() == Some(name)),
        "{node_names}"
    );
    // Give anything injected a moment to load and run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        browser.eval("window.__ran").await,
        json!([]),
        "a string ran as script"
    );
    // None of the markup became elements: the page holds only the console's own tags.
    let injected = browser
        .eval(
            "document.querySelectorAll('main img, main script, main iframe, main b, main i, \
             main a, main style, main svg svg, main pre pre').length",
        )
        .await;
    assert_eq!(injected, json!(0));
    let visible = browser
        .eval("getComputedStyle(document.body).display")
        .await;
    assert_eq!(visible, Value::String("block".into()));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_trace_is_drawn_as_it_scrolls() {
    let _one = ONE_BROWSER.lock().await;
    let local = start_with_api();
    let sdk = Sdk::new(&local);
    let trace = trace_id();
    let root = id();
    let t0 = now() - 10.0;
    sdk.send(&json!({
        "name": "batch", "id": root, "trace_id": trace, "start_time": t0, "end_time": t0 + 1.0,
    }));
    // Six calls of 100 steps each: 607 entities.
    for call in 0..6 {
        let start = t0 + f64::from(call) * 0.15;
        let steps: Vec<Value> = (0..100)
            .map(|step| {
                let s = start + f64::from(step) * 0.001;
                json!({"name": format!("call {call} step {step}"), "id": id(),
                       "start_time": s, "end_time": s + 0.0005})
            })
            .collect();
        sdk.send(&json!({
            "type": "subsegment", "name": format!("call {call}"), "id": id(),
            "trace_id": trace, "parent_id": root, "start_time": start,
            "end_time": start + 0.12, "subsegments": steps,
        }));
    }
    let held = local.wait_for_stats(WAIT, |s| s.accepted() >= 7);
    assert_eq!(held.accepted(), 7);
    let browser = Browser::start().await;
    browser
        .client
        .goto(&page(&local, &format!("#/trace/{trace}")))
        .await
        .unwrap();
    browser
        .until(
            "document.getElementById('rows').dataset.count === '607'",
            "every entity",
        )
        .await;
    let labels = "[...document.querySelectorAll('#rows .row .label')].map(l => l.textContent)";
    let drawn: Vec<String> = serde_json::from_value(browser.eval(labels).await).unwrap();
    // The rows in view and some beyond, not all 607.
    assert!(drawn.len() < 200, "{} rows drawn", drawn.len());
    assert_eq!(drawn[0], "batch");
    assert_eq!(drawn[1], "call 0");
    assert!(!drawn.iter().any(|l| l == "call 5 step 99"));
    // The scroll height is every row's; at the bottom, the last ones are drawn.
    browser
        .eval(
            "(() => { const r = document.getElementById('rows'); \
               r.scrollTop = r.scrollHeight; return r.scrollTop; })()",
        )
        .await;
    browser
        .until(
            &format!("{labels}.includes('call 5 step 99')"),
            "the last entity drawn at the bottom",
        )
        .await;
    // A click on a drawn row shows that entity.
    browser
        .eval(
            "[...document.querySelectorAll('#rows .row')].find(r => \
               r.textContent.startsWith('call 5 step 99')).click()",
        )
        .await;
    let name = browser
        .eval("document.querySelector('#details .entity-name').textContent")
        .await;
    assert_eq!(name, json!("call 5 step 99"));
    browser.close().await;
}
