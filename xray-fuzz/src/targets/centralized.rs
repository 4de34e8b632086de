//! Centralized sampling against a proxy of the fuzzer's own: a TCP server on 127.0.0.1:0 that
//! answers `POST /GetSamplingRules` and `POST /SamplingTargets` with fuzzed bodies in fuzzed
//! HTTP (chunked, unframed, cut short, over-long, wrong status, interim answers, bad lines),
//! now and then closing without a word, hanging, or trickling bytes, and handing out a new
//! `NextToken` for every page.
//!
//! Each input is one conversation with a fresh [`CentralizedSampler`] (no background
//! polling, a 100 ms timeout, a manual clock): fetch the rules, decide, move the clock past
//! the reporting interval, report, decide, fetch again, decide. What must hold:
//!
//! - a rules fetch returns within its overall deadline (five call timeouts, each call at most
//!   two: 6 × 100 ms, and some slack), a report within its calls' (four batches of 25 rules,
//!   and a fetch of the rules again);
//! - a successful fetch puts in force as many rules as it says, at most 100, with unique
//!   names, `Default` last; a failed one leaves the rules as they were (none, the first
//!   time), and so does a failed report;
//! - every decision by a centralized rule names a rule in force; statistics never count more
//!   sampled or borrowed requests than requests;
//! - what the sampler sends is well-formed: `POST`s to the two paths only, JSON bodies, a
//!   string `NextToken`, 1 to 25 statistics documents naming rules in force, with a 24-digit
//!   hex `ClientID`, an integer `Timestamp`, and counts that add up.

use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::RngExt;
use rand::rngs::SmallRng;
use serde_json::{Map, Value, json};
use xray_sdk::clock::ManualClock;
use xray_sdk::sampling::{CentralizedSampler, DecidingRule, Sampler, SamplingRequest};

use super::local_intake::{Reader, write_part};
use crate::corpus::Corpus;
use crate::harness::{SLOW, Target, escape};
use crate::mutate::{Mutator, edge_number, json_input, pick};

/// The sampler's call timeout here.
const TIMEOUT: Duration = Duration::from_millis(100);
/// What a rules fetch may take: five call timeouts overall, where the last call may start
/// just inside the deadline with a whole timeout left and take two; plus slack for a busy
/// machine.
const RULES_BOUND: Duration = Duration::from_millis(6 * 100 + 400);
/// What a report may take: up to four batches of two call timeouts each, then a fetch.
const TARGETS_BOUND: Duration = Duration::from_millis(8 * 100 + 6 * 100 + 500);
/// The manual clock's start, in microseconds (2025-01-01).
const START_MICROS: u64 = 1_735_689_600_000_000;
const START_SECS: f64 = 1_735_689_600.0;
/// Replaced by the proxy with a page token, new for every page when the input asks.
const TOKEN: &[u8] = b"@@TOKEN@@";

const RULE_KEYS: &[&str] = &[
    "SamplingRuleRecords",
    "SamplingRule",
    "NextToken",
    "RuleName",
    "RuleARN",
    "ResourceARN",
    "Priority",
    "FixedRate",
    "ReservoirSize",
    "ServiceName",
    "ServiceType",
    "Host",
    "HTTPMethod",
    "URLPath",
    "Version",
    "Attributes",
    "CreatedAt",
    "ModifiedAt",
];

const TARGET_KEYS: &[&str] = &[
    "SamplingTargetDocuments",
    "RuleName",
    "FixedRate",
    "ReservoirQuota",
    "ReservoirQuotaTTL",
    "Interval",
    "LastRuleModification",
    "UnprocessedStatistics",
    "ErrorCode",
    "Message",
];

const NAMES: &[&str] = &["Default", "a", "b", "c", "blocked", "orders", ""];

pub(crate) struct CentralizedTarget {
    rules: Vec<Value>,
    targets: Vec<Value>,
    raw: Vec<Vec<u8>>,
    proxy: Proxy,
    fetched: u64,
    refused: u64,
    reported: u64,
}

