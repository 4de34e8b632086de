//! Local sampling rules: [`SamplingRules::from_json`] and the [`LocalSampler`] they make.
//!
//! What must hold for an accepted document: every rate is in `[0, 1]` and every pattern is
//! non-empty; the same rules built with [`SamplingRules::builder`] from what the getters say
//! are equal; and for requests made from the rules' own patterns (and a few fixed ones) the
//! sampler decides by the first matching rule ([`SamplingRules::matching_rule`]) or the
//! default, `explain` names the same rule, a rule of rate 0 without a reservoir never samples
//! and a rule of rate 1 always does. A refused document costs nothing but an error, whose
//! message can be formatted.

use std::sync::Arc;

use rand::rngs::SmallRng;
use serde_json::Value;
use xray_sdk::clock::ManualClock;
use xray_sdk::sampling::{
    DecidingRule, LocalSampler, Sampler, SamplingRequest, SamplingRule, SamplingRules,
};

use crate::corpus::Corpus;
use crate::harness::Target;
use crate::mutate::{Mutator, json_input};

const KEYS: &[&str] = &[
    "version",
    "rules",
    "default",
    "description",
    "host",
    "service_name",
    "http_method",
    "url_path",
    "fixed_target",
    "rate",
    "id",
];

const DICTIONARY: &[&str] = &[
    "\"version\": 2",
    "\"version\": 1",
    "\"rules\": []",
    "\"default\": {\"fixed_target\": 1, \"rate\": 0.05}",
    "\"host\": \"*\"",
    "\"service_name\": \"*\"",
    "\"http_method\": \"GET\"",
    "\"url_path\": \"/api/*\"",
    "\"fixed_target\": 0",
    "\"rate\": 1",
    "null",
    "true",
    "//",
    "/*",
];

/// The longest value a request attribute gets here. The patterns of a local rules file are
/// the operator's; what a client controls is the request, so the match cost that matters is
/// a long pattern against a request of ordinary size.
const MAX_REQUEST_TEXT: usize = 128;

pub(crate) struct SamplingRulesTarget {
    seeds: Vec<Vec<u8>>,
    values: Vec<Value>,
    accepted: u64,
    refused: u64,
}

impl SamplingRulesTarget {
    pub(crate) fn new(corpus: &Corpus) -> Result<Self, String> {
        Ok(SamplingRulesTarget {
            seeds: corpus.files("sampling-rules")?,
            values: corpus.json("sampling-rules")?,
            accepted: 0,
            refused: 0,
        })
    }
}

impl Target for SamplingRulesTarget {
    fn generate(&mut self, rng: &mut SmallRng) -> Vec<u8> {
        let raw = Mutator {
            seeds: &self.seeds,
            dictionary: DICTIONARY,
            max_len: 32 * 1024,
        };
        json_input(rng, &self.values, &raw, KEYS)
    }

    fn check(&mut self, input: &[u8]) -> Result<(), String> {
        let text = String::from_utf8_lossy(input);
        let rules = match SamplingRules::from_json(&text) {
            Ok(rules) => rules,
            Err(err) => {
                self.refused += 1;
                // Formatting and the accessors must not fail either.
                let _ = (err.to_string(), err.kind(), err.rule_index(), err.field());
                return Ok(());
            }
        };
        self.accepted += 1;
        check_rules(&rules)
    }

    fn notes(&self) -> String {
        format!("{} accepted, {} refused", self.accepted, self.refused)
    }
}

fn check_rules(rules: &SamplingRules) -> Result<(), String> {
    let in_range = |rate: f64| (0.0..=1.0).contains(&rate);
    if !in_range(rules.default_rate()) {
        return Err(format!(
            "the default rate {} is accepted",
            rules.default_rate()
        ));
    }
    let mut builder = SamplingRules::builder();
    for (i, rule) in rules.rules().iter().enumerate() {
        if !in_range(rule.rate()) {
            return Err(format!("rule {i}'s rate {} is accepted", rule.rate()));
        }
        if rule.host().is_empty() || rule.http_method().is_empty() || rule.url_path().is_empty() {
            return Err(format!("rule {i} has an empty pattern"));
        }
        let mut copy = SamplingRule::new(rule.host(), rule.http_method(), rule.url_path())
            .with_fixed_target(rule.fixed_target())
            .with_rate(rule.rate());
        if let Some(description) = rule.description() {
            copy = copy.with_description(description);
        }
        builder = builder.with_rule(copy);
    }
    let built = builder
        .with_default(rules.default_fixed_target(), rules.default_rate())
        .build()
        .map_err(|err| format!("the builder refuses what the document gave: {err}"))?;
    if built != *rules {
        return Err("the builder makes other rules from what the getters say".to_owned());
    }

    let clock = Arc::new(ManualClock::new(1_735_689_600_000_000));
    let sampler = LocalSampler::new(rules.clone())
        .with_clock(clock)
        .with_seed(7);
    let texts = request_texts(rules);
    let mut requests: Vec<SamplingRequest<'_>> = vec![
        SamplingRequest::new(),
        SamplingRequest::new().with_url_path("/"),
        SamplingRequest::new()
            .with_host("api.example.com")
            .with_method("GET")
            .with_url_path("/api/move/up"),
    ];
    for (host, method, path) in &texts {
        requests.push(
            SamplingRequest::new()
                .with_host(host)
                .with_method(method)
                .with_url_path(path),
        );
        requests.push(SamplingRequest::new().with_url_path(path));
    }
    for request in &requests {
        let expected = rules.matching_rule(request);
        let decision = sampler.should_sample(request);
        let (fixed_target, rate) = match (decision.rule(), expected) {
            (DecidingRule::Local(i), Some(j)) if *i == j => rules
                .rules()
                .get(j)
                .map(|r| (r.fixed_target(), r.rate()))
                .ok_or_else(|| format!("decided by rule {j}, which does not exist"))?,
            (DecidingRule::LocalDefault, None) => {
                (rules.default_fixed_target(), rules.default_rate())
            }
            (rule, expected) => {
                return Err(format!(
                    "{request:?} is decided by {rule:?}; the first matching rule is {expected:?}"
                ));
            }
        };
        if fixed_target == 0 && rate <= 0.0 && decision.is_sampled() {
            return Err(format!(
                "{request:?} is sampled by a rule without reservoir and of rate 0"
            ));
        }
        if rate >= 1.0 && !decision.is_sampled() {
            return Err(format!("{request:?} is not sampled by a rule of rate 1"));
        }
        let explained = sampler.explain(request);
        if explained.decision().rule() != decision.rule() {
            return Err(format!(
                "{request:?}: explain names {:?}, the decision {:?}",
                explained.decision().rule(),
                decision.rule()
            ));
        }
    }
    Ok(())
}

/// Request attributes made from the first rules' patterns: each pattern as text, which a
/// wildcard pattern matches unless it holds `?` that must stand for one character.
fn request_texts(rules: &SamplingRules) -> Vec<(String, String, String)> {
    let cut = |s: &str| s.chars().take(MAX_REQUEST_TEXT).collect::<String>();
    rules
        .rules()
        .iter()
        .take(4)
        .map(|r| (cut(r.host()), cut(r.http_method()), cut(r.url_path())))
        .collect()
}
