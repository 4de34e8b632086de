//! The response side of HTTP/1.1 over a blocking reader, shared by the crate's two small
//! clients: the sampling proxy's (`sampling/centralized_http.rs`) and the metadata endpoints'
//! (`plugins/http.rs`). Each bounds time itself (its reader gives every read what is left of
//! its budget); this bounds everything else: line lengths, header and trailer counts, interim
//! responses, and the body, at the cap each caller passes.

use std::io::{self, BufRead, Read};

/// Longest status, header or chunk-size line.
const MAX_LINE: usize = 8 * 1024;
/// Most header (or trailer) lines in one response.
const MAX_HEADERS: usize = 100;
/// Most interim (`1xx`) responses skipped before the final one.
const MAX_INTERIM: usize = 4;

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn too_large(max_body: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("the response body is larger than {} KiB", max_body / 1024),
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

/// The status and body framing of the final response, skipping interim `1xx` ones. A
/// `Content-Length` over `max_body` is refused here, before any of the body is read.
///
/// Errors: `InvalidData` for a malformed response, `FileTooLarge` for a body over the cap,
/// `UnexpectedEof` for a response cut short, and whatever the reader returns.
pub(crate) fn read_head(reader: &mut impl BufRead, max_body: usize) -> io::Result<(u16, Framing)> {
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
            (false, Some(n)) if n > max_body => return Err(too_large(max_body)),
            (false, Some(n)) => Framing::Length(n),
            (false, None) => Framing::UntilClose,
        };
        return Ok((status, framing));
    }
    Err(invalid("too many interim responses"))
}

/// The body, as `framing` delimits it, of at most `max_body` bytes.
pub(crate) fn read_body(
    reader: &mut impl BufRead,
    framing: Framing,
    max_body: usize,
) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    match framing {
        Framing::Length(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body)?;
        }
        Framing::UntilClose => {
            reader
                .by_ref()
                .take(max_body as u64 + 1)
                .read_to_end(&mut body)?;
            if body.len() > max_body {
                return Err(too_large(max_body));
            }
        }
        Framing::Chunked => loop {
            let line = read_line(reader)?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size =
                usize::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size line"))?;
            if size == 0 {
                // Trailer fields, then the empty line that ends the message.
                for _ in 0..MAX_HEADERS {
                    if read_line(reader)?.is_empty() {
                        return Ok(body);
                    }
                }
                return Err(invalid("too many trailer lines"));
            }
            let start = body.len();
            if size > max_body - start {
                return Err(too_large(max_body));
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
    fn framing() {
        let mut r = &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"[..];
        let (status, framing) = read_head(&mut r, 64).unwrap();
        assert_eq!((status, framing), (200, Framing::Chunked));
        assert_eq!(read_body(&mut r, framing, 64).unwrap(), b"abcde");

        let mut r = &b"HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n"[..];
        assert_eq!(
            read_head(&mut r, 64 * 1024).unwrap_err().kind(),
            io::ErrorKind::FileTooLarge
        );

        let mut r =
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n"[..];
        let (_, framing) = read_head(&mut r, 4).unwrap();
        assert_eq!(
            read_body(&mut r, framing, 4).unwrap_err().kind(),
            io::ErrorKind::FileTooLarge
        );

        let mut r = &b"SSH-2.0-OpenSSH\r\n"[..];
        assert_eq!(
            read_head(&mut r, 64).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
