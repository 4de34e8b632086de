//! xray-local's UDP intake and trace assembly, over real UDP to a daemon started in process.
//!
//! Each input is a batch of datagrams sharing a few trace and entity ids, so that documents
//! meet: daemon-framed segment documents (from the SDKs' conformance documents and
//! xray-local's test trace, their ids taken from the batch and their subsegments nested,
//! repeated, in progress or cut), `T1S`/`T1U` OTLP spans, framing errors and oversize
//! datagrams. Most batches are sent one datagram at a time; one in twelve is a burst.
//!
//! What must hold:
//!
//! - nothing panics, on any thread of the daemon;
//! - `received == accepted + dropped` in the counters, always;
//! - every datagram sent is accounted for: one at a time, each moves the counters by exactly
//!   one refusal, or by one accepted document, or (`T1S`) by as many documents as its spans
//!   make; the framing errors are refused for the reason their docs give (oversize, no body,
//!   header), and a spans datagram is refused as `invalid_otlp` or accepted whole, none of
//!   its documents dropped without a count; in a burst, datagrams received plus those the
//!   kernel dropped equal datagrams sent;
//! - the traces of the batch assemble, render as a timeline and a service map, answer filter
//!   expressions, write JSON that serde_json reads back with its default nesting limit (also
//!   inside the array `GET /traces` serves), and a trace said complete has a segment, no
//!   orphan and nothing in progress.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use prost::Message as _;
use rand::RngExt;
use rand::rngs::SmallRng;
use serde_json::{Map, Value, json};
use xray_local::{DropReason, Filter, ServiceMap, Stats, Trace, XRayLocal};
use xray_sdk::otlp::proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::corpus::Corpus;
use crate::harness::{SLOW, Target, escape};
use crate::mutate::{JsonMutator, Mutator, pick};
use crate::spans::{self, Ids};

/// The largest datagram the daemon here accepts: below what UDP carries over IPv4 (65,507
/// bytes), so that oversize datagrams can be sent and must be refused as such.
const MAX_DATAGRAM: usize = 60_000;
/// The largest UDP payload over IPv4.
const MAX_UDP: usize = 65_507;
/// How long a datagram may take to show in the counters.
const WAIT: Duration = Duration::from_secs(3);

const HEADER: &[u8] = br#"{"format":"json","version":1}"#;
const HEADER_VARIANTS: &[&str] = &[
    r#"{"format": "json", "version": 1}"#,
    r#"{"version":1,"format":"JSON"}"#,
    r#"{"format":"json","version":2}"#,
    r#"{"format":"json","version":1.0}"#,
    r#"{"format":"json","version":"1"}"#,
    r#"{"format":"json"}"#,
    r#"{"format":"json","version":1,"extra":{}}"#,
    r#"{"format":"json","version":1"#,
    "[]",
    "",
];

/// The keys of a segment document.
const DOC_KEYS: &[&str] = &[
    "name",
    "id",
    "trace_id",
    "parent_id",
    "type",
    "start_time",
    "end_time",
    "in_progress",
    "subsegments",
    "annotations",
    "metadata",
    "http",
    "aws",
    "cause",
    "fault",
    "error",
    "throttle",
    "namespace",
    "origin",
    "service",
    "sql",
    "precursor_ids",
    "links",
];

/// Filters every assembled trace must answer without trouble.
const FILTERS: &[&str] = &[
    "fault = true",
    "ok = true",
    "responsetime > 0.1",
    "duration >= 0",
    "service(\"api\") OR NOT annotation.tier = \"gold\"",
    "http.status >= 500 AND http.method = \"GET\"",
    "http.url CONTAINS \"/\"",
];

/// The drops a datagram's framing causes, before its document is read; a document's own
/// refusal is any other reason.
const FRAMING: &[DropReason] = &[
    DropReason::Oversize,
    DropReason::MissingBody,
    DropReason::InvalidHeader,
    DropReason::InvalidOtlp,
    DropReason::Backlog,
];

pub(crate) struct LocalIntakeTarget {
    docs: Vec<Value>,
    requests: Vec<ExportTraceServiceRequest>,
    filters: Vec<Filter>,
    local: XRayLocal,
    socket: UdpSocket,
    datagrams: u64,
    bursts: u64,
    unsendable: u64,
}

