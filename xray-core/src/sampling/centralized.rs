//! The centralized sampler: the rules managed in X-Ray, with quotas X-Ray assigns, applied
//! locally; the network side lives in `centralized_poll` and `centralized_http`.

use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};
use rand::rngs::{SmallRng, SysRng};
use rand::{Rng, SeedableRng};

use super::centralized_http::SamplingProxyError;
use super::centralized_poll::{self, PollState};
use super::reservoir::Reservoir;
use super::wildcard::wildcard_match;
use super::{
    DecidingRule, LocalSampler, RuleStatistics, Sampler, SamplingDecision, SamplingExplanation,
    SamplingReason, SamplingRequest, SharedSampler,
};
use crate::clock::{SharedClock, SystemClock};

/// Rules stop applying this long after the last successful fetch, and the local fallback rules
/// decide again (every SDK: an hour).
pub(crate) const RULES_TTL_SECS: u64 = 3600;
/// The name of the service's catch-all rule, applied after every other rule.
pub(crate) const DEFAULT_RULE_NAME: &str = "Default";
/// The reporting interval until X-Ray assigns one.
pub(crate) const DEFAULT_INTERVAL_SECS: u64 = 10;

// ===== CentralizedSampler =====

/// Samples with the rules managed in AWS X-Ray (the console's *Sampling rules*), fetched through
/// the X-Ray daemon's TCP proxy.
///
/// # How it decides
///
/// Usable rules (version 1, resource ARN `*`, patterns no longer than X-Ray allows, at most
/// 100 of them) are tried by ascending priority, ties broken by
/// name; the rule named `Default` comes last. A rule applies when its service name, service
/// type, host, HTTP method and URL path patterns all match the request (wildcards,
/// case-insensitive; a field the request lacks, or leaves empty, matches any pattern), and, if
/// it has `Attributes`, when the request has each of them ([`SamplingRequest::with_attributes`])
/// with a value matching its pattern.
/// The rule then samples:
///
/// 1. while X-Ray has assigned this process a quota and its TTL has not passed, up to that many
///    requests per second ([`SamplingReason::Reservoir`]);
/// 2. without a valid quota, one borrowed request per second if the rule's reservoir size is
///    above zero ([`SamplingReason::Borrow`]);
/// 3. otherwise a fraction of requests at the rule's fixed rate, as last updated by X-Ray
///    ([`SamplingReason::Rate`]).
///
/// Until rules have been fetched, when the last successful fetch is more than an hour old, or
/// when no rule matches and there is no `Default` rule, the local fallback sampler decides
/// (by default [`LocalSampler::default`]: one request per second, then 5 %).
///
/// A decision reads only memory: an atomic counter or two and a read lock that writers take
/// for a pointer swap every few minutes. It never waits for the network.
///
/// # Polling
///
/// A background thread (`xray-sampling`) fetches the rules at once, then every 5 minutes
/// (plus up to 5 s of jitter), following `NextToken` pages; and every 10 seconds (plus up to
/// 100 ms) it reports each rule's counters to `SamplingTargets` (at most 25 rules per call)
/// and applies the quotas and rates X-Ray answers. When X-Ray says the rules changed after the
/// last fetch, they are fetched again at once. While no rules are held the fetch is retried
/// every 10 seconds rather than every 5 minutes, so a daemon that starts after the
/// application is picked up quickly. Calls time out after 2 seconds by default, and a whole
/// rules fetch, however many pages, after five timeouts: the rules held so far stay.
///
/// The thread stops when the sampler is dropped: dropping wakes it and does not wait for a
/// call in flight, which ends within its timeout.
///
/// # Statistics
///
/// Counters follow the official SDKs: a borrowed request counts in `BorrowCount` only, a request
/// sampled by quota or rate in `SampledCount`, and every decision in `RequestCount`. Counters
/// are reset when sent; a call that fails loses them, as in the SDKs.
///
/// # Examples
///
/// With a recorder, through its builder (never active in AWS Lambda, where the function's
/// caller decides):
///
/// ```no_run
/// use xray_sdk::Recorder;
///
/// let recorder = Recorder::builder()
///     .with_daemon_address("127.0.0.1:2000".parse()?)
///     .with_centralized_sampling(true)
///     .build()?;
/// # Ok::<(), xray_sdk::ConfigError>(())
/// ```
///
/// Or built and given to the recorder:
///
/// ```
/// use std::sync::Arc;
/// use xray_sdk::DaemonAddress;
/// use xray_sdk::sampling::{CentralizedSampler, DecidingRule, Sampler, SamplingRequest};
///
/// let daemon = DaemonAddress::default();
/// let sampler = CentralizedSampler::builder(daemon.tcp())
///     .with_background_polling(false) // for this example: no network
///     .build();
/// // No rules fetched yet: the local fallback rules decide.
/// let decision = sampler.should_sample(&SamplingRequest::new().with_url_path("/"));
/// assert_eq!(decision.rule(), &DecidingRule::LocalDefault);
///
/// let recorder = xray_sdk::Recorder::builder()
///     .ignore_environment()
///     .with_sampler(Arc::new(sampler))
///     .build()?;
/// # Ok::<(), xray_sdk::ConfigError>(())
/// ```
pub struct CentralizedSampler {
    shared: Arc<Shared>,
    /// The polling thread, if one runs. Dropping the sampler wakes it and detaches it rather
    /// than joining, so a call in flight never blocks the dropper.
    poller: Option<std::thread::JoinHandle<()>>,
}

