//! Filter expressions over traces: the subset of the X-Ray console's language that a local
//! viewer needs. A hand-written lexer and a recursive-descent parser.

use std::fmt;

use serde_json::Value;

use crate::trace::{Trace, TraceEntity};

/// Longest expression accepted, in bytes; keeps a hostile query from costing much.
const MAX_LEN: usize = 4096;
/// Deepest nesting of `NOT` and parentheses accepted; bounds the parser's recursion.
const MAX_DEPTH: usize = 64;

/// A parsed filter expression; [`Filter::matches`] tests a trace.
///
/// The language (keywords are case-insensitive):
///
/// | expression | true when |
/// |---|---|
/// | `annotation.KEY = VALUE` | some entity has annotation `KEY` equal to `VALUE` (a string in `"..."`, a number, `true` or `false`); also `!=`, and `<`, `<=`, `>`, `>=` with a number; `CONTAINS`, `BEGINSWITH`, `ENDSWITH` with a string |
/// | `service("name")` | some service node of the trace (a segment, or an `aws` / `remote` subsegment) has this name |
/// | `responsetime > N` | the root segment took more than `N` seconds (any comparison) |
/// | `duration > N` | the whole trace, first start to last end, took more than `N` seconds |
/// | `fault`, `error` | the trace's own response was a fault (5xx) or an error (4xx): the root segment's flag, as X-Ray judges it; `fault = true` is the same, `!fault` and `fault = false` the opposite |
/// | `throttle` | some entity was throttled (429) |
/// | `ok` | the root segment answered 2xx (without a status: it has none of the three flags) |
/// | `partial` | some entity is in progress, or a parent is missing |
/// | `http.url CONTAINS "x"` | the root segment's URL contains `x` (also `=`, `!=`, `BEGINSWITH`, `ENDSWITH`) |
/// | `http.status = N` | the root segment's response status (any comparison) |
/// | `http.method = "GET"` | the root segment's method (`=`, `!=`) |
///
/// Combine with `NOT` (or `!`), `AND`, `OR` and parentheses; `NOT` binds tighter than `AND`,
/// which binds tighter than `OR`. The root segment is the segment without a `parent_id` (else
/// the earliest).
///
/// # Examples
///
/// ```
/// use serde_json::json;
/// use xray_local::Filter;
///
/// let traces = xray_local::assemble([json!({
///     "name": "api", "id": "70de5b6f19ff9a0a", "start_time": 1.0, "end_time": 1.5,
///     "trace_id": "1-581cf771-a006649127e371903a2de979", "fault": true,
///     "annotations": {"tier": "gold"},
/// })])?;
/// let filter = Filter::parse(r#"annotation.tier = "gold" AND (fault = true OR responsetime > 2)"#)?;
/// assert!(filter.matches(&traces[0]));
/// assert!(!Filter::parse("NOT service(\"api\")")?.matches(&traces[0]));
///
/// let err = Filter::parse("fault = ").unwrap_err();
/// assert_eq!(err.position(), 8);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    expr: Expr,
}

/// A filter expression could not be parsed.
///
/// [`position`](FilterError::position) is the byte offset in the expression where the problem
/// is, [`expected`](FilterError::expected) what the parser wanted there.
///
/// # Examples
///
/// ```
/// let err = xray_local::Filter::parse("fault = maybe").unwrap_err();
/// assert_eq!(err.position(), 8);
/// assert_eq!(err.expected(), "`true` or `false`");
/// assert_eq!(err.to_string(), "at byte 8: expected `true` or `false`, found `maybe`");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {position}: expected {expected}, found {found}")]
#[non_exhaustive]
pub struct FilterError {
    position: usize,
    expected: &'static str,
    found: String,
}

impl FilterError {
    /// Byte offset of the problem in the expression.
    pub fn position(&self) -> usize {
        self.position
    }

    /// What the parser expected at that position.
    pub fn expected(&self) -> &'static str {
        self.expected
    }

    /// What it found instead (a quoted token, or `end of input`).
    pub fn found(&self) -> &str {
        &self.found
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Service(String),
    Annotation(String, Op, Literal),
    ResponseTime(Op, f64),
    Duration(Op, f64),
    Flag(FlagKind, bool),
    HttpUrl(Op, String),
    HttpStatus(Op, f64),
    HttpMethod(Op, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlagKind {
    Fault,
    Error,
    Throttle,
    Ok,
    Partial,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    BeginsWith,
    EndsWith,
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
}

// ===== lexer =====

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Op(Op),
    Bang,
    LParen,
    RParen,
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
    text: String,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tok {
            Tok::End => f.write_str("end of input"),
            _ => write!(f, "`{}`", self.text),
        }
    }
}

