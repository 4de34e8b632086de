//! How an incoming request's segment is named.

use std::fmt;
use std::sync::Arc;

/// Chooses the name of the segment recorded for each incoming request.
///
/// - [`fixed`](Self::fixed): always the same name, usually the service's.
/// - [`dynamic`](Self::dynamic): the request's `Host` when it matches a wildcard pattern (`*`
///   any run of characters, `?` exactly one, case-insensitive, see
///   [`xray_sdk::sampling::wildcard_match`]),
///   otherwise a fallback name. A client chooses the `Host` it sends, so the pattern is what
///   keeps arbitrary names out of the service map: use the narrowest pattern that covers your
///   domains.
///
/// `AWS_XRAY_TRACING_NAME`, when set, names every segment whatever the strategy (the recorder
/// applies it).
///
/// # Examples
///
/// ```
/// use xray_tower::SegmentNaming;
///
/// let fixed = SegmentNaming::fixed("orders");
/// assert_eq!(fixed.name_for(Some("api.example.com")), "orders");
///
/// let dynamic = SegmentNaming::dynamic("*.example.com", "orders");
/// assert_eq!(dynamic.name_for(Some("api.example.com")), "api.example.com");
/// assert_eq!(dynamic.name_for(Some("evil.test")), "orders");
/// assert_eq!(dynamic.name_for(None), "orders");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SegmentNaming {
    kind: Kind,
}

#[derive(Clone, PartialEq, Eq)]
enum Kind {
    Fixed(Arc<str>),
    Dynamic {
        pattern: Arc<str>,
        fallback: Arc<str>,
    },
}

/// The longest segment name the service accepts, in characters; a longer `Host` is not used
/// as a name.
const MAX_NAME_CHARS: usize = 200;

impl SegmentNaming {
    /// Every segment is named `name`.
    pub fn fixed(name: impl Into<String>) -> Self {
        Self {
            kind: Kind::Fixed(name.into().into()),
        }
    }

    /// Segments are named after the request's `Host` when it matches `pattern`, otherwise
    /// `fallback`.
    pub fn dynamic(pattern: impl Into<String>, fallback: impl Into<String>) -> Self {
        Self {
            kind: Kind::Dynamic {
                pattern: pattern.into().into(),
                fallback: fallback.into().into(),
            },
        }
    }

    /// The name for a request with this `Host` header value.
    pub fn name_for<'a>(&'a self, host: Option<&'a str>) -> &'a str {
        match &self.kind {
            Kind::Fixed(name) => name,
            Kind::Dynamic { pattern, fallback } => match host {
                Some(host)
                    if !host.is_empty()
                        && host.chars().nth(MAX_NAME_CHARS).is_none()
                        && xray_sdk::sampling::wildcard_match(pattern, host) =>
                {
                    host
                }
                _ => fallback,
            },
        }
    }
}

impl From<&str> for SegmentNaming {
    /// A [`fixed`](SegmentNaming::fixed) name.
    fn from(name: &str) -> Self {
        Self::fixed(name)
    }
}

impl From<String> for SegmentNaming {
    /// A [`fixed`](SegmentNaming::fixed) name.
    fn from(name: String) -> Self {
        Self::fixed(name)
    }
}

impl fmt::Debug for SegmentNaming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Fixed(name) => f.debug_tuple("Fixed").field(name).finish(),
            Kind::Dynamic { pattern, fallback } => f
                .debug_struct("Dynamic")
                .field("pattern", pattern)
                .field("fallback", fallback)
                .finish(),
        }
    }
}
