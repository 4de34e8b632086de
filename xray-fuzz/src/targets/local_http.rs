//! xray-local's TCP server, over real TCP to a daemon started in process: OTLP/HTTP
//! (`POST /v1/traces`), the sampling API (`POST /GetSamplingRules`, `POST /SamplingTargets`),
//! the read API (`GET /traces?filter=`, `/map?filter=`, `/traces/{id}`, `/stats`), and requests
//! that are not HTTP at all.
//!
//! What must hold:
//!
//! - every well-formed request is answered within 3 s, with a status its route allows
//!   (503, the server's "busy", is counted and accepted);
//! - OTLP/HTTP accounts for every span's document: a request that decodes is answered 200 and
//!   moves `received` by exactly the number of documents its spans make (each accepted or
//!   refused with a count); one that does not is answered 400 and counted once as
//!   `invalid_otlp`; another content type is answered 415 and counts nothing;
//! - a filter is answered 200 exactly when [`Filter::parse`] accepts it (or it is empty), with
//!   as many traces as match it in process, and 400 otherwise;
//! - JSON answers are JSON of the documented shape;
//! - after any bytes at all, and every 32 inputs, `GET /stats` still answers, and its counters
//!   add up (`received == accepted + dropped`).

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use prost::Message as _;
use rand::RngExt;
use rand::rngs::SmallRng;
use serde_json::Value;
use xray_local::{Filter, XRayLocal};
use xray_sdk::otlp::proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::local_intake::{Reader, write_part};
use crate::corpus::Corpus;
use crate::harness::{SLOW, Target, escape};
use crate::mutate::{Mutator, json_input, pick};
use crate::spans::{self, Ids};

/// How long an answer may take.
const ANSWER: Duration = Duration::from_secs(3);
/// How long to wait for an answer to bytes that may not be a request.
const RAW_ANSWER: Duration = Duration::from_secs(2);

/// No body.
const EMPTY: &[u8] = &[];

const KINDS: u8 = 8;
const OTLP: u8 = 0;
const GET_RULES: u8 = 1;
const TARGETS: u8 = 2;
const TRACES: u8 = 3;
const MAP: u8 = 4;
const TRACE: u8 = 5;
const RAW: u8 = 6;
const STATS: u8 = 7;

const CONTENT_TYPES: &[Option<&str>] = &[
    Some("application/x-protobuf"),
    None,
    Some("application/json"),
    Some("application/x-protobuf; charset=binary"),
];

const API_KEYS: &[&str] = &[
    "NextToken",
    "SamplingStatisticsDocuments",
    "RuleName",
    "ClientID",
    "Timestamp",
    "RequestCount",
    "SampledCount",
    "BorrowCount",
];

const HTTP_WORDS: &[&str] = &[
    "\r\n",
    "\r\n\r\n",
    "Content-Length: ",
    "Content-Length: 99999999",
    "Transfer-Encoding: chunked",
    "0\r\n\r\n",
    "Host: ",
    "Expect: 100-continue",
    "Content-Encoding: gzip",
    "Content-Type: application/x-protobuf",
    "Connection: keep-alive",
    "Origin: http://evil.example",
    " HTTP/1.0",
    " HTTP/2",
    "GET ",
    "POST ",
    "OPTIONS * ",
    "/traces",
    "/v1/traces",
    "/GetSamplingRules",
    "?filter=",
    "%",
    "%00",
];

const FILTER_WORDS: &[&str] = &[
    " AND ", " OR ", "NOT ", "(", ")", "\"", "=", "fault", "service(",
];

pub(crate) struct LocalHttpTarget {
    otlp_seeds: Vec<Vec<u8>>,
    requests: Vec<ExportTraceServiceRequest>,
    bodies: Vec<Vec<u8>>,
    body_values: Vec<Value>,
    filters: Vec<Vec<u8>>,
    local: XRayLocal,
    inputs: u64,
    answered: [u64; KINDS as usize],
    busy: u64,
}

