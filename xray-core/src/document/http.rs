//! `http`: the request a segment served or a subsegment made, and its response.

use std::fmt;

use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// The `http` block.
///
/// # Examples
///
/// ```
/// use xray_sdk::document::{Http, HttpRequest};
///
/// let mut http = Http::default();
/// let mut req = HttpRequest::default();
/// req.method = Some("GET".into());
/// req.set_url("https://example.net/items?page=2");
/// http.request = Some(req);
/// assert_eq!(http.request.unwrap().url.as_deref(), Some("https://example.net/items"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Http {
    /// The request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HttpRequest>,
    /// The response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HttpResponse>,
}

/// `http.request`.
///
/// The four strings are written cut to 250 characters, the service's limit for them.
///
/// `traced` (the callee is instrumented too) is written at the top level of the subsegment, as
/// the Node SDK sends it and the segment schema describes it; see
/// [`Document::set_traced`](crate::Document::set_traced). When reading a document, a `traced`
/// found here is honoured as well.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HttpRequest {
    /// The method, e.g. `GET`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "capped"
    )]
    pub method: Option<String>,
    /// Scheme, host and path.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "capped"
    )]
    pub url: Option<String>,
    /// The `User-Agent` header.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "capped"
    )]
    pub user_agent: Option<String>,
    /// The client address: the peer, or the first `X-Forwarded-For` entry.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "capped"
    )]
    pub client_ip: Option<String>,
    /// Whether `client_ip` came from `X-Forwarded-For` (and so may be forged).
    #[serde(default, skip_serializing_if = "is_false")]
    pub x_forwarded_for: bool,
    #[serde(default, skip_serializing)]
    pub(crate) traced: bool,
}

/// `http.response`.
///
/// When reading, numbers sent as strings or floats are accepted, and values that are not
/// numbers are dropped instead of failing the document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HttpResponse {
    /// The status code.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_status"
    )]
    pub status: Option<u16>,
    /// The body length in bytes; `-1` is sometimes sent for unknown.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_i64"
    )]
    pub content_length: Option<i64>,
}

impl HttpRequest {
    /// Sets `url` to `url` without its query string and fragment, which can carry secrets and
    /// would split one endpoint into many in the service map, and cut to
    /// [`MAX_FIELD_CHARS`] characters.
    pub fn set_url(&mut self, url: &str) {
        let end = url.find(['?', '#']).unwrap_or(url.len());
        self.url = Some(capped_field(url.get(..end).unwrap_or(url)).to_owned());
    }
}

/// The `error`, `throttle` and `fault` flags a status code implies.
///
/// | status | error | throttle | fault |
/// |---|---|---|---|
/// | 400-499 except 429 | true | | |
/// | 429 | true | true | |
/// | 500-599 | | | true |
///
/// # Examples
///
/// ```
/// use xray_sdk::document::StatusFlags;
///
/// let f = StatusFlags::from_status(429);
/// assert!(f.error && f.throttle && !f.fault);
/// assert_eq!(StatusFlags::from_status(200), StatusFlags::default());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatusFlags {
    /// A client error (4xx).
    pub error: bool,
    /// Throttled (429).
    pub throttle: bool,
    /// A server error (5xx).
    pub fault: bool,
}

impl StatusFlags {
    /// The flags for an HTTP status code.
    pub const fn from_status(status: u16) -> Self {
        Self {
            error: status >= 400 && status < 500,
            throttle: status == 429,
            fault: status >= 500 && status < 600,
        }
    }
}

/// The longest string X-Ray keeps in most fields (`user`, the `http.request` strings,
/// `sql.user`), in characters. Documents are written with such fields cut to it.
pub const MAX_FIELD_CHARS: usize = 250;

/// The first [`MAX_FIELD_CHARS`] characters of `s`, without copying: what an integration should
/// copy out of a request (a header, a path) into a document that lives as long as the request,
/// so that an oversized input is never held whole.
///
/// # Examples
///
/// ```
/// use xray_sdk::document::{MAX_FIELD_CHARS, capped_field};
///
/// let long = "é".repeat(300);
/// assert_eq!(capped_field(&long).chars().count(), MAX_FIELD_CHARS);
/// assert_eq!(capped_field("GET"), "GET");
/// ```
pub fn capped_field(s: &str) -> &str {
    prefix_chars(s, MAX_FIELD_CHARS)
}

/// The first `max` characters of `s`, without copying.
pub(crate) fn prefix_chars(s: &str, max: usize) -> &str {
    if s.len() <= max {
        // No more bytes than `max`, so no more characters.
        return s;
    }
    match s.char_indices().nth(max) {
        Some((idx, _)) => s.get(..idx).unwrap_or(s),
        None => s,
    }
}

/// Writes an optional string cut to [`MAX_FIELD_CHARS`]; used with `skip_serializing_if`.
pub(crate) fn capped<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(prefix_chars(v, MAX_FIELD_CHARS)),
        None => s.serialize_none(),
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn lenient_status<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    Ok(lenient_i64(d)?.and_then(|v| u16::try_from(v).ok()))
}

/// An integer from a number, an integral float or a numeric string; anything else is `None`.
pub(crate) fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer")
        }
        fn visit_i64<E>(self, v: i64) -> Result<Option<i64>, E> {
            Ok(Some(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Option<i64>, E> {
            Ok(i64::try_from(v).ok())
        }
        fn visit_f64<E>(self, v: f64) -> Result<Option<i64>, E> {
            Ok((v.fract() == 0.0 && v.abs() < 9.0e15).then_some(v as i64))
        }
        fn visit_str<E>(self, v: &str) -> Result<Option<i64>, E> {
            Ok(v.trim().parse().ok())
        }
        fn visit_bool<E>(self, _: bool) -> Result<Option<i64>, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Option<i64>, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Option<i64>, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Option<i64>, A::Error> {
            while a.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Option<i64>, A::Error> {
            while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }
    d.deserialize_any(V)
}
