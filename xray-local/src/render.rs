//! Text rendering of traces, in the shape of the X-Ray console's trace timeline and service
//! map.
//!
//! # Examples
//!
//! ```
//! use serde_json::json;
//!
//! let traces = xray_local::assemble([json!({
//!     "name": "api", "id": "70de5b6f19ff9a0a", "start_time": 10.0, "end_time": 10.2,
//!     "trace_id": "1-581cf771-a006649127e371903a2de979",
//!     "http": {"request": {"method": "GET", "url": "http://localhost/"},
//!              "response": {"status": 200}},
//! })])?;
//! let text = xray_local::render::timeline(&traces[0]);
//! assert!(text.contains("api"));
//! assert!(text.contains("GET http://localhost/ 200"));
//! # Ok::<(), xray_local::DocumentError>(())
//! ```
//!
//! # Hostile text
//!
//! Every string shown comes from a document someone sent over the network, so none is printed
//! as it came: [`safe`] writes the characters a terminal acts on (control characters, line
//! breaks, bidirectional overrides) as visible escapes, and every function here passes every
//! document string through it. Widths are those of the escaped text, so columns stay aligned.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::Value;

use crate::map::{CallStats, ServiceMap};
use crate::trace::{Trace, TraceEntity};

/// Characters of the proportional bar.
const BAR_WIDTH: usize = 30;
/// Longest name column, indentation included; longer names are cut.
const MAX_NAME_WIDTH: usize = 48;

/// Renders a trace as a timeline tree: one row per segment and subsegment with its offset from
/// the start of the trace and its duration in milliseconds, a bar to scale, the HTTP method,
/// URL and status, the AWS operation, error / throttle / fault marks, then annotations and
/// exception messages on their own lines.
///
/// Siblings are listed by start time. Subsegments whose parent has not arrived are listed last,
/// under a heading of their own.
pub fn timeline(trace: &Trace) -> String {
    let rows = rows(trace);
    let (start, end) = bounds(&rows);
    let total = end - start;

    let name_width = rows
        .iter()
        .map(|r| label(r).chars().count())
        .max()
        .unwrap_or(0)
        .clamp("NAME".len(), MAX_NAME_WIDTH);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "Trace {}  {}  {} segment{}{}",
        trace.id(),
        ms(total),
        trace.segments().len(),
        if trace.segments().len() == 1 { "" } else { "s" },
        if trace.is_complete() {
            ""
        } else {
            "  (incomplete)"
        },
    );
    let _ = writeln!(
        out,
        "{:<name_width$}  {:>11}  {:>11}  TIMELINE",
        "NAME", "OFFSET", "DURATION",
    );
    let mut orphans_started = false;
    for row in &rows {
        if row.entity.is_orphaned() && !orphans_started {
            orphans_started = true;
            let _ = writeln!(out, "-- subsegments whose parent has not arrived --");
        }
        let entity = &row.entity;
        let offset = entity.start_time().map_or(0.0, |s| s - start);
        let duration = match entity.end_time() {
            Some(e) if !entity.is_in_progress() => Some(e - entity.start_time().unwrap_or(e)),
            _ => None,
        };
        let shown = duration.unwrap_or((total - offset).max(0.0));
        let line = format!(
            "{:<name_width$}  {:>11}  {:>11}  {}  {}",
            fit(&label(row), name_width),
            ms(offset),
            duration.map_or_else(|| "...".to_owned(), ms),
            bar(offset, shown, total, duration.is_none()),
            details(entity),
        );
        let _ = writeln!(out, "{}", line.trim_end());
        let indent = " ".repeat(2 * entity.depth() + 4);
        if let Some(text) = annotations(entity) {
            let _ = writeln!(out, "{indent}annotations: {text}");
        }
        for text in exceptions(entity) {
            let _ = writeln!(out, "{indent}{text}");
        }
    }
    out
}

struct Row<'a> {
    entity: TraceEntity<'a>,
}

