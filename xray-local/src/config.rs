//! The AWS X-Ray daemon's configuration file, `cfg.yaml`, read and checked as the AWS daemon
//! reads it: keys as its `yaml` tags spell them, defaults merged, and with `-c` the strict
//! checks of its `ConfigValidation`.

use std::io;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

/// Where the AWS daemon looks for `cfg.yaml` when none is given, in order.
const DEFAULT_PATHS: [&str; 2] = ["/etc/amazon/xray/cfg.yaml", "./cfg.yaml"];

const UNKNOWN: &str = "is not a key of the X-Ray daemon's configuration";
const UNSUPPORTED: &str = "is not supported any more";
const MIGRATE: &str =
    "is a version 1 key: migrate the file with the AWS X-Ray daemon's cfg_migration script";

/// The daemon's settings as the AWS daemon's `cfg.yaml` gives them, merged onto the defaults.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DaemonConfig {
    /// `TotalBufferSizeMB`: memory for buffered documents; 0 leaves the choice to the caller.
    pub(crate) total_buffer_size_mb: u64,
    /// `Concurrency`: uploads at once.
    pub(crate) concurrency: usize,
    /// `Region`; empty for none.
    pub(crate) region: String,
    /// `Endpoint`: the X-Ray API endpoint; empty for the region's.
    pub(crate) endpoint: String,
    /// `Socket.UDPAddress`: where segment documents are received.
    pub(crate) udp_address: String,
    /// `Socket.TCPAddress`: where the sampling proxy listens.
    pub(crate) tcp_address: String,
    /// `Logging.LogRotation`: rotate the log file.
    pub(crate) log_rotation: bool,
    /// `Logging.LogLevel`: `dev`, `debug`, `info`, `warn`, `error` or `prod`.
    pub(crate) log_level: String,
    /// `Logging.LogPath`: the log file; empty for the console.
    pub(crate) log_path: String,
    /// `LocalMode`: skip instance metadata look-ups.
    pub(crate) local_mode: bool,
    /// `ResourceARN`: the resource running the daemon, sent with telemetry.
    pub(crate) resource_arn: String,
    /// `RoleARN`: a role to assume for uploads; empty for none.
    pub(crate) role_arn: String,
    /// `NoVerifySSL`: skip TLS certificate verification.
    pub(crate) no_verify_ssl: bool,
    /// `ProxyAddress`: an upstream HTTPS proxy; empty for none.
    pub(crate) proxy_address: String,
    /// `Version`: the file format, 1 or 2.
    pub(crate) version: u32,
}

impl Default for DaemonConfig {
    /// The AWS daemon's `DefaultConfig`.
    fn default() -> Self {
        DaemonConfig {
            total_buffer_size_mb: 0,
            concurrency: 8,
            region: String::new(),
            endpoint: String::new(),
            udp_address: "127.0.0.1:2000".to_owned(),
            tcp_address: "127.0.0.1:2000".to_owned(),
            log_rotation: true,
            log_level: "prod".to_owned(),
            log_path: String::new(),
            local_mode: false,
            resource_arn: String::new(),
            role_arn: String::new(),
            no_verify_ssl: false,
            proxy_address: String::new(),
            version: 1,
        }
    }
}

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigFileError {
    /// The file cannot be read.
    #[error("{} cannot be read", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is not valid YAML.
    #[error("{}: not valid YAML: {message}", shown(.path.as_deref()))]
    Syntax {
        /// The file, when known.
        path: Option<PathBuf>,
        /// The parser's message, with the line and column.
        message: String,
    },
    /// A key is unknown, not allowed, or has a wrong value.
    #[error("{}: {message}", shown(.path.as_deref()))]
    Invalid {
        /// The file, when known.
        path: Option<PathBuf>,
        /// The key with its dotted path, such as `Socket.UDPAddress`; empty for the whole file.
        key: String,
        /// What is wrong, naming the key.
        message: String,
    },
}

impl ConfigFileError {
    /// Names `file` in the error.
    fn in_file(mut self, file: &Path) -> Self {
        match &mut self {
            ConfigFileError::Read { .. } => {}
            ConfigFileError::Syntax { path, .. } | ConfigFileError::Invalid { path, .. } => {
                *path = Some(file.to_path_buf());
            }
        }
        self
    }
}

