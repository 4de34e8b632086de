use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{Datagram, EmitError, Emitter};

/// Keeps emitted documents in memory, for tests of code that uses this SDK.
///
/// Clones share the same store. It holds at most `capacity` documents (10,000 by default);
/// past that, new documents are counted in [`dropped`](Self::dropped) and not kept.
///
/// # Examples
///
/// ```
/// use xray_sdk::InMemoryEmitter;
/// use xray_sdk::transport::{Datagram, Emitter, DAEMON_HEADER};
///
/// let emitter = InMemoryEmitter::new();
/// let mut bytes = DAEMON_HEADER.to_vec();
/// bytes.extend_from_slice(br#"{"name":"checkout"}"#);
/// emitter.emit(Datagram::new(&bytes).unwrap())?;
///
/// let docs = emitter.documents();
/// assert_eq!(docs[0]["name"], "checkout");
/// # Ok::<(), xray_sdk::transport::EmitError>(())
/// ```
#[derive(Debug, Clone)]
pub struct InMemoryEmitter {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    docs: Mutex<Vec<Vec<u8>>>,
    arrived: Condvar,
    capacity: usize,
    dropped: AtomicU64,
}

impl InMemoryEmitter {
    /// An empty store with room for 10,000 documents.
    pub fn new() -> Self {
        Self::with_capacity(10_000)
    }

    /// An empty store with room for `capacity` documents.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                docs: Mutex::new(Vec::new()),
                arrived: Condvar::new(),
                capacity,
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// The documents received so far, parsed, in arrival order.
    pub fn documents(&self) -> Vec<serde_json::Value> {
        self.raw_documents()
            .iter()
            .filter_map(|d| serde_json::from_slice(d).ok())
            .collect()
    }

    /// The documents received so far, as the bytes that were sent (daemon header excluded).
    pub fn raw_documents(&self) -> Vec<Vec<u8>> {
        self.shared.docs.lock().clone()
    }

    /// Removes and returns the documents received so far, parsed.
    pub fn take(&self) -> Vec<serde_json::Value> {
        let docs = std::mem::take(&mut *self.shared.docs.lock());
        docs.iter()
            .filter_map(|d| serde_json::from_slice(d).ok())
            .collect()
    }

    /// How many documents are held.
    pub fn len(&self) -> usize {
        self.shared.docs.lock().len()
    }

    /// Whether no document is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many documents arrived when the store was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` documents are held or `timeout` passes; returns whether they
    /// are.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut docs = self.shared.docs.lock();
        while docs.len() < n {
            if self
                .shared
                .arrived
                .wait_until(&mut docs, deadline)
                .timed_out()
            {
                return docs.len() >= n;
            }
        }
        true
    }
}

impl Default for InMemoryEmitter {
    fn default() -> Self {
        Self::new()
    }
}

impl Emitter for InMemoryEmitter {
    fn emit(&self, datagram: Datagram<'_>) -> Result<(), EmitError> {
        let mut docs = self.shared.docs.lock();
        if docs.len() >= self.shared.capacity {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(EmitError::Full);
        }
        docs.push(datagram.document().to_vec());
        drop(docs);
        self.shared.arrived.notify_all();
        Ok(())
    }
}
