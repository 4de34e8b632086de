//! The daemon: a UDP socket read by one background thread, feeding the [`Store`], and the TCP
//! server of [`crate::server`].

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use socket2::{Domain, Protocol, Socket, Type};
use xray_sdk::TraceId;

use crate::forward::{ForwardConfig, ForwardStats, Forwarder};
use crate::intake::{self, DropReason};
use crate::sampling::{
    self, CentralizedRule, CentralizedRulesError, Sampling, SamplingCalls, SamplingStatistics,
};
use crate::server::{Access, Server, Shared};
use crate::store::{Stats, Store, StoreConfig};
use crate::trace::Trace;

/// The largest datagram the AWS daemon reads (its fixed 64 KiB buffer).
const DEFAULT_MAX_DATAGRAM: usize = 64 * 1024;
/// Asked of the kernel so a burst from a test does not overflow the socket; the kernel may give
/// less (Linux caps it at `net.core.rmem_max`).
const RECV_BUFFER: usize = 4 * 1024 * 1024;
/// How often the receiver looks at the shutdown flag if the wake-up datagram is lost.
const POLL_SHUTDOWN: Duration = Duration::from_millis(250);
/// At most one warning per drop reason per interval.
const WARN_INTERVAL: Duration = Duration::from_secs(10);
/// Datagram bytes parsed and waiting to be filed; past it, documents are dropped as
/// [`DropReason::Backlog`].
const INTAKE_QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// A local X-Ray daemon: receives segment documents over UDP and assembles them into traces,
/// and answers the sampling API (and a read API) over TCP.
///
/// The UDP socket is read by one background thread; the TCP side is served by a small tokio
/// runtime of its own (two threads for connections and the sampling API, and the blocking
/// pool for the read API and OTLP/HTTP, so that a long query never delays the SDKs' sampling
/// calls). Both stop on [`XRayLocal::shutdown`] or when the value is dropped. Every method
/// takes `&self`, so the daemon can be shared (for example in an `Arc`) between the code under
/// test and the assertions.
///
/// Waiting methods block the calling thread on a condition variable until what they wait for
/// happens or the timeout passes; in an async test, call them from `spawn_blocking` or keep the
/// timeouts short.
///
/// # Examples
///
/// ```
/// use std::net::UdpSocket;
/// use std::time::Duration;
/// use xray_local::XRayLocal;
///
/// let local = XRayLocal::builder().udp_addr("127.0.0.1:0".parse()?).start()?;
///
/// let sdk = UdpSocket::bind("127.0.0.1:0")?;
/// let doc = r#"{"name":"api","id":"70de5b6f19ff9a0a","trace_id":"1-581cf771-a006649127e371903a2de979","start_time":1.0,"end_time":1.5}"#;
/// sdk.send_to(format!("{{\"format\":\"json\",\"version\":1}}\n{doc}").as_bytes(), local.udp_addr())?;
///
/// let trace = local
///     .wait_for_trace("1-581cf771-a006649127e371903a2de979", Duration::from_secs(5))
///     .expect("the trace arrives");
/// assert_eq!(trace.segments()[0]["name"], "api");
/// assert_eq!(local.stats().accepted(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct XRayLocal {
    store: Arc<Store>,
    sampling: Arc<Sampling>,
    udp_addr: SocketAddr,
    tcp_addr: SocketAddr,
    exposure: String,
    stop: Arc<AtomicBool>,
    intake: Arc<Intake>,
    forwarder: Option<Arc<Forwarder>>,
    receiver: Mutex<Option<JoinHandle<()>>>,
    filer: Mutex<Option<JoinHandle<()>>>,
    server: Mutex<Option<Server>>,
}

/// Configures and starts an [`XRayLocal`]; see [`XRayLocal::builder`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use xray_local::XRayLocal;
///
/// let local = XRayLocal::builder()
///     .udp_addr("127.0.0.1:0".parse()?)
///     .max_traces(100)
///     .quiet_period(Duration::from_millis(50))
///     .start()?;
/// assert_ne!(local.udp_addr().port(), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct XRayLocalBuilder {
    udp_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    rules: Vec<CentralizedRule>,
    rules_page_size: usize,
    max_datagram_size: usize,
    config: StoreConfig,
    forward: Option<ForwardConfig>,
    local_sampling: bool,
    allowed_hosts: Vec<String>,
}

