use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{Datagram, EmitError, Emitter};
use crate::diag::LogLimiter;

/// Hands datagrams to another [`Emitter`] on a background thread.
///
/// The caller only copies the datagram into a bounded buffer (a lock and a copy); the send
/// system calls happen on the sender thread, a batch at a time
/// ([`Emitter::emit_batch`]: one `sendmmsg` call for up to 64 datagrams with a
/// [`UdpEmitter`](crate::transport::UdpEmitter) on Linux). When the buffer is full the datagram is
/// dropped,
/// counted, and [`EmitError::Full`] is returned: the caller is never made to wait. Buffers are
/// reused, so the steady state allocates nothing.
///
/// Waking a sleeping thread is a system call, as costly as the send it saves, so callers
/// rarely do it: after sending a batch the sender naps for up to 2 ms and takes whatever
/// arrived meanwhile, and is woken early only when the buffer is an eighth full. Only after a
/// nap with nothing to send does it sleep until the next datagram wakes it. Under load,
/// datagrams therefore wait up to 2 ms; an idle process has no timer wake-ups.
///
/// [`Emitter::shutdown`] stops it: it refuses new datagrams ([`EmitError::Closed`]), lets the
/// thread send what is queued until the timeout, then gives up what is left, counted in
/// [`failed`](Self::failed), and leaves the thread to finish on its own a send that has not
/// returned. Dropping the emitter does the same within [`DROP_TIMEOUT`](Self::DROP_TIMEOUT):
/// a slow or hung network never holds the host's exit.
///
/// # Examples
///
/// ```
/// use std::net::UdpSocket;
/// use std::time::Duration;
/// use xray_sdk::transport::{BackgroundEmitter, Datagram, Emitter, UdpEmitter, DAEMON_HEADER};
///
/// let daemon = UdpSocket::bind("127.0.0.1:0")?;
/// let emitter = BackgroundEmitter::new(UdpEmitter::new(daemon.local_addr()?)?);
///
/// let mut bytes = DAEMON_HEADER.to_vec();
/// bytes.extend_from_slice(br#"{"name":"a"}"#);
/// emitter.emit(Datagram::new(&bytes).unwrap())?;
/// assert!(emitter.flush(Duration::from_secs(5)));
///
/// let mut buf = [0u8; 128];
/// let n = daemon.recv(&mut buf)?;
/// assert_eq!(&buf[..n], &bytes[..]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct BackgroundEmitter {
    shared: Arc<Shared>,
    /// The sender thread, until it is joined or left to finish on its own at shutdown.
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    work: Condvar,
    drained: Condvar,
    capacity_bytes: usize,
    dropped: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    last_error: parking_lot::Mutex<Option<crate::transport::TransportErrorKind>>,
}

#[derive(Debug, Default)]
struct Queue {
    // Length-prefixed datagrams: u32 little-endian length, then the bytes.
    buf: Vec<u8>,
    /// The sender sleeps until woken: the next datagram wakes it.
    sender_waiting: bool,
    /// The sender naps and will look again soon: only a filling buffer, a flush or the end
    /// wakes it.
    napping: bool,
    in_flight: bool,
    closed: bool,
    /// No thread sends: it could not be started.
    no_sender: bool,
}

impl BackgroundEmitter {
    /// The default buffer size: 4 MiB of queued datagrams.
    pub const DEFAULT_CAPACITY_BYTES: usize = 4 * 1024 * 1024;

    /// The longest dropping the emitter waits for the thread to send what is queued: 250 ms.
    /// What is left then is given up, and a send that has not returned is left to finish on
    /// its own. For a longer wait that says what was lost, call
    /// [`Recorder::shutdown`](crate::Recorder::shutdown) (or [`Emitter::shutdown`]) first.
    pub const DROP_TIMEOUT: Duration = Duration::from_millis(250);

    /// Sends through `inner` on a new thread, with the default buffer size.
    pub fn new<E: Emitter + 'static>(inner: E) -> Self {
        Self::with_capacity(inner, Self::DEFAULT_CAPACITY_BYTES)
    }

    /// Sends through `inner` on a new thread, queueing at most `capacity_bytes` of datagrams.
    ///
    /// If the thread cannot be started, datagrams are sent on the caller's thread instead.
    pub fn with_capacity<E: Emitter + 'static>(inner: E, capacity_bytes: usize) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            drained: Condvar::new(),
            capacity_bytes,
            dropped: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_error: parking_lot::Mutex::new(None),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("xray-emitter".into())
            .spawn(move || run(&thread_shared, &inner));
        match thread {
            Ok(handle) => Self {
                shared,
                thread: Mutex::new(Some(handle)),
            },
            Err(e) => {
                tracing::error!(
                    target: "xray_sdk::emitter",
                    error = %e,
                    "could not start the X-Ray emitter thread; segments will not be sent"
                );
                {
                    let mut q = shared.queue.lock();
                    q.closed = true;
                    q.no_sender = true;
                }
                Self {
                    shared,
                    thread: Mutex::new(None),
                }
            }
        }
    }

    /// Datagrams dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Datagrams the inner emitter failed to send, and those given up at shutdown.
    pub fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::Relaxed)
    }
}

/// How many length-prefixed datagrams `rest` holds.
fn count_datagrams(mut rest: &[u8]) -> u64 {
    let mut n = 0;
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        let Some((_, tail)) = tail.split_at_checked(len) else {
            break;
        };
        rest = tail;
        n += 1;
    }
    n
}

/// How long the sender waits for more after a batch before sleeping until woken.
const NAP: Duration = Duration::from_millis(2);
/// Callers wake a napping sender once the buffer holds this fraction of its capacity.
const WAKE_FRACTION: usize = 8;

