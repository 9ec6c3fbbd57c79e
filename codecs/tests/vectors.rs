//! The codecs against the public vector suites in `../shared/vectors`: JSONTestSuite for the
//! dynamic JSON reader (our own parser), msgpack-test-suite for msgpack values, and the
//! cbor-wg vectors for CBOR values. The conformance crate runs the full matrix; these tests
//! pin what this crate's `decode_value`/`encode_value` do.
#![cfg(all(
    feature = "json",
    feature = "msgpack",
    feature = "cbor",
    feature = "bincode",
    feature = "postcard",
    feature = "ron",
    feature = "serpent"
))]

use std::path::{Path, PathBuf};

use wirecall_codecs::*;

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors")
}

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Extensions to RFC 8259 that Python's `json.loads` also accepts and that the dynamic JSON
/// path accepts on purpose (see the codec docs).
const PYTHON_EXTENSIONS: [&str; 3] = [
    "n_number_NaN.json",
    "n_number_infinity.json",
    "n_number_minus_infinity.json",
];

#[test]
fn json_test_suite_y_and_n_cases() {
    let dir = vectors().join("json-test-suite/test_parsing");
    let mut wrong = Vec::new();
    let (mut y, mut n, mut i_accepted, mut i_total) = (0, 0, 0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let got = Json::decode_value(&bytes, &Limits::DEFAULT);
        if name.starts_with("y_") {
            y += 1;
            if let Err(e) = got {
                wrong.push(format!("{name}: rejected: {e}"));
            }
        } else if name.starts_with("n_") {
            n += 1;
            match got {
                Ok(v) if !PYTHON_EXTENSIONS.contains(&name.as_str()) => {
                    wrong.push(format!("{name}: accepted as {v}"))
                }
                Err(e) if PYTHON_EXTENSIONS.contains(&name.as_str()) => {
                    wrong.push(format!("{name}: Python extension rejected: {e}"))
                }
                Err(e) => assert!(
                    matches!(e.kind(), ErrorKind::Decode | ErrorKind::LimitExceeded),
                    "{name}: {e}"
                ),
                Ok(_) => {}
            }
        } else if name.starts_with("i_") {
            i_total += 1;
            i_accepted += usize::from(got.is_ok());
        }
    }
    assert_eq!((y, n), (95, 188), "suite size");
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    eprintln!("json-test-suite: i_ cases accepted {i_accepted} of {i_total}");
}

#[test]
fn json_typed_path_matches_the_suite_verdicts() {
    // The typed path is serde_json: every y_ accepted, every n_ rejected.
    let dir = vectors().join("json-test-suite/test_parsing");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let got = Json::decode::<serde::de::IgnoredAny>(&bytes, &Limits::DEFAULT);
        if name.starts_with("y_") {
            assert!(got.is_ok(), "{name}: {got:?}");
        } else if name.starts_with("n_") {
            assert!(got.is_err(), "{name}");
        }
    }
}

fn json_to_value(j: &serde_json::Value) -> Value {
    match j {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i.into())
            } else if let Some(u) = n.as_u64() {
                Value::Int(u.into())
            } else {
                Value::Float(n.as_f64().unwrap())
            }
        }
        serde_json::Value::String(s) => Value::Str(s.clone()),
        serde_json::Value::Array(a) => Value::List(a.iter().map(json_to_value).collect()),
        serde_json::Value::Object(o) => Value::Map(
            o.iter()
                .map(|(k, v)| (Value::Str(k.clone()), json_to_value(v)))
                .collect(),
        ),
    }
}

/// Numbers compare by value (the suite lists float forms of integers); everything else
/// structurally.
fn num_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(i), Value::Float(f)) | (Value::Float(f), Value::Int(i)) => *i as f64 == *f,
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| num_eq(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.iter().any(|(k2, v2)| k == k2 && num_eq(v, v2)))
        }
        _ => a.same_as(b),
    }
}

