//! Runs the shared serpent vectors (PyPI serpent 1.43 on CPython 3.11.7) against the
//! serpent codec: every `dumps` record byte for byte (parsed-value comparison for records
//! marked `unordered`), every `loads` record by value, the `loads_back` of every record,
//! the all-characters escaping vector and the upstream test documents.
#![cfg(feature = "serpent")]

use std::path::{Path, PathBuf};

use num_bigint::BigInt;
use serde_json::Value as Json;
use wirecall_codecs::serpent::{
    self, complex_value, parse_value, value_to_writer, SerpentErrorKind, SerpentOptions,
};
use wirecall_codecs::Value;

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/serpent")
}

fn load_json(name: &str) -> Json {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON in {}: {e}", path.display()))
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn float_of(j: &Json) -> f64 {
    match j["v"].as_str().expect("float v") {
        "nan" => f64::NAN,
        "inf" => f64::INFINITY,
        "-inf" => f64::NEG_INFINITY,
        other => other.parse().expect("float repr"),
    }
}

/// Converts a typed tree to a Value; `Err` with a reason when it cannot be represented.
fn typed(j: &Json) -> Result<Value, String> {
    let t = j["t"].as_str().ok_or("no t")?;
    let items = |j: &Json| -> Result<Vec<Value>, String> {
        j["v"].as_array().ok_or("no v")?.iter().map(typed).collect()
    };
    Ok(match t {
        "none" => Value::Null,
        "bool" => Value::Bool(j["v"].as_bool().ok_or("bool")?),
        "int" => {
            let s = j["v"].as_str().ok_or("int")?;
            match s.parse::<i128>() {
                Ok(i) => Value::Int(i),
                Err(_) => Value::BigInt(s.parse::<BigInt>().map_err(|e| e.to_string())?),
            }
        }
        "float" => Value::Float(float_of(j)),
        "complex" => complex_value(float_of(&j["re"]), float_of(&j["im"])),
        "str" => match j["v"].as_str() {
            Some(s) => Value::Str(s.to_owned()),
            None => {
                return Err(
                    "string with lone surrogates: a Rust String cannot hold it (Python can)".into(),
                )
            }
        },
        "bytes" => Value::Bytes(hex_decode(j["hex"].as_str().ok_or("hex")?)),
        "list" => Value::List(items(j)?),
        "tuple" => Value::Tuple(items(j)?),
        "set" => Value::Set(items(j)?),
        "dict" => {
            let mut entries = Vec::new();
            for pair in j["v"].as_array().ok_or("dict v")? {
                entries.push((typed(&pair[0])?, typed(&pair[1])?));
            }
            Value::Map(entries)
        }
        other => return Err(format!("unknown type {other}")),
    })
}

/// Structural equality: floats by bits (NaN equals NaN, -0.0 differs from 0.0), sets
/// compared as multisets, everything else in order.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => {
            (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits()
        }
        (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Set(x), Value::Set(y)) => {
            let mut used = vec![false; y.len()];
            x.len() == y.len()
                && x.iter().all(|p| {
                    for (i, q) in y.iter().enumerate() {
                        if !used[i] && same(p, q) {
                            used[i] = true;
                            return true;
                        }
                    }
                    false
                })
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k1, v1), (k2, v2))| same(k1, k2) && same(v1, v2))
        }
        _ => a == b,
    }
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: Vec<String>,
    skipped: Vec<String>,
}

