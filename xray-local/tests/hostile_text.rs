//! Text from a document never reaches a terminal raw: whoever can send a datagram must not be
//! able to retitle the window, clear the screen, reorder what is shown or forge a line of
//! output, through the timeline, the service map, `query` or `--json`.

#[path = "support/binary.rs"]
mod binary;

use serde_json::{Value, json};

/// What a hostile sender puts in every string: a window title change (OSC ... BEL), a screen
/// clear (CSI 2J), a one-character C1 CSI, a right-to-left override, DEL, and a line break
/// followed by a forged trace header.
const HOSTILE: &str = "\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m\u{202e}\u{7f}\r\nTrace 1-00000000-000000000000000000000000  0.0 ms  1 segment";
/// The same, as `render::safe` writes it.
const ESCAPED: &str = r"\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m\u{202e}\u{7f}\r\nTrace 1-00000000-000000000000000000000000  0.0 ms  1 segment";

fn hostile(field: &str) -> String {
    format!("{field}{HOSTILE}")
}

fn escaped(field: &str) -> String {
    format!("{field}{ESCAPED}")
}

/// The start of the escaped form: what is left of a name cut to its column.
fn escaped_start(field: &str) -> String {
    format!(r"{field}\u{{1b}}]0;owned")
}

/// A character a terminal acts on, other than the line breaks of the output itself.
fn acts_on_terminal(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn assert_printable(what: &str, text: &str) {
    if let Some(c) = text.chars().find(|&c| acts_on_terminal(c)) {
        panic!("{what} has a raw {c:?}:\n{text}");
    }
    let headers: Vec<&str> = text.lines().filter(|l| l.starts_with("Trace ")).collect();
    assert!(headers.len() <= 1, "{what} has a forged line: {headers:#?}");
    assert!(
        !headers.iter().any(|h| h.starts_with("Trace 1-00000000-")),
        "{what} has a forged line: {headers:#?}"
    );
}

const TRACE_ID: &str = "1-581cf771-a006649127e371903a2de979";

fn document(trace_id: &str) -> Value {
    json!({
        "name": hostile("name"), "id": "70de5b6f19ff9a0a", "trace_id": trace_id,
        "start_time": 10.0, "end_time": 10.5, "origin": hostile("origin"), "fault": true,
        "http": {"request": {"method": hostile("method"), "url": hostile("url")},
                 "response": {"status": 500}},
        "annotations": {hostile("key"): hostile("value")},
        "metadata": {"default": {"note": hostile("metadata")}},
        "cause": {"exceptions": [{"id": "0a1b2c3d4e5f6071", "type": hostile("type"),
                                  "message": hostile("message")}]},
        "subsegments": [
            {"name": hostile("db"), "id": "70de5b6f19ff9a0b", "namespace": "aws",
             "start_time": 10.1, "end_time": 10.2, "aws": {"operation": hostile("operation")}},
            {"name": "downstream", "id": "70de5b6f19ff9a0c", "namespace": hostile("namespace"),
             "start_time": 10.2, "end_time": 10.3, "cause": hostile("cause")},
        ],
    })
}

#[test]
fn the_timeline_escapes_every_string_from_a_document_and_keeps_its_columns() {
    let traces = xray_local::assemble([document(TRACE_ID)]).unwrap();
    let text = xray_local::render::timeline(&traces[0]);
    assert_printable("the timeline", &text);
    assert!(text.starts_with(&format!("Trace {TRACE_ID}")), "{text}");
    for field in ["name", "db"] {
        assert!(text.contains(&escaped_start(field)), "{field}:\n{text}");
    }
    for field in [
        "origin",
        "method",
        "url",
        "key",
        "type",
        "message",
        "operation",
    ] {
        assert!(text.contains(&escaped(field)), "{field}:\n{text}");
    }
    assert!(
        text.contains(&format!("[{}]", escaped("namespace"))),
        "{text}"
    );
    assert!(
        text.contains(&format!("cause: exception {}", escaped("cause"))),
        "{text}"
    );
    // A value is shown as JSON, whose escapes stand for the C0 controls.
    assert!(
        text.contains(r"value\u001b]0;owned\u0007\u001b[2J\u{9b}31m"),
        "{text}"
    );

    // The bars start in one column: the name column is as wide as the escaped names.
    let lines: Vec<&str> = text.lines().collect();
    let timeline = lines[1].find("TIMELINE").unwrap();
    let bars: Vec<usize> = lines
        .iter()
        .filter_map(|l| l.chars().position(|c| c == '|'))
        .collect();
    assert_eq!(bars.len(), 3, "{text}");
    assert!(bars.iter().all(|&b| b == timeline), "{bars:?}\n{text}");
}

#[test]
fn the_service_map_escapes_names_and_kinds() {
    let traces = xray_local::assemble([document(TRACE_ID)]).unwrap();
    let text = xray_local::render::service_map(&traces);
    assert_printable("the service map", &text);
    assert!(text.contains(&escaped_start("name")), "{text}");
    assert!(text.contains(&escaped_start("origin")), "{text}");
    assert!(text.contains(&escaped_start("db")), "{text}");
}

#[test]
fn safe_leaves_ordinary_text_alone() {
    use xray_local::render::safe;
    for text in [
        "checkout",
        "GET https://example.com/a?b=c",
        "café ☕ 東京",
        r"C:\temp",
    ] {
        assert!(
            matches!(safe(text), std::borrow::Cow::Borrowed(_)),
            "{text}"
        );
    }
    assert_eq!(safe("a\tb\rc\nd\u{0}"), r"a\tb\rc\nd\u{0}");
    assert_eq!(
        safe("\u{85}\u{2028}\u{2069}\u{200f}"),
        r"\u{85}\u{2028}\u{2069}\u{200f}"
    );
}

/// The whole block of one trace: lines up to the empty line that ends it.
fn trace_block(rx: &std::sync::mpsc::Receiver<String>) -> String {
    let mut seen_header = false;
    binary::lines_until(rx, |line| {
        seen_header |= line.starts_with("Trace ");
        seen_header && line.is_empty()
    })
    .join("\n")
}

#[test]
fn a_running_daemon_and_query_print_a_hostile_document_escaped() {
    let mut daemon = binary::start(&[
        "--udp",
        "127.0.0.1:0",
        "--tcp",
        "127.0.0.1:0",
        "--quiet-ms",
        "0",
    ]);
    let trace_id = xray_sdk::TraceId::new().to_string();
    let doc = document(&trace_id);
    binary::send(daemon.udp, &doc);

    let printed = trace_block(&daemon.stdout);
    assert_printable("the daemon's timeline", &printed);
    assert!(
        printed.starts_with(&format!("Trace {trace_id}")),
        "{printed}"
    );
    assert!(printed.contains(&escaped_start("name")), "{printed}");
    assert!(printed.contains(&escaped("message")), "{printed}");

    let addr = daemon.tcp.to_string();
    for args in [
        vec!["--addr", addr.as_str()],
        vec!["--addr", addr.as_str(), "--map"],
        vec!["--addr", addr.as_str(), "--json"],
    ] {
        let out = binary::query(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert!(!out.stdout.contains(&0x1b), "{args:?}: a raw ESC");
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_printable(&format!("query {args:?}"), &stdout);
        assert!(stdout.contains(&escaped_start("name")) || args.contains(&"--json"));
        if args.contains(&"--json") {
            // Escaped for the terminal, the same text for a JSON parser.
            let trace: Value = serde_json::from_str(stdout.trim()).unwrap();
            assert_eq!(trace["segments"][0], doc);
        }
    }
    assert_eq!(daemon.running.terminate().code(), Some(0));
}

#[test]
fn json_mode_prints_a_hostile_document_escaped_and_intact() {
    let mut daemon = binary::start(&["--udp", "127.0.0.1:0", "--json", "--quiet-ms", "0"]);
    let doc = document(&xray_sdk::TraceId::new().to_string());
    binary::send(daemon.udp, &doc);
    let line = daemon.stdout.recv_timeout(binary::WAIT).unwrap();
    assert_printable("the --json line", &line);
    let trace: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(trace["segments"][0], doc);
    assert_eq!(daemon.running.terminate().code(), Some(0));
}
