//! Filter expressions over traces: the X-Ray console's language, but for groups and root
//! causes given as JSON. A hand-written lexer and a recursive-descent parser.

use std::fmt;

use serde_json::Value;

use crate::trace::{NodeFlags, Trace, TraceEntity, TraceIndex};

/// Longest expression accepted, in bytes; keeps a hostile query from costing much.
const MAX_LEN: usize = 4096;
/// Deepest nesting of `NOT` and parentheses accepted; bounds the parser's recursion.
const MAX_DEPTH: usize = 64;

/// A parsed filter expression; [`Filter::matches`] tests a trace.
///
/// The language of the X-Ray console (keywords are case-insensitive). At the top level a
/// condition judges the trace, as X-Ray does: its own response is its root segment's (the
/// segment without a `parent_id`, else the earliest).
///
/// | expression | true when |
/// |---|---|
/// | `fault`, `error` | the root segment has the flag (its response was a 5xx, a 4xx); `fault = true` is the same, `!fault` and `fault = false` the opposite |
/// | `throttle` | some entity was throttled (429) |
/// | `ok` | the root segment answered 2xx (without a status: it has none of the three flags) |
/// | `partial` | some entity is in progress, or a parent is missing |
/// | `inferred` | the trace calls an AWS or remote node |
/// | `responsetime > N` | the root segment took more than `N` seconds (any of `=`, `!=`, `<`, `<=`, `>`, `>=`) |
/// | `duration > N` | the whole trace, first start to last end, took more than `N` seconds |
/// | `http.status = N` | the root segment's response status (any comparison) |
/// | `http.url`, `http.method`, `http.useragent`, `http.clientip` `CONTAINS "x"` | the root segment's request field (`=`, `!=`, `CONTAINS`, `BEGINSWITH`, `ENDSWITH`); bare, that it is set |
/// | `user`, `availabilityzone`, `instance.id`, `resource.arn` `= "x"` | some segment's value (`!=`: no segment's value is equal); bare, that some segment has one |
/// | `annotation.KEY = VALUE` | some entity has annotation `KEY` equal to `VALUE` (a string in `"..."`, a number, `true` or `false`); also `!=`, `<`, `<=`, `>`, `>=` with a number, `CONTAINS`, `BEGINSWITH`, `ENDSWITH` with a string; bare, that some entity has it |
/// | `service("name")` | the trace has this node: a segment's service, or an AWS or remote call |
/// | `service("name") { FILTER }` | some entity of the node matches `FILTER`, judged on that entity: its own flags, `responsetime` (its duration), `http.*`, annotations, and `root` (it is the trace's entry point) |
/// | `service()` `{ FILTER }` | the same over every node |
/// | `edge("from", "to") { FILTER }` | a call from `from` to `to` (the callee a segment that names the call as its parent, else the AWS or remote node it calls), and the calling subsegment matches `FILTER` |
/// | `rootcause.fault.service { FILTER }` | some service of a fault root cause (the trace summary's `FaultRootCauses`) matches `FILTER`, in which `name`, `type` (a resource type, or its service's: `AWS::DynamoDB` matches a table) and `inferred` judge the service, and `first`, `last` and `index` (from 0) its place in the cause |
/// | `rootcause.fault.entity { FILTER }` | the same for each entity on the services' paths: `name`, `remote`, `first`, `last`, `index` (its place on the path) and, for response times, `coverage` (its share of the root's response time, 0 to 1) |
/// | `rootcause.fault.exception { FILTER }` | the same for each exception of those entities: `name` (its type), `message`, and the entity's `remote`, `first`, `last`, `index` |
/// | `rootcause.error.*`, `rootcause.responsetime.*` | the same over `ErrorRootCauses` and `ResponseTimeRootCauses`; bare (`rootcause.fault.service`), that there is one |
/// | `id(name: "n", type: "AWS::DynamoDB::Table", account.id: "1")` | in place of a name in `service` and `edge`: a node by any of its name, type (a segment's `origin`, `AWS::<service>::<resource>` or `AWS::<service>` for an AWS call, `remote`) and account |
///
/// Combine with `NOT` (or `!`), `AND`, `OR` and parentheses; `NOT` binds tighter than `AND`,
/// which binds tighter than `OR`, and two conditions side by side are joined by `AND`
/// (`ok !partial duration < 3`).
///
/// Not supported, and refused with an error that says so
/// ([`FilterError::is_unsupported`]): `group.name` and `group.arn` (xray-local holds no
/// groups) and `rootcause.json = #[...]`.
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
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FilterError {
    position: usize,
    expected: &'static str,
    found: String,
    unsupported: bool,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unsupported {
            write!(
                f,
                "at byte {}: {} is not supported by xray-local: {}",
                self.position, self.found, self.expected
            )
        } else {
            write!(
                f,
                "at byte {}: expected {}, found {}",
                self.position, self.expected, self.found
            )
        }
    }
}

