//! `AWS_XRAY_DAEMON_ADDRESS`: `DaemonAddress`'s `FromStr`.
//!
//! What must hold: an accepted address writes a form that parses back to the same address
//! (one address when UDP and TCP are the same, `tcp:… udp:…` otherwise); a refusal names the
//! variable and stays short whatever the value.
//!
//! The parser resolves host names, so a value with a host name other than `localhost` is not
//! given to it: a fuzzer must not send name lookups to the network. Those values are counted
//! in the summary as skipped.

use std::net::SocketAddr;

use rand::rngs::SmallRng;
use xray_sdk::DaemonAddress;
use xray_sdk::config::ENV_DAEMON_ADDRESS;

use crate::corpus::Corpus;
use crate::harness::Target;
use crate::mutate::Mutator;

const DICTIONARY: &[&str] = &[
    "udp:",
    "tcp:",
    "UDP:",
    "127.0.0.1",
    "127.0.0.1:2000",
    "0.0.0.0:0",
    "255.255.255.255:65535",
    "[::1]",
    "[::1]:2000",
    "[fe80::1%2]:2000",
    "[::ffff:127.0.0.1]:2000",
    "::1:2000",
    "localhost",
    "localhost:2000",
    ":2000",
    ":",
    " ",
    "  ",
    "65535",
    "65536",
    "-1",
];

pub(crate) struct DaemonAddressTarget {
    seeds: Vec<Vec<u8>>,
    accepted: u64,
    refused: u64,
    skipped: u64,
}

impl DaemonAddressTarget {
    pub(crate) fn new(corpus: &Corpus) -> Result<Self, String> {
        Ok(DaemonAddressTarget {
            seeds: corpus.files("daemon-address")?,
            accepted: 0,
            refused: 0,
            skipped: 0,
        })
    }
}

impl Target for DaemonAddressTarget {
    fn generate(&mut self, rng: &mut SmallRng) -> Vec<u8> {
        Mutator {
            seeds: &self.seeds,
            dictionary: DICTIONARY,
            max_len: 1024,
        }
        .input(rng)
    }

    fn check(&mut self, input: &[u8]) -> Result<(), String> {
        let value = String::from_utf8_lossy(input);
        if would_look_up(&value) {
            self.skipped += 1;
            return Ok(());
        }
        match value.parse::<DaemonAddress>() {
            Ok(address) => {
                self.accepted += 1;
                let text = address.to_string();
                let back = text
                    .parse::<DaemonAddress>()
                    .map_err(|err| format!("its own form {text:?} is refused: {err}"))?;
                if back != address {
                    return Err(format!("{text:?} reads back as {back:?}, not {address:?}"));
                }
                let split = text.contains(' ');
                if split == (address.udp() == address.tcp()) {
                    return Err(format!(
                        "{text:?} is written in the wrong form for udp {} and tcp {}",
                        address.udp(),
                        address.tcp()
                    ));
                }
            }
            Err(err) => {
                self.refused += 1;
                if err.variable() != ENV_DAEMON_ADDRESS {
                    return Err(format!(
                        "the refusal names {}, not {ENV_DAEMON_ADDRESS}",
                        err.variable()
                    ));
                }
                let message = err.to_string();
                // The value is quoted cut to 128 characters: the message stays bounded.
                if message.len() > 4 * 256 + 512 {
                    return Err(format!(
                        "a {}-byte refusal for a {}-byte value",
                        message.len(),
                        value.len()
                    ));
                }
            }
        }
        Ok(())
    }

    fn notes(&self) -> String {
        format!(
            "{} accepted, {} refused, {} skipped (host names other than localhost)",
            self.accepted, self.refused, self.skipped
        )
    }
}

/// Whether parsing `value` would look a host name up: the parser's own steps (trim, one or
/// two parts split on one space, `udp:`/`tcp:` prefixes, then `host:port` that is not an IP
/// address, with a non-empty host and a valid port), erring on the side of skipping.
fn would_look_up(value: &str) -> bool {
    let trimmed = value.trim();
    let parts: Vec<&str> = trimmed.split(' ').collect();
    if trimmed.is_empty() || parts.len() > 2 {
        return false;
    }
    parts.iter().any(|part| {
        let host_port = part
            .strip_prefix("udp:")
            .or_else(|| part.strip_prefix("tcp:"))
            .unwrap_or(part);
        if host_port.parse::<SocketAddr>().is_ok() {
            return false;
        }
        match host_port.rsplit_once(':') {
            Some((host, port)) => {
                !host.is_empty() && port.parse::<u16>().is_ok() && host != "localhost"
            }
            None => false,
        }
    })
}
