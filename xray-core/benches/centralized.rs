//! One centralized sampling decision with 20 rules (the last one matching), beside the same
//! decision made by the local sampler with 20 rules and a baseline of what any decision must at
//! least do (one random draw and one atomic read-modify-write). Read the results as ratios.
//!
//! The rules come from a one-shot HTTP server on 127.0.0.1 standing in for the daemon's proxy;
//! no polling runs while measuring.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use rand::RngExt;
use serde_json::{Value, json};
use xray_sdk::sampling::{
    CentralizedSampler, DecidingRule, LocalSampler, Sampler, SamplingRequest, SamplingRule,
    SamplingRules,
};

fn wire_rule(name: &str, priority: i64, host: &str, method: &str, path: &str) -> Value {
    json!({ "SamplingRule": {
        "RuleName": name, "ResourceARN": "*", "Priority": priority, "FixedRate": 0.05,
        "ReservoirSize": 1, "ServiceName": "*", "ServiceType": "*", "Host": host,
        "HTTPMethod": method, "URLPath": path, "Version": 1, "Attributes": {} } })
}

fn twenty_rules() -> Vec<Value> {
    let mut records: Vec<Value> = (0..19)
        .map(|i| {
            let (host, path) = (format!("svc{i}.example.com"), format!("/api/v{i}/*"));
            wire_rule(&format!("r{i:02}"), i, &host, "GET", &path)
        })
        .collect();
    records.push(wire_rule(
        "orders",
        100,
        "*.example.com",
        "POST",
        "/orders/*",
    ));
    records.push(wire_rule("Default", 10000, "*", "*", "*"));
    records
}

/// A sampler holding `records`, served once by an HTTP server on 127.0.0.1.
fn centralized_with(records: Vec<Value>) -> CentralizedSampler {
    let sampler = CentralizedSampler::builder(serve_rules_once(records))
        .with_background_polling(false)
        .build();
    sampler.refresh_rules_now().expect("rules");
    sampler
}

/// Serves one `GetSamplingRules` answer.
fn serve_rules_once(records: Vec<Value>) -> std::net::SocketAddr {
    let body = json!({ "SamplingRuleRecords": records }).to_string();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(&stream);
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("request");
            if line.trim().is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().expect("length");
            }
        }
        let mut request = vec![0; length];
        reader.read_exact(&mut request).expect("body");
        let mut out = &stream;
        write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("answer");
    });
    addr
}

fn local_twenty() -> LocalSampler {
    let mut builder = SamplingRules::builder();
    for i in 0..19 {
        builder = builder.with_rule(
            SamplingRule::new(format!("svc{i}.example.com"), "GET", format!("/api/v{i}/*"))
                .with_fixed_target(1)
                .with_rate(0.05),
        );
    }
    LocalSampler::new(
        builder
            .with_rule(
                SamplingRule::new("*.example.com", "POST", "/orders/*")
                    .with_fixed_target(1)
                    .with_rate(0.05),
            )
            .build()
            .expect("valid rules"),
    )
}

fn bench(c: &mut Criterion) {
    let request = SamplingRequest::new()
        .with_host("api.example.com")
        .with_method("POST")
        .with_url_path("/orders/12345")
        .with_service_name("orders-api");

    let centralized = centralized_with(twenty_rules());
    assert_eq!(centralized.rule_names().len(), 21);
    assert_eq!(
        centralized.should_sample(&request).rule(),
        &DecidingRule::Centralized("orders".into())
    );
    let local = local_twenty();
    let only_default = centralized_with(vec![wire_rule("Default", 10000, "*", "*", "*")]);
    assert_eq!(
        only_default.should_sample(&request).rule(),
        &DecidingRule::Centralized("Default".into())
    );

    let mut group = c.benchmark_group("centralized sampling");

    let counter = AtomicU64::new(0);
    let mut rng = rand::rng();
    group.bench_function("baseline: rand draw + atomic fetch_add", |b| {
        b.iter(|| {
            counter.fetch_add(1, Ordering::Relaxed);
            black_box(rng.random::<f64>() < black_box(0.05))
        })
    });

    // The fixed cost of a centralized decision: read lock, clock, counters, the rule name's
    // reference count, one draw; one rule whose patterns are all `*`.
    group.bench_function("centralized: Default rule only", |b| {
        b.iter(|| only_default.should_sample(black_box(&request)).is_sampled())
    });

    group.bench_function("local: 20 rules, last matches", |b| {
        b.iter(|| local.should_sample(black_box(&request)).is_sampled())
    });

    // Past the first request of each second the rule's borrow is used, so this measures the
    // common path: matching, three counters and one draw.
    group.bench_function("centralized: 20 rules, last matches", |b| {
        b.iter(|| centralized.should_sample(black_box(&request)).is_sampled())
    });

    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
