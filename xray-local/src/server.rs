//! The TCP side: the sampling API the SDKs call and a read API for other processes, served by
//! hyper on a one-thread tokio runtime that this module owns.

use std::convert::Infallible;
use std::io;
use std::net::TcpListener as StdListener;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, oneshot};

use crate::DropReason;
use crate::filter::Filter;
use crate::map::ServiceMap;
use crate::sampling::{ApiError, Sampling};
use crate::store::Store;
use crate::trace::Trace;

/// Largest request body read; the sampling API's biggest request (25 statistics documents) is a
/// few KiB.
const MAX_BODY: usize = 1024 * 1024;
/// Connections served at once; more are closed at once, so a flood cannot exhaust memory.
const MAX_CONNECTIONS: usize = 256;
/// Pause after a failed `accept` (out of file descriptors, say) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What the handlers read.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Arc<Store>,
    pub(crate) sampling: Arc<Sampling>,
    pub(crate) forwarder: Option<Arc<crate::forward::Forwarder>>,
    /// In forwarding mode, where the sampling API goes instead of the local rules.
    pub(crate) proxy: Option<Arc<crate::proxy::SamplingProxy>>,
}

/// The running server; stopped by [`Server::shutdown`].
#[derive(Debug)]
pub(crate) struct Server {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub(crate) fn start(listener: StdListener, shared: Arc<Shared>) -> io::Result<Server> {
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("xray-local-tcp".into())
            .spawn(move || runtime.block_on(serve(listener, shared, stopped)))?;
        Ok(Server {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops accepting, drops open connections and waits for the thread.
    pub(crate) fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(listener: StdListener, shared: Arc<Shared>, mut stopped: oneshot::Receiver<()>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::warn!(%err, "the TCP listener cannot be used; the sampling API is off");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::debug!(%err, "TCP accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!("too many TCP connections; closing a new one");
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(Arc::clone(&shared), req));
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%err, "HTTP connection ended with an error");
            }
            drop(slot);
        });
    }
}

/// A response before it becomes a hyper one.
struct Reply {
    status: u16,
    content_type: HeaderValue,
    error_type: Option<HeaderValue>,
    body: Bytes,
}

impl Reply {
    fn json(value: &impl serde::Serialize) -> Reply {
        Reply {
            status: 200,
            content_type: HeaderValue::from_static("application/json"),
            error_type: None,
            body: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
        }
    }

