//! Forwarding to AWS X-Ray: every accepted document is uploaded with `PutTraceSegments`, in
//! batches, through the AWS SDK for Rust (`aws-sdk-xray`, credentials and region from
//! `aws-config`'s standard chain).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_credential_types::provider::SharedCredentialsProvider;
use parking_lot::{Condvar, Mutex};

/// Where and how accepted documents are forwarded to X-Ray; see
/// [`XRayLocalBuilder::forward`](crate::XRayLocalBuilder::forward).
///
/// Without a region nothing is forwarded. The defaults are the AWS daemon's: 50 documents per
/// `PutTraceSegments`, a partial batch sent after 1 s, 8 uploads at once.
///
/// # Examples
///
/// ```
/// use xray_local::ForwardConfig;
///
/// let forward = ForwardConfig::new("us-east-1")
///     .endpoint("https://xray.us-east-1.amazonaws.com")
///     .buffer_bytes(16 * 1024 * 1024);
/// assert_eq!(forward.region(), "us-east-1");
/// ```
#[derive(Clone)]
pub struct ForwardConfig {
    region: String,
    endpoint: Option<String>,
    credentials: Option<SharedCredentialsProvider>,
    role_arn: Option<String>,
    proxy: Option<String>,
    resource_arn: Option<String>,
    telemetry: Option<Duration>,
    concurrency: usize,
    batch_size: usize,
    idle: Duration,
    buffer_bytes: usize,
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl std::fmt::Debug for ForwardConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardConfig")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("credentials", &self.credentials.is_some())
            .field("role_arn", &self.role_arn)
            .field("proxy", &self.proxy)
            .field("concurrency", &self.concurrency)
            .field("buffer_bytes", &self.buffer_bytes)
            .finish_non_exhaustive()
    }
}

