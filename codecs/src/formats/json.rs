//! JSON through serde_json (typed) and a small reader/writer of our own (dynamic).
//!
//! Typed path (`encode_into`/`decode`): serde_json as is — compact, raw UTF-8, structs as
//! objects, bytes as arrays of numbers, `u128`/`i128` as plain digits. serde_json writes
//! NaN and ±infinity as `null` (lossy: the receiver cannot turn `null` back into an `f64`);
//! use the dynamic path, msgpack, cbor or serpent if non-finite floats must travel.
//!
//! Dynamic path (`encode_value`/`decode_value`): follows Python's `json` module so the two
//! interoperate exactly:
//! * NaN, Infinity and -Infinity are written and read as the tokens `NaN`, `Infinity`,
//!   `-Infinity` (what `json.dumps` writes and `json.loads` reads; not RFC 8259).
//!   [`decode_value_strict`] is the RFC 8259 reader that refuses them (it rejects every
//!   `n_` file of JSONTestSuite).
//! * Integers of any size are written as digits and read back exactly ([`Value::BigInt`]
//!   beyond 128 bits). Like Python (`sys.get_int_max_str_digits`), integer literals of more
//!   than 4300 digits are refused.
//! * Map keys that are ints, floats, bools or null become strings (`{"10": 0}`) as in
//!   `json.dumps`; other key types are refused. Keys always decode as `Str`.
//! * Bytes are written as an array of numbers (as serde_json does) and decode as a list.
//! * Tuples and sets are written as arrays and decode as lists.
//! * Duplicate object keys are all kept, in order.

use serde::de::DeserializeOwned;
use serde::Serialize;

use std::cell::Cell;

use crate::depth::{limit_or, Limited};
use crate::error::{decode_err, encode_err};
use crate::{Codec, CodecError, CodecId, CodecInfo, Limits, Origin, Value};

/// JSON (id 1, `"json"`): text, self-describing, read by every language.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Json;

const ID: CodecId = CodecId::JSON;
/// serde_json's fixed recursion limit.
const SERDE_JSON_DEPTH: usize = 128;
/// Python's default `sys.get_int_max_str_digits()`.
const MAX_INT_DIGITS: usize = 4300;

impl Codec for Json {
    const ID: CodecId = ID;
    const NAME: &'static str = "json";
    const INFO: CodecInfo = CodecInfo {
        id: ID,
        name: "json",
        self_describing: true,
        human_readable: true,
        python_interop: true,
        python_module: Some("json"),
        struct_as_map: true,
        maintained: true,
        summary: "JSON via serde_json; dynamic values follow Python's json (NaN tokens, big ints)",
    };

    #[inline]
    fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        serde_json::to_writer(out, value).map_err(|e| encode_err(ID, e))
    }

    #[inline]
    fn decode<T: DeserializeOwned>(bytes: &[u8], limits: &Limits) -> Result<T, CodecError> {
        limits.check_input(ID, bytes)?;
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let hit = Cell::new(false);
        let value = if limits.max_depth >= SERDE_JSON_DEPTH {
            T::deserialize(&mut de)
        } else {
            T::deserialize(Limited::<_, false>::new(&mut de, limits.max_depth, &hit))
        }
        .map_err(|e| limit_or(&hit, decode_err(ID, e)))?;
        de.end().map_err(|e| decode_err(ID, e))?;
        Ok(value)
    }

    fn encode_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
        write_value(value, out)
    }

    fn decode_value(bytes: &[u8], limits: &Limits) -> Result<Value, CodecError> {
        parse_value(bytes, limits, true)
    }
}

fn write_str(s: &str, out: &mut Vec<u8>) -> Result<(), CodecError> {
    serde_json::to_writer(out, s).map_err(|e| encode_err(ID, e))
}

fn write_float(f: f64, out: &mut Vec<u8>) -> Result<(), CodecError> {
    if f.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if f == f64::INFINITY {
        out.extend_from_slice(b"Infinity");
    } else if f == f64::NEG_INFINITY {
        out.extend_from_slice(b"-Infinity");
    } else {
        serde_json::to_writer(out, &f).map_err(|e| encode_err(ID, e))?;
    }
    Ok(())
}