impl LocalIntakeTarget {
    pub(crate) fn new(corpus: &Corpus) -> Result<Self, String> {
        let docs = corpus.json("local-intake")?;
        let mut seeds = corpus.files("otlp")?;
        seeds.extend(spans::mapping_seeds());
        let requests = seeds
            .iter()
            .filter_map(|b| ExportTraceServiceRequest::decode(b.as_slice()).ok())
            .collect();
        let filters: Vec<Filter> = FILTERS
            .iter()
            .map(|f| Filter::parse(f).map_err(|err| format!("{f:?}: {err}")))
            .collect::<Result<_, String>>()?;
        let local = XRayLocal::builder()
            .udp_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .tcp_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .max_traces(2_000)
            .max_bytes(64 * 1024 * 1024)
            .max_datagram_size(MAX_DATAGRAM)
            .start()
            .map_err(|err| format!("xray-local does not start: {err}"))?;
        let socket = UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .and_then(|s| s.connect(local.udp_addr()).map(|()| s))
            .map_err(|err| format!("no UDP socket: {err}"))?;
        Ok(LocalIntakeTarget {
            docs,
            requests,
            filters,
            local,
            socket,
            datagrams: 0,
            bursts: 0,
            unsendable: 0,
        })
    }

    // ===== making datagrams =====

    fn datagram(&self, rng: &mut SmallRng, ids: &Ids) -> Vec<u8> {
        match rng.random_range(0..100u32) {
            0..=64 => self.json_datagram(rng, ids, true),
            65..=84 => self.otlp_datagram(rng, ids),
            85..=93 => raw_datagram(rng),
            _ => self.oversize_datagram(rng, ids),
        }
    }

    fn header(rng: &mut SmallRng) -> Vec<u8> {
        if rng.random_bool(0.93) {
            HEADER.to_vec()
        } else {
            pick(rng, HEADER_VARIANTS)
                .map(|h| h.as_bytes().to_vec())
                .unwrap_or_default()
        }
    }

    fn document(&self, rng: &mut SmallRng, ids: &Ids, mutate: bool) -> Value {
        let mut doc = pick(rng, &self.docs)
            .cloned()
            .unwrap_or_else(|| json!({"name": "api", "start_time": 1.0}));
        let mut budget = 200usize;
        if rng.random_bool(0.04) {
            let depth = rng_depth(rng);
            doc = deep_chain(rng, ids, depth);
        } else {
            shape(rng, &mut doc, ids, 0, &mut budget);
        }
        if mutate && rng.random_bool(0.4) {
            let json = JsonMutator {
                keys: DOC_KEYS,
                seeds: &self.docs,
            };
            let rounds = rng.random_range(1..=3);
            json.mutate(rng, &mut doc, rounds);
        }
        doc
    }

    fn json_datagram(&self, rng: &mut SmallRng, ids: &Ids, mutate: bool) -> Vec<u8> {
        let doc = self.document(rng, ids, mutate);
        let mut datagram = Self::header(rng);
        datagram.push(b'\n');
        datagram.extend(serde_json::to_vec(&doc).unwrap_or_default());
        if mutate && rng.random_bool(0.12) {
            let seeds = [datagram.clone()];
            Mutator {
                seeds: &seeds,
                dictionary: DOC_KEYS,
                max_len: MAX_UDP,
            }
            .mutate(rng, &mut datagram, 1);
        }
        datagram
    }