#[test]
fn serpent_vectors() {
    let doc = load_json("serpent-vectors.json");
    let records = doc["records"].as_array().expect("records");
    assert_eq!(
        records.len(),
        360,
        "the vector file should hold 360 records"
    );
    let mut t = Tally::default();
    let mut loads_back_checked = 0usize;
    for (i, r) in records.iter().enumerate() {
        let kind = r["kind"].as_str().unwrap_or("");
        let source = r["source"].as_str().unwrap_or("");
        let label = format!("#{i} {kind} {source}");
        let value = match typed(&r["value"]) {
            Ok(v) => v,
            Err(reason) => {
                // The 4 lone-surrogate records: skip the dumps comparison, but check that
                // parsing Python's text refuses the surrogate with a typed, positioned error.
                let text = r["serpent"].as_str().unwrap_or("");
                match parse_value(text.as_bytes(), 200) {
                    Err(e)
                        if e.kind() == SerpentErrorKind::UnsupportedEscape
                            && e.position().is_some() => {}
                    other => t
                        .failed
                        .push(format!("{label}: surrogate parse gave {other:?}")),
                }
                t.skipped.push(format!("{label}: {reason}"));
                continue;
            }
        };
        match kind {
            "dumps" => {
                let opts = SerpentOptions::default()
                    .indent(r["options"]["indent"].as_bool().unwrap_or(false))
                    .bytes_repr(r["options"]["bytes_repr"].as_bool().unwrap_or(false));
                let mut out = Vec::new();
                let res = value_to_writer(&value, &mut out, &opts);
                if let Some(err) = r.get("error") {
                    match res {
                        Err(e) if e.kind() == SerpentErrorKind::Unsupported => t.passed += 1,
                        other => t
                            .failed
                            .push(format!("{label}: Python raised {err}, we gave {other:?}")),
                    }
                    continue;
                }
                let expected = r["serpent"].as_str().expect("serpent");
                if let Err(e) = res {
                    t.failed.push(format!("{label}: encode error {e}"));
                    continue;
                }
                let got = String::from_utf8(out.clone()).expect("utf8 output");
                if r.get("unordered").and_then(Json::as_bool) == Some(true) {
                    // Python's set order is hash order: compare parsed values.
                    let ours = parse_value(&out, 200);
                    let theirs = parse_value(expected.as_bytes(), 200);
                    match (ours, theirs) {
                        (Ok(a), Ok(b)) if same(&a, &b) => t.passed += 1,
                        other => t.failed.push(format!(
                            "{label}: unordered mismatch {got:?} vs {expected:?}: {other:?}"
                        )),
                    }
                } else if got == expected {
                    t.passed += 1;
                } else {
                    t.failed
                        .push(format!("{label}:\n  want {expected:?}\n  got  {got:?}"));
                    continue;
                }
                if let Some(back) = r.get("loads_back") {
                    let want = typed(back).expect("loads_back typed");
                    match parse_value(&out, 200) {
                        Ok(v) if same(&v, &want) => loads_back_checked += 1,
                        other => t
                            .failed
                            .push(format!("{label}: loads_back {want:?} but parsed {other:?}")),
                    }
                }
            }
            "loads" => {
                let text = r["serpent"].as_str().expect("serpent");
                match parse_value(text.as_bytes(), 200) {
                    Ok(v) if same(&v, &value) => t.passed += 1,
                    other => t
                        .failed
                        .push(format!("{label}: want {value:?}, got {other:?}")),
                }
            }
            other => t.failed.push(format!("{label}: unknown kind {other}")),
        }
    }
    eprintln!(
        "serpent vectors: {} passed, {} failed, {} skipped; {} loads_back checked",
        t.passed,
        t.failed.len(),
        t.skipped.len(),
        loads_back_checked
    );
    for s in &t.skipped {
        eprintln!("  skipped {s}");
    }
    assert!(t.failed.is_empty(), "failures:\n{}", t.failed.join("\n"));
    assert_eq!(
        t.skipped.len(),
        4,
        "only the 4 lone-surrogate records may be skipped"
    );
    assert_eq!(t.passed, 356);
    assert!(loads_back_checked >= 200);
}

