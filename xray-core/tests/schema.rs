//! The saved segment-document schema, as the other tests use it: it must be live (refuse what
//! it describes as invalid) before its approval of our documents means anything.

mod support;

use serde_json::{Value, json};
use support::{Schema, to_checked_json};
use xray_sdk::{Document, SegmentId, TraceId};

fn valid_segment() -> Value {
    json!({
        "name": "svc",
        "id": "53995c3f42cd8ad8",
        "trace_id": "1-5759e988-bd862e3fe1be46a994272793",
        "start_time": 1.0,
        "end_time": 2.0
    })
}

fn refuses(schema: &Schema, doc: &Value) -> bool {
    !schema.errors(doc).is_empty()
}

#[test]
fn the_schema_refuses_broken_documents() {
    let schema = Schema::get();
    assert!(!refuses(schema, &valid_segment()));

    let breakages: [(&str, Value); 8] = [
        ("/name", json!("")),
        ("/name", json!("bad!name")),
        ("/name", json!("x".repeat(201))),
        ("/id", json!("short")),
        ("/start_time", json!("1.0")),
        ("/annotations", json!({"bad-key": 1})),
        ("/annotations", json!({"k": {"nested": 1}})),
        ("/metadata", json!({"default": 1})),
    ];
    for (path, value) in breakages {
        let mut doc = valid_segment();
        let key = path.trim_start_matches('/');
        doc[key] = value.clone();
        assert!(refuses(schema, &doc), "{path} = {value} accepted");
    }

    let mut sub = valid_segment();
    sub["type"] = json!("subsegment");
    assert!(
        refuses(schema, &sub),
        "independent subsegment without parent_id accepted"
    );
    sub["parent_id"] = json!("53995c3f42cd8ad8");
    assert!(!refuses(schema, &sub));
}

#[test]
fn sanitised_names_satisfy_the_schema_pattern() {
    let schema = Schema::get();
    let names = [
        "plain",
        "with space and_.:/%&#=+-@",
        "注文サービス",
        "Ünïcödé ñame",
        "٣ arabic-indic digit",
        "no!?;*()$~^<>\\\"'`|{}[]pe",
        "tab\tnewline\nnul\0",
        "",
        "!!!",
    ];
    for name in names {
        let mut d = Document::new(name, SegmentId::new(), 1.0);
        d.set_trace_id(TraceId::new());
        to_checked_json(schema, &d);
    }
    let mut long = Document::new(&"界".repeat(300), SegmentId::new(), 1.0);
    long.set_trace_id(TraceId::new());
    to_checked_json(schema, &long);
}
