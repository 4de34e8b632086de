//! The `xray-local` binary run as a user runs it: started with its output read on threads,
//! sent documents over UDP, stopped with SIGTERM as systemd or `docker stop` stops it.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The daemon framing's header line.
pub const HEADER: &str = r#"{"format":"json","version":1}"#;

/// Long enough for a loaded CI machine; waits return as soon as the condition holds.
pub const WAIT: Duration = Duration::from_secs(10);

/// The binary, with nothing from this machine deciding for it: no instance metadata look-up,
/// no region from the environment.
pub fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xray-local"));
    command
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_REGION")
        .env_remove("ECS_ENABLE_CONTAINER_METADATA");
    command
}

/// A running binary, killed when dropped so that a failing test leaves nothing behind.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM failed");
        self.exit_within(WAIT)
            .expect("the binary exits after SIGTERM")
    }

    /// The exit status, if the binary exits within `timeout`.
    pub fn exit_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The lines of a child's output, read on a thread so that a binary that prints nothing fails
/// the test instead of hanging it. Bytes that are not UTF-8 are replaced, never lost: a test
/// looking for raw control characters still sees them.
pub fn lines(output: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(output);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    if tx
                        .send(String::from_utf8_lossy(&line).into_owned())
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// A binary listening on the addresses it printed.
pub struct Daemon {
    pub running: Running,
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub stdout: Receiver<String>,
    /// Stderr after the first line.
    pub stderr: Receiver<String>,
}

/// Starts the binary with stdout and stderr piped, and reads the addresses from the first line
/// on stderr.
pub fn start(args: &[&str]) -> Daemon {
    let mut child = command()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines(child.stdout.take().unwrap());
    let stderr = lines(child.stderr.take().unwrap());
    let running = Running(child);
    let first = stderr
        .recv_timeout(WAIT)
        .expect("the binary prints its addresses");
    let (udp, tcp) = addresses(&first).unwrap_or_else(|| panic!("unexpected first line: {first}"));
    Daemon {
        running,
        udp,
        tcp,
        stdout,
        stderr,
    }
}

/// The addresses in a `listening on udp ADDR tcp ADDR` line, on stderr or in the log.
pub fn addresses(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let (_, rest) = line.split_once("listening on udp ")?;
    let (udp, tcp) = rest.trim().split_once(" tcp ")?;
    Some((udp.parse().ok()?, tcp.parse().ok()?))
}

/// Waits for the `listening on` line in a log file (`-f`) and returns the addresses.
pub fn addresses_from_log(log: &Path) -> (SocketAddr, SocketAddr) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(found) = text.lines().find_map(addresses) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no `listening on` line in {}: {text}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends one document in the daemon framing, as an SDK's emitter does.
pub fn send(udp: SocketAddr, doc: &Value) {
    send_raw(udp, format!("{HEADER}\n{doc}").as_bytes());
}

pub fn send_raw(udp: SocketAddr, bytes: &[u8]) {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(bytes, udp)
        .unwrap();
}

/// Lines from `rx` until `done` holds for one (included), or panics after [`WAIT`].
pub fn lines_until(rx: &Receiver<String>, mut done: impl FnMut(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the binary stopped printing; so far: {out:#?}"));
        let last = done(&line);
        out.push(line);
        if last {
            return out;
        }
    }
}

/// Runs `xray-local query` with these arguments.
pub fn query(args: &[&str]) -> std::process::Output {
    command().arg("query").args(args).output().unwrap()
}
