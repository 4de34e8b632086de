//! A real MariaDB server (MySQL's protocol), from the Debian package `mariadb-server`, on a
//! free loopback port in a temporary data directory, for the SQL tests. `.ci/run` installs
//! the package (and so does [`MariaDb::start`] when it is missing, with apt). The server runs without its grant tables, so any user and password connect.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::is_root;
use crate::moto::{TempDir, free_port};

/// A MariaDB server on 127.0.0.1, stopped and removed when dropped.
#[derive(Debug)]
pub struct MariaDb {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    log: PathBuf,
    _dir: TempDir,
}

impl MariaDb {
    /// Makes a data directory (`mariadb-install-db`) and starts the server, waiting until it
    /// accepts connections (60 s at most).
    ///
    /// # Panics
    ///
    /// Without MariaDB's server when apt cannot install it (`apt-get install mariadb-server`),
    /// or when it does not start: the panic says which, with the server's log.
    pub fn start() -> MariaDb {
        crate::ensure_debian_package(
            || std::path::Path::new("/usr/sbin/mariadbd").exists(),
            "mariadb-server",
        );
        let install = ["/usr/bin/mariadb-install-db", "/usr/bin/mysql_install_db"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or_else(|| {
                panic!(
                    "MariaDB's server is not installed: no mariadb-install-db \
                     (apt-get install mariadb-server; .ci/run installs it)"
                )
            });
        let dir = TempDir::new();
        let data = dir.path.join("data");
        let user = if is_root() { "mysql" } else { "" };
        if !user.is_empty() {
            let status = Command::new("chown")
                .args(["-R", "mysql:mysql"])
                .arg(&dir.path)
                .status()
                .unwrap();
            assert!(status.success(), "chown of the data directory failed");
        }
        let mut args = vec![
            "--no-defaults".to_owned(),
            format!("--datadir={}", data.display()),
            "--skip-test-db".to_owned(),
            "--auth-root-authentication-method=normal".to_owned(),
        ];
        if !user.is_empty() {
            args.push(format!("--user={user}"));
        }
        let output = Command::new(install)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{install} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let port = free_port();
        let log = dir.path.join("server.log");
        let mut command = Command::new("/usr/sbin/mariadbd");
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!(
                "--socket={}",
                dir.path.join("mysqld.sock").display()
            ))
            .arg(format!(
                "--pid-file={}",
                dir.path.join("mysqld.pid").display()
            ))
            .arg(format!("--log-error={}", log.display()))
            .arg("--skip-grant-tables")
            .arg("--skip-name-resolve")
            .arg("--innodb-buffer-pool-size=16M")
            .arg("--innodb-log-file-size=8M");
        if !user.is_empty() {
            command.arg(format!("--user={user}"));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut server = MariaDb {
            child,
            port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "mariadbd exited ({status}):\n{}",
                    std::fs::read_to_string(&server.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd did not accept connections within 60 s:\n{}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `mysql://app:PASSWORD@127.0.0.1:PORT/mysql`: without grant tables the user and the
    /// password are not checked, so a test can check that the password is not recorded.
    pub fn url(&self) -> String {
        format!(
            "mysql://app:not-to-be-recorded@127.0.0.1:{}/mysql",
            self.port
        )
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
