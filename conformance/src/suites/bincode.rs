//! bincode golden vectors (bincode 1.3.3 / 2.0.1 outputs) for the configuration wirecall's
//! bincode codec uses: bincode 2 `config::standard()` (varint lengths and integers, zigzag
//! for signed integers, little-endian), i.e. the `bincode2_serde_config_standard` column.
//! bincode is not self-describing, so each record's value is built from its Rust type by hand.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{json_list, read_json};
use crate::json::{self, Json};
use crate::{codec, SuiteReport};

/// The column of `bincode-vectors.json` that matches `bincode::config::standard()` 2.x.
pub const STANDARD_COLUMN: &str = "bincode2_serde_config_standard";

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum SomeEnum {
    A,
    B(u32),
    C { value: u32 },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Foo {
    first: u8,
    second: u8,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Unit;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Newtype(u16);

/// `serde_bytes::ByteBuf` equivalent: serialises through `serialize_bytes`.
#[derive(Debug, PartialEq)]
struct ByteBuf(Vec<u8>);

impl Serialize for ByteBuf {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ByteBuf, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ByteBuf;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte buffer")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// Checks one record: encoding `value` gives `expected`, and decoding `expected` as `T` gives
/// `value` back (compared with `eq`).
fn check<T>(report: &mut SuiteReport, id: &str, expected: &[u8], value: T, eq: fn(&T, &T) -> bool)
where
    T: Serialize + DeserializeOwned + Debug,
{
    match codec::bincode_encode(&value) {
        Ok(got) => report.check(got == expected, || {
            format!(
                "{id}: encode gave {}, expected {}",
                hex::encode(&got),
                hex::encode(expected)
            )
        }),
        Err(e) => report.fail(format!("{id}: encode failed: {e}")),
    }
    match codec::bincode_decode::<T>(expected) {
        Ok(back) => report.check(eq(&back, &value), || {
            format!("{id}: decode gave {back:?}, expected {value:?}")
        }),
        Err(e) => report.fail(format!(
            "{id}: decode of {} failed: {e}",
            hex::encode(expected)
        )),
    }
}

fn eq<T: PartialEq>(a: &T, b: &T) -> bool {
    a == b
}

/// Runs the bincode vectors (`standard()` column): 67 records, each an encode and a decode
/// check.
pub fn run_bincode(vectors_dir: &Path) -> SuiteReport {
    let mut report = SuiteReport::new("bincode");
    let path = vectors_dir.join("bincode/bincode-vectors.json");
    let doc = match read_json(&path) {
        Ok(d) => d,
        Err(e) => {
            report.fail(e);
            return report;
        }
    };
    let records = match json_list(&doc, "vectors", &path) {
        Ok(r) => r,
        Err(e) => {
            report.fail(e);
            return report;
        }
    };
    for (n, rec) in records.iter().enumerate() {
        let ty = rec.get("rust_type").and_then(Json::as_str).unwrap_or("?");
        let val = rec.get("value").and_then(Json::as_str).unwrap_or("?");
        let id = format!("record {n} ({ty} = {val})");
        let expected = match rec
            .get(STANDARD_COLUMN)
            .and_then(Json::as_str)
            .map(hex::decode)
        {
            Some(Ok(b)) => b,
            _ => {
                report.fail(format!("{id}: no valid `{STANDARD_COLUMN}` hex"));
                continue;
            }
        };
        let r = &mut report;
        let x = expected.as_slice();
        match (ty, val) {
            ("(u32, i32)", "(0, 2147483647)") => check(r, &id, x, (0u32, i32::MAX), eq),
            ("SomeEnum{A,B(u32),C{value:u32}}", "SomeEnum::A") => check(r, &id, x, SomeEnum::A, eq),
            ("SomeEnum{A,B(u32),C{value:u32}}", "SomeEnum::B(0)") => {
                check(r, &id, x, SomeEnum::B(0), eq)
            }
            ("SomeEnum{A,B(u32),C{value:u32}}", "SomeEnum::C { value: 0 }") => {
                check(r, &id, x, SomeEnum::C { value: 0 }, eq)
            }
            ("Option<u32>", "Some(123)") => check(r, &id, x, Some(123u32), eq),
            ("Option<u32>", "None") => check(r, &id, x, None::<u32>, eq),
            ("Vec<u8>", "[0, 1, 2]") => check(r, &id, x, vec![0u8, 1, 2], eq),
            ("&str", "\"Hello\"") => check(r, &id, x, String::from("Hello"), eq),
            ("[u8; 5]", "[10, 20, 30, 40, 50]") => check(r, &id, x, [10u8, 20, 30, 40, 50], eq),
            ("[Foo; 2]", _) => check(
                r,
                &id,
                x,
                [
                    Foo {
                        first: 10,
                        second: 20,
                    },
                    Foo {
                        first: 30,
                        second: 40,
                    },
                ],
                eq,
            ),
            ("u64", v) => match v.parse::<u64>() {
                Ok(v) => check(r, &id, x, v, eq),
                Err(e) => r.fail(format!("{id}: {e}")),
            },
            ("u16", v) => match v.parse::<u16>() {
                Ok(v) => check(r, &id, x, v, eq),
                Err(e) => r.fail(format!("{id}: {e}")),
            },
            ("u8", v) => match v.parse::<u8>() {
                Ok(v) => check(r, &id, x, v, eq),
                Err(e) => r.fail(format!("{id}: {e}")),
            },
            ("i64", v) => match v.parse::<i64>() {
                Ok(v) => check(r, &id, x, v, eq),
                Err(e) => r.fail(format!("{id}: {e}")),
            },
            ("i32", v) => match v.parse::<i32>() {
                Ok(v) => check(r, &id, x, v, eq),
                Err(e) => r.fail(format!("{id}: {e}")),
            },
            ("i8", v) => match v.parse::<i8>() {
                Ok(v) => check(r, &id, x, v, eq),
                Err(e) => r.fail(format!("{id}: {e}")),
            },
            ("u128", "2^64") => check(r, &id, x, 1u128 << 64, eq),
            ("i128", v) => match v.parse::<i128>() {
                Ok(v) => check(r, &id, x, v, eq),
                Err(e) => r.fail(format!("{id}: {e}")),
            },
            ("usize", v) => match v.parse::<usize>() {
                Ok(v) => check(r, &id, x, v, eq),
                Err(e) => r.fail(format!("{id}: {e}")),
            },
            ("bool", v) => match v.parse::<bool>() {
                Ok(v) => check(r, &id, x, v, eq),
                Err(e) => r.fail(format!("{id}: {e}")),
            },
            ("f32", v) => match v.parse::<f32>() {
                Ok(v) => check(r, &id, x, v, |a: &f32, b: &f32| a.to_bits() == b.to_bits()),
                Err(e) => r.fail(format!("{id}: {e}")),
            },
            ("f64", "NaN") => check(r, &id, x, f64::NAN, |a: &f64, b: &f64| {
                a.is_nan() && b.is_nan()
            }),
            ("f64", v) => match v.parse::<f64>() {
                Ok(v) => check(r, &id, x, v, |a: &f64, b: &f64| a.to_bits() == b.to_bits()),
                Err(e) => r.fail(format!("{id}: {e}")),
            },
            ("char", v) => {
                let mut chars = v.trim_matches('\'').chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => check(r, &id, x, c, eq),
                    _ => r.fail(format!("{id}: not a single char literal")),
                }
            }
            ("String", v) => match json::parse(v) {
                Ok(Json::String(s)) => check(r, &id, x, s, eq),
                _ => r.fail(format!("{id}: not a string literal")),
            },
            ("serde_bytes::ByteBuf", "[0, 255]") => check(r, &id, x, ByteBuf(vec![0, 255]), eq),
            ("Vec<u32>", "[1, 2, 3]") => check(r, &id, x, vec![1u32, 2, 3], eq),
            ("Vec<String>", "[\"a\", \"bc\"]") => {
                check(r, &id, x, vec![String::from("a"), String::from("bc")], eq)
            }
            ("BTreeMap<String, u8>", "{\"a\": 1, \"b\": 2}") => check(
                r,
                &id,
                x,
                BTreeMap::from([(String::from("a"), 1u8), (String::from("b"), 2u8)]),
                eq,
            ),
            ("()", "()") => check(r, &id, x, (), eq),
            ("Unit (unit struct)", "Unit") => check(r, &id, x, Unit, eq),
            ("Newtype(u16)", "Newtype(300)") => check(r, &id, x, Newtype(300), eq),
            ("(u8, u16, u32)", "(1, 2, 3)") => check(r, &id, x, (1u8, 2u16, 3u32), eq),
            ("Option<Option<u8>>", "Some(None)") => check(r, &id, x, Some(None::<u8>), eq),
            ("Result<u32, u8> (serde enum)", "Ok(1555)") => {
                check(r, &id, x, Ok::<u32, u8>(1555), eq)
            }
            ("Result<u32, u8> (serde enum)", "Err(15)") => check(r, &id, x, Err::<u32, u8>(15), eq),
            _ => r.fail(format!(
                "{id}: no constructor for this record; add one to suites/bincode.rs"
            )),
        }
    }
    report
}
