//! cbor-wg/cbor-test-vectors (RFC 8949 Appendix A, good, bad, spike) through wirecall's cbor
//! codec, via the flat `derived/vectors.json`.

use std::path::Path;

use wirecall_codecs::{CodecId, ErrorKind, Value};

use super::{json_list, read_json};
use crate::json::{self, Json};
use crate::{codec, interop, notation, Deviations, SuiteReport};

/// What the structural scan of an expected item found.
#[derive(Debug, Default)]
struct Scan {
    /// Features `Value` has no form for (reason strings); non-empty means "skip".
    unrepresentable: Vec<String>,
    /// A NaN with a non-default payload occurs.
    nan_payload: bool,
    /// The bits of every NaN, in document order, widened to f64 exactly: the payload shifted
    /// into place, the quiet bit left as it is (what `keepNanPayloads` asks a decoder for).
    nans: Vec<u64>,
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
                let nan = bits & 0x7c00 == 0x7c00 && bits & 0x03ff != 0;
                out.nan_payload |= nan && bits & 0x7fff != 0x7e00;
                if nan {
                    out.nans.push(
                        (u64::from(bits >> 15) << 63)
                            | (0x7ff << 52)
                            | (u64::from(bits & 0x3ff) << 42),
                    );
                }
                *pos += 2;
            }
            26 => {
                let h = bytes.get(*pos..*pos + 4).ok_or("truncated f32")?;
                let f = f32::from_be_bytes([h[0], h[1], h[2], h[3]]);
                out.nan_payload |= f.is_nan() && f.to_bits() & 0x7fff_ffff != 0x7fc0_0000;
                if f.is_nan() {
                    let bits = f.to_bits();
                    out.nans.push(
                        (u64::from(bits >> 31) << 63)
                            | (0x7ff << 52)
                            | (u64::from(bits & 0x007f_ffff) << 29),
                    );
                }
                *pos += 4;
            }
            27 => {
                let h = bytes.get(*pos..*pos + 8).ok_or("truncated f64")?;
                let mut b = [0u8; 8];
                b.copy_from_slice(h);
                let f = f64::from_be_bytes(b);
                out.nan_payload |=
                    f.is_nan() && f.to_bits() & 0x7fff_ffff_ffff_ffff != 0x7ff8_0000_0000_0000;
                if f.is_nan() {
                    out.nans.push(f.to_bits());
                }
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

/// What cbor2 makes of one expected item (one line of `python/cbor_oracle.py`).
#[derive(Debug)]
enum Oracle {
    /// The value, in the notation.
    Value(Value),
    /// The item holds what `Value` has no form for (a tag, `undefined`, a simple value).
    Unrepresentable(String),
    /// cbor2 rejects the item, or its line could not be read.
    Broken(String),
}

/// The independent expected values: cbor2's reading of every `decoded_cbor` item, in order.
/// `Err` says why there are none (Python or cbor2 missing, or the script failed).
fn cbor2_oracle(python: &Path, items: &[String]) -> Result<Vec<Oracle>, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/cbor_oracle.py");
    let lines = interop::run_script(python, &script, &[], items.to_vec())?;
    let (head, rest) = lines
        .split_first()
        .ok_or_else(|| format!("{} printed nothing", script.display()))?;
    if !head.starts_with("ok cbor2 ") {
        return Err(format!("{}: {head}", python.display()));
    }
    if rest.len() != items.len() {
        return Err(format!(
            "cbor_oracle.py answered {} of {} items",
            rest.len(),
            items.len()
        ));
    }
    Ok(rest
        .iter()
        .map(|line| {
            if let Some(what) = line.strip_prefix('?') {
                Oracle::Unrepresentable(what.to_owned())
            } else if let Some(err) = line.strip_prefix('!') {
                Oracle::Broken(format!("cbor2 rejects it: {err}"))
            } else {
                notation::parse_deep(line).map_or_else(
                    |e| Oracle::Broken(format!("cbor2's value {line} is not notation: {e}")),
                    Oracle::Value,
                )
            }
        })
        .collect())
}

