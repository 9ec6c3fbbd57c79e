//! kawanet/msgpack-test-suite through wirecall's msgpack codec.

use std::path::Path;

use wirecall_codecs::{CodecId, ErrorKind, Value};

use super::read_text;
use crate::json::{self, Json};
use crate::{codec, notation, SuiteReport};

/// Compares numbers by value, as the suite's driver does (the suite lists float forms of
/// integers, e.g. `ca-3f-80-00-00` for 1); everything else must be [`notation::same`].
fn same_number_aware(expected: &Value, got: &Value) -> bool {
    match (expected, got) {
        (Value::Int(i), Value::Float(f)) | (Value::Float(f), Value::Int(i)) => {
            f.is_finite() && f.fract() == 0.0 && (*f as i128) == *i && (*i as f64) == *f
        }
        (Value::List(a), Value::List(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_number_aware(x, y))
        }
        (Value::Map(a), Value::Map(b)) => {
            a.len() == b.len()
                && a.iter().zip(b).all(|((k1, v1), (k2, v2))| {
                    same_number_aware(k1, k2) && same_number_aware(v1, v2)
                })
        }
        _ => notation::same(expected, got),
    }
}

fn dash_hex(s: &str) -> Result<Vec<u8>, String> {
    hex::decode(s.replace('-', "")).map_err(|e| format!("bad hex {s:?}: {e}"))
}

/// Builds the expected value of one case, or `Err(reason)` when the case must be skipped.
fn case_value(case: &[(String, Json)]) -> Result<Result<Value, String>, String> {
    for (key, v) in case {
        let value = match key.as_str() {
            "msgpack" => continue,
            "nil" => Value::Null,
            "bool" => Value::Bool(v.as_bool().ok_or("bool case without a boolean")?),
            "binary" => Value::Bytes(dash_hex(v.as_str().ok_or("binary case without a string")?)?),
            // `bignum` repeats `number` as an exact decimal string; prefer it.
            "number" if case.iter().any(|(k, _)| k == "bignum") => continue,
            "bignum" => notation::parse(&format!("{{\"$int\":{}}}", json_str(v)?)).map_err(|e| e.to_string())?,
            "number" | "string" | "array" | "map" => notation::from_json(v).map_err(|e| e.to_string())?,
            "timestamp" | "ext" => {
                return Ok(Err(format!(
                    "{key} (msgpack ext type) has no wirecall Value form: Value has no ext/timestamp variant; \
                     the codec refuses it with an Unsupported error (checked)"
                )))
            }
            other => return Err(format!("unknown case key {other:?}")),
        };
        return Ok(Ok(value));
    }
    Err("case without a value key".into())
}

fn json_str(v: &Json) -> Result<String, String> {
    let s = v.as_str().ok_or("bignum is not a string")?;
    let mut out = String::new();
    json::write_string(&mut out, s);
    Ok(out)
}

/// Runs msgpack-test-suite: every listed encoding must decode to the case's value (numbers
/// compared by value), and encoding the value must give one of the listed encodings.
pub fn run_msgpack(vectors_dir: &Path) -> SuiteReport {
    let mut report = SuiteReport::new("msgpack-test-suite");
    let path = vectors_dir.join("msgpack-test-suite/dist/msgpack-test-suite.json");
    let doc = match read_text(&path)
        .and_then(|t| json::parse(&t).map_err(|e| format!("{}: {e}", path.display())))
    {
        Ok(Json::Object(groups)) => groups,
        Ok(_) => {
            report.fail(format!("{}: expected an object of groups", path.display()));
            return report;
        }
        Err(e) => {
            report.fail(e);
            return report;
        }
    };
    for (group, cases) in &doc {
        let Some(cases) = cases.as_array() else {
            report.fail(format!("{group}: not a list of cases"));
            continue;
        };
        for (n, case) in cases.iter().enumerate() {
            let Json::Object(members) = case else {
                report.fail(format!("{group}[{n}]: not an object"));
                continue;
            };
            let encodings: Vec<Vec<u8>> = match case
                .get("msgpack")
                .and_then(Json::as_array)
                .ok_or_else(|| "no msgpack list".to_string())
                .and_then(|l| {
                    l.iter()
                        .map(|h| {
                            h.as_str()
                                .ok_or("non-string hex".to_string())
                                .and_then(dash_hex)
                        })
                        .collect()
                }) {
                Ok(list) => list,
                Err(e) => {
                    report.fail(format!("{group}[{n}]: {e}"));
                    continue;
                }
            };
            let expected = match case_value(members) {
                Ok(Ok(v)) => v,
                Ok(Err(reason)) => {
                    // Not representable: the value check is skipped, but the decoder must
                    // refuse the bytes with a clear Unsupported error, not misread them.
                    for bytes in &encodings {
                        match codec::decode(CodecId::MSGPACK, bytes) {
                            Err(e) if e.kind() == ErrorKind::Unsupported => report
                                .skip(format!("{group}[{n}] {}: {reason}", hex::encode(bytes))),
                            Err(e) => report.fail(format!(
                                "{group}[{n}] {}: expected an Unsupported refusal, got {e}",
                                hex::encode(bytes)
                            )),
                            Ok(v) => report.fail(format!(
                                "{group}[{n}] {}: an ext type decoded to {}",
                                hex::encode(bytes),
                                notation::print(&v)
                            )),
                        }
                    }
                    continue;
                }
                Err(e) => {
                    report.fail(format!("{group}[{n}]: {e}"));
                    continue;
                }
            };
            for bytes in &encodings {
                match codec::decode(CodecId::MSGPACK, bytes) {
                    Ok(got) => report.check(same_number_aware(&expected, &got), || {
                        format!(
                            "{group}[{n}] decode {}: expected {} got {}",
                            hex::encode(bytes),
                            notation::print(&expected),
                            notation::print(&got)
                        )
                    }),
                    Err(e) => {
                        report.fail(format!("{group}[{n}] decode {}: {e}", hex::encode(bytes)))
                    }
                }
            }
            match codec::encode(CodecId::MSGPACK, &expected) {
                Ok(got) => report.check(encodings.contains(&got), || {
                    format!(
                        "{group}[{n}] encode {}: got {}, allowed {}",
                        notation::print(&expected),
                        hex::encode(&got),
                        encodings
                            .iter()
                            .map(hex::encode)
                            .collect::<Vec<_>>()
                            .join(" ")
                    )
                }),
                Err(e) => report.fail(format!(
                    "{group}[{n}] encode {}: {e}",
                    notation::print(&expected)
                )),
            }
        }
    }
    report
}