/// Builds a [`CentralizedSampler`]; see [`CentralizedSampler::builder`].
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use xray_sdk::clock::ManualClock;
/// use xray_sdk::sampling::{CentralizedSampler, LocalSampler, SamplingRules};
///
/// let clock = Arc::new(ManualClock::new(1_735_689_600_000_000));
/// let sampler = CentralizedSampler::builder("127.0.0.1:2000".parse().unwrap())
///     .with_clock(clock.clone())
///     .with_fallback(LocalSampler::new(SamplingRules::default()).with_clock(clock))
///     .with_timeout(Duration::from_millis(500))
///     .with_background_polling(false)
///     .build();
/// assert!(sampler.rule_names().is_empty());
/// ```
#[derive(Debug)]
pub struct CentralizedSamplerBuilder {
    proxy: SocketAddr,
    fallback: Option<SharedSampler>,
    clock: Option<SharedClock>,
    timeout: Duration,
    background: bool,
}

impl CentralizedSamplerBuilder {
    /// The local sampler that decides while no centralized rules apply (default:
    /// [`LocalSampler::default`] on the sampler's clock).
    pub fn with_fallback(self, fallback: LocalSampler) -> Self {
        self.with_fallback_sampler(Arc::new(fallback))
    }

    /// Any sampler to decide while no centralized rules apply: until the proxy first answers,
    /// when the rules are over an hour old, or when no rule matches and there is no `Default`
    /// rule.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use xray_sdk::sampling::{
    ///     CentralizedSampler, DecidingRule, FixedSampler, Sampler, SamplingRequest,
    /// };
    ///
    /// let sampler = CentralizedSampler::builder("127.0.0.1:9".parse().unwrap())
    ///     .with_fallback_sampler(Arc::new(FixedSampler::never()))
    ///     .with_background_polling(false)
    ///     .build();
    /// let decision = sampler.should_sample(&SamplingRequest::new());
    /// assert_eq!(decision.rule(), &DecidingRule::Custom("never".into()));
    /// ```
    pub fn with_fallback_sampler(mut self, fallback: SharedSampler) -> Self {
        self.fallback = Some(fallback);
        self
    }

    /// The time source for quotas, their TTLs, the rules' lifetime and the statistics
    /// timestamps (default: the system clock). The poller's own schedule runs on real time.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// How long a call to the proxy may take to connect, and each read or write (default 2 s,
    /// as the Java SDK); a whole call is cut off after twice this.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        // The socket APIs refuse a zero timeout.
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Whether a background thread polls the proxy (default `true`). With `false` nothing is
    /// fetched or reported until [`CentralizedSampler::refresh_rules_now`] and
    /// [`CentralizedSampler::refresh_targets_now`] are called: for tests, or for an
    /// application that schedules polling itself.
    pub fn with_background_polling(mut self, background: bool) -> Self {
        self.background = background;
        self
    }

