//! `#[capture]` records `Err` values: `E: Error` with its source chain, boxed and `anyhow`-like
//! errors, and `E: Display` types, on sync and async functions.

mod support;

use std::fmt;

use serde_json::Value;
use support::{in_segment, only_sub};
use xray_sdk::capture;

#[derive(Debug)]
struct Timeout;

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection timed out")
    }
}

impl std::error::Error for Timeout {}

#[derive(Debug)]
struct LoadError {
    source: Timeout,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("basket could not be loaded")
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Displays but is no `Error`.
#[derive(Debug)]
struct Refused(&'static str);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused: {}", self.0)
    }
}

fn exceptions(sub: &Value) -> &[Value] {
    sub["cause"]["exceptions"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

fn messages(sub: &Value) -> Vec<&str> {
    exceptions(sub)
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect()
}

fn inner() -> Result<u32, Timeout> {
    Err(Timeout)
}

#[capture]
fn load(fail: bool) -> Result<u32, LoadError> {
    if fail {
        inner().map_err(|source| LoadError { source })?;
    }
    Ok(1)
}

#[test]
fn an_error_is_recorded_with_its_source_chain_and_type() {
    let (out, doc) = in_segment(|| load(true));
    assert!(out.is_err());
    let sub = only_sub(&doc);
    assert_eq!(sub["fault"], true);
    assert_eq!(
        messages(sub),
        ["basket could not be loaded", "connection timed out"]
    );
    let ex = exceptions(sub);
    assert!(
        ex[0]["type"].as_str().unwrap().ends_with("LoadError"),
        "{ex:?}"
    );
    assert_eq!(ex[0]["cause"], ex[1]["id"]);
}

#[test]
fn ok_records_nothing() {
    let (out, doc) = in_segment(|| load(false));
    assert_eq!(out.unwrap(), 1);
    let sub = only_sub(&doc);
    assert!(sub.get("cause").is_none(), "{sub}");
    assert!(sub.get("fault").is_none(), "{sub}");
}

#[capture]
fn refuse() -> Result<(), Refused> {
    Err(Refused("closed"))
}

#[test]
fn a_display_only_error_is_recorded_by_its_message() {
    let (_, doc) = in_segment(refuse);
    let sub = only_sub(&doc);
    assert_eq!(messages(sub), ["refused: closed"]);
    assert!(
        exceptions(sub)[0]["type"]
            .as_str()
            .unwrap()
            .ends_with("Refused")
    );
    assert_eq!(sub["fault"], true);
}

#[capture]
fn boxed() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    Err(Box::new(LoadError { source: Timeout }))
}

#[capture]
fn boxed_local() -> Result<(), Box<dyn std::error::Error>> {
    let _n: u8 = "300".parse()?;
    Ok(())
}

#[test]
fn boxed_errors_keep_their_chain() {
    let (_, doc) = in_segment(|| boxed().map_err(|e| e.to_string()));
    assert_eq!(
        messages(only_sub(&doc)),
        ["basket could not be loaded", "connection timed out"]
    );
    let (_, doc) = in_segment(|| boxed_local().map_err(|e| e.to_string()));
    assert_eq!(
        messages(only_sub(&doc)),
        ["number too large to fit in target type"]
    );
}

/// An error borrowing from its input: no `'static`, still recorded.
#[derive(Debug)]
struct BadField<'a>(&'a str);

impl fmt::Display for BadField<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad field {}", self.0)
    }
}

impl std::error::Error for BadField<'_> {}

#[capture]
fn parse_field(input: &str) -> Result<u32, BadField<'_>> {
    input.parse().map_err(|_| BadField(input))
}

#[test]
fn borrowed_errors_are_recorded() {
    let (_, doc) = in_segment(|| parse_field("x").is_err());
    assert_eq!(messages(only_sub(&doc)), ["bad field x"]);
}

#[capture]
fn generic_error<E: std::error::Error>(e: E) -> Result<(), E> {
    Err(e)
}

#[test]
fn generic_errors_are_recorded() {
    let (_, doc) = in_segment(|| generic_error(Timeout).is_err());
    assert_eq!(messages(only_sub(&doc)), ["connection timed out"]);
}

type Outcome = Result<(), Timeout>;

#[capture(err)]
fn aliased() -> Outcome {
    Err(Timeout)
}

#[capture]
fn aliased_unseen() -> Outcome {
    Err(Timeout)
}

#[capture(err = false)]
fn not_recorded() -> Result<(), Timeout> {
    Err(Timeout)
}

#[test]
fn err_option_forces_or_turns_off_recording() {
    let (_, doc) = in_segment(|| aliased().is_err());
    assert_eq!(messages(only_sub(&doc)), ["connection timed out"]);
    let (_, doc) = in_segment(|| aliased_unseen().is_err());
    assert!(only_sub(&doc).get("cause").is_none());
    let (_, doc) = in_segment(|| not_recorded().is_err());
    assert!(only_sub(&doc).get("cause").is_none());
}

/// `err` on a type that is no `Result` compiles and records nothing.
#[capture(err)]
fn not_a_result() -> u32 {
    4
}

#[test]
fn err_on_other_types_records_nothing() {
    let (v, doc) = in_segment(not_a_result);
    assert_eq!(v, 4);
    assert!(only_sub(&doc).get("cause").is_none());
}

#[capture]
async fn async_load(fail: bool) -> Result<u32, LoadError> {
    if fail {
        inner().map_err(|source| LoadError { source })?;
    }
    std::future::ready(()).await;
    Ok(2)
}

#[test]
fn async_errors_are_recorded() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (out, doc) = in_segment(|| rt.block_on(async_load(true)));
    assert!(out.is_err());
    assert_eq!(
        messages(only_sub(&doc)),
        ["basket could not be loaded", "connection timed out"]
    );
    let (out, doc) = in_segment(|| rt.block_on(async_load(false)));
    assert_eq!(out.unwrap(), 2);
    assert!(only_sub(&doc).get("cause").is_none());
}
