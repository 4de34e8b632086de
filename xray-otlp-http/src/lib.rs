//! OTLP/HTTP transport for [`xray_sdk`]: finished segments as OpenTelemetry spans, posted as
//! protobuf (gzip) to AWS X-Ray's OTLP endpoint (`https://xray.<region>.amazonaws.com/v1/traces`,
//! signed with SigV4), or to any OTLP/HTTP receiver such as an OpenTelemetry Collector.
//!
//! This is X-Ray's only ingestion path for span links and for traces too large for
//! datagrams. The spans carry every segment field as the attributes X-Ray's translator reads
//! (see [`xray_sdk::otlp`]).
//!
//! # Example
//!
//! ```no_run
//! use xray_sdk::Recorder;
//! use xray_otlp_http::OtlpHttpTransport;
//!
//! // Credentials from the standard AWS chain: environment, profile, web identity, ECS, EC2.
//! let transport = OtlpHttpTransport::xray("us-east-1").with_service_name("orders").build()?;
//! let recorder = Recorder::builder().with_transport(transport).build()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How it sends
//!
//! - [`export`](xray_sdk::transport::Transport::export) converts the entities to spans on the
//!   caller's
//!   thread and queues them; a sender thread of its own batches them (at most 10,000 spans and
//!   5 MB uncompressed a request, the endpoint's limits) and posts them. A span over 200 KB is
//!   dropped and counted in `dropped_too_large`; spans that do not fit the bounded queue
//!   (16 MiB by default) are dropped and counted in `dropped_full`. The caller never waits.
//! - Throttling (429), server errors (5xx), timeouts and refused connections are retried with
//!   exponential backoff and full jitter, honouring `Retry-After`; each retry is counted in
//!   `retried`. Other 4xx answers, exhausted retries and missing credentials count the spans
//!   as `failed`, with the kind in `last_error`. A partial success (`rejected_spans` in the
//!   answer) counts those spans as failed and the rest as sent.
//! - Every request is signed anew (SigV4, service `xray`) when signing is on; credentials come
//!   from the provider given, or the standard chain, and are refreshed before they expire.
//! - [`flush`](xray_sdk::transport::Transport::flush) and
//!   [`shutdown`](xray_sdk::transport::Transport::shutdown) never wait past their deadline; a
//!   shutdown
//!   also cuts retries short at it.
//!
//! Counters count spans.
#![deny(missing_docs)]

use std::collections::VecDeque;
use std::fmt;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use parking_lot::{Condvar, Mutex};
use prost::Message;
use xray_sdk::otlp::proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use xray_sdk::otlp::proto::tonic::common::v1::InstrumentationScope;
use xray_sdk::otlp::proto::tonic::resource::v1::Resource;
use xray_sdk::otlp::proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use xray_sdk::transport::{
    Finished, Transport, TransportCounters, TransportErrorKind, TransportStats,
};

/// The endpoint's limit on one request, uncompressed.
pub const MAX_REQUEST_BYTES: usize = 5_000_000;
/// The endpoint's limit on spans in one request.
pub const MAX_REQUEST_SPANS: usize = 10_000;
/// The endpoint's limit on one span.
pub const MAX_SPAN_BYTES: usize = 200_000;

/// Why [`OtlpHttpTransportBuilder::build`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// The endpoint is not an `http` or `https` URL.
    Endpoint(String),
    /// The HTTP client could not be made.
    Client(reqwest::Error),
    /// The sender thread could not be started.
    Thread(std::io::Error),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Endpoint(e) => {
                write!(f, "invalid OTLP endpoint {e:?}: expected an http(s) URL")
            }
            BuildError::Client(_) => f.write_str("could not build the HTTP client"),
            BuildError::Thread(_) => f.write_str("could not start the OTLP sender thread"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Endpoint(_) => None,
            BuildError::Client(e) => Some(e),
            BuildError::Thread(e) => Some(e),
        }
    }
}

/// How requests are authenticated.
#[derive(Clone)]
enum Signing {
    None,
    /// SigV4 for `service` in `region`; `None` as provider: the standard chain, loaded on the
    /// sender thread.
    SigV4 {
        region: String,
        service: String,
        provider: Option<SharedCredentialsProvider>,
    },
}

