//! cbor-wg/cbor-test-vectors (RFC 8949 Appendix A, good, bad, spike) through wirecall's cbor
//! codec, via the flat `derived/vectors.json`.

use std::path::Path;

use wirecall_codecs::CodecId;

use super::{json_list, read_json};
use crate::json::{self, Json};
use crate::{codec, notation, SuiteReport};

/// What the structural scan of an expected item found.
#[derive(Debug, Default)]
struct Scan {
    /// Features `Value` has no form for (reason strings); non-empty means "skip".
    unrepresentable: Vec<String>,
    /// A NaN with a non-default payload occurs.
    nan_payload: bool,
}

/// Walks one well-formed CBOR item, noting what `wirecall_codecs::Value` cannot hold.
fn scan(bytes: &[u8], pos: &mut usize, out: &mut Scan, depth: usize) -> Result<(), String> {
    if depth > 10_000 {
        return Err("nesting too deep to scan".into());
    }
    let initial = *bytes.get(*pos).ok_or("truncated item")?;
    *pos += 1;
    let major = initial >> 5;
    let ai = initial & 0x1f;
    let arg = |pos: &mut usize| -> Result<Option<u64>, String> {
        let n = match ai {
            0..=23 => return Ok(Some(u64::from(ai))),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            31 => return Ok(None),
            _ => return Err(format!("reserved additional information {ai}")),
        };
        let slice = bytes.get(*pos..*pos + n).ok_or("truncated argument")?;
        *pos += n;
        Ok(Some(
            slice.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        ))
    };
    match major {
        0 | 1 => {
            arg(pos)?.ok_or("indefinite integer")?;
        }
        2 | 3 => match arg(pos)? {
            Some(len) => {
                let len = usize::try_from(len).map_err(|_| "length too large")?;
                bytes.get(*pos..*pos + len).ok_or("truncated string")?;
                *pos += len;
            }
            None => loop {
                if bytes.get(*pos) == Some(&0xff) {
                    *pos += 1;
                    break;
                }
                scan(bytes, pos, out, depth + 1)?;
            },
        },
        4 | 5 => {
            let per = if major == 5 { 2 } else { 1 };
            match arg(pos)? {
                Some(len) => {
                    for _ in 0..len.saturating_mul(per) {
                        scan(bytes, pos, out, depth + 1)?;
                    }
                }
                None => loop {
                    if bytes.get(*pos) == Some(&0xff) {
                        *pos += 1;
                        break;
                    }
                    scan(bytes, pos, out, depth + 1)?;
                },
            }
        }
        6 => {
            let tag = arg(pos)?.ok_or("indefinite tag")?;
            // The cbor codec maps tags 2/3 (bignums) onto integers, 258 onto Value::Set and
            // drops 55799 (self-describe); every other tag has no Value form.
            if !matches!(tag, 2 | 3 | 258 | 55799) {
                out.unrepresentable.push(format!(
                    "tag {tag}: Value has no tagged-item form (only tags 2/3 bignums, 258 sets and \
                     55799 self-describe map onto Value)"
                ));
            }
            scan(bytes, pos, out, depth + 1)?;
        }
        _ => match ai {
            20..=22 => {}
            23 => out
                .unrepresentable
                .push("undefined (f7): Value has no `undefined`, only null".into()),
            0..=19 | 24 => {
                let v = if ai == 24 {
                    let b = *bytes.get(*pos).ok_or("truncated simple value")?;
                    *pos += 1;
                    b
                } else {
                    ai
                };
                out.unrepresentable.push(format!(
                    "simple({v}): Value has no unassigned simple values"
                ));
            }
            25 => {
                let h = bytes.get(*pos..*pos + 2).ok_or("truncated f16")?;
                let bits = u16::from_be_bytes([h[0], h[1]]);
                out.nan_payload |=
                    bits & 0x7c00 == 0x7c00 && bits & 0x03ff != 0 && bits & 0x7fff != 0x7e00;
                *pos += 2;
            }
            26 => {
                let h = bytes.get(*pos..*pos + 4).ok_or("truncated f32")?;
                let f = f32::from_be_bytes([h[0], h[1], h[2], h[3]]);
                out.nan_payload |= f.is_nan() && f.to_bits() & 0x7fff_ffff != 0x7fc0_0000;
                *pos += 4;
            }
            27 => {
                let h = bytes.get(*pos..*pos + 8).ok_or("truncated f64")?;
                let mut b = [0u8; 8];
                b.copy_from_slice(h);
                let f = f64::from_be_bytes(b);
                out.nan_payload |=
                    f.is_nan() && f.to_bits() & 0x7fff_ffff_ffff_ffff != 0x7ff8_0000_0000_0000;
                *pos += 8;
            }
            _ => {
                return Err(format!(
                    "malformed simple/float initial byte {initial:#04x}"
                ))
            }
        },
    }
    Ok(())
}

