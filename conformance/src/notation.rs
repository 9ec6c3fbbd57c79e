//! The vector notation: JSON with a few `$`-tags for what JSON cannot say. See `NOTATION.md`
//! at the crate root for the full description; in short:
//!
//! | notation | [`Value`] |
//! |---|---|
//! | `null`, `true`, `false` | `Null`, `Bool` |
//! | `12`, `-7` (no `.`/`e`) | `Int` (any size; beyond `i128` a `BigInt`) |
//! | `1.5`, `1e16`, `-0.0` | `Float` |
//! | `"text"` | `Str` |
//! | `[a, b]` | `List` |
//! | `{"k": v, ...}` | `Map` with `Str` keys, in source order |
//! | `{"$bytes": "00ff"}` | `Bytes` (hex) |
//! | `{"$int": "-123456789012345678901234567890"}` | `Int` / `BigInt` |
//! | `{"$float": "nan" \| "inf" \| "-inf" \| "-0.0" \| "<decimal>"}` | `Float` |
//! | `{"$f64": "7ff8000000000001"}` | `Float` with these exact IEEE-754 bits |
//! | `{"$tuple": [..]}`, `{"$set": [..]}` | `Tuple`, `Set` |
//! | `{"$map": [[k, v], ...]}` | `Map` with keys of any type |
//! | `{"$ext": [tag, "hex"]}` | `Ext` (msgpack ext type `tag` in -128..=127, payload hex) |
//!
//! An object is a tag exactly when it has one member whose key starts with `$`.

use std::fmt;

use num_bigint::BigInt;
use wirecall_codecs::Value;

use crate::json::{self, Json};

/// A notation error: where (1-based line and column) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotationError {
    /// 1-based line of the offending value.
    pub line: usize,
    /// 1-based column of the offending value.
    pub column: usize,
    /// What is wrong and how to write it instead.
    pub message: String,
}

impl fmt::Display for NotationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for NotationError {}

/// Parses a value written in the vector notation.
pub fn parse(text: &str) -> Result<Value, NotationError> {
    parse_doc(text, json::parse_with_offsets(text))
}

/// Like [`parse`], nesting up to [`json::DEEP_MAX_DEPTH`] JSON levels: for the deepest
/// vectors, on a thread with a large stack.
pub fn parse_deep(text: &str) -> Result<Value, NotationError> {
    parse_doc(text, json::parse_deep_with_offsets(text))
}

fn parse_doc(
    text: &str,
    parsed: Result<(Json, Vec<usize>), json::JsonError>,
) -> Result<Value, NotationError> {
    let (doc, offsets) = parsed.map_err(|e| NotationError {
        line: e.line,
        column: e.column,
        message: format!("invalid JSON: {}", e.message),
    })?;
    let mut conv = Converter {
        text,
        offsets: &offsets,
        next: 0,
    };
    conv.value(&doc)
}

/// Converts an already parsed JSON tree (e.g. a `value` member of a vector file) to a
/// [`Value`]. The tree no longer knows its source position, so errors carry line 0 and, as
/// the column, the 1-based pre-order index of the offending node; use [`from_json_in`] when
/// the source text is at hand.
pub fn from_json(doc: &Json) -> Result<Value, NotationError> {
    from_json_in(doc, "", &[])
}

/// Converts a subtree `doc` of a document parsed with
/// [`json::parse_with_offsets`] from `text`; `offsets` are
/// that document's offsets starting at `doc`'s own pre-order index (see
/// [`json::preorder_index`]), so errors carry real line and
/// column numbers.
pub fn from_json_in(doc: &Json, text: &str, offsets: &[usize]) -> Result<Value, NotationError> {
    let mut conv = Converter {
        text,
        offsets,
        next: 0,
    };
    conv.value(doc)
}

struct Converter<'a> {
    text: &'a str,
    offsets: &'a [usize],
    next: usize,
}

/// Number of values in a subtree (the pre-order count the converter must consume).
fn subtree_len(j: &Json) -> usize {
    1 + match j {
        Json::Array(items) => items.iter().map(subtree_len).sum(),
        Json::Object(members) => members.iter().map(|(_, v)| subtree_len(v)).sum(),
        _ => 0,
    }
}

