//! A hand-written JSON writer for [`Document`]: the recorder's send path.
//!
//! It writes the same JSON value as the `Serialize` impl, field for field, in the same order,
//! but without going through `serde`'s generic machinery: keys are static byte strings, strings
//! that need no escaping (nearly all) are copied in one `memcpy`, ids are formatted in place,
//! and times are written as integer seconds and microseconds. Rarely used blocks (`http`,
//! `cause`, `metadata`, the `aws` environment blocks) still go through `serde_json`.
//!
//! The one textual difference: times are written with all six decimals (`1.500000` where
//! `serde_json` writes `1.5`); both parse to the same `f64`.

use std::sync::{Arc, OnceLock};

use serde::Serialize;

use super::annotation::{AnnotationValue, Annotations};
use super::aws::{Aws, Service, XRaySdk};
use super::{Document, MAX_ROUNDED_SECS, Time, cause_is_empty, http};
use crate::{SegmentId, TraceId};

/// A document that could not be written as JSON: a value given to it through `serde`
/// (metadata, a cause's details) failed to serialize. Its [`source`](std::error::Error::source)
/// says why.
#[derive(Debug)]
pub struct WriteError(serde_json::Error);

impl WriteError {
    pub(crate) fn new(source: serde_json::Error) -> Self {
        WriteError(source)
    }
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the document could not be written as JSON: {}", self.0)
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl Document {
    /// Appends this document as JSON to `out`: the same JSON value as its `Serialize` impl
    /// (`serde_json::to_writer`), written without `serde`'s generic path. This is what the recorder
    /// sends.
    ///
    /// Times are written with six decimals (`1735689600.120000` where `serde_json` writes
    /// `1735689600.12`): the same number. On error (which only a broken `serde_json` value
    /// inside the document could cause) `out` holds a partial document.
    ///
    /// # Examples
    ///
    /// ```
    /// use xray_sdk::{Document, SegmentId};
    /// use xray_sdk::document::seconds_from_micros;
    ///
    /// let mut doc = Document::new("orders", SegmentId::new(), seconds_from_micros(1_735_689_600_120_000));
    /// doc.put_annotation("tenant", "blue")?;
    /// let mut out = Vec::new();
    /// doc.write_json(&mut out).unwrap();
    ///
    /// let fast: serde_json::Value = serde_json::from_slice(&out).unwrap();
    /// assert_eq!(fast, serde_json::to_value(&doc).unwrap());
    /// assert!(out.ends_with(br#""start_time":1735689600.120000,"annotations":{"tenant":"blue"}}"#));
    /// # Ok::<(), xray_sdk::document::AnnotationError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A value given to the document through `serde` (metadata, a cause's details) that
    /// fails to serialize.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), WriteError> {
        // The one writer walks entities through the view every transport sees.
        crate::transport::FinishedEntity::plain(self).write_json(out)
    }

