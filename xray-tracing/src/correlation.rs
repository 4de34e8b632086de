//! Log correlation: the trace id and entity id of the current X-Ray context on every log line.

use std::cell::RefCell;
use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use xray_sdk::{SegmentId, TraceId};

// ===== impl LogFields =====

/// The ids that tie a log line to X-Ray: the trace id, and the id of the segment or subsegment
/// current when the line was written. Returned by [`log_fields`], for formatters of your own.
///
/// It displays as `<trace id>@<entity id>`, the form the AWS X-Ray SDK for Java puts in the
/// logging MDC under `AWS-XRAY-TRACE-ID` ([`COMBINED_KEY`](Self::COMBINED_KEY)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogFields {
    trace_id: TraceId,
    entity_id: SegmentId,
    sampled: bool,
}

impl LogFields {
    /// `xray_trace_id`: the key [`XRayEventFormat`] gives the trace id by default, the one AWS
    /// Lambda Powertools loggers (Python, Java, TypeScript) give it too, so one query finds the
    /// lines of both.
    pub const TRACE_ID_KEY: &'static str = "xray_trace_id";

    /// `xray_entity_id`: the key [`XRayEventFormat`] gives the entity id by default.
    pub const ENTITY_ID_KEY: &'static str = "xray_entity_id";

    /// `AWS-XRAY-TRACE-ID`: the MDC key of the AWS X-Ray SDK for Java (`SLF4JSegmentListener`,
    /// `Log4JSegmentListener`), for [`XRayEventFormat::with_combined_key`].
    pub const COMBINED_KEY: &'static str = "AWS-XRAY-TRACE-ID";

    /// The trace id.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The id of the segment or subsegment current when the line was written.
    pub fn entity_id(&self) -> SegmentId {
        self.entity_id
    }

    /// Whether the trace is sampled: when it is not, X-Ray holds no trace for these ids, but
    /// the trace id still finds the request's lines in every service it reached.
    pub fn is_sampled(&self) -> bool {
        self.sampled
    }
}

impl fmt::Display for LogFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.trace_id, self.entity_id)
    }
}

/// The ids of the X-Ray context current on this thread, for a log line; `None` outside any
/// segment or subsegment.
///
/// Unsampled requests have real ids too: see [Unsampled requests](crate#unsampled-requests).
/// The one exception is the all-zero trace id `1-00000000-000000000000000000000000`: the no-op
/// id the Python and Go SDKs give unsampled requests by default (`AWS_XRAY_NOOP_ID`), and so
/// may send downstream, and the one [`Subsegment::none`](xray_sdk::Subsegment::none) carries.
/// It would match every such request, so it gives `None`.
///
/// Reading the context takes no lock and allocates nothing.
///
/// # Examples
///
/// ```
/// use xray_sdk::{InMemoryEmitter, Recorder};
///
/// let recorder = Recorder::builder().with_emitter(InMemoryEmitter::new()).build()?;
/// assert!(xray_tracing_subscriber::log_fields().is_none());
///
/// let segment = recorder.begin_segment("worker");
/// let _current = segment.enter();
/// let ids = xray_tracing_subscriber::log_fields().unwrap();
/// assert_eq!(ids.trace_id(), segment.trace_id());
/// assert_eq!(ids.entity_id(), segment.id());
/// assert_eq!(ids.to_string(), format!("{}@{}", segment.trace_id(), segment.id()));
/// # Ok::<(), xray_sdk::ConfigError>(())
/// ```
pub fn log_fields() -> Option<LogFields> {
    let entity = xray_sdk::current()?;
    let trace_id = entity.trace_id();
    if trace_id.random() == 0 {
        return None;
    }
    Some(LogFields {
        trace_id,
        entity_id: entity.id(),
        sampled: entity.is_sampled(),
    })
}

// ===== impl XRayEventFormat =====

