//! Sampling: which requests get traced.
//!
//! A [`Sampler`] looks at a [`SamplingRequest`] (host, method, path, service) and returns a
//! [`SamplingDecision`]. [`LocalSampler`] applies [`SamplingRules`] loaded from the official
//! local rules format (versions 1 and 2) or built in code: the first rule whose patterns match
//! decides, otherwise the default rule; each rule admits `fixed_target` requests per second and
//! then a `rate` fraction of the rest. [`CentralizedSampler`] applies the rules managed in
//! X-Ray, fetched through the daemon, with per-process quotas that X-Ray assigns, and falls back
//! to a [`LocalSampler`] while it has none.
//!
//! ```
//! use xray_sdk::sampling::{LocalSampler, Sampler, SamplingRequest, SamplingRules};
//!
//! let rules = SamplingRules::from_json(r#"{
//!     "version": 2,
//!     "rules": [{ "description": "health checks", "host": "*", "http_method": "GET",
//!                 "url_path": "/health*", "fixed_target": 0, "rate": 0.0 }],
//!     "default": { "fixed_target": 1, "rate": 0.05 }
//! }"#)?;
//! let sampler = LocalSampler::new(rules);
//!
//! let health = SamplingRequest::new().with_method("GET").with_url_path("/healthz");
//! assert!(!sampler.should_sample(&health).is_sampled());
//! # Ok::<(), xray_sdk::sampling::RulesError>(())
//! ```

use std::fmt;
use std::sync::Arc;

use crate::header::Sampled;
use crate::id::TraceId;

mod centralized;
mod centralized_http;
mod centralized_poll;
mod local;
mod reservoir;
mod rules;
mod wildcard;

pub use centralized::{CentralizedSampler, CentralizedSamplerBuilder};
pub use centralized_http::{SamplingProxyError, SamplingProxyErrorKind};
pub use local::LocalSampler;
pub use rules::{RulesError, RulesErrorKind, SamplingRule, SamplingRules, SamplingRulesBuilder};
pub use wildcard::{wildcard_match, wildcard_match_case_sensitive};

/// Decides whether a request is traced.
///
/// The recorder holds one as a [`SharedSampler`] and asks it once per incoming request whose
/// trace header does not already carry a decision. Implementations are called concurrently from
/// every request thread, so [`should_sample`](Sampler::should_sample) must be cheap and must not
/// block.
///
/// # Examples
///
/// A sampler that traces everything, held as the recorder holds one:
///
/// ```
/// use std::sync::Arc;
/// use xray_sdk::sampling::{
///     DecidingRule, Sampler, SamplingDecision, SamplingReason, SamplingRequest, SharedSampler,
/// };
///
/// #[derive(Debug)]
/// struct Always;
///
/// impl Sampler for Always {
///     fn should_sample(&self, _: &SamplingRequest<'_>) -> SamplingDecision {
///         SamplingDecision::new(true, DecidingRule::Custom("always".into()), SamplingReason::Custom)
///     }
/// }
///
/// let sampler: SharedSampler = Arc::new(Always);
/// let decision = sampler.should_sample(&SamplingRequest::new());
/// assert!(decision.is_sampled());
/// assert_eq!(decision.rule(), &DecidingRule::Custom("always".into()));
/// assert!(sampler.explain(&SamplingRequest::new()).decision().is_sampled());
/// ```
pub trait Sampler: Send + Sync + fmt::Debug {
    /// Decides for one request. A decision counts: it may use up the reservoir of the rule that
    /// matched.
    fn should_sample(&self, request: &SamplingRequest<'_>) -> SamplingDecision;

    /// Says which rule would decide `request`, with the counters behind the decision, for
    /// diagnostics.
    ///
    /// Implementations should not count an explanation as a decision. [`LocalSampler`] does not:
    /// it reads the reservoir without taking from it, so explaining a request and then deciding
    /// it leaves the same state as deciding it alone. The default implementation only knows the
    /// decision, so it calls [`should_sample`](Sampler::should_sample), which does count, and
    /// leaves the rule settings and counters of the explanation at zero.
    fn explain(&self, request: &SamplingRequest<'_>) -> SamplingExplanation {
        let decision = self.should_sample(request);
        let explanation = SamplingExplanation {
            decision,
            description: None,
            fixed_target: 0,
            rate: 0.0,
            used_this_second: 0,
            draw: None,
            statistics: None,
        };
        tracing::debug!(target: "xray_sdk::sampling", %explanation, "sampling decision explained");
        explanation
    }
}

/// A [`Sampler`] shared by the recorder and its clones.
pub type SharedSampler = Arc<dyn Sampler>;

// ===== SamplingRequest =====

/// What a sampler may look at in an incoming request. Every attribute is optional and borrowed,
/// so building one copies no string.
///
/// A missing attribute matches any pattern (the Python and Go SDKs' reading, recommended by the
/// protocol reference); see [`LocalSampler`] for the one exception.
///
/// # Examples
///
/// ```
/// use xray_sdk::sampling::SamplingRequest;
///
/// let request = SamplingRequest::new()
///     .with_host("api.example.com")
///     .with_method("POST")
///     .with_url_path("/v1/orders")
///     .with_service_name("orders");
/// assert_eq!(request.host(), Some("api.example.com"));
/// assert_eq!(request.service_type(), None);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SamplingRequest<'a> {
    host: Option<&'a str>,
    method: Option<&'a str>,
    url_path: Option<&'a str>,
    service_name: Option<&'a str>,
    service_type: Option<&'a str>,
    trace_id: Option<TraceId>,
    upstream: Sampled,
    attributes: &'a [(&'a str, &'a str)],
}

