//! The serde `Deserializer` over a parsed serpent tree.
//!
//! Conversions a typed target may ask for, beyond the literal types:
//! - bytes targets accept `b'...'` literals, serpent's base64 dict
//!   `{'data': '...', 'encoding': 'base64'}`, and str (its UTF-8 bytes);
//! - sequences of u8 (e.g. `Vec<u8>` without `serde_bytes`) accept the base64 dict too;
//! - float targets accept ints and serpent's NaN dict `{'__class__':'float','value':'nan'}`;
//! - sequence and tuple targets accept lists, tuples and sets;
//! - struct targets accept dicts (by field name) and lists/tuples (by position);
//! - enums: `'Variant'` for unit variants, `{'Variant': value}` for the others.

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::error::{SerpentError, SerpentErrorKind as K};
use super::parse::{Node, Spanned};

pub(crate) struct Ctx<'s> {
    pub(crate) src: &'s [u8],
}

pub(crate) struct NodeDe<'c> {
    pub(crate) node: Spanned,
    pub(crate) ctx: &'c Ctx<'c>,
}

type Result<T> = std::result::Result<T, SerpentError>;

fn dict_get<'n>(entries: &'n [(Spanned, Spanned)], key: &str) -> Option<&'n Node> {
    entries.iter().find_map(|(k, v)| match &k.node {
        Node::Str(s) if s == key => Some(&v.node),
        _ => None,
    })
}

/// The payload of serpent's base64 bytes dict, if `node` is one.
pub(crate) fn base64_dict(node: &Node) -> Option<&str> {
    let Node::Dict(entries) = node else {
        return None;
    };
    match (dict_get(entries, "encoding"), dict_get(entries, "data")) {
        (Some(Node::Str(enc)), Some(Node::Str(data))) if enc == "base64" => Some(data),
        _ => None,
    }
}

/// The float a `{'__class__':'float','value':'nan'}` dict stands for.
fn float_dict(node: &Node) -> Option<f64> {
    let Node::Dict(entries) = node else {
        return None;
    };
    match (dict_get(entries, "__class__"), dict_get(entries, "value")) {
        (Some(Node::Str(c)), Some(Node::Str(v))) if c == "float" => {
            match v.trim().to_ascii_lowercase().as_str() {
                "nan" | "+nan" | "-nan" => Some(f64::NAN),
                "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
                "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
                _ => None,
            }
        }
        _ => None,
    }
}

fn visit_items<'de, V: Visitor<'de>>(
    ctx: &Ctx<'_>,
    pos: usize,
    items: Vec<Spanned>,
    visitor: V,
) -> Result<V::Value> {
    let mut access = SeqDe {
        iter: items.into_iter(),
        ctx,
    };
    let v = visitor.visit_seq(&mut access)?;
    match access.iter.len() {
        0 => Ok(v),
        n => Err(SerpentError::at(
            K::TypeMismatch,
            format!("{n} more element(s) than the target type takes"),
            ctx.src,
            pos,
        )),
    }
}

fn visit_entries<'de, V: Visitor<'de>>(
    ctx: &Ctx<'_>,
    entries: Vec<(Spanned, Spanned)>,
    visitor: V,
) -> Result<V::Value> {
    let mut access = MapDe {
        iter: entries.into_iter(),
        value: None,
        ctx,
    };
    visitor.visit_map(&mut access)
}

impl<'c> NodeDe<'c> {
    fn err(&self, kind: K, msg: impl Into<String>) -> SerpentError {
        SerpentError::at(kind, msg, self.ctx.src, self.node.pos)
    }

    fn mismatch(&self, expected: &str) -> SerpentError {
        self.err(
            K::TypeMismatch,
            format!(
                "expected {expected}, found a {}",
                self.node.node.type_name()
            ),
        )
    }