fn write_value(v: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::BigInt(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::Float(f) => write_float(*f, out)?,
        Value::Str(s) => write_str(s, out)?,
        Value::Bytes(b) => {
            out.push(b'[');
            for (i, x) in b.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(x.to_string().as_bytes());
            }
            out.push(b']');
        }
        Value::List(xs) | Value::Tuple(xs) | Value::Set(xs) => {
            out.push(b'[');
            for (i, x) in xs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(x, out)?;
            }
            out.push(b']');
        }
        Value::Map(m) => {
            out.push(b'{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match k {
                    Value::Str(s) => write_str(s, out)?,
                    Value::Null
                    | Value::Bool(_)
                    | Value::Int(_)
                    | Value::BigInt(_)
                    | Value::Float(_) => {
                        let mut text = Vec::new();
                        write_value(k, &mut text)?;
                        let text = String::from_utf8(text).map_err(|e| encode_err(ID, e))?;
                        write_str(&text, out)?;
                    }
                    other => {
                        return Err(CodecError::unsupported(
                            ID,
                            Origin::Local,
                            format!(
                                "JSON object keys must be strings; a {} key cannot be carried \
                                 (int, float, bool and null keys become strings as in Python's \
                                 json); use msgpack, cbor, ron or serpent for such maps",
                                other.type_name()
                            ),
                        ))
                    }
                }
                out.push(b':');
                write_value(x, out)?;
            }
            out.push(b'}');
        }
        Value::Ext { tag, data } => {
            return Err(crate::value::ext_unsupported(ID, *tag, data.len()))
        }
    }
    Ok(())
}

/// Reads a dynamic value as strict RFC 8259 JSON: like [`Json::decode_value`] but the
/// Python extension tokens `NaN`, `Infinity` and `-Infinity` are refused. Use it where a
/// peer must send standard JSON only (e.g. to check a producer against JSONTestSuite).
pub fn decode_value_strict(bytes: &[u8], limits: &Limits) -> Result<Value, CodecError> {
    parse_value(bytes, limits, false)
}