/// An event formatter for `tracing-subscriber`'s fmt layer that adds the trace id and the
/// entity id of the current X-Ray context to every line written inside one; see
/// [the crate documentation](crate#log-correlation).
///
/// It wraps the formatter that writes the line (`fmt::format().json()`, `fmt::format()`, or
/// any [`FormatEvent`]), which [`map_event_format`] hands over once the fmt layer is
/// configured:
///
/// - [`json`](Self::json): the ids become the last members of the line's JSON object,
///   `"xray_trace_id":"1-5759e988-bd862e3fe1be46a994272793","xray_entity_id":"53995c3f42cd8ad8"`.
///   A line that is not one JSON object on one line is written unchanged.
/// - [`text`](Self::text): the ids end the line as tracing's own fields do,
///   `… xray_trace_id=1-5759e988-bd862e3fe1be46a994272793 xray_entity_id=53995c3f42cd8ad8`;
///   with ANSI colors on, or ANSI sanitization off, they begin it instead (below).
///
/// Outside any X-Ray context, and for the all-zero no-op trace id, the line is exactly what the
/// inner formatter writes.
///
/// # Cost
///
/// Outside a context: one thread-local read. Inside: the inner formatter writes into a
/// per-thread buffer, reused from line to line (one kept above 64 KiB is freed), and the line
/// is copied out with the ids spliced in; nothing is allocated once the buffer has grown to the
/// longest line. A text line for a writer with ANSI colors, or with ANSI sanitization turned
/// off, is not buffered: `tracing-subscriber` can only build a plain, sanitizing writer around
/// a buffer, so such a line gets the ids at its start, and keeps its colors and escapes.
///
/// # Examples
///
/// Text lines, for a writer without colors:
///
/// ```
/// use tracing_subscriber::fmt;
/// use tracing_subscriber::prelude::*;
/// use xray_tracing_subscriber::XRayEventFormat;
///
/// let subscriber = tracing_subscriber::registry().with(
///     fmt::layer()
///         .with_ansi(false)
///         .with_target(false)
///         .map_event_format(XRayEventFormat::text),
/// );
/// # let _ = subscriber;
/// // 2026-12-01T12:00:00.000000Z  INFO reserved order_id=42 xray_trace_id=1-… xray_entity_id=…
/// ```
///
/// The Java SDK's single field, `AWS-XRAY-TRACE-ID` with `<trace id>@<entity id>`:
///
/// ```
/// use tracing_subscriber::fmt;
/// use tracing_subscriber::prelude::*;
/// use xray_tracing_subscriber::{LogFields, XRayEventFormat};
///
/// let subscriber = tracing_subscriber::registry().with(
///     fmt::layer()
///         .json()
///         .map_event_format(|f| {
///             XRayEventFormat::json(f).with_combined_key(LogFields::COMBINED_KEY)
///         }),
/// );
/// # let _ = subscriber;
/// // {…,"AWS-XRAY-TRACE-ID":"1-5759e988-bd862e3fe1be46a994272793@53995c3f42cd8ad8"}
/// ```
///
/// [`map_event_format`]: tracing_subscriber::fmt::Layer::map_event_format
#[derive(Debug, Clone)]
pub struct XRayEventFormat<F> {
    inner: F,
    shape: Shape,
    keys: Keys,
}

/// What the inner formatter writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Json,
    Text,
}

/// How the ids are named.
#[derive(Debug, Clone, Copy)]
enum Keys {
    Separate {
        trace: &'static str,
        entity: &'static str,
    },
    Combined(&'static str),
}

const DEFAULT_KEYS: Keys = Keys::Separate {
    trace: LogFields::TRACE_ID_KEY,
    entity: LogFields::ENTITY_ID_KEY,
};

/// The most a thread's line buffer keeps between lines; a larger one is freed.
const MAX_RETAINED: usize = 64 * 1024;

thread_local! {
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

impl<F> XRayEventFormat<F> {
    /// Wraps a formatter that writes each event as one JSON object on one line
    /// (`fmt::format().json()`, with `tracing-subscriber`'s `json` feature): the ids become
    /// top-level members of that object.
    pub fn json(inner: F) -> Self {
        Self {
            inner,
            shape: Shape::Json,
            keys: DEFAULT_KEYS,
        }
    }

    /// Wraps a formatter that writes text lines (`fmt::format()`, `.compact()`, `.pretty()`):
    /// the ids are written as `key=value` fields at the end of the line.
    pub fn text(inner: F) -> Self {
        Self {
            inner,
            shape: Shape::Text,
            keys: DEFAULT_KEYS,
        }
    }

    /// Names the two fields, instead of [`xray_trace_id`](LogFields::TRACE_ID_KEY) and
    /// [`xray_entity_id`](LogFields::ENTITY_ID_KEY). In JSON a key is escaped as needed; in
    /// text it is written as given, so keep it to characters that need no quoting.
    pub fn with_keys(mut self, trace_id: &'static str, entity_id: &'static str) -> Self {
        self.keys = Keys::Separate {
            trace: trace_id,
            entity: entity_id,
        };
        self
    }

    /// Writes one field, `key`, holding `<trace id>@<entity id>`, instead of two: with
    /// [`LogFields::COMBINED_KEY`], what the AWS X-Ray SDK for Java puts in the logging MDC
    /// (its `SLF4JSegmentListener` with an empty prefix; by default that listener also
    /// repeats the key in the value, `AWS-XRAY-TRACE-ID: 1-…@…`).
    pub fn with_combined_key(mut self, key: &'static str) -> Self {
        self.keys = Keys::Combined(key);
        self
    }

    /// The wrapped formatter.
    pub fn get_ref(&self) -> &F {
        &self.inner
    }

    /// The wrapped formatter, mutably.
    pub fn get_mut(&mut self) -> &mut F {
        &mut self.inner
    }

    /// Unwraps the formatter.
    pub fn into_inner(self) -> F {
        self.inner
    }

    /// Writes `line`, as the inner formatter wrote it, with the ids spliced in.
    fn splice(&self, line: &str, ids: LogFields, out: &mut Writer<'_>) -> fmt::Result {
        match self.shape {
            Shape::Json => {
                let Some((object, close)) = split_json_object(line) else {
                    return out.write_str(line);
                };
                out.write_str(object)?;
                // An empty object takes no comma.
                if object.get(1..).is_some_and(|m| !m.trim().is_empty()) {
                    out.write_char(',')?;
                }
                write_json_members(out, self.keys, ids)?;
                out.write_str(close)
            }
            Shape::Text => {
                let (text, newline) = match line.strip_suffix('\n') {
                    Some(text) => (text, "\n"),
                    None => (line, ""),
                };
                if text.is_empty() {
                    return out.write_str(line);
                }
                out.write_str(text)?;
                out.write_char(' ')?;
                write_text_fields(out, self.keys, ids)?;
                out.write_str(newline)
            }
        }
    }
}

/// Adds the ids of the current X-Ray context to the line.
///
/// **When:** for every event the fmt layer writes (after its filters).
///
/// **Error Behavior:** the ids never fail a line. Outside a context, or when the line buffer
/// is unavailable (an event logged while a line is being formatted on this thread, or a thread
/// being torn down), the inner formatter writes the line unchanged, straight to the writer. An
/// error is returned only when the inner formatter returns one (the line is then dropped by the
/// fmt layer, as it would be without this wrapper) or when the writer refuses text.
impl<S, N, F> FormatEvent<S, N> for XRayEventFormat<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(ids) = log_fields() else {
            return self.inner.format_event(ctx, writer, event);
        };
        // A buffered line goes through `Writer::new`, plain and sanitizing: a text line that
        // wants colors or raw escapes is written straight through, the ids first.
        if self.shape == Shape::Text
            && (writer.has_ansi_escapes() || !writer.sanitizes_ansi_escapes())
        {
            write_text_fields(&mut writer, self.keys, ids)?;
            writer.write_char(' ')?;
            return self.inner.format_event(ctx, writer, event);
        }
        let buffered = LINE.try_with(|line| {
            let Ok(mut line) = line.try_borrow_mut() else {
                return None;
            };
            line.clear();
            let mut result = self.inner.format_event(ctx, Writer::new(&mut *line), event);
            if result.is_ok() {
                result = self.splice(line.as_str(), ids, &mut writer);
            }
            if line.capacity() > MAX_RETAINED {
                *line = String::new();
            } else {
                line.clear();
            }
            Some(result)
        });
        match buffered {
            Ok(Some(result)) => result,
            _ => self.inner.format_event(ctx, writer, event),
        }
    }
}

