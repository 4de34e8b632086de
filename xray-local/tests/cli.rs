//! The `xray-local` binary, run as a user would.

mod support;

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use serde_json::Value;
use support::{HEADER, WAIT, id, segment, trace_id};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xray-local"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut line = String::new();
    BufReader::new(stderr).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("xray-local: listening on udp ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    (Running(child), addr)
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
        .args(["--udp", "not an address"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--udp: `not an address`"), "{stderr}");
    assert!(stderr.contains("Usage: xray-local"), "{stderr}");
}