fn err(position: usize, expected: &'static str, found: impl fmt::Display) -> FilterError {
    FilterError {
        position,
        expected,
        found: found.to_string(),
    }
}

fn lex(input: &str) -> Result<Vec<Token>, FilterError> {
    let bytes = input.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes.get(i).copied().unwrap_or(b' ');
        let start = i;
        let mut push = |tok: Tok, end: usize| {
            tokens.push(Token {
                tok,
                pos: start,
                text: input.get(start..end).unwrap_or_default().to_owned(),
            });
        };
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'(' => {
                push(Tok::LParen, i + 1);
                i += 1;
            }
            b')' => {
                push(Tok::RParen, i + 1);
                i += 1;
            }
            b'=' => {
                // `==` is accepted as `=`.
                let len = if bytes.get(i + 1) == Some(&b'=') {
                    2
                } else {
                    1
                };
                push(Tok::Op(Op::Eq), i + len);
                i += len;
            }
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                push(Tok::Op(Op::Ne), i + 2);
                i += 2;
            }
            b'!' => {
                push(Tok::Bang, i + 1);
                i += 1;
            }
            b'<' | b'>' => {
                let eq = bytes.get(i + 1) == Some(&b'=');
                let op = match (c, eq) {
                    (b'<', false) => Op::Lt,
                    (b'<', true) => Op::Le,
                    (_, false) => Op::Gt,
                    (_, true) => Op::Ge,
                };
                let len = if eq { 2 } else { 1 };
                push(Tok::Op(op), i + len);
                i += len;
            }
            b'"' | b'\'' => {
                let (value, end) = lex_string(input, i, c)?;
                push(Tok::Str(value), end);
                i = end;
            }
            b'0'..=b'9' | b'-' | b'.' => {
                let mut end = i + 1;
                while let Some(&b) = bytes.get(end) {
                    let exponent_sign =
                        (b == b'-' || b == b'+') && matches!(bytes.get(end - 1), Some(b'e' | b'E'));
                    if b.is_ascii_digit() || b == b'.' || b == b'e' || b == b'E' || exponent_sign {
                        end += 1;
                    } else {
                        break;
                    }
                }
                let text = input.get(i..end).unwrap_or_default();
                let value = text
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| err(i, "a number", format!("`{text}`")))?;
                push(Tok::Num(value), end);
                i = end;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let mut end = i + 1;
                while let Some(&b) = bytes.get(end) {
                    // Annotation keys may hold any of these after `annotation.`.
                    if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-' {
                        end += 1;
                    } else {
                        break;
                    }
                }
                let text = input.get(i..end).unwrap_or_default().to_owned();
                push(Tok::Ident(text), end);
                i = end;
            }
            _ => {
                let ch = input.get(i..).and_then(|s| s.chars().next()).unwrap_or('?');
                return Err(err(i, "an expression", format!("`{ch}`")));
            }
        }
    }
    tokens.push(Token {
        tok: Tok::End,
        pos: input.len(),
        text: String::new(),
    });
    Ok(tokens)
}

/// A quoted string from `start` (the quote); returns the value and the offset past the closing
/// quote. `\` escapes the next character.
fn lex_string(input: &str, start: usize, quote: u8) -> Result<(String, usize), FilterError> {
    let mut value = String::new();
    let mut chars = input.get(start + 1..).unwrap_or_default().char_indices();
    while let Some((off, ch)) = chars.next() {
        let at = start + 1 + off;
        if ch == char::from(quote) {
            return Ok((value, at + 1));
        }
        if ch == '\\' {
            match chars.next() {
                Some((_, escaped)) => value.push(escaped),
                None => break,
            }
        } else {
            value.push(ch);
        }
    }
    Err(err(input.len(), "a closing quote", "end of input"))
}

// ===== parser =====

struct Parser {
    tokens: Vec<Token>,
    i: usize,
    depth: usize,
}

impl Filter {
    /// Parses an expression; see [`Filter`] for the language.
    ///
    /// # Errors
    ///
    /// [`FilterError`] with the byte position of the first problem and what was expected.
    pub fn parse(input: &str) -> Result<Filter, FilterError> {
        if input.len() > MAX_LEN {
            return Err(err(MAX_LEN, "a shorter expression", "more text"));
        }
        let mut parser = Parser {
            tokens: lex(input)?,
            i: 0,
            depth: 0,
        };
        let expr = parser.or()?;
        let next = parser.peek();
        if next.tok != Tok::End {
            return Err(err(next.pos, "`AND`, `OR` or end of input", next));
        }
        Ok(Filter { expr })
    }

