//! The TCP side: the sampling API the SDKs call and a read API for other processes, served by
//! hyper on a small tokio runtime that this module owns.
//!
//! # Threads, lanes and limits
//!
//! The sampling API must answer within the SDKs' timeout (2 s) whatever else the port is
//! asked, so nothing else may hold it up:
//!
//! - **Threads.** Two tokio worker threads accept connections and speak HTTP/1.1. The
//!   sampling API (`POST /GetSamplingRules`, `/SamplingTargets`) is answered on them directly:
//!   the local rules cost microseconds under their own lock, and the proxy only waits on I/O.
//! - **Lanes.** Everything that costs CPU or takes the store's lock runs on tokio's blocking
//!   pool, in one of two [`Lane`]s: the read API (a filter over every trace held, a service
//!   map, thousands of traces as JSON) and OTLP/HTTP intake (decoding and filing up to 8 MiB).
//!   Each runs [`LANE_THREADS`] requests at once and lets [`LANE_QUEUE`] more wait; past that
//!   it answers 503 at once. The worker threads never touch the store, so a query of seconds
//!   delays only the queries behind it.
//! - **Connections.** At most [`MAX_CONNECTIONS`] are open. When the table is full, a new
//!   connection closes the oldest one that is idle (waiting for or reading a request head),
//!   else the oldest one reading a body or waiting for a lane; only when every connection is
//!   in a sampling call is the new one refused. So idle connections cannot lock the sampling
//!   API out: a flood only closes itself.
//! - **Timeouts.** A request head must arrive in full within [`HEAD_TIMEOUT`] of the
//!   connection opening or of the previous answer (which is also how long an idle keep-alive
//!   connection stays open), and its body within [`BODY_TIMEOUT`]; else the connection is
//!   closed.
//!
//! Every connection accepted, refused, closed to make room or timed out, and every request
//! refused as busy or forbidden, is counted in the `tcp` block of `GET /stats`.
//!
//! # Who may call what
//!
//! The read API returns every trace held, so a web page must not reach it: not through DNS
//! rebinding (a name of the attacker's that resolves to 127.0.0.1, so that the browser sends
//! `Host: evil.example:2000`), and not cross-origin (a `text/plain` POST needs no preflight).
//! [`Access`] decides:
//!
//! - A request with an `Origin` header that is not the daemon's own (`http://` and the
//!   request's own `Host`, itself allowed as below) is refused with 403, as is one whose
//!   `Sec-Fetch-Site` says `cross-site` or `same-site`. Browsers send `Origin` on every POST
//!   and on cross-origin requests; SDKs and other programs send none.
//! - The read API answers only a `Host` that is a loopback name (`localhost`, `*.localhost`),
//!   a loopback address, the address the port is bound to (any IP address when it is bound to
//!   a wildcard: a rebinding attack needs a name), or a name given with
//!   [`allow_host`](crate::XRayLocalBuilder::allow_host) (`*`: any). Other hosts get 403.
//! - The SDKs' endpoints (the sampling API and `POST /v1/traces`) answer any `Host`, since
//!   SDKs reach a daemon by whatever name their network gives it (`xray-daemon:2000` in a
//!   Docker network, a Kubernetes service name); the `Origin` rule keeps browsers out of them.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, HeaderMap, HeaderValue, ORIGIN};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore, oneshot};

use crate::DropReason;
use crate::filter::Filter;
use crate::forward::Quiet;
use crate::map::ServiceMap;
use crate::sampling::{ApiError, Sampling};
use crate::store::Store;
use xray_sdk::TraceId;

/// Largest request body read; the sampling API's biggest request (25 statistics documents) is a
/// few KiB.
const MAX_BODY: usize = 1024 * 1024;
/// Connections open at once. Past it a new connection closes an older one that is not in a
/// sampling call (see the module docs), so the bound costs the sampling API nothing.
const MAX_CONNECTIONS: usize = 256;
/// Connections the kernel queues before `accept`, so that a burst is not met with dropped SYNs
/// (a client then waits a second or more before it tries again).
const LISTEN_BACKLOG: i32 = 1024;
/// Pause after a failed `accept` (out of file descriptors, say) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Threads that accept, speak HTTP and answer the sampling API.
const WORKER_THREADS: usize = 2;
/// Requests each lane runs at once, on the blocking pool.
const LANE_THREADS: usize = 2;
/// Requests each lane lets wait for a thread; past it, 503 at once.
const LANE_QUEUE: usize = 64;
/// Time for a whole request head from the connection opening or the previous answer; also
/// how long an idle keep-alive connection is kept. Short enough that idle connections do not
/// pile up; the SDKs call every 10 s, so they open a connection per call rather than race a
/// close at the same moment.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for a whole request body once its head has arrived.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stop waits for lane work in progress (a long query) before leaving it.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

