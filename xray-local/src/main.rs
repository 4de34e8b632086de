//! `xray-local`: a local X-Ray daemon that prints each trace as it completes, and a client of
//! its read API.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod config;
mod logging;

use xray_local::{
    DropReason, Filter, ForwardConfig, ForwardStats, Stats, Trace, XRayLocal, render,
};

/// Writes a line to stderr and loses it if stderr is closed or broken. Never `eprintln!`:
/// it panics when the write fails (exit code 101), so a closed pipe on stderr would stop the
/// daemon for want of a log line.
macro_rules! stderr_line {
    ($($arg:tt)*) => {{
        let _ = writeln!(io::stderr(), $($arg)*);
    }};
}

/// How long the query mode waits for the daemon.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

const USAGE: &str = "\
Usage: xray-local [OPTIONS]
       xray-local query [--addr ADDR] [--json] [--map] [FILTER]

Listens for X-Ray segment documents over UDP and prints each trace once it completes; answers
the sampling API (GetSamplingRules, SamplingTargets) and a read API over TCP.

Options:
  -b, --bind ADDR   UDP address to listen on [default: 127.0.0.1:2000] (alias: --udp)
  -t, --bind-tcp ADDR
                    TCP address of the sampling and read API [default: the UDP port on
                    127.0.0.1, or the UDP address if it is a loopback one: a wildcard UDP
                    address such as 0.0.0.0 is not followed] (alias: --tcp)
  --allow-host HOST answer the read API (GET /traces, /map, ...) to requests naming HOST
                    in their Host header too, e.g. the daemon's name in a Docker network; `*`
                    for any; repeatable [default: localhost, loopback addresses and the
                    TCP address (any IP address when it is a wildcard)]
  -n, --region REGION
                    forward every document to AWS X-Ray in REGION with PutTraceSegments,
                    signed with the standard AWS credential chain (environment, profile,
                    web identity, ECS task role, EC2 instance profile) [default: forward
                    nothing]
  --endpoint URL    the X-Ray API endpoint to forward to, instead of the region's (a VPC
                    endpoint); needs --region
  -m, --buffer-memory MB
                    memory for documents waiting to be forwarded, at least 3 [default: 64];
                    when full, the oldest are dropped and counted
  -o, --local-mode  do not look up the region in ECS or EC2 instance metadata
  -r, --role-arn ARN
                    assume this IAM role (STS, session xray-daemon) to upload and to sign
                    sampling calls
  -a, --resource-arn ARN
                    the ARN of the resource the daemon runs on, sent with the telemetry
                    records (PutTelemetryRecords, every 60 s while forwarding)
  -p, --proxy-address URL
                    reach AWS through this HTTP(S) proxy, e.g. http://192.0.2.0:3128
                    [default: HTTPS_PROXY]
  -c, --config FILE the AWS daemon's cfg.yaml, validated as the AWS daemon validates it
                    [default: /etc/amazon/xray/cfg.yaml or ./cfg.yaml if one exists]
  -f, --log-file FILE
                    log to FILE, rolled over at 50 MB [default: stderr]
  -l, --log-level LEVEL
                    dev, debug, info, warn, error or prod (= info) [default: prod]
  --concurrency N   uploads at once [default: 8] (the cfg.yaml key Concurrency)
  --rules FILE      sampling rules: a JSON array of X-Ray SamplingRule objects
                    [default: the service's Default rule, 1 request/s + 5 %]
  --json            print each trace as one JSON line instead of a timeline
  --map             print the service map of every trace held whenever traffic pauses
  --quiet-ms MS     wait this long without new documents before printing a complete
                    trace [default: 1000]
  --idle-ms MS      print a trace that still looks incomplete after this long without
                    new documents [default: 10000]
  -h, --help        print this help
  -v, -V, --version print the version

Flags override cfg.yaml; the region is -n, else Region, else AWS_REGION, else (without -o)
the task's from the ECS container metadata file, else, when a cfg.yaml is in use, the
instance's from EC2 instance metadata. With no region nothing is forwarded. NoVerifySSL
is refused: add a private CA with SSL_CERT_FILE instead.

The first line on stderr gives the bound addresses:
  xray-local: listening on udp ADDR tcp ADDR
and a later one (`exposed: ...`) what is exposed where. Requests from web pages of another
origin are refused.

Query mode asks a running xray-local (--addr, its TCP address [default: 127.0.0.1:2000]) for
the traces matching FILTER, e.g.
  xray-local query 'annotation.tier = \"gold\" AND fault = true'
and prints them as timelines (--json: one JSON line each; --map: their service map).

Point an SDK at it with AWS_XRAY_DAEMON_ADDRESS=<ADDR>.";

/// The command line as given; `None` is "not given", so that cfg.yaml can fill it in.
#[derive(Debug, Default)]
struct Args {
    udp: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
    rules: Option<PathBuf>,
    json: bool,
    map: bool,
    quiet: Option<Duration>,
    idle: Option<Duration>,
    region: Option<String>,
    endpoint: Option<String>,
    buffer_mb: Option<u64>,
    local_mode: bool,
    role_arn: Option<String>,
    resource_arn: Option<String>,
    proxy: Option<String>,
    config: Option<PathBuf>,
    log_file: Option<PathBuf>,
    log_level: Option<String>,
    concurrency: Option<usize>,
    allow_hosts: Vec<String>,
}

/// What the daemon runs with: the flags over cfg.yaml over the AWS daemon's defaults.
#[derive(Debug)]
struct Settings {
    udp: SocketAddr,
    tcp: Option<SocketAddr>,
    rules: Option<PathBuf>,
    json: bool,
    map: bool,
    quiet: Duration,
    idle: Duration,
    region: Option<String>,
    endpoint: Option<String>,
    buffer_mb: Option<u64>,
    local_mode: bool,
    role_arn: Option<String>,
    resource_arn: Option<String>,
    proxy: Option<String>,
    log_file: Option<PathBuf>,
    log_rotation: bool,
    log_level: tracing::Level,
    concurrency: usize,
    allow_hosts: Vec<String>,
    loaded: Option<PathBuf>,
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

fn region_ok(region: &str) -> bool {
    !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl Settings {
    fn merge(
        args: Args,
        file: config::DaemonConfig,
        loaded: Option<PathBuf>,
    ) -> Result<Settings, String> {
        if file.no_verify_ssl {
            return Err(
                "NoVerifySSL is not supported: xray-local always verifies the \
                        certificates of AWS; add a private CA with SSL_CERT_FILE"
                    .to_owned(),
            );
        }
        let from_file = |key: &str, text: &str| address(key, text);
        let udp = match args.udp {
            Some(udp) => udp,
            None => from_file("Socket.UDPAddress", &file.udp_address)?,
        };
        let default_tcp = config::DaemonConfig::default().tcp_address;
        let tcp = match args.tcp {
            Some(tcp) => Some(tcp),
            // Not set anywhere: the UDP address, as before cfg.yaml (the same default).
            None if file.tcp_address == default_tcp => None,
            None => Some(from_file("Socket.TCPAddress", &file.tcp_address)?),
        };
        let region = args
            .region
            .or_else(|| non_empty(&file.region))
            .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()));
        if let Some(region) = region.as_deref().filter(|r| !region_ok(r)) {
            return Err(format!("`{region}` is not a region like us-east-1"));
        }
        let log_level_text = args.log_level.unwrap_or(file.log_level);
        let log_level = config::log_level_filter(&log_level_text).ok_or_else(|| {
            format!(
                "log level `{log_level_text}` is not one of dev, debug, info, warn, error, prod"
            )
        })?;
        let buffer_mb = args
            .buffer_mb
            .or((file.total_buffer_size_mb > 0).then_some(file.total_buffer_size_mb));
        if buffer_mb.is_some_and(|mb| mb < 3) {
            return Err("TotalBufferSizeMB must be at least 3".to_owned());
        }
        Ok(Settings {
            udp,
            tcp,
            rules: args.rules,
            json: args.json,
            map: args.map,
            quiet: args.quiet.unwrap_or(Duration::from_millis(1000)),
            idle: args.idle.unwrap_or(Duration::from_millis(10_000)),
            region,
            endpoint: args.endpoint.or_else(|| non_empty(&file.endpoint)),
            buffer_mb,
            local_mode: args.local_mode || file.local_mode,
            role_arn: args.role_arn.or_else(|| non_empty(&file.role_arn)),
            resource_arn: args.resource_arn.or_else(|| non_empty(&file.resource_arn)),
            proxy: args.proxy.or_else(|| non_empty(&file.proxy_address)),
            log_file: args
                .log_file
                .or_else(|| non_empty(&file.log_path).map(PathBuf::from)),
            log_rotation: file.log_rotation,
            log_level,
            concurrency: args.concurrency.unwrap_or(file.concurrency).max(1),
            allow_hosts: args.allow_hosts,
            loaded,
        })
    }
}

#[derive(Debug)]
struct Query {
    addr: SocketAddr,
    json: bool,
    map: bool,
    filter: Option<String>,
}

enum Command {
    Run(Box<Args>),
    Query(Query),
    Help,
    Version,
}

fn address(name: &str, text: &str) -> Result<SocketAddr, String> {
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("{name}: `{text}` is not an address like 127.0.0.1:2000"))
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut parsed = Args::default();
    let mut first = true;
    while let Some(arg) = args.next() {
        if first && arg == "query" {
            return parse_query(args);
        }
        first = false;
        // The AWS daemon's flags parse with Go's `flag`: `-x v`, `--x v`, `-x=v` and `--x=v`.
        let (arg, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with('-') => {
                (name.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        let mut inline = inline;
        let mut value = |name: &str| {
            inline
                .take()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-v" | "-V" | "--version" => return Ok(Command::Version),
            "--json" => parsed.json = true,
            "--map" => parsed.map = true,
            "-b" | "--bind" | "--udp" => parsed.udp = Some(address(&arg, &value(&arg)?)?),
            "-t" | "--bind-tcp" | "--tcp" => parsed.tcp = Some(address(&arg, &value(&arg)?)?),
            "--allow-host" => parsed.allow_hosts.push(value(&arg)?),
            "-n" | "--region" => {
                let region = value(&arg)?;
                if !region_ok(&region) {
                    return Err(format!("{arg}: `{region}` is not a region like us-east-1"));
                }
                parsed.region = Some(region);
            }
            "--endpoint" => parsed.endpoint = Some(value(&arg)?),
            "-m" | "--buffer-memory" => {
                let text = value(&arg)?;
                match text.parse::<u64>() {
                    Ok(mb) if mb >= 3 => parsed.buffer_mb = Some(mb),
                    _ => return Err(format!("{arg}: `{text}` is not a number of MB, at least 3")),
                }
            }
            "--concurrency" => {
                let text = value(&arg)?;
                match text.parse::<usize>() {
                    Ok(n) if n >= 1 => parsed.concurrency = Some(n),
                    _ => return Err(format!("{arg}: `{text}` is not a number, at least 1")),
                }
            }
            "-o" | "--local-mode" => parsed.local_mode = true,
            "-r" | "--role-arn" => parsed.role_arn = Some(value(&arg)?),
            "-a" | "--resource-arn" => parsed.resource_arn = Some(value(&arg)?),
            "-p" | "--proxy-address" => parsed.proxy = Some(value(&arg)?),
            "-c" | "--config" => parsed.config = Some(PathBuf::from(value(&arg)?)),
            "-f" | "--log-file" => parsed.log_file = Some(PathBuf::from(value(&arg)?)),
            "-l" | "--log-level" => parsed.log_level = Some(value(&arg)?),
            "--rules" => parsed.rules = Some(PathBuf::from(value("--rules")?)),
            "--quiet-ms" => parsed.quiet = Some(millis("--quiet-ms", &value("--quiet-ms")?)?),
            "--idle-ms" => parsed.idle = Some(millis("--idle-ms", &value("--idle-ms")?)?),
            other => return Err(format!("unknown argument `{other}`")),
        }
        if inline.is_some() {
            return Err(format!("{arg} takes no value"));
        }
    }
    Ok(Command::Run(Box::new(parsed)))
}

fn parse_query(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut query = Query {
        addr: SocketAddr::from(([127, 0, 0, 1], 2000)),
        json: false,
        map: false,
        filter: None,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--json" => query.json = true,
            "--map" => query.map = true,
            "--addr" => {
                let text = args.next().ok_or("--addr needs a value")?;
                query.addr = address("--addr", &text)?;
            }
            other if other.starts_with("--") => return Err(format!("unknown argument `{other}`")),
            _ if query.filter.is_some() => {
                return Err("give the filter as one argument (quote it)".to_owned());
            }
            _ => query.filter = Some(arg),
        }
    }
    Ok(Command::Query(query))
}

/// Prints text and a newline on stdout, or nothing if stdout is closed or broken (`println!`
/// panics then).
fn print_text(text: &str) {
    let mut stdout = io::stdout().lock();
    let _ = writeln!(stdout, "{text}").and_then(|()| stdout.flush());
}

fn millis(name: &str, text: &str) -> Result<Duration, String> {
    text.parse()
        .map(Duration::from_millis)
        .map_err(|_| format!("{name}: `{text}` is not a whole number of milliseconds"))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Query(query)) => return run_query(&query),
        Ok(Command::Help) => {
            print_text(USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            print_text(concat!("xray-local ", env!("CARGO_PKG_VERSION")));
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            stderr_line!("xray-local: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (file, loaded) = match config::load(args.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(err) => {
            let cause = std::error::Error::source(&err)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            stderr_line!("xray-local: {err}{cause}");
            return ExitCode::from(2);
        }
    };
    let mut args = match Settings::merge(*args, file, loaded) {
        Ok(settings) => settings,
        Err(msg) => {
            stderr_line!("xray-local: {msg}");
            return ExitCode::from(2);
        }
    };
    let log = match &args.log_file {
        Some(path) => match logging::DaemonLog::file(args.log_level, path, args.log_rotation) {
            Ok(log) => std::sync::Arc::new(log),
            Err(err) => {
                stderr_line!(
                    "xray-local: cannot open the log file {}: {err}",
                    path.display()
                );
                return ExitCode::from(2);
            }
        },
        None => std::sync::Arc::new(logging::DaemonLog::stderr(args.log_level)),
    };
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        let subscriber = tracing_subscriber::registry().with(ArcLayer(std::sync::Arc::clone(&log)));
        let _ = tracing::subscriber::set_global_default(subscriber);
    }
    // The program's own reports: to the log file when there is one, else to stderr as lines
    // prefixed `xray-local:`.
    let to_file = args.log_file.is_some();
    let report = move |level: tracing::Level, line: &str| {
        if to_file {
            log.write_line(level, line);
        } else {
            // Not `eprintln!`, which panics when stderr is closed. Made safe: a line may quote
            // what a peer sent.
            stderr_line!("xray-local: {}", render::safe(line));
        }
    };
    // The metadata look-ups of the AWS daemon. Instance metadata is asked only when a
    // cfg.yaml is in use, as on a host set up for the AWS daemon: without one, xray-local is
    // the local viewer, and forwards nothing unless given a region.
    if args.region.is_none() && !args.local_mode {
        let loaded = args.loaded.is_some();
        args.region = ecs_region().or_else(|| loaded.then(instance_region).flatten());
    }
    let mut builder = XRayLocal::builder()
        .udp_addr(args.udp)
        .quiet_period(args.quiet)
        .idle_timeout(args.idle);
    if let Some(tcp) = args.tcp {
        builder = builder.tcp_addr(tcp);
    }
    for host in &args.allow_hosts {
        builder = builder.allow_host(host.as_str());
    }
    if let Some(region) = &args.region {
        let mut forward = ForwardConfig::new(region.as_str()).concurrency(args.concurrency);
        if let Some(endpoint) = &args.endpoint {
            forward = forward.endpoint(endpoint.as_str());
        }
        if let Some(mb) = args.buffer_mb {
            let mb = usize::try_from(mb).unwrap_or(usize::MAX);
            forward = forward.buffer_bytes(mb.saturating_mul(1024 * 1024));
        }
        if let Some(arn) = &args.role_arn {
            forward = forward.role_arn(arn.as_str());
        }
        if let Some(arn) = &args.resource_arn {
            forward = forward.resource_arn(arn.as_str());
        }
        if let Some(url) = &args.proxy {
            forward = match forward.proxy(url.as_str()) {
                Ok(forward) => forward,
                Err(err) => {
                    stderr_line!("xray-local: --proxy-address: {err}");
                    return ExitCode::from(2);
                }
            };
        }
        builder = builder.forward(forward);
        if args.rules.is_some() {
            // Rules given by hand are meant to be used.
            builder = builder.local_sampling();
        }
    } else if args.endpoint.is_some() || args.role_arn.is_some() || args.proxy.is_some() {
        stderr_line!(
            "xray-local: an endpoint, role or proxy is for forwarding to X-Ray: give a region \
             too (-n, Region in cfg.yaml, or AWS_REGION)"
        );
        return ExitCode::from(2);
    }
    if let Some(path) = &args.rules {
        builder = match builder.rules_file(path) {
            Ok(builder) => builder,
            Err(err) => {
                let cause = std::error::Error::source(&err)
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default();
                stderr_line!("xray-local: --rules {}: {err}{cause}", path.display());
                return ExitCode::from(2);
            }
        };
    }
    let local = match builder.start() {
        Ok(local) => local,
        Err(err) => {
            stderr_line!(
                "xray-local: cannot listen on udp {} / tcp {}: {err}",
                args.udp,
                args.tcp.map_or_else(
                    || format!("loopback port {}", args.udp.port()),
                    |tcp| tcp.to_string()
                )
            );
            return ExitCode::FAILURE;
        }
    };
    // Always on stderr: scripts wait for this line to learn the addresses.
    let _ = writeln!(
        io::stderr(),
        "xray-local: listening on udp {} tcp {}",
        local.udp_addr(),
        local.tcp_addr()
    );
    if to_file {
        // And in the log, where an operator looks, and where they are found when stderr is
        // closed.
        report(
            tracing::Level::INFO,
            &format!(
                "listening on udp {} tcp {}",
                local.udp_addr(),
                local.tcp_addr()
            ),
        );
    }
    if let Some(region) = &args.region {
        let _ = writeln!(
            io::stderr(),
            "xray-local: forwarding to AWS X-Ray in {region}{}",
            args.endpoint
                .as_deref()
                .map(|e| format!(" at {e}"))
                .unwrap_or_default()
        );
    }
    report(tracing::Level::INFO, local.exposure());
    if let Some(path) = &args.loaded {
        report(
            tracing::Level::INFO,
            &format!("configuration from {}", path.display()),
        );
    }
    let mut forwarded = ForwardStats::default();
    let stop = stop_on_signal();

    let mut completed = local.completed();
    let mut reported = Stats::default();
    let mut last_report: Option<std::time::Instant> = None;
    let mut map_due = false;
    let mut printer = Printer::default();
    loop {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            // Stop reading, file what was read and send what waits for X-Ray (5 s at most).
            local.shutdown();
            if printer.unprinted > 0 {
                report(
                    tracing::Level::WARN,
                    &format!(
                        "{} trace(s) were not printed: stdout was closed or failing",
                        printer.unprinted
                    ),
                );
            }
            if let Some(f) = local.forward_stats() {
                report(
                    tracing::Level::INFO,
                    &format!(
                        "stopped; forwarded {} of {} document(s) ({} not processed, {} \
                         dropped, {} failed)",
                        f.uploaded, f.queued, f.rejected, f.dropped_buffer_full, f.failed
                    ),
                );
            }
            return ExitCode::SUCCESS;
        }
        let settled = completed.next_timeout(Duration::from_secs(1));
        let text = match &settled {
            Some(_) if printer.closed => {
                printer.unprinted += 1;
                None
            }
            Some(trace) if args.json => Some(render::json(trace)),
            Some(trace) => Some(render::timeline(trace)),
            // Traffic paused: the map of everything held, once per pause.
            None if args.map && map_due && !printer.closed => {
                map_due = false;
                Some(render::service_map(&local.traces()))
            }
            None => None,
        };
        if settled.is_some() {
            map_due = true;
        }
        if let Some(text) = text
            && let Some(line) = printer.print(&text, settled.is_some())
        {
            report(tracing::Level::WARN, &line);
        }
        // The library logs through `tracing`, which this binary does not install: report
        // drops here instead, once per second at most.
        if last_report.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            continue;
        }
        last_report = Some(std::time::Instant::now());
        let stats = local.stats();
        let mut lines = Vec::new();
        for reason in DropReason::ALL {
            let new = stats.dropped(reason) - reported.dropped(reason);
            if new > 0 {
                lines.push(format!("dropped {new} datagram(s): {reason}"));
            }
        }
        let kernel = stats.kernel_dropped().unwrap_or(0);
        let kernel = kernel.saturating_sub(reported.kernel_dropped().unwrap_or(0));
        if kernel > 0 {
            lines.push(format!(
                "the system dropped {kernel} datagram(s): the socket's receive buffer was full"
            ));
        }
        let evicted = stats.evicted_unsettled() - reported.evicted_unsettled();
        if evicted > 0 {
            lines.push(format!(
                "evicted {evicted} trace(s) before they were shown complete, to stay within \
                 the bounds on traces held"
            ));
        }
        if let Some(now) = local.forward_stats() {
            for (what, n) in [
                (
                    "dropped, the forwarding buffer being full",
                    now.dropped_buffer_full - forwarded.dropped_buffer_full,
                ),
                ("not processed by X-Ray", now.rejected - forwarded.rejected),
                (
                    "lost: the upload failed for good",
                    now.failed - forwarded.failed,
                ),
            ] {
                if n > 0 {
                    lines.push(format!("{n} document(s) {what}"));
                }
            }
            forwarded = now;
        }
        for line in lines {
            report(tracing::Level::WARN, &line);
        }
        reported = stats;
    }
}

