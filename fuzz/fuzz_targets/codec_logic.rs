//! The codec fuzz targets' logic (one target per codec: `codec_json`, `codec_json_strict`,
//! `codec_msgpack`, `codec_cbor`, `codec_ron`, `codec_serpent`, `codec_postcard`,
//! `codec_bincode`), shared with `codecs/tests/fuzz_regressions.rs`, which runs it on
//! stable over the regression inputs and random bytes.
//!
//! Invariants checked on any input, beyond "no panic":
//! - dynamic path (self-describing codecs): a decoded `Value` encodes again, the encoding
//!   decodes to the same value (`Value::same_as`) and re-encodes to the same bytes (a fixed
//!   point after one round);
//! - typed path (a few structs and enums, and `Value` through serde): a decoded value
//!   re-encodes, decodes again and re-encodes to the same bytes;
//! - limits: a decode that succeeds under a small depth limit succeeds with the same
//!   value under the default one; an input one byte over `max_input` is refused with
//!   `LimitExceeded` before decoding;
//! - json: what the strict reader accepts the default reader accepts, with the same value;
//! - serpent: what decoded is also written without the header and in indent mode, and
//!   both parse back.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wirecall_codecs::{Codec, ErrorKind, Limits, Value};

/// A typed target with most of the serde data model.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct Record {
    id: u64,
    name: String,
    score: f64,
    tags: Vec<String>,
    counts: BTreeMap<String, i32>,
    data: Vec<u8>,
    shape: Shape,
    next: Option<Box<Record>>,
    pair: (i16, char),
    flag: Option<bool>,
}

/// Every kind of enum variant.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) enum Shape {
    Unit,
    Newtype(i64),
    Tuple(u8, String),
    Struct { x: f64, y: Option<u32> },
}

/// A small tuple struct and a unit struct in a sequence.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct Pair(i128, Vec<Shape>);

/// Decodes `data` as `T`, and round-trips what decoded.
fn typed<C: Codec, T: Serialize + for<'de> Deserialize<'de>>(data: &[u8], limits: &Limits) {
    let Ok(t1) = C::decode::<T>(data, limits) else {
        return;
    };
    let b1 = match C::encode(&t1) {
        Ok(b) => b,
        // JSON cannot carry a non-finite float through serde (documented as lossy); other
        // typed values always encode.
        Err(e) => panic!("{}: a decoded value does not encode: {e}", C::NAME),
    };
    let deeper = limits.with_max_depth(limits.max_depth + 4);
    let t2 = match C::decode::<T>(&b1, &deeper) {
        Ok(t) => t,
        Err(e) => panic!(
            "{}: re-encoded value does not decode: {e}\n  input {:02x?}\n  encoded {:02x?}",
            C::NAME,
            data,
            b1
        ),
    };
    let b2 = C::encode(&t2).expect("second encode");
    assert_eq!(b1, b2, "{}: typed encoding is not a fixed point", C::NAME);
}