/// Configures an [`OtlpHttpTransport`].
#[derive(Clone)]
pub struct OtlpHttpTransportBuilder {
    endpoint: String,
    signing: Signing,
    service_name: String,
    gzip: bool,
    timeout: Duration,
    max_queue_bytes: usize,
    max_request_bytes: usize,
    max_request_spans: usize,
    batch_delay: Duration,
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl fmt::Debug for OtlpHttpTransportBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpHttpTransportBuilder")
            .field("endpoint", &self.endpoint)
            .field("signed", &matches!(self.signing, Signing::SigV4 { .. }))
            .field("service_name", &self.service_name)
            .field("gzip", &self.gzip)
            .field("timeout", &self.timeout)
            .field("max_queue_bytes", &self.max_queue_bytes)
            .finish_non_exhaustive()
    }
}

impl OtlpHttpTransportBuilder {
    /// Names the resource of subsegments sent without their segment (streamed, or in Lambda).
    pub fn with_service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// Signs every request with SigV4 for `region` (service `xray`), with credentials from
    /// `provider`.
    pub fn with_sigv4(
        mut self,
        region: impl Into<String>,
        provider: impl ProvideCredentials + 'static,
    ) -> Self {
        self.signing = Signing::SigV4 {
            region: region.into(),
            service: "xray".into(),
            provider: Some(SharedCredentialsProvider::new(provider)),
        };
        self
    }

    /// Signs every request with SigV4 for `region` (service `xray`), with credentials from the
    /// standard AWS chain (`aws-config`): environment, profile, web identity, ECS task role,
    /// EC2 instance profile.
    pub fn with_default_credentials(mut self, region: impl Into<String>) -> Self {
        self.signing = Signing::SigV4 {
            region: region.into(),
            service: "xray".into(),
            provider: None,
        };
        self
    }

    /// Compresses requests with gzip (default `true`).
    pub fn with_gzip(mut self, gzip: bool) -> Self {
        self.gzip = gzip;
        self
    }

    /// How long one request may take, connection included (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The most span bytes held waiting to be sent (default 16 MiB); past it, spans are
    /// dropped and counted.
    pub fn with_max_queue_bytes(mut self, bytes: usize) -> Self {
        self.max_queue_bytes = bytes;
        self
    }

    /// The most spans (at most [`MAX_REQUEST_SPANS`]) and uncompressed bytes (at most
    /// [`MAX_REQUEST_BYTES`]) in one request.
    pub fn with_max_request(mut self, spans: usize, bytes: usize) -> Self {
        self.max_request_spans = spans.clamp(1, MAX_REQUEST_SPANS);
        self.max_request_bytes = bytes.clamp(1024, MAX_REQUEST_BYTES);
        self
    }

    /// How long spans wait for more to share their request (default 1 s); a full request,
    /// a flush or a shutdown sends at once.
    pub fn with_batch_delay(mut self, delay: Duration) -> Self {
        self.batch_delay = delay;
        self
    }

    /// Attempts per request (default 5, at least 1) and the backoff between them: full
    /// jitter over an exponential from `initial` (default 100 ms) capped at `max` (default
    /// 5 s).
    pub fn with_retries(mut self, attempts: u32, initial: Duration, max: Duration) -> Self {
        self.max_attempts = attempts.max(1);
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Starts the transport and its sender thread.
    pub fn build(self) -> Result<OtlpHttpTransport, BuildError> {
        let url: http::Uri = self
            .endpoint
            .parse()
            .map_err(|_| BuildError::Endpoint(self.endpoint.clone()))?;
        if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
            return Err(BuildError::Endpoint(self.endpoint.clone()));
        }
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .no_proxy()
            .build()
            .map_err(BuildError::Client)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            idle: Condvar::new(),
            counters: TransportCounters::new(),
            config: self,
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("xray-otlp-http".into())
            .spawn(move || run(&thread_shared, client))
            .map_err(BuildError::Thread)?;
        Ok(OtlpHttpTransport { shared })
    }
}