    /// Whether the trace matches.
    pub fn matches(&self, trace: &Trace) -> bool {
        eval(&self.expr, trace)
    }
}

impl std::str::FromStr for Filter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Filter, FilterError> {
        Filter::parse(s)
    }
}

fn is_keyword(token: &Token, word: &str) -> bool {
    matches!(&token.tok, Tok::Ident(text) if text.eq_ignore_ascii_case(word))
}

impl Parser {
    fn peek(&self) -> Token {
        self.tokens
            .get(self.i)
            .or_else(|| self.tokens.last())
            .cloned()
            .unwrap_or(Token {
                tok: Tok::End,
                pos: 0,
                text: String::new(),
            })
    }

    fn next(&mut self) -> Token {
        let token = self.peek();
        if self.i < self.tokens.len() {
            self.i += 1;
        }
        token
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.and()?;
        while is_keyword(&self.peek(), "OR") {
            self.next();
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.unary()?;
        while is_keyword(&self.peek(), "AND") {
            self.next();
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        let token = self.peek();
        if self.depth >= MAX_DEPTH {
            return Err(err(token.pos, "less nesting", &token));
        }
        if token.tok == Tok::Bang || is_keyword(&token, "NOT") {
            self.next();
            self.depth += 1;
            let inner = self.unary();
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner?)));
        }
        if token.tok == Tok::LParen {
            self.next();
            self.depth += 1;
            let inner = self.or();
            self.depth -= 1;
            let inner = inner?;
            let close = self.next();
            if close.tok != Tok::RParen {
                return Err(err(close.pos, "`)`", &close));
            }
            return Ok(inner);
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr, FilterError> {
        const WHAT: &str = "a condition such as `service(\"name\")`, `annotation.KEY = VALUE`, \
                            `responsetime > N`, `fault = true` or `http.status = N`, or `(`";
        let token = self.next();
        let Tok::Ident(name) = &token.tok else {
            return Err(err(token.pos, WHAT, &token));
        };
        let lower = name.to_ascii_lowercase();
        if let Some(key) = lower
            .strip_prefix("annotation.")
            .and(name.get("annotation.".len()..))
        {
            if key.is_empty() {
                return Err(err(
                    token.pos + token.text.len(),
                    "an annotation key",
                    &token,
                ));
            }
            let key = key.to_owned();
            let op = self.op(ALL_OPS)?;
            let literal = self.literal(op)?;
            return Ok(Expr::Annotation(key, op, literal));
        }
        match lower.as_str() {
            "service" => {
                self.expect(Tok::LParen, "`(`")?;
                let name = self.string()?;
                self.expect(Tok::RParen, "`)`")?;
                Ok(Expr::Service(name))
            }
            "responsetime" => {
                let op = self.op(NUMERIC_OPS)?;
                Ok(Expr::ResponseTime(op, self.number()?))
            }
            "duration" => {
                let op = self.op(NUMERIC_OPS)?;
                Ok(Expr::Duration(op, self.number()?))
            }
            "fault" | "error" | "throttle" | "ok" | "partial" => {
                let kind = match lower.as_str() {
                    "fault" => FlagKind::Fault,
                    "error" => FlagKind::Error,
                    "throttle" => FlagKind::Throttle,
                    "partial" => FlagKind::Partial,
                    _ => FlagKind::Ok,
                };
                // Bare, a boolean keyword is `= true` (`!fault` is `fault = false`).
                if !matches!(self.peek().tok, Tok::Op(_)) {
                    return Ok(Expr::Flag(kind, true));
                }
                let op = self.op(EQUALITY_OPS)?;
                let value = self.boolean()?;
                Ok(Expr::Flag(kind, value == (op == Op::Eq)))
            }
            "http.url" => {
                let op = self.op(STRING_OPS)?;
                Ok(Expr::HttpUrl(op, self.string()?))
            }
            "http.status" => {
                let op = self.op(NUMERIC_OPS)?;
                Ok(Expr::HttpStatus(op, self.number()?))
            }
            "http.method" => {
                let op = self.op(EQUALITY_OPS)?;
                Ok(Expr::HttpMethod(op, self.string()?))
            }
            _ => Err(err(token.pos, WHAT, &token)),
        }
    }

    fn expect(&mut self, want: Tok, expected: &'static str) -> Result<(), FilterError> {
        let token = self.next();
        if token.tok == want {
            Ok(())
        } else {
            Err(err(token.pos, expected, &token))
        }
    }

    fn op(&mut self, allowed: OpSet) -> Result<Op, FilterError> {
        let token = self.next();
        let op = match &token.tok {
            Tok::Op(op) => Some(*op),
            Tok::Ident(word) => match word.to_ascii_uppercase().as_str() {
                "CONTAINS" => Some(Op::Contains),
                "BEGINSWITH" => Some(Op::BeginsWith),
                "ENDSWITH" => Some(Op::EndsWith),
                _ => None,
            },
            _ => None,
        };
        match op {
            Some(op) if allowed.ops.contains(&op) => Ok(op),
            _ => Err(err(token.pos, allowed.describe, &token)),
        }
    }

    fn string(&mut self) -> Result<String, FilterError> {
        let token = self.next();
        match token.tok {
            Tok::Str(s) => Ok(s),
            _ => Err(err(token.pos, "a quoted string", &token)),
        }
    }

    fn number(&mut self) -> Result<f64, FilterError> {
        let token = self.next();
        match token.tok {
            Tok::Num(n) => Ok(n),
            _ => Err(err(token.pos, "a number", &token)),
        }
    }

    fn boolean(&mut self) -> Result<bool, FilterError> {
        let token = self.next();
        if is_keyword(&token, "true") {
            Ok(true)
        } else if is_keyword(&token, "false") {
            Ok(false)
        } else {
            Err(err(token.pos, "`true` or `false`", &token))
        }
    }

    /// The value of an annotation comparison, checked against the operator.
    fn literal(&mut self, op: Op) -> Result<Literal, FilterError> {
        let token = self.next();
        let literal = match token.tok {
            Tok::Str(ref s) => Literal::Str(s.clone()),
            Tok::Num(n) => Literal::Num(n),
            _ if is_keyword(&token, "true") => Literal::Bool(true),
            _ if is_keyword(&token, "false") => Literal::Bool(false),
            _ => {
                return Err(err(
                    token.pos,
                    "a value: a quoted string, a number, `true` or `false`",
                    &token,
                ));
            }
        };
        let fits = match op {
            Op::Eq | Op::Ne => true,
            Op::Lt | Op::Le | Op::Gt | Op::Ge => matches!(literal, Literal::Num(_)),
            Op::Contains | Op::BeginsWith | Op::EndsWith => matches!(literal, Literal::Str(_)),
        };
        if fits {
            Ok(literal)
        } else if matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge) {
            Err(err(token.pos, "a number", &token))
        } else {
            Err(err(token.pos, "a quoted string", &token))
        }
    }
}

