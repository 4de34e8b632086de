//! What both layers write into documents: errors, panics, the trace header value.

use std::any::Any;
use std::error::Error;
use std::fmt;

use http::HeaderValue;
use xray_core::{Cause, Entity};

/// The `X-Amzn-Trace-Id` header name, as `http` spells header names (lowercase).
pub const X_AMZN_TRACE_ID: http::HeaderName = http::HeaderName::from_static("x-amzn-trace-id");

/// An error known only by its message: middleware errors are often `BoxError`, which does not
/// implement `Error`, so the layers ask only for `Display`.
#[derive(Debug)]
struct Described(String);

impl fmt::Display for Described {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Described {}

/// Records `err` as a cause (which sets `fault` unless a 4xx status is recorded).
pub(crate) fn record_error<E: fmt::Display>(entity: &Entity, err: &E) {
    if !entity.is_recording() {
        return;
    }
    let cause =
        Cause::from_error_with_type(&Described(err.to_string()), std::any::type_name::<E>());
    entity.update(|doc| doc.add_cause(cause));
}

/// Records a panic caught while polling as a fault with the panic message as the cause.
pub(crate) fn record_panic(entity: &Entity, payload: &(dyn Any + Send)) {
    if !entity.is_recording() {
        return;
    }
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("panicked with a payload that is not a string");
    let cause = Cause::from_error_with_type(&Described(message.to_owned()), "panic");
    entity.update(|doc| {
        doc.add_cause(cause);
        doc.set_fault(true);
    });
}

/// The longest string the service keeps in the `http.request` fields, in characters.
const MAX_FIELD_CHARS: usize = 250;

/// `s` cut to what the service keeps, so a client's oversized header or path is never copied
/// whole into a document that lives as long as the request.
pub(crate) fn capped(s: &str) -> String {
    match s.char_indices().nth(MAX_FIELD_CHARS) {
        Some((end, _)) => s.get(..end).unwrap_or(s).to_owned(),
        None => s.to_owned(),
    }
}

/// A header value from text this crate wrote (ids and fixed keys, always visible ASCII).
pub(crate) fn header_value(text: String) -> Option<HeaderValue> {
    match HeaderValue::try_from(text) {
        Ok(v) => Some(v),
        Err(_) => {
            tracing::debug!(
                target: "xray_tower",
                "trace header value is not a valid header value; not sent"
            );
            None
        }
    }
}
