//! Trace and segment identifiers.
//!
//! Both are stored as integers and are `Copy`; they are written as hex only when they are
//! formatted. A trace id also remembers which of its digits were read in upper case, so that an
//! id is written back exactly as it was received. New ids come from the calling thread's random
//! generator (`rand::rng()`, a
//! cryptographically secure generator seeded once per thread), so generating an id takes no
//! lock and makes no system call. Its output is drawn in blocks of 32 words into a per-thread
//! buffer: an id then costs a thread-local read instead of a generator call each time.

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid [`TraceId`] or [`SegmentId`].
///
/// # Examples
///
/// ```
/// use xray_sdk::TraceId;
///
/// let err = "1-5759e988-xyz".parse::<TraceId>().unwrap_err();
/// assert!(err.to_string().contains("trace id"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseIdError {
    /// A trace id must be `1-` + 8 hex digits + `-` + 24 hex digits (35 characters).
    #[error("invalid trace id: expected `1-` + 8 hex digits + `-` + 24 hex digits")]
    TraceId,
    /// A segment id must be exactly 16 hex digits.
    #[error("invalid segment id: expected 16 hex digits")]
    SegmentId,
}

/// The id of a trace: `1-` + the epoch second the trace started, as 8 hex digits, + `-` + 96
/// random bits as 24 hex digits.
///
/// Parsing accepts upper- and lower-case hex, and the id keeps its spelling: formatting writes
/// back the digits in the case they were read, so a trace id received as `1-632BB806-…` is
/// recorded and forwarded as `1-632BB806-…`, as the Go, Python and Node SDKs do. Two ids that
/// differ only in case are different ids, as they are different strings to X-Ray. Ids made here
/// are lower case.
///
/// # Examples
///
/// ```
/// use xray_sdk::TraceId;
///
/// let id: TraceId = "1-5759e988-bd862e3fe1be46a994272793".parse()?;
/// assert_eq!(id.epoch_seconds(), 0x5759e988);
/// assert_eq!(id.to_string(), "1-5759e988-bd862e3fe1be46a994272793");
///
/// let fresh = TraceId::new();
/// assert_eq!(fresh.to_string().len(), 35);
///
/// let upper: TraceId = "1-632BB806-bd862e3fe1be46a994272793".parse()?;
/// assert_eq!(upper.to_string(), "1-632BB806-bd862e3fe1be46a994272793");
/// assert_eq!(upper.to_lowercase().to_string(), "1-632bb806-bd862e3fe1be46a994272793");
/// # Ok::<(), xray_sdk::id::ParseIdError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId {
    epoch: u32,
    // The 96 random bits, as 32-bit words so the struct stays 20 bytes with 4-byte alignment.
    random_hi: u32,
    random_mid: u32,
    random_lo: u32,
    // Bit `i` set: hex digit `i` (of 32, epoch first) was read in upper case.
    upper: u32,
}

impl TraceId {
    /// The length of a formatted trace id.
    pub const LEN: usize = 35;

