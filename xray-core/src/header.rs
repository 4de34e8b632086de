//! The `X-Amzn-Trace-Id` header.
//!
//! The header is a `;`-separated list of `key=value` fields: `Root` (the trace id), `Parent` (the
//! caller's segment id), `Sampled` (`1`, `0` or `?`), `Self` (added by load balancers, never
//! forwarded) and any number of other fields (`Lineage`, application fields) that are carried
//! through unchanged.
//!
//! Parsing borrows the input and splits it in place. It allocates only when the header has fields
//! beyond `Root`, `Parent` and `Sampled` that must be forwarded (once), or holds a malformed root
//! or parent, which it keeps. Formatting writes into
//! any [`fmt::Write`], so middleware can reuse one `String` per connection.
//!
//! The parsing rules, and which official SDK each follows, are in [`TraceHeader`]'s docs.

use std::fmt;
use std::str::FromStr;

use crate::id::{SegmentId, TraceId};

// ===== Sampled =====

/// The sampling decision carried in the `Sampled` field of a trace header.
///
/// # Examples
///
/// ```
/// use xray_sdk::TraceHeader;
/// use xray_sdk::header::Sampled;
///
/// let header: TraceHeader = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=?".parse()?;
/// assert_eq!(header.sampled(), Sampled::Requested);
/// assert_eq!(header.sampled().decision(), None);
///
/// assert_eq!(Sampled::from(true), Sampled::Yes);
/// assert_eq!(Sampled::Yes.as_str(), Some("1"));
/// assert_eq!(Sampled::Unknown.as_str(), None);
/// # Ok::<(), xray_sdk::header::ParseTraceHeaderError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Sampled {
    /// `Sampled=1`: the caller records the trace, and so should we.
    Yes,
    /// `Sampled=0`: the caller does not record the trace.
    No,
    /// `Sampled=?`: the caller asks us to decide and to report the decision in the response
    /// header (see [`TraceHeader::response`]).
    Requested,
    /// No `Sampled` field, or a value other than `1`, `0` or `?`: we decide.
    #[default]
    Unknown,
}

impl Sampled {
    /// `Yes` for `true`, `No` for `false`.
    pub const fn from_decision(sampled: bool) -> Self {
        if sampled { Self::Yes } else { Self::No }
    }

    /// The decision this value carries: `Some(true)` for `Yes`, `Some(false)` for `No`, `None`
    /// when the decision is still to be made.
    pub const fn decision(self) -> Option<bool> {
        match self {
            Self::Yes => Some(true),
            Self::No => Some(false),
            Self::Requested | Self::Unknown => None,
        }
    }

    /// The field value as written in the header; `None` for `Unknown`, which is never written.
    pub const fn as_str(self) -> Option<&'static str> {
        match self {
            Self::Yes => Some("1"),
            Self::No => Some("0"),
            Self::Requested => Some("?"),
            Self::Unknown => None,
        }
    }

    fn from_value(value: &str) -> Self {
        match value {
            "1" => Self::Yes,
            "0" => Self::No,
            "?" => Self::Requested,
            _ => Self::Unknown,
        }
    }
}

impl From<bool> for Sampled {
    fn from(sampled: bool) -> Self {
        Self::from_decision(sampled)
    }
}

// ===== errors =====

/// Why a string is not a usable `X-Amzn-Trace-Id` header.
///
/// A header without a valid `Root` carries no trace context: treat it as absent and start a
/// new trace. The message never repeats the header itself.
///
/// # Examples
///
/// ```
/// use xray_sdk::TraceHeader;
///
/// let err = "Parent=53995c3f42cd8ad8;Sampled=1".parse::<TraceHeader>().unwrap_err();
/// assert!(err.is_missing_root());
///
/// // A malformed root is replaced, not an error.
/// let header: TraceHeader = "Root=1-5759e988-xyz;Sampled=1".parse()?;
/// assert_eq!(header.received_root(), Some("1-5759e988-xyz"));
/// # Ok::<(), xray_sdk::header::ParseTraceHeaderError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .kind.message())]
#[non_exhaustive]
pub struct ParseTraceHeaderError {
    kind: ParseErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParseErrorKind {
    TooLong,
    MissingRoot,
}

impl ParseErrorKind {
    fn message(self) -> &'static str {
        match self {
            Self::TooLong => {
                "invalid X-Amzn-Trace-Id header: longer than 4096 bytes (TraceHeader::MAX_LEN)"
            }
            Self::MissingRoot => "invalid X-Amzn-Trace-Id header: no `Root` field",
        }
    }
}

