//! A dynamic value covering what every codec can carry, for tools that encode, decode and
//! transcode without Rust types.

mod de;
mod ser;

use std::fmt;

use num_bigint::BigInt;

use crate::{CodecError, CodecId, Origin};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, SerializeTuple, Serializer};

pub use de::from_value;
pub use ser::to_value;

/// The msgpack ext type of a timestamp (see [`Value::timestamp_parts`]).
pub const TIMESTAMP_EXT_TAG: i8 = -1;

/// A dynamic value: the union of what the codecs can carry.
///
/// Integers in the `i128` range are [`Value::Int`]; larger ones are [`Value::BigInt`]
/// (normalised: a `BigInt` never holds a value that fits `i128`; use [`Value::from_bigint`]
/// to build one). Maps keep their order and accept any key.
///
/// `PartialEq` follows `f64`: `NaN != NaN`. Tests that need NaN to equal itself use
/// [`Value::same_as`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Null / None / nil.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer that fits in 128 bits.
    Int(i128),
    /// An integer outside the `i128` range.
    BigInt(num_bigint::BigInt),
    /// A 64-bit float, including NaN and the infinities.
    Float(f64),
    /// A UTF-8 string.
    Str(String),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A list / array / sequence.
    List(Vec<Value>),
    /// A tuple (distinct from a list where the format can tell them apart, e.g. serpent).
    Tuple(Vec<Value>),
    /// A set (serpent `{1,2}`); formats without sets carry it as a list.
    Set(Vec<Value>),
    /// An ordered map with keys of any type.
    Map(Vec<(Value, Value)>),
    /// An application-defined extension value: msgpack's ext family (fixext 1/2/4/8/16,
    /// ext 8/16/32). Only the msgpack codec carries it; every other codec's `encode_value`
    /// refuses it with an `Unsupported` error. A msgpack timestamp is tag `-1` with the
    /// 4-, 8- or 12-byte payload of the msgpack spec (see [`Value::timestamp_parts`]).
    Ext {
        /// The ext type: `0..=127` application-defined, negative values reserved by msgpack
        /// (`-1` is the timestamp).
        tag: i8,
        /// The raw payload bytes.
        data: Vec<u8>,
    },
}