fn scan_item(bytes: &[u8]) -> Result<Scan, String> {
    let mut out = Scan::default();
    let mut pos = 0;
    scan(bytes, &mut pos, &mut out, 0)?;
    if pos != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the item",
            bytes.len() - pos
        ));
    }
    out.unrepresentable.dedup();
    Ok(out)
}

/// Runs the cbor-wg vectors: each good test's `encoded` must decode to the same value as its
/// `decoded_cbor`; where round-tripping applies, encoding that value must give `encoded`
/// back; every test of a `fail` file must be rejected. Items holding what `Value` cannot
/// represent (tags other than 2/3, `undefined`, unassigned simple values) are skipped, each
/// with its reason. Recursion goes about 500 levels deep: call it through
/// [`run_cbor`](super::run_cbor), which gives it a large stack.
pub(super) fn run_cbor_here(vectors_dir: &Path) -> SuiteReport {
    let mut report = SuiteReport::new("cbor-wg-test-vectors");
    let path = vectors_dir.join("cbor-wg-test-vectors/derived/vectors.json");
    let doc = match read_json(&path) {
        Ok(doc) => doc,
        Err(e) => {
            report.fail(e);
            return report;
        }
    };
    let files = match json_list(&doc, "files", &path) {
        Ok(f) => f,
        Err(e) => {
            report.fail(e);
            return report;
        }
    };
    let mut spike_roundtrips = (0usize, 0usize);
    for file in files {
        let fname = file.get("file").and_then(Json::as_str).unwrap_or("?");
        let file_fails = file.get("fail").and_then(Json::as_bool).unwrap_or(false);
        let Some(tests) = file.get("tests").and_then(Json::as_array) else {
            report.fail(format!("{fname}: no `tests` list"));
            continue;
        };
        for (n, test) in tests.iter().enumerate() {
            let desc = test.get("description").and_then(Json::as_str).unwrap_or("");
            let id = format!("{fname}#{n} ({desc})");
            let hex_of = |key: &str| -> Option<Result<Vec<u8>, String>> {
                test.get(key)
                    .and_then(Json::as_str)
                    .map(|h| hex::decode(h).map_err(|e| format!("{id}: bad hex in {key}: {e}")))
            };
            let encoded = match hex_of("encoded") {
                Some(Ok(b)) => b,
                Some(Err(e)) => {
                    report.fail(e);
                    continue;
                }
                None => {
                    report.fail(format!("{id}: no `encoded`"));
                    continue;
                }
            };
            let must_fail = file_fails || test.get("fail").and_then(Json::as_bool).unwrap_or(false);
            if must_fail {
                let r = codec::decode_deep(CodecId::CBOR, &encoded);
                report.check(r.is_err(), || {
                    format!(
                        "{id}: {} must be rejected, decoded to {}",
                        hex::encode(&encoded),
                        r.map(|v| notation::print(&v)).unwrap_or_default()
                    )
                });
                continue;
            }
            let expected_bytes = match hex_of("decoded_cbor") {
                Some(Ok(b)) => b,
                Some(Err(e)) => {
                    report.fail(e);
                    continue;
                }
                None => {
                    report.fail(format!("{id}: no `decoded_cbor`"));
                    continue;
                }
            };
            let roundtrip = test
                .get("roundtrip")
                .and_then(Json::as_bool)
                .unwrap_or(true);
            let scan = match scan_item(&expected_bytes) {
                Ok(s) => s,
                Err(e) => {
                    report.fail(format!(
                        "{id}: decoded_cbor {} is not a CBOR item: {e}",
                        hex::encode(&expected_bytes)
                    ));
                    continue;
                }
            };
            if !scan.unrepresentable.is_empty() {
                let reason = scan.unrepresentable.join("; ");
                report.skip(format!("{id}: decode not checked: {reason}"));
                if roundtrip {
                    report.skip(format!("{id}: round trip not checked: {reason}"));
                }
                continue;
            }
            let expected = match codec::decode_deep(CodecId::CBOR, &expected_bytes) {
                Ok(v) => v,
                Err(e) => {
                    report.fail(format!(
                        "{id}: expected item {} does not decode: {e}",
                        hex::encode(&expected_bytes)
                    ));
                    continue;
                }
            };
            match codec::decode_deep(CodecId::CBOR, &encoded) {
                Ok(got) => report.check(notation::same(&expected, &got), || {
                    format!(
                        "{id}: {} decoded to {}, expected {}",
                        hex::encode(&encoded),
                        notation::print(&got),
                        notation::print(&expected)
                    )
                }),
                Err(e) => report.fail(format!(
                    "{id}: {} does not decode: {e}",
                    hex::encode(&encoded)
                )),
            }
            if !roundtrip {
                continue;
            }
            if let Some(opts) = test.get("encodeOptions") {
                report.skip(format!(
                    "{id}: round trip not checked: encodeOptions {} asks for an encoder choice wirecall's cbor \
                     codec does not offer (it always writes preferred serialization)",
                    compact(opts)
                ));
                continue;
            }
            let is_spike = fname.starts_with("spike/");
            match codec::encode(CodecId::CBOR, &expected) {
                Ok(got) if got == encoded => {
                    report.pass();
                    if is_spike {
                        spike_roundtrips.0 += 1;
                    }
                }
                Ok(got) if scan.nan_payload && differs_in_one_bit(&got, &encoded) => report.skip(format!(
                    "{id}: round trip not checked: signalling NaN {} re-encodes as {}: ciborium sets the quiet \
                     bit (the rest of the payload is kept; the decode check above passed)",
                    hex::encode(&encoded),
                    hex::encode(&got)
                )),
                Ok(got) => {
                    if is_spike {
                        spike_roundtrips.1 += 1;
                    }
                    report.fail(format!("{id}: encode gave {}, expected {}", hex::encode(&got), hex::encode(&encoded)))
                }
                Err(e) => report.fail(format!("{id}: encode failed: {e}")),
            }
        }
    }
    report.notes.push(format!(
        "spike deterministic (preferred = CDE = LDE) round trips: {} identical, {} different",
        spike_roundtrips.0, spike_roundtrips.1
    ));
    report
}