impl Converter<'_> {
    fn error_at(&self, index: usize, message: impl Into<String>) -> NotationError {
        let (line, column) = match self.offsets.get(index) {
            Some(&off) => json::line_column(self.text, off),
            None => (0, index + 1),
        };
        NotationError {
            line,
            column,
            message: message.into(),
        }
    }

    fn value(&mut self, j: &Json) -> Result<Value, NotationError> {
        let here = self.next;
        self.next += 1;
        Ok(match j {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(text) => number(text).map_err(|m| self.error_at(here, m))?,
            Json::String(s) => Value::Str(s.clone()),
            Json::Array(items) => Value::List(self.values(items)?),
            Json::Object(members) => match members.as_slice() {
                [(key, inner)] if key.starts_with('$') => self.tag(here, key, inner)?,
                _ => {
                    let mut out = Vec::with_capacity(members.len());
                    for (k, v) in members {
                        out.push((Value::Str(k.clone()), self.value(v)?));
                    }
                    Value::Map(out)
                }
            },
        })
    }

    fn values(&mut self, items: &[Json]) -> Result<Vec<Value>, NotationError> {
        items.iter().map(|i| self.value(i)).collect()
    }

    fn tag_string<'j>(&self, inner: &'j Json, tag: &str) -> Result<&'j str, NotationError> {
        inner
            .as_str()
            .ok_or_else(|| self.error_at(self.next, format!("`{tag}` takes a string")))
    }

    fn tag(&mut self, here: usize, key: &str, inner: &Json) -> Result<Value, NotationError> {
        let inner_index = self.next;
        let v = match key {
            "$bytes" => {
                let s = self.tag_string(inner, key)?;
                let bytes = hex::decode(s).map_err(|e| {
                    self.error_at(inner_index, format!("`$bytes` needs an even-length hex string: {e}"))
                })?;
                self.next += 1;
                Value::Bytes(bytes)
            }
            "$int" => {
                let s = self.tag_string(inner, key)?;
                let v = integer(s).ok_or_else(|| {
                    self.error_at(inner_index, format!("`$int` needs a decimal integer string, got {s:?}"))
                })?;
                self.next += 1;
                v
            }
            "$float" => {
                let s = self.tag_string(inner, key)?;
                let f = float(s).ok_or_else(|| {
                    self.error_at(
                        inner_index,
                        format!("`$float` needs \"nan\", \"inf\", \"-inf\" or a decimal number, got {s:?}"),
                    )
                })?;
                self.next += 1;
                Value::Float(f)
            }
            "$f64" => {
                let s = self.tag_string(inner, key)?;
                let bits = (s.len() == 16)
                    .then(|| u64::from_str_radix(s, 16).ok())
                    .flatten()
                    .ok_or_else(|| {
                        self.error_at(inner_index, format!("`$f64` needs exactly 16 hex digits, got {s:?}"))
                    })?;
                self.next += 1;
                Value::Float(f64::from_bits(bits))
            }
            "$ext" => {
                let parts = match inner {
                    Json::Array(items) => match items.as_slice() {
                        [Json::Number(tag), Json::String(hex)] => Some((tag, hex)),
                        _ => None,
                    },
                    _ => None,
                };
                let Some((tag, hex_text)) = parts else {
                    return Err(self.error_at(
                        inner_index,
                        "`$ext` takes a two-element array [tag, \"hex\"], e.g. {\"$ext\":[-1,\"00000001\"]}",
                    ));
                };
                let tag = tag.parse::<i8>().map_err(|_| {
                    self.error_at(
                        inner_index + 1,
                        format!("`$ext` needs an integer tag in -128..=127, got {tag}"),
                    )
                })?;
                let data = hex::decode(hex_text).map_err(|e| {
                    self.error_at(
                        inner_index + 2,
                        format!("`$ext` needs an even-length hex payload: {e}"),
                    )
                })?;
                self.next += 3; // the array, the tag, the payload
                Value::Ext { tag, data }
            }
            "$tuple" | "$set" | "$map" => {
                let Json::Array(items) = inner else {
                    return Err(self.error_at(inner_index, format!("`{key}` takes an array")));
                };
                self.next += 1; // the array itself
                match key {
                    "$tuple" => Value::Tuple(self.values(items)?),
                    "$set" => Value::Set(self.values(items)?),
                    _ => {
                        let mut out = Vec::with_capacity(items.len());
                        for pair in items {
                            let pair_index = self.next;
                            match pair {
                                Json::Array(kv) if kv.len() == 2 => {
                                    self.next += 1;
                                    let k = self.value(&kv[0])?;
                                    let v = self.value(&kv[1])?;
                                    out.push((k, v));
                                }
                                _ => {
                                    return Err(self.error_at(
                                        pair_index,
                                        "`$map` entries must be two-element arrays [key, value]",
                                    ))
                                }
                            }
                        }
                        Value::Map(out)
                    }
                }
            }
            other => {
                return Err(self.error_at(
                    here,
                    format!(
                        "unknown tag `{other}` (known: $bytes $int $float $f64 $tuple $set $map $ext); \
                         to write a map whose only key starts with `$`, use {{\"$map\": [[key, value]]}}"
                    ),
                ))
            }
        };
        debug_assert_eq!(self.next, inner_index + subtree_len(inner));
        Ok(v)
    }
}

