//! Testing code that records AWS X-Ray traces.
//!
//! - [`capture::Capture`]: a recorder that keeps what it sends, and views to assert on it by
//!   name, parent, annotation, flags and `aws` fields, whose failures say what was there
//!   instead, in the spirit of `tracing-mock` and OpenTelemetry's in-memory exporter.
//! - The published X-Ray segment-document schema (draft-04, in `schema/`) as a validator:
//!   every document a capture reads is checked against it, and [`assert_valid`] checks any.
//! - The real services the xray-rs crates' own tests run against, each started on a free
//!   loopback port: [`moto`] (AWS APIs, from PyPI), [`postgres`] and [`mariadb`] (from
//!   Debian's packages), and botocore's SigV4 check ([`assert_sigv4_by_botocore`]).
//!
//! The schema by itself:
//!
//! # Examples
//!
//! ```
//! use serde_json::json;
//!
//! let segment = json!({
//!     "name": "orders",
//!     "id": "70de5b6f19ff9a0a",
//!     "trace_id": "1-581cf771-a006649127e371903a2de979",
//!     "start_time": 1478293361.271,
//!     "end_time": 1478293361.449,
//! });
//! assert!(xray_testkit::schema_errors(&segment).is_empty());
//! xray_testkit::assert_valid(&segment);
//!
//! let mut broken = segment.clone();
//! broken["id"] = json!("not-an-id");
//! assert!(!xray_testkit::schema_errors(&broken).is_empty());
//! ```
#![deny(missing_docs)]

use std::sync::OnceLock;

use serde_json::{Value, json};

/// The saved segment-document schema, as published with the X-Ray SDKs.
const SCHEMA: &str = include_str!("../schema/xray-segmentdocument-schema-v1.0.0.json");

/// The schema as two validators: the root one for segments, and `#/definitions/subsegment`
/// for subsegments.
pub struct Schema {
    segment: jsonschema::Validator,
    subsegment: jsonschema::Validator,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema").finish_non_exhaustive()
    }
}

impl Schema {
    /// The schema, compiled once per process.
    pub fn get() -> &'static Schema {
        static COMPILED: OnceLock<Schema> = OnceLock::new();
        COMPILED.get_or_init(Schema::compile)
    }

    fn compile() -> Self {
        let root: Value = serde_json::from_str(SCHEMA).expect("the saved schema is JSON");
        let segment = jsonschema::draft4::new(&root).expect("segment schema compiles");
        // Same definitions, with the root pointing at the subsegment definition.
        let sub = json!({
            "$schema": root["$schema"].clone(),
            "definitions": root["definitions"].clone(),
            "$ref": "#/definitions/subsegment",
        });
        let subsegment = jsonschema::draft4::new(&sub).expect("subsegment schema compiles");
        Self {
            segment,
            subsegment,
        }
    }

    /// Panics with every schema error when `doc` is not a valid document; see
    /// [`Schema::errors`].
    pub fn assert_valid(&self, doc: &Value) {
        let errors = self.errors(doc);
        assert!(errors.is_empty(), "{}\n{doc:#}", errors.join("\n"));
    }

    /// Every reason `doc` is not a valid document.
    ///
    /// A document with `trace_id` and without `"type": "subsegment"` is a segment; anything
    /// else is a subsegment. Independent subsegments must also carry `trace_id` and
    /// `parent_id` (the protocol requires them; the schema's subsegment definition does not),
    /// and no value anywhere may be `null` (the SDKs omit what they do not know).
    ///
    /// No field is stripped: the saved schema declares no `additionalProperties: false`
    /// outside `annotations`, so the fields it predates (`aws.xray`, `aws.eks`,
    /// `aws.cloudwatch_logs`, `service.runtime*`, `retries`, `id_2`, per-operation `aws`
    /// fields, `x_forwarded_for` on subsegments, `traced`) pass its checks untouched.
    pub fn errors(&self, doc: &Value) -> Vec<String> {
        let is_segment = doc.get("trace_id").is_some() && doc.get("type").is_none();
        let (validator, kind) = if is_segment {
            (&self.segment, "segment")
        } else {
            (&self.subsegment, "subsegment")
        };
        let mut errors: Vec<String> = validator
            .iter_errors(doc)
            .map(|e| format!("{kind} schema: {e} at {}", e.instance_path()))
            .collect();
        if doc.get("type") == Some(&json!("subsegment")) {
            for field in ["trace_id", "parent_id"] {
                if doc.get(field).is_none() {
                    errors.push(format!("independent subsegment without {field}"));
                }
            }
        }
        nulls(doc, "", &mut errors);
        errors
    }
}