/// Sends finished segments as OpenTelemetry spans over OTLP/HTTP (protobuf); see the
/// [crate docs](crate).
///
/// # Examples
///
/// Against any OTLP/HTTP receiver, unsigned:
///
/// ```
/// use xray_otlp_http::OtlpHttpTransport;
///
/// let transport = OtlpHttpTransport::builder("http://127.0.0.1:4318/v1/traces").build()?;
/// # Ok::<(), xray_otlp_http::BuildError>(())
/// ```
pub struct OtlpHttpTransport {
    shared: Arc<Shared>,
}

impl fmt::Debug for OtlpHttpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpHttpTransport")
            .field("endpoint", &self.shared.config.endpoint)
            .field("stats", &self.shared.counters.snapshot())
            .finish()
    }
}

impl OtlpHttpTransport {
    /// A builder posting to `endpoint` (a full URL, such as
    /// `http://127.0.0.1:4318/v1/traces`), unsigned.
    pub fn builder(endpoint: impl Into<String>) -> OtlpHttpTransportBuilder {
        OtlpHttpTransportBuilder {
            endpoint: endpoint.into(),
            signing: Signing::None,
            service_name: "unknown-service".into(),
            gzip: true,
            timeout: Duration::from_secs(10),
            max_queue_bytes: 16 * 1024 * 1024,
            max_request_bytes: MAX_REQUEST_BYTES,
            max_request_spans: MAX_REQUEST_SPANS,
            batch_delay: Duration::from_secs(1),
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }

    /// A builder posting to X-Ray's OTLP endpoint in `region`,
    /// `https://xray.<region>.amazonaws.com/v1/traces`, signed with credentials from the
    /// standard AWS chain.
    pub fn xray(region: &str) -> OtlpHttpTransportBuilder {
        Self::builder(format!("https://xray.{region}.amazonaws.com/v1/traces"))
            .with_default_credentials(region)
    }
}

struct Shared {
    config: OtlpHttpTransportBuilder,
    queue: Mutex<Queue>,
    /// The sender waits here for spans.
    work: Condvar,
    /// Flushes wait here for the queue to empty.
    idle: Condvar,
    counters: TransportCounters,
}

#[derive(Default)]
struct Queue {
    batches: VecDeque<Pending>,
    bytes: usize,
    /// Spans in `batches`.
    spans: usize,
    /// Spans taken by the sender and not yet settled.
    in_flight: usize,
    /// When the oldest queued span arrived.
    oldest: Option<Instant>,
    flush_requested: bool,
    closed: bool,
    /// A shutdown's deadline: retries stop there.
    give_up_at: Option<Instant>,
}

/// The spans of one export and their resource.
struct Pending {
    resource: Resource,
    spans: Vec<Span>,
    bytes: usize,
}

impl Transport for OtlpHttpTransport {
    fn export(&self, finished: &Finished<'_>) {
        let shared = &*self.shared;
        let counters = &shared.counters;
        let (resource, mut spans) = xray_sdk::otlp::to_spans(finished, &shared.config.service_name);
        // Each span's size is computed once: it decides both its fate and the queue's bytes.
        let before = spans.len();
        let mut bytes = resource.encoded_len();
        spans.retain(|s| {
            let len = s.encoded_len();
            let keep = len <= MAX_SPAN_BYTES;
            if keep {
                bytes += len + 8;
            }
            keep
        });
        let too_large = (before - spans.len()) as u64;
        if too_large > 0 {
            counters.queued(too_large);
            counters.dropped_too_large(too_large);
        }
        if spans.is_empty() {
            return;
        }
        let n = spans.len() as u64;
        counters.queued(n);
        let mut q = shared.queue.lock();
        if q.closed {
            drop(q);
            counters.failed(n, TransportErrorKind::Closed);
            return;
        }
        if q.bytes + bytes > shared.config.max_queue_bytes {
            drop(q);
            counters.dropped_full(n);
            return;
        }
        q.bytes += bytes;
        q.spans += spans.len();
        q.oldest.get_or_insert_with(Instant::now);
        q.batches.push_back(Pending {
            resource,
            spans,
            bytes,
        });
        let full = q.bytes >= shared.config.max_request_bytes
            || q.spans >= shared.config.max_request_spans;
        drop(q);
        if full {
            shared.work.notify_one();
        }
    }