    fn otlp_datagram(&self, rng: &mut SmallRng, ids: &Ids) -> Vec<u8> {
        let seed = if rng.random_bool(0.5) {
            pick(rng, &self.requests).cloned()
        } else {
            None
        };
        let mut request = seed.unwrap_or_else(|| spans::random_request(rng, ids));
        spans::adopt(rng, &mut request, ids);
        if rng.random_bool(0.5) {
            spans::mutate_request(rng, &mut request, ids);
        }
        let mut proto = request.encode_to_vec();
        if rng.random_bool(0.08) {
            let seeds = [proto.clone()];
            Mutator {
                seeds: &seeds,
                dictionary: &[],
                max_len: MAX_UDP,
            }
            .mutate(rng, &mut proto, 1);
        }
        let mut text = STANDARD.encode(proto).into_bytes();
        if rng.random_bool(0.05) {
            let seeds = [text.clone()];
            Mutator {
                seeds: &seeds,
                dictionary: &["=", "==", "+", "/", "-", "_"],
                max_len: MAX_UDP,
            }
            .mutate(rng, &mut text, 1);
        }
        let prefix: &[u8] = match rng.random_range(0..24u32) {
            0 => b"T1S ",
            1 => b"T1U\n",
            2 => b"T1s",
            3 => b"T2S",
            4..=13 => b"T1S",
            _ => b"T1U",
        };
        let mut datagram = Self::header(rng);
        datagram.push(b'\n');
        datagram.extend_from_slice(prefix);
        datagram.extend(text);
        datagram
    }

    /// A document padded to a length around the daemon's limit, the limit itself included.
    fn oversize_datagram(&self, rng: &mut SmallRng, ids: &Ids) -> Vec<u8> {
        let mut doc = self.document(rng, ids, false);
        let target = match rng.random_range(0..4u32) {
            0 => MAX_DATAGRAM,
            1 => MAX_DATAGRAM + 1,
            2 => MAX_UDP,
            _ => rng.random_range(MAX_DATAGRAM - 100..=MAX_DATAGRAM + 100),
        };
        if let Some(map) = doc.as_object_mut() {
            map.insert("metadata".to_owned(), json!({"default": {"pad": ""}}));
        }
        let mut datagram = HEADER.to_vec();
        datagram.push(b'\n');
        let base = datagram.len() + serde_json::to_vec(&doc).map_or(0, |v| v.len());
        if let Some(pad) = doc.pointer_mut("/metadata/default/pad") {
            *pad = Value::String("x".repeat(target.saturating_sub(base)));
        }
        datagram.extend(serde_json::to_vec(&doc).unwrap_or_default());
        datagram
    }

    // ===== sending and accounting =====

    fn send_paced(&mut self, datagram: &[u8]) -> Result<(), String> {
        let before = self.local.stats();
        if self.socket.send(datagram).is_err() {
            // Over what UDP carries, or the kernel's buffers full: never sent, nothing owed.
            self.unsendable += 1;
            return Ok(());
        }
        self.datagrams += 1;
        // A datagram of spans is filed document by document (refusals, then the accepted
        // ones): wait for all of them, not only the first.
        let owed = match predict(datagram) {
            Expect::Spans(n) => n,
            _ => 1,
        };
        let after = self
            .local
            .wait_for_stats(WAIT, |s| s.received() >= before.received() + owed);
        check_sums(&after)?;
        let received = after.received() - before.received();
        if received == 0 {
            let kernel = kernel_delta(&before, &after);
            if kernel == 1 {
                return Ok(());
            }
            return Err(format!(
                "{SLOW}a {}-byte datagram is not accounted for after {} s: not received, and \
                 the kernel dropped {kernel}",
                datagram.len(),
                WAIT.as_secs()
            ));
        }
        let accepted = after.accepted() - before.accepted();
        let dropped = after.dropped_total() - before.dropped_total();
        let reasons: Vec<DropReason> = DropReason::ALL
            .iter()
            .copied()
            .filter(|r| after.dropped(*r) > before.dropped(*r))
            .collect();
        let counted = format!(
            "received {received}, accepted {accepted}, dropped {dropped} ({})",
            reasons
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        match predict(datagram) {
            Expect::Refused(reason) => {
                if received != 1 || dropped != 1 || reasons != [reason] {
                    return Err(format!(
                        "a datagram to refuse as {} moved the counters by: {counted}",
                        reason.as_str()
                    ));
                }
            }
            Expect::Document => {
                let framing = reasons.iter().any(|r| FRAMING.contains(r));
                if received != 1 || framing {
                    return Err(format!(
                        "a datagram of one document moved the counters by: {counted}"
                    ));
                }
            }
            Expect::Spans(n) => {
                let refused_whole =
                    dropped == 1 && accepted == 0 && reasons == [DropReason::InvalidOtlp];
                // Each span document accepted, or refused and counted with its reason.
                let each_counted = received == n && accepted + dropped == received;
                let accounted = refused_whole || each_counted;
                if !accounted {
                    return Err(format!(
                        "a T1S datagram whose spans make {n} documents moved the counters by: \
                         {counted}; every document must be accepted, or the datagram refused, \
                         or each refusal counted"
                    ));
                }
            }
        }
        Ok(())
    }

    fn send_burst(&mut self, datagrams: &[&[u8]]) -> Result<(), String> {
        let before = self.local.stats();
        let mut sent = 0u64;
        for datagram in datagrams {
            if self.socket.send(datagram).is_ok() {
                sent += 1;
            } else {
                self.unsendable += 1;
            }
        }
        self.datagrams += sent;
        let deadline = Instant::now() + WAIT;
        let mut after = self.local.stats();
        while after.received() - before.received() + kernel_delta(&before, &after) < sent
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
            after = self.local.stats();
        }
        check_sums(&after)?;
        let received = after.received() - before.received();
        let kernel = kernel_delta(&before, &after);
        if received + kernel != sent {
            return Err(format!(
                "{SLOW}a burst of {sent} datagrams: {received} received, {kernel} dropped by \
                 the kernel; {} not accounted for",
                i128::from(sent) - i128::from(received) - i128::from(kernel)
            ));
        }
        Ok(())
    }

