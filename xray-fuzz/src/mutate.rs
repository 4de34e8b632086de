//! Structured mutations: what a broken or hostile peer sends, made from real inputs.
//!
//! Bytes: bit flips, special characters (`;`, `=`, `*`, `?`, NUL, ESC, high and invalid
//! Unicode), words of the format, deletion, truncation, duplication, splicing two seeds, long
//! repeats, numbers at their edges. JSON: values replaced by values of other types or at their
//! limits, keys removed and added, arrays multiplied, subtrees grafted from other seeds, deep
//! nesting. No coverage feedback: the seeds and the words of each format do the steering.

use rand::RngExt;
use rand::rngs::SmallRng;
use serde_json::{Map, Number, Value};

/// Bytes that break parsers: separators, escapes, control characters, high, reversed,
/// zero-width and invalid Unicode.
pub(crate) const SPECIALS: &[&[u8]] = &[
    b";",
    b"=",
    b"*",
    b"?",
    b"\0",
    b"\x1b",
    b"\x7f",
    b" ",
    b"\t",
    b"\r\n",
    b"\n",
    b"\"",
    b"'",
    b"\\",
    b"%",
    b"%00",
    b"%zz",
    b"{",
    b"}",
    b"[",
    b"]",
    b"(",
    b")",
    b",",
    b":",
    b"-",
    b"+",
    b".",
    b"/",
    b"0",
    b"1",
    b"-1",
    b"1e308",
    b"NaN",
    "é".as_bytes(),
    "É".as_bytes(),
    "ß".as_bytes(),
    "\u{130}".as_bytes(),
    "\u{85}".as_bytes(),
    "\u{a0}".as_bytes(),
    "\u{200b}".as_bytes(),
    "\u{202e}".as_bytes(),
    "\u{2028}".as_bytes(),
    "\u{feff}".as_bytes(),
    "\u{fffd}".as_bytes(),
    "\u{1f600}".as_bytes(),
    "\u{10ffff}".as_bytes(),
    b"\xff",
    b"\xfe\xff",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
];

/// Numbers at the edges of the types a parser may read them into.
pub(crate) const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "2",
    "0.5",
    "1.0",
    "1.5",
    "-0.5",
    "255",
    "256",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "1e308",
    "1e309",
    "-1e309",
    "5e-324",
    "1e-7",
    "1.7e9",
    "4.1e9",
    "0x10",
    "010",
    "1_000",
    "+1",
    ".5",
    "5.",
    "1e",
    "\u{661}",
];

/// Makes inputs from seeds: a seed as it is, a seed mutated, or words of the format strung
/// together.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mutator<'a> {
    /// The corpus: real inputs to start from, and to splice in.
    pub(crate) seeds: &'a [Vec<u8>],
    /// The words of the format (keys, keywords, ids).
    pub(crate) dictionary: &'a [&'a str],
    /// The longest input made.
    pub(crate) max_len: usize,
}

