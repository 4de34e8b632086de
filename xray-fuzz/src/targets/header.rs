//! `X-Amzn-Trace-Id`: [`TraceHeader::parse`] and [`is_sqs_message_sampled`].
//!
//! What must hold, for any text:
//!
//! - a value over [`TraceHeader::MAX_LEN`] is refused as too long, and is not sampled for SQS;
//!   any other refusal is a missing root, and the message does not repeat the value;
//! - an accepted header writes (`Display` and `write_to`, the same text) a valid HTTP header
//!   value of bounded size, with extra fields within [`TraceHeader::MAX_EXTRA_LEN`], that
//!   parses back to the same root, parent, decision and extra fields, and writes the same
//!   text again; with nothing set aside (`received_root`, `received_parent`) it is equal;
//! - what was set aside really is not an id;
//! - its downstream and response headers parse back with the right parent and decision;
//! - `is_sqs_message_sampled` agrees with the parser's `Sampled`, also for values without a
//!   root (checked by putting a valid root in front).

use rand::rngs::SmallRng;
use xray_sdk::header::{Sampled, is_sqs_message_sampled};
use xray_sdk::{SegmentId, TraceHeader, TraceId};

use crate::corpus::Corpus;
use crate::harness::Target;
use crate::mutate::Mutator;

const DICTIONARY: &[&str] = &[
    "Root=",
    "Parent=",
    "Sampled=",
    "Self=",
    "Lineage=",
    "root=",
    "ROOT=",
    "PARENT=",
    "sAmPlEd=",
    "Sampled=1",
    "Sampled=0",
    "Sampled=?",
    "Sampled=",
    "1-5759e988-bd862e3fe1be46a994272793",
    "1-5759E988-BD862E3FE1BE46A994272793",
    "1-00000000-000000000000000000000000",
    "0-5759e988-bd862e3fe1be46a994272793",
    "1-5759e988-bd862e3fe1be46a99427279",
    "53995c3f42cd8ad8",
    "53995C3F42CD8AD8",
    "0000000000000000",
    "Self=1-5759e988-bd862e3fe1be46a994272793",
    "Lineage=10:1234abcd:3",
    "Tenant=blue",
    ";",
    "=",
    "==",
    ";;",
    "  ",
];

/// A valid root, put in front of values to read their `Sampled` field through the parser.
const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";

pub(crate) struct HeaderTarget {
    seeds: Vec<Vec<u8>>,
    accepted: u64,
    refused: u64,
}

impl HeaderTarget {
    pub(crate) fn new(corpus: &Corpus) -> Result<Self, String> {
        Ok(HeaderTarget {
            seeds: corpus.files("header")?,
            accepted: 0,
            refused: 0,
        })
    }
}

impl Target for HeaderTarget {
    fn generate(&mut self, rng: &mut SmallRng) -> Vec<u8> {
        Mutator {
            seeds: &self.seeds,
            dictionary: DICTIONARY,
            max_len: 2 * TraceHeader::MAX_LEN + 64,
        }
        .input(rng)
    }

    fn check(&mut self, input: &[u8]) -> Result<(), String> {
        let text = String::from_utf8_lossy(input);
        if check_value(&text)? {
            self.accepted += 1;
        } else {
            self.refused += 1;
        }
        Ok(())
    }

    fn notes(&self) -> String {
        format!("{} accepted, {} refused", self.accepted, self.refused)
    }
}

