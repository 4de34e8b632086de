//! Local sampling rules: the official JSON document (versions 1 and 2) and a builder.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::SamplingRequest;
use super::wildcard::wildcard_match;

/// Rules files larger than this are refused rather than read into memory: real rule documents
/// are a few kilobytes.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

// ===== SamplingRules =====

/// An ordered list of local sampling rules plus the default rule.
///
/// Load the official local rules document (the format all X-Ray SDKs read, versions 1 and 2)
/// with [`from_json`](Self::from_json) or [`from_file`](Self::from_file), or build the rules in
/// code with [`builder`](Self::builder). [`SamplingRules::default`] is the SDKs' built-in
/// document: one request per second, then 5 % of the rest.
///
/// Loading is strict, as the Python and Go SDKs are: the document must be plain JSON (no
/// comments, which only Java accepts), `version` must be the integer 1 or 2, `default` is
/// required and takes only `fixed_target` and `rate`, and every other rule needs its pattern
/// fields (`host` in version 2, `service_name` in version 1; a version 2 rule naming
/// `service_name` or a version 1 rule naming `host` is refused, as Go does), `http_method`,
/// `url_path`, an integer `fixed_target >= 0` and a `rate` in `[0, 1]`. Other attributes (`id`,
/// anything unknown) are ignored, as Python, Go and Java do.
///
/// # Examples
///
/// ```
/// use xray_sdk::sampling::{RulesErrorKind, SamplingRule, SamplingRules};
///
/// let from_json = SamplingRules::from_json(r#"{
///     "version": 2,
///     "rules": [{ "description": "health", "host": "*", "http_method": "GET",
///                 "url_path": "/health*", "fixed_target": 0, "rate": 0.0 }],
///     "default": { "fixed_target": 1, "rate": 0.05 }
/// }"#)?;
///
/// let built = SamplingRules::builder()
///     .with_rule(
///         SamplingRule::new("*", "GET", "/health*")
///             .with_description("health")
///             .with_fixed_target(0)
///             .with_rate(0.0),
///     )
///     .with_default(1, 0.05)
///     .build()?;
/// assert_eq!(from_json, built);
///
/// let err = SamplingRules::from_json(r#"{"version": 2, "rules": [], "default": {"fixed_target": 1, "rate": 5}}"#)
///     .unwrap_err();
/// assert_eq!(err.kind(), RulesErrorKind::OutOfRange);
/// assert_eq!(err.field(), Some("rate"));
/// # Ok::<(), xray_sdk::sampling::RulesError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingRules {
    rules: Vec<SamplingRule>,
    default_fixed_target: u64,
    default_rate: f64,
}

impl Default for SamplingRules {
    /// The built-in rules of every X-Ray SDK: no rule, and a default of one request per second
    /// plus 5 % of the rest.
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            default_fixed_target: 1,
            default_rate: 0.05,
        }
    }
}

impl SamplingRules {
    /// A builder starting from no rule and the built-in default (1 per second, then 5 %).
    pub fn builder() -> SamplingRulesBuilder {
        SamplingRulesBuilder {
            rules: Vec::new(),
            default_fixed_target: 1,
            default_rate: 0.05,
        }
    }

    /// Parses a local rules document.
    ///
    /// # Errors
    ///
    /// A [`RulesError`] naming the rule and field at fault when the document is not valid JSON
    /// or breaks a rule of the format (see the type documentation).
    pub fn from_json(json: &str) -> Result<Self, RulesError> {
        let value: Value = serde_json::from_str(json).map_err(|e| {
            RulesError::new(RulesErrorKind::Json, Position::Document, None, "")
                .with_line_column(e.line(), e.column())
                .with_source(e)
        })?;
        parse_document(&value)
    }

    /// Reads and parses a local rules file.
    ///
    /// # Errors
    ///
    /// [`RulesErrorKind::Io`] when the file cannot be read, [`RulesErrorKind::TooLarge`] above
    /// 1 MiB, otherwise as [`from_json`](Self::from_json).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, RulesError> {
        let path = path.as_ref();
        let io_error = |e: std::io::Error| {
            RulesError::new(RulesErrorKind::Io, Position::Document, None, "")
                .with_path(path)
                .with_source(e)
        };
        let file = std::fs::File::open(path).map_err(io_error)?;
        let mut json = String::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_string(&mut json)
            .map_err(io_error)?;
        if json.len() as u64 > MAX_FILE_BYTES {
            return Err(RulesError::new(
                RulesErrorKind::TooLarge,
                Position::Document,
                None,
                "at most 1 MiB",
            )
            .with_path(path));
        }
        Self::from_json(&json).map_err(|e| e.with_path(path))
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[SamplingRule] {
        &self.rules
    }