    fn decode_base64(&self, data: &str) -> Result<Vec<u8>> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(data.as_bytes())
            .map_err(|e| {
                self.err(
                    K::TypeMismatch,
                    format!("invalid base64 in bytes dict: {e}"),
                )
            })
    }

    fn int<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let pos = self.node.pos;
        let src = self.ctx.src;
        let r = match self.node.node {
            Node::Int(i) => {
                if let Ok(v) = i64::try_from(i) {
                    visitor.visit_i64(v)
                } else if let Ok(v) = u64::try_from(i) {
                    visitor.visit_u64(v)
                } else {
                    visitor.visit_i128(i)
                }
            }
            Node::Bool(b) => visitor.visit_bool(b),
            Node::BigInt(ref b) => Err(SerpentError::new(
                K::TypeMismatch,
                format!("integer of {} bits does not fit in 128 bits", b.bits()),
            )),
            _ => {
                return NodeDe {
                    node: self.node,
                    ctx: self.ctx,
                }
                .deserialize_any_inner(visitor)
            }
        };
        r.map_err(|e: SerpentError| e.or_at(src, pos))
    }

    fn deserialize_any_inner<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let pos = self.node.pos;
        let src = self.ctx.src;
        let r = match self.node.node {
            Node::None => visitor.visit_unit(),
            Node::Bool(b) => visitor.visit_bool(b),
            Node::Int(_) | Node::BigInt(_) => return self.int(visitor),
            Node::Float(f) => visitor.visit_f64(f),
            Node::Complex(re, im) => {
                visit_entries(self.ctx, super::complex_entries(re, im, pos), visitor)
            }
            Node::Str(s) => visitor.visit_string(s),
            Node::Bytes(b) => visitor.visit_byte_buf(b),
            Node::List(items) | Node::Tuple(items) | Node::Set(items) => {
                visit_items(self.ctx, pos, items, visitor)
            }
            Node::Dict(entries) => visit_entries(self.ctx, entries, visitor),
        };
        r.map_err(|e: SerpentError| e.or_at(src, pos))
    }
}

