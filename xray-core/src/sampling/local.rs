//! The local sampler: rules from a document or from code, per-rule reservoirs, a random rate.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use rand::rngs::{SmallRng, SysRng};
use rand::{RngExt, SeedableRng};

use super::reservoir::Reservoir;
use super::{
    DecidingRule, Sampler, SamplingDecision, SamplingExplanation, SamplingReason, SamplingRequest,
    SamplingRules,
};
use crate::clock::{SharedClock, SystemClock};

/// Samples with local rules: the first matching rule (or the default rule) admits its
/// `fixed_target` requests per second, then each further request with probability `rate`.
///
/// Matching: rules are tried in order, and a rule applies when its host, method and path
/// patterns match the request case-insensitively; an attribute the request does not carry
/// matches any pattern (Python and Go SDKs; Java instead requires a pattern that matches `""`).
/// A request carrying none of host, method and path goes to the default rule, as a request-less
/// decision does in the Python and Java SDKs. The request's service name and type are not
/// looked at: local rules have no pattern for them (a version 1 `service_name` pattern is
/// matched against the host, as in every SDK).
///
/// Counting: each rule has its own reservoir, counted per whole epoch second of the sampler's
/// [`Clock`](crate::clock::Clock) and per process, as in all SDKs. Taking from it is lock-free (one
/// atomic word per rule). Past the target, a request is sampled when a uniform draw in `[0, 1)`
/// is below `rate`, so a rate of 0 never samples and a rate of 1 always does. Draws come from a
/// per-thread small, fast, non-cryptographic generator seeded from the operating system;
/// [`with_seed`](Self::with_seed) swaps it for one shared, seeded generator behind a lock, for
/// reproducible tests.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use xray_sdk::clock::ManualClock;
/// use xray_sdk::sampling::{DecidingRule, LocalSampler, Sampler, SamplingRequest, SamplingRules};
///
/// let rules = SamplingRules::from_json(r#"{
///     "version": 2,
///     "rules": [{ "host": "*", "http_method": "POST", "url_path": "/orders",
///                 "fixed_target": 2, "rate": 0.0 }],
///     "default": { "fixed_target": 1, "rate": 0.05 }
/// }"#)?;
/// let clock = Arc::new(ManualClock::new(1_735_689_600_000_000));
/// let sampler = LocalSampler::new(rules).with_clock(clock.clone()).with_seed(7);
///
/// let order = SamplingRequest::new().with_method("POST").with_url_path("/orders");
/// let decisions: Vec<bool> = (0..3).map(|_| sampler.should_sample(&order).is_sampled()).collect();
/// assert_eq!(decisions, [true, true, false]); // two per second, then rate 0
/// assert_eq!(sampler.should_sample(&order).rule(), &DecidingRule::Local(0));
///
/// clock.advance_micros(1_000_000); // next second: the reservoir is full again
/// assert!(sampler.should_sample(&order).is_sampled());
/// # Ok::<(), xray_sdk::sampling::RulesError>(())
/// ```
#[derive(Debug)]
pub struct LocalSampler {
    rules: SamplingRules,
    // One per rule, then one for the default rule.
    reservoirs: Box<[Reservoir]>,
    clock: SharedClock,
    rng: Draws,
}

impl LocalSampler {
    /// A sampler applying `rules` on the system clock.
    pub fn new(rules: SamplingRules) -> Self {
        let reservoirs = (0..=rules.rules().len())
            .map(|_| Reservoir::default())
            .collect();
        Self {
            rules,
            reservoirs,
            clock: Arc::new(SystemClock),
            rng: Draws::ThreadLocal,
        }
    }

    /// Counts seconds on `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Draws from one generator seeded with `seed`, so that a single-threaded sequence of
    /// decisions repeats exactly. The generator sits behind a lock shared by all threads: meant
    /// for tests, not for production traffic.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = Draws::Seeded(Mutex::new(SmallRng::seed_from_u64(seed)));
        self
    }

    /// The rules this sampler applies.
    pub fn rules(&self) -> &SamplingRules {
        &self.rules
    }

    /// The deciding rule for `request`: its identity, reservoir, target and rate.
    fn select(&self, request: &SamplingRequest<'_>) -> Selected<'_> {
        let (rule, index, fixed_target, rate) = match self.rules.matching_rule(request) {
            Some(index) => match self.rules.rules().get(index) {
                Some(rule) => (
                    DecidingRule::Local(index),
                    index,
                    rule.fixed_target(),
                    rule.rate(),
                ),
                None => self.default_rule(),
            },
            None => self.default_rule(),
        };
        Selected {
            rule,
            reservoir: self.reservoirs.get(index),
            fixed_target,
            rate,
        }
    }

    fn default_rule(&self) -> (DecidingRule, usize, u64, f64) {
        (
            DecidingRule::LocalDefault,
            self.rules.rules().len(),
            self.rules.default_fixed_target(),
            self.rules.default_rate(),
        )
    }

    fn description(&self, rule: &DecidingRule) -> Option<String> {
        match rule {
            DecidingRule::Local(index) => self
                .rules
                .rules()
                .get(*index)
                .and_then(|r| r.description())
                .map(str::to_owned),
            _ => None,
        }
    }
}