    /// Writes everything up to the `subsegments` array: `{`, then every field but that one.
    pub(crate) fn write_fields(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        out.extend_from_slice(b"{\"name\":");
        write_str(out, &self.name);
        out.extend_from_slice(b",\"id\":");
        write_segment_id(out, self.id);
        if let Some(t) = self.trace_id() {
            out.extend_from_slice(b",\"trace_id\":");
            write_trace_id(out, t);
        }
        if let Some(p) = self.parent_id() {
            out.extend_from_slice(b",\"parent_id\":");
            write_segment_id(out, p);
        }
        if self.independent {
            out.extend_from_slice(b",\"type\":\"subsegment\"");
        }
        out.extend_from_slice(b",\"start_time\":");
        write_time(out, self.start_time)?;
        if let Some(end) = self.end_time() {
            out.extend_from_slice(b",\"end_time\":");
            write_time(out, end)?;
        }
        if self.in_progress {
            out.extend_from_slice(b",\"in_progress\":true");
        }
        if let Some(ns) = self.namespace() {
            out.extend_from_slice(b",\"namespace\":");
            write_str(out, ns);
        }
        if let Some(r) = &self.rare {
            if let Some(v) = &r.origin {
                out.extend_from_slice(b",\"origin\":");
                write_str(out, v);
            }
            if let Some(v) = &r.user {
                out.extend_from_slice(b",\"user\":");
                write_str(out, http::prefix_chars(v, http::MAX_FIELD_CHARS));
            }
            if let Some(v) = &r.resource_arn {
                out.extend_from_slice(b",\"resource_arn\":");
                write_str(out, v);
            }
        }
        if let Some(v) = self
            .service
            .as_deref()
            .filter(|v| **v != Service::default())
        {
            out.extend_from_slice(b",\"service\":");
            write_service(out, v);
        }
        if self.traced {
            out.extend_from_slice(b",\"traced\":true");
        }
        if let Some(v) = self
            .http
            .as_deref()
            .filter(|h| h.request.is_some() || h.response.is_some())
        {
            out.extend_from_slice(b",\"http\":");
            serde_json::to_writer(&mut *out, v)?;
        }
        if let Some(aws) = &self.aws {
            let (shared, json) = sdk_block_and_json();
            if Arc::ptr_eq(aws, shared) {
                // Never changed: `aws_mut` copies a shared block before changing it.
                out.extend_from_slice(b",\"aws\":");
                out.extend_from_slice(json);
            } else if **aws != Aws::default() {
                out.extend_from_slice(b",\"aws\":");
                write_aws(out, aws)?;
            }
        }
        if let Some(v) = self.sql.as_deref().filter(|v| **v != super::Sql::default()) {
            out.extend_from_slice(b",\"sql\":");
            write_sql(out, v);
        }
        if self.error {
            out.extend_from_slice(b",\"error\":true");
        }
        if self.throttle {
            out.extend_from_slice(b",\"throttle\":true");
        }
        if self.fault {
            out.extend_from_slice(b",\"fault\":true");
        }
        if let Some(v) = self.cause.as_deref().filter(|c| !cause_is_empty(c)) {
            out.extend_from_slice(b",\"cause\":");
            serde_json::to_writer(&mut *out, v)?;
        }
        if let Some(v) = self.annotations() {
            out.extend_from_slice(b",\"annotations\":");
            write_annotations(out, v)?;
        }
        if let Some(v) = self.metadata() {
            out.extend_from_slice(b",\"metadata\":");
            serde_json::to_writer(&mut *out, v)?;
        }
        let precursors = self.precursor_ids();
        if !precursors.is_empty() {
            out.extend_from_slice(b",\"precursor_ids\":");
            let mut sep = b'[';
            for id in precursors {
                out.push(sep);
                sep = b',';
                write_segment_id(out, *id);
            }
            out.push(b']');
        }
        if !self.links().is_empty() {
            out.extend_from_slice(b",\"links\":");
            serde_json::to_writer(&mut *out, self.links())?;
        }
        Ok(())
    }
}

/// Starts one element of the `subsegments` array, opening the array first if it is not open.
#[inline]
pub(crate) fn open_element(out: &mut Vec<u8>, open: &mut bool) {
    if *open {
        out.push(b',');
    } else {
        out.extend_from_slice(b",\"subsegments\":[");
        *open = true;
    }
}

/// Closes the `subsegments` array if it was opened, then the document.
#[inline]
pub(crate) fn close_subsegments(out: &mut Vec<u8>, open: bool) {
    if open {
        out.extend_from_slice(b"]}");
    } else {
        out.push(b'}');
    }
}

/// The `aws` block of segments no sampling rule named (this SDK, nothing else), shared by
/// all of them, with its JSON written once.
pub(crate) fn sdk_block() -> &'static Arc<Aws> {
    &sdk_block_and_json().0
}

fn sdk_block_and_json() -> &'static (Arc<Aws>, Box<[u8]>) {
    static BLOCK: OnceLock<(Arc<Aws>, Box<[u8]>)> = OnceLock::new();
    BLOCK.get_or_init(|| {
        let mut aws = Aws::default();
        aws.xray = Some(XRaySdk::rust());
        let mut json = Vec::new();
        // Writing this block cannot fail: it holds strings only.
        let _ = write_aws(&mut json, &aws);
        (Arc::new(aws), json.into_boxed_slice())
    })
}

/// `service`, as its derived `Serialize` writes it.
fn write_service(out: &mut Vec<u8>, v: &Service) {
    let mut w = Fields::new(out);
    w.opt_str(b"\"version\":", v.version.as_deref());
    w.opt_str(b"\"runtime\":", v.runtime.as_deref());
    w.opt_str(b"\"runtime_version\":", v.runtime_version.as_deref());
    w.end();
}

/// `aws`, as its derived `Serialize` writes it: typed fields in declaration order, then the
/// per-operation fields.
fn write_aws(out: &mut Vec<u8>, v: &Aws) -> Result<(), serde_json::Error> {
    let mut w = Fields::new(out);
    w.opt_str(b"\"account_id\":", v.account_id.as_deref());
    w.opt_serde(b"\"ec2\":", v.ec2.as_ref())?;
    w.opt_serde(b"\"ecs\":", v.ecs.as_ref())?;
    w.opt_serde(b"\"eks\":", v.eks.as_ref())?;
    w.opt_serde(b"\"elastic_beanstalk\":", v.elastic_beanstalk.as_ref())?;
    w.opt_serde(
        b"\"cloudwatch_logs\":",
        Some(&v.cloudwatch_logs).filter(|l| !l.is_empty()),
    )?;
    if let Some(sdk) = &v.xray {
        w.key(b"\"xray\":");
        write_sdk(w.out, sdk);
    }
    w.opt_str(b"\"operation\":", v.operation.as_deref());
    w.opt_str(b"\"region\":", v.region.as_deref());
    w.opt_str(b"\"request_id\":", v.request_id.as_deref());
    w.opt_str(b"\"id_2\":", v.id_2.as_deref());
    if let Some(r) = v.retries {
        w.key(b"\"retries\":");
        write_u64(w.out, u64::from(r));
    }
    for (k, value) in v.fields() {
        w.sep();
        write_str(w.out, k);
        w.out.push(b':');
        serde_json::to_writer(&mut *w.out, value)?;
    }
    w.end();
    Ok(())
}

