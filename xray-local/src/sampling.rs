//! The sampling side of the X-Ray API, as the daemon's TCP proxy exposes it: the rules the SDKs
//! fetch, the targets they are assigned, and the statistics they report.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// How often the SDKs are told to report (`Interval` of every target, in seconds).
pub(crate) const TARGET_INTERVAL_SECS: u64 = 10;
/// How long an assigned quota stays valid (`ReservoirQuotaTTL` = now + this).
const QUOTA_TTL_SECS: f64 = 300.0;
/// A client counts towards a rule's quota split while it reported within this many seconds:
/// three reporting intervals, so a client whose report comes late (the SDKs add jitter) is
/// still counted.
const ACTIVE_CLIENT_SECS: u64 = 3 * TARGET_INTERVAL_SECS;
/// The API refuses more statistics documents than this in one call.
pub(crate) const MAX_STATISTICS_DOCUMENTS: usize = 25;
/// Statistics documents kept for [`crate::XRayLocal::sampling_statistics`]; older ones are
/// dropped first.
const MAX_KEPT_STATISTICS: usize = 10_000;
/// Distinct clients remembered per rule for the quota split.
const MAX_CLIENTS_PER_RULE: usize = 1_000;

/// One sampling rule as xray-local serves it to centralized sampling, in the shape of the X-Ray
/// API's `SamplingRule`.
///
/// This is also the format of a rules file ([`XRayLocalBuilder::rules_json`]): a JSON array of
/// these objects. `RuleName`, `Priority`, `FixedRate` and `ReservoirSize` are required; the
/// matching fields (`ResourceARN`, `ServiceName`, `ServiceType`, `Host`, `HTTPMethod`, `URLPath`)
/// default to `"*"`, `Version` to 1, `Attributes` to `{}` and `RuleARN` to a local ARN built from
/// the name. Unknown fields are ignored.
///
/// [`XRayLocalBuilder::rules_json`]: crate::XRayLocalBuilder::rules_json
///
/// # Examples
///
/// ```
/// use xray_local::CentralizedRule;
///
/// let rule = CentralizedRule::new("orders", 100, 0.1, 5);
/// assert_eq!(rule.rule_name, "orders");
/// assert_eq!(rule.host, "*");
///
/// let json = serde_json::to_value(&rule)?;
/// assert_eq!(json["HTTPMethod"], "*");
/// assert_eq!(json["RuleARN"], "arn:aws:xray:local:000000000000:sampling-rule/orders");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CentralizedRule {
    /// The unique name of the rule.
    #[serde(rename = "RuleName")]
    pub rule_name: String,
    /// The rule's ARN.
    #[serde(rename = "RuleARN", default)]
    pub rule_arn: String,
    /// Resource ARN pattern; the SDKs only use rules where it is `*`.
    #[serde(rename = "ResourceARN", default = "star")]
    pub resource_arn: String,
    /// Lower is evaluated first; the built-in `Default` rule has 10000.
    #[serde(rename = "Priority")]
    pub priority: i64,
    /// Fraction of requests sampled once the reservoir is used, 0 to 1.
    #[serde(rename = "FixedRate")]
    pub fixed_rate: f64,
    /// Requests per second sampled before `FixedRate` applies, shared by every client.
    #[serde(rename = "ReservoirSize")]
    pub reservoir_size: u64,
    /// Pattern matched against the segment name.
    #[serde(rename = "ServiceName", default = "star")]
    pub service_name: String,
    /// Pattern matched against the segment `origin`.
    #[serde(rename = "ServiceType", default = "star")]
    pub service_type: String,
    /// Pattern matched against the request's Host header.
    #[serde(rename = "Host", default = "star")]
    pub host: String,
    /// Pattern matched against the request method.
    #[serde(rename = "HTTPMethod", default = "star")]
    pub http_method: String,
    /// Pattern matched against the request path.
    #[serde(rename = "URLPath", default = "star")]
    pub url_path: String,
    /// Rule format version; the SDKs only use version 1.
    #[serde(rename = "Version", default = "one")]
    pub version: i64,
    /// Attribute patterns; the SDKs skip rules that have any.
    #[serde(rename = "Attributes", default)]
    pub attributes: BTreeMap<String, String>,
}

fn star() -> String {
    "*".to_owned()
}

fn one() -> i64 {
    1
}

