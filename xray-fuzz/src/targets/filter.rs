//! xray-local's filter expressions: [`Filter::parse`] and [`Filter::matches`].
//!
//! What must hold: an expression over the 4,096-byte limit is refused; a refusal's position
//! lies within the expression (on a character boundary, for expressions within the limit);
//! an accepted expression parses the same way twice, and over every fixture trace
//! `NOT (e)` is the negation of `e`, `(e) AND (e)` is `e`, and `(e) OR NOT (e)` always holds
//! (where the wrapped expression is itself within the limits of length and nesting).

use rand::RngExt;
use rand::rngs::SmallRng;
use serde_json::{Value, json};
use xray_local::{Filter, Trace};

use crate::corpus::Corpus;
use crate::harness::Target;
use crate::mutate::{Mutator, NUMBERS, pick};

/// The longest expression the parser reads (`filter.rs`'s `MAX_LEN`).
const MAX_LEN: usize = 4096;

const DICTIONARY: &[&str] = &[
    " AND ",
    " OR ",
    "NOT ",
    "and",
    "or",
    "not",
    "!",
    "(",
    ")",
    "service(",
    "service(\"orders-api\")",
    "annotation.",
    "annotation.tier",
    "responsetime",
    "duration",
    "fault",
    "error",
    "throttle",
    "ok",
    "partial",
    "http.url",
    "http.status",
    "http.method",
    "http.useragent",
    "http.clientip",
    "user",
    "instance.id",
    "inferred",
    "root",
    "edge(",
    "id(name: ",
    "type: ",
    "account.id: ",
    "{ ",
    " }",
    ", ",
    "group.name",
    "rootcause.fault.service",
    "rootcause.error.entity",
    "rootcause.responsetime.entity",
    "rootcause.fault.exception",
    "rootcause.json",
    "name",
    "message",
    "first",
    "last",
    "remote",
    "coverage",
    "index",
    "#[",
    "]",
    " CONTAINS ",
    " BEGINSWITH ",
    " ENDSWITH ",
    " = ",
    " != ",
    " < ",
    " <= ",
    " > ",
    " >= ",
    "==",
    "true",
    "false",
    "\"",
    "'",
    "\\",
    "\\\"",
    "1e309",
    "1e-5",
    "-",
    ".",
    "e",
    "E+",
];

const WORDS: &[&str] = &[
    "orders-api",
    "payments",
    "DynamoDB",
    "catalog",
    "gold",
    "blue",
    "/v1/orders",
    "GET",
    "POST",
    "é",
    "",
];

pub(crate) struct FilterTarget {
    seeds: Vec<Vec<u8>>,
    traces: Vec<Trace>,
    accepted: u64,
    refused: u64,
}

impl FilterTarget {
    pub(crate) fn new(corpus: &Corpus) -> Result<Self, String> {
        Ok(FilterTarget {
            seeds: corpus.files("filter")?,
            traces: fixtures(corpus)?,
            accepted: 0,
            refused: 0,
        })
    }
}

/// The traces expressions are evaluated over: xray-local's test trace (several services,
/// faults, annotations) and a few made here with odd values.
pub(crate) fn fixtures(corpus: &Corpus) -> Result<Vec<Trace>, String> {
    let mut docs: Vec<Value> = Vec::new();
    for file in corpus.files("fixtures")? {
        match serde_json::from_slice::<Value>(&file) {
            Ok(Value::Array(items)) => docs.extend(items),
            Ok(other) => docs.push(other),
            Err(err) => return Err(format!("a fixture is not JSON: {err}")),
        }
    }
    docs.push(json!({
        "name": "catalog", "id": "70de5b6f19ff9a0a", "start_time": 100.0, "end_time": 100.25,
        "trace_id": "1-581cf771-a006649127e371903a2de979",
        "http": {"request": {"method": "get", "url": "http://localhost/items?page=2"},
                 "response": {"status": 200}},
        "annotations": {"tier": "gold", "items": 12, "cached": false},
        "subsegments": [{"name": "cache", "id": "70de5b6f19ff9a0b", "start_time": 100.05,
                         "end_time": 100.5, "annotations": {"tier": "silver"}}],
    }));
    docs.push(json!({
        "name": "é", "id": "70de5b6f19ff9a0c", "start_time": 1e308, "end_time": -1e308,
        "trace_id": "1-581cf772-a006649127e371903a2de979",
        "http": {"request": {"method": 7, "url": ["x"]}, "response": {"status": "500"}},
        "annotations": {"tier": null, "items": 1.7976931348623157e308, "k": ""},
        "fault": "yes", "error": true, "in_progress": true,
    }));
    docs.push(json!({
        "type": "subsegment", "name": "orphan", "id": "70de5b6f19ff9a0d",
        "parent_id": "70de5b6f19ff9aff", "start_time": 5, "throttle": true,
        "trace_id": "1-581cf773-a006649127e371903a2de979",
        "annotations": {"tier": "gold"},
    }));
    xray_local::assemble(docs).map_err(|err| format!("the fixtures do not assemble: {err:?}"))
}