fn number(text: &str) -> Result<Value, String> {
    if text.contains(['.', 'e', 'E']) {
        let f: f64 = text
            .parse()
            .map_err(|e| format!("number {text:?} is not a float: {e}"))?;
        if f.is_infinite() {
            return Err(format!(
                "number {text} overflows a 64-bit float; write {{\"$float\": \"inf\"}} if infinity is meant"
            ));
        }
        Ok(Value::Float(f))
    } else {
        integer(text).ok_or_else(|| format!("number {text:?} is not an integer"))
    }
}

/// Parses a decimal integer into `Int`, or `BigInt` when it does not fit `i128`.
fn integer(text: &str) -> Option<Value> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match text.parse::<i128>() {
        Ok(i) => Some(Value::Int(i)),
        Err(_) => text.parse::<BigInt>().ok().map(Value::BigInt),
    }
}

fn float(text: &str) -> Option<f64> {
    match text {
        "nan" => Some(f64::NAN),
        "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        _ => {
            let ok = !text.is_empty()
                && text
                    .bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
            if ok {
                text.parse().ok()
            } else {
                None
            }
        }
    }
}

/// The largest integer every JSON reader holds exactly; beyond it ints are printed as `$int`.
const SAFE_INT: i128 = 1 << 53;

/// Prints a value in the vector notation, compact (no whitespace). `parse(&print(v))` gives
/// back a value equal to `v` (bit-identical floats, NaN payloads included).
pub fn print(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) if (-SAFE_INT..=SAFE_INT).contains(i) => out.push_str(&i.to_string()),
        Value::Int(i) => {
            out.push_str("{\"$int\":\"");
            out.push_str(&i.to_string());
            out.push_str("\"}");
        }
        Value::BigInt(b) => {
            out.push_str("{\"$int\":\"");
            out.push_str(&b.to_string());
            out.push_str("\"}");
        }
        Value::Float(f) => write_float(out, *f),
        Value::Str(s) => json::write_string(out, s),
        Value::Bytes(b) => {
            out.push_str("{\"$bytes\":\"");
            out.push_str(&hex::encode(b));
            out.push_str("\"}");
        }
        Value::List(items) => write_seq(out, items),
        Value::Ext { tag, data } => {
            out.push_str(&format!("{{\"$ext\":[{tag},\""));
            out.push_str(&hex::encode(data));
            out.push_str("\"]}");
        }
        Value::Tuple(items) => {
            out.push_str("{\"$tuple\":");
            write_seq(out, items);
            out.push('}');
        }
        Value::Set(items) => {
            out.push_str("{\"$set\":");
            write_seq(out, items);
            out.push('}');
        }
        Value::Map(entries) => {
            let plain = entries.iter().all(|(k, _)| matches!(k, Value::Str(_)))
                && !matches!(entries.as_slice(), [(Value::Str(k), _)] if k.starts_with('$'));
            if plain {
                out.push('{');
                for (n, (k, v)) in entries.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    if let Value::Str(k) = k {
                        json::write_string(out, k);
                    }
                    out.push(':');
                    write_value(out, v);
                }
                out.push('}');
            } else {
                out.push_str("{\"$map\":[");
                for (n, (k, v)) in entries.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    out.push('[');
                    write_value(out, k);
                    out.push(',');
                    write_value(out, v);
                    out.push(']');
                }
                out.push_str("]}");
            }
        }
    }
}

fn write_seq(out: &mut String, items: &[Value]) {
    out.push('[');
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        write_value(out, item);
    }
    out.push(']');
}

const CANONICAL_NAN: u64 = 0x7ff8_0000_0000_0000;