/// What the handlers read.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Arc<Store>,
    pub(crate) sampling: Arc<Sampling>,
    pub(crate) forwarder: Option<Arc<crate::forward::Forwarder>>,
    /// In forwarding mode, where the sampling API goes instead of the local rules.
    pub(crate) proxy: Option<Arc<crate::proxy::SamplingProxy>>,
    /// Which hosts and origins may call.
    pub(crate) access: Access,
}

/// The running server; stopped by [`Server::shutdown`].
#[derive(Debug)]
pub(crate) struct Server {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Binds the TCP listener with a deeper accept queue than the standard library's 128.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<StdListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As every server does: a restart binds again while old connections sit in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

impl Server {
    pub(crate) fn start(listener: StdListener, shared: Arc<Shared>) -> io::Result<Server> {
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            // The two lanes, plus room for what the sampling proxy's credential chain may
            // run there (file reads).
            .max_blocking_threads(2 * LANE_THREADS + 4)
            .thread_name("xray-local-tcp")
            .enable_io()
            .enable_time()
            .build()?;
        let (stop, stopped) = oneshot::channel();
        let ctx = Arc::new(Ctx {
            shared,
            conns: Conns::default(),
            read_lane: Lane::new(),
            intake_lane: Lane::new(),
        });
        let thread = std::thread::Builder::new()
            .name("xray-local-tcp".into())
            .spawn(move || {
                runtime.block_on(serve(listener, ctx, stopped));
                // A query in progress on the blocking pool cannot be interrupted; do not
                // wait for it long.
                runtime.shutdown_timeout(SHUTDOWN_WAIT);
            })?;
        Ok(Server {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops accepting, drops open connections and waits for the thread.
    pub(crate) fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the connection tasks share.
struct Ctx {
    shared: Arc<Shared>,
    conns: Conns,
    read_lane: Lane,
    intake_lane: Lane,
}

async fn serve(listener: StdListener, ctx: Arc<Ctx>, mut stopped: oneshot::Receiver<()>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::warn!(%err, "the TCP listener cannot be used; the sampling API is off");
            return;
        }
    };
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT);
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::debug!(%err, "TCP accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Some((id, conn)) = ctx.conns.admit() else {
            // Dropped: closed at once.
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = {
            let (ctx, conn) = (Arc::clone(&ctx), Arc::clone(&conn));
            service_fn(move |req| handle(Arc::clone(&ctx), Arc::clone(&conn), req))
        };
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => {
                    if let Err(err) = ended {
                        if err.is_timeout() {
                            ctx.conns.timed_out(&conn);
                        } else {
                            tracing::debug!(%err, "HTTP connection ended with an error");
                        }
                    }
                }
                // Closed to make room for a new connection: dropping it closes the socket.
                () = conn.close.notified() => {}
            }
            ctx.conns.release(id);
        });
    }
}

// ===== impl Conns =====

/// What a connection is doing, for choosing the one to close when the table is full.
const IDLE: u8 = 0;
/// Reading a request body, or waiting for or running lane work.
const WORKING: u8 = 1;
/// In a sampling call: never closed to make room.
const SAMPLING: u8 = 2;

/// One open connection.
#[derive(Default)]
struct Conn {
    activity: AtomicU8,
    /// Requests answered, to tell an idle keep-alive end from a client that never sent one.
    requests: AtomicU64,
    /// Signalled to close the connection (a permit is kept if its task is not waiting yet).
    close: Notify,
}

/// Sets what a connection is doing while a request is served; idle again when dropped.
struct Activity<'a>(&'a Conn);

impl<'a> Activity<'a> {
    fn begin(conn: &'a Conn, what: u8) -> Activity<'a> {
        conn.activity.store(what, Ordering::Relaxed);
        Activity(conn)
    }

    fn set(&self, what: u8) {
        self.0.activity.store(what, Ordering::Relaxed);
    }
}

impl Drop for Activity<'_> {
    fn drop(&mut self) {
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        self.0.activity.store(IDLE, Ordering::Relaxed);
    }
}

