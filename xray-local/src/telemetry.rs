//! `PutTelemetryRecords`, as the AWS daemon sends it: every interval (60 s) the counters of
//! the interval become one record; records wait in a bounded queue (30) and go 10 a call, with
//! the host's name, its EC2 instance id and the resource ARN. Nothing is sent before the first
//! datagram ever arrives, and a failed call keeps its records for the next.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use aws_sdk_xray::types::{BackendConnectionErrors, TelemetryRecord};
use parking_lot::Mutex;

use crate::intake::DropReason;
use crate::store::Store;

/// Records held while X-Ray cannot be reached; the oldest go first.
const MAX_RECORDS: usize = 30;
/// Records a call.
const RECORDS_PER_CALL: usize = 10;

/// How a failed X-Ray call failed, for `BackendConnectionErrors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackendError {
    Http5xx,
    Http4xx,
    Timeout,
    ConnectionRefused,
    UnknownHost,
    Other,
}

impl BackendError {
    /// Classifies an error of the AWS SDK as the AWS daemon's telemetry does.
    pub(crate) fn of<E>(
        err: &aws_sdk_xray::error::SdkError<E, aws_sdk_xray::config::http::HttpResponse>,
    ) -> BackendError {
        use aws_sdk_xray::error::SdkError;
        match err {
            SdkError::TimeoutError(_) => BackendError::Timeout,
            SdkError::DispatchFailure(failure) => {
                let text = format!("{:?}", failure).to_ascii_lowercase();
                if failure.is_timeout() {
                    BackendError::Timeout
                } else if text.contains("dns") || text.contains("lookup") {
                    BackendError::UnknownHost
                } else if failure.is_io() {
                    BackendError::ConnectionRefused
                } else {
                    BackendError::Other
                }
            }
            SdkError::ServiceError(_) | SdkError::ResponseError(_) => {
                match err.raw_response().map(|r| r.status().as_u16()) {
                    Some(s) if s >= 500 => BackendError::Http5xx,
                    Some(s) if s >= 400 => BackendError::Http4xx,
                    _ => BackendError::Other,
                }
            }
            _ => BackendError::Other,
        }
    }
}

/// The counters only the forwarder knows; the others are read from the store.
#[derive(Debug, Default)]
pub(crate) struct BackendCounters {
    http5xx: AtomicU64,
    http4xx: AtomicU64,
    timeout: AtomicU64,
    refused: AtomicU64,
    unknown_host: AtomicU64,
    other: AtomicU64,
}

impl BackendCounters {
    pub(crate) fn count(&self, error: BackendError) {
        let counter = match error {
            BackendError::Http5xx => &self.http5xx,
            BackendError::Http4xx => &self.http4xx,
            BackendError::Timeout => &self.timeout,
            BackendError::ConnectionRefused => &self.refused,
            BackendError::UnknownHost => &self.unknown_host,
            BackendError::Other => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Totals since the start, from which each record takes its difference.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    received: u64,
    sent: u64,
    spillover: u64,
    rejected: u64,
    http5xx: u64,
    http4xx: u64,
    timeout: u64,
    refused: u64,
    unknown_host: u64,
    other: u64,
}

/// Where the records go, and who they are from.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sender {
    pub(crate) resource_arn: Option<String>,
    pub(crate) hostname: Option<String>,
    pub(crate) instance_id: Option<String>,
}

impl Sender {
    /// `AWS_HOSTNAME` else the kernel's host name; `AWS_INSTANCE_ID`.
    pub(crate) fn from_environment(resource_arn: Option<String>) -> Sender {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Sender {
            resource_arn,
            hostname: env("AWS_HOSTNAME").or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
            }),
            instance_id: env("AWS_INSTANCE_ID"),
        }
    }
}

/// The telemetry of one forwarder.
#[derive(Debug)]
pub(crate) struct Telemetry {
    store: Arc<Store>,
    last: Mutex<Totals>,
    records: Mutex<VecDeque<TelemetryRecord>>,
    sender: Sender,
    /// Calls that failed, and records dropped because the queue was full.
    failed_calls: AtomicU64,
    dropped_records: AtomicU64,
}

