//! Centralized sampling against real HTTP endpoints on 127.0.0.1: a scripted proxy built on
//! `std::net::TcpListener` answers `GetSamplingRules` and `SamplingTargets` as each test says,
//! and records what the sampler sent. Time is a `ManualClock`; polls are triggered on demand.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};
use xray_sdk::clock::ManualClock;
use xray_sdk::sampling::{
    CentralizedSampler, DecidingRule, Sampler, SamplingDecision, SamplingProxyErrorKind,
    SamplingReason, SamplingRequest,
};
use xray_sdk::{DaemonAddress, InMemoryEmitter, Recorder};

const T0: u64 = 1_735_689_600; // 2025-01-01T00:00:00Z, epoch seconds

// ===== the scripted proxy =====

#[derive(Debug, Clone)]
struct Received {
    path: String,
    body: Value,
}

enum Reply {
    Json(u16, String),
    Chunked(String),
    /// These bytes, then close.
    Raw(Vec<u8>),
    /// Accept the request and never answer.
    Hang,
}

type Handler = dyn Fn(&Received, usize) -> Reply + Send + Sync;

struct Proxy {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Proxy {
    /// Serves every connection with `handler(request, index of this request among those with
    /// the same path)`.
    fn start(handler: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::<Received>::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let log = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (handler, log) = (handler.clone(), log.clone());
                std::thread::spawn(move || serve(stream, &*handler, &log));
            }
        });
        Self { addr, received }
    }

    fn received(&self, path: &str) -> Vec<Value> {
        self.received
            .lock()
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.body.clone())
            .collect()
    }
}