impl ParseTraceHeaderError {
    const fn new(kind: ParseErrorKind) -> Self {
        Self { kind }
    }

    /// The header is longer than [`TraceHeader::MAX_LEN`] and was not read.
    pub fn is_too_long(&self) -> bool {
        self.kind == ParseErrorKind::TooLong
    }

    /// The header has no non-empty `Root` field.
    pub fn is_missing_root(&self) -> bool {
        self.kind == ParseErrorKind::MissingRoot
    }
}

/// Why a field cannot be added with [`TraceHeader::with_extra`].
///
/// # Examples
///
/// ```
/// use xray_sdk::{TraceHeader, TraceId};
///
/// let header = TraceHeader::new(TraceId::new());
/// assert!(header.clone().with_extra("Parent", "x").unwrap_err().is_reserved_key());
/// assert!(header.with_extra("Tenant", "a;b").unwrap_err().is_invalid());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .kind.message())]
#[non_exhaustive]
pub struct ExtraFieldError {
    kind: ExtraErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExtraErrorKind {
    ReservedKey,
    Invalid,
    OverBudget,
}

impl ExtraErrorKind {
    fn message(self) -> &'static str {
        match self {
            Self::ReservedKey => {
                "trace header field: `Root`, `Parent`, `Sampled` and `Self` are set by the SDK"
            }
            Self::Invalid => {
                "trace header field: the key must be non-empty, the key may not contain `=`, \
                 neither may contain `;`, control characters or surrounding whitespace"
            }
            Self::OverBudget => {
                "trace header field: extra fields may hold at most 256 bytes of keys and values \
                 (TraceHeader::MAX_EXTRA_LEN)"
            }
        }
    }
}

impl ExtraFieldError {
    /// The key is one the SDK manages itself (`Root`, `Parent`, `Sampled`, `Self`, any case).
    pub fn is_reserved_key(&self) -> bool {
        self.kind == ExtraErrorKind::ReservedKey
    }

    /// The key or value cannot be written into a header and read back unchanged.
    pub fn is_invalid(&self) -> bool {
        self.kind == ExtraErrorKind::Invalid
    }

    /// The field would take the extra fields past [`TraceHeader::MAX_EXTRA_LEN`].
    pub fn is_over_budget(&self) -> bool {
        self.kind == ExtraErrorKind::OverBudget
    }
}

// ===== TraceHeader =====