impl LocalHttpTarget {
    pub(crate) fn new(corpus: &Corpus) -> Result<Self, String> {
        let mut otlp_seeds = corpus.files("otlp")?;
        otlp_seeds.extend(spans::mapping_seeds());
        let requests = otlp_seeds
            .iter()
            .filter_map(|b| ExportTraceServiceRequest::decode(b.as_slice()).ok())
            .collect();
        let local = XRayLocal::builder()
            .udp_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .tcp_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .max_traces(300)
            .start()
            .map_err(|err| format!("xray-local does not start: {err}"))?;
        Ok(LocalHttpTarget {
            otlp_seeds,
            requests,
            bodies: corpus.files("local-http")?,
            body_values: corpus.json("local-http")?,
            filters: corpus.files("filter")?,
            local,
            inputs: 0,
            answered: [0; KINDS as usize],
            busy: 0,
        })
    }

    fn addr(&self) -> SocketAddr {
        self.local.tcp_addr()
    }

    fn filter_text(&self, rng: &mut SmallRng) -> Vec<u8> {
        if rng.random_bool(0.3) {
            return super::filter::expression(rng, 3).into_bytes();
        }
        Mutator {
            seeds: &self.filters,
            dictionary: FILTER_WORDS,
            max_len: 5000,
        }
        .input(rng)
    }

