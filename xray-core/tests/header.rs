//! Conformance of `TraceHeader` with `tests/data/trace_header.json`, plus properties.
//!
//! Every case is loaded and judged by its `kind`. Where the SDKs disagree (`divergent: true`),
//! [`DECISIONS`] names the SDK whose observed behaviour we follow, and the test checks that we
//! really behave like it:
//!
//! | case | follows | why |
//! |---|---|---|
//! | th-spaces-after-semicolon | Go (also Java, Node) | fields are trimmed |
//! | th-trailing-semicolon | Go (also Java, Node) | empty fields are skipped, not fatal |
//! | th-empty-key | Node | a field with an empty key means nothing; it is dropped |
//! | th-extra-over-256-bytes-* | Node | extra fields are capped at 256 bytes (spec §1.3) |
//! | th-uppercase-hex-root | Go (also Python, Node) | upper-case hex is a valid id, recorded and forwarded exactly as received |
//! | th-sampled-invalid-value | Go (also Java, Python) | `Sampled=2` is no decision |
//! | th-value-contains-equals | Go (also Java) | the value is everything after the first `=` |
//! | th-root-too-long | Java | a Root that is not a trace id is replaced by a new one, and the rest of the header (here `Sampled=1`) is kept. Go and Python keep the string, but X-Ray refuses every segment that carries it |
//!
//! Format cases: `fmt-root-only` and `fmt-root-extra-no-sampled` follow Python (no empty
//! fields, no trailing `;`). A `TraceHeader` always has a root, so the two format cases without
//! one (`fmt-empty`, `fmt-sampled-only`) cannot be built; for them the test checks that the
//! expected strings are refused as headers with no root.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use regex::Regex;
use serde_json::Value;
use xray_sdk::header::{ParseTraceHeaderError, ResponseHeader, Sampled, is_sqs_message_sampled};
use xray_sdk::{SegmentId, TraceHeader, TraceId};

/// Divergent cases and the SDK (a key of `sdk_observed`) whose behaviour we follow.
const DECISIONS: &[(&str, &str)] = &[
    ("th-spaces-after-semicolon", "go"),
    ("th-trailing-semicolon", "go"),
    ("th-empty-key", "node"),
    ("th-extra-over-256-bytes-last", "node"),
    ("th-extra-over-256-bytes-first", "node"),
    ("th-uppercase-hex-root", "go"),
    ("th-sampled-invalid-value", "go"),
    ("th-value-contains-equals", "go"),
    ("th-root-too-long", "java"),
    ("fmt-root-only", "python"),
    ("fmt-root-extra-no-sampled", "python"),
];

fn cases() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/trace_header.json");
    let text = std::fs::read_to_string(&path).expect("read trace_header.json");
    let v: Value = serde_json::from_str(&text).expect("trace_header.json is JSON");
    v["cases"].as_array().expect("cases").clone()
}

fn of_kind(kind: &str) -> Vec<Value> {
    let all: Vec<_> = cases().into_iter().filter(|c| c["kind"] == kind).collect();
    assert!(!all.is_empty(), "no {kind} cases");
    all
}

fn id(case: &Value) -> &str {
    case["id"].as_str().expect("case id")
}

fn decision(case: &Value) -> &'static str {
    DECISIONS
        .iter()
        .find(|(i, _)| *i == id(case))
        .map(|(_, sdk)| *sdk)
        .unwrap_or_else(|| panic!("divergent case {} has no recorded decision", id(case)))
}

fn sampled_from_json(v: &Value) -> Sampled {
    match v.as_str() {
        None => Sampled::Unknown,
        Some("1") => Sampled::Yes,
        Some("0") => Sampled::No,
        Some("?") => Sampled::Requested,
        Some(other) => panic!("unexpected sampled value {other}"),
    }
}