/// A parsed `X-Amzn-Trace-Id` header: the trace context a request carries.
///
/// A header always has a [`root`](Self::root) trace id; [`parent`](Self::parent),
/// [`sampled`](Self::sampled) and any [`extra`](Self::extra) fields are optional. `Display`
/// writes the canonical form (`Root`, `Parent`, `Sampled`, then the extra fields in their
/// original order, with no trailing `;`), and parsing that form gives back an equal header.
///
/// # Parsing
///
/// Parsing keeps everything that can be kept. Where the official SDKs disagree, the parser
/// follows these rules, each named after the SDK it follows:
///
/// - whitespace around fields, keys and values is trimmed, empty fields are skipped, and a field
///   without `=` is skipped (Go, Java, Node);
/// - `Root`, `Parent`, `Sampled` and `Self` are matched without regard to case (Node); when a
///   field repeats, the last non-empty one wins (all SDKs);
/// - a value is everything after the first `=` (Go, Java);
/// - a `Root` in upper- or mixed-case hex is a valid trace id and keeps its spelling: it is
///   recorded and forwarded exactly as received (Go, Python, Node);
/// - a `Root` that is not a trace id (`Root=fake`, `Root=0-…`, one digit too many) is replaced by
///   a new trace id, and the rest of the header is kept: `Parent`, `Sampled`, `Lineage` and the
///   other fields (Java). Go and Python keep such a root as it is, but X-Ray's segment schema
///   refuses that `trace_id`, so the trace would be lost from this service on; with a new root
///   it is recorded, and every service downstream joins it. The received text stays readable
///   through [`received_root`](Self::received_root);
/// - a missing or empty `Root` leaves nothing to continue: the header is an error and the
///   caller starts a new trace (all SDKs);
/// - a `Parent` that is not 16 hex digits is kept as received, readable through
///   [`received_parent`](Self::received_parent), but is not a [`parent`](Self::parent): X-Ray
///   documents `parent_id` as 16 hex digits, so it is not written into documents. It is
///   never forwarded either, as every outgoing header names its own parent (all SDKs);
/// - an unknown `Sampled` value means no decision (Go, Java, Python);
/// - other fields are kept in their original order while the sum of their key and value lengths
///   stays within [`MAX_EXTRA_LEN`](Self::MAX_EXTRA_LEN); a field that does not fit, has an
///   empty key or holds control characters is dropped (Node).
///
/// What was replaced or dropped is logged at debug level, at most once a minute.
///
/// # Examples
///
/// ```
/// use xray_sdk::{SegmentId, TraceHeader};
/// use xray_sdk::header::Sampled;
///
/// let incoming: TraceHeader =
///     "Root=1-5759e988-bd862e3fe1be46a994272793; Parent=53995c3f42cd8ad8; Sampled=1; Tenant=blue"
///         .parse()?;
/// assert_eq!(incoming.root().to_string(), "1-5759e988-bd862e3fe1be46a994272793");
/// assert_eq!(incoming.parent(), Some(SegmentId::from_u64(0x53995c3f42cd8ad8)));
/// assert_eq!(incoming.sampled(), Sampled::Yes);
/// assert_eq!(incoming.extra().collect::<Vec<_>>(), [("Tenant", "blue")]);
/// assert_eq!(
///     incoming.to_string(),
///     "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Tenant=blue"
/// );
///
/// // Building one for a new trace:
/// let header = TraceHeader::new(incoming.root()).with_sampled(Sampled::No);
/// assert_eq!(header.to_string(), "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0");
/// # Ok::<(), xray_sdk::header::ParseTraceHeaderError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceHeader {
    root: TraceId,
    parent: Option<SegmentId>,
    sampled: Sampled,
    // The fields to forward, validated and in received order, already in wire form
    // (`k=v;k=v`): one allocation instead of a Vec of pairs, and writing them out is one copy.
    extra: Option<Box<str>>,
    // What a malformed header held in place of a root or a parent; boxed, as it is rare.
    received: Option<Box<Received>>,
}

/// The values a header held that are not ids, kept as received.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Received {
    root: Option<Box<str>>,
    parent: Option<Box<str>>,
}

/// Header diagnostics: at most one line a minute, however many requests carry bad headers.
static PARSE_LOG: crate::diag::LogLimiter = crate::diag::LogLimiter::new(60);

fn parse_log_allowed() -> bool {
    PARSE_LOG.allow(crate::clock::now_micros_for_logs())
}

impl TraceHeader {
    /// The longest header value [`parse`](Self::parse) reads, in bytes. Longer values are
    /// refused without being scanned. Load balancers cut all request headers to 7 KB in total
    /// and the official SDKs write well under 200 bytes, so 4 KB leaves room for any honest
    /// header while bounding the work done on hostile ones.
    pub const MAX_LEN: usize = 4096;

    /// The most bytes of keys and values kept in extra fields (the sum of `key.len() +
    /// value.len()` over them, as the Node SDK counts). Fields beyond it are dropped, so what
    /// a header forwards stays small however much it was given.
    pub const MAX_EXTRA_LEN: usize = 256;

