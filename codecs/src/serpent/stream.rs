//! The streaming serde `Deserializer`: typed values straight from the text, without a tree.
//!
//! It covers what Python's serpent writes for typed data: lists and tuples streamed element
//! by element, dicts streamed entry by entry into structs and maps, plain quoted strings
//! borrowed from the input, plain decimal numbers (`-7`, `1.5`, `2.5e-07`, directly
//! followed by a delimiter; see [`Parser::fast_number`]) and `True` / `False`. Everything
//! else (sets, dict-shaped bytes, NaN and complex dicts, enums, keys that are containers,
//! parenthesized expressions, numbers in other forms) is parsed into a
//! [`Node`](super::parse::Node) and handed to the tree deserializer, one value at a time,
//! so the two paths share one set of rules.
//!
//! Any error stops the stream and [`super::from_slice`] decodes the document again with
//! the tree path, which reports it (or, where Python's rules differ from a streaming read,
//! e.g. a repeated dict key whose last value wins, decodes it). A document is therefore
//! decoded the same way by both paths; the stream is the fast path for valid data.

use serde::de::{self, DeserializeSeed, Visitor};

use super::de::{Ctx, NodeDe};
use super::error::{SerpentError, SerpentErrorKind as K};
use super::parse::{FastNum, Parser};

type Result<T> = std::result::Result<T, SerpentError>;

/// A streaming deserializer over a positioned parser.
pub(crate) struct StreamDe<'p, 'a> {
    pub(crate) p: &'p mut Parser<'a>,
}

#[cold]
fn give_up(what: &str) -> SerpentError {
    SerpentError::new(K::Custom, format!("streaming read stopped: {what}"))
}

impl<'a> StreamDe<'_, 'a> {
    /// The next non-blank byte (blanks skipped, newlines inside brackets included).
    #[inline]
    fn next_byte(&mut self) -> Option<u8> {
        self.p.skip_ws(false);
        self.p.peek()
    }

    /// Parses the next value into a node and deserializes it with the tree rules.
    #[inline(never)]
    fn tree(&mut self) -> Result<NodeDe<'static>> {
        let node = self.p.expr()?;
        Ok(NodeDe {
            node,
            ctx: &Ctx { src: &[] },
        })
    }

    /// A plain single- or double-quoted string without escapes, not continued by another
    /// literal: its text, borrowed from the input.
    #[inline]
    fn plain_str(&mut self) -> Option<&'a str> {
        let b: &'a [u8] = self.p.b;
        let start = self.p.pos;
        let q = *b.get(start)?;
        if q != b'\'' && q != b'"' {
            return None;
        }
        let body = start + 1;
        let len = b
            .get(body..)?
            .iter()
            .position(|&c| STR_STOP[usize::from(c)])?;
        let end = body + len;
        if b[end] != q || (len == 0 && b.get(end + 1) == Some(&q)) {
            // An escape, a line break, or a triple-quoted string: the careful way.
            return None;
        }
        // Implicit concatenation (`'a' 'b'`) is the careful way too.
        let mut after = end + 1;
        while matches!(b.get(after), Some(b' ' | b'\t')) {
            after += 1;
        }
        match b.get(after) {
            None | Some(b',' | b':' | b']' | b')' | b'}' | b'\n' | b'\r' | b'#') => {}
            _ => return None,
        }
        // The document was checked as UTF-8 as a whole; the quotes are ASCII boundaries.
        let text = self.p.s.get(body..end)?;
        self.p.pos = end + 1;
        Some(text)
    }

    /// `True` or `False` as a whole word.
    #[inline]
    fn plain_bool(&mut self) -> Option<bool> {
        let b = self.p.b;
        let at = self.p.pos;
        let (v, len) = match b.get(at) {
            Some(b'T') if b.get(at..at + 4) == Some(b"True") => (true, 4),
            Some(b'F') if b.get(at..at + 5) == Some(b"False") => (false, 5),
            _ => return None,
        };
        if b.get(at + len).is_some_and(|&c| is_ident_byte(c)) {
            return None;
        }
        self.p.pos = at + len;
        Some(v)
    }

    /// An int for an integer target (a float there is the tree's type error).
    #[inline]
    fn int<'de, V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value> {
        self.p.skip_ws(false);
        match self.p.fast_number() {
            Some(FastNum::Int(i)) => visitor.visit_i64(i),
            Some(FastNum::Float(_)) => Err(give_up("a float for an integer")),
            None => de::Deserializer::deserialize_i64(self.tree()?, visitor),
        }
    }

    /// A float (or an int) for a float target.
    #[inline]
    fn float<'de, V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value> {
        self.p.skip_ws(false);
        match self.p.fast_number() {
            Some(FastNum::Float(f)) => visitor.visit_f64(f),
            Some(FastNum::Int(i)) => visitor.visit_f64(i as f64),
            None => de::Deserializer::deserialize_f64(self.tree()?, visitor),
        }
    }

    fn seq<'de, V: Visitor<'de>>(&mut self, close: u8, visitor: V) -> Result<V::Value>
    where
        'a: 'de,
    {
        self.p.open()?;
        let mut access = SeqStream {
            de: StreamDe { p: &mut *self.p },
            close,
            first: true,
            done: false,
            count: 0,
        };
        let v = visitor.visit_seq(&mut access)?;
        // Every element must have been taken (the tree path reports the extra ones).
        if !access.done && (access.first || access.de.p.more(close, "',' or a closing bracket")?) {
            return Err(give_up("elements left over"));
        }
        if close == b')' && access.count == 1 && !access.trailing_comma() {
            return Err(give_up("a parenthesized expression, not a tuple"));
        }
        self.p.leave();
        Ok(v)
    }

    fn dict<'de, V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value>
    where
        'a: 'de,
    {
        self.p.open()?;
        let mut access = MapStream {
            de: StreamDe { p: &mut *self.p },
            first: true,
            done: false,
        };
        let v = visitor.visit_map(&mut access)?;
        if !access.done {
            return Err(give_up("entries left over"));
        }
        self.p.leave();
        Ok(v)
    }
}

