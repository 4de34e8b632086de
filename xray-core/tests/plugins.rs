//! The environment plugins against real parts: HTTP servers on 127.0.0.1 that answer as the
//! EC2 instance metadata service (IMDSv2) and the ECS task metadata endpoint v4 answer, files in
//! a temporary directory for Elastic Beanstalk and Kubernetes, and the segment documents that
//! result, validated against the segment schema.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use xray_sdk::plugins::{self, DetectOptions, Environment, Plugin};
use xray_sdk::{Document, SegmentId, TraceId};

// ===== stand-in servers =====

#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    Length,
    Chunked,
    UntilClose,
}

#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    body: Vec<u8>,
    framing: Framing,
}

impl Reply {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            body: body.into(),
            framing: Framing::Length,
        }
    }

    fn json(value: &Value) -> Reply {
        Reply::new(200, serde_json::to_vec(value).unwrap())
    }

    fn framed(mut self, framing: Framing) -> Reply {
        self.framing = framing;
        self
    }
}

/// An HTTP/1.1 server on 127.0.0.1:0, one connection at a time, `Connection: close`, that
/// answers with `handler` and keeps every request it read.
struct Stub {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Stub {
    fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let Some(request) = read_request(&mut conn) else {
                    continue;
                };
                let reply = handler(&request);
                kept.lock().unwrap().push(request);
                let _ = write_reply(&mut conn, &reply);
            }
        });
        Stub { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

fn read_request(conn: &mut TcpStream) -> Option<Request> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || conn.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut start = lines.next()?.split(' ');
    let method = start.next()?.to_owned();
    let path = start.next()?.to_owned();
    assert_eq!(
        start.next(),
        Some("HTTP/1.1"),
        "request line of {method} {path}"
    );
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(Request {
        method,
        path,
        headers,
    })
}

fn write_reply(conn: &mut TcpStream, reply: &Reply) -> std::io::Result<()> {
    let reason = match reply.status {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nConnection: close\r\n",
        reply.status
    )
    .into_bytes();
    match reply.framing {
        Framing::Length => {
            out.extend_from_slice(
                format!("Content-Length: {}\r\n\r\n", reply.body.len()).as_bytes(),
            );
            out.extend_from_slice(&reply.body);
        }
        Framing::Chunked => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            for chunk in reply.body.chunks(700) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
        Framing::UntilClose => {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&reply.body);
        }
    }
    conn.write_all(&out)
}

// ===== IMDSv2 =====

const TOKEN: &str = "AQAEAPx8m9v0GZ3WlyPrbLDr1XaqKZ8ifQrYTt7_ydoVMNPMM5m9Zg==";

fn identity_document() -> Value {
    json!({
        "accountId": "123456789012",
        "architecture": "x86_64",
        "availabilityZone": "us-west-2c",
        "billingProducts": null,
        "devpayProductCodes": null,
        "marketplaceProductCodes": null,
        "imageId": "ami-0abcdef1234567890",
        "instanceId": "i-0b5a4678fc325be98",
        "instanceType": "m5.large",
        "kernelId": null,
        "pendingTime": "2026-11-19T16:32:11Z",
        "privateIp": "10.0.1.23",
        "ramdiskId": null,
        "region": "us-west-2",
        "version": "2017-09-30"
    })
}

/// The instance metadata service with IMDSv2 required (`HttpTokens: required`): the token
/// comes from `PUT /latest/api/token` with a TTL header, and every `GET` without it is 401.
fn imds_v2() -> Stub {
    Stub::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("PUT", "/latest/api/token") => match r.header("X-aws-ec2-metadata-token-ttl-seconds") {
            Some(ttl) if ttl.parse::<u32>().is_ok_and(|t| (1..=21_600).contains(&t)) => {
                Reply::new(200, TOKEN)
            }
            _ => Reply::new(400, ""),
        },
        ("GET", _) if r.header("X-aws-ec2-metadata-token") != Some(TOKEN) => Reply::new(401, ""),
        ("GET", "/latest/dynamic/instance-identity/document") => Reply::json(&identity_document()),
        ("GET", _) => Reply::new(404, ""),
        _ => Reply::new(405, ""),
    })
}

/// A metadata service without IMDSv2: the token path is unknown, reads need no token.
fn imds_v1_only() -> Stub {
    Stub::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/latest/dynamic/instance-identity/document") => Reply::json(&identity_document()),
        _ => Reply::new(404, ""),
    })
}

