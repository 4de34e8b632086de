//! Conformance of `TraceId` and `SegmentId` with `tests/data/ids.json`, plus round-trip
//! properties.
//!
//! How the vectors are judged:
//!
//! - `valid` means "in the strict format `^1-[0-9a-f]{8}-[0-9a-f]{24}$`". An id is in that
//!   format exactly when it parses and formats back to the same string, which is checked for
//!   every case.
//! - Parsing is the Java SDK's `TraceID.fromString` (version `1`, length 35, 8 + 24 hex digits,
//!   no surrounding whitespace), except that upper-case hex is accepted and written back in
//!   lower case, as the protocol reference recommends. So for the divergent cases:
//!   - `tid-21` (upper-case hex): parsed, like Node; not in the strict format, like Java.
//!   - `tid-09` (version 2), `tid-15` (non-hex random part), `tid-23` (7-digit epoch), `tid-24`
//!     (23-digit random part): refused, like Java (Node accepts or re-pads them).
//! - Segment ids: `valid_format` is the generated format `^[0-9a-f]{16}$`. `sid-05` (upper case)
//!   parses, as no SDK validates an incoming `Parent`, but is not in the format.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use regex::Regex;
use serde_json::Value;
use xray_sdk::{SegmentId, TraceId};

fn vectors() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ids.json");
    let text = std::fs::read_to_string(&path).expect("read ids.json");
    serde_json::from_str(&text).expect("ids.json is JSON")
}

fn str_field<'a>(case: &'a Value, key: &str) -> &'a str {
    case[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {case}"))
}

fn bool_field(case: &Value, key: &str) -> bool {
    case[key]
        .as_bool()
        .unwrap_or_else(|| panic!("{key} in {case}"))
}

/// In the strict wire format: parses, is lower case, and formats back to the same bytes. (Upper
/// case is accepted too, and written back as read.)
fn trace_id_is_canonical(s: &str) -> bool {
    s.parse::<TraceId>()
        .is_ok_and(|id| id.is_lowercase() && id.to_string() == s)
}

fn segment_id_is_canonical(s: &str) -> bool {
    s.parse::<SegmentId>().is_ok_and(|id| id.to_string() == s)
}

#[test]
fn trace_id_vectors() {
    let v = vectors();
    let cases = v["trace_ids"].as_array().expect("trace_ids");
    assert!(!cases.is_empty());
    for case in cases {
        let id = str_field(case, "id");
        let input = str_field(case, "trace_id");
        let valid = bool_field(case, "valid");
        let divergent = bool_field(case, "divergent");
        let accepted = input.parse::<TraceId>().is_ok();

        assert_eq!(trace_id_is_canonical(input), valid, "{id}: strict format");

        if !divergent {
            assert_eq!(accepted, valid, "{id}: parse of {input:?}");
        } else if accepted != valid {
            // Only a behaviour an SDK that validates was seen to have.
            let observed = &case["sdk_observed"];
            let agrees = |sdk: &str| {
                let o = observed[sdk].as_str().unwrap_or("");
                if accepted {
                    o.starts_with("valid")
                } else {
                    o.starts_with("invalid")
                }
            };
            assert!(
                agrees("java") || agrees("node"),
                "{id}: accepted={accepted} matches neither expect nor Java nor Node"
            );
        }

        if case.get("valid_after_trim").and_then(Value::as_bool) == Some(true) {
            assert!(!accepted, "{id}: surrounding whitespace is refused");
            assert!(
                trace_id_is_canonical(input.trim()),
                "{id}: valid once trimmed"
            );
        }
    }
}

#[test]
fn segment_id_vectors() {
    let v = vectors();
    let cases = v["segment_ids"].as_array().expect("segment_ids");
    assert!(!cases.is_empty());
    for case in cases {
        let id = str_field(case, "id");
        let input = str_field(case, "segment_id");
        let valid = bool_field(case, "valid_format");
        assert_eq!(segment_id_is_canonical(input), valid, "{id}: format");
        if valid {
            assert!(input.parse::<SegmentId>().is_ok(), "{id}: parses");
        }
    }
}