impl<'a> SamplingRequest<'a> {
    /// A request with no attribute known.
    pub const fn new() -> Self {
        Self {
            host: None,
            method: None,
            url_path: None,
            service_name: None,
            service_type: None,
            trace_id: None,
            upstream: Sampled::Unknown,
            attributes: &[],
        }
    }

    /// Sets the id of the trace the request belongs to (the recorder sets it: the incoming
    /// header's root, or the new trace's id), for samplers that decide by trace id.
    pub const fn with_trace_id(mut self, trace_id: TraceId) -> Self {
        self.trace_id = Some(trace_id);
        self
    }

    /// Sets the caller's decision, from the incoming header's `Sampled` field (the recorder
    /// sets it). [`ParentBasedSampler`] obeys it.
    pub const fn with_upstream(mut self, upstream: Sampled) -> Self {
        self.upstream = upstream;
        self
    }

    /// Sets the request's attributes, as `(name, value)` pairs: what centralized rules with
    /// `Attributes` match on (a header value, a tenant, a route).
    ///
    /// # Examples
    ///
    /// ```
    /// use xray_sdk::sampling::SamplingRequest;
    ///
    /// let attributes = [("tenant", "blue"), ("route", "/orders/{id}")];
    /// let request = SamplingRequest::new().with_attributes(&attributes);
    /// assert_eq!(request.attribute("tenant"), Some("blue"));
    /// assert_eq!(request.attribute("plan"), None);
    /// ```
    pub const fn with_attributes(mut self, attributes: &'a [(&'a str, &'a str)]) -> Self {
        self.attributes = attributes;
        self
    }

    /// The trace id, when known.
    pub const fn trace_id(&self) -> Option<TraceId> {
        self.trace_id
    }

    /// The caller's decision ([`Sampled::Unknown`] without a header or a `Sampled` field).
    pub const fn upstream(&self) -> Sampled {
        self.upstream
    }

