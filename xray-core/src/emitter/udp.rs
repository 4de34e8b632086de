use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use super::{Datagram, EmitError, Emitter};

/// Sends datagrams to the X-Ray daemon over UDP.
///
/// The socket is created once, connected to the daemon (so a daemon that is down shows up as
/// [`EmitError::ConnectionRefused`] instead of silence) and non-blocking, so a full send buffer
/// drops the datagram instead of stalling the caller.
///
/// # Examples
///
/// ```
/// use std::net::UdpSocket;
/// use xray_core::{Datagram, Emitter, UdpEmitter, DAEMON_HEADER};
///
/// let daemon = UdpSocket::bind("127.0.0.1:0")?;
/// let emitter = UdpEmitter::new(daemon.local_addr()?)?;
///
/// let mut bytes = DAEMON_HEADER.to_vec();
/// bytes.extend_from_slice(br#"{"name":"a"}"#);
/// emitter.emit(Datagram::new(&bytes).unwrap())?;
///
/// let mut buf = [0u8; 128];
/// let n = daemon.recv(&mut buf)?;
/// assert_eq!(&buf[..n], &bytes[..]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct UdpEmitter {
    socket: UdpSocket,
    daemon: SocketAddr,
}

impl UdpEmitter {
    /// A socket connected to the daemon at `daemon`.
    pub fn new(daemon: SocketAddr) -> io::Result<Self> {
        let local: SocketAddr = if daemon.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(daemon)?;
        socket.set_nonblocking(true)?;
        Ok(Self { socket, daemon })
    }

    /// The daemon's address.
    pub fn daemon_addr(&self) -> SocketAddr {
        self.daemon
    }
}

impl Emitter for UdpEmitter {
    fn emit(&self, datagram: Datagram<'_>) -> Result<(), EmitError> {
        match self.socket.send(datagram.as_bytes()) {
            Ok(_) => Ok(()),
            Err(e) => Err(match e.kind() {
                io::ErrorKind::ConnectionRefused => EmitError::ConnectionRefused,
                io::ErrorKind::WouldBlock => EmitError::Full,
                _ if e.raw_os_error() == Some(EMSGSIZE) => EmitError::TooLarge,
                _ => EmitError::Io(e),
            }),
        }
    }
}

// EMSGSIZE on Linux and the BSDs/macOS respectively.
#[cfg(target_os = "linux")]
const EMSGSIZE: i32 = 90;
#[cfg(not(target_os = "linux"))]
const EMSGSIZE: i32 = 40;
