//! AWS X-Ray tower layers for HTTP servers and clients.
//!
//! This crate is a skeleton: the incoming-request layer (`XRayLayer`) and the outgoing-request
//! layer (`XRayClientLayer`) are not implemented yet.
#![deny(missing_docs)]