impl Default for XRayLocalBuilder {
    fn default() -> Self {
        XRayLocalBuilder {
            udp_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 2000)),
            tcp_addr: None,
            rules: vec![CentralizedRule::default_rule()],
            rules_page_size: 100,
            max_datagram_size: DEFAULT_MAX_DATAGRAM,
            config: StoreConfig {
                max_traces: 10_000,
                max_bytes: 256 * 1024 * 1024,
                quiet_period: Duration::ZERO,
                idle_timeout: None,
            },
            forward: None,
            local_sampling: false,
            allowed_hosts: Vec::new(),
        }
    }
}

impl XRayLocalBuilder {
    /// The UDP address to listen on; default `127.0.0.1:2000`. Port 0 picks a free port: read
    /// it back with [`XRayLocal::udp_addr`].
    pub fn udp_addr(mut self, addr: SocketAddr) -> Self {
        self.udp_addr = addr;
        self
    }

    /// The TCP address of the sampling API and read API. Default: the UDP port on loopback
    /// (`127.0.0.1:2000` with the default UDP address, the AWS daemon's default for both): the
    /// UDP address itself when it is a loopback one, else `127.0.0.1`, or `::1` for a
    /// specific IPv6 address. A wildcard or external UDP address is never followed, since the
    /// read API returns every trace held; expose it beyond the host only by naming such an
    /// address here. Port 0 picks a free TCP port of its own. Read it back with
    /// [`XRayLocal::tcp_addr`].
    pub fn tcp_addr(mut self, addr: SocketAddr) -> Self {
        self.tcp_addr = Some(addr);
        self
    }

