//! The sampling proxy of a forwarding daemon: `GetSamplingRules` and `SamplingTargets` go to
//! the X-Ray API, signed with SigV4 with the daemon's credentials, as the AWS daemon's TCP
//! proxy sends them.
//!
//! Only those two paths are forwarded. The AWS daemon forwards any path, so anything that
//! reaches its port can call the whole X-Ray API with its identity; here every other X-Ray
//! path is answered locally. The body goes upstream byte for byte, so members this crate does
//! not know keep working.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials as _;
use hyper::body::Bytes;
use parking_lot::Mutex;

use crate::forward::{ForwardConfig, Quiet};
use crate::sampling::ApiError;

/// How long one forwarded call may take, connection included.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// The paths the proxy forwards.
pub(crate) const FORWARDED_PATHS: [&str; 2] = ["/GetSamplingRules", "/SamplingTargets"];

/// An upstream answer, passed back to the caller as it came.
#[derive(Debug)]
pub(crate) struct Upstreamed {
    pub(crate) status: u16,
    pub(crate) content_type: Option<hyper::header::HeaderValue>,
    pub(crate) error_type: Option<hyper::header::HeaderValue>,
    pub(crate) body: Bytes,
}

/// Counters of the sampling proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ProxyStats {
    /// Calls answered by X-Ray (whatever the status).
    pub(crate) forwarded: u64,
    /// Calls sent unsigned because no credentials could be had (X-Ray then refuses them).
    pub(crate) unsigned: u64,
    /// Calls that got no answer from X-Ray: refused, timed out, unreachable.
    pub(crate) failed: u64,
}

/// Forwards the sampling API to X-Ray.
pub(crate) struct SamplingProxy {
    config: ForwardConfig,
    base: String,
    http: reqwest::Client,
    sdk: tokio::sync::OnceCell<aws_config::SdkConfig>,
    credentials: Mutex<Option<Credentials>>,
    forwarded: AtomicU64,
    unsigned: AtomicU64,
    failed: AtomicU64,
    started: Instant,
    quiet: Quiet,
}

impl std::fmt::Debug for SamplingProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamplingProxy")
            .field("base", &self.base)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl SamplingProxy {
    pub(crate) fn new(config: ForwardConfig) -> std::io::Result<SamplingProxy> {
        let mut http = reqwest::Client::builder()
            .timeout(UPSTREAM_TIMEOUT)
            .pool_max_idle_per_host(2)
            .pool_idle_timeout(Duration::from_secs(30));
        if let Some(url) = config.proxy_url() {
            let proxy = reqwest::Proxy::all(url).map_err(std::io::Error::other)?;
            http = http.proxy(proxy);
        }
        let http = http.build().map_err(std::io::Error::other)?;
        Ok(SamplingProxy {
            base: config.api_base(),
            config,
            http,
            sdk: tokio::sync::OnceCell::new(),
            credentials: Mutex::new(None),
            forwarded: AtomicU64::new(0),
            unsigned: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            started: Instant::now(),
            quiet: Quiet::default(),
        })
    }

    pub(crate) fn stats(&self) -> ProxyStats {
        ProxyStats {
            forwarded: self.forwarded.load(Ordering::Relaxed),
            unsigned: self.unsigned.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    /// Sends `body` to `path` of the X-Ray API, signed, and returns X-Ray's answer.
    pub(crate) async fn forward(
        &self,
        path: &str,
        content_type: Option<&hyper::header::HeaderValue>,
        body: Bytes,
    ) -> Result<Upstreamed, ApiError> {
        let url = format!("{}{path}", self.base);
        let mut request = http::Request::post(url.as_str());
        if let Some(ct) = content_type {
            request = request.header(http::header::CONTENT_TYPE, ct.as_bytes());
        }
        let mut request = request
            .body(body.to_vec())
            .map_err(|err| upstream_error(format!("cannot build the request: {err}")))?;
        match self.fresh_credentials().await {
            Some(creds) => {
                if let Err(err) =
                    xray_otlp_http::sign(&mut request, &creds, self.config.region(), "xray")
                {
                    self.unsigned.fetch_add(1, Ordering::Relaxed);
                    self.warn(&format!("cannot sign a sampling call: {err}"));
                }
            }
            None => {
                // As the AWS daemon does: forwarded unsigned, X-Ray answers why.
                self.unsigned.fetch_add(1, Ordering::Relaxed);
                self.warn("no AWS credentials: a sampling call goes to X-Ray unsigned");
            }
        }
        let request = match reqwest::Request::try_from(request) {
            Ok(request) => request,
            Err(err) => return Err(upstream_error(format!("bad request: {err}"))),
        };
        let response = match self.http.execute(request).await {
            Ok(response) => response,
            Err(err) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.warn(&format!("a sampling call to {} failed: {err}", self.base));
                return Err(upstream_error(format!(
                    "X-Ray at {} did not answer: {err}",
                    self.base
                )));
            }
        };
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| hyper::header::HeaderValue::from_bytes(v.as_bytes()).ok());
        let error_type = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| hyper::header::HeaderValue::from_bytes(v.as_bytes()).ok());
        match response.bytes().await {
            Ok(body) => {
                self.forwarded.fetch_add(1, Ordering::Relaxed);
                Ok(Upstreamed {
                    status,
                    content_type,
                    error_type,
                    body,
                })
            }
            Err(err) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                Err(upstream_error(format!("X-Ray's answer broke off: {err}")))
            }
        }
    }

    /// Credentials valid for at least another minute, from the cache or the chain.
    async fn fresh_credentials(&self) -> Option<Credentials> {
        let fresh = |c: &Credentials| {
            c.expiry()
                .is_none_or(|at| at > SystemTime::now() + Duration::from_secs(60))
        };
        if let Some(c) = self.credentials.lock().as_ref().filter(|c| fresh(c)) {
            return Some(c.clone());
        }
        let sdk = self
            .sdk
            .get_or_init(|| async { self.config.sdk_config().await })
            .await;
        let provider = sdk.credentials_provider()?;
        match provider.provide_credentials().await {
            Ok(creds) => {
                *self.credentials.lock() = Some(creds.clone());
                Some(creds)
            }
            Err(err) => {
                tracing::debug!(%err, "no credentials for the sampling proxy");
                None
            }
        }
    }

    fn warn(&self, message: &str) {
        if self.quiet.allow(self.started) {
            tracing::warn!(stats = ?self.stats(), "{message}");
        }
    }
}

fn upstream_error(message: String) -> ApiError {
    ApiError {
        status: 502,
        kind: "ServiceUnavailableException",
        message,
    }
}