#[test]
fn every_case_has_a_known_kind() {
    let known = [
        "parse",
        "format",
        "downstream",
        "response_header",
        "sqs_is_sampled",
    ];
    for case in cases() {
        let kind = case["kind"].as_str().unwrap_or("");
        assert!(known.contains(&kind), "{}: unknown kind {kind}", id(&case));
    }
}

// ===== parse =====

/// Whether our parse result is the outcome `want` (an `expect`, `also_acceptable` or
/// `sdk_observed` object).
fn parse_matches(
    input: &str,
    ours: &Result<TraceHeader, ParseTraceHeaderError>,
    want: &Value,
) -> bool {
    let want_root = want["root"].as_str();
    match ours {
        // No trace context at all.
        Err(e) => want_root.is_none() && e.is_missing_root(),
        Ok(h) => {
            let root_ok = match want_root {
                None => false,
                // The SDK threw the root away and started a new trace: so do we, and the
                // received text stays readable.
                Some(r) if r.starts_with("<regenerated") => {
                    h.received_root()
                        .is_some_and(|received| input.contains(&format!("Root={received}")))
                        && h.root().is_lowercase()
                }
                // Recorded and forwarded exactly as received, case included.
                Some(r) => h.received_root().is_none() && h.root().to_string() == r,
            };
            if !root_ok {
                return false;
            }
            let extra: BTreeMap<&str, &str> = h.extra().collect();
            let want_extra: BTreeMap<&str, &str> = want["extra"]
                .as_object()
                .expect("extra object")
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str().expect("extra value")))
                .collect();
            h.parent().map(|p| p.to_string()).as_deref() == want["parent"].as_str()
                && h.sampled() == sampled_from_json(&want["sampled"])
                && extra == want_extra
        }
    }
}

/// Whether two headers carry the same context: root (spelling included), parent, decision and
/// extra fields. What a malformed header held in place of ids is not written back, so a header
/// that read one differs from its reparsed self only there.
fn same_context(a: &TraceHeader, b: &TraceHeader) -> bool {
    a.root() == b.root()
        && a.root().to_string() == b.root().to_string()
        && a.parent() == b.parent()
        && a.sampled() == b.sampled()
        && a.extra().eq(b.extra())
}

#[test]
fn parse_vectors() {
    for case in of_kind("parse") {
        let input = case["input"].as_str().expect("input");
        let ours = TraceHeader::parse(input);
        let expect_invalid = case["expect_invalid"].as_bool().expect("expect_invalid");

        if case["divergent"] == true {
            let sdk = decision(&case);
            assert!(
                parse_matches(input, &ours, &case["sdk_observed"][sdk]),
                "{}: {ours:?} is not what {sdk} does",
                id(&case)
            );
        } else {
            assert!(
                parse_matches(input, &ours, &case["expect"]),
                "{}: got {ours:?}",
                id(&case)
            );
            assert_eq!(ours.is_err(), expect_invalid, "{}", id(&case));
        }

        if let Ok(h) = &ours {
            // Extra fields keep their order: each appears in the input after the previous one.
            let mut rest = input;
            for (k, v) in h.extra() {
                let at = rest
                    .find(k)
                    .unwrap_or_else(|| panic!("{}: {k} out of order", id(&case)));
                rest = &rest[at + k.len()..];
                let at = rest.find(v).expect("value follows key");
                rest = &rest[at + v.len()..];
            }
            // What we write reads back as the same context.
            let formatted = h.to_string();
            let again = TraceHeader::parse(&formatted).expect("what we write parses");
            assert!(same_context(&again, h), "{}: {formatted}", id(&case));
            for needle in case["expect_roundtrip_contains"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let needle = needle.as_str().expect("string");
                assert!(formatted.contains(needle), "{}: {formatted}", id(&case));
            }
        }
    }
}

// ===== format =====

