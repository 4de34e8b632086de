//! Randomised and long-running checks of xray-rs, on stable Rust: a fuzz loop for every parser
//! that reads what another process sent, and a soak of traffic into xray-local.
//!
//! # Usage
//!
//! ```text
//! cargo run -p xray-fuzz --release -- all --seconds 60    # every target, 60 s each
//! cargo run -p xray-fuzz -- all --seconds 5               # what CI runs
//! cargo run -p xray-fuzz --release -- header --seconds 600 --seed 7
//! cargo run -p xray-fuzz -- header --replay /tmp/xray-fuzz/header-7-1234.bin
//! cargo run -p xray-fuzz --release -- soak --minutes 60   # an hour of traffic
//! cargo run -p xray-fuzz -- soak --minutes 0.2            # twelve seconds, for CI
//! cargo run -p xray-fuzz -- list
//! ```
//!
//! `xray-fuzz <target|all> [--seconds N] [--seed S] [--corpus DIR] [--replay FILE]` runs each
//! target for `N` seconds (10 by default; `all` runs them one after the other, so `all
//! --seconds 5` takes about 40 s). Inputs come from a seeded random stream (`--seed`, 1 by
//! default; `all` gives each target its own stream from it), so a run is repeatable for a
//! given seed, up to how many inputs fit in the time. Each input is made from the checked-in
//! seed corpus (`xray-fuzz/corpus/<target>/`, inputs taken from the repository's own test
//! data) by structured mutations: bit flips, special characters (`;`, `=`, `*`, `?`, NUL,
//! ESC, high and invalid Unicode), truncation, duplication, splicing two seeds, long repeats,
//! numbers at their limits, JSON values of other types and deep nesting, protobuf messages
//! changed field by field.
//!
//! Every input runs under `catch_unwind`, with a panic hook that sees every thread (the
//! daemon's, the sampler's, tokio's), a time bound (100 ms for the parsers in a release build,
//! ten times that in a debug build; an input over it runs twice more and fails only if slow
//! every time) and a watchdog for hangs. Each target
//! checks its own invariants on top: see the module of each in `src/targets/`. A failure
//! prints the target, the seed, the input number and the input (escaped), saves the input
//! under the temporary directory for `--replay`, and exits 1. Each target that passes prints
//! one line: inputs tried, the slowest input's time, and what was accepted or refused.
//!
//! `xray-fuzz soak [--minutes M] [--seed S] [--rate R] [--concurrency C] [--max-growth P]`
//! runs mixed traffic through a layered axum service into xray-local for `M` minutes (60 by
//! default; fractions allowed) and fails on memory growth or on a loss nobody counted; see
//! `soak.rs`.
//!
//! Exit status: 0 when everything passed, 1 on a failure, 2 on a usage error.

mod corpus;
mod harness;
mod mutate;
mod soak;
mod spans;
mod targets;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use corpus::Corpus;
use harness::RunId;

const USAGE: &str = "\
usage: xray-fuzz <target|all> [--seconds N] [--seed S] [--corpus DIR] [--replay FILE]
       xray-fuzz soak [--minutes M] [--seed S] [--rate R] [--concurrency C] [--max-growth P]
       xray-fuzz list

  --seconds N      how long each target runs (default 10; fractions allowed)
  --seed S         the seed of the inputs, decimal or 0x hex (default 1)
  --corpus DIR     read the seeds from DIR/<target>/ instead of the crate's corpus/
  --replay FILE    run the target once on the input saved in FILE
  --minutes M      how long the soak runs (default 60; 0.2 is twelve seconds)
  --rate R         soak requests per second, all clients together (default 200)
  --concurrency C  soak clients sending at once (default 8)
  --max-growth P   how much resident memory may grow past the warm-up, in percent (default 50)";

/// The command line, parsed.
#[derive(Debug)]
struct Options {
    command: String,
    seconds: f64,
    seed: u64,
    corpus: Option<PathBuf>,
    replay: Option<PathBuf>,
    minutes: f64,
    rate: u32,
    concurrency: usize,
    max_growth: f64,
}

impl Options {
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            command: String::new(),
            seconds: 10.0,
            seed: 1,
            corpus: None,
            replay: None,
            minutes: 60.0,
            rate: 200,
            concurrency: 8,
            max_growth: 50.0,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--seconds" => options.seconds = number(&value("--seconds")?, "--seconds")?,
                "--minutes" => options.minutes = number(&value("--minutes")?, "--minutes")?,
                "--max-growth" => {
                    options.max_growth = number(&value("--max-growth")?, "--max-growth")?;
                }
                "--seed" => options.seed = seed(&value("--seed")?)?,
                "--rate" => {
                    let v = value("--rate")?;
                    options.rate = v
                        .parse()
                        .map_err(|_| format!("--rate {v:?} is not a whole number"))?;
                }
                "--concurrency" => {
                    let v = value("--concurrency")?;
                    options.concurrency = v
                        .parse()
                        .map_err(|_| format!("--concurrency {v:?} is not a whole number"))?;
                }
                "--corpus" => options.corpus = Some(PathBuf::from(value("--corpus")?)),
                "--replay" => options.replay = Some(PathBuf::from(value("--replay")?)),
                "-h" | "--help" | "help" => options.command = "help".to_owned(),
                flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
                command if options.command.is_empty() => options.command = command.to_owned(),
                extra => return Err(format!("unexpected argument {extra:?}")),
            }
        }
        if options.command.is_empty() {
            return Err("no command".to_owned());
        }
        Ok(options)
    }
}

fn number(text: &str, name: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .ok_or_else(|| format!("{name} {text:?} is not a positive number"))
}

fn seed(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("--seed {text:?} is not a number"))
}

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("xray-fuzz: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    harness::install_panic_hook();
    harness::start_watchdog();
    match options.command.as_str() {
        "help" => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        "list" => {
            for (name, about) in targets::ABOUT {
                println!("{name:16} {about}");
            }
            println!("soak             mixed traffic through axum into xray-local (see --minutes)");
            ExitCode::SUCCESS
        }
        "soak" => {
            let soak = soak::SoakOptions {
                minutes: options.minutes,
                seed: options.seed,
                rate: options.rate,
                concurrency: options.concurrency,
                max_growth_percent: options.max_growth,
            };
            match soak::run(&soak) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!(
                        "xray-fuzz: soak FAILED (seed {}):\n  {message}",
                        options.seed
                    );
                    ExitCode::from(1)
                }
            }
        }
        "all" => {
            let corpus = Corpus::new(options.corpus.clone());
            let mut passed = true;
            for &name in targets::NAMES {
                let seed = harness::seed_for(name, options.seed);
                passed &= run_target(name, &corpus, &options, seed);
            }
            if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        name => {
            let Some(name) = targets::static_name(name) else {
                eprintln!("xray-fuzz: no target or command `{name}`\n\n{USAGE}");
                return ExitCode::from(2);
            };
            let corpus = Corpus::new(options.corpus.clone());
            if run_target(name, &corpus, &options, options.seed) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// Builds the target and runs it (or replays one input); whether it passed.
fn run_target(name: &'static str, corpus: &Corpus, options: &Options, seed: u64) -> bool {
    let mut target = match targets::make(name, corpus) {
        Ok(target) => target,
        Err(message) => {
            eprintln!("xray-fuzz: {name} cannot start: {message}");
            return false;
        }
    };
    let id = RunId { target: name, seed };
    match &options.replay {
        Some(path) => harness::replay(id, target.as_mut(), path),
        None => harness::run(
            id,
            target.as_mut(),
            Duration::from_secs_f64(options.seconds),
        ),
    }
}