impl Mutator<'_> {
    /// A new input: 10 % a seed unchanged, 85 % a seed with one to four mutations, 5 % words
    /// and special characters strung together.
    pub(crate) fn input(&self, rng: &mut SmallRng) -> Vec<u8> {
        let roll = rng.random_range(0..100u32);
        let mut data = if roll < 95 {
            pick(rng, self.seeds).cloned().unwrap_or_default()
        } else {
            self.tokens(rng)
        };
        if (10..95).contains(&roll) {
            let rounds = rng.random_range(1..=4);
            self.mutate(rng, &mut data, rounds);
        }
        data.truncate(self.max_len);
        data
    }

    /// Applies `rounds` random mutations to `data`.
    pub(crate) fn mutate(&self, rng: &mut SmallRng, data: &mut Vec<u8>, rounds: usize) {
        for _ in 0..rounds {
            self.mutate_once(rng, data);
            data.truncate(self.max_len);
        }
    }

    fn tokens(&self, rng: &mut SmallRng) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..rng.random_range(1..=12) {
            if rng.random_bool(0.6) {
                if let Some(word) = pick(rng, self.dictionary) {
                    out.extend_from_slice(word.as_bytes());
                }
            } else if let Some(special) = pick(rng, SPECIALS) {
                out.extend_from_slice(special);
            }
        }
        out
    }

    fn mutate_once(&self, rng: &mut SmallRng, data: &mut Vec<u8>) {
        match rng.random_range(0..15u32) {
            // One bit.
            0 => {
                if !data.is_empty() {
                    let i = rng.random_range(0..data.len());
                    let bit = rng.random_range(0..8u32);
                    if let Some(b) = data.get_mut(i) {
                        *b ^= 1 << bit;
                    }
                }
            }
            // One byte, any value.
            1 => {
                if !data.is_empty() {
                    let i = rng.random_range(0..data.len());
                    if let Some(b) = data.get_mut(i) {
                        *b = rng.random();
                    }
                }
            }
            // A special character, once or a few times.
            2 | 3 => {
                if let Some(special) = pick(rng, SPECIALS) {
                    let times = if rng.random_bool(0.8) {
                        1
                    } else {
                        rng.random_range(2..=8)
                    };
                    let at = rng.random_range(0..=data.len());
                    insert(data, at, &special.repeat(times));
                }
            }
            // A word of the format.
            4 | 5 => {
                if let Some(word) = pick(rng, self.dictionary) {
                    let at = rng.random_range(0..=data.len());
                    insert(data, at, word.as_bytes());
                }
            }
            // A range removed.
            6 => {
                if !data.is_empty() {
                    let start = rng.random_range(0..data.len());
                    let len = rng.random_range(1..=(data.len() - start).min(32));
                    data.drain(start..start + len);
                }
            }
            // Cut short.
            7 => {
                let at = rng.random_range(0..=data.len());
                data.truncate(at);
            }
            // A range copied elsewhere.
            8 => {
                if !data.is_empty() {
                    let start = rng.random_range(0..data.len());
                    let len = rng.random_range(1..=(data.len() - start).min(64));
                    let piece = data.get(start..start + len).unwrap_or_default().to_vec();
                    let at = rng.random_range(0..=data.len());
                    insert(data, at, &piece);
                }
            }
            // The head of this input on the tail of another seed.
            9 => {
                if let Some(other) = pick(rng, self.seeds) {
                    let keep = rng.random_range(0..=data.len());
                    let from = rng.random_range(0..=other.len());
                    data.truncate(keep);
                    data.extend_from_slice(other.get(from..).unwrap_or_default());
                }
            }
            // A long repeat of a piece, a word or a special character.
            10 => {
                let piece: Vec<u8> = match rng.random_range(0..3u32) {
                    0 if !data.is_empty() => {
                        let start = rng.random_range(0..data.len());
                        let len = rng.random_range(1..=(data.len() - start).min(16));
                        data.get(start..start + len).unwrap_or_default().to_vec()
                    }
                    1 => pick(rng, self.dictionary)
                        .map(|w| w.as_bytes().to_vec())
                        .unwrap_or_default(),
                    _ => pick(rng, SPECIALS).map(|s| s.to_vec()).unwrap_or_default(),
                };
                if !piece.is_empty() {
                    let room = self.max_len.saturating_sub(data.len()) / piece.len();
                    if room >= 2 {
                        let times = rng.random_range(2..=room.min(5000));
                        let at = rng.random_range(0..=data.len());
                        insert(data, at, &piece.repeat(times));
                    }
                }
            }
            // A number at an edge in place of one in the input.
            11 => replace_number(rng, data),
            // ASCII case flipped over a range.
            12 => {
                if !data.is_empty() {
                    let start = rng.random_range(0..data.len());
                    let end = rng.random_range(start..=data.len());
                    for b in data.get_mut(start..end).unwrap_or_default() {
                        if b.is_ascii_alphabetic() {
                            *b ^= 0x20;
                        }
                    }
                }
            }
            // A few random bytes.
            13 => {
                let n = rng.random_range(1..=8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                let at = rng.random_range(0..=data.len());
                insert(data, at, &bytes);
            }
            // Two bytes swapped.
            _ => {
                if data.len() >= 2 {
                    let a = rng.random_range(0..data.len());
                    let b = rng.random_range(0..data.len());
                    data.swap(a, b);
                }
            }
        }
    }
}

/// A random element of `items`; `None` when it is empty.
pub(crate) fn pick<'a, T>(rng: &mut SmallRng, items: &'a [T]) -> Option<&'a T> {
    if items.is_empty() {
        None
    } else {
        items.get(rng.random_range(0..items.len()))
    }
}

fn insert(data: &mut Vec<u8>, at: usize, piece: &[u8]) {
    let at = at.min(data.len());
    data.splice(at..at, piece.iter().copied());
}

/// Replaces one run of digits (with its sign and fraction) by a number at an edge.
fn replace_number(rng: &mut SmallRng, data: &mut Vec<u8>) {
    let starts: Vec<usize> = (0..data.len())
        .filter(|&i| {
            data.get(i).is_some_and(u8::is_ascii_digit)
                && (i == 0 || !data.get(i - 1).is_some_and(u8::is_ascii_digit))
        })
        .collect();
    let Some(&start) = pick(rng, &starts) else {
        return;
    };
    let mut end = start;
    while data
        .get(end)
        .is_some_and(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E'))
    {
        end += 1;
    }
    if let Some(number) = pick(rng, NUMBERS) {
        data.splice(start..end, number.bytes());
    }
}

// ===== JSON =====

/// Mutates JSON documents in place: one node of the tree, chosen by a random walk from the
/// root, is changed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonMutator<'a> {
    /// The keys of the format, for keys added and strings made.
    pub(crate) keys: &'a [&'a str],
    /// Other documents, for subtrees grafted in.
    pub(crate) seeds: &'a [Value],
}

