//! A stand-in for the AWS Lambda Runtime API (version 2018-06-01), on a loopback port, as
//! <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html> describes it:
//!
//! - `GET /2018-06-01/runtime/invocation/next` answers one queued event per call, with the
//!   `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms`,
//!   `Lambda-Runtime-Invoked-Function-Arn` and `Lambda-Runtime-Trace-Id` headers and the event
//!   as a JSON body. Once the queue is empty it holds the long poll open, as Lambda does
//!   between invocations: the runtime loop then waits forever, and the test stops it.
//! - `POST /2018-06-01/runtime/invocation/{id}/response` and `/{id}/error` record what the
//!   function answered (`202 Accepted`).
//! - `POST /2018-06-01/runtime/init/error` records an initialization error.
//!
//! Used by `xray-lambda`'s tests and by `xray-examples`' (through `#[path]`); each uses part of
//! it.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{self, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::Value;

/// The function's ARN in every event.
pub(crate) const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:orders-fn";

/// One event queued for the function.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) request_id: String,
    /// `Lambda-Runtime-Trace-Id`, if any.
    pub(crate) trace_header: Option<String>,
    pub(crate) payload: Value,
}

/// Where the function posted its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnswerKind {
    /// `/invocation/{id}/response`
    Response,
    /// `/invocation/{id}/error`
    Error,
}

/// What the function posted back for one invocation.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) request_id: String,
    pub(crate) kind: AnswerKind,
    /// `Lambda-Runtime-Function-Error-Type`, on errors.
    pub(crate) error_type: Option<String>,
    /// The body, as JSON (a string when it is not JSON).
    pub(crate) body: Value,
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<VecDeque<Event>>,
    answers: Mutex<Vec<Answer>>,
    /// Signalled whenever an answer arrives.
    answered: Condvar,
    init_errors: Mutex<Vec<Value>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// The stand-in Runtime API. [`RuntimeApi::bind`] takes the port at once, with no thread
/// started, so that a test can put the address in the environment before anything else runs;
/// [`RuntimeApi::serve`] then answers on a tokio runtime.
#[derive(Debug)]
pub(crate) struct RuntimeApi {
    addr: SocketAddr,
    listener: Mutex<Option<std::net::TcpListener>>,
    shared: Arc<Shared>,
}

impl RuntimeApi {
    /// Binds 127.0.0.1:0 with `events` queued, in order.
    pub(crate) fn bind(events: Vec<Event>) -> RuntimeApi {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind the stand-in Runtime API");
        let addr = listener.local_addr().expect("its address");
        let shared = Arc::new(Shared::default());
        shared.queue.lock().unwrap().extend(events);
        RuntimeApi {
            addr,
            listener: Mutex::new(Some(listener)),
            shared,
        }
    }

    /// `host:port`, the form `AWS_LAMBDA_RUNTIME_API` takes.
    pub(crate) fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Starts answering, on `runtime`.
    pub(crate) fn serve(&self, runtime: &tokio::runtime::Handle) {
        let listener = self
            .listener
            .lock()
            .unwrap()
            .take()
            .expect("the stand-in Runtime API is served once");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let shared = self.shared.clone();
        runtime.spawn(async move {
            let listener =
                tokio::net::TcpListener::from_std(listener).expect("register the listener");
            let app = Router::new()
                .route("/2018-06-01/runtime/invocation/next", get(next))
                .route(
                    "/2018-06-01/runtime/invocation/{id}/response",
                    post(response),
                )
                .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
                .route("/2018-06-01/runtime/init/error", post(init_error))
                .with_state(shared);
            let _ = axum::serve(listener, app).await;
        });
    }

    /// The answers once `n` have arrived, or `None` if they do not within `timeout`.
    pub(crate) fn answers_within(&self, n: usize, timeout: Duration) -> Option<Vec<Answer>> {
        let deadline = Instant::now() + timeout;
        let mut answers = self.shared.answers.lock().unwrap();
        while answers.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            answers = self.shared.answered.wait_timeout(answers, left).unwrap().0;
        }
        Some(answers.clone())
    }

    /// The answers once `n` have arrived; panics with what did arrive after `timeout`.
    pub(crate) fn wait_for_answers(&self, n: usize, timeout: Duration) -> Vec<Answer> {
        match self.answers_within(n, timeout) {
            Some(answers) => answers,
            None => panic!(
                "the function answered {} of {n} invocations within {timeout:?}: {:#?}",
                self.answers().len(),
                self.answers()
            ),
        }
    }

    /// The answers so far.
    pub(crate) fn answers(&self) -> Vec<Answer> {
        self.shared.answers.lock().unwrap().clone()
    }

    /// The bodies posted to `/init/error`.
    pub(crate) fn init_errors(&self) -> Vec<Value> {
        self.shared.init_errors.lock().unwrap().clone()
    }

    /// The most invocations that were handed out and not yet answered at one time.
    pub(crate) fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Shared {
    fn answer(&self, answer: Answer) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.answers.lock().unwrap().push(answer);
        self.answered.notify_all();
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    let event = shared.queue.lock().unwrap().pop_front();
    let Some(event) = event else {
        // Nothing queued: hold the long poll open, as Lambda does until the next event.
        return std::future::pending().await;
    };
    let in_flight = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_in_flight.fetch_max(in_flight, Ordering::SeqCst);
    let deadline_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis()
        + 300_000;
    let mut response = http::Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("lambda-runtime-aws-request-id", event.request_id.as_str())
        .header("lambda-runtime-deadline-ms", deadline_ms.to_string())
        .header("lambda-runtime-invoked-function-arn", FUNCTION_ARN);
    if let Some(trace) = &event.trace_header {
        response = response.header("lambda-runtime-trace-id", trace.as_str());
    }
    response
        .body(Body::from(event.payload.to_string()))
        .expect("a valid /next response")
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> (StatusCode, &'static str) {
    shared.answer(Answer {
        request_id: id,
        kind: AnswerKind::Response,
        error_type: None,
        body: json_or_text(&body),
    });
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    shared.answer(Answer {
        request_id: id,
        kind: AnswerKind::Error,
        error_type: error_type(&headers),
        body: json_or_text(&body),
    });
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> (StatusCode, &'static str) {
    shared.init_errors.lock().unwrap().push(json_or_text(&body));
    shared.answered.notify_all();
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
}

fn error_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn json_or_text(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}
