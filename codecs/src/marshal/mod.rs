//! Python's `marshal` format, version 4: the subset Pyro5's marshal serializer sends
//! (`marshal.dumps(obj)` of None, bools, ints of any size, floats, complex, str, bytes,
//! tuples, lists, dicts, sets and frozensets).
//!
//! # Writing
//!
//! | Python | type code | notes |
//! |---|---|---|
//! | `None`, `True`, `False` | `N`, `T`, `F` | |
//! | int in the signed 32-bit range | `i` + i32 LE | |
//! | other int | `l` + signed count of 15-bit digits (i32 LE) + digits (u16 LE) | [`Value::BigInt`] too |
//! | float | `g` + f64 LE | NaN and the infinities included |
//! | complex | `y` + two f64 LE | a [`Value::Map`] `{'__class__': 'complex', 'real': f, 'imag': f}` (as serpent reads a complex) |
//! | str, ASCII | `z` + u8 length (shorter than 256), else `a` + u32 length | |
//! | str, other | `u` + u32 length + UTF-8 | |
//! | bytes | `s` + u32 length | `serialize_bytes` / [`Value::Bytes`] |
//! | tuple | `)` + u8 count (below 256), else `(` + u32 count | |
//! | list | `[` + u32 count | |
//! | dict | `{` key value … `0` | keys must be hashable in Python: list and dict keys are refused |
//! | set / frozenset | `<` / `>` + u32 count | [`Value::Set`]; a frozenset where Python needs a hashable value (dict keys, set members) |
//!
//! Output is byte-identical to CPython's `marshal.dumps(x, 4)` (3.11 and later) where `x`
//! is the object `marshal.loads` builds from it, i.e. an object graph whose only shared
//! objects are the ones CPython always shares. CPython sets `FLAG_REF` (0x80) on an object
//! whose reference count is above one and writes later occurrences as `TYPE_REF` back
//! references, so its output depends on how the caller's objects happen to be shared;
//! this writer reproduces the part that does not depend on the caller:
//!
//! * the objects CPython always shares (the ints -5..=256, `''` (written as the interned
//!   `Z`), one-character strings U+0000..U+00FF, `b''` and `()`) carry `FLAG_REF` and are
//!   written as `TYPE_REF` when they occur again;
//! * every member of a set carries `FLAG_REF` (CPython holds members twice while it sorts
//!   them), and members are written in the order of `sorted(s, key=marshal.dumps)`, as
//!   CPython 3.11+ does for reproducible output;
//! * no other object is flagged: the top-level object and everything else are written as
//!   CPython writes an object referenced once. CPython itself flags more (a top-level
//!   object the caller still holds, interned strings as `Z`/`A`/`t`, values shared
//!   between containers): that output differs in those flags and back references only,
//!   and decodes to the same value here and in Python.
//!
//! # Reading
//!
//! Every type code above plus the forms CPython writes in other situations: `FLAG_REF` on
//! any object and `TYPE_REF` back references, interned strings (`t`, `A`, `Z`), the
//! ASCII codes (whose bytes CPython reads as Latin-1), and the text floats of versions 0
//! and 1 (`f`, `x`). Tuples, lists and sets/frozensets read as [`Value::Tuple`],
//! [`Value::List`] and [`Value::Set`]; dict entries keep their order and duplicates.
//! Refused: code objects, `StopIteration`, `Ellipsis`, strings holding lone surrogates
//! (a Rust string cannot), self-referencing containers (CPython can build a list that
//! contains itself; a [`Value`] cannot), a dict key followed by the `0` terminator, and
//! trailing bytes after the value (CPython ignores them; every wirecall codec refuses
//! them).
//!
//! Limits: sizes and counts are checked against the remaining input before anything is
//! allocated, nesting against [`Limits::max_depth`](crate::Limits) (references to a
//! container count at the depth they are expanded), and expanding references may not
//! make the value larger than the input would be with every reference written out in
//! full, within [`Limits::max_input`](crate::Limits): a few bytes of references to one
//! large object cannot blow up into gigabytes.

mod read;
mod ser;
mod write;

use serde::Serialize;