// ===== ECS task metadata v4 =====

const ECS_PATH: &str = "/v4/5a0d5ce9b6c54d5bb4ca29d6ea18a9e8-2495160603";
const DOCKER_ID: &str = "cd189a933e5849daa93386466019ab50-2495160603";
const CONTAINER_ARN: &str = "arn:aws:ecs:us-west-2:123456789012:container/prod/cd189a933e5849daa93386466019ab50/1f73d099-b914-411c-a9ff-81633b7741dd";

fn container_metadata() -> Value {
    json!({
        "DockerId": DOCKER_ID,
        "Name": "orders",
        "DockerName": "orders",
        "Image": "123456789012.dkr.ecr.us-west-2.amazonaws.com/orders:1.4",
        "ImageID": "sha256:7e8b1b5f4d3a2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b",
        "Labels": {
            "com.amazonaws.ecs.cluster": "arn:aws:ecs:us-west-2:123456789012:cluster/prod",
            "com.amazonaws.ecs.container-name": "orders",
            "com.amazonaws.ecs.task-arn": "arn:aws:ecs:us-west-2:123456789012:task/prod/cd189a933e5849daa93386466019ab50",
            "com.amazonaws.ecs.task-definition-family": "orders",
            "com.amazonaws.ecs.task-definition-version": "7"
        },
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "Limits": { "CPU": 2 },
        "CreatedAt": "2026-11-19T16:32:11.111Z",
        "StartedAt": "2026-11-19T16:32:12.222Z",
        "Type": "NORMAL",
        "LogDriver": "awslogs",
        "LogOptions": {
            "awslogs-create-group": "true",
            "awslogs-group": "/ecs/orders",
            "awslogs-region": "us-west-2",
            "awslogs-stream": "ecs/orders/cd189a933e5849daa93386466019ab50"
        },
        "ContainerARN": CONTAINER_ARN,
        "Networks": [ { "NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.1.23"] } ]
    })
}

fn task_metadata(launch_type: &str) -> Value {
    json!({
        "Cluster": "arn:aws:ecs:us-west-2:123456789012:cluster/prod",
        "TaskARN": "arn:aws:ecs:us-west-2:123456789012:task/prod/cd189a933e5849daa93386466019ab50",
        "Family": "orders",
        "Revision": "7",
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "Limits": { "CPU": 0.25, "Memory": 512 },
        "PullStartedAt": "2026-11-19T16:32:01.000Z",
        "PullStoppedAt": "2026-11-19T16:32:10.000Z",
        "AvailabilityZone": "us-west-2c",
        "LaunchType": launch_type,
        "Containers": [ container_metadata() ],
        "ClockDrift": { "ClockErrorBound": 0.45, "ReferenceTimestamp": "2026-11-19T16:30:00Z" }
    })
}

/// The task metadata endpoint: the container at `ECS_PATH`, the task (chunked, as a larger
/// answer comes) at `ECS_PATH/task`.
fn ecs_v4(launch_type: &'static str, task_status: u16) -> Stub {
    Stub::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", ECS_PATH) => Reply::json(&container_metadata()),
        ("GET", p) if p == format!("{ECS_PATH}/task") => {
            if task_status == 200 {
                Reply::json(&task_metadata(launch_type)).framed(Framing::Chunked)
            } else {
                Reply::new(task_status, "")
            }
        }
        _ => Reply::new(404, ""),
    })
}

// ===== files and helpers =====