impl std::error::Error for FilterError {}

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

    /// Whether the expression uses a form of X-Ray's language that xray-local does not
    /// evaluate (groups, root causes); [`expected`](Self::expected) then says why.
    pub fn is_unsupported(&self) -> bool {
        self.unsupported
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// `service(NODE) { FILTER }`: a node of the trace, and a sub-filter over its entities.
    Service(Node, Option<Box<Expr>>),
    /// `edge(FROM, TO) { FILTER }`: a call, and a sub-filter over the calling subsegments.
    Edge(Node, Node, Option<Box<Expr>>),
    /// `annotation.KEY`, bare (present) or compared.
    Annotation(String, Option<(Op, Literal)>),
    ResponseTime(Op, f64),
    Duration(Op, f64),
    Flag(FlagKind, bool),
    /// A string keyword, bare (set) or compared.
    Text(TextKind, Option<(Op, String)>),
    HttpStatus(Op, f64),
    /// `rootcause.KIND.LEVEL { FILTER }`: some root cause of that kind has a service, entity or
    /// exception that matches the root-cause filter.
    RootCause(CauseKind, CauseLevel, Option<Box<Expr>>),
    /// Inside root-cause braces: `name`, `type` or `message`, bare (set) or compared.
    CauseText(CauseField, Option<(Op, String)>),
    /// Inside root-cause braces: `first`, `last`, `remote` or `inferred`.
    CauseFlag(CauseField, bool),
    /// Inside root-cause braces: `index` or `coverage`.
    CauseNumber(CauseField, Op, f64),
}

/// Which root causes: `FaultRootCauses`, `ErrorRootCauses` or `ResponseTimeRootCauses`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CauseKind {
    Fault,
    Error,
    ResponseTime,
}

/// What a root-cause filter judges: each service of a cause, each entity of their paths, or
/// each exception of those entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CauseLevel {
    Service,
    Entity,
    Exception,
}

/// The keywords of root-cause filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CauseField {
    Name,
    Type,
    Message,
    First,
    Last,
    Remote,
    Inferred,
    Index,
    Coverage,
}

/// A node named in `service(...)` or `edge(...)`: a name, or `id(name:, type:, account.id:)`
/// with any of them; none at all (`service()`) is every node.
#[derive(Debug, Clone, Default, PartialEq)]
struct Node {
    name: Option<String>,
    kind: Option<String>,
    account: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlagKind {
    Fault,
    Error,
    Throttle,
    Ok,
    Partial,
    Inferred,
    Root,
}

/// The string keywords: the root segment's request, or a field any segment may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextKind {
    Url,
    Method,
    UserAgent,
    ClientIp,
    User,
    AvailabilityZone,
    InstanceId,
    ResourceArn,
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
    LBrace,
    RBrace,
    Comma,
    Colon,
    /// `#[ ... ]`, the JSON literal of `rootcause.json` (recognised to be refused).
    Json,
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
        unsupported: false,
    }
}