#[derive(Clone, Copy)]
struct OpSet {
    ops: &'static [Op],
    describe: &'static str,
}

const ALL_OPS: OpSet = OpSet {
    ops: &[
        Op::Eq,
        Op::Ne,
        Op::Lt,
        Op::Le,
        Op::Gt,
        Op::Ge,
        Op::Contains,
        Op::BeginsWith,
        Op::EndsWith,
    ],
    describe: "a comparison: `=`, `!=`, `<`, `<=`, `>`, `>=`, `CONTAINS`, `BEGINSWITH` or `ENDSWITH`",
};
const NUMERIC_OPS: OpSet = OpSet {
    ops: &[Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge],
    describe: "a comparison: `=`, `!=`, `<`, `<=`, `>` or `>=`",
};
const EQUALITY_OPS: OpSet = OpSet {
    ops: &[Op::Eq, Op::Ne],
    describe: "`=` or `!=`",
};
const STRING_OPS: OpSet = OpSet {
    ops: &[Op::Eq, Op::Ne, Op::Contains, Op::BeginsWith, Op::EndsWith],
    describe: "`=`, `!=`, `CONTAINS`, `BEGINSWITH` or `ENDSWITH`",
};

// ===== evaluation =====

fn eval(expr: &Expr, trace: &Trace) -> bool {
    match expr {
        Expr::And(a, b) => eval(a, trace) && eval(b, trace),
        Expr::Or(a, b) => eval(a, trace) || eval(b, trace),
        Expr::Not(a) => !eval(a, trace),
        Expr::Service(name) => trace
            .entities()
            .any(|e| is_service_node(&e) && e.name() == Some(name.as_str())),
        Expr::Annotation(key, op, literal) => trace
            .entities()
            .filter_map(|e| e.annotation(key))
            .any(|value| compare_value(value, *op, literal)),
        Expr::ResponseTime(op, n) => root(trace)
            .and_then(|r| r.duration())
            .is_some_and(|d| compare_num(d, *op, *n)),
        Expr::Duration(op, n) => trace_duration(trace).is_some_and(|d| compare_num(d, *op, *n)),
        Expr::Flag(kind, want) => {
            // The trace's own response is its root segment's; a throttle anywhere counts.
            let root = root(trace);
            let on_root = |flag: &str| {
                root.as_ref()
                    .is_some_and(|r| r.get(flag).and_then(Value::as_bool) == Some(true))
            };
            let throttled = || {
                trace
                    .entities()
                    .any(|e| e.get("throttle").and_then(Value::as_bool) == Some(true))
            };
            let value = match kind {
                FlagKind::Fault => on_root("fault"),
                FlagKind::Error => on_root("error"),
                FlagKind::Throttle => throttled(),
                FlagKind::Ok => {
                    match root_http(trace, "response", "status").and_then(Value::as_u64) {
                        Some(status) => (200..300).contains(&status),
                        None => !on_root("fault") && !on_root("error") && !on_root("throttle"),
                    }
                }
                FlagKind::Partial => {
                    !trace.is_complete() || trace.entities().any(|e| e.is_in_progress())
                }
            };
            value == *want
        }
        Expr::HttpUrl(op, s) => root_http(trace, "request", "url")
            .and_then(Value::as_str)
            .is_some_and(|url| compare_str(url, *op, s)),
        Expr::HttpMethod(op, s) => root_http(trace, "request", "method")
            .and_then(Value::as_str)
            .is_some_and(|m| compare_str(&m.to_ascii_uppercase(), *op, &s.to_ascii_uppercase())),
        Expr::HttpStatus(op, n) => root_http(trace, "response", "status")
            .and_then(Value::as_f64)
            .is_some_and(|status| compare_num(status, *op, *n)),
    }
}