    fn flush(&self, deadline: Instant) -> bool {
        let shared = &*self.shared;
        let mut q = shared.queue.lock();
        q.flush_requested = true;
        shared.work.notify_one();
        while !q.batches.is_empty() || q.in_flight > 0 {
            if shared.idle.wait_until(&mut q, deadline).timed_out() {
                return q.batches.is_empty() && q.in_flight == 0;
            }
        }
        true
    }

    fn shutdown(&self, deadline: Instant) -> bool {
        {
            let mut q = self.shared.queue.lock();
            q.closed = true;
            q.give_up_at = Some(deadline);
        }
        self.flush(deadline)
    }

    fn stats(&self) -> TransportStats {
        self.shared.counters.snapshot()
    }

    fn describe(&self) -> String {
        let config = &self.shared.config;
        let signed = match config.signing {
            Signing::SigV4 { .. } => ", SigV4-signed",
            _ => "",
        };
        format!("OTLP/HTTP to {}{signed}", config.endpoint)
    }
}

impl Drop for OtlpHttpTransport {
    /// Stops taking spans and lets the sender thread send what is queued, for at most 5 s
    /// more, on its own: dropping never waits.
    fn drop(&mut self) {
        let mut q = self.shared.queue.lock();
        q.closed = true;
        q.give_up_at
            .get_or_insert_with(|| Instant::now() + Duration::from_secs(5));
        drop(q);
        self.shared.work.notify_one();
    }
}

// ===== the sender thread =====

fn run(shared: &Shared, client: reqwest::Client) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(target: "xray_otlp_http", error = %e, "could not start the OTLP sender's runtime; spans will not be sent");
            let mut q = shared.queue.lock();
            q.closed = true;
            let lost: usize = q.batches.drain(..).map(|p| p.spans.len()).sum();
            q.bytes = 0;
            q.spans = 0;
            drop(q);
            shared
                .counters
                .failed(lost as u64, TransportErrorKind::Closed);
            shared.idle.notify_all();
            return;
        }
    };
    let mut sender = Sender {
        shared,
        client,
        credentials: None,
        provider: None,
    };
    loop {
        let Some((request, n)) = next_request(shared) else {
            return;
        };
        rt.block_on(sender.send(request, n));
        let mut q = shared.queue.lock();
        q.in_flight = 0;
        if q.batches.is_empty() {
            shared.idle.notify_all();
        }
    }
}

/// Waits for spans worth sending and takes one request's worth; `None` once closed and empty.
fn next_request(shared: &Shared) -> Option<(ExportTraceServiceRequest, usize)> {
    let config = &shared.config;
    let mut q = shared.queue.lock();
    loop {
        if q.batches.is_empty() {
            q.flush_requested = false;
            shared.idle.notify_all();
            if q.closed {
                return None;
            }
            shared.work.wait(&mut q);
            continue;
        }
        let waited = q.oldest.map_or(Duration::ZERO, |t| t.elapsed());
        let ready = q.flush_requested
            || q.closed
            || waited >= config.batch_delay
            || q.spans >= config.max_request_spans
            || q.bytes >= config.max_request_bytes;
        if ready {
            break;
        }
        let left = config.batch_delay.saturating_sub(waited);
        shared.work.wait_for(&mut q, left);
    }
    // Take whole exports while they fit, splitting the one that does not.
    let mut resource_spans: Vec<ResourceSpans> = Vec::new();
    let mut taken = 0usize;
    let mut bytes = 0usize;
    while let Some(front) = q.batches.front_mut() {
        let resource_len = front.resource.encoded_len();
        let mut k = 0usize;
        let mut part = 0usize;
        for span in &front.spans {
            let len = span.encoded_len() + 8;
            let fits = taken + k < config.max_request_spans
                && bytes + resource_len + part + len <= config.max_request_bytes;
            // A request holds at least one span, whatever its size.
            if !fits && (taken > 0 || k > 0) {
                break;
            }
            k += 1;
            part += len;
        }
        if k == 0 {
            break;
        }
        let spans: Vec<Span> = front.spans.drain(..k).collect();
        taken += k;
        bytes += resource_len + part;
        front.bytes = front.bytes.saturating_sub(part);
        let resource = if front.spans.is_empty() {
            let done = q.batches.pop_front().map(|d| (d.resource, d.bytes));
            let (resource, rest) = done.unwrap_or_default();
            q.bytes = q.bytes.saturating_sub(part + rest);
            resource
        } else {
            let resource = front.resource.clone();
            q.bytes = q.bytes.saturating_sub(part);
            resource
        };
        q.spans = q.spans.saturating_sub(k);
        resource_spans.push(ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        });
        if taken >= config.max_request_spans {
            break;
        }
    }
    if q.batches.is_empty() {
        q.bytes = 0;
        q.spans = 0;
        q.oldest = None;
    } else {
        q.oldest = Some(Instant::now());
    }
    q.in_flight = taken;
    Some((ExportTraceServiceRequest { resource_spans }, taken))
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "xray-rs".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