/// A form of the language that is recognised and not evaluated; `why` says so.
fn unsupported(token: &Token, why: &'static str) -> FilterError {
    FilterError {
        position: token.pos,
        expected: why,
        found: token.to_string(),
        unsupported: true,
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
            b'#' if bytes.get(i + 1) == Some(&b'[') => {
                let mut depth = 0usize;
                let mut end = i + 1;
                while let Some(&b) = bytes.get(end) {
                    end += 1;
                    match b {
                        b'[' => depth += 1,
                        b']' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                push(Tok::Json, end);
                i = end;
            }
            b'{' | b'}' | b',' | b':' => {
                let tok = match c {
                    b'{' => Tok::LBrace,
                    b'}' => Tok::RBrace,
                    b',' => Tok::Comma,
                    _ => Tok::Colon,
                };
                push(tok, i + 1);
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
    /// Inside the braces of a root-cause filter: its keywords, not the trace's.
    in_cause: bool,
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
            in_cause: false,
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
        prejudge(&self.expr, trace.index()).unwrap_or_else(|| eval(&self.expr, trace))
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
        loop {
            let next = self.peek();
            if is_keyword(&next, "AND") {
                self.next();
            } else {
                // Two conditions side by side are joined by AND (`ok !partial duration < 3`).
                let starts_another = match &next.tok {
                    Tok::Bang | Tok::LParen => true,
                    Tok::Ident(_) => !is_keyword(&next, "OR"),
                    _ => false,
                };
                if !starts_another {
                    break;
                }
            }
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
                            `responsetime > N`, `fault`, `http.status = N` or `user = \"name\"`, \
                            or `(`";
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
            if !self.comparison_follows() {
                return Ok(Expr::Annotation(key, None));
            }
            let op = self.op(ALL_OPS)?;
            let literal = self.literal(op)?;
            return Ok(Expr::Annotation(key, Some((op, literal))));
        }
        if lower.starts_with("group.") {
            return Err(unsupported(
                &token,
                "it holds no groups; write the group's own filter expression instead",
            ));
        }
        if self.in_cause {
            return self.cause_predicate(&token, &lower);
        }
        if lower == "rootcause.json" {
            return Err(unsupported(
                &token,
                "root causes given as JSON are not matched; write \
                 `rootcause.fault.service { name = \"...\" }` and the like instead",
            ));
        }
        if let Some(rest) = lower.strip_prefix("rootcause.") {
            let (kind, level) = rest.split_once('.').unwrap_or((rest, ""));
            let kind = match kind {
                "fault" => CauseKind::Fault,
                "error" => CauseKind::Error,
                "responsetime" => CauseKind::ResponseTime,
                _ => {
                    return Err(err(
                        token.pos,
                        "`rootcause.fault`, `rootcause.error` or `rootcause.responsetime`",
                        &token,
                    ));
                }
            };
            let level = match level {
                "service" => CauseLevel::Service,
                "entity" => CauseLevel::Entity,
                "exception" => CauseLevel::Exception,
                _ => {
                    return Err(err(
                        token.pos,
                        "`.service`, `.entity` or `.exception` after the kind of root cause",
                        &token,
                    ));
                }
            };
            self.in_cause = true;
            let sub = self.braces();
            self.in_cause = false;
            return Ok(Expr::RootCause(kind, level, sub?));
        }
        let flag = match lower.as_str() {
            "fault" => Some(FlagKind::Fault),
            "error" => Some(FlagKind::Error),
            "throttle" => Some(FlagKind::Throttle),
            "ok" => Some(FlagKind::Ok),
            "partial" => Some(FlagKind::Partial),
            "inferred" => Some(FlagKind::Inferred),
            "root" => Some(FlagKind::Root),
            _ => None,
        };
        if let Some(kind) = flag {
            // Bare, a boolean keyword is `= true` (`!fault` is `fault = false`).
            if !matches!(self.peek().tok, Tok::Op(_)) {
                return Ok(Expr::Flag(kind, true));
            }
            let op = self.op(EQUALITY_OPS)?;
            let value = self.boolean()?;
            return Ok(Expr::Flag(kind, value == (op == Op::Eq)));
        }
        let text = match lower.as_str() {
            "http.url" => Some(TextKind::Url),
            "http.method" => Some(TextKind::Method),
            "http.useragent" => Some(TextKind::UserAgent),
            "http.clientip" => Some(TextKind::ClientIp),
            "user" => Some(TextKind::User),
            "availabilityzone" => Some(TextKind::AvailabilityZone),
            "instance.id" => Some(TextKind::InstanceId),
            "resource.arn" => Some(TextKind::ResourceArn),
            _ => None,
        };
        if let Some(kind) = text {
            if !self.comparison_follows() {
                return Ok(Expr::Text(kind, None));
            }
            let op = self.op(STRING_OPS)?;
            return Ok(Expr::Text(kind, Some((op, self.string()?))));
        }
        match lower.as_str() {
            "service" => {
                self.expect(Tok::LParen, "`(`")?;
                let node = if self.peek().tok == Tok::RParen {
                    Node::default()
                } else {
                    self.node()?
                };
                self.expect(Tok::RParen, "`)`")?;
                Ok(Expr::Service(node, self.braces()?))
            }
            "edge" => {
                self.expect(Tok::LParen, "`(`")?;
                let from = self.node()?;
                self.expect(Tok::Comma, "`,`")?;
                let to = self.node()?;
                self.expect(Tok::RParen, "`)`")?;
                Ok(Expr::Edge(from, to, self.braces()?))
            }
            "responsetime" => {
                let op = self.op(NUMERIC_OPS)?;
                Ok(Expr::ResponseTime(op, self.number()?))
            }
            "duration" => {
                let op = self.op(NUMERIC_OPS)?;
                Ok(Expr::Duration(op, self.number()?))
            }
            "http.status" => {
                let op = self.op(NUMERIC_OPS)?;
                Ok(Expr::HttpStatus(op, self.number()?))
            }
            "first" | "last" | "remote" | "coverage" | "index" | "name" | "type" | "message" => {
                Err(err(
                    token.pos,
                    "a trace keyword (this one is for root-cause filters, inside \
                     `rootcause.fault.entity { ... }` and the like)",
                    &token,
                ))
            }
            _ => Err(err(token.pos, WHAT, &token)),
        }
    }

    /// A condition inside root-cause braces.
    fn cause_predicate(&mut self, token: &Token, lower: &str) -> Result<Expr, FilterError> {
        const WHAT: &str = "a root-cause keyword: `name`, `type`, `message`, `first`, `last`, \
                            `remote`, `inferred`, `index` or `coverage`";
        let field = match lower {
            "name" => CauseField::Name,
            "type" => CauseField::Type,
            "message" => CauseField::Message,
            "first" => CauseField::First,
            "last" => CauseField::Last,
            "remote" => CauseField::Remote,
            "inferred" => CauseField::Inferred,
            "index" => CauseField::Index,
            "coverage" => CauseField::Coverage,
            _ => return Err(err(token.pos, WHAT, token)),
        };
        match field {
            CauseField::Name | CauseField::Type | CauseField::Message => {
                if !self.comparison_follows() {
                    return Ok(Expr::CauseText(field, None));
                }
                let op = self.op(STRING_OPS)?;
                Ok(Expr::CauseText(field, Some((op, self.string()?))))
            }
            CauseField::First | CauseField::Last | CauseField::Remote | CauseField::Inferred => {
                if !matches!(self.peek().tok, Tok::Op(_)) {
                    return Ok(Expr::CauseFlag(field, true));
                }
                let op = self.op(EQUALITY_OPS)?;
                let value = self.boolean()?;
                Ok(Expr::CauseFlag(field, value == (op == Op::Eq)))
            }
            CauseField::Index | CauseField::Coverage => {
                let op = self.op(NUMERIC_OPS)?;
                Ok(Expr::CauseNumber(field, op, self.number()?))
            }
        }
    }

    /// Whether a comparison operator comes next (else a keyword stands bare).
    fn comparison_follows(&self) -> bool {
        let next = self.peek();
        matches!(next.tok, Tok::Op(_))
            || ["CONTAINS", "BEGINSWITH", "ENDSWITH"]
                .iter()
                .any(|word| is_keyword(&next, word))
    }

    /// A node: `"name"` or `id(name: "...", type: "...", account.id: "...")`.
    fn node(&mut self) -> Result<Node, FilterError> {
        const WHAT: &str = "a quoted name or `id(...)`";
        let token = self.next();
        match &token.tok {
            Tok::Str(name) => Ok(Node {
                name: Some(name.clone()),
                ..Node::default()
            }),
            Tok::Ident(_) if is_keyword(&token, "id") => {
                self.expect(Tok::LParen, "`(`")?;
                let mut node = Node::default();
                loop {
                    let key = self.next();
                    let slot = if is_keyword(&key, "name") {
                        &mut node.name
                    } else if is_keyword(&key, "type") {
                        &mut node.kind
                    } else if is_keyword(&key, "account.id") {
                        &mut node.account
                    } else {
                        return Err(err(key.pos, "`name`, `type` or `account.id`", &key));
                    };
                    self.expect(Tok::Colon, "`:`")?;
                    *slot = Some(self.string()?);
                    let next = self.next();
                    match next.tok {
                        Tok::Comma => continue,
                        Tok::RParen => break,
                        _ => return Err(err(next.pos, "`,` or `)`", &next)),
                    }
                }
                Ok(node)
            }
            _ => Err(err(token.pos, WHAT, &token)),
        }
    }

    /// An optional `{ FILTER }` after `service(...)` or `edge(...)`.
    fn braces(&mut self) -> Result<Option<Box<Expr>>, FilterError> {
        if self.peek().tok != Tok::LBrace {
            return Ok(None);
        }
        let open = self.next();
        if self.depth >= MAX_DEPTH {
            return Err(err(open.pos, "less nesting", &open));
        }
        self.depth += 1;
        let inner = self.or();
        self.depth -= 1;
        let inner = inner?;
        self.expect(Tok::RBrace, "`}`")?;
        Ok(Some(Box::new(inner)))
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

/// The filter's verdict from the trace's index alone, where the index decides it: `None`
/// leaves it to [`eval`]. Wherever it answers, it answers as `eval` would (the tests check
/// both on every example), so that a query over many traces walks the entities of only
/// those the index cannot judge.
fn prejudge(expr: &Expr, index: &TraceIndex) -> Option<bool> {
    let named = |node: &Node| {
        node.name
            .as_deref()
            .map(|name| index.nodes.iter().find(|n| n.name == name))
    };
    match expr {
        Expr::And(a, b) => match (prejudge(a, index), prejudge(b, index)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Expr::Or(a, b) => match (prejudge(a, index), prejudge(b, index)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Expr::Not(a) => prejudge(a, index).map(|b| !b),
        Expr::Service(node, sub) => match named(node) {
            // No node of that name: no entity to match.
            Some(None) => Some(false),
            Some(Some(flags)) => match sub.as_deref().map(|sub| prejudge_node(sub, flags)) {
                Some(Some(false)) => Some(false),
                // `service("name")` alone: a node of that name is there.
                None if node.kind.is_none() && node.account.is_none() => Some(true),
                _ => None,
            },
            None => None,
        },
        Expr::Edge(from, to, _) => match (named(from), named(to)) {
            (Some(None), _) | (_, Some(None)) => Some(false),
            _ => None,
        },
        Expr::Annotation(key, _) => (!index.annotation_keys.contains(key)).then_some(false),
        Expr::ResponseTime(op, n) => Some(
            index
                .root
                .as_ref()
                .and_then(|r| r.duration)
                .is_some_and(|d| compare_num(d, *op, *n)),
        ),
        Expr::Duration(op, n) => Some(
            index
                .ended
                .map(|(start, end)| ((end - start) * 1e6).round() / 1e6)
                .is_some_and(|d| compare_num(d, *op, *n)),
        ),
        Expr::HttpStatus(op, n) => Some(
            index
                .root
                .as_ref()
                .and_then(|r| r.status)
                .is_some_and(|s| compare_num(s, *op, *n)),
        ),
        Expr::Flag(kind, want) => {
            let root = index.root.as_ref();
            let value = match kind {
                FlagKind::Fault => root.is_some_and(|r| r.fault),
                FlagKind::Error => root.is_some_and(|r| r.error),
                FlagKind::Throttle => index.throttled,
                FlagKind::Root => root.is_some(),
                FlagKind::Ok | FlagKind::Partial | FlagKind::Inferred => return None,
            };
            Some(value == *want)
        }
        Expr::Text(..)
        | Expr::RootCause(..)
        | Expr::CauseText(..)
        | Expr::CauseFlag(..)
        | Expr::CauseNumber(..) => None,
    }
}

/// Inside `service(NAME) { .. }`: `Some(false)` where no entity of the node can match, from
/// the flags any of them carries; `None` otherwise.
fn prejudge_node(expr: &Expr, flags: &NodeFlags) -> Option<bool> {
    match expr {
        Expr::And(a, b) => match (prejudge_node(a, flags), prejudge_node(b, flags)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            _ => None,
        },
        Expr::Or(a, b) => match (prejudge_node(a, flags), prejudge_node(b, flags)) {
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Expr::Flag(FlagKind::Fault, true) => (!flags.fault).then_some(false),
        Expr::Flag(FlagKind::Error, true) => (!flags.error).then_some(false),
        Expr::Flag(FlagKind::Throttle, true) => (!flags.throttle).then_some(false),
        _ => None,
    }
}

fn eval(expr: &Expr, trace: &Trace) -> bool {
    eval_at(expr, &At::Trace(trace))
}

/// Where a condition is judged: the whole trace, or one entity of a node or a call (inside
/// the braces of `service(...)` and `edge(...)`).
enum At<'a> {
    Trace(&'a Trace),
    Entity {
        trace: &'a Trace,
        entity: TraceEntity<'a>,
    },
}

impl<'a> At<'a> {
    fn trace(&self) -> &'a Trace {
        match self {
            At::Trace(trace) | At::Entity { trace, .. } => trace,
        }
    }

    /// The entity whose own fields answer: the root segment for the trace.
    fn subject(&self) -> Option<TraceEntity<'a>> {
        match self {
            At::Trace(trace) => root(trace),
            At::Entity { entity, .. } => Some(*entity),
        }
    }
}

fn eval_at(expr: &Expr, at: &At<'_>) -> bool {
    let trace = at.trace();
    match expr {
        Expr::And(a, b) => eval_at(a, at) && eval_at(b, at),
        Expr::Or(a, b) => eval_at(a, at) || eval_at(b, at),
        Expr::Not(a) => !eval_at(a, at),
        Expr::Service(node, sub) => service_entities(trace, node).any(|entity| {
            sub.as_deref()
                .is_none_or(|sub| eval_at(sub, &At::Entity { trace, entity }))
        }),
        Expr::Edge(from, to, sub) => calls(trace, from, to).any(|entity| {
            sub.as_deref()
                .is_none_or(|sub| eval_at(sub, &At::Entity { trace, entity }))
        }),
        Expr::Annotation(key, test) => {
            let matches = |value: &Value| {
                test.as_ref()
                    .is_none_or(|(op, literal)| compare_value(value, *op, literal))
            };
            match at {
                At::Trace(trace) => trace
                    .entities()
                    .filter_map(|e| e.annotation(key))
                    .any(matches),
                At::Entity { entity, .. } => entity.annotation(key).is_some_and(matches),
            }
        }
        Expr::ResponseTime(op, n) => at
            .subject()
            .and_then(|r| r.duration())
            .is_some_and(|d| compare_num(d, *op, *n)),
        Expr::Duration(op, n) => match at {
            At::Trace(trace) => trace_duration(trace),
            At::Entity { entity, .. } => entity.duration(),
        }
        .is_some_and(|d| compare_num(d, *op, *n)),
        Expr::Flag(kind, want) => flag(*kind, at) == *want,
        Expr::Text(kind, test) => {
            let values = text_values(*kind, at);
            let Some((op, s)) = test else {
                return !values.is_empty();
            };
            // Methods compare whatever their case.
            let fold = |v: &str| {
                if *kind == TextKind::Method {
                    v.to_ascii_uppercase()
                } else {
                    v.to_owned()
                }
            };
            let s = fold(s);
            match op {
                // On a field with many values, `!=` holds when none is equal.
                Op::Ne => values.iter().all(|v| fold(v) != s),
                op => values.iter().any(|v| compare_str(&fold(v), *op, &s)),
            }
        }
        Expr::HttpStatus(op, n) => at
            .subject()
            .and_then(|e| e.get("http")?.get("response")?.get("status")?.as_f64())
            .is_some_and(|status| compare_num(status, *op, *n)),
        Expr::RootCause(kind, level, sub) => {
            let causes = match kind {
                CauseKind::Fault => crate::api::flag_root_causes(trace, "fault"),
                CauseKind::Error => crate::api::flag_root_causes(trace, "error"),
                CauseKind::ResponseTime => crate::api::response_time_root_causes(trace),
            };
            cause_subjects(&causes, *level)
                .iter()
                .any(|subject| sub.as_deref().is_none_or(|f| eval_cause(f, subject)))
        }
        // Root-cause keywords stand only inside root-cause braces (the parser sees to it).
        Expr::CauseText(..) | Expr::CauseFlag(..) | Expr::CauseNumber(..) => false,
    }
}

/// What a root-cause filter reads of one service, entity or exception of a root cause.
#[derive(Debug, Default)]
struct CauseSubject<'a> {
    name: Option<&'a str>,
    kind: Option<&'a str>,
    message: Option<&'a str>,
    remote: bool,
    inferred: bool,
    coverage: Option<f64>,
    /// Its place: among the cause's services, or (entities and exceptions) in the path.
    index: usize,
    count: usize,
}

/// Every service, entity or exception of the root causes (`FaultRootCauses` and the like,
/// as the read API gives them).
fn cause_subjects(causes: &[Value], level: CauseLevel) -> Vec<CauseSubject<'_>> {
    let mut out = Vec::new();
    for cause in causes {
        let services = list(cause, "Services");
        for (i, service) in services.iter().enumerate() {
            let text = |key: &str| service.get(key).and_then(Value::as_str);
            let inferred = service.get("Inferred").and_then(Value::as_bool) == Some(true);
            if level == CauseLevel::Service {
                out.push(CauseSubject {
                    name: text("Name"),
                    kind: text("Type"),
                    inferred,
                    index: i,
                    count: services.len(),
                    ..CauseSubject::default()
                });
                continue;
            }
            let path = list(service, "EntityPath");
            for (j, entity) in path.iter().enumerate() {
                let remote = entity.get("Remote").and_then(Value::as_bool) == Some(true);
                if level == CauseLevel::Entity {
                    out.push(CauseSubject {
                        name: entity.get("Name").and_then(Value::as_str),
                        kind: text("Type"),
                        remote,
                        inferred,
                        coverage: entity.get("Coverage").and_then(Value::as_f64),
                        index: j,
                        count: path.len(),
                        ..CauseSubject::default()
                    });
                    continue;
                }
                for exception in list(entity, "Exceptions") {
                    out.push(CauseSubject {
                        name: exception.get("Name").and_then(Value::as_str),
                        message: exception.get("Message").and_then(Value::as_str),
                        remote,
                        inferred,
                        index: j,
                        count: path.len(),
                        ..CauseSubject::default()
                    });
                }
            }
        }
    }
    out
}

/// The array at `key`, or none.
fn list<'v>(value: &'v Value, key: &str) -> &'v [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
}

fn eval_cause(expr: &Expr, subject: &CauseSubject<'_>) -> bool {
    match expr {
        Expr::And(a, b) => eval_cause(a, subject) && eval_cause(b, subject),
        Expr::Or(a, b) => eval_cause(a, subject) || eval_cause(b, subject),
        Expr::Not(a) => !eval_cause(a, subject),
        Expr::CauseText(field, test) => {
            let value = match field {
                CauseField::Name => subject.name,
                CauseField::Type => subject.kind,
                _ => subject.message,
            };
            match (value, test) {
                (None, _) => false,
                (Some(_), None) => true,
                // A type names a resource type or its service's (`AWS::DynamoDB` is a
                // table's too), as in `id(type: ...)`.
                (Some(v), Some((op @ (Op::Eq | Op::Ne), s))) if *field == CauseField::Type => {
                    let service_level = v
                        .strip_prefix("AWS::")
                        .and_then(|rest| rest.split_once("::"))
                        .map(|(service, _)| format!("AWS::{service}"));
                    let same = v == s || service_level.as_deref() == Some(s.as_str());
                    same == (*op == Op::Eq)
                }
                (Some(v), Some((op, s))) => compare_str(v, *op, s),
            }
        }
        Expr::CauseFlag(field, want) => {
            let value = match field {
                CauseField::First => subject.index == 0,
                CauseField::Last => subject.index + 1 == subject.count,
                CauseField::Remote => subject.remote,
                _ => subject.inferred,
            };
            value == *want
        }
        Expr::CauseNumber(field, op, n) => match field {
            CauseField::Index => compare_num(subject.index as f64, *op, *n),
            _ => subject.coverage.is_some_and(|c| compare_num(c, *op, *n)),
        },
        // Trace keywords stand only outside root-cause braces (the parser sees to it).
        _ => false,
    }
}

/// A boolean keyword: for the trace, as X-Ray judges it (the root segment's response; a
/// throttle anywhere); for an entity, its own flags.
fn flag(kind: FlagKind, at: &At<'_>) -> bool {
    let trace = at.trace();
    let subject = at.subject();
    let own = |flag: &str| subject.as_ref().is_some_and(|e| e.flag(flag));
    match (kind, at) {
        (FlagKind::Fault, _) => own("fault"),
        (FlagKind::Error, _) => own("error"),
        (FlagKind::Throttle, At::Trace(_)) => trace.entities().any(|e| e.flag("throttle")),
        (FlagKind::Throttle, At::Entity { .. }) => own("throttle"),
        (FlagKind::Ok, _) => match subject
            .as_ref()
            .and_then(|e| e.get("http")?.get("response")?.get("status")?.as_u64())
        {
            Some(status) => (200..300).contains(&status),
            None => !own("fault") && !own("error") && !own("throttle"),
        },
        (FlagKind::Partial, At::Trace(_)) => {
            !trace.is_complete() || trace.entities().any(|e| e.is_in_progress())
        }
        (FlagKind::Partial, At::Entity { entity, .. }) => entity.is_in_progress(),
        (FlagKind::Inferred, At::Trace(_)) => trace.entities().any(|e| e.is_call()),
        (FlagKind::Inferred, At::Entity { entity, .. }) => entity.is_call(),
        // The service is the trace's entry point.
        (FlagKind::Root, At::Trace(_)) => subject.is_some(),
        (FlagKind::Root, At::Entity { entity, .. }) => {
            root(trace).is_some_and(|r| r.id() == entity.id() && r.name() == entity.name())
        }
    }
}

/// The values of a string keyword: the request's fields of the root segment (or the entity),
/// and any segment's `user`, zone, instance and ARN (or the entity's segment's).
fn text_values<'a>(kind: TextKind, at: &At<'a>) -> Vec<&'a str> {
    let request = |field: &str| {
        at.subject()
            .and_then(|e| e.get("http")?.get("request")?.get(field)?.as_str())
            .into_iter()
            .collect()
    };
    let of_segments = |read: &dyn Fn(&'a Value) -> Option<&'a Value>| -> Vec<&'a str> {
        let docs: Vec<&'a Value> = match at {
            At::Trace(trace) => trace
                .entities()
                .filter(TraceEntity::is_segment)
                .map(|e| e.doc())
                .collect(),
            At::Entity { entity, .. } => vec![entity.root_doc()],
        };
        let mut values: Vec<&'a str> = docs
            .into_iter()
            .filter_map(|doc| read(doc)?.as_str())
            .collect();
        values.dedup();
        values
    };
    match kind {
        TextKind::Url => request("url"),
        TextKind::Method => request("method"),
        TextKind::UserAgent => request("user_agent"),
        TextKind::ClientIp => request("client_ip"),
        TextKind::User => of_segments(&|d| d.get("user")),
        TextKind::AvailabilityZone => {
            of_segments(&|d| d.get("aws")?.get("ec2")?.get("availability_zone"))
        }
        TextKind::InstanceId => of_segments(&|d| d.get("aws")?.get("ec2")?.get("instance_id")),
        TextKind::ResourceArn => of_segments(&|d| d.get("resource_arn")),
    }
}