/// `line` cut before its closing brace, when it is one JSON object on one line (trailing
/// whitespace and the newline go after the brace).
fn split_json_object(line: &str) -> Option<(&str, &str)> {
    let object = line.trim_end();
    let members = object.strip_prefix('{')?.strip_suffix('}')?;
    if object.contains('\n') {
        return None;
    }
    // An object's first member starts with its key's quote.
    let first = members.trim_start();
    if !(first.is_empty() || first.starts_with('"')) {
        return None;
    }
    let close = object.len().checked_sub(1)?;
    Some((line.get(..close)?, line.get(close..)?))
}

fn write_json_members(out: &mut Writer<'_>, keys: Keys, ids: LogFields) -> fmt::Result {
    match keys {
        Keys::Separate { trace, entity } => {
            write_json_key(out, trace)?;
            write!(out, "\"{}\",", ids.trace_id)?;
            write_json_key(out, entity)?;
            write!(out, "\"{}\"", ids.entity_id)
        }
        Keys::Combined(key) => {
            write_json_key(out, key)?;
            write!(out, "\"{ids}\"")
        }
    }
}

/// `"key":`, with the key escaped for JSON. The ids are hex, `-` and `@`: they need none.
fn write_json_key(out: &mut Writer<'_>, key: &str) -> fmt::Result {
    out.write_char('"')?;
    for c in key.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            c if c.is_control() => write!(out, "\\u{:04x}", u32::from(c))?,
            c => out.write_char(c)?,
        }
    }
    out.write_str("\":")
}

fn write_text_fields(out: &mut Writer<'_>, keys: Keys, ids: LogFields) -> fmt::Result {
    match keys {
        Keys::Separate { trace, entity } => {
            write!(out, "{trace}={} {entity}={}", ids.trace_id, ids.entity_id)
        }
        Keys::Combined(key) => write!(out, "{key}={ids}"),
    }
}

#[cfg(test)]
mod tests {
    use super::split_json_object;

    #[test]
    #[rustfmt::skip]
    fn json_objects_are_cut_before_their_closing_brace() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("{\"a\":1}\n",      Some(("{\"a\":1", "}\n"))),
            ("{\"a\":1}",        Some(("{\"a\":1", "}"))),
            ("{\"a\":1}  \r\n",  Some(("{\"a\":1", "}  \r\n"))),
            ("{}\n",             Some(("{", "}\n"))),
            ("{ }\n",            Some(("{ ", "}\n"))),
            ("",                 None),
            ("\n",               None),
            ("}\n",              None),
            ("{\n",              None),
            ("[1]\n",            None),
            ("{a}\n",            None),
            ("{\"a\":1}\n{\"b\":2}\n", None),
            (" INFO x: {\"a\":1}\n",   None),
        ];
        for (line, expected) in cases {
            assert_eq!(split_json_object(line), *expected, "{line:?}");
        }
    }
}