/// Replaces the NaNs of `v` (in document order) with `bits`, which the scan of the expected
/// item collected; `false` when the counts differ.
fn put_nan_payloads(v: &mut Value, bits: &mut std::slice::Iter<'_, u64>) -> bool {
    match v {
        Value::Float(f) if f.is_nan() => match bits.next() {
            Some(b) => {
                *f = f64::from_bits(*b);
                true
            }
            None => false,
        },
        Value::List(xs) | Value::Tuple(xs) | Value::Set(xs) => {
            xs.iter_mut().all(|x| put_nan_payloads(x, bits))
        }
        Value::Map(m) => m
            .iter_mut()
            .all(|(k, x)| put_nan_payloads(k, bits) && put_nan_payloads(x, bits)),
        _ => true,
    }
}

/// Equality against cbor2's value: sets in any order (a Python set keeps no order), floats
/// by bits (`-0.0` is not `0.0`), and NaNs by their exact bits when `exact_nans`, else any
/// NaN equals any NaN.
fn same_as_expected(expected: &Value, got: &Value, exact_nans: bool) -> bool {
    match (expected, got) {
        (Value::Float(a), Value::Float(b)) => {
            a.to_bits() == b.to_bits() || (!exact_nans && a.is_nan() && b.is_nan())
        }
        (Value::Set(x), Value::Set(y)) => {
            let mut used = vec![false; y.len()];
            x.len() == y.len()
                && x.iter().all(|e| {
                    let hit = y
                        .iter()
                        .zip(used.iter_mut())
                        .find(|(g, u)| !**u && same_as_expected(e, g, exact_nans));
                    match hit {
                        Some((_, u)) => {
                            *u = true;
                            true
                        }
                        None => false,
                    }
                })
        }
        (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(a, b)| same_as_expected(a, b, exact_nans))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter().zip(y).all(|((k1, v1), (k2, v2))| {
                    same_as_expected(k1, k2, exact_nans) && same_as_expected(v1, v2, exact_nans)
                })
        }
        _ => expected.same_as(got),
    }
}

/// How wirecall's value prints in failure lines: the notation, with every NaN's bits.
fn show(v: &Value) -> String {
    notation::print(v)
}

/// One good test, ready to check.
struct Good<'a> {
    id: String,
    test: &'a Json,
    encoded: Vec<u8>,
    expected: Vec<u8>,
    scan: Scan,
    keep_nans: bool,
}

/// The encode options a round trip may carry and still be checked: `avoidInts` asks the
/// encoder not to write an integral float as an integer, which wirecall's cbor codec never
/// does (a `Value::Float` is always written as a float).
const CHECKABLE_ENCODE_OPTIONS: [&str; 1] = ["avoidInts"];

/// Runs the cbor-wg vectors against an independent expected value: cbor2's reading of each
/// good test's `decoded_cbor` (via `python/cbor_oracle.py`).
///
/// * `decode`: wirecall's decoding of `encoded` equals cbor2's value; NaNs compare by their
///   exact bits where the file asks for `keepNanPayloads` (the bits come from the expected
///   item itself: cbor2 quiets signalling NaNs when it widens them).
/// * `roundtrip` (where the flag is not false): encoding that value gives `encoded`.
/// * `reject`: an item holding what `Value` has no form for (a tag other than 2/3/258/55799,
///   `undefined`, an unassigned simple value) must be refused with `ErrorKind::Unsupported`.
/// * every test of a `fail` file must be rejected.
///
/// Differences listed in `expectations/deviations.txt` count as expected deviations.
/// Without Python and cbor2 the decode and round-trip checks are skipped with
/// `python reference missing` (a failure under `WIRECALL_REQUIRE_PYTHON=1`); the rejection
/// checks still run on the runner's own structural scan. Recursion goes about 500 levels
/// deep: call it through [`run_cbor`](super::run_cbor), which gives it a large stack.
pub(super) fn run_cbor_here(vectors_dir: &Path) -> SuiteReport {
    run_cbor_with(
        vectors_dir,
        Deviations::for_suite(SUITE),
        &interop::python_command(),
        interop::python_required(),
    )
}

const SUITE: &str = "cbor-wg-test-vectors";