impl CentralizedTarget {
    pub(crate) fn new(corpus: &Corpus) -> Result<Self, String> {
        let all = corpus.json("centralized")?;
        let (rules, targets): (Vec<Value>, Vec<Value>) = all
            .into_iter()
            .partition(|v| v.get("SamplingRuleRecords").is_some());
        Ok(CentralizedTarget {
            rules,
            targets,
            raw: corpus.files("centralized")?,
            proxy: Proxy::start()?,
            fetched: 0,
            refused: 0,
            reported: 0,
        })
    }

    fn rules_body(&self, rng: &mut SmallRng) -> Vec<u8> {
        if rng.random_bool(0.5) {
            return serde_json::to_vec(&random_rules_page(rng)).unwrap_or_default();
        }
        let raw = Mutator {
            seeds: &self.raw,
            dictionary: RULE_KEYS,
            max_len: 256 * 1024,
        };
        json_input(rng, &self.rules, &raw, RULE_KEYS)
    }

    fn targets_body(&self, rng: &mut SmallRng) -> Vec<u8> {
        if rng.random_bool(0.5) {
            return serde_json::to_vec(&random_targets(rng)).unwrap_or_default();
        }
        let raw = Mutator {
            seeds: &self.raw,
            dictionary: TARGET_KEYS,
            max_len: 64 * 1024,
        };
        json_input(rng, &self.targets, &raw, TARGET_KEYS)
    }
}

impl Target for CentralizedTarget {
    fn generate(&mut self, rng: &mut SmallRng) -> Vec<u8> {
        let mut flags = 0u8;
        if rng.random_bool(0.25) {
            flags |= FRESH_TOKENS;
        }
        if rng.random_bool(0.05) {
            flags |= rng.random_range(1..4u8) << 1;
        }
        if rng.random_bool(0.05) {
            flags |= rng.random_range(1..4u8) << 3;
        }
        let rules_framing = framing(rng);
        let targets_framing = framing(rng);
        let case = Case {
            flags,
            rules_framing,
            targets_framing,
            rules: self.rules_body(rng),
            targets: self.targets_body(rng),
        };
        case.encode()
    }

    fn check(&mut self, input: &[u8]) -> Result<(), String> {
        let case = Case::decode(input);
        self.proxy.play(&case);
        let clock = Arc::new(ManualClock::new(START_MICROS));
        let sampler = CentralizedSampler::builder(self.proxy.addr)
            .with_background_polling(false)
            .with_timeout(TIMEOUT)
            .with_clock(clock.clone())
            .build();
        let mut known: HashSet<Arc<str>> = HashSet::new();

        let first = self.fetch(&sampler, &[])?;
        known.extend(first.iter().cloned());
        decide(&sampler, &first)?;

        clock.advance_micros(11_000_000);
        let started = Instant::now();
        let reported = sampler.refresh_targets_now();
        let took = started.elapsed();
        if took > TARGETS_BOUND {
            return Err(format!(
                "{SLOW}refresh_targets_now took {}, over {}",
                crate::harness::millis(took),
                crate::harness::millis(TARGETS_BOUND)
            ));
        }
        let after = sampler.rule_names();
        match &reported {
            Ok(n) => {
                self.reported += 1;
                if *n > first.len() {
                    return Err(format!("{n} rules reported, with {} in force", first.len()));
                }
                check_names(after.len(), &after)?;
            }
            Err(err) => {
                let _ = (err.kind(), err.operation(), err.status(), err.to_string());
                if after != first {
                    return Err(format!(
                        "a failed report ({err}) changed the rules in force from {first:?} to \
                         {after:?}"
                    ));
                }
            }
        }
        known.extend(after.iter().cloned());
        decide(&sampler, &after)?;

        let again = self.fetch(&sampler, &after)?;
        known.extend(again.iter().cloned());
        decide(&sampler, &again)?;

        check_calls(&self.proxy.take_calls(), &known)
    }

    fn time_limit(&self) -> Duration {
        RULES_BOUND * 2 + TARGETS_BOUND + Duration::from_millis(500)
    }