    /// Builds the sampler and, unless disabled, starts its polling thread. If the thread cannot
    /// be started the failure is logged and the sampler polls only when asked.
    pub fn build(self) -> CentralizedSampler {
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let fallback = self
            .fallback
            .unwrap_or_else(|| Arc::new(LocalSampler::default().with_clock(clock.clone())));
        let shared = Arc::new(Shared {
            proxy: self.proxy,
            timeout: self.timeout,
            clock,
            fallback,
            client_id: client_id(),
            manifest: RwLock::new(None),
            poll: Mutex::new(PollState::default()),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let poller = if self.background {
            let thread_shared = shared.clone();
            match std::thread::Builder::new()
                .name("xray-sampling".to_owned())
                .spawn(move || centralized_poll::run(&thread_shared))
            {
                Ok(handle) => Some(handle),
                Err(error) => {
                    tracing::warn!(
                        target: "xray_sdk::sampling",
                        %error,
                        "could not start the sampling poller thread; centralized rules will not \
                         be fetched and the local fallback rules decide"
                    );
                    None
                }
            }
        } else {
            None
        };
        CentralizedSampler { shared, poller }
    }
}

impl CentralizedSampler {
    /// A sampler polling the daemon's TCP proxy at `proxy` ([`DaemonAddress::tcp`]), with the
    /// default fallback rules, the system clock and a background poller.
    ///
    /// [`DaemonAddress::tcp`]: crate::DaemonAddress::tcp
    pub fn new(proxy: SocketAddr) -> Self {
        Self::builder(proxy).build()
    }

    /// A builder for a sampler polling the daemon's TCP proxy at `proxy`.
    pub fn builder(proxy: SocketAddr) -> CentralizedSamplerBuilder {
        CentralizedSamplerBuilder {
            proxy,
            fallback: None,
            clock: None,
            timeout: Duration::from_secs(2),
            background: true,
        }
    }

    /// Fetches the rules now (all pages), on the calling thread, and returns how many usable
    /// rules there are, `Default` included. On failure the rules held so far stay in force.
    ///
    /// The poller does this on its own; call it in tests, or to pick up a rule change at once.
    /// Calls are serialized with the poller's, so this may wait for one in flight.
    ///
    /// # Errors
    ///
    /// A [`SamplingProxyError`] when the proxy cannot be reached, does not answer in time,
    /// answers with an error status, or answers something that is not a rules page.
    pub fn refresh_rules_now(&self) -> Result<usize, SamplingProxyError> {
        let mut poll = self.shared.poll.lock();
        centralized_poll::refresh_rules(&self.shared, &mut poll)
    }

    /// Reports the counters of every rule due for a report (one that decided a request and
    /// whose reporting interval, 10 s unless X-Ray says otherwise, has passed since its last
    /// target update) and applies the targets X-Ray answers, on the calling thread. Returns how
    /// many rules were reported. If X-Ray says the rules changed since the last fetch, they are
    /// fetched again before this returns.
    ///
    /// # Errors
    ///
    /// As [`refresh_rules_now`](Self::refresh_rules_now); the counters of the batch that
    /// failed are lost, those of later batches are kept for the next report.
    pub fn refresh_targets_now(&self) -> Result<usize, SamplingProxyError> {
        let mut poll = self.shared.poll.lock();
        centralized_poll::refresh_targets(&self.shared, &mut poll)
    }

    /// The names of the rules in force, in the order they are tried (`Default` last); empty
    /// while none have been fetched or after they expired.
    pub fn rule_names(&self) -> Vec<Arc<str>> {
        let now = self.shared.clock.now_secs();
        let guard = self.shared.manifest.read();
        match guard.as_deref() {
            Some(manifest) if manifest.is_live(now) => manifest
                .rules
                .iter()
                .chain(manifest.default.as_ref())
                .map(|rule| rule.def.name.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The counters of the rule `name` since its last report, if the last successful fetch
    /// returned that rule.
    pub fn statistics(&self, name: &str) -> Option<RuleStatistics> {
        let guard = self.shared.manifest.read();
        let manifest = guard.as_deref()?;
        manifest.find(name).map(|rule| rule.state.statistics())
    }

    /// The address of the proxy this sampler polls.
    pub fn proxy(&self) -> SocketAddr {
        self.shared.proxy
    }
}

impl fmt::Debug for CentralizedSampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CentralizedSampler")
            .field("proxy", &self.shared.proxy)
            .field("client_id", &self.shared.client_id)
            .field("rules", &self.rule_names())
            .field("background_polling", &self.poller.is_some())
            .field("fallback", &self.shared.fallback)
            .finish()
    }
}

impl Drop for CentralizedSampler {
    fn drop(&mut self) {
        *self.shared.stop.lock() = true;
        self.shared.wake.notify_all();
        // Join only a thread that already ended; otherwise let it finish its call and exit.
        if let Some(handle) = self.poller.take()
            && handle.is_finished()
        {
            let _ = handle.join();
        }
    }
}

impl Sampler for CentralizedSampler {
    fn should_sample(&self, request: &SamplingRequest<'_>) -> SamplingDecision {
        let now = self.shared.clock.now_micros();
        let guard = self.shared.manifest.read();
        match guard.as_deref().and_then(|m| m.select(request, now)) {
            Some(rule) => {
                let (decision, _) = rule.decide(now, Mode::Decide);
                decision
            }
            None => {
                drop(guard);
                self.shared.fallback.should_sample(request)
            }
        }
    }

    /// Explains without counting: no request, quota or borrow is taken. The counters are the
    /// rule's since its last report.
    fn explain(&self, request: &SamplingRequest<'_>) -> SamplingExplanation {
        let now = self.shared.clock.now_micros();
        let guard = self.shared.manifest.read();
        let Some(rule) = guard.as_deref().and_then(|m| m.select(request, now)) else {
            drop(guard);
            return self.shared.fallback.explain(request);
        };
        let (decision, seen) = rule.decide(now, Mode::Explain);
        let explanation = SamplingExplanation::new(
            decision,
            None,
            seen.target,
            seen.rate,
            seen.used_before,
            seen.draw,
        )
        .with_statistics(rule.state.statistics());
        tracing::debug!(target: "xray_sdk::sampling", %explanation, "sampling decision explained");
        explanation
    }
}

// ===== shared state =====

/// What the sampler and its poller share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) proxy: SocketAddr,
    pub(crate) timeout: Duration,
    pub(crate) clock: SharedClock,
    pub(crate) fallback: SharedSampler,
    pub(crate) client_id: String,
    /// The rules in force. Decisions hold the read lock while they match (nanoseconds); a
    /// refresh builds the next manifest outside the lock and holds the write lock for one
    /// pointer swap.
    pub(crate) manifest: RwLock<Option<Arc<Manifest>>>,
    /// Serializes network polls (the background thread's and on-demand ones).
    pub(crate) poll: Mutex<PollState>,
    pub(crate) stop: Mutex<bool>,
    pub(crate) wake: Condvar,
}

impl Shared {
    pub(crate) fn current(&self) -> Option<Arc<Manifest>> {
        self.manifest.read().clone()
    }

    pub(crate) fn stopped(&self) -> bool {
        *self.stop.lock()
    }
}

/// The usable rules of one fetch.
#[derive(Debug)]
pub(crate) struct Manifest {
    /// Sorted by priority, then name; `Default` is not among them.
    pub(crate) rules: Vec<Rule>,
    pub(crate) default: Option<Rule>,
    /// Clock seconds of the fetch.
    pub(crate) fetched_at: u64,
}

impl Manifest {
    pub(crate) fn is_live(&self, now_secs: u64) -> bool {
        now_secs < self.fetched_at.saturating_add(RULES_TTL_SECS)
    }

    fn select(&self, request: &SamplingRequest<'_>, now_micros: u64) -> Option<&Rule> {
        if !self.is_live(now_micros / 1_000_000) {
            return None;
        }
        self.rules
            .iter()
            .find(|rule| rule.def.matches(request))
            .or(self.default.as_ref())
    }

    pub(crate) fn find(&self, name: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .chain(self.default.as_ref())
            .find(|rule| &*rule.def.name == name)
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().chain(self.default.as_ref())
    }
}

/// A rule as fetched, with the state it keeps across fetches.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) def: RuleDef,
    pub(crate) state: Arc<RuleState>,
}

/// A rule's definition, as the service returned it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RuleDef {
    pub(crate) name: Arc<str>,
    pub(crate) priority: i64,
    pub(crate) fixed_rate: f64,
    pub(crate) reservoir_size: u64,
    pub(crate) service_name: String,
    pub(crate) service_type: String,
    pub(crate) host: String,
    pub(crate) http_method: String,
    pub(crate) url_path: String,
    /// `(name, pattern)`: the request must have each attribute, matching its pattern.
    pub(crate) attributes: Vec<(String, String)>,
}

