//! Polling the sampling proxy: `GetSamplingRules` and `SamplingTargets`, their JSON, and the
//! background thread that calls them on schedule.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::centralized::{
    DEFAULT_RULE_NAME, Manifest, Rule, RuleDef, RuleState, Shared, TargetUpdate, random_u64,
};
use super::centralized_http::{SamplingProxyError, SamplingProxyErrorKind, post_json};

const GET_RULES: &str = "GetSamplingRules";
const TARGETS: &str = "SamplingTargets";

/// The API takes at most 25 statistics documents per call.
pub(crate) const MAX_STATISTICS_PER_CALL: usize = 25;
/// Pages followed in one rules fetch; X-Ray holds a few dozen rules per account, one page.
const MAX_PAGES: usize = 100;
/// Usable rules kept from one fetch, the first received; past this the rest are ignored (and
/// logged). X-Ray allows 25 rules per Region by default: 100 leaves room and keeps the cost of
/// a decision bounded.
const MAX_RULES: usize = 100;
/// The longest patterns X-Ray accepts (`CreateSamplingRule`): a rule with a longer one cannot
/// come from X-Ray, and would make every decision slower; it is ignored.
const MAX_NAME_PATTERN: usize = 64;
const MAX_METHOD_PATTERN: usize = 10;
const MAX_PATH_PATTERN: usize = 128;
const MAX_ATTRIBUTES: usize = 5;
const MAX_ATTRIBUTE_PATTERN: usize = 32;
/// A whole rules fetch, every page included, takes at most this many call timeouts.
const FETCH_BUDGET_CALLS: u32 = 5;
/// Longest reporting interval accepted from a target, so that a bad value cannot silence a rule
/// for good.
const MAX_INTERVAL_SECS: u64 = 3600;

const RULES_PERIOD: Duration = Duration::from_secs(300);
const RULES_JITTER_MS: u64 = 5_000;
const TARGETS_PERIOD: Duration = Duration::from_secs(10);
const TARGETS_JITTER_MS: u64 = 100;

/// What the pollers remember between calls.
#[derive(Debug, Default)]
pub(crate) struct PollState {
    /// Whether the last call failed, so that a failing proxy is reported once at `WARN` and then
    /// at `DEBUG` until it recovers.
    failing: bool,
}

// ===== wire format =====

#[derive(Deserialize)]
struct RulesPage {
    #[serde(rename = "SamplingRuleRecords", default)]
    records: Option<Vec<Value>>,
    #[serde(rename = "NextToken", default)]
    next_token: Option<String>,
}

#[derive(Deserialize)]
struct RuleRecord {
    #[serde(rename = "SamplingRule")]
    rule: WireRule,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireRule {
    rule_name: Option<String>,
    #[serde(rename = "ResourceARN")]
    resource_arn: Option<String>,
    priority: Option<i64>,
    fixed_rate: Option<f64>,
    reservoir_size: Option<u64>,
    service_name: Option<String>,
    service_type: Option<String>,
    host: Option<String>,
    #[serde(rename = "HTTPMethod")]
    http_method: Option<String>,
    #[serde(rename = "URLPath")]
    url_path: Option<String>,
    version: Option<i64>,
    attributes: Option<serde_json::Map<String, Value>>,
}

impl WireRule {
    /// The rule, if it is one this sampler can apply (protocol reference §5.5): version 1, every
    /// SDK-relevant field present, and resource ARN `*`, since requests carry none. Attributes
    /// are kept as string patterns; a rule with an attribute that is not a string is skipped.
    fn usable(self) -> Result<RuleDef, &'static str> {
        if self.version != Some(1) {
            return Err("version is not 1");
        }
        if self.resource_arn.as_deref() != Some("*") {
            return Err("it matches on a resource ARN");
        }
        let attributes = self.attributes.unwrap_or_default();
        if attributes.len() > MAX_ATTRIBUTES {
            return Err("it has more than 5 attributes");
        }
        let attributes = attributes
            .into_iter()
            .map(|(name, pattern)| match pattern {
                Value::String(pattern)
                    if name.chars().count() <= MAX_ATTRIBUTE_PATTERN
                        && pattern.chars().count() <= MAX_ATTRIBUTE_PATTERN =>
                {
                    Ok((name, pattern))
                }
                Value::String(_) => Err("an attribute is longer than 32 characters"),
                _ => Err("an attribute's pattern is not a string"),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let within = |pattern: &Option<String>, max: usize| {
            pattern.as_deref().is_none_or(|p| p.chars().count() <= max)
        };
        if !(within(&self.service_name, MAX_NAME_PATTERN)
            && within(&self.service_type, MAX_NAME_PATTERN)
            && within(&self.host, MAX_NAME_PATTERN)
            && within(&self.http_method, MAX_METHOD_PATTERN)
            && within(&self.url_path, MAX_PATH_PATTERN))
        {
            return Err("a pattern is longer than X-Ray allows");
        }
        let fixed_rate = self
            .fixed_rate
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or("FixedRate is missing or outside [0, 1]")?;
        Ok(RuleDef {
            name: self
                .rule_name
                .filter(|n| !n.is_empty())
                .ok_or("RuleName is missing")?
                .into(),
            priority: self.priority.ok_or("Priority is missing")?,
            fixed_rate,
            reservoir_size: self.reservoir_size.ok_or("ReservoirSize is missing")?,
            service_name: self.service_name.ok_or("ServiceName is missing")?,
            service_type: self.service_type.ok_or("ServiceType is missing")?,
            host: self.host.ok_or("Host is missing")?,
            http_method: self.http_method.ok_or("HTTPMethod is missing")?,
            url_path: self.url_path.ok_or("URLPath is missing")?,
            attributes,
        })
    }
}

#[derive(Serialize)]
struct RulesRequest<'a> {
    #[serde(rename = "NextToken", skip_serializing_if = "Option::is_none")]
    next_token: Option<&'a str>,
}

#[derive(Serialize)]
struct TargetsRequest<'a> {
    #[serde(rename = "SamplingStatisticsDocuments")]
    documents: &'a [StatisticsDocument<'a>],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct StatisticsDocument<'a> {
    rule_name: &'a str,
    #[serde(rename = "ClientID")]
    client_id: &'a str,
    /// Epoch seconds, an integer as Go and Python send it.
    timestamp: u64,
    request_count: u64,
    sampled_count: u64,
    borrow_count: u64,
}