impl JsonMutator<'_> {
    /// Applies `rounds` mutations to `value`.
    pub(crate) fn mutate(&self, rng: &mut SmallRng, value: &mut Value, rounds: usize) {
        for _ in 0..rounds {
            self.mutate_at(rng, value, 0);
        }
    }

    fn mutate_at(&self, rng: &mut SmallRng, value: &mut Value, depth: usize) {
        let children = match value {
            Value::Array(items) => items.len(),
            Value::Object(map) => map.len(),
            _ => 0,
        };
        if children > 0 && depth < 64 && rng.random_bool(0.65) {
            let i = rng.random_range(0..children);
            let child = match value {
                Value::Array(items) => items.get_mut(i),
                Value::Object(map) => map.iter_mut().nth(i).map(|(_, v)| v),
                _ => None,
            };
            if let Some(child) = child {
                self.mutate_at(rng, child, depth + 1);
            }
            return;
        }
        self.mutate_here(rng, value);
    }

    fn mutate_here(&self, rng: &mut SmallRng, value: &mut Value) {
        match rng.random_range(0..14u32) {
            0 | 1 => *value = self.random_value(rng, 0),
            2 => *value = Value::Null,
            3 => *value = edge_number(rng),
            4 => *value = Value::String(self.random_string(rng)),
            5 => {
                if let Value::Object(map) = value
                    && !map.is_empty()
                {
                    let i = rng.random_range(0..map.len());
                    if let Some(key) = map.keys().nth(i).cloned() {
                        map.remove(&key);
                    }
                }
            }
            6 | 7 => {
                if let Value::Object(map) = value {
                    let key = self.random_key(rng);
                    let new = self.random_value(rng, 0);
                    map.insert(key, new);
                }
            }
            8 => {
                if let Value::Array(items) = value
                    && !items.is_empty()
                {
                    let i = rng.random_range(0..items.len());
                    if let Some(item) = items.get(i).cloned() {
                        let times = if rng.random_bool(0.7) {
                            rng.random_range(1..=4)
                        } else {
                            rng.random_range(5..=150)
                        };
                        items.extend(std::iter::repeat_n(item, times));
                    }
                }
            }
            9 => {
                if let Value::Array(items) = value
                    && !items.is_empty()
                {
                    let i = rng.random_range(0..items.len());
                    items.remove(i);
                }
            }
            // Wrapped in an array or an object.
            10 => {
                let old = std::mem::take(value);
                *value = if rng.random_bool(0.5) {
                    Value::Array(vec![old])
                } else {
                    let mut map = Map::new();
                    map.insert(self.random_key(rng), old);
                    Value::Object(map)
                };
            }
            // The same content, another type.
            11 => {
                let swapped = match &*value {
                    Value::Number(n) => Some(Value::String(n.to_string())),
                    Value::String(s) => Some(
                        s.parse::<f64>()
                            .ok()
                            .and_then(Number::from_f64)
                            .map_or(Value::Bool(!s.is_empty()), Value::Number),
                    ),
                    Value::Bool(b) => Some(Value::String(b.to_string())),
                    Value::Null => Some(Value::String("null".to_owned())),
                    Value::Array(items) => Some(Value::Number(Number::from(items.len()))),
                    Value::Object(_) => None,
                };
                if let Some(swapped) = swapped {
                    *value = swapped;
                }
            }
            12 => {
                let depth = rng.random_range(2..=200);
                *value = deep(rng, depth);
            }
            // A subtree of another seed.
            _ => {
                if let Some(seed) = pick(rng, self.seeds) {
                    let mut node = seed;
                    for _ in 0..rng.random_range(0..4u32) {
                        let next = match node {
                            Value::Array(items) => pick(rng, items),
                            Value::Object(map) if !map.is_empty() => {
                                let i = rng.random_range(0..map.len());
                                map.values().nth(i)
                            }
                            _ => None,
                        };
                        match next {
                            Some(next) => node = next,
                            None => break,
                        }
                    }
                    *value = node.clone();
                }
            }
        }
    }

    /// A key of the format, or a key no format has.
    pub(crate) fn random_key(&self, rng: &mut SmallRng) -> String {
        if rng.random_bool(0.8)
            && let Some(key) = pick(rng, self.keys)
        {
            return (*key).to_owned();
        }
        self.random_string(rng)
    }

    /// A string: a key of the format, wildcards, nothing, very long, or odd characters.
    pub(crate) fn random_string(&self, rng: &mut SmallRng) -> String {
        match rng.random_range(0..10u32) {
            0 => String::new(),
            1 => "*".to_owned(),
            2 => "?".repeat(rng.random_range(1..=4)),
            3 => "a*".repeat(rng.random_range(1..=300)) + "b",
            4 => "x".repeat(rng.random_range(1..=5000)),
            5 => pick(rng, SPECIALS)
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .unwrap_or_default(),
            6 => (0..rng.random_range(1..=16))
                .map(|_| char::from(rng.random_range(0x20..0x7fu8)))
                .collect(),
            7 => pick(rng, NUMBERS)
                .map(|n| (*n).to_owned())
                .unwrap_or_default(),
            _ => pick(rng, self.keys)
                .map(|k| (*k).to_owned())
                .unwrap_or_default(),
        }
    }

    /// Any JSON value, nested at most a few levels below `depth`.
    pub(crate) fn random_value(&self, rng: &mut SmallRng, depth: usize) -> Value {
        let leaf_only = depth >= 3;
        match rng.random_range(0..if leaf_only { 5u32 } else { 7 }) {
            0 => Value::Null,
            1 => Value::Bool(rng.random_bool(0.5)),
            2 => edge_number(rng),
            3 | 4 => Value::String(self.random_string(rng)),
            5 => Value::Array(
                (0..rng.random_range(0..4))
                    .map(|_| self.random_value(rng, depth + 1))
                    .collect(),
            ),
            _ => {
                let mut map = Map::new();
                for _ in 0..rng.random_range(0..4) {
                    let key = self.random_key(rng);
                    let value = self.random_value(rng, depth + 1);
                    map.insert(key, value);
                }
                Value::Object(map)
            }
        }
    }
}