    /// A header for the trace `root`, with no parent, no sampling decision and no extra fields.
    pub const fn new(root: TraceId) -> Self {
        Self {
            root,
            parent: None,
            sampled: Sampled::Unknown,
            extra: None,
            received: None,
        }
    }

    /// Sets the id of the caller's segment.
    pub const fn with_parent(mut self, parent: SegmentId) -> Self {
        self.parent = Some(parent);
        self
    }

    /// Sets the sampling decision.
    pub const fn with_sampled(mut self, sampled: Sampled) -> Self {
        self.sampled = sampled;
        self
    }

    /// Appends an extra field, written after all others.
    ///
    /// # Errors
    ///
    /// When the key is reserved, the key or value cannot be read back unchanged (see
    /// [`ExtraFieldError`]), or the extra fields would exceed
    /// [`MAX_EXTRA_LEN`](Self::MAX_EXTRA_LEN).
    pub fn with_extra(mut self, key: &str, value: &str) -> Result<Self, ExtraFieldError> {
        let err = |kind| Err(ExtraFieldError { kind });
        if Reserved::of(key).is_some() {
            return err(ExtraErrorKind::ReservedKey);
        }
        if key.is_empty()
            || key.contains('=')
            || key.contains(';')
            || value.contains(';')
            || key.trim_ascii() != key
            || value.trim_ascii() != value
            || !is_clean_field(key, value)
        {
            return err(ExtraErrorKind::Invalid);
        }
        let used: usize = self.extra().map(|(k, v)| k.len() + v.len()).sum();
        if used + key.len() + value.len() > Self::MAX_EXTRA_LEN {
            return err(ExtraErrorKind::OverBudget);
        }
        let old = self.extra.take();
        let old = old.as_deref().unwrap_or("");
        let mut buf = String::with_capacity(old.len() + 2 + key.len() + value.len());
        buf.push_str(old);
        if !buf.is_empty() {
            buf.push(';');
        }
        buf.push_str(key);
        buf.push('=');
        buf.push_str(value);
        self.extra = Some(buf.into_boxed_str());
        Ok(self)
    }

    /// Parses a header value; same as `s.parse::<TraceHeader>()`.
    ///
    /// A malformed `Root` is replaced by a new trace id and a malformed `Parent` is set aside,
    /// and the rest of the header is kept (see [Parsing](Self#parsing)).
    ///
    /// # Errors
    ///
    /// When `s` is longer than [`MAX_LEN`](Self::MAX_LEN), or has no non-empty `Root`.
    pub fn parse(s: &str) -> Result<Self, ParseTraceHeaderError> {
        if s.len() > Self::MAX_LEN {
            return Err(ParseTraceHeaderError::new(ParseErrorKind::TooLong));
        }
        let mut root = None;
        let mut parent = None;
        let mut sampled = None;
        let mut extra = ExtraBudget::default();
        let mut extra_bytes = 0;
        let mut dropped = 0usize;
        for (key, value) in fields(s) {
            match Reserved::of(key) {
                // An empty value says nothing; it does not erase an earlier one.
                Some(_) if value.is_empty() => {}
                Some(Reserved::Root) => root = Some(value),
                Some(Reserved::Parent) => parent = Some(value),
                Some(Reserved::Sampled) => sampled = Some(value),
                Some(Reserved::SelfId) => {}
                None => {
                    if extra.admit(key, value) {
                        // The field, its `=`, and the `;` before all but the first.
                        extra_bytes += usize::from(extra_bytes > 0) + key.len() + 1 + value.len();
                    } else {
                        dropped += 1;
                    }
                }
            }
        }
        let root = root.ok_or(ParseTraceHeaderError::new(ParseErrorKind::MissingRoot))?;
        let (root, received_root) = match root.parse::<TraceId>() {
            Ok(id) => (id, None),
            // Java's rule: a new root, and the rest of the header stands.
            Err(_) => (TraceId::new(), Some(root)),
        };
        let (parent, received_parent) = match parent.map(|p| (p, p.parse::<SegmentId>())) {
            None => (None, None),
            Some((_, Ok(id))) => (Some(id), None),
            Some((text, Err(_))) => (None, Some(text)),
        };
        if (dropped > 0 || received_root.is_some() || received_parent.is_some())
            && parse_log_allowed()
        {
            // The values themselves are not logged: a header is the caller's data.
            tracing::debug!(
                dropped_fields = dropped,
                root_replaced = received_root.is_some(),
                parent_not_an_id = received_parent.is_some(),
                "X-Amzn-Trace-Id header partly malformed: a root that is not a trace id is \
                 replaced by a new one, a parent that is not a segment id is not recorded, and \
                 extra fields that are invalid or over 256 bytes are dropped (logged once a minute)"
            );
        }
        let received = (received_root.is_some() || received_parent.is_some()).then(|| {
            Box::new(Received {
                root: received_root.map(Box::from),
                parent: received_parent.map(Box::from),
            })
        });
        let sampled = sampled.map_or(Sampled::Unknown, Sampled::from_value);
        // A second pass over the same fields with the same rule, so the string is allocated
        // once at its exact final size (`into_boxed_str` then does not reallocate); headers
        // without extra fields never get here.
        let extra = (extra_bytes > 0).then(|| {
            let mut budget = ExtraBudget::default();
            let mut buf = String::with_capacity(extra_bytes);
            for (key, value) in fields(s) {
                if Reserved::of(key).is_none() && budget.admit(key, value) {
                    if !buf.is_empty() {
                        buf.push(';');
                    }
                    buf.push_str(key);
                    buf.push('=');
                    buf.push_str(value);
                }
            }
            buf.into_boxed_str()
        });
        Ok(Self {
            root,
            parent,
            sampled,
            extra,
            received,
        })
    }