fn run(shared: &Shared, inner: &dyn Emitter) {
    static LOG: LogLimiter = LogLimiter::new(60);
    let mut batch = Vec::new();
    loop {
        {
            let mut q = shared.queue.lock();
            if q.buf.is_empty() && !q.closed {
                q.napping = true;
                shared.work.wait_for(&mut q, NAP);
                q.napping = false;
            }
            while q.buf.is_empty() && !q.closed {
                q.sender_waiting = true;
                shared.work.wait(&mut q);
            }
            q.sender_waiting = false;
            if q.buf.is_empty() && q.closed {
                shared.drained.notify_all();
                return;
            }
            std::mem::swap(&mut q.buf, &mut batch);
            q.in_flight = true;
        }
        let mut rest = &batch[..];
        let mut datagrams = Vec::new();
        while let Some((len, tail)) = rest.split_first_chunk::<4>() {
            let len = u32::from_le_bytes(*len) as usize;
            let Some((bytes, tail)) = tail.split_at_checked(len) else {
                break;
            };
            rest = tail;
            datagrams.extend(Datagram::new(bytes));
        }
        // One system call for many datagrams where the emitter can (`sendmmsg`).
        let sent = inner.emit_batch(&datagrams, &mut |e| {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            *shared.last_error.lock() = Some(e.kind());
            if LOG.allow(crate::clock::SystemClock.now_micros()) {
                tracing::warn!(
                    target: "xray_sdk::emitter",
                    error = %e,
                    failed = shared.failed.load(Ordering::Relaxed),
                    "X-Ray segments could not be sent"
                );
            }
        });
        shared.sent.fetch_add(sent as u64, Ordering::Relaxed);
        drop(datagrams);
        batch.clear();
        let mut q = shared.queue.lock();
        q.in_flight = false;
        if q.buf.is_empty() {
            shared.drained.notify_all();
        }
    }
}

use crate::clock::Clock as _;

impl Emitter for BackgroundEmitter {
    fn emit(&self, datagram: Datagram<'_>) -> Result<(), EmitError> {
        let bytes = datagram.as_bytes();
        let mut q = self.shared.queue.lock();
        if q.closed {
            return Err(EmitError::Closed);
        }
        if q.buf.len() + 4 + bytes.len() > self.shared.capacity_bytes {
            drop(q);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(EmitError::Full);
        }
        q.buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        q.buf.extend_from_slice(bytes);
        let wake = q.sender_waiting
            || (q.napping && q.buf.len() >= self.shared.capacity_bytes / WAKE_FRACTION);
        if wake {
            // One wake-up is enough: later callers need not repeat the system call.
            q.sender_waiting = false;
            q.napping = false;
        }
        drop(q);
        if wake {
            self.shared.work.notify_one();
        }
        Ok(())
    }

    fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut q = self.shared.queue.lock();
        if q.napping && !q.buf.is_empty() {
            // Send now rather than after the nap.
            q.napping = false;
            self.shared.work.notify_one();
        }
        while !q.buf.is_empty() || q.in_flight {
            if q.closed && q.no_sender {
                return false;
            }
            if self.shared.drained.wait_until(&mut q, deadline).timed_out() {
                return q.buf.is_empty() && !q.in_flight;
            }
        }
        true
    }

    /// Stops taking datagrams, waits until the thread sent what is queued or `timeout` passes,
    /// then gives up what is still queued (counted in [`failed`](Self::failed), as
    /// [`TransportErrorKind::Closed`](crate::transport::TransportErrorKind::Closed)). A send that
    /// has not
    /// returned stays pending: the thread is left to finish it on its own and exit, and is
    /// never waited for past `timeout`.
    fn shutdown(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut q = self.shared.queue.lock();
        q.closed = true;
        // Send now rather than after a nap; a sleeping sender wakes, sees the end, and exits.
        q.napping = false;
        q.sender_waiting = false;
        self.shared.work.notify_one();
        while (!q.buf.is_empty() || q.in_flight) && !q.no_sender {
            if self.shared.drained.wait_until(&mut q, deadline).timed_out() {
                break;
            }
        }
        let left = count_datagrams(&q.buf);
        q.buf = Vec::new();
        let in_flight = q.in_flight;
        drop(q);
        if left > 0 {
            self.shared.failed.fetch_add(left, Ordering::Relaxed);
            *self.shared.last_error.lock() = Some(crate::transport::TransportErrorKind::Closed);
        }
        let handle = self.thread.lock().take();
        if let Some(handle) = handle {
            // With nothing in flight the thread sees the queue closed and empty, and returns
            // at once: joining it cannot wait. Otherwise it is in a send that has not returned,
            // and is left to finish it on its own.
            if !in_flight || handle.is_finished() {
                let _ = handle.join();
            }
        }
        if left > 0 || in_flight {
            tracing::warn!(
                target: "xray_sdk::emitter",
                given_up = left,
                in_flight,
                "X-Ray emitter shut down before it could send everything; what was queued is \
                 counted as failed, and a send that has not returned is left to finish"
            );
        }
        left == 0 && !in_flight
    }

    fn delivery(&self) -> Option<super::Delivery> {
        Some(super::Delivery {
            sent: self.shared.sent.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            last_error: *self.shared.last_error.lock(),
        })
    }
}

impl Drop for BackgroundEmitter {
    /// Shuts down within [`DROP_TIMEOUT`](Self::DROP_TIMEOUT), unless that was done already.
    fn drop(&mut self) {
        if self.thread.get_mut().is_none() {
            // Shut down before (or never started): nothing is left to wait for.
            return;
        }
        self.shutdown(Self::DROP_TIMEOUT);
    }
}