impl RuleDef {
    fn matches(&self, request: &SamplingRequest<'_>) -> bool {
        // A missing or empty request attribute matches any pattern (Python and Go).
        let applies = |pattern: &str, value: Option<&str>| match value {
            None | Some("") => true,
            Some(value) => wildcard_match(pattern, value),
        };
        applies(&self.host, request.host())
            && applies(&self.http_method, request.method())
            && applies(&self.url_path, request.url_path())
            && applies(&self.service_name, request.service_name())
            && applies(&self.service_type, request.service_type())
            // A rule on attributes applies only to requests that have them all, matching: a
            // request that says nothing of its tenant is no request of that tenant.
            && self.attributes.iter().all(|(name, pattern)| {
                request
                    .attribute(name)
                    .is_some_and(|value| wildcard_match(pattern, value))
            })
    }
}

/// A rule's quota, rate and counters. Shared by every manifest in which a rule of the same name
/// appears, so that a refresh keeps them. Plain atomics: a target update writes a few words
/// that decisions read independently, and a decision that sees a quota from one update and a
/// TTL from the next errs by one request at most.
#[derive(Debug)]
pub(crate) struct RuleState {
    reservoir: Reservoir,
    /// Requests per second X-Ray assigned to this process.
    quota: AtomicU64,
    /// Clock microseconds until which `quota` is valid; 0 when none was ever assigned.
    quota_until_micros: AtomicU64,
    /// The fixed rate, `f64` bits: the rule's, replaced by the targets' when they arrive.
    rate_bits: AtomicU64,
    pub(crate) interval_secs: AtomicU64,
    /// Clock seconds of the last target update; 0 before the first.
    pub(crate) refreshed_at: AtomicU64,
    requests: AtomicU64,
    sampled: AtomicU64,
    borrowed: AtomicU64,
}

