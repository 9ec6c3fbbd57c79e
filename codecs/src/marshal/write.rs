//! The marshal writer: the type codes and the reference bookkeeping shared by the `Value`
//! writer ([`Writer::value`]) and the serde serializer (`super::ser`).

use num_bigint::{BigInt, Sign};

use super::{
    complex_parts, FLAG_REF, MAX_ENCODE_DEPTH, TYPE_ASCII, TYPE_BINARY_COMPLEX, TYPE_BINARY_FLOAT,
    TYPE_DICT, TYPE_FALSE, TYPE_FROZENSET, TYPE_INT, TYPE_LIST, TYPE_LONG, TYPE_NONE, TYPE_NULL,
    TYPE_REF, TYPE_SET, TYPE_SHORT_ASCII, TYPE_SHORT_ASCII_INTERNED, TYPE_SMALL_TUPLE, TYPE_STRING,
    TYPE_TRUE, TYPE_TUPLE, TYPE_UNICODE,
};
use crate::value::ext_unsupported;
use crate::{CodecError, CodecId, Origin, Value};

const ID: CodecId = CodecId::MARSHAL;

// Slots of the objects CPython always shares (see the module documentation): the small
// ints -5..=256, the one-character strings U+0000..U+00FF, '', b'' and ().
const SMALL_INT_BASE: usize = 0;
const CHAR_BASE: usize = 262;
const EMPTY_STR: usize = 518;
const EMPTY_BYTES: usize = 519;
const EMPTY_TUPLE: usize = 520;
const SLOTS: usize = 521;

/// Appends marshal data to a byte vector, numbering references as CPython does.
pub(crate) struct Writer<'a> {
    pub(crate) out: &'a mut Vec<u8>,
    /// For each shared object: 0 when not written yet, else its reference index + 1.
    shared: [u32; SLOTS],
    /// The index the next flagged object gets.
    next: u32,
}

#[cold]
fn too_long(what: &str, len: usize) -> CodecError {
    CodecError::unsupported(
        ID,
        Origin::Local,
        format!("{what} of {len} elements or bytes exceeds marshal's 2^31-1 limit"),
    )
}

#[cold]
pub(crate) fn too_deep() -> CodecError {
    CodecError::encode(
        ID,
        format!(
            "object nesting deeper than {MAX_ENCODE_DEPTH} levels; flatten the data (Python's \
             marshal refuses 2000 levels)"
        ),
    )
}

#[cold]
pub(crate) fn unhashable(what: &str) -> CodecError {
    CodecError::unsupported(
        ID,
        Origin::Local,
        format!(
            "a {what} cannot be a dict key or a set member: Python's marshal.loads would fail \
             with `unhashable type`; use a tuple, str, int, float, bytes or a set (written as \
             a frozenset) instead"
        ),
    )
}

/// A length as marshal's signed 32-bit count.
#[inline]
pub(crate) fn len32(what: &str, len: usize) -> Result<u32, CodecError> {
    match i32::try_from(len) {
        Ok(n) => Ok(n as u32),
        Err(_) => Err(too_long(what, len)),
    }
}