/// The open connections, oldest first, and the counters of `GET /stats`'s `tcp` block.
struct Conns {
    open: Mutex<(u64, BTreeMap<u64, Arc<Conn>>)>,
    accepted: AtomicU64,
    refused: AtomicU64,
    closed_for_room: AtomicU64,
    timed_out: AtomicU64,
    idle_closed: AtomicU64,
    busy: AtomicU64,
    forbidden: AtomicU64,
    started: Instant,
    quiet: Quiet,
}

impl Default for Conns {
    fn default() -> Self {
        Conns {
            open: Mutex::new((0, BTreeMap::new())),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            closed_for_room: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            idle_closed: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            forbidden: AtomicU64::new(0),
            started: Instant::now(),
            quiet: Quiet::default(),
        }
    }
}

impl Conns {
    /// Makes room for a new connection and registers it; `None` when it must be refused.
    ///
    /// A scan of at most [`MAX_CONNECTIONS`] entries under a lock held for nothing else: cheap
    /// next to an `accept`.
    fn admit(&self) -> Option<(u64, Arc<Conn>)> {
        let mut guard = self.open.lock();
        let (next, open) = &mut *guard;
        let mut closed = None;
        if open.len() >= MAX_CONNECTIONS {
            let victim = [IDLE, WORKING].into_iter().find_map(|wanted| {
                open.iter()
                    .find(|(_, c)| c.activity.load(Ordering::Relaxed) == wanted)
                    .map(|(id, _)| *id)
            });
            match victim.and_then(|id| open.remove(&id)) {
                Some(old) => closed = Some(old),
                None => {
                    drop(guard);
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    self.warn("too many TCP connections, all in sampling calls: refused one");
                    return None;
                }
            }
        }
        let id = *next;
        *next += 1;
        let conn = Arc::new(Conn::default());
        open.insert(id, Arc::clone(&conn));
        drop(guard);
        self.accepted.fetch_add(1, Ordering::Relaxed);
        if let Some(old) = closed {
            old.close.notify_one();
            self.closed_for_room.fetch_add(1, Ordering::Relaxed);
            self.warn("too many TCP connections: closed the oldest idle one to make room");
        }
        Some((id, conn))
    }

    fn release(&self, id: u64) {
        self.open.lock().1.remove(&id);
    }

    /// The head timeout closed `conn`: a keep-alive connection left idle, or a client that
    /// sent no request (or sent its head too slowly).
    fn timed_out(&self, conn: &Conn) {
        if conn.requests.load(Ordering::Relaxed) > 0 {
            self.idle_closed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.timed_out.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn warn(&self, message: &str) {
        if self.quiet.allow(self.started) {
            tracing::warn!(
                refused = self.refused.load(Ordering::Relaxed),
                closed_for_room = self.closed_for_room.load(Ordering::Relaxed),
                "{message}"
            );
        }
    }

    fn json(&self) -> Value {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "open": self.open.lock().1.len(),
            "max_open": MAX_CONNECTIONS,
            "accepted": n(&self.accepted),
            "refused": n(&self.refused),
            "closed_for_room": n(&self.closed_for_room),
            "timed_out": n(&self.timed_out),
            "idle_closed": n(&self.idle_closed),
            "busy": n(&self.busy),
            "forbidden": n(&self.forbidden),
        })
    }
}

// ===== impl Lane =====

/// Work that costs CPU or takes the store's lock, run on the blocking pool so that the worker
/// threads stay free for the sampling API: [`LANE_THREADS`] at once, [`LANE_QUEUE`] waiting.
struct Lane {
    running: Arc<Semaphore>,
    admitted: Arc<AtomicUsize>,
}

/// A place in a lane, running or waiting; given back when dropped.
struct LaneSlot(Arc<AtomicUsize>);

impl Drop for LaneSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Lane {
    fn new() -> Lane {
        Lane {
            running: Arc::new(Semaphore::new(LANE_THREADS)),
            admitted: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Runs `work` on the blocking pool when a thread of the lane is free; 503 at once when
    /// the lane is full. If the caller goes away, work already running finishes (it cannot
    /// be interrupted) and keeps its thread until then.
    async fn run<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let busy = || ApiError {
            status: 503,
            kind: "ServiceUnavailableException",
            message: "the daemon is busy with other requests; try again".to_owned(),
        };
        self.admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < LANE_THREADS + LANE_QUEUE).then_some(n + 1)
            })
            .map_err(|_| busy())?;
        let slot = LaneSlot(Arc::clone(&self.admitted));
        let permit = Arc::clone(&self.running)
            .acquire_owned()
            .await
            .map_err(|_| busy())?;
        tokio::task::spawn_blocking(move || {
            let _held = (slot, permit);
            work()
        })
        .await
        .map_err(|_| ApiError {
            status: 500,
            kind: "InternalFailure",
            message: "the request failed inside the daemon".to_owned(),
        })
    }
}

