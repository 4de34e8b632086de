//! A local AWS X-Ray daemon and trace viewer.
//!
//! `xray-local` listens where an X-Ray SDK sends its segment documents (UDP, `127.0.0.1:2000` by
//! default), assembles them into traces and lets you look at them: from tests through
//! [`XrayLocal`], or on a terminal with the `xray-local` binary. No AWS account is involved.
//!
//! # Overview
//!
//! - **Intake.** Each datagram must be the daemon framing: a header line
//!   `{"format":"json","version":1}`, `\n`, one JSON document. Anything else is counted under a
//!   [`DropReason`] in [`Stats`], logged (at most one warning per reason every 10 seconds) and
//!   otherwise ignored. Documents are kept as [`serde_json::Value`], so every SDK's fields pass
//!   through.
//! - **Assembly.** Documents are grouped by `trace_id`. Independent subsegments
//!   (`"type": "subsegment"` with a `parent_id`), whether streamed early or sent from AWS Lambda,
//!   are merged into their parent's `subsegments` at any depth; a completed document replaces its
//!   `in_progress` fragment; pieces may arrive in any order.
//! - **Completion.** A trace looks complete ([`Trace::is_complete`]) when it has a segment, no
//!   entity in progress and no piece waiting for its parent. The `wait_*` methods return traces
//!   once they *settle*: complete and quiet for the [quiet
//!   period](XrayLocalBuilder::quiet_period), or idle for the [idle
//!   timeout](XrayLocalBuilder::idle_timeout).
//! - **Bounds.** At most [`max_traces`](XrayLocalBuilder::max_traces) traces and
//!   [`max_bytes`](XrayLocalBuilder::max_bytes) of documents are kept; the oldest traces are
//!   evicted and counted.
//!
//! # Usage in tests
//!
//! ```
//! use std::time::Duration;
//! use xray_local::XrayLocal;
//!
//! // Port 0: every test gets its own daemon.
//! let local = XrayLocal::builder().udp_addr("127.0.0.1:0".parse()?).start()?;
//! let daemon_address = local.udp_addr().to_string(); // for AWS_XRAY_DAEMON_ADDRESS
//!
//! // ... run the code under test, sending to `daemon_address` ...
//! # let sdk = std::net::UdpSocket::bind("127.0.0.1:0")?;
//! # let doc = r#"{"name":"api","id":"70de5b6f19ff9a0a","trace_id":"1-581cf771-a006649127e371903a2de979","start_time":1.0,"end_time":1.5,"subsegments":[{"name":"db","id":"70de5b6f19ff9a0b","start_time":1.1,"end_time":1.2}]}"#;
//! # sdk.send_to(format!("{{\"format\":\"json\",\"version\":1}}\n{doc}").as_bytes(), &daemon_address)?;
//!
//! let traces = local.wait_for_traces(1, Duration::from_secs(5));
//! assert_eq!(traces.len(), 1);
//! let db = traces[0].find("db").expect("a db subsegment");
//! assert_eq!(db.parent().and_then(|p| p.name()), Some("api"));
//! println!("{}", xray_local::render::timeline(&traces[0]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The binary
//!
//! `xray-local` listens on `127.0.0.1:2000` and prints each trace as it settles, as a timeline
//! tree. `--udp ADDR` picks another address, `--json` prints each trace as one JSON line
//! instead. Run `xray-local --help` for the rest.
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is 1.94.
#![deny(missing_docs)]

mod daemon;
mod filter;
mod intake;
mod map;
pub mod render;
mod sampling;
mod server;
mod store;
mod trace;

pub use daemon::{Completed, TraceKey, XrayLocal, XrayLocalBuilder};
pub use filter::{Filter, FilterError};
pub use intake::DropReason;
pub use map::{CallStats, MapEdge, MapNode, ServiceMap};
pub use sampling::{RulesError, SamplingCalls, SamplingRule, SamplingStatistics};
pub use store::Stats;
pub use trace::{DocumentError, Entities, Entity, Trace, assemble};