/// What a decoded value reads back as after one round trip through codec `C`: itself,
/// except where the codec's documented mapping changes it (serpent writes bytes as
/// Python's serpent does, as a base64 dict, which reads back as that dict).
fn after_roundtrip<C: Codec>(v: &Value) -> Value {
    if C::ID != wirecall_codecs::CodecId::SERPENT {
        return v.clone();
    }
    match v {
        Value::Bytes(b) => {
            use base64::Engine as _;
            Value::Map(vec![
                (
                    Value::Str("data".into()),
                    Value::Str(base64::engine::general_purpose::STANDARD.encode(b)),
                ),
                (Value::Str("encoding".into()), Value::Str("base64".into())),
            ])
        }
        Value::List(x) => Value::List(x.iter().map(after_roundtrip::<C>).collect()),
        Value::Tuple(x) => Value::Tuple(x.iter().map(after_roundtrip::<C>).collect()),
        Value::Set(x) => Value::Set(x.iter().map(after_roundtrip::<C>).collect()),
        Value::Map(m) => {
            if let Some(c) = complex_after_roundtrip(m) {
                return c;
            }
            Value::Map(
                m.iter()
                    .map(|(k, v)| (after_roundtrip::<C>(k), after_roundtrip::<C>(v)))
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

/// A complex number (`{"__class__": "complex", "real": r, "imag": i}`) travels as the text
/// `(r+ij)` / `(r-|i|j)`, which Python evaluates as `r + 0.0 ± |i|j` (float plus or minus
/// an imaginary literal), and so does wirecall's reader: an imaginary part of -0.0 comes
/// back as 0.0, and a real part of -0.0 stays -0.0 only when the sign written is `-`.
/// Python's serpent 1.43 reads `(-0.0-0.0j)` as `(-0+0j)` and `(-0.0+0.0j)` as `0j` alike.
fn complex_after_roundtrip(m: &[(Value, Value)]) -> Option<Value> {
    let get = |key: &str| {
        m.iter()
            .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
            .map(|(_, v)| v)
    };
    if m.len() != 3 || !matches!(get("__class__"), Some(Value::Str(s)) if s == "complex") {
        return None;
    }
    let (Some(Value::Float(r)), Some(Value::Float(i))) = (get("real"), get("imag")) else {
        return None;
    };
    // The sign written before the imaginary part, as Rust's and Python's float text has it.
    let minus = i.is_sign_negative() && !i.is_nan();
    let real = if minus { r - 0.0 } else { r + 0.0 };
    let imag = if minus { 0.0 - i.abs() } else { 0.0 + i };
    Some(Value::Map(
        m.iter()
            .map(|(k, v)| {
                let v = match k {
                    Value::Str(s) if s == "real" => Value::Float(real),
                    Value::Str(s) if s == "imag" => Value::Float(imag),
                    _ => v.clone(),
                };
                (k.clone(), v)
            })
            .collect(),
    ))
}

/// Whether `v` holds bytes where Python needs a hashable value (a set member or a map
/// key, directly or inside tuples there): serpent writes bytes as a dict, so the text it
/// writes for such a value cannot be read back, by Python's serpent either (its
/// `serpent.loads(serpent.dumps({b"k", 2}))` raises "unhashable type: 'dict'").
fn bytes_where_hashed(v: &Value, hashed: bool) -> bool {
    match v {
        Value::Bytes(_) => hashed,
        Value::Tuple(x) => x.iter().any(|e| bytes_where_hashed(e, hashed)),
        Value::List(x) => x.iter().any(|e| bytes_where_hashed(e, false)),
        Value::Set(x) => x.iter().any(|e| bytes_where_hashed(e, true)),
        Value::Map(m) => m
            .iter()
            .any(|(k, v)| bytes_where_hashed(k, true) || bytes_where_hashed(v, false)),
        _ => false,
    }
}

/// Round-trips a decoded `Value` through the same codec.
fn dynamic_roundtrip<C: Codec>(v1: &Value, limits: &Limits) {
    let mut b1 = Vec::new();
    if let Err(e) = C::encode_value(v1, &mut b1) {
        if C::ID == wirecall_codecs::CodecId::SERPENT
            && e.kind() == wirecall_codecs::ErrorKind::Unsupported
            && e.to_string().contains("cannot be a dict key or set member")
        {
            // Python's serpent reads `{1, None}` and `{None: 1}` but refuses to write them
            // ("not of a primitive hashable type"); wirecall's writer refuses the same keys.
            return;
        }
        panic!(
            "{}: a decoded value does not encode: {e}\n  value {v1:?}",
            C::NAME
        );
    }
    if C::ID == wirecall_codecs::CodecId::SERPENT && bytes_where_hashed(v1, false) {
        // Written as Python writes it, and unreadable as in Python (see above).
        return;
    }
    let deeper = limits.with_max_depth(limits.max_depth + 4);
    let v2 = match C::decode_value(&b1, &deeper) {
        Ok(v) => v,
        Err(e) => panic!(
            "{}: encoded value does not decode: {e}\n  value {v1:?}\n  encoded {:?}",
            C::NAME,
            String::from_utf8_lossy(&b1)
        ),
    };
    assert!(
        v2.same_as(&after_roundtrip::<C>(v1)),
        "{}: value changed in a round trip\n  before {v1:?}\n  after  {v2:?}",
        C::NAME
    );
    let mut b2 = Vec::new();
    C::encode_value(&v2, &mut b2).expect("second encode");
    if C::ID == wirecall_codecs::CodecId::SERPENT {
        // Bytes are written as Python writes them (a dict with spaces) and the dict they
        // read back as is written compactly; a complex number's signed zeros settle as
        // Python's arithmetic settles them (`complex_after_roundtrip`): a fixed point from
        // the third round.
        let v3 = C::decode_value(&b2, &deeper).expect("second decode");
        assert!(
            v3.same_as(&after_roundtrip::<C>(&v2)),
            "{}: second round changed the value\n  before {v2:?}\n  after  {v3:?}",
            C::NAME
        );
        let mut b3 = Vec::new();
        C::encode_value(&v3, &mut b3).expect("third encode");
        let v4 = C::decode_value(&b3, &deeper).expect("third decode");
        assert!(
            v4.same_as(&v3),
            "{}: third round changed the value\n  before {v3:?}\n  after  {v4:?}",
            C::NAME
        );
        let mut b4 = Vec::new();
        C::encode_value(&v4, &mut b4).expect("fourth encode");
        assert_eq!(b3, b4, "{}: dynamic encoding is not a fixed point", C::NAME);
    } else {
        assert_eq!(b1, b2, "{}: dynamic encoding is not a fixed point", C::NAME);
    }
}

/// The checks on the limits, for any decode function.
fn limit_checks<F: Fn(&[u8], &Limits) -> Option<Value>>(data: &[u8], decode: F) {
    let full = Limits::DEFAULT;
    let v = decode(data, &full);
    let small = full.with_max_depth(4);
    if let Some(s) = decode(data, &small) {
        let v = v
            .as_ref()
            .expect("decodes under depth 4 but not under the default");
        assert!(s.same_as(v), "depth limit changed the value");
    }
}

fn input_limit<T>(
    data: &[u8],
    decode: impl Fn(&[u8], &Limits) -> Result<T, wirecall_codecs::CodecError>,
) {
    if data.is_empty() {
        return;
    }
    let tight = Limits::DEFAULT.with_max_input(data.len() - 1);
    match decode(data, &tight) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}"),
        Ok(_) => panic!("input over max_input decoded"),
    }
}

/// A self-describing codec: dynamic and typed paths.
pub(crate) fn run_dynamic<C: Codec>(data: &[u8]) {
    let limits = Limits::DEFAULT;
    input_limit(data, C::decode_value);
    limit_checks(data, |d, l| C::decode_value(d, l).ok());
    if let Ok(v) = C::decode_value(data, &limits) {
        dynamic_roundtrip::<C>(&v, &limits);
    }
    run_typed::<C>(data);
}

/// The typed paths (every codec, the only ones for bincode and postcard).
pub(crate) fn run_typed<C: Codec>(data: &[u8]) {
    let limits = Limits::DEFAULT;
    input_limit(data, C::decode::<Record>);
    typed::<C, Record>(data, &limits);
    typed::<C, Vec<Shape>>(data, &limits);
    typed::<C, Pair>(data, &limits);
    typed::<C, BTreeMap<String, Option<u64>>>(data, &limits);
    typed::<C, (String, f32, u16, Vec<u8>)>(data, &limits);
}

/// JSON: the default (Python-compatible) reader, and the strict RFC 8259 reader.
pub(crate) fn run_json(data: &[u8]) {
    run_dynamic::<wirecall_codecs::Json>(data);
}

pub(crate) fn run_json_strict(data: &[u8]) {
    use wirecall_codecs::{json_decode_value_strict, Json};
    let limits = Limits::DEFAULT;
    input_limit(data, json_decode_value_strict);
    limit_checks(data, |d, l| json_decode_value_strict(d, l).ok());
    if let Ok(v) = json_decode_value_strict(data, &limits) {
        let d = Json::decode_value(data, &limits).expect("strict JSON the default reader refuses");
        assert!(d.same_as(&v), "strict and default readers disagree");
        dynamic_roundtrip::<Json>(&v, &limits);
    }
}

/// Serpent: the codec, and the writer's other modes (no header, indent) parse back.
pub(crate) fn run_serpent(data: &[u8]) {
    use wirecall_codecs::{serpent, Serpent};
    run_dynamic::<Serpent>(data);
    let limits = Limits::DEFAULT;
    let Ok(v) = serpent::parse_value(data, limits.max_depth) else {
        return;
    };
    if bytes_where_hashed(&v, false) {
        return;
    }
    let deeper = limits.max_depth + 4;
    let bare = serpent::SerpentOptions::default().header(false);
    let mut out = Vec::new();
    match serpent::value_to_writer(&v, &mut out, &bare) {
        Ok(()) => {}
        // A key Python's serpent reads but will not write (see `dynamic_roundtrip`).
        Err(e) if e.to_string().contains("cannot be a dict key or set member") => return,
        Err(e) => panic!("encode without header: {e:?}"),
    }
    let back = serpent::parse_value(&out, deeper).expect("headerless serpent parses");
    assert!(
        back.same_as(&after_roundtrip::<Serpent>(&v)),
        "headerless round trip changed the value"
    );
    // Indent mode sorts keys and set members, so only parsing back is required.
    let mut out = Vec::new();
    serpent::value_to_writer(&v, &mut out, &bare.indent(true)).expect("encode indented");
    serpent::parse_value(&out, deeper).expect("indented serpent parses");
}