// ===== impl Access =====

/// Which `Host` and `Origin` headers are answered; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    bound: SocketAddr,
    any_host: bool,
    /// Allowed names, lower case, without port or trailing dot.
    hosts: Vec<String>,
}

impl Access {
    /// For a port bound to `bound`, with `allowed` hosts beyond the loopback ones (`*`: any).
    pub(crate) fn new(bound: SocketAddr, allowed: &[String]) -> Access {
        let hosts: Vec<String> = allowed
            .iter()
            .map(|h| {
                let h = h.trim();
                normalize_host(host_part(h).unwrap_or(h))
            })
            .filter(|h| !h.is_empty())
            .collect();
        Access {
            bound,
            any_host: hosts.iter().any(|h| h == "*"),
            hosts,
        }
    }

    /// Whether `authority` (a `Host` value, `name[:port]`) may call the read API.
    fn allows(&self, authority: &str) -> bool {
        if self.any_host {
            return true;
        }
        let Some(host) = host_part(authority) else {
            return false;
        };
        let host = normalize_host(host);
        if host == "localhost" || host.ends_with(".localhost") || self.hosts.contains(&host) {
            return true;
        }
        match host.parse::<IpAddr>() {
            Ok(ip) => is_loopback(ip) || self.bound.ip().is_unspecified() || ip == self.bound.ip(),
            Err(_) => false,
        }
    }

    /// Refuses what a web page of another site sends, and (unless `sdk`: the SDKs' endpoints)
    /// a `Host` this daemon is not known by.
    fn check(&self, uri: &Uri, headers: &HeaderMap, sdk: bool) -> Result<(), ApiError> {
        let host = headers
            .get(HOST)
            .map(HeaderValue::to_str)
            .transpose()
            .map_err(|_| forbidden("the Host header is not text"))?;
        if let Some(origin) = headers.get(ORIGIN) {
            let own = origin
                .to_str()
                .ok()
                .and_then(strip_http)
                .is_some_and(|authority| {
                    host.is_some_and(|h| h.eq_ignore_ascii_case(authority))
                        && self.allows(authority)
                });
            if !own {
                return Err(forbidden(
                    "requests from web pages of another origin are refused: the daemon's \
                     API is for SDKs and local tools",
                ));
            }
        }
        let fetched_from_other_site = headers.get("sec-fetch-site").is_some_and(|site| {
            site.as_bytes().eq_ignore_ascii_case(b"cross-site")
                || site.as_bytes().eq_ignore_ascii_case(b"same-site")
        });
        if fetched_from_other_site {
            return Err(forbidden(
                "requests from web pages of another site are refused: the daemon's API is for \
                 SDKs and local tools",
            ));
        }
        if sdk {
            return Ok(());
        }
        // An absolute-form target (`GET http://name/traces`) names the host too.
        let named = uri.authority().map(|a| a.as_str()).into_iter().chain(host);
        for authority in named {
            if !self.allows(authority) {
                return Err(forbidden(
                    "the Host header names neither a loopback name or address nor the \
                     daemon's address: the read API answers only those (and hosts given with \
                     --allow-host)",
                ));
            }
        }
        Ok(())
    }

    /// The hosts the read API answers, for the start-up line.
    fn describe_hosts(&self) -> String {
        if self.any_host {
            return "any Host".to_owned();
        }
        let mut parts = vec!["localhost".to_owned(), "loopback addresses".to_owned()];
        if self.bound.ip().is_unspecified() {
            parts.push("any IP address".to_owned());
        } else if !is_loopback(self.bound.ip()) {
            parts.push(self.bound.ip().to_string());
        }
        parts.extend(self.hosts.iter().cloned());
        format!("Host {}", parts.join(", "))
    }
}

fn forbidden(message: &str) -> ApiError {
    ApiError {
        status: 403,
        kind: "AccessDeniedException",
        message: message.to_owned(),
    }
}

/// `http://AUTHORITY` → `AUTHORITY`; `None` for another scheme, a path, or `null`.
fn strip_http(origin: &str) -> Option<&str> {
    let scheme = origin.get(..7)?;
    let authority = origin.get(7..)?;
    (scheme.eq_ignore_ascii_case("http://") && !authority.is_empty() && !authority.contains('/'))
        .then_some(authority)
}

