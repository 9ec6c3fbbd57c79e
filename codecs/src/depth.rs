//! A deserializer adapter that bounds nesting depth, for formats without their own limit
//! (bincode, postcard), so a recursive type cannot be driven into a stack overflow.
//!
//! With `OWNED_AS_BORROWED = true` it also asks the inner deserializer for borrowed strings
//! and bytes (`deserialize_str`/`deserialize_bytes`) where the visitor asked for owned ones.
//! bincode's owned path allocates a buffer of the length the input declares before reading
//! it; its borrowed path checks the length against the remaining input first.

use std::cell::Cell;
use std::fmt;

use crate::CodecError;
use serde::de::{self, DeserializeSeed, Deserializer, Error as _, Visitor};

pub(crate) const DEPTH_MSG: &str = "nesting depth limit exceeded";

/// A depth-limited deserializer.
pub(crate) struct Limited<'f, D, const OWNED_AS_BORROWED: bool> {
    de: D,
    left: usize,
    hit: &'f Cell<bool>,
}

impl<'f, D, const R: bool> Limited<'f, D, R> {
    /// Wraps `de`; `hit` is set when the limit is exceeded (some formats, e.g. postcard,
    /// drop the text of custom errors, so callers check the flag instead).
    pub(crate) fn new(de: D, max_depth: usize, hit: &'f Cell<bool>) -> Self {
        Limited {
            de,
            left: max_depth,
            hit,
        }
    }
}

struct Wrap<'f, V, const R: bool> {
    v: V,
    left: usize,
    hit: &'f Cell<bool>,
}

struct Seed<'f, S, const R: bool> {
    s: S,
    left: usize,
    hit: &'f Cell<bool>,
}

struct Acc<'f, A, const R: bool> {
    a: A,
    left: usize,
    hit: &'f Cell<bool>,
}

impl<'de, S: DeserializeSeed<'de>, const R: bool> DeserializeSeed<'de> for Seed<'_, S, R> {
    type Value = S::Value;
    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.s.deserialize(Limited::<'_, D, R> {
            de: d,
            left: self.left,
            hit: self.hit,
        })
    }
}

macro_rules! fwd_de {
    ($($m:ident),*) => {$(
        #[inline]
        fn $m<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
            self.de.$m(Wrap::<V, R> { v, left: self.left, hit: self.hit })
        }
    )*};
}

impl<'de, D: Deserializer<'de>, const R: bool> Deserializer<'de> for Limited<'_, D, R> {
    type Error = D::Error;

    fwd_de!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_bytes,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any
    );

    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        let w = Wrap::<V, R> {
            v,
            left: self.left,
            hit: self.hit,
        };
        if R {
            self.de.deserialize_str(w)
        } else {
            self.de.deserialize_string(w)
        }
    }
    #[inline]
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        let w = Wrap::<V, R> {
            v,
            left: self.left,
            hit: self.hit,
        };
        if R {
            self.de.deserialize_bytes(w)
        } else {
            self.de.deserialize_byte_buf(w)
        }
    }
    #[inline]
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.de.deserialize_unit_struct(
            name,
            Wrap::<V, R> {
                v,
                left: self.left,
                hit: self.hit,
            },
        )
    }
    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.de.deserialize_newtype_struct(
            name,
            Wrap::<V, R> {
                v,
                left: self.left,
                hit: self.hit,
            },
        )
    }
    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, D::Error> {
        self.de.deserialize_tuple(
            len,
            Wrap::<V, R> {
                v,
                left: self.left,
                hit: self.hit,
            },
        )
    }
    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.de.deserialize_tuple_struct(
            name,
            len,
            Wrap::<V, R> {
                v,
                left: self.left,
                hit: self.hit,
            },
        )
    }
    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.de.deserialize_struct(
            name,
            fields,
            Wrap::<V, R> {
                v,
                left: self.left,
                hit: self.hit,
            },
        )
    }
    #[inline]
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.de.deserialize_enum(
            name,
            variants,
            Wrap::<V, R> {
                v,
                left: self.left,
                hit: self.hit,
            },
        )
    }
    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

macro_rules! fwd_visit {
    ($($m:ident($t:ty)),*) => {$(
        #[inline]
        fn $m<E: de::Error>(self, x: $t) -> Result<V::Value, E> {
            self.v.$m(x)
        }
    )*};
}