/// [`run_cbor_here`] with its deviation list, Python and `WIRECALL_REQUIRE_PYTHON` given.
fn run_cbor_with(
    vectors_dir: &Path,
    mut deviations: Deviations,
    python: &Path,
    python_required: bool,
) -> SuiteReport {
    let mut report = SuiteReport::new(SUITE);
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
    let mut good = Vec::new();
    let mut bad = 0;
    for file in files {
        let fname = file.get("file").and_then(Json::as_str).unwrap_or("?");
        let file_fails = file.get("fail").and_then(Json::as_bool).unwrap_or(false);
        let keep_nans = file
            .get("decodeOptions")
            .and_then(|o| o.get("keepNanPayloads"))
            .and_then(Json::as_bool)
            .unwrap_or(false);
        let Some(tests) = file.get("tests").and_then(Json::as_array) else {
            report.fail(format!("{fname}: no `tests` list"));
            continue;
        };
        for (n, test) in tests.iter().enumerate() {
            let desc = test.get("description").and_then(Json::as_str).unwrap_or("");
            let id = format!("{fname}#{n} ({desc})");
            let hex_of = |key: &str| -> Result<Vec<u8>, String> {
                let h = test
                    .get(key)
                    .and_then(Json::as_str)
                    .ok_or_else(|| format!("{id}: no `{key}`"))?;
                hex::decode(h).map_err(|e| format!("{id}: bad hex in {key}: {e}"))
            };
            let encoded = match hex_of("encoded") {
                Ok(b) => b,
                Err(e) => {
                    report.fail(e);
                    continue;
                }
            };
            let must_fail = file_fails || test.get("fail").and_then(Json::as_bool).unwrap_or(false);
            if must_fail {
                bad += 1;
                let r = codec::decode_deep(CodecId::CBOR, &encoded);
                report.check(r.is_err(), || {
                    format!(
                        "{id}: {} must be rejected, decoded to {}",
                        hex::encode(&encoded),
                        r.map(|v| show(&v)).unwrap_or_default()
                    )
                });
                continue;
            }
            let expected = match hex_of("decoded_cbor") {
                Ok(b) => b,
                Err(e) => {
                    report.fail(e);
                    continue;
                }
            };
            let scan = match scan_item(&expected) {
                Ok(s) => s,
                Err(e) => {
                    report.fail(format!(
                        "{id}: decoded_cbor {} is not a CBOR item: {e}",
                        hex::encode(&expected)
                    ));
                    continue;
                }
            };
            good.push(Good {
                id,
                test,
                encoded,
                expected,
                scan,
                keep_nans,
            });
        }
    }
    let items: Vec<String> = good.iter().map(|g| hex::encode(&g.expected)).collect();
    let oracle = match cbor2_oracle(python, &items) {
        Ok(o) => Some(o),
        Err(why) => {
            if python_required {
                report.fail(format!(
                    "WIRECALL_REQUIRE_PYTHON=1 but there is no cbor2 reference: {why}"
                ));
            }
            report.notes.push(format!(
                "{}: decode and round-trip checks need cbor2: {why}",
                interop::PYTHON_MISSING
            ));
            None
        }
    };
    let mut unchecked = 0;
    let mut spike_roundtrips = (0usize, 0usize);
    // decode checks against cbor2, round-trip checks, Unsupported refusals
    let mut tally = (0usize, 0usize, 0usize);
    for (k, g) in good.iter().enumerate() {
        let from_cbor2 = oracle.as_ref().and_then(|o| o.get(k));
        let unrepresentable = match from_cbor2 {
            Some(Oracle::Unrepresentable(what)) => {
                if g.scan.unrepresentable.is_empty() {
                    report.fail(format!(
                        "{}: cbor2 finds {what} in {}, the runner's scan finds nothing Value cannot hold",
                        g.id,
                        hex::encode(&g.expected)
                    ));
                    continue;
                }
                true
            }
            Some(Oracle::Value(_)) if !g.scan.unrepresentable.is_empty() => {
                report.fail(format!(
                    "{}: the runner's scan finds {} in {}, cbor2 reads a plain value",
                    g.id,
                    g.scan.unrepresentable.join("; "),
                    hex::encode(&g.expected)
                ));
                continue;
            }
            Some(Oracle::Broken(e)) => {
                report.fail(format!("{}: {}: {e}", g.id, hex::encode(&g.expected)));
                continue;
            }
            Some(Oracle::Value(_)) => false,
            None => !g.scan.unrepresentable.is_empty(),
        };
        if unrepresentable {
            check_rejected(&mut report, &mut deviations, g);
            tally.2 += 1;
            continue;
        }
        let Some(Oracle::Value(value)) = from_cbor2 else {
            unchecked += 1;
            deviations.not_run(&format!("{} decode", g.id));
            deviations.not_run(&format!("{} roundtrip", g.id));
            continue;
        };
        let mut value = value.clone();
        if g.keep_nans && !put_nan_payloads(&mut value, &mut g.scan.nans.iter()) {
            report.fail(format!(
                "{}: cbor2's value {} and the expected item {} hold different numbers of NaNs",
                g.id,
                show(&value),
                hex::encode(&g.expected)
            ));
            continue;
        }
        let outcome = match codec::decode_deep(CodecId::CBOR, &g.encoded) {
            Ok(got) if same_as_expected(&value, &got, g.keep_nans) => Ok(()),
            Ok(got) => Err((
                show(&got),
                format!(
                    "{} decode: {} decoded to {}, expected {} (cbor2's reading of {}{})",
                    g.id,
                    hex::encode(&g.encoded),
                    show(&got),
                    show(&value),
                    hex::encode(&g.expected),
                    if g.keep_nans && !g.scan.nans.is_empty() {
                        ", NaN bits exactly as in the item: keepNanPayloads"
                    } else {
                        ""
                    }
                ),
            )),
            Err(e) => Err((
                format!("{:?} error", e.kind()),
                format!(
                    "{} decode: {} does not decode: {e}",
                    g.id,
                    hex::encode(&g.encoded)
                ),
            )),
        };
        report.check_case(&mut deviations, &format!("{} decode", g.id), outcome);
        tally.0 += 1;
        if !g
            .test
            .get("roundtrip")
            .and_then(Json::as_bool)
            .unwrap_or(true)
        {
            continue;
        }
        if let Some(Json::Object(opts)) = g.test.get("encodeOptions") {
            let unknown: Vec<&str> = opts
                .iter()
                .map(|(k, _)| k.as_str())
                .filter(|k| !CHECKABLE_ENCODE_OPTIONS.contains(k))
                .collect();
            if !unknown.is_empty() {
                report.skip(format!(
                    "{} roundtrip: encodeOptions {} ask for an encoder choice wirecall's cbor codec does not \
                     offer (it always writes preferred serialization)",
                    g.id,
                    compact(&Json::Object(opts.clone()))
                ));
                continue;
            }
        }
        let outcome = match codec::encode(CodecId::CBOR, &value) {
            Ok(got) if got == g.encoded => Ok(()),
            Ok(got) => Err((
                hex::encode(&got),
                format!(
                    "{} roundtrip: {} encoded as {}, expected {}",
                    g.id,
                    show(&value),
                    hex::encode(&got),
                    hex::encode(&g.encoded)
                ),
            )),
            Err(e) => Err((
                format!("{:?} error", e.kind()),
                format!("{} roundtrip: encode failed: {e}", g.id),
            )),
        };
        if g.id.starts_with("spike/") {
            if outcome.is_ok() {
                spike_roundtrips.0 += 1;
            } else {
                spike_roundtrips.1 += 1;
            }
        }
        report.check_case(&mut deviations, &format!("{} roundtrip", g.id), outcome);
        tally.1 += 1;
    }
    report.skip_many(
        unchecked,
        format!(
            "{}: no independent expected value without cbor2 (decode and round trip not checked)",
            interop::PYTHON_MISSING
        ),
    );
    report.notes.push(format!(
        "checks: {} decodes against cbor2, {} round trips, {} refusals as Unsupported, {} bad \
         inputs rejected",
        tally.0, tally.1, tally.2, bad
    ));
    report.notes.push(format!(
        "spike deterministic (preferred = CDE = LDE) round trips: {} identical, {} different",
        spike_roundtrips.0, spike_roundtrips.1
    ));
    report.finish_deviations(deviations);
    report
}