#[test]
fn msgpack_test_suite() {
    let text =
        std::fs::read_to_string(vectors().join("msgpack-test-suite/dist/msgpack-test-suite.json"))
            .unwrap();
    let suite: serde_json::Value = serde_json::from_str(&text).unwrap();
    let (mut decoded, mut encoded) = (0, 0);
    for (group, cases) in suite.as_object().unwrap() {
        for case in cases.as_array().unwrap() {
            let case = case.as_object().unwrap();
            let forms: Vec<Vec<u8>> = case["msgpack"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| unhex(h.as_str().unwrap()))
                .collect();
            let expected = if let Some(b) = case.get("bignum") {
                Value::from_bigint(b.as_str().unwrap().parse().unwrap())
            } else if let Some(b) = case.get("binary") {
                Value::Bytes(unhex(b.as_str().unwrap()))
            } else if let Some(t) = case.get("timestamp") {
                // [sec, nsec]: every form is an ext -1 whose payload reads as that instant;
                // each form re-encodes to itself (the payload length picks the form).
                let t = t.as_array().unwrap();
                let want = (t[0].as_i64().unwrap(), t[1].as_u64().unwrap() as u32);
                for f in &forms {
                    let got = MsgPack::decode_value(f, &Limits::DEFAULT)
                        .unwrap_or_else(|e| panic!("{group} {f:02x?}: {e}"));
                    assert_eq!(got.timestamp_parts(), Some(want), "{group} {f:02x?}: {got}");
                    decoded += 1;
                    let mut out = Vec::new();
                    MsgPack::encode_value(&got, &mut out).unwrap();
                    assert_eq!(&out, f, "{group}: {got} re-encoded differently");
                    encoded += 1;
                }
                continue;
            } else if let Some(e) = case.get("ext") {
                let e = e.as_array().unwrap();
                Value::Ext {
                    tag: e[0].as_i64().unwrap() as i8,
                    data: unhex(e[1].as_str().unwrap()),
                }
            } else {
                let (_, v) = case.iter().find(|(k, _)| k.as_str() != "msgpack").unwrap();
                json_to_value(v)
            };
            for f in &forms {
                let got = MsgPack::decode_value(f, &Limits::DEFAULT)
                    .unwrap_or_else(|e| panic!("{group} {f:02x?}: {e}"));
                assert!(
                    num_eq(&got, &expected),
                    "{group} {f:02x?}: {got} != {expected}"
                );
                decoded += 1;
            }
            let mut out = Vec::new();
            MsgPack::encode_value(&expected, &mut out).unwrap();
            assert!(
                forms.contains(&out),
                "{group}: {expected} encoded as {out:02x?}, not an allowed form"
            );
            encoded += 1;
        }
    }
    assert_eq!((decoded, encoded), (233, 85), "suite size");
}

#[test]
fn cbor_wg_vectors() {
    // good.cbor nests ~500 levels; that needs more than a test thread's default stack in
    // debug builds (see Limits: deep limits need deep stacks).
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(cbor_wg_vectors_inner)
        .unwrap()
        .join()
        .unwrap();
}

fn cbor_wg_vectors_inner() {
    let text = std::fs::read_to_string(vectors().join("cbor-wg-test-vectors/derived/vectors.json"))
        .unwrap();
    let suite: serde_json::Value = serde_json::from_str(&text).unwrap();
    // A limit deep enough for good.cbor's ~500-level nesting.
    let limits = Limits::DEFAULT.with_max_depth(1024);
    let (mut equal, mut refused, mut roundtrips, mut bad_rejected, mut known) = (0, 0, 0, 0, 0);
    let mut problems = Vec::new();
    for file in suite["files"].as_array().unwrap() {
        let fname = file["file"].as_str().unwrap();
        let file_fail = file.get("fail").and_then(|f| f.as_bool()).unwrap_or(false);
        for t in file["tests"].as_array().unwrap() {
            let desc = t["description"].as_str().unwrap_or("");
            let enc = unhex(t["encoded"].as_str().unwrap());
            let got = Cbor::decode_value(&enc, &limits);
            if file_fail || t.get("fail").and_then(|f| f.as_bool()) == Some(true) {
                match got {
                    Err(_) => bad_rejected += 1,
                    Ok(v) => problems.push(format!("{fname} {desc}: bad input accepted as {v}")),
                }
                continue;
            }
            let want = Cbor::decode_value(&unhex(t["decoded_cbor"].as_str().unwrap()), &limits);
            match (got, want) {
                (Ok(g), Ok(w)) => {
                    if g.same_as(&w) {
                        equal += 1;
                    } else {
                        problems.push(format!("{fname} {desc}: {g} != {w}"));
                        continue;
                    }
                    let roundtrip = t.get("roundtrip").and_then(|r| r.as_bool()).unwrap_or(true)
                        && t.get("encodeOptions").is_none();
                    if roundtrip {
                        let mut out = Vec::new();
                        Cbor::encode_value(&g, &mut out).unwrap();
                        if out == enc {
                            roundtrips += 1;
                        } else if has_nan(&g) || enc.contains(&0xf7) {
                            // ciborium quiets NaN payloads and reads `undefined` as null.
                            known += 1;
                        } else {
                            problems.push(format!("{fname} {desc}: re-encoded as {out:02x?}"));
                        }
                    }
                }
                // Items Value cannot hold (dates and other tags, simple values): both sides
                // refuse the same way.
                (Err(a), Err(b)) if a.kind() == b.kind() => refused += 1,
                (g, w) => problems.push(format!("{fname} {desc}: {g:?} vs {w:?}")),
            }
        }
    }
    eprintln!(
        "cbor-wg: {equal} equal, {refused} refused on both sides, {roundtrips} byte-identical \
         round trips, {known} known differences (NaN payloads, undefined), {bad_rejected} bad \
         inputs rejected"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(bad_rejected, 47);
    assert!(equal > 1000 && roundtrips > 500, "{equal} {roundtrips}");
}

fn has_nan(v: &Value) -> bool {
    match v {
        Value::Float(f) => f.is_nan(),
        Value::List(x) | Value::Tuple(x) | Value::Set(x) => x.iter().any(has_nan),
        Value::Map(m) => m.iter().any(|(k, v)| has_nan(k) || has_nan(v)),
        _ => false,
    }
}
