//! Serpent: the reference-implementation vectors (`serpent-vectors.json`), the all-characters
//! escaping vector and the upstream documents, through wirecall's serpent codec.

use std::path::Path;

use wirecall_codecs::Value;

use super::{json_list, read_bytes, read_json};
use crate::json::{self, Json};
use crate::{codec, notation, SuiteReport};

/// Converts a typed value tree of the serpent vectors into a `Value`; `Err` is the reason the
/// record cannot be represented (a skip), or a malformed record.
fn typed(t: &Json) -> Result<Value, String> {
    let kind = t
        .get("t")
        .and_then(Json::as_str)
        .ok_or("typed node without `t`")?;
    let v = t.get("v");
    let items = || -> Result<Vec<Value>, String> {
        v.and_then(Json::as_array)
            .ok_or(format!("{kind} without `v` list"))?
            .iter()
            .map(typed)
            .collect()
    };
    Ok(match kind {
        "none" => Value::Null,
        "bool" => Value::Bool(v.and_then(Json::as_bool).ok_or("bool without `v`")?),
        "int" => {
            let s = v.and_then(Json::as_str).ok_or("int without `v`")?;
            let mut quoted = String::new();
            json::write_string(&mut quoted, s);
            notation::parse(&format!("{{\"$int\":{quoted}}}")).map_err(|e| e.to_string())?
        }
        "float" => {
            let s = v.and_then(Json::as_str).ok_or("float without `v`")?;
            Value::Float(match s {
                "nan" => f64::NAN,
                "inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                _ => s.parse().map_err(|e| format!("float {s:?}: {e}"))?,
            })
        }
        "str" => match v.and_then(Json::as_str) {
            Some(s) => Value::Str(s.to_owned()),
            None if t.get("v_escaped").is_some() => {
                return Err("SKIP: the string holds lone surrogates, which a Rust String (and so Value::Str) cannot hold".into())
            }
            None => return Err("str without `v`".into()),
        },
        "bytes" => {
            let h = t.get("hex").and_then(Json::as_str).ok_or("bytes without `hex`")?;
            Value::Bytes(hex::decode(h).map_err(|e| e.to_string())?)
        }
        "list" => Value::List(items()?),
        "tuple" => Value::Tuple(items()?),
        "set" => Value::Set(items()?),
        "dict" => {
            let pairs = v.and_then(Json::as_array).ok_or("dict without `v`")?;
            let mut out = Vec::with_capacity(pairs.len());
            for pair in pairs {
                match pair.as_array() {
                    Some([k, val]) => out.push((typed(k)?, typed(val)?)),
                    _ => return Err("dict entry is not a [key, value] pair".into()),
                }
            }
            Value::Map(out)
        }
        // Value has no complex variant; the serpent module represents `(re+imj)` as the map
        // {'__class__':'complex','real':re,'imag':im} and writes that map back as a complex.
        "complex" => {
            let part = |key: &str| -> Result<f64, String> {
                match typed(t.get(key).ok_or(format!("complex without `{key}`"))?)? {
                    Value::Float(f) => Ok(f),
                    other => Err(format!("complex part {key} is not a float: {other:?}")),
                }
            };
            codec::serpent_complex(part("re")?, part("im")?)
        }
        other => return Err(format!("unknown typed node {other:?}")),
    })
}

/// Equality where set elements may come in any order (Python writes compact sets in hash
/// order), recursively.
fn same_unordered_sets(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Set(x), Value::Set(y)) => {
            if x.len() != y.len() {
                return false;
            }
            let mut used = vec![false; y.len()];
            x.iter().all(|e| {
                let found = y.iter().enumerate().find(|(i, f)| {
                    !used.get(*i).copied().unwrap_or(true) && same_unordered_sets(e, f)
                });
                match found {
                    Some((i, _)) => {
                        if let Some(u) = used.get_mut(i) {
                            *u = true;
                        }
                        true
                    }
                    None => false,
                }
            })
        }
        (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_unordered_sets(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter().zip(y).all(|((k1, v1), (k2, v2))| {
                    same_unordered_sets(k1, k2) && same_unordered_sets(v1, v2)
                })
        }
        _ => notation::same(a, b),
    }
}

/// For `unordered` records (Python writes set elements in hash order): our text `got` must
/// say what the reference text says with set elements in any order. Both must parse, to the
/// same value up to set order, and hold the same characters (so number and string spellings,
/// separators and the header are compared too; only their order may differ).
fn same_text_up_to_set_order(value: &Value, got: &str, reference: &str) -> Result<(), String> {
    let ours = codec::serpent_loads(got.as_bytes())
        .map_err(|e| format!("our text does not parse: {e}"))?;
    let theirs = codec::serpent_loads(reference.as_bytes())
        .map_err(|e| format!("the reference text does not parse: {e}"))?;
    if !same_unordered_sets(&theirs, &ours) {
        return Err(format!(
            "ours parses to {}, the reference to {}",
            notation::print(&ours),
            notation::print(&theirs)
        ));
    }
    if !same_unordered_sets(value, &theirs) {
        return Err(format!(
            "the reference parses to {}, the record's value is {}",
            notation::print(&theirs),
            notation::print(value)
        ));
    }
    let sorted = |t: &str| {
        let mut c: Vec<char> = t.chars().collect();
        c.sort_unstable();
        c
    };
    if sorted(got) != sorted(reference) {
        return Err(
            "same values, but the text differs in more than the order of set elements".into(),
        );
    }
    Ok(())
}