/// The `sql` block, its fields in the model's order (as `serde` writes them).
fn write_sql(out: &mut Vec<u8>, v: &super::Sql) {
    let mut o = Fields::new(out);
    o.opt_str(b"\"connection_string\":", v.connection_string.as_deref());
    o.opt_str(b"\"url\":", v.url.as_deref());
    o.opt_str(b"\"sanitized_query\":", v.sanitized_query.as_deref());
    o.opt_str(b"\"database_type\":", v.database_type.as_deref());
    o.opt_str(b"\"database_version\":", v.database_version.as_deref());
    o.opt_str(b"\"driver_version\":", v.driver_version.as_deref());
    o.opt_str(b"\"user\":", v.user.as_deref().map(http::capped_field));
    o.opt_str(b"\"preparation\":", v.preparation.as_deref());
    o.end();
}

fn write_sdk(out: &mut Vec<u8>, v: &XRaySdk) {
    let mut w = Fields::new(out);
    w.opt_str(b"\"sdk\":", v.sdk.as_deref());
    w.opt_str(b"\"sdk_version\":", v.sdk_version.as_deref());
    w.opt_str(b"\"package\":", v.package.as_deref());
    w.opt_str(b"\"sampling_rule_name\":", v.sampling_rule_name.as_deref());
    w.end();
}

fn write_annotations(out: &mut Vec<u8>, v: &Annotations) -> Result<(), serde_json::Error> {
    let mut sep = b'{';
    for (k, value) in v.iter() {
        out.push(sep);
        sep = b',';
        write_str(out, k);
        out.push(b':');
        match value {
            AnnotationValue::String(s) => write_str(out, s),
            AnnotationValue::Int(i) => {
                if *i < 0 {
                    out.push(b'-');
                }
                write_u64(out, i.unsigned_abs());
            }
            AnnotationValue::UInt(u) => write_u64(out, *u),
            AnnotationValue::Float(f) => serde_json::to_writer(&mut *out, f)?,
            AnnotationValue::Bool(true) => out.extend_from_slice(b"true"),
            AnnotationValue::Bool(false) => out.extend_from_slice(b"false"),
        }
    }
    if sep == b'{' {
        out.push(b'{');
    }
    out.push(b'}');
    Ok(())
}

/// The members of one JSON object, comma-separated.
struct Fields<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Fields<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    fn sep(&mut self) {
        if !std::mem::replace(&mut self.first, false) {
            self.out.push(b',');
        }
    }

    /// Writes a separator and `key`, which includes its quotes and colon.
    fn key(&mut self, key: &[u8]) {
        self.sep();
        self.out.extend_from_slice(key);
    }

    fn opt_str(&mut self, key: &[u8], v: Option<&str>) {
        if let Some(v) = v {
            self.key(key);
            write_str(self.out, v);
        }
    }

    fn opt_serde<T: Serialize>(&mut self, key: &[u8], v: Option<&T>) -> serde_json::Result<()> {
        if let Some(v) = v {
            self.key(key);
            serde_json::to_writer(&mut *self.out, v)?;
        }
        Ok(())
    }

    fn end(self) {
        self.out.push(b'}');
    }
}

/// Bytes a JSON string cannot hold as they are: `"`, `\` and the control characters.
const ESCAPED: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// A JSON string. Strings without `"`, `\` or control characters (nearly all) are copied as
/// they are; the others take `serde_json`'s escaping, so the output is the same.
fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if needs_escape(bytes) {
        // Writing a `str` into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
        return;
    }
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    out.extend_from_slice(bytes);
    out.push(b'"');
}

/// Whether `bytes` holds a byte JSON must escape; eight bytes at a time.
#[inline]
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let (words, rest) = bytes.as_chunks::<8>();
    for w in words {
        let x = u64::from_ne_bytes(*w);
        // The classic word tests: `(v - n * ONES) & !v & HIGHS` is non-zero exactly when
        // some byte of `v` is below `n` (for n <= 0x80); a byte equal to `c` is a zero byte
        // of `x ^ c * ONES`.
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        let found = ((x.wrapping_sub(ONES * 0x20) & !x)
            | (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash))
            & HIGHS;
        if found != 0 {
            return true;
        }
    }
    rest.iter().any(|&b| ESCAPED[b as usize])
}

