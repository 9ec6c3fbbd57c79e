//! A serde `Serializer` that builds a [`Value`] with serpent's data-model mapping, used for
//! indent mode (which must see all dict keys before it can sort them).

use serde::ser::{self, Serialize};

use super::error::{SerpentError, SerpentErrorKind};
use super::ser::too_deep;
use crate::Value;

/// Converts `value` to a [`Value`] following the serpent mapping: seq → List,
/// tuple / tuple struct → Tuple, bytes → Bytes, struct and map → Map, unit and None → Null,
/// unit variant → Str, other variants → a one-entry Map.
pub(crate) fn to_value<T: Serialize + ?Sized>(
    value: &T,
    max_depth: usize,
) -> Result<Value, SerpentError> {
    value.serialize(ValueSer {
        level: 0,
        max_depth,
    })
}

#[derive(Clone, Copy)]
struct ValueSer {
    level: usize,
    max_depth: usize,
}

impl ValueSer {
    fn child<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, SerpentError> {
        if self.level >= self.max_depth {
            return Err(too_deep(self.max_depth));
        }
        value.serialize(ValueSer {
            level: self.level + 1,
            max_depth: self.max_depth,
        })
    }
}

fn int_value(v: i128) -> Value {
    Value::Int(v)
}

pub(crate) struct SeqBuilder {
    ser: ValueSer,
    items: Vec<Value>,
    tuple: bool,
    variant: Option<&'static str>,
}

impl SeqBuilder {
    fn finish(self) -> Value {
        let inner = if self.tuple {
            Value::Tuple(self.items)
        } else {
            Value::List(self.items)
        };
        match self.variant {
            Some(v) => Value::Map(vec![(Value::Str(v.to_owned()), inner)]),
            None => inner,
        }
    }
}

pub(crate) struct MapBuilder {
    ser: ValueSer,
    entries: Vec<(Value, Value)>,
    pending_key: Option<Value>,
    variant: Option<&'static str>,
}

impl MapBuilder {
    fn finish(self) -> Value {
        let inner = Value::Map(self.entries);
        match self.variant {
            Some(v) => Value::Map(vec![(Value::Str(v.to_owned()), inner)]),
            None => inner,
        }
    }
}

impl ser::Serializer for ValueSer {
    type Ok = Value;
    type Error = SerpentError;
    type SerializeSeq = SeqBuilder;
    type SerializeTuple = SeqBuilder;
    type SerializeTupleStruct = SeqBuilder;
    type SerializeTupleVariant = SeqBuilder;
    type SerializeMap = MapBuilder;
    type SerializeStruct = MapBuilder;
    type SerializeStructVariant = MapBuilder;