    /// The request's attributes.
    pub const fn attributes(&self) -> &'a [(&'a str, &'a str)] {
        self.attributes
    }

    /// The value of the attribute `name`, if the request has it (the first, if repeated).
    pub fn attribute(&self, name: &str) -> Option<&'a str> {
        self.attributes
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
    }

    /// Sets the `Host` header value.
    pub const fn with_host(mut self, host: &'a str) -> Self {
        self.host = Some(host);
        self
    }

    /// Sets the HTTP method.
    pub const fn with_method(mut self, method: &'a str) -> Self {
        self.method = Some(method);
        self
    }

    /// Sets the URL path, without the query string.
    pub const fn with_url_path(mut self, url_path: &'a str) -> Self {
        self.url_path = Some(url_path);
        self
    }

    /// Sets the service name (the segment name).
    pub const fn with_service_name(mut self, service_name: &'a str) -> Self {
        self.service_name = Some(service_name);
        self
    }

    /// Sets the service type (the segment origin, such as `AWS::EC2::Instance`).
    pub const fn with_service_type(mut self, service_type: &'a str) -> Self {
        self.service_type = Some(service_type);
        self
    }

    /// The `Host` header value.
    pub const fn host(&self) -> Option<&'a str> {
        self.host
    }

    /// The HTTP method.
    pub const fn method(&self) -> Option<&'a str> {
        self.method
    }

    /// The URL path.
    pub const fn url_path(&self) -> Option<&'a str> {
        self.url_path
    }

    /// The service name.
    pub const fn service_name(&self) -> Option<&'a str> {
        self.service_name
    }

    /// The service type.
    pub const fn service_type(&self) -> Option<&'a str> {
        self.service_type
    }
}

// ===== SamplingDecision =====

/// Which rule decided.
///
/// Not `Copy`, so that rules known by name (centralized rules) can be added without breaking
/// callers; the local variants hold no heap data and clone for free.
///
/// # Examples
///
/// ```
/// use xray_sdk::sampling::{DecidingRule, LocalSampler, Sampler, SamplingRequest, SamplingRules};
///
/// let rules = SamplingRules::from_json(r#"{"version": 2, "default": {"fixed_target": 1, "rate": 0.05},
///     "rules": [{"host": "*", "http_method": "GET", "url_path": "/a", "fixed_target": 1, "rate": 0}]}"#)?;
/// let sampler = LocalSampler::new(rules);
/// let get_b = SamplingRequest::new().with_method("GET").with_url_path("/b");
/// match sampler.should_sample(&get_b).rule() {
///     DecidingRule::Local(index) => panic!("rule {index} should not match"),
///     DecidingRule::LocalDefault => {}
///     DecidingRule::Centralized(name) => panic!("no centralized rule {name} here"),
///     _ => unreachable!("a local sampler decides by local rules"),
/// }
/// # Ok::<(), xray_sdk::sampling::RulesError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecidingRule {
    /// The local rule at this 0-based position in [`SamplingRules::rules`].
    Local(usize),
    /// The local default rule.
    LocalDefault,
    /// The centralized rule of this name, managed in X-Ray and applied by
    /// [`CentralizedSampler`]; the service's own default rule is `Centralized("Default")`.
    Centralized(Arc<str>),
    /// The caller's decision, carried in the trace header's `Sampled` field and obeyed by
    /// [`ParentBasedSampler`].
    Upstream,
    /// A rule of a sampler of the application's own, named as it chooses.
    Custom(Arc<str>),
}

/// How the deciding rule reached its decision.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use xray_sdk::clock::ManualClock;
/// use xray_sdk::sampling::{LocalSampler, Sampler, SamplingReason, SamplingRequest};
///
/// // The built-in rules: 1 per second, then 5 %. A manual clock keeps both calls in one second.
/// let clock = Arc::new(ManualClock::new(1_735_689_600_000_000));
/// let sampler = LocalSampler::default().with_clock(clock);
/// let request = SamplingRequest::new().with_url_path("/");
/// assert_eq!(sampler.should_sample(&request).reason(), SamplingReason::Reservoir);
/// assert_eq!(sampler.should_sample(&request).reason(), SamplingReason::Rate);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SamplingReason {
    /// The rule's per-second reservoir still had room: sampled.
    Reservoir,
    /// The reservoir was used up and the random draw against the rule's rate decided (sampled or
    /// not).
    Rate,
    /// A centralized rule with no valid quota from X-Ray yet (or an expired one) borrowed its
    /// one request of the second: sampled, and reported as borrowed rather than sampled.
    Borrow,
    /// The caller decided ([`DecidingRule::Upstream`]).
    Upstream,
    /// A sampler of the application's own decided for a reason of its own.
    Custom,
}