/// Checks one header value; returns whether it was accepted.
fn check_value(s: &str) -> Result<bool, String> {
    let sqs = is_sqs_message_sampled(s);
    let header = match TraceHeader::parse(s) {
        Ok(header) => header,
        Err(err) => {
            if s.len() > TraceHeader::MAX_LEN {
                if !err.is_too_long() {
                    return Err(format!(
                        "a {}-byte value is refused with `{err}`, not as too long",
                        s.len()
                    ));
                }
                if sqs {
                    return Err(
                        "is_sqs_message_sampled says sampled for a value over MAX_LEN".to_owned(),
                    );
                }
            } else if !err.is_missing_root() {
                return Err(format!(
                    "refused with `{err}`: neither too long nor without a root"
                ));
            }
            if s.len() >= 16 && err.to_string().contains(s) {
                return Err("the error message repeats the header value".to_owned());
            }
            check_sqs_through_parser(s, sqs)?;
            return Ok(false);
        }
    };
    if s.len() > TraceHeader::MAX_LEN {
        return Err(format!(
            "a {}-byte value is accepted, over MAX_LEN",
            s.len()
        ));
    }
    if sqs != (header.sampled() == Sampled::Yes) {
        return Err(format!(
            "is_sqs_message_sampled says {sqs}, the parser says Sampled={:?}",
            header.sampled()
        ));
    }

    let text = header.to_string();
    let mut written = String::new();
    header.write_to(&mut written);
    if written != text {
        return Err(format!("write_to wrote {written:?}, Display {text:?}"));
    }
    check_writable(&text, "the header")?;
    let extra_len: usize = header.extra().map(|(k, v)| k.len() + v.len()).sum();
    if extra_len > TraceHeader::MAX_EXTRA_LEN {
        return Err(format!(
            "{extra_len} bytes of extra fields kept, over MAX_EXTRA_LEN"
        ));
    }
    let lineage = header
        .extra()
        .find(|(k, _)| *k == "Lineage")
        .map(|(_, v)| v);
    if header.lineage() != lineage {
        return Err("lineage() is not the Lineage extra field".to_owned());
    }
    if let Some(root) = header.received_root()
        && root.parse::<TraceId>().is_ok()
    {
        return Err(format!(
            "the root {root:?} was set aside, but it is a trace id"
        ));
    }
    if let Some(parent) = header.received_parent()
        && (parent.parse::<SegmentId>().is_ok() || header.parent().is_some())
    {
        return Err(format!(
            "the parent {parent:?} was set aside, but it is a segment id or a parent was kept"
        ));
    }

    let again = TraceHeader::parse(&text)
        .map_err(|err| format!("its own output {text:?} is refused: {err}"))?;
    same_context(&header, &again, &text)?;
    if again.received_root().is_some() || again.received_parent().is_some() {
        return Err(format!(
            "its own output {text:?} has a root or parent to set aside"
        ));
    }
    let rewritten = again.to_string();
    if rewritten != text {
        return Err(format!(
            "its own output {text:?} writes {rewritten:?} when read back"
        ));
    }
    if header.received_root().is_none() && header.received_parent().is_none() && again != header {
        return Err(format!(
            "{text:?} reads back as a different header: {again:?} against {header:?}"
        ));
    }

    let call = SegmentId::from_u64(0x0123_4567_89ab_cdef);
    for sampled in [true, false] {
        let downstream = header.downstream(call, sampled).to_string();
        check_writable(&downstream, "the downstream header")?;
        let read = TraceHeader::parse(&downstream)
            .map_err(|err| format!("the downstream header {downstream:?} is refused: {err}"))?;
        if read.root() != header.root()
            || read.parent() != Some(call)
            || read.sampled() != Sampled::from(sampled)
            || !read.extra().eq(header.extra())
        {
            return Err(format!(
                "the downstream header {downstream:?} does not carry this trace, the call as \
                 parent, Sampled={} and the extra fields",
                u8::from(sampled)
            ));
        }
    }
    let response = header.response(true).to_string();
    check_writable(&response, "the response header")?;
    let read = TraceHeader::parse(&response)
        .map_err(|err| format!("the response header {response:?} is refused: {err}"))?;
    let expected = if header.sampled() == Sampled::Requested {
        Sampled::Yes
    } else {
        Sampled::Unknown
    };
    if read.root() != header.root() || read.sampled() != expected {
        return Err(format!(
            "the response header {response:?} should carry the root and {expected:?}"
        ));
    }
    Ok(true)
}

fn same_context(a: &TraceHeader, b: &TraceHeader, text: &str) -> Result<(), String> {
    if a.root() != b.root()
        || a.parent() != b.parent()
        || a.sampled() != b.sampled()
        || !a.extra().eq(b.extra())
    {
        return Err(format!(
            "its own output {text:?} reads back as another context: {b:?} against {a:?}"
        ));
    }
    Ok(())
}

/// What the integrations do with a header they write: `HeaderValue::try_from`.
fn check_writable(text: &str, what: &str) -> Result<(), String> {
    if text.len() > 1024 {
        return Err(format!("{what} is {} bytes long", text.len()));
    }
    if http::HeaderValue::try_from(text.to_owned()).is_err() {
        return Err(format!("{what} {text:?} is not a valid HTTP header value"));
    }
    Ok(())
}

/// `is_sqs_message_sampled` reads `Sampled` as the parser does, whatever the root: with a valid
/// root in front, the parser must say the same.
fn check_sqs_through_parser(s: &str, sqs: bool) -> Result<(), String> {
    let with_root = format!("Root={ROOT};{s}");
    if with_root.len() > TraceHeader::MAX_LEN {
        return Ok(());
    }
    let header = TraceHeader::parse(&with_root)
        .map_err(|err| format!("with a valid root in front it is refused: {err}"))?;
    if sqs != (header.sampled() == Sampled::Yes) {
        return Err(format!(
            "is_sqs_message_sampled says {sqs}, the parser (a valid root in front) says \
             Sampled={:?}",
            header.sampled()
        ));
    }
    Ok(())
}