    /// Answers the read API (`GET /traces`, `/map`, ...) to requests whose `Host` header names
    /// `host` too (its port, if given, is ignored); `"*"` answers any `Host`. Give it once per
    /// name.
    ///
    /// By default the read API answers only a `Host` that is `localhost` (or a subdomain of
    /// it), a loopback address, or the address the TCP port is bound to (any IP address when
    /// it is bound to a wildcard), so that a web page cannot read traces through DNS
    /// rebinding. Add the name others reach the daemon by, such as `xray-daemon` in a Docker
    /// network. The SDKs' endpoints (the sampling API and OTLP/HTTP) answer any `Host`, and
    /// requests from web pages of another origin are refused whatever is allowed here.
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        self.allowed_hosts.push(host.into());
        self
    }

    /// The sampling rules `GetSamplingRules` answers, in this order. A rule named `Default`
    /// is added at the end if none is given (the service always has one). Default: only the
    /// service's `Default` rule ([`CentralizedRule::default_rule`]).
    ///
    /// # Errors
    ///
    /// [`CentralizedRulesError`] when two rules share a name, a name is empty or a `FixedRate` is
    /// outside
    /// 0 to 1.
    pub fn rules(mut self, rules: Vec<CentralizedRule>) -> Result<Self, CentralizedRulesError> {
        self.rules = sampling::validate_rules(rules)?;
        Ok(self)
    }

    /// The sampling rules, as a JSON array of X-Ray `SamplingRule` objects (the format of a rules
    /// file; see [`CentralizedRule`]).
    ///
    /// # Errors
    ///
    /// [`CentralizedRulesError`] when the text is not such an array or the rules are not valid (see
    /// [`XRayLocalBuilder::rules`]).
    pub fn rules_json(mut self, json: &str) -> Result<Self, CentralizedRulesError> {
        self.rules = sampling::parse_rules(json)?;
        Ok(self)
    }

    /// The sampling rules from a file in the format of [`XRayLocalBuilder::rules_json`].
    ///
    /// # Errors
    ///
    /// [`CentralizedRulesError::Read`] when the file cannot be read, else as
    /// [`XRayLocalBuilder::rules_json`].
    pub fn rules_file(self, path: impl AsRef<Path>) -> Result<Self, CentralizedRulesError> {
        let json = std::fs::read_to_string(path).map_err(CentralizedRulesError::Read)?;
        self.rules_json(&json)
    }

    /// How many rule records one `GetSamplingRules` page holds before a `NextToken` is
    /// returned. Default 100; at least 1. Lower it to test that a client follows `NextToken`.
    pub fn rules_page_size(mut self, size: usize) -> Self {
        self.rules_page_size = size.max(1);
        self
    }

    /// How many traces are kept; past it the oldest is evicted. Default 10,000; at least 1.
    pub fn max_traces(mut self, max: usize) -> Self {
        self.config.max_traces = max.max(1);
        self
    }

    /// How much memory the stored traces may take; past it the oldest traces are evicted.
    /// Default 256 MiB. It counts what the documents take parsed (a document of many small
    /// fields takes twenty times its JSON text or more), their indexes, and the assembled
    /// traces kept for readers, which go first when room is needed. A full read of the store
    /// through the read API adds one trace and a 64 KiB chunk at a time.
    pub fn max_bytes(mut self, max: usize) -> Self {
        self.config.max_bytes = max;
        self
    }

    /// The largest datagram accepted, header included; longer ones are dropped as
    /// [`DropReason::Oversize`]. Default 65,536 bytes, the AWS daemon's buffer size, which is
    /// more than a UDP datagram over IPv4 can carry: only a lower limit refuses anything. Set
    /// 64,512 to check that an emitter keeps to the limit the SDKs aim for.
    pub fn max_datagram_size(mut self, max: usize) -> Self {
        self.max_datagram_size = max;
        self
    }

    /// How long a complete trace must go without new documents before it is reported
    /// (by the `wait_*` methods and [`XRayLocal::completed`]). Default zero: at once.
    ///
    /// Completeness is a guess: a trace whose segments arrived but whose downstream service is
    /// slow to send its own segment looks complete too early. A quiet period trades latency for
    /// fewer such surprises.
    pub fn quiet_period(mut self, quiet: Duration) -> Self {
        self.config.quiet_period = quiet;
        self
    }

    /// Reports a trace after this long without new documents even if it does not look
    /// complete (an entity still in progress, or subsegments whose parent never comes, as in
    /// AWS Lambda where the function's segment is sent by the Lambda service). Default: never.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.config.idle_timeout = Some(idle);
        self
    }

    /// Forwards every accepted document to AWS X-Ray with `PutTraceSegments`, as the AWS
    /// daemon does (default: nothing is forwarded; the traces are only shown and kept).
    ///
    /// Documents are batched (50 a call, or what came within a second), uploaded by up to
    /// 8 concurrent calls, retried with jittered backoff on throttling, 5xx and timeouts, and
    /// held in a bounded buffer whose oldest documents are dropped, and counted, when it is
    /// full. [`XRayLocal::forward_stats`] tells what happened to them.
    ///
    /// The sampling API is then proxied too: `GetSamplingRules` and `SamplingTargets` go to
    /// X-Ray, signed with the same credentials, and X-Ray's answer comes back as it is, so the
    /// SDKs sample by the account's rules. No other X-Ray path is forwarded (the AWS daemon
    /// forwards any, with its identity). [`local_sampling`](Self::local_sampling) keeps the
    /// local rules instead.
    pub fn forward(mut self, config: ForwardConfig) -> Self {
        self.forward = Some(config);
        self
    }

    /// Answers the sampling API from the local rules even when forwarding.
    pub fn local_sampling(mut self) -> Self {
        self.local_sampling = true;
        self
    }

    /// Binds the sockets and starts the receiving thread and the TCP server.
    ///
    /// # Errors
    ///
    /// An address cannot be bound (in use, not local), or a thread cannot be spawned.
    pub fn start(self) -> io::Result<XRayLocal> {
        let socket = bind(self.udp_addr)?;
        let udp_addr = socket.local_addr()?;
        let listener = crate::server::bind(
            self.tcp_addr
                .unwrap_or_else(|| default_tcp_addr(self.udp_addr)),
        )?;
        let tcp_addr = listener.local_addr()?;
        let access = Access::new(tcp_addr, &self.allowed_hosts);
        // The read timeout is only a fallback: shutdown wakes the thread with a datagram.
        socket.set_read_timeout(Some(POLL_SHUTDOWN))?;
        let store = Arc::new(Store::new(
            self.config,
            crate::store::SocketDrops::of(&socket),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let intake = Arc::new(Intake::new(INTAKE_QUEUE_BYTES));
        let proxy = match &self.forward {
            Some(config) if !self.local_sampling => {
                Some(Arc::new(crate::proxy::SamplingProxy::new(config.clone())?))
            }
            _ => None,
        };
        let forwarder = self
            .forward
            .map(|config| Forwarder::start(config, Arc::clone(&store)))
            .transpose()?;
        let receiver = Receiver {
            socket,
            store: Arc::clone(&store),
            intake: Arc::clone(&intake),
            stop: Arc::clone(&stop),
            max_datagram_size: self.max_datagram_size,
            drops: DropLog::default(),
        };
        let sampling = Arc::new(Sampling::new(self.rules, self.rules_page_size));
        let exposure = crate::server::exposure(udp_addr, &access, proxy.is_some());
        let server = Server::start(
            listener,
            Arc::new(Shared {
                store: Arc::clone(&store),
                sampling: Arc::clone(&sampling),
                forwarder: forwarder.clone(),
                proxy,
                access,
            }),
        )?;
        let filer = {
            let (intake, store) = (Arc::clone(&intake), Arc::clone(&store));
            let forwarder = forwarder.clone();
            std::thread::Builder::new()
                .name("xray-local-file".into())
                .spawn(move || intake.file_into(&store, forwarder.as_deref()))
        };
        let filer = match filer {
            Ok(handle) => handle,
            Err(err) => {
                let mut server = server;
                server.shutdown();
                return Err(err);
            }
        };
        let handle = std::thread::Builder::new()
            .name("xray-local-udp".into())
            .spawn(move || receiver.run());
        let handle = match handle {
            Ok(handle) => handle,
            Err(err) => {
                intake.close();
                let _ = filer.join();
                let mut server = server;
                server.shutdown();
                return Err(err);
            }
        };
        Ok(XRayLocal {
            store,
            sampling,
            udp_addr,
            tcp_addr,
            exposure,
            stop,
            intake,
            forwarder,
            receiver: Mutex::new(Some(handle)),
            filer: Mutex::new(Some(filer)),
            server: Mutex::new(Some(server)),
        })
    }
}

/// The TCP address when none is given: the UDP port on loopback, never a wildcard or external
/// address implicitly (see [`XRayLocalBuilder::tcp_addr`]).
fn default_tcp_addr(udp: SocketAddr) -> SocketAddr {
    let ip: IpAddr = match udp.ip() {
        ip if ip.is_loopback() => ip,
        // A specific IPv6 address: its family's loopback. A wildcard, `[::]` included: the
        // SDKs' default, 127.0.0.1.
        IpAddr::V6(ip) if !ip.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
        _ => Ipv4Addr::LOCALHOST.into(),
    };
    SocketAddr::new(ip, udp.port())
}

fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(err) = socket.set_recv_buffer_size(RECV_BUFFER) {
        tracing::debug!(%err, "could not enlarge the UDP receive buffer");
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Something that names a trace: a [`TraceId`], or its text form.
///
/// Text that is not a valid trace id names no trace.
///
/// # Examples
///
/// ```
/// use xray_sdk::TraceId;
/// use xray_local::TraceKey;
///
/// let id: TraceId = "1-581cf771-a006649127e371903a2de979".parse()?;
/// assert_eq!("1-581cf771-a006649127e371903a2de979".trace_id(), Some(id));
/// assert_eq!(id.to_string().trace_id(), Some(id));
/// assert_eq!("1-nope".trace_id(), None);
/// # Ok::<(), xray_sdk::id::ParseIdError>(())
/// ```
pub trait TraceKey {
    /// The trace id, if this names one.
    fn trace_id(&self) -> Option<TraceId>;
}

impl TraceKey for TraceId {
    fn trace_id(&self) -> Option<TraceId> {
        Some(*self)
    }
}

impl TraceKey for str {
    fn trace_id(&self) -> Option<TraceId> {
        self.parse().ok()
    }
}

impl TraceKey for String {
    fn trace_id(&self) -> Option<TraceId> {
        self.parse().ok()
    }
}

impl<T: TraceKey + ?Sized> TraceKey for &T {
    fn trace_id(&self) -> Option<TraceId> {
        (**self).trace_id()
    }
}

impl XRayLocal {
    /// A builder with the defaults: UDP and TCP on `127.0.0.1:2000`, the `Default` sampling
    /// rule, 10,000 traces, 256 MiB, 64 KiB datagrams, no quiet period, no idle timeout.
    pub fn builder() -> XRayLocalBuilder {
        XRayLocalBuilder::default()
    }

    /// The address the socket is bound to (with the real port when port 0 was asked for).
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The address the TCP server (sampling API and read API) is bound to.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// One line saying what is exposed where: the UDP and TCP addresses (loopback only,
    /// every interface, or one), the endpoints on each, and which `Host` headers the read API
    /// answers. The binary logs it at start-up.
    pub fn exposure(&self) -> &str {
        &self.exposure
    }

    /// The value to give an SDK as `AWS_XRAY_DAEMON_ADDRESS`:
    /// `tcp:127.0.0.1:PORT udp:127.0.0.1:PORT`.
    pub fn daemon_address(&self) -> String {
        format!("tcp:{} udp:{}", self.tcp_addr, self.udp_addr)
    }

    /// The sampling rules `GetSamplingRules` answers now.
    pub fn sampling_rules(&self) -> Vec<CentralizedRule> {
        self.sampling.rules()
    }

    /// Replaces the sampling rules; `LastRuleModification` moves to now, so SDKs that report
    /// statistics next refetch the rules.
    ///
    /// # Errors
    ///
    /// As [`XRayLocalBuilder::rules`]; the rules in force stay.
    pub fn set_sampling_rules(
        &self,
        rules: Vec<CentralizedRule>,
    ) -> Result<(), CentralizedRulesError> {
        self.sampling.set_rules(sampling::validate_rules(rules)?);
        Ok(())
    }

    /// Every sampling statistics document the SDKs reported through `POST /SamplingTargets`,
    /// in arrival order (the most recent 10,000).
    pub fn sampling_statistics(&self) -> Vec<SamplingStatistics> {
        self.sampling.statistics()
    }

    /// Waits until `until` holds for the statistics received (or `timeout` passes) and returns
    /// them. The SDKs report every 10 seconds.
    pub fn wait_for_sampling_statistics(
        &self,
        timeout: Duration,
        until: impl FnMut(&[SamplingStatistics]) -> bool,
    ) -> Vec<SamplingStatistics> {
        self.sampling.wait_for_statistics(timeout, until)
    }

    /// How many sampling API calls were answered.
    pub fn sampling_calls(&self) -> SamplingCalls {
        self.sampling.calls()
    }

    /// Waits until the trace has settled (it looks complete, see [`Trace::is_complete`], and
    /// the quiet period has passed; or the idle timeout passed) and returns it; `None` if that
    /// does not happen within `timeout`.
    pub fn wait_for_trace(&self, id: impl TraceKey, timeout: Duration) -> Option<Trace> {
        let id = id.trace_id()?;
        self.store.wait_for_trace(id, timeout)
    }

    /// Waits until at least `n` traces have settled and returns every settled trace, by first
    /// arrival; after `timeout`, returns those settled so far (possibly fewer than `n`).
    pub fn wait_for_traces(&self, n: usize, timeout: Duration) -> Vec<Trace> {
        self.store.wait_for_traces(n, timeout)
    }

    /// Waits until `until` holds for the counters (or `timeout` passes) and returns them.
    ///
    /// Useful to wait for malformed datagrams, which never form a trace:
    /// `local.wait_for_stats(timeout, |s| s.received() >= 3)`.
    pub fn wait_for_stats(&self, timeout: Duration, until: impl FnMut(&Stats) -> bool) -> Stats {
        self.store.wait_for_stats(timeout, until)
    }

    /// Every trace held now, settled or not, by first arrival.
    pub fn traces(&self) -> Vec<Trace> {
        self.store.traces()
    }

    /// The trace as it is now, settled or not.
    pub fn trace(&self, id: impl TraceKey) -> Option<Trace> {
        self.store.trace(id.trace_id()?)
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.store.stats()
    }

    /// What the forwarder did with the documents it was given; `None` when not forwarding
    /// (see [`XRayLocalBuilder::forward`]).
    pub fn forward_stats(&self) -> Option<ForwardStats> {
        self.forwarder.as_ref().map(|f| f.stats())
    }

    /// Waits until every document queued for forwarding is uploaded or settled, or `timeout`
    /// passes; returns whether nothing is left. True when not forwarding.
    pub fn flush_forwarding(&self, timeout: Duration) -> bool {
        self.forwarder
            .as_ref()
            .is_none_or(|f| f.flush(Instant::now() + timeout))
    }

    /// Follows traces as they settle, from the start: each settled trace is yielded once, and
    /// again if more documents arrive for it and it settles anew.
    pub fn completed(&self) -> Completed<'_> {
        Completed {
            store: &self.store,
            cursor: self.store.follow(),
        }
    }

    /// Stops the receiving thread and waits for it. Traces already received stay readable.
    /// Calling it again does nothing.
    pub fn shutdown(&self) {
        if self.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        // Wake the thread now rather than at its next read timeout.
        let wake_ip: IpAddr = match self.udp_addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => Ipv4Addr::LOCALHOST.into(),
            IpAddr::V6(ip) if ip.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
            ip => ip,
        };
        let any: SocketAddr = match wake_ip {
            IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        if let Ok(socket) = UdpSocket::bind(any) {
            let _ = socket.send_to(&[], (wake_ip, self.udp_addr.port()));
        }
        if let Some(handle) = self.receiver.lock().take() {
            let _ = handle.join();
        }
        // What was read is filed before the store closes.
        self.intake.close();
        if let Some(handle) = self.filer.lock().take() {
            let _ = handle.join();
        }
        // What was queued for X-Ray goes, for a few seconds at most.
        if let Some(forwarder) = &self.forwarder {
            forwarder.shutdown(Duration::from_secs(5));
        }
        if let Some(mut server) = self.server.lock().take() {
            server.shutdown();
        }
        self.store.shut_down();
    }
}

impl Drop for XRayLocal {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Traces as they settle; see [`XRayLocal::completed`].
///
/// As an [`Iterator`] it blocks until the next trace settles and ends after
/// [`XRayLocal::shutdown`] once nothing is left to settle.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use xray_local::XRayLocal;
///
/// let local = XRayLocal::builder().udp_addr("127.0.0.1:0".parse()?).start()?;
/// let mut completed = local.completed();
/// assert!(completed.next_timeout(Duration::from_millis(10)).is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Completed<'a> {
    store: &'a Store,
    cursor: Arc<std::sync::atomic::AtomicU64>,
}

impl Completed<'_> {
    /// The next settled trace, or `None` if none settles within `timeout`.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Trace> {
        self.store.next_settled(&self.cursor, Some(timeout))
    }
}

