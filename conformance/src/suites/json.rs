//! JSON: nst/JSONTestSuite (parser verdicts) and nativejson-benchmark (round trips and the
//! json.org JSON_checker files), run through wirecall's json codec.

use std::path::Path;

use wirecall_codecs::{CodecId, Limits, Value};

use super::vector_files;
use crate::{codec, notation, Deviations, SuiteReport};

/// The checked-in `i_` verdicts (`accept <file>` / `reject <file>` lines).
const I_EXPECTATIONS: &str = include_str!("../../expectations/json-test-suite-i.txt");

/// The checked-in `test_transform/` snapshots (`<file> <notation>` or `<file> reject`).
const TRANSFORM_SNAPSHOTS: &str = include_str!("../../expectations/json-test-suite-transform.txt");

fn expectation_lines(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .collect()
}

/// Pins what the json codec makes of the 22 `test_transform/` files (big numbers, duplicate
/// and NFC/NFD keys, invalid code points, escaped NUL): each must decode to the recorded
/// value, or be rejected where the snapshot says `reject`.
fn run_transform(dir: &Path, report: &mut SuiteReport) {
    let Some(files) = vector_files(report, dir, "json") else {
        return;
    };
    let snapshots = expectation_lines(TRANSFORM_SNAPSHOTS);
    let mut seen = Vec::new();
    for (name, bytes) in files {
        let got = match codec::decode(CodecId::JSON, &bytes) {
            Ok(v) => notation::print(&v),
            Err(_) => "reject".to_owned(),
        };
        match snapshots.iter().find(|(file, _)| *file == name) {
            Some((_, want)) => report.check(*want == got, || {
                format!(
                    "test_transform/{name}: expectations/json-test-suite-transform.txt says {want}, the json codec \
                     now gives {got}; if the change is intended, update the snapshot"
                )
            }),
            None => report.fail(format!(
                "test_transform/{name}: no snapshot; add the line `{name} {got}` to expectations/json-test-suite-transform.txt"
            )),
        }
        seen.push(name);
    }
    for (file, _) in &snapshots {
        if !seen.iter().any(|n| n == file) {
            report.fail(format!(
                "expectations/json-test-suite-transform.txt: {file} is not in the suite any more"
            ));
        }
    }
}

/// True when `bytes` is `[NaN]`, `[Infinity]` or `[-Infinity]` and `value` is that float:
/// the only non-RFC input the json codec accepts on purpose.
fn is_python_nan_token(bytes: &[u8], value: &Value) -> bool {
    let want = match bytes.trim_ascii() {
        b"[NaN]" => f64::NAN,
        b"[Infinity]" => f64::INFINITY,
        b"[-Infinity]" => f64::NEG_INFINITY,
        _ => return false,
    };
    matches!(value, Value::List(items) if matches!(items.as_slice(), [Value::Float(f)] if notation::same(&Value::Float(*f), &Value::Float(want))))
}