/// The type of a node as X-Ray names it: a segment's `origin`; for an AWS call, the
/// resource's type when the call names one (`AWS::DynamoDB::Table`), else the service's
/// (`AWS::DynamoDB`); `remote` for another remote call.
pub(crate) fn node_type(entity: &TraceEntity<'_>) -> Option<String> {
    if entity.is_segment() {
        return entity
            .get("origin")
            .and_then(Value::as_str)
            .map(str::to_owned);
    }
    let name = entity.name()?;
    match entity.get("namespace").and_then(Value::as_str)? {
        "aws" => {
            let aws = entity.get("aws");
            let has = |key: &str| aws.and_then(|a| a.get(key)).is_some();
            let resource = [
                ("table_name", "Table"),
                ("queue_url", "Queue"),
                ("bucket_name", "Bucket"),
            ]
            .into_iter()
            .find(|(key, _)| has(key));
            Some(match resource {
                Some((_, resource)) => format!("AWS::{name}::{resource}"),
                None => format!("AWS::{name}"),
            })
        }
        "remote" => Some("remote".to_owned()),
        _ => None,
    }
}

impl Node {
    /// Whether a node entity (a segment, or an AWS or remote call) is this node.
    fn matches(&self, entity: &TraceEntity<'_>) -> bool {
        self.is(
            entity.name(),
            node_type(entity).as_deref(),
            entity.root_doc(),
        )
    }

