//! A small blocking HTTP/1.1 client for the daemon's sampling proxy.
//!
//! The proxy takes plain, unsigned `POST`s with a JSON body and answers with JSON. Two calls
//! every ten seconds do not justify an HTTP stack and an async runtime in every application that
//! traces, so this is a request writer and a response parser over `std::net::TcpStream`: one
//! connection per call (`Connection: close`), `Content-Length` and `chunked` bodies (read by
//! the crate's `http1` module), and hard bounds on every length so that a broken or hostile
//! peer costs at most a few kilobytes of headers, [`MAX_BODY`] of body and [`Deadline`] of
//! time.

use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::http1;

/// Largest response body accepted. A page of sampling rules is a few kilobytes (an account has
/// at most a few dozen rules); a body past this is refused rather than buffered.
pub(crate) const MAX_BODY: usize = 1024 * 1024;

// ===== SamplingProxyError =====

/// A call to the X-Ray daemon's sampling proxy failed.
///
/// [`CentralizedSampler`](crate::sampling::CentralizedSampler) keeps deciding with the rules it has
/// (or
/// its local fallback rules) when this happens, and tries again at the next poll; the error is
/// returned only by the methods that poll on demand.
///
/// # Formatting
///
/// The message names the call, the proxy address and what went wrong; it never prints the
/// underlying I/O or JSON error, which is available through [`source`](std::error::Error::source).
///
/// # Examples
///
/// ```
/// use xray_sdk::sampling::{CentralizedSampler, SamplingProxyErrorKind};
///
/// // A loopback port that was free a moment ago: nothing listens there.
/// let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
/// let sampler = CentralizedSampler::builder(closed)
///     .with_background_polling(false)
///     .build();
/// let err = sampler.refresh_rules_now().unwrap_err();
/// assert_eq!(err.kind(), SamplingProxyErrorKind::Unreachable);
/// assert_eq!(err.operation(), "GetSamplingRules");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SamplingProxyError {
    // Boxed: failures are rare, and a one-pointer `Result` keeps the success path small.
    inner: Box<Inner>,
}

#[derive(Debug, thiserror::Error)]
#[error("{operation} through the X-Ray daemon at {proxy} failed: {}", Detail(.kind, .status))]
struct Inner {
    kind: SamplingProxyErrorKind,
    operation: &'static str,
    proxy: SocketAddr,
    status: Option<u16>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// What kind of failure a [`SamplingProxyError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SamplingProxyErrorKind {
    /// No connection could be made: the daemon is not running or not listening on TCP there.
    Unreachable,
    /// The proxy did not answer in time.
    Timeout,
    /// The connection failed while the request or the response was in transit.
    Io,
    /// The proxy answered with an HTTP status other than 200 (see
    /// [`SamplingProxyError::status`]); the daemon passes X-Ray's own errors through, such as
    /// 403 when its credentials may not call the sampling API.
    Status,
    /// The response is not well-formed HTTP/1.1.
    Protocol,
    /// The response is larger than the sampler accepts (1 MiB of body).
    TooLarge,
    /// The response body is not the JSON the sampling API returns.
    Json,
}

struct Detail<'a>(&'a SamplingProxyErrorKind, &'a Option<u16>);

impl fmt::Display for Detail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SamplingProxyErrorKind::Unreachable => {
                f.write_str("cannot connect (is the daemon running, with its TCP address here?)")
            }
            SamplingProxyErrorKind::Timeout => f.write_str("no answer in time"),
            SamplingProxyErrorKind::Io => f.write_str("the connection failed"),
            SamplingProxyErrorKind::Status => match self.1 {
                Some(status) => write!(f, "the proxy answered HTTP {status}"),
                None => f.write_str("the proxy answered with an error status"),
            },
            SamplingProxyErrorKind::Protocol => f.write_str("the response is not valid HTTP/1.1"),
            SamplingProxyErrorKind::TooLarge => f.write_str("the response is larger than 1 MiB"),
            SamplingProxyErrorKind::Json => {
                f.write_str("the response is not the JSON the sampling API returns")
            }
        }
    }
}

