//! The loop every target runs in: inputs until the time is up, each checked under
//! `catch_unwind` and a watchdog, the slowest one remembered, the first failure reported with
//! what it takes to reproduce it.
//!
//! A panic anywhere in the process counts, not only on the fuzzing thread: the panic hook
//! records every panic (xray-local's threads, the sampler's, tokio's workers), and each input
//! is failed if one happened while it ran. The hook prints nothing itself, so the expected
//! output of a long run is one summary line per target.

use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;

/// How much of an input a report shows; the whole input is saved to a file.
pub(crate) const MAX_SHOWN: usize = 16 * 1024;

/// One fuzz target: how it makes inputs and what must hold for each.
pub(crate) trait Target {
    /// The next input, from the corpus and the random stream.
    fn generate(&mut self, rng: &mut SmallRng) -> Vec<u8>;

    /// Runs the code under test on `input` and checks what must hold; `Err` says what did not.
    fn check(&mut self, input: &[u8]) -> Result<(), String>;

    /// The longest one input may take, its check included, in a release build (ten times as
    /// long in a debug build). An input over it is run twice more and fails only if every run
    /// is over: a busy machine can stall any single run.
    fn time_limit(&self) -> Duration {
        Duration::from_millis(100)
    }

    /// `input` for a person: escaped text unless the target knows better.
    fn describe(&self, input: &[u8]) -> String {
        escape(input, MAX_SHOWN)
    }

    /// Checks at the end of a run, over every input (counters that must add up).
    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// A few words for the summary line: what share was accepted, what was skipped.
    fn notes(&self) -> String {
        String::new()
    }
}

// ===== panics =====

static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while the lock was held must not hide the next ones.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records every panic of the process, silently; [`take_panics`] reads them.
pub(crate) fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed").to_owned();
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a payload that is not a string".to_owned());
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_else(|| "an unknown place".to_owned());
        let mut panics = lock(&PANICS);
        // A panic loop must not eat the memory of a long run.
        if panics.len() < 100 {
            panics.push(format!("thread '{name}' panicked at {location}: {message}"));
        }
    }));
}

/// The panics recorded since the last call.
pub(crate) fn take_panics() -> Vec<String> {
    std::mem::take(&mut *lock(&PANICS))
}

// ===== the watchdog =====

/// The input being checked, for the watchdog to report if it never returns.
struct Armed {
    target: &'static str,
    seed: u64,
    iteration: u64,
    started: Instant,
    limit: Duration,
    input: Vec<u8>,
}

static WATCH: Mutex<Option<Armed>> = Mutex::new(None);

/// Starts the thread that ends the process when one input runs far past its time limit (a
/// hang or an endless loop, which `catch_unwind` cannot catch), after reporting the input.
pub(crate) fn start_watchdog() {
    let spawned = std::thread::Builder::new()
        .name("xray-fuzz-watchdog".to_owned())
        .spawn(|| while watch() {});
    if let Err(err) = spawned {
        eprintln!("xray-fuzz: no watchdog ({err}); a hang will not be reported");
    }
}

/// One look at the input being checked, after a pause; ends the process if it has run far
/// too long. Returns whether to look again.
fn watch() -> bool {
    std::thread::sleep(Duration::from_millis(100));
    let watch = lock(&WATCH);
    if let Some(armed) = watch.as_ref()
        && armed.started.elapsed() > armed.limit
    {
        report(
            armed.target,
            armed.seed,
            armed.iteration,
            &format!(
                "still running after {} (a hang, or an endless loop)",
                millis(armed.started.elapsed())
            ),
            &escape(&armed.input, MAX_SHOWN),
            &armed.input,
        );
        std::process::exit(1);
    }
    true
}

fn hard_limit(limit: Duration) -> Duration {
    (limit * 4).max(Duration::from_secs(5))
}

// ===== the loop =====

/// Identifies one run of one target, for the reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunId {
    pub(crate) target: &'static str,
    pub(crate) seed: u64,
}

/// Runs `target` for `budget` from `seed`; prints the summary line, or the failure. Returns
/// whether every input passed.
pub(crate) fn run(id: RunId, target: &mut dyn Target, budget: Duration) -> bool {
    let mut rng = SmallRng::seed_from_u64(id.seed);
    let started = Instant::now();
    let mut inputs = 0u64;
    let mut slowest = Duration::ZERO;
    let mut slowest_input = Vec::new();
    while started.elapsed() < budget {
        let input = target.generate(&mut rng);
        inputs += 1;
        match check_timed(id, inputs, target, &input) {
            Ok(elapsed) => {
                if elapsed > slowest {
                    slowest = elapsed;
                    slowest_input = input;
                }
            }
            Err(message) => {
                report(
                    id.target,
                    id.seed,
                    inputs,
                    &message,
                    &target.describe(&input),
                    &input,
                );
                return false;
            }
        }
    }
    if let Err(message) = target.finish() {
        eprintln!(
            "xray-fuzz: {} FAILED at the end of the run (seed {}): {message}",
            id.target, id.seed
        );
        return false;
    }
    let notes = target.notes();
    println!(
        "{}: {inputs} inputs in {:.1} s, slowest {} ({} bytes){}{notes} [seed {}]",
        id.target,
        started.elapsed().as_secs_f64(),
        millis(slowest),
        slowest_input.len(),
        if notes.is_empty() { "" } else { "; " },
        id.seed,
    );
    true
}