#[test]
fn format_vectors() {
    for case in of_kind("format") {
        let fields = &case["fields"];
        let expect = case["expect"].as_str().expect("expect");
        let Some(root) = fields["root"].as_str() else {
            // No TraceHeader without a root exists to format; such a string is no header.
            let err = TraceHeader::parse(expect).expect_err(id(&case));
            assert!(err.is_missing_root(), "{}", id(&case));
            continue;
        };
        let mut header = TraceHeader::new(root.parse().expect("root"))
            .with_sampled(sampled_from_json(&fields["sampled"]));
        if let Some(parent) = fields["parent"].as_str() {
            header = header.with_parent(parent.parse().expect("parent"));
        }
        for pair in fields["extra"].as_array().expect("extra") {
            let k = pair[0].as_str().expect("key");
            let v = pair[1].as_str().expect("value");
            header = header.with_extra(k, v).expect("extra field");
        }

        let formatted = header.to_string();
        if case["divergent"] == true {
            let sdk = decision(&case);
            assert_eq!(formatted, case["sdk_observed"][sdk], "{}", id(&case));
        }
        assert_eq!(formatted, expect, "{}", id(&case));
        let mut buf = String::from("kept:");
        header.write_to(&mut buf);
        assert_eq!(buf, format!("kept:{expect}"), "{}", id(&case));
        assert_eq!(TraceHeader::parse(&formatted), Ok(header), "{}", id(&case));
    }
}

// ===== downstream =====

#[test]
fn downstream_vectors() {
    for case in of_kind("downstream") {
        let given = &case["given"];
        let mut pattern = case["expect_regex"]
            .as_str()
            .expect("expect_regex")
            .to_owned();
        // Placeholders stand for ids the SDK makes; make them, and put the same ids into the
        // expectation wherever it names the placeholder.
        let mut resolve = |field: &str, fresh: String| -> String {
            let given = given[field].as_str().expect(field);
            if given.starts_with('<') {
                pattern = pattern.replace(given, &regex::escape(&fresh));
                fresh
            } else {
                given.to_owned()
            }
        };
        let root: TraceId = resolve("trace_id", TraceId::new().to_string())
            .parse()
            .expect("trace id");
        let sub: SegmentId = resolve("subsegment_id", SegmentId::new().to_string())
            .parse()
            .expect("subsegment id");
        let sampled = given["sampled"].as_bool().expect("sampled");

        // The incoming header had a decision of its own and a parent; neither goes downstream.
        let mut header = TraceHeader::new(root)
            .with_parent(SegmentId::new())
            .with_sampled(Sampled::Requested);
        for pair in given["extra"].as_array().expect("extra") {
            let k = pair[0].as_str().expect("key");
            let v = pair[1].as_str().expect("value");
            header = header.with_extra(k, v).expect("extra field");
        }

        let out = header.downstream(sub, sampled);
        let text = out.to_string();
        let re = Regex::new(&pattern).expect("expect_regex");
        assert!(re.is_match(&text), "{}: {text} !~ {pattern}", id(&case));
        let mut buf = String::new();
        out.write_to(&mut buf);
        assert_eq!(buf, text, "{}", id(&case));

        // The callee reads the same context back.
        let read = TraceHeader::parse(&text).expect("downstream header parses");
        assert_eq!(read.root(), root);
        assert_eq!(read.parent(), Some(sub));
        assert_eq!(read.sampled(), Sampled::from(sampled));
        assert!(read.extra().eq(header.extra()), "{}", id(&case));
    }
}

// ===== response =====

#[test]
fn response_header_vectors() {
    for case in of_kind("response_header") {
        let given = &case["given"];
        let root: TraceId = given["segment_trace_id"]
            .as_str()
            .expect("segment_trace_id")
            .parse()
            .expect("root");
        let incoming =
            TraceHeader::new(root).with_sampled(sampled_from_json(&given["incoming_sampled"]));
        let decision = given["decision"].as_bool().expect("decision");
        let expect = case["expect"].as_str().expect("expect");

        let response = incoming.response(decision);
        assert_eq!(response.to_string(), expect, "{}", id(&case));
        let mut buf = String::new();
        response.write_to(&mut buf);
        assert_eq!(buf, expect, "{}", id(&case));
    }
}