/// Runs the serpent vectors: `dumps` records byte-exact (or, for `unordered` records, equal
/// after parsing), `loads` records and `loads_back` values as parser checks, `error` records
/// must fail to encode; then the all-characters vector and the upstream documents.
pub fn run_serpent(vectors_dir: &Path) -> SuiteReport {
    let mut report = SuiteReport::new("serpent");
    let base = vectors_dir.join("serpent");
    let path = base.join("serpent-vectors.json");
    let doc = match read_json(&path) {
        Ok(d) => d,
        Err(e) => {
            report.fail(e);
            return report;
        }
    };
    let records = match json_list(&doc, "records", &path) {
        Ok(r) => r,
        Err(e) => {
            report.fail(e);
            return report;
        }
    };
    for (n, rec) in records.iter().enumerate() {
        check_record(&mut report, n, rec);
    }
    run_allchars(&base, &mut report);
    run_upstream_documents(&base, &mut report);
    report
}

/// Checks one record of `serpent-vectors.json`.
fn check_record(report: &mut SuiteReport, n: usize, rec: &Json) {
    let kind = rec.get("kind").and_then(Json::as_str).unwrap_or("?");
    let source = rec.get("source").and_then(Json::as_str).unwrap_or("?");
    let id = format!("record {n} ({kind}, {source})");
    let Some(tree) = rec.get("value") else {
        report.fail(format!("{id}: no `value`"));
        return;
    };
    let value = match typed(tree) {
        Ok(v) => v,
        Err(reason) => {
            match reason.strip_prefix("SKIP: ") {
                Some(r) => report.skip(format!("{id}: {r}")),
                None => report.fail(format!("{id}: malformed record: {reason}")),
            }
            return;
        }
    };
    let opts = rec.get("options");
    let indent = opts
        .and_then(|o| o.get("indent"))
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let bytes_repr = opts
        .and_then(|o| o.get("bytes_repr"))
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let text = rec.get("serpent").and_then(Json::as_str);
    match kind {
        "dumps" => {
            let got = codec::serpent_dumps(&value, indent, bytes_repr);
            if rec.get("error").is_some() {
                report.check(got.is_err(), || {
                    format!(
                        "{id}: the reference raises; wirecall produced {:?}",
                        got.unwrap_or_default()
                    )
                });
                return;
            }
            let Some(text) = text else {
                report.fail(format!("{id}: no `serpent` text"));
                return;
            };
            let unordered = rec
                .get("unordered")
                .and_then(Json::as_bool)
                .unwrap_or(false);
            match got {
                Ok(got) if !unordered => report.check(got == text, || {
                    format!("{id}: expected {text:?}\n  got {got:?}")
                }),
                Ok(got) => {
                    let same = same_text_up_to_set_order(&value, &got, text);
                    report.check(same.is_ok(), || {
                        format!(
                            "{id}: unordered record: expected {text:?} (sets in any order)\n  got {got:?}: {}",
                            same.err().unwrap_or_default()
                        )
                    })
                }
                Err(e) => report.fail(format!("{id}: encode failed: {e}")),
            }
            if let Some(back_tree) = rec.get("loads_back") {
                match typed(back_tree) {
                    Ok(back) => match codec::serpent_loads(text.as_bytes()) {
                        Ok(parsed) => report.check(same_unordered_sets(&back, &parsed), || {
                            format!(
                                "{id}: loads of {text:?} gave {}, the reference gives {}",
                                notation::print(&parsed),
                                notation::print(&back)
                            )
                        }),
                        Err(e) => report.fail(format!("{id}: loads of {text:?} failed: {e}")),
                    },
                    Err(reason) => match reason.strip_prefix("SKIP: ") {
                        Some(r) => report.skip(format!("{id} loads_back: {r}")),
                        None => report.fail(format!("{id}: malformed loads_back: {reason}")),
                    },
                }
            }
        }
        "loads" => {
            let Some(text) = text else {
                report.fail(format!("{id}: no `serpent` text"));
                return;
            };
            match codec::serpent_loads(text.as_bytes()) {
                Ok(parsed) => report.check(same_unordered_sets(&value, &parsed), || {
                    format!(
                        "{id}: {text:?} parsed to {}, expected {}",
                        notation::print(&parsed),
                        notation::print(&value)
                    )
                }),
                Err(e) => report.fail(format!("{id}: {text:?} does not parse: {e}")),
            }
        }
        other => report.fail(format!("{id}: unknown kind {other:?}")),
    }
}