/// A target from `SamplingTargets`; absent fields keep the previous value.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TargetUpdate {
    pub(crate) fixed_rate: Option<f64>,
    pub(crate) quota: Option<u64>,
    pub(crate) quota_until_micros: Option<u64>,
    pub(crate) interval_secs: Option<u64>,
}

impl RuleState {
    pub(crate) fn new(fixed_rate: f64) -> Self {
        Self {
            reservoir: Reservoir::default(),
            quota: AtomicU64::new(0),
            quota_until_micros: AtomicU64::new(0),
            rate_bits: AtomicU64::new(fixed_rate.to_bits()),
            interval_secs: AtomicU64::new(DEFAULT_INTERVAL_SECS),
            refreshed_at: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            sampled: AtomicU64::new(0),
            borrowed: AtomicU64::new(0),
        }
    }

    pub(crate) fn set_rate(&self, rate: f64) {
        self.rate_bits.store(rate.to_bits(), Ordering::Relaxed);
    }

    pub(crate) fn apply(&self, target: TargetUpdate, now_secs: u64) {
        if let Some(rate) = target.fixed_rate {
            self.set_rate(rate);
        }
        if let Some(quota) = target.quota {
            self.quota.store(quota, Ordering::Relaxed);
        }
        if let Some(until) = target.quota_until_micros {
            self.quota_until_micros.store(until, Ordering::Relaxed);
        }
        if let Some(interval) = target.interval_secs {
            self.interval_secs.store(interval, Ordering::Relaxed);
        }
        self.refreshed_at.store(now_secs, Ordering::Relaxed);
    }

    pub(crate) fn statistics(&self) -> RuleStatistics {
        RuleStatistics {
            requests: self.requests.load(Ordering::Relaxed),
            sampled: self.sampled.load(Ordering::Relaxed),
            borrowed: self.borrowed.load(Ordering::Relaxed),
        }
    }

