//! One HTTP/1.1 request over `std::net::TcpStream`, for the link-local metadata endpoints
//! (EC2 instance metadata, the ECS task metadata endpoint).
//!
//! Why not `sampling/centralized_http.rs`: that client bounds each call by a timeout of its own
//! (twice over) and accepts 1 MiB of body, and it lives private to the sampling module. Here
//! every step of every call is bounded by one absolute deadline, the detection budget, shared by
//! all plugins; and the body cap is [`MAX_BODY`]. The framing code is the same in spirit
//! (`Content-Length`, `chunked`, until close; bounded lines and header counts): when a third
//! user appears, both belong in one crate-wide module.
//!
//! Every call is `Connection: close`; nothing is pooled, since detection runs once.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Largest response body read. An identity document is about 500 bytes and a task's metadata a
/// few kilobytes per container; a longer body is refused, not buffered.
pub(super) const MAX_BODY: usize = 64 * 1024;
/// Longest status, header or chunk-size line.
const MAX_LINE: usize = 8 * 1024;
/// Most header (or trailer) lines in one response.
const MAX_HEADERS: usize = 100;
/// Most interim (`1xx`) responses skipped before the final one.
const MAX_INTERIM: usize = 4;
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
                format!("{s:?}: only http:// endpoints are supported (no TLS in xray-core)")
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
    let (status, framing) = read_head(&mut reader).map_err(timed_out)?;
    let body = if (200..300).contains(&status) {
        read_body(&mut reader, framing).map_err(timed_out)?
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

// ===== the response =====

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        "the response body is larger than 64 KiB",
    )
}

/// One line of at most [`MAX_LINE`] bytes, without its CRLF (or LF).
fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    let n = reader
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection closed before the response ended",
        ));
    }
    if line.last() != Some(&b'\n') {
        return Err(invalid("response line too long or truncated"));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| invalid("response line is not UTF-8"))
}

/// The status and body framing of the final response, skipping interim `1xx` ones.
fn read_head(reader: &mut impl BufRead) -> io::Result<(u16, Framing)> {
    for _ in 0..=MAX_INTERIM {
        let status_line = read_line(reader)?;
        let mut parts = status_line.splitn(3, ' ');
        if !parts.next().unwrap_or_default().starts_with("HTTP/1.") {
            return Err(invalid("not an HTTP/1.x status line"));
        }
        let status: u16 = parts
            .next()
            .filter(|code| code.len() == 3)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid("bad status code"))?;
        let mut length = None;
        let mut chunked = false;
        let mut ended = false;
        for _ in 0..MAX_HEADERS {
            let line = read_line(reader)?;
            if line.is_empty() {
                ended = true;
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| invalid("header line without ':'"))?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                let n: usize = value.parse().map_err(|_| invalid("bad Content-Length"))?;
                if length.is_some_and(|m| m != n) {
                    return Err(invalid("conflicting Content-Length headers"));
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                // The last coding decides (RFC 9112, 6.3).
                chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            }
        }
        if !ended {
            return Err(invalid("too many header lines"));
        }
        if (100..200).contains(&status) {
            continue;
        }
        let framing = match (chunked, length) {
            (true, _) => Framing::Chunked,
            (false, Some(n)) if n > MAX_BODY => return Err(too_large()),
            (false, Some(n)) => Framing::Length(n),
            (false, None) => Framing::UntilClose,
        };
        return Ok((status, framing));
    }
    Err(invalid("too many interim responses"))
}

fn read_body(reader: &mut impl BufRead, framing: Framing) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    match framing {
        Framing::Length(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body)?;
        }
        Framing::UntilClose => {
            reader
                .by_ref()
                .take(MAX_BODY as u64 + 1)
                .read_to_end(&mut body)?;
            if body.len() > MAX_BODY {
                return Err(too_large());
            }
        }
        Framing::Chunked => loop {
            let line = read_line(reader)?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size =
                usize::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size line"))?;
            if size == 0 {
                for _ in 0..MAX_HEADERS {
                    if read_line(reader)?.is_empty() {
                        return Ok(body);
                    }
                }
                return Err(invalid("too many trailer lines"));
            }
            let start = body.len();
            if size > MAX_BODY - start {
                return Err(too_large());
            }
            body.resize(start + size, 0);
            reader.read_exact(body.get_mut(start..).unwrap_or_default())?;
            if !read_line(reader)?.is_empty() {
                return Err(invalid("chunk longer than its size line says"));
            }
        },
    }
    Ok(body)
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

    #[test]
    fn framing() {
        let mut r = &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"[..];
        let (status, framing) = read_head(&mut r).unwrap();
        assert_eq!((status, framing), (200, Framing::Chunked));
        assert_eq!(read_body(&mut r, framing).unwrap(), b"abcde");

        let mut r = &b"HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n"[..];
        assert_eq!(
            read_head(&mut r).unwrap_err().kind(),
            io::ErrorKind::FileTooLarge
        );

        let mut r = &b"SSH-2.0-OpenSSH\r\n"[..];
        assert_eq!(
            read_head(&mut r).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