    /// Whether the service of the segment `doc` is this node.
    fn matches_segment(&self, doc: &Value) -> bool {
        self.is(
            doc.get("name").and_then(Value::as_str),
            doc.get("origin").and_then(Value::as_str),
            doc,
        )
    }

    /// A type matches a resource type or its service's (`AWS::DynamoDB` matches a table's
    /// calls); the account is the segment's `aws.account_id`.
    fn is(&self, name: Option<&str>, kind: Option<&str>, segment: &Value) -> bool {
        if self.name.as_deref().is_some_and(|n| name != Some(n)) {
            return false;
        }
        if let Some(want) = self.kind.as_deref() {
            let service_level = kind
                .and_then(|k| k.strip_prefix("AWS::"))
                .and_then(|rest| rest.split_once("::"))
                .map(|(service, _)| format!("AWS::{service}"));
            if kind != Some(want) && service_level.as_deref() != Some(want) {
                return false;
            }
        }
        if let Some(want) = self.account.as_deref() {
            let account = segment
                .get("aws")
                .and_then(|a| a.get("account_id"))
                .and_then(Value::as_str);
            if account != Some(want) {
                return false;
            }
        }
        true
    }
}

/// The entities of the nodes `node` names: segments, and AWS and remote calls that no
/// segment of the trace answered.
fn service_entities<'a>(
    trace: &'a Trace,
    node: &'a Node,
) -> impl Iterator<Item = TraceEntity<'a>> + 'a {
    trace
        .entities()
        .filter(move |e| is_service_node(e) && node.matches(e))
}

