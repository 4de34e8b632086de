//! The `xray-local` binary, run as a user would.

mod support;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use serde_json::Value;
use serde_json::json;
use support::{HEADER, WAIT, id, post_json, segment, trace_id};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> (Running, String) {
    let (running, udp, _) = spawn_both(args);
    (running, udp)
}

/// Starts the binary and reads the UDP and TCP addresses from its first line.
fn spawn_both(args: &[&str]) -> (Running, String, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xray-local"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_REGION")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut line = String::new();
    BufReader::new(stderr).read_line(&mut line).unwrap();
    let (udp, tcp) = line
        .trim()
        .strip_prefix("xray-local: listening on udp ")
        .and_then(|rest| rest.split_once(" tcp "))
        .unwrap_or_else(|| panic!("unexpected first line: {line}"));
    let tcp = tcp.parse().unwrap();
    (Running(child), udp.to_owned(), tcp)
}

fn query(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xray-local"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_REGION")
        .arg("query")
        .args(args)
        .output()
        .unwrap()
}

/// Reads on another thread so a binary that prints nothing fails the test instead of hanging it.
fn first_stdout_lines(running: &mut Running, n: usize) -> Vec<String> {
    let stdout = running.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (0..n)
        .map(|_| rx.recv_timeout(WAIT).expect("the binary prints a trace"))
        .collect()
}

#[test]
fn json_mode_prints_each_completed_trace_as_one_line() {
    let (mut running, addr) = spawn(&["--udp", "127.0.0.1:0", "--json", "--quiet-ms", "0"]);
    let t = trace_id();
    let doc = segment(&t, &id(), "api", 1.0, 2.0);
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(format!("{HEADER}\n{doc}").as_bytes(), &addr)
        .unwrap();
    let lines = first_stdout_lines(&mut running, 1);
    let trace: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(trace["trace_id"], Value::String(t));
    assert_eq!(trace["complete"], Value::Bool(true));
    assert_eq!(trace["segments"][0], doc);
}

#[test]
fn default_mode_prints_the_timeline() {
    let (mut running, addr) = spawn(&["--udp", "127.0.0.1:0", "--quiet-ms", "0"]);
    let t = trace_id();
    let doc = segment(&t, &id(), "checkout", 1.0, 1.5);
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(format!("{HEADER}\n{doc}").as_bytes(), &addr)
        .unwrap();
    let lines = first_stdout_lines(&mut running, 3);
    assert!(
        lines[0].starts_with(&format!("Trace {t}  500.0 ms")),
        "{lines:?}"
    );
    assert!(lines[2].starts_with("checkout"), "{lines:?}");
}

#[test]
fn bad_arguments_fail_with_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_xray-local"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_REGION")
        .args(["--udp", "not an address"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--udp: `not an address`"), "{stderr}");
    assert!(stderr.contains("Usage: xray-local"), "{stderr}");
}

fn send(addr: &str, doc: &Value) {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(format!("{HEADER}\n{doc}").as_bytes(), addr)
        .unwrap();
}

#[test]
fn a_second_process_queries_the_first_with_a_filter() {
    let (mut running, udp, tcp) = spawn_both(&[
        "--udp",
        "127.0.0.1:0",
        "--tcp",
        "127.0.0.1:0",
        "--json",
        "--quiet-ms",
        "0",
    ]);
    let (gold_fault, gold_ok, silver_fault) = (trace_id(), trace_id(), trace_id());
    for (t, tier, fault) in [
        (&gold_fault, "gold", true),
        (&gold_ok, "gold", false),
        (&silver_fault, "silver", true),
    ] {
        let mut doc = segment(t, &id(), "orders", 1.0, 1.25);
        doc["annotations"] = json!({"tier": tier});
        doc["fault"] = json!(fault);
        send(&udp, &doc);
    }
    // Printed once settled, so all three are held before the query runs.
    first_stdout_lines(&mut running, 3);
    let addr = tcp.to_string();

    let out = query(&[
        "--addr",
        &addr,
        "--json",
        r#"annotation.tier = "gold" AND fault = true"#,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let found: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(found.len(), 1, "{stdout}");
    assert_eq!(found[0]["trace_id"], Value::String(gold_fault.clone()));

    let out = query(&["--addr", &addr, "fault = true"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains(&format!("Trace {gold_fault}  250.0 ms")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("Trace {silver_fault}")),
        "{stdout}"
    );
    assert!(!stdout.contains(&gold_ok), "{stdout}");

    let out = query(&["--addr", &addr, "--map"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("Service map  3 traces  1 node  0 edges"),
        "{stdout}"
    );

    let out = query(&["--addr", &addr, "fault = maybe"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("at byte 8: expected `true` or `false`"),
        "{stderr}"
    );
    assert!(stderr.contains("\n          ^"), "{stderr}");
}

#[test]
fn query_reports_a_daemon_that_is_not_there() {
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = query(&["--addr", &free.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot query"));
}

#[test]
fn rules_file_is_served_by_the_sampling_api() {
    let dir = std::env::temp_dir().join(format!("xray-local-cli-{}", id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("rules.json");
    std::fs::write(
        &rules,
        r#"[{"RuleName": "orders", "Priority": 1, "FixedRate": 0.5, "ReservoirSize": 2}]"#,
    )
    .unwrap();
    let (_running, _, tcp) = spawn_both(&[
        "--udp",
        "127.0.0.1:0",
        "--tcp",
        "127.0.0.1:0",
        "--rules",
        rules.to_str().unwrap(),
    ]);
    let (status, reply) = post_json(tcp, "/GetSamplingRules", "{}");
    assert_eq!(status, 200);
    let names: Vec<&str> = reply["SamplingRuleRecords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["SamplingRule"]["RuleName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["orders", "Default"]);

    std::fs::write(&rules, "[{").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xray-local"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_REGION")
        .args(["--udp", "127.0.0.1:0", "--rules", rules.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rules"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn map_mode_prints_the_service_map_when_traffic_pauses() {
    let (mut running, udp) = spawn(&["--udp", "127.0.0.1:0", "--json", "--map", "--quiet-ms", "0"]);
    let t = trace_id();
    let mut doc = segment(&t, &id(), "api", 1.0, 1.5);
    doc["subsegments"] = json!([{"name": "S3", "id": id(), "namespace": "aws",
                                 "start_time": 1.1, "end_time": 1.2}]);
    send(&udp, &doc);
    let lines = first_stdout_lines(&mut running, 2);
    assert!(
        lines[1].starts_with("Service map  1 trace  2 nodes  1 edge"),
        "{lines:?}"
    );
}