impl<'de, 'c> de::Deserializer<'de> for NodeDe<'c> {
    type Error = SerpentError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_any_inner(visitor)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.node.node {
            Node::Bool(b) => visitor
                .visit_bool(b)
                .map_err(|e: SerpentError| e.or_at(self.ctx.src, self.node.pos)),
            _ => Err(self.mismatch("a bool")),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.node.node {
            Node::Int(_) | Node::BigInt(_) => self.int(visitor),
            _ => Err(self.mismatch("an integer")),
        }
    }
    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.node.node {
            Node::Int(i) if i >= 0 => visitor
                .visit_u128(i as u128)
                .map_err(|e: SerpentError| e.or_at(self.ctx.src, self.node.pos)),
            Node::BigInt(ref b) => match u128::try_from(b) {
                Ok(v) => visitor
                    .visit_u128(v)
                    .map_err(|e: SerpentError| e.or_at(self.ctx.src, self.node.pos)),
                Err(_) => Err(self.err(
                    K::TypeMismatch,
                    format!("integer of {} bits does not fit in u128", b.bits()),
                )),
            },
            Node::Int(_) => self.int(visitor),
            _ => Err(self.mismatch("an integer")),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_f64(visitor)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let v = match &self.node.node {
            Node::Float(f) => *f,
            Node::Int(i) => *i as f64,
            Node::BigInt(b) => super::parse::bigint_to_f64(b),
            other => match float_dict(other) {
                Some(f) => f,
                None => return Err(self.mismatch("a float")),
            },
        };
        visitor
            .visit_f64(v)
            .map_err(|e: SerpentError| e.or_at(self.ctx.src, self.node.pos))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_string(visitor)
    }
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_string(visitor)
    }
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let (src, pos) = (self.ctx.src, self.node.pos);
        match self.node.node {
            Node::Str(s) => visitor
                .visit_string(s)
                .map_err(|e: SerpentError| e.or_at(src, pos)),
            _ => Err(self.mismatch("a str")),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_byte_buf(visitor)
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let (src, pos) = (self.ctx.src, self.node.pos);
        if let Some(data) = base64_dict(&self.node.node) {
            let bytes = self.decode_base64(data)?;
            return visitor
                .visit_byte_buf(bytes)
                .map_err(|e: SerpentError| e.or_at(src, pos));
        }
        match self.node.node {
            Node::Bytes(b) => visitor
                .visit_byte_buf(b)
                .map_err(|e: SerpentError| e.or_at(src, pos)),
            Node::Str(s) => visitor
                .visit_byte_buf(s.into_bytes())
                .map_err(|e: SerpentError| e.or_at(src, pos)),
            Node::List(_) | Node::Tuple(_) => self.deserialize_seq(visitor),
            _ => Err(self.mismatch("bytes (b'...' or a base64 bytes dict)")),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.node.node {
            Node::None => visitor.visit_none(),
            _ => {
                let (src, pos) = (self.ctx.src, self.node.pos);
                visitor
                    .visit_some(self)
                    .map_err(|e: SerpentError| e.or_at(src, pos))
            }
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match &self.node.node {
            Node::None => visitor.visit_unit(),
            Node::Tuple(items) if items.is_empty() => visitor.visit_unit(),
            _ => Err(self.mismatch("None")),
        }
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_unit(visitor)
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        let (src, pos) = (self.ctx.src, self.node.pos);
        visitor
            .visit_newtype_struct(self)
            .map_err(|e: SerpentError| e.or_at(src, pos))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let (src, pos) = (self.ctx.src, self.node.pos);
        if let Some(data) = base64_dict(&self.node.node) {
            let bytes = self.decode_base64(data)?;
            return visitor
                .visit_seq(de::value::SeqDeserializer::<_, SerpentError>::new(
                    bytes.into_iter(),
                ))
                .map_err(|e: SerpentError| e.or_at(src, pos));
        }
        match self.node.node {
            Node::List(items) | Node::Tuple(items) | Node::Set(items) => {
                visit_items(self.ctx, pos, items, visitor)
                    .map_err(|e: SerpentError| e.or_at(src, pos))
            }
            Node::Bytes(b) => visitor
                .visit_seq(de::value::SeqDeserializer::<_, SerpentError>::new(
                    b.into_iter(),
                ))
                .map_err(|e: SerpentError| e.or_at(src, pos)),
            _ => Err(self.mismatch("a list, tuple or set")),
        }
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let (src, pos) = (self.ctx.src, self.node.pos);
        match self.node.node {
            Node::Dict(entries) => visit_entries(self.ctx, entries, visitor)
                .map_err(|e: SerpentError| e.or_at(src, pos)),
            _ => Err(self.mismatch("a dict")),
        }
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.node.node {
            Node::Dict(_) => self.deserialize_map(visitor),
            Node::List(_) | Node::Tuple(_) => self.deserialize_seq(visitor),
            _ => Err(self.mismatch("a dict")),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let (src, pos) = (self.ctx.src, self.node.pos);
        match self.node.node {
            Node::Str(s) => visitor
                .visit_enum(s.into_deserializer())
                .map_err(|e: SerpentError| e.or_at(src, pos)),
            Node::Dict(mut entries) if entries.len() == 1 => {
                let Some((k, v)) = entries.pop() else {
                    return Err(SerpentError::at(K::TypeMismatch, "empty dict", src, pos));
                };
                visitor
                    .visit_enum(EnumDe {
                        key: k,
                        value: v,
                        ctx: self.ctx,
                    })
                    .map_err(|e: SerpentError| e.or_at(src, pos))
            }
            _ => Err(self.mismatch("an enum: 'Variant' or {'Variant': value}")),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_any(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }
}

struct SeqDe<'c> {
    iter: std::vec::IntoIter<Spanned>,
    ctx: &'c Ctx<'c>,
}

impl<'de, 'c> de::SeqAccess<'de> for SeqDe<'c> {
    type Error = SerpentError;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        match self.iter.next() {
            Some(node) => seed
                .deserialize(NodeDe {
                    node,
                    ctx: self.ctx,
                })
                .map(Some),
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct MapDe<'c> {
    iter: std::vec::IntoIter<(Spanned, Spanned)>,
    value: Option<Spanned>,
    ctx: &'c Ctx<'c>,
}

impl<'de, 'c> de::MapAccess<'de> for MapDe<'c> {
    type Error = SerpentError;
    fn next_key_seed<K2: DeserializeSeed<'de>>(&mut self, seed: K2) -> Result<Option<K2::Value>> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(NodeDe {
                    node: k,
                    ctx: self.ctx,
                })
                .map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V2: DeserializeSeed<'de>>(&mut self, seed: V2) -> Result<V2::Value> {
        match self.value.take() {
            Some(v) => seed.deserialize(NodeDe {
                node: v,
                ctx: self.ctx,
            }),
            None => Err(SerpentError::new(
                K::Custom,
                "map value requested before its key",
            )),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct EnumDe<'c> {
    key: Spanned,
    value: Spanned,
    ctx: &'c Ctx<'c>,
}

impl<'de, 'c> de::EnumAccess<'de> for EnumDe<'c> {
    type Error = SerpentError;
    type Variant = NodeDe<'c>;
    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, NodeDe<'c>)> {
        let v = seed.deserialize(NodeDe {
            node: self.key,
            ctx: self.ctx,
        })?;
        Ok((
            v,
            NodeDe {
                node: self.value,
                ctx: self.ctx,
            },
        ))
    }
}

impl<'de, 'c> de::VariantAccess<'de> for NodeDe<'c> {
    type Error = SerpentError;
    fn unit_variant(self) -> Result<()> {
        match self.node.node {
            Node::None => Ok(()),
            _ => Err(self.mismatch("None for a unit variant")),
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        de::Deserializer::deserialize_seq(self, visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
    }
}