/// A sampler's answer for one request.
///
/// # Examples
///
/// ```
/// use xray_sdk::sampling::{DecidingRule, LocalSampler, Sampler, SamplingReason, SamplingRequest};
///
/// // The built-in rules admit the first request of each second.
/// let decision = LocalSampler::default().should_sample(&SamplingRequest::new());
/// assert!(decision.is_sampled());
/// assert_eq!(decision.rule(), &DecidingRule::LocalDefault);
/// assert_eq!(decision.reason(), SamplingReason::Reservoir);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SamplingDecision {
    sampled: bool,
    rule: DecidingRule,
    reason: SamplingReason,
}

impl SamplingDecision {
    /// A decision; for [`Sampler`] implementations.
    pub const fn new(sampled: bool, rule: DecidingRule, reason: SamplingReason) -> Self {
        Self {
            sampled,
            rule,
            reason,
        }
    }

    /// Whether the request is traced.
    pub const fn is_sampled(&self) -> bool {
        self.sampled
    }

    /// The rule that decided.
    pub const fn rule(&self) -> &DecidingRule {
        &self.rule
    }

    /// How the rule decided.
    pub const fn reason(&self) -> SamplingReason {
        self.reason
    }

    /// The name to record in the segment's `aws.xray.sampling_rule_name`. Local rules have none:
    /// the SDKs record a rule name only for centralized rules.
    pub fn rule_name(&self) -> Option<&str> {
        match &self.rule {
            DecidingRule::Centralized(name) => Some(name),
            DecidingRule::Local(_)
            | DecidingRule::LocalDefault
            | DecidingRule::Upstream
            | DecidingRule::Custom(_) => None,
        }
    }
}

// ===== SamplingExplanation =====

/// Why a sampler decided what it did: the rule, its settings and the counters it looked at.
///
/// Its `Display` is one line meant for logs; [`Sampler::explain`] also logs it at `DEBUG` level
/// under the target `xray_sdk::sampling`.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use xray_sdk::clock::ManualClock;
/// use xray_sdk::sampling::{LocalSampler, Sampler, SamplingRequest, SamplingRules};
///
/// let rules = SamplingRules::from_json(r#"{
///     "version": 2,
///     "rules": [{ "description": "orders", "host": "*", "http_method": "POST",
///                 "url_path": "/orders", "fixed_target": 2, "rate": 0.1 }],
///     "default": { "fixed_target": 1, "rate": 0.05 }
/// }"#)?;
/// let clock = Arc::new(ManualClock::new(1_735_689_600_000_000));
/// let sampler = LocalSampler::new(rules).with_clock(clock);
/// let request = SamplingRequest::new().with_method("POST").with_url_path("/orders");
///
/// sampler.should_sample(&request);
/// let why = sampler.explain(&request);
/// assert_eq!(why.description(), Some("orders"));
/// assert_eq!(why.used_this_second(), 1); // the decision above; explaining takes nothing
/// assert_eq!(why.fixed_target(), 2);
/// assert!(why.decision().is_sampled());
/// # Ok::<(), xray_sdk::sampling::RulesError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingExplanation {
    decision: SamplingDecision,
    description: Option<String>,
    fixed_target: u64,
    rate: f64,
    used_this_second: u64,
    draw: Option<f64>,
    statistics: Option<RuleStatistics>,
}

impl SamplingExplanation {
    pub(crate) fn new(
        decision: SamplingDecision,
        description: Option<String>,
        fixed_target: u64,
        rate: f64,
        used_this_second: u64,
        draw: Option<f64>,
    ) -> Self {
        Self {
            decision,
            description,
            fixed_target,
            rate,
            used_this_second,
            draw,
            statistics: None,
        }
    }