/// Prints the traces on stdout. A daemon does not stop for its stdout: when printing fails,
/// what was to be printed is lost and counted, and receiving, forwarding and the read API go
/// on. A closed pipe (`xray-local | head`, a log collector gone) stops the printing for good;
/// any other error (a full disk) is tried again with the next trace.
#[derive(Debug, Default)]
struct Printer {
    /// Stdout is a closed pipe: nothing is rendered any more.
    closed: bool,
    /// The last write failed, and that was reported.
    failing: bool,
    /// Settled traces not printed.
    unprinted: u64,
}

impl Printer {
    /// Prints `text` and a newline; returns the line to report when printing stops or
    /// starts working again.
    fn print(&mut self, text: &str, is_trace: bool) -> Option<String> {
        let mut stdout = io::stdout().lock();
        match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
            Ok(()) if self.failing => {
                self.failing = false;
                Some(format!(
                    "printing traces again; {} trace(s) were not printed",
                    self.unprinted
                ))
            }
            Ok(()) => None,
            Err(err) => {
                self.unprinted += u64::from(is_trace);
                self.closed = err.kind() == io::ErrorKind::BrokenPipe;
                let first = !std::mem::replace(&mut self.failing, true);
                (first || self.closed).then(|| {
                    if self.closed {
                        "stdout is closed: traces are no longer printed; receiving, forwarding \
                         and the read API go on"
                            .to_owned()
                    } else {
                        format!(
                            "cannot print traces on stdout ({err}); receiving, forwarding and \
                             the read API go on"
                        )
                    }
                })
            }
        }
    }
}

