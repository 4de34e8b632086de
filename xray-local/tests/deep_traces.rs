//! Deep trees end to end: a trace as deep as one document can be (63 levels of subsegments),
//! one 200 levels deep from separately sent subsegments, and the read API, `query` and
//! `--json` still answering for every trace in JSON that parsers read with their default
//! limits (serde_json: 127 levels).

mod support;

#[path = "support/binary.rs"]
mod binary;

use serde_json::{Value, json};
use support::{HEADER, Sdk, WAIT, get_json, segment};
use xray_local::{DropReason, Trace};

/// Levels of objects and arrays, counted without recursion.
fn nesting(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1)];
    while let Some((value, level)) = stack.pop() {
        match value {
            Value::Array(items) => {
                deepest = deepest.max(level);
                stack.extend(items.iter().map(|v| (v, level + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(level);
                stack.extend(map.values().map(|v| (v, level + 1)));
            }
            _ => {}
        }
    }
    deepest
}

fn hex(n: u64) -> String {
    format!("{n:016x}")
}

/// The entity at `depth` of the trees below: named after it, with id `depth + 1`.
fn entity(depth: u64) -> Value {
    json!({"name": format!("level {depth}"), "id": hex(depth + 1),
           "start_time": 1.0, "end_time": 2.0})
}

/// The entity at depth `from` with its descendants, one under the other, down to `to`.
fn nest(from: u64, to: u64) -> Value {
    let mut node = entity(to);
    for depth in (from..to).rev() {
        let mut parent = entity(depth);
        parent["subsegments"] = json!([node]);
        node = parent;
    }
    node
}

/// One document: a segment with `levels` subsegments each nested in the one before. 63 levels
/// nest 127 levels of JSON, as deep as a document may be.
fn nested_document(trace_id: &str, levels: u64) -> Value {
    let mut doc = entity(0);
    doc["name"] = json!("deep");
    doc["trace_id"] = json!(trace_id);
    doc["subsegments"] = json!([nest(1, levels)]);
    doc
}

/// A segment and `levels` levels of subsegments below it, sent as independent subsegments of
/// `per_piece` levels each, deepest first: the trace is incomplete until the segment, sent
/// last, arrives.
fn chain(trace_id: &str, levels: u64, per_piece: u64) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut top = 1;
    while top <= levels {
        let bottom = (top + per_piece - 1).min(levels);
        let mut piece = nest(top, bottom);
        piece["type"] = json!("subsegment");
        piece["parent_id"] = json!(hex(top));
        piece["trace_id"] = json!(trace_id);
        docs.push(piece);
        top = bottom + 1;
    }
    docs.reverse();
    let mut segment = entity(0);
    segment["name"] = json!("chained");
    segment["trace_id"] = json!(trace_id);
    docs.push(segment);
    docs
}

fn max_depth(trace: &Trace) -> usize {
    trace.entities().map(|e| e.depth()).max().unwrap_or(0)
}

#[test]
fn deep_traces_are_written_within_the_default_limits_and_read_back_whole() {
    let deep = "1-581cf771-a006649127e371903a2de979";
    let orphaned = "1-581cf771-a006649127e371903a2de97a";
    // 260 levels in 13 pieces of 20, attached under one another.
    let mut docs = chain(deep, 260, 20);
    // A tree whose root never came: 150 levels under a parent no piece holds.
    let mut orphans = chain(orphaned, 150, 1);
    orphans.pop();
    docs.extend(orphans);
    let traces = xray_local::assemble(docs).unwrap();
    assert_eq!(traces.len(), 2);
    assert_eq!(max_depth(&traces[0]), 260);
    assert_eq!(traces[1].orphans().len(), 1);
    assert_eq!(max_depth(&traces[1]), 149);

    let text = serde_json::to_string(&traces).unwrap();
    let plain: Value = serde_json::from_str(&text).expect("default limits");
    assert!(nesting(&plain) <= 100, "{}", nesting(&plain));
    assert!(plain[0]["continued"].as_array().unwrap().len() >= 5);
    assert!(
        plain[0]["continued"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["in"].is_number()),
        "a continuation of a continuation"
    );
    assert_eq!(plain[1]["continued"][0]["in"], "orphans");
    let back: Vec<Trace> = serde_json::from_str(&text).unwrap();
    assert_eq!(back, traces);
    assert_eq!(back[0].find("level 200").unwrap().depth(), 200);

    // Shallow traces are written as before: no `continued`.
    let shallow = xray_local::assemble([nested_document(deep, 20)]).unwrap();
    let plain = serde_json::to_value(&shallow[0]).unwrap();
    assert!(plain.get("continued").is_none(), "{plain}");
    assert_eq!(plain["segments"][0], nested_document(deep, 20));
}

#[test]
fn continued_entries_that_point_nowhere_are_refused() {
    let trace_id = "1-581cf771-a006649127e371903a2de979";
    let base = json!({"trace_id": trace_id, "complete": true,
                      "segments": [segment(trace_id, &hex(1), "api", 1.0, 2.0)]});
    for continued in [
        json!([{"in": "segments", "path": [3], "subsegments": []}]),
        json!([{"in": "segments", "path": [0, 0], "subsegments": []}]),
        json!([{"in": 0, "path": [0], "subsegments": []}]),
        json!([{"in": "elsewhere", "path": [0], "subsegments": []}]),
    ] {
        let mut wire = base.clone();
        wire["continued"] = continued.clone();
        assert!(
            serde_json::from_value::<Trace>(wire).is_err(),
            "{continued}"
        );
    }
    let mut wire = base;
    wire["continued"] = json!([{"in": "segments", "path": [0],
                                "subsegments": [{"name": "db", "id": hex(2),
                                                 "start_time": 1.0, "end_time": 1.5}]}]);
    let trace: Trace = serde_json::from_value(wire).unwrap();
    assert_eq!(trace.find("db").unwrap().depth(), 1);
}

#[test]
fn the_intake_takes_what_it_documents_and_counts_the_rest() {
    let local = support::start();
    let sdk = Sdk::new(&local);
    let trace_id = support::trace_id();
    // 63 levels of subsegments: 127 levels of JSON, serde_json's limit. 64 are one too many.
    sdk.send(&nested_document(&trace_id, 63));
    sdk.send(&nested_document(&support::trace_id(), 64));
    // Fields nested 120 levels in one entity pass, 121 do not; in a segment and in a
    // subsegment.
    let deep_field = |levels: usize| {
        let mut value = json!(1);
        for _ in 0..levels - 3 {
            value = json!([value]);
        }
        // The entity's object, `metadata`, `default` and `deep`'s arrays.
        json!({"default": {"deep": value}})
    };
    let fields_ok = support::trace_id();
    let mut doc = segment(&fields_ok, &support::id(), "fields", 1.0, 2.0);
    doc["metadata"] = deep_field(120);
    sdk.send(&doc);
    let mut sub = segment(&fields_ok, &support::id(), "sub", 1.0, 2.0);
    sub.as_object_mut().unwrap().remove("trace_id");
    sub["metadata"] = deep_field(120);
    let mut doc = segment(&support::trace_id(), &support::id(), "with-sub", 1.0, 2.0);
    doc["subsegments"] = json!([sub]);
    sdk.send(&doc);
    let mut doc = segment(&support::trace_id(), &support::id(), "too-deep", 1.0, 2.0);
    doc["metadata"] = deep_field(121);
    sdk.send(&doc);
    // The datagram framing, for a document built as text.
    sdk.send_raw(format!("{HEADER}\n{}", nested_document(&support::trace_id(), 10)).as_bytes());

    let stats = local.wait_for_stats(WAIT, |s| s.received() == 6);
    assert_eq!(stats.accepted(), 4, "{stats:?}");
    assert_eq!(stats.dropped(DropReason::InvalidJson), 1, "{stats:?}");
    assert_eq!(stats.dropped(DropReason::TooDeep), 1, "{stats:?}");
    assert_eq!(local.wait_for_traces(4, WAIT).len(), 4);

    let (status, all) = get_json(local.tcp_addr(), "/traces");
    assert_eq!(status, 200);
    assert_eq!(all.as_array().unwrap().len(), 4);
    assert!(nesting(&all) <= 127, "{}", nesting(&all));
    let traces: Vec<Trace> = serde_json::from_value(all).unwrap();
    assert_eq!(max_depth(&traces[0]), 63);
    let (_, stats) = get_json(local.tcp_addr(), "/stats");
    assert_eq!(stats["dropped"]["too_deep"], 1);
}

#[test]
fn query_lists_every_trace_beside_deep_ones() {
    let mut daemon = binary::start(&[
        "--udp",
        "127.0.0.1:0",
        "--tcp",
        "127.0.0.1:0",
        "--json",
        "--quiet-ms",
        "0",
    ]);
    let shallow = support::trace_id();
    let one_document = support::trace_id();
    let chained = support::trace_id();
    binary::send(
        daemon.udp,
        &segment(&shallow, &support::id(), "shallow", 1.0, 1.5),
    );
    binary::send(daemon.udp, &nested_document(&one_document, 63));
    for doc in chain(&chained, 200, 50) {
        binary::send(daemon.udp, &doc);
    }
    // Printed as each settles: every line parses with serde_json's default limits.
    let printed: Vec<Trace> = (0..3)
        .map(|_| {
            let line = daemon.stdout.recv_timeout(WAIT).expect("a printed trace");
            serde_json::from_str(&line).expect("a --json line within the default limits")
        })
        .collect();
    let mut depths: Vec<usize> = printed.iter().map(max_depth).collect();
    depths.sort_unstable();
    assert_eq!(depths, [0, 63, 200]);

    let addr = daemon.tcp.to_string();
    let out = binary::query(&["--addr", &addr]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    for id in [&shallow, &one_document, &chained] {
        assert!(stdout.contains(&format!("Trace {id}")), "{id}:\n{stdout}");
    }

    let out = binary::query(&["--addr", &addr, "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for line in lines {
        let plain: Value = serde_json::from_str(line).unwrap();
        assert!(nesting(&plain) <= 100);
    }

    let out = binary::query(&["--addr", &addr, "--map"]);
    assert_eq!(out.status.code(), Some(0));

    let (status, one) = get_json(daemon.tcp, &format!("/traces/{chained}"));
    assert_eq!(status, 200);
    let trace: Trace = serde_json::from_value(one).unwrap();
    assert_eq!(trace.find("level 200").unwrap().depth(), 200);
    assert_eq!(daemon.running.terminate().code(), Some(0));
}