/// The all-characters vector holds U+0000..=U+FFFF including the 2,048 surrogates, which a
/// Rust string cannot hold. The check uses every other code point: the expected text is the
/// reference text with the surrogates' `\udXXX` escapes removed (they form one contiguous run
/// of 2,048 six-character escapes, which is verified before removal).
fn run_allchars(base: &Path, report: &mut SuiteReport) {
    let path = base.join("serpent-allchars.json");
    let doc = match read_json(&path) {
        Ok(d) => d,
        Err(e) => {
            report.fail(e);
            return;
        }
    };
    let Some(text) = doc.get("serpent").and_then(Json::as_str) else {
        report.fail("serpent-allchars.json: no `serpent` text".to_string());
        return;
    };
    let surrogates: String = (0xD800u32..=0xDFFF)
        .map(|c| format!("\\u{c:04x}"))
        .collect();
    let Some(at) = text.find(&surrogates) else {
        report.fail("serpent-allchars.json: the surrogate escapes \\ud800..\\udfff are not one contiguous run".to_string());
        return;
    };
    let expected = format!("{}{}", &text[..at], &text[at + surrogates.len()..]);
    let value: String = (0u32..=0xFFFF).filter_map(char::from_u32).collect();
    match codec::serpent_dumps(&Value::Str(value), false, false) {
        Ok(got) => report.check(got == expected, || {
            let diff = got.chars().zip(expected.chars()).position(|(a, b)| a != b).unwrap_or(got.len().min(expected.len()));
            format!(
                "serpent-allchars (without surrogates): first difference at char {diff}: got {:?} expected {:?}",
                got.chars().skip(diff.saturating_sub(10)).take(40).collect::<String>(),
                expected.chars().skip(diff.saturating_sub(10)).take(40).collect::<String>()
            )
        }),
        Err(e) => report.fail(format!("serpent-allchars: encode failed: {e}")),
    }
    report.skip("serpent-allchars: the 2,048 lone surrogates U+D800..U+DFFF are left out: a Rust String cannot hold them");
}

/// Parses upstream's two test documents (comments, nested containers, a big int, a complex
/// number, sets, tuples) and checks a few members, as upstream's own test does.
fn run_upstream_documents(base: &Path, report: &mut SuiteReport) {
    for name in ["testserpent.utf8.bin", "testserpent.java-dotnet.utf8.bin"] {
        let path = base.join("upstream-data").join(name);
        match read_bytes(&path) {
            Ok(bytes) => check_upstream_document(report, name, &bytes),
            Err(e) => report.fail(e),
        }
    }
}

/// One upstream document must parse, and its members must be what upstream's test checks.
fn check_upstream_document(report: &mut SuiteReport, name: &str, bytes: &[u8]) {
    match codec::serpent_loads(bytes) {
        Ok(v) => {
            let member = |key: &str| match &v {
                Value::Map(m) => m
                    .iter()
                    .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
                    .map(|(_, x)| x.clone()),
                _ => None,
            };
            // Upstream's own test checks numbers[3] == -3+8j.
            let complex = codec::serpent_complex(-3.0, 8.0);
            let ok = member("str") == Some(Value::Str("hello".into()))
                && member("unicode") == Some(Value::Str("€".into()))
                && matches!(member("numbers"), Some(Value::List(ref l)) if l.get(3) == Some(&complex))
                && matches!(member("set"), Some(Value::Set(ref s)) if s.len() == 9);
            report.check(ok, || {
                format!(
                    "upstream-data/{name}: parsed, but members differ: {}",
                    notation::print(&v)
                )
            });
        }
        Err(e) => report.fail(format!("upstream-data/{name}: does not parse: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(text: &str) -> Json {
        crate::json::parse(text).unwrap()
    }

    #[test]
    fn an_unordered_record_is_compared_with_the_reference_text() {
        let rec = |reference: &str| {
            let mut quoted = String::new();
            json::write_string(&mut quoted, reference);
            record(&format!(
                r#"{{"kind":"dumps","source":"test","unordered":true,
                    "value":{{"t":"set","v":[{{"t":"int","v":"1"}},{{"t":"str","v":"a"}}]}},
                    "serpent":{quoted}}}"#
            ))
        };
        let header = "# serpent utf-8 python3.2\n";
        // The same set in the other order passes.
        let mut r = SuiteReport::new("serpent");
        check_record(&mut r, 0, &rec(&format!("{header}{{'a',1}}")));
        check_record(&mut r, 1, &rec(&format!("{header}{{1,'a'}}")));
        assert_eq!((r.passed, r.failed), (2, 0), "{:?}", r.failures);
        // A reference that says something else fails, though our own text parses back to the
        // record's value.
        check_record(&mut r, 2, &rec(&format!("{header}{{1,'b'}}")));
        check_record(&mut r, 3, &rec(&format!("{header}{{1, 'a'}}")));
        assert_eq!((r.passed, r.failed), (2, 2), "{:?}", r.failures);
    }

    #[test]
    fn a_document_that_does_not_parse_fails_whatever_the_error_says() {
        let mut r = SuiteReport::new("serpent");
        check_upstream_document(&mut r, "doc", b"{'numbers': [1, 2, (-3+8j");
        check_upstream_document(&mut r, "doc", b"{'x': complex}");
        assert_eq!((r.failed, r.skipped), (2, 0), "{:?}", r.skips);
    }
}