    fn check_traces(&self, trace_ids: &[String]) -> Result<(), String> {
        for id in trace_ids {
            let Some(trace) = self.local.trace(id.as_str()) else {
                continue;
            };
            check_trace(&trace, &self.filters)?;
        }
        Ok(())
    }
}

/// `received == accepted + dropped`, as `Stats` promises.
fn check_sums(stats: &Stats) -> Result<(), String> {
    if stats.received() != stats.accepted() + stats.dropped_total() {
        return Err(format!(
            "received {} != accepted {} + dropped {}",
            stats.received(),
            stats.accepted(),
            stats.dropped_total()
        ));
    }
    Ok(())
}

fn kernel_delta(before: &Stats, after: &Stats) -> u64 {
    after
        .kernel_dropped()
        .unwrap_or(0)
        .saturating_sub(before.kernel_dropped().unwrap_or(0))
}

pub(crate) fn check_trace(trace: &Trace, filters: &[Filter]) -> Result<(), String> {
    let _ = xray_local::render::timeline(trace);
    // The JSON form stays within serde_json's default nesting limit, in the array
    // `GET /traces` puts it in too, and reads back as a trace.
    let line = xray_local::render::json(trace);
    let listed = format!("[{line}]");
    if let Err(err) = serde_json::from_str::<Value>(&listed) {
        return Err(format!(
            "the JSON of trace {} does not read back, in an array, with serde_json's default \
             limits: {err}",
            trace.id()
        ));
    }
    match serde_json::from_str::<Trace>(&line) {
        Ok(back) if back.id() == trace.id() => {}
        Ok(back) => {
            return Err(format!(
                "the JSON of trace {} reads back as trace {}",
                trace.id(),
                back.id()
            ));
        }
        Err(err) => {
            return Err(format!(
                "the JSON of trace {} does not read back as a trace: {err}",
                trace.id()
            ));
        }
    }
    let one = std::slice::from_ref(trace);
    let _ = ServiceMap::from_traces(one);
    let _ = xray_local::render::service_map(one);
    for filter in filters {
        let _ = filter.matches(trace);
    }
    let mut in_progress = false;
    for (i, entity) in trace.entities().enumerate() {
        if i >= 1_000_000 {
            return Err(format!(
                "trace {} lists more than 10^6 entities",
                trace.id()
            ));
        }
        in_progress |= entity.is_in_progress();
        if let Some(parent) = entity.parent()
            && parent.depth() + 1 != entity.depth()
        {
            return Err(format!(
                "in trace {}, an entity at depth {} has a parent at depth {}",
                trace.id(),
                entity.depth(),
                parent.depth()
            ));
        }
    }
    if trace.is_complete()
        && (trace.segments().is_empty() || !trace.orphans().is_empty() || in_progress)
    {
        return Err(format!(
            "trace {} is complete with {} segments, {} orphans, and an entity in progress: \
             {in_progress}",
            trace.id(),
            trace.segments().len(),
            trace.orphans().len(),
        ));
    }
    Ok(())
}