/// The task's region from the ECS container metadata file, as the AWS daemon reads it: with
/// `ECS_ENABLE_CONTAINER_METADATA=true`, the file named by `ECS_CONTAINER_METADATA_FILE` holds
/// the `TaskARN`, whose fourth `:` field is the region.
fn ecs_region() -> Option<String> {
    let enabled = std::env::var("ECS_ENABLE_CONTAINER_METADATA")
        .is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    if !enabled {
        return None;
    }
    let text = std::fs::read_to_string(std::env::var_os("ECS_CONTAINER_METADATA_FILE")?).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    let arn = value.get("TaskARN")?.as_str()?;
    arn.split(':')
        .nth(3)
        .filter(|r| region_ok(r))
        .map(str::to_owned)
}

/// The instance's region from EC2 instance metadata (IMDSv2), as the AWS daemon looks it up
/// when not in local mode: one quick attempt, so that a machine without metadata starts at
/// once. `AWS_EC2_METADATA_DISABLED=true` skips it; `AWS_EC2_METADATA_SERVICE_ENDPOINT` moves it.
fn instance_region() -> Option<String> {
    use aws_config::imds::region::ImdsRegionProvider;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    runtime.block_on(async {
        let provider_config = aws_config::provider_config::ProviderConfig::default();
        let client = aws_config::imds::Client::builder()
            .configure(&provider_config)
            .connect_timeout(Duration::from_millis(300))
            .read_timeout(Duration::from_secs(1))
            .max_attempts(1)
            .build();
        let provider = ImdsRegionProvider::builder()
            .configure(&provider_config)
            .imds_client(client)
            .build();
        tokio::time::timeout(Duration::from_secs(2), provider.region())
            .await
            .ok()
            .flatten()
            .map(|region| region.as_ref().to_owned())
    })
}