    /// A new trace id stamped with the current time.
    pub fn new() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self::with_epoch_seconds(secs as u32)
    }

    /// A new trace id with random bits and the given epoch second.
    pub fn with_epoch_seconds(epoch: u32) -> Self {
        loop {
            let random_hi = random_u64() as u32;
            let random_lo = random_u64();
            if random_hi != 0 || random_lo != 0 {
                return Self {
                    epoch,
                    random_hi,
                    random_mid: (random_lo >> 32) as u32,
                    random_lo: random_lo as u32,
                    upper: 0,
                };
            }
        }
    }

    /// Builds a trace id from its parts; only the low 96 bits of `random` are kept.
    pub const fn from_parts(epoch_seconds: u32, random: u128) -> Self {
        Self {
            epoch: epoch_seconds,
            random_hi: (random >> 64) as u32,
            random_mid: (random >> 32) as u32,
            random_lo: random as u32,
            upper: 0,
        }
    }

    /// The epoch second the trace started.
    pub const fn epoch_seconds(&self) -> u32 {
        self.epoch
    }

    /// The 96 random bits.
    pub const fn random(&self) -> u128 {
        ((self.random_hi as u128) << 64)
            | ((self.random_mid as u128) << 32)
            | self.random_lo as u128
    }

    /// Whether the id is written in lower case only, as ids made here always are.
    pub const fn is_lowercase(&self) -> bool {
        self.upper == 0
    }

    /// The same id spelt in lower case.
    pub const fn to_lowercase(self) -> Self {
        Self { upper: 0, ..self }
    }

    /// Writes the 35 ASCII bytes of the id into `buf`, without allocating.
    pub fn write_to(&self, buf: &mut [u8; Self::LEN]) {
        buf[0] = b'1';
        buf[1] = b'-';
        write_hex(&mut buf[2..10], self.epoch as u64);
        buf[10] = b'-';
        write_hex(&mut buf[11..19], self.random_hi as u64);
        write_hex(&mut buf[19..27], self.random_mid as u64);
        write_hex(&mut buf[27..35], self.random_lo as u64);
        if self.upper != 0 {
            self.write_case(buf);
        }
    }

    #[cold]
    fn write_case(&self, buf: &mut [u8; Self::LEN]) {
        for digit in 0..32 {
            if self.upper & (1 << digit) != 0 {
                // The epoch's 8 digits start at byte 2, the random part's at byte 11.
                let at = if digit < 8 { 2 + digit } else { 3 + digit };
                buf[at].make_ascii_uppercase();
            }
        }
    }

    fn parse_bytes(s: &[u8]) -> Option<Self> {
        if s.len() != Self::LEN || s[0] != b'1' || s[1] != b'-' || s[10] != b'-' {
            return None;
        }
        let upper = s[2..10]
            .iter()
            .chain(&s[11..35])
            .enumerate()
            .fold(0u32, |mask, (i, b)| {
                mask | (u32::from(b.is_ascii_uppercase()) << i)
            });
        Some(Self {
            epoch: parse_hex(&s[2..10])? as u32,
            random_hi: parse_hex(&s[11..19])? as u32,
            random_mid: parse_hex(&s[19..27])? as u32,
            random_lo: parse_hex(&s[27..35])? as u32,
            upper,
        })
    }
}

impl Default for TraceId {
    /// Same as [`TraceId::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; Self::LEN];
        self.write_to(&mut buf);
        f.pad(ascii(&buf))
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl FromStr for TraceId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_bytes(s.as_bytes()).ok_or(ParseIdError::TraceId)
    }
}

impl Serialize for TraceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; Self::LEN];
        self.write_to(&mut buf);
        serializer.serialize_str(ascii(&buf))
    }
}

impl<'de> Deserialize<'de> for TraceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(IdVisitor::<Self>(std::marker::PhantomData))
    }
}

/// The id of a segment, a subsegment or a recorded exception: 64 bits, written as 16 hex
/// digits.
///
/// # Examples
///
/// ```
/// use xray_sdk::SegmentId;
///
/// let id: SegmentId = "53995c3f42cd8ad8".parse()?;
/// assert_eq!(id.as_u64(), 0x53995c3f42cd8ad8);
/// assert_eq!(id.to_string(), "53995c3f42cd8ad8");
/// assert_ne!(SegmentId::new().as_u64(), 0);
/// # Ok::<(), xray_sdk::id::ParseIdError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentId(u64);

impl SegmentId {
    /// The length of a formatted segment id.
    pub const LEN: usize = 16;

    /// A new random id, never zero.
    pub fn new() -> Self {
        loop {
            let v = random_u64();
            if v != 0 {
                return Self(v);
            }
        }
    }

    /// The id with this value.
    pub const fn from_u64(value: u64) -> Self {
        Self(value)
    }

    /// The id as an integer.
    pub const fn as_u64(&self) -> u64 {
        self.0
    }

    /// Writes the 16 ASCII bytes of the id into `buf`, without allocating.
    pub fn write_to(&self, buf: &mut [u8; Self::LEN]) {
        write_hex(buf, self.0);
    }

    fn parse_bytes(s: &[u8]) -> Option<Self> {
        if s.len() != Self::LEN {
            return None;
        }
        parse_hex(s).map(Self)
    }
}

impl Default for SegmentId {
    /// Same as [`SegmentId::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; Self::LEN];
        self.write_to(&mut buf);
        f.pad(ascii(&buf))
    }
}

impl fmt::Debug for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentId({self})")
    }
}

impl FromStr for SegmentId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_bytes(s.as_bytes()).ok_or(ParseIdError::SegmentId)
    }
}

impl Serialize for SegmentId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; Self::LEN];
        self.write_to(&mut buf);
        serializer.serialize_str(ascii(&buf))
    }
}

impl<'de> Deserialize<'de> for SegmentId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(IdVisitor::<Self>(std::marker::PhantomData))
    }
}

// ===== helpers =====

/// Words of random output drawn from the generator at a time.
const RANDOM_BLOCK: usize = 32;