    /// The `Root` exactly as received, when it was not a trace id and [`root`](Self::root) is
    /// a new one in its place; `None` when the received root is the root.
    ///
    /// # Examples
    ///
    /// ```
    /// use xray_sdk::TraceHeader;
    /// use xray_sdk::header::Sampled;
    ///
    /// let header: TraceHeader = "Root=fake;Sampled=1;Lineage=10:1234abcd:3".parse()?;
    /// assert_eq!(header.received_root(), Some("fake"));
    /// assert_ne!(header.root().to_string(), "fake");
    /// // The rest of the header stands.
    /// assert_eq!(header.sampled(), Sampled::Yes);
    /// assert_eq!(header.lineage(), Some("10:1234abcd:3"));
    /// # Ok::<(), xray_sdk::header::ParseTraceHeaderError>(())
    /// ```
    pub fn received_root(&self) -> Option<&str> {
        self.received.as_ref()?.root.as_deref()
    }

    /// The `Parent` exactly as received, when it was not a segment id (16 hex digits) and
    /// [`parent`](Self::parent) is therefore `None`.
    ///
    /// # Examples
    ///
    /// ```
    /// use xray_sdk::TraceHeader;
    ///
    /// let header: TraceHeader =
    ///     "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f".parse()?;
    /// assert_eq!(header.parent(), None);
    /// assert_eq!(header.received_parent(), Some("53995c3f"));
    /// # Ok::<(), xray_sdk::header::ParseTraceHeaderError>(())
    /// ```
    pub fn received_parent(&self) -> Option<&str> {
        self.received.as_ref()?.parent.as_deref()
    }

    /// The extra fields in wire form (`k=v;k=v`), shared, for entities to carry onto their
    /// outgoing headers; `None` when there are none.
    pub(crate) fn forwarded(&self) -> Option<std::sync::Arc<str>> {
        self.extra.as_deref().map(std::sync::Arc::from)
    }

    /// Sets the extra fields from their wire form as [`forwarded`](Self::forwarded) gives it
    /// (already validated and within the budget).
    pub(crate) fn with_forwarded(mut self, fields: Option<&str>) -> Self {
        self.extra = fields.map(Box::from);
        self
    }

    /// The trace this request belongs to.
    pub const fn root(&self) -> TraceId {
        self.root
    }