    fn describe(&self, input: &[u8]) -> String {
        let case = Case::decode(input);
        format!(
            "flags {:#04x}, rules framing {}, targets framing {}\n    rules: {}\n    targets: {}",
            case.flags,
            case.rules_framing,
            case.targets_framing,
            escape(&case.rules, 8192),
            escape(&case.targets, 8192)
        )
    }

    fn notes(&self) -> String {
        format!(
            "{} rule fetches in force, {} refused, {} reports answered",
            self.fetched, self.refused, self.reported
        )
    }
}

impl CentralizedTarget {
    /// Fetches the rules and checks what is in force after; `before` is what was.
    fn fetch(
        &mut self,
        sampler: &CentralizedSampler,
        before: &[Arc<str>],
    ) -> Result<Vec<Arc<str>>, String> {
        let started = Instant::now();
        let fetched = sampler.refresh_rules_now();
        let took = started.elapsed();
        if took > RULES_BOUND {
            return Err(format!(
                "{SLOW}refresh_rules_now took {}, over {}",
                crate::harness::millis(took),
                crate::harness::millis(RULES_BOUND)
            ));
        }
        let names = sampler.rule_names();
        match fetched {
            Ok(n) => {
                self.fetched += 1;
                check_names(n, &names)?;
            }
            Err(err) => {
                self.refused += 1;
                let _ = (err.kind(), err.operation(), err.status(), err.to_string());
                if names != before {
                    return Err(format!(
                        "a failed fetch ({err}) changed the rules in force from {before:?} to \
                         {names:?}"
                    ));
                }
            }
        }
        Ok(names)
    }
}

/// How an answer is framed: as it should be, mostly.
fn framing(rng: &mut SmallRng) -> u8 {
    if rng.random_bool(0.85) {
        0
    } else {
        rng.random_range(1..16u8)
    }
}

fn check_names(n: usize, names: &[Arc<str>]) -> Result<(), String> {
    if n != names.len() {
        return Err(format!(
            "{n} rules fetched, {} in force: {names:?}",
            names.len()
        ));
    }
    if n > 100 {
        return Err(format!("{n} rules in force, over the 100 kept"));
    }
    let unique: HashSet<&Arc<str>> = names.iter().collect();
    if unique.len() != names.len() {
        return Err(format!("two rules in force share a name: {names:?}"));
    }
    if let Some(i) = names.iter().position(|name| &**name == "Default")
        && i + 1 != names.len()
    {
        return Err(format!("`Default` is not tried last: {names:?}"));
    }
    Ok(())
}

fn decide(sampler: &CentralizedSampler, names: &[Arc<str>]) -> Result<(), String> {
    let attributes = [("tenant", "blue"), ("route", "/orders/{id}")];
    let requests = [
        SamplingRequest::new(),
        SamplingRequest::new().with_url_path("/"),
        SamplingRequest::new().with_url_path("/blocked/1"),
        SamplingRequest::new()
            .with_host("api.example.com")
            .with_method("GET")
            .with_url_path("/orders/1")
            .with_service_name("orders")
            .with_service_type("AWS::EC2::Instance")
            .with_attributes(&attributes),
    ];
    for request in &requests {
        for _ in 0..2 {
            let decision = sampler.should_sample(request);
            if let DecidingRule::Centralized(name) = decision.rule()
                && !names.contains(name)
            {
                return Err(format!(
                    "{request:?} is decided by the centralized rule {name:?}, which is not in \
                     force ({names:?})"
                ));
            }
        }
        let _ = sampler.explain(request);
    }
    for name in names {
        if let Some(stats) = sampler.statistics(name)
            && (stats.sampled() > stats.requests() || stats.borrowed() > stats.requests())
        {
            return Err(format!(
                "rule {name:?} counts {} requests, {} sampled, {} borrowed",
                stats.requests(),
                stats.sampled(),
                stats.borrowed()
            ));
        }
    }
    Ok(())
}