/// Runs nst/JSONTestSuite: every `y_` file must decode, every `n_` file must be rejected,
/// every `i_` file must behave as recorded in `expectations/json-test-suite-i.txt`, and every
/// `test_transform/` file must decode as pinned in `expectations/json-test-suite-transform.txt`.
pub fn run_json_test_suite(vectors_dir: &Path) -> SuiteReport {
    let mut report = SuiteReport::new("json-test-suite");
    let dir = vectors_dir.join("json-test-suite/test_parsing");
    let Some(files) = vector_files(&mut report, &dir, "json") else {
        return report;
    };
    let expectations = expectation_lines(I_EXPECTATIONS);
    let mut seen_i = Vec::new();
    for (name, bytes) in files {
        // The suite judges RFC 8259 conformance, so it reads with the strict entry point; the
        // codec's default dynamic path additionally reads Python's NaN/Infinity tokens, which
        // is checked separately below.
        let result = wirecall_codecs::json_decode_value_strict(&bytes, &Limits::DEFAULT);
        let accepted = result.is_ok();
        if name.starts_with("y_") {
            report.check(accepted, || {
                format!(
                    "{name}: must be accepted, was rejected: {}",
                    result.err().map(|e| e.to_string()).unwrap_or_default()
                )
            });
        } else if name.starts_with("n_") {
            report.check(!accepted, || {
                format!("{name}: must be rejected, was accepted")
            });
            // The Python extension: the default dynamic path must read exactly these three
            // files as the float Python's json.loads gives.
            if matches!(
                bytes.trim_ascii(),
                b"[NaN]" | b"[Infinity]" | b"[-Infinity]"
            ) {
                let lenient = codec::decode(CodecId::JSON, &bytes);
                report.check(
                    matches!(&lenient, Ok(v) if is_python_nan_token(&bytes, v)),
                    || format!("{name}: the default json path must read Python's token, got {lenient:?}"),
                );
            }
        } else if name.starts_with("i_") {
            let got = if accepted { "accept" } else { "reject" };
            seen_i.push(name.clone());
            match expectations.iter().find(|(_, file)| *file == name) {
                Some((want, _)) => report.check(*want == got, || {
                    format!(
                        "{name}: expectations/json-test-suite-i.txt says {want}, the json codec now does {got}; \
                         if the change is intended, update the list"
                    )
                }),
                None => report.fail(format!(
                    "{name}: not in expectations/json-test-suite-i.txt; add the line `{got} {name}`"
                )),
            }
        } else {
            report.skip(format!(
                "{name}: no y_/n_/i_ prefix, so no verdict to check"
            ));
        }
    }
    for (_, file) in &expectations {
        if !seen_i.iter().any(|n| n == file) {
            report.fail(format!(
                "expectations/json-test-suite-i.txt: {file} is not in the suite any more"
            ));
        }
    }
    run_transform(
        &vectors_dir.join("json-test-suite/test_transform"),
        &mut report,
    );
    report
}

/// Runs nativejson-benchmark: every `roundtrip*.json` must decode and re-encode byte for byte;
/// every JSON_checker `pass*` file must decode and every `fail*` file must be rejected, except
/// the two `_EXCLUDE` files, which RFC 8259 makes valid (a top-level scalar; 20 levels of
/// nesting) and which must therefore be accepted. A round trip that differs is a failure
/// unless `expectations/deviations.txt` lists it with exactly that output.
pub fn run_nativejson(vectors_dir: &Path) -> SuiteReport {
    let mut report = SuiteReport::new("json-nativejson-benchmark");
    let base = vectors_dir.join("json-nativejson-benchmark/data");
    let mut deviations = Deviations::for_suite(&report.suite);
    if let Some(files) = vector_files(&mut report, &base.join("roundtrip"), "json") {
        for (name, bytes) in files {
            let expected = bytes.trim_ascii_end();
            let out = codec::decode(CodecId::JSON, expected)
                .and_then(|v| codec::encode(CodecId::JSON, &v));
            let outcome = match out {
                Ok(got) if got == expected => Ok(()),
                Ok(got) => Err((
                    String::from_utf8_lossy(&got).into_owned(),
                    format!(
                        "roundtrip/{name}: expected {} got {}",
                        String::from_utf8_lossy(expected),
                        String::from_utf8_lossy(&got)
                    ),
                )),
                Err(e) => Err((format!("error: {e}"), format!("roundtrip/{name}: {e}"))),
            };
            report.check_case(
                &mut deviations,
                &format!("roundtrip/{name} roundtrip"),
                outcome,
            );
        }
    }
    if let Some(files) = vector_files(&mut report, &base.join("jsonchecker"), "json") {
        for (name, bytes) in files {
            let result = codec::decode(CodecId::JSON, &bytes);
            let must_accept = name.starts_with("pass") || name.contains("_EXCLUDE");
            if must_accept {
                report.check(result.is_ok(), || {
                    format!(
                        "jsonchecker/{name}: must be accepted: {}",
                        result.err().map(|e| e.to_string()).unwrap_or_default()
                    )
                });
            } else if name.starts_with("fail") {
                report.check(result.is_err(), || {
                    format!("jsonchecker/{name}: must be rejected, was accepted")
                });
            } else {
                report.skip(format!("jsonchecker/{name}: neither pass nor fail"));
            }
        }
    }
    report.finish_deviations(deviations);
    report
}