/// A block of the thread's generator output, used front to back: the generator's per-call
/// overhead (a thread-local lookup and a reference count) is paid once per block. Each word is
/// handed out once and is as unpredictable as a direct call's.
struct RandomBlock {
    words: [Cell<u64>; RANDOM_BLOCK],
    next: Cell<usize>,
}

thread_local! {
    static RANDOM: RandomBlock = const {
        RandomBlock {
            words: [const { Cell::new(0) }; RANDOM_BLOCK],
            next: Cell::new(RANDOM_BLOCK),
        }
    };
}

/// 64 bits from the thread's cryptographically secure generator.
#[inline]
fn random_u64() -> u64 {
    RANDOM
        .try_with(|block| {
            let i = block.next.get();
            match block.words.get(i) {
                Some(word) => {
                    block.next.set(i + 1);
                    word.get()
                }
                None => refill(block),
            }
        })
        .unwrap_or_else(|_| rand::rng().next_u64())
}

/// Draws a new block; returns its first word and leaves the rest to be handed out.
#[cold]
#[inline(never)]
fn refill(block: &RandomBlock) -> u64 {
    let mut bytes = [0u8; 8 * RANDOM_BLOCK];
    rand::rng().fill_bytes(&mut bytes);
    for (word, chunk) in block.words.iter().zip(bytes.as_chunks::<8>().0) {
        word.set(u64::from_le_bytes(*chunk));
    }
    block.next.set(1);
    block.words.first().map_or(0, Cell::get)
}

struct IdVisitor<T>(std::marker::PhantomData<T>);

impl<T: FromStr<Err = ParseIdError>> serde::de::Visitor<'_> for IdVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an X-Ray id string")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Two lower-case hex digits for every byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 0xf]];
        i += 1;
    }
    t
};

/// Writes `value` as exactly `buf.len()` lower-case hex digits (the low `4 * len` bits).
fn write_hex(buf: &mut [u8], mut value: u64) {
    let (pairs, odd) = buf.as_chunks_mut::<2>();
    // An odd length ends with a single digit: the lowest nibble.
    if let Some(last) = odd.first_mut() {
        *last = HEX[(value & 0xf) as usize];
        value >>= 4;
    }
    for pair in pairs.iter_mut().rev() {
        *pair = HEX_PAIRS[(value & 0xff) as usize];
        value >>= 8;
    }
}

/// Parses up to 16 hex digits of either case; `None` on any other byte.
fn parse_hex(s: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for &b in s {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | d as u64;
    }
    Some(v)
}

fn ascii(buf: &[u8]) -> &str {
    // Only ever called on buffers filled by `write_to`, which writes ASCII.
    std::str::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_stay_small() {
        assert_eq!(std::mem::size_of::<TraceId>(), 20);
        assert_eq!(std::mem::size_of::<SegmentId>(), 8);
    }

    #[test]
    fn parts_round_trip() {
        let id = TraceId::from_parts(0x5759e988, 0xbd862e3fe1be46a994272793);
        assert_eq!(id.to_string(), "1-5759e988-bd862e3fe1be46a994272793");
        assert_eq!(id.random(), 0xbd862e3fe1be46a994272793);
    }

    #[test]
    fn upper_case_is_accepted_and_written_as_read() {
        for text in [
            "1-5759E988-BD862E3FE1BE46A994272793",
            "1-5759e988-bd862e3fe1be46a99427279F",
            "1-F759e988-Bd862e3fe1be46a994272793",
            "1-632BB806-bd862e3fe1be46a994272793",
        ] {
            let id: TraceId = text.parse().unwrap();
            assert_eq!(id.to_string(), text);
            assert!(!id.is_lowercase());
            assert_eq!(id.to_lowercase().to_string(), text.to_ascii_lowercase());
            assert_eq!(id.random(), id.to_lowercase().random());
            assert_ne!(id, id.to_lowercase());
        }
        let lower: TraceId = "1-5759e988-bd862e3fe1be46a994272793".parse().unwrap();
        assert!(lower.is_lowercase());
    }

    #[test]
    fn rejects_sign_and_whitespace() {
        for bad in [
            "+1-5759e988-bd862e3fe1be46a99427279",
            "53995c3f42cd8ad ",
            "+3995c3f42cd8ad8",
        ] {
            assert!(bad.parse::<TraceId>().is_err(), "{bad}");
            assert!(bad.parse::<SegmentId>().is_err(), "{bad}");
        }
    }
}