/// Entities depth-first with siblings by start time.
fn rows(trace: &Trace) -> Vec<Row<'_>> {
    let mut out = Vec::new();
    let roots: Vec<TraceEntity<'_>> = trace
        .entities()
        .filter(|e| e.depth() == 0)
        .collect::<Vec<_>>();
    let mut stack: Vec<TraceEntity<'_>> = roots.into_iter().rev().collect();
    while let Some(entity) = stack.pop() {
        let mut children: Vec<TraceEntity<'_>> = entity.subsegments().collect();
        children.sort_by(|a, b| {
            let a = a.start_time().unwrap_or(0.0);
            let b = b.start_time().unwrap_or(0.0);
            a.total_cmp(&b)
        });
        stack.extend(children.into_iter().rev());
        out.push(Row { entity });
    }
    out
}

/// The first start and the last end (or start, for entities still in progress).
fn bounds(rows: &[Row<'_>]) -> (f64, f64) {
    let mut start = f64::INFINITY;
    let mut end = f64::NEG_INFINITY;
    for row in rows {
        if let Some(s) = row.entity.start_time() {
            start = start.min(s);
            end = end.max(s);
        }
        if let Some(e) = row.entity.end_time() {
            end = end.max(e);
        }
    }
    if start.is_finite() && end.is_finite() {
        (start, end)
    } else {
        (0.0, 0.0)
    }
}

fn label(row: &Row<'_>) -> String {
    let name = row.entity.name().unwrap_or("?");
    format!("{}{}", "  ".repeat(row.entity.depth()), safe(name))
}

fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('~');
    cut
}

fn ms(seconds: f64) -> String {
    // `+ 0.0` turns a negative zero into a positive one so `-0.0 ms` is never printed.
    format!("{:.1} ms", seconds * 1000.0 + 0.0)
}

fn bar(offset: f64, duration: f64, total: f64, open: bool) -> String {
    let (from, to) = if total > 0.0 {
        let scale = BAR_WIDTH as f64 / total;
        let from = ((offset * scale).floor().max(0.0) as usize).min(BAR_WIDTH - 1);
        let to =
            (((offset + duration) * scale).ceil().max(0.0) as usize).clamp(from + 1, BAR_WIDTH);
        (from, to)
    } else {
        (0, BAR_WIDTH)
    };
    let fill = if open { '=' } else { '#' };
    let mut out = String::with_capacity(BAR_WIDTH + 2);
    out.push('|');
    for i in 0..BAR_WIDTH {
        out.push(if (from..to).contains(&i) { fill } else { ' ' });
    }
    out.push('|');
    out
}

fn details(entity: &TraceEntity<'_>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let kind = if entity.is_segment() {
        entity.get("origin")
    } else {
        entity.get("namespace")
    };
    if let Some(kind) = kind.and_then(Value::as_str).filter(|k| !k.is_empty()) {
        parts.push(format!("[{}]", safe(kind)));
    }
    if let Some(http) = entity.get("http") {
        let request = http.get("request");
        let method = request
            .and_then(|r| r.get("method"))
            .and_then(Value::as_str);
        let url = request.and_then(|r| r.get("url")).and_then(Value::as_str);
        let status = http
            .get("response")
            .and_then(|r| r.get("status"))
            .and_then(Value::as_u64);
        let text: Vec<String> = [
            method.map(|m| safe(m).into_owned()),
            url.map(|u| safe(u).into_owned()),
            status.map(|s| s.to_string()),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !text.is_empty() {
            parts.push(text.join(" "));
        }
    }
    if let Some(op) = entity
        .get("aws")
        .and_then(|a| a.get("operation"))
        .and_then(Value::as_str)
    {
        parts.push(safe(op).into_owned());
    }
    for (flag, mark) in [
        ("error", "ERROR"),
        ("throttle", "THROTTLE"),
        ("fault", "FAULT"),
    ] {
        if entity.get(flag).and_then(Value::as_bool) == Some(true) {
            parts.push(mark.to_owned());
        }
    }
    if entity.is_in_progress() {
        parts.push("IN PROGRESS".to_owned());
    }
    parts.join("  ")
}

