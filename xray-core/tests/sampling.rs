//! Local sampling: rule documents and matching from tests/data/sampling_rules.json, the
//! reservoir, the rate and explanations.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use xray_sdk::clock::{ManualClock, SharedClock};
use xray_sdk::sampling::{
    DecidingRule, LocalSampler, RulesErrorKind, Sampler, SamplingReason, SamplingRequest,
    SamplingRule, SamplingRules,
};

const START_MICROS: u64 = 1_735_689_600_000_000;

fn data_path(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn vectors() -> Value {
    let text = std::fs::read_to_string(data_path("sampling_rules.json")).expect("read vectors");
    serde_json::from_str(&text).expect("parse vectors")
}

fn document(id: &str) -> String {
    let vectors = vectors();
    vectors["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .find(|d| d["id"] == id)
        .and_then(|d| d["document_raw"].as_str())
        .unwrap_or_else(|| panic!("no document {id}"))
        .to_owned()
}

fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(START_MICROS))
}

fn sampler(rules: SamplingRules, clock: &Arc<ManualClock>, seed: u64) -> LocalSampler {
    let clock: SharedClock = clock.clone();
    LocalSampler::new(rules).with_clock(clock).with_seed(seed)
}

fn one_rule(fixed_target: u64, rate: f64) -> SamplingRules {
    SamplingRules::builder()
        .with_rule(
            SamplingRule::new("*", "*", "/hot")
                .with_fixed_target(fixed_target)
                .with_rate(rate),
        )
        .with_default(0, 0.0)
        .build()
        .expect("valid rules")
}

const HOT: SamplingRequest<'static> = SamplingRequest::new().with_url_path("/hot");

// ===== documents from the vectors =====

#[test]
fn vector_documents() {
    let vectors = vectors();
    let documents = vectors["documents"].as_array().expect("documents");
    assert!(documents.len() >= 20, "the vector file lost documents");
    let mut requests_checked = 0;
    for doc in documents {
        let id = doc["id"].as_str().expect("id");
        let raw = doc["document_raw"].as_str().expect("document_raw");
        let valid = doc["valid"].as_bool().expect("valid");
        let loaded = SamplingRules::from_json(raw);
        // Divergent documents: we take the vectors' `valid` reading every time. That follows
        // Python/Go/Java for ignoring unknown attributes (`id`, `moop`), Python/Go/Node for a
        // syntax error (Java silently falls back to built-in rules), Python/Java/Node for a
        // default without `rate` and a default with `host`, Go/Node for a v2 rule with
        // `service_name` and a fractional `fixed_target`, Python/Go/Node for `"version": "2"`.
        match (&loaded, valid) {
            (Ok(_), true) | (Err(_), false) => {}
            (Ok(_), false) => panic!("{id}: accepted an invalid document"),
            (Err(e), true) => panic!("{id}: refused a valid document: {e}"),
        }
        let Ok(rules) = loaded else { continue };
        for case in doc["requests"].as_array().into_iter().flatten() {
            let r = &case["request"];
            let request = if r["no_request"].as_bool() == Some(true) {
                SamplingRequest::new()
            } else {
                let mut request = SamplingRequest::new();
                if let Some(host) = r["host"].as_str() {
                    request = request.with_host(host);
                }
                if let Some(method) = r["method"].as_str() {
                    request = request.with_method(method);
                }
                if let Some(path) = r["path"].as_str() {
                    request = request.with_url_path(path);
                }
                request
            };
            // A fresh sampler for each request, so the first-call expectation holds.
            let clock = manual_clock();
            let sampler = sampler(rules.clone(), &clock, 1);
            let explanation = sampler.explain(&request);
            let decision = sampler.should_sample(&request);

            // py-rule-manifest's request with no host is divergent (Node picks rule 0); we follow
            // Python/Go/Java, which is `expect_match`.
            let expected_rule = match &case["expect_match"] {
                Value::String(s) if s == "default" => DecidingRule::LocalDefault,
                v => DecidingRule::Local(v.as_u64().expect("rule index") as usize),
            };
            assert_eq!(decision.rule(), &expected_rule, "{id}: {r}");
            assert_eq!(explanation.decision().rule(), &expected_rule, "{id}: {r}");
            assert_eq!(
                explanation.description(),
                case["expect_description"].as_str(),
                "{id}: {r}"
            );
            if let Some(first) = case["expect_sampled_first_call"].as_bool() {
                assert_eq!(decision.is_sampled(), first, "{id}: {r}");
                assert_eq!(explanation.decision().is_sampled(), first, "{id}: {r}");
            }
            requests_checked += 1;
        }
    }
    assert!(
        requests_checked >= 20,
        "only {requests_checked} requests checked"
    );
}