impl<'a> Writer<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        Writer {
            out,
            shared: [0; SLOTS],
            next: 0,
        }
    }

    #[inline]
    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    /// Writes the type code of a shared object: a `TYPE_REF` to it when it was written
    /// before (returns true: nothing more to write), else `code | FLAG_REF`, numbering it.
    #[inline]
    fn shared(&mut self, slot: usize, code: u8) -> bool {
        let seen = self.shared[slot];
        if seen != 0 {
            self.out.push(TYPE_REF);
            self.u32(seen - 1);
            true
        } else {
            self.next += 1;
            self.shared[slot] = self.next;
            self.out.push(code | FLAG_REF);
            false
        }
    }

    /// The flag of an object that is not shared: `FLAG_REF` (and a new index) for a member
    /// of a set, which CPython holds twice while writing it, else nothing.
    #[inline]
    fn flag(&mut self, member: bool) -> u8 {
        if member {
            self.next += 1;
            FLAG_REF
        } else {
            0
        }
    }

    pub(crate) fn none(&mut self) {
        self.out.push(TYPE_NONE);
    }

    pub(crate) fn bool(&mut self, b: bool) {
        self.out.push(if b { TYPE_TRUE } else { TYPE_FALSE });
    }

    pub(crate) fn int(&mut self, v: i128, member: bool) {
        if (-5..=256).contains(&v) {
            if !self.shared(SMALL_INT_BASE + (v + 5) as usize, TYPE_INT) {
                self.out.extend_from_slice(&(v as i32).to_le_bytes());
            }
            return;
        }
        let flag = self.flag(member);
        if let Ok(x) = i32::try_from(v) {
            self.out.push(TYPE_INT | flag);
            self.out.extend_from_slice(&x.to_le_bytes());
            return;
        }
        // TYPE_LONG: a signed count of 15-bit digits, least significant first.
        let mut m = v.unsigned_abs();
        let mut digits = [0u16; 9];
        let mut n = 0;
        while m != 0 {
            digits[n] = (m & 0x7fff) as u16;
            m >>= 15;
            n += 1;
        }
        self.long(v < 0, &digits[..n], flag);
    }

    fn long(&mut self, negative: bool, digits: &[u16], flag: u8) {
        self.out.push(TYPE_LONG | flag);
        let n = digits.len() as i32;
        self.out
            .extend_from_slice(&(if negative { -n } else { n }).to_le_bytes());
        for d in digits {
            self.out.extend_from_slice(&d.to_le_bytes());
        }
    }

    pub(crate) fn bigint(&mut self, v: &BigInt, member: bool) -> Result<(), CodecError> {
        if let Ok(i) = i128::try_from(v) {
            self.int(i, member);
            return Ok(());
        }
        let (sign, words) = v.to_u32_digits();
        let mut digits = Vec::with_capacity(words.len() * 32 / 15 + 1);
        let (mut acc, mut bits) = (0u64, 0u32);
        for w in words {
            acc |= u64::from(w) << bits;
            bits += 32;
            while bits >= 15 {
                digits.push((acc & 0x7fff) as u16);
                acc >>= 15;
                bits -= 15;
            }
        }
        digits.push(acc as u16);
        while digits.last() == Some(&0) {
            digits.pop();
        }
        len32("integer", digits.len())?;
        let flag = self.flag(member);
        self.long(sign == Sign::Minus, &digits, flag);
        Ok(())
    }

    pub(crate) fn float(&mut self, f: f64, member: bool) {
        let flag = self.flag(member);
        self.out.push(TYPE_BINARY_FLOAT | flag);
        self.out.extend_from_slice(&f.to_le_bytes());
    }

    pub(crate) fn complex(&mut self, re: f64, im: f64, member: bool) {
        let flag = self.flag(member);
        self.out.push(TYPE_BINARY_COMPLEX | flag);
        self.out.extend_from_slice(&re.to_le_bytes());
        self.out.extend_from_slice(&im.to_le_bytes());
    }

    pub(crate) fn str(&mut self, s: &str, member: bool) -> Result<(), CodecError> {
        let b = s.as_bytes();
        match b.len() {
            0 => {
                // CPython's '' is interned.
                if !self.shared(EMPTY_STR, TYPE_SHORT_ASCII_INTERNED) {
                    self.out.push(0);
                }
                return Ok(());
            }
            1 => {
                if !self.shared(CHAR_BASE + usize::from(b[0]), TYPE_SHORT_ASCII) {
                    self.out.push(1);
                    self.out.push(b[0]);
                }
                return Ok(());
            }
            // One character U+0080..U+00FF: shared, written as UTF-8 (not ASCII).
            2 if b[0] == 0xc2 || b[0] == 0xc3 => {
                let c = (usize::from(b[0] & 0x1f) << 6) | usize::from(b[1] & 0x3f);
                if !self.shared(CHAR_BASE + c, TYPE_UNICODE) {
                    self.u32(2);
                    self.out.extend_from_slice(b);
                }
                return Ok(());
            }
            _ => {}
        }
        let flag = self.flag(member);
        if s.is_ascii() {
            if b.len() < 256 {
                self.out.push(TYPE_SHORT_ASCII | flag);
                self.out.push(b.len() as u8);
            } else {
                self.out.push(TYPE_ASCII | flag);
                let n = len32("string", b.len())?;
                self.u32(n);
            }
        } else {
            self.out.push(TYPE_UNICODE | flag);
            let n = len32("string", b.len())?;
            self.u32(n);
        }
        self.out.extend_from_slice(b);
        Ok(())
    }

    pub(crate) fn bytes(&mut self, b: &[u8], member: bool) -> Result<(), CodecError> {
        if b.is_empty() {
            if !self.shared(EMPTY_BYTES, TYPE_STRING) {
                self.u32(0);
            }
            return Ok(());
        }
        let n = len32("bytes", b.len())?;
        let flag = self.flag(member);
        self.out.push(TYPE_STRING | flag);
        self.u32(n);
        self.out.extend_from_slice(b);
        Ok(())
    }

    /// Writes a tuple header; returns false for the empty tuple when it was written as a
    /// reference (nothing follows either way for an empty tuple).
    pub(crate) fn tuple_header(&mut self, len: usize, member: bool) -> Result<(), CodecError> {
        if len == 0 {
            if !self.shared(EMPTY_TUPLE, TYPE_SMALL_TUPLE) {
                self.out.push(0);
            }
            return Ok(());
        }
        let flag = self.flag(member);
        if len < 256 {
            self.out.push(TYPE_SMALL_TUPLE | flag);
            self.out.push(len as u8);
        } else {
            let n = len32("tuple", len)?;
            self.out.push(TYPE_TUPLE | flag);
            self.u32(n);
        }
        Ok(())
    }

    pub(crate) fn list_header(&mut self, len: usize) -> Result<(), CodecError> {
        let n = len32("list", len)?;
        self.out.push(TYPE_LIST);
        self.u32(n);
        Ok(())
    }

    /// Starts a list whose length is not known yet; returns the offset to patch with
    /// [`Writer::patch_len`].
    pub(crate) fn list_open(&mut self) -> usize {
        self.out.push(TYPE_LIST);
        let at = self.out.len();
        self.u32(0);
        at
    }

    pub(crate) fn patch_len(&mut self, at: usize, len: usize) -> Result<(), CodecError> {
        let n = len32("list", len)?;
        if let Some(slot) = self.out.get_mut(at..at + 4) {
            slot.copy_from_slice(&n.to_le_bytes());
        }
        Ok(())
    }

    pub(crate) fn dict_open(&mut self) {
        self.out.push(TYPE_DICT);
    }

    pub(crate) fn dict_close(&mut self) {
        self.out.push(TYPE_NULL);
    }

    /// Writes a dynamic value. `member`: the value is a set member (flagged like CPython);
    /// `hashable`: it is a dict key or set member, where lists and dicts are refused and
    /// sets become frozensets.
    pub(crate) fn value(
        &mut self,
        v: &Value,
        depth: usize,
        member: bool,
        hashable: bool,
    ) -> Result<(), CodecError> {
        match v {
            Value::Null => self.none(),
            Value::Bool(b) => self.bool(*b),
            Value::Int(i) => self.int(*i, member),
            Value::BigInt(n) => self.bigint(n, member)?,
            Value::Float(f) => self.float(*f, member),
            Value::Str(s) => self.str(s, member)?,
            Value::Bytes(b) => self.bytes(b, member)?,
            Value::Ext { tag, data } => return Err(ext_unsupported(ID, *tag, data.len())),
            Value::Map(entries) => {
                if let Some((re, im)) = complex_parts(entries) {
                    self.complex(re, im, member);
                    return Ok(());
                }
                if hashable {
                    return Err(unhashable("dict"));
                }
                let depth = enter(depth)?;
                self.dict_open();
                for (k, x) in entries {
                    self.value(k, depth, false, true)?;
                    self.value(x, depth, false, false)?;
                }
                self.dict_close();
            }
            Value::List(items) => {
                if hashable {
                    return Err(unhashable("list"));
                }
                let depth = enter(depth)?;
                self.list_header(items.len())?;
                for x in items {
                    self.value(x, depth, false, false)?;
                }
            }
            Value::Tuple(items) => {
                let inner = enter(depth)?;
                self.tuple_header(items.len(), member)?;
                for x in items {
                    self.value(x, inner, false, hashable)?;
                }
            }
            Value::Set(items) => {
                let depth = enter(depth)?;
                let n = len32("set", items.len())?;
                let flag = if hashable { self.flag(member) } else { 0 };
                self.out
                    .push(if hashable { TYPE_FROZENSET } else { TYPE_SET } | flag);
                self.u32(n);
                for x in sorted_members(items, depth)? {
                    self.value(x, depth, true, true)?;
                }
            }
        }
        Ok(())
    }
}

/// The members of a set in the order CPython (3.11 and later) writes them:
/// `sorted(s, key=marshal.dumps)`, each member dumped on its own. Out of line so that the
/// recursive [`Writer::value`] frame does not hold a second writer's reference table.
#[inline(never)]
fn sorted_members(items: &[Value], depth: usize) -> Result<Vec<&Value>, CodecError> {
    let mut keyed = Vec::with_capacity(items.len());
    for x in items {
        let mut alone = Vec::new();
        Writer::new(&mut alone).value(x, depth, false, true)?;
        keyed.push((alone, x));
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(keyed.into_iter().map(|(_, x)| x).collect())
}

/// One level deeper, refusing more than [`MAX_ENCODE_DEPTH`].
#[inline]
pub(crate) fn enter(depth: usize) -> Result<usize, CodecError> {
    if depth >= MAX_ENCODE_DEPTH {
        Err(too_deep())
    } else {
        Ok(depth + 1)
    }
}
