//! ECS: the task metadata endpoint, version 4 (version 3 when only it is there).
//!
//! ECS sets `ECS_CONTAINER_METADATA_URI_V4` in every container (agent 1.39 and later, Fargate
//! platform 1.4 and later). `GET ${uri}` describes this container (`DockerId`, `Name`,
//! `ContainerARN`, `LogDriver` and `LogOptions`), `GET ${uri}/task` the task (`Cluster`,
//! `TaskARN`, `Family`, `Revision`, `AvailabilityZone`, `LaunchType`): AWS ECS developer guide,
//! "Amazon ECS task metadata endpoint version 4" and its response and examples pages.
//!
//! What is written, as the Java SDK writes it (`ECSPlugin.java`, `ECSMetadataFetcher.java`):
//! `aws.ecs.container` = the host name (every SDK), `container_id` and `container_arn`, and
//! one `aws.cloudwatch_logs` entry for the `awslogs-group`, with the ARN
//! `arn:<partition>:logs:<awslogs-region>:<account of the container ARN>:log-group:<group>`
//! (Java hard-codes the `aws` partition; here it comes from the ARN). The container id is the
//! endpoint's `DockerId` (on Fargate not a 64-digit Docker id, and the cgroup files hold none),
//! else the cgroup's, where Java only reads the cgroup. Python, Go, Node and .NET write only the
//! host name and call no endpoint; Ruby reads the v4 endpoint but writes the container ARN as
//! the log group's ARN.
//!
//! The task's fields have no place in `aws.ecs` (neither the SDKs nor the segment schema
//! know them; only OpenTelemetry's X-Ray exporter writes `task_arn`, `task_family`,
//! `cluster_arn`, `availability_zone`, `launch_type`): they are kept in
//! `EcsTask` for the start-up line, and a Fargate launch type spares the EC2
//! plugin a call that cannot succeed. The origin stays `AWS::ECS::Container`, as in every SDK:
//! only that exporter writes `AWS::ECS::Fargate` / `AWS::ECS::EC2`, and sampling rules match the
//! origin, so a change would silently stop rules with `ServiceType: AWS::ECS::Container`.

use std::time::Instant;

use serde_json::Value;

use super::http::{self, Url};
use super::{
    DetectOptions, ENV_ECS_CONTAINER_METADATA_URI, ENV_ECS_CONTAINER_METADATA_URI_V4, EcsTask,
    Failure,
};
use crate::document::{CloudwatchLogs, Ecs};

/// What the ECS plugin found.
#[derive(Debug)]
pub(super) struct Found {
    pub(super) ecs: Ecs,
    pub(super) task: Option<EcsTask>,
    pub(super) logs: Option<CloudwatchLogs>,
    /// Why the task metadata is missing, when its call failed (the container's succeeded).
    pub(super) task_failure: Option<Failure>,
}

/// The metadata URI: set in code, else `ECS_CONTAINER_METADATA_URI_V4`, else
/// `ECS_CONTAINER_METADATA_URI` (v3), as the Java SDK chooses.
pub(super) fn metadata_uri(opts: &DetectOptions) -> Option<String> {
    opts.ecs_metadata_uri
        .clone()
        .or_else(|| opts.var(ENV_ECS_CONTAINER_METADATA_URI_V4))
        .or_else(|| opts.var(ENV_ECS_CONTAINER_METADATA_URI))
}

/// `Ok(None)` off ECS (no metadata URI). The container's metadata must be read for the plugin
/// to contribute; the task's is extra.
pub(super) fn detect(opts: &DetectOptions, deadline: Instant) -> Result<Option<Found>, Failure> {
    let Some(uri) = metadata_uri(opts) else {
        return Ok(None);
    };
    let base = Url::parse(&uri).map_err(Failure::new)?;
    let container = get_json(&base, deadline)?;

    let (task, task_failure) = match get_json(&base.join("/task"), deadline) {
        Ok(task) => (Some(parse_task(&task)), None),
        Err(e) => (None, Some(e)),
    };

    let container_arn = text(&container, "ContainerARN");
    let container_id = text(&container, "DockerId")
        .or_else(|| super::host::container_id(&opts.cgroup, &opts.mountinfo));
    let name = opts.hostname().or_else(|| text(&container, "Name"));
    let ecs = Ecs {
        container: name,
        container_id,
        container_arn: container_arn.clone(),
    };

    let logs = container.get("LogOptions").and_then(|options| {
        let group = text(options, "awslogs-group")?;
        let region = text(options, "awslogs-region");
        // The account (and partition) of the container, else of the task (v3 has no
        // container ARN).
        let owner = container_arn
            .as_deref()
            .or_else(|| task.as_ref().and_then(|t| t.task_arn.as_deref()))
            .and_then(arn_partition_account);
        let arn = match (region, owner) {
            (Some(region), Some((partition, account))) => Some(format!(
                "arn:{partition}:logs:{region}:{account}:log-group:{group}"
            )),
            _ => None,
        };
        Some(CloudwatchLogs {
            log_group: Some(group),
            arn,
        })
    });

    Ok(Some(Found {
        ecs,
        task,
        logs,
        task_failure,
    }))
}

fn get_json(url: &Url, deadline: Instant) -> Result<Value, Failure> {
    let response = http::send("GET", url, &[], deadline)
        .map_err(|e| Failure::new(format!("GET {url}: {e}")))?;
    if response.status != 200 {
        return Err(Failure::new(format!("GET {url}: HTTP {}", response.status)));
    }
    let value: Value = serde_json::from_slice(&response.body)
        .map_err(|e| Failure::new(format!("GET {url}: the answer is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(Failure::new(format!(
            "GET {url}: the answer is not a JSON object"
        )));
    }
    Ok(value)
}

fn parse_task(task: &Value) -> EcsTask {
    EcsTask {
        cluster: text(task, "Cluster"),
        task_arn: text(task, "TaskARN"),
        family: text(task, "Family"),
        // A string in the documented examples; a number is taken too.
        revision: text(task, "Revision").or_else(|| {
            task.get("Revision")
                .and_then(Value::as_u64)
                .map(|n| n.to_string())
        }),
        availability_zone: text(task, "AvailabilityZone"),
        launch_type: text(task, "LaunchType"),
    }
}

/// A non-empty string field.
fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// `arn:<partition>:<service>:<region>:<account>:<resource>` → partition and account.
fn arn_partition_account(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.splitn(6, ':');
    if parts.next()? != "arn" {
        return None;
    }
    let partition = parts.next().filter(|p| !p.is_empty())?;
    let account = parts.nth(2).filter(|a| !a.is_empty())?;
    Some((partition, account))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        assert_eq!(
            arn_partition_account(
                "arn:aws:ecs:us-west-2:111122223333:container/0206b271-b33f-47ab-86c6-a0ba208a70a9"
            ),
            Some(("aws", "111122223333"))
        );
        assert_eq!(
            arn_partition_account("arn:aws-cn:ecs:cn-north-1:123456789012:task/abc"),
            Some(("aws-cn", "123456789012"))
        );
        assert_eq!(arn_partition_account("not-an-arn"), None);
        assert_eq!(arn_partition_account("arn:aws:ecs:us-west-2::task/x"), None);
    }
}