/// The file's name in messages.
fn shown(path: Option<&Path>) -> String {
    path.map_or_else(|| "cfg.yaml".to_owned(), |path| path.display().to_string())
}

/// Loads the configuration file as the AWS daemon does, and says which file it was.
///
/// With `path` (`-c`), that file is read and checked strictly. Without, the first existing of
/// `/etc/amazon/xray/cfg.yaml` and `./cfg.yaml` is read leniently; with neither, the defaults.
pub(crate) fn load(
    path: Option<&Path>,
) -> Result<(DaemonConfig, Option<PathBuf>), ConfigFileError> {
    let (file, strict) = match path {
        Some(path) => (path.to_path_buf(), true),
        None => match DEFAULT_PATHS
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
        {
            Some(found) => (found.to_path_buf(), false),
            None => return Ok((DaemonConfig::default(), None)),
        },
    };
    let text = std::fs::read_to_string(&file).map_err(|source| ConfigFileError::Read {
        path: file.clone(),
        source,
    })?;
    let config = from_yaml(&text, strict).map_err(|err| err.in_file(&file))?;
    Ok((config, Some(file)))
}

/// Reads `cfg.yaml` text onto the defaults.
///
/// A zero or empty value keeps the default; `Version` must be 1 or 2; a wrong type is an error.
/// With `strict` (a file given with `-c`), `Version` is required and unknown, unsupported and
/// version 1 keys are errors; without, they are ignored.
pub(crate) fn from_yaml(text: &str, strict: bool) -> Result<DaemonConfig, ConfigFileError> {
    let docs = YamlLoader::load_from_str(text).map_err(|err| ConfigFileError::Syntax {
        path: None,
        message: err.to_string(),
    })?;
    let top = match docs.first() {
        None | Some(Yaml::Null | Yaml::BadValue) => Vec::new(),
        Some(doc @ Yaml::Hash(_)) => entries("", doc)?,
        Some(_) => {
            return Err(ConfigFileError::Invalid {
                path: None,
                key: String::new(),
                message: "the file is not a mapping of keys to values".to_owned(),
            });
        }
    };
    let mut reader = Reader {
        config: DaemonConfig::default(),
        version: None,
        strict,
    };
    for (name, value) in top {
        // The AWS daemon has no fields for the last three; only the strict check looks inside.
        let section = matches!(name.as_str(), "Socket" | "Logging")
            || (strict && matches!(name.as_str(), "ProxyServer" | "Profile" | "Processor"));
        if section {
            for (child, value) in entries(&name, value)? {
                reader.key(&name, &child, value)?;
            }
        } else {
            reader.key("", &name, value)?;
        }
    }
    match reader.version {
        Some(version) => reader.config.version = version,
        None if strict => {
            let why = "is missing: a file given with -c must say `Version: 2`";
            return Err(invalid("Version", why));
        }
        None => {}
    }
    Ok(reader.config)
}

/// The configuration read so far.
struct Reader {
    config: DaemonConfig,
    version: Option<u32>,
    strict: bool,
}

impl Reader {
    /// Reads the key `name` of `section` ("" for the top level).
    fn key(&mut self, section: &str, name: &str, value: &Yaml) -> Result<(), ConfigFileError> {
        let key = if section.is_empty() {
            name.to_owned()
        } else {
            format!("{section}.{name}")
        };
        let key = key.as_str();
        let config = &mut self.config;
        match (section, name) {
            ("", "TotalBufferSizeMB") => {
                if let Some(mb) = whole(key, value)? {
                    config.total_buffer_size_mb = mb;
                }
            }
            ("", "Concurrency") => {
                if let Some(n) = whole(key, value)? {
                    config.concurrency =
                        usize::try_from(n).map_err(|_| invalid(key, "is too large"))?;
                }
            }
            ("", "Region") => merge_string(&mut config.region, key, value)?,
            ("", "Endpoint") => merge_string(&mut config.endpoint, key, value)?,
            ("", "ResourceARN") => merge_string(&mut config.resource_arn, key, value)?,
            ("", "RoleARN") => merge_string(&mut config.role_arn, key, value)?,
            ("", "ProxyAddress") => merge_string(&mut config.proxy_address, key, value)?,
            ("", "LocalMode") => merge_bool(&mut config.local_mode, key, value)?,
            ("", "NoVerifySSL") => merge_bool(&mut config.no_verify_ssl, key, value)?,
            ("", "Version") => {
                self.version = match value {
                    Yaml::Null => None,
                    Yaml::Integer(1) => Some(1),
                    Yaml::Integer(2) => Some(2),
                    _ => return Err(invalid(key, "must be 1 or 2")),
                };
            }
            ("Socket", "UDPAddress") => merge_string(&mut config.udp_address, key, value)?,
            ("Socket", "TCPAddress") => merge_string(&mut config.tcp_address, key, value)?,
            ("Logging", "LogRotation") => merge_bool(&mut config.log_rotation, key, value)?,
            ("Logging", "LogLevel") => merge_string(&mut config.log_level, key, value)?,
            ("Logging", "LogPath") => merge_string(&mut config.log_path, key, value)?,
            // The AWS daemon resets these.
            ("ProxyServer", "IdleConnTimeout" | "MaxIdleConnsPerHost" | "MaxIdleConns") => {}
            _ => unknown(key, self.strict)?,
        }
        Ok(())
    }
}