    /// The id of the caller's segment, if it sent a valid one.
    pub const fn parent(&self) -> Option<SegmentId> {
        self.parent
    }

    /// The caller's sampling decision.
    pub const fn sampled(&self) -> Sampled {
        self.sampled
    }

    /// The `Lineage` field that AWS services append, if present. It is opaque: forward it, do
    /// not interpret it. It is also listed by [`extra`](Self::extra).
    pub fn lineage(&self) -> Option<&str> {
        self.extra().find(|(k, _)| *k == "Lineage").map(|(_, v)| v)
    }

    /// The fields other than `Root`, `Parent`, `Sampled` and `Self`, as `(key, value)` in the
    /// order they were received.
    pub fn extra(&self) -> ExtraFields<'_> {
        ExtraFields {
            fields: self.extra.as_deref().map(|s| s.split(';')),
        }
    }

    /// Appends the canonical header value to `buf`, without allocating beyond `buf`'s growth.
    pub fn write_to(&self, buf: &mut String) {
        // Writing into a String cannot fail.
        let _ = write_header(
            buf,
            self.root,
            self.parent,
            self.sampled,
            self.extra.as_deref(),
        );
    }

    /// The header to send on an outgoing call made from this trace: `Root`, `Parent=parent`
    /// (the id of the subsegment that represents the call), `Sampled=1` or `Sampled=0`, then
    /// this header's extra fields.
    ///
    /// The decision is always concrete downstream, never `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// use xray_sdk::{SegmentId, TraceHeader};
    ///
    /// let incoming: TraceHeader =
    ///     "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=?;Foo=bar"
    ///         .parse()?;
    /// let subsegment = SegmentId::from_u64(0x0123456789abcdef);
    ///
    /// let mut buf = String::new(); // reuse it across requests
    /// incoming.downstream(subsegment, true).write_to(&mut buf);
    /// assert_eq!(
    ///     buf,
    ///     "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=0123456789abcdef;Sampled=1;Foo=bar"
    /// );
    /// # Ok::<(), xray_sdk::header::ParseTraceHeaderError>(())
    /// ```
    pub fn downstream(&self, parent: SegmentId, sampled: bool) -> DownstreamHeader<'_> {
        DownstreamHeader {
            root: self.root,
            parent,
            sampled,
            extra: self.extra.as_deref(),
        }
    }

    /// The header a server returns to the caller of the request that carried this header:
    /// `Root` always, and `Sampled=<sampled>` only when the caller asked with `Sampled=?`
    /// (the Python and Java SDKs' behaviour).
    ///
    /// # Examples
    ///
    /// ```
    /// use xray_sdk::TraceHeader;
    ///
    /// let asked: TraceHeader = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=?".parse()?;
    /// assert_eq!(
    ///     asked.response(false).to_string(),
    ///     "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0"
    /// );
    ///
    /// let told: TraceHeader = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1".parse()?;
    /// assert_eq!(told.response(true).to_string(), "Root=1-5759e988-bd862e3fe1be46a994272793");
    /// # Ok::<(), xray_sdk::header::ParseTraceHeaderError>(())
    /// ```
    pub fn response(&self, sampled: bool) -> ResponseHeader {
        let header = ResponseHeader::new(self.root);
        if self.sampled == Sampled::Requested {
            header.with_sampled(sampled)
        } else {
            header
        }
    }
}

impl FromStr for TraceHeader {
    type Err = ParseTraceHeaderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for TraceHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_header(
            f,
            self.root,
            self.parent,
            self.sampled,
            self.extra.as_deref(),
        )
    }
}

/// The extra fields of a [`TraceHeader`], as `(key, value)` pairs in received order.
///
/// Returned by [`TraceHeader::extra`].
#[derive(Debug, Clone)]
pub struct ExtraFields<'a> {
    fields: Option<std::str::Split<'a, char>>,
}

impl<'a> Iterator for ExtraFields<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        // Stored fields were validated on the way in: the key holds no `=`, so the first `=`
        // separates key from value.
        self.fields.as_mut()?.next()?.split_once('=')
    }
}