    /// A well-formed request of `kind` for `payload`, as `check` sends it.
    fn request(&self, kind: u8, payload: &[u8]) -> Vec<u8> {
        let host = self.addr();
        let (method, target, content_type, body): (&str, String, Option<&str>, &[u8]) = match kind {
            OTLP => {
                let (ct, body) = payload.split_first().unwrap_or((&0, EMPTY));
                let ct = CONTENT_TYPES
                    .get(usize::from(*ct) % CONTENT_TYPES.len())
                    .copied()
                    .flatten();
                ("POST", "/v1/traces".to_owned(), ct, body)
            }
            GET_RULES => (
                "POST",
                "/GetSamplingRules".to_owned(),
                Some("application/json"),
                payload,
            ),
            TARGETS => (
                "POST",
                "/SamplingTargets".to_owned(),
                Some("application/json"),
                payload,
            ),
            TRACES => (
                "GET",
                format!("/traces?filter={}", percent(payload)),
                None,
                EMPTY,
            ),
            MAP => (
                "GET",
                format!("/map?filter={}", percent(payload)),
                None,
                EMPTY,
            ),
            TRACE => ("GET", format!("/traces/{}", percent(payload)), None, EMPTY),
            _ => ("GET", "/stats".to_owned(), None, EMPTY),
        };
        let mut out =
            format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        if let Some(ct) = content_type {
            out.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        if method == "POST" {
            out.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }

    fn alive(&mut self) -> Result<(), String> {
        let request = self.request(STATS, EMPTY);
        let answer = exchange(self.addr(), &request, ANSWER, false)?
            .ok_or_else(|| format!("{SLOW}GET /stats is not answered"))?;
        if answer.status == 503 {
            self.busy += 1;
            return Ok(());
        }
        if answer.status != 200 {
            return Err(format!("GET /stats is answered {}", answer.status));
        }
        let stats = answer.json()?;
        let number = |key: &str| stats.get(key).and_then(Value::as_u64);
        let dropped: u64 = stats
            .get("dropped")
            .and_then(Value::as_object)
            .map(|m| m.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        match (number("received"), number("accepted")) {
            (Some(received), Some(accepted)) if received == accepted + dropped => Ok(()),
            _ => Err(format!(
                "GET /stats: received, accepted and dropped do not add up: {stats}"
            )),
        }
    }

    fn check_otlp(&mut self, payload: &[u8], request: &[u8]) -> Result<(), String> {
        let ct = payload.first().copied().unwrap_or(0);
        let body = payload.get(1..).unwrap_or_default();
        let protobuf = CONTENT_TYPES
            .get(usize::from(ct) % CONTENT_TYPES.len())
            .copied()
            .flatten()
            .is_none_or(|ct| ct.starts_with("application/x-protobuf"));
        let before = self.local.stats();
        let answer = self.answer(OTLP, request)?;
        let Some(answer) = answer else {
            return Ok(());
        };
        let after = self.local.stats();
        let received = after.received() - before.received();
        let accepted = after.accepted() - before.accepted();
        let dropped = after.dropped_total() - before.dropped_total();
        let counted = format!("received {received}, accepted {accepted}, dropped {dropped}");
        if !protobuf {
            if answer.status != 415 || received != 0 {
                return Err(format!(
                    "OTLP/HTTP in another content type is answered {} and counted as {counted}",
                    answer.status
                ));
            }
            return Ok(());
        }
        match ExportTraceServiceRequest::decode(body) {
            Ok(decoded) => {
                // Every document, and every span that makes none (counted as `invalid_span`).
                let (docs, skipped) = xray_sdk::otlp::to_documents_counted(&decoded);
                let n = (docs.len() + skipped) as u64;
                if answer.status != 200 || received != n || accepted + dropped != n {
                    return Err(format!(
                        "an OTLP/HTTP request whose spans make {n} documents is answered {} \
                         and counted as {counted}",
                        answer.status
                    ));
                }
            }
            Err(_) => {
                let invalid = after.dropped(xray_local::DropReason::InvalidOtlp)
                    - before.dropped(xray_local::DropReason::InvalidOtlp);
                if answer.status != 400 || received != 1 || invalid != 1 {
                    return Err(format!(
                        "a body that is not protobuf is answered {} and counted as {counted}",
                        answer.status
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_api(&mut self, kind: u8, request: &[u8]) -> Result<(), String> {
        let Some(answer) = self.answer(kind, request)? else {
            return Ok(());
        };
        let (operation, list) = if kind == GET_RULES {
            ("GetSamplingRules", "SamplingRuleRecords")
        } else {
            ("SamplingTargets", "SamplingTargetDocuments")
        };
        match answer.status {
            200 => {
                let value = answer.json()?;
                if !value.get(list).is_some_and(Value::is_array) {
                    return Err(format!(
                        "{operation} answers 200 without a `{list}` array: {value}"
                    ));
                }
                Ok(())
            }
            400 | 413 => {
                let value = answer.json()?;
                if !value.get("__type").is_some_and(Value::is_string) {
                    return Err(format!(
                        "{operation} answers {} without an error `__type`: {value}",
                        answer.status
                    ));
                }
                Ok(())
            }
            other => Err(format!("{operation} answers {other}")),
        }
    }

    fn check_read(&mut self, kind: u8, payload: &[u8], request: &[u8]) -> Result<(), String> {
        let Some(answer) = self.answer(kind, request)? else {
            return Ok(());
        };
        let text = String::from_utf8_lossy(payload);
        if kind == TRACE {
            let held = text
                .parse::<xray_sdk::TraceId>()
                .ok()
                .and_then(|id| self.local.trace(id));
            return match (answer.status, held) {
                (200, Some(_)) => answer.json().map(|_| ()),
                (404, None) => Ok(()),
                (status, held) => Err(format!(
                    "GET /traces/{{id}} answers {status}; the trace is {}held",
                    if held.is_some() { "" } else { "not " }
                )),
            };
        }
        let filter = if text.trim().is_empty() {
            Ok(None)
        } else {
            Filter::parse(&text).map(Some)
        };
        match (answer.status, filter) {
            (200, Ok(filter)) => {
                let value = answer.json()?;
                if kind == MAP {
                    if !(value.get("nodes").is_some_and(Value::is_array)
                        && value.get("edges").is_some_and(Value::is_array))
                    {
                        return Err(format!(
                            "GET /map answers 200 without nodes and edges: {value}"
                        ));
                    }
                    return Ok(());
                }
                let shown = value
                    .as_array()
                    .map(Vec::len)
                    .ok_or_else(|| format!("GET /traces answers 200 with {value}"))?;
                let traces = self.local.traces();
                let matching = match &filter {
                    Some(f) => traces.iter().filter(|t| f.matches(t)).count(),
                    None => traces.len(),
                };
                if shown != matching {
                    return Err(format!(
                        "GET /traces?filter= answers {shown} traces; {matching} of those held match"
                    ));
                }
                Ok(())
            }
            (400, Err(_)) => Ok(()),
            (status, Ok(_)) => Err(format!("a valid filter is answered {status}")),
            (status, Err(err)) => Err(format!(
                "a filter Filter::parse refuses ({err}) is answered {status}"
            )),
        }
    }

    fn check_raw(&mut self, payload: &[u8]) -> Result<(), String> {
        // Anything may come back, or nothing; the server must still serve afterwards.
        let _ = exchange(self.addr(), payload, RAW_ANSWER, true)?;
        self.alive()
    }

    /// Sends a well-formed request; `None` when the server said it is busy.
    fn answer(&mut self, kind: u8, request: &[u8]) -> Result<Option<Answer>, String> {
        let answer = exchange(self.addr(), request, ANSWER, false)?
            .ok_or_else(|| format!("{SLOW}no answer within {} s", ANSWER.as_secs()))?;
        if answer.status == 503 {
            self.busy += 1;
            return Ok(None);
        }
        if let Some(n) = self.answered.get_mut(usize::from(kind)) {
            *n += 1;
        }
        Ok(Some(answer))
    }
}

impl Target for LocalHttpTarget {
    fn generate(&mut self, rng: &mut SmallRng) -> Vec<u8> {
        let kind = rng.random_range(0..KINDS);
        let payload: Vec<u8> = match kind {
            OTLP => {
                let ids = Ids::random(rng);
                let ct = if rng.random_bool(0.9) {
                    0
                } else {
                    rng.random_range(1..4u8)
                };
                let body = match rng.random_range(0..10u32) {
                    0..=3 => {
                        let mut request = pick(rng, &self.requests)
                            .cloned()
                            .unwrap_or_else(|| spans::random_request(rng, &ids));
                        spans::adopt(rng, &mut request, &ids);
                        spans::mutate_request(rng, &mut request, &ids);
                        request.encode_to_vec()
                    }
                    4..=7 => spans::random_request(rng, &ids).encode_to_vec(),
                    _ => Mutator {
                        seeds: &self.otlp_seeds,
                        dictionary: &[],
                        max_len: 256 * 1024,
                    }
                    .input(rng),
                };
                let mut payload = vec![ct];
                payload.extend(body);
                payload
            }
            GET_RULES | TARGETS => {
                let raw = Mutator {
                    seeds: &self.bodies,
                    dictionary: API_KEYS,
                    max_len: 64 * 1024,
                };
                json_input(rng, &self.body_values, &raw, API_KEYS)
            }
            TRACES | MAP => self.filter_text(rng),
            TRACE => {
                let traces = self.local.traces();
                match pick(rng, &traces) {
                    Some(trace) if rng.random_bool(0.7) => trace.id().to_string().into_bytes(),
                    _ => Mutator {
                        seeds: &[b"1-581cf771-a006649127e371903a2de979".to_vec()],
                        dictionary: &["-", "%2F", "..", "/"],
                        max_len: 256,
                    }
                    .input(rng),
                }
            }
            RAW => {
                let template_kind = rng.random_range(0..KINDS);
                let template = self.request(template_kind, b"{}");
                let mut bytes = template.clone();
                let seeds = [template];
                let rounds = rng.random_range(1..=6);
                Mutator {
                    seeds: &seeds,
                    dictionary: HTTP_WORDS,
                    max_len: 64 * 1024,
                }
                .mutate(rng, &mut bytes, rounds);
                bytes
            }
            _ => Vec::new(),
        };
        let mut input = vec![kind];
        write_part(&mut input, &payload);
        input
    }

    fn check(&mut self, input: &[u8]) -> Result<(), String> {
        let mut reader = Reader { rest: input };
        let kind = reader.byte().unwrap_or(STATS) % KINDS;
        let payload = reader.part();
        let request = self.request(kind, payload);
        match kind {
            OTLP => self.check_otlp(payload, &request)?,
            GET_RULES | TARGETS => self.check_api(kind, &request)?,
            TRACES | MAP | TRACE => self.check_read(kind, payload, &request)?,
            RAW => self.check_raw(payload)?,
            _ => self.alive()?,
        }
        self.inputs += 1;
        if self.inputs.is_multiple_of(32) {
            self.alive()?;
        }
        Ok(())
    }

    fn time_limit(&self) -> Duration {
        Duration::from_secs(6)
    }

    fn describe(&self, input: &[u8]) -> String {
        let mut reader = Reader { rest: input };
        let kind = reader.byte().unwrap_or(STATS) % KINDS;
        let payload = reader.part();
        if kind == RAW {
            return format!("raw bytes {}", escape(payload, 8192));
        }
        format!("request {}", escape(&self.request(kind, payload), 8192))
    }

    fn notes(&self) -> String {
        format!(
            "answered: otlp {}, GetSamplingRules {}, SamplingTargets {}, traces {}, map {}, \
             trace {}, raw {}, stats {}; busy {}",
            self.answered[usize::from(OTLP)],
            self.answered[usize::from(GET_RULES)],
            self.answered[usize::from(TARGETS)],
            self.answered[usize::from(TRACES)],
            self.answered[usize::from(MAP)],
            self.answered[usize::from(TRACE)],
            self.answered[usize::from(RAW)],
            self.answered[usize::from(STATS)],
            self.busy
        )
    }
}

// ===== a small HTTP/1.1 client =====

struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.body).map_err(|err| {
            format!(
                "an answer {} is not JSON ({err}): {}",
                self.status,
                escape(&self.body, 512)
            )
        })
    }
}

/// Sends `request` on a new connection and reads the answer to the end (`Connection: close`).
/// With `raw`, the bytes may not be a request: the write side is closed after them, and no
/// answer (or a connection reset) is not an error.
fn exchange(
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
    raw: bool,
) -> Result<Option<Answer>, String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|err| format!("cannot connect to xray-local's TCP port: {err}"))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    if let Err(err) = stream.write_all(request) {
        return if raw {
            Ok(None)
        } else {
            Err(format!("the request could not be written: {err}"))
        };
    }
    if raw {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let mut response = Vec::new();
    if let Err(err) = (&mut stream)
        .take(64 * 1024 * 1024)
        .read_to_end(&mut response)
    {
        if raw {
            return Ok(None);
        }
        return Err(format!(
            "{SLOW}no whole answer within {} s: {err}",
            timeout.as_secs()
        ));
    }
    if response.is_empty() && raw {
        return Ok(None);
    }
    parse_response(&response)
        .map(Some)
        .or_else(|err| if raw { Ok(None) } else { Err(err) })
}

fn parse_response(response: &[u8]) -> Result<Answer, String> {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("an answer without a head: {}", escape(response, 512)))?;
    let head = String::from_utf8_lossy(response.get(..end).unwrap_or_default());
    let rest = response.get(end + 4..).unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.strip_prefix("HTTP/1.1 "))
        .and_then(|line| line.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("a bad status line: {}", escape(head.as_bytes(), 256)))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else {
        match length {
            Some(n) => rest
                .get(..n)
                .ok_or_else(|| {
                    format!(
                        "an answer cut short: {n} bytes announced, {} came",
                        rest.len()
                    )
                })?
                .to_vec(),
            None => rest.to_vec(),
        }
    };
    Ok(Answer { status, body })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunked answer cut short")?;
        let size_text =
            String::from_utf8_lossy(rest.get(..line_end).unwrap_or_default()).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("a bad chunk size {size_text:?}"))?;
        rest = rest.get(line_end + 2..).unwrap_or_default();
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(rest.get(..size).ok_or("a chunk cut short")?);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

/// Percent-encodes every byte but the unreserved ones, so that the server's decoding gives the
/// bytes back.
fn percent(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