// The `centralized` section of sampling_rules.json (service rules ordered by priority then
// name, with service name and type matching) is not exercised here: centralized rules are not
// built yet, and the local sampler has no priorities or service matching to test it against.

#[test]
fn default_rules_are_the_sdks_builtin_document() {
    let from_file =
        SamplingRules::from_file(data_path("default-sampling-rules.json")).expect("load");
    assert_eq!(SamplingRules::default(), from_file);
    let builtin = vectors()["builtin_default_rules"]["document"].to_string();
    assert_eq!(
        SamplingRules::default(),
        SamplingRules::from_json(&builtin).expect("load")
    );
    assert_eq!(SamplingRules::default().default_fixed_target(), 1);
    assert_eq!(SamplingRules::default().default_rate(), 0.05);
}

// ===== errors name the rule and the field =====

/// Vector id, kind, rule index, in the default rule, field.
type ErrorCase = (
    &'static str,
    RulesErrorKind,
    Option<usize>,
    bool,
    Option<&'static str>,
);

#[test]
fn errors_name_rule_and_field() {
    #[rustfmt::skip]
    let cases: &[ErrorCase] = &[
        // vector id,                      kind,                              rule,    default, field
        ("py-missing-version",             RulesErrorKind::MissingField,       None,    false, Some("version")),
        ("py-rule-negative-rate",          RulesErrorKind::OutOfRange,         Some(0), false, Some("rate")),
        ("py-rule-missing-url-path",       RulesErrorKind::MissingField,       Some(0), false, Some("url_path")),
        ("go-rule-v2-contains-service-name", RulesErrorKind::NotAllowed,       Some(0), false, Some("service_name")),
        ("go-rule-v1-invalid",             RulesErrorKind::Json,               None,    false, None),
        ("node-missing-default",           RulesErrorKind::MissingField,       None,    false, Some("default")),
        ("node-default-missing-rate",      RulesErrorKind::MissingField,       None,    true,  Some("rate")),
        ("derived-version-3",              RulesErrorKind::UnsupportedVersion, None,    false, Some("version")),
        ("derived-default-with-host",      RulesErrorKind::NotAllowed,         None,    true,  Some("host")),
        ("derived-version-as-string",      RulesErrorKind::WrongType,          None,    false, Some("version")),
        ("derived-fixed-target-float",     RulesErrorKind::WrongType,          Some(0), false, Some("fixed_target")),
    ];
    for &(id, kind, rule, in_default, field) in cases {
        let err = SamplingRules::from_json(&document(id)).expect_err(id);
        assert_eq!(err.kind(), kind, "{id}: {err}");
        assert_eq!(err.rule_index(), rule, "{id}: {err}");
        assert_eq!(err.is_in_default_rule(), in_default, "{id}: {err}");
        assert_eq!(err.field(), field, "{id}: {err}");
        if let Some(field) = field {
            assert!(err.to_string().contains(field), "{id}: {err}");
        }
    }
}

#[test]
fn version_1_rule_with_host_is_refused() {
    let err = SamplingRules::from_json(
        r#"{"version": 1, "default": {"fixed_target": 1, "rate": 0.05},
            "rules": [{"host": "*", "http_method": "*", "url_path": "/x", "fixed_target": 1, "rate": 0.1}]}"#,
    )
    .expect_err("v1 rules name the host pattern service_name");
    assert_eq!(err.kind(), RulesErrorKind::NotAllowed);
    assert_eq!(err.field(), Some("host"));
    assert_eq!(err.rule_index(), Some(0));
}