#[derive(Deserialize)]
struct TargetsResponse {
    #[serde(rename = "SamplingTargetDocuments", default)]
    targets: Option<Vec<Value>>,
    #[serde(rename = "LastRuleModification", default)]
    last_rule_modification: Option<f64>,
    #[serde(rename = "UnprocessedStatistics", default)]
    unprocessed: Option<Vec<Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireTarget {
    rule_name: String,
    fixed_rate: Option<f64>,
    reservoir_quota: Option<u64>,
    #[serde(rename = "ReservoirQuotaTTL")]
    reservoir_quota_ttl: Option<f64>,
    interval: Option<u64>,
}

impl WireTarget {
    /// The update, with out-of-range values dropped (the previous value is kept, as for an
    /// absent field).
    fn update(&self) -> TargetUpdate {
        TargetUpdate {
            fixed_rate: self.fixed_rate.filter(|r| (0.0..=1.0).contains(r)),
            quota: self.reservoir_quota,
            quota_until_micros: self
                .reservoir_quota_ttl
                .filter(|t| t.is_finite() && *t > 0.0)
                // Saturating float-to-int cast; 1 µs is the smallest nonzero ("assigned") TTL.
                .map(|t| ((t * 1_000_000.0) as u64).max(1)),
            interval_secs: self
                .interval
                .filter(|i| *i > 0)
                .map(|i| i.min(MAX_INTERVAL_SECS)),
        }
    }
}

#[derive(Deserialize)]
struct Unprocessed {
    #[serde(rename = "RuleName", default)]
    rule_name: Option<String>,
    #[serde(rename = "ErrorCode", default)]
    error_code: Option<String>,
}

fn json_error(
    operation: &'static str,
    shared: &Shared,
    e: serde_json::Error,
) -> SamplingProxyError {
    SamplingProxyError::new(SamplingProxyErrorKind::Json, operation, shared.proxy).with_source(e)
}

// ===== GetSamplingRules =====

/// Fetches every page of rules and puts the usable ones in force.
pub(crate) fn refresh_rules(
    shared: &Shared,
    poll: &mut PollState,
) -> Result<usize, SamplingProxyError> {
    let result = fetch_rules(shared);
    note(poll, GET_RULES, result.as_ref().err());
    let defs = result?;
    let now = shared.clock.now_secs();
    let previous = shared.current();
    let mut rules = Vec::with_capacity(defs.len());
    let mut default = None;
    for def in defs {
        let kept = previous.as_deref().and_then(|m| m.find(&def.name));
        let state = match kept {
            Some(old) => {
                // Same rule name: its quota, reservoir and counters carry over. A rate changed
                // in the console takes effect now; otherwise the rate from the last target
                // stays until the next one.
                if old.def.fixed_rate != def.fixed_rate {
                    old.state.set_rate(def.fixed_rate);
                }
                old.state.clone()
            }
            None => Arc::new(RuleState::new(def.fixed_rate)),
        };
        let rule = Rule { def, state };
        if &*rule.def.name == DEFAULT_RULE_NAME {
            default = Some(rule);
        } else {
            rules.push(rule);
        }
    }
    rules.sort_by(|a, b| (a.def.priority, &*a.def.name).cmp(&(b.def.priority, &*b.def.name)));
    let count = rules.len() + usize::from(default.is_some());
    let manifest = Arc::new(Manifest {
        rules,
        default,
        fetched_at: now,
    });
    *shared.manifest.write() = Some(manifest);
    tracing::debug!(target: "xray_sdk::sampling", rules = count, "centralized sampling rules fetched");
    Ok(count)
}

/// The usable rules of every page, first occurrence of each name.
fn fetch_rules(shared: &Shared) -> Result<Vec<RuleDef>, SamplingProxyError> {
    let mut defs: Vec<RuleDef> = Vec::new();
    let mut names: HashSet<Arc<str>> = HashSet::new();
    let mut token: Option<String> = None;
    let mut skipped = 0usize;
    let deadline = Instant::now() + shared.timeout.saturating_mul(FETCH_BUDGET_CALLS);
    for _ in 0..MAX_PAGES {
        // However many pages, and however slowly each comes: the rules held so far stay.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(SamplingProxyError::new(
                SamplingProxyErrorKind::Timeout,
                GET_RULES,
                shared.proxy,
            ));
        }
        let request = serde_json::to_vec(&RulesRequest {
            next_token: token.as_deref(),
        })
        .map_err(|e| json_error(GET_RULES, shared, e))?;
        let body = post_json(shared.proxy, GET_RULES, &request, shared.timeout.min(left))?;
        let page: RulesPage =
            serde_json::from_slice(&body).map_err(|e| json_error(GET_RULES, shared, e))?;
        for record in page.records.unwrap_or_default() {
            let def = serde_json::from_value::<RuleRecord>(record)
                .map_err(|_| "the record is not a sampling rule")
                .and_then(|r| r.rule.usable());
            match def {
                Ok(def) if names.contains(&def.name) => skipped += 1,
                Ok(def) if defs.len() >= MAX_RULES => {
                    skipped += 1;
                    tracing::debug!(target: "xray_sdk::sampling", rule = %def.name, "too many sampling rules; ignored");
                }
                Ok(def) => {
                    names.insert(def.name.clone());
                    defs.push(def);
                }
                Err(reason) => {
                    skipped += 1;
                    tracing::debug!(target: "xray_sdk::sampling", reason, "sampling rule ignored");
                }
            }
        }
        match page.next_token.filter(|t| !t.is_empty()) {
            // A token that repeats would loop; stop there with what was read.
            Some(next) if token.as_deref() != Some(next.as_str()) => token = Some(next),
            _ => {
                token = None;
                break;
            }
        }
    }
    if token.is_some() {
        tracing::warn!(target: "xray_sdk::sampling", pages = MAX_PAGES, "sampling rules span too many pages; the rest are ignored");
    }
    if skipped > 0 {
        tracing::debug!(target: "xray_sdk::sampling", skipped, "sampling rules not applicable to this SDK were ignored");
    }
    Ok(defs)
}