/// The calling subsegments of the calls from a `from` node to a `to` node: AWS and remote
/// calls, the callee being the segments that name the call as their parent, else the call's
/// own inferred node.
fn calls<'a>(
    trace: &'a Trace,
    from: &'a Node,
    to: &'a Node,
) -> impl Iterator<Item = TraceEntity<'a>> + 'a {
    let answered = trace.answering();
    trace.entities().filter(move |call| {
        if call.is_segment() || call.is_orphaned() || !from.matches_segment(call.root_doc()) {
            return false;
        }
        match call.id().and_then(|id| answered.get(id)) {
            Some(segments) => segments.iter().any(|segment| to.matches(segment)),
            None => is_service_node(call) && to.matches(call),
        }
    })
}

/// Whether an entity is a node of the service map: a segment, or a downstream call.
pub(crate) fn is_service_node(entity: &TraceEntity<'_>) -> bool {
    entity.is_segment() || entity.is_call()
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
    let (start, end) = trace.index().ended?;
    Some(((end - start) * 1e6).round() / 1e6)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Wherever the index decides, it decides as the walk over the entities does: checked on
    /// every form over the checked-in multi-service trace, a healthy one and a partial one.
    #[test]
    fn the_index_judges_as_the_walk_does() {
        let fixture: Vec<Value> =
            serde_json::from_str(include_str!("../tests/data/trace.json")).unwrap();
        let healthy = serde_json::json!({
            "name": "catalog", "id": "70de5b6f19ff9a0a", "start_time": 100.0,
            "end_time": 100.25, "trace_id": "1-581cf771-a006649127e371903a2de979",
            "http": {"request": {"method": "get"}, "response": {"status": 200}},
            "annotations": {"tier": "gold", "items": 12},
            "subsegments": [{"name": "cache", "id": "70de5b6f19ff9a0b", "start_time": 100.05,
                             "end_time": 100.5, "throttle": true}],
        });
        let partial = serde_json::json!({
            "name": "api", "id": "70de5b6f19ff9a0c", "start_time": 100.0, "in_progress": true,
            "trace_id": "1-581cf771-a006649127e371903a2de97a", "fault": true,
        });
        let traces: Vec<Trace> = [fixture, vec![healthy], vec![partial]]
            .into_iter()
            .flat_map(|docs| crate::trace::assemble(docs).unwrap())
            .collect();
        let mut names: Vec<String> = traces
            .iter()
            .flat_map(|t| t.entities().filter_map(|e| e.name().map(str::to_owned)))
            .collect();
        names.extend(["nowhere".to_owned()]);
        let mut exprs: Vec<String> = [
            "fault",
            "error",
            "throttle",
            "ok",
            "partial",
            "root",
            "!fault",
            "fault = false",
            "responsetime > 0.1",
            "responsetime <= 0.25",
            "duration >= 0.3",
            "duration < 1",
            "http.status = 500",
            "http.status != 200",
            "http.status >= 400",
            "annotation.tier",
            "!annotation.tier",
            "annotation.tier = \"gold\"",
            "annotation.items > 3",
            "annotation.missing",
            "annotation.missing != 1",
            "fault OR throttle",
            "!(fault AND error)",
            "throttle AND !ok",
        ]
        .map(str::to_owned)
        .to_vec();
        for name in &names {
            for sub in [
                "",
                " { fault }",
                " { error OR throttle }",
                " { !fault }",
                " { ok }",
            ] {
                exprs.push(format!("service(\"{name}\"){sub}"));
                exprs.push(format!("!service(\"{name}\"){sub}"));
                exprs.push(format!(
                    "service(id(name: \"{name}\", type: \"AWS::X\")){sub}"
                ));
            }
            for to in &names {
                exprs.push(format!("edge(\"{name}\", \"{to}\")"));
                exprs.push(format!("edge(\"{name}\", \"{to}\") {{ fault }}"));
            }
        }
        let mut decided = 0;
        for text in &exprs {
            let filter = Filter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            for trace in &traces {
                let walked = eval(&filter.expr, trace);
                if let Some(judged) = prejudge(&filter.expr, trace.index()) {
                    decided += 1;
                    assert_eq!(judged, walked, "{text} on {}", trace.id());
                }
                assert_eq!(filter.matches(trace), walked, "{text} on {}", trace.id());
            }
        }
        assert!(
            decided > exprs.len(),
            "the index decided only {decided} cases"
        );
    }
}
