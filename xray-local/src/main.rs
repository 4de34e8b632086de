//! `xray-local`: a local X-Ray daemon that prints each trace as it completes.

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use xray_local::{DropReason, Stats, XrayLocal, render};

const USAGE: &str = "\
Usage: xray-local [OPTIONS]

Listens for X-Ray segment documents over UDP and prints each trace once it completes.

Options:
  --udp ADDR        UDP address to listen on [default: 127.0.0.1:2000]
  --json            print each trace as one JSON line instead of a timeline
  --quiet-ms MS     wait this long without new documents before printing a complete
                    trace [default: 1000]
  --idle-ms MS      print a trace that still looks incomplete after this long without
                    new documents [default: 10000]
  -h, --help        print this help
  -V, --version     print the version

Point an SDK at it with AWS_XRAY_DAEMON_ADDRESS=<ADDR>.";

#[derive(Debug)]
struct Args {
    udp: SocketAddr,
    json: bool,
    quiet: Duration,
    idle: Duration,
}

enum Command {
    Run(Args),
    Help,
    Version,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut parsed = Args {
        udp: SocketAddr::from(([127, 0, 0, 1], 2000)),
        json: false,
        quiet: Duration::from_millis(1000),
        idle: Duration::from_millis(10_000),
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--json" => parsed.json = true,
            "--udp" => {
                let text = value("--udp")?;
                parsed.udp = text
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut addrs| addrs.next())
                    .ok_or_else(|| {
                        format!("--udp: `{text}` is not an address like 127.0.0.1:2000")
                    })?;
            }
            "--quiet-ms" => parsed.quiet = millis("--quiet-ms", &value("--quiet-ms")?)?,
            "--idle-ms" => parsed.idle = millis("--idle-ms", &value("--idle-ms")?)?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Command::Run(parsed))
}

fn millis(name: &str, text: &str) -> Result<Duration, String> {
    text.parse()
        .map(Duration::from_millis)
        .map_err(|_| format!("{name}: `{text}` is not a whole number of milliseconds"))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("xray-local {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("xray-local: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let local = match XrayLocal::builder()
        .udp_addr(args.udp)
        .quiet_period(args.quiet)
        .idle_timeout(args.idle)
        .start()
    {
        Ok(local) => local,
        Err(err) => {
            eprintln!("xray-local: cannot listen on udp {}: {err}", args.udp);
            return ExitCode::FAILURE;
        }
    };
    eprintln!("xray-local: listening on udp {}", local.udp_addr());

    let mut completed = local.completed();
    let mut reported = Stats::default();
    loop {
        if let Some(trace) = completed.next_timeout(Duration::from_secs(1)) {
            let text = if args.json {
                serde_json::to_string(&trace).unwrap_or_default()
            } else {
                render::timeline(&trace)
            };
            let mut stdout = io::stdout().lock();
            // A closed pipe (`xray-local | head`) ends the program quietly.
            if writeln!(stdout, "{text}")
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return ExitCode::SUCCESS;
            }
        }
        // The library logs through `tracing`, which this binary does not install: report
        // drops here instead, once per second at most.
        let stats = local.stats();
        for reason in DropReason::ALL {
            let new = stats.dropped(reason) - reported.dropped(reason);
            if new > 0 {
                // Not `eprintln!`, which panics when stderr is closed.
                let _ = writeln!(
                    io::stderr(),
                    "xray-local: dropped {new} datagram(s): {reason}"
                );
            }
        }
        reported = stats;
    }
}