    fn error(err: &ApiError) -> Reply {
        Reply {
            status: err.status,
            content_type: HeaderValue::from_static("application/json"),
            error_type: Some(HeaderValue::from_static(err.kind)),
            body: Bytes::from(err.body()),
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let content_type = req.headers().get(CONTENT_TYPE).cloned();
    let gzip = req
        .headers()
        .get(hyper::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let otlp = method == Method::POST && path == "/v1/traces";
    let limit = if otlp {
        crate::otlp::MAX_REQUEST
    } else {
        MAX_BODY
    };
    let reply = match Limited::new(req.into_body(), limit).collect().await {
        Ok(body) if otlp => otlp_reply(&shared, content_type.as_ref(), &body.to_bytes(), gzip),
        Ok(body) => match &shared.proxy {
            Some(proxy)
                if method == Method::POST
                    && crate::proxy::FORWARDED_PATHS.contains(&path.as_str()) =>
            {
                match proxy
                    .forward(&path, content_type.as_ref(), body.to_bytes())
                    .await
                {
                    Ok(up) => Reply {
                        status: up.status,
                        content_type: up
                            .content_type
                            .unwrap_or_else(|| HeaderValue::from_static("application/json")),
                        error_type: up.error_type,
                        body: up.body,
                    },
                    Err(err) => Reply::error(&err),
                }
            }
            _ => route(&shared, &method, &path, &query, &body.to_bytes()),
        },
        Err(_) => Reply::error(&ApiError {
            status: 413,
            kind: "InvalidRequestException",
            message: format!("the request body is unreadable or larger than {limit} bytes"),
        }),
    };
    let mut response = Response::new(Full::new(reply.body));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_REQUEST);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, reply.content_type);
    if let Some(kind) = reply.error_type {
        response.headers_mut().insert("x-amzn-errortype", kind);
    }
    Ok(response)
}

/// `POST /v1/traces`: OTLP/HTTP in protobuf, answered as an OTLP receiver answers.
fn otlp_reply(
    shared: &Shared,
    content_type: Option<&HeaderValue>,
    body: &[u8],
    gzip: bool,
) -> Reply {
    let protobuf = content_type.is_none_or(|ct| {
        ct.to_str()
            .is_ok_and(|ct| ct.trim().starts_with("application/x-protobuf"))
    });
    if !protobuf {
        return Reply::error(&ApiError {
            status: 415,
            kind: "UnsupportedMediaType",
            message: "OTLP/HTTP is taken as application/x-protobuf only".to_owned(),
        });
    }
    match crate::otlp::receive(shared, body, gzip) {
        // An empty ExportTraceServiceResponse: everything was taken.
        Ok(_) => Reply {
            status: 200,
            content_type: HeaderValue::from_static("application/x-protobuf"),
            error_type: None,
            body: Bytes::new(),
        },
        Err(err) => Reply::error(&err),
    }
}

fn route(shared: &Shared, method: &Method, path: &str, query: &str, body: &[u8]) -> Reply {
    let result = match (method, path) {
        (&Method::POST, "/GetSamplingRules") => shared
            .sampling
            .get_sampling_rules(body)
            .map(|v| Reply::json(&v)),
        (&Method::POST, "/SamplingTargets") => shared
            .sampling
            .sampling_targets(body)
            .map(|v| Reply::json(&v)),
        (&Method::GET, "/traces") => {
            filtered_traces(shared, query).map(|traces| Reply::json(&traces))
        }
        (&Method::GET, "/map") => filtered_traces(shared, query)
            .map(|traces| Reply::json(&ServiceMap::from_traces(&traces))),
        (&Method::GET, "/stats") => Ok(Reply::json(&stats_json(shared))),
        (&Method::GET, "/rules") => Ok(Reply::json(&shared.sampling.rules())),
        (&Method::GET, _) if path.starts_with("/traces/") => {
            let id = path.get("/traces/".len()..).unwrap_or_default();
            match id.parse().ok().and_then(|id| shared.store.trace(id)) {
                Some(trace) => Ok(Reply::json(&trace)),
                None => Err(ApiError {
                    status: 404,
                    kind: "ResourceNotFoundException",
                    message: "no trace with this id is held".to_owned(),
                }),
            }
        }
        _ => Err(ApiError {
            status: 400,
            kind: "UnknownOperationException",
            message: format!("no operation at {method} {path}"),
        }),
    };
    result.unwrap_or_else(|err| Reply::error(&err))
}

fn filtered_traces(shared: &Shared, query: &str) -> Result<Vec<Trace>, ApiError> {
    let filter = match query_param(query, "filter") {
        Some(text) if !text.trim().is_empty() => {
            Some(Filter::parse(&text).map_err(|err| ApiError::invalid(format!("filter {err}")))?)
        }
        _ => None,
    };
    let mut traces = shared.store.traces();
    if let Some(filter) = filter {
        traces.retain(|t| filter.matches(t));
    }
    Ok(traces)
}

fn stats_json(shared: &Shared) -> Value {
    let stats = shared.store.stats();
    let dropped: serde_json::Map<String, Value> = DropReason::ALL
        .iter()
        .map(|r| (r.as_str().to_owned(), json!(stats.dropped(*r))))
        .collect();
    let calls = shared.sampling.calls();
    json!({
        "received": stats.received(),
        "accepted": stats.accepted(),
        "dropped": dropped,
        "evicted_traces": stats.evicted_traces(),
        "evicted_unsettled": stats.evicted_unsettled(),
        "kernel_dropped": stats.kernel_dropped(),
        "get_sampling_rules_calls": calls.get_sampling_rules(),
        "sampling_targets_calls": calls.sampling_targets(),
        "sampling_proxy": shared.proxy.as_ref().map(|p| {
            let s = p.stats();
            json!({ "forwarded": s.forwarded, "unsigned": s.unsigned, "failed": s.failed })
        }),
        "forwarding": shared.forwarder.as_ref().map(|f| {
            let s = f.stats();
            json!({
                "queued": s.queued,
                "uploaded": s.uploaded,
                "rejected": s.rejected,
                "dropped_buffer_full": s.dropped_buffer_full,
                "failed": s.failed,
                "retried_batches": s.retried_batches,
                "backend_errors": s.backend_errors,
            })
        }),
    })
}

/// The decoded value of `name` in a query string (`+` is a space, `%XX` a byte).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| {
            bytes
                .get(at)
                .and_then(|&c| char::from(c).to_digit(16))
                .and_then(|d| u8::try_from(d).ok())
        };
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