/// The host of `name[:port]` or `[v6][:port]`; `None` when it is not one.
fn host_part(authority: &str) -> Option<&str> {
    let bad = |b: u8| matches!(b, b'/' | b'\\' | b'@' | b'?' | b'#') || !b.is_ascii_graphic();
    if authority.is_empty() || authority.bytes().any(bad) {
        return None;
    }
    let port_ok = |port: &str| port.parse::<u16>().is_ok();
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some(host),
            _ => port_ok(after.strip_prefix(':')?).then_some(host),
        };
    }
    match authority.split_once(':') {
        Some((host, port)) => port_ok(port).then_some(host),
        None => Some(authority),
    }
}

fn normalize_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Where an address listens, in words.
fn scope(addr: SocketAddr) -> &'static str {
    if addr.ip().is_unspecified() {
        "every interface"
    } else if is_loopback(addr.ip()) {
        "loopback only"
    } else {
        "this interface only"
    }
}

/// The start-up line saying what is exposed where.
pub(crate) fn exposure(udp: SocketAddr, access: &Access, proxied: bool) -> String {
    let tcp = access.bound;
    let sampling = if proxied {
        "forwarded to X-Ray, signed with the daemon's credentials"
    } else {
        "answered from the local rules"
    };
    format!(
        "exposed: udp {udp} ({}): segment documents and T1S/T1U spans; tcp {tcp} ({}): the \
         sampling API (POST /GetSamplingRules, /SamplingTargets: {sampling}) and OTLP/HTTP \
         (POST /v1/traces) for any Host, the read API (GET /traces, /traces/ID, /map, /stats, \
         /rules: every trace held) for {}; requests from web pages of another origin are \
         refused",
        scope(udp),
        scope(tcp),
        access.describe_hosts(),
    )
}

// ===== handling =====

/// A response before it becomes a hyper one.
struct Reply {
    status: u16,
    content_type: HeaderValue,
    error_type: Option<HeaderValue>,
    body: Bytes,
    /// A body written as the client reads it, instead of `body`.
    list: Option<TraceList>,
    /// A console asset: sent with the console's security headers.
    console: bool,
}

/// What a response carries: a body made beforehand, or a list of traces.
type ReplyBody = Either<Full<Bytes>, TraceList>;

impl Reply {
    fn json(value: &impl serde::Serialize) -> Reply {
        Reply {
            status: 200,
            content_type: HeaderValue::from_static("application/json"),
            error_type: None,
            body: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
            list: None,
            console: false,
        }
    }

    fn error(err: &ApiError) -> Reply {
        Reply {
            status: err.status,
            content_type: HeaderValue::from_static("application/json"),
            error_type: Some(HeaderValue::from_static(err.kind)),
            body: Bytes::from(err.body()),
            list: None,
            console: false,
        }
    }

    /// The hyper response; `close` ends the connection after it.
    fn into_response(self, close: bool) -> Response<ReplyBody> {
        let body = match self.list {
            Some(list) => Either::Right(list),
            None => Either::Left(Full::new(self.body)),
        };
        let mut response = Response::new(body);
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, self.content_type);
        if let Some(kind) = self.error_type {
            headers.insert("x-amzn-errortype", kind);
        }
        if close {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        if self.console {
            headers.insert(
                "content-security-policy",
                HeaderValue::from_static(crate::console::CONTENT_SECURITY_POLICY),
            );
            headers.insert(
                "x-content-type-options",
                HeaderValue::from_static("nosniff"),
            );
            headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
            headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
            headers.insert("cache-control", HeaderValue::from_static("no-store"));
        }
        response
    }
}