/// True when `a` and `b` have the same length and differ in exactly one bit.
fn differs_in_one_bit(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .map(|(x, y)| (x ^ y).count_ones())
            .sum::<u32>()
            == 1
}

fn compact(j: &Json) -> String {
    match j {
        Json::Object(m) => {
            let inner: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}: {}", compact(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.clone(),
        Json::String(s) => {
            let mut out = String::new();
            json::write_string(&mut out, s);
            out
        }
        Json::Null => "null".into(),
        Json::Array(a) => format!("[{}]", a.iter().map(compact).collect::<Vec<_>>().join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_flags_what_value_cannot_hold() {
        let s = scan_item(&hex::decode("c11a514b67b0").unwrap()).unwrap();
        assert_eq!(s.unrepresentable.len(), 1);
        let s = scan_item(&hex::decode("c249010000000000000000").unwrap()).unwrap();
        assert!(s.unrepresentable.is_empty());
        assert!(!scan_item(&hex::decode("f7").unwrap())
            .unwrap()
            .unrepresentable
            .is_empty());
        assert!(!scan_item(&hex::decode("f0").unwrap())
            .unwrap()
            .unrepresentable
            .is_empty());
        assert!(!scan_item(&hex::decode("f8ff").unwrap())
            .unwrap()
            .unrepresentable
            .is_empty());
        assert!(scan_item(&hex::decode("9f018202039f0405ffff").unwrap())
            .unwrap()
            .unrepresentable
            .is_empty());
        assert!(
            scan_item(&hex::decode("f97d1f").unwrap())
                .unwrap()
                .nan_payload
        );
        assert!(
            !scan_item(&hex::decode("f97e00").unwrap())
                .unwrap()
                .nan_payload
        );
        assert!(scan_item(&hex::decode("8201").unwrap()).is_err());
        assert!(scan_item(&hex::decode("0101").unwrap()).is_err());
    }
}