    /// The default rule's reservoir: requests sampled per second before its rate applies.
    pub fn default_fixed_target(&self) -> u64 {
        self.default_fixed_target
    }

    /// The default rule's rate.
    pub fn default_rate(&self) -> f64 {
        self.default_rate
    }

    /// The position of the first rule that applies to `request`, or `None` for the default
    /// rule.
    ///
    /// A request that carries none of host, method and path has nothing a local rule looks at;
    /// it goes to the default rule, as a request-less decision does in the Python and Java SDKs,
    /// rather than matching the first rule through implicit matches.
    pub fn matching_rule(&self, request: &SamplingRequest<'_>) -> Option<usize> {
        if request.host().is_none() && request.method().is_none() && request.url_path().is_none() {
            return None;
        }
        self.rules.iter().position(|rule| rule.matches(request))
    }
}

// ===== SamplingRule =====

/// One local sampling rule: three wildcard patterns and what to sample when they match.
///
/// # Examples
///
/// ```
/// use xray_sdk::sampling::{SamplingRequest, SamplingRule};
///
/// let rule = SamplingRule::new("*.example.com", "POST", "/v1/orders*")
///     .with_fixed_target(2)
///     .with_rate(0.2);
/// let request = SamplingRequest::new()
///     .with_host("api.example.com")
///     .with_method("post")
///     .with_url_path("/v1/orders/17");
/// assert!(rule.matches(&request));
/// // An attribute the request does not carry matches any pattern.
/// assert!(rule.matches(&SamplingRequest::new().with_method("POST")));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingRule {
    description: Option<String>,
    host: String,
    http_method: String,
    url_path: String,
    fixed_target: u64,
    rate: f64,
}

impl SamplingRule {
    /// A rule matching `host`, `http_method` and `url_path` (wildcard patterns, see
    /// [`wildcard_match`](crate::sampling::wildcard_match)) that samples nothing until
    /// [`with_fixed_target`](Self::with_fixed_target) or [`with_rate`](Self::with_rate) say so.
    pub fn new(
        host: impl Into<String>,
        http_method: impl Into<String>,
        url_path: impl Into<String>,
    ) -> Self {
        Self {
            description: None,
            host: host.into(),
            http_method: http_method.into(),
            url_path: url_path.into(),
            fixed_target: 0,
            rate: 0.0,
        }
    }

    /// Sets the description, shown by [`Sampler::explain`](crate::sampling::Sampler::explain).
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Sets how many matching requests per second are sampled unconditionally.
    pub fn with_fixed_target(mut self, fixed_target: u64) -> Self {
        self.fixed_target = fixed_target;
        self
    }

    /// Sets the probability, in `[0, 1]`, of sampling a matching request once the per-second
    /// target is used up. Checked by [`SamplingRulesBuilder::build`].
    pub fn with_rate(mut self, rate: f64) -> Self {
        self.rate = rate;
        self
    }

    /// The description.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The host pattern (`host` in version 2 documents, `service_name` in version 1).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The HTTP method pattern.
    pub fn http_method(&self) -> &str {
        &self.http_method
    }

    /// The URL path pattern.
    pub fn url_path(&self) -> &str {
        &self.url_path
    }

    /// Requests sampled per second before the rate applies.
    pub fn fixed_target(&self) -> u64 {
        self.fixed_target
    }

    /// The probability applied once the per-second target is used up.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Whether the rule applies to `request`: each of host, method and path either is absent
    /// from the request or matches the rule's pattern, case-insensitively.
    pub fn matches(&self, request: &SamplingRequest<'_>) -> bool {
        let applies = |pattern: &str, value: Option<&str>| {
            value.is_none_or(|value| wildcard_match(pattern, value))
        };
        applies(&self.host, request.host())
            && applies(&self.http_method, request.method())
            && applies(&self.url_path, request.url_path())
    }
}

// ===== SamplingRulesBuilder =====

