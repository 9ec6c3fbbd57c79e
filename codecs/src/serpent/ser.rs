//! The streaming serde `Serializer` for serpent's compact mode.
//!
//! Indent mode sorts dict keys like Python's `sorted()`, which needs every key before the
//! first is written; [`super::to_writer`] therefore builds a [`crate::Value`] with
//! [`super::tovalue`] for indent mode and writes it with [`super::write`].

use serde::ser::{self, Serialize};

use super::error::{SerpentError, SerpentErrorKind};
use super::repr::{write_bytes_repr, write_f32_repr, write_serpent_float, write_str_repr};
use super::SerpentOptions;

/// Writes the base64 bytes dict serpent uses for bytes by default:
/// `{'data': '<base64>', 'encoding': 'base64'}` (Python's dict repr, with spaces).
pub(crate) fn write_base64_dict(data: &[u8], out: &mut Vec<u8>) {
    use base64::Engine;
    out.extend_from_slice(b"{'data': '");
    let start = out.len();
    let need = base64::encoded_len(data.len(), true).unwrap_or(0);
    out.resize(start + need, 0);
    let written = out
        .get_mut(start..)
        .map(|tail| {
            base64::engine::general_purpose::STANDARD
                .encode_slice(data, tail)
                .unwrap_or(0)
        })
        .unwrap_or(0);
    out.truncate(start + written);
    out.extend_from_slice(b"', 'encoding': 'base64'}");
}

/// Writes bytes in the configured form (base64 dict, or `b'...'` with `bytes_repr`).
pub(crate) fn write_bytes(data: &[u8], bytes_repr: bool, out: &mut Vec<u8>) {
    if bytes_repr {
        write_bytes_repr(data, out);
    } else {
        write_base64_dict(data, out);
    }
}

pub(crate) fn too_deep(max: usize) -> SerpentError {
    SerpentError::new(
        SerpentErrorKind::TooDeep,
        format!(
            "object graph nesting deeper than {max} levels (Python's serpent refuses it); \
             flatten the data or raise SerpentOptions::max_depth"
        ),
    )
}

/// The compact-mode serde serializer, appending to a byte vector.
pub(crate) struct Serializer<'a> {
    out: &'a mut Vec<u8>,
    opts: &'a SerpentOptions,
    level: usize,
}

impl<'a> Serializer<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>, opts: &'a SerpentOptions) -> Self {
        Serializer {
            out,
            opts,
            level: 0,
        }
    }

    #[inline]
    fn int<I: itoa::Integer>(&mut self, v: I) {
        let mut buf = itoa::Buffer::new();
        self.out.extend_from_slice(buf.format(v).as_bytes());
    }

    fn compound(&mut self, open: u8, kind: Kind) -> Result<Compound<'_, 'a>, SerpentError> {
        self.out.push(open);
        Ok(Compound {
            ser: self,
            count: 0,
            kind,
        })
    }

    /// Serializes a child one level deeper, enforcing the maximum depth.
    #[inline]
    fn child<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerpentError> {
        if self.level >= self.opts.max_depth {
            return Err(too_deep(self.opts.max_depth));
        }
        self.level += 1;
        let r = value.serialize(&mut *self);
        self.level -= 1;
        r
    }

    fn key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), SerpentError> {
        if self.level >= self.opts.max_depth {
            return Err(too_deep(self.opts.max_depth));
        }
        self.level += 1;
        let r = key.serialize(KeySerializer { ser: &mut *self });
        self.level -= 1;
        r
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    List,
    Tuple,
    Dict,
    /// `{'Variant':(...)}` or `{'Variant':{...}}`: closes two brackets.
    VariantTuple,
    VariantDict,
}

/// A container being written.
pub(crate) struct Compound<'s, 'a> {
    ser: &'s mut Serializer<'a>,
    count: usize,
    kind: Kind,
}

impl Compound<'_, '_> {
    #[inline]
    fn sep(&mut self) {
        if self.count > 0 {
            self.ser.out.push(b',');
        }
        self.count += 1;
    }

    /// Writes the next element of a list or tuple; an error names the element's index.
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerpentError> {
        self.sep();
        let i = self.count - 1;
        self.ser
            .child(value)
            .map_err(|e| e.in_path(format!("[{i}]")))
    }

    fn close(self) -> Result<(), SerpentError> {
        match self.kind {
            Kind::List => self.ser.out.push(b']'),
            Kind::Dict => self.ser.out.push(b'}'),
            Kind::Tuple => {
                if self.count == 1 {
                    self.ser.out.push(b',');
                }
                self.ser.out.push(b')');
            }
            Kind::VariantTuple => {
                if self.count == 1 {
                    self.ser.out.push(b',');
                }
                self.ser.out.extend_from_slice(b")}");
                self.ser.level -= 1;
            }
            Kind::VariantDict => {
                self.ser.out.extend_from_slice(b"}}");
                self.ser.level -= 1;
            }
        }
        Ok(())
    }

