//! kawanet/msgpack-test-suite through wirecall's msgpack codec.

use std::path::Path;

use wirecall_codecs::{CodecId, Value, TIMESTAMP_EXT_TAG};

use super::read_json;
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

/// What one case expects every listed encoding to decode to.
enum Expected {
    /// Exactly this value (numbers compared by value).
    Value(Value),
    /// A timestamp (ext -1) with these seconds and nanoseconds, in any of the spec's three
    /// payload forms.
    Timestamp { sec: i64, nsec: u32 },
}

/// Builds the expected value of one case.
fn case_value(case: &[(String, Json)]) -> Result<Expected, String> {
    for (key, v) in case {
        let value = match key.as_str() {
            "msgpack" => continue,
            "nil" => Value::Null,
            "bool" => Value::Bool(v.as_bool().ok_or("bool case without a boolean")?),
            "binary" => Value::Bytes(dash_hex(v.as_str().ok_or("binary case without a string")?)?),
            // `bignum` repeats `number` as an exact decimal string; prefer it.
            "number" if case.iter().any(|(k, _)| k == "bignum") => continue,
            "bignum" => notation::parse(&format!("{{\"$int\":{}}}", json_str(v)?))
                .map_err(|e| e.to_string())?,
            "number" | "string" | "array" | "map" => {
                notation::from_json(v).map_err(|e| e.to_string())?
            }
            "timestamp" => {
                let (sec, nsec) = match v.as_array() {
                    Some([s, n]) => (s.as_i64(), n.as_i64().and_then(|n| u32::try_from(n).ok())),
                    _ => (None, None),
                };
                let (Some(sec), Some(nsec)) = (sec, nsec) else {
                    return Err("timestamp case is not [seconds, nanoseconds]".into());
                };
                return Ok(Expected::Timestamp { sec, nsec });
            }
            "ext" => {
                let (tag, data) = match v.as_array() {
                    Some([t, d]) => (t.as_i64().and_then(|t| i8::try_from(t).ok()), d.as_str()),
                    _ => (None, None),
                };
                let (Some(tag), Some(data)) = (tag, data) else {
                    return Err("ext case is not [type, \"hex\"]".into());
                };
                Value::Ext {
                    tag,
                    data: dash_hex(data)?,
                }
            }
            other => return Err(format!("unknown case key {other:?}")),
        };
        return Ok(Expected::Value(value));
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
/// compared by value), and encoding the value must give one of the listed encodings (for a
/// timestamp, the value built from the case's `[seconds, nanoseconds]`).
pub fn run_msgpack(vectors_dir: &Path) -> SuiteReport {
    let mut report = SuiteReport::new("msgpack-test-suite");
    let path = vectors_dir.join("msgpack-test-suite/dist/msgpack-test-suite.json");
    let doc = match read_json(&path) {
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
                Ok(Expected::Value(v)) => v,
                Ok(Expected::Timestamp { sec, nsec }) => {
                    check_timestamp(&mut report, &format!("{group}[{n}]"), &encodings, sec, nsec);
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

/// The timestamp `(sec, nsec)` as wirecall's `Value` holds it: an ext -1 in the form the
/// msgpack spec's encoder picks (timestamp 32 when the nanoseconds are 0 and the seconds fit
/// 32 bits, timestamp 64 when the seconds fit 34 bits, else timestamp 96).
fn timestamp_value(sec: i64, nsec: u32) -> Value {
    let data = if sec >> 34 == 0 {
        let packed = (u64::from(nsec) << 34) | sec as u64;
        if packed >> 32 == 0 {
            (packed as u32).to_be_bytes().to_vec()
        } else {
            packed.to_be_bytes().to_vec()
        }
    } else {
        let mut d = nsec.to_be_bytes().to_vec();
        d.extend_from_slice(&sec.to_be_bytes());
        d
    };
    Value::Ext {
        tag: TIMESTAMP_EXT_TAG,
        data,
    }
}

/// Every encoding must decode to an ext -1 whose payload reads as `(sec, nsec)`; the
/// timestamp built from `(sec, nsec)` (not the bytes just read) must encode to one of the
/// listed encodings.
fn check_timestamp(
    report: &mut SuiteReport,
    case: &str,
    encodings: &[Vec<u8>],
    sec: i64,
    nsec: u32,
) {
    for bytes in encodings {
        match codec::decode(CodecId::MSGPACK, bytes) {
            Ok(got) => report.check(got.timestamp_parts() == Some((sec, nsec)), || {
                format!(
                    "{case} decode {}: expected timestamp [{sec}, {nsec}], got {}",
                    hex::encode(bytes),
                    notation::print(&got)
                )
            }),
            Err(e) => report.fail(format!("{case} decode {}: {e}", hex::encode(bytes))),
        }
    }
    let value = timestamp_value(sec, nsec);
    if value.timestamp_parts() != Some((sec, nsec)) {
        report.fail(format!(
            "{case}: the timestamp [{sec}, {nsec}] built as {} does not read back",
            notation::print(&value)
        ));
        return;
    }
    match codec::encode(CodecId::MSGPACK, &value) {
        Ok(got) => report.check(encodings.contains(&got), || {
            format!(
                "{case} encode timestamp [{sec}, {nsec}]: got {}, allowed {}",
                hex::encode(&got),
                encodings
                    .iter()
                    .map(hex::encode)
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }),
        Err(e) => report.fail(format!("{case} encode timestamp [{sec}, {nsec}]: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_encoded_from_their_value_not_from_the_bytes_read() {
        // [1, 0] written as timestamp 96: it reads correctly, but the spec's encoder (and
        // wirecall's) writes [1, 0] as timestamp 32, which this list does not allow.
        let ts96 = hex::decode("c70cff000000000000000000000001").unwrap();
        let mut r = SuiteReport::new("msgpack");
        check_timestamp(&mut r, "case", &[ts96], 1, 0);
        assert_eq!((r.passed, r.failed), (1, 1), "{:?}", r.failures);
        assert!(r.failures[0].contains("d6ff00000001"), "{:?}", r.failures);
        // Listed in its spec form it passes both checks.
        let ts32 = hex::decode("d6ff00000001").unwrap();
        let mut r = SuiteReport::new("msgpack");
        check_timestamp(&mut r, "case", &[ts32], 1, 0);
        assert_eq!((r.passed, r.failed), (2, 0), "{:?}", r.failures);
    }

    #[test]
    fn timestamp_forms_follow_the_spec() {
        for (sec, nsec, len) in [
            (0, 0, 4),
            (u32::MAX as i64, 0, 4),
            (1 << 32, 0, 8),
            (1, 1, 8),
            ((1 << 34) - 1, 999_999_999, 8),
            (1 << 34, 0, 12),
            (-1, 0, 12),
        ] {
            let v = timestamp_value(sec, nsec);
            assert_eq!(v.timestamp_parts(), Some((sec, nsec)));
            assert!(
                matches!(&v, Value::Ext { data, .. } if data.len() == len),
                "{v:?}"
            );
        }
    }
}