// ===== DownstreamHeader =====

/// The `X-Amzn-Trace-Id` value for an outgoing call, made by [`TraceHeader::downstream`].
///
/// Write it with `Display` or, to reuse a buffer, with [`write_to`](Self::write_to).
///
/// # Examples
///
/// ```
/// use xray_sdk::{SegmentId, TraceHeader, TraceId};
///
/// let header = TraceHeader::new(TraceId::from_parts(0x5759e988, 0xbd862e3fe1be46a994272793));
/// let out = header.downstream(SegmentId::from_u64(0x53995c3f42cd8ad8), false);
/// assert_eq!(
///     out.to_string(),
///     "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownstreamHeader<'a> {
    root: TraceId,
    parent: SegmentId,
    sampled: bool,
    extra: Option<&'a str>,
}

impl DownstreamHeader<'_> {
    /// Appends the header value to `buf`.
    pub fn write_to(&self, buf: &mut String) {
        // Writing into a String cannot fail.
        let _ = write_header(
            buf,
            self.root,
            Some(self.parent),
            Sampled::from_decision(self.sampled),
            self.extra,
        );
    }
}

impl fmt::Display for DownstreamHeader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_header(
            f,
            self.root,
            Some(self.parent),
            Sampled::from_decision(self.sampled),
            self.extra,
        )
    }
}

// ===== ResponseHeader =====

/// The `X-Amzn-Trace-Id` value a server sends back: `Root`, and `Sampled` when the caller asked
/// for the decision.
///
/// Made by [`TraceHeader::response`], or with [`ResponseHeader::new`] when the request carried
/// no usable header.
///
/// # Examples
///
/// ```
/// use xray_sdk::TraceId;
/// use xray_sdk::header::ResponseHeader;
///
/// let root = TraceId::from_parts(0x5759e988, 0xbd862e3fe1be46a994272793);
/// let mut buf = String::new();
/// ResponseHeader::new(root).write_to(&mut buf);
/// assert_eq!(buf, "Root=1-5759e988-bd862e3fe1be46a994272793");
/// assert_eq!(
///     ResponseHeader::new(root).with_sampled(true).to_string(),
///     "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHeader {
    root: TraceId,
    sampled: Sampled,
}

impl ResponseHeader {
    /// A response header naming only the trace.
    pub const fn new(root: TraceId) -> Self {
        Self {
            root,
            sampled: Sampled::Unknown,
        }
    }

    /// Adds the sampling decision.
    pub const fn with_sampled(mut self, sampled: bool) -> Self {
        self.sampled = Sampled::from_decision(sampled);
        self
    }

    /// Appends the header value to `buf`.
    pub fn write_to(&self, buf: &mut String) {
        // Writing into a String cannot fail.
        let _ = write_header(buf, self.root, None, self.sampled, None);
    }
}

impl fmt::Display for ResponseHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_header(f, self.root, None, self.sampled, None)
    }
}

// ===== SQS =====

/// Whether an SQS message's `AWSTraceHeader` system attribute says the trace is sampled
/// (`Sampled=1`).
///
/// Only the `Sampled` field is read, by the same rules as [`TraceHeader::parse`]; the `Root`
/// need not be valid. A value longer than [`TraceHeader::MAX_LEN`] is not sampled.
///
/// # Examples
///
/// ```
/// use xray_sdk::header::is_sqs_message_sampled;
///
/// assert!(is_sqs_message_sampled("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"));
/// assert!(!is_sqs_message_sampled("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0"));
/// assert!(!is_sqs_message_sampled("Root=1-5759e988-bd862e3fe1be46a994272793"));
/// ```
pub fn is_sqs_message_sampled(aws_trace_header: &str) -> bool {
    if aws_trace_header.len() > TraceHeader::MAX_LEN {
        return false;
    }
    fields(aws_trace_header)
        .filter(|(k, v)| Reserved::of(k) == Some(Reserved::Sampled) && !v.is_empty())
        .last()
        .is_some_and(|(_, v)| Sampled::from_value(v) == Sampled::Yes)
}

