//! A local AWS X-Ray daemon and trace viewer.
//!
//! `xray-local` listens where an X-Ray SDK sends its segment documents (UDP, `127.0.0.1:2000` by
//! default), assembles them into traces and lets you look at them: from tests through
//! [`XRayLocal`], or on a terminal with the `xray-local` binary. No AWS account is involved.
//!
//! # Overview
//!
//! - **Intake.** Each datagram must be the daemon framing: a header line
//!   `{"format":"json","version":1}`, `\n`, one JSON document. Anything else is counted under a
//!   [`DropReason`] in [`Stats`], logged (at most one warning per reason every 10 seconds) and
//!   otherwise ignored. Documents are kept as [`serde_json::Value`], so every SDK's fields pass
//!   through. A body of `T1S` or `T1U` and base64 of an OTLP export request (OpenTelemetry
//!   spans, as the AWS OpenTelemetry distributions send them) gives one document per span,
//!   converted as X-Ray converts spans ([`xray_sdk::otlp::to_documents`]); OTLP/HTTP
//!   (`POST /v1/traces`) on the TCP port does the same.
//! - **Depth.** One document nests at most 127 levels of objects and arrays (serde_json's
//!   limit, [`DropReason::InvalidJson`] past it): about 63 levels of subsegments. Separately
//!   sent subsegments attach under one another up to 256 levels. Within one segment or
//!   subsegment, its own fields may nest 120 levels ([`DropReason::TooDeep`]). The X-Ray
//!   documentation sets no limit ("nesting allowed to any depth"); these keep every trace
//!   readable by a JSON parser's default limits, however deep its tree
//!   ([the JSON form](Trace#the-json-form)).
//! - **Assembly.** Documents are grouped by `trace_id`. Independent subsegments
//!   (`"type": "subsegment"` with a `parent_id`), whether streamed early or sent from AWS Lambda,
//!   are merged into their parent's `subsegments` at any depth; a completed document replaces its
//!   `in_progress` fragment; pieces may arrive in any order.
//! - **Completion.** A trace looks complete ([`Trace::is_complete`]) when it has a segment, no
//!   entity in progress and no piece waiting for its parent. The `wait_*` methods return traces
//!   once they *settle*: complete and quiet for the [quiet
//!   period](XRayLocalBuilder::quiet_period), or idle for the [idle
//!   timeout](XRayLocalBuilder::idle_timeout).
//! - **Bounds.** At most [`max_traces`](XRayLocalBuilder::max_traces) traces, taking at
//!   most [`max_bytes`](XRayLocalBuilder::max_bytes) of memory as parsed, are kept. With followers
//!   ([`XRayLocal::completed`]), eviction takes first the oldest traces every one of them has
//!   read, then the oldest of all; without, it goes by first arrival; within a quarter of a bound,
//!   complete traces settle without waiting for
//!   the quiet period, so that a follower that keeps up sees every trace. Every eviction is
//!   counted, those of traces never shown apart ([`Stats::evicted_unsettled`]).
//! - **Never losing in silence.** The socket reader only copies each datagram into a bounded
//!   queue; a filing thread parses, validates, forwards and files them, so neither parsing
//!   nor readers of traces hold up the socket. A full intake queue is counted as
//!   [`DropReason::Backlog`], and what the kernel dropped because the socket's buffer was full
//!   is read from the system ([`Stats::kernel_dropped`], Linux).
//! - **Forwarding.** With [`XRayLocalBuilder::forward`] (the binary's `-n/--region`), every
//!   accepted document is also uploaded to AWS X-Ray with `PutTraceSegments`, as the AWS
//!   daemon does: batched, retried with backoff, from a bounded buffer, every outcome counted
//!   in [`ForwardStats`]. `T1S` bodies go as they came; OTLP/HTTP requests go as `T1S`
//!   documents. The sampling API is proxied to X-Ray, signed, and the daemon's counters are
//!   sent with `PutTelemetryRecords`. Without it nothing leaves the machine.
//!
//! - **TCP.** On the TCP address (by default the UDP port on loopback: a wildcard UDP address is
//!   never followed) an HTTP/1.1 server answers the sampling API the SDKs call through the
//!   daemon, and a read API for other processes. See [the routes](#tcp-routes). The sampling
//!   API is answered on threads that nothing else uses, so a long query never delays it; at
//!   most 256 connections are open, a new one closing the oldest idle one, and a connection
//!   that sends no request head within 5 s (or no body within 10 s) is closed.
//!
//! # TCP routes
//!
//! | route | answer |
//! |---|---|
//! | `POST /GetSamplingRules` | when forwarding: sent to X-Ray, signed, and X-Ray's answer returned as it came (likewise `SamplingTargets`); otherwise `{"SamplingRuleRecords": [{"SamplingRule": {..}, "CreatedAt", "ModifiedAt"}], "NextToken"}`: the [rules](XRayLocalBuilder::rules) in order, [`rules_page_size`](XRayLocalBuilder::rules_page_size) per page; pass the `NextToken` back for the next page |
//! | `POST /SamplingTargets` | takes `{"SamplingStatisticsDocuments": [..]}` (at most 25) and answers `{"SamplingTargetDocuments": [..], "LastRuleModification", "UnprocessedStatistics"}`; statistics for unknown rules come back unprocessed with `ErrorCode` `"400"` |
//! | `GET /` | the web console: the trace list with a filter box and a time range, a trace's waterfall with each entity's annotations, metadata, `http`, `aws` and `sql` blocks, exceptions with their stacks and raw JSON, and the service map; new traces appear as they arrive. One page, its script and style sheet (`/console.js`, `/console.css`), built into the binary and reading the routes below; served with a Content-Security-Policy that allows only the daemon's own script, style and API. Every string from a document is shown as text |
//! | `GET /traces?filter=EXPR` | a JSON array of every trace held (settled or not), by first arrival, in [`Trace`]'s [JSON form](Trace#the-json-form) (nested at most 100 levels: a deep tree's lower subsegments come in `continued`); with `filter`, the traces matching the [`Filter`] expression (URL-encoded) |
//! | `GET /traces/{trace_id}` | one trace; 404 when none is held |
//! | `GET /map?filter=EXPR` | the [`ServiceMap`] of the (matching) traces: `{"nodes": [..], "edges": [..]}` |
//! | `POST /TraceSummaries` | X-Ray's `GetTraceSummaries`: `StartTime` and `EndTime` (epoch seconds, required), `TimeRangeType` (`TraceId`, the default, `Event` or `Service`), `FilterExpression`, `NextToken`, and `MaxResults` (an xray-local extension the console uses: up to 10,000 summaries a page instead of X-Ray's 100); `Sampling` and `SamplingStrategy` are taken and change nothing, since every matching trace held is returned (a sample of everything is everything); answers `TraceSummaries` (`Id`, `StartTime`, `Duration`, `ResponseTime`, `HasFault`, `HasError` and `HasThrottle` as X-Ray judges them, `IsPartial`, `Http`, `Annotations`, `Users`, `ServiceIds`, `EntryPoint`, `ResourceARNs`, `InstanceIds`, `AvailabilityZones`, `FaultRootCauses`, `ErrorRootCauses` and `ResponseTimeRootCauses` (derived from the tree, as the X-Ray console presents them: the flagged entities none of whose children is flagged, with the path to each from its service's segment and its exceptions; the slowest path from the root, with each entity's `Coverage`), `Revision`), most recent first, 100 a page, with `TracesProcessedCount` and `ApproximateTime` |
//! | `POST /Traces` | X-Ray's `BatchGetTraces`: 1 to 5 `TraceIds`; answers `Traces` (`Id`, `Duration`, `LimitExceeded`, `Segments` of `{Id, Document}`, the document a JSON string with its subsegments embedded) and `UnprocessedTraceIds` for ids not held |
//! | `POST /ServiceGraph` | X-Ray's `GetServiceGraph`: the [`ServiceMap`] of the traces active between `StartTime` and `EndTime` as `Services` (`ReferenceId`, `Name`, `Type`, `Root`, `State`, `Edges` with their `SummaryStatistics` and `ResponseTimeHistogram`, each node's `DurationHistogram` and `ResponseTimeHistogram` (of its own entities' durations, to the millisecond), and a `client` node calling each root service) |
//! | `POST /TraceGraph` | X-Ray's `GetTraceGraph`: the same for 1 to 5 `TraceIds` |
//! | `POST /v1/traces` | OTLP/HTTP: an `ExportTraceServiceRequest` in protobuf (`application/x-protobuf`, gzip or not, up to 8 MiB); its spans are filed as documents and, when forwarding, sent on as `T1S` documents. 400 for a body that is not one, 415 for another content type |
//! | `GET /stats` | the [`Stats`] counters, the sampling API call counts, `tcp` (connections `open`, `max_open`, `accepted`, `refused`, `closed_for_room`, `timed_out` before a request, `idle_closed` after one; requests refused as `busy` (503) or `forbidden` (403)), `sampling_proxy` (forwarded, unsigned, failed; or `null`), and `forwarding` ([`ForwardStats`], or `null`) |
//! | `GET /rules` | the sampling rules as a JSON array |
//!
//! Errors answer with an X-Ray style body, `{"__type": "InvalidRequestException", "message":
//! ".."}` and the same name in the `x-amzn-ErrorType` header: 400 for a body that is not JSON,
//! a missing or ill-typed field or an unknown route (`UnknownOperationException`), 404
//! (`ResourceNotFoundException`) for an unknown trace, 413 for a body over 1 MiB, 408 for a
//! body that does not arrive within 10 s, 503 when too many read-API or OTLP requests wait.
//!
//! **Who may call.** A request from a web page of another origin (an `Origin` header other than
//! `http://` and the request's own allowed `Host`, or `Sec-Fetch-Site: cross-site`) gets 403
//! (`AccessDeniedException`) on every route. The read API answers only a `Host` that is
//! `localhost`, a loopback address, the TCP address (any IP address when it is a wildcard) or
//! a name given with [`allow_host`](XRayLocalBuilder::allow_host), so that a web page cannot
//! read traces through DNS rebinding; the SDKs' routes (the sampling API, `POST /v1/traces`)
//! answer any `Host`. [`XRayLocal::exposure`] says in one line what is exposed where.
//!
//! **Quota policy.** Each target assigns the rule's `ReservoirSize` split evenly among the
//! clients that reported statistics for the rule in the last 30 seconds (three reporting
//! intervals), ordered by `ClientID`; the first `ReservoirSize % clients` of them get one more,
//! so the shares add up to the reservoir. `FixedRate` is the rule's, `Interval` is 10 seconds
//! and `ReservoirQuotaTTL` is now + 300 seconds. Every statistics document received is kept
//! (the latest 10,000) for [`XRayLocal::sampling_statistics`].
//!
//! **Rules file.** A JSON array of X-Ray `SamplingRule` objects, the shape `GetSamplingRules`
//! returns
//! (see [`CentralizedRule`] for the defaults of omitted fields). Without one, the only rule is the
//! service's `Default`: priority 10000, `ReservoirSize` 1, `FixedRate` 0.05, every pattern `*`.
//!
//! # Usage in tests
//!
//! ```
//! use std::time::Duration;
//! use xray_local::XRayLocal;
//!
//! // Port 0: every test gets its own daemon.
//! let local = XRayLocal::builder().udp_addr("127.0.0.1:0".parse()?).start()?;
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
//! In an async test, the waiting methods block: call them through
//! `tokio::task::spawn_blocking` with the daemon in an `Arc`, as
//! `spawn_blocking(move || local.wait_for_traces(1, timeout)).await`.
//!
//! # The binary
//!
//! `xray-local` listens on UDP and TCP `127.0.0.1:2000` and prints each trace as it settles, as
//! a timeline tree. `-b/--udp ADDR` and `-t/--tcp ADDR` pick other addresses (the TCP side
//! stays on loopback unless `-t` moves it), `--allow-host NAME` lets the read API answer
//! another `Host` name, `-n REGION`
//! forwards to X-Ray (with `--endpoint URL` and `-m MB`), `--rules FILE` loads
//! sampling rules, `--json` prints each trace as one JSON line, `--map` prints the service map
//! whenever traffic pauses. `xray-local query --addr ADDR 'EXPR'` asks a running `xray-local`
//! for the traces matching a filter expression. Run `xray-local --help` for the rest.
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is 1.94.
#![deny(missing_docs)]

mod api;
mod console;
mod daemon;
mod filter;
mod forward;
mod intake;
mod map;
mod otlp;
mod proxy;
pub mod render;
mod sampling;
mod server;
mod store;
mod telemetry;
mod trace;

pub use daemon::{Completed, TraceKey, XRayLocal, XRayLocalBuilder};
pub use filter::{Filter, FilterError};
pub use forward::{ForwardConfig, ForwardStats, InvalidProxyAddress};
pub use intake::DropReason;
pub use map::{CallStats, MapEdge, MapNode, ServiceMap};
pub use sampling::{CentralizedRule, CentralizedRulesError, SamplingCalls, SamplingStatistics};
pub use store::Stats;
pub use trace::{DocumentError, Entities, Trace, TraceEntity, assemble};
