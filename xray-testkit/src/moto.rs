//! A moto server (the AWS API emulator from PyPI) on a free loopback port, for tests that
//! call AWS APIs, X-Ray's included. It is installed with pip when missing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A moto server on a free 127.0.0.1 port, stopped when dropped. Records every request it
/// serves (moto's recorder), so tests can check what the server received.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// The server's URL, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Moto {
    /// Starts moto and waits until it answers (60 s at most).
    pub fn start() -> Moto {
        ensure_moto_installed();
        let port = free_port();
        let dir = TempDir::new();
        let recording = dir.path.join("recording.jsonl");
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .env("MOTO_ENABLE_RECORDING", "true")
            .env("MOTO_RECORDER_FILEPATH", &recording)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut moto = Moto {
            child,
            endpoint: format!("http://{addr}"),
            addr,
            _dir: dir,
        };
        moto.wait_ready();
        moto
    }

    fn wait_ready(&mut self) {
        // Bounded: up to 60 s for a cold Python start on a loaded machine.
        for _ in 0..600 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("moto server exited early: {status}");
            }
            if let Ok(body) = http_get(self.addr, "/moto-api/data.json")
                && (body.starts_with("HTTP/1.1 200") || body.starts_with("HTTP/1.0 200"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moto server did not become ready");
    }

    /// Every request moto served since it started, as moto recorded them (headers, method,
    /// URL).
    pub fn recorded_requests(&self) -> Vec<serde_json::Value> {
        let resp = http_get(self.addr, "/moto-api/recorder/download-recording").unwrap();
        let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Installs moto with pip when it is missing, so the tests run on a fresh machine; once per
/// process, so that parallel tests do not race pip.
fn ensure_moto_installed() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(install_moto_if_missing);
}

fn install_moto_if_missing() {
    crate::ensure_python_package("import moto.server, flask_cors", "moto[server]");
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// A directory removed when dropped.
#[derive(Debug)]
pub struct TempDir {
    /// Where it is.
    pub path: std::path::PathBuf,
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl TempDir {
    /// A new empty directory under the system's temporary directory.
    pub fn new() -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "xray-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
