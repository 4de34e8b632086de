//! `cause`: what went wrong in a segment, built from Rust errors.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::error::Error;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::SegmentId;

use super::annotation::truncate_chars;

/// How many errors of a `source()` chain are recorded; the rest is dropped. Also stops a
/// `source()` implementation that loops.
const MAX_CHAIN: usize = 16;
/// How many exceptions one cause holds at most, across several recorded errors.
const MAX_EXCEPTIONS: usize = 32;
/// The longest message kept, in characters: error messages can embed whole payloads.
const MAX_MESSAGE_CHARS: usize = 2048;
/// Stack frames kept per exception; the Java SDK keeps 50 too.
pub(crate) const MAX_FRAMES: usize = 50;

/// The `cause` of a segment: either the id of an exception recorded in a descendant, or the
/// recorded exceptions themselves.
///
/// # Examples
///
/// ```
/// use xray_sdk::Cause;
///
/// let err = "x".parse::<u8>().unwrap_err();
/// let cause = Cause::from_typed_error(&err);
/// let details = cause.details().unwrap();
/// assert_eq!(details.exceptions[0].message.as_deref(), Some("invalid digit found in string"));
/// assert!(details.exceptions[0].kind.as_deref().unwrap().ends_with("ParseIntError"));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Cause {
    /// The id of an exception already described in a subsegment of this document.
    Reference(SegmentId),
    /// The exceptions, described here.
    Details(CauseDetails),
}

/// The object form of a [`Cause`].
///
/// # Examples
///
/// ```
/// use xray_sdk::SegmentId;
/// use xray_sdk::document::{CauseDetails, Exception};
///
/// let mut details = CauseDetails::default();
/// details.working_directory = Some("/srv/app".into());
/// details.exceptions.push(Exception::new(SegmentId::new(), "boom"));
/// assert_eq!(details.exceptions.len(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CauseDetails {
    /// The absolute working directory when the error happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    /// Libraries or modules loaded at that time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// The exceptions; the first is the one reported, each `cause` points at the next.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<Exception>,
}

/// One recorded error.
///
/// # Examples
///
/// ```
/// use xray_sdk::SegmentId;
/// use xray_sdk::document::Exception;
///
/// let mut e = Exception::new(SegmentId::from_u64(1), "table not found");
/// e.kind = Some("ResourceNotFoundException".into());
/// e.remote = true;
/// let json = serde_json::to_value(&e).unwrap();
/// assert_eq!(json["type"], "ResourceNotFoundException");
/// assert_eq!(json["id"], "0000000000000001");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Exception {
    /// The exception id, unique in the trace.
    pub id: SegmentId,
    /// The error message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The error type (`type` in JSON).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Whether a downstream service returned the error.
    #[serde(default, skip_serializing_if = "is_false")]
    pub remote: bool,
    /// How many stack frames were left out of `stack`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub truncated: u32,
    /// How many exceptions were skipped between this one and the one it caused.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: u32,
    /// The id of the exception that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<SegmentId>,
    /// The stack, innermost frame first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stack: Vec<StackFrame>,
}

/// One frame of an exception's stack.
///
/// # Examples
///
/// ```
/// use xray_sdk::document::StackFrame;
///
/// let text = "   0: app::render\n             at ./src/render.rs:88:5\n";
/// let (frames, truncated) = StackFrame::parse_backtrace(text, 10);
/// assert_eq!(frames[0].label.as_deref(), Some("app::render"));
/// assert_eq!(frames[0].path.as_deref(), Some("./src/render.rs"));
/// assert_eq!(frames[0].line, Some(88));
/// assert_eq!(truncated, 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StackFrame {
    /// The source file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The line in `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

// ===== impl Cause =====

impl Cause {
    /// Describes `err` and its `source()` chain, one exception per error, each linked to the
    /// next by `cause`. Types are unknown behind `dyn Error`, so no `type` is written; see
    /// [`Cause::from_typed_error`].
    pub fn from_error(err: &(dyn Error + 'static)) -> Self {
        Self::Details(CauseDetails::from_chain(err, None))
    }

    /// Like [`Cause::from_error`], with the type of the outermost error taken from
    /// [`std::any::type_name`]. Errors further down the chain are `dyn Error` and get no type.
    pub fn from_typed_error<E: Error + 'static>(err: &E) -> Self {
        Self::Details(CauseDetails::from_chain(
            err,
            Some(std::any::type_name::<E>()),
        ))
    }

