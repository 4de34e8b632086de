//! `aws`, `service` and `sql`: where the code runs, what it is, and what it called.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `aws` block: on a segment it describes the environment (account, EC2/ECS/EKS/Beanstalk,
/// the SDK); on a subsegment the AWS call made (operation, region, request id, and per-operation
/// fields such as `table_name` or `queue_url`).
///
/// # Examples
///
/// ```
/// use xray_sdk::document::Aws;
///
/// let mut aws = Aws::default();
/// aws.operation = Some("GetItem".into());
/// aws.retries = Some(0);
/// aws.insert_field("table_name", "orders");
/// let json = serde_json::to_value(&aws).unwrap();
/// assert_eq!(json["table_name"], "orders");
/// assert_eq!(json["operation"], "GetItem");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Aws {
    /// The account running the application, or owning the called resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The EC2 instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ec2: Option<Ec2>,
    /// The ECS container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecs: Option<Ecs>,
    /// The EKS pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eks: Option<Eks>,
    /// The Elastic Beanstalk environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elastic_beanstalk: Option<ElasticBeanstalk>,
    /// The CloudWatch log groups the application writes to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cloudwatch_logs: Vec<CloudwatchLogs>,
    /// The SDK that recorded the segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xray: Option<XRaySdk>,
    /// The API operation called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The region of the called resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The request id returned by the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The S3 extended request id (`x-amz-id-2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_2: Option<String>,
    /// How many times the call was retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Per-operation fields (`table_name`, `queue_url`, ...), and on input any field not named
    /// above.
    #[serde(flatten)]
    fields: Map<String, Value>,
}

/// Keys that have a typed field in [`Aws`] and so cannot be per-operation fields.
const NAMED_AWS_KEYS: [&str; 12] = [
    "account_id",
    "ec2",
    "ecs",
    "eks",
    "elastic_beanstalk",
    "cloudwatch_logs",
    "xray",
    "operation",
    "region",
    "request_id",
    "id_2",
    "retries",
];

impl Aws {
    /// Sets a per-operation field such as `table_name`. Returns `false`, and changes nothing,
    /// when `key` names one of the typed fields (set those directly) or the value is null.
    pub fn insert_field(&mut self, key: &str, value: impl Into<Value>) -> bool {
        let value = value.into();
        if NAMED_AWS_KEYS.contains(&key) || value.is_null() {
            return false;
        }
        self.fields.insert(key.to_owned(), value);
        true
    }

    /// A per-operation field.
    pub fn field(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }

    /// All per-operation fields.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// `aws.ec2`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Ec2 {
    /// The instance id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// The availability zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// The instance type (the Python SDK sends it as `instance_type`, accepted on input).
    #[serde(
        default,
        alias = "instance_type",
        skip_serializing_if = "Option::is_none"
    )]
    pub instance_size: Option<String>,
    /// The AMI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ami_id: Option<String>,
}

/// `aws.ecs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Ecs {
    /// The container host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The full Docker container id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// The container ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_arn: Option<String>,
}

/// `aws.eks`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Eks {
    /// The pod (host name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// The container id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
}

/// `aws.elastic_beanstalk`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ElasticBeanstalk {
    /// The environment name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_name: Option<String>,
    /// The application version label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_label: Option<String>,
    /// The deployment id (a number).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::http::lenient_i64"
    )]
    pub deployment_id: Option<i64>,
}

/// One entry of `aws.cloudwatch_logs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CloudwatchLogs {
    /// The log group name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_group: Option<String>,
    /// The log group ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
}

/// `aws.xray`: the SDK that recorded the segment.
///
/// # Examples
///
/// ```
/// use xray_sdk::document::XRaySdk;
///
/// let sdk = XRaySdk::rust();
/// assert_eq!(sdk.sdk.as_deref(), Some("X-Ray for Rust"));
/// assert_eq!(sdk.package.as_deref(), Some("xray-sdk"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct XRaySdk {
    /// The SDK name, e.g. `X-Ray for Rust`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk: Option<String>,
    /// The SDK version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk_version: Option<String>,
    /// The package that recorded the segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// The centralized sampling rule that sampled the request. Written as
    /// `sampling_rule_name` (Go, Python, .NET, Ruby); Java's and Node's `rule_name` is read too.
    #[serde(default, alias = "rule_name", skip_serializing_if = "Option::is_none")]
    pub sampling_rule_name: Option<String>,
}

impl XRaySdk {
    /// This SDK: `X-Ray for Rust`, this crate's version, package `xray-sdk`.
    pub fn rust() -> Self {
        Self {
            sdk: Some("X-Ray for Rust".to_owned()),
            sdk_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            package: Some(env!("CARGO_PKG_NAME").to_owned()),
            sampling_rule_name: None,
        }
    }
}

/// The `service` block of a segment: the application's version and runtime.
///
/// # Examples
///
/// ```
/// use xray_sdk::document::Service;
///
/// let mut service = Service::rust();
/// service.version = Some("2.4.1".into());
/// assert_eq!(service.runtime.as_deref(), Some("rust"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Service {
    /// The application version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The runtime, `rust` for this SDK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// The runtime version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_version: Option<String>,
}

impl Service {
    /// `runtime: "rust"` and nothing else.
    pub fn rust() -> Self {
        Self {
            version: None,
            runtime: Some("rust".to_owned()),
            runtime_version: None,
        }
    }
}

/// The `sql` block of a database subsegment. Never put a password in it.
///
/// # Examples
///
/// ```
/// use xray_sdk::document::Sql;
///
/// let mut sql = Sql::default();
/// sql.database_type = Some("PostgreSQL".into());
/// sql.sanitized_query = Some("SELECT * FROM customers WHERE id = $1".into());
/// assert_eq!(serde_json::to_value(&sql).unwrap().as_object().unwrap().len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Sql {
    /// A connection string that is not a URL, without password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_string: Option<String>,
    /// A URL connection string, without password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The query with placeholders instead of user values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sanitized_query: Option<String>,
    /// The database engine, e.g. `PostgreSQL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_type: Option<String>,
    /// The database version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_version: Option<String>,
    /// The driver and its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_version: Option<String>,
    /// The database user (written cut to 250 characters).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::http::capped"
    )]
    pub user: Option<String>,
    /// `call` for a prepared call, `statement` for a prepared statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preparation: Option<String>,
}
