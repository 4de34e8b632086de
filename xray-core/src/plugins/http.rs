//! One HTTP/1.1 request over `std::net::TcpStream`, for the link-local metadata endpoints
//! (EC2 instance metadata, the ECS task metadata endpoint).
//!
//! The request and the time bounds are its own: every step of every call is bounded by one
//! absolute deadline, the detection budget, shared by all plugins. The response is read by
//! the crate's `http1` module, with a body cap of [`MAX_BODY`].
//!
//! Every call is `Connection: close`; nothing is pooled, since detection runs once.

use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::http1;

/// Largest response body read. An identity document is about 500 bytes and a task's metadata a
/// few kilobytes per container; a longer body is refused, not buffered.
pub(super) const MAX_BODY: usize = 64 * 1024;
/// Longest wait for a connection. Link-local endpoints accept in well under a millisecond
/// where they exist; where they do not, the SYN is usually dropped, and waiting the whole
/// budget there would leave nothing for the plugins after. (The Java SDK waits 100 ms.)
const CONNECT_CAP: Duration = Duration::from_millis(250);

// ===== Url =====

/// An `http://` URL, split for the request line and the `Host` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Url {
    /// The host as written, without IPv6 brackets.
    host: String,
    port: u16,
    /// Starts with `/`.
    path: String,
}

impl Url {
    /// Parses `http://host[:port][/path]`. `https`, user info and anything but a host and an
    /// optional port before the path are refused: these endpoints are plain HTTP.
    pub(super) fn parse(s: &str) -> Result<Url, String> {
        let s = s.trim();
        let rest = strip_prefix_ignore_case(s, "http://").ok_or_else(|| {
            if strip_prefix_ignore_case(s, "https://").is_some() {
                format!("{s:?}: only http:// endpoints are supported (no TLS in xray-sdk)")
            } else {
                format!("{s:?} is not an http:// URL")
            }
        })?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{s:?}: expected http://host[:port][/path]"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: unclosed [ in the host"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("{s:?}: expected :port after ]"))?,
                ),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{s:?}: the host is missing"));
        }
        let port = match port {
            None | Some("") => 80,
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("{s:?}: the port is not a number from 0 to 65535"))?,
        };
        // The query and fragment play no part in these endpoints.
        let path = tail.split(['?', '#']).next().unwrap_or_default();
        Ok(Url {
            host: host.to_owned(),
            port,
            path: if path.is_empty() {
                "/".to_owned()
            } else {
                path.to_owned()
            },
        })
    }

    /// This URL with `suffix` (which starts with `/`) appended to its path, without doubling
    /// the slash.
    pub(super) fn join(&self, suffix: &str) -> Url {
        let base = self.path.trim_end_matches('/');
        Url {
            host: self.host.clone(),
            port: self.port,
            path: format!("{base}{suffix}"),
        }
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.host_header(), self.path)
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.get(..prefix.len())?.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

// ===== the request =====

/// A response: the status, and for a 2xx status the body (empty otherwise: nothing here
/// reads the body of an error).
#[derive(Debug)]
pub(super) struct Response {
    pub(super) status: u16,
    pub(super) body: Vec<u8>,
}

/// Sends one request without a body and reads the response, all before `deadline`.
///
/// Errors are I/O errors whose message names what failed; a read that runs out of time is
/// `TimedOut`, a malformed response `InvalidData`, a body over [`MAX_BODY`] `FileTooLarge`.
pub(super) fn send(
    method: &str,
    url: &Url,
    headers: &[(&str, &str)],
    deadline: Instant,
) -> io::Result<Response> {
    let addr = resolve(url, deadline)?;
    let stream = TcpStream::connect_timeout(&addr, remaining(deadline)?.min(CONNECT_CAP))?;
    // One small write per call: nothing to gain from Nagle's algorithm.
    let _ = stream.set_nodelay(true);

    let mut request = Vec::with_capacity(256);
    // `write!` into a Vec cannot fail.
    let _ = write!(
        request,
        "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: xray-rs/{}\r\nAccept: */*\r\n\
         Connection: close\r\n",
        url.path,
        url.host_header(),
        env!("CARGO_PKG_VERSION"),
    );
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    if method != "GET" {
        // A PUT without a body still says so: some servers wait for a length otherwise.
        request.extend_from_slice(b"Content-Length: 0\r\n");
    }
    request.extend_from_slice(b"\r\n");
    stream
        .set_write_timeout(Some(remaining(deadline)?))
        .map_err(timed_out)?;
    (&stream).write_all(&request).map_err(timed_out)?;

    let mut reader = BufReader::new(Timed {
        stream: &stream,
        deadline,
    });
    let (status, framing) = http1::read_head(&mut reader, MAX_BODY).map_err(timed_out)?;
    let body = if (200..300).contains(&status) {
        http1::read_body(&mut reader, framing, MAX_BODY).map_err(timed_out)?
    } else {
        Vec::new()
    };
    Ok(Response { status, body })
}

/// What is left of the budget, or `TimedOut` when nothing is.
fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the detection budget is spent",
        ))
    } else {
        Ok(left)
    }
}

/// Socket timeouts surface as `WouldBlock` on Unix: say what they mean.
fn timed_out(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(io::ErrorKind::TimedOut, "no answer in time")
    } else {
        e
    }
}

/// The address to connect to. An IP literal needs no lookup; a host name is looked up on a
/// helper thread, so that a slow resolver costs at most the budget (the thread finishes its
/// lookup on its own and its answer is dropped).
fn resolve(url: &Url, deadline: Instant) -> io::Result<SocketAddr> {
    if let Ok(ip) = url.host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, url.port));
    }
    let (tx, rx) = mpsc::channel();
    let target = (url.host.clone(), url.port);
    std::thread::Builder::new()
        .name("xray-plugins-dns".to_owned())
        .spawn(move || {
            let found = target.to_socket_addrs().map(|addrs| {
                let all: Vec<SocketAddr> = addrs.collect();
                // Prefer IPv4, as the metadata endpoints' defaults are IPv4.
                all.iter()
                    .find(|a| a.is_ipv4())
                    .or_else(|| all.first())
                    .copied()
            });
            let _ = tx.send(found);
        })?;
    match rx.recv_timeout(remaining(deadline)?) {
        Ok(Ok(Some(addr))) => Ok(addr),
        Ok(Ok(None)) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} has no address", url.host),
        )),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("looking up {} took too long", url.host),
        )),
    }
}

/// A reader that gives every read what is left of the budget.
struct Timed<'s> {
    stream: &'s TcpStream,
    deadline: Instant,
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream
            .set_read_timeout(Some(remaining(self.deadline)?))?;
        let mut stream = self.stream;
        stream.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("http://169.254.170.2/v4/abc-123").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("169.254.170.2", 80, "/v4/abc-123")
        );
        assert_eq!(
            u.join("/task").to_string(),
            "http://169.254.170.2/v4/abc-123/task"
        );

        let u = Url::parse("HTTP://127.0.0.1:1338/").unwrap();
        assert_eq!(u.join("/latest/api/token").path, "/latest/api/token");
        assert_eq!(u.host_header(), "127.0.0.1:1338");

        let u = Url::parse("http://[fd00:ec2::254]").unwrap();
        assert_eq!(u.host, "fd00:ec2::254");
        assert_eq!(u.to_string(), "http://[fd00:ec2::254]/");

        for bad in [
            "https://169.254.169.254",
            "169.254.169.254",
            "http://",
            "http://:80/",
            "http://user@host/",
            "http://host:99999/",
            "http://[::1/",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }
}