/// A number at an edge: the types' limits, fractions where integers go, negative zero.
pub(crate) fn edge_number(rng: &mut SmallRng) -> Value {
    match rng.random_range(0..12u32) {
        0 => Value::from(0),
        1 => Value::from(-1),
        2 => Value::from(u64::MAX),
        3 => Value::from(i64::MIN),
        4 => Value::from(i64::MAX),
        5 => Value::from(1.5),
        6 => Value::from(-0.0),
        7 => Value::from(1e308),
        8 => Value::from(5e-324),
        9 => Value::from(1.000_000_000_000_000_2),
        10 => Value::from(rng.random_range(0..1000u32)),
        _ => Value::from(rng.random_range(-2.0..2.0f64)),
    }
}

/// `depth` nested arrays or objects around a number. Kept to a few hundred levels: `Value` is
/// dropped recursively, so this process must not build what would overflow its own stack;
/// deeper nesting is made as text ([`deep_text`]).
pub(crate) fn deep(rng: &mut SmallRng, depth: usize) -> Value {
    let arrays = rng.random_bool(0.5);
    let mut value = Value::from(1);
    for _ in 0..depth.min(300) {
        value = if arrays {
            Value::Array(vec![value])
        } else {
            let mut map = Map::new();
            map.insert("a".to_owned(), value);
            Value::Object(map)
        };
    }
    value
}

/// `inner` inside `depth` levels of arrays, as text, for nesting deeper than any parser's
/// limit (serde_json stops at 128).
pub(crate) fn deep_text(inner: &[u8], depth: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(inner.len() + 2 * depth);
    out.extend(std::iter::repeat_n(b'[', depth));
    out.extend_from_slice(inner);
    out.extend(std::iter::repeat_n(b']', depth));
    out
}

/// A JSON input from parsed seeds: a seed mutated as JSON (and then, one time in five, as
/// bytes), nested deeper than parsers go, or mutated as bytes only.
pub(crate) fn json_input(
    rng: &mut SmallRng,
    values: &[Value],
    raw: &Mutator<'_>,
    keys: &[&str],
) -> Vec<u8> {
    let json = JsonMutator {
        keys,
        seeds: values,
    };
    match rng.random_range(0..100u32) {
        0..=69 => {
            let Some(seed) = pick(rng, values) else {
                return raw.input(rng);
            };
            let mut value = seed.clone();
            let rounds = rng.random_range(1..=4);
            json.mutate(rng, &mut value, rounds);
            let mut bytes = serde_json::to_vec(&value).unwrap_or_default();
            if rng.random_bool(0.2) {
                raw.mutate(rng, &mut bytes, 1);
            }
            bytes.truncate(raw.max_len);
            bytes
        }
        70..=74 => {
            let inner = pick(rng, raw.seeds).cloned().unwrap_or_default();
            let depth = rng.random_range(100..=20_000);
            let mut bytes = deep_text(&inner, depth);
            bytes.truncate(raw.max_len);
            bytes
        }
        _ => raw.input(rng),
    }
}
