//! The strict (RFC 8259) and the default (Python-compatible) JSON readers.

use wirecall_codecs::{json_decode_value_strict, Codec, Json, Limits, Value};

#[test]
fn strict_refuses_python_tokens_default_reads_them() {
    for (text, want) in [
        ("NaN", f64::NAN),
        ("Infinity", f64::INFINITY),
        ("-Infinity", f64::NEG_INFINITY),
    ] {
        let err = json_decode_value_strict(text.as_bytes(), &Limits::DEFAULT)
            .expect_err("strict JSON has no NaN/Infinity tokens");
        assert!(!err.to_string().is_empty());
        let v = Json::decode_value(text.as_bytes(), &Limits::DEFAULT).expect("Python token");
        assert!(Value::Float(want).same_as(&v), "{text} -> {v:?}");
    }
}

#[test]
fn strict_reads_standard_json_like_the_default() {
    let text = br#"{"a": [1, -2.5e3, "x\u00e9", true, null], "b": 123456789012345678901234567890}"#;
    let strict = json_decode_value_strict(text, &Limits::DEFAULT).expect("valid JSON");
    let default = Json::decode_value(text, &Limits::DEFAULT).expect("valid JSON");
    assert!(strict.same_as(&default));
}
