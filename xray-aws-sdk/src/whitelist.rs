//! The parameter whitelist: which request and response members of which operation are
//! recorded, and under which key.
//!
//! The vendored file (`data/aws-operation-whitelist.json`, from the X-Ray SDK for Python) is
//! parsed once, on the first traced call, into a map keyed by service and operation. Lookups
//! after that cost two hash probes and allocate nothing.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

const WHITELIST_JSON: &str = include_str!("../data/aws-operation-whitelist.json");

/// What is stored for a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// The value itself.
    Value,
    /// The keys of a map, as a list of strings.
    Keys,
    /// The length of a list.
    Count,
}

/// One member to record: its wire name, the `aws` key it is stored under, and what of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) member: String,
    pub(crate) key: String,
    pub(crate) take: Take,
}

/// The rules of one operation.
#[derive(Debug, Default)]
pub(crate) struct OperationRules {
    pub(crate) request: Vec<Rule>,
    pub(crate) response: Vec<Rule>,
}

/// Service key (botocore's endpoint prefix) -> operation name -> rules.
type Table = HashMap<String, HashMap<String, OperationRules>>;

/// The rules for an operation of a service, by Smithy service id (`DynamoDB`, `SQS`, ...) and
/// operation name (`GetItem`).
pub(crate) fn rules_for(service_id: &str, operation: &str) -> Option<&'static OperationRules> {
    let key = service_key(service_id);
    table().get(key.as_str())?.get(operation)
}

/// The whitelist's key for a Smithy service id: the id lower-cased without spaces, except
/// SageMaker Runtime, which botocore calls `runtime.sagemaker`.
fn service_key(service_id: &str) -> String {
    let key: String = service_id
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if key == "sagemakerruntime" {
        "runtime.sagemaker".to_owned()
    } else {
        key
    }
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| match parse(WHITELIST_JSON) {
        Ok(t) => t,
        Err(e) => {
            // The file is vendored and tested, so this is unreachable in practice; tracing
            // still works without parameters.
            tracing::warn!(target: "xray_aws_sdk", error = %e, "parameter whitelist unreadable; no parameters recorded");
            Table::new()
        }
    })
}

// ===== the file's shape =====

#[derive(Deserialize)]
struct File {
    services: HashMap<String, ServiceEntry>,
}

#[derive(Deserialize)]
struct ServiceEntry {
    #[serde(default)]
    operations: HashMap<String, OperationEntry>,
}

#[derive(Deserialize, Default)]
struct OperationEntry {
    #[serde(default)]
    request_parameters: Vec<String>,
    #[serde(default)]
    request_descriptors: HashMap<String, Descriptor>,
    #[serde(default)]
    response_parameters: Vec<String>,
    #[serde(default)]
    response_descriptors: HashMap<String, Descriptor>,
}

#[derive(Deserialize, Default)]
struct Descriptor {
    #[serde(default)]
    map: bool,
    #[serde(default)]
    get_keys: bool,
    #[serde(default)]
    list: bool,
    #[serde(default)]
    get_count: bool,
    #[serde(default)]
    rename_to: Option<String>,
}

fn parse(text: &str) -> Result<Table, serde_json::Error> {
    let file: File = serde_json::from_str(text)?;
    let mut table = Table::new();
    for (service, entry) in file.services {
        let ops = entry
            .operations
            .into_iter()
            .map(|(name, op)| {
                let rules = OperationRules {
                    request: rules(op.request_parameters, op.request_descriptors),
                    response: rules(op.response_parameters, op.response_descriptors),
                };
                (name, rules)
            })
            .collect();
        table.insert(service, ops);
    }
    Ok(table)
}

fn rules(parameters: Vec<String>, descriptors: HashMap<String, Descriptor>) -> Vec<Rule> {
    let mut out: Vec<Rule> = parameters
        .into_iter()
        .map(|member| Rule {
            key: storage_key(snake_case(&member)),
            member,
            take: Take::Value,
        })
        .collect();
    for (member, d) in descriptors {
        // A list count wins over map keys when both are flagged, as in the Python SDK.
        let take = if d.list && d.get_count {
            Take::Count
        } else if d.map && d.get_keys {
            Take::Keys
        } else {
            Take::Value
        };
        let key = storage_key(d.rename_to.unwrap_or_else(|| snake_case(&member)));
        // A descriptor replaces a plain parameter of the same member.
        out.retain(|r| r.member != member);
        out.push(Rule { member, key, take });
    }
    out
}

/// `bucket` is written `bucket_name`, as the Java SDK v2 does, so that every S3 operation
/// names its bucket the same way (the file renames it for most operations but not all).
fn storage_key(key: String) -> String {
    if key == "bucket" {
        "bucket_name".to_owned()
    } else {
        key
    }
}

/// `TableName` -> `table_name`, `QueueOwnerAWSAccountId` -> `queue_owner_aws_account_id`: the
/// Python SDK's two regular expressions (`(.)([A-Z][a-z]+)` then `([a-z0-9])([A-Z])`, each
/// inserting `_`), then lower case.
pub(crate) fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    // Pass 1: `_` before an upper-case letter followed by lower-case letters (not at the start).
    let mut pass1: Vec<char> = Vec::with_capacity(chars.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
        if i > 0 && c.is_ascii_uppercase() && next_lower && pass1.last() != Some(&'_') {
            pass1.push('_');
        }
        pass1.push(c);
    }
    // Pass 2: `_` between a lower-case letter or digit and an upper-case letter.
    let mut out = String::with_capacity(pass1.len() + 4);
    let mut prev: Option<char> = None;
    for c in pass1 {
        if c.is_ascii_uppercase()
            && prev.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
        {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
        prev = Some(c);
    }
    out
}