#[test]
fn response_names_the_decision_only_when_asked() {
    let root = TraceId::new();
    for sampled in [Sampled::Yes, Sampled::No, Sampled::Unknown] {
        for decision in [true, false] {
            let response = TraceHeader::new(root)
                .with_sampled(sampled)
                .response(decision);
            assert_eq!(response, ResponseHeader::new(root));
            assert_eq!(response.to_string(), format!("Root={root}"));
        }
    }
    let asked = TraceHeader::new(root).with_sampled(Sampled::Requested);
    assert_eq!(
        asked.response(true).to_string(),
        format!("Root={root};Sampled=1")
    );
}

// ===== SQS =====

#[test]
fn sqs_is_sampled_vectors() {
    for case in of_kind("sqs_is_sampled") {
        let attr = case["aws_trace_header_attribute"]
            .as_str()
            .expect("attribute");
        let expect = case["expect"].as_bool().expect("expect");
        assert_eq!(is_sqs_message_sampled(attr), expect, "{}", id(&case));
    }
}

#[test]
fn sqs_reads_the_field_not_a_substring() {
    assert!(!is_sqs_message_sampled(
        "Root=1-5759e988-bd862e3fe1be46a994272793;NotSampled=1"
    ));
    assert!(!is_sqs_message_sampled(
        "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=10"
    ));
    assert!(is_sqs_message_sampled("Root=x; sampled=1 "));
}

// ===== parser rules beyond the vectors =====

const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";

#[test]
fn self_is_dropped_and_never_forwarded() {
    let h = TraceHeader::parse(&format!(
        "Self=1-67748581-2c5eafec0c9392a57cde3a28;Root={ROOT};Tenant=blue"
    ))
    .unwrap();
    assert_eq!(h.extra().collect::<Vec<_>>(), [("Tenant", "blue")]);
    assert_eq!(h.to_string(), format!("Root={ROOT};Tenant=blue"));
}

#[test]
fn reserved_keys_ignore_case_and_the_last_one_wins() {
    let h = TraceHeader::parse(&format!(
        "ROOT={ROOT};parent=53995c3f42cd8ad8;Parent=0000000000000001;sampled=1;Sampled="
    ))
    .unwrap();
    assert_eq!(h.root().to_string(), ROOT);
    assert_eq!(h.parent(), Some(SegmentId::from_u64(1)));
    assert_eq!(h.sampled(), Sampled::Yes);
    assert_eq!(h.extra().count(), 0);
}

#[test]
fn invalid_parent_is_kept_aside_and_the_rest_stands() {
    // The four SDKs keep such a parent as a string; we keep it readable, but it is no segment
    // id, so it is neither the parent of a document nor ever forwarded.
    for bad in ["foo", "53995c3f", "53995c3f42cd8ad8a", "53995c3f42cd8adz"] {
        let h = TraceHeader::parse(&format!(
            "Root={ROOT};Parent={bad};Sampled=0;Lineage=1:ab:2"
        ))
        .unwrap();
        assert_eq!(h.parent(), None, "{bad}");
        assert_eq!(h.received_parent(), Some(bad));
        assert_eq!(h.received_root(), None);
        assert_eq!(h.sampled(), Sampled::No);
        assert_eq!(h.lineage(), Some("1:ab:2"));
        assert_eq!(
            h.to_string(),
            format!("Root={ROOT};Sampled=0;Lineage=1:ab:2")
        );
    }
}