    fn field(&mut self, name: &'static str) {
        self.sep();
        write_str_repr(name, self.ser.out);
        self.ser.out.push(b':');
    }
}

impl<'s, 'a> ser::Serializer for &'s mut Serializer<'a> {
    type Ok = ();
    type Error = SerpentError;
    type SerializeSeq = Compound<'s, 'a>;
    type SerializeTuple = Compound<'s, 'a>;
    type SerializeTupleStruct = Compound<'s, 'a>;
    type SerializeTupleVariant = Compound<'s, 'a>;
    type SerializeMap = Compound<'s, 'a>;
    type SerializeStruct = Compound<'s, 'a>;
    type SerializeStructVariant = Compound<'s, 'a>;

    fn serialize_bool(self, v: bool) -> Result<(), SerpentError> {
        self.out
            .extend_from_slice(if v { b"True" } else { b"False" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), SerpentError> {
        self.int(v);
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<(), SerpentError> {
        self.int(v);
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<(), SerpentError> {
        self.int(v);
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), SerpentError> {
        self.int(v);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), SerpentError> {
        self.int(v);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), SerpentError> {
        self.int(v);
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), SerpentError> {
        self.int(v);
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<(), SerpentError> {
        self.int(v);
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), SerpentError> {
        self.int(v);
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), SerpentError> {
        self.int(v);
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), SerpentError> {
        if v.is_finite() {
            write_f32_repr(v, self.out);
        } else {
            write_serpent_float(f64::from(v), self.out);
        }
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), SerpentError> {
        write_serpent_float(v, self.out);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), SerpentError> {
        let mut buf = [0u8; 4];
        write_str_repr(v.encode_utf8(&mut buf), self.out);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), SerpentError> {
        write_str_repr(v, self.out);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), SerpentError> {
        write_bytes(v, self.opts.bytes_repr, self.out);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), SerpentError> {
        self.out.extend_from_slice(b"None");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), SerpentError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), SerpentError> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), SerpentError> {
        self.serialize_none()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), SerpentError> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), SerpentError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), SerpentError> {
        self.out.push(b'{');
        write_str_repr(variant, self.out);
        self.out.push(b':');
        self.child(value)
            .map_err(|e| e.in_path(format!("::{variant}")))?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'s, 'a>, SerpentError> {
        self.compound(b'[', Kind::List)
    }
    fn serialize_tuple(self, _len: usize) -> Result<Compound<'s, 'a>, SerpentError> {
        self.compound(b'(', Kind::Tuple)
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'s, 'a>, SerpentError> {
        self.compound(b'(', Kind::Tuple)
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'s, 'a>, SerpentError> {
        if self.level >= self.opts.max_depth {
            return Err(too_deep(self.opts.max_depth));
        }
        self.out.push(b'{');
        write_str_repr(variant, self.out);
        self.out.extend_from_slice(b":(");
        self.level += 1;
        Ok(Compound {
            ser: self,
            count: 0,
            kind: Kind::VariantTuple,
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'s, 'a>, SerpentError> {
        self.compound(b'{', Kind::Dict)
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'s, 'a>, SerpentError> {
        self.compound(b'{', Kind::Dict)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'s, 'a>, SerpentError> {
        if self.level >= self.opts.max_depth {
            return Err(too_deep(self.opts.max_depth));
        }
        self.out.push(b'{');
        write_str_repr(variant, self.out);
        self.out.extend_from_slice(b":{");
        self.level += 1;
        Ok(Compound {
            ser: self,
            count: 0,
            kind: Kind::VariantDict,
        })
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = SerpentError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerpentError> {
        self.element(value)
    }
    fn end(self) -> Result<(), SerpentError> {
        self.close()
    }
}

impl ser::SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = SerpentError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerpentError> {
        self.element(value)
    }
    fn end(self) -> Result<(), SerpentError> {
        self.close()
    }
}

impl ser::SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = SerpentError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerpentError> {
        self.element(value)
    }
    fn end(self) -> Result<(), SerpentError> {
        self.close()
    }
}

impl ser::SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = SerpentError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerpentError> {
        self.element(value)
    }
    fn end(self) -> Result<(), SerpentError> {
        self.close()
    }
}

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = SerpentError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), SerpentError> {
        self.sep();
        let i = self.count - 1;
        self.ser
            .key(key)
            .map_err(|e| e.in_path(format!("{{key {i}}}")))?;
        self.ser.out.push(b':');
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerpentError> {
        let i = self.count.saturating_sub(1);
        self.ser
            .child(value)
            .map_err(|e| e.in_path(format!("[#{i}]")))
    }
    fn end(self) -> Result<(), SerpentError> {
        self.close()
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = SerpentError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), SerpentError> {
        self.field(key);
        self.ser
            .child(value)
            .map_err(|e| e.in_path(format!(".{key}")))
    }
    fn end(self) -> Result<(), SerpentError> {
        self.close()
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = SerpentError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), SerpentError> {
        self.field(key);
        self.ser
            .child(value)
            .map_err(|e| e.in_path(format!(".{key}")))
    }
    fn end(self) -> Result<(), SerpentError> {
        self.close()
    }
}

fn bad_key(what: &str) -> SerpentError {
    SerpentError::new(
        SerpentErrorKind::Unsupported,
        format!(
            "{what} cannot be a dict key: Python's serpent only allows bool, int, float, str, \
             bytes and tuple keys; use a list of pairs instead"
        ),
    )
}

/// Serializes a dict key: only the types Python's serpent accepts as keys
/// (`_check_hashable_type`); everything else is written by the main serializer.
struct KeySerializer<'s, 'a> {
    ser: &'s mut Serializer<'a>,
}

impl<'s, 'a> ser::Serializer for KeySerializer<'s, 'a> {
    type Ok = ();
    type Error = SerpentError;
    type SerializeSeq = ser::Impossible<(), SerpentError>;
    type SerializeTuple = Compound<'s, 'a>;
    type SerializeTupleStruct = Compound<'s, 'a>;
    type SerializeTupleVariant = ser::Impossible<(), SerpentError>;
    type SerializeMap = ser::Impossible<(), SerpentError>;
    type SerializeStruct = ser::Impossible<(), SerpentError>;
    type SerializeStructVariant = ser::Impossible<(), SerpentError>;

    fn serialize_bool(self, v: bool) -> Result<(), SerpentError> {
        self.ser.serialize_bool(v)
    }
    fn serialize_i8(self, v: i8) -> Result<(), SerpentError> {
        self.ser.serialize_i8(v)
    }
    fn serialize_i16(self, v: i16) -> Result<(), SerpentError> {
        self.ser.serialize_i16(v)
    }
    fn serialize_i32(self, v: i32) -> Result<(), SerpentError> {
        self.ser.serialize_i32(v)
    }
    fn serialize_i64(self, v: i64) -> Result<(), SerpentError> {
        self.ser.serialize_i64(v)
    }
    fn serialize_i128(self, v: i128) -> Result<(), SerpentError> {
        self.ser.serialize_i128(v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), SerpentError> {
        self.ser.serialize_u8(v)
    }
    fn serialize_u16(self, v: u16) -> Result<(), SerpentError> {
        self.ser.serialize_u16(v)
    }
    fn serialize_u32(self, v: u32) -> Result<(), SerpentError> {
        self.ser.serialize_u32(v)
    }
    fn serialize_u64(self, v: u64) -> Result<(), SerpentError> {
        self.ser.serialize_u64(v)
    }
    fn serialize_u128(self, v: u128) -> Result<(), SerpentError> {
        self.ser.serialize_u128(v)
    }
    fn serialize_f32(self, v: f32) -> Result<(), SerpentError> {
        self.ser.serialize_f32(v)
    }
    fn serialize_f64(self, v: f64) -> Result<(), SerpentError> {
        self.ser.serialize_f64(v)
    }
    fn serialize_char(self, v: char) -> Result<(), SerpentError> {
        self.ser.serialize_char(v)
    }
    fn serialize_str(self, v: &str) -> Result<(), SerpentError> {
        self.ser.serialize_str(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), SerpentError> {
        self.ser.serialize_bytes(v)
    }
    fn serialize_none(self) -> Result<(), SerpentError> {
        Err(bad_key("None"))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), SerpentError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), SerpentError> {
        Err(bad_key("unit (None)"))
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<(), SerpentError> {
        Err(bad_key(&format!("unit struct {name} (None)")))
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), SerpentError> {
        self.ser.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), SerpentError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _value: &T,
    ) -> Result<(), SerpentError> {
        Err(bad_key(&format!(
            "enum variant {variant} with data (a dict)"
        )))
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, SerpentError> {
        Err(bad_key("a sequence (a list)"))
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'s, 'a>, SerpentError> {
        self.ser.serialize_tuple(len)
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Compound<'s, 'a>, SerpentError> {
        self.ser.serialize_tuple_struct(name, len)
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, SerpentError> {
        Err(bad_key(&format!(
            "enum variant {variant} with data (a dict)"
        )))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, SerpentError> {
        Err(bad_key("a map (a dict)"))
    }
    fn serialize_struct(
        self,
        name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, SerpentError> {
        Err(bad_key(&format!("struct {name} (a dict)")))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, SerpentError> {
        Err(bad_key(&format!(
            "enum variant {variant} with data (a dict)"
        )))
    }
}
