//! EKS (any Kubernetes): the pod, its container, and the cluster's name when it is given.
//!
//! Only the Java SDK has this plugin (`plugins/EKSPlugin.java`, `utils/ContainerInsightsUtil.java`,
//! `utils/DockerUtils.java`). It is enabled when the service account token
//! `/var/run/secrets/kubernetes.io/serviceaccount/token` exists, takes the pod from the host
//! name and the container id from `/proc/self/cgroup`, and asks the Kubernetes API over HTTPS
//! (`GET https://kubernetes.default.svc/api/v1/namespaces/amazon-cloudwatch/configmaps/cluster-info`
//! with the token as bearer and the service account's CA) for the Container Insights
//! `cluster.name`, from which it also adds the log group
//! `/aws/containerinsights/<cluster>/application`.
//!
//! xray-sdk has no TLS, so that call is not made; everything else is the same:
//!
//! - detection: `KUBERNETES_SERVICE_HOST` (set by the kubelet in every container) *and* the
//!   token file exist. The token is never read: only its presence counts.
//! - `pod`: the host name, which Kubernetes sets to the pod's name.
//! - `container_id`: `/proc/self/cgroup`, else `/proc/self/mountinfo` for cgroup v2 (see
//!   `host::container_id`).
//! - `cluster_name`: given in code (`DetectOptions::with_eks_cluster_name`), else the
//!   `k8s.cluster.name` entry of `OTEL_RESOURCE_ATTRIBUTES` (the OpenTelemetry SDK's resource
//!   variable, with the Kubernetes semantic convention's key: the one place a cluster name is
//!   conventionally handed to a pod), else none. A pod can put the Container Insights name there
//!   from its own manifest (`value: k8s.cluster.name=my-cluster`). With a name, the Container
//!   Insights application log group is added as Java adds it; without one Java writes
//!   `/aws/containerinsights/null/application`, which is not done here.

use std::path::Path;

use super::{DetectOptions, ENV_KUBERNETES_SERVICE_HOST, ENV_OTEL_RESOURCE_ATTRIBUTES, Failure};
use crate::document::{CloudwatchLogs, Eks};

/// The service account token the kubelet mounts in every pod that has one.
pub(super) const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The resource attribute key of the Kubernetes semantic conventions.
const CLUSTER_NAME_ATTRIBUTE: &str = "k8s.cluster.name";

/// `Ok(None)` outside Kubernetes.
pub(super) fn detect(
    opts: &DetectOptions,
) -> Result<Option<(Eks, Option<CloudwatchLogs>)>, Failure> {
    if opts.var(ENV_KUBERNETES_SERVICE_HOST).is_none() || !exists(&opts.kubernetes_token) {
        return Ok(None);
    }
    let cluster_name = opts.eks_cluster_name.clone().or_else(|| {
        opts.var(ENV_OTEL_RESOURCE_ATTRIBUTES)
            .and_then(|attrs| resource_attribute(&attrs, CLUSTER_NAME_ATTRIBUTE))
    });
    let eks = Eks {
        pod: opts.hostname(),
        cluster_name,
        container_id: super::host::container_id(&opts.cgroup, &opts.mountinfo),
    };
    if eks == Eks::default() {
        return Err(Failure::new(
            "in Kubernetes, but neither the host name, the cluster name nor the container id \
             is known",
        ));
    }
    let logs = eks.cluster_name.as_ref().map(|cluster| CloudwatchLogs {
        log_group: Some(format!("/aws/containerinsights/{cluster}/application")),
        arn: None,
    });
    Ok(Some((eks, logs)))
}

fn exists(path: &Path) -> bool {
    // `metadata`, not `exists`: a file we may not stat is not taken as present.
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// The value of `key` in an `OTEL_RESOURCE_ATTRIBUTES` list (`k1=v1,k2=v2`), percent-decoded
/// as the OpenTelemetry specification encodes values.
fn resource_attribute(attrs: &str, key: &str) -> Option<String> {
    attrs.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        if k.trim() != key {
            return None;
        }
        percent_decode(v.trim()).filter(|v| !v.is_empty())
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_attributes() {
        let attrs = "service.name=orders, k8s.cluster.name=prod%2Deu ,deployment.environment=prod";
        assert_eq!(
            resource_attribute(attrs, "k8s.cluster.name").as_deref(),
            Some("prod-eu")
        );
        assert_eq!(
            resource_attribute("k8s.cluster.name=", "k8s.cluster.name"),
            None
        );
        assert_eq!(
            resource_attribute("k8s.cluster.name=%zz", "k8s.cluster.name"),
            None
        );
        assert_eq!(
            resource_attribute("service.name=x", "k8s.cluster.name"),
            None
        );
    }
}