#[test]
fn malformed_root_is_replaced_and_the_rest_stands() {
    // Java's rule. Every one of these made the header unusable before.
    for bad in [
        "fake",
        "0-5759e988-bd862e3fe1be46a994272793",
        "1-5759e988-bd862e3fe1be46a9942727931",
        "1-5759e988-bd862e3fe1be46a99427279",
        "1-5759e98g-bd862e3fe1be46a994272793",
        "1_5759e988_bd862e3fe1be46a994272793",
    ] {
        let input =
            format!("Root={bad};Parent=53995c3f42cd8ad8;Sampled=1;Lineage=10:1234abcd:3;T=a");
        let h = TraceHeader::parse(&input).unwrap();
        assert_eq!(h.received_root(), Some(bad));
        assert_ne!(h.root().to_string(), bad);
        assert!(h.root().is_lowercase());
        assert_eq!(h.parent(), Some(SegmentId::from_u64(0x53995c3f42cd8ad8)));
        assert_eq!(h.sampled(), Sampled::Yes);
        assert_eq!(
            h.extra().collect::<Vec<_>>(),
            [("Lineage", "10:1234abcd:3"), ("T", "a")]
        );
        // Downstream, the new root and everything else forward.
        let sub = SegmentId::from_u64(1);
        assert_eq!(
            h.downstream(sub, true).to_string(),
            format!(
                "Root={};Parent=0000000000000001;Sampled=1;Lineage=10:1234abcd:3;T=a",
                h.root()
            )
        );
        // Each header gets its own new trace.
        assert_ne!(TraceHeader::parse(&input).unwrap().root(), h.root());
    }
}

#[test]
fn root_keeps_its_case() {
    let upper = "1-632BB806-BD862E3FE1BE46A994272793";
    let h = TraceHeader::parse(&format!("Root={upper};Parent=53995C3F42CD8AD8;Sampled=1")).unwrap();
    assert_eq!(h.received_root(), None);
    assert_eq!(h.root().to_string(), upper);
    assert_eq!(
        h.to_string(),
        format!("Root={upper};Parent=53995c3f42cd8ad8;Sampled=1")
    );
    assert_eq!(
        h.downstream(SegmentId::from_u64(2), false).to_string(),
        format!("Root={upper};Parent=0000000000000002;Sampled=0")
    );
    let lower = TraceHeader::parse(&format!("Root={}", upper.to_ascii_lowercase())).unwrap();
    assert_eq!(lower.root(), h.root().to_lowercase());
}

#[test]
fn lineage_and_extras_keep_their_order() {
    let h = TraceHeader::parse(&format!(
        "b=2;Root={ROOT};Lineage=10:1234abcd:3;a=1;Sampled=?"
    ))
    .unwrap();
    assert_eq!(h.lineage(), Some("10:1234abcd:3"));
    assert_eq!(
        h.extra().collect::<Vec<_>>(),
        [("b", "2"), ("Lineage", "10:1234abcd:3"), ("a", "1")]
    );
    assert_eq!(
        h.to_string(),
        format!("Root={ROOT};Sampled=?;b=2;Lineage=10:1234abcd:3;a=1")
    );
}

#[test]
fn fields_with_control_characters_are_dropped() {
    let h = TraceHeader::parse(&format!("Root={ROOT};a=x\u{1}y;b=ok")).unwrap();
    assert_eq!(h.extra().collect::<Vec<_>>(), [("b", "ok")]);
}

#[test]
fn long_headers_are_refused() {
    let long = format!("Root={ROOT};Pad={}", "a".repeat(TraceHeader::MAX_LEN));
    let err = TraceHeader::parse(&long).unwrap_err();
    assert!(err.is_too_long());
    assert!(!is_sqs_message_sampled(&format!("{long};Sampled=1")));

    let fits = format!("Root={ROOT};Pad=");
    let fits = format!("{fits}{}", "a".repeat(TraceHeader::MAX_LEN - fits.len()));
    assert_eq!(fits.len(), TraceHeader::MAX_LEN);
    // Accepted, though the field is too long to be forwarded.
    let h = TraceHeader::parse(&fits).unwrap();
    assert_eq!(h.extra().count(), 0);
}