#[test]
fn serpent_allchars() {
    let doc = load_json("serpent-allchars.json");
    let expected = doc["serpent"].as_str().expect("serpent");
    assert_eq!(
        doc["value"]["codepoints_range"],
        serde_json::json!([0, 65535])
    );
    // The value holds every code point U+0000..U+FFFF, including the surrogates
    // U+D800..U+DFFF, which a Rust String cannot hold. Python writes those as \udxxx
    // escapes; we encode the two surrogate-free halves and splice in those escapes.
    let low: String = (0u32..0xD800).filter_map(char::from_u32).collect();
    let high: String = (0xE000u32..=0xFFFF).filter_map(char::from_u32).collect();
    let mut low_out = Vec::new();
    value_to_writer(&Value::Str(low), &mut low_out, &SerpentOptions::default()).unwrap();
    let mut high_out = Vec::new();
    value_to_writer(
        &Value::Str(high),
        &mut high_out,
        &SerpentOptions::default().header(false),
    )
    .unwrap();
    let low_out = String::from_utf8(low_out).unwrap();
    let high_out = String::from_utf8(high_out).unwrap();
    // Both halves use single quotes (the low half holds both quote kinds, the high none).
    let mut got = low_out.strip_suffix('\'').unwrap().to_owned();
    for cp in 0xD800u32..=0xDFFF {
        got.push_str(&format!("\\u{cp:04x}"));
    }
    got.push_str(high_out.strip_prefix('\'').unwrap());
    assert_eq!(got.len(), expected.len());
    if got != expected {
        let at = got
            .bytes()
            .zip(expected.bytes())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "allchars differs at byte {at}: got {:?} want {:?}",
            &got[at.saturating_sub(20)..(at + 40).min(got.len())],
            &expected[at.saturating_sub(20)..(at + 40).min(expected.len())]
        );
    }
    // Parsing Python's text refuses the lone surrogates with a positioned error.
    let e = parse_value(expected.as_bytes(), 200).unwrap_err();
    assert_eq!(e.kind(), SerpentErrorKind::UnsupportedEscape);
    assert!(e.position().is_some());
    // And the surrogate-free halves round-trip.
    let back = parse_value(low_out.as_bytes(), 200).unwrap();
    assert_eq!(
        back,
        Value::Str((0u32..0xD800).filter_map(char::from_u32).collect())
    );
}

fn get<'a>(v: &'a Value, key: &str) -> &'a Value {
    match v {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no key {key}")),
        other => panic!("not a map: {other:?}"),
    }
}

#[test]
fn upstream_documents() {
    for name in [
        "upstream-data/testserpent.utf8.bin",
        "upstream-data/testserpent.java-dotnet.utf8.bin",
    ] {
        let data = std::fs::read(vectors_dir().join(name)).unwrap();
        let v = parse_value(&data, 200).unwrap_or_else(|e| panic!("{name}: {e}"));
        let numbers = match get(&v, "numbers") {
            Value::List(items) => items.clone(),
            other => panic!("numbers: {other:?}"),
        };
        // Upstream checks obj["numbers"][3] == -3+8j.
        assert_eq!(
            serpent::as_complex(&numbers[3]),
            Some((-3.0, 8.0)),
            "{name}"
        );
        let big = if name.contains("java") {
            12345678901234567890123456
        } else {
            123456789012345678901234567890
        };
        assert_eq!(numbers[0], Value::Int(big), "{name}");
        assert_eq!(get(&v, "unicode"), &Value::Str("€".into()));
        let bytes = serpent::tobytes(get(&v, "bytes")).expect("base64 dict");
        assert_eq!(bytes, vec![0u8; 100]);
        match get(&v, "set") {
            Value::Set(items) => assert_eq!(items.len(), 9),
            other => panic!("set: {other:?}"),
        }
    }
}

#[test]
fn every_truncation_of_every_vector_fails_cleanly() {
    // Cutting a valid document anywhere gives either a value (e.g. `12` from `123`) or a
    // typed error with a position; never a panic.
    let doc = load_json("serpent-vectors.json");
    let mut errors = 0usize;
    let mut parses = 0usize;
    for r in doc["records"].as_array().expect("records") {
        let Some(text) = r["serpent"].as_str() else {
            continue;
        };
        for cut in 0..text.len() {
            let prefix = &text.as_bytes()[..cut];
            parses += 1;
            match parse_value(prefix, 200) {
                Ok(_) => {}
                Err(e) => {
                    errors += 1;
                    let p = e.position().expect("decode errors carry a position");
                    assert!(p.offset <= cut, "{e} beyond the input of {cut} bytes");
                }
            }
        }
    }
    assert!(
        parses > 10_000 && errors > parses / 2,
        "{parses} parses, {errors} errors"
    );
}
