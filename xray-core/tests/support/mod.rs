//! Shared helpers for the document tests: test data, the segment-document JSON schema, and the
//! JSON-pointer assertions of `tests/data/segment_docs/*.json`.
#![allow(dead_code)]

pub(crate) mod scenarios;

use std::path::PathBuf;

use serde_json::{Value, json};

pub(crate) fn data_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

pub(crate) fn load_json(rel: &str) -> Value {
    let path = data_path(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON in {}: {e}", path.display()))
}

// ===== schema =====

pub(crate) use xray_testkit::Schema;

/// Serializes `doc`, validates it (the schema check refuses any `null` too), and returns the
/// JSON.
pub(crate) fn to_checked_json(schema: &Schema, doc: &xray_sdk::Document) -> Value {
    let text = serde_json::to_string(doc).expect("document serializes");
    let value: Value = serde_json::from_str(&text).expect("output is JSON");
    schema.assert_valid(&value);
    // The recorder sends what `write_json` writes: it must be the same document.
    let mut sent = Vec::new();
    doc.write_json(&mut sent).expect("document writes");
    let sent: Value = serde_json::from_slice(&sent).expect("write_json output is JSON");
    assert_eq!(sent, value, "write_json and Serialize differ");
    value
}

// ===== JSON-pointer assertions =====

/// Checks every assertion of a `segment_docs` file against `doc`, returning one line per
/// failure. An assertion key this checker does not know is itself a failure.
pub(crate) fn check_assertions(doc: &Value, assertions: &[Value]) -> Vec<String> {
    let mut failures = Vec::new();
    for a in assertions {
        let Some(obj) = a.as_object() else {
            failures.push(format!("assertion is not an object: {a}"));
            continue;
        };
        let Some(path) = obj.get("path").and_then(Value::as_str) else {
            failures.push(format!("assertion without path: {a}"));
            continue;
        };
        let found = doc.pointer(path);
        for (key, expected) in obj {
            let outcome = match key.as_str() {
                "path" | "note" => continue,
                "equals" => match found {
                    Some(v) if json_eq(v, expected) => Ok(()),
                    other => Err(format!("expected {expected}, found {other:?}")),
                },
                "matches" => match found {
                    Some(Value::String(s)) if pattern_matches(expected, s) => Ok(()),
                    other => Err(format!(
                        "expected a string matching {expected}, found {other:?}"
                    )),
                },
                "type" => match found {
                    Some(v) if type_matches(expected, v) => Ok(()),
                    other => Err(format!("expected type {expected}, found {other:?}")),
                },
                "length" => {
                    let len = match found {
                        Some(Value::Array(x)) => Some(x.len()),
                        Some(Value::Object(x)) => Some(x.len()),
                        Some(Value::String(x)) => Some(x.chars().count()),
                        _ => None,
                    };
                    match (len, expected.as_u64()) {
                        (Some(l), Some(e)) if l as u64 == e => Ok(()),
                        _ => Err(format!("expected length {expected}, found {found:?}")),
                    }
                }
                "keys" => {
                    let mut want: Vec<&str> = expected
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    want.sort_unstable();
                    let mut have: Vec<&str> = found
                        .and_then(Value::as_object)
                        .map(|o| o.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    have.sort_unstable();
                    if found.is_some_and(Value::is_object) && want == have {
                        Ok(())
                    } else {
                        Err(format!(
                            "expected exactly the keys {want:?}, found {have:?}"
                        ))
                    }
                }
                "present" => match (expected.as_bool(), found.is_some()) {
                    (Some(want), have) if want == have => Ok(()),
                    _ => Err(format!("expected present == {expected}, found {found:?}")),
                },
                "absent" => match (expected.as_bool(), found.is_none()) {
                    (Some(want), have) if want == have => Ok(()),
                    _ => Err(format!("expected absent == {expected}, found {found:?}")),
                },
                "absent_or_equals" => match found {
                    None => Ok(()),
                    Some(v) if json_eq(v, expected) => Ok(()),
                    Some(v) => Err(format!("expected absent or {expected}, found {v}")),
                },
                "absent_or_type" => match found {
                    None => Ok(()),
                    Some(v) if type_matches(expected, v) => Ok(()),
                    Some(v) => Err(format!("expected absent or type {expected}, found {v}")),
                },
                other => Err(format!("unknown assertion kind {other:?}")),
            };
            if let Err(msg) = outcome {
                failures.push(format!("{path}: {key}: {msg}"));
            }
        }
    }
    failures
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// ECMA-262 semantics, as JSON Schema's `pattern`: evaluated by the schema validator itself.
fn pattern_matches(pattern: &Value, s: &str) -> bool {
    let schema = json!({ "type": "string", "pattern": pattern });
    jsonschema::draft4::new(&schema)
        .map(|v| v.is_valid(&json!(s)))
        .unwrap_or(false)
}

/// JSON Schema `type` semantics (`number` includes integers).
fn type_matches(type_name: &Value, v: &Value) -> bool {
    let schema = json!({ "type": type_name });
    jsonschema::draft4::new(&schema)
        .map(|val| val.is_valid(v))
        .unwrap_or(false)
}
