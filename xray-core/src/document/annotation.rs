//! Annotations: indexed key-value pairs that X-Ray filter expressions can search.

use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest annotation key the service accepts, in characters.
pub(crate) const MAX_KEY_LEN: usize = 500;
/// The longest annotation string value the service accepts, in characters.
pub(crate) const MAX_VALUE_CHARS: usize = 1000;

/// Why an annotation was refused.
///
/// # Examples
///
/// ```
/// use xray_sdk::{Document, SegmentId};
/// use xray_sdk::document::AnnotationError;
///
/// let mut doc = Document::new("api", SegmentId::new(), 1_735_689_600.0);
/// let err = doc.put_annotation("not-valid", "x").unwrap_err();
/// assert_eq!(err, AnnotationError::InvalidKey);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnnotationError {
    /// Keys must be 1 to 500 ASCII letters, digits or underscores (`^[a-zA-Z0-9_]{1,500}$`);
    /// X-Ray filter expressions cannot find any other key.
    #[error("invalid annotation key: use 1 to 500 ASCII letters, digits or underscores")]
    InvalidKey,
    /// Floating-point values must be finite: JSON has no NaN or infinity.
    #[error("invalid annotation value: NaN and infinite numbers cannot be annotated")]
    NonFiniteNumber,
    /// Only strings, numbers and booleans can be annotations; put anything else in metadata.
    #[error("invalid annotation value: only strings, numbers and booleans can be annotated")]
    UnsupportedType,
}

/// The value of an annotation: a string, an integer, a float or a boolean.
///
/// Build one with `From` (`"text".into()`, `42.into()`, `true.into()`); a
/// [`serde_json::Value`] converts with `TryFrom`, refusing objects, arrays and null.
///
/// # Examples
///
/// ```
/// use xray_sdk::AnnotationValue;
///
/// assert_eq!(AnnotationValue::from(7_u8), AnnotationValue::Int(7));
/// assert!(AnnotationValue::try_from(serde_json::json!({"a": 1})).is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AnnotationValue {
    /// A string, at most 1000 characters once stored (longer strings are cut).
    String(String),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer too large for `i64`.
    UInt(u64),
    /// A finite float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl AnnotationValue {
    /// Checks the value and cuts strings longer than 1000 characters.
    fn normalize(mut self) -> Result<Self, AnnotationError> {
        match &mut self {
            Self::Float(f) if !f.is_finite() => return Err(AnnotationError::NonFiniteNumber),
            Self::String(s) => truncate_chars(s, MAX_VALUE_CHARS),
            _ => {}
        }
        Ok(self)
    }
}

impl From<&str> for AnnotationValue {
    fn from(v: &str) -> Self {
        Self::String(v.to_owned())
    }
}

impl From<String> for AnnotationValue {
    fn from(v: String) -> Self {
        Self::String(v)
    }
}

impl From<&String> for AnnotationValue {
    fn from(v: &String) -> Self {
        Self::String(v.clone())
    }
}

impl From<bool> for AnnotationValue {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

impl From<f64> for AnnotationValue {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}

impl From<f32> for AnnotationValue {
    fn from(v: f32) -> Self {
        Self::Float(v as f64)
    }
}

impl From<u64> for AnnotationValue {
    fn from(v: u64) -> Self {
        match i64::try_from(v) {
            Ok(i) => Self::Int(i),
            Err(_) => Self::UInt(v),
        }
    }
}

impl From<usize> for AnnotationValue {
    fn from(v: usize) -> Self {
        Self::from(v as u64)
    }
}

macro_rules! from_small_int {
    ($($t:ty),*) => {$(
        impl From<$t> for AnnotationValue {
            fn from(v: $t) -> Self {
                Self::Int(v as i64)
            }
        }
    )*};
}
from_small_int!(i8, i16, i32, i64, isize, u8, u16, u32);

impl TryFrom<serde_json::Value> for AnnotationValue {
    type Error = AnnotationError;

    fn try_from(v: serde_json::Value) -> Result<Self, AnnotationError> {
        use serde_json::Value;
        match v {
            Value::String(s) => Ok(Self::String(s)),
            Value::Bool(b) => Ok(Self::Bool(b)),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Ok(Self::Int(i))
                } else if let Some(u) = n.as_u64() {
                    Ok(Self::UInt(u))
                } else {
                    n.as_f64()
                        .map(Self::Float)
                        .ok_or(AnnotationError::NonFiniteNumber)
                }
            }
            Value::Null | Value::Array(_) | Value::Object(_) => {
                Err(AnnotationError::UnsupportedType)
            }
        }
    }
}