#[test]
fn errors_never_repeat_the_input() {
    for input in [
        "secret=1",
        "Root=;Parent=secret",
        &format!("Root={ROOT};{}", "secret".repeat(1000)),
    ] {
        let err = TraceHeader::parse(input).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(err.to_string().contains("X-Amzn-Trace-Id"), "{err}");
    }
}

#[test]
fn with_extra_refuses_what_cannot_round_trip() {
    let h = TraceHeader::new(ROOT.parse().unwrap());
    for key in ["Root", "parent", "SAMPLED", "Self"] {
        assert!(
            h.clone()
                .with_extra(key, "v")
                .unwrap_err()
                .is_reserved_key(),
            "{key}"
        );
    }
    for (k, v) in [
        ("", "v"),
        ("a=b", "v"),
        ("a;b", "v"),
        ("k", "a;b"),
        (" k", "v"),
        ("k", "v "),
        ("k", "\n"),
    ] {
        assert!(
            h.clone().with_extra(k, v).unwrap_err().is_invalid(),
            "{k:?}={v:?}"
        );
    }
    let full = h
        .with_extra("k", &"v".repeat(TraceHeader::MAX_EXTRA_LEN - 1))
        .unwrap();
    assert!(
        full.clone()
            .with_extra("x", "")
            .unwrap_err()
            .is_over_budget()
    );
    assert_eq!(full.extra().count(), 1);
}

// ===== allocations =====

// Counts the allocations made by the current thread, so a test can show that a path does not
// allocate. Thread-local because tests run in parallel.
#[allow(unsafe_code)]
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};

    use super::Cell;

    thread_local! {
        static ALLOCS: Cell<usize> = const { Cell::new(0) };
    }

    pub(super) struct Counting;

    // SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
    // const-initialised thread-local `Cell`, which neither allocates nor re-enters.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            ALLOCS.with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as ours.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as ours.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            ALLOCS.with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as ours.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    pub(super) fn count<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let before = ALLOCS.with(Cell::get);
        let out = f();
        (out, ALLOCS.with(Cell::get) - before)
    }
}

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

#[test]
fn parsing_allocates_only_for_extra_fields() {
    let plain = format!(" Root={ROOT}; Parent=53995c3f42cd8ad8; Sampled=1; Self={ROOT};");
    let (h, n) = counting::count(|| TraceHeader::parse(&plain).unwrap());
    assert_eq!(n, 0);
    assert_eq!(h.sampled(), Sampled::Yes);

    let extra = format!("Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1;Lineage=10:1234abcd:3;k=v");
    let (h, n) = counting::count(|| TraceHeader::parse(&extra).unwrap());
    assert_eq!(n, 1);
    assert_eq!(h.extra().count(), 2);
}

#[test]
fn writing_into_a_reused_buffer_does_not_allocate() {
    let h = TraceHeader::parse(&format!("Root={ROOT};Sampled=?;Lineage=10:1234abcd:3")).unwrap();
    let sub = SegmentId::new();
    let mut buf = String::with_capacity(256);
    let (_, n) = counting::count(|| {
        for _ in 0..10 {
            buf.clear();
            h.downstream(sub, true).write_to(&mut buf);
            buf.clear();
            h.response(false).write_to(&mut buf);
            buf.clear();
            h.write_to(&mut buf);
        }
    });
    assert_eq!(n, 0);
    assert_eq!(buf, format!("Root={ROOT};Sampled=?;Lineage=10:1234abcd:3"));
}

// ===== properties =====

fn extra_key() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{1,12}".prop_filter("reserved", |k| {
        !["root", "parent", "sampled", "self"].contains(&k.to_ascii_lowercase().as_str())
    })
}

fn extra_value() -> impl Strategy<Value = String> {
    // Visible ASCII without `;`; `=` included on purpose.
    "[!-:<-~]{0,24}"
}

fn sampled() -> impl Strategy<Value = Sampled> {
    prop_oneof![
        Just(Sampled::Yes),
        Just(Sampled::No),
        Just(Sampled::Requested),
        Just(Sampled::Unknown),
    ]
}