impl Target for LocalIntakeTarget {
    fn generate(&mut self, rng: &mut SmallRng) -> Vec<u8> {
        let ids = Ids::random(rng);
        let burst = rng.random_bool(1.0 / 12.0);
        let datagrams: Vec<Vec<u8>> = if burst {
            (0..rng.random_range(20..=300))
                .map(|_| self.json_datagram(rng, &ids, false))
                .collect()
        } else {
            (0..rng.random_range(1..=8))
                .map(|_| self.datagram(rng, &ids))
                .collect()
        };
        Batch {
            burst,
            traces: ids.trace_texts(),
            datagrams,
        }
        .encode()
    }

    fn check(&mut self, input: &[u8]) -> Result<(), String> {
        let batch = Batch::decode(input);
        if batch.burst {
            // Spans datagrams make a number of documents only the daemon knows in a burst:
            // they go one at a time after it.
            let (of_spans, plain): (Vec<&[u8]>, Vec<&[u8]>) = batch
                .datagrams
                .iter()
                .map(Vec::as_slice)
                .partition(|d| matches!(predict(d), Expect::Spans(_)));
            self.bursts += 1;
            self.send_burst(&plain)?;
            for datagram in of_spans {
                self.send_paced(datagram)?;
            }
        } else {
            for datagram in &batch.datagrams {
                self.send_paced(datagram)?;
            }
        }
        self.check_traces(&batch.traces)
    }

    fn time_limit(&self) -> Duration {
        Duration::from_secs(2)
    }

    fn describe(&self, input: &[u8]) -> String {
        let batch = Batch::decode(input);
        let mut out = format!(
            "{} datagram(s){}, traces {:?}:",
            batch.datagrams.len(),
            if batch.burst { " in a burst" } else { "" },
            batch.traces
        );
        for (i, datagram) in batch.datagrams.iter().enumerate() {
            out.push_str(&format!("\n    [{i}] {}", escape(datagram, 4096)));
        }
        out
    }

    fn finish(&mut self) -> Result<(), String> {
        let stats = self.local.stats();
        check_sums(&stats)?;
        // Every trace held still assembles and renders.
        let traces = self.local.traces();
        for trace in &traces {
            check_trace(trace, &[])?;
        }
        let _ = xray_local::render::service_map(&traces);
        Ok(())
    }

    fn notes(&self) -> String {
        let stats = self.local.stats();
        let dropped: Vec<String> = DropReason::ALL
            .iter()
            .filter(|r| stats.dropped(**r) > 0)
            .map(|r| format!("{} {}", r.as_str(), stats.dropped(*r)))
            .collect();
        format!(
            "{} datagrams ({} bursts, {} too large to send), {} documents accepted, dropped: \
             [{}], kernel dropped {}, {} traces evicted",
            self.datagrams,
            self.bursts,
            self.unsendable,
            stats.accepted(),
            dropped.join(", "),
            stats.kernel_dropped().unwrap_or(0),
            stats.evicted_traces()
        )
    }
}

// ===== shaping documents =====

fn rng_depth(rng: &mut SmallRng) -> usize {
    // Around serde_json's limit of 128 levels: each subsegment takes two (object and array).
    rng.random_range(50..=80)
}

