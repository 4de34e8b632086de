//! HTTP/1.1 written by hand: requests with exactly the headers a test chooses (a foreign
//! `Host`, an `Origin`, none at all), and clients that misbehave (silent, or slow).
#![allow(dead_code, unreachable_pub)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One request over a fresh connection with `Connection: close`; returns the status and the
/// body. `headers` go out as given, so a test picks the `Host` (or sends none);
/// `Content-Length` is added.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    // One write, so that the server reads the body with the head: a request it refuses
    // without reading the body then ends in a close, not a reset.
    head.push_str(body);
    stream.write_all(head.as_bytes())?;
    let mut response = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // The answer came, then a reset (the server closed with bytes unread).
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset && !response.is_empty() => {
                break;
            }
            Err(err) => return Err(err),
        }
    }
    parse(&response)
}

/// A request as an SDK or `curl` sends it: `Host` is the address itself, JSON, no `Origin`.
pub fn local(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> io::Result<(u16, String)> {
    let host = addr.to_string();
    let headers = [
        ("Host", host.as_str()),
        ("Content-Type", "application/json"),
    ];
    request(addr, method, path, &headers, body, timeout)
}

fn parse(response: &[u8]) -> io::Result<(u16, String)> {
    let text = String::from_utf8_lossy(response);
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not an HTTP response: {text:?}"),
        )
    };
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, body_of(head, body).ok_or_else(bad)?))
}

/// The body after `head`: as it came, or joined from its chunks when `head` says
/// `Transfer-Encoding: chunked` (a list of traces is written as the client reads it). `None`
/// for chunks cut short.
pub fn body_of(head: &str, rest: &str) -> Option<String> {
    let chunked = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked")
        })
    });
    if !chunked {
        return Some(rest.to_owned());
    }
    let mut body = String::new();
    let mut rest = rest;
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.push_str(after.get(..size)?);
        rest = after.get(size..)?.strip_prefix("\r\n")?;
    }
}

/// Connects, writes `head` at once, then `trickle` one byte every `every`, reading all the
/// while. Returns how long after connecting the server closed the connection, or `None` if it
/// was still open after `limit`. An answer before the close (a 408, say) is read and ignored.
pub fn closed_after(
    addr: SocketAddr,
    head: &[u8],
    trickle: &[u8],
    every: Duration,
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .ok()?;
    if stream.write_all(head).is_err() {
        return Some(started.elapsed());
    }
    let mut next = 0;
    let mut due = started + every;
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            // Reset: closed.
            Err(_) => return Some(started.elapsed()),
        }
        if let Some(&byte) = trickle.get(next)
            && Instant::now() >= due
        {
            if stream.write_all(&[byte]).is_err() {
                return Some(started.elapsed());
            }
            next += 1;
            due += every;
        }
    }
    None
}
