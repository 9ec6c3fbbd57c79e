//! The marshal reader: bytes to [`Value`], with references, limits checked before
//! allocating, and no panics on any input.

use num_bigint::{BigInt, BigUint, Sign};

use super::{
    complex_value, FLAG_REF, TYPE_ASCII, TYPE_ASCII_INTERNED, TYPE_BINARY_COMPLEX,
    TYPE_BINARY_FLOAT, TYPE_CODE, TYPE_COMPLEX, TYPE_DICT, TYPE_ELLIPSIS, TYPE_FALSE, TYPE_FLOAT,
    TYPE_FROZENSET, TYPE_INT, TYPE_INTERNED, TYPE_LIST, TYPE_LONG, TYPE_NONE, TYPE_NULL, TYPE_REF,
    TYPE_SET, TYPE_SHORT_ASCII, TYPE_SHORT_ASCII_INTERNED, TYPE_SMALL_TUPLE, TYPE_STOPITER,
    TYPE_STRING, TYPE_TRUE, TYPE_TUPLE, TYPE_UNICODE,
};
use crate::value::MAX_PREALLOC;
use crate::{CodecError, CodecId, Limits, Value};

const ID: CodecId = CodecId::MARSHAL;

/// The size in bytes of a `TYPE_REF`: expanding a reference to an object of at most this
/// size costs nothing against the expansion budget.
const REF_SIZE: usize = 5;

/// Where a flagged object sits in the input; `end == usize::MAX` while it is being read.
#[derive(Clone, Copy)]
struct Slot {
    start: usize,
    end: usize,
}

pub(crate) struct Reader<'a> {
    src: &'a [u8],
    pos: usize,
    depth: usize,
    max_depth: usize,
    refs: Vec<Slot>,
    /// Non-zero while a reference is being expanded: flags register nothing then.
    replaying: usize,
    /// The input length as if every reference expanded so far had been written out.
    expanded: usize,
    max_input: usize,
}

#[cold]
fn bad(at: usize, msg: impl std::fmt::Display) -> CodecError {
    CodecError::decode(ID, format!("bad marshal data at byte {at}: {msg}"))
}

/// Valid marshal data that a [`Value`] cannot hold: still a decode error (the bytes cannot
/// become the requested value), worded as such.
#[cold]
fn unsupported(at: usize, msg: impl std::fmt::Display) -> CodecError {
    CodecError::decode(ID, format!("unsupported marshal data at byte {at}: {msg}"))
}

impl<'a> Reader<'a> {
    pub(crate) fn new(src: &'a [u8], limits: &Limits) -> Self {
        Reader {
            src,
            pos: 0,
            depth: 0,
            max_depth: limits.max_depth,
            refs: Vec::new(),
            replaying: 0,
            expanded: src.len(),
            max_input: limits.max_input,
        }
    }

    /// Reads one value that must span the whole input.
    pub(crate) fn read_all(mut self) -> Result<Value, CodecError> {
        let v = self.value()?;
        if self.pos != self.src.len() {
            return Err(CodecError::decode(
                ID,
                crate::formats::trailing_msg(self.src.len() - self.pos),
            ));
        }
        Ok(v)
    }

    #[inline]
    fn remaining(&self) -> usize {
        self.src.len() - self.pos
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let src: &'a [u8] = self.src;
        match src.get(self.pos..self.pos.saturating_add(n)) {
            Some(s) if n <= self.remaining() => {
                self.pos += n;
                Ok(s)
            }
            _ => Err(bad(
                self.pos,
                format!(
                    "{n} byte(s) needed, {} left (truncated input)",
                    self.remaining()
                ),
            )),
        }
    }

    #[inline]
    fn byte(&mut self) -> Result<u8, CodecError> {
        let b = *self
            .src
            .get(self.pos)
            .ok_or_else(|| bad(self.pos, "unexpected end of input"))?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn i32(&mut self) -> Result<i32, CodecError> {
        let b = self.take(4)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    #[inline]
    fn f64(&mut self) -> Result<f64, CodecError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_le_bytes(a))
    }

    /// A 32-bit count or length, checked to be non-negative and to fit the remaining
    /// input at `min_each` bytes per element.
    fn count(&mut self, what: &str, min_each: usize) -> Result<usize, CodecError> {
        let at = self.pos;
        let n = self.i32()?;
        let n = usize::try_from(n).map_err(|_| bad(at, format!("negative {what} size {n}")))?;
        if n.saturating_mul(min_each) > self.remaining() {
            return Err(bad(
                at,
                format!(
                    "{what} of {n} declared with {} byte(s) left (truncated or corrupt input)",
                    self.remaining()
                ),
            ));
        }
        Ok(n)
    }