impl Value {
    /// Builds an integer value from a big integer, normalising to [`Value::Int`] when it fits.
    pub fn from_bigint(n: BigInt) -> Value {
        match i128::try_from(&n) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::BigInt(n),
        }
    }

    /// Returns this value with every `BigInt` that fits `i128` turned into `Int`, recursively.
    pub fn normalized(self) -> Value {
        match self {
            Value::BigInt(n) => Value::from_bigint(n),
            Value::List(v) => Value::List(v.into_iter().map(Value::normalized).collect()),
            Value::Tuple(v) => Value::Tuple(v.into_iter().map(Value::normalized).collect()),
            Value::Set(v) => Value::Set(v.into_iter().map(Value::normalized).collect()),
            Value::Map(v) => Value::Map(
                v.into_iter()
                    .map(|(k, v)| (k.normalized(), v.normalized()))
                    .collect(),
            ),
            other => other,
        }
    }

    /// Structural equality where NaN equals NaN (and `-0.0` differs from `0.0`, as the
    /// bytes do): the comparison round-trip tests need.
    pub fn same_as(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Float(a), Value::Float(b)) => {
                (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
            }
            (Value::List(a), Value::List(b))
            | (Value::Tuple(a), Value::Tuple(b))
            | (Value::Set(a), Value::Set(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_as(y))
            }
            (Value::Map(a), Value::Map(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|((k1, v1), (k2, v2))| k1.same_as(k2) && v1.same_as(v2))
            }
            (a, b) => a == b,
        }
    }

    /// A short name of the variant (`"int"`, `"str"`, ...) for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Set(_) => "set",
            Value::Map(_) => "map",
            Value::Ext { .. } => "ext",
        }
    }

    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The string, if this is a [`Value::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an [`Value::Int`] in the `i64` range.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => i64::try_from(*i).ok(),
            _ => None,
        }
    }

    /// The number as `f64` for [`Value::Float`] and [`Value::Int`] (possibly rounded).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The elements of a list, tuple or set.
    pub fn as_slice(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Tuple(v) | Value::Set(v) => Some(v),
            _ => None,
        }
    }

    /// The entries of a map.
    pub fn as_map(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Looks up a string key in a map (first match).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The `(seconds, nanoseconds)` of a msgpack timestamp: an [`Value::Ext`] with tag
    /// [`TIMESTAMP_EXT_TAG`] and a 4-byte (u32 seconds), 8-byte (30-bit nanoseconds over
    /// 34-bit seconds) or 12-byte (u32 nanoseconds, i64 seconds) payload. `None` for any
    /// other value, another payload length, or nanoseconds above 999 999 999.
    pub fn timestamp_parts(&self) -> Option<(i64, u32)> {
        let Value::Ext {
            tag: TIMESTAMP_EXT_TAG,
            data,
        } = self
        else {
            return None;
        };
        let (sec, nsec) = match data.len() {
            4 => (
                i64::from(u32::from_be_bytes(data.as_slice().try_into().ok()?)),
                0,
            ),
            8 => {
                let v = u64::from_be_bytes(data.as_slice().try_into().ok()?);
                ((v & 0x3_ffff_ffff) as i64, (v >> 34) as u32)
            }
            12 => {
                let nsec = u32::from_be_bytes(data.get(..4)?.try_into().ok()?);
                let sec = i64::from_be_bytes(data.get(4..)?.try_into().ok()?);
                (sec, nsec)
            }
            _ => return None,
        };
        (nsec <= 999_999_999).then_some((sec, nsec))
    }

    /// Nesting depth: 0 for scalars, 1 for a flat container, and so on.
    pub fn depth(&self) -> usize {
        match self {
            Value::List(v) | Value::Tuple(v) | Value::Set(v) => {
                1 + v.iter().map(Value::depth).max().unwrap_or(0)
            }
            Value::Map(m) => {
                1 + m
                    .iter()
                    .map(|(k, v)| k.depth().max(v.depth()))
                    .max()
                    .unwrap_or(0)
            }
            _ => 0,
        }
    }
}

impl fmt::Display for Value {
    /// A compact debugging notation close to Python literals (not any codec's format).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list(f: &mut fmt::Formatter<'_>, open: &str, v: &[Value], close: &str) -> fmt::Result {
            f.write_str(open)?;
            for (i, x) in v.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{x}")?;
            }
            f.write_str(close)
        }
        match self {
            Value::Null => f.write_str("None"),
            Value::Bool(true) => f.write_str("True"),
            Value::Bool(false) => f.write_str("False"),
            Value::Int(i) => write!(f, "{i}"),
            Value::BigInt(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Bytes(b) => {
                f.write_str("b\"")?;
                for byte in b {
                    write!(f, "{}", std::ascii::escape_default(*byte))?;
                }
                f.write_str("\"")
            }
            Value::List(v) => list(f, "[", v, "]"),
            Value::Tuple(v) if v.len() == 1 => list(f, "(", v, ",)"),
            Value::Tuple(v) => list(f, "(", v, ")"),
            Value::Set(v) => list(f, "{", v, "}"),
            Value::Map(m) => {
                f.write_str("{")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
            Value::Ext { tag, data } => {
                write!(f, "ext({tag}, 0x")?;
                for byte in data {
                    write!(f, "{byte:02x}")?;
                }
                f.write_str(")")
            }
        }
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value { Value::Int(v as i128) }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32, u64, isize, usize, i128);

impl From<u128> for Value {
    fn from(v: u128) -> Value {
        match i128::try_from(v) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::BigInt(BigInt::from(v)),
        }
    }
}
impl From<BigInt> for Value {
    fn from(v: BigInt) -> Value {
        Value::from_bigint(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}
impl From<f32> for Value {
    fn from(v: f32) -> Value {
        Value::Float(v as f64)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Str(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Bytes(v)
    }
}
impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Value {
        Value::List(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// Serializes through the serde data model: `Null` → unit, `Int` → the narrowest of
/// i64/u64/i128/u128, `BigInt` → an error (no serde type holds it; codecs that carry big
/// integers encode them in their own `encode_value`), `Bytes` → bytes, `List`/`Set` → seq,
/// `Tuple` → tuple, `Map` → map, `Ext` → the newtype struct `_ExtStruct((tag, bytes))`,
/// which rmp-serde writes as a native msgpack ext; other serde formats would write that
/// newtype as a plain `(tag, bytes)` pair, so codecs other than msgpack refuse `Ext` in their
/// `encode_value` instead of going through this impl.
impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => {
                if let Ok(v) = i64::try_from(*i) {
                    s.serialize_i64(v)
                } else if let Ok(v) = u64::try_from(*i) {
                    s.serialize_u64(v)
                } else {
                    s.serialize_i128(*i)
                }
            }
            Value::BigInt(n) => match u128::try_from(n) {
                Ok(v) => s.serialize_u128(v),
                Err(_) => Err(serde::ser::Error::custom(format_args!(
                    "integer {n} is wider than 128 bits and this format has no big integers; \
                     use cbor, json or serpent, or send it as a string"
                ))),
            },
            Value::Float(f) => s.serialize_f64(*f),
            Value::Str(v) => s.serialize_str(v),
            Value::Bytes(b) => s.serialize_bytes(b),
            Value::List(v) | Value::Set(v) => {
                let mut seq = s.serialize_seq(Some(v.len()))?;
                for x in v {
                    seq.serialize_element(x)?;
                }
                seq.end()
            }
            Value::Tuple(v) => {
                let mut t = s.serialize_tuple(v.len())?;
                for x in v {
                    t.serialize_element(x)?;
                }
                t.end()
            }
            Value::Map(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            Value::Ext { tag, data } => {
                s.serialize_newtype_struct(EXT_STRUCT_NAME, &(*tag, RawBytes(data)))
            }
        }
    }
}

/// The serde newtype-struct name rmp-serde writes as a native msgpack ext
/// (`_ExtStruct((tag, bytes))`); other serde formats see an ordinary newtype struct.
const EXT_STRUCT_NAME: &str = "_ExtStruct";

/// Serializes a byte slice with `serialize_bytes` (msgpack `bin`, not an array of ints).
struct RawBytes<'a>(&'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// Refuses a value holding an [`Value::Ext`] anywhere, for codecs that cannot carry one
/// (every codec but msgpack): an `Unsupported` error naming the ext and msgpack.
pub(crate) fn refuse_ext(codec: CodecId, value: &Value) -> Result<(), CodecError> {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Ext { tag, data } => return Err(ext_unsupported(codec, *tag, data.len())),
            Value::List(xs) | Value::Tuple(xs) | Value::Set(xs) => stack.extend(xs),
            Value::Map(m) => stack.extend(m.iter().flat_map(|(k, v)| [k, v])),
            _ => {}
        }
    }
    Ok(())
}

/// The `Unsupported` error for an ext value given to a codec other than msgpack.
pub(crate) fn ext_unsupported(codec: CodecId, tag: i8, len: usize) -> CodecError {
    CodecError::unsupported(
        codec,
        Origin::Local,
        format!(
            "an ext value (msgpack ext type {tag}, {len} bytes) cannot be encoded by this codec: \
             only msgpack carries ext values; send it with msgpack, or convert it to bytes or \
             another plain value first"
        ),
    )
}

/// Upper bound on capacity reserved from an untrusted size hint.
pub(crate) const MAX_PREALLOC: usize = 4096;

/// Deserializes from any self-describing format (`deserialize_any`). Prefer a codec's
/// `decode_value`, which keeps more (big integers in JSON, CBOR tags, msgpack ext values as
/// [`Value::Ext`]; through serde a msgpack ext shows as a newtype `(tag, bytes)` and reads as
/// the list `[tag, bytes]`);
/// this impl sees only what serde shows: unit/none → `Null`,
/// `Some(x)` → x, integers → `Int`, bytes → `Bytes`, sequences → `List`, maps → `Map`,
/// enums → a one-entry map `{variant: payload}` (unit variants → the name as `Str`).
impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_char<E>(self, v: char) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(v.to_vec()))
    }
    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_PREALLOC));
        while let Some(x) = seq.next_element()? {
            v.push(x);
        }
        Ok(Value::List(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut v = Vec::with_capacity(map.size_hint().unwrap_or(0).min(MAX_PREALLOC));
        while let Some(entry) = map.next_entry()? {
            v.push(entry);
        }
        Ok(Value::Map(v))
    }
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        use serde::de::VariantAccess;
        let (variant, access): (Value, _) = data.variant()?;
        let payload: Value = access.newtype_variant()?;
        Ok(Value::Map(vec![(variant, payload)]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(data: &[u8]) -> Value {
        Value::Ext {
            tag: TIMESTAMP_EXT_TAG,
            data: data.to_vec(),
        }
    }

    #[test]
    fn timestamp_parts_reads_the_three_forms() {
        assert_eq!(ts(&[0, 0, 0, 1]).timestamp_parts(), Some((1, 0)));
        assert_eq!(
            ts(&[0xff, 0xff, 0xff, 0xff]).timestamp_parts(),
            Some((4_294_967_295, 0))
        );
        // 64-bit: nsec = 1 in the top 30 bits, sec = 2^34 - 1 in the low 34.
        assert_eq!(
            ts(&[0, 0, 0, 0x07, 0xff, 0xff, 0xff, 0xff]).timestamp_parts(),
            Some((17_179_869_183, 1))
        );
        // 96-bit: nsec 999999999, sec -1.
        let mut d = 999_999_999u32.to_be_bytes().to_vec();
        d.extend_from_slice(&(-1i64).to_be_bytes());
        assert_eq!(ts(&d).timestamp_parts(), Some((-1, 999_999_999)));
        // Out-of-range nanoseconds, wrong length, wrong tag, not an ext.
        let mut d = 1_000_000_000u32.to_be_bytes().to_vec();
        d.extend_from_slice(&0i64.to_be_bytes());
        assert_eq!(ts(&d).timestamp_parts(), None);
        assert_eq!(ts(&[0; 5]).timestamp_parts(), None);
        let other = Value::Ext {
            tag: 1,
            data: vec![0; 4],
        };
        assert_eq!(other.timestamp_parts(), None);
        assert_eq!(Value::Bytes(vec![0; 4]).timestamp_parts(), None);
    }

    #[test]
    fn ext_display_and_type_name() {
        let v = Value::Ext {
            tag: -1,
            data: vec![0, 0xab],
        };
        assert_eq!(v.to_string(), "ext(-1, 0x00ab)");
        assert_eq!(v.type_name(), "ext");
    }

    #[test]
    fn ext_through_from_value() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        #[serde(rename = "_ExtStruct")]
        struct ExtStruct((i8, Vec<u8>));
        let v = Value::Ext {
            tag: -1,
            data: vec![0, 0, 0, 1],
        };
        assert_eq!(
            from_value::<ExtStruct>(v.clone()).unwrap(),
            ExtStruct((-1, vec![0, 0, 0, 1]))
        );
        assert_eq!(
            from_value::<Value>(v).unwrap(),
            Value::List(vec![Value::Int(-1), Value::Bytes(vec![0, 0, 0, 1])])
        );
        let not_a_string = Value::Ext {
            tag: 1,
            data: vec![],
        };
        assert!(from_value::<String>(not_a_string).is_err());
        // to_value turns `_ExtStruct` back into an Ext.
        let ext = Value::Ext {
            tag: 9,
            data: vec![1],
        };
        assert_eq!(to_value(&ext).unwrap(), ext);
    }

    #[test]
    fn refuse_ext_finds_nested_ext() {
        let id = CodecId::JSON;
        assert!(refuse_ext(id, &Value::List(vec![Value::Int(1)])).is_ok());
        let nested = Value::Map(vec![(
            Value::Str("k".into()),
            Value::Tuple(vec![Value::Ext {
                tag: 3,
                data: vec![1, 2],
            }]),
        )]);
        let err = refuse_ext(id, &nested).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Unsupported);
        let msg = err.to_string();
        assert!(
            msg.contains("ext type 3") && msg.contains("msgpack"),
            "{msg}"
        );
    }
}