fn write_segment_id(out: &mut Vec<u8>, id: SegmentId) {
    let mut buf = [b'"'; SegmentId::LEN + 2];
    if let Some((digits, _)) = buf[1..].split_first_chunk_mut::<{ SegmentId::LEN }>() {
        id.write_to(digits);
    }
    out.extend_from_slice(&buf);
}

fn write_trace_id(out: &mut Vec<u8>, id: TraceId) {
    let mut buf = [b'"'; TraceId::LEN + 2];
    if let Some((digits, _)) = buf[1..].split_first_chunk_mut::<{ TraceId::LEN }>() {
        id.write_to(digits);
    }
    out.extend_from_slice(&buf);
}

/// Epoch seconds rounded to the microsecond, as `Time` serializes them: the integer number of
/// microseconds written as seconds, a point and six digits, which parses to the same `f64`.
#[inline]
fn write_time(out: &mut Vec<u8>, t: f64) -> Result<(), serde_json::Error> {
    if !t.is_finite() || t.abs() >= MAX_ROUNDED_SECS {
        return serde_json::to_writer(&mut *out, &Time(t));
    }
    let x = t * 1_000_000.0;
    // `x.round()` (half away from zero) without a libm call: below 2^53 in magnitude the
    // truncation and the remainder are exact.
    let whole = x as i64;
    let rest = x - whole as f64;
    let micros = if rest >= 0.5 {
        whole + 1
    } else if rest <= -0.5 {
        whole - 1
    } else {
        whole
    };
    // `Time` writes -0.0 for a negative time that rounds to zero: so do we.
    let negative = micros < 0 || (micros == 0 && x.is_sign_negative());
    let abs = micros.unsigned_abs();
    let secs = abs / 1_000_000;
    let frac = (abs % 1_000_000) as u32;
    if !negative && (1_000_000_000..10_000_000_000).contains(&secs) {
        // Every time since 2001: ten digits, a point, six decimals, written in pairs.
        let hi = (secs / 100_000_000) as u32;
        let lo = (secs % 100_000_000) as u32;
        let mut buf = [b'.'; 17];
        let (a, b) = (lo / 10_000, lo % 10_000);
        let (c, d) = (frac / 10_000, frac % 10_000);
        put_pair(&mut buf, 0, hi);
        put_pair(&mut buf, 2, a / 100);
        put_pair(&mut buf, 4, a % 100);
        put_pair(&mut buf, 6, b / 100);
        put_pair(&mut buf, 8, b % 100);
        put_pair(&mut buf, 11, c);
        put_pair(&mut buf, 13, d / 100);
        put_pair(&mut buf, 15, d % 100);
        out.extend_from_slice(&buf);
        return Ok(());
    }
    // Sign, up to 10 digits of seconds (times are below 9,007,199,254 s), point, 6 decimals.
    let mut buf = [b'0'; 18];
    let mut frac = frac;
    for d in buf[12..].iter_mut().rev() {
        *d = b'0' + (frac % 10) as u8;
        frac /= 10;
    }
    buf[11] = b'.';
    let start = put_digits(&mut buf, 11, secs);
    let start = if negative {
        let i = start.saturating_sub(1);
        buf[i] = b'-';
        i
    } else {
        start
    };
    out.extend_from_slice(&buf[start..]);
    Ok(())
}

fn write_u64(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 20];
    let i = put_digits(&mut buf, 20, v);
    out.extend_from_slice(&buf[i..]);
}

const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Writes the two digits of `v` (below 100) at `buf[i..i + 2]`.
#[inline]
fn put_pair(buf: &mut [u8], i: usize, v: u32) {
    if let (Some(dst), Some(src)) = (buf.get_mut(i..i + 2), PAIRS.get(v as usize * 2..)) {
        dst[0] = src[0];
        dst[1] = src[1];
    }
}

/// Writes the decimal digits of `v` ending just before `buf[end]`; returns where they start.
/// `buf[..end]` must have room for them (20 bytes hold any `u64`).
fn put_digits(buf: &mut [u8], end: usize, mut v: u64) -> usize {
    let mut i = end;
    while v >= 100 && i >= 2 {
        i -= 2;
        put_pair(buf, i, (v % 100) as u32);
        v /= 100;
    }
    if v >= 10 && i >= 2 {
        i -= 2;
        put_pair(buf, i, v as u32);
    } else if i >= 1 {
        i -= 1;
        buf[i] = b'0' + v as u8;
    }
    i
}