/// Runs `target` once on the input saved in a file; prints what happened.
pub(crate) fn replay(id: RunId, target: &mut dyn Target, path: &std::path::Path) -> bool {
    let input = match std::fs::read(path) {
        Ok(input) => input,
        Err(err) => {
            eprintln!("xray-fuzz: cannot read {}: {err}", path.display());
            return false;
        }
    };
    match check_timed(id, 1, target, &input) {
        Ok(elapsed) => {
            println!(
                "{}: {} passes ({})",
                id.target,
                path.display(),
                millis(elapsed)
            );
            true
        }
        Err(message) => {
            eprintln!(
                "xray-fuzz: {} FAILED on {}: {message}",
                id.target,
                path.display()
            );
            eprintln!(
                "  input ({} bytes): {}",
                input.len(),
                target.describe(&input)
            );
            false
        }
    }
}

/// How much longer an input may take in a debug build (what `cargo run` without `--release`
/// makes, as CI runs it): unoptimised code is about ten times slower.
const DEBUG_SLOWDOWN: u32 = if cfg!(debug_assertions) { 10 } else { 1 };

/// What a target puts before a failure that may be a stall of a busy machine rather than a
/// bug (a bound of time broken, an answer that did not come in time): the input is run twice
/// more, and fails only if it fails every time.
pub(crate) const SLOW: &str = "slow: ";

/// One input, retried when over the time limit or [`SLOW`].
fn check_timed(
    id: RunId,
    iteration: u64,
    target: &mut dyn Target,
    input: &[u8],
) -> Result<Duration, String> {
    let limit = target.time_limit() * DEBUG_SLOWDOWN;
    let mut outcome = check_once(id, iteration, target, input, limit);
    let mut fastest: Option<Duration> = None;
    for attempt in 0..3 {
        match &outcome {
            Ok(elapsed) if *elapsed <= limit => return Ok(*elapsed),
            Ok(elapsed) => fastest = Some(fastest.map_or(*elapsed, |f| f.min(*elapsed))),
            Err(message) if !message.starts_with(SLOW) => return Err(message.clone()),
            Err(_) => {}
        }
        if attempt == 2 {
            break;
        }
        outcome = check_once(id, iteration, target, input, limit);
    }
    match (outcome, fastest) {
        (Err(message), _) => Err(format!("{message} (on each of three runs)")),
        (Ok(_), Some(fastest)) | (Ok(fastest), None) => Err(format!(
            "took {} even on the fastest of three runs, over the {} bound",
            millis(fastest),
            millis(limit)
        )),
    }
}

fn check_once(
    id: RunId,
    iteration: u64,
    target: &mut dyn Target,
    input: &[u8],
    limit: Duration,
) -> Result<Duration, String> {
    *lock(&WATCH) = Some(Armed {
        target: id.target,
        seed: id.seed,
        iteration,
        started: Instant::now(),
        limit: hard_limit(limit),
        input: input.to_vec(),
    });
    let start = Instant::now();
    let result = panic::catch_unwind(AssertUnwindSafe(|| target.check(input)));
    let elapsed = start.elapsed();
    *lock(&WATCH) = None;
    let panics = take_panics();
    match result {
        Err(_) => Err(format!("panicked: {}", panics.join("; "))),
        Ok(Err(message)) if panics.is_empty() => Err(message),
        Ok(Err(message)) => Err(format!("{message}; and {}", panics.join("; "))),
        Ok(Ok(())) if !panics.is_empty() => Err(format!(
            "a thread panicked while the input ran: {}",
            panics.join("; ")
        )),
        Ok(Ok(())) => Ok(elapsed),
    }
}

/// Prints a failure and saves the input where `--replay` can read it.
fn report(target: &str, seed: u64, iteration: u64, message: &str, shown: &str, input: &[u8]) {
    eprintln!("xray-fuzz: {target} FAILED at input {iteration} (seed {seed}): {message}");
    eprintln!("  input ({} bytes): {shown}", input.len());
    match save(target, seed, iteration, input) {
        Ok(path) => eprintln!(
            "  saved to {}\n  replay: cargo run -p xray-fuzz -- {target} --replay {}\n  again:  cargo run -p xray-fuzz -- {target} --seed {seed}",
            path.display(),
            path.display()
        ),
        Err(err) => eprintln!("  (could not save the input: {err})"),
    }
}

fn save(target: &str, seed: u64, iteration: u64, input: &[u8]) -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join("xray-fuzz");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{target}-{seed}-{iteration}.bin"));
    std::fs::write(&path, input)?;
    Ok(path)
}

// ===== text =====

/// `bytes` as a quoted string a person can read and a Rust literal could hold: printable ASCII
/// as it is, `\n`, `\r`, `\t`, `\"`, `\\`, other characters as `\u{..}`, bytes that are not
/// UTF-8 as `\xNN`; cut after about `max` characters.
pub(crate) fn escape(bytes: &[u8], max: usize) -> String {
    let mut out = String::with_capacity(bytes.len().min(max) + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c == ' ' || c.is_ascii_graphic() => out.push(c),
                c => {
                    let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
                }
            }
            if out.len() > max {
                out.push_str("\" (cut)");
                return out;
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    out
}

/// A duration in milliseconds, for people.
pub(crate) fn millis(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// The seed of one target in a run of several: each target its own stream, all from one seed.
pub(crate) fn seed_for(target: &str, seed: u64) -> u64 {
    // FNV-1a of the name, mixed into the seed.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in target.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    seed ^ hash
}
