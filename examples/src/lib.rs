//! Examples for the xray-rs crates live in `examples/examples/`.

/// The README's code, compiled and run as doc tests.
#[doc = include_str!("../../README.md")]
#[derive(Debug)]
pub struct Readme;