impl Target for FilterTarget {
    fn generate(&mut self, rng: &mut SmallRng) -> Vec<u8> {
        let raw = Mutator {
            seeds: &self.seeds,
            dictionary: DICTIONARY,
            max_len: MAX_LEN + 512,
        };
        match rng.random_range(0..10u32) {
            0..=2 => expression(rng, 4).into_bytes(),
            3 => nested(rng).into_bytes(),
            _ => raw.input(rng),
        }
    }

    fn check(&mut self, input: &[u8]) -> Result<(), String> {
        let text = String::from_utf8_lossy(input);
        let filter = match Filter::parse(&text) {
            Ok(filter) => filter,
            Err(err) => {
                self.refused += 1;
                return check_refusal(&text, &err);
            }
        };
        self.accepted += 1;
        if text.len() > MAX_LEN {
            return Err(format!("a {}-byte expression is accepted", text.len()));
        }
        if Filter::parse(&text).as_ref() != Ok(&filter) {
            return Err("parsed twice, it reads differently".to_owned());
        }
        check_logic(&text, &filter, &self.traces)
    }

    fn notes(&self) -> String {
        format!("{} accepted, {} refused", self.accepted, self.refused)
    }
}

fn check_refusal(text: &str, err: &xray_local::FilterError) -> Result<(), String> {
    let position = err.position();
    if position > text.len() {
        return Err(format!(
            "refused at byte {position}, past the end of a {}-byte expression",
            text.len()
        ));
    }
    if text.len() <= MAX_LEN && !text.is_char_boundary(position) {
        return Err(format!(
            "refused at byte {position}, inside a character: `&expr[position..]` would panic"
        ));
    }
    let message = err.to_string();
    if !message.contains(&format!("at byte {position}")) {
        return Err(format!(
            "the message {message:?} does not give the position"
        ));
    }
    Ok(())
}

/// `e` against its negation, its conjunction with itself and the excluded middle, on every
/// fixture. A wrapped form may be refused only for length or nesting.
pub(crate) fn check_logic(text: &str, filter: &Filter, traces: &[Trace]) -> Result<(), String> {
    let wrapped = |form: String| -> Result<Option<Filter>, String> {
        match Filter::parse(&form) {
            Ok(f) => Ok(Some(f)),
            Err(err)
                if form.len() > MAX_LEN
                    || err.expected() == "less nesting"
                    || err.expected() == "a shorter expression" =>
            {
                Ok(None)
            }
            Err(err) => Err(format!(
                "{form:?} is refused ({err}) though {text:?} is not"
            )),
        }
    };
    let not = wrapped(format!("NOT ({text})"))?;
    let both = wrapped(format!("({text}) AND ({text})"))?;
    let either = wrapped(format!("({text}) OR NOT ({text})"))?;
    for trace in traces {
        let m = filter.matches(trace);
        if let Some(not) = &not
            && not.matches(trace) == m
        {
            return Err(format!(
                "NOT ({text}) is {m} on trace {}, as {text:?} itself",
                trace.id()
            ));
        }
        if let Some(both) = &both
            && both.matches(trace) != m
        {
            return Err(format!(
                "({text}) AND ({text}) differs from {text:?} on trace {}",
                trace.id()
            ));
        }
        if let Some(either) = &either
            && !either.matches(trace)
        {
            return Err(format!(
                "({text}) OR NOT ({text}) is false on trace {}",
                trace.id()
            ));
        }
    }
    Ok(())
}

// ===== expressions from the grammar =====

