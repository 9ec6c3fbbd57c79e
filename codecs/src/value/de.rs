//! `from_value`: [`Value`] as a serde `Deserializer`, so dynamic arguments become typed ones.

use serde::de::value::{MapDeserializer, SeqDeserializer, StringDeserializer};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, VariantAccess, Visitor,
};
use serde::forward_to_deserialize_any;

use crate::{CodecError, Value};

/// Converts a [`Value`] into any `DeserializeOwned` type.
///
/// Lenient where the formats differ: a `Vec<u8>` accepts `Bytes` or a list of ints; a
/// struct accepts a map or a positional list (rmp-serde's default); a unit or unit struct
/// accepts `Null` or an empty list; floats accept ints; enums accept `Str(name)` for unit
/// variants and `{name: payload}` otherwise; bytes accept serpent's base64 dict and floats
/// serpent's NaN dict (what Python's serpent writes and `serpent.loads` returns). A `BigInt` wider than 128 bits cannot become a
/// Rust integer and fails with a decode error. An `Ext` reads as rmp-serde shows a msgpack
/// ext: a newtype struct holding `(tag, bytes)` (so rmp-serde's `_ExtStruct((i8, bytes))`
/// type reads it); a `Value` target gets the list `[tag, bytes]`.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, CodecError> {
    T::deserialize(value)
}

impl<'de> IntoDeserializer<'de, CodecError> for Value {
    type Deserializer = Value;
    fn into_deserializer(self) -> Value {
        self
    }
}

fn seq<'de, V: Visitor<'de>>(items: Vec<Value>, visitor: V) -> Result<V::Value, CodecError> {
    let mut de = SeqDeserializer::new(items.into_iter());
    let out = visitor.visit_seq(&mut de)?;
    de.end()?;
    Ok(out)
}

fn map<'de, V: Visitor<'de>>(
    entries: Vec<(Value, Value)>,
    visitor: V,
) -> Result<V::Value, CodecError> {
    let mut de = MapDeserializer::new(entries.into_iter());
    let out = visitor.visit_map(&mut de)?;
    de.end()?;
    Ok(out)
}

/// The `(tag, bytes)` pair an ext value shows through serde.
fn ext_pair(tag: i8, data: Vec<u8>) -> Value {
    Value::Tuple(vec![Value::Int(tag.into()), Value::Bytes(data)])
}

fn bytes_as_seq<'de, V: Visitor<'de>>(b: Vec<u8>, visitor: V) -> Result<V::Value, CodecError> {
    let mut de = SeqDeserializer::<_, CodecError>::new(b.into_iter());
    let out = visitor.visit_seq(&mut de)?;
    de.end()?;
    Ok(out)
}