    pub(crate) fn with_statistics(mut self, statistics: RuleStatistics) -> Self {
        self.statistics = Some(statistics);
        self
    }

    /// The decision the sampler would make now.
    pub fn decision(&self) -> &SamplingDecision {
        &self.decision
    }

    /// The deciding rule's description, if it has one.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The deciding rule's reservoir: requests sampled per second before the rate applies. For
    /// a centralized rule, the quota X-Ray assigned to this process, or 1 while the rule
    /// borrows, or 0 when it has neither.
    pub fn fixed_target(&self) -> u64 {
        self.fixed_target
    }

    /// The deciding rule's rate, applied once the reservoir is used up.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Requests the deciding rule's reservoir admitted in the current second.
    pub fn used_this_second(&self) -> u64 {
        self.used_this_second
    }

    /// The random number in `[0, 1)` compared with the rate (`draw < rate` samples), or `None`
    /// when the reservoir decided.
    pub fn draw(&self) -> Option<f64> {
        self.draw
    }

    /// The deciding rule's counters since they were last reported to X-Ray, for centralized
    /// rules; `None` for local rules, which report nothing.
    pub fn statistics(&self) -> Option<RuleStatistics> {
        self.statistics
    }
}

impl fmt::Display for SamplingExplanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.decision.sampled {
            "sampled"
        } else {
            "not sampled"
        })?;
        match self.decision.rule {
            DecidingRule::Local(index) => write!(f, " by rule {index}")?,
            DecidingRule::LocalDefault => f.write_str(" by the default rule")?,
            DecidingRule::Centralized(ref name) => write!(f, " by centralized rule {name:?}")?,
            DecidingRule::Upstream => f.write_str(" by the caller's trace header")?,
            DecidingRule::Custom(ref name) => write!(f, " by {name:?}")?,
        }
        if self.decision.reason == SamplingReason::Borrow {
            f.write_str(" (borrowed while no quota is assigned)")?;
        }
        if let Some(description) = &self.description {
            write!(f, " ({description:?})")?;
        }
        write!(
            f,
            ": reservoir {}/{} used this second",
            self.used_this_second, self.fixed_target
        )?;
        if let Some(draw) = self.draw {
            let cmp = if draw < self.rate { "<" } else { ">=" };
            write!(f, ", draw {draw:.4} {cmp} rate {}", self.rate)?;
        }
        match self.statistics {
            Some(s) => write!(
                f,
                "; since the last report: {} requests, {} sampled, {} borrowed",
                s.requests, s.sampled, s.borrowed
            ),
            None => Ok(()),
        }
    }
}

// ===== RuleStatistics =====

/// A centralized rule's counters since they were last reported to X-Ray, as the
/// `SamplingTargets` call sends them.
///
/// Borrowed requests count in [`borrowed`](Self::borrowed) only, not in
/// [`sampled`](Self::sampled), as the official SDKs report them.
///
/// # Examples
///
/// ```
/// use xray_sdk::sampling::{CentralizedSampler, Sampler, SamplingRequest};
///
/// // No proxy has answered yet, so the local fallback rules decide and there are no counters.
/// let sampler = CentralizedSampler::builder("127.0.0.1:9".parse().unwrap())
///     .with_background_polling(false)
///     .build();
/// assert_eq!(sampler.explain(&SamplingRequest::new()).statistics(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RuleStatistics {
    pub(crate) requests: u64,
    pub(crate) sampled: u64,
    pub(crate) borrowed: u64,
}

impl RuleStatistics {
    /// Requests the rule decided.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Requests sampled by the quota or the rate.
    pub fn sampled(&self) -> u64 {
        self.sampled
    }

    /// Requests sampled by borrowing.
    pub fn borrowed(&self) -> u64 {
        self.borrowed
    }
}