/// The log layer behind an `Arc`, so that the program's own reports share its file.
struct ArcLayer(std::sync::Arc<logging::DaemonLog>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ArcLayer {
    fn enabled(
        &self,
        metadata: &tracing::Metadata<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        tracing_subscriber::Layer::<S>::enabled(&*self.0, metadata, ctx)
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        tracing_subscriber::Layer::<S>::on_event(&*self.0, event, ctx);
    }
}

/// A flag raised by SIGINT or SIGTERM (Ctrl-C elsewhere), so that the daemon stops in order:
/// the main loop sees it within a second.
fn stop_on_signal() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    let spawned = std::thread::Builder::new()
        .name("xray-local-signals".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                #[cfg(unix)]
                {
                    use tokio::signal::unix::{SignalKind, signal};
                    match signal(SignalKind::terminate()) {
                        Ok(mut term) => {
                            tokio::select! {
                                _ = tokio::signal::ctrl_c() => {}
                                _ = term.recv() => {}
                            }
                        }
                        Err(_) => {
                            let _ = tokio::signal::ctrl_c().await;
                        }
                    }
                }
                #[cfg(not(unix))]
                let _ = tokio::signal::ctrl_c().await;
            });
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    if spawned.is_err() {
        let _ = writeln!(
            io::stderr(),
            "xray-local: cannot watch for signals; stop it with kill -9"
        );
    }
    stop
}