    fn serialize_bool(self, v: bool) -> Result<Value, SerpentError> {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, SerpentError> {
        Ok(int_value(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Value, SerpentError> {
        Ok(int_value(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Value, SerpentError> {
        Ok(int_value(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<Value, SerpentError> {
        Ok(int_value(v.into()))
    }
    fn serialize_i128(self, v: i128) -> Result<Value, SerpentError> {
        Ok(int_value(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Value, SerpentError> {
        Ok(int_value(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Value, SerpentError> {
        Ok(int_value(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Value, SerpentError> {
        Ok(int_value(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Value, SerpentError> {
        Ok(int_value(v.into()))
    }
    fn serialize_u128(self, v: u128) -> Result<Value, SerpentError> {
        Ok(match i128::try_from(v) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::BigInt(num_bigint::BigInt::from(v)),
        })
    }
    fn serialize_f32(self, v: f32) -> Result<Value, SerpentError> {
        // Shortest f32 digits read back as an f64, like the compact serializer writes them.
        if v.is_finite() {
            let mut s = String::new();
            super::repr::write_f32_repr(v, &mut s);
            Ok(Value::Float(s.parse().unwrap_or(f64::from(v))))
        } else {
            Ok(Value::Float(f64::from(v)))
        }
    }
    fn serialize_f64(self, v: f64) -> Result<Value, SerpentError> {
        Ok(Value::Float(v))
    }
    fn serialize_char(self, v: char) -> Result<Value, SerpentError> {
        Ok(Value::Str(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, SerpentError> {
        Ok(Value::Str(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, SerpentError> {
        Ok(Value::Bytes(v.to_vec()))
    }
    fn serialize_none(self) -> Result<Value, SerpentError> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, SerpentError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, SerpentError> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value, SerpentError> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Value, SerpentError> {
        Ok(Value::Str(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Value, SerpentError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, SerpentError> {
        let inner = self.child(value)?;
        Ok(Value::Map(vec![(Value::Str(variant.to_owned()), inner)]))
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<SeqBuilder, SerpentError> {
        Ok(SeqBuilder {
            ser: self,
            items: Vec::new(),
            tuple: false,
            variant: None,
        })
    }
    fn serialize_tuple(self, _len: usize) -> Result<SeqBuilder, SerpentError> {
        Ok(SeqBuilder {
            ser: self,
            items: Vec::new(),
            tuple: true,
            variant: None,
        })
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<SeqBuilder, SerpentError> {
        self.serialize_tuple(len)
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<SeqBuilder, SerpentError> {
        if self.level >= self.max_depth {
            return Err(too_deep(self.max_depth));
        }
        Ok(SeqBuilder {
            ser: ValueSer {
                level: self.level + 1,
                max_depth: self.max_depth,
            },
            items: Vec::new(),
            tuple: true,
            variant: Some(variant),
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<MapBuilder, SerpentError> {
        Ok(MapBuilder {
            ser: self,
            entries: Vec::new(),
            pending_key: None,
            variant: None,
        })
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<MapBuilder, SerpentError> {
        self.serialize_map(None)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<MapBuilder, SerpentError> {
        if self.level >= self.max_depth {
            return Err(too_deep(self.max_depth));
        }
        Ok(MapBuilder {
            ser: ValueSer {
                level: self.level + 1,
                max_depth: self.max_depth,
            },
            entries: Vec::new(),
            pending_key: None,
            variant: Some(variant),
        })
    }
}

impl ser::SerializeSeq for SeqBuilder {
    type Ok = Value;
    type Error = SerpentError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerpentError> {
        self.items.push(self.ser.child(value)?);
        Ok(())
    }
    fn end(self) -> Result<Value, SerpentError> {
        Ok(self.finish())
    }
}

impl ser::SerializeTuple for SeqBuilder {
    type Ok = Value;
    type Error = SerpentError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerpentError> {
        self.items.push(self.ser.child(value)?);
        Ok(())
    }
    fn end(self) -> Result<Value, SerpentError> {
        Ok(self.finish())
    }
}

impl ser::SerializeTupleStruct for SeqBuilder {
    type Ok = Value;
    type Error = SerpentError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerpentError> {
        self.items.push(self.ser.child(value)?);
        Ok(())
    }
    fn end(self) -> Result<Value, SerpentError> {
        Ok(self.finish())
    }
}

impl ser::SerializeTupleVariant for SeqBuilder {
    type Ok = Value;
    type Error = SerpentError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerpentError> {
        self.items.push(self.ser.child(value)?);
        Ok(())
    }
    fn end(self) -> Result<Value, SerpentError> {
        Ok(self.finish())
    }
}

impl ser::SerializeMap for MapBuilder {
    type Ok = Value;
    type Error = SerpentError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), SerpentError> {
        self.pending_key = Some(self.ser.child(key)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerpentError> {
        let key = self.pending_key.take().ok_or_else(|| {
            SerpentError::new(
                SerpentErrorKind::Custom,
                "serialize_value called before serialize_key",
            )
        })?;
        let v = self.ser.child(value)?;
        self.entries.push((key, v));
        Ok(())
    }
    fn end(self) -> Result<Value, SerpentError> {
        Ok(self.finish())
    }
}

impl ser::SerializeStruct for MapBuilder {
    type Ok = Value;
    type Error = SerpentError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), SerpentError> {
        let v = self.ser.child(value)?;
        self.entries.push((Value::Str(key.to_owned()), v));
        Ok(())
    }
    fn end(self) -> Result<Value, SerpentError> {
        Ok(self.finish())
    }
}

impl ser::SerializeStructVariant for MapBuilder {
    type Ok = Value;
    type Error = SerpentError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), SerpentError> {
        let v = self.ser.child(value)?;
        self.entries.push((Value::Str(key.to_owned()), v));
        Ok(())
    }
    fn end(self) -> Result<Value, SerpentError> {
        Ok(self.finish())
    }
}
