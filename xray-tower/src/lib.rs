//! AWS X-Ray tower layers for HTTP services and clients.
//!
//! - [`XRayLayer`] records a segment for every incoming request of an `axum::Router`, a hyper
//!   service (through hyper-util's `TowerToHyperService`) or any
//!   `tower::Service<http::Request<B>>`, and makes it the current context while the handler
//!   runs, so subsegments (`#[capture]` functions, AWS SDK calls, outgoing HTTP calls) nest
//!   under it.
//! - [`XRayClientLayer`] records a `remote` subsegment for every outgoing request of a tower
//!   HTTP client (hyper-util's legacy `Client`, for one) and sends the trace header to the
//!   callee. The `xray-reqwest` crate does the same for `reqwest` clients, and
//!   [`xray_sdk::outgoing`] holds what both record, for any other client.
//!
//! # Example
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use xray_tower::{SegmentNaming, XRayLayer};
//!
//! # async fn run() -> std::io::Result<()> {
//! let app = Router::new()
//!     .route("/", get(|| async { "ok" }))
//!     .layer(XRayLayer::new(SegmentNaming::dynamic("*.example.com", "web")));
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! Both layers use the global recorder ([`xray_sdk::Recorder::global`]) unless given one
//! with `with_recorder`.
//!
//! # What is recorded
//!
//! | where | fields |
//! |---|---|
//! | segment | name (see [`SegmentNaming`]), `http.request` (`method`, `url` without query string, `user_agent`, `client_ip`, `x_forwarded_for`), `http.response` (`status`, `content_length`), `error` / `throttle` / `fault` from the status, `cause` for errors and panics |
//! | subsegment | host name, `namespace: remote`, `http.request` (`method`, `url` without query string or user information), `traced` (optional), `http.response`, flags, `cause` for transport errors |
//!
//! `client_ip` is the first `X-Forwarded-For` entry (with `x_forwarded_for: true`), else the
//! peer address from the request's extensions: axum's `ConnectInfo<SocketAddr>` (with the
//! `axum` feature and `Router::into_make_service_with_connect_info`) or a `SocketAddr` that a
//! hyper server loop inserts.
//!
//! # Errors and panics
//!
//! The layers never fail a request. An inner service that returns an error, or a body that
//! fails, ends the segment as a fault with the error's message as the cause. A panic in the
//! inner service or body is caught while polling, recorded the same way, and then resumed, so
//! what the server does with it (tower-http's `CatchPanic` answering 500, or hyper closing the
//! connection) is unchanged. Put `CatchPanicLayer` outside `XRayLayer` (added after it with
//! `Router::layer`): inside, the layer would see only a 500 response, without the cause. A
//! request future or body dropped early (the client went away) still ends the segment.
//!
//! # With tower-http's `TraceLayer`
//!
//! Add `XRayLayer` outermost (before `TraceLayer` in a `ServiceBuilder`, whose first layer is
//! the outermost, or with the later `.layer` call on an axum `Router`, whose last layer is),
//! so that the segment exists before `TraceLayer`
//! opens its `request` span. With `xray_tracing_subscriber::XRaySpanLayer` installed that span is then a
//! `request` subsegment timing the handler; with `TraceLayer` outermost instead, its span
//! comes before the segment and records nothing. `xray-tracing-subscriber`'s docs show how to leave
//! tower-http's spans out with a per-layer filter.
//!
//! # Feature flags
//!
//! - `axum`: read the peer address from axum's `ConnectInfo<SocketAddr>`.
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is 1.94.
#![deny(missing_docs)]
// On docs.rs, items behind a feature are marked with the feature they need.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod naming;
mod record;
mod server;

pub use client::{ResponseFuture as ClientResponseFuture, XRayClient, XRayClientLayer};
pub use naming::SegmentNaming;
pub use record::X_AMZN_TRACE_ID;
pub use server::{ResponseBody, ResponseFuture, XRay, XRayLayer};
