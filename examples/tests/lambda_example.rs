//! The Lambda example (`examples/lambda.rs`) runs as Lambda runs it: its binary, started as a
//! child process with the Lambda environment, polls a stand-in Runtime API on a loopback port,
//! answers one invocation, and sends its subsegments to a UDP socket standing in for the X-Ray
//! daemon.
//!
//! # Finding the example's binary
//!
//! Cargo gives integration tests the path of the package's `[[bin]]` targets
//! (`CARGO_BIN_EXE_<name>`), not of its examples. But `cargo test` (and `cargo nextest run`,
//! which builds through it) builds every example of the selected packages before it runs any
//! test, into `target/<profile>/examples/`, next to the test binaries in
//! `target/<profile>/deps/`; so the path is computed from this test binary's own. `cargo test
//! --workspace` and `cargo test -p xray-examples` build it; a build narrowed to this test
//! (`--test lambda_example`) does not, and the test then says how to build it.

#[path = "../../xray-lambda/tests/support/runtime_api.rs"]
mod stand_in;
mod support;

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::example_binary;

use serde_json::{Value, json};
use stand_in::{AnswerKind, Event, RuntimeApi};
use xray_sdk::transport::DAEMON_HEADER;

const HEADER: &str = "Root=1-67748580-0000000000000000000e7a41;Parent=53995c3f42cd8ad8;\
                      Sampled=1;Lineage=10:a87bd80c:1";

/// Kills the child when the test ends, passed or failed: the runtime loop never ends on its
/// own.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The documents that reach `socket` until `n` have arrived or `timeout` passes.
fn receive(socket: &UdpSocket, n: usize, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    let mut docs = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while docs.len() < n && Instant::now() < deadline {
        match socket.recv(&mut buf) {
            Ok(len) => {
                let body = buf[..len]
                    .strip_prefix(DAEMON_HEADER)
                    .expect("a datagram starts with the daemon header");
                docs.push(serde_json::from_slice(body).expect("a JSON document"));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("reading the daemon socket: {e}"),
        }
    }
    docs
}

#[test]
fn the_lambda_example_answers_an_invocation_and_sends_its_trace() {
    let daemon = UdpSocket::bind("127.0.0.1:0").unwrap();
    daemon
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let api = RuntimeApi::bind(vec![Event {
        request_id: "example-1".into(),
        trace_header: Some(HEADER.into()),
        payload: json!({ "name": "Ada" }),
    }]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    api.serve(rt.handle());

    // The environment Lambda gives a function, and nothing else from ours.
    let child = Command::new(example_binary("lambda"))
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", "lambda-example")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/12/01/[$LATEST]0123456789abcdef",
        )
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/lambda-example")
        .env("AWS_LAMBDA_MAX_CONCURRENCY", "2")
        .env("LAMBDA_TASK_ROOT", "/var/task")
        .env(
            "AWS_XRAY_DAEMON_ADDRESS",
            daemon.local_addr().unwrap().to_string(),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the example");
    let mut child = KillOnDrop(child);

    // Wait for the answer, and give up early if the example exits.
    let deadline = Instant::now() + Duration::from_secs(30);
    let answers = loop {
        if let Some(answers) = api.answers_within(1, Duration::from_millis(100)) {
            break answers;
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            panic!("the example exited ({status}) without answering: {stderr}");
        }
        assert!(
            Instant::now() < deadline,
            "the example did not answer within 30 s"
        );
    };
    let docs = receive(&daemon, 2, Duration::from_secs(10));
    drop(child);
    rt.shutdown_timeout(Duration::from_secs(1));

    assert!(api.init_errors().is_empty(), "{:?}", api.init_errors());
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].request_id, "example-1");
    assert_eq!(answers[0].kind, AnswerKind::Response, "{:?}", answers[0]);
    assert_eq!(answers[0].body, json!({ "message": "hello, Ada" }));

    // The layer's handler subsegment under Lambda's segment, and "greet" under it.
    let docs = xray_testkit::checked(docs);
    assert_eq!(docs.len(), 2, "{docs:#?}");
    let handler = docs
        .iter()
        .find(|d| d["name"] == "## lambda-example")
        .unwrap_or_else(|| panic!("no handler subsegment: {docs:#?}"));
    let greet = docs
        .iter()
        .find(|d| d["name"] == "greet")
        .unwrap_or_else(|| panic!("no greet subsegment: {docs:#?}"));
    for doc in [handler, greet] {
        assert_eq!(doc["trace_id"], "1-67748580-0000000000000000000e7a41");
        assert_eq!(doc["type"], "subsegment");
    }
    assert_eq!(handler["parent_id"], "53995c3f42cd8ad8");
    assert_eq!(greet["parent_id"], handler["id"]);
    assert_eq!(handler["annotations"]["ColdStart"], true);
    assert_eq!(greet["annotations"]["name_length"], 3);
}

#[test]
fn outside_lambda_the_example_says_so_and_exits() {
    let out = Command::new(example_binary("lambda"))
        .env_clear()
        .output()
        .expect("run the example");
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("AWS_LAMBDA_RUNTIME_API is not set"),
        "{stderr}"
    );
}