impl Serialize for AnnotationValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::String(v) => s.serialize_str(v),
            Self::Int(v) => s.serialize_i64(*v),
            Self::UInt(v) => s.serialize_u64(*v),
            Self::Float(v) => s.serialize_f64(*v),
            Self::Bool(v) => s.serialize_bool(*v),
        }
    }
}

/// Reads an annotation value, turning values that cannot be annotations (null, arrays,
/// objects) into `None` instead of failing the whole document.
struct LenientValue(Option<AnnotationValue>);

impl<'de> Deserialize<'de> for LenientValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LenientValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an annotation value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<LenientValue, E> {
                Ok(LenientValue(Some(AnnotationValue::Bool(v))))
            }
            fn visit_i64<E>(self, v: i64) -> Result<LenientValue, E> {
                Ok(LenientValue(Some(AnnotationValue::Int(v))))
            }
            fn visit_u64<E>(self, v: u64) -> Result<LenientValue, E> {
                Ok(LenientValue(Some(AnnotationValue::from(v))))
            }
            fn visit_f64<E>(self, v: f64) -> Result<LenientValue, E> {
                Ok(LenientValue(AnnotationValue::Float(v).normalize().ok()))
            }
            fn visit_str<E>(self, v: &str) -> Result<LenientValue, E> {
                Ok(LenientValue(Some(AnnotationValue::from(v))))
            }
            fn visit_string<E>(self, v: String) -> Result<LenientValue, E> {
                Ok(LenientValue(Some(AnnotationValue::String(v))))
            }
            fn visit_unit<E>(self) -> Result<LenientValue, E> {
                Ok(LenientValue(None))
            }
            fn visit_none<E>(self) -> Result<LenientValue, E> {
                Ok(LenientValue(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<LenientValue, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LenientValue(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<LenientValue, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LenientValue(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// The annotations of one document, in insertion order.
///
/// Stored as a vector: documents carry a handful of annotations (the service indexes at most 50
/// per trace), so a linear scan beats hashing, and an empty set allocates nothing.
///
/// # Examples
///
/// ```
/// use xray_sdk::AnnotationValue;
/// use xray_sdk::document::Annotations;
///
/// let mut a = Annotations::new();
/// a.insert("tenant", "blue")?;
/// a.insert("tenant", "green")?;
/// assert_eq!(a.get("tenant"), Some(&AnnotationValue::from("green")));
/// assert_eq!(a.len(), 1);
/// # Ok::<(), xray_sdk::document::AnnotationError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotations {
    entries: Vec<(Box<str>, AnnotationValue)>,
}

impl Annotations {
    /// No annotations.
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// Adds or replaces an annotation after checking the key and the value.
    ///
    /// String values longer than 1000 characters are cut on a character boundary.
    pub fn insert(
        &mut self,
        key: &str,
        value: impl Into<AnnotationValue>,
    ) -> Result<(), AnnotationError> {
        if !is_valid_key(key) {
            return Err(AnnotationError::InvalidKey);
        }
        let value = value.into().normalize()?;
        match self.entries.iter_mut().find(|(k, _)| &**k == key) {
            Some((_, v)) => *v = value,
            None => self.entries.push((key.into(), value)),
        }
        Ok(())
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&AnnotationValue> {
        self.entries
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| v)
    }

    /// Removes and returns the value under `key`.
    pub fn remove(&mut self, key: &str) -> Option<AnnotationValue> {
        let pos = self.entries.iter().position(|(k, _)| &**k == key)?;
        Some(self.entries.remove(pos).1)
    }

    /// The annotations in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &AnnotationValue)> {
        self.entries.iter().map(|(k, v)| (&**k, v))
    }

    /// How many annotations there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Serialize for Annotations {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.entries.len()))?;
        for (k, v) in &self.entries {
            map.serialize_entry(&**k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Annotations {
    /// Keeps every scalar entry as sent, so a document from another SDK survives a round trip;
    /// entries whose value is null, an array or an object are dropped.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Annotations;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an annotations object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Annotations, A::Error> {
                let mut out = Annotations::new();
                while let Some((k, LenientValue(v))) = a.next_entry::<String, LenientValue>()? {
                    if let Some(v) = v {
                        match out.entries.iter_mut().find(|(ek, _)| **ek == *k) {
                            Some((_, ev)) => *ev = v,
                            None => out.entries.push((k.into_boxed_str(), v)),
                        }
                    }
                }
                Ok(out)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Annotations, E> {
                Ok(Annotations::new())
            }
        }
        d.deserialize_any(V)
    }
}

/// `^[a-zA-Z0-9_]{1,500}$`
pub(crate) fn is_valid_key(key: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len())
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Cuts `s` to at most `max` characters, on a character boundary.
pub(crate) fn truncate_chars(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    if let Some((idx, _)) = s.char_indices().nth(max) {
        s.truncate(idx);
    }
}