use crate::{CodecError, CodecId, Limits, Value};

pub(crate) const FLAG_REF: u8 = 0x80;
pub(crate) const TYPE_NULL: u8 = b'0';
pub(crate) const TYPE_NONE: u8 = b'N';
pub(crate) const TYPE_FALSE: u8 = b'F';
pub(crate) const TYPE_TRUE: u8 = b'T';
pub(crate) const TYPE_STOPITER: u8 = b'S';
pub(crate) const TYPE_ELLIPSIS: u8 = b'.';
pub(crate) const TYPE_INT: u8 = b'i';
pub(crate) const TYPE_FLOAT: u8 = b'f';
pub(crate) const TYPE_BINARY_FLOAT: u8 = b'g';
pub(crate) const TYPE_COMPLEX: u8 = b'x';
pub(crate) const TYPE_BINARY_COMPLEX: u8 = b'y';
pub(crate) const TYPE_LONG: u8 = b'l';
pub(crate) const TYPE_STRING: u8 = b's';
pub(crate) const TYPE_INTERNED: u8 = b't';
pub(crate) const TYPE_REF: u8 = b'r';
pub(crate) const TYPE_TUPLE: u8 = b'(';
pub(crate) const TYPE_LIST: u8 = b'[';
pub(crate) const TYPE_DICT: u8 = b'{';
pub(crate) const TYPE_CODE: u8 = b'c';
pub(crate) const TYPE_UNICODE: u8 = b'u';
pub(crate) const TYPE_SET: u8 = b'<';
pub(crate) const TYPE_FROZENSET: u8 = b'>';
pub(crate) const TYPE_ASCII: u8 = b'a';
pub(crate) const TYPE_ASCII_INTERNED: u8 = b'A';
pub(crate) const TYPE_SMALL_TUPLE: u8 = b')';
pub(crate) const TYPE_SHORT_ASCII: u8 = b'z';
pub(crate) const TYPE_SHORT_ASCII_INTERNED: u8 = b'Z';

/// The deepest nesting written. Python's marshal refuses 2000 levels; the writers recurse
/// once per level, and 500 levels fit a 2 MiB thread stack in unoptimized builds.
pub(crate) const MAX_ENCODE_DEPTH: usize = 500;

/// The map a complex number reads as: `{'__class__': 'complex', 'real': re, 'imag': im}`
/// (the form the serpent codec uses too).
pub(crate) fn complex_value(re: f64, im: f64) -> Value {
    Value::Map(vec![
        (Value::Str("__class__".into()), Value::Str("complex".into())),
        (Value::Str("real".into()), Value::Float(re)),
        (Value::Str("imag".into()), Value::Float(im)),
    ])
}

/// The parts of a map in exactly the [`complex_value`] form.
pub(crate) fn complex_parts(entries: &[(Value, Value)]) -> Option<(f64, f64)> {
    match entries {
        [(Value::Str(c), Value::Str(name)), (Value::Str(r), Value::Float(re)), (Value::Str(i), Value::Float(im))]
            if c == "__class__" && name == "complex" && r == "real" && i == "imag" =>
        {
            Some((*re, *im))
        }
        _ => None,
    }
}

/// Attaches the marshal id to errors raised through serde (which carry none).
fn retag(e: CodecError) -> CodecError {
    if e.codec() == CodecId::MARSHAL {
        e
    } else {
        CodecError::new(
            CodecId::MARSHAL,
            e.kind(),
            e.origin(),
            e.message().to_owned(),
        )
    }
}

/// Writes a typed value through serde, appending to `out`.
pub(crate) fn to_writer<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let mut w = write::Writer::new(out);
    value
        .serialize(ser::Serializer {
            w: &mut w,
            depth: 0,
            hashable: false,
        })
        .map_err(retag)
}

/// Writes a dynamic value, appending to `out`.
pub(crate) fn value_to_writer(value: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
    write::Writer::new(out).value(value, 0, false, false)
}

/// Reads one value spanning all of `bytes`.
pub(crate) fn read_value(bytes: &[u8], limits: &Limits) -> Result<Value, CodecError> {
    read::Reader::new(bytes, limits).read_all()
}
