//! Elastic Beanstalk: the environment file the platform writes for the X-Ray daemon.
//!
//! Every official SDK reads the same file, `/var/elasticbeanstalk/xray/environment.conf`
//! (Python `core/plugins/elasticbeanstalk_plugin.py`, Go `awsplugins/beanstalk/beanstalk.go`,
//! Java `plugins/ElasticBeanstalkPlugin.java`, Node `segments/plugins/elastic_beanstalk_plugin.js`,
//! Ruby `plugins/elastic_beanstalk.rb`), a JSON object with `environment_name`,
//! `version_label` and `deployment_id`; .NET reads
//! `C:\Program Files\Amazon\XRay\environment.conf` on Windows. Its presence is the detection,
//! as in Java (`isEnabled` = the file exists).

use std::io;
use std::path::Path;

use super::Failure;
use super::host::{MAX_FILE, read_bounded};
use crate::document::ElasticBeanstalk;

/// Where the platform writes the file.
#[cfg(not(windows))]
pub(super) const DEFAULT_CONFIG: &str = "/var/elasticbeanstalk/xray/environment.conf";
/// Where the platform writes the file (.NET SDK `ElasticBeanstalkPlugin.cs`).
#[cfg(windows)]
pub(super) const DEFAULT_CONFIG: &str = r"C:\Program Files\Amazon\XRay\environment.conf";

/// `Ok(None)` when the file does not exist (not on Beanstalk); an error when it exists but
/// cannot be read or holds none of the three fields.
pub(super) fn detect(path: &Path) -> Result<Option<ElasticBeanstalk>, Failure> {
    let bytes = match read_bounded(path, MAX_FILE) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Failure::new(format!("reading {}: {e}", path.display()))),
    };
    // `deployment_id` is a number on the wire; the model also takes a numeric string.
    let eb: ElasticBeanstalk = serde_json::from_slice(&bytes).map_err(|e| {
        Failure::new(format!(
            "{} is not the JSON object Elastic Beanstalk writes: {e}",
            path.display()
        ))
    })?;
    if eb == ElasticBeanstalk::default() {
        return Err(Failure::new(format!(
            "{} has none of environment_name, version_label, deployment_id",
            path.display()
        )));
    }
    Ok(Some(eb))
}
