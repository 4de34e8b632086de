//! A real PostgreSQL server, from the Debian package `postgresql`, on a free loopback port in
//! a temporary data directory, for the SQL tests. `.ci/run` installs the package (and so does
//! [`Postgres::start`] when it is missing, with apt); the server
//! runs as the `postgres` user when the tests run as root (PostgreSQL refuses to run as root).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::is_root;
use crate::moto::{TempDir, free_port};

/// A PostgreSQL server on 127.0.0.1, stopped and removed when dropped. Trust authentication:
/// any password is accepted, so a test can check that none is recorded.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    /// The port it listens on.
    pub port: u16,
    as_postgres: bool,
    _dir: TempDir,
}

impl Postgres {
    /// Makes a data directory (`initdb`) and starts the server, waiting until it accepts
    /// connections.
    ///
    /// # Panics
    ///
    /// Without PostgreSQL's binaries when apt cannot install them (`apt-get install
    /// postgresql`), or when the server does not start: the panic says which, with the
    /// server's log.
    pub fn start() -> Postgres {
        crate::ensure_debian_package(|| find_bin().is_some(), "postgresql");
        let bin = find_bin().unwrap_or_else(|| {
            panic!(
                "PostgreSQL's server is not installed: no initdb under /usr/lib/postgresql/*/bin \
                 (apt-get install postgresql; .ci/run installs it)"
            )
        });
        let as_postgres = is_root();
        let dir = TempDir::new();
        let data = dir.path.join("data");
        let socket = dir.path.join("socket");
        std::fs::create_dir_all(&socket).unwrap();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir.path)
                .status()
                .unwrap();
            assert!(status.success(), "chown of the data directory failed");
        }
        let server = Postgres {
            bin,
            data,
            port: free_port(),
            as_postgres,
            _dir: dir,
        };
        server.run(
            "initdb",
            &[
                "-D".as_ref(),
                server.data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "--encoding=UTF8".as_ref(),
                "--no-locale".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
            server.port,
            socket.display()
        );
        let log = server.data.with_file_name("server.log");
        server.run(
            "pg_ctl",
            &[
                "start".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-D".as_ref(),
                server.data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
            ],
        );
        server
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/postgres`, with a password that trust
    /// authentication ignores.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres:not-to-be-recorded@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// Runs one of PostgreSQL's programs, as `postgres` when running as root.
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let output = command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|err| panic!("{} could not be run: {err}", path.display()));
        if !output.status.success() {
            let log =
                std::fs::read_to_string(self.data.with_file_name("server.log")).unwrap_or_default();
            panic!(
                "{program} failed ({}):\n{}{}\n{log}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
            );
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let stop = [
            "stop".as_ref(),
            "-m".as_ref(),
            "immediate".as_ref(),
            "-D".as_ref(),
            self.data.as_os_str(),
        ];
        let path = self.bin.join("pg_ctl");
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let _ = command
            .args(stop)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb`.
fn find_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            Path::new(&bin)
                .join("initdb")
                .exists()
                .then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}