impl ForwardConfig {
    /// Forwards to X-Ray in `region`, with the AWS daemon's defaults.
    pub fn new(region: impl Into<String>) -> Self {
        ForwardConfig {
            region: region.into(),
            endpoint: None,
            credentials: None,
            role_arn: None,
            proxy: None,
            resource_arn: None,
            telemetry: Some(Duration::from_secs(60)),
            concurrency: 8,
            batch_size: 50,
            idle: Duration::from_secs(1),
            buffer_bytes: 64 * 1024 * 1024,
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }

    /// The region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The X-Ray API endpoint, instead of the region's (for VPC endpoints, and tests).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Signs with credentials from `provider` instead of the standard chain (environment,
    /// profile, web identity, ECS task role, EC2 instance profile).
    pub fn credentials(mut self, provider: SharedCredentialsProvider) -> Self {
        self.credentials = Some(provider);
        self
    }

    /// Assumes `arn` with STS (session name `xray-daemon`, as the AWS daemon's `-r/--role-arn`)
    /// on top of the credentials, for uploads and the sampling proxy alike.
    pub fn role_arn(mut self, arn: impl Into<String>) -> Self {
        self.role_arn = Some(arn.into());
        self
    }

    /// Reaches AWS through the HTTP(S) proxy at `url` (the AWS daemon's `-p/--proxy-address`),
    /// for uploads, STS and the sampling proxy. Without it, `HTTPS_PROXY` and `NO_PROXY` are
    /// honoured.
    ///
    /// # Errors
    ///
    /// [`InvalidProxyAddress`] when `url` is not an `http://` or `https://` URL with a host.
    pub fn proxy(mut self, url: impl Into<String>) -> Result<Self, InvalidProxyAddress> {
        let url = url.into();
        if aws_smithy_http_client::proxy::ProxyConfig::all(url.as_str()).is_err()
            || reqwest::Proxy::all(url.as_str()).is_err()
        {
            return Err(InvalidProxyAddress(url));
        }
        self.proxy = Some(url);
        Ok(self)
    }

    /// The ARN of the resource the daemon runs on, sent with the telemetry records (the AWS
    /// daemon's `-a/--resource-arn`).
    pub fn resource_arn(mut self, arn: impl Into<String>) -> Self {
        self.resource_arn = Some(arn.into());
        self
    }

    /// How often the daemon's counters go to X-Ray with `PutTelemetryRecords`, as the AWS
    /// daemon sends them (default every 60 s; `None`: never). Each record holds the interval's
    /// datagrams received, documents sent, spilled over (dropped for want of room) and
    /// rejected, and the failed calls to X-Ray by kind. Nothing is sent before the first
    /// datagram arrives.
    pub fn telemetry(mut self, every: Option<Duration>) -> Self {
        self.telemetry = every.filter(|d| !d.is_zero());
        self
    }

    /// Uploads in flight at once (default 8, at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Bytes of documents held waiting to be uploaded (default 64 MiB, as the AWS daemon's
    /// `TotalBufferSizeMB`). When full, the oldest documents are dropped and counted.
    pub fn buffer_bytes(mut self, bytes: usize) -> Self {
        self.buffer_bytes = bytes;
        self
    }

    /// How long a partial batch waits for more documents (default 1 s).
    pub fn idle(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// Attempts per batch (default 5, at least 1), with full-jitter backoff from `initial`
    /// (default 100 ms) capped at `max` (default 10 s), on throttling, 5xx and timeouts.
    pub fn retries(mut self, attempts: u32, initial: Duration, max: Duration) -> Self {
        self.max_attempts = attempts.max(1);
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }
}

/// A proxy address that is not an `http://` or `https://` URL; see [`ForwardConfig::proxy`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a proxy URL like http://192.0.2.0:3128")]
pub struct InvalidProxyAddress(pub String);

impl ForwardConfig {
    /// The AWS configuration every call to AWS starts from: region, credentials (the standard
    /// chain, or the given provider, wrapped in an STS role when one is set) and the proxy.
    /// The X-Ray endpoint override is not in it, so that STS keeps its own endpoint.
    pub(crate) async fn sdk_config(&self) -> aws_config::SdkConfig {
        let region = aws_config::Region::new(self.region.clone());
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).region(region.clone());
        if let Some(provider) = &self.credentials {
            loader = loader.credentials_provider(provider.clone());
        }
        if let Some(client) = self.proxy.as_deref().and_then(proxied_http_client) {
            loader = loader.http_client(client);
        }
        let sdk = loader.load().await;
        let Some(arn) = &self.role_arn else {
            return sdk;
        };
        let role = aws_config::sts::AssumeRoleProvider::builder(arn.as_str())
            .session_name("xray-daemon")
            .region(region)
            .configure(&sdk)
            .build()
            .await;
        sdk.into_builder()
            .credentials_provider(SharedCredentialsProvider::new(role))
            .build()
    }

    /// The base URL of the X-Ray API: the endpoint override, else the region's, built as the
    /// AWS daemon's proxy builds it.
    pub(crate) fn api_base(&self) -> String {
        if let Some(endpoint) = &self.endpoint {
            return endpoint.trim_end_matches('/').to_owned();
        }
        let r = self.region.as_str();
        let suffix = if r.starts_with("cn-") {
            "amazonaws.com.cn"
        } else if r.starts_with("us-isob-") {
            "sc2s.sgov.gov"
        } else if r.starts_with("us-iso-") {
            "c2s.ic.gov"
        } else {
            "amazonaws.com"
        };
        format!("https://xray.{r}.{suffix}")
    }

    /// The proxy URL, if one is set.
    pub(crate) fn proxy_url(&self) -> Option<&str> {
        self.proxy.as_deref()
    }
}

/// The AWS SDK's default HTTPS client (rustls with aws-lc), sending through `url`.
fn proxied_http_client(
    url: &str,
) -> Option<aws_smithy_runtime_api::client::http::SharedHttpClient> {
    use aws_smithy_http_client::{Builder, ConnectorBuilder, proxy::ProxyConfig, tls};
    let proxy = ProxyConfig::all(url).ok()?;
    Some(
        Builder::new().build_with_connector_fn(move |settings, components| {
            let mut conn = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ));
            conn.set_connector_settings(settings.cloned());
            if let Some(components) = components {
                conn.set_sleep_impl(components.sleep_impl());
            }
            conn.set_proxy_config(Some(proxy.clone()));
            conn.build()
        }),
    )
}