/// Builds [`SamplingRules`] in code; see [`SamplingRules::builder`].
///
/// # Examples
///
/// ```
/// use xray_sdk::sampling::{SamplingRule, SamplingRules};
///
/// let rules = SamplingRules::builder()
///     .with_rule(SamplingRule::new("*", "POST", "/orders*").with_fixed_target(5).with_rate(0.1))
///     .with_default(0, 0.01)
///     .build()?;
/// assert_eq!(rules.rules().len(), 1);
/// assert_eq!(rules.default_rate(), 0.01);
/// # Ok::<(), xray_sdk::sampling::RulesError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SamplingRulesBuilder {
    rules: Vec<SamplingRule>,
    default_fixed_target: u64,
    default_rate: f64,
}

impl SamplingRulesBuilder {
    /// Appends a rule; rules are tried in the order they were added.
    pub fn with_rule(mut self, rule: SamplingRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Sets the default rule, applied when no rule matches.
    pub fn with_default(mut self, fixed_target: u64, rate: f64) -> Self {
        self.default_fixed_target = fixed_target;
        self.default_rate = rate;
        self
    }

    /// Checks the rules as a document would be checked.
    ///
    /// # Errors
    ///
    /// [`RulesErrorKind::OutOfRange`] for a rate outside `[0, 1]`,
    /// [`RulesErrorKind::MissingField`] for an empty pattern.
    pub fn build(self) -> Result<SamplingRules, RulesError> {
        check_rate(Position::Default, self.default_rate)?;
        for (index, rule) in self.rules.iter().enumerate() {
            let at = Position::Rule(index);
            for (field, pattern) in [
                ("host", &rule.host),
                ("http_method", &rule.http_method),
                ("url_path", &rule.url_path),
            ] {
                if pattern.is_empty() {
                    return Err(missing(at, field));
                }
            }
            check_rate(at, rule.rate)?;
        }
        Ok(SamplingRules {
            rules: self.rules,
            default_fixed_target: self.default_fixed_target,
            default_rate: self.default_rate,
        })
    }
}

// ===== parsing =====

const PATTERN: &str = "a non-empty wildcard pattern string";
const TARGET: &str = "a non-negative integer";
const RATE: &str = "a number between 0 and 1";

fn parse_document(value: &Value) -> Result<SamplingRules, RulesError> {
    let doc = value.as_object().ok_or_else(|| {
        RulesError::new(
            RulesErrorKind::WrongType,
            Position::Document,
            None,
            "a JSON object",
        )
    })?;
    let version = match present(doc, "version") {
        None => return Err(missing(Position::Document, "version")),
        Some(v) => match v.as_u64() {
            Some(n @ (1 | 2)) => n,
            Some(_) => {
                return Err(RulesError::new(
                    RulesErrorKind::UnsupportedVersion,
                    Position::Document,
                    Some("version"),
                    "1 or 2",
                ));
            }
            None => {
                return Err(wrong_type(
                    Position::Document,
                    "version",
                    "the integer 1 or 2",
                ));
            }
        },
    };

    let default = match present(doc, "default") {
        None => return Err(missing(Position::Document, "default")),
        Some(v) => v
            .as_object()
            .ok_or_else(|| wrong_type(Position::Document, "default", "a JSON object"))?,
    };
    for field in ["host", "service_name", "http_method", "url_path"] {
        if present(default, field).is_some() {
            return Err(RulesError::new(
                RulesErrorKind::NotAllowed,
                Position::Default,
                Some(field),
                "in the default rule, which takes only `fixed_target` and `rate`",
            ));
        }
    }
    let default_fixed_target = fixed_target(default, Position::Default)?;
    let default_rate = rate(default, Position::Default)?;

    let rules = match present(doc, "rules") {
        None => Vec::new(),
        Some(v) => {
            let items = v
                .as_array()
                .ok_or_else(|| wrong_type(Position::Document, "rules", "a JSON array"))?;
            let mut rules = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                rules.push(parse_rule(item, Position::Rule(index), version)?);
            }
            rules
        }
    };

    Ok(SamplingRules {
        rules,
        default_fixed_target,
        default_rate,
    })
}