    /// Like [`Cause::from_error`], with the type of the outermost error given by the caller.
    pub fn from_error_with_type(err: &(dyn Error + 'static), type_name: &str) -> Self {
        Self::Details(CauseDetails::from_chain(err, Some(type_name)))
    }

    /// Adds the frames of a captured backtrace to the outermost exception. A backtrace that was
    /// not captured (`RUST_BACKTRACE` unset) adds nothing.
    pub fn with_backtrace(mut self, backtrace: &Backtrace) -> Self {
        if backtrace.status() != BacktraceStatus::Captured {
            return self;
        }
        if let Self::Details(d) = &mut self
            && let Some(first) = d.exceptions.first_mut()
        {
            // A few frames more than kept, since the capture's own frames are dropped below.
            let (mut frames, mut truncated) =
                StackFrame::parse_backtrace(&backtrace.to_string(), MAX_FRAMES + 8);
            let own = frames
                .iter()
                .take_while(|f| f.label.as_deref().is_some_and(is_capture_frame))
                .count();
            frames.drain(..own);
            if frames.len() > MAX_FRAMES {
                truncated = truncated.saturating_add((frames.len() - MAX_FRAMES) as u32);
                frames.truncate(MAX_FRAMES);
            }
            first.stack = frames;
            first.truncated = truncated;
        }
        self
    }

    /// Marks the outermost exception as returned by a downstream service.
    pub fn with_remote(mut self, remote: bool) -> Self {
        if let Self::Details(d) = &mut self
            && let Some(first) = d.exceptions.first_mut()
        {
            first.remote = remote;
        }
        self
    }

    /// The details, unless this is a reference.
    pub fn details(&self) -> Option<&CauseDetails> {
        match self {
            Self::Details(d) => Some(d),
            Self::Reference(_) => None,
        }
    }

    /// The id of the outermost exception: the referenced one, or the first described.
    pub fn exception_id(&self) -> Option<SegmentId> {
        match self {
            Self::Reference(id) => Some(*id),
            Self::Details(d) => d.exceptions.first().map(|e| e.id),
        }
    }

    /// Folds `other` into `self`: exceptions accumulate (up to a bound), a reference is
    /// replaced by details.
    pub(crate) fn merge(&mut self, other: Cause) {
        match (&mut *self, other) {
            (Self::Details(mine), Self::Details(theirs)) => {
                if mine.working_directory.is_none() {
                    mine.working_directory = theirs.working_directory;
                }
                let room = MAX_EXCEPTIONS.saturating_sub(mine.exceptions.len());
                mine.exceptions
                    .extend(theirs.exceptions.into_iter().take(room));
            }
            (Self::Details(_), Self::Reference(_)) => {}
            (this, other) => *this = other,
        }
    }

    /// Describes an error known only by its message (an error type that implements `Display`
    /// but not `Error`, a boxed middleware error, a panic), with its type if known and the
    /// `source()` chain below it. Needs no `'static` bound on the error itself, since only its
    /// text is kept.
    ///
    /// # Examples
    ///
    /// ```
    /// use xray_sdk::Cause;
    ///
    /// let cause = Cause::from_message(&"connection reset", Some("hyper::Error"), None);
    /// let ex = &cause.details().unwrap().exceptions[0];
    /// assert_eq!(ex.message.as_deref(), Some("connection reset"));
    /// assert_eq!(ex.kind.as_deref(), Some("hyper::Error"));
    /// ```
    pub fn from_message(
        message: &dyn fmt::Display,
        type_name: Option<&str>,
        source: Option<&(dyn Error + 'static)>,
    ) -> Self {
        Self::Details(CauseDetails::from_parts(message, type_name, source))
    }
}

impl CauseDetails {
    fn from_chain(err: &(dyn Error + 'static), top_type: Option<&str>) -> Self {
        Self::from_parts(err, top_type, err.source())
    }

    fn from_parts(
        top: &dyn fmt::Display,
        top_type: Option<&str>,
        source: Option<&(dyn Error + 'static)>,
    ) -> Self {
        let mut exceptions: Vec<Exception> = Vec::new();
        let mut current = Some(top);
        let mut below = source;
        while let Some(e) = current {
            if exceptions.len() == MAX_CHAIN {
                break;
            }
            let mut message = e.to_string();
            truncate_chars(&mut message, MAX_MESSAGE_CHARS);
            let mut ex = Exception::new(SegmentId::new(), message);
            if exceptions.is_empty() {
                ex.kind = top_type.map(str::to_owned);
            }
            if let Some(prev) = exceptions.last_mut() {
                prev.cause = Some(ex.id);
            }
            exceptions.push(ex);
            current = below.map(|b| b as &dyn fmt::Display);
            below = below.and_then(Error::source);
        }
        Self {
            working_directory: std::env::current_dir()
                .ok()
                .and_then(|p| p.to_str().map(str::to_owned)),
            paths: Vec::new(),
            exceptions,
        }
    }
}

impl Exception {
    /// An exception with this id and message and nothing else.
    pub fn new(id: SegmentId, message: impl Into<String>) -> Self {
        Self {
            id,
            message: Some(message.into()),
            kind: None,
            remote: false,
            truncated: 0,
            skipped: 0,
            cause: None,
            stack: Vec::new(),
        }
    }
}

impl StackFrame {
    /// A frame with all three fields.
    pub fn new(label: impl Into<String>, path: impl Into<String>, line: u32) -> Self {
        Self {
            path: Some(path.into()),
            line: Some(line),
            label: Some(label.into()),
        }
    }

    /// Reads the text of a `std::backtrace::Backtrace` (its `Display` output) into at most
    /// `max` frames, and returns them with the number of frames left out.
    ///
    /// Each frame is a numbered line `N: label`, optionally followed by `at path:line:column`.
    /// Lines in any other shape are skipped, so an unexpected format yields fewer frames, never
    /// an error.
    pub fn parse_backtrace(text: &str, max: usize) -> (Vec<StackFrame>, u32) {
        let mut frames: Vec<StackFrame> = Vec::new();
        let mut total: u32 = 0;
        let mut last_kept = false;
        for line in text.lines() {
            let line = line.trim();
            if let Some(loc) = line.strip_prefix("at ") {
                if last_kept
                    && let Some(frame) = frames.last_mut()
                    && frame.path.is_none()
                {
                    let (path, line_no) = split_location(loc);
                    frame.path = Some(path.to_owned());
                    frame.line = line_no;
                }
                continue;
            }
            let Some((num, label)) = line.split_once(": ") else {
                last_kept = false;
                continue;
            };
            if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
                last_kept = false;
                continue;
            }
            total = total.saturating_add(1);
            last_kept = frames.len() < max;
            if last_kept {
                frames.push(StackFrame {
                    path: None,
                    line: None,
                    label: Some(label.trim().to_owned()),
                });
            }
        }
        let truncated = total.saturating_sub(frames.len() as u32);
        (frames, truncated)
    }
}

/// Frames of `Backtrace::capture` itself, which say nothing about the error.
fn is_capture_frame(label: &str) -> bool {
    label.starts_with("std::backtrace")
        || label.starts_with("<std::backtrace")
        || label.starts_with("std::backtrace_rs")
}

/// `path:line:column` -> (`path`, `line`); a location without numbers is all path.
fn split_location(loc: &str) -> (&str, Option<u32>) {
    let mut parts = loc.rsplitn(3, ':');
    let last = parts.next();
    let mid = parts.next();
    let rest = parts.next();
    match (rest, mid, last) {
        (Some(path), Some(line), Some(col))
            if line.parse::<u32>().is_ok() && col.parse::<u32>().is_ok() =>
        {
            (path, line.parse().ok())
        }
        _ => match loc.rsplit_once(':') {
            Some((path, line)) if line.parse::<u32>().is_ok() => (path, line.parse().ok()),
            _ => (loc, None),
        },
    }
}

impl Serialize for Cause {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Reference(id) => id.serialize(s),
            Self::Details(d) => d.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Cause {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Cause;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an exception id or a cause object")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Cause, E> {
                v.parse().map(Cause::Reference).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<Cause, A::Error> {
                CauseDetails::deserialize(de::value::MapAccessDeserializer::new(a))
                    .map(Cause::Details)
            }
        }
        d.deserialize_any(V)
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}
