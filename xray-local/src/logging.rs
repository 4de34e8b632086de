//! The program's log: `tracing` events written as the AWS daemon writes its log lines
//! (`2006-01-02T15:04:05Z [Info] message`), to stderr or to a file (`-f/--log-file`) that rolls
//! over at 50 MB keeping one rolled file, as the AWS daemon's `Logging.LogRotation` does.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Where a log file rolls over.
const ROLL_BYTES: u64 = 50 * 1024 * 1024;

enum Sink {
    Stderr,
    File {
        path: PathBuf,
        file: File,
        written: u64,
        rotate: bool,
    },
}

/// The layer: events at `level` or above, one line each.
pub(crate) struct DaemonLog {
    level: Level,
    sink: Mutex<Sink>,
}

impl DaemonLog {
    /// Logs to stderr.
    pub(crate) fn stderr(level: Level) -> DaemonLog {
        DaemonLog {
            level,
            sink: Mutex::new(Sink::Stderr),
        }
    }

    /// Logs to `path`, appending; with `rotate`, the file is renamed to `<path>.1` (replacing
    /// an older one) when it reaches 50 MB, and a new one begun.
    pub(crate) fn file(level: Level, path: &Path, rotate: bool) -> io::Result<DaemonLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(DaemonLog {
            level,
            sink: Mutex::new(Sink::File {
                path: path.to_owned(),
                file,
                written,
                rotate,
            }),
        })
    }

    /// Writes one line as is (already formatted), ignoring a closed or full destination: the
    /// daemon goes on whatever happens to its log.
    pub(crate) fn write_line(&self, level: Level, message: &str) {
        let mut line = String::with_capacity(message.len() + 32);
        timestamp(&mut line, SystemTime::now());
        let name = match level {
            Level::TRACE => "Trace",
            Level::DEBUG => "Debug",
            Level::INFO => "Info",
            Level::WARN => "Warn",
            Level::ERROR => "Error",
        };
        // Made safe: a message may quote what a peer sent, and one event stays one line.
        let _ = write!(line, " [{name}] {}", xray_local::render::safe(message));
        line.push('\n');
        let mut sink = self.sink.lock();
        match &mut *sink {
            Sink::Stderr => {
                let _ = io::stderr().write_all(line.as_bytes());
            }
            Sink::File {
                path,
                file,
                written,
                rotate,
            } => {
                if *rotate && *written > 0 && *written + line.len() as u64 > ROLL_BYTES {
                    let mut rolled = path.clone().into_os_string();
                    rolled.push(".1");
                    let reopened = std::fs::rename(&*path, &rolled)
                        .and_then(|()| OpenOptions::new().create(true).append(true).open(&*path));
                    if let Ok(new) = reopened {
                        *file = new;
                        *written = 0;
                    }
                }
                if file.write_all(line.as_bytes()).is_ok() {
                    *written += line.len() as u64;
                }
            }
        }
    }
}

impl<S: Subscriber> Layer<S> for DaemonLog {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        *metadata.level() <= self.level
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > self.level {
            return;
        }
        let mut text = Fields::default();
        event.record(&mut text);
        self.write_line(level, &text.line);
    }
}

/// The message first, then `key=value` for the other fields.
#[derive(Default)]
struct Fields {
    line: String,
    rest: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.line, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
        if !self.rest.is_empty() && field.name() == "message" {
            return;
        }
        self.flush();
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.line.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
        self.flush();
    }
}

impl Fields {
    /// Keeps the message in front of the fields whatever order they were recorded in.
    fn flush(&mut self) {
        if !self.line.is_empty() && !self.rest.is_empty() {
            self.line.push_str(&self.rest);
            self.rest.clear();
        }
    }
}

/// `2006-01-02T15:04:05Z`, in UTC.
fn timestamp(out: &mut String, now: SystemTime) {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_dates() {
        let mut s = String::new();
        timestamp(&mut s, UNIX_EPOCH);
        assert_eq!(s, "1970-01-01T00:00:00Z");
        s.clear();
        // 2024-02-29T23:59:59Z, a leap day.
        timestamp(&mut s, UNIX_EPOCH + Duration::from_secs(1_709_251_199));
        assert_eq!(s, "2024-02-29T23:59:59Z");
        s.clear();
        timestamp(&mut s, UNIX_EPOCH + Duration::from_secs(1_795_000_000));
        // As `date -u -d @1795000000` prints it.
        assert_eq!(s, "2026-11-18T11:06:40Z");
    }

    #[test]
    fn a_file_log_rolls_over_and_keeps_one_rolled_file() {
        let dir = std::env::temp_dir().join(format!("xray-local-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("xray.log");
        std::fs::write(&path, vec![b'x'; ROLL_BYTES as usize - 10]).unwrap();
        let log = DaemonLog::file(Level::INFO, &path, true).unwrap();
        log.write_line(Level::INFO, "first line after the roll");
        log.write_line(Level::WARN, "second");
        let rolled = std::fs::metadata(dir.join("xray.log.1")).unwrap().len();
        assert_eq!(rolled, ROLL_BYTES - 10);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].ends_with("Z [Info] first line after the roll"),
            "{text}"
        );
        assert!(lines[1].ends_with("Z [Warn] second"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
