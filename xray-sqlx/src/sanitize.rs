//! A query's text with its literals replaced by `?`, for `sql.sanitized_query`.
//!
//! The text of a query can hold secrets (a password compared in a `WHERE`, a token inserted as
//! a literal), so it is recorded only when the application opts in, and then without any
//! literal: string literals (`'...'`, with `''` and, after `E`, backslash escapes; `$$...$$`
//! and `$tag$...$tag$` in PostgreSQL; `"..."` in MySQL, where it is a string), numbers, and
//! the `X'..'`, `B'..'`, `N'..'` forms each become `?`, and comments (`-- ...`, `/* ... */`,
//! and `# ...` in MySQL) are dropped. Placeholders (`$1`, `?`, `:name`) and identifiers
//! (`"col"` outside MySQL, `` `col` ``) stay as written.

#[doc(hidden)]
/// The SQL dialect's differences that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `$tag$` strings; `"..."` is an identifier.
    Postgres,
    /// `"..."` is a string and `#` starts a comment.
    MySql,
    /// `"..."` is an identifier.
    Sqlite,
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// `sql` without its literals and comments.
pub(crate) fn sanitize(sql: &str, dialect: Dialect) -> String {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    // The character before `i` in the text (not in `out`): tells a number from the digits
    // of an identifier such as `t1`.
    let mut prev: Option<char> = None;
    while let Some(&c) = chars.get(i) {
        let next = chars.get(i + 1).copied();
        match c {
            '-' if next == Some('-') => {
                i = skip_line(&chars, i);
                out.push(' ');
                prev = Some(' ');
                continue;
            }
            '#' if dialect == Dialect::MySql => {
                i = skip_line(&chars, i);
                out.push(' ');
                prev = Some(' ');
                continue;
            }
            '/' if next == Some('*') => {
                i = skip_block_comment(&chars, i);
                out.push(' ');
                prev = Some(' ');
                continue;
            }
            '\'' => {
                // A one-letter prefix (E'..', X'..', B'..', N'..', U&'..' aside) is part of
                // the literal.
                let backslashes = drop_prefix(&mut out, &mut prev);
                i = skip_quoted(&chars, i, '\'', backslashes || dialect == Dialect::MySql);
                out.push('?');
                prev = Some('?');
                continue;
            }
            '"' if dialect == Dialect::MySql => {
                i = skip_quoted(&chars, i, '"', true);
                out.push('?');
                prev = Some('?');
                continue;
            }
            '"' | '`' => {
                // An identifier: copied as it is.
                let end = skip_quoted(&chars, i, c, false);
                out.extend(chars.get(i..end).unwrap_or_default());
                prev = Some(c);
                i = end;
                continue;
            }
            '$' if dialect == Dialect::Postgres && !prev.is_some_and(is_ident) => {
                if let Some(end) = dollar_quoted(&chars, i) {
                    out.push('?');
                    prev = Some('?');
                    i = end;
                    continue;
                }
            }
            c if c.is_ascii_digit() && !prev.is_some_and(is_ident) => {
                i = skip_number(&chars, i);
                out.push('?');
                prev = Some('?');
                continue;
            }
            '.' if next.is_some_and(|n| n.is_ascii_digit()) && !prev.is_some_and(is_ident) => {
                i = skip_number(&chars, i);
                out.push('?');
                prev = Some('?');
                continue;
            }
            _ => {}
        }
        out.push(c);
        prev = Some(c);
        i += 1;
    }
    out
}

/// Removes a literal's one-letter prefix from `out`; true when it is `E`, whose string takes
/// backslash escapes.
fn drop_prefix(out: &mut String, prev: &mut Option<char>) -> bool {
    let mut tail = out.chars().rev();
    let (Some(letter), before) = (tail.next(), tail.next()) else {
        return false;
    };
    if !matches!(letter.to_ascii_uppercase(), 'E' | 'X' | 'B' | 'N') || before.is_some_and(is_ident)
    {
        return false;
    }
    out.pop();
    *prev = before;
    letter.eq_ignore_ascii_case(&'E')
}

/// The index after the end of the line that starts at `i`.
fn skip_line(chars: &[char], i: usize) -> usize {
    chars
        .get(i..)
        .and_then(|rest| rest.iter().position(|&c| c == '\n'))
        .map_or(chars.len(), |n| i + n)
}