/// A key the daemon does not read: an error when `strict`, saying why.
fn unknown(key: &str, strict: bool) -> Result<(), ConfigFileError> {
    if !strict {
        return Ok(());
    }
    let why = match key {
        "Profile.CPU"
        | "Profile.Memory"
        | "Socket.BufferSizeKB"
        | "Logging.LogFormat"
        | "Processor.BatchProcessorQueueSize" => UNSUPPORTED,
        "LogRotation" | "MemoryLimit" | "Processor.Region" | "Processor.Endpoint"
        | "Processor.Routine" => MIGRATE,
        _ => UNKNOWN,
    };
    Err(invalid(key, why))
}

/// The entries of the mapping `key`, with their keys as text; null is an empty mapping.
fn entries<'a>(key: &str, value: &'a Yaml) -> Result<Vec<(String, &'a Yaml)>, ConfigFileError> {
    let Yaml::Hash(map) = value else {
        return match value {
            Yaml::Null => Ok(Vec::new()),
            _ => Err(invalid(key, "must be a mapping of keys to values")),
        };
    };
    let name_of = |k: &Yaml| match k {
        Yaml::String(name) | Yaml::Real(name) => name.clone(),
        Yaml::Integer(n) => n.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => format!("{other:?}"),
    };
    Ok(map.iter().map(|(k, v)| (name_of(k), v)).collect())
}

/// A whole number that is not negative; `None` for null and zero, which keep the default.
fn whole(key: &str, value: &Yaml) -> Result<Option<u64>, ConfigFileError> {
    match value {
        Yaml::Null | Yaml::Integer(0) => Ok(None),
        Yaml::Integer(n) => u64::try_from(*n)
            .map(Some)
            .map_err(|_| invalid(key, "must not be negative")),
        _ => Err(invalid(key, "must be a whole number")),
    }
}

/// Sets a string unless the value is null or empty. Numbers and booleans are taken as text, as
/// Go's `yaml.v2` takes them.
fn merge_string(field: &mut String, key: &str, value: &Yaml) -> Result<(), ConfigFileError> {
    let text = match value {
        Yaml::Null => return Ok(()),
        Yaml::String(text) | Yaml::Real(text) => text.clone(),
        Yaml::Integer(n) => n.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        _ => return Err(invalid(key, "must be a string")),
    };
    if !text.is_empty() {
        *field = text;
    }
    Ok(())
}

/// Sets a boolean unless the value is null. YAML 1.1's `yes`, `no`, `on`, `off`, `y` and `n`
/// are booleans too, as in Go's `yaml.v2`.
fn merge_bool(field: &mut bool, key: &str, value: &Yaml) -> Result<(), ConfigFileError> {
    *field = match value {
        Yaml::Null => return Ok(()),
        Yaml::Boolean(b) => *b,
        Yaml::String(text) => match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "y" => true,
            "false" | "no" | "off" | "n" => false,
            _ => return Err(invalid(key, "must be true or false")),
        },
        _ => return Err(invalid(key, "must be true or false")),
    };
    Ok(())
}

/// An error about `key`; `why` follows the key in the message.
fn invalid(key: &str, why: &str) -> ConfigFileError {
    ConfigFileError::Invalid {
        path: None,
        key: key.to_owned(),
        message: format!("{key} {why}"),
    }
}