fn check_calls(calls: &[Call], known: &HashSet<Arc<str>>) -> Result<(), String> {
    for call in calls {
        if call.method != "POST" {
            return Err(format!("the sampler sent {} {}", call.method, call.path));
        }
        let body: Value = serde_json::from_slice(&call.body).map_err(|err| {
            format!(
                "the sampler sent {} a body that is not JSON ({err}): {}",
                call.path,
                escape(&call.body, 512)
            )
        })?;
        match call.path.as_str() {
            "/GetSamplingRules" => {
                if !body.is_object() || body.get("NextToken").is_some_and(|t| !t.is_string()) {
                    return Err(format!("GetSamplingRules was sent {body}"));
                }
            }
            "/SamplingTargets" => check_statistics(&body, known)?,
            other => return Err(format!("the sampler called {other}")),
        }
    }
    Ok(())
}

fn check_statistics(body: &Value, known: &HashSet<Arc<str>>) -> Result<(), String> {
    let docs = body
        .get("SamplingStatisticsDocuments")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("SamplingTargets was sent {body}"))?;
    if docs.is_empty() || docs.len() > 25 {
        return Err(format!(
            "SamplingTargets was sent {} statistics documents",
            docs.len()
        ));
    }
    for doc in docs {
        let name = doc.get("RuleName").and_then(Value::as_str);
        let client = doc.get("ClientID").and_then(Value::as_str);
        let count = |key: &str| doc.get(key).and_then(Value::as_u64);
        let (Some(name), Some(client), Some(_), Some(requests), Some(sampled), Some(borrowed)) = (
            name,
            client,
            count("Timestamp"),
            count("RequestCount"),
            count("SampledCount"),
            count("BorrowCount"),
        ) else {
            return Err(format!(
                "a statistics document lacks a field or its type: {doc}"
            ));
        };
        if !known.iter().any(|k| &**k == name) {
            return Err(format!("statistics for {name:?}, a rule never in force"));
        }
        if client.len() != 24 || !client.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("the ClientID {client:?} is not 24 hex digits"));
        }
        if sampled > requests || borrowed > requests {
            return Err(format!(
                "statistics of {name:?}: {requests} requests, {sampled} sampled, {borrowed} \
                 borrowed"
            ));
        }
    }
    Ok(())
}

// ===== what the proxy answers =====

const FRESH_TOKENS: u8 = 1;

/// One input: how the proxy frames and behaves, and the two bodies.
///
/// As a file: flags (bit 0: a new `NextToken` every page; bits 1-2 and 3-4: how the rules
/// and targets calls are answered: 0 at once, 1 closed without a word, 2 never, 3 a few bytes
/// at a time), the rules framing, the targets framing, then the two bodies as
/// length-prefixed parts.
#[derive(Debug, Clone)]
struct Case {
    flags: u8,
    rules_framing: u8,
    targets_framing: u8,
    rules: Vec<u8>,
    targets: Vec<u8>,
}

impl Case {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.flags, self.rules_framing, self.targets_framing];
        write_part(&mut out, &self.rules);
        write_part(&mut out, &self.targets);
        out
    }

    fn decode(input: &[u8]) -> Case {
        let mut reader = Reader { rest: input };
        let flags = reader.byte().unwrap_or(0);
        let rules_framing = reader.byte().unwrap_or(0);
        let targets_framing = reader.byte().unwrap_or(0);
        let rules = reader.part().to_vec();
        let targets = reader.part().to_vec();
        Case {
            flags,
            rules_framing,
            targets_framing,
            rules,
            targets,
        }
    }
}

fn random_rules_page(rng: &mut SmallRng) -> Value {
    let count = if rng.random_bool(0.05) {
        rng.random_range(90..=130)
    } else {
        rng.random_range(0..=8)
    };
    let records: Vec<Value> = (0..count)
        .map(|_| {
            json!({
                "SamplingRule": random_rule(rng),
                "CreatedAt": 1.7e9,
                "ModifiedAt": 1.7e9,
            })
        })
        .collect();
    let mut page = Map::new();
    page.insert("SamplingRuleRecords".to_owned(), Value::Array(records));
    match rng.random_range(0..10u32) {
        0..=2 => {
            page.insert(
                "NextToken".to_owned(),
                Value::String(String::from_utf8_lossy(TOKEN).into_owned()),
            );
        }
        3 => {
            page.insert("NextToken".to_owned(), Value::String(String::new()));
        }
        _ => {}
    }
    Value::Object(page)
}