impl<'de> de::Deserializer<'de> for Value {
    type Error = CodecError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        match self {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Int(i) => {
                if let Ok(v) = i64::try_from(i) {
                    visitor.visit_i64(v)
                } else if let Ok(v) = u64::try_from(i) {
                    visitor.visit_u64(v)
                } else {
                    visitor.visit_i128(i)
                }
            }
            // As rmp-serde shows a msgpack ext: a newtype holding the pair (tag, bytes).
            Value::Ext { tag, data } => visitor.visit_newtype_struct(ext_pair(tag, data)),
            Value::BigInt(n) => match u128::try_from(&n) {
                Ok(v) => visitor.visit_u128(v),
                Err(_) => Err(de::Error::custom(format_args!(
                    "integer {n} does not fit in 128 bits; declare the parameter as a big \
                     integer type or Value"
                ))),
            },
            Value::Float(f) => visitor.visit_f64(f),
            Value::Str(s) => visitor.visit_string(s),
            Value::Bytes(b) => visitor.visit_byte_buf(b),
            Value::List(v) | Value::Tuple(v) | Value::Set(v) => seq(v, visitor),
            Value::Map(m) => map(m, visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        match self {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(other),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        match self {
            Value::Null => visitor.visit_unit(),
            Value::List(v) | Value::Tuple(v) if v.is_empty() => visitor.visit_unit(),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        match self {
            // rmp-serde's `_ExtStruct((tag, bytes))` (or any newtype of that pair) reads it.
            Value::Ext { tag, data } => visitor.visit_newtype_struct(ext_pair(tag, data)),
            other => visitor.visit_newtype_struct(other),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        self.deserialize_byte_buf(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        match serpent_bytes(&self) {
            Some(Ok(b)) => visitor.visit_byte_buf(b),
            Some(Err(e)) => Err(e),
            None => self.deserialize_any(visitor),
        }
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        if is_serpent_nan(&self) {
            return visitor.visit_f64(f64::NAN);
        }
        self.deserialize_any(visitor)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        if is_serpent_nan(&self) {
            return visitor.visit_f32(f32::NAN);
        }
        self.deserialize_any(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        match self {
            Value::Bytes(b) => bytes_as_seq(b, visitor),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        match self {
            Value::Str(s) => visitor.visit_enum(StringDeserializer::<CodecError>::new(s)),
            Value::Map(m) if m.len() == 1 => {
                let mut it = m.into_iter();
                match it.next() {
                    Some((variant, payload)) => visitor.visit_enum(EnumDe { variant, payload }),
                    None => Err(de::Error::custom("empty map for an enum")),
                }
            }
            other => Err(de::Error::custom(format_args!(
                "expected an enum as a variant name or a one-entry map {{variant: payload}}, \
                 found {}",
                other.type_name()
            ))),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        visitor.visit_unit()
    }

    fn is_human_readable(&self) -> bool {
        true
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 char str string
        map struct identifier
    }
}

struct EnumDe {
    variant: Value,
    payload: Value,
}

impl<'de> EnumAccess<'de> for EnumDe {
    type Error = CodecError;
    type Variant = Value;
    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Value), CodecError> {
        Ok((seed.deserialize(self.variant)?, self.payload))
    }
}

impl<'de> VariantAccess<'de> for Value {
    type Error = CodecError;
    fn unit_variant(self) -> Result<(), CodecError> {
        match self {
            Value::Null => Ok(()),
            Value::List(v) | Value::Tuple(v) if v.is_empty() => Ok(()),
            other => Err(de::Error::custom(format_args!(
                "expected no payload for a unit variant, found {}",
                other.type_name()
            ))),
        }
    }
    fn newtype_variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<S::Value, CodecError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, CodecError> {
        de::Deserializer::deserialize_seq(self, visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        de::Deserializer::deserialize_any(self, visitor)
    }
}

/// The dict serpent (and Pyro) write for bytes: `{'data': '<base64>', 'encoding': 'base64'}`.
fn serpent_bytes(v: &Value) -> Option<Result<Vec<u8>, CodecError>> {
    let m = v.as_map()?;
    if m.len() != 2 || v.get("encoding")?.as_str()? != "base64" {
        return None;
    }
    let data = v.get("data")?.as_str()?;
    Some(decode_base64(data))
}

#[cfg(feature = "serpent")]
fn decode_base64(data: &str) -> Result<Vec<u8>, CodecError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| de::Error::custom(format_args!("invalid base64 in a serpent bytes dict: {e}")))
}

#[cfg(not(feature = "serpent"))]
fn decode_base64(_: &str) -> Result<Vec<u8>, CodecError> {
    Err(de::Error::custom(
        "a serpent bytes dict needs the `serpent` feature of wirecall-codecs to be decoded",
    ))
}

/// The dict serpent writes for NaN: `{'__class__': 'float', 'value': 'nan'}`.
fn is_serpent_nan(v: &Value) -> bool {
    v.as_map().is_some_and(|m| m.len() == 2)
        && v.get("__class__").and_then(Value::as_str) == Some("float")
        && v.get("value")
            .and_then(Value::as_str)
            .is_some_and(|s| s.eq_ignore_ascii_case("nan"))
}