/// Counters of the forwarder, since it started.
///
/// Every document queued ends in exactly one of `uploaded`, `rejected`, `dropped_buffer_full`
/// or `failed`, or is still pending.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForwardStats {
    /// Documents queued for upload.
    pub queued: u64,
    /// Documents X-Ray accepted.
    pub uploaded: u64,
    /// Documents X-Ray returned as `UnprocessedTraceSegments` for good: a validation failure,
    /// or a passing one (throttling, a service fault) that lasted past the attempts. Those of
    /// a passing failure are sent again, alone, while attempts remain.
    pub rejected: u64,
    /// Documents dropped, oldest first, because the buffer was full.
    pub dropped_buffer_full: u64,
    /// Documents lost when a batch failed for good (retries exhausted, or an error no retry
    /// mends: credentials, access, a bad request).
    pub failed: u64,
    /// Batches sent again after throttling, a server error or a timeout.
    pub retried_batches: u64,
    /// `PutTraceSegments` calls that returned an error.
    pub backend_errors: u64,
}

/// Allows one log line per interval (10 s) and per kind of event; what is not logged is
/// still counted.
#[derive(Default)]
pub(crate) struct Quiet {
    next_allowed: AtomicU64,
}

impl Quiet {
    const INTERVAL: Duration = Duration::from_secs(10);

    pub(crate) fn allow(&self, started: Instant) -> bool {
        let now = started.elapsed().as_millis() as u64;
        let next = self.next_allowed.load(Ordering::Relaxed);
        now >= next
            && self
                .next_allowed
                .compare_exchange(
                    next,
                    now + Self::INTERVAL.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    uploaded: AtomicU64,
    rejected: AtomicU64,
    dropped_buffer_full: AtomicU64,
    failed: AtomicU64,
    retried_batches: AtomicU64,
    backend_errors: AtomicU64,
}

fn add(a: &AtomicU64, n: usize) {
    a.fetch_add(n as u64, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> ForwardStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ForwardStats {
            queued: l(&self.queued),
            uploaded: l(&self.uploaded),
            rejected: l(&self.rejected),
            dropped_buffer_full: l(&self.dropped_buffer_full),
            failed: l(&self.failed),
            retried_batches: l(&self.retried_batches),
            backend_errors: l(&self.backend_errors),
        }
    }
}

#[derive(Default)]
struct Queue {
    docs: VecDeque<String>,
    bytes: usize,
    /// Documents taken by uploads not yet settled.
    in_flight: usize,
    closed: bool,
    /// A flush asked for the partial batch now.
    flush: bool,
    /// Retries stop here once closing.
    give_up_at: Option<Instant>,
}

/// The forwarding side of the daemon: a bounded buffer of documents and the uploads.
pub(crate) struct Forwarder {
    config: ForwardConfig,
    queue: Mutex<Queue>,
    work: Condvar,
    idle: Condvar,
    counters: Counters,
    backend: crate::telemetry::BackendCounters,
    telemetry: Option<Arc<crate::telemetry::Telemetry>>,
    started: Instant,
    /// Rate limits for the three warnings: buffer full, unprocessed, failed calls.
    quiet: [Quiet; 3],
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("config", &self.config)
            .field("stats", &self.counters.snapshot())
            .finish()
    }
}

impl Forwarder {
    /// Starts the uploading thread; the telemetry records read `store`'s counters.
    pub(crate) fn start(
        config: ForwardConfig,
        store: Arc<crate::store::Store>,
    ) -> std::io::Result<Arc<Forwarder>> {
        let telemetry = config.telemetry.map(|_| {
            Arc::new(crate::telemetry::Telemetry::new(
                store,
                crate::telemetry::Sender::from_environment(config.resource_arn.clone()),
            ))
        });
        let forwarder = Arc::new(Forwarder {
            backend: Default::default(),
            telemetry,
            config,
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            idle: Condvar::new(),
            counters: Counters::default(),
            started: Instant::now(),
            quiet: Default::default(),
        });
        let f = Arc::clone(&forwarder);
        std::thread::Builder::new()
            .name("xray-local-forward".into())
            .spawn(move || f.run())?;
        Ok(forwarder)
    }

    pub(crate) fn stats(&self) -> ForwardStats {
        self.counters.snapshot()
    }

    /// Failed calls to X-Ray by kind, for the telemetry records.
    pub(crate) fn backend(&self) -> &crate::telemetry::BackendCounters {
        &self.backend
    }