fn random_rule(rng: &mut SmallRng) -> Value {
    let name = if rng.random_bool(0.05) {
        "n".repeat(rng.random_range(60..=70))
    } else {
        pick(rng, NAMES).copied().unwrap_or("a").to_owned()
    };
    let mut rule = json!({
        "RuleName": name,
        "ResourceARN": if rng.random_bool(0.9) { "*" } else { "arn:aws:lambda:us-east-1:1:function:f" },
        "Priority": pick(rng, &[1i64, 10, 10_000, -1, i64::MAX, i64::MIN]).copied().unwrap_or(1),
        "FixedRate": pick(rng, &[0.0, 0.05, 0.5, 1.0, 1.5, -0.1]).copied().unwrap_or(0.05),
        "ReservoirSize": pick(rng, &[0u64, 1, 5, 1_000_000, u64::MAX]).copied().unwrap_or(1),
        "ServiceName": pattern(rng, 64),
        "ServiceType": pattern(rng, 64),
        "Host": pattern(rng, 64),
        "HTTPMethod": pattern(rng, 10),
        "URLPath": pattern(rng, 128),
        "Version": if rng.random_bool(0.9) { 1 } else { 2 },
        "Attributes": attributes(rng),
    });
    if rng.random_bool(0.1)
        && let Some(map) = rule.as_object_mut()
    {
        let keys: Vec<String> = map.keys().cloned().collect();
        if let Some(key) = pick(rng, &keys) {
            map.remove(key);
        }
    }
    rule
}

/// A wildcard pattern, now and then one character over X-Ray's limit for the field.
fn pattern(rng: &mut SmallRng, limit: usize) -> Value {
    let text = match rng.random_range(0..12u32) {
        0..=5 => "*".to_owned(),
        6 => "orders".to_owned(),
        7 => "/blocked*".to_owned(),
        8 => "?".to_owned(),
        9 => "é*".to_owned(),
        10 => "a*".repeat(limit / 2) + "b",
        _ => "x".repeat(limit),
    };
    Value::String(text)
}

fn attributes(rng: &mut SmallRng) -> Value {
    let mut map = Map::new();
    let n = if rng.random_bool(0.7) {
        0
    } else {
        rng.random_range(1..=7)
    };
    for i in 0..n {
        let value = match rng.random_range(0..6u32) {
            0 => Value::from(7),
            1 => Value::String("x".repeat(33)),
            _ => Value::String("blue*".to_owned()),
        };
        let key = if i == 0 {
            "tenant".to_owned()
        } else {
            format!("k{i}")
        };
        map.insert(key, value);
    }
    Value::Object(map)
}

fn random_targets(rng: &mut SmallRng) -> Value {
    let documents: Vec<Value> = (0..rng.random_range(0..=6))
        .map(|_| {
            json!({
                "RuleName": pick(rng, NAMES).copied().unwrap_or("Default"),
                "FixedRate": pick(rng, &[0.0, 0.1, 1.0, 2.0, -1.0]).copied().unwrap_or(0.1),
                "ReservoirQuota": pick(rng, &[0u64, 1, 10, u64::MAX]).copied().unwrap_or(1),
                "ReservoirQuotaTTL": START_SECS + rng.random_range(-100.0..1000.0),
                "Interval": pick(rng, &[0u64, 1, 10, 3601, u64::MAX]).copied().unwrap_or(10),
            })
        })
        .collect();
    let unprocessed: Vec<Value> = (0..rng.random_range(0..=2))
        .map(|_| {
            json!({
                "RuleName": pick(rng, NAMES).copied().unwrap_or("a"),
                "ErrorCode": pick(rng, &["400", "404", "500", "429", ""]).copied().unwrap_or("400"),
                "Message": "fuzzed",
            })
        })
        .collect();
    let modified = match rng.random_range(0..4u32) {
        0 => edge_number(rng),
        1 => Value::from(START_SECS + 50.0),
        _ => Value::from(START_SECS - 100.0),
    };
    json!({
        "SamplingTargetDocuments": documents,
        "LastRuleModification": modified,
        "UnprocessedStatistics": unprocessed,
    })
}