/// The `tracing` level for a `LogLevel` or `-l` value, as the AWS daemon maps them.
pub(crate) fn log_level_filter(level: &str) -> Option<tracing::Level> {
    Some(match level {
        "dev" => tracing::Level::TRACE,
        "debug" => tracing::Level::DEBUG,
        "info" | "prod" => tracing::Level::INFO,
        "warn" => tracing::Level::WARN,
        "error" => tracing::Level::ERROR,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS_DEFAULT: &str = include_str!("../tests/data/cfg/aws-default.yaml");
    const CUSTOM: &str = include_str!("../tests/data/cfg/custom.yaml");
    const V1: &str = include_str!("../tests/data/cfg/v1.yaml");
    const UNKNOWN_KEY: &str = include_str!("../tests/data/cfg/unknown-key.yaml");

    /// Asserts that `text` is refused for `key`, with `key` and `words` in the message.
    fn refused(text: &str, strict: bool, key: &str, words: &str) {
        let err = from_yaml(text, strict).expect_err(text);
        let shown = err.to_string();
        match err {
            ConfigFileError::Invalid { key: found, .. } => assert_eq!(found, key, "{text:?}"),
            other => panic!("{text:?}: expected an invalid key, got {other:?}"),
        }
        assert!(shown.contains(key) && shown.contains(words), "{shown}");
    }

    fn v2() -> DaemonConfig {
        DaemonConfig {
            version: 2,
            ..DaemonConfig::default()
        }
    }

    #[test]
    fn the_shipped_file_gives_the_defaults() {
        assert_eq!(from_yaml(AWS_DEFAULT, true).unwrap(), v2());
        assert_eq!(from_yaml(AWS_DEFAULT, false).unwrap(), v2());
    }

    #[test]
    fn every_custom_value_is_read() {
        let expected = DaemonConfig {
            total_buffer_size_mb: 24,
            concurrency: 3,
            region: "eu-west-1".to_owned(),
            endpoint: "http://127.0.0.1:4566".to_owned(),
            udp_address: "0.0.0.0:3000".to_owned(),
            tcp_address: "0.0.0.0:3001".to_owned(),
            log_rotation: false,
            log_level: "debug".to_owned(),
            log_path: "/var/log/xray/xray.log".to_owned(),
            local_mode: true,
            resource_arn: "arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0"
                .to_owned(),
            role_arn: "arn:aws:iam::123456789012:role/xray-upload".to_owned(),
            no_verify_ssl: true,
            proxy_address: "http://192.0.2.0:3000".to_owned(),
            version: 2,
        };
        assert_eq!(from_yaml(CUSTOM, true).unwrap(), expected);
    }

    #[test]
    fn zero_and_empty_values_keep_the_defaults() {
        let text = concat!(
            "Concurrency: 0\nTotalBufferSizeMB: 0\nRegion: \"\"\n",
            "Socket:\n  UDPAddress: ''\nLogging:\n  LogLevel: \"\"\n  LogPath: ~\n",
            "Version: 2\n",
        );
        assert_eq!(from_yaml(text, true).unwrap(), v2());
        let config = from_yaml("LocalMode: yes\nLogging:\n  LogRotation: off\n", false).unwrap();
        assert!(config.local_mode && !config.log_rotation);
    }

    #[test]
    fn version_must_be_1_or_2_and_is_required_only_when_strict() {
        assert_eq!(
            from_yaml("Version: 1", true).unwrap(),
            DaemonConfig::default()
        );
        for text in ["Version: 3", "Version: 0", "Version: -1", "Version: two"] {
            refused(text, true, "Version", "1 or 2");
            refused(text, false, "Version", "1 or 2");
        }
        for text in ["Concurrency: 4\n", "", "# only a comment\n"] {
            refused(text, true, "Version", "missing");
            assert_eq!(from_yaml(text, false).unwrap().version, 1);
        }
        assert_eq!(from_yaml("", false).unwrap(), DaemonConfig::default());
    }

    #[test]
    fn unknown_keys_are_errors_only_when_strict() {
        refused(UNKNOWN_KEY, true, "Socket.Foo", "not a key");
        assert_eq!(
            from_yaml(UNKNOWN_KEY, false).unwrap().udp_address,
            "127.0.0.1:2001"
        );
        refused("Foo: 1\nVersion: 2\n", true, "Foo", "not a key");
        refused(
            "ProxyServer:\n  Foo: 1\nVersion: 2\n",
            true,
            "ProxyServer.Foo",
            "not a key",
        );
    }

    #[test]
    fn version_1_keys_ask_for_the_migration_script() {
        refused(V1, true, "MemoryLimit", "cfg_migration");
        for (text, key) in [
            ("LogRotation: true", "LogRotation"),
            ("Processor:\n  Region: us-west-2", "Processor.Region"),
            (
                "Processor:\n  Endpoint: http://127.0.0.1:4566",
                "Processor.Endpoint",
            ),
            ("Processor:\n  Routine: 3", "Processor.Routine"),
        ] {
            refused(&format!("Version: 2\n{text}\n"), true, key, "cfg_migration");
        }
        let config = from_yaml(V1, false).unwrap();
        assert_eq!((config.region.as_str(), config.version), ("", 1));
    }

    #[test]
    fn unsupported_keys_are_named() {
        for (text, key) in [
            ("Profile:\n  CPU: a", "Profile.CPU"),
            ("Profile:\n  Memory: a", "Profile.Memory"),
            ("Socket:\n  BufferSizeKB: 64", "Socket.BufferSizeKB"),
            ("Logging:\n  LogFormat: a", "Logging.LogFormat"),
            (
                "Processor:\n  BatchProcessorQueueSize: 20",
                "Processor.BatchProcessorQueueSize",
            ),
        ] {
            let text = format!("Version: 2\n{text}\n");
            refused(&text, true, key, "not supported any more");
            assert_eq!(from_yaml(&text, false).unwrap(), v2());
        }
    }

    #[test]
    fn wrong_types_and_negative_numbers_name_the_key() {
        for (text, key) in [
            ("Concurrency: \"x\"", "Concurrency"),
            ("TotalBufferSizeMB: 1.5", "TotalBufferSizeMB"),
            ("LocalMode: 3", "LocalMode"),
            ("Socket: 5", "Socket"),
            ("Logging:\n  LogRotation: maybe", "Logging.LogRotation"),
            ("Region: [a, b]", "Region"),
        ] {
            refused(&format!("Version: 2\n{text}\n"), true, key, "must be");
            refused(&format!("{text}\n"), false, key, "must be");
        }
        refused("Concurrency: -2\n", false, "Concurrency", "negative");
    }

    #[test]
    fn syntax_errors_and_other_documents_are_refused() {
        for text in [
            "Socket:\n  UDPAddress: \"127.0.0.1:2000\n",
            "Region: a\nRegion: b\n",
        ] {
            match from_yaml(text, false) {
                Err(ConfigFileError::Syntax { message, .. }) => {
                    assert!(message.contains("line"), "{message}");
                }
                other => panic!("{text:?}: expected a syntax error, got {other:?}"),
            }
        }
        for text in ["- a\n- b\n", "just text\n", "3\n"] {
            refused(text, false, "", "not a mapping");
        }
    }

    #[test]
    fn load_names_the_file() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cfg");
        let custom = dir.join("custom.yaml");
        let (config, file) = load(Some(custom.as_path())).unwrap();
        assert_eq!((config.concurrency, file), (3, Some(custom)));
        let err = load(Some(dir.join("unknown-key.yaml").as_path())).unwrap_err();
        assert!(
            err.to_string().contains("unknown-key.yaml: Socket.Foo"),
            "{err}"
        );
        let err = load(Some(dir.join("missing.yaml").as_path())).unwrap_err();
        assert!(matches!(err, ConfigFileError::Read { .. }));
        assert!(err.to_string().contains("missing.yaml"), "{err}");
    }

    #[test]
    fn log_levels_map_as_the_aws_daemon_maps_them() {
        use tracing::Level;
        for (level, expected) in [
            ("dev", Some(Level::TRACE)),
            ("debug", Some(Level::DEBUG)),
            ("info", Some(Level::INFO)),
            ("warn", Some(Level::WARN)),
            ("error", Some(Level::ERROR)),
            ("prod", Some(Level::INFO)),
            ("verbose", None),
        ] {
            assert_eq!(log_level_filter(level), expected, "{level}");
        }
    }
}