impl Iterator for Completed<'_> {
    type Item = Trace;

    fn next(&mut self) -> Option<Trace> {
        self.store.next_settled(&self.cursor, None)
    }
}

/// Queues the document of an accepted datagram (what follows its header line) for X-Ray.
fn forward_body(forwarder: &Forwarder, datagram: &[u8]) {
    let body = datagram
        .iter()
        .position(|&b| b == b'\n')
        .and_then(|i| datagram.get(i + 1..))
        .and_then(|b| std::str::from_utf8(b).ok());
    if let Some(body) = body {
        forwarder.push(body.trim().to_owned());
    }
}

// ===== impl Intake =====

/// The queue between the socket reader and the store. The reader only copies each datagram
/// in; the filing thread parses, validates, forwards and files them, so neither parsing nor a
/// store busy with readers holds up the socket.
#[derive(Debug)]
struct Intake {
    queue: Mutex<IntakeQueue>,
    ready: parking_lot::Condvar,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct IntakeQueue {
    datagrams: Vec<(Vec<u8>, Instant)>,
    bytes: usize,
    closed: bool,
}

impl Intake {
    fn new(max_bytes: usize) -> Self {
        Intake {
            queue: Mutex::new(IntakeQueue::default()),
            ready: parking_lot::Condvar::new(),
            max_bytes,
        }
    }