// ===== SamplingTargets =====

/// Reports the rules that are due, in batches of 25, and applies the targets answered.
pub(crate) fn refresh_targets(
    shared: &Shared,
    poll: &mut PollState,
) -> Result<usize, SamplingProxyError> {
    let Some(manifest) = shared.current() else {
        return Ok(0);
    };
    let now = shared.clock.now_secs();
    let due: Vec<&Rule> = manifest.all().filter(|r| r.state.is_due(now)).collect();
    let mut reported = 0;
    let mut refetch = false;
    for batch in due.chunks(MAX_STATISTICS_PER_CALL) {
        let documents: Vec<StatisticsDocument<'_>> = batch
            .iter()
            .map(|rule| {
                let stats = rule.state.take_statistics();
                StatisticsDocument {
                    rule_name: &rule.def.name,
                    client_id: &shared.client_id,
                    timestamp: now,
                    request_count: stats.requests,
                    sampled_count: stats.sampled,
                    borrow_count: stats.borrowed,
                }
            })
            .collect();
        let result = report(shared, &manifest, &documents);
        note(poll, TARGETS, result.as_ref().err());
        refetch |= result?;
        reported += documents.len();
    }
    if refetch {
        // The manifest's rules changed in X-Ray since they were fetched: fetch them again now.
        // A failure here is logged; the report itself succeeded.
        let _ = refresh_rules(shared, poll);
    }
    Ok(reported)
}