/// The bytes that end the fast scan of a quoted string: both quotes, backslash, line breaks.
static STR_STOP: [bool; 256] = {
    let mut t = [false; 256];
    t[b'\'' as usize] = true;
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[b'\n' as usize] = true;
    t[b'\r' as usize] = true;
    t
};

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

macro_rules! via_tree {
    ($($method:ident),*) => {$(
        fn $method<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value> {
            de::Deserializer::$method(self.tree()?, visitor)
        }
    )*};
}

impl<'de, 'a: 'de> de::Deserializer<'de> for StreamDe<'_, 'a> {
    type Error = SerpentError;

    fn deserialize_any<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value> {
        match self.next_byte() {
            Some(b'[') => self.seq(b']', visitor),
            Some(b'\'' | b'"') => match self.plain_str() {
                Some(s) => visitor.visit_borrowed_str(s),
                None => self.tree()?.deserialize_any(visitor),
            },
            Some(b'-' | b'0'..=b'9') => match self.p.fast_number() {
                // What the tree gives an `Int` that fits i64, and a `Float`.
                Some(FastNum::Int(i)) => visitor.visit_i64(i),
                Some(FastNum::Float(f)) => visitor.visit_f64(f),
                None => self.tree()?.deserialize_any(visitor),
            },
            Some(b'T' | b'F') => match self.plain_bool() {
                Some(v) => visitor.visit_bool(v),
                None => self.tree()?.deserialize_any(visitor),
            },
            _ => self.tree()?.deserialize_any(visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value> {
        self.p.skip_ws(false);
        match self.plain_bool() {
            Some(v) => visitor.visit_bool(v),
            None => self.tree()?.deserialize_bool(visitor),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.int(visitor)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.int(visitor)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.int(visitor)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.int(visitor)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.int(visitor)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.int(visitor)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.int(visitor)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.int(visitor)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.float(visitor)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.float(visitor)
    }

    via_tree!(
        deserialize_i128,
        deserialize_u128,
        deserialize_char,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_unit
    );

    fn deserialize_str<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value> {
        self.p.skip_ws(false);
        match self.plain_str() {
            Some(s) => visitor.visit_borrowed_str(s),
            None => self.tree()?.deserialize_str(visitor),
        }
    }
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_any(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.p.skip_ws(false);
        let b = self.p.b;
        let at = self.p.pos;
        if b.get(at..at + 4) == Some(b"None")
            && !b
                .get(at + 4)
                .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80)
        {
            self.p.pos = at + 4;
            return visitor.visit_none();
        }
        visitor.visit_some(self)
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
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value> {
        match self.next_byte() {
            Some(b'[') => self.seq(b']', visitor),
            Some(b'(') => self.seq(b')', visitor),
            _ => self.tree()?.deserialize_seq(visitor),
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

    fn deserialize_map<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value> {
        match self.next_byte() {
            Some(b'{') => self.dict(visitor),
            _ => self.tree()?.deserialize_map(visitor),
        }
    }
    fn deserialize_struct<V: Visitor<'de>>(
        mut self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.next_byte() {
            Some(b'{') => self.dict(visitor),
            Some(b'[') => self.seq(b']', visitor),
            Some(b'(') => self.seq(b')', visitor),
            _ => self.tree()?.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        mut self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.tree()?.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value> {
        self.tree()?;
        visitor.visit_unit()
    }
}

struct SeqStream<'p, 'a> {
    de: StreamDe<'p, 'a>,
    close: u8,
    first: bool,
    /// The closing bracket was reached.
    done: bool,
    count: usize,
}

impl SeqStream<'_, '_> {
    /// Whether the element just read is followed by a comma (at the closing bracket).
    fn trailing_comma(&self) -> bool {
        let b = self.de.p.b;
        let mut i = self.de.p.pos;
        while i > 0 {
            i -= 1;
            match b[i] {
                b' ' | b'\t' | b'\n' | b'\r' | 0x0C => continue,
                c => return c == b',',
            }
        }
        false
    }
}

impl<'de, 'a: 'de> de::SeqAccess<'de> for SeqStream<'_, 'a> {
    type Error = SerpentError;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.first {
            self.first = false;
            self.de.p.skip_ws(true);
            if self.de.p.peek() == Some(self.close) {
                self.done = true;
                return Ok(None);
            }
        } else if !self.de.p.more(self.close, "',' or a closing bracket")? {
            self.done = true;
            return Ok(None);
        }
        self.count += 1;
        seed.deserialize(StreamDe { p: &mut *self.de.p }).map(Some)
    }
}

struct MapStream<'p, 'a> {
    de: StreamDe<'p, 'a>,
    first: bool,
    /// The closing brace was reached.
    done: bool,
}

impl<'de, 'a: 'de> de::MapAccess<'de> for MapStream<'_, 'a> {
    type Error = SerpentError;
    fn next_key_seed<K2: DeserializeSeed<'de>>(&mut self, seed: K2) -> Result<Option<K2::Value>> {
        if self.first {
            self.first = false;
            self.de.p.skip_ws(true);
            if self.de.p.peek() == Some(b'}') {
                self.done = true;
                return Ok(None);
            }
        } else if !self.de.p.more(b'}', "',' or '}'")? {
            self.done = true;
            return Ok(None);
        }
        // Keys that are containers (tuples, or unhashable ones the tree path refuses) take
        // the tree path for the whole document.
        if matches!(self.de.p.peek(), Some(b'(' | b'[' | b'{')) {
            return Err(give_up("a container as a dict key"));
        }
        seed.deserialize(StreamDe { p: &mut *self.de.p }).map(Some)
    }
    fn next_value_seed<V2: DeserializeSeed<'de>>(&mut self, seed: V2) -> Result<V2::Value> {
        self.de.p.skip_ws(true);
        if self.de.p.peek() != Some(b':') {
            return Err(self.de.p.unexpected("':' after a dict key"));
        }
        self.de.p.pos += 1;
        self.de.p.skip_ws(true);
        seed.deserialize(StreamDe { p: &mut *self.de.p })
    }
}