fn run_query(query: &Query) -> ExitCode {
    let mut path = String::from("/traces");
    if let Some(filter) = &query.filter {
        // Checked here first, to point at the problem in the text as typed.
        if let Err(err) = Filter::parse(filter) {
            let _ = writeln!(
                io::stderr(),
                "xray-local: the filter is not valid: {err}\n  {filter}\n  {}^",
                " ".repeat(
                    filter
                        .get(..err.position())
                        .map_or(0, |s| s.chars().count())
                )
            );
            return ExitCode::from(2);
        }
        path.push_str("?filter=");
        path.push_str(&url_encode(filter));
    }
    let body = match http_get(query.addr, &path) {
        Ok((200, body)) => body,
        Ok((status, body)) => {
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                .unwrap_or(body);
            let _ = writeln!(
                io::stderr(),
                "xray-local: the daemon answered {status}: {}",
                render::safe(&message)
            );
            return ExitCode::FAILURE;
        }
        Err(err) => {
            let _ = writeln!(
                io::stderr(),
                "xray-local: cannot query {}: {err}",
                query.addr
            );
            return ExitCode::FAILURE;
        }
    };
    // Parsed with serde_json's default limits: the read API keeps every answer within them
    // (see `Trace`'s JSON form), so any client can read it.
    let traces: Vec<Trace> = match serde_json::from_str(&body) {
        Ok(traces) => traces,
        Err(err) => {
            let _ = writeln!(
                io::stderr(),
                "xray-local: {} did not answer with traces ({}); is it an xray-local?",
                query.addr,
                render::safe(&err.to_string())
            );
            return ExitCode::FAILURE;
        }
    };
    let mut out = String::new();
    if query.map {
        out.push_str(&render::service_map(&traces));
    } else {
        for trace in &traces {
            if query.json {
                out.push_str(&render::json(trace));
            } else {
                out.push_str(&render::timeline(trace));
            }
            out.push('\n');
        }
    }
    let mut stdout = io::stdout().lock();
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
    ExitCode::SUCCESS
}

/// A GET over a fresh connection; the daemon answers with a `Content-Length` body, or a
/// chunked one for a list of traces, and closes.
fn http_get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, QUERY_TIMEOUT)?;
    stream.set_read_timeout(Some(QUERY_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "not an HTTP response");
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let chunked = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked")
        })
    });
    if !chunked {
        return Ok((status, body.to_owned()));
    }
    let mut joined = String::with_capacity(body.len());
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or_else(bad)?;
        let size = size.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| bad())?;
        if size == 0 {
            return Ok((status, joined));
        }
        joined.push_str(after.get(..size).ok_or_else(bad)?);
        rest = after
            .get(size..)
            .and_then(|r| r.strip_prefix("\r\n"))
            .ok_or_else(bad)?;
    }
}

fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