    /// Queues a datagram; false if the queue is full.
    fn push(&self, datagram: &[u8]) -> bool {
        let size = datagram.len();
        let mut q = self.queue.lock();
        if q.bytes + size > self.max_bytes {
            return false;
        }
        let was_empty = q.datagrams.is_empty();
        q.bytes += size;
        q.datagrams.push((datagram.to_vec(), Instant::now()));
        drop(q);
        if was_empty {
            self.ready.notify_one();
        }
        true
    }

    fn close(&self) {
        self.queue.lock().closed = true;
        self.ready.notify_all();
    }

    /// Parses the queued datagrams and files their documents into the store, a batch at a
    /// time, until closed and empty; forwards the accepted ones.
    fn file_into(&self, store: &Store, forwarder: Option<&Forwarder>) {
        let mut batch = Vec::new();
        let mut drops = DropLog::default();
        loop {
            {
                let mut q = self.queue.lock();
                while q.datagrams.is_empty() && !q.closed {
                    self.ready.wait(&mut q);
                }
                if q.datagrams.is_empty() {
                    return;
                }
                std::mem::swap(&mut q.datagrams, &mut batch);
                q.bytes = 0;
            }
            let mut docs = Vec::with_capacity(batch.len());
            for (datagram, arrived) in batch.drain(..) {
                match intake::parse_datagram(&datagram) {
                    Ok(parsed) => {
                        // As the AWS daemon: the body goes to X-Ray as it came, `T1S` spans
                        // included (PutTraceSegments takes them).
                        if let Some(forwarder) = forwarder {
                            forward_body(forwarder, &datagram);
                        }
                        let share = match &parsed {
                            intake::Parsed::One(_) => datagram.len(),
                            intake::Parsed::Spans(d, refused) => {
                                for reason in refused {
                                    drops.drop(store, *reason);
                                }
                                datagram.len() / d.len().max(1)
                            }
                        };
                        docs.extend(parsed.into_iter().map(|doc| (doc, share, arrived)));
                    }
                    Err(reason) => drops.drop(store, reason),
                }
            }
            store.insert_batch(docs);
        }
    }
}

/// Counts drops in the store and warns about them, at most once per reason every
/// [`WARN_INTERVAL`], saying how many were not logged in between.
#[derive(Default)]
struct DropLog {
    last_warned: [Option<Instant>; DropReason::ALL.len()],
    suppressed: [u64; DropReason::ALL.len()],
}

impl DropLog {
    fn drop(&mut self, store: &Store, reason: DropReason) {
        store.record_drop(reason);
        let i = reason.index();
        let now = Instant::now();
        let due = self
            .last_warned
            .get(i)
            .copied()
            .flatten()
            .is_none_or(|at| now.duration_since(at) >= WARN_INTERVAL);
        if due {
            let suppressed = self.suppressed.get(i).copied().unwrap_or(0);
            tracing::warn!(
                reason = reason.as_str(),
                suppressed,
                "dropped a datagram: {reason}"
            );
            if let Some(slot) = self.last_warned.get_mut(i) {
                *slot = Some(now);
            }
            if let Some(n) = self.suppressed.get_mut(i) {
                *n = 0;
            }
        } else if let Some(n) = self.suppressed.get_mut(i) {
            *n += 1;
        }
    }
}

// ===== impl Receiver =====

struct Receiver {
    socket: UdpSocket,
    store: Arc<Store>,
    intake: Arc<Intake>,
    stop: Arc<AtomicBool>,
    max_datagram_size: usize,
    drops: DropLog,
}

impl Receiver {
    fn run(mut self) {
        // One byte more than accepted, so an oversize datagram is seen as such instead of
        // being silently truncated.
        let mut buf = vec![0u8; self.max_datagram_size.saturating_add(1).min(1 << 20)];
        loop {
            let received = self.socket.recv_from(&mut buf);
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            match received {
                Ok((len, _)) => {
                    let datagram = buf.get(..len).unwrap_or_default();
                    if len > self.max_datagram_size {
                        self.drops.drop(&self.store, DropReason::Oversize);
                    } else if !self.intake.push(datagram) {
                        self.drops.drop(&self.store, DropReason::Backlog);
                    }
                }
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(err) => {
                    // Some platforms report an ICMP error from an earlier send on the next
                    // read; the socket is still usable.
                    tracing::debug!(%err, "UDP receive failed");
                }
            }
        }
    }
}