async fn handle(
    ctx: Arc<Ctx>,
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Result<Response<ReplyBody>, Infallible> {
    let activity = Activity::begin(&conn, WORKING);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let sampling = method == Method::POST && crate::proxy::FORWARDED_PATHS.contains(&path.as_str());
    let otlp = method == Method::POST && path == "/v1/traces";
    if let Err(err) = ctx
        .shared
        .access
        .check(req.uri(), req.headers(), sampling || otlp)
    {
        ctx.conns.forbidden.fetch_add(1, Ordering::Relaxed);
        return Ok(Reply::error(&err).into_response(true));
    }
    let query = req.uri().query().unwrap_or_default().to_owned();
    let content_type = req.headers().get(CONTENT_TYPE).cloned();
    let gzip = req
        .headers()
        .get(hyper::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let limit = if otlp {
        crate::otlp::MAX_REQUEST
    } else {
        MAX_BODY
    };
    let read = Limited::new(req.into_body(), limit).collect();
    let body = match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(_)) => {
            let err = ApiError {
                status: 413,
                kind: "InvalidRequestException",
                message: format!("the request body is unreadable or larger than {limit} bytes"),
            };
            return Ok(Reply::error(&err).into_response(false));
        }
        Err(_) => {
            ctx.conns.timed_out.fetch_add(1, Ordering::Relaxed);
            let err = ApiError {
                status: 408,
                kind: "RequestTimeoutException",
                message: format!("the request body did not arrive within {BODY_TIMEOUT:?}"),
            };
            return Ok(Reply::error(&err).into_response(true));
        }
    };
    let reply = if sampling {
        activity.set(SAMPLING);
        sampling_reply(&ctx.shared, &path, content_type.as_ref(), body).await
    } else if otlp {
        let work = {
            let ctx = Arc::clone(&ctx);
            move || otlp_reply(&ctx.shared, content_type.as_ref(), &body, gzip)
        };
        lane_reply(&ctx, ctx.intake_lane.run(work).await)
    } else {
        let work = {
            let ctx = Arc::clone(&ctx);
            move || route(&ctx, &method, &path, &query, &body)
        };
        lane_reply(&ctx, ctx.read_lane.run(work).await)
    };
    drop(activity);
    Ok(reply.into_response(false))
}

/// The reply of lane work, or why the lane did not run it (counted when it was full).
fn lane_reply(ctx: &Ctx, done: Result<Reply, ApiError>) -> Reply {
    done.unwrap_or_else(|err| {
        if err.status == 503 {
            ctx.conns.busy.fetch_add(1, Ordering::Relaxed);
        }
        Reply::error(&err)
    })
}

/// `POST /GetSamplingRules` and `/SamplingTargets`: to X-Ray when forwarding, else from the
/// local rules. Either way on the worker thread, never behind lane work.
async fn sampling_reply(
    shared: &Shared,
    path: &str,
    content_type: Option<&HeaderValue>,
    body: Bytes,
) -> Reply {
    if let Some(proxy) = &shared.proxy {
        return match proxy.forward(path, content_type, body).await {
            Ok(up) => Reply {
                status: up.status,
                content_type: up
                    .content_type
                    .unwrap_or_else(|| HeaderValue::from_static("application/json")),
                error_type: up.error_type,
                body: up.body,
                list: None,
                console: false,
            },
            Err(err) => Reply::error(&err),
        };
    }
    let answer = if path == "/GetSamplingRules" {
        shared.sampling.get_sampling_rules(&body)
    } else {
        shared.sampling.sampling_targets(&body)
    };
    answer.map_or_else(|err| Reply::error(&err), |v| Reply::json(&v))
}

/// `POST /v1/traces`: OTLP/HTTP in protobuf, answered as an OTLP receiver answers.
fn otlp_reply(
    shared: &Shared,
    content_type: Option<&HeaderValue>,
    body: &[u8],
    gzip: bool,
) -> Reply {
    let protobuf = content_type.is_none_or(|ct| {
        ct.to_str()
            .is_ok_and(|ct| ct.trim().starts_with("application/x-protobuf"))
    });
    if !protobuf {
        return Reply::error(&ApiError {
            status: 415,
            kind: "UnsupportedMediaType",
            message: "OTLP/HTTP is taken as application/x-protobuf only".to_owned(),
        });
    }
    match crate::otlp::receive(shared, body, gzip) {
        // An empty ExportTraceServiceResponse: everything was taken.
        Ok(_) => Reply {
            status: 200,
            content_type: HeaderValue::from_static("application/x-protobuf"),
            error_type: None,
            body: Bytes::new(),
            list: None,
            console: false,
        },
        Err(err) => Reply::error(&err),
    }
}