    /// Reads and resets the counters, for a report.
    pub(crate) fn take_statistics(&self) -> RuleStatistics {
        RuleStatistics {
            requests: self.requests.swap(0, Ordering::Relaxed),
            sampled: self.sampled.swap(0, Ordering::Relaxed),
            borrowed: self.borrowed.swap(0, Ordering::Relaxed),
        }
    }

    /// Whether the rule decided a request and its interval has passed since its last target.
    pub(crate) fn is_due(&self, now_secs: u64) -> bool {
        self.requests.load(Ordering::Relaxed) > 0
            && now_secs
                >= self
                    .refreshed_at
                    .load(Ordering::Relaxed)
                    .saturating_add(self.interval_secs.load(Ordering::Relaxed))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Decide,
    Explain,
}

/// What a decision looked at, for explanations.
struct Seen {
    target: u64,
    rate: f64,
    used_before: u64,
    draw: Option<f64>,
}

impl Rule {
    fn decide(&self, now_micros: u64, mode: Mode) -> (SamplingDecision, Seen) {
        let state = &*self.state;
        let now_secs = now_micros / 1_000_000;
        let count = |counter: &AtomicU64| {
            if mode == Mode::Decide {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        };
        count(&state.requests);
        let until = state.quota_until_micros.load(Ordering::Relaxed);
        let has_quota = until != 0 && now_micros <= until;
        let (target, reason_if_taken) = if has_quota {
            (
                state.quota.load(Ordering::Relaxed),
                SamplingReason::Reservoir,
            )
        } else if self.def.reservoir_size > 0 {
            // Borrowing shares the reservoir's per-second count, as Go's does: a quota that
            // arrives within the second starts from the borrowed request.
            (1, SamplingReason::Borrow)
        } else {
            (0, SamplingReason::Borrow)
        };
        let rate = f64::from_bits(state.rate_bits.load(Ordering::Relaxed));
        let rule = DecidingRule::Centralized(self.def.name.clone());
        let take = if target == 0 {
            None
        } else if mode == Mode::Decide {
            Some(state.reservoir.take(now_secs, target))
        } else {
            Some(state.reservoir.peek(now_secs, target))
        };
        let used_before = take.map_or(0, |t| t.used_before);
        if take.is_some_and(|t| t.taken) {
            count(if reason_if_taken == SamplingReason::Borrow {
                &state.borrowed
            } else {
                &state.sampled
            });
            let seen = Seen {
                target,
                rate,
                used_before,
                draw: None,
            };
            return (SamplingDecision::new(true, rule, reason_if_taken), seen);
        }
        let draw = unit_f64(random_u64());
        let sampled = draw < rate;
        if sampled {
            count(&state.sampled);
        }
        let seen = Seen {
            target,
            rate,
            used_before,
            draw: Some(draw),
        };
        (
            SamplingDecision::new(sampled, rule, SamplingReason::Rate),
            seen,
        )
    }
}

// ===== randomness =====

thread_local! {
    static THREAD_RNG: RefCell<SmallRng> = RefCell::new(
        SmallRng::try_from_rng(&mut SysRng).unwrap_or_else(|_| SmallRng::seed_from_u64(fallback_u64())),
    );
}

/// A process-wide splitmix64 sequence, lock-free, for when the thread's generator is
/// unavailable (no OS entropy, or thread-locals being torn down).
fn fallback_u64() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0x2545_f491_4f6c_dd1d);
    let mut z = STATE
        .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A random `u64` from the thread's generator; never panics.
pub(crate) fn random_u64() -> u64 {
    THREAD_RNG
        .try_with(|rng| rng.try_borrow_mut().map(|mut rng| rng.next_u64()).ok())
        .ok()
        .flatten()
        .unwrap_or_else(fallback_u64)
}

/// The top 53 bits of `bits` as a uniform number in `[0, 1)`.
fn unit_f64(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// The process's sampling client id: 24 hex digits (12 random bytes), generated once and
/// shared by every sampler, as the SDKs keep one per process.
fn client_id() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| format!("{:016x}{:08x}", random_u64(), random_u64() as u32))
        .clone()
}
