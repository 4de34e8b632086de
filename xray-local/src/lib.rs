//! A local AWS X-Ray daemon and trace viewer.
//!
//! This crate is a skeleton: the daemon is not implemented yet.
#![deny(missing_docs)]
