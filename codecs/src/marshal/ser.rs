//! The streaming serde `Serializer` for marshal: typed values straight to bytes.

use serde::ser::{self, Serialize};

use super::write::{enter, too_deep, unhashable, Writer};
use super::MAX_ENCODE_DEPTH;
use crate::CodecError;

/// Serializes into a [`Writer`]. `hashable`: the value is a dict key, where lists and
/// dicts are refused (Python could not load them).
pub(crate) struct Serializer<'w, 'a> {
    pub(crate) w: &'w mut Writer<'a>,
    pub(crate) depth: usize,
    pub(crate) hashable: bool,
}

impl<'w, 'a> Serializer<'w, 'a> {
    fn child(&mut self, hashable: bool) -> Result<Serializer<'_, 'a>, CodecError> {
        Ok(Serializer {
            w: self.w,
            depth: enter(self.depth)?,
            hashable,
        })
    }
}

/// A list, tuple or dict being written.
pub(crate) struct Compound<'w, 'a> {
    w: &'w mut Writer<'a>,
    depth: usize,
    hashable: bool,
    /// For a list of unknown length: where to patch the count.
    patch: Option<usize>,
    count: usize,
    /// Dicts to close at the end (1 for a dict or struct, 2 for a struct variant, 1 for a
    /// tuple variant's outer dict).
    closes: u8,
}

impl<'w, 'a> Compound<'w, 'a> {
    fn element<T: Serialize + ?Sized>(&mut self, v: &T, hashable: bool) -> Result<(), CodecError> {
        self.count += 1;
        v.serialize(Serializer {
            w: self.w,
            depth: self.depth,
            hashable,
        })
    }

    fn finish(self) -> Result<(), CodecError> {
        if let Some(at) = self.patch {
            self.w.patch_len(at, self.count)?;
        }
        for _ in 0..self.closes {
            self.w.dict_close();
        }
        Ok(())
    }
}

impl<'w, 'a> ser::Serializer for Serializer<'w, 'a> {
    type Ok = ();
    type Error = CodecError;
    type SerializeSeq = Compound<'w, 'a>;
    type SerializeTuple = Compound<'w, 'a>;
    type SerializeTupleStruct = Compound<'w, 'a>;
    type SerializeTupleVariant = Compound<'w, 'a>;
    type SerializeMap = Compound<'w, 'a>;
    type SerializeStruct = Compound<'w, 'a>;
    type SerializeStructVariant = Compound<'w, 'a>;

    fn serialize_bool(self, v: bool) -> Result<(), CodecError> {
        self.w.bool(v);
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), CodecError> {
        self.w.int(v.into(), false);
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<(), CodecError> {
        self.w.int(v.into(), false);
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<(), CodecError> {
        self.w.int(v.into(), false);
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), CodecError> {
        self.w.int(v.into(), false);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), CodecError> {
        self.w.int(v, false);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), CodecError> {
        self.w.int(v.into(), false);
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), CodecError> {
        self.w.int(v.into(), false);
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<(), CodecError> {
        self.w.int(v.into(), false);
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), CodecError> {
        self.w.int(v.into(), false);
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), CodecError> {
        match i128::try_from(v) {
            Ok(i) => self.w.int(i, false),
            Err(_) => self.w.bigint(&v.into(), false)?,
        }
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), CodecError> {
        self.w.float(v.into(), false);
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), CodecError> {
        self.w.float(v, false);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), CodecError> {
        let mut buf = [0u8; 4];
        self.w.str(v.encode_utf8(&mut buf), false)
    }
    fn serialize_str(self, v: &str) -> Result<(), CodecError> {
        self.w.str(v, false)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), CodecError> {
        self.w.bytes(v, false)
    }
    fn serialize_none(self) -> Result<(), CodecError> {
        self.w.none();
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CodecError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), CodecError> {
        self.w.none();
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), CodecError> {
        self.w.none();
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), CodecError> {
        self.w.str(variant, false)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), CodecError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        mut self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), CodecError> {
        if self.hashable {
            return Err(unhashable("dict (an enum variant with data)"));
        }
        let child = self.child(false)?;
        child.w.dict_open();
        child.w.str(variant, false)?;
        value.serialize(Serializer {
            w: &mut *child.w,
            depth: child.depth,
            hashable: false,
        })?;
        child.w.dict_close();
        Ok(())
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'w, 'a>, CodecError> {
        if self.hashable {
            return Err(unhashable("list"));
        }
        let depth = enter(self.depth)?;
        let patch = match len {
            Some(n) => {
                self.w.list_header(n)?;
                None
            }
            None => Some(self.w.list_open()),
        };
        Ok(Compound {
            w: self.w,
            depth,
            hashable: false,
            patch,
            count: 0,
            closes: 0,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'w, 'a>, CodecError> {
        let depth = enter(self.depth)?;
        self.w.tuple_header(len, false)?;
        Ok(Compound {
            w: self.w,
            depth,
            hashable: self.hashable,
            patch: None,
            count: 0,
            closes: 0,
        })
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'w, 'a>, CodecError> {
        self.serialize_tuple(len)
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'w, 'a>, CodecError> {
        if self.hashable {
            return Err(unhashable("dict (an enum variant with data)"));
        }
        if self.depth + 2 > MAX_ENCODE_DEPTH {
            return Err(too_deep());
        }
        self.w.dict_open();
        self.w.str(variant, false)?;
        self.w.tuple_header(len, false)?;
        Ok(Compound {
            w: self.w,
            depth: self.depth + 2,
            hashable: false,
            patch: None,
            count: 0,
            closes: 1,
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'w, 'a>, CodecError> {
        if self.hashable {
            return Err(unhashable("dict"));
        }
        let depth = enter(self.depth)?;
        self.w.dict_open();
        Ok(Compound {
            w: self.w,
            depth,
            hashable: false,
            patch: None,
            count: 0,
            closes: 1,
        })
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'w, 'a>, CodecError> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'w, 'a>, CodecError> {
        if self.hashable {
            return Err(unhashable("dict (an enum variant with data)"));
        }
        if self.depth + 2 > MAX_ENCODE_DEPTH {
            return Err(too_deep());
        }
        self.w.dict_open();
        self.w.str(variant, false)?;
        self.w.dict_open();
        Ok(Compound {
            w: self.w,
            depth: self.depth + 2,
            hashable: false,
            patch: None,
            count: 0,
            closes: 2,
        })
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = CodecError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CodecError> {
        self.element(v, false)
    }
    fn end(self) -> Result<(), CodecError> {
        self.finish()
    }
}

impl ser::SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = CodecError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CodecError> {
        let h = self.hashable;
        self.element(v, h)
    }
    fn end(self) -> Result<(), CodecError> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = CodecError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CodecError> {
        let h = self.hashable;
        self.element(v, h)
    }
    fn end(self) -> Result<(), CodecError> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = CodecError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CodecError> {
        self.element(v, false)
    }
    fn end(self) -> Result<(), CodecError> {
        self.finish()
    }
}

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = CodecError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), CodecError> {
        self.element(k, true)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CodecError> {
        self.element(v, false)
    }
    fn end(self) -> Result<(), CodecError> {
        self.finish()
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = CodecError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), CodecError> {
        self.w.str(key, false)?;
        self.element(v, false)
    }
    fn end(self) -> Result<(), CodecError> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = CodecError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), CodecError> {
        self.w.str(key, false)?;
        self.element(v, false)
    }
    fn end(self) -> Result<(), CodecError> {
        self.finish()
    }
}