/// Gives `doc` ids of the batch (so that its pieces meet, repeat and loop), makes it a segment,
/// an independent subsegment or a piece in progress, and nests subsegments in it.
fn shape(rng: &mut SmallRng, doc: &mut Value, ids: &Ids, depth: usize, budget: &mut usize) {
    let Some(map) = doc.as_object_mut() else {
        return;
    };
    *budget = budget.saturating_sub(1);
    if depth == 0 {
        map.insert("trace_id".to_owned(), Value::String(ids.trace_text(rng)));
        match rng.random_range(0..10u32) {
            0..=3 => {
                map.insert("type".to_owned(), Value::from("subsegment"));
                map.insert("parent_id".to_owned(), Value::String(ids.span_text(rng)));
            }
            // A segment called from another service: a parent id, and still a segment.
            4 => {
                map.remove("type");
                map.insert("parent_id".to_owned(), Value::String(ids.span_text(rng)));
            }
            _ => {
                map.remove("type");
                map.remove("parent_id");
            }
        }
    } else if rng.random_bool(0.9) {
        map.remove("trace_id");
    }
    map.insert("id".to_owned(), Value::String(ids.span_text(rng)));
    if !map.contains_key("name") {
        map.insert("name".to_owned(), Value::from("piece"));
    }
    let start = rng.random_range(1_735_689_600.0..1_735_689_700.0f64);
    map.insert("start_time".to_owned(), Value::from(start));
    match rng.random_range(0..10u32) {
        0 => {
            map.insert("in_progress".to_owned(), Value::Bool(true));
            map.remove("end_time");
        }
        1 => {
            map.insert("in_progress".to_owned(), Value::Bool(false));
        }
        _ => {
            map.remove("in_progress");
            map.insert(
                "end_time".to_owned(),
                Value::from(start + rng.random_range(0.0..2.0)),
            );
        }
    }
    let nest = if depth == 0 { 0.4 } else { 0.25 };
    if depth < 40 && *budget > 0 && rng.random_bool(nest) {
        let subs: Vec<Value> = (0..rng.random_range(1..=3))
            .map(|_| {
                let mut sub = json!({"name": "sub"});
                shape(rng, &mut sub, ids, depth + 1, budget);
                sub
            })
            .collect();
        map.insert("subsegments".to_owned(), Value::Array(subs));
    } else if let Some(Value::Array(subs)) = map.get_mut("subsegments") {
        for sub in subs {
            shape(rng, sub, ids, depth + 1, budget);
        }
    }
}

/// A segment with a chain of `depth` subsegments, one inside the other.
fn deep_chain(rng: &mut SmallRng, ids: &Ids, depth: usize) -> Value {
    let mut inner = json!({"name": "leaf", "start_time": 1.5, "end_time": 1.6});
    if let Some(map) = inner.as_object_mut() {
        map.insert("id".to_owned(), Value::String(ids.span_text(rng)));
    }
    for level in 0..depth {
        let mut map = Map::new();
        map.insert("name".to_owned(), Value::from(format!("level-{level}")));
        map.insert("id".to_owned(), Value::String(ids.span_text(rng)));
        map.insert("start_time".to_owned(), Value::from(1.0));
        map.insert("end_time".to_owned(), Value::from(2.0));
        map.insert("subsegments".to_owned(), Value::Array(vec![inner]));
        inner = Value::Object(map);
    }
    if let Some(map) = inner.as_object_mut() {
        map.insert("trace_id".to_owned(), Value::String(ids.trace_text(rng)));
    }
    inner
}

fn raw_datagram(rng: &mut SmallRng) -> Vec<u8> {
    let mut header = HEADER.to_vec();
    match rng.random_range(0..8u32) {
        0 => Vec::new(),
        1 => b"no newline at all".to_vec(),
        2 => {
            header.push(b'\n');
            header
        }
        3 => {
            header.extend_from_slice(b"\n \t\r\n ");
            header
        }
        4 => {
            header.extend_from_slice(b"\nT1S!!not base64!!");
            header
        }
        5 => b"\n{\"name\":\"no header\"}".to_vec(),
        6 => {
            header.extend_from_slice(b"\nT1S");
            header
        }
        _ => (0..rng.random_range(1..=200))
            .map(|_| rng.random())
            .collect(),
    }
}

// ===== the batch as bytes =====

/// A batch as an input file: a flags byte (1: burst), the trace ids (a count byte, then each
/// as a length byte and text), then each datagram as a 4-byte little-endian length and bytes.
struct Batch {
    burst: bool,
    traces: Vec<String>,
    datagrams: Vec<Vec<u8>>,
}