fn parse_value(bytes: &[u8], limits: &Limits, allow_nan: bool) -> Result<Value, CodecError> {
    limits.check_input(ID, bytes)?;
    let mut p = Parser {
        b: bytes,
        i: 0,
        left: limits.max_depth,
        allow_nan,
    };
    p.ws();
    let v = p.value()?;
    p.ws();
    if p.i != bytes.len() {
        return Err(p.err("trailing characters after the value"));
    }
    Ok(v)
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    left: usize,
    /// Accept Python's `NaN` / `Infinity` / `-Infinity` tokens (not RFC 8259).
    allow_nan: bool,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> CodecError {
        CodecError::decode(ID, format!("{what} at byte {}", self.i))
    }

    fn eof(&self) -> CodecError {
        CodecError::decode(ID, "input ends in the middle of a value (truncated)")
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn lit(&mut self, word: &[u8], v: Value) -> Result<Value, CodecError> {
        match self.b.get(self.i..self.i + word.len()) {
            Some(s) if s == word => {
                self.i += word.len();
                Ok(v)
            }
            Some(_) => Err(self.err("invalid literal")),
            None => Err(self.eof()),
        }
    }

    fn enter(&mut self) -> Result<(), CodecError> {
        if self.left == 0 {
            return Err(CodecError::limit(
                ID,
                format!(
                    "nesting depth limit exceeded at byte {} (raise Limits::max_depth if the input is legitimate)",
                    self.i
                ),
            ));
        }
        self.left -= 1;
        Ok(())
    }

    fn value(&mut self) -> Result<Value, CodecError> {
        match self.peek() {
            None => Err(self.eof()),
            Some(b'n') => self.lit(b"null", Value::Null),
            Some(b't') => self.lit(b"true", Value::Bool(true)),
            Some(b'f') => self.lit(b"false", Value::Bool(false)),
            Some(b'N') if self.allow_nan => self.lit(b"NaN", Value::Float(f64::NAN)),
            Some(b'I') if self.allow_nan => self.lit(b"Infinity", Value::Float(f64::INFINITY)),
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b'[') => {
                self.enter()?;
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                } else {
                    loop {
                        self.ws();
                        items.push(self.value()?);
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                break;
                            }
                            Some(_) => return Err(self.err("expected `,` or `]`")),
                            None => return Err(self.eof()),
                        }
                    }
                }
                self.left += 1;
                Ok(Value::List(items))
            }
            Some(b'{') => {
                self.enter()?;
                self.i += 1;
                let mut entries = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                } else {
                    loop {
                        self.ws();
                        match self.peek() {
                            Some(b'"') => {}
                            Some(_) => return Err(self.err("expected a string key")),
                            None => return Err(self.eof()),
                        }
                        let k = self.string()?;
                        self.ws();
                        match self.peek() {
                            Some(b':') => self.i += 1,
                            Some(_) => return Err(self.err("expected `:`")),
                            None => return Err(self.eof()),
                        }
                        self.ws();
                        let v = self.value()?;
                        entries.push((Value::Str(k), v));
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                break;
                            }
                            Some(_) => return Err(self.err("expected `,` or `}`")),
                            None => return Err(self.eof()),
                        }
                    }
                }
                self.left += 1;
                Ok(Value::Map(entries))
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("expected a JSON value")),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Value, CodecError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
            if self.allow_nan && self.peek() == Some(b'I') {
                return self.lit(b"Infinity", Value::Float(f64::NEG_INFINITY));
            }
        }
        let int_start = self.i;
        let n = self.digits();
        if n == 0 {
            return Err(if self.peek().is_none() {
                self.eof()
            } else {
                self.err("expected a digit")
            });
        }
        if n > 1 && self.b.get(int_start) == Some(&b'0') {
            return Err(self.err("leading zeros are not allowed"));
        }
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.err("expected a digit after `.`"));
            }
            float = true;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("expected a digit in the exponent"));
            }
            float = true;
        }
        let text =
            std::str::from_utf8(&self.b[start..self.i]).map_err(|_| self.err("invalid number"))?;
        if float {
            let f: f64 = text.parse().map_err(|_| self.err("invalid number"))?;
            return Ok(Value::Float(f));
        }
        if n > MAX_INT_DIGITS {
            return Err(CodecError::limit(
                ID,
                format!(
                    "integer literal of {n} digits exceeds the limit of {MAX_INT_DIGITS} (Python's default int_max_str_digits)"
                ),
            ));
        }
        match text.parse::<i128>() {
            Ok(i) => Ok(Value::Int(i)),
            Err(_) => text
                .parse::<num_bigint::BigInt>()
                .map(Value::from_bigint)
                .map_err(|_| self.err("invalid integer")),
        }
    }

    fn hex4(&mut self) -> Result<u16, CodecError> {
        let Some(h) = self.b.get(self.i..self.i + 4) else {
            return Err(self.eof());
        };
        let mut v: u16 = 0;
        for &c in h {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(self.err("invalid \\u escape")),
            };
            v = v * 16 + u16::from(d);
        }
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, CodecError> {
        self.i += 1; // opening quote
        let mut s = String::new();
        loop {
            let run = self.i;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            let chunk = std::str::from_utf8(&self.b[run..self.i]).map_err(|_| {
                CodecError::decode(ID, format!("invalid UTF-8 in a string near byte {run}"))
            })?;
            s.push_str(chunk);
            match self.peek() {
                None => return Err(self.eof()),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(s);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let Some(e) = self.peek() else {
                        return Err(self.eof());
                    };
                    self.i += 1;
                    match e {
                        b'"' => s.push('"'),
                        b'\\' => s.push('\\'),
                        b'/' => s.push('/'),
                        b'b' => s.push('\u{8}'),
                        b'f' => s.push('\u{c}'),
                        b'n' => s.push('\n'),
                        b'r' => s.push('\r'),
                        b't' => s.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let c = if (0xD800..0xDC00).contains(&hi) {
                                if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                                    return Err(self.err(
                                        "lone surrogate in \\u escape (not representable in UTF-8)",
                                    ));
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("invalid low surrogate in \\u escape"));
                                }
                                0x10000
                                    + ((u32::from(hi) - 0xD800) << 10)
                                    + (u32::from(lo) - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(self.err(
                                    "lone surrogate in \\u escape (not representable in UTF-8)",
                                ));
                            } else {
                                u32::from(hi)
                            };
                            s.push(
                                char::from_u32(c).ok_or_else(|| self.err("invalid \\u escape"))?,
                            );
                        }
                        _ => {
                            self.i -= 1;
                            return Err(self.err("invalid escape"));
                        }
                    }
                }
                Some(_) => return Err(self.err("control character in a string (must be escaped)")),
            }
        }
    }
}