fn serve(stream: TcpStream, handler: &Handler, log: &Mutex<Vec<Received>>) {
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let path = request_line
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let received = Received {
        path,
        body: serde_json::from_slice(&body).expect("the sampler sends JSON"),
    };
    let index = {
        let mut log = log.lock();
        let index = log.iter().filter(|r| r.path == received.path).count();
        log.push(received.clone());
        index
    };
    let mut out = &stream;
    match handler(&received, index) {
        Reply::Json(status, body) => {
            let _ = write!(
                out,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
        Reply::Chunked(body) => {
            let _ = write!(out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            for piece in body.as_bytes().chunks(7) {
                let _ = write!(out, "{:x};ext=1\r\n", piece.len());
                let _ = out.write_all(piece);
                let _ = out.write_all(b"\r\n");
            }
            let _ = write!(out, "0\r\nX-Trailer: yes\r\n\r\n");
        }
        Reply::Raw(bytes) => {
            let _ = out.write_all(&bytes);
        }
        Reply::Hang => loop {
            std::thread::park();
        },
    }
}

// ===== helpers =====

/// A rule record as `GetSamplingRules` returns it, matching everything unless `fields` says
/// otherwise.
fn record(name: &str, priority: i64, fields: Value) -> Value {
    let mut rule = json!({
        "RuleName": name, "RuleARN": format!("arn:aws:xray:eu-west-1:123456789012:sampling-rule/{name}"),
        "ResourceARN": "*", "Priority": priority, "FixedRate": 0.0, "ReservoirSize": 0,
        "ServiceName": "*", "ServiceType": "*", "Host": "*", "HTTPMethod": "*", "URLPath": "*",
        "Version": 1, "Attributes": {}
    });
    for (key, value) in fields.as_object().unwrap() {
        rule[key] = value.clone();
    }
    json!({ "SamplingRule": rule, "CreatedAt": 1735600000.0, "ModifiedAt": 1735680000.0 })
}

fn rules_page(records: Vec<Value>, next: Option<&str>) -> Reply {
    Reply::Json(
        200,
        json!({ "SamplingRuleRecords": records, "NextToken": next }).to_string(),
    )
}

fn targets(docs: Vec<Value>) -> Reply {
    Reply::Json(
        200,
        json!({ "SamplingTargetDocuments": docs, "LastRuleModification": 1.0, "UnprocessedStatistics": [] })
            .to_string(),
    )
}

/// A proxy that serves `records` as rules and `target_docs` as targets.
fn simple_proxy(records: Vec<Value>, target_docs: Vec<Value>) -> Proxy {
    Proxy::start(move |r, _| match r.path.as_str() {
        "/GetSamplingRules" => rules_page(records.clone(), None),
        _ => targets(target_docs.clone()),
    })
}

fn sampler_for(addr: SocketAddr, clock: &Arc<ManualClock>) -> CentralizedSampler {
    CentralizedSampler::builder(addr)
        .with_clock(clock.clone())
        .with_timeout(Duration::from_millis(500))
        .with_background_polling(false)
        .build()
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(T0 * 1_000_000))
}

fn secs(clock: &ManualClock, n: u64) {
    clock.advance_micros(n * 1_000_000);
}

fn centralized(name: &str) -> DecidingRule {
    DecidingRule::Centralized(Arc::from(name))
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn decide_n(
    sampler: &CentralizedSampler,
    request: &SamplingRequest<'_>,
    n: usize,
) -> Vec<SamplingDecision> {
    (0..n).map(|_| sampler.should_sample(request)).collect()
}

// ===== rule ordering and matching: the vectors =====

fn vector_rule(rule: &Value) -> Value {
    let text = |key: &str| rule.get(key).and_then(Value::as_str).unwrap_or("*");
    record(
        rule["name"].as_str().unwrap(),
        rule["priority"].as_i64().unwrap(),
        json!({
            "FixedRate": rule["rate"], "ReservoirSize": rule["reservoir_size"],
            "Host": text("host"), "HTTPMethod": text("method"), "URLPath": text("path"),
            "ServiceName": text("service"), "ServiceType": text("service_type"),
        }),
    )
}

fn names(sampler: &CentralizedSampler) -> Vec<String> {
    sampler.rule_names().iter().map(|n| n.to_string()).collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn vectors_rule_order_and_matching() {
    let vectors = support::load_json("sampling_rules.json")["centralized"].clone();
    let by_name = |name: &str| {
        vectors["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .map(vector_rule)
            .unwrap()
    };
    // Served in the vectors' load order, which is not the evaluation order.
    let records: Vec<Value> = strings(&vectors["load_order"])
        .iter()
        .map(|n| by_name(n))
        .collect();
    let proxy = simple_proxy(records, vec![]);
    let clock = clock();
    let sampler = sampler_for(proxy.addr, &clock);
    assert_eq!(sampler.refresh_rules_now().unwrap(), 4);
    assert_eq!(names(&sampler), strings(&vectors["expect_sorted"]));

    let cases = vectors["requests"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let r = &case["request"];
        let field = |key: &str| r.get(key).and_then(Value::as_str);
        let mut request = SamplingRequest::new();
        if let Some(v) = field("host") {
            request = request.with_host(v);
        }
        if let Some(v) = field("method") {
            request = request.with_method(v);
        }
        if let Some(v) = field("path") {
            request = request.with_url_path(v);
        }
        if let Some(v) = field("service") {
            request = request.with_service_name(v);
        }
        if let Some(v) = field("service_type") {
            request = request.with_service_type(v);
        }
        let expected = centralized(case["expect_rule"].as_str().unwrap());
        assert_eq!(
            sampler.explain(&request).decision().rule(),
            &expected,
            "{case}"
        );
        assert_eq!(sampler.should_sample(&request).rule(), &expected, "{case}");
    }
}

#[test]
fn vectors_sort_cases() {
    let vectors = support::load_json("sampling_rules.json")["centralized"].clone();
    let cases = vectors["sort_cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let records: Vec<Value> = case["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                record(
                    pair[0].as_str().unwrap(),
                    pair[1].as_i64().unwrap(),
                    json!({}),
                )
            })
            .collect();
        let proxy = simple_proxy(records, vec![]);
        let sampler = sampler_for(proxy.addr, &clock());
        sampler.refresh_rules_now().unwrap();
        assert_eq!(
            names(&sampler),
            strings(&case["expect_sorted"]),
            "{}",
            case["source"]
        );
    }
}

// ===== fetching rules =====

#[test]
fn rules_follow_next_token_pages() {
    let proxy = Proxy::start(
        |r, _| match r.body.get("NextToken").and_then(Value::as_str) {
            None => rules_page(vec![record("first", 1, json!({}))], Some("page-2")),
            Some("page-2") => rules_page(vec![record("second", 2, json!({}))], Some("page-3")),
            Some(_) => rules_page(vec![record("Default", 10000, json!({}))], None),
        },
    );
    let sampler = sampler_for(proxy.addr, &clock());
    assert_eq!(sampler.refresh_rules_now().unwrap(), 3);
    assert_eq!(names(&sampler), ["first", "second", "Default"]);
    let bodies = proxy.received("/GetSamplingRules");
    assert_eq!(
        bodies,
        [
            json!({}),
            json!({"NextToken": "page-2"}),
            json!({"NextToken": "page-3"})
        ]
    );
}

#[test]
fn a_chunked_response_is_read() {
    let body = json!({ "SamplingRuleRecords": [record("chunky", 5, json!({}))] }).to_string();
    let proxy = Proxy::start(move |_, _| Reply::Chunked(body.clone()));
    let sampler = sampler_for(proxy.addr, &clock());
    assert_eq!(sampler.refresh_rules_now().unwrap(), 1);
    assert_eq!(names(&sampler), ["chunky"]);
}

#[test]
fn only_usable_rules_are_kept() {
    let proxy = simple_proxy(
        vec![
            record("ok", 1, json!({})),
            record("v2", 1, json!({"Version": 2})),
            record(
                "arn",
                1,
                json!({"ResourceARN": "arn:aws:ecs:eu-west-1:1:service/x"}),
            ),
            record("attrs", 1, json!({"Attributes": {"tenant": "a"}})),
            record("attr-not-a-string", 1, json!({"Attributes": {"tenant": 7}})),
            record("rate", 1, json!({"FixedRate": 1.5})),
            record("nohost", 1, json!({"Host": null})),
            record("weird", 1, json!({"Priority": "high"})),
            json!({"NotARule": true}),
            record(
                "extra",
                2,
                json!({"SamplingRateBoost": {"MaxRate": 0.5}, "Unknown": 1}),
            ),
        ],
        vec![],
    );
    let sampler = sampler_for(proxy.addr, &clock());
    assert_eq!(sampler.refresh_rules_now().unwrap(), 3);
    assert_eq!(names(&sampler), ["attrs", "ok", "extra"]);
}

#[test]
fn rules_with_attributes_apply_to_requests_that_have_them() {
    let proxy = simple_proxy(
        vec![
            record(
                "premium",
                1,
                json!({"Attributes": {"tier": "prem*", "region": "eu-*"}, "FixedRate": 1.0}),
            ),
            record("Default", 10000, json!({"FixedRate": 0.0})),
        ],
        vec![],
    );
    let sampler = sampler_for(proxy.addr, &clock());
    sampler.refresh_rules_now().unwrap();
    let both = [("region", "eu-west-1"), ("tier", "premium")];
    let one = [("tier", "premium")];
    let wrong = [("tier", "basic"), ("region", "eu-west-1")];
    for (attributes, rule) in [
        (&both[..], "premium"),
        (&one[..], "Default"),
        (&wrong[..], "Default"),
        (&[][..], "Default"),
    ] {
        let request = SamplingRequest::new().with_attributes(attributes);
        assert_eq!(
            sampler.should_sample(&request).rule(),
            &centralized(rule),
            "{attributes:?}"
        );
    }
}

// ===== falling back =====

#[test]
fn local_rules_decide_until_the_proxy_answers() {
    let sampler = sampler_for(closed_port(), &clock());
    let request = SamplingRequest::new().with_url_path("/");
    assert_eq!(
        sampler.should_sample(&request).rule(),
        &DecidingRule::LocalDefault
    );
    let err = sampler.refresh_rules_now().unwrap_err();
    assert_eq!(err.kind(), SamplingProxyErrorKind::Unreachable);
    assert_eq!(
        sampler.should_sample(&request).rule(),
        &DecidingRule::LocalDefault
    );
    // Nothing to report without rules.
    assert_eq!(sampler.refresh_targets_now().unwrap(), 0);
}

#[test]
fn errors_keep_the_rules_held_so_far() {
    let proxy = Proxy::start(|_, index| match index {
        0 => rules_page(vec![record("kept", 1, json!({"FixedRate": 1.0}))], None),
        1 => Reply::Json(200, "{\"SamplingRuleRecords\": [".to_owned()),
        2 => Reply::Json(500, "{\"message\": \"internal\"}".to_owned()),
        _ => Reply::Json(200, "[1, 2]".to_owned()),
    });
    let sampler = sampler_for(proxy.addr, &clock());
    let request = SamplingRequest::new();
    sampler.refresh_rules_now().unwrap();
    assert_eq!(sampler.should_sample(&request).rule(), &centralized("kept"));

    let err = sampler.refresh_rules_now().unwrap_err();
    assert_eq!(err.kind(), SamplingProxyErrorKind::Json);
    assert_eq!(err.status(), None);
    assert_eq!(err.operation(), "GetSamplingRules");
    assert_eq!(err.proxy(), proxy.addr);
    // The message names the failure; the parser's own words stay in the source.
    let source = std::error::Error::source(&err)
        .expect("the JSON error")
        .to_string();
    assert!(source.contains("EOF"), "{source}");
    assert!(!err.to_string().contains("EOF"), "{err}");
    let err = sampler.refresh_rules_now().unwrap_err();
    assert_eq!(err.kind(), SamplingProxyErrorKind::Status);
    assert_eq!(err.status(), Some(500));
    assert!(err.to_string().contains("HTTP 500"), "{err}");
    assert_eq!(std::mem::size_of_val(&err), std::mem::size_of::<usize>());
    let err = sampler.refresh_rules_now().unwrap_err();
    assert_eq!(err.kind(), SamplingProxyErrorKind::Json);

    assert_eq!(names(&sampler), ["kept"]);
    assert_eq!(sampler.should_sample(&request).rule(), &centralized("kept"));
}

#[test]
fn malformed_or_failing_first_answers_leave_the_local_rules() {
    for reply in ["not json", "500"] {
        let proxy = Proxy::start(move |_, _| match reply {
            "500" => Reply::Json(500, String::new()),
            _ => Reply::Json(200, "not json".to_owned()),
        });
        let sampler = sampler_for(proxy.addr, &clock());
        assert!(sampler.refresh_rules_now().is_err());
        assert_eq!(
            sampler.should_sample(&SamplingRequest::new()).rule(),
            &DecidingRule::LocalDefault
        );
    }
}

#[test]
fn a_proxy_that_never_answers_times_out_and_decisions_fall_back() {
    let proxy = Proxy::start(|_, _| Reply::Hang);
    let on_demand = CentralizedSampler::builder(proxy.addr)
        .with_timeout(Duration::from_millis(200))
        .with_background_polling(false)
        .build();
    assert_eq!(
        on_demand.refresh_rules_now().unwrap_err().kind(),
        SamplingProxyErrorKind::Timeout
    );

    // The poller is stuck in its call; decisions do not wait for it.
    let polling = CentralizedSampler::builder(proxy.addr).build();
    let wait_until = Instant::now() + Duration::from_secs(10);
    while proxy.received("/GetSamplingRules").len() < 2 && Instant::now() < wait_until {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        proxy.received("/GetSamplingRules").len(),
        2,
        "the poller called the proxy"
    );
    for _ in 0..1000 {
        let decision = polling.should_sample(&SamplingRequest::new());
        assert_eq!(decision.rule(), &DecidingRule::LocalDefault);
    }
}

#[test]
fn rules_expire_an_hour_after_the_last_fetch() {
    let proxy = simple_proxy(
        vec![record("Default", 10000, json!({"FixedRate": 1.0}))],
        vec![],
    );
    let clock = clock();
    let sampler = sampler_for(proxy.addr, &clock);
    sampler.refresh_rules_now().unwrap();
    let request = SamplingRequest::new();
    secs(&clock, 3599);
    assert_eq!(
        sampler.should_sample(&request).rule(),
        &centralized("Default")
    );
    secs(&clock, 1);
    assert_eq!(
        sampler.should_sample(&request).rule(),
        &DecidingRule::LocalDefault
    );
    assert!(sampler.rule_names().is_empty());
    sampler.refresh_rules_now().unwrap();
    assert_eq!(
        sampler.should_sample(&request).rule(),
        &centralized("Default")
    );
}

#[test]
fn without_a_default_rule_unmatched_requests_fall_back() {
    let proxy = simple_proxy(vec![record("api", 1, json!({"URLPath": "/api/*"}))], vec![]);
    let sampler = sampler_for(proxy.addr, &clock());
    sampler.refresh_rules_now().unwrap();
    let api = SamplingRequest::new().with_url_path("/api/x");
    let other = SamplingRequest::new().with_url_path("/other");
    assert_eq!(sampler.should_sample(&api).rule(), &centralized("api"));
    assert_eq!(
        sampler.should_sample(&other).rule(),
        &DecidingRule::LocalDefault
    );
}

// ===== quotas, borrowing and rates =====

#[test]
fn a_quota_admits_exactly_n_per_second_then_the_fixed_rate() {
    let clock = clock();
    let proxy = simple_proxy(
        vec![record(
            "q",
            1,
            json!({"ReservoirSize": 10, "FixedRate": 0.0}),
        )],
        vec![
            json!({"RuleName": "q", "ReservoirQuota": 3, "ReservoirQuotaTTL": (T0 + 300) as f64,
                    "FixedRate": 1.0, "Interval": 10}),
        ],
    );
    let sampler = sampler_for(proxy.addr, &clock);
    sampler.refresh_rules_now().unwrap();
    let request = SamplingRequest::new();
    // Before any target: one borrowed request in the second, then the rule's rate (0).
    let first = decide_n(&sampler, &request, 3);
    assert_eq!(first[0].reason(), SamplingReason::Borrow);
    assert!(first[0].is_sampled());
    assert!(
        first[1..]
            .iter()
            .all(|d| !d.is_sampled() && d.reason() == SamplingReason::Rate)
    );

    secs(&clock, 10);
    assert_eq!(sampler.refresh_targets_now().unwrap(), 1);
    for _ in 0..3 {
        secs(&clock, 1);
        let decisions = decide_n(&sampler, &request, 10);
        let by_quota = decisions
            .iter()
            .filter(|d| d.reason() == SamplingReason::Reservoir)
            .count();
        assert_eq!(by_quota, 3);
        assert!(
            decisions[..3]
                .iter()
                .all(|d| d.is_sampled() && d.reason() == SamplingReason::Reservoir)
        );
        // The target's rate (1.0) replaced the rule's (0.0).
        assert!(
            decisions[3..]
                .iter()
                .all(|d| d.is_sampled() && d.reason() == SamplingReason::Rate)
        );
    }
    let why = sampler.explain(&request);
    assert_eq!(why.fixed_target(), 3);
    assert_eq!(why.used_this_second(), 3);
    assert_eq!(why.decision().reason(), SamplingReason::Rate);
    assert_eq!(why.statistics().unwrap().requests(), 30);
    assert_eq!(why.statistics().unwrap().sampled(), 30);

    // Reported again only once the interval has passed since the target update at T0 + 10.
    assert_eq!(sampler.refresh_targets_now().unwrap(), 0);
    clock.set_micros((T0 + 20) * 1_000_000);
    assert_eq!(sampler.refresh_targets_now().unwrap(), 1);

    // Past the quota's TTL the rule borrows again.
    clock.set_micros((T0 + 301) * 1_000_000);
    let decisions = decide_n(&sampler, &request, 3);
    assert_eq!(decisions[0].reason(), SamplingReason::Borrow);
    assert!(
        decisions[1..]
            .iter()
            .all(|d| d.reason() == SamplingReason::Rate)
    );
}

#[test]
fn an_expired_quota_borrows_one_per_second_when_the_reservoir_allows() {
    let clock = clock();
    let proxy = simple_proxy(
        vec![
            record("borrower", 1, json!({"ReservoirSize": 5, "URLPath": "/b"})),
            record(
                "no-reservoir",
                2,
                json!({"ReservoirSize": 0, "URLPath": "/n"}),
            ),
        ],
        vec![
            json!({"RuleName": "borrower", "ReservoirQuota": 5, "ReservoirQuotaTTL": (T0 - 1) as f64}),
            json!({"RuleName": "no-reservoir", "ReservoirQuota": 5, "ReservoirQuotaTTL": (T0 - 1) as f64}),
        ],
    );
    let sampler = sampler_for(proxy.addr, &clock);
    sampler.refresh_rules_now().unwrap();
    let b = SamplingRequest::new().with_url_path("/b");
    let n = SamplingRequest::new().with_url_path("/n");
    sampler.should_sample(&b);
    sampler.should_sample(&n);
    secs(&clock, 10);
    assert_eq!(sampler.refresh_targets_now().unwrap(), 2);

    for _ in 0..3 {
        secs(&clock, 1);
        let decisions = decide_n(&sampler, &b, 4);
        let reasons: Vec<_> = decisions
            .iter()
            .map(|d| (d.is_sampled(), d.reason()))
            .collect();
        assert_eq!(
            reasons,
            [
                (true, SamplingReason::Borrow),
                (false, SamplingReason::Rate),
                (false, SamplingReason::Rate),
                (false, SamplingReason::Rate)
            ]
        );
        assert!(decide_n(&sampler, &n, 4).iter().all(|d| !d.is_sampled()));
    }
    let why = sampler.explain(&b);
    assert_eq!(why.statistics().unwrap().borrowed(), 3);
    assert_eq!(why.statistics().unwrap().sampled(), 0);
    assert!(
        why.to_string().contains("centralized rule \"borrower\""),
        "{why}"
    );
}

// ===== reporting =====

#[test]
fn statistics_are_reported_with_the_client_id_and_reset() {
    let clock = clock();
    let proxy = simple_proxy(
        vec![
            record("borrowing", 1, json!({"ReservoirSize": 1, "URLPath": "/b"})),
            record("all", 2, json!({"FixedRate": 1.0, "URLPath": "/a"})),
            record("idle", 3, json!({"URLPath": "/i"})),
            record("Default", 10000, json!({})),
        ],
        vec![],
    );
    let sampler = sampler_for(proxy.addr, &clock);
    sampler.refresh_rules_now().unwrap();
    decide_n(&sampler, &SamplingRequest::new().with_url_path("/b"), 5);
    decide_n(&sampler, &SamplingRequest::new().with_url_path("/a"), 3);
    decide_n(
        &sampler,
        &SamplingRequest::new().with_url_path("/elsewhere"),
        2,
    );
    // Explaining counts nothing.
    sampler.explain(&SamplingRequest::new().with_url_path("/a"));

    secs(&clock, 10);
    assert_eq!(sampler.refresh_targets_now().unwrap(), 3);

    let bodies = proxy.received("/SamplingTargets");
    assert_eq!(bodies.len(), 1);
    let mut docs = bodies[0]["SamplingStatisticsDocuments"]
        .as_array()
        .unwrap()
        .clone();
    docs.sort_by_key(|d| d["RuleName"].as_str().unwrap().to_owned());
    let client_id = docs[0]["ClientID"].as_str().unwrap().to_owned();
    assert_eq!(client_id.len(), 24);
    assert!(
        client_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    let expect = |name: &str, requests: u64, sampled: u64, borrowed: u64| {
        json!({"RuleName": name, "ClientID": client_id, "Timestamp": T0 + 10,
               "RequestCount": requests, "SampledCount": sampled, "BorrowCount": borrowed})
    };
    assert_eq!(
        docs,
        [
            expect("Default", 2, 0, 0),
            expect("all", 3, 3, 0),
            expect("borrowing", 5, 0, 1)
        ]
    );

    // Counters were reset; nothing is due until new requests arrive.
    assert_eq!(sampler.statistics("all").unwrap().requests(), 0);
    secs(&clock, 10);
    assert_eq!(sampler.refresh_targets_now().unwrap(), 0);

    // The same process keeps the same client id.
    let other = simple_proxy(vec![record("x", 1, json!({}))], vec![]);
    let second = sampler_for(other.addr, &clock);
    second.refresh_rules_now().unwrap();
    second.should_sample(&SamplingRequest::new());
    secs(&clock, 10);
    second.refresh_targets_now().unwrap();
    assert_eq!(
        other.received("/SamplingTargets")[0]["SamplingStatisticsDocuments"][0]["ClientID"],
        client_id.as_str()
    );
}

#[test]
fn statistics_go_out_25_rules_per_call() {
    let clock = clock();
    let records = (0..30)
        .map(|i| {
            record(
                &format!("r{i:02}"),
                i,
                json!({"ServiceName": format!("svc-{i}")}),
            )
        })
        .collect();
    let proxy = simple_proxy(records, vec![]);
    let sampler = sampler_for(proxy.addr, &clock);
    assert_eq!(sampler.refresh_rules_now().unwrap(), 30);
    for i in 0..30 {
        let service = format!("svc-{i}");
        let decision = sampler.should_sample(&SamplingRequest::new().with_service_name(&service));
        assert_eq!(decision.rule(), &centralized(&format!("r{i:02}")));
    }
    secs(&clock, 10);
    assert_eq!(sampler.refresh_targets_now().unwrap(), 30);
    let bodies = proxy.received("/SamplingTargets");
    let sizes: Vec<usize> = bodies
        .iter()
        .map(|b| b["SamplingStatisticsDocuments"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [25, 5]);
    let mut reported: Vec<String> = bodies
        .iter()
        .flat_map(|b| b["SamplingStatisticsDocuments"].as_array().unwrap().clone())
        .map(|d| d["RuleName"].as_str().unwrap().to_owned())
        .collect();
    reported.sort();
    reported.dedup();
    assert_eq!(reported.len(), 30);
}

#[test]
fn a_newer_rule_modification_fetches_the_rules_again() {
    let clock = clock();
    let proxy = Proxy::start(|r, index| match (r.path.as_str(), index) {
        ("/GetSamplingRules", 0) => rules_page(vec![record("old", 1, json!({}))], None),
        ("/GetSamplingRules", _) => rules_page(vec![record("new", 1, json!({}))], None),
        // Modified after the fetch at T0.
        _ => Reply::Json(
            200,
            json!({"SamplingTargetDocuments": [], "LastRuleModification": (T0 + 5) as f64})
                .to_string(),
        ),
    });
    let sampler = sampler_for(proxy.addr, &clock);
    sampler.refresh_rules_now().unwrap();
    sampler.should_sample(&SamplingRequest::new());
    secs(&clock, 10);
    assert_eq!(sampler.refresh_targets_now().unwrap(), 1);
    assert_eq!(proxy.received("/GetSamplingRules").len(), 2);
    assert_eq!(names(&sampler), ["new"]);
}

#[test]
fn a_refresh_keeps_the_state_of_rules_with_the_same_name() {
    let clock = clock();
    let proxy = Proxy::start(|r, index| match (r.path.as_str(), index) {
        ("/GetSamplingRules", 0) => rules_page(
            vec![
                record("keep", 1, json!({"ReservoirSize": 1})),
                record("gone", 2, json!({})),
            ],
            None,
        ),
        ("/GetSamplingRules", _) => rules_page(
            vec![record(
                "keep",
                3,
                json!({"ReservoirSize": 1, "URLPath": "/k*"}),
            )],
            None,
        ),
        _ => targets(vec![
            json!({"RuleName": "keep", "ReservoirQuota": 2, "ReservoirQuotaTTL": (T0 + 600) as f64}),
        ]),
    });
    let sampler = sampler_for(proxy.addr, &clock);
    sampler.refresh_rules_now().unwrap();
    let request = SamplingRequest::new().with_url_path("/k");
    sampler.should_sample(&request);
    secs(&clock, 10);
    sampler.refresh_targets_now().unwrap();
    decide_n(&sampler, &request, 4);
    sampler.refresh_rules_now().unwrap();
    assert_eq!(names(&sampler), ["keep"]);
    assert_eq!(sampler.statistics("keep").unwrap().requests(), 4);
    assert!(sampler.statistics("gone").is_none());
    // The quota survived the refresh: still 2 per second, and this second's 2 are used.
    let why = sampler.explain(&request);
    assert_eq!((why.fixed_target(), why.used_this_second()), (2, 2));
}

// ===== with the recorder =====

#[test]
fn a_segment_sampled_by_a_centralized_rule_records_its_name() {
    let clock = clock();
    let proxy = simple_proxy(
        vec![record(
            "orders",
            1,
            json!({"FixedRate": 1.0, "ServiceName": "orders"}),
        )],
        vec![],
    );
    let sampler = sampler_for(proxy.addr, &clock);
    sampler.refresh_rules_now().unwrap();
    let emitter = InMemoryEmitter::new();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_emitter(emitter.clone())
        .with_sampler(Arc::new(sampler))
        .build()
        .unwrap();
    recorder.begin_segment("orders").end();
    let docs = emitter.take();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["aws"]["xray"]["sampling_rule_name"], "orders");

    // Once the rules expire the local rules decide, and a local decision records no name.
    secs(&clock, 3600);
    recorder.begin_segment("orders").end(); // the local reservoir's first of the second
    let docs = emitter.take();
    assert_eq!(docs.len(), 1);
    assert!(
        docs[0]["aws"]["xray"].get("sampling_rule_name").is_none(),
        "{}",
        docs[0]
    );
}

#[test]
fn the_recorder_builder_starts_centralized_sampling_outside_lambda() {
    let proxy = simple_proxy(
        vec![record("everything", 1, json!({"FixedRate": 1.0}))],
        vec![],
    );
    let daemon = DaemonAddress::split(closed_port(), proxy.addr);
    let emitter = InMemoryEmitter::new();
    let recorder = Recorder::builder()
        .ignore_environment()
        .with_daemon_address(daemon)
        .with_emitter(emitter.clone())
        .with_centralized_sampling(true)
        .build()
        .unwrap();
    let wait_until = Instant::now() + Duration::from_secs(10);
    let mut named = false;
    while !named && Instant::now() < wait_until {
        recorder.begin_segment("api").end();
        named = emitter
            .take()
            .iter()
            .any(|d| d["aws"]["xray"]["sampling_rule_name"] == "everything");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(named, "the background poller fetched the rules");

    let in_lambda = Recorder::builder()
        .with_env(move |key| match key {
            "LAMBDA_TASK_ROOT" => Some("/var/task".to_owned()),
            "AWS_XRAY_DAEMON_ADDRESS" => Some(daemon.to_string()),
            _ => None,
        })
        .with_centralized_sampling(true)
        .build()
        .unwrap();
    let debug = format!("{in_lambda:?}");
    assert!(
        debug.contains("LocalSampler") && !debug.contains("CentralizedSampler"),
        "{debug}"
    );
}

#[test]
fn priority_comes_before_name() {
    let proxy = simple_proxy(
        vec![
            record("alpha", 20, json!({})),
            record("zeta", 10, json!({})),
            record("Default", 10000, json!({})),
            record("beta", 20, json!({})),
        ],
        vec![],
    );
    let sampler = sampler_for(proxy.addr, &clock());
    sampler.refresh_rules_now().unwrap();
    assert_eq!(names(&sampler), ["zeta", "alpha", "beta", "Default"]);
    assert_eq!(
        sampler.should_sample(&SamplingRequest::new()).rule(),
        &centralized("zeta")
    );
}

#[test]
fn broken_http_answers_are_typed_errors() {
    let big = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{{",
        2 * 1024 * 1024
    );
    let long_header = format!(
        "HTTP/1.1 200 OK\r\nX-Long: {}\r\n\r\n{{}}",
        "a".repeat(20_000)
    );
    let many_headers = format!("HTTP/1.1 200 OK\r\n{}\r\n{{}}", "X: y\r\n".repeat(500));
    let huge_chunk = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n200000\r\n{";
    let cases: Vec<(String, SamplingProxyErrorKind)> = vec![
        ("garbage\r\n\r\n".into(), SamplingProxyErrorKind::Protocol),
        (
            "HTTP/1.1 2000 OK\r\n\r\n".into(),
            SamplingProxyErrorKind::Protocol,
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n".into(),
            SamplingProxyErrorKind::Protocol,
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}".into(),
            SamplingProxyErrorKind::Protocol,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".into(),
            SamplingProxyErrorKind::Protocol,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{}\r\n0\r\n\r\n".into(),
            SamplingProxyErrorKind::Protocol,
        ),
        (big, SamplingProxyErrorKind::TooLarge),
        (huge_chunk.into(), SamplingProxyErrorKind::TooLarge),
        (long_header, SamplingProxyErrorKind::Protocol),
        (many_headers, SamplingProxyErrorKind::Protocol),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"Sampl".into(),
            SamplingProxyErrorKind::Io,
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n".into(),
            SamplingProxyErrorKind::Io,
        ),
        (
            "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".into(),
            SamplingProxyErrorKind::Status,
        ),
    ];
    for (raw, kind) in cases {
        let bytes = raw.clone().into_bytes();
        let proxy = Proxy::start(move |_, _| Reply::Raw(bytes.clone()));
        let sampler = sampler_for(proxy.addr, &clock());
        let err = sampler.refresh_rules_now().unwrap_err();
        assert_eq!(err.kind(), kind, "{:?}", &raw[..raw.len().min(80)]);
        assert!(sampler.rule_names().is_empty());
    }
}

#[test]
fn interim_responses_and_bodies_until_close_are_read() {
    let body = json!({ "SamplingRuleRecords": [record("Default", 10000, json!({}))] }).to_string();
    let raw =
        format!("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nConnection: close\r\n\r\n{body}");
    let proxy = Proxy::start(move |_, _| Reply::Raw(raw.clone().into_bytes()));
    let sampler = sampler_for(proxy.addr, &clock());
    assert_eq!(sampler.refresh_rules_now().unwrap(), 1);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Whatever bytes come back, the sampler returns an error or rules, and never panics.
    #[test]
    fn arbitrary_answers_never_panic(
        head in proptest::sample::select(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\n\r\n",
            "",
        ]),
        tail in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
    ) {
        let mut bytes = head.as_bytes().to_vec();
        bytes.extend_from_slice(&tail);
        let proxy = Proxy::start(move |_, _| Reply::Raw(bytes.clone()));
        let sampler = sampler_for(proxy.addr, &clock());
        let _ = sampler.refresh_rules_now();
        let _ = sampler.should_sample(&SamplingRequest::new());
    }
}

#[test]
fn counters_stay_exact_while_rules_refresh_under_load() {
    let proxy = simple_proxy(vec![record("all", 1, json!({"FixedRate": 1.0}))], vec![]);
    let sampler = Arc::new(sampler_for(proxy.addr, &clock()));
    sampler.refresh_rules_now().unwrap();
    let deciders: Vec<_> = (0..4)
        .map(|_| {
            let sampler = sampler.clone();
            std::thread::spawn(move || {
                for _ in 0..2000 {
                    let decision = sampler.should_sample(&SamplingRequest::new());
                    assert_eq!(decision.rule(), &centralized("all"));
                    assert!(decision.is_sampled());
                }
            })
        })
        .collect();
    for _ in 0..20 {
        sampler.refresh_rules_now().unwrap();
    }
    for decider in deciders {
        decider.join().unwrap();
    }
    let stats = sampler.statistics("all").unwrap();
    assert_eq!(
        (stats.requests(), stats.sampled(), stats.borrowed()),
        (8000, 8000, 0)
    );
}

#[test]
fn unprocessed_statistics_with_a_4xx_code_fetch_the_rules_again() {
    for (code, fetches) in [("400", 2), ("500", 1)] {
        let clock = clock();
        let proxy = Proxy::start(move |r, _| {
            match r.path.as_str() {
            "/GetSamplingRules" => rules_page(vec![record("r", 1, json!({}))], None),
            _ => Reply::Json(
                200,
                json!({"SamplingTargetDocuments": [], "LastRuleModification": 0.0,
                       "UnprocessedStatistics": [{"RuleName": "r", "ErrorCode": code, "Message": "x"}]})
                .to_string(),
            ),
        }
        });
        let sampler = sampler_for(proxy.addr, &clock);
        sampler.refresh_rules_now().unwrap();
        sampler.should_sample(&SamplingRequest::new());
        secs(&clock, 10);
        assert_eq!(sampler.refresh_targets_now().unwrap(), 1);
        assert_eq!(
            proxy.received("/GetSamplingRules").len(),
            fetches,
            "ErrorCode {code}"
        );
    }
}

// ===== hostile proxies =====

#[test]
fn a_slow_proxy_cannot_hold_a_refresh_past_its_budget() {
    // A hundred pages, each a little under the call timeout.
    let proxy = Proxy::start(|_, index| {
        std::thread::sleep(Duration::from_millis(300));
        rules_page(
            vec![record(&format!("r{index}"), 1, json!({}))],
            Some(&format!("page-{}", index + 1)),
        )
    });
    let sampler = sampler_for(proxy.addr, &clock());
    let started = std::time::Instant::now();
    let err = sampler.refresh_rules_now().unwrap_err();
    // Five timeouts of 500 ms, plus the call under way: not 100 × 300 ms.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.kind(), SamplingProxyErrorKind::Timeout);
    assert!(
        names(&sampler).is_empty(),
        "no partial set of rules is applied"
    );
}

#[test]
fn rules_beyond_what_xray_allows_are_ignored() {
    let long = "/".repeat(129);
    let mut records = vec![
        record("long-path", 1, json!({"URLPath": long})),
        record("long-host", 1, json!({"Host": "h".repeat(65)})),
        record("long-method", 1, json!({"HTTPMethod": "GETGETGETGE"})),
        record(
            "many-attributes",
            1,
            json!({"Attributes": {"a": "1", "b": "2", "c": "3", "d": "4", "e": "5", "f": "6"}}),
        ),
        record(
            "long-attribute",
            1,
            json!({"Attributes": {"a": "x".repeat(33)}}),
        ),
        record(
            "fits",
            1,
            json!({"URLPath": "/".repeat(128), "Host": "h".repeat(64)}),
        ),
    ];
    // And more rules than kept: 150 more, of which 99 fit beside "fits".
    records.extend((0..150).map(|i| record(&format!("n{i:03}"), 2, json!({}))));
    let proxy = simple_proxy(records, vec![]);
    let sampler = sampler_for(proxy.addr, &clock());
    assert_eq!(sampler.refresh_rules_now().unwrap(), 100);
    let kept = names(&sampler);
    assert_eq!(kept[0], "fits");
    assert!(
        !kept
            .iter()
            .any(|n| n.starts_with("long") || n == "many-attributes")
    );
}