/// A directory of its own under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("xray-plugins-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// A path in the folder that no test creates.
    fn missing(&self, name: &str) -> PathBuf {
        self.0.join(format!("missing-{name}"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Options that read nothing from the process: `vars` is the whole environment, no plugin is
/// selected, and every file location is one that does not exist.
fn isolated(dir: &TempDir, vars: &[(&str, &str)]) -> DetectOptions {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    DetectOptions::new()
        .with_env(move |k| vars.get(k).cloned())
        .with_plugins(Vec::<Plugin>::new())
        .with_elastic_beanstalk_config(dir.missing("environment.conf"))
        .with_kubernetes_token_file(dir.missing("token"))
        .with_cgroup_files(dir.missing("cgroup"), dir.missing("mountinfo"))
        .with_hostname("orders-7f9c")
}

/// A finished segment with `env` applied, as the recorder writes it (and as serde writes it:
/// both must agree), checked against the segment schema.
fn segment_json(env: &Environment) -> Value {
    let mut doc = Document::new("orders", SegmentId::new(), 1_735_689_600.25);
    doc.set_trace_id(TraceId::new());
    doc.set_end_time(1_735_689_600.5);
    env.apply(&mut doc);
    let mut out = Vec::new();
    doc.write_json(&mut out).unwrap();
    let written: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(written, serde_json::to_value(&doc).unwrap());
    xray_testkit::checked(vec![written]).remove(0)
}

/// A loopback URL where nothing listens (a port that was free a moment ago).
fn closed_port_url() -> String {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    format!("http://{addr}")
}

fn problem(env: &Environment, plugin: Plugin) -> Option<String> {
    env.problems()
        .find(|(p, _)| *p == plugin)
        .map(|(_, why)| why.to_owned())
}

// ===== EC2 =====

#[test]
fn ec2_through_imdsv2() {
    let imds = imds_v2();
    let dir = TempDir::new("ec2");
    let options = isolated(&dir, &[])
        .with_plugins([Plugin::Ec2])
        .with_ec2_endpoint(imds.url());
    let env = plugins::detect(&options);

    assert_eq!(env.problems().count(), 0, "{env}");
    assert_eq!(env.origin.as_deref(), Some("AWS::EC2::Instance"));
    assert_eq!(env.detected().collect::<Vec<_>>(), [Plugin::Ec2]);

    let requests = imds.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path.as_str()),
        ("PUT", "/latest/api/token")
    );
    assert_eq!(
        requests[0].header("X-aws-ec2-metadata-token-ttl-seconds"),
        Some("60")
    );
    assert_eq!(
        requests[0].header("X-Forwarded-For"),
        None,
        "IMDS refuses tokens for proxied requests"
    );
    assert_eq!(
        requests[1].path,
        "/latest/dynamic/instance-identity/document"
    );
    assert_eq!(requests[1].header("X-aws-ec2-metadata-token"), Some(TOKEN));

    let doc = segment_json(&env);
    assert_eq!(doc["origin"], "AWS::EC2::Instance");
    assert_eq!(
        doc["aws"]["ec2"],
        json!({
            "instance_id": "i-0b5a4678fc325be98",
            "availability_zone": "us-west-2c",
            "instance_size": "m5.large",
            "ami_id": "ami-0abcdef1234567890"
        })
    );
    assert_eq!(
        doc["aws"]["xray"],
        Value::Null,
        "apply adds the environment, not the SDK block"
    );
    assert_eq!(
        env.summary(),
        "AWS::EC2::Instance; ec2 instance_id=i-0b5a4678fc325be98 instance_size=m5.large \
         availability_zone=us-west-2c ami_id=ami-0abcdef1234567890"
    );
}

#[test]
fn the_imdsv2_stand_in_refuses_reads_without_the_token() {
    // What makes `ec2_through_imdsv2` a proof that the token was used.
    let imds = imds_v2();
    let mut conn = TcpStream::connect(imds.addr).unwrap();
    conn.write_all(b"GET /latest/dynamic/instance-identity/document HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
}

#[test]
fn the_endpoint_comes_from_the_aws_sdk_variables() {
    let imds = imds_v2();
    let dir = TempDir::new("ec2-env");
    let url = imds.url();
    let host_port = imds.addr.to_string();
    for vars in [
        vec![("AWS_EC2_METADATA_SERVICE_ENDPOINT", format!("{url}/"))],
        vec![("IMDS_ENDPOINT", host_port.clone())],
        vec![
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", url.clone()),
            ("IMDS_ENDPOINT", "192.0.2.1:9".to_owned()),
        ],
    ] {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let env = plugins::detect(&isolated(&dir, &vars).with_plugins([Plugin::Ec2]));
        assert!(env.ec2.is_some(), "{vars:?}: {env}");
    }

    let off = isolated(
        &dir,
        &[
            ("AWS_EC2_METADATA_DISABLED", "TRUE"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", url.as_str()),
        ],
    )
    .with_plugins([Plugin::Ec2]);
    assert!(off.effective_plugins().is_empty());
    let before = imds.requests().len();
    assert!(plugins::detect(&off).is_empty());
    assert_eq!(
        imds.requests().len(),
        before,
        "a disabled plugin calls nothing"
    );
}

#[test]
fn imdsv1_only_where_the_aws_sdks_fall_back() {
    let dir = TempDir::new("ec2-v1");

    // The token path unknown (404): a service without IMDSv2; the read without a token works.
    let v1 = imds_v1_only();
    let env = plugins::detect(
        &isolated(&dir, &[])
            .with_plugins([Plugin::Ec2])
            .with_ec2_endpoint(v1.url()),
    );
    assert_eq!(
        env.ec2.as_ref().and_then(|e| e.instance_id.as_deref()),
        Some("i-0b5a4678fc325be98")
    );
    assert_eq!(v1.requests()[1].header("X-aws-ec2-metadata-token"), None);

    // ... unless IMDSv1 is disabled.
    let strict = isolated(&dir, &[("AWS_EC2_METADATA_V1_DISABLED", "true")])
        .with_plugins([Plugin::Ec2])
        .with_ec2_endpoint(v1.url());
    let env = plugins::detect(&strict);
    assert!(env.is_empty());
    let why = problem(&env, Plugin::Ec2).unwrap();
    assert!(why.contains("HTTP 404"), "{why}");

    // Any other answer to the token request is a failure, not a reason to ask without one.
    let broken = Stub::start(|_| Reply::new(500, ""));
    let env = plugins::detect(
        &isolated(&dir, &[])
            .with_plugins([Plugin::Ec2])
            .with_ec2_endpoint(broken.url()),
    );
    assert!(env.ec2.is_none());
    assert_eq!(broken.requests().len(), 1);
    assert!(problem(&env, Plugin::Ec2).unwrap().contains("HTTP 500"));
}

#[test]
fn a_wrong_token_is_a_failure() {
    let dir = TempDir::new("ec2-token");
    // The token is granted, then refused: a read without the right token gets 401.
    let imds = Stub::start(|r| match r.method.as_str() {
        "PUT" => Reply::new(200, "some-other-token"),
        _ if r.header("X-aws-ec2-metadata-token") == Some(TOKEN) => {
            Reply::json(&identity_document())
        }
        _ => Reply::new(401, ""),
    });
    let env = plugins::detect(
        &isolated(&dir, &[])
            .with_plugins([Plugin::Ec2])
            .with_ec2_endpoint(imds.url()),
    );
    assert!(env.is_empty());
    assert!(problem(&env, Plugin::Ec2).unwrap().contains("HTTP 401"));
}

#[test]
fn response_bodies_are_bounded() {
    let dir = TempDir::new("bodies");
    let big = format!(
        "{{\"instanceId\":\"i-1\",\"padding\":\"{}\"}}",
        "x".repeat(100 * 1024)
    );
    for framing in [Framing::Length, Framing::Chunked, Framing::UntilClose] {
        let big = big.clone();
        let imds = Stub::start(move |r| match r.method.as_str() {
            "PUT" => Reply::new(200, TOKEN),
            _ => Reply::new(200, big.clone()).framed(framing),
        });
        let env = plugins::detect(
            &isolated(&dir, &[])
                .with_plugins([Plugin::Ec2])
                .with_ec2_endpoint(imds.url()),
        );
        assert!(env.ec2.is_none(), "{framing:?}");
        let why = problem(&env, Plugin::Ec2).unwrap();
        assert!(why.contains("64 KiB"), "{framing:?}: {why}");
    }
}

// ===== ECS =====

#[test]
fn ecs_task_metadata_v4() {
    let ecs = ecs_v4("FARGATE", 200);
    // On Fargate there is no instance metadata: EC2 must not even be tried.
    let imds = imds_v2();
    let dir = TempDir::new("ecs");
    let uri = format!("{}{ECS_PATH}", ecs.url());
    let options = isolated(&dir, &[("ECS_CONTAINER_METADATA_URI_V4", uri.as_str())])
        .with_plugins([Plugin::Ecs, Plugin::Ec2])
        .with_ec2_endpoint(imds.url());
    let env = plugins::detect(&options);

    assert_eq!(env.problems().count(), 0, "{env}");
    assert_eq!(env.origin.as_deref(), Some("AWS::ECS::Container"));
    assert_eq!(imds.requests().len(), 0, "EC2 tried on Fargate");
    let paths: Vec<String> = ecs.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, [ECS_PATH.to_owned(), format!("{ECS_PATH}/task")]);

    let task = env.ecs_task.clone().unwrap();
    assert_eq!(task.family.as_deref(), Some("orders"));
    assert_eq!(task.revision.as_deref(), Some("7"));
    assert_eq!(
        task.cluster.as_deref(),
        Some("arn:aws:ecs:us-west-2:123456789012:cluster/prod")
    );
    assert_eq!(task.availability_zone.as_deref(), Some("us-west-2c"));
    assert!(task.is_fargate());

    let doc = segment_json(&env);
    assert_eq!(doc["origin"], "AWS::ECS::Container");
    assert_eq!(
        doc["aws"]["ecs"],
        json!({ "container": "orders-7f9c", "container_id": DOCKER_ID, "container_arn": CONTAINER_ARN })
    );
    assert_eq!(
        doc["aws"]["cloudwatch_logs"],
        json!([{
            "log_group": "/ecs/orders",
            "arn": "arn:aws:logs:us-west-2:123456789012:log-group:/ecs/orders"
        }])
    );
    let line = env.summary();
    assert!(
        line.starts_with("AWS::ECS::Container; ecs container=orders-7f9c"),
        "{line}"
    );
    assert!(line.contains("launch_type=FARGATE"), "{line}");
    assert!(line.contains("cloudwatch_logs /ecs/orders"), "{line}");
}

#[test]
fn ecs_keeps_the_container_when_the_task_metadata_fails() {
    let ecs = ecs_v4("EC2", 500);
    let dir = TempDir::new("ecs-task");
    let options = isolated(&dir, &[])
        .with_plugins([Plugin::Ecs])
        .with_ecs_metadata_uri(format!("{}{ECS_PATH}", ecs.url()));
    let env = plugins::detect(&options);
    assert_eq!(
        env.ecs.as_ref().and_then(|e| e.container_arn.as_deref()),
        Some(CONTAINER_ARN)
    );
    assert_eq!(env.ecs_task, None);
    let why = problem(&env, Plugin::Ecs).unwrap();
    assert!(why.contains("task") && why.contains("HTTP 500"), "{why}");
    segment_json(&env);
}

#[test]
fn ecs_contributes_nothing_when_the_container_metadata_fails() {
    let ecs = Stub::start(|_| Reply::new(200, "not json"));
    let dir = TempDir::new("ecs-fail");
    let uri = format!("{}{ECS_PATH}", ecs.url());
    let env = plugins::detect(
        &isolated(&dir, &[("ECS_CONTAINER_METADATA_URI", uri.as_str())])
            .with_plugins([Plugin::Ecs]),
    );
    assert!(env.is_empty(), "{env}");
    assert!(problem(&env, Plugin::Ecs).unwrap().contains("not JSON"));

    // No variable, no ECS, and nothing to report.
    let env = plugins::detect(&isolated(&dir, &[]).with_plugins([Plugin::Ecs]));
    assert!(env.is_empty());
    assert_eq!(env.problems().count(), 0);
}

// ===== the budget =====

#[test]
fn a_silent_endpoint_costs_at_most_the_budget() {
    // Connections to it complete (the kernel's backlog) but nothing is ever read or answered.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let dir = TempDir::new("silent");
    let options = isolated(&dir, &[])
        .with_plugins(Plugin::ALL)
        .with_ecs_metadata_uri(format!("{url}/v4/x"))
        .with_ec2_endpoint(url.clone());

    let started = Instant::now();
    let env = plugins::detect(&options);
    let elapsed = started.elapsed();
    // An upper bound on the one-second budget, with room for a loaded machine; not a benchmark.
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    assert!(env.is_empty(), "{env}");
    assert!(problem(&env, Plugin::Ecs).is_some());
    assert!(problem(&env, Plugin::Ec2).is_some());

    let started = Instant::now();
    let env = plugins::detect(&options.clone().with_budget(Duration::from_millis(200)));
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    assert!(env.is_empty());
    drop(silent);
}

// ===== Elastic Beanstalk =====

#[test]
fn elastic_beanstalk_environment_file() {
    let dir = TempDir::new("eb");
    let conf = dir.file(
        "environment.conf",
        r#"{"deployment_id":23,"version_label":"orders-1.4.2-20261119","environment_name":"orders-prod"}"#,
    );
    let env = plugins::detect(
        &isolated(&dir, &[])
            .with_plugins([Plugin::ElasticBeanstalk])
            .with_elastic_beanstalk_config(&conf),
    );
    assert_eq!(
        env.origin.as_deref(),
        Some("AWS::ElasticBeanstalk::Environment")
    );
    let doc = segment_json(&env);
    assert_eq!(
        doc["aws"]["elastic_beanstalk"],
        json!({ "environment_name": "orders-prod", "version_label": "orders-1.4.2-20261119", "deployment_id": 23 })
    );

    // A deployment id written as a string is still a number on the wire.
    let conf = dir.file(
        "quoted.conf",
        r#"{"deployment_id":"24","environment_name":"orders-prod"}"#,
    );
    let env = plugins::detect(
        &isolated(&dir, &[])
            .with_plugins([Plugin::ElasticBeanstalk])
            .with_elastic_beanstalk_config(&conf),
    );
    assert_eq!(
        segment_json(&env)["aws"]["elastic_beanstalk"]["deployment_id"],
        24
    );

    // A file that is not the platform's: a failure, and nothing written.
    for (name, text) in [
        ("broken.conf", "{\"deployment_id\":"),
        ("empty.conf", "{}"),
        ("array.conf", "[1]"),
    ] {
        let conf = dir.file(name, text);
        let env = plugins::detect(
            &isolated(&dir, &[])
                .with_plugins([Plugin::ElasticBeanstalk])
                .with_elastic_beanstalk_config(&conf),
        );
        assert!(env.is_empty(), "{name}");
        assert!(problem(&env, Plugin::ElasticBeanstalk).is_some(), "{name}");
    }

    // No file: not Beanstalk, nothing to report.
    let env = plugins::detect(&isolated(&dir, &[]).with_plugins([Plugin::ElasticBeanstalk]));
    assert!(env.is_empty());
    assert_eq!(env.problems().count(), 0);
}

// ===== EKS =====

const CONTAINER_ID: &str = "3c9a1f7e5b2d4c6a8e0f1b3d5c7a9e2f4b6d8c0a1e3f5b7d9c2a4e6f8b0d1c3e";

#[test]
fn eks_from_the_pod_files() {
    let dir = TempDir::new("eks");
    let token = dir.file("token", "eyJhbGciOiJSUzI1NiJ9.not-read");
    let cgroup = dir.file(
        "cgroup",
        &format!(
            "12:pids:/kubepods/burstable/pod0f7c3d2e-8a9b-4c1d-9e2f-3a4b5c6d7e8f/{CONTAINER_ID}\n\
             11:memory:/kubepods/burstable/pod0f7c3d2e-8a9b-4c1d-9e2f-3a4b5c6d7e8f/{CONTAINER_ID}\n"
        ),
    );
    let in_cluster = [
        ("KUBERNETES_SERVICE_HOST", "10.100.0.1"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=orders,k8s.cluster.name=prod-eu",
        ),
    ];
    let options = isolated(&dir, &in_cluster)
        .with_plugins([Plugin::Eks])
        .with_kubernetes_token_file(&token)
        .with_cgroup_files(&cgroup, dir.missing("mountinfo"))
        .with_hostname("orders-6d4cf56db6-xv2kq");
    let env = plugins::detect(&options);
    assert_eq!(env.problems().count(), 0, "{env}");
    assert_eq!(env.origin.as_deref(), Some("AWS::EKS::Container"));
    let doc = segment_json(&env);
    assert_eq!(
        doc["aws"]["eks"],
        json!({ "pod": "orders-6d4cf56db6-xv2kq", "cluster_name": "prod-eu", "container_id": CONTAINER_ID })
    );
    assert_eq!(
        doc["aws"]["cloudwatch_logs"],
        json!([{ "log_group": "/aws/containerinsights/prod-eu/application" }])
    );

    // A cluster name set in code wins over the variable.
    let env = plugins::detect(&options.clone().with_eks_cluster_name("prod-us"));
    assert_eq!(
        env.eks.as_ref().and_then(|e| e.cluster_name.as_deref()),
        Some("prod-us")
    );

    // cgroup v2: `0::/` in cgroup; Docker's bind mounts in mountinfo name the container.
    let v2 = dir.file("cgroup-v2", "0::/\n");
    let mountinfo = dir.file(
        "mountinfo",
        &format!(
            "1043 1035 0:52 / / rw,relatime master:310 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/ABC\n\
             1051 1043 259:1 /var/lib/docker/containers/{CONTAINER_ID}/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/nvme0n1p1 rw\n\
             1052 1043 259:1 /var/lib/docker/containers/{CONTAINER_ID}/hostname /etc/hostname rw,relatime - ext4 /dev/nvme0n1p1 rw\n"
        ),
    );
    let env = plugins::detect(
        &isolated(&dir, &in_cluster[..1])
            .with_plugins([Plugin::Eks])
            .with_kubernetes_token_file(&token)
            .with_cgroup_files(&v2, &mountinfo),
    );
    let eks = env.eks.clone().unwrap();
    assert_eq!(eks.container_id.as_deref(), Some(CONTAINER_ID));
    assert_eq!(eks.cluster_name, None);
    assert!(
        env.cloudwatch_logs.is_empty(),
        "no cluster name, no Container Insights group"
    );
    segment_json(&env);
}

#[test]
fn eks_needs_both_the_variable_and_the_token() {
    let dir = TempDir::new("eks-not");
    let token = dir.file("token", "x");
    let without_variable = isolated(&dir, &[])
        .with_plugins([Plugin::Eks])
        .with_kubernetes_token_file(&token);
    assert!(plugins::detect(&without_variable).is_empty());
    let without_token =
        isolated(&dir, &[("KUBERNETES_SERVICE_HOST", "10.100.0.1")]).with_plugins([Plugin::Eks]);
    let env = plugins::detect(&without_token);
    assert!(env.is_empty());
    assert_eq!(env.problems().count(), 0);
}

// ===== all together =====

#[test]
fn the_most_specific_environment_gives_the_origin() {
    let dir = TempDir::new("all");
    let conf = dir.file(
        "environment.conf",
        r#"{"deployment_id":3,"version_label":"v3","environment_name":"orders-prod"}"#,
    );
    let token = dir.file("token", "x");
    let imds = imds_v2();
    let ecs = ecs_v4("EC2", 200);
    let uri = format!("{}{ECS_PATH}", ecs.url());
    let vars = [
        ("KUBERNETES_SERVICE_HOST", "10.100.0.1"),
        ("OTEL_RESOURCE_ATTRIBUTES", "k8s.cluster.name=prod-eu"),
        ("ECS_CONTAINER_METADATA_URI_V4", uri.as_str()),
    ];
    let everything = isolated(&dir, &vars)
        .with_plugins(Plugin::ALL)
        .with_elastic_beanstalk_config(&conf)
        .with_kubernetes_token_file(&token)
        .with_ec2_endpoint(imds.url());
    let env = plugins::detect(&everything);
    assert_eq!(env.problems().count(), 0, "{env}");
    // Elastic Beanstalk > EKS > ECS > EC2 (the Java SDK's ORIGIN_PRIORITY).
    assert_eq!(env.detected().collect::<Vec<_>>(), Plugin::ALL);
    assert_eq!(
        env.origin.as_deref(),
        Some("AWS::ElasticBeanstalk::Environment")
    );
    let doc = segment_json(&env);
    for block in ["elastic_beanstalk", "eks", "ecs", "ec2"] {
        assert!(doc["aws"][block].is_object(), "{block}");
    }
    assert_eq!(doc["aws"]["cloudwatch_logs"].as_array().unwrap().len(), 2);

    // Without Beanstalk and Kubernetes: ECS over EC2 (an ECS task on the EC2 launch type).
    let containers = isolated(&dir, &vars[2..])
        .with_plugins(Plugin::ALL)
        .with_ec2_endpoint(imds.url());
    let env = plugins::detect(&containers);
    assert_eq!(
        env.detected().collect::<Vec<_>>(),
        [Plugin::Ecs, Plugin::Ec2]
    );
    assert_eq!(env.origin.as_deref(), Some("AWS::ECS::Container"));

    // Applying twice writes each log group once.
    let mut doc = Document::new("orders", SegmentId::new(), 1.0);
    env.apply(&mut doc);
    env.apply(&mut doc);
    assert_eq!(doc.aws().unwrap().cloudwatch_logs.len(), 1);
}

#[test]
fn the_environment_switches_detection() {
    let dir = TempDir::new("switches");
    let conf = dir.file("environment.conf", r#"{"environment_name":"orders-prod"}"#);
    let with = |vars: &[(&str, &str)]| {
        isolated(&dir, vars)
            .with_plugins([Plugin::ElasticBeanstalk])
            .with_elastic_beanstalk_config(&conf)
    };

    assert!(plugins::detect(&with(&[])).elastic_beanstalk.is_some());
    for off in [
        [("AWS_XRAY_PLUGINS", "none")],
        [("AWS_XRAY_PLUGINS", "Off")],
        [("AWS_XRAY_PLUGINS", "EC2Plugin")],
        [("AWS_XRAY_SDK_ENABLED", "false")],
        [("AWS_XRAY_SDK_DISABLED", "true")],
        [("LAMBDA_TASK_ROOT", "/var/task")],
    ] {
        let env = plugins::detect(&with(&off).with_ec2_endpoint(closed_port_url()));
        assert!(env.elastic_beanstalk.is_none(), "{off:?}");
    }
    assert_eq!(
        with(&[("AWS_XRAY_PLUGINS", "ElasticBeanstalkPlugin, eks")]).effective_plugins(),
        [Plugin::ElasticBeanstalk, Plugin::Eks]
    );
    assert_eq!(
        with(&[
            ("AWS_XRAY_PLUGINS", "all"),
            ("AWS_EC2_METADATA_DISABLED", "true")
        ])
        .effective_plugins(),
        [Plugin::ElasticBeanstalk, Plugin::Eks, Plugin::Ecs]
    );
    // Off in code stays off.
    assert!(
        with(&[("AWS_XRAY_PLUGINS", "all")])
            .with_enabled(false)
            .effective_plugins()
            .is_empty()
    );
    assert!(plugins::detect(&DetectOptions::disabled()).is_empty());
}

#[test]
fn an_empty_environment_changes_nothing() {
    let env = plugins::detect(&DetectOptions::disabled());
    let mut doc = Document::new("orders", SegmentId::new(), 1.0);
    doc.set_origin("AWS::ECS::Container");
    env.apply(&mut doc);
    assert_eq!(doc.origin(), Some("AWS::ECS::Container"));
    assert!(doc.aws().is_none(), "no empty aws block is created");
    assert_eq!(env.summary(), "no AWS environment detected");
}

// ===== through the recorder =====

/// A recorder that reads nothing but its environment finds the ECS container on its own, and
/// every segment begun after that carries `aws.ecs`, the log group and the origin; sampling
/// rules see the origin as the service type.
#[test]
fn the_recorder_detects_its_environment_off_the_request_path() {
    let ecs = ecs_v4("EC2", 200);
    let uri = format!("{}{ECS_PATH}", ecs.url());
    let emitter = xray_sdk::InMemoryEmitter::new();
    let recorder = xray_sdk::Recorder::builder()
        .with_env(move |key| match key {
            "ECS_CONTAINER_METADATA_URI_V4" => Some(uri.clone()),
            "XRAY_SAMPLER" => Some("always".to_owned()),
            _ => None,
        })
        .with_emitter(emitter.clone())
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let doc = loop {
        let segment = recorder.begin_segment("orders");
        segment.end();
        let doc = emitter.documents().pop().expect("a document");
        if doc.get("origin").is_some() {
            break doc;
        }
        assert!(Instant::now() < deadline, "no environment on {doc}");
        thread::sleep(Duration::from_millis(20));
    };
    let doc = xray_testkit::checked(vec![doc]).remove(0);
    assert_eq!(doc["origin"], "AWS::ECS::Container");
    assert!(doc["aws"]["ecs"]["container"].is_string(), "{doc}");
    assert!(
        doc["aws"]["cloudwatch_logs"][0]["log_group"].is_string(),
        "{doc}"
    );
    // The SDK block is still there.
    assert_eq!(doc["aws"]["xray"]["sdk"], "X-Ray for Rust");

    // With detection off, nothing is asked and nothing is added.
    let quiet = xray_sdk::InMemoryEmitter::new();
    let recorder = xray_sdk::Recorder::builder()
        .with_env(|key| (key == "AWS_XRAY_PLUGINS").then(|| "none".to_owned()))
        .with_emitter(quiet.clone())
        .build()
        .unwrap();
    thread::sleep(Duration::from_millis(100));
    recorder.begin_segment("orders").end();
    assert!(quiet.documents().iter().all(|d| d.get("origin").is_none()));
}
