//! A bare UDP "daemon" for xray-sdk's own tests: a real socket on 127.0.0.1:0 that keeps
//! every datagram it receives.
#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde_json::Value;

pub const HEADER: &str = "{\"format\":\"json\",\"version\":1}\n";

pub struct UdpSink {
    addr: SocketAddr,
    shared: Arc<(Mutex<Vec<Vec<u8>>>, Condvar)>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpSink {
    pub fn start() -> UdpSink {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        // Room for bursts of thousands of datagrams (the kernel caps it at rmem_max).
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(8 << 20);
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let addr = socket.local_addr().expect("local addr");
        let shared = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 70_000];
            while !st.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    s.0.lock().push(buf[..n].to_vec());
                    s.1.notify_all();
                }
            }
        });
        UdpSink {
            addr,
            shared,
            stop,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for at least `n` datagrams (or 10 s) and returns all received so far.
    pub fn wait_for(&self, n: usize) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = self.shared.0.lock();
        while got.len() < n {
            if self.shared.1.wait_until(&mut got, deadline).timed_out() {
                break;
            }
        }
        got.clone()
    }

    /// Waits for `n` datagrams and parses their documents, checking the daemon header.
    pub fn documents(&self, n: usize) -> Vec<Value> {
        self.wait_for(n)
            .iter()
            .map(|d| {
                let text = std::str::from_utf8(d).expect("utf-8 datagram");
                let body = text.strip_prefix(HEADER).expect("daemon header line");
                serde_json::from_str(body).expect("JSON document")
            })
            .collect()
    }

    /// Everything received after a quiet period.
    pub fn settle(&self, quiet: Duration) -> Vec<Vec<u8>> {
        let mut last = usize::MAX;
        loop {
            std::thread::sleep(quiet);
            let len = self.shared.0.lock().len();
            if len == last {
                return self.shared.0.lock().clone();
            }
            last = len;
        }
    }
}

impl Drop for UdpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every entity in a document tree, depth first.
pub fn walk<'a>(doc: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(doc);
    if let Some(subs) = doc.get("subsegments").and_then(Value::as_array) {
        for s in subs {
            walk(s, out);
        }
    }
}