impl Batch {
    fn encode(&self) -> Vec<u8> {
        let traces: Vec<&String> = self.traces.iter().take(255).collect();
        let mut out = vec![
            u8::from(self.burst),
            u8::try_from(traces.len()).unwrap_or(u8::MAX),
        ];
        for t in traces {
            let bytes = t.as_bytes().get(..t.len().min(255)).unwrap_or_default();
            out.push(u8::try_from(bytes.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(bytes);
        }
        for d in &self.datagrams {
            out.extend_from_slice(&u32::try_from(d.len()).unwrap_or(u32::MAX).to_le_bytes());
            out.extend_from_slice(d);
        }
        out
    }

    /// Reads what [`encode`](Self::encode) wrote; whatever else a file holds is read as far
    /// as it goes.
    fn decode(input: &[u8]) -> Batch {
        let mut reader = Reader { rest: input };
        let burst = reader.take(1).is_some_and(|f| f.first() == Some(&1));
        let mut traces = Vec::new();
        let count = reader.byte().unwrap_or(0);
        for _ in 0..count {
            let Some(len) = reader.byte() else {
                break;
            };
            match reader.take(usize::from(len)) {
                Some(t) => traces.push(String::from_utf8_lossy(t).into_owned()),
                None => break,
            }
        }
        let mut datagrams = Vec::new();
        while let Some(len) = reader.take(4) {
            let len = u32::from_le_bytes(len.try_into().unwrap_or([0; 4]));
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            let Some(d) = reader.take(len.min(MAX_UDP + 1)) else {
                break;
            };
            datagrams.push(d.to_vec());
        }
        Batch {
            burst,
            traces,
            datagrams,
        }
    }
}

/// Reads an input file front to back.
pub(crate) struct Reader<'a> {
    pub(crate) rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// The next `n` bytes, if there are as many.
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.rest.split_at_checked(n)?;
        self.rest = tail;
        Some(head)
    }

    /// The next byte.
    pub(crate) fn byte(&mut self) -> Option<u8> {
        self.take(1).and_then(|b| b.first().copied())
    }

    /// A 4-byte little-endian length, then as many bytes (or what is left).
    pub(crate) fn part(&mut self) -> &'a [u8] {
        let len = self
            .take(4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes);
        let len = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(self.rest.len());
        self.take(len).unwrap_or_default()
    }
}

/// `part` as [`Reader::part`] reads it back.
pub(crate) fn write_part(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(part);
}

// ===== what the daemon must do with a datagram =====

/// What one datagram must do to the counters, read from its framing as the daemon's
/// documentation describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Refused for this reason.
    Refused(DropReason),
    /// One document: accepted, or refused for a reason of its own.
    Document,
    /// `T1S`/`T1U` spans that convert to this many documents (at least one).
    Spans(u64),
}

fn predict(datagram: &[u8]) -> Expect {
    if datagram.len() > MAX_DATAGRAM {
        return Expect::Refused(DropReason::Oversize);
    }
    let Some(newline) = datagram.iter().position(|&b| b == b'\n') else {
        return Expect::Refused(DropReason::MissingBody);
    };
    let (header, rest) = datagram.split_at(newline);
    let body = rest.get(1..).unwrap_or_default();
    if !valid_header(header) {
        return Expect::Refused(DropReason::InvalidHeader);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Expect::Refused(DropReason::MissingBody);
    }
    let spans = body
        .strip_prefix(b"T1S")
        .or_else(|| body.strip_prefix(b"T1U"));
    if let Some(encoded) = spans {
        let documents = STANDARD
            .decode(encoded.trim_ascii())
            .ok()
            .and_then(|bytes| ExportTraceServiceRequest::decode(bytes.as_slice()).ok())
            .map(|request| {
                // Every document, and every span that makes none (counted as `invalid_span`).
                let (docs, skipped) = xray_sdk::otlp::to_documents_counted(&request);
                docs.len() + skipped
            });
        return match documents {
            Some(n) if n > 0 => Expect::Spans(u64::try_from(n).unwrap_or(u64::MAX)),
            _ => Expect::Refused(DropReason::InvalidOtlp),
        };
    }
    Expect::Document
}

/// The daemon's header line: a JSON object with `"format": "json"` (any case) and
/// `"version": 1`.
fn valid_header(header: &[u8]) -> bool {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(header) else {
        return false;
    };
    map.get("format")
        .and_then(Value::as_str)
        .is_some_and(|f| f.eq_ignore_ascii_case("json"))
        && map.get("version").and_then(Value::as_u64) == Some(1)
}