impl<'de, V: Visitor<'de>, const R: bool> Visitor<'de> for Wrap<'_, V, R> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.v.expecting(f)
    }

    fwd_visit!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>)
    );

    #[inline]
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.v.visit_none()
    }
    #[inline]
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.v.visit_unit()
    }
    #[inline]
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        if self.left == 0 {
            self.hit.set(true);
            return Err(D::Error::custom(DEPTH_MSG));
        }
        self.v.visit_some(Limited::<D, R> {
            de: d,
            left: self.left - 1,
            hit: self.hit,
        })
    }
    #[inline]
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        if self.left == 0 {
            self.hit.set(true);
            return Err(D::Error::custom(DEPTH_MSG));
        }
        self.v.visit_newtype_struct(Limited::<D, R> {
            de: d,
            left: self.left - 1,
            hit: self.hit,
        })
    }
    #[inline]
    fn visit_seq<A: de::SeqAccess<'de>>(self, a: A) -> Result<V::Value, A::Error> {
        if self.left == 0 {
            self.hit.set(true);
            return Err(A::Error::custom(DEPTH_MSG));
        }
        self.v.visit_seq(Acc::<A, R> {
            a,
            left: self.left - 1,
            hit: self.hit,
        })
    }
    #[inline]
    fn visit_map<A: de::MapAccess<'de>>(self, a: A) -> Result<V::Value, A::Error> {
        if self.left == 0 {
            self.hit.set(true);
            return Err(A::Error::custom(DEPTH_MSG));
        }
        self.v.visit_map(Acc::<A, R> {
            a,
            left: self.left - 1,
            hit: self.hit,
        })
    }
    #[inline]
    fn visit_enum<A: de::EnumAccess<'de>>(self, a: A) -> Result<V::Value, A::Error> {
        if self.left == 0 {
            self.hit.set(true);
            return Err(A::Error::custom(DEPTH_MSG));
        }
        self.v.visit_enum(Acc::<A, R> {
            a,
            left: self.left - 1,
            hit: self.hit,
        })
    }
}

impl<'de, A: de::SeqAccess<'de>, const R: bool> de::SeqAccess<'de> for Acc<'_, A, R> {
    type Error = A::Error;
    #[inline]
    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        s: S,
    ) -> Result<Option<S::Value>, A::Error> {
        self.a.next_element_seed(Seed::<S, R> {
            s,
            left: self.left,
            hit: self.hit,
        })
    }
    fn size_hint(&self) -> Option<usize> {
        self.a.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>, const R: bool> de::MapAccess<'de> for Acc<'_, A, R> {
    type Error = A::Error;
    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        s: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.a.next_key_seed(Seed::<K, R> {
            s,
            left: self.left,
            hit: self.hit,
        })
    }
    #[inline]
    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, s: S) -> Result<S::Value, A::Error> {
        self.a.next_value_seed(Seed::<S, R> {
            s,
            left: self.left,
            hit: self.hit,
        })
    }
    fn size_hint(&self) -> Option<usize> {
        self.a.size_hint()
    }
}

impl<'de, 'f, A: de::EnumAccess<'de>, const R: bool> de::EnumAccess<'de> for Acc<'f, A, R> {
    type Error = A::Error;
    type Variant = Acc<'f, A::Variant, R>;
    #[inline]
    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        s: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let (left, hit) = (self.left, self.hit);
        let (value, variant) = self.a.variant_seed(Seed::<S, R> { s, left, hit })?;
        Ok((
            value,
            Acc {
                a: variant,
                left,
                hit,
            },
        ))
    }
}

impl<'de, A: de::VariantAccess<'de>, const R: bool> de::VariantAccess<'de> for Acc<'_, A, R> {
    type Error = A::Error;
    #[inline]
    fn unit_variant(self) -> Result<(), A::Error> {
        self.a.unit_variant()
    }
    #[inline]
    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, s: S) -> Result<S::Value, A::Error> {
        self.a.newtype_variant_seed(Seed::<S, R> {
            s,
            left: self.left,
            hit: self.hit,
        })
    }
    #[inline]
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, A::Error> {
        self.a.tuple_variant(
            len,
            Wrap::<V, R> {
                v,
                left: self.left,
                hit: self.hit,
            },
        )
    }
    #[inline]
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, A::Error> {
        self.a.struct_variant(
            fields,
            Wrap::<V, R> {
                v,
                left: self.left,
                hit: self.hit,
            },
        )
    }
}

/// Turns `err` into a limit error if the depth limit was hit while decoding.
#[cold]
pub(crate) fn limit_or(hit: &Cell<bool>, err: CodecError) -> CodecError {
    if hit.get() {
        CodecError::limit(
            err.codec(),
            "nesting depth limit exceeded (raise Limits::max_depth if the input is legitimate)",
        )
    } else {
        err
    }
}
