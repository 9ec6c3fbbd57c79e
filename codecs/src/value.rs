//! A dynamic value covering what every codec can carry, for tools that encode, decode and
//! transcode without Rust types.

mod de;
mod ser;

use std::fmt;

use num_bigint::BigInt;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, SerializeTuple, Serializer};

pub use de::from_value;
pub use ser::to_value;

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
/// `Tuple` → tuple, `Map` → map.
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
        }
    }
}

/// Upper bound on capacity reserved from an untrusted size hint.
pub(crate) const MAX_PREALLOC: usize = 4096;

/// Deserializes from any self-describing format (`deserialize_any`). Prefer a codec's
/// `decode_value`, which keeps more (big integers in JSON, CBOR tags, msgpack ext refusal);
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