impl CentralizedRule {
    /// A rule with every pattern `*`, version 1, no attributes.
    pub fn new(name: impl Into<String>, priority: i64, fixed_rate: f64, reservoir: u64) -> Self {
        let rule_name = name.into();
        CentralizedRule {
            rule_arn: local_arn(&rule_name),
            rule_name,
            resource_arn: star(),
            priority,
            fixed_rate,
            reservoir_size: reservoir,
            service_name: star(),
            service_type: star(),
            host: star(),
            http_method: star(),
            url_path: star(),
            version: 1,
            attributes: BTreeMap::new(),
        }
    }

    /// The X-Ray service's built-in `Default` rule: priority 10000, one request per second and
    /// 5 % of the rest, every pattern `*`.
    pub fn default_rule() -> Self {
        CentralizedRule::new(DEFAULT_RULE, 10_000, 0.05, 1)
    }
}

const DEFAULT_RULE: &str = "Default";

fn local_arn(name: &str) -> String {
    format!("arn:aws:xray:local:000000000000:sampling-rule/{name}")
}

/// A rules file or rule list is not usable.
///
/// # Examples
///
/// ```
/// use xray_local::XRayLocal;
///
/// let err = XRayLocal::builder().rules_json("[{\"RuleName\": \"a\"}]").unwrap_err();
/// assert!(err.to_string().contains("rules"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CentralizedRulesError {
    /// The text is not a JSON array of sampling rules.
    #[error(
        "the sampling rules are not a JSON array of X-Ray SamplingRule objects (RuleName, Priority, FixedRate and ReservoirSize are required)"
    )]
    Json(#[source] serde_json::Error),
    /// The rules file cannot be read.
    #[error("the sampling rules file cannot be read")]
    Read(#[source] std::io::Error),
    /// Two rules share a name.
    #[error("two sampling rules are named `{0}`; rule names must be unique")]
    DuplicateName(String),
    /// A rule has an empty name.
    #[error("a sampling rule has an empty RuleName")]
    EmptyName,
    /// A rule's `FixedRate` is outside 0 to 1.
    #[error("sampling rule `{0}` has a FixedRate outside 0 to 1")]
    FixedRate(String),
}

/// Checks rules and adds the `Default` rule when missing, as the service always has one.
pub(crate) fn validate_rules(
    mut rules: Vec<CentralizedRule>,
) -> Result<Vec<CentralizedRule>, CentralizedRulesError> {
    let mut names = HashSet::new();
    for rule in &mut rules {
        if rule.rule_name.is_empty() {
            return Err(CentralizedRulesError::EmptyName);
        }
        if !(0.0..=1.0).contains(&rule.fixed_rate) {
            return Err(CentralizedRulesError::FixedRate(rule.rule_name.clone()));
        }
        if !names.insert(rule.rule_name.clone()) {
            return Err(CentralizedRulesError::DuplicateName(rule.rule_name.clone()));
        }
        if rule.rule_arn.is_empty() {
            rule.rule_arn = local_arn(&rule.rule_name);
        }
    }
    if !names.contains(DEFAULT_RULE) {
        rules.push(CentralizedRule::default_rule());
    }
    Ok(rules)
}

pub(crate) fn parse_rules(json: &str) -> Result<Vec<CentralizedRule>, CentralizedRulesError> {
    let rules: Vec<CentralizedRule> =
        serde_json::from_str(json).map_err(CentralizedRulesError::Json)?;
    validate_rules(rules)
}

/// One `SamplingStatisticsDocument` an SDK reported through `POST /SamplingTargets`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use xray_local::XRayLocal;
///
/// let local = XRayLocal::builder().udp_addr("127.0.0.1:0".parse()?).start()?;
/// // ... the SDK under test reports its sampling statistics ...
/// let reported = local.sampling_statistics();
/// let requests: u64 = reported
///     .iter()
///     .filter(|s| s.rule_name == "Default")
///     .map(|s| s.request_count)
///     .sum();
/// assert_eq!(requests, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SamplingStatistics {
    /// The rule the counts are for.
    #[serde(rename = "RuleName")]
    pub rule_name: String,
    /// The reporting process's id (24 hex digits in the SDKs).
    #[serde(rename = "ClientID")]
    pub client_id: String,
    /// When the SDK took the counts, epoch seconds.
    #[serde(rename = "Timestamp")]
    pub timestamp: f64,
    /// Requests that matched the rule.
    #[serde(rename = "RequestCount")]
    pub request_count: u64,
    /// Requests sampled from the quota or by the fixed rate.
    #[serde(rename = "SampledCount")]
    pub sampled_count: u64,
    /// Requests sampled by borrowing while no quota was assigned.
    #[serde(rename = "BorrowCount")]
    pub borrow_count: u64,
}