#[test]
fn generation_properties() {
    let v = vectors();
    let facts = v["generation"].as_array().expect("generation");
    let trace_format = Regex::new("^1-[a-f0-9]{8}-[a-f0-9]{24}$").unwrap();
    let segment_format = Regex::new("^[a-f0-9]{16}$").unwrap();
    for fact in facts {
        let text = str_field(fact, "fact");
        for _ in 0..64 {
            if text.starts_with("generated trace id matches") {
                let id = TraceId::new().to_string();
                assert!(trace_format.is_match(&id), "{text}: {id}");
            } else if text.starts_with("generated segment / subsegment id matches") {
                let id = SegmentId::new().to_string();
                assert!(segment_format.is_match(&id), "{text}: {id}");
            } else if text.starts_with("the start-time part") {
                let before = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let id = TraceId::new();
                let after = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let epoch = u64::from(id.epoch_seconds());
                assert!(before <= epoch && epoch <= after, "{text}");
                let hex = id.to_string()[2..10].to_owned();
                assert_eq!(u64::from_str_radix(&hex, 16).unwrap(), epoch, "{text}");
            } else if text.starts_with("the random part is 24 lowercase hex digits") {
                let id = TraceId::new();
                let s = id.to_string();
                let random = &s[11..];
                assert_eq!(random.len(), 24, "{text}");
                assert!(
                    random.bytes().all(|b| b"0123456789abcdef".contains(&b)),
                    "{text}"
                );
                assert_eq!(u128::from_str_radix(random, 16).unwrap(), id.random());
            } else {
                panic!("generation fact without a check: {text}");
            }
        }
    }
}

#[test]
fn noop_ids() {
    let v = vectors();
    let noop = &v["noop_ids"];
    let trace = str_field(noop, "trace_id");
    let segment = str_field(noop, "segment_id");
    assert_eq!(trace.parse::<TraceId>(), Ok(TraceId::from_parts(0, 0)));
    assert_eq!(TraceId::from_parts(0, 0).to_string(), trace);
    assert_eq!(segment.parse::<SegmentId>(), Ok(SegmentId::from_u64(0)));
    assert_eq!(SegmentId::from_u64(0).to_string(), segment);

    // Ids are generated only for entities that get real ids, so every generated id must differ
    // from the no-op ids. When the no-op ids are used instead (unsampled entities, per
    // AWS_XRAY_NOOP_ID) is the recorder's choice, not the id generator's.
    let cases = noop["cases"].as_array().expect("noop cases");
    let random_cases = cases
        .iter()
        .filter(|c| str_field(c, "expect").starts_with("random"))
        .count();
    assert!(random_cases > 0);
    for _ in 0..1000 {
        assert_ne!(TraceId::new().to_string(), trace);
        assert_ne!(TraceId::new().random(), 0);
        assert_ne!(SegmentId::new().to_string(), segment);
    }
}

proptest! {
    #[test]
    fn trace_id_round_trips(epoch in any::<u32>(), random in any::<u128>()) {
        let id = TraceId::from_parts(epoch, random);
        let s = id.to_string();
        prop_assert!(trace_id_is_canonical(&s));
        prop_assert_eq!(s.parse::<TraceId>(), Ok(id));
        let upper = s.to_uppercase();
        prop_assert_eq!(upper.parse::<TraceId>().map(TraceId::to_lowercase), Ok(id));
        prop_assert_eq!(upper.parse::<TraceId>().map(|u| u.to_string()), Ok(upper));
    }

    #[test]
    fn segment_id_round_trips(value in any::<u64>()) {
        let id = SegmentId::from_u64(value);
        let s = id.to_string();
        prop_assert!(segment_id_is_canonical(&s));
        prop_assert_eq!(s.parse::<SegmentId>(), Ok(id));
        prop_assert_eq!(s.to_uppercase().parse::<SegmentId>(), Ok(id));
    }

    #[test]
    fn id_parsers_never_panic(s in any::<String>()) {
        let _ = s.parse::<TraceId>();
        let _ = s.parse::<SegmentId>();
    }
}