/// The read API, and every route that is not the sampling API or OTLP/HTTP; run in the read
/// lane.
fn route(ctx: &Ctx, method: &Method, path: &str, query: &str, body: &[u8]) -> Reply {
    let shared = &*ctx.shared;
    if method == Method::GET
        && let Some(asset) = crate::console::asset(path)
    {
        return Reply {
            status: 200,
            content_type: HeaderValue::from_static(asset.content_type),
            error_type: None,
            body: Bytes::from_static(asset.body),
            list: None,
            console: true,
        };
    }
    let result = match (method, path) {
        (&Method::POST, "/TraceSummaries") => {
            crate::api::trace_summaries(&shared.store, body).map(|v| Reply::json(&v))
        }
        (&Method::POST, "/Traces") => {
            crate::api::batch_get_traces(&shared.store, body).map(|v| Reply::json(&v))
        }
        (&Method::POST, "/ServiceGraph") => {
            crate::api::service_graph(&shared.store, body).map(|v| Reply::json(&v))
        }
        (&Method::POST, "/TraceGraph") => {
            crate::api::trace_graph(&shared.store, body).map(|v| Reply::json(&v))
        }
        (&Method::GET, "/traces") => filtered_ids(shared, query).map(|ids| Reply {
            status: 200,
            content_type: HeaderValue::from_static("application/json"),
            error_type: None,
            body: Bytes::new(),
            list: Some(TraceList::new(Arc::clone(&shared.store), ids)),
            console: false,
        }),
        (&Method::GET, "/map") => filtered_ids(shared, query).map(|ids| {
            let store = &shared.store;
            let traces = ids.into_iter().filter_map(|id| store.assembled(id));
            Reply::json(&ServiceMap::from_traces(traces))
        }),
        (&Method::GET, "/stats") => Ok(Reply::json(&stats_json(ctx))),
        (&Method::GET, "/rules") => Ok(Reply::json(&shared.sampling.rules())),
        (&Method::GET, _) if path.starts_with("/traces/") => {
            let id = path.get("/traces/".len()..).unwrap_or_default();
            match id.parse().ok().and_then(|id| shared.store.trace(id)) {
                Some(trace) => Ok(Reply::json(&trace)),
                None => Err(ApiError {
                    status: 404,
                    kind: "ResourceNotFoundException",
                    message: "no trace with this id is held".to_owned(),
                }),
            }
        }
        _ => Err(ApiError {
            status: 400,
            kind: "UnknownOperationException",
            message: format!("no operation at {method} {path}"),
        }),
    };
    result.unwrap_or_else(|err| Reply::error(&err))
}

/// The ids of the traces that match the query's filter, by first arrival. Each is
/// assembled, matched and let go in turn: a query over the whole store holds one trace at a
/// time beside it.
fn filtered_ids(shared: &Shared, query: &str) -> Result<Vec<TraceId>, ApiError> {
    let filter = match query_param(query, "filter") {
        Some(text) if !text.trim().is_empty() => {
            Some(Filter::parse(&text).map_err(|err| ApiError::invalid(format!("filter {err}")))?)
        }
        _ => None,
    };
    let mut ids = shared.store.ids();
    if let Some(filter) = filter {
        let store = &shared.store;
        ids.retain(|&id| store.assembled(id).is_some_and(|t| filter.matches(&t)));
    }
    Ok(ids)
}

/// The body of `GET /traces`: a JSON array written a chunk at a time as the client reads it,
/// each trace taken from the store when its turn comes. An answer over the whole store so
/// costs one trace's copy and one chunk beside it, not a copy of the store; a trace evicted
/// before its turn is left out.
struct TraceList {
    store: Arc<Store>,
    ids: std::vec::IntoIter<TraceId>,
    /// Whether `[` and any trace have been written.
    begun: bool,
    wrote_any: bool,
    done: bool,
}

impl TraceList {
    /// A chunk is sent once it holds this many bytes (or a trace that is larger).
    const CHUNK: usize = 64 * 1024;

    fn new(store: Arc<Store>, ids: Vec<TraceId>) -> Self {
        TraceList {
            store,
            ids: ids.into_iter(),
            begun: false,
            wrote_any: false,
            done: false,
        }
    }

    /// The next chunk, or `None` after the closing `]`.
    fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let mut buf = Vec::with_capacity(Self::CHUNK);
        if !self.begun {
            self.begun = true;
            buf.push(b'[');
        }
        while buf.len() < Self::CHUNK {
            let Some(id) = self.ids.next() else {
                buf.push(b']');
                self.done = true;
                break;
            };
            let Some(trace) = self.store.assembled(id) else {
                continue;
            };
            if self.wrote_any {
                buf.push(b',');
            }
            let mark = buf.len();
            if serde_json::to_writer(&mut buf, &*trace).is_ok() {
                self.wrote_any = true;
            } else {
                // Not reached (a trace is plain JSON); leave the array valid whatever happens.
                buf.truncate(mark.saturating_sub(usize::from(self.wrote_any)));
            }
        }
        Some(Bytes::from(buf))
    }
}