/// The index after the `*/` that closes the comment at `i` (nested, as PostgreSQL nests them).
fn skip_block_comment(chars: &[char], mut i: usize) -> usize {
    let mut depth = 0usize;
    while let Some(&c) = chars.get(i) {
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('*') {
            depth += 1;
            i += 2;
        } else if c == '*' && next == Some('/') {
            depth = depth.saturating_sub(1);
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    chars.len()
}

/// The index after the closing `quote` of the quoted text at `i`; a doubled quote is one
/// quote, and with `backslashes` a backslash escapes the next character.
fn skip_quoted(chars: &[char], mut i: usize, quote: char, backslashes: bool) -> usize {
    i += 1;
    while let Some(&c) = chars.get(i) {
        if backslashes && c == '\\' {
            i += 2;
        } else if c == quote {
            if chars.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    chars.len()
}

/// The index after a dollar-quoted string starting at `i` (`$$...$$`, `$tag$...$tag$`), or
/// `None` when `$` starts something else (a `$1` placeholder).
fn dollar_quoted(chars: &[char], i: usize) -> Option<usize> {
    let rest = chars.get(i + 1..)?;
    let tag_len = rest.iter().position(|&c| c == '$')?;
    let tag = rest.get(..tag_len)?;
    if tag.first().is_some_and(char::is_ascii_digit)
        || !tag.iter().all(|&c| c.is_alphanumeric() || c == '_')
    {
        return None;
    }
    let delimiter: Vec<char> = chars.get(i..i + tag_len + 2)?.to_vec();
    let body_start = i + tag_len + 2;
    let mut j = body_start;
    while j + delimiter.len() <= chars.len() {
        if chars.get(j..j + delimiter.len()) == Some(delimiter.as_slice()) {
            return Some(j + delimiter.len());
        }
        j += 1;
    }
    Some(chars.len())
}

/// The index after the number at `i`: digits, a fraction, an exponent, or a `0x` hex number.
fn skip_number(chars: &[char], mut i: usize) -> usize {
    let at = |k: usize| chars.get(k).copied();
    if at(i) == Some('0') && matches!(at(i + 1), Some('x' | 'X')) {
        i += 2;
        while at(i).is_some_and(|c| c.is_ascii_hexdigit()) {
            i += 1;
        }
        return i;
    }
    while at(i).is_some_and(|c| c.is_ascii_digit() || c == '_') {
        i += 1;
    }
    if at(i) == Some('.') {
        i += 1;
        while at(i).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
        }
    }
    if matches!(at(i), Some('e' | 'E'))
        && (at(i + 1).is_some_and(|c| c.is_ascii_digit())
            || (matches!(at(i + 1), Some('+' | '-'))
                && at(i + 2).is_some_and(|c| c.is_ascii_digit())))
    {
        i += 2;
        while at(i).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::{Dialect, sanitize};

    #[test]
    fn literals_become_placeholders() {
        let pg = |s| sanitize(s, Dialect::Postgres);
        assert_eq!(
            pg("SELECT * FROM users WHERE name = 'o''brien' AND id = 42"),
            "SELECT * FROM users WHERE name = ? AND id = ?"
        );
        assert_eq!(
            pg("SELECT $1, t1.c2 FROM t1 WHERE x > 3.5e-2 AND y = .5"),
            "SELECT $1, t1.c2 FROM t1 WHERE x > ? AND y = ?"
        );
        assert_eq!(
            pg("SELECT E'it\\'s', X'ff', $$secret 'x'$$, $tag$a$$b$tag$"),
            "SELECT ?, ?, ?, ?"
        );
        assert_eq!(
            pg("SELECT \"Weird 'col'\" FROM t -- password = 'hunter2'\nWHERE a = /* 'x' */ 1"),
            "SELECT \"Weird 'col'\" FROM t  \nWHERE a =   ?"
        );
        assert_eq!(pg("SELECT 0x1F, 1_000"), "SELECT ?, ?");
    }

    #[test]
    fn mysql_strings_and_comments() {
        let my = |s| sanitize(s, Dialect::MySql);
        assert_eq!(
            my("SELECT `col` FROM t WHERE a = \"pw\" AND b = 'x\\'y' # 'c'"),
            "SELECT `col` FROM t WHERE a = ? AND b = ?  "
        );
        assert_eq!(
            my("INSERT INTO t VALUES (?, ?)"),
            "INSERT INTO t VALUES (?, ?)"
        );
    }

    #[test]
    fn sqlite_keeps_double_quoted_identifiers() {
        assert_eq!(
            sanitize("SELECT \"a\" FROM \"t\" WHERE x = 'y'", Dialect::Sqlite),
            "SELECT \"a\" FROM \"t\" WHERE x = ?"
        );
    }

    #[test]
    fn unterminated_literals_are_cut() {
        assert_eq!(sanitize("SELECT 'abc", Dialect::Postgres), "SELECT ?");
        assert_eq!(sanitize("SELECT /* abc", Dialect::Postgres), "SELECT  ");
        assert_eq!(sanitize("SELECT $a$ abc", Dialect::Postgres), "SELECT ?");
    }
}
