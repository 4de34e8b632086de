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
/// use xray_sdk::transport::{Datagram, Emitter, UdpEmitter, DAEMON_HEADER};
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

    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd"
    ))]
    fn emit_batch(&self, datagrams: &[Datagram<'_>], failed: &mut dyn FnMut(EmitError)) -> usize {
        self.send_batch(datagrams, failed)
    }
}

// EMSGSIZE on Linux and the BSDs/macOS respectively.
#[cfg(target_os = "linux")]
const EMSGSIZE: i32 = 90;
#[cfg(not(target_os = "linux"))]
const EMSGSIZE: i32 = 40;

#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd"
))]
impl UdpEmitter {
    /// The most datagrams one `sendmmsg` call takes.
    const MMSG_BATCH: usize = 64;

    /// Sends a batch with as few `sendmmsg` calls as it takes; a datagram the kernel refuses
    /// is reported and skipped, and the rest go on.
    fn send_batch(&self, datagrams: &[Datagram<'_>], failed: &mut dyn FnMut(EmitError)) -> usize {
        use std::io::IoSlice;
        use std::os::fd::AsRawFd as _;

        use nix::errno::Errno;
        use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};

        let mut headers: MultiHeaders<SockaddrStorage> =
            MultiHeaders::preallocate(datagrams.len().min(Self::MMSG_BATCH), None);
        let addrs = [None; Self::MMSG_BATCH];
        let mut sent = 0;
        let mut rest = datagrams;
        while !rest.is_empty() {
            let (chunk, _) = rest.split_at(rest.len().min(Self::MMSG_BATCH));
            let slices: Vec<[IoSlice<'_>; 1]> =
                chunk.iter().map(|d| [IoSlice::new(d.as_bytes())]).collect();
            let cmsgs: [nix::sys::socket::ControlMessage<'_>; 0] = [];
            let result = sendmmsg(
                self.socket.as_raw_fd(),
                &mut headers,
                &slices,
                addrs.get(..chunk.len()).unwrap_or_default(),
                cmsgs,
                MsgFlags::empty(),
            );
            let done = match result {
                Ok(results) => results.count(),
                Err(errno) => {
                    // The first datagram of the chunk failed: report it and go on after it.
                    failed(match errno {
                        Errno::ECONNREFUSED => EmitError::ConnectionRefused,
                        Errno::EAGAIN => EmitError::Full,
                        Errno::EMSGSIZE => EmitError::TooLarge,
                        e => EmitError::Io(io::Error::from_raw_os_error(e as i32)),
                    });
                    rest = rest.get(1..).unwrap_or_default();
                    continue;
                }
            };
            sent += done;
            // A partial send stops at the datagram that failed: the next call reports it.
            rest = rest.get(done.max(1).min(rest.len())..).unwrap_or_default();
            if done == 0 {
                failed(EmitError::Io(io::Error::other("sendmmsg sent nothing")));
            }
        }
        sent
    }
}
