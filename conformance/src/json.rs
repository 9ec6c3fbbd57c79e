//! A small, strict JSON reader that keeps what `serde_json::Value` loses: object member order,
//! duplicate keys, and the exact text of numbers. It is the base of the vector notation and of
//! every vector file this crate reads.

use std::fmt;

/// A parsed JSON document with object order and number text preserved.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A number, kept as its exact source text (e.g. `-12`, `1.5e300`).
    Number(String),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object: members in source order, duplicates kept.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The member `key` of an object (the first one if duplicated), `None` otherwise.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string content, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The boolean, if this is `true` or `false`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The number as an `i64`, if this is an integer number in range.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Number(n) => n.parse().ok(),
            _ => None,
        }
    }
}

/// A JSON syntax error with its 1-based position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for JsonError {}

/// Maximum nesting depth accepted by [`parse`]; deeper documents are rejected, not overflowed.
pub const MAX_DEPTH: usize = 512;

/// Maximum nesting depth accepted by [`parse_deep_with_offsets`]: for trusted documents read
/// on a large stack (four JSON levels per level of the deepest vectors'
/// [`crate::codec::DEEP`]).
pub const DEEP_MAX_DEPTH: usize = 4 * crate::codec::DEEP;

/// Parses one JSON document (RFC 8259; surrounding whitespace allowed, nothing else).
pub fn parse(text: &str) -> Result<Json, JsonError> {
    parse_inner(text, None, MAX_DEPTH)
}

/// Like [`parse`] with offsets (see [`parse_with_offsets`]), nesting up to
/// [`DEEP_MAX_DEPTH`]: for the deepest vectors, on a thread with a large stack.
pub fn parse_deep_with_offsets(text: &str) -> Result<(Json, Vec<usize>), JsonError> {
    let mut offsets = Vec::new();
    let json = parse_inner(text, Some(&mut offsets), DEEP_MAX_DEPTH)?;
    Ok((json, offsets))
}

/// Parses like [`parse`] and also returns the byte offset where each value starts, in
/// pre-order (a container before its elements; object keys are not values).
pub fn parse_with_offsets(text: &str) -> Result<(Json, Vec<usize>), JsonError> {
    let mut offsets = Vec::new();
    let json = parse_inner(text, Some(&mut offsets), MAX_DEPTH)?;
    Ok((json, offsets))
}

/// The pre-order index (as used by [`parse_with_offsets`]) of the node `target` inside
/// `root`, found by identity; `None` when `target` is not part of `root`.
pub fn preorder_index(root: &Json, target: &Json) -> Option<usize> {
    fn walk(node: &Json, target: &Json, next: &mut usize) -> Option<usize> {
        if std::ptr::eq(node, target) {
            return Some(*next);
        }
        *next += 1;
        match node {
            Json::Array(items) => items.iter().find_map(|i| walk(i, target, next)),
            Json::Object(members) => members.iter().find_map(|(_, v)| walk(v, target, next)),
            _ => None,
        }
    }
    walk(root, target, &mut 0)
}

/// The 1-based (line, column) of a byte offset in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

fn parse_inner(
    text: &str,
    offsets: Option<&mut Vec<usize>>,
    max_depth: usize,
) -> Result<Json, JsonError> {
    let mut p = Parser {
        src: text,
        pos: 0,
        depth: 0,
        max_depth,
        offsets,
    };
    p.skip_ws();
    let value = p.value()?;
    p.skip_ws();
    if p.pos < p.src.len() {
        return Err(p.error("trailing characters after the JSON value"));
    }
    Ok(value)
}

struct Parser<'a, 'o> {
    src: &'a str,
    pos: usize,
    depth: usize,
    max_depth: usize,
    offsets: Option<&'o mut Vec<usize>>,
}