/// Sends one batch and applies its targets; says whether the rules must be fetched again.
fn report(
    shared: &Shared,
    manifest: &Manifest,
    documents: &[StatisticsDocument<'_>],
) -> Result<bool, SamplingProxyError> {
    let request = serde_json::to_vec(&TargetsRequest { documents })
        .map_err(|e| json_error(TARGETS, shared, e))?;
    let body = post_json(shared.proxy, TARGETS, &request, shared.timeout)?;
    let response: TargetsResponse =
        serde_json::from_slice(&body).map_err(|e| json_error(TARGETS, shared, e))?;
    let now = shared.clock.now_secs();
    // Targets go to the rules in force now, which a concurrent refresh may have replaced;
    // rule states are shared by name across manifests, so either one receives them.
    let current = shared.current();
    let in_force = current.as_deref().unwrap_or(manifest);
    for target in response.targets.unwrap_or_default() {
        let Ok(target) = serde_json::from_value::<WireTarget>(target) else {
            continue;
        };
        if let Some(rule) = in_force.find(&target.rule_name) {
            rule.state.apply(target.update(), now);
        }
    }
    let mut refetch = response
        .last_rule_modification
        .is_some_and(|modified| modified > in_force.fetched_at as f64);
    for unprocessed in response.unprocessed.unwrap_or_default() {
        let Ok(u) = serde_json::from_value::<Unprocessed>(unprocessed) else {
            continue;
        };
        tracing::debug!(
            target: "xray_sdk::sampling",
            rule = u.rule_name.as_deref().unwrap_or_default(),
            code = u.error_code.as_deref().unwrap_or_default(),
            "X-Ray did not process a rule's statistics"
        );
        // A 4xx code means the rule is unknown or invalid there: the rules are out of date
        // (Go's reading).
        refetch |= u.error_code.as_deref().is_some_and(|c| c.starts_with('4'));
    }
    Ok(refetch)
}

/// Logs a failed call at `WARN` the first time and at `DEBUG` while it keeps failing.
fn note(poll: &mut PollState, operation: &'static str, error: Option<&SamplingProxyError>) {
    match error {
        Some(error) if !poll.failing => {
            poll.failing = true;
            tracing::warn!(
                target: "xray_sdk::sampling",
                %error,
                operation,
                "sampling proxy call failed; the rules held so far (or the local rules) keep \
                 deciding"
            );
        }
        Some(error) => {
            tracing::debug!(target: "xray_sdk::sampling", %error, operation, "sampling proxy call failed again");
        }
        None => {
            if poll.failing {
                tracing::info!(target: "xray_sdk::sampling", operation, "sampling proxy answers again");
            }
            poll.failing = false;
        }
    }
}

// ===== the background thread =====

fn jitter(max_ms: u64) -> Duration {
    Duration::from_millis(random_u64() % (max_ms + 1))
}

/// The poller: rules at once and every 5 minutes, targets every 10 seconds, until the sampler
/// is dropped.
pub(crate) fn run(shared: &Shared) {
    let start = Instant::now();
    let mut next_rules = start;
    let mut next_targets = start + TARGETS_PERIOD + jitter(TARGETS_JITTER_MS);
    loop {
        if shared.stopped() {
            return;
        }
        let now = Instant::now();
        if now >= next_rules {
            let _ = refresh_rules(shared, &mut shared.poll.lock());
            next_rules = Instant::now() + RULES_PERIOD + jitter(RULES_JITTER_MS);
        }
        if shared.stopped() {
            return;
        }
        if Instant::now() >= next_targets {
            let _ = refresh_targets(shared, &mut shared.poll.lock());
            next_targets = Instant::now() + TARGETS_PERIOD + jitter(TARGETS_JITTER_MS);
            // Without rules in force (never fetched, or expired) retry the fetch at the targets'
            // pace instead of waiting up to five minutes.
            let live = shared
                .current()
                .is_some_and(|m| m.is_live(shared.clock.now_secs()));
            if !live {
                next_rules = next_rules.min(next_targets);
            }
        }
        let wake_at = next_rules.min(next_targets);
        let mut stop = shared.stop.lock();
        if *stop {
            return;
        }
        // Spurious or early wake-ups just go round the loop again.
        let _ = shared.wake.wait_until(&mut stop, wake_at);
    }
}