fn nulls(v: &Value, at: &str, errors: &mut Vec<String>) {
    match v {
        Value::Null => errors.push(format!("null at {at:?}")),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                nulls(x, &format!("{at}/{i}"), errors);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                nulls(x, &format!("{at}/{k}"), errors);
            }
        }
        _ => {}
    }
}

/// Every reason `doc` is not a valid segment or subsegment document (empty when it is).
pub fn schema_errors(doc: &Value) -> Vec<String> {
    Schema::get().errors(doc)
}

/// Panics with every schema error when `doc` is not a valid segment or subsegment document.
pub fn assert_valid(doc: &Value) {
    Schema::get().assert_valid(doc);
}

/// Checks every document: for a trace's documents (`trace.segments()`, `trace.orphans()`).
pub fn assert_all_valid<'a>(docs: impl IntoIterator<Item = &'a Value>) {
    for d in docs {
        assert_valid(d);
    }
}

/// Checks every document and returns them: for `emitter.documents()` and the like.
pub fn checked(docs: Vec<Value>) -> Vec<Value> {
    for d in &docs {
        assert_valid(d);
    }
    docs
}

/// Makes sure `python3` can run `import_check` (a line of Python, such as `import botocore`),
/// installing `pip_spec` with pip when it cannot, so that tests relying on a PyPI package run
/// on a fresh machine. Panics if python3 is missing or the install fails.
///
/// Call it once per package and process (behind a `std::sync::Once`), so that parallel tests
/// do not race pip.
pub fn ensure_python_package(import_check: &str, pip_spec: &str) {
    use std::process::{Command, Stdio};
    let present = Command::new("python3")
        .args(["-c", import_check])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return;
    }
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", pip_spec])
        .status()
        .expect("python3 runs");
    assert!(status.success(), "pip install {pip_spec} failed");
}

pub mod moto;

/// Makes sure `present()` holds, installing the Debian package `package` with apt when it
/// does not (as root, or through `sudo`), so that tests relying on a server from Debian's
/// packages run on a fresh machine. Panics, saying what to install, if it cannot.
pub fn ensure_debian_package(present: impl Fn() -> bool, package: &str) {
    use std::process::Command;
    if present() {
        return;
    }
    let apt = |args: &[&str]| {
        let mut command = if is_root() {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "apt-get"]);
            c
        };
        command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    let installed = apt(&["install", "-y", "-q", "--no-install-recommends", package])
        || (apt(&["update", "-q"])
            && apt(&["install", "-y", "-q", "--no-install-recommends", package]));
    assert!(
        installed && present(),
        "the Debian package {package} is needed and could not be installed: apt-get install {package}"
    );
}

/// A request as a server received it, and what it should have been signed with; see
/// [`assert_sigv4_by_botocore`].
#[derive(Debug, Clone)]
pub struct SignedRequest<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The full URL the request was sent to.
    pub url: &'a str,
    /// Every header as received, names in any case.
    pub headers: &'a [(String, String)],
    /// The body as received.
    pub body: &'a [u8],
    /// The access key id.
    pub access_key: &'a str,
    /// The secret key.
    pub secret_key: &'a str,
    /// The session token, if any.
    pub token: Option<&'a str>,
    /// The signing region.
    pub region: &'a str,
}

/// Recomputes the request's SigV4 signature (service `xray`) with **botocore**'s own signer
/// (`support/sigv4_check.py`) and panics, printing botocore's canonical request, unless it is
/// the one the request carries.
pub fn assert_sigv4_by_botocore(request: &SignedRequest<'_>) {
    static BOTOCORE: std::sync::Once = std::sync::Once::new();
    BOTOCORE.call_once(|| ensure_python_package("import botocore", "botocore"));
    let case = serde_json::json!({
        "method": request.method,
        "url": request.url,
        "headers": request.headers,
        "body_hex": request.body.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "access_key": request.access_key,
        "secret_key": request.secret_key,
        "token": request.token,
        "region": request.region,
    });
    let dir = moto::TempDir::new();
    let path = dir.path.join("case.json");
    std::fs::write(&path, case.to_string()).expect("the case file is written");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/sigv4_check.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(&path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "botocore disagrees with the signature: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
pub mod capture;
pub mod mariadb;
pub mod postgres;

/// Whether the tests run as root: servers that refuse root then run as their own user.
fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
