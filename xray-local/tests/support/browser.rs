//! Headless Chromium from Debian's packages (`chromium`, `chromium-driver`), driven through
//! ChromeDriver's WebDriver endpoint on a free loopback port with fantoccini. `.ci/run`
//! installs the packages; [`Browser::start`] installs them with apt when they are missing.
#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};
use xray_testkit::moto::{TempDir, free_port};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a condition on the page may take to hold.
pub const PAGE_WAIT: Duration = Duration::from_secs(20);

/// A ChromeDriver process and one browser session, ended when dropped.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: TempDir,
}

impl Browser {
    pub async fn start() -> Browser {
        xray_testkit::ensure_debian_package(|| Path::new(CHROMIUM).exists(), "chromium");
        xray_testkit::ensure_debian_package(|| Path::new(CHROMEDRIVER).exists(), "chromium-driver");
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ChromeDriver starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "ChromeDriver did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = TempDir::new();
        // The flags keep Chromium from reaching beyond the machine (updates, sync, QUIC) and
        // let it run as root in a container.
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,900",
            &format!("--user-data-dir={}", profile.path.display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({"binary": CHROMIUM, "args": args}),
        );
        let client = ClientBuilder::rustls()
            .expect("a TLS configuration")
            .capabilities(capabilities)
            .connect(&format!("http://{addr}"))
            .await
            .expect("a WebDriver session in headless Chromium");
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// The value of a JavaScript expression on the page.
    pub async fn eval(&self, expression: &str) -> Value {
        self.client
            .execute(&format!("return ({expression});"), Vec::new())
            .await
            .unwrap_or_else(|err| panic!("evaluating {expression}: {err}"))
    }

    /// Waits until `expression` is truthy on the page; panics with `what` and the page's
    /// status line otherwise.
    pub async fn until(&self, expression: &str, what: &str) {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let value = self.eval(expression).await;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return;
            }
            if Instant::now() > deadline {
                let status = self
                    .eval("document.getElementById('status').textContent")
                    .await;
                panic!(
                    "{what}: `{expression}` did not hold within {PAGE_WAIT:?}; status: {status}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ends the session (the browser quits), then ChromeDriver.
    pub async fn close(mut self) {
        let client = self.client.clone();
        let _ = client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
