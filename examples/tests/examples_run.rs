//! Every example, run as a user runs it: its binary, against an `xray-local` on a loopback
//! port, and moto for the AWS one. (`lambda` has its own test, against a stand-in Runtime API;
//! `quickstart` runs in `.ci/run`, as the README's first command.)

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::example_binary;
use xray_local::XRayLocal;
use xray_testkit::moto::Moto;

const WAIT: Duration = Duration::from_secs(20);

fn local() -> XRayLocal {
    XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .quiet_period(Duration::from_millis(200))
        .start()
        .unwrap()
}

/// The example's command, sending to `local`, sampling everything, reading nothing else.
fn example(name: &str, local: &XRayLocal) -> Command {
    let mut command = Command::new(example_binary(name));
    command
        .env_clear()
        .env("AWS_XRAY_DAEMON_ADDRESS", local.udp_addr().to_string())
        .env("XRAY_SAMPLER", "always")
        .env("AWS_XRAY_PLUGINS", "none")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    command
}

#[test]
fn header_prints_the_downstream_and_response_headers() {
    let out = Command::new(example_binary("header")).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("downstream: Root=1-5759e988-bd862e3fe1be46a994272793;Parent="),
        "{text}"
    );
    assert!(text.contains(";Sampled=1;Lineage=10:1234abcd:3"), "{text}");
    assert!(
        text.contains("response:   Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"),
        "{text}"
    );
}

#[test]
fn ids_prints_a_trace_id_and_a_segment_id() {
    let out = Command::new(example_binary("ids")).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let value = |label: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label} in {text}"))
            .trim()
            .to_owned()
    };
    assert!(
        value("trace id:").parse::<xray_sdk::TraceId>().is_ok(),
        "{text}"
    );
    assert!(
        value("segment id:").parse::<xray_sdk::SegmentId>().is_ok(),
        "{text}"
    );
}

#[test]
fn axum_server_sends_one_trace_of_two_services() {
    let local = local();
    let out = example("axum_server", &local).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let root = text
        .lines()
        .find_map(|l| l.strip_prefix("frontend answered X-Amzn-Trace-Id: Some(\"Root="))
        .and_then(|rest| rest.get(..35))
        .unwrap_or_else(|| panic!("no trace header in {text}"));
    let trace = local
        .wait_for_trace(root, WAIT)
        .expect("the example's trace arrives");
    xray_testkit::assert_all_valid(trace.segments().iter().chain(trace.orphans()));
    assert!(trace.find("frontend").is_some() && trace.find("inventory").is_some());
}

#[test]
fn aws_dynamodb_serves_an_order_read_from_dynamodb() {
    let moto = Moto::start();
    let local = local();
    let mut child = example("aws_dynamodb", &local)
        .env("DYNAMODB_ENDPOINT", &moto.endpoint)
        .env("PORT", "0")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = lines
        .find_map(|l| {
            l.ok()?
                .strip_prefix("listening on http://")
                .map(str::to_owned)
        })
        .expect("the example says where it listens");

    let mut stream = TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET /orders/order-1 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let header = response
        .lines()
        .find_map(|l| {
            l.strip_prefix("x-amzn-trace-id: Root=")
                .or_else(|| l.strip_prefix("X-Amzn-Trace-Id: Root="))
        })
        .and_then(|rest| rest.get(..35));

    // The request's segment, with the DynamoDB call under it.
    let traces = local.wait_for_traces(1, WAIT);
    let trace = traces
        .iter()
        .find(|t| t.find("orders-api").is_some())
        .expect("the request's trace arrives");
    if let Some(root) = header {
        assert_eq!(trace.id().to_string(), root);
    }
    xray_testkit::assert_all_valid(trace.segments().iter().chain(trace.orphans()));
    let call = trace.find("DynamoDB").expect("the DynamoDB subsegment");
    assert_eq!(call.get("namespace"), Some(&serde_json::Value::from("aws")));
}
