//! Datagram sinks: where the UDP transports' datagrams go.

mod background;
mod memory;
mod udp;

use std::fmt;

pub use background::BackgroundEmitter;
pub use memory::InMemoryEmitter;
pub use udp::UdpEmitter;

/// The header line that starts every datagram sent to the daemon, `\n` included.
pub const DAEMON_HEADER: &[u8] = b"{\"format\":\"json\",\"version\":1}\n";

/// The most bytes one datagram may hold, daemon header included: 63 KiB.
///
/// The daemon reads each datagram into a fixed 64 KiB buffer and the service refuses documents
/// over 64 kB; the recorder splits or trims anything larger before it reaches an emitter.
pub const MAX_DATAGRAM_LEN: usize = 63 * 1024;

/// One datagram for the daemon: the [`DAEMON_HEADER`] line followed by one JSON document.
///
/// # Examples
///
/// ```
/// use xray_sdk::transport::Datagram;
///
/// let bytes = b"{\"format\":\"json\",\"version\":1}\n{\"name\":\"a\"}";
/// let datagram = Datagram::new(bytes).unwrap();
/// assert_eq!(datagram.document(), b"{\"name\":\"a\"}");
/// ```
#[derive(Clone, Copy)]
pub struct Datagram<'a> {
    bytes: &'a [u8],
}

impl<'a> Datagram<'a> {
    /// Wraps bytes that start with [`DAEMON_HEADER`]; `None` otherwise.
    pub fn new(bytes: &'a [u8]) -> Option<Self> {
        bytes.starts_with(DAEMON_HEADER).then_some(Self { bytes })
    }

    /// The whole datagram, header line included: what goes on the wire.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The JSON document alone.
    pub fn document(&self) -> &'a [u8] {
        self.bytes.get(DAEMON_HEADER.len()..).unwrap_or_default()
    }
}

impl fmt::Debug for Datagram<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Datagram")
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Why a datagram was not sent. The transport counts these and logs them at most once per
/// interval; they never reach application code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// Nothing listens at the daemon address (the last send was refused).
    #[error("the X-Ray daemon refused the datagram (is it running?)")]
    ConnectionRefused,
    /// The socket's send buffer or the emitter's queue was full; the datagram was dropped
    /// rather than block the caller.
    #[error("the send buffer or queue is full; the datagram was dropped rather than block")]
    Full,
    /// The datagram is larger than the network allows.
    #[error("the datagram is too large to send")]
    TooLarge,
    /// The emitter has been shut down.
    #[error("the emitter is shut down")]
    Closed,
    /// Any other I/O error.
    #[error("sending the datagram failed")]
    Io(#[source] std::io::Error),
}

/// Where datagrams go: the sink under [`SegmentTransport`](crate::transport::SegmentTransport).
///
/// The transport hands an emitter one [`Datagram`] per document, already framed and within
/// [`MAX_DATAGRAM_LEN`]. Implementations must not block the caller for long: a full buffer is
/// an [`EmitError::Full`], not a wait.
pub trait Emitter: Send + Sync + fmt::Debug {
    /// Sends one datagram.
    fn emit(&self, datagram: Datagram<'_>) -> Result<(), EmitError>;

    /// Waits until everything accepted so far has been handed to the network (or the timeout
    /// passes): for short-lived processes before they exit. Returns whether it drained.
    fn flush(&self, timeout: std::time::Duration) -> bool {
        let _ = timeout;
        true
    }

    /// Flushes within `timeout`, then stops taking datagrams: the process is about to exit.
    /// It must return by `timeout` whatever the network does; what it could not send by then is
    /// given up, and counted as failed in [`delivery`](Self::delivery). Returns whether
    /// everything accepted was sent. The default only flushes.
    fn shutdown(&self, timeout: std::time::Duration) -> bool {
        self.flush(timeout)
    }

    /// Sends `datagrams` in order, as [`emit`](Self::emit) would one by one, and returns how
    /// many were sent; `failed` hears why each of the others was not. The default sends one at
    /// a time; [`UdpEmitter`] sends a batch with one `sendmmsg` system call where the system
    /// has it.
    fn emit_batch(&self, datagrams: &[Datagram<'_>], failed: &mut dyn FnMut(EmitError)) -> usize {
        let mut sent = 0;
        for d in datagrams {
            match self.emit(*d) {
                Ok(()) => sent += 1,
                Err(e) => failed(e),
            }
        }
        sent
    }

    /// For an emitter that sends later, such as a queue: what it has sent and failed to send
    /// since it was made. `None` (the default) means a datagram accepted by
    /// [`emit`](Self::emit) has been sent.
    fn delivery(&self) -> Option<Delivery> {
        None
    }
}

/// What an emitter that sends later has done with the datagrams it accepted; see
/// [`Emitter::delivery`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivery {
    /// Datagrams handed to the network.
    pub sent: u64,
    /// Datagrams the send failed for.
    pub failed: u64,
    /// The kind of the last failure.
    pub last_error: Option<crate::transport::TransportErrorKind>,
}

impl<E: Emitter + ?Sized> Emitter for std::sync::Arc<E> {
    fn emit(&self, datagram: Datagram<'_>) -> Result<(), EmitError> {
        (**self).emit(datagram)
    }

    fn flush(&self, timeout: std::time::Duration) -> bool {
        (**self).flush(timeout)
    }

    fn shutdown(&self, timeout: std::time::Duration) -> bool {
        (**self).shutdown(timeout)
    }

    fn emit_batch(&self, datagrams: &[Datagram<'_>], failed: &mut dyn FnMut(EmitError)) -> usize {
        (**self).emit_batch(datagrams, failed)
    }

    fn delivery(&self) -> Option<Delivery> {
        (**self).delivery()
    }
}

impl<E: Emitter + ?Sized> Emitter for Box<E> {
    fn emit(&self, datagram: Datagram<'_>) -> Result<(), EmitError> {
        (**self).emit(datagram)
    }

    fn flush(&self, timeout: std::time::Duration) -> bool {
        (**self).flush(timeout)
    }

    fn shutdown(&self, timeout: std::time::Duration) -> bool {
        (**self).shutdown(timeout)
    }

    fn emit_batch(&self, datagrams: &[Datagram<'_>], failed: &mut dyn FnMut(EmitError)) -> usize {
        (**self).emit_batch(datagrams, failed)
    }

    fn delivery(&self) -> Option<Delivery> {
        (**self).delivery()
    }
}