fn write_float(out: &mut String, f: f64) {
    if f.is_nan() {
        if f.to_bits() == CANONICAL_NAN {
            out.push_str("{\"$float\":\"nan\"}");
        } else {
            out.push_str(&format!("{{\"$f64\":\"{:016x}\"}}", f.to_bits()));
        }
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 {
            "{\"$float\":\"inf\"}"
        } else {
            "{\"$float\":\"-inf\"}"
        });
    } else if f == 0.0 && f.is_sign_negative() {
        out.push_str("{\"$float\":\"-0.0\"}");
    } else {
        // `{:?}` is the shortest round-tripping form and always has a `.` or an exponent,
        // so it reads back as a float, never as an integer.
        out.push_str(&format!("{f:?}"));
    }
}

/// Structural equality for conformance checks: [`Value::same_as`] (floats by bit pattern,
/// any NaN equals any NaN).
pub fn same(a: &Value, b: &Value) -> bool {
    a.same_as(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big(s: &str) -> Value {
        Value::BigInt(s.parse().unwrap())
    }

    #[test]
    fn plain_json_maps_naturally() {
        let v = parse(r#"{"b": [1, -2, 1.5, "x", null, true], "a": {}}"#).unwrap();
        assert_eq!(
            v,
            Value::Map(vec![
                (
                    Value::Str("b".into()),
                    Value::List(vec![
                        Value::Int(1),
                        Value::Int(-2),
                        Value::Float(1.5),
                        Value::Str("x".into()),
                        Value::Null,
                        Value::Bool(true)
                    ])
                ),
                (Value::Str("a".into()), Value::Map(vec![])),
            ])
        );
    }

    #[test]
    fn tags() {
        assert_eq!(
            parse(r#"{"$bytes":"00fF"}"#).unwrap(),
            Value::Bytes(vec![0, 255])
        );
        assert_eq!(
            parse(r#"{"$int":"170141183460469231731687303715884105727"}"#).unwrap(),
            Value::Int(i128::MAX)
        );
        assert_eq!(
            parse(r#"{"$int":"-170141183460469231731687303715884105729"}"#).unwrap(),
            big("-170141183460469231731687303715884105729")
        );
        assert_eq!(
            parse("123456789012345678901234567890123456789012").unwrap(),
            big("123456789012345678901234567890123456789012")
        );
        assert!(
            parse(r#"{"$float":"nan"}"#).is_ok_and(|v| matches!(v, Value::Float(f) if f.is_nan()))
        );
        assert_eq!(
            parse(r#"{"$float":"-inf"}"#).unwrap(),
            Value::Float(f64::NEG_INFINITY)
        );
        let z = parse(r#"{"$float":"-0.0"}"#).unwrap();
        assert!(matches!(z, Value::Float(f) if f == 0.0 && f.is_sign_negative()));
        assert_eq!(
            parse(r#"{"$tuple":[1,{"$set":[2]}]}"#).unwrap(),
            Value::Tuple(vec![Value::Int(1), Value::Set(vec![Value::Int(2)])])
        );
        assert_eq!(
            parse(r#"{"$map":[[1,2],[[3],null]]}"#).unwrap(),
            Value::Map(vec![
                (Value::Int(1), Value::Int(2)),
                (Value::List(vec![Value::Int(3)]), Value::Null)
            ])
        );
        let p = parse(r#"{"$f64":"7ff8000000000001"}"#).unwrap();
        assert!(matches!(p, Value::Float(f) if f.to_bits() == 0x7ff8_0000_0000_0001));
    }

    #[test]
    fn errors_have_positions() {
        let e = parse("[1,\n {\"$bytes\": \"0g\"}]").unwrap_err();
        assert_eq!((e.line, e.column), (2, 13), "{e}");
        let e = parse("[\n\n   {\"$nope\": 1}]").unwrap_err();
        assert_eq!((e.line, e.column), (3, 4), "{e}");
        assert!(e.message.contains("unknown tag"));
        let e = parse("{\"$map\": [[1], [2, 3]]}").unwrap_err();
        assert!(e.message.contains("two-element"), "{e}");
        let e = parse("1e999").unwrap_err();
        assert!(e.message.contains("overflows"), "{e}");
        let e = parse("[1,").unwrap_err();
        assert_eq!((e.line, e.column), (1, 4), "{e}");
        assert!(parse(r#"{"$int":"1.5"}"#).is_err());
        assert!(parse(r#"{"$float":"x"}"#).is_err());
    }

    #[test]
    fn ext_tag() {
        let v = Value::Ext {
            tag: -1,
            data: vec![0, 0, 0, 1],
        };
        assert_eq!(parse(r#"{"$ext":[-1,"00000001"]}"#).unwrap(), v);
        assert_eq!(print(&v), r#"{"$ext":[-1,"00000001"]}"#);
        let nested = Value::List(vec![Value::Ext {
            tag: 127,
            data: vec![],
        }]);
        assert_eq!(parse(&print(&nested)).unwrap(), nested);
        assert!(same(&v, &parse(&print(&v)).unwrap()));
        assert!(!same(
            &v,
            &Value::Ext {
                tag: 1,
                data: vec![0, 0, 0, 1]
            }
        ));
        for (bad, needle) in [
            (r#"{"$ext":[128,"00"]}"#, "-128..=127"),
            (r#"{"$ext":[1.5,"00"]}"#, "-128..=127"),
            (r#"{"$ext":[1,"0"]}"#, "even-length hex"),
            (r#"{"$ext":[1]}"#, "two-element array"),
            (r#"{"$ext":"00"}"#, "two-element array"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.message.contains(needle), "{bad}: {err}");
        }
        // Positions stay right after an ext (the tag consumed its whole subtree).
        let err = parse(r#"[{"$ext":[1,"00"]}, {"$bytes":"0"}]"#).unwrap_err();
        assert_eq!(err.column, 31, "{err}");
    }

    #[test]
    fn print_forms() {
        assert_eq!(print(&Value::Int(1 << 53)), "9007199254740992");
        assert_eq!(
            print(&Value::Int((1 << 53) + 1)),
            r#"{"$int":"9007199254740993"}"#
        );
        assert_eq!(print(&Value::Float(1.0)), "1.0");
        assert_eq!(print(&Value::Float(1e16)), "1e16");
        assert_eq!(print(&Value::Float(-0.0)), r#"{"$float":"-0.0"}"#);
        assert_eq!(print(&Value::Float(f64::NAN)), r#"{"$float":"nan"}"#);
        assert_eq!(
            print(&Value::Map(vec![(Value::Str("$x".into()), Value::Null)])),
            r#"{"$map":[["$x",null]]}"#
        );
        assert_eq!(
            print(&Value::Map(vec![
                (Value::Str("$x".into()), Value::Null),
                (Value::Str("y".into()), Value::Null)
            ])),
            r#"{"$x":null,"y":null}"#
        );
    }

    fn sample() -> Vec<Value> {
        vec![
            Value::Null,
            Value::Bool(false),
            Value::Int(0),
            Value::Int(i128::MIN),
            Value::Int(i128::MAX),
            Value::Int(-(1 << 53) - 1),
            big("1267650600228229401496703205376000000000000"),
            Value::Float(0.1),
            Value::Float(5e-324),
            Value::Float(f64::MAX),
            Value::Float(-0.0),
            Value::Float(f64::INFINITY),
            Value::Float(f64::from_bits(0xfff0_0000_0000_0001)),
            Value::Str("é€😀\u{0}\u{1f}\u{7f}\u{2028}\"\\/".into()),
            Value::Bytes(vec![]),
            Value::Bytes((0..=255).collect()),
            Value::List(vec![]),
            Value::Tuple(vec![]),
            Value::Set(vec![Value::Int(1), Value::Str("a".into())]),
            Value::Map(vec![]),
            Value::Map(vec![(Value::Str("$bytes".into()), Value::Str("00".into()))]),
            Value::Map(vec![
                (Value::Tuple(vec![Value::Int(1)]), Value::Null),
                (Value::Float(f64::NAN), Value::Bytes(vec![1])),
                (
                    Value::Str("k".into()),
                    Value::List(vec![Value::Map(vec![])]),
                ),
            ]),
        ]
    }

    #[test]
    fn round_trips() {
        for v in sample() {
            let text = print(&v);
            let back = parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(same(&v, &back), "{v:?} -> {text} -> {back:?}");
            // Bit-exact floats: printing the parsed value gives the same text.
            assert_eq!(print(&back), text);
        }
        let all = Value::List(sample());
        assert!(same(&parse(&print(&all)).unwrap(), &all));
    }

    #[test]
    fn same_is_strict_on_floats() {
        assert!(!same(&Value::Float(0.0), &Value::Float(-0.0)));
        assert!(same(&Value::Float(f64::NAN), &Value::Float(-f64::NAN)));
        assert!(!same(&Value::Int(1), &Value::Float(1.0)));
        assert!(!same(&Value::List(vec![]), &Value::Tuple(vec![])));
    }
}