/// How many calls the sampling API has answered (errors included).
///
/// # Examples
///
/// ```
/// use xray_local::XRayLocal;
///
/// let local = XRayLocal::builder().udp_addr("127.0.0.1:0".parse()?).start()?;
/// assert_eq!(local.sampling_calls().get_sampling_rules(), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SamplingCalls {
    rules: u64,
    targets: u64,
}

impl SamplingCalls {
    /// `POST /GetSamplingRules` calls.
    pub fn get_sampling_rules(&self) -> u64 {
        self.rules
    }

    /// `POST /SamplingTargets` calls.
    pub fn sampling_targets(&self) -> u64 {
        self.targets
    }
}

/// An API error answered as X-Ray does: a status, an exception name and a message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) kind: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            kind: "InvalidRequestException",
            message: message.into(),
        }
    }

    pub(crate) fn body(&self) -> String {
        json!({"__type": self.kind, "message": self.message}).to_string()
    }
}

#[derive(Debug)]
struct RuleSet {
    rules: Vec<CentralizedRule>,
    created_at: f64,
    modified_at: f64,
}

/// Rules, statistics and quota bookkeeping shared by the HTTP side and the library API.
#[derive(Debug)]
pub(crate) struct Sampling {
    inner: Mutex<Inner>,
    changed: Condvar,
    page_size: usize,
}