fn parse_rule(value: &Value, at: Position, version: u64) -> Result<SamplingRule, RulesError> {
    let rule = value
        .as_object()
        .ok_or_else(|| RulesError::new(RulesErrorKind::WrongType, at, None, "a JSON object"))?;
    let (host_field, other_field, why) = if version == 1 {
        (
            "service_name",
            "host",
            "in a version 1 rule; use `service_name`",
        )
    } else {
        ("host", "service_name", "in a version 2 rule; use `host`")
    };
    if present(rule, other_field).is_some() {
        return Err(RulesError::new(
            RulesErrorKind::NotAllowed,
            at,
            Some(other_field),
            why,
        ));
    }
    let description = match present(rule, "description") {
        None => None,
        Some(v) => Some(
            v.as_str()
                .ok_or_else(|| wrong_type(at, "description", "a string"))?
                .to_owned(),
        ),
    };
    Ok(SamplingRule {
        description,
        host: pattern(rule, at, host_field)?,
        http_method: pattern(rule, at, "http_method")?,
        url_path: pattern(rule, at, "url_path")?,
        fixed_target: fixed_target(rule, at)?,
        rate: rate(rule, at)?,
    })
}

/// The field's value, with `null` read as absent.
fn present<'v>(object: &'v Map<String, Value>, field: &str) -> Option<&'v Value> {
    object.get(field).filter(|v| !v.is_null())
}

fn pattern(
    object: &Map<String, Value>,
    at: Position,
    field: &'static str,
) -> Result<String, RulesError> {
    match present(object, field) {
        None => Err(missing(at, field)),
        Some(Value::String(s)) if s.is_empty() => Err(missing(at, field)),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(wrong_type(at, field, PATTERN)),
    }
}

fn fixed_target(object: &Map<String, Value>, at: Position) -> Result<u64, RulesError> {
    let field = "fixed_target";
    let value = present(object, field).ok_or_else(|| missing(at, field))?;
    let number = value
        .as_number()
        .ok_or_else(|| wrong_type(at, field, TARGET))?;
    if let Some(n) = number.as_u64() {
        return Ok(n);
    }
    if number.as_i64().is_some() || number.as_f64().is_some_and(|f| f < 0.0) {
        return Err(RulesError::new(
            RulesErrorKind::OutOfRange,
            at,
            Some(field),
            TARGET,
        ));
    }
    // A fraction such as 1.5, refused as Go and Node do.
    Err(wrong_type(at, field, TARGET))
}

fn rate(object: &Map<String, Value>, at: Position) -> Result<f64, RulesError> {
    let field = "rate";
    let value = present(object, field).ok_or_else(|| missing(at, field))?;
    let rate = value.as_f64().ok_or_else(|| wrong_type(at, field, RATE))?;
    check_rate(at, rate)?;
    Ok(rate)
}

fn check_rate(at: Position, rate: f64) -> Result<(), RulesError> {
    if (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(RulesError::new(
            RulesErrorKind::OutOfRange,
            at,
            Some("rate"),
            RATE,
        ))
    }
}

fn missing(at: Position, field: &'static str) -> RulesError {
    RulesError::new(RulesErrorKind::MissingField, at, Some(field), "")
}

fn wrong_type(at: Position, field: &'static str, expected: &'static str) -> RulesError {
    RulesError::new(RulesErrorKind::WrongType, at, Some(field), expected)
}

// ===== RulesError =====

/// What is wrong with a sampling rules document; see [`RulesError::kind`].
///
/// # Examples
///
/// ```
/// use xray_sdk::sampling::{RulesErrorKind, SamplingRules};
///
/// let err = SamplingRules::from_json(r#"{"version": 3, "default": {"fixed_target": 1, "rate": 0.05}}"#)
///     .unwrap_err();
/// assert_eq!(err.kind(), RulesErrorKind::UnsupportedVersion);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RulesErrorKind {
    /// The text is not JSON.
    Json,
    /// The file could not be read.
    Io,
    /// The file is larger than 1 MiB.
    TooLarge,
    /// `version` is not 1 or 2.
    UnsupportedVersion,
    /// A required field is absent, `null` or an empty pattern (`default` itself included).
    MissingField,
    /// A field has the wrong JSON type (a string where a number belongs, a fraction for
    /// `fixed_target`, ...).
    WrongType,
    /// A number is outside its range: a negative `fixed_target`, a `rate` outside `[0, 1]`.
    OutOfRange,
    /// A field that must not appear there: a pattern on the default rule, `host` in a version 1
    /// rule, `service_name` in a version 2 rule.
    NotAllowed,
}

/// Where in the document the error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    Document,
    Default,
    Rule(usize),
}