    /// Queues one document (its JSON text); the oldest go when the buffer is full.
    pub(crate) fn push(&self, doc: String) {
        let mut q = self.queue.lock();
        if q.closed {
            drop(q);
            add(&self.counters.queued, 1);
            add(&self.counters.failed, 1);
            return;
        }
        q.bytes += doc.len();
        q.docs.push_back(doc);
        let mut dropped = 0;
        while q.bytes > self.config.buffer_bytes {
            let Some(old) = q.docs.pop_front() else {
                break;
            };
            q.bytes -= old.len();
            dropped += 1;
        }
        // A full batch goes at once; the first document of an empty queue starts the batcher's
        // idle clock, which it cannot do while it sleeps waiting for work.
        let wake = q.docs.len() >= self.config.batch_size || q.docs.len() == 1;
        drop(q);
        add(&self.counters.queued, 1);
        if dropped > 0 {
            add(&self.counters.dropped_buffer_full, dropped);
        }
        if dropped > 0 && self.quiet[0].allow(self.started) {
            tracing::warn!(
                dropped,
                "forwarding buffer full: dropped the oldest documents (raise the buffer size)"
            );
        }
        if wake {
            self.work.notify_one();
        }
    }

    /// Waits until everything queued is uploaded or settled, or `deadline` passes.
    pub(crate) fn flush(&self, deadline: Instant) -> bool {
        let mut q = self.queue.lock();
        q.flush = true;
        self.work.notify_all();
        while !q.docs.is_empty() || q.in_flight > 0 {
            if self.idle.wait_until(&mut q, deadline).timed_out() {
                return q.docs.is_empty() && q.in_flight == 0;
            }
        }
        true
    }

    /// Sends what is queued, for at most `timeout`, then stops.
    pub(crate) fn shutdown(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        {
            let mut q = self.queue.lock();
            q.closed = true;
            q.give_up_at = Some(deadline);
        }
        self.flush(deadline);
    }

    /// Takes the next batch: a full one at once, a partial one after the idle time, the rest
    /// when closing. `None` once closed and empty.
    fn next_batch(&self) -> Option<Vec<String>> {
        let mut q = self.queue.lock();
        let mut since: Option<Instant> = None;
        loop {
            let any = !q.docs.is_empty();
            if q.docs.len() >= self.config.batch_size || (any && (q.closed || q.flush)) {
                break;
            }
            if !any {
                q.flush = false;
                if q.in_flight == 0 {
                    self.idle.notify_all();
                }
                if q.closed {
                    return None;
                }
                since = None;
                self.work.wait(&mut q);
                continue;
            }
            let waited = since.get_or_insert_with(Instant::now).elapsed();
            if waited >= self.config.idle {
                break;
            }
            self.work.wait_for(&mut q, self.config.idle - waited);
        }
        let n = q.docs.len().min(self.config.batch_size);
        let batch: Vec<String> = q.docs.drain(..n).collect();
        q.bytes -= batch.iter().map(String::len).sum::<usize>();
        q.in_flight += batch.len();
        Some(batch)
    }

    fn run(self: Arc<Self>) {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(err) => {
                tracing::error!(%err, "could not start the forwarder; nothing is forwarded");
                let mut q = self.queue.lock();
                q.closed = true;
                let n = q.docs.len();
                q.docs.clear();
                q.bytes = 0;
                drop(q);
                add(&self.counters.failed, n);
                self.idle.notify_all();
                return;
            }
        };
        let client = rt.block_on(self.client());
        if let (Some(telemetry), Some(every)) = (&self.telemetry, self.config.telemetry) {
            rt.spawn(Arc::clone(telemetry).run(every, Arc::clone(&self), client.clone()));
        }
        let permits = Arc::new(tokio::sync::Semaphore::new(self.config.concurrency));
        while let Some(batch) = self.next_batch() {
            let permit = rt.block_on(Arc::clone(&permits).acquire_owned());
            let (me, client) = (Arc::clone(&self), client.clone());
            rt.spawn(async move {
                let n = batch.len();
                me.upload(&client, batch).await;
                let mut q = me.queue.lock();
                q.in_flight -= n;
                if q.docs.is_empty() && q.in_flight == 0 {
                    me.idle.notify_all();
                }
                drop(q);
                drop(permit);
            });
        }
        // Let the last uploads finish (bounded by their own retries and the deadline).
        let _ = rt.block_on(permits.acquire_many(self.config.concurrency as u32));
        rt.shutdown_background();
    }

    async fn client(&self) -> aws_sdk_xray::Client {
        let sdk = self.config.sdk_config().await;
        let mut config = aws_sdk_xray::config::Builder::from(&sdk);
        if let Some(endpoint) = &self.config.endpoint {
            config = config.endpoint_url(endpoint);
        }
        let config = config
            // Our own retries, with backoff and counting; the SDK's would double them.
            .retry_config(aws_sdk_xray::config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_sdk_xray::config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .build(),
            )
            .build();
        aws_sdk_xray::Client::from_conf(config)
    }

