//! AWS X-Ray subsegments for aws-sdk-rust calls.
//!
//! This crate is a skeleton: the `XRayInterceptor` is not implemented yet.
#![deny(missing_docs)]
