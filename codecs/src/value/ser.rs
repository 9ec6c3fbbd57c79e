//! `to_value`: a serde `Serializer` producing [`Value`].

use serde::ser::{self, Serialize};

use crate::{CodecError, Value};

/// Converts any `Serialize` value into a [`Value`].
///
/// Mapping: structs → `Map` with `Str` keys in field order; unit / `None` / unit structs →
/// `Null`; `Some(x)` → x; newtype structs → their content, except rmp-serde's
/// `_ExtStruct((i8, bytes))` → `Ext`; tuples and tuple structs →
/// `Tuple`; sequences → `List`; bytes → `Bytes`; `char` → `Str`; enums are externally
/// tagged like serde_json: unit variant → `Str(name)`, other variants → `{name: payload}`.
/// `is_human_readable()` is true.
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, CodecError> {
    value.serialize(ValueSerializer)
}

struct ValueSerializer;

pub(super) struct SeqSer {
    items: Vec<Value>,
    tuple: bool,
}

pub(super) struct VariantSeqSer {
    name: &'static str,
    items: Vec<Value>,
}

pub(super) struct MapSer {
    entries: Vec<(Value, Value)>,
    key: Option<Value>,
}

pub(super) struct VariantMapSer {
    name: &'static str,
    entries: Vec<(Value, Value)>,
}

fn cap(len: Option<usize>) -> usize {
    len.unwrap_or(0).min(crate::value::MAX_PREALLOC)
}

impl ser::Serializer for ValueSerializer {
    type Ok = Value;
    type Error = CodecError;
    type SerializeSeq = SeqSer;
    type SerializeTuple = SeqSer;
    type SerializeTupleStruct = SeqSer;
    type SerializeTupleVariant = VariantSeqSer;
    type SerializeMap = MapSer;
    type SerializeStruct = MapSer;
    type SerializeStructVariant = VariantMapSer;

    fn serialize_bool(self, v: bool) -> Result<Value, CodecError> {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, CodecError> {
        Ok(Value::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<Value, CodecError> {
        Ok(Value::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<Value, CodecError> {
        Ok(Value::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<Value, CodecError> {
        Ok(Value::from(v))
    }
    fn serialize_i128(self, v: i128) -> Result<Value, CodecError> {
        Ok(Value::Int(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Value, CodecError> {
        Ok(Value::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<Value, CodecError> {
        Ok(Value::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<Value, CodecError> {
        Ok(Value::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<Value, CodecError> {
        Ok(Value::from(v))
    }
    fn serialize_u128(self, v: u128) -> Result<Value, CodecError> {
        Ok(Value::from(v))
    }
    fn serialize_f32(self, v: f32) -> Result<Value, CodecError> {
        Ok(Value::Float(v as f64))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, CodecError> {
        Ok(Value::Float(v))
    }
    fn serialize_char(self, v: char) -> Result<Value, CodecError> {
        Ok(Value::Str(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, CodecError> {
        Ok(Value::Str(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, CodecError> {
        Ok(Value::Bytes(v.to_vec()))
    }
    fn serialize_none(self) -> Result<Value, CodecError> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Value, CodecError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, CodecError> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Value, CodecError> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Value, CodecError> {
        Ok(Value::Str(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<Value, CodecError> {
        let inner = v.serialize(self)?;
        if name == super::EXT_STRUCT_NAME {
            // rmp-serde's `_ExtStruct((tag, bytes))`: a msgpack ext.
            if let Value::Tuple(pair) = &inner {
                if let [Value::Int(tag), Value::Bytes(data)] = pair.as_slice() {
                    if let Ok(tag) = i8::try_from(*tag) {
                        return Ok(Value::Ext {
                            tag,
                            data: data.clone(),
                        });
                    }
                }
            }
        }
        Ok(inner)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<Value, CodecError> {
        Ok(Value::Map(vec![(
            Value::Str(variant.to_owned()),
            v.serialize(ValueSerializer)?,
        )]))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqSer, CodecError> {
        Ok(SeqSer {
            items: Vec::with_capacity(cap(len)),
            tuple: false,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqSer, CodecError> {
        Ok(SeqSer {
            items: Vec::with_capacity(cap(Some(len))),
            tuple: true,
        })
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<SeqSer, CodecError> {
        self.serialize_tuple(len)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantSeqSer, CodecError> {
        Ok(VariantSeqSer {
            name: variant,
            items: Vec::with_capacity(cap(Some(len))),
        })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<MapSer, CodecError> {
        Ok(MapSer {
            entries: Vec::with_capacity(cap(len)),
            key: None,
        })
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<MapSer, CodecError> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantMapSer, CodecError> {
        Ok(VariantMapSer {
            name: variant,
            entries: Vec::with_capacity(cap(Some(len))),
        })
    }
}

impl ser::SerializeSeq for SeqSer {
    type Ok = Value;
    type Error = CodecError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CodecError> {
        self.items.push(v.serialize(ValueSerializer)?);
        Ok(())
    }
    fn end(self) -> Result<Value, CodecError> {
        Ok(if self.tuple {
            Value::Tuple(self.items)
        } else {
            Value::List(self.items)
        })
    }
}

impl ser::SerializeTuple for SeqSer {
    type Ok = Value;
    type Error = CodecError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CodecError> {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<Value, CodecError> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for SeqSer {
    type Ok = Value;
    type Error = CodecError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CodecError> {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<Value, CodecError> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleVariant for VariantSeqSer {
    type Ok = Value;
    type Error = CodecError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CodecError> {
        self.items.push(v.serialize(ValueSerializer)?);
        Ok(())
    }
    fn end(self) -> Result<Value, CodecError> {
        Ok(Value::Map(vec![(
            Value::Str(self.name.to_owned()),
            Value::Tuple(self.items),
        )]))
    }
}

impl ser::SerializeMap for MapSer {
    type Ok = Value;
    type Error = CodecError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), CodecError> {
        self.key = Some(k.serialize(ValueSerializer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CodecError> {
        let key = self.key.take().ok_or_else(|| {
            <CodecError as ser::Error>::custom("map value serialized before its key")
        })?;
        self.entries.push((key, v.serialize(ValueSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<Value, CodecError> {
        Ok(Value::Map(self.entries))
    }
}

impl ser::SerializeStruct for MapSer {
    type Ok = Value;
    type Error = CodecError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), CodecError> {
        self.entries
            .push((Value::Str(key.to_owned()), v.serialize(ValueSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<Value, CodecError> {
        Ok(Value::Map(self.entries))
    }
}

impl ser::SerializeStructVariant for VariantMapSer {
    type Ok = Value;
    type Error = CodecError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), CodecError> {
        self.entries
            .push((Value::Str(key.to_owned()), v.serialize(ValueSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<Value, CodecError> {
        Ok(Value::Map(vec![(
            Value::Str(self.name.to_owned()),
            Value::Map(self.entries),
        )]))
    }
}