impl Parser<'_, '_> {
    fn error(&self, message: impl Into<String>) -> JsonError {
        let (line, column) = line_column(self.src, self.pos);
        JsonError {
            line,
            column,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect_literal(&mut self, lit: &str) -> Result<(), JsonError> {
        if self.src.get(self.pos..).is_some_and(|s| s.starts_with(lit)) {
            self.pos += lit.len();
            Ok(())
        } else {
            Err(self.error(format!("expected `{lit}`")))
        }
    }

    fn value(&mut self) -> Result<Json, JsonError> {
        if let Some(offsets) = self.offsets.as_mut() {
            offsets.push(self.pos);
        }
        match self.peek() {
            None => Err(self.error("unexpected end of input, expected a value")),
            Some(b'n') => self.expect_literal("null").map(|()| Json::Null),
            Some(b't') => self.expect_literal("true").map(|()| Json::Bool(true)),
            Some(b'f') => self.expect_literal("false").map(|()| Json::Bool(false)),
            Some(b'"') => self.string().map(Json::String),
            Some(b'[') => self.nested(Self::array),
            Some(b'{') => self.nested(Self::object),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected a JSON value")),
        }
    }

    fn nested(&mut self, f: fn(&mut Self) -> Result<Json, JsonError>) -> Result<Json, JsonError> {
        if self.depth >= self.max_depth {
            return Err(self.error(format!("nesting deeper than {} levels", self.max_depth)));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn array(&mut self) -> Result<Json, JsonError> {
        self.pos += 1; // [
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value()?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                _ => return Err(self.error("expected `,` or `]` in array")),
            }
        }
    }

    fn object(&mut self) -> Result<Json, JsonError> {
        self.pos += 1; // {
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key in object"));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.error("expected `:` after object key"));
            }
            self.pos += 1;
            self.skip_ws();
            let value = self.value()?;
            members.push((key, value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Json::Object(members));
                }
                _ => return Err(self.error("expected `,` or `}` in object")),
            }
        }
    }

    fn number(&mut self) -> Result<Json, JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("expected a digit in number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("expected a digit after `.` in number"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("expected a digit in number exponent"));
            }
            self.digits();
        }
        let text = self.src.get(start..self.pos).unwrap_or_default();
        Ok(Json::Number(text.to_owned()))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn hex4(&mut self) -> Result<u16, JsonError> {
        let digits = self
            .src
            .get(self.pos..self.pos + 4)
            .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.error("expected four hex digits after `\\u`"))?;
        let v = u16::from_str_radix(digits, 16).map_err(|e| self.error(e.to_string()))?;
        self.pos += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            let rest = self.src.get(self.pos..).unwrap_or_default();
            let Some(c) = rest.chars().next() else {
                return Err(self.error("unterminated string"));
            };
            match c {
                '"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                '\\' => {
                    self.pos += 1;
                    let Some(e) = self.peek() else {
                        return Err(self.error("unterminated escape"));
                    };
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if !self
                                    .src
                                    .get(self.pos..)
                                    .is_some_and(|s| s.starts_with("\\u"))
                                {
                                    return Err(self.error(
                                        "lone high surrogate escape: a string here must be valid Unicode",
                                    ));
                                }
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self
                                        .error("high surrogate not followed by a low surrogate"));
                                }
                                0x10000
                                    + ((u32::from(hi) - 0xD800) << 10)
                                    + (u32::from(lo) - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(self.error(
                                    "lone low surrogate escape: a string here must be valid Unicode",
                                ));
                            } else {
                                u32::from(hi)
                            };
                            let ch = char::from_u32(cp).ok_or_else(|| {
                                self.error("escape is not a Unicode scalar value")
                            })?;
                            out.push(ch);
                        }
                        _ => {
                            self.pos -= 1;
                            return Err(self.error("invalid escape in string"));
                        }
                    }
                }
                c if (c as u32) < 0x20 => {
                    return Err(self.error("unescaped control character in string"));
                }
                c => {
                    out.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
    }
}

/// Writes `s` as a JSON string literal: escapes `"`, `\` and control characters, everything
/// else raw UTF-8.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_duplicates_and_number_text() {
        let j = parse(r#"{"b":1,"a":2.50,"b":-0}"#).unwrap();
        assert_eq!(
            j,
            Json::Object(vec![
                ("b".into(), Json::Number("1".into())),
                ("a".into(), Json::Number("2.50".into())),
                ("b".into(), Json::Number("-0".into())),
            ])
        );
    }

    #[test]
    fn errors_carry_line_and_column() {
        let e = parse("[1,\n  2,\n  x]").unwrap_err();
        assert_eq!((e.line, e.column), (3, 3));
        assert!(parse("[1,]").is_err());
        assert!(parse("01").is_err());
        assert!(parse("\"\\ud800\"").is_err());
        assert!(parse("1 2").is_err());
    }

    #[test]
    fn surrogate_pairs_and_escapes() {
        let j = parse(r#""\ud83d\ude00\n\u00e9""#).unwrap();
        assert_eq!(j, Json::String("😀\né".into()));
        let mut s = String::new();
        write_string(&mut s, "a\"\\\u{1}\u{7f}é");
        assert_eq!(s, r#""a\"\\\u0001\u007fé""#);
    }

    #[test]
    fn preorder_index_matches_offsets() {
        let text = "{\"a\": [1, {\"b\": 2}], \"c\": 3}";
        let (doc, offsets) = parse_with_offsets(text).unwrap();
        let b = doc
            .get("a")
            .and_then(|a| a.as_array())
            .and_then(|a| a.get(1))
            .and_then(|o| o.get("b"))
            .unwrap();
        let i = preorder_index(&doc, b).unwrap();
        assert_eq!(&text[offsets[i]..offsets[i] + 1], "2");
        let c = doc.get("c").unwrap();
        assert_eq!(&text[offsets[preorder_index(&doc, c).unwrap()]..][..1], "3");
        assert_eq!(preorder_index(&doc, &Json::Null), None);
    }

    #[test]
    fn depth_is_bounded() {
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(parse(&deep).is_err());
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
    }
}