impl Telemetry {
    pub(crate) fn new(store: Arc<Store>, sender: Sender) -> Telemetry {
        Telemetry {
            store,
            last: Mutex::new(Totals::default()),
            records: Mutex::new(VecDeque::new()),
            sender,
            failed_calls: AtomicU64::new(0),
            dropped_records: AtomicU64::new(0),
        }
    }

    fn totals(&self, forward: &crate::ForwardStats, backend: &BackendCounters) -> Totals {
        let stats = self.store.stats();
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let rejected_here: u64 = DropReason::ALL
            .iter()
            .filter(|r| **r != DropReason::Backlog)
            .map(|r| stats.dropped(*r))
            .sum();
        Totals {
            received: stats.received(),
            sent: forward.uploaded,
            spillover: forward.dropped_buffer_full + stats.dropped(DropReason::Backlog),
            rejected: rejected_here + forward.rejected,
            http5xx: l(&backend.http5xx),
            http4xx: l(&backend.http4xx),
            timeout: l(&backend.timeout),
            refused: l(&backend.refused),
            unknown_host: l(&backend.unknown_host),
            other: l(&backend.other),
        }
    }

    /// Closes the interval: its counts become a record, queued unless nothing has ever been
    /// received (as the AWS daemon, which sends nothing before the first datagram).
    pub(crate) fn rotate(&self, forward: &crate::ForwardStats, backend: &BackendCounters) {
        let now = self.totals(forward, backend);
        if now.received == 0 {
            return;
        }
        let was = std::mem::replace(&mut *self.last.lock(), now);
        let d = |a: u64, b: u64| i32::try_from(a.saturating_sub(b)).unwrap_or(i32::MAX);
        let errors = BackendConnectionErrors::builder()
            .http_code5_xx_count(d(now.http5xx, was.http5xx))
            .http_code4_xx_count(d(now.http4xx, was.http4xx))
            .timeout_count(d(now.timeout, was.timeout))
            .connection_refused_count(d(now.refused, was.refused))
            .unknown_host_count(d(now.unknown_host, was.unknown_host))
            .other_count(d(now.other, was.other))
            .build();
        let record = TelemetryRecord::builder()
            .timestamp(aws_sdk_xray::primitives::DateTime::from(SystemTime::now()))
            .segments_received_count(d(now.received, was.received))
            .segments_sent_count(d(now.sent, was.sent))
            .segments_spillover_count(d(now.spillover, was.spillover))
            .segments_rejected_count(d(now.rejected, was.rejected))
            .backend_connection_errors(errors)
            .build();
        let Ok(record) = record else { return };
        let mut records = self.records.lock();
        records.push_back(record);
        while records.len() > MAX_RECORDS {
            records.pop_front();
            self.dropped_records.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends what is queued, 10 records a call; records of a failed call stay queued.
    pub(crate) async fn send(&self, client: &aws_sdk_xray::Client) {
        loop {
            let chunk: Vec<TelemetryRecord> = {
                let records = self.records.lock();
                records.iter().take(RECORDS_PER_CALL).cloned().collect()
            };
            if chunk.is_empty() {
                return;
            }
            let n = chunk.len();
            let result = client
                .put_telemetry_records()
                .set_telemetry_records(Some(chunk))
                .set_resource_arn(self.sender.resource_arn.clone())
                .set_hostname(self.sender.hostname.clone())
                .set_ec2_instance_id(self.sender.instance_id.clone())
                .send()
                .await;
            match result {
                Ok(_) => {
                    let mut records = self.records.lock();
                    for _ in 0..n {
                        records.pop_front();
                    }
                }
                Err(err) => {
                    self.failed_calls.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        error = %aws_sdk_xray::error::DisplayErrorContext(&err),
                        "PutTelemetryRecords failed; its records are kept for the next interval"
                    );
                    return;
                }
            }
        }
    }

    /// Runs until the runtime stops: a record every `interval`, then a send.
    pub(crate) async fn run(
        self: Arc<Self>,
        interval: Duration,
        forwarder: Arc<crate::forward::Forwarder>,
        client: aws_sdk_xray::Client,
    ) {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            ticks.tick().await;
            self.rotate(&forwarder.stats(), forwarder.backend());
            self.send(&client).await;
        }
    }
}