struct Sender<'a> {
    shared: &'a Shared,
    client: reqwest::Client,
    credentials: Option<Credentials>,
    provider: Option<SharedCredentialsProvider>,
}

/// How one attempt ended.
enum Attempt {
    /// Accepted; so many spans rejected in a partial success.
    Accepted { rejected: u64 },
    /// Failed in a way another attempt may not.
    Retry(TransportErrorKind, Option<Duration>),
    /// Failed for good.
    Fail(TransportErrorKind),
}

impl Sender<'_> {
    async fn send(&mut self, request: ExportTraceServiceRequest, n: usize) {
        let counters = &self.shared.counters;
        let config = &self.shared.config;
        let n = n as u64;
        let body = match encode(&request, config.gzip) {
            Ok(body) => body,
            Err(_) => {
                counters.failed(n, TransportErrorKind::Encode);
                return;
            }
        };
        drop(request);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let kind = match self.attempt(&body).await {
                Attempt::Accepted { rejected } => {
                    let rejected = rejected.min(n);
                    counters.sent(n - rejected);
                    if rejected > 0 {
                        counters.failed(rejected, TransportErrorKind::Rejected);
                    }
                    return;
                }
                Attempt::Fail(kind) => {
                    counters.failed(n, kind);
                    return;
                }
                Attempt::Retry(kind, after) => (kind, after),
            };
            let (kind, after) = kind;
            let backoff = after
                .unwrap_or_else(|| jitter(config.initial_backoff, config.max_backoff, attempt))
                .min(config.max_backoff);
            let give_up_at = self.shared.queue.lock().give_up_at;
            let past_deadline = give_up_at.is_some_and(|t| Instant::now() + backoff >= t);
            if attempt >= config.max_attempts || past_deadline {
                counters.failed(n, kind);
                return;
            }
            counters.retried(n, kind);
            tokio::time::sleep(backoff).await;
        }
    }

    async fn attempt(&mut self, body: &[u8]) -> Attempt {
        let config = &self.shared.config;
        let mut request = http::Request::builder()
            .method("POST")
            .uri(&config.endpoint)
            .header("content-type", "application/x-protobuf")
            .header(
                "user-agent",
                concat!("xray-rs-otlp-http/", env!("CARGO_PKG_VERSION")),
            );
        if config.gzip {
            request = request.header("content-encoding", "gzip");
        }
        let Ok(mut request) = request.body(body.to_vec()) else {
            return Attempt::Fail(TransportErrorKind::Encode);
        };
        if let Signing::SigV4 {
            region,
            service,
            provider,
        } = &config.signing
        {
            let credentials = match self.credentials(provider.as_ref()).await {
                Some(c) => c,
                None => return Attempt::Fail(TransportErrorKind::Credentials),
            };
            if sign(&mut request, &credentials, region, service).is_err() {
                return Attempt::Fail(TransportErrorKind::Credentials);
            }
        }
        let request = match reqwest::Request::try_from(request) {
            Ok(r) => r,
            Err(_) => return Attempt::Fail(TransportErrorKind::Encode),
        };
        let response = match self.client.execute(request).await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Attempt::Retry(TransportErrorKind::Timeout, None),
            Err(e) if e.is_connect() => return Attempt::Retry(TransportErrorKind::Refused, None),
            Err(_) => return Attempt::Retry(TransportErrorKind::Io, None),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        match status {
            200..=299 => {
                let bytes = match response.bytes().await {
                    Ok(b) => b,
                    // The answer is cut off after a success: the spans were accepted.
                    Err(_) => return Attempt::Accepted { rejected: 0 },
                };
                match ExportTraceServiceResponse::decode(bytes.as_ref()) {
                    Ok(r) => Attempt::Accepted {
                        rejected: r
                            .partial_success
                            .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0)),
                    },
                    Err(_) => {
                        self.shared.counters.noted(TransportErrorKind::BadResponse);
                        Attempt::Accepted { rejected: 0 }
                    }
                }
            }
            429 => Attempt::Retry(TransportErrorKind::Throttled, retry_after),
            500..=599 => Attempt::Retry(TransportErrorKind::Server, retry_after),
            401 | 403 => {
                // Perhaps expired credentials: fetch fresh ones for the next request.
                self.credentials = None;
                Attempt::Fail(TransportErrorKind::Credentials)
            }
            _ => Attempt::Fail(TransportErrorKind::Rejected),
        }
    }

    /// Credentials valid for at least another minute, from the cache or the provider.
    async fn credentials(
        &mut self,
        provider: Option<&SharedCredentialsProvider>,
    ) -> Option<Credentials> {
        let fresh = |c: &Credentials| {
            c.expiry()
                .is_none_or(|e| e > SystemTime::now() + Duration::from_secs(60))
        };
        if let Some(c) = self.credentials.as_ref().filter(|c| fresh(c)) {
            return Some(c.clone());
        }
        let provider = match provider {
            Some(p) => p.clone(),
            None => match &self.provider {
                Some(p) => p.clone(),
                None => {
                    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                        .load()
                        .await;
                    let p = config.credentials_provider()?;
                    self.provider = Some(p.clone());
                    p
                }
            },
        };
        let timeout = self.shared.config.timeout;
        let got = tokio::time::timeout(timeout, provider.provide_credentials()).await;
        match got {
            Ok(Ok(c)) if fresh(&c) => {
                self.credentials = Some(c.clone());
                Some(c)
            }
            Ok(Ok(_)) => {
                tracing::debug!(target: "xray_otlp_http", "the AWS credentials have expired; spans are not sent");
                None
            }
            Ok(Err(e)) => {
                tracing::debug!(target: "xray_otlp_http", error = %e, "no AWS credentials; spans are not sent");
                None
            }
            Err(_) => None,
        }
    }
}

