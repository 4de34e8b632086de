//! The timeline renderer against a checked-in expectation.
//!
//! To accept a deliberate change of the output, run with `UPDATE_GOLDEN=1` and review the diff
//! of `tests/data/trace.timeline.txt`.

use std::path::PathBuf;

use serde_json::Value;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

#[test]
fn timeline_matches_the_golden_file() {
    let fixture = std::fs::read_to_string(data("trace.json")).unwrap();
    let docs: Vec<Value> = serde_json::from_str(&fixture).unwrap();
    let traces = xray_local::assemble(docs).unwrap();
    assert_eq!(traces.len(), 1);
    let rendered = xray_local::render::timeline(&traces[0]);

    let golden = data("trace.timeline.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &rendered).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).unwrap();
    assert_eq!(
        rendered, expected,
        "rendered:\n{rendered}\nexpected:\n{expected}"
    );
}

#[test]
fn service_map_matches_the_golden_file() {
    let fixture = std::fs::read_to_string(data("trace.json")).unwrap();
    let docs: Vec<Value> = serde_json::from_str(&fixture).unwrap();
    let traces = xray_local::assemble(docs).unwrap();
    let rendered = xray_local::render::service_map(&traces);

    let golden = data("trace.map.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &rendered).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).unwrap();
    assert_eq!(
        rendered, expected,
        "rendered:\n{rendered}\nexpected:\n{expected}"
    );
}