/// Whether an entity is a node of the service map: a segment, or a downstream call.
pub(crate) fn is_service_node(entity: &TraceEntity<'_>) -> bool {
    entity.is_segment()
        || matches!(
            entity.get("namespace").and_then(Value::as_str),
            Some("aws" | "remote")
        )
}

/// The root segment: the one with no `parent_id`, else the earliest.
pub(crate) fn root(trace: &Trace) -> Option<TraceEntity<'_>> {
    let segments = || trace.entities().filter(|e| e.is_segment());
    segments()
        .find(|e| e.get("parent_id").is_none())
        .or_else(|| segments().next())
}

/// First start to last end over every entity.
pub(crate) fn trace_duration(trace: &Trace) -> Option<f64> {
    let start = trace
        .entities()
        .filter_map(|e| e.start_time())
        .min_by(f64::total_cmp)?;
    let end = trace
        .entities()
        .filter_map(|e| e.end_time())
        .max_by(f64::total_cmp)?;
    Some(((end - start) * 1e6).round() / 1e6)
}

fn root_http<'a>(trace: &'a Trace, part: &str, field: &str) -> Option<&'a Value> {
    root(trace)?.get("http")?.get(part)?.get(field)
}

fn compare_value(value: &Value, op: Op, literal: &Literal) -> bool {
    match (value, literal) {
        (Value::String(v), Literal::Str(s)) => compare_str(v, op, s),
        (Value::Number(v), Literal::Num(n)) => v.as_f64().is_some_and(|v| compare_num(v, op, *n)),
        (Value::Bool(v), Literal::Bool(b)) => match op {
            Op::Eq => v == b,
            Op::Ne => v != b,
            _ => false,
        },
        // A value of another type is different from the literal, and not comparable to it.
        _ => op == Op::Ne,
    }
}

fn compare_num(value: f64, op: Op, n: f64) -> bool {
    match op {
        Op::Eq => value == n,
        Op::Ne => value != n,
        Op::Lt => value < n,
        Op::Le => value <= n,
        Op::Gt => value > n,
        Op::Ge => value >= n,
        Op::Contains | Op::BeginsWith | Op::EndsWith => false,
    }
}

fn compare_str(value: &str, op: Op, s: &str) -> bool {
    match op {
        Op::Eq => value == s,
        Op::Ne => value != s,
        Op::Contains => value.contains(s),
        Op::BeginsWith => value.starts_with(s),
        Op::EndsWith => value.ends_with(s),
        Op::Lt | Op::Le | Op::Gt | Op::Ge => false,
    }
}