/// Signs `request` with SigV4 for `service` in `region`, in place (through `aws-sigv4`): the
/// `authorization`, `x-amz-date` and, with a session token, `x-amz-security-token` headers are
/// added, over the request's method, URL, headers and body as they are.
///
/// # Errors
///
/// When the request cannot be signed: a header value that is not text, or a URL that is not
/// absolute.
///
/// # Examples
///
/// ```
/// use aws_credential_types::Credentials;
///
/// let mut request = http::Request::post("https://xray.us-east-1.amazonaws.com/GetSamplingRules")
///     .header("content-type", "application/json")
///     .body(b"{}".to_vec())
///     .unwrap();
/// let credentials = Credentials::new("AKIDEXAMPLE", "secret", None, None, "example");
/// xray_otlp_http::sign(&mut request, &credentials, "us-east-1", "xray").unwrap();
/// assert!(request.headers()["authorization"].to_str().unwrap().starts_with("AWS4-HMAC-SHA256"));
/// ```
pub fn sign(
    request: &mut http::Request<Vec<u8>>,
    credentials: &Credentials,
    region: &str,
    service: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings};
    let identity = credentials.clone().into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()?
        .into();
    let uri = request.uri().to_string();
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let signable = SignableRequest::new(
        request.method().as_str(),
        uri.as_str(),
        headers.into_iter(),
        SignableBody::Bytes(request.body()),
    )?;
    let (instructions, _) = aws_sigv4::http_request::sign(signable, &params)?.into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}

fn encode(request: &ExportTraceServiceRequest, gzip: bool) -> std::io::Result<Vec<u8>> {
    let proto = request.encode_to_vec();
    if !gzip {
        return Ok(proto);
    }
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(proto.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(&proto)?;
    encoder.finish()
}

/// Full jitter: a random wait up to `initial * 2^(attempt - 1)`, capped at `max`.
fn jitter(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = initial
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(max);
    ceiling.mul_f64(rand::random::<f64>())
}