    fn enter(&mut self) -> Result<(), CodecError> {
        if self.depth >= self.max_depth {
            return Err(CodecError::limit(
                ID,
                format!(
                    "nesting depth limit of {} exceeded at byte {} (raise Limits::max_depth if \
                     the input is legitimate)",
                    self.max_depth, self.pos
                ),
            ));
        }
        self.depth += 1;
        Ok(())
    }

    pub(crate) fn value(&mut self) -> Result<Value, CodecError> {
        let start = self.pos;
        let code = self.byte()?;
        let ty = code & !FLAG_REF;
        match ty {
            // Constants ignore the flag, as CPython does.
            TYPE_NONE => return Ok(Value::Null),
            TYPE_TRUE => return Ok(Value::Bool(true)),
            TYPE_FALSE => return Ok(Value::Bool(false)),
            TYPE_REF => return self.reference(start),
            _ => {}
        }
        let slot = if code & FLAG_REF != 0 && self.replaying == 0 {
            self.refs.push(Slot {
                start,
                end: usize::MAX,
            });
            Some(self.refs.len() - 1)
        } else {
            None
        };
        let v = self.object(ty, start)?;
        if let Some(i) = slot {
            if let Some(s) = self.refs.get_mut(i) {
                s.end = self.pos;
            }
        }
        Ok(v)
    }

    fn reference(&mut self, start: usize) -> Result<Value, CodecError> {
        let n = self.i32()?;
        let slot = usize::try_from(n)
            .ok()
            .and_then(|i| self.refs.get(i).copied())
            .ok_or_else(|| {
                bad(
                    start,
                    format!(
                        "invalid reference {n} ({} object(s) flagged so far)",
                        self.refs.len()
                    ),
                )
            })?;
        if slot.end == usize::MAX {
            return Err(bad(
                start,
                format!(
                    "reference {n} to an object that is still being read (a recursive \
                     structure, which a Value cannot hold)"
                ),
            ));
        }
        self.expanded = self
            .expanded
            .saturating_add((slot.end - slot.start).saturating_sub(REF_SIZE));
        if self.expanded > self.max_input {
            return Err(CodecError::limit(
                ID,
                format!(
                    "references expand the input beyond the maximum of {} bytes (raise \
                     Limits::max_input if it is legitimate)",
                    self.max_input
                ),
            ));
        }
        let back = self.pos;
        self.pos = slot.start;
        self.replaying += 1;
        let v = self.value();
        self.replaying -= 1;
        self.pos = back;
        v
    }

    fn object(&mut self, ty: u8, start: usize) -> Result<Value, CodecError> {
        Ok(match ty {
            TYPE_INT => Value::Int(self.i32()?.into()),
            TYPE_LONG => self.long(start)?,
            TYPE_BINARY_FLOAT => Value::Float(self.f64()?),
            TYPE_BINARY_COMPLEX => {
                let re = self.f64()?;
                let im = self.f64()?;
                complex_value(re, im)
            }
            TYPE_FLOAT => Value::Float(self.text_float()?),
            TYPE_COMPLEX => {
                let re = self.text_float()?;
                let im = self.text_float()?;
                complex_value(re, im)
            }
            TYPE_STRING => {
                let n = self.count("bytes", 1)?;
                Value::Bytes(self.take(n)?.to_vec())
            }
            TYPE_UNICODE | TYPE_INTERNED => {
                let n = self.count("string", 1)?;
                let at = self.pos;
                let b = self.take(n)?;
                match std::str::from_utf8(b) {
                    Ok(s) => Value::Str(s.to_owned()),
                    Err(e) => return Err(utf8_error(b, at, e)),
                }
            }
            TYPE_ASCII | TYPE_ASCII_INTERNED => {
                let n = self.count("string", 1)?;
                latin1(self.take(n)?)
            }
            TYPE_SHORT_ASCII | TYPE_SHORT_ASCII_INTERNED => {
                let n = usize::from(self.byte()?);
                latin1(self.take(n)?)
            }
            TYPE_SMALL_TUPLE => {
                let n = usize::from(self.byte()?);
                Value::Tuple(self.items(n)?)
            }
            TYPE_TUPLE => {
                let n = self.count("tuple", 1)?;
                Value::Tuple(self.items(n)?)
            }
            TYPE_LIST => {
                let n = self.count("list", 1)?;
                Value::List(self.items(n)?)
            }
            TYPE_SET | TYPE_FROZENSET => {
                let n = self.count("set", 1)?;
                Value::Set(self.items(n)?)
            }
            TYPE_DICT => self.dict()?,
            TYPE_NULL => {
                return Err(bad(
                    start,
                    "NULL object (type '0') where a value is expected",
                ))
            }
            TYPE_CODE => {
                return Err(unsupported(
                    start,
                    "a Python code object cannot be decoded (Pyro never sends one)",
                ))
            }
            TYPE_STOPITER | TYPE_ELLIPSIS => {
                return Err(unsupported(
                    start,
                    format!(
                        "Python's {} has no Value equivalent",
                        if ty == TYPE_STOPITER {
                            "StopIteration"
                        } else {
                            "Ellipsis"
                        }
                    ),
                ))
            }
            other => {
                return Err(bad(
                    start,
                    format!("unknown type code 0x{other:02x} ({:?})", char::from(other)),
                ))
            }
        })
    }