impl hyper::body::Body for TraceList {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        let chunk = self.get_mut().next_chunk();
        std::task::Poll::Ready(chunk.map(|c| Ok(hyper::body::Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

fn stats_json(ctx: &Ctx) -> Value {
    let shared = &*ctx.shared;
    let stats = shared.store.stats();
    let dropped: serde_json::Map<String, Value> = DropReason::ALL
        .iter()
        .map(|r| (r.as_str().to_owned(), json!(stats.dropped(*r))))
        .collect();
    let calls = shared.sampling.calls();
    json!({
        "received": stats.received(),
        "accepted": stats.accepted(),
        "dropped": dropped,
        "evicted_traces": stats.evicted_traces(),
        "stored_bytes": stats.stored_bytes(),
        "assembled_bytes": stats.assembled_bytes(),
        "evicted_unsettled": stats.evicted_unsettled(),
        "kernel_dropped": stats.kernel_dropped(),
        "get_sampling_rules_calls": calls.get_sampling_rules(),
        "sampling_targets_calls": calls.sampling_targets(),
        "tcp": ctx.conns.json(),
        "sampling_proxy": shared.proxy.as_ref().map(|p| {
            let s = p.stats();
            json!({ "forwarded": s.forwarded, "unsigned": s.unsigned, "failed": s.failed })
        }),
        "forwarding": shared.forwarder.as_ref().map(|f| {
            let s = f.stats();
            json!({
                "queued": s.queued,
                "uploaded": s.uploaded,
                "rejected": s.rejected,
                "dropped_buffer_full": s.dropped_buffer_full,
                "failed": s.failed,
                "retried_batches": s.retried_batches,
                "backend_errors": s.backend_errors,
            })
        }),
    })
}

/// The decoded value of `name` in a query string (`+` is a space, `%XX` a byte).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| {
            bytes
                .get(at)
                .and_then(|&c| char::from(c).to_digit(16))
                .and_then(|d| u8::try_from(d).ok())
        };
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_the_read_api_answers() {
        let loopback = Access::new("127.0.0.1:2000".parse().unwrap(), &[]);
        let wildcard = Access::new("0.0.0.0:2000".parse().unwrap(), &[]);
        let named = Access::new(
            "10.0.0.5:2000".parse().unwrap(),
            &["Xray-Daemon:2000".to_owned()],
        );
        #[rustfmt::skip]
        let cases: [(&Access, &str, bool); 16] = [
            (&loopback, "127.0.0.1:2000", true),
            (&loopback, "127.0.0.2", true),
            (&loopback, "localhost:2000", true),
            (&loopback, "api.localhost", true),
            (&loopback, "LocalHost.:2000", true),
            (&loopback, "[::1]:2000", true),
            (&loopback, "[::ffff:127.0.0.1]:2000", true),
            (&loopback, "evil.example:2000", false),
            (&loopback, "localhost.evil.example", false),
            (&loopback, "10.0.0.5:2000", false),
            (&loopback, "localhost:99999", false),
            (&loopback, "user@localhost", false),
            (&wildcard, "192.0.2.1:2000", true),
            (&wildcard, "evil.example", false),
            (&named, "xray-daemon", true),
            (&named, "10.0.0.5:2000", true),
        ];
        for (access, host, allowed) in cases {
            assert_eq!(access.allows(host), allowed, "{host}");
        }
    }

    #[test]
    fn origins_other_than_the_daemons_own_are_refused() {
        let access = Access::new("127.0.0.1:2000".parse().unwrap(), &[]);
        let check = |host: &str, origin: Option<&str>| {
            let mut headers = HeaderMap::new();
            headers.insert(HOST, HeaderValue::from_str(host).unwrap());
            if let Some(origin) = origin {
                headers.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
            }
            access
                .check(&Uri::from_static("/traces"), &headers, true)
                .is_ok()
        };
        assert!(check("127.0.0.1:2000", None));
        assert!(check("xray-daemon:2000", None), "SDK routes take any Host");
        assert!(check("127.0.0.1:2000", Some("http://127.0.0.1:2000")));
        assert!(!check("127.0.0.1:2000", Some("http://evil.example")));
        assert!(!check("127.0.0.1:2000", Some("https://127.0.0.1:2000")));
        assert!(!check("127.0.0.1:2000", Some("null")));
        assert!(!check("127.0.0.1:2000", Some("http://localhost:2000")));
        assert!(!check(
            "evil.example:2000",
            Some("http://evil.example:2000")
        ));
    }
}