prop_compose! {
    fn header()(
        epoch in any::<u32>(),
        random in any::<u128>(),
        parent in proptest::option::of(any::<u64>()),
        sampled in sampled(),
        extra in proptest::collection::vec((extra_key(), extra_value()), 0..12),
    ) -> TraceHeader {
        let mut h = TraceHeader::new(TraceId::from_parts(epoch, random)).with_sampled(sampled);
        if let Some(p) = parent {
            h = h.with_parent(SegmentId::from_u64(p));
        }
        for (k, v) in &extra {
            // Past the 256-byte budget fields are refused; the rest of the header stands.
            if let Ok(next) = h.clone().with_extra(k, v) {
                h = next;
            }
        }
        h
    }
}

/// Pieces that make `;`/`=`-heavy, nearly-valid headers.
fn header_soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(";".to_owned()),
        Just("=".to_owned()),
        Just(" ".to_owned()),
        Just("Root=".to_owned()),
        Just("Parent=".to_owned()),
        Just("Sampled=".to_owned()),
        Just("Self=".to_owned()),
        Just("Lineage=".to_owned()),
        Just(ROOT.to_owned()),
        "[0-9a-fA-F?-]{0,40}",
        "[;= \t\r\n\u{0}a-z]{0,20}",
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..48).prop_map(|v| v.concat())
}

fn check_any_input(s: &str) -> Result<(), TestCaseError> {
    let _ = is_sqs_message_sampled(s);
    match TraceHeader::parse(s) {
        Ok(h) => {
            // Whatever is accepted is written canonically and reads back the same.
            let out = h.to_string();
            let again = TraceHeader::parse(&out);
            prop_assert!(
                again.as_ref().is_ok_and(|again| same_context(again, &h)),
                "{out}"
            );
            prop_assert_eq!(again.as_ref().map(TraceHeader::received_root), Ok(None));
            let extra: usize = h.extra().map(|(k, v)| k.len() + v.len()).sum();
            prop_assert!(extra <= TraceHeader::MAX_EXTRA_LEN);
            prop_assert!(!out.ends_with(';'));
        }
        Err(e) => prop_assert!(e.is_missing_root() || e.is_too_long()),
    }
    Ok(())
}

proptest! {
    #[test]
    fn header_round_trips(h in header()) {
        let s = h.to_string();
        prop_assert_eq!(TraceHeader::parse(&s), Ok(h.clone()));
        let mut buf = String::new();
        h.write_to(&mut buf);
        prop_assert_eq!(buf, s);
    }

    #[test]
    fn field_order_and_whitespace_do_not_matter(
        h in header(),
        at in proptest::collection::vec(any::<usize>(), 4),
        pad in "[ \t]{0,2}",
    ) {
        // Root, Parent, Sampled and a Self anywhere among the extra fields, padded.
        let mut parts: Vec<String> = h.extra().map(|(k, v)| format!("{pad}{k}{pad}={pad}{v}{pad}")).collect();
        let mut reserved = vec![format!("Root={}", h.root()), format!("Self={}", TraceId::new())];
        if let Some(p) = h.parent() {
            reserved.push(format!("{pad}Parent={p}"));
        }
        if let Some(s) = h.sampled().as_str() {
            reserved.push(format!("Sampled{pad}={s}{pad}"));
        }
        for (field, at) in reserved.into_iter().zip(at) {
            let at = at % (parts.len() + 1);
            parts.insert(at, field);
        }
        let s = parts.join(";");
        prop_assert_eq!(TraceHeader::parse(&s), Ok(h));
    }

    #[test]
    fn parser_never_panics_on_unicode(s in any::<String>()) {
        check_any_input(&s)?;
    }

    #[test]
    fn parser_never_panics_on_header_soup(s in header_soup()) {
        check_any_input(&s)?;
    }
}