    fn items(&mut self, n: usize) -> Result<Vec<Value>, CodecError> {
        if n > self.remaining() {
            return Err(bad(
                self.pos,
                format!(
                    "{n} elements declared with {} byte(s) left",
                    self.remaining()
                ),
            ));
        }
        self.enter()?;
        let mut v = Vec::with_capacity(n.min(MAX_PREALLOC));
        for _ in 0..n {
            v.push(self.value()?);
        }
        self.depth -= 1;
        Ok(v)
    }

    fn dict(&mut self) -> Result<Value, CodecError> {
        self.enter()?;
        let mut entries = Vec::new();
        loop {
            let at = self.pos;
            let code = *self
                .src
                .get(at)
                .ok_or_else(|| bad(at, "unterminated dict (no '0' after the last entry)"))?;
            if code & !FLAG_REF == TYPE_NULL {
                self.pos += 1;
                break;
            }
            let k = self.value()?;
            if self.src.get(self.pos).map(|c| c & !FLAG_REF) == Some(TYPE_NULL) {
                return Err(bad(self.pos, "dict key without a value"));
            }
            let v = self.value()?;
            entries.push((k, v));
        }
        self.depth -= 1;
        Ok(Value::Map(entries))
    }

    fn long(&mut self, start: usize) -> Result<Value, CodecError> {
        let n = self.i32()?;
        if n == i32::MIN {
            return Err(bad(start, "long size out of range"));
        }
        let count = n.unsigned_abs() as usize;
        if count.saturating_mul(2) > self.remaining() {
            return Err(bad(
                start,
                format!(
                    "integer of {count} digits declared with {} byte(s) left",
                    self.remaining()
                ),
            ));
        }
        let raw = self.take(count * 2)?;
        let digit = |i: usize| u16::from_le_bytes([raw[2 * i], raw[2 * i + 1]]);
        for i in 0..count {
            if digit(i) >= 0x8000 {
                return Err(bad(start, "digit out of range in long"));
            }
        }
        if count > 0 && digit(count - 1) == 0 {
            return Err(bad(start, "unnormalized long data"));
        }
        if count <= 8 {
            // At most 120 bits: fits i128.
            let mut m: i128 = 0;
            for i in (0..count).rev() {
                m = (m << 15) | i128::from(digit(i));
            }
            return Ok(Value::Int(if n < 0 { -m } else { m }));
        }
        let mut words = Vec::with_capacity(count * 15 / 32 + 1);
        let (mut acc, mut bits) = (0u64, 0u32);
        for i in 0..count {
            acc |= u64::from(digit(i)) << bits;
            bits += 15;
            if bits >= 32 {
                words.push(acc as u32);
                acc >>= 32;
                bits -= 32;
            }
        }
        if bits > 0 {
            words.push(acc as u32);
        }
        let sign = if n < 0 { Sign::Minus } else { Sign::Plus };
        Ok(Value::from_bigint(BigInt::from_biguint(
            sign,
            BigUint::new(words),
        )))
    }

    /// The text float of marshal versions 0 and 1: a length byte and `repr` text.
    fn text_float(&mut self) -> Result<f64, CodecError> {
        let at = self.pos;
        let n = usize::from(self.byte()?);
        let text = self.take(n)?;
        std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
            .ok_or_else(|| {
                bad(
                    at,
                    format!("invalid float text {:?}", String::from_utf8_lossy(text)),
                )
            })
    }
}

/// The 1-byte strings of the ASCII type codes: CPython reads their bytes as Latin-1.
fn latin1(b: &[u8]) -> Value {
    if b.is_ascii() {
        // ASCII is valid UTF-8.
        Value::Str(String::from_utf8_lossy(b).into_owned())
    } else {
        Value::Str(b.iter().map(|&c| char::from(c)).collect())
    }
}

#[cold]
fn utf8_error(b: &[u8], at: usize, e: std::str::Utf8Error) -> CodecError {
    let bad_at = e.valid_up_to();
    // Python writes lone surrogates with `surrogatepass`: ED A0..BF xx.
    if b.get(bad_at) == Some(&0xed) && b.get(bad_at + 1).is_some_and(|c| (0xa0..=0xbf).contains(c))
    {
        unsupported(
            at + bad_at,
            "the string holds a lone surrogate (Python's surrogatepass UTF-8), which a Rust \
             string cannot hold",
        )
    } else {
        bad(at + bad_at, "string is not valid UTF-8")
    }
}
