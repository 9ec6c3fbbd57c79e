//! The one place this crate calls into `wirecall-codecs`: encode and decode dynamic values by
//! codec id, serpent with its options, and bincode's typed path.

use serde::de::DeserializeOwned;
use serde::Serialize;
use wirecall_codecs::serpent::{self, SerpentError, SerpentErrorKind, SerpentOptions};
use wirecall_codecs::{Bincode, Codec, CodecError, CodecId, ErrorKind, Limits, Origin, Value};

/// Nesting limit for the conformance runs: high enough for the deepest public vectors
/// (cbor-wg `good` nests about 500 levels).
pub const DEEP: usize = 2048;

fn serpent_error(e: SerpentError, origin: Origin) -> CodecError {
    let kind = match e.kind() {
        SerpentErrorKind::Unsupported | SerpentErrorKind::UnsupportedEscape => {
            ErrorKind::Unsupported
        }
        SerpentErrorKind::TooDeep => ErrorKind::LimitExceeded,
        _ if origin == Origin::Local => ErrorKind::Encode,
        _ => ErrorKind::Decode,
    };
    CodecError::new(CodecId::SERPENT, kind, origin, e.to_string())
}

/// Encodes a dynamic value with the built-in codec `id`.
pub fn encode(id: CodecId, value: &Value) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    wirecall_codecs::encode_value(id, value, &mut out)?;
    Ok(out)
}

/// Decodes bytes into a dynamic value with the built-in codec `id` and default limits.
pub fn decode(id: CodecId, bytes: &[u8]) -> Result<Value, CodecError> {
    decode_with(id, bytes, &Limits::DEFAULT)
}

/// Like [`decode`] with a nesting limit of [`DEEP`].
pub fn decode_deep(id: CodecId, bytes: &[u8]) -> Result<Value, CodecError> {
    decode_with(id, bytes, &Limits::DEFAULT.with_max_depth(DEEP))
}

fn decode_with(id: CodecId, bytes: &[u8], limits: &Limits) -> Result<Value, CodecError> {
    wirecall_codecs::decode_value(id, bytes, limits)
}

/// serpent `dumps` with serpent's `indent` and `bytes_repr` options (header on), as text.
pub fn serpent_dumps(value: &Value, indent: bool, bytes_repr: bool) -> Result<String, CodecError> {
    let mut out = Vec::new();
    let opts = SerpentOptions::default()
        .indent(indent)
        .bytes_repr(bytes_repr);
    serpent::value_to_writer(value, &mut out, &opts)
        .map_err(|e| serpent_error(e, Origin::Local))?;
    String::from_utf8(out).map_err(|e| CodecError::encode(CodecId::SERPENT, e))
}

/// serpent `loads` into a dynamic value (Python's default nesting limit).
pub fn serpent_loads(bytes: &[u8]) -> Result<Value, CodecError> {
    serpent::parse_value(bytes, serpent::DEFAULT_MAX_DEPTH)
        .map_err(|e| serpent_error(e, Origin::Peer))
}

/// The serpent map for a complex number (`{'__class__':'complex','real':..,'imag':..}`).
pub fn serpent_complex(re: f64, im: f64) -> Value {
    serpent::complex_value(re, im)
}

/// Turns serpent's base64 bytes dicts into `Bytes`, recursively (Python's `serpent.tobytes`,
/// which Pyro applies).
pub fn serpent_tobytes_deep(value: Value) -> Value {
    match value {
        Value::Map(entries) => {
            let m = Value::Map(entries);
            if let Some(b) = serpent::tobytes(&m) {
                if let Value::Map(e) = &m {
                    if e.len() == 2 {
                        return Value::Bytes(b);
                    }
                }
            }
            match m {
                Value::Map(e) => Value::Map(
                    e.into_iter()
                        .map(|(k, v)| (serpent_tobytes_deep(k), serpent_tobytes_deep(v)))
                        .collect(),
                ),
                other => other,
            }
        }
        Value::List(v) => Value::List(v.into_iter().map(serpent_tobytes_deep).collect()),
        Value::Tuple(v) => Value::Tuple(v.into_iter().map(serpent_tobytes_deep).collect()),
        Value::Set(v) => Value::Set(v.into_iter().map(serpent_tobytes_deep).collect()),
        other => other,
    }
}

/// bincode's typed encoding (the `Bincode` codec, `config::standard()`).
pub fn bincode_encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    Bincode::encode(value)
}

/// bincode's typed decoding.
pub fn bincode_decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    Bincode::decode(bytes, &Limits::DEFAULT)
}