/// An item `Value` cannot hold must be refused with `ErrorKind::Unsupported`.
fn check_rejected(report: &mut SuiteReport, deviations: &mut Deviations, g: &Good<'_>) {
    let outcome = match codec::decode_deep(CodecId::CBOR, &g.encoded) {
        Err(e) if e.kind() == ErrorKind::Unsupported => Ok(()),
        Err(e) => Err((
            format!("{:?} error", e.kind()),
            format!(
                "{} reject: {} holds {}, which must be refused as Unsupported; got {e}",
                g.id,
                hex::encode(&g.encoded),
                g.scan.unrepresentable.join("; ")
            ),
        )),
        Ok(v) => Err((
            format!("decoded to {}", show(&v)),
            format!(
                "{} reject: {} holds {}, which must be refused as Unsupported; it decoded to {}",
                g.id,
                hex::encode(&g.encoded),
                g.scan.unrepresentable.join("; "),
                show(&v)
            ),
        )),
    };
    report.check_case(deviations, &format!("{} reject", g.id), outcome);
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

    /// A vectors folder holding only `derived/vectors.json` with `files`.
    fn suite_dir(files: &str) -> std::path::PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wirecall-cbor-runner-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let derived = dir.join("cbor-wg-test-vectors/derived");
        std::fs::create_dir_all(&derived).unwrap();
        std::fs::write(
            derived.join("vectors.json"),
            format!(r#"{{"files":[{files}]}}"#),
        )
        .unwrap();
        dir
    }

    fn run(files: &str, python: &Path, required: bool) -> SuiteReport {
        let dir = suite_dir(files);
        let report = run_cbor_with(&dir, Deviations::default(), python, required);
        let _ = std::fs::remove_dir_all(&dir);
        report
    }

    /// The Python with cbor2, or `None` after the visible skip notice.
    fn python_or_skip(test: &str) -> Option<std::path::PathBuf> {
        let python = interop::python_command();
        match cbor2_oracle(&python, &[]) {
            Ok(_) => Some(python),
            Err(why) => {
                interop::python_missing(test, &why);
                None
            }
        }
    }

    #[test]
    fn the_expected_value_comes_from_cbor2_not_from_wirecall() {
        let Some(python) = python_or_skip("the_expected_value_comes_from_cbor2_not_from_wirecall")
        else {
            return;
        };
        // `encoded` and `decoded_cbor` are the same bytes, so decoding both with wirecall
        // cannot tell a wrong decoding: the signalling NaN must keep its exact bits
        // (keepNanPayloads), `undefined` must be refused, not read as null.
        let r = run(
            r#"{"file":"t/nan.cbor","decodeOptions":{"keepNanPayloads":true},"tests":[
                 {"description":"sNaN","encoded":"f97d1f","decoded_cbor":"f97d1f"}]},
               {"file":"t/simple.cbor","tests":[
                 {"description":"undefined","encoded":"f7","decoded_cbor":"f7"},
                 {"description":"simple(16)","encoded":"f0","decoded_cbor":"f0"},
                 {"description":"tag 32","encoded":"d8206161","decoded_cbor":"d8206161"},
                 {"description":"set","encoded":"d9010282010b","decoded_cbor":"d9010282010b"}]}"#,
            &python,
            false,
        );
        let failed: Vec<&str> = r
            .failures
            .iter()
            .map(|f| f.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(
            failed,
            [
                "t/nan.cbor#0 (sNaN) decode",
                "t/nan.cbor#0 (sNaN) roundtrip",
                "t/simple.cbor#0 (undefined) reject"
            ],
            "{:#?}",
            r.failures
        );
        // simple(16) and tag 32 are refused as Unsupported; the set decodes and round-trips.
        assert_eq!((r.passed, r.skipped, r.deviated), (4, 0, 0), "{r:?}");
    }

    #[test]
    fn without_cbor2_the_checks_are_skipped_visibly_or_fail_when_required() {
        let files = r#"{"file":"t/a.cbor","tests":[
                 {"description":"one","encoded":"01","decoded_cbor":"01"},
                 {"description":"tag 32","encoded":"d8206161","decoded_cbor":"d8206161"}]}"#;
        let nowhere = Path::new("/nonexistent/python-for-wirecall-tests");
        let r = run(files, nowhere, false);
        // The rejection is decided by the runner's own scan; the value needs cbor2.
        assert_eq!((r.passed, r.failed, r.skipped), (1, 0, 1), "{r:?}");
        assert!(
            r.skips[0].contains(interop::PYTHON_MISSING),
            "{:?}",
            r.skips
        );
        assert!(r.notes.iter().any(|n| n.contains(interop::PYTHON_MISSING)));
        let r = run(files, nowhere, true);
        assert_eq!(r.failed, 1, "{r:?}");
        assert!(r.failures[0].contains("WIRECALL_REQUIRE_PYTHON=1"));
    }

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
