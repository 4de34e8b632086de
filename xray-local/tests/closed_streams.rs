//! The binary never panics for its standard streams: with stderr or stdout a pipe nobody reads
//! (EPIPE) or a closed descriptor, it starts, reports what it can, keeps running as a daemon
//! and exits with its own codes, never 101 (a panic from `eprintln!` or `println!`).

mod support;

#[path = "support/binary.rs"]
mod binary;

use std::process::Stdio;
use std::time::Duration;

use support::{get_json, id, segment, trace_id};

/// The writing end of a pipe whose reading end is already closed: every write fails with
/// EPIPE, from the first byte the child writes.
fn broken_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer
}

fn scratch_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("xray-local-streams-{}", id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn errors_and_help_with_a_broken_stderr_or_stdout_exit_with_their_own_codes() {
    let cases: [(&[&str], bool, i32); 5] = [
        (&["--udp", "not an address"], false, 2),
        (&["-c", "/nonexistent/xray/cfg.yaml"], false, 2),
        (&["query", "fault = maybe"], false, 2),
        (&["--help"], true, 0),
        (&["--version"], true, 0),
    ];
    for (args, on_stdout, code) in cases {
        let mut command = binary::command();
        command.args(args).stdin(Stdio::null());
        if on_stdout {
            command.stdout(broken_pipe()).stderr(Stdio::null());
        } else {
            command.stdout(Stdio::null()).stderr(broken_pipe());
        }
        let status = command.status().unwrap();
        assert_eq!(status.code(), Some(code), "{args:?}: {status}");
    }
}

#[test]
fn a_daemon_with_a_broken_stderr_starts_receives_and_stops_cleanly() {
    let dir = scratch_dir();
    let log = dir.join("xray.log");
    let child = binary::command()
        .args(["--udp", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--json"])
        .args(["--quiet-ms", "0", "-f", log.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(broken_pipe())
        .spawn()
        .unwrap();
    let mut running = binary::Running(child);
    let stdout = binary::lines(running.0.stdout.take().unwrap());
    // Stderr is gone: the addresses are in the log too.
    let (udp, tcp) = binary::addresses_from_log(&log);

    let t = trace_id();
    binary::send(udp, &segment(&t, &id(), "api", 1.0, 1.5));
    binary::send_raw(udp, b"not a datagram");
    let line = stdout
        .recv_timeout(binary::WAIT)
        .expect("the trace printed");
    assert!(line.contains(&t), "{line}");
    let (status, stats) = get_json(tcp, "/stats");
    assert_eq!(status, 200);
    assert_eq!(stats["accepted"], 1);
    assert!(running.exit_within(Duration::from_millis(300)).is_none());
    assert_eq!(running.terminate().code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_daemon_whose_stdout_is_gone_keeps_receiving_and_counts_what_it_did_not_print() {
    let child = binary::command()
        .args([
            "--udp",
            "127.0.0.1:0",
            "--tcp",
            "127.0.0.1:0",
            "--quiet-ms",
            "0",
        ])
        .stdout(broken_pipe())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut running = binary::Running(child);
    let stderr = binary::lines(running.0.stderr.take().unwrap());
    let first = stderr.recv_timeout(binary::WAIT).unwrap();
    let (udp, tcp) = binary::addresses(&first).unwrap_or_else(|| panic!("{first}"));

    let (first_trace, second_trace) = (trace_id(), trace_id());
    binary::send(udp, &segment(&first_trace, &id(), "api", 1.0, 1.5));
    binary::lines_until(&stderr, |l| l.contains("stdout is closed"));
    assert!(
        running.exit_within(Duration::from_millis(300)).is_none(),
        "the daemon stopped with its stdout"
    );

    binary::send(udp, &segment(&second_trace, &id(), "api", 1.0, 1.5));
    let deadline = std::time::Instant::now() + binary::WAIT;
    loop {
        let (status, traces) = get_json(tcp, "/traces");
        assert_eq!(status, 200);
        if traces.as_array().unwrap().len() == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{traces}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(running.terminate().code(), Some(0));
    // The process has exited: the reader sees the end of the pipe and the channel closes.
    let rest: Vec<String> = stderr.iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("trace(s) were not printed")),
        "{rest:#?}"
    );
}

#[test]
fn closed_descriptors_are_no_trouble_either() {
    let dir = scratch_dir();
    let log = dir.join("xray.log");
    // `2>&-` and `1>&-`: the descriptors themselves closed, not pipes.
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"exec "$0" "$@" 1>&- 2>&-"#)
        .arg(env!("CARGO_BIN_EXE_xray-local"))
        .args([
            "--udp",
            "127.0.0.1:0",
            "--tcp",
            "127.0.0.1:0",
            "--quiet-ms",
            "0",
        ])
        .args(["-f", log.to_str().unwrap()])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_REGION")
        .spawn()
        .unwrap();
    let mut running = binary::Running(child);
    let (udp, tcp) = binary::addresses_from_log(&log);
    binary::send(udp, &segment(&trace_id(), &id(), "api", 1.0, 1.5));
    binary::send_raw(udp, b"not a datagram");
    let (status, _) = get_json(tcp, "/stats");
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_millis(300));
    assert!(running.exit_within(Duration::ZERO).is_none());
    assert_eq!(running.terminate().code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