fn annotations(entity: &TraceEntity<'_>) -> Option<String> {
    let map = entity.get("annotations")?.as_object()?;
    if map.is_empty() {
        return None;
    }
    let mut pairs: Vec<(&String, &Value)> = map.iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    Some(
        pairs
            .into_iter()
            // A string value is shown as JSON (quoted, `"` escaped), then made safe: JSON
            // escapes C0 controls but leaves DEL, C1 and bidirectional controls as they are.
            .map(|(k, v)| format!("{}={}", safe(k), safe(&v.to_string())))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

fn exceptions(entity: &TraceEntity<'_>) -> Vec<String> {
    match entity.get("cause") {
        Some(Value::String(id)) => {
            vec![format!(
                "cause: exception {} (recorded in a subsegment)",
                safe(id)
            )]
        }
        Some(Value::Object(cause)) => cause
            .get("exceptions")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|ex| {
                        let kind = ex.get("type").and_then(Value::as_str);
                        let message = ex.get("message").and_then(Value::as_str);
                        let remote = ex.get("remote").and_then(Value::as_bool) == Some(true);
                        let mut text = String::from("exception");
                        if let Some(kind) = kind {
                            let _ = write!(text, " {}", safe(kind));
                        }
                        if let Some(message) = message {
                            let _ = write!(text, ": {}", safe(message));
                        }
                        if remote {
                            text.push_str(" (remote)");
                        }
                        text
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Renders the service map of these traces (see [`ServiceMap`]) as two tables: the nodes with
/// their kind, request count, error and fault rates and average latency, then the edges
/// (`caller -> callee`) with the same statistics as the caller saw them.
///
/// # Examples
///
/// ```
/// use serde_json::json;
///
/// let traces = xray_local::assemble([json!({
///     "name": "api", "id": "70de5b6f19ff9a0a", "start_time": 1.0, "end_time": 1.5,
///     "trace_id": "1-581cf771-a006649127e371903a2de979",
///     "subsegments": [{"name": "DynamoDB", "id": "70de5b6f19ff9a0b", "namespace": "aws",
///                      "start_time": 1.1, "end_time": 1.2}],
/// })])?;
/// let text = xray_local::render::service_map(&traces);
/// assert!(text.contains("api -> DynamoDB"));
/// # Ok::<(), xray_local::DocumentError>(())
/// ```
pub fn service_map(traces: &[Trace]) -> String {
    let map = ServiceMap::from_traces(traces);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Service map  {} trace{}  {} node{}  {} edge{}",
        traces.len(),
        plural(traces.len()),
        map.nodes().len(),
        plural(map.nodes().len()),
        map.edges().len(),
        plural(map.edges().len()),
    );
    let node_width = map
        .nodes()
        .iter()
        .map(|n| safe(n.name()).chars().count())
        .max()
        .unwrap_or(0)
        .clamp("NODE".len(), MAX_NAME_WIDTH);
    let kind_width = map
        .nodes()
        .iter()
        .map(|n| safe(n.kind()).chars().count())
        .max()
        .unwrap_or(0)
        .max("KIND".len());
    let _ = writeln!(
        out,
        "{:<node_width$}  {:<kind_width$}  {}",
        "NODE",
        "KIND",
        stats_header()
    );
    for node in map.nodes() {
        let _ = writeln!(
            out,
            "{:<node_width$}  {:<kind_width$}  {}",
            fit(&safe(node.name()), node_width),
            safe(node.kind()),
            stats_row(node.stats()),
        );
    }
    let labels: Vec<String> = map
        .edges()
        .iter()
        .map(|e| {
            let label = format!("{} -> {}", safe(e.from()), safe(e.to()));
            fit(&label, 2 * MAX_NAME_WIDTH)
        })
        .collect();
    let edge_width = labels
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
        .max("EDGE".len());
    out.push('\n');
    let _ = writeln!(out, "{:<edge_width$}  {}", "EDGE", stats_header());
    for (edge, label) in map.edges().iter().zip(&labels) {
        let _ = writeln!(out, "{label:<edge_width$}  {}", stats_row(edge.stats()));
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn stats_header() -> String {
    format!(
        "{:>8}  {:>7}  {:>8}  {:>7}  {:>11}",
        "REQUESTS", "ERROR", "THROTTLE", "FAULT", "AVG"
    )
}

fn stats_row(stats: &CallStats) -> String {
    let pct = |n: u64| {
        if stats.requests() == 0 {
            "-".to_owned()
        } else {
            format!("{:.1}%", 100.0 * n as f64 / stats.requests() as f64)
        }
    };
    format!(
        "{:>8}  {:>7}  {:>8}  {:>7}  {:>11}",
        stats.requests(),
        pct(stats.errors()),
        pct(stats.throttles()),
        pct(stats.faults()),
        stats.average_latency().map_or_else(|| "-".to_owned(), ms),
    )
}

// ===== safe text =====

/// Text from a document made safe to print on a terminal: every character a terminal acts on
/// instead of showing is written as a visible escape, and everything else is left as it is.
///
/// Escaped are the C0 controls (ESC, which starts every terminal command, among them), DEL,
/// the C1 controls U+0080 to U+009F (U+009B is a one-character CSI), the line and paragraph
/// separators U+2028 and U+2029, and the bidirectional controls U+061C, U+200E, U+200F,
/// U+202A to U+202E and U+2066 to U+2069, which reorder what is shown ("Trojan Source").
/// `\n`, `\r` and `\t` are written so; the others as `\u{1b}`, Rust's notation. So a name
/// never moves the cursor, retitles the window, clears the screen, or starts a line that
/// looks like output of this program. Backslashes are kept as they are: the escape is for a
/// reader, and a name that already reads `\u{1b}` was harmless.
///
/// Text with nothing to escape is returned as it is, without copying.
///
/// # Examples
///
/// ```
/// use xray_local::render::safe;
///
/// assert_eq!(safe("checkout"), "checkout");
/// assert_eq!(safe("a\u{1b}]0;owned\u{7}b"), r"a\u{1b}]0;owned\u{7}b");
/// assert_eq!(safe("api\nTrace 1-00000000-000000000000000000000000"),
///            r"api\nTrace 1-00000000-000000000000000000000000");
/// assert_eq!(safe("\u{202e}txt.exe"), r"\u{202e}txt.exe");
/// assert_eq!(safe("café ☕"), "café ☕");
/// ```
pub fn safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(acts_on_terminal) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if acts_on_terminal(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A trace as one line of JSON (the form of the read API, see [`Trace`]), safe to print on a
/// terminal: serde_json escapes the C0 controls, and the other characters [`safe`] escapes are
/// written as `\uXXXX` escapes too. They can only stand inside JSON strings, so the JSON means
/// the same; a JSON parser reads the document's text back exactly.
///
/// # Examples
///
/// ```
/// use serde_json::{Value, json};
///
/// let traces = xray_local::assemble([json!({
///     "name": "api\u{9b}2J\u{202e}", "id": "70de5b6f19ff9a0a", "start_time": 1.0,
///     "trace_id": "1-581cf771-a006649127e371903a2de979", "end_time": 2.0,
/// })])?;
/// let line = xray_local::render::json(&traces[0]);
/// assert!(line.contains(r#""name":"api\u009b2J\u202e""#));
/// let back: Value = serde_json::from_str(&line).unwrap();
/// assert_eq!(back["segments"][0]["name"], "api\u{9b}2J\u{202e}");
/// # Ok::<(), xray_local::DocumentError>(())
/// ```
pub fn json(trace: &Trace) -> String {
    let text = serde_json::to_string(trace).unwrap_or_default();
    if !text.chars().any(acts_on_terminal) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if acts_on_terminal(c) {
            // Every one of them is in the Basic Multilingual Plane: one `\uXXXX` each.
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether a terminal may act on `c` instead of showing it; see [`safe`].
fn acts_on_terminal(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{61c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}
