//! What both layers write into documents: errors, panics, the trace header value.

use std::any::Any;

use http::HeaderValue;
use xray_sdk::Entity;

/// The `X-Amzn-Trace-Id` header name, as `http` spells header names (lowercase).
pub const X_AMZN_TRACE_ID: http::HeaderName = http::HeaderName::from_static("x-amzn-trace-id");

pub(crate) use xray_sdk::outgoing::record_error;

/// Records a panic caught while polling as a fault with the panic message as the cause.
pub(crate) fn record_panic(entity: &Entity, payload: &(dyn Any + Send)) {
    entity.record_panic(payload);
}

/// `s` cut to what the service keeps, so a client's oversized header or path is never copied
/// whole into a document that lives as long as the request.
pub(crate) fn capped(s: &str) -> String {
    xray_sdk::document::capped_field(s).to_owned()
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