/// A sampling rules document that cannot be used.
///
/// The message names the rule (`rules[2]` or `default`) and the field, and says what is
/// expected; [`kind`](Self::kind), [`rule_index`](Self::rule_index) and [`field`](Self::field)
/// give the same facts to code. The underlying JSON or I/O error, if any, is the
/// [`source`](std::error::Error::source), not part of the message.
///
/// # Examples
///
/// ```
/// use xray_sdk::sampling::{RulesErrorKind, SamplingRules};
///
/// let err = SamplingRules::from_json(r#"{
///     "version": 2,
///     "rules": [{ "host": "*", "http_method": "GET", "fixed_target": 1, "rate": 0.1 }],
///     "default": { "fixed_target": 1, "rate": 0.05 }
/// }"#).unwrap_err();
/// assert_eq!(err.kind(), RulesErrorKind::MissingField);
/// assert_eq!(err.rule_index(), Some(0));
/// assert_eq!(err.field(), Some("url_path"));
/// assert_eq!(err.to_string(), "invalid sampling rules: rules[0]: `url_path` is required");
/// ```
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
#[non_exhaustive]
pub struct RulesError {
    // Boxed: errors are rare, and a one-pointer `Result` keeps the happy path small.
    inner: Box<Inner>,
}

#[derive(Debug)]
struct Inner {
    kind: RulesErrorKind,
    at: Position,
    field: Option<&'static str>,
    expected: &'static str,
    line_column: Option<(usize, usize)>,
    path: Option<PathBuf>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl RulesError {
    fn new(
        kind: RulesErrorKind,
        at: Position,
        field: Option<&'static str>,
        expected: &'static str,
    ) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                at,
                field,
                expected,
                line_column: None,
                path: None,
                source: None,
            }),
        }
    }

    fn with_line_column(mut self, line: usize, column: usize) -> Self {
        self.inner.line_column = Some((line, column));
        self
    }

    fn with_path(mut self, path: &Path) -> Self {
        self.inner.path = Some(path.to_path_buf());
        self
    }

    fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.inner.source = Some(Box::new(source));
        self
    }

    /// What kind of problem this is.
    pub fn kind(&self) -> RulesErrorKind {
        self.inner.kind
    }

    /// The 0-based position in `rules` of the rule at fault, if the problem is in one.
    pub fn rule_index(&self) -> Option<usize> {
        match self.inner.at {
            Position::Rule(index) => Some(index),
            Position::Document | Position::Default => None,
        }
    }

    /// Whether the problem is in the `default` rule.
    pub fn is_in_default_rule(&self) -> bool {
        self.inner.at == Position::Default
    }

    /// The JSON field at fault, such as `"rate"` or `"version"`.
    pub fn field(&self) -> Option<&'static str> {
        self.inner.field
    }

    /// The file being read, for errors from [`SamplingRules::from_file`].
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }
}

impl std::error::Error for Inner {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.source {
            Some(source) => Some(source.as_ref()),
            None => None,
        }
    }
}

impl fmt::Display for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid sampling rules")?;
        if let Some(path) = &self.path {
            write!(f, " in `{}`", path.display())?;
        }
        f.write_str(": ")?;
        match self.at {
            Position::Document => {}
            Position::Default => f.write_str("default: ")?,
            Position::Rule(index) => write!(f, "rules[{index}]: ")?,
        }
        let field = self.field.unwrap_or("");
        match self.kind {
            RulesErrorKind::Json => {
                f.write_str("not valid JSON")?;
                if let Some((line, column)) = self.line_column {
                    write!(f, " (line {line}, column {column})")?;
                }
                Ok(())
            }
            RulesErrorKind::Io => {
                f.write_str("the file cannot be read")?;
                match &self.source {
                    // The operating system's own words: "No such file or directory (os error
                    // 2)", "Permission denied (os error 13)".
                    Some(source) => write!(f, " ({source})"),
                    None => Ok(()),
                }
            }
            RulesErrorKind::TooLarge => write!(f, "the file must be {}", self.expected),
            RulesErrorKind::UnsupportedVersion => {
                write!(f, "`{field}` must be {}", self.expected)
            }
            RulesErrorKind::MissingField => write!(f, "`{field}` is required"),
            RulesErrorKind::WrongType | RulesErrorKind::OutOfRange if self.field.is_none() => {
                write!(f, "must be {}", self.expected)
            }
            RulesErrorKind::WrongType | RulesErrorKind::OutOfRange => {
                write!(f, "`{field}` must be {}", self.expected)
            }
            RulesErrorKind::NotAllowed => {
                write!(f, "`{field}` is not allowed {}", self.expected)
            }
        }
    }
}