impl SamplingProxyError {
    pub(crate) fn new(
        kind: SamplingProxyErrorKind,
        operation: &'static str,
        proxy: SocketAddr,
    ) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                operation,
                proxy,
                status: None,
                source: None,
            }),
        }
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.inner.source = Some(Box::new(source));
        self
    }

    fn with_status(mut self, status: u16) -> Self {
        self.inner.status = Some(status);
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> SamplingProxyErrorKind {
        self.inner.kind
    }

    /// The API call that failed: `GetSamplingRules` or `SamplingTargets`.
    pub fn operation(&self) -> &'static str {
        self.inner.operation
    }

    /// The proxy address that was called.
    pub fn proxy(&self) -> SocketAddr {
        self.inner.proxy
    }

    /// The HTTP status, for [`SamplingProxyErrorKind::Status`].
    pub fn status(&self) -> Option<u16> {
        self.inner.status
    }
}

// ===== the client =====

/// Posts `body` as JSON to `path` on `proxy` and returns the body of a 200 response.
///
/// `timeout` bounds the connection, each read and write, and (twice over) the whole exchange
/// after connecting, so a peer that trickles bytes cannot hold the poller for long.
pub(crate) fn post_json(
    proxy: SocketAddr,
    operation: &'static str,
    body: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, SamplingProxyError> {
    let fail = |kind| SamplingProxyError::new(kind, operation, proxy);
    let from_io = |e: io::Error| {
        let kind = match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => SamplingProxyErrorKind::Timeout,
            io::ErrorKind::InvalidData => SamplingProxyErrorKind::Protocol,
            io::ErrorKind::FileTooLarge => SamplingProxyErrorKind::TooLarge,
            _ => SamplingProxyErrorKind::Io,
        };
        fail(kind).with_source(e)
    };

    let stream = TcpStream::connect_timeout(&proxy, timeout).map_err(|e| {
        let kind = if e.kind() == io::ErrorKind::TimedOut {
            SamplingProxyErrorKind::Timeout
        } else {
            SamplingProxyErrorKind::Unreachable
        };
        fail(kind).with_source(e)
    })?;
    // Two small writes per call: without Nagle's algorithm nothing waits for an ACK.
    let _ = stream.set_nodelay(true);
    let deadline = Deadline {
        stream: &stream,
        per_op: timeout,
        end: Instant::now() + timeout.saturating_mul(2),
    };

    let mut request = Vec::with_capacity(160 + body.len());
    // `write!` into a Vec cannot fail.
    let _ = write!(
        request,
        "POST /{operation} HTTP/1.1\r\nHost: {proxy}\r\nUser-Agent: xray-rs/{}\r\n\
         Content-Type: application/json\r\nAccept: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    request.extend_from_slice(body);
    deadline.arm_write().map_err(from_io)?;
    (&stream).write_all(&request).map_err(from_io)?;
    (&stream).flush().map_err(from_io)?;

    let mut reader = BufReader::new(deadline);
    let (status, framing) = http1::read_head(&mut reader, MAX_BODY).map_err(from_io)?;
    if status != 200 {
        return Err(fail(SamplingProxyErrorKind::Status).with_status(status));
    }
    http1::read_body(&mut reader, framing, MAX_BODY).map_err(from_io)
}

/// A reader over the stream that gives every read the smaller of the per-operation timeout and
/// what is left of the whole exchange.
struct Deadline<'s> {
    stream: &'s TcpStream,
    per_op: Duration,
    end: Instant,
}

impl Deadline<'_> {
    fn remaining(&self) -> io::Result<Duration> {
        let left = self.end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "exchange deadline"));
        }
        Ok(left.min(self.per_op))
    }

    fn arm_write(&self) -> io::Result<()> {
        self.stream.set_write_timeout(Some(self.remaining()?))
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.remaining()?))?;
        let mut stream = self.stream;
        stream.read(buf)
    }
}