// ===== composable samplers =====

/// Obeys the caller's decision, and asks `inner` when there is none: an incoming `Sampled=1`
/// or `Sampled=0` ([`SamplingRequest::upstream`]) decides, as every official SDK does by
/// default; `Sampled=?`, no `Sampled` field or no header leaves it to `inner`.
///
/// The recorder's sampler is wrapped in one unless
/// [`with_upstream_decisions(false)`](crate::RecorderBuilder::with_upstream_decisions) is set.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use xray_sdk::header::Sampled;
/// use xray_sdk::sampling::{
///     DecidingRule, FixedSampler, ParentBasedSampler, Sampler, SamplingRequest,
/// };
///
/// let sampler = ParentBasedSampler::new(Arc::new(FixedSampler::never()));
/// let told = SamplingRequest::new().with_upstream(Sampled::Yes);
/// assert!(sampler.should_sample(&told).is_sampled());
/// assert_eq!(sampler.should_sample(&told).rule(), &DecidingRule::Upstream);
///
/// let asked = SamplingRequest::new().with_upstream(Sampled::Requested);
/// assert!(!sampler.should_sample(&asked).is_sampled());
/// ```
#[derive(Debug, Clone)]
pub struct ParentBasedSampler {
    inner: SharedSampler,
}

impl ParentBasedSampler {
    /// Obeys the caller, else asks `inner`.
    pub fn new(inner: SharedSampler) -> Self {
        Self { inner }
    }

    /// The sampler asked when the caller did not decide.
    pub fn inner(&self) -> &SharedSampler {
        &self.inner
    }

    fn upstream(request: &SamplingRequest<'_>) -> Option<SamplingDecision> {
        request.upstream.decision().map(|sampled| {
            SamplingDecision::new(sampled, DecidingRule::Upstream, SamplingReason::Upstream)
        })
    }
}

impl Sampler for ParentBasedSampler {
    fn should_sample(&self, request: &SamplingRequest<'_>) -> SamplingDecision {
        Self::upstream(request).unwrap_or_else(|| self.inner.should_sample(request))
    }

    fn explain(&self, request: &SamplingRequest<'_>) -> SamplingExplanation {
        match Self::upstream(request) {
            Some(decision) => SamplingExplanation::new(decision, None, 0, 0.0, 0, None),
            None => self.inner.explain(request),
        }
    }
}

/// Samples every request, or none: for development, tests, or a service whose every request
/// matters. Chosen with `XRAY_SAMPLER=always` or `never`.
///
/// # Examples
///
/// ```
/// use xray_sdk::sampling::{DecidingRule, FixedSampler, Sampler, SamplingRequest};
///
/// assert!(FixedSampler::always().should_sample(&SamplingRequest::new()).is_sampled());
/// let never = FixedSampler::never().should_sample(&SamplingRequest::new());
/// assert!(!never.is_sampled());
/// assert_eq!(never.rule(), &DecidingRule::Custom("never".into()));
/// ```
#[derive(Debug, Clone)]
pub struct FixedSampler {
    sampled: bool,
    name: Arc<str>,
}

impl FixedSampler {
    /// Samples every request (the rule is named `always`).
    pub fn always() -> Self {
        Self {
            sampled: true,
            name: Arc::from("always"),
        }
    }

    /// Samples no request (the rule is named `never`).
    pub fn never() -> Self {
        Self {
            sampled: false,
            name: Arc::from("never"),
        }
    }
}

impl Sampler for FixedSampler {
    fn should_sample(&self, _: &SamplingRequest<'_>) -> SamplingDecision {
        SamplingDecision::new(
            self.sampled,
            DecidingRule::Custom(self.name.clone()),
            SamplingReason::Custom,
        )
    }

    fn explain(&self, request: &SamplingRequest<'_>) -> SamplingExplanation {
        let rate = if self.sampled { 1.0 } else { 0.0 };
        SamplingExplanation::new(self.should_sample(request), None, 0, rate, 0, None)
    }
}
