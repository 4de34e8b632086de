//! The `#[capture]` attribute for AWS X-Ray.
//!
//! This crate is a skeleton: `#[capture]` is not implemented yet.
#![deny(missing_docs)]