#[test]
fn out_of_range_and_wrong_types_are_refused() {
    let rule = |fields: &str| {
        format!(
            r#"{{"version": 2, "default": {{"fixed_target": 1, "rate": 0.05}},
                "rules": [{{"host": "*", "http_method": "*", "url_path": "/", "fixed_target": 1, "rate": 0.1}},
                          {{"host": "*", "http_method": "*", "url_path": "/", {fields}}}]}}"#
        )
    };
    #[rustfmt::skip]
    let cases = [
        (rule(r#""fixed_target": 1, "rate": 1.5"#),   RulesErrorKind::OutOfRange, "rate"),
        (rule(r#""fixed_target": -1, "rate": 0.5"#),  RulesErrorKind::OutOfRange, "fixed_target"),
        (rule(r#""fixed_target": "1", "rate": 0.5"#), RulesErrorKind::WrongType,  "fixed_target"),
        (rule(r#""fixed_target": 1, "rate": "0.5""#), RulesErrorKind::WrongType,  "rate"),
        (rule(r#""fixed_target": 1"#),                RulesErrorKind::MissingField, "rate"),
    ];
    for (json, kind, field) in cases {
        let err = SamplingRules::from_json(&json).expect_err(&json);
        assert_eq!(
            (err.kind(), err.field(), err.rule_index()),
            (kind, Some(field), Some(1)),
            "{err}"
        );
    }
    let err = SamplingRules::from_json("[]").expect_err("not an object");
    assert_eq!(err.kind(), RulesErrorKind::WrongType);
}

#[test]
fn json_error_keeps_the_source_out_of_the_message() {
    let err = SamplingRules::from_json(&document("go-rule-v1-invalid")).expect_err("bad JSON");
    let source = std::error::Error::source(&err).expect("the parser error is the source");
    assert!(!err.to_string().contains(&source.to_string()));
    assert!(err.to_string().contains("line 6"), "{err}");
}

#[test]
fn file_errors() {
    let missing = std::env::temp_dir().join("xray-core-sampling-test-no-such-file.json");
    let err = SamplingRules::from_file(&missing).expect_err("no file");
    assert_eq!(err.kind(), RulesErrorKind::Io);
    assert_eq!(err.path(), Some(missing.as_path()));
    assert!(std::error::Error::source(&err).is_some());

    let big = std::env::temp_dir().join(format!(
        "xray-core-sampling-test-{}.json",
        std::process::id()
    ));
    std::fs::write(&big, " ".repeat(2 * 1024 * 1024)).expect("write temp file");
    let err = SamplingRules::from_file(&big).expect_err("too large");
    let _ = std::fs::remove_file(&big);
    assert_eq!(err.kind(), RulesErrorKind::TooLarge);
}

#[test]
fn builder_checks_like_the_document() {
    let err = SamplingRules::builder()
        .with_rule(SamplingRule::new("*", "GET", "/").with_rate(0.5))
        .with_rule(SamplingRule::new("*", "GET", "/").with_rate(-0.1))
        .build()
        .expect_err("negative rate");
    assert_eq!(
        (err.kind(), err.rule_index(), err.field()),
        (RulesErrorKind::OutOfRange, Some(1), Some("rate"))
    );

    let err = SamplingRules::builder()
        .with_default(1, f64::NAN)
        .build()
        .expect_err("NaN rate");
    assert!(err.is_in_default_rule());

    let err = SamplingRules::builder()
        .with_rule(SamplingRule::new("", "GET", "/"))
        .build()
        .expect_err("empty host pattern");
    assert_eq!(
        (err.kind(), err.field()),
        (RulesErrorKind::MissingField, Some("host"))
    );
}

// ===== reservoir =====

#[test]
fn reservoir_admits_exactly_the_target_each_second() {
    let clock = manual_clock();
    let sampler = sampler(one_rule(3, 0.0), &clock, 7);
    for second in 0..3 {
        let decisions: Vec<_> = (0..10).map(|_| sampler.should_sample(&HOT)).collect();
        let sampled = decisions.iter().filter(|d| d.is_sampled()).count();
        assert_eq!(sampled, 3, "second {second}");
        assert!(
            decisions[..3]
                .iter()
                .all(|d| d.reason() == SamplingReason::Reservoir)
        );
        assert!(
            decisions[3..]
                .iter()
                .all(|d| d.reason() == SamplingReason::Rate)
        );
        // Still the same second: nothing more.
        clock.advance_micros(999_999 - (clock_micros_in_second(&clock)));
        assert!(!sampler.should_sample(&HOT).is_sampled(), "second {second}");
        clock.advance_micros(1);
    }
}

fn clock_micros_in_second(clock: &ManualClock) -> u64 {
    use xray_sdk::clock::Clock;
    clock.now_micros() % 1_000_000
}

#[test]
fn rules_have_separate_reservoirs() {
    let rules = SamplingRules::builder()
        .with_rule(SamplingRule::new("*", "*", "/a").with_fixed_target(1))
        .with_rule(SamplingRule::new("*", "*", "/b").with_fixed_target(1))
        .with_default(1, 0.0)
        .build()
        .expect("valid");
    let clock = manual_clock();
    let sampler = sampler(rules, &clock, 3);
    let a = SamplingRequest::new().with_url_path("/a");
    let b = SamplingRequest::new().with_url_path("/b");
    let other = SamplingRequest::new().with_url_path("/c");
    for request in [&a, &b, &other] {
        assert!(sampler.should_sample(request).is_sampled());
        assert!(!sampler.should_sample(request).is_sampled());
    }
}

#[test]
fn concurrent_decisions_admit_exactly_the_target() {
    const TARGET: u64 = 100;
    let clock = manual_clock();
    // Rate 0: only the reservoir samples, so any over-admission shows up in the count.
    let sampler = sampler(one_rule(TARGET, 0.0), &clock, 11);
    let sampled = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..5_000 {
                    if sampler.should_sample(&HOT).is_sampled() {
                        sampled.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(sampled.load(Ordering::Relaxed) as u64, TARGET);
}

// ===== rate =====

/// Samples `n` requests past an empty reservoir and returns how many were sampled.
fn count_sampled(sampler: &LocalSampler, n: usize) -> usize {
    (0..n)
        .filter(|_| {
            let decision = sampler.should_sample(&HOT);
            assert_eq!(decision.reason(), SamplingReason::Rate);
            decision.is_sampled()
        })
        .count()
}

/// Within 5 binomial standard deviations of `n * p`.
fn assert_binomial(sampled: usize, n: usize, p: f64) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    // n = 100 000, p = 0.05: mean 5 000, sd ≈ 68.9, so the band is 5 000 ± 345 (±0.35 points);
    // a correct sampler lands outside it with probability below 1e-6.
    assert!(
        (sampled as f64 - mean).abs() <= 5.0 * sd,
        "sampled {sampled} of {n}, expected {mean} ± {}",
        5.0 * sd
    );
}

#[test]
fn five_percent_rule_samples_five_percent_seeded() {
    let clock = manual_clock();
    let sampler = sampler(one_rule(0, 0.05), &clock, 42);
    assert_binomial(count_sampled(&sampler, 100_000), 100_000, 0.05);
}

#[test]
fn five_percent_rule_samples_five_percent_thread_rng() {
    let clock: SharedClock = manual_clock();
    let sampler = LocalSampler::new(one_rule(0, 0.05)).with_clock(clock);
    assert_binomial(count_sampled(&sampler, 100_000), 100_000, 0.05);
}

#[test]
fn rate_zero_never_and_rate_one_always() {
    let clock = manual_clock();
    assert_eq!(
        count_sampled(&sampler(one_rule(0, 0.0), &clock, 5), 10_000),
        0
    );
    assert_eq!(
        count_sampled(&sampler(one_rule(0, 1.0), &clock, 5), 10_000),
        10_000
    );
}

#[test]
fn same_seed_same_decisions() {
    let clock = manual_clock();
    let run = |seed| {
        let sampler = sampler(one_rule(0, 0.5), &clock, seed);
        (0..200)
            .map(|_| sampler.should_sample(&HOT).is_sampled())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
}

// ===== explain =====

#[test]
fn explain_does_not_take_from_the_reservoir() {
    let clock = manual_clock();
    let sampler = sampler(one_rule(2, 0.0), &clock, 1);
    for _ in 0..10 {
        let why = sampler.explain(&HOT);
        assert!(why.decision().is_sampled());
        assert_eq!(why.decision().reason(), SamplingReason::Reservoir);
        assert_eq!(why.used_this_second(), 0);
        assert_eq!(why.draw(), None);
    }
    assert!(sampler.should_sample(&HOT).is_sampled());
    assert_eq!(sampler.explain(&HOT).used_this_second(), 1);
    assert!(sampler.should_sample(&HOT).is_sampled());

    let why = sampler.explain(&HOT);
    assert_eq!(why.used_this_second(), 2);
    assert_eq!(why.fixed_target(), 2);
    assert_eq!(why.rate(), 0.0);
    assert!(!why.decision().is_sampled());
    assert_eq!(why.decision().reason(), SamplingReason::Rate);
    let draw = why.draw().expect("the rate decided");
    assert!((0.0..1.0).contains(&draw));
    assert!(why.to_string().contains("not sampled by rule 0"), "{why}");
}

#[test]
fn explain_logs_at_debug() {
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, subscriber::Subscriber};

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl Subscriber for Count {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let meta = event.metadata();
            if meta.target() == "xray_sdk::sampling" && *meta.level() == Level::DEBUG {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    let count = Arc::new(Count::default());
    let sampler = LocalSampler::default();
    tracing::subscriber::with_default(count.clone(), || {
        sampler.explain(&HOT);
        sampler.should_sample(&HOT);
    });
    assert_eq!(
        count.0.load(Ordering::Relaxed),
        1,
        "explain logs once, deciding logs nothing"
    );
}

#[test]
fn missing_attributes_match_implicitly() {
    let rules = SamplingRules::builder()
        .with_rule(SamplingRule::new("api.example.com", "POST", "/orders").with_fixed_target(1))
        .with_default(1, 0.0)
        .build()
        .expect("valid");
    let sampler = LocalSampler::new(rules);
    let host_only = SamplingRequest::new().with_host("API.example.com");
    assert_eq!(
        sampler.should_sample(&host_only).rule(),
        &DecidingRule::Local(0)
    );
    let wrong_method = host_only.with_method("GET");
    assert_eq!(
        sampler.should_sample(&wrong_method).rule(),
        &DecidingRule::LocalDefault
    );
    // Nothing a local rule looks at: the default rule, not rule 0 by three implicit matches.
    let service_only = SamplingRequest::new().with_service_name("orders");
    assert_eq!(
        sampler.should_sample(&service_only).rule(),
        &DecidingRule::LocalDefault
    );
    assert_eq!(sampler.should_sample(&service_only).rule_name(), None);
}

// ===== robustness =====

#[test]
fn error_is_one_pointer() {
    // Errors are rare; the happy path should not pay for a wide `Result`.
    assert_eq!(
        std::mem::size_of::<xray_sdk::sampling::RulesError>(),
        std::mem::size_of::<usize>()
    );
}

mod never_panics {
    use proptest::prelude::*;
    use serde_json::{Value, json};
    use xray_sdk::sampling::{LocalSampler, Sampler, SamplingRequest, SamplingRules};

    /// Any JSON value a hand-edited rules file might hold where a field belongs.
    fn any_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-2i64..4).prop_map(Value::from),
            any::<f64>()
                .prop_filter("JSON has no NaN/inf", |f| f.is_finite())
                .prop_map(Value::from),
            (-0.5f64..1.5).prop_map(Value::from),
            "[*?a-z/]{0,6}".prop_map(Value::from),
            Just(json!([])),
            Just(json!({})),
        ]
    }

    proptest! {
        #[test]
        fn loading_any_document(
            version in any_value(),
            default_target in any_value(),
            default_rate in any_value(),
            host in any_value(),
            method in any_value(),
            path in any_value(),
            target in any_value(),
            rate in any_value(),
            v1 in any::<bool>(),
        ) {
            let host_field = if v1 { "service_name" } else { "host" };
            let doc = json!({
                "version": version,
                "default": { "fixed_target": default_target, "rate": default_rate },
                "rules": [{ host_field: host, "http_method": method, "url_path": path,
                            "fixed_target": target, "rate": rate }],
            });
            if let Ok(rules) = SamplingRules::from_json(&doc.to_string()) {
                for rule in rules.rules() {
                    prop_assert!((0.0..=1.0).contains(&rule.rate()));
                    prop_assert!(!rule.host().is_empty());
                }
                prop_assert!((0.0..=1.0).contains(&rules.default_rate()));
                let sampler = LocalSampler::new(rules);
                let request = SamplingRequest::new().with_host("h").with_method("GET").with_url_path("/a");
                let _ = sampler.should_sample(&request);
                let _ = sampler.explain(&request);
            }
        }

        #[test]
        fn loading_any_text(text in "[{}\\[\\]\":,0-9a-z. -]{0,64}") {
            let _ = SamplingRules::from_json(&text);
        }
    }
}