/// The bytes of an HTTP answer carrying `body`, framed as `framing` says.
fn frame(framing: u8, body: &[u8]) -> Vec<u8> {
    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n";
    let length = |n: usize| format!("Content-Length: {n}\r\n\r\n");
    let mut out = Vec::new();
    match framing % 16 {
        // Chunks of varying size, then the last chunk.
        1 | 14 => {
            out.extend_from_slice(OK.as_bytes());
            if framing % 16 == 14 {
                out.extend_from_slice(b"Transfer-Encoding: gzip, chunked\r\n\r\n");
            } else {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            }
            let mut rest = body;
            let mut i = 0usize;
            while !rest.is_empty() {
                let size = (1 + i * 7 % 37).min(rest.len());
                let (chunk, tail) = rest.split_at(size);
                if framing % 16 == 14 {
                    out.extend_from_slice(format!("{size:x};ext=1\r\n").as_bytes());
                } else {
                    out.extend_from_slice(format!("{size:X}\r\n").as_bytes());
                }
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
                rest = tail;
                i += 1;
            }
            out.extend_from_slice(b"0\r\nX-Trailer: 1\r\n\r\n");
        }
        // No length: the body runs to the end of the connection.
        2 => {
            out.extend_from_slice(OK.as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(body);
        }
        3 | 4 => {
            let status = if framing % 16 == 3 {
                "500 Internal Server Error"
            } else {
                "404 Not Found"
            };
            out.extend_from_slice(format!("HTTP/1.1 {status}\r\n").as_bytes());
            out.extend_from_slice(length(body.len()).as_bytes());
            out.extend_from_slice(body);
        }
        5 | 15 => {
            let interim = if framing % 16 == 5 { 1 } else { 6 };
            for _ in 0..interim {
                out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            out.extend_from_slice(OK.as_bytes());
            out.extend_from_slice(length(body.len()).as_bytes());
            out.extend_from_slice(body);
        }
        // More announced than sent: the sampler waits, and times out.
        6 => {
            out.extend_from_slice(OK.as_bytes());
            out.extend_from_slice(length(body.len() + 7).as_bytes());
            out.extend_from_slice(body);
        }
        7 => {
            out.extend_from_slice(OK.as_bytes());
            out.extend_from_slice(length(body.len().saturating_sub(1)).as_bytes());
            out.extend_from_slice(body);
        }
        8 => {
            out.extend_from_slice(b"HTTP/1.1 2OO OK\r\n");
            out.extend_from_slice(length(body.len()).as_bytes());
            out.extend_from_slice(body);
        }
        9 => {
            out.extend_from_slice(OK.as_bytes());
            out.extend_from_slice(b"X-Broken-Line\r\n");
            out.extend_from_slice(length(body.len()).as_bytes());
            out.extend_from_slice(body);
        }
        10 => {
            out.extend_from_slice(OK.as_bytes());
            out.extend_from_slice(length(2 * 1024 * 1024).as_bytes());
            out.extend_from_slice(body);
        }
        11 => {
            out.extend_from_slice(OK.as_bytes());
            for i in 0..150 {
                out.extend_from_slice(format!("X-Header-{i}: {i}\r\n").as_bytes());
            }
            out.extend_from_slice(length(body.len()).as_bytes());
            out.extend_from_slice(body);
        }
        12 => {
            out.extend_from_slice(b"HTTP/1.1 200 OK\nContent-Type: application/json\n");
            out.extend_from_slice(format!("Content-Length: {}\n\n", body.len()).as_bytes());
            out.extend_from_slice(body);
        }
        13 => {
            out.extend_from_slice(OK.as_bytes());
            out.extend_from_slice(format!("Content-Length: {}\r\n", body.len() + 1).as_bytes());
            out.extend_from_slice(length(body.len()).as_bytes());
            out.extend_from_slice(body);
        }
        _ => {
            out.extend_from_slice(OK.as_bytes());
            out.extend_from_slice(length(body.len()).as_bytes());
            out.extend_from_slice(body);
        }
    }
    out
}

fn replace_token(body: &[u8], token: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some(at) = rest.windows(TOKEN.len()).position(|w| w == TOKEN) {
        out.extend_from_slice(rest.get(..at).unwrap_or_default());
        out.extend_from_slice(token.as_bytes());
        rest = rest.get(at + TOKEN.len()..).unwrap_or_default();
    }
    out.extend_from_slice(rest);
    out
}

// ===== the proxy =====

/// A request the sampler made.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    body: Vec<u8>,
}

#[derive(Debug, Default)]
struct Script {
    case: Option<Case>,
    pages: u64,
    calls: Vec<Call>,
}

/// The sampling proxy the sampler talks to: one thread, one connection at a time, as the
/// sampler makes one call at a time.
struct Proxy {
    addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    fn start() -> Result<Proxy, String> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .map_err(|err| format!("the proxy cannot listen: {err}"))?;
        let addr = listener
            .local_addr()
            .map_err(|err| format!("the proxy has no address: {err}"))?;
        let script = Arc::new(Mutex::new(Script::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (script, stop) = (Arc::clone(&script), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("xray-fuzz-proxy".to_owned())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::Acquire) {
                            break;
                        }
                        if let Ok(stream) = stream {
                            serve(stream, &script);
                        }
                    }
                })
                .map_err(|err| format!("the proxy thread does not start: {err}"))?
        };
        Ok(Proxy {
            addr,
            script,
            stop,
            thread: Some(thread),
        })
    }

    fn play(&self, case: &Case) {
        let mut script = lock(&self.script);
        script.case = Some(case.clone());
        script.pages = 0;
        script.calls.clear();
    }

    fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut lock(&self.script).calls)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn serve(mut stream: TcpStream, script: &Mutex<Script>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_nodelay(true);
    let Some(call) = read_request(&mut stream) else {
        return;
    };
    let (behaviour, answer) = {
        let mut script = lock(script);
        let case = script.case.clone().unwrap_or_else(|| Case {
            flags: 0,
            rules_framing: 4,
            targets_framing: 4,
            rules: Vec::new(),
            targets: Vec::new(),
        });
        let (behaviour, framing, body) = match call.path.as_str() {
            "/GetSamplingRules" => ((case.flags >> 1) & 3, case.rules_framing, case.rules),
            "/SamplingTargets" => ((case.flags >> 3) & 3, case.targets_framing, case.targets),
            _ => (0, 4, b"{}".to_vec()),
        };
        let token = if case.flags & FRESH_TOKENS != 0 {
            script.pages += 1;
            format!("page-{}", script.pages)
        } else {
            "page-0".to_owned()
        };
        if script.calls.len() < 1000 {
            script.calls.push(call);
        }
        (behaviour, frame(framing, &replace_token(&body, &token)))
    };
    match behaviour {
        // Closed without a word.
        1 => {}
        // Never answered: read until the sampler gives up and closes.
        2 => {
            let mut sink = [0u8; 512];
            while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
        }
        // A few bytes at a time, for at most a second.
        3 => {
            let started = Instant::now();
            for piece in answer.chunks(7) {
                if stream.write_all(piece).is_err() || started.elapsed() > Duration::from_secs(1) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(3));
            }
        }
        _ => {
            let _ = stream.write_all(&answer);
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// The request line, and the body by its `Content-Length`.
fn read_request(stream: &mut TcpStream) -> Option<Call> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    let head = String::from_utf8_lossy(buf.get(..head_end).unwrap_or_default()).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let length = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(1024 * 1024);
    let mut body = buf.get(head_end + 4..).unwrap_or_default().to_vec();
    while body.len() < length {
        match stream.read(&mut chunk) {
            Ok(n) if n > 0 => body.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            _ => break,
        }
    }
    body.truncate(length);
    Some(Call { method, path, body })
}