#[derive(Debug)]
struct Inner {
    rules: RuleSet,
    /// Every statistics document, oldest first, bounded.
    received: VecDeque<SamplingStatistics>,
    /// Per rule: each client's last report, for the quota split.
    clients: HashMap<String, BTreeMap<String, Instant>>,
    calls: SamplingCalls,
}

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Sampling {
    pub(crate) fn new(rules: Vec<CentralizedRule>, page_size: usize) -> Self {
        let now = epoch_now();
        Sampling {
            inner: Mutex::new(Inner {
                rules: RuleSet {
                    rules,
                    created_at: now,
                    modified_at: now,
                },
                received: VecDeque::new(),
                clients: HashMap::new(),
                calls: SamplingCalls::default(),
            }),
            changed: Condvar::new(),
            page_size: page_size.max(1),
        }
    }

    pub(crate) fn rules(&self) -> Vec<CentralizedRule> {
        self.inner.lock().rules.rules.clone()
    }

    pub(crate) fn set_rules(&self, rules: Vec<CentralizedRule>) {
        let mut inner = self.inner.lock();
        inner.rules.rules = rules;
        // Strictly later than before, so an SDK comparing with its last fetch sees a change
        // even within the clock's resolution.
        let now = epoch_now().max(inner.rules.modified_at + 0.001);
        inner.rules.modified_at = now;
        let names: HashSet<&str> = inner
            .rules
            .rules
            .iter()
            .map(|r| r.rule_name.as_str())
            .collect();
        let gone: Vec<String> = inner
            .clients
            .keys()
            .filter(|k| !names.contains(k.as_str()))
            .cloned()
            .collect();
        for name in gone {
            inner.clients.remove(&name);
        }
    }

    pub(crate) fn statistics(&self) -> Vec<SamplingStatistics> {
        self.inner.lock().received.iter().cloned().collect()
    }

    pub(crate) fn calls(&self) -> SamplingCalls {
        self.inner.lock().calls
    }

    pub(crate) fn wait_for_statistics(
        &self,
        timeout: Duration,
        mut until: impl FnMut(&[SamplingStatistics]) -> bool,
    ) -> Vec<SamplingStatistics> {
        let deadline = Instant::now().checked_add(timeout);
        let mut inner = self.inner.lock();
        loop {
            let received = inner.received.make_contiguous();
            if until(received) {
                return received.to_vec();
            }
            match deadline {
                Some(at) => {
                    if self.changed.wait_until(&mut inner, at).timed_out() {
                        return inner.received.iter().cloned().collect();
                    }
                }
                None => self.changed.wait(&mut inner),
            }
        }
    }

    /// `POST /GetSamplingRules`: one page of rule records.
    pub(crate) fn get_sampling_rules(&self, body: &[u8]) -> Result<Value, ApiError> {
        let mut inner = self.inner.lock();
        inner.calls.rules += 1;
        let request = parse_object(body)?;
        let start = match request.get("NextToken") {
            None | Some(Value::Null) => 0,
            Some(Value::String(token)) => token
                .parse::<usize>()
                .ok()
                .filter(|&i| i <= inner.rules.rules.len())
                .ok_or_else(|| ApiError::invalid("NextToken is not a token this API returned"))?,
            Some(_) => return Err(ApiError::invalid("NextToken must be a string")),
        };
        let set = &inner.rules;
        let end = start.saturating_add(self.page_size).min(set.rules.len());
        let records: Vec<Value> = set
            .rules
            .get(start..end)
            .unwrap_or_default()
            .iter()
            .map(|rule| {
                json!({
                    "SamplingRule": rule,
                    "CreatedAt": set.created_at,
                    "ModifiedAt": set.modified_at,
                })
            })
            .collect();
        let next = (end < set.rules.len()).then(|| end.to_string());
        Ok(json!({"SamplingRuleRecords": records, "NextToken": next}))
    }

    /// `POST /SamplingTargets`: records the statistics and assigns quotas.
    pub(crate) fn sampling_targets(&self, body: &[u8]) -> Result<Value, ApiError> {
        let mut guard = self.inner.lock();
        guard.calls.targets += 1;
        let request = parse_object(body)?;
        let docs = request
            .get("SamplingStatisticsDocuments")
            .ok_or_else(|| ApiError::invalid("SamplingStatisticsDocuments is required"))?;
        let docs: Vec<SamplingStatistics> = serde_json::from_value(docs.clone()).map_err(|_| {
            ApiError::invalid(
                "SamplingStatisticsDocuments must be an array of objects with RuleName, ClientID, \
                 Timestamp, RequestCount, SampledCount and BorrowCount",
            )
        })?;
        if docs.len() > MAX_STATISTICS_DOCUMENTS {
            return Err(ApiError::invalid(format!(
                "at most {MAX_STATISTICS_DOCUMENTS} SamplingStatisticsDocuments per call, got {}",
                docs.len()
            )));
        }

        let now = Instant::now();
        let epoch = epoch_now();
        let inner = &mut *guard;
        let mut targets = Vec::new();
        let mut unprocessed = Vec::new();
        for doc in &docs {
            if !inner
                .rules
                .rules
                .iter()
                .any(|r| r.rule_name == doc.rule_name)
            {
                unprocessed.push(json!({
                    "RuleName": doc.rule_name,
                    "ErrorCode": "400",
                    "Message": "Rule does not exist",
                }));
                continue;
            }
            let clients = inner.clients.entry(doc.rule_name.clone()).or_default();
            clients.insert(doc.client_id.clone(), now);
            let window = Duration::from_secs(ACTIVE_CLIENT_SECS);
            clients.retain(|_, seen| now.duration_since(*seen) <= window);
            while clients.len() > MAX_CLIENTS_PER_RULE {
                // Forget the client seen longest ago.
                let oldest = clients
                    .iter()
                    .min_by_key(|(_, seen)| **seen)
                    .map(|(id, _)| id.clone());
                match oldest {
                    Some(id) => clients.remove(&id),
                    None => break,
                };
            }
        }
        for doc in &docs {
            let Some(rule) = inner
                .rules
                .rules
                .iter()
                .find(|r| r.rule_name == doc.rule_name)
            else {
                continue;
            };
            let quota = inner
                .clients
                .get(&doc.rule_name)
                .map_or(rule.reservoir_size, |clients| {
                    quota_share(rule.reservoir_size, clients, &doc.client_id)
                });
            targets.push(json!({
                "RuleName": rule.rule_name,
                "FixedRate": rule.fixed_rate,
                "ReservoirQuota": quota,
                "ReservoirQuotaTTL": epoch + QUOTA_TTL_SECS,
                "Interval": TARGET_INTERVAL_SECS,
            }));
        }
        for doc in docs {
            if inner.received.len() >= MAX_KEPT_STATISTICS {
                inner.received.pop_front();
            }
            inner.received.push_back(doc);
        }
        let last_modification = inner.rules.modified_at;
        drop(guard);
        self.changed.notify_all();
        Ok(json!({
            "SamplingTargetDocuments": targets,
            "LastRuleModification": last_modification,
            "UnprocessedStatistics": unprocessed,
        }))
    }
}

/// The reservoir split evenly among the active clients, ordered by id; the first
/// `reservoir % clients` clients get one more, so the shares add up to the reservoir.
fn quota_share(reservoir: u64, clients: &BTreeMap<String, Instant>, client: &str) -> u64 {
    let n = clients.len().max(1) as u64;
    let rank = clients.keys().position(|id| id == client).unwrap_or(0) as u64;
    reservoir / n + u64::from(rank < reservoir % n)
}

fn parse_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    // The Java SDK may send an empty body for an empty request.
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid("the request body must be a JSON object")),
        Err(_) => Err(ApiError::invalid("the request body is not valid JSON")),
    }
}