impl Default for LocalSampler {
    /// A sampler with the built-in rules ([`SamplingRules::default`]).
    fn default() -> Self {
        Self::new(SamplingRules::default())
    }
}

impl Sampler for LocalSampler {
    fn should_sample(&self, request: &SamplingRequest<'_>) -> SamplingDecision {
        let selected = self.select(request);
        // The reservoir always exists (one per rule plus the default); `None` would only mean
        // a broken invariant, and then the rate alone decides. A rule without a target skips
        // the clock read, the most expensive step of a decision.
        if selected.fixed_target > 0
            && let Some(reservoir) = selected.reservoir
            && reservoir
                .take(self.clock.now_secs(), selected.fixed_target)
                .taken
        {
            return SamplingDecision::new(true, selected.rule, SamplingReason::Reservoir);
        }
        let sampled = self.rng.draw() < selected.rate;
        SamplingDecision::new(sampled, selected.rule, SamplingReason::Rate)
    }

    /// Explains without taking from the reservoir: the explanation says what a decision made
    /// now would be, and explaining leaves the sampler's counters as they were. When the
    /// reservoir is used up a fresh random number is drawn for the explanation; the decision
    /// that follows draws its own, so the two can differ for rates strictly between 0 and 1.
    fn explain(&self, request: &SamplingRequest<'_>) -> SamplingExplanation {
        let selected = self.select(request);
        let now = self.clock.now_secs();
        let peek = selected
            .reservoir
            .map(|reservoir| reservoir.peek(now, selected.fixed_target));
        let used_this_second = peek.map_or(0, |p| p.used_before);
        let (sampled, reason, draw) = if peek.is_some_and(|p| p.taken) {
            (true, SamplingReason::Reservoir, None)
        } else {
            let draw = self.rng.draw();
            (draw < selected.rate, SamplingReason::Rate, Some(draw))
        };
        let description = self.description(&selected.rule);
        let explanation = SamplingExplanation::new(
            SamplingDecision::new(sampled, selected.rule, reason),
            description,
            selected.fixed_target,
            selected.rate,
            used_this_second,
            draw,
        );
        tracing::debug!(target: "xray_sdk::sampling", %explanation, "sampling decision explained");
        explanation
    }
}

struct Selected<'s> {
    rule: DecidingRule,
    reservoir: Option<&'s Reservoir>,
    fixed_target: u64,
    rate: f64,
}

// ===== random draws =====

enum Draws {
    ThreadLocal,
    Seeded(Mutex<SmallRng>),
}

impl fmt::Debug for Draws {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Draws::ThreadLocal => "ThreadLocal",
            Draws::Seeded(_) => "Seeded",
        })
    }
}

thread_local! {
    static THREAD_RNG: RefCell<SmallRng> = RefCell::new(thread_seed());
}

/// Seeds a thread's generator straight from the operating system: `SysRng` needs no
/// thread-local of its own (unlike `rand::rng()`), so this works even while thread-locals are
/// being torn down, and its one system call is paid once per thread.
fn thread_seed() -> SmallRng {
    SmallRng::try_from_rng(&mut SysRng).unwrap_or_else(|_| SmallRng::seed_from_u64(fallback_u64()))
}

/// A process-wide splitmix64 sequence: lock-free and infallible, for the rare cases where the
/// thread's generator is unavailable (no OS entropy, or called during thread-local teardown).
fn fallback_u64() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0x853c_49e6_748f_ea9b);
    let mut z = STATE
        .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Draws {
    /// A uniform number in `[0, 1)`.
    fn draw(&self) -> f64 {
        match self {
            Draws::ThreadLocal => THREAD_RNG
                .try_with(|rng| rng.try_borrow_mut().map(|mut rng| rng.random::<f64>()).ok())
                .ok()
                .flatten()
                .unwrap_or_else(|| unit_f64(fallback_u64())),
            Draws::Seeded(rng) => rng.lock().random::<f64>(),
        }
    }
}

/// The top 53 bits of `bits` as a uniform number in `[0, 1)`, the way `rand` builds an `f64`.
fn unit_f64(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}