/// A well-formed expression (mostly), up to `depth` levels of `AND`, `OR`, `NOT` and
/// parentheses.
pub(crate) fn expression(rng: &mut SmallRng, depth: u32) -> String {
    if depth > 0 && rng.random_bool(0.4) {
        return match rng.random_range(0..4u32) {
            0 => format!("({})", expression(rng, depth - 1)),
            1 => format!(
                "{}{}",
                if rng.random_bool(0.5) { "NOT " } else { "!" },
                expression(rng, depth - 1)
            ),
            2 => format!(
                "{} AND {}",
                expression(rng, depth - 1),
                expression(rng, depth - 1)
            ),
            _ => format!(
                "{} or {}",
                expression(rng, depth - 1),
                expression(rng, depth - 1)
            ),
        };
    }
    predicate(rng)
}

fn predicate(rng: &mut SmallRng) -> String {
    let string = |rng: &mut SmallRng| {
        let word = pick(rng, WORDS).copied().unwrap_or_default();
        if rng.random_bool(0.8) {
            format!("\"{word}\"")
        } else {
            format!("'{word}'")
        }
    };
    let number = |rng: &mut SmallRng| pick(rng, NUMBERS).copied().unwrap_or("1").to_owned();
    let any_op = |rng: &mut SmallRng| {
        pick(
            rng,
            &[
                "=",
                "!=",
                "<",
                "<=",
                ">",
                ">=",
                "CONTAINS",
                "BEGINSWITH",
                "ENDSWITH",
                "==",
            ],
        )
        .copied()
        .unwrap_or("=")
    };
    match rng.random_range(0..11u32) {
        0 => format!("service({})", string(rng)),
        8 => {
            // A node and a sub-filter judged on its entities.
            let node = match rng.random_range(0..3u32) {
                0 => String::new(),
                1 => string(rng),
                _ => format!("id(name: {}, type: {})", string(rng), string(rng)),
            };
            let flag = pick(rng, &["fault", "error", "throttle", "ok", "root"])
                .copied()
                .unwrap_or("ok");
            format!(
                "service({node}) {{ {flag} OR responsetime > {} }}",
                number(rng)
            )
        }
        9 => format!(
            "edge({}, {}) {{ {} }}",
            string(rng),
            string(rng),
            pick(rng, &["fault", "error", "throttle", "ok"])
                .copied()
                .unwrap_or("ok")
        ),
        10 => {
            let keyword = pick(
                rng,
                &[
                    "user",
                    "http.useragent",
                    "http.clientip",
                    "instance.id",
                    "resource.arn",
                ],
            )
            .copied()
            .unwrap_or("user");
            if rng.random_bool(0.3) {
                keyword.to_owned()
            } else {
                format!("{keyword} {} {}", any_op(rng), string(rng))
            }
        }
        1 => {
            let key = pick(rng, &["tier", "items", "cached", "tenant", "k", "missing"])
                .copied()
                .unwrap_or("k");
            let op = any_op(rng);
            let literal = match rng.random_range(0..3u32) {
                0 => string(rng),
                1 => number(rng),
                _ => String::from(if rng.random_bool(0.5) {
                    "true"
                } else {
                    "FALSE"
                }),
            };
            format!("annotation.{key} {op} {literal}")
        }
        2 => format!("responsetime {} {}", any_op(rng), number(rng)),
        3 => format!("duration {} {}", any_op(rng), number(rng)),
        4 => {
            let flag = pick(rng, &["fault", "error", "throttle", "ok", "partial"])
                .copied()
                .unwrap_or("ok");
            if rng.random_bool(0.3) {
                // Bare: `= true`.
                return flag.to_owned();
            }
            let value = if rng.random_bool(0.5) {
                "true"
            } else {
                "false"
            };
            format!("{flag} {} {value}", any_op(rng))
        }
        5 => format!("http.url {} {}", any_op(rng), string(rng)),
        6 => format!("http.status {} {}", any_op(rng), number(rng)),
        _ => format!("http.method {} {}", any_op(rng), string(rng)),
    }
}

/// A predicate under many parentheses or `NOT`s: around the parser's nesting limit of 64.
fn nested(rng: &mut SmallRng) -> String {
    let depth = rng.random_range(50..=80);
    let inner = predicate(rng);
    if rng.random_bool(0.5) {
        format!("{}{inner}{}", "(".repeat(depth), ")".repeat(depth))
    } else {
        format!("{}{inner}", "NOT ".repeat(depth))
    }
}
