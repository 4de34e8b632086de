//! The store's byte bound holds in memory, not in bytes received: documents of many small
//! fields cost several times their JSON once parsed, and a full read of the store over the
//! read API copies no more than a trace at a time. Live heap is counted by this binary's
//! allocator, so this file holds one test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde_json::{Map, Value, json};
use xray_local::XRayLocal;

mod support;
use support::{Sdk, WAIT, id, trace_id};

/// Counts the bytes allocated and not yet freed, and the most there have been.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only counters are added.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(live, Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: usize = 1024 * 1024;
const BOUND: usize = 32 * MIB;
/// Documents sent: 12 MB of JSON, within the bound as received, ten times it parsed.
const DOCS: usize = 200;

/// A segment of about 58 KB of JSON in 3,400 short annotations and metadata entries: the
/// shape whose parsed form costs the most beside its text.
fn wide_segment(n: usize) -> Value {
    let mut annotations = Map::new();
    let mut metadata = Map::new();
    for i in 0..1_700 {
        annotations.insert(format!("a{i}"), json!(i));
        metadata.insert(format!("m{i}"), json!({"k": [i, "v"]}));
    }
    json!({"name": format!("wide-{n}"), "id": id(), "trace_id": trace_id(),
           "start_time": 1.0, "end_time": 2.0, "annotations": annotations,
           "metadata": {"default": metadata}})
}

/// Reads `GET /traces` as it arrives and counts the traces, keeping none of it.
fn count_listed_traces(addr: std::net::SocketAddr) -> usize {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET /traces HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body: Box<dyn Read> = if chunked {
        Box::new(Chunks {
            inner: reader,
            left: 0,
            done: false,
        })
    } else {
        Box::new(reader)
    };
    struct CountSeq;
    impl<'de> Visitor<'de> for CountSeq {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of traces")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let mut n = 0;
            while seq.next_element::<IgnoredAny>()?.is_some() {
                n += 1;
            }
            Ok(n)
        }
    }
    let mut de = serde_json::Deserializer::from_reader(body);
    serde::Deserializer::deserialize_seq(&mut de, CountSeq).unwrap()
}

/// A chunked body as a plain stream of bytes.
struct Chunks<R> {
    inner: R,
    left: usize,
    done: bool,
}

impl<R: BufRead> Read for Chunks<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.inner.read_line(&mut line)?;
            if line == "\r\n" {
                line.clear();
                self.inner.read_line(&mut line)?;
            }
            self.left = usize::from_str_radix(line.trim(), 16)
                .map_err(|_| std::io::Error::other(format!("a bad chunk size: {line:?}")))?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n;
        Ok(n)
    }
}

#[test]
fn the_byte_bound_holds_in_memory_and_through_a_full_read() {
    let local = XRayLocal::builder()
        .udp_addr("127.0.0.1:0".parse().unwrap())
        .tcp_addr("127.0.0.1:0".parse().unwrap())
        .max_traces(100_000)
        .max_bytes(BOUND)
        .start()
        .unwrap();
    let sdk = Sdk::new(&local);
    // The documents are made before the baseline, one at a time after it.
    let sample = support::datagram(&wide_segment(0));
    assert!(
        (50_000..64_000).contains(&sample.len()),
        "{} bytes",
        sample.len()
    );
    drop(sample);
    std::thread::sleep(Duration::from_millis(200));
    let baseline = LIVE.load(Relaxed);

    for n in 0..DOCS {
        sdk.send(&wide_segment(n));
        // Paced, so that the socket's buffer never overflows: every document is filed.
        if n % 20 == 19 {
            local.wait_for_stats(WAIT, |s| s.received() as usize > n - 10);
        }
    }
    let stats = local.wait_for_stats(WAIT, |s| s.received() as usize == DOCS);
    assert_eq!(stats.received() as usize, DOCS, "{stats:?}");
    assert_eq!(stats.accepted() as usize, DOCS, "{stats:?}");
    assert!(stats.evicted_traces() > 0, "{stats:?}");
    std::thread::sleep(Duration::from_millis(200));

    // What the store holds, with a quarter for the estimate's error and the daemon's queues.
    let held = LIVE.load(Relaxed).saturating_sub(baseline);
    let allowed = BOUND + BOUND / 4;
    assert!(
        held <= allowed,
        "the store holds {:.1} MiB against a bound of {} MiB",
        held as f64 / MIB as f64,
        BOUND / MIB
    );
    // And the bound is used, not undercut: the store is at least half full.
    assert!(
        held >= BOUND / 2,
        "{:.1} MiB held",
        held as f64 / MIB as f64
    );

    // A full read over the read API, every trace listed, copies a trace at a time.
    let kept = local.traces().len();
    assert!(kept > 0 && kept < DOCS, "{kept} traces kept");
    PEAK.store(LIVE.load(Relaxed), Relaxed);
    let listed = count_listed_traces(local.tcp_addr());
    assert_eq!(listed, kept);
    let peak = PEAK.load(Relaxed).saturating_sub(baseline);
    println!(
        "held {:.1} MiB, {kept} traces; the full read peaked at {:.1} MiB; bound {} MiB",
        held as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        BOUND / MIB
    );
    assert!(
        peak <= allowed + MIB,
        "a full read took the heap to {:.1} MiB against a bound of {} MiB",
        peak as f64 / MIB as f64,
        BOUND / MIB
    );
}
