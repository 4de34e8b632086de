//! Span and event fields, read with tracing's `Visit`.

use std::fmt;

use tracing::field::{Field, Visit};

/// The longest string kept from one field, in bytes: a `Debug` value can be any size, and a
/// document lives until its segment is sent.
const MAX_STRING: usize = 4096;

/// One field's value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(String),
}

impl Value {
    pub(crate) fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Bool(v) => (*v).into(),
            Value::I64(v) => (*v).into(),
            Value::U64(v) => (*v).into(),
            // NaN and infinities have no JSON form: kept as text.
            Value::F64(v) => serde_json::Number::from_f64(*v)
                .map_or_else(|| v.to_string().into(), serde_json::Value::Number),
            Value::Str(v) => v.as_str().into(),
        }
    }
}

/// The fields of a span or event, in the order they were recorded.
#[derive(Debug, Default)]
pub(crate) struct Fields(pub(crate) Vec<(&'static str, Value)>);

impl Fields {
    /// The value of the field called `name`, as text.
    pub(crate) fn text(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| match v {
                Value::Str(s) => s.clone(),
                other => other.to_json().to_string(),
            })
    }
}

/// The longest prefix of `s` kept, cut at a character boundary.
fn capped(s: &str) -> &str {
    let mut end = s.len().min(MAX_STRING);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

fn capped_owned(mut s: String) -> String {
    s.truncate(capped(&s).len());
    s
}

impl Visit for Fields {
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.push((field.name(), Value::Bool(value)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.push((field.name(), Value::I64(value)));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.push((field.name(), Value::U64(value)));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.push((field.name(), Value::F64(value)));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .push((field.name(), Value::Str(capped(value).to_owned())));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .push((field.name(), Value::Str(capped_owned(value.to_string()))));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .push((field.name(), Value::Str(capped_owned(format!("{value:?}")))));
    }
}

/// `name` as an annotation key: letters, digits and `_` only (`http.method` becomes
/// `http_method`).
pub(crate) fn annotation_key(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}