// ===== helpers =====

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reserved {
    Root,
    Parent,
    Sampled,
    SelfId,
}

impl Reserved {
    fn of(key: &str) -> Option<Self> {
        // Keys are matched regardless of case, as the Node SDK does; the other SDKs would
        // forward `root=...` as an unknown field, which helps nobody. The length picks the
        // candidate, so each field costs at most two short comparisons.
        let (name, reserved) = match key.len() {
            4 if key
                .as_bytes()
                .first()
                .is_some_and(|b| b.eq_ignore_ascii_case(&b'r')) =>
            {
                ("Root", Self::Root)
            }
            4 => ("Self", Self::SelfId),
            6 => ("Parent", Self::Parent),
            7 => ("Sampled", Self::Sampled),
            _ => return None,
        };
        key.eq_ignore_ascii_case(name).then_some(reserved)
    }
}

/// The `(key, value)` fields of a header value: split on `;`, then at the first `=`, with
/// surrounding ASCII whitespace trimmed. Parts without `=` or with an empty key are skipped.
fn fields(s: &str) -> Fields<'_> {
    Fields { rest: s }
}

struct Fields<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        // One pass over the bytes finds both the `;` that ends the part and its first `=`;
        // `split` + `split_once` would search each part twice. Both bytes are ASCII, so every
        // cut falls on a char boundary and `get` never fails.
        while !self.rest.is_empty() {
            let bytes = self.rest.as_bytes();
            let mut eq = None;
            let mut end = bytes.len();
            for (i, &b) in bytes.iter().enumerate() {
                if b == b';' {
                    end = i;
                    break;
                }
                if b == b'=' && eq.is_none() {
                    eq = Some(i);
                }
            }
            let part = self.rest.get(..end).unwrap_or_default();
            self.rest = self.rest.get(end + 1..).unwrap_or_default();
            let Some(eq) = eq else { continue };
            let key = part.get(..eq).unwrap_or_default().trim_ascii();
            if !key.is_empty() {
                let value = part.get(eq + 1..).unwrap_or_default().trim_ascii();
                return Some((key, value));
            }
        }
        None
    }
}

/// Decides which extra fields are kept, in order, within [`TraceHeader::MAX_EXTRA_LEN`].
#[derive(Default)]
struct ExtraBudget {
    used: usize,
}

impl ExtraBudget {
    fn admit(&mut self, key: &str, value: &str) -> bool {
        let len = key.len() + value.len();
        if !is_clean_field(key, value) || self.used + len > TraceHeader::MAX_EXTRA_LEN {
            return false;
        }
        self.used += len;
        true
    }
}

/// Control characters cannot go into an HTTP header value, so a field holding one cannot be
/// forwarded.
fn is_clean_field(key: &str, value: &str) -> bool {
    !key.bytes()
        .chain(value.bytes())
        .any(|b| b.is_ascii_control())
}

fn write_header<W: fmt::Write>(
    w: &mut W,
    root: TraceId,
    parent: Option<SegmentId>,
    sampled: Sampled,
    extra: Option<&str>,
) -> fmt::Result {
    let mut root_buf = [0u8; TraceId::LEN];
    root.write_to(&mut root_buf);
    w.write_str("Root=")?;
    w.write_str(ascii(&root_buf))?;
    if let Some(parent) = parent {
        let mut parent_buf = [0u8; SegmentId::LEN];
        parent.write_to(&mut parent_buf);
        w.write_str(";Parent=")?;
        w.write_str(ascii(&parent_buf))?;
    }
    if let Some(sampled) = sampled.as_str() {
        w.write_str(";Sampled=")?;
        w.write_str(sampled)?;
    }
    if let Some(extra) = extra {
        w.write_str(";")?;
        w.write_str(extra)?;
    }
    Ok(())
}

fn ascii(buf: &[u8]) -> &str {
    // Only ever called on buffers filled by the ids' `write_to`, which writes ASCII.
    std::str::from_utf8(buf).unwrap_or_default()
}