    async fn upload(&self, client: &aws_sdk_xray::Client, batch: Vec<String>) {
        use aws_sdk_xray::error::ProvideErrorMetadata as _;
        let mut batch = batch;
        let mut attempt = 0u32;
        loop {
            let n = batch.len();
            attempt += 1;
            let result = client
                .put_trace_segments()
                .set_trace_segment_documents(Some(batch.clone()))
                .send()
                .await;
            let retryable = match result {
                Ok(out) => {
                    let unprocessed = out.unprocessed_trace_segments();
                    // Those refused for a passing reason go again, while attempts remain.
                    let again: Vec<String> = if attempt < self.config.max_attempts {
                        let ids: Vec<&str> = unprocessed
                            .iter()
                            .filter(|u| is_transient(u.error_code().unwrap_or_default()))
                            .filter_map(|u| u.id())
                            .collect();
                        batch
                            .iter()
                            .filter(|doc| document_id(doc).is_some_and(|id| ids.contains(&id)))
                            .cloned()
                            .collect()
                    } else {
                        Vec::new()
                    };
                    let refused = unprocessed.len().min(n);
                    let rejected = refused.saturating_sub(again.len());
                    add(&self.counters.uploaded, n - refused);
                    if rejected > 0 {
                        add(&self.counters.rejected, rejected);
                    }
                    if rejected > 0 && self.quiet[1].allow(self.started) {
                        for u in unprocessed.iter().take(3) {
                            tracing::warn!(
                                id = u.id().unwrap_or_default(),
                                code = u.error_code().unwrap_or_default(),
                                message = u.message().unwrap_or_default(),
                                "X-Ray did not process a document"
                            );
                        }
                    }
                    if again.is_empty() {
                        return;
                    }
                    // The rest of the batch is settled; only these go again.
                    batch = again;
                    true
                }
                Err(err) => {
                    add(&self.counters.backend_errors, 1);
                    self.backend.count(crate::telemetry::BackendError::of(&err));
                    let code = err.code().unwrap_or_default().to_owned();
                    let status = err.raw_response().map(|r| r.status().as_u16());
                    let retryable = matches!(
                        err,
                        aws_sdk_xray::error::SdkError::TimeoutError(_)
                            | aws_sdk_xray::error::SdkError::DispatchFailure(_)
                    ) || code.contains("Throttl")
                        || status.is_some_and(|s| s == 429 || s >= 500);
                    if self.quiet[2].allow(self.started) {
                        tracing::warn!(
                            error = %aws_sdk_xray::error::DisplayErrorContext(&err),
                            attempt,
                            retryable,
                            stats = ?self.counters.snapshot(),
                            "PutTraceSegments failed (logged at most once every 10 s)"
                        );
                    }
                    retryable
                }
            };
            let backoff = jitter(
                self.config.initial_backoff,
                self.config.max_backoff,
                attempt,
            );
            let give_up_at = self.queue.lock().give_up_at;
            let past = give_up_at.is_some_and(|t| Instant::now() + backoff >= t);
            if !retryable || attempt >= self.config.max_attempts || past {
                add(&self.counters.failed, n);
                return;
            }
            add(&self.counters.retried_batches, 1);
            tokio::time::sleep(backoff).await;
        }
    }
}

/// Whether an `UnprocessedTraceSegments` error code names a passing condition (throttling,
/// a service fault), worth sending the document again; validation errors are final.
fn is_transient(code: &str) -> bool {
    let code = code.to_ascii_lowercase();
    [
        "throttl",
        "ratelimit",
        "limitexceeded",
        "serviceunavailable",
        "internal",
        "timeout",
    ]
    .iter()
    .any(|k| code.contains(k))
        || code.starts_with('5')
}

/// The `id` of a segment document, read without parsing the rest of it.
fn document_id(doc: &str) -> Option<&str> {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        id: Option<&'a str>,
    }
    serde_json::from_str::<Id<'_>>(doc).ok()?.id
}

/// Full jitter: a random wait up to `initial * 2^(attempt - 1)`, capped at `max`.
fn jitter(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = initial
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(max);
    ceiling.mul_f64(rand::random::<f64>())
}
