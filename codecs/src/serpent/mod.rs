//! serpent: Python literal expressions, byte-compatible with Python's `serpent` 1.43.
//!
//! A serpent document is UTF-8 text: the header line `# serpent utf-8 python3.2` and one
//! Python literal expression that `ast.literal_eval` can read. This module writes exactly the
//! bytes Python's `serpent.dumps` writes for the corresponding Python object (compact and
//! indent mode) and reads everything serpent writes plus the literal syntax
//! `ast.literal_eval` accepts within serpent's grammar.
//!
//! # Mapping
//!
//! | serde / [`Value`] | serpent text |
//! |---|---|
//! | bool | `True` / `False` |
//! | integers (any size; `Value::BigInt` too) | decimal: `-7`, `18446744073709551616` |
//! | f32 / f64 | Python `repr`: `1.0`, `1e+16`, `1e-05`, `-0.0`; `1e30000` / `-1e30000` for ±inf; `{'__class__':'float','value':'nan'}` for NaN |
//! | char / str | Python `repr`: `'a'`, `"it's"`, `'\xa0'`, raw printable UTF-8 |
//! | bytes (`serialize_bytes`, `Value::Bytes`) | `{'data': '<base64>', 'encoding': 'base64'}`, or `b'...'` with [`SerpentOptions::bytes_repr`] |
//! | None, unit, unit struct | `None` |
//! | `Some(x)`, newtype struct | `x` |
//! | seq (`Vec`, slices, sets of Rust) / `Value::List` | list `[1,2]` |
//! | tuple, tuple struct / `Value::Tuple` | tuple `(1,2)`, `(1,)`, `()` |
//! | `Value::Set` | set `{1,2}`; an empty set is `()` as in Python |
//! | map, struct / `Value::Map` | dict `{'a':1}` in insertion order (field order) |
//! | unit variant | `'Variant'` |
//! | newtype / tuple / struct variant | `{'Variant':x}`, `{'Variant':(a,b)}`, `{'Variant':{'f':1}}` |
//!
//! Dict keys may be bool, numbers, str, bytes and tuples (what Python's serpent allows);
//! `None`, lists and dicts as keys are refused with [`SerpentErrorKind::Unsupported`], as
//! Python refuses them.
//!
//! **Complex numbers.** [`Value`] has no complex variant. [`parse_value`] represents the
//! complex literal `(1.0+2.0j)` as the map `{'__class__':'complex','real':1.0,'imag':2.0}`
//! (the same shape serpent itself uses for a complex with a NaN part), and
//! [`value_to_writer`] writes a map of exactly that shape (three entries in this order, both
//! parts `Value::Float`) back as a complex literal, so complex numbers round-trip.
//!
//! **What the parser returns.** [`parse_value`] is faithful to `serpent.loads`: the base64
//! bytes dict and the NaN dict stay dicts (Python's serpent does not convert them; Pyro
//! does). The typed [`from_slice`] converts them when the target type asks for bytes or a
//! float (listed below). Empty sets arrive as empty tuples, as in Python.
//! Repeated dict keys and set members collapse as in Python (`{1:'a', 1.0:'b'}` is
//! `{1:'b'}`: first key, last value; equal set members keep the first).
//!
//! Typed decoding ([`from_slice`]) additionally accepts: the base64 dict, `b'...'` and str
//! for bytes targets (and the base64 dict for `Vec<u8>` sequences); ints and the NaN dict for
//! float targets; lists, tuples and sets for sequence and tuple targets; dicts or positional
//! lists/tuples for structs; `'Variant'` or `{'Variant': value}` for enums.
//!
//! **Limits.** Nesting is limited (Python's serpent refuses more than 200 levels when
//! writing and Python's parser more than 200 nested brackets when reading; this module
//! never goes beyond [`MAX_DEPTH_CAP`]); decimal integers are limited to 4300 digits both
//! ways (CPython's limit; `0x` literals parse at any length, as in Python). Strings holding
//! lone surrogates (which Python allows) cannot be represented in Rust and are refused with
//! [`SerpentErrorKind::UnsupportedEscape`], as are `\N{...}` named escapes.
//!
//! **Errors.** Decoding errors carry the [`Position`] (byte offset, line, column) of the
//! problem; encoding errors carry the path to the offending value
//! ([`SerpentError::path`], e.g. `$.maps[0]{key 0}`).

mod de;
mod error;
mod parse;
mod repr;
mod ser;
mod stream;
mod tovalue;
mod unicode_table;
mod write;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use error::{Position, SerpentError, SerpentErrorKind};
pub use repr::{is_printable, repr_float, repr_str};

use crate::Value;
use parse::{Node, Spanned};

/// The header line every serpent document starts with.
pub const HEADER: &str = "# serpent utf-8 python3.2\n";

/// The nesting limit Python's serpent uses by default (`min(recursionlimit // 5, 1000)`),
/// which is also the number of nested brackets Python's parser accepts.
pub const DEFAULT_MAX_DEPTH: usize = 200;

/// The largest nesting depth this implementation accepts, whatever a caller asks for. The
/// parser, the deserializer and the writers recurse once per level; 500 levels fit a 2 MiB
/// thread stack even in unoptimized builds (release builds handle several thousand). Python's
/// serpent uses 200 by default ([`DEFAULT_MAX_DEPTH`]).
pub const MAX_DEPTH_CAP: usize = 500;

fn clamped(opts: &SerpentOptions) -> SerpentOptions {
    let mut o = opts.clone();
    o.max_depth = o.max_depth.min(MAX_DEPTH_CAP);
    o
}

/// How to write serpent.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerpentOptions {
    /// Write the `# serpent utf-8 python3.2` header line (Python always does).
    pub header: bool,
    /// Indent mode: one item per line, two spaces per level, dict keys and set members
    /// sorted when they are mutually orderable (serpent's `indent=True`; Pyro never uses it).
    pub indent: bool,
    /// Write bytes as `b'...'` literals instead of the base64 dict (serpent's `bytes_repr`).
    pub bytes_repr: bool,
    /// The deepest nesting level written (Python's serpent: 200; capped at
    /// [`MAX_DEPTH_CAP`]).
    pub max_depth: usize,
}

impl Default for SerpentOptions {
    /// What Pyro5 uses: header on, compact, bytes as base64 dicts, depth 200.
    fn default() -> Self {
        SerpentOptions {
            header: true,
            indent: false,
            bytes_repr: false,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

impl SerpentOptions {
    /// Sets [`SerpentOptions::header`].
    pub fn header(mut self, on: bool) -> Self {
        self.header = on;
        self
    }
    /// Sets [`SerpentOptions::indent`].
    pub fn indent(mut self, on: bool) -> Self {
        self.indent = on;
        self
    }
    /// Sets [`SerpentOptions::bytes_repr`].
    pub fn bytes_repr(mut self, on: bool) -> Self {
        self.bytes_repr = on;
        self
    }
    /// Sets [`SerpentOptions::max_depth`].
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }
}

/// Serializes `value` as serpent, appending to `out`.
///
/// On error, `out` may hold a partial document; truncate it to its old length if you
/// reuse the buffer.
pub fn to_writer<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    opts: &SerpentOptions,
) -> Result<(), SerpentError> {
    let opts = &clamped(opts);
    if opts.header {
        out.extend_from_slice(HEADER.as_bytes());
    }
    if opts.indent {
        let v = tovalue::to_value(value, opts.max_depth)?;
        let mut w = write::Writer {
            out,
            opts,
            complex_maps: false,
        };
        w.write(&v, 0)
    } else {
        value.serialize(&mut ser::Serializer::new(out, opts))
    }
}

/// Serializes `value` as serpent into a new buffer.
pub fn to_vec<T: Serialize + ?Sized>(
    value: &T,
    opts: &SerpentOptions,
) -> Result<Vec<u8>, SerpentError> {
    let mut out = Vec::new();
    to_writer(value, &mut out, opts)?;
    Ok(out)
}

/// Deserializes a `T` from serpent bytes, refusing containers nested deeper than
/// `max_depth` (use [`DEFAULT_MAX_DEPTH`] to match Python; capped at [`MAX_DEPTH_CAP`]).
///
/// Valid documents are read in one streaming pass; a document the stream stops at (an
/// error, or a construct it leaves to the tree, see `stream.rs`) is decoded again through
/// the tree, which gives the result or the positioned error.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8], max_depth: usize) -> Result<T, SerpentError> {
    if let Ok(v) = from_slice_streaming(bytes, max_depth) {
        return Ok(v);
    }
    from_slice_tree(bytes, max_depth)
}

/// The streaming pass: the value, then nothing but blanks and comments.
fn from_slice_streaming<T: DeserializeOwned>(
    bytes: &[u8],
    max_depth: usize,
) -> Result<T, SerpentError> {
    let mut p = parse::document(bytes, max_depth)?;
    let v = T::deserialize(stream::StreamDe { p: &mut p })?;
    p.skip_ws(true);
    if p.pos != p.b.len() {
        // A bare top-level tuple (`1, 2`) or trailing data: the tree path decides.
        return Err(p.unexpected("the end of the document"));
    }
    Ok(v)
}

/// The tree pass: parse, then deserialize the nodes.
fn from_slice_tree<T: DeserializeOwned>(bytes: &[u8], max_depth: usize) -> Result<T, SerpentError> {
    let root = parse::parse(bytes, max_depth)?;
    let ctx = de::Ctx { src: bytes };
    T::deserialize(de::NodeDe {
        node: root,
        ctx: &ctx,
    })
}

/// Writes a [`Value`] as serpent, appending to `out`, exactly as Python's serpent writes the
/// corresponding Python object (tuples, sets, big ints and non-string keys included).
pub fn value_to_writer(
    value: &Value,
    out: &mut Vec<u8>,
    opts: &SerpentOptions,
) -> Result<(), SerpentError> {
    let opts = &clamped(opts);
    if opts.header {
        out.extend_from_slice(HEADER.as_bytes());
    }
    let mut w = write::Writer {
        out,
        opts,
        complex_maps: true,
    };
    w.write(value, 0)
}

/// Parses serpent bytes into a [`Value`], as `serpent.loads` would, refusing containers
/// nested deeper than `max_depth` (capped at [`MAX_DEPTH_CAP`]).
pub fn parse_value(bytes: &[u8], max_depth: usize) -> Result<Value, SerpentError> {
    let root = parse::parse(bytes, max_depth)?;
    Ok(node_to_value(root))
}

/// The map [`parse_value`] uses for a complex number.
pub fn complex_value(re: f64, im: f64) -> Value {
    Value::Map(vec![
        (Value::Str("__class__".into()), Value::Str("complex".into())),
        (Value::Str("real".into()), Value::Float(re)),
        (Value::Str("imag".into()), Value::Float(im)),
    ])
}

/// If `value` is the map [`parse_value`] uses for a complex number, its (real, imag) parts.
pub fn as_complex(value: &Value) -> Option<(f64, f64)> {
    match value {
        Value::Map(entries) => write::complex_parts(entries),
        _ => None,
    }
}

/// If `value` is serpent's base64 bytes dict (`{'data': ..., 'encoding': 'base64'}`), the
/// decoded bytes (Python's `serpent.tobytes`). `Value::Bytes` is returned as-is.
pub fn tobytes(value: &Value) -> Option<Vec<u8>> {
    use base64::Engine;
    match value {
        Value::Bytes(b) => Some(b.clone()),
        Value::Map(entries) => {
            let get = |key: &str| {
                entries.iter().find_map(|(k, v)| match k {
                    Value::Str(s) if s == key => Some(v),
                    _ => None,
                })
            };
            match (get("encoding"), get("data")) {
                (Some(Value::Str(enc)), Some(Value::Str(data))) if enc == "base64" => {
                    base64::engine::general_purpose::STANDARD
                        .decode(data.as_bytes())
                        .ok()
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn complex_entries(re: f64, im: f64, pos: usize) -> Vec<(Spanned, Spanned)> {
    let s = |node: Node| Spanned { pos, node };
    vec![
        (
            s(Node::Str("__class__".into())),
            s(Node::Str("complex".into())),
        ),
        (s(Node::Str("real".into())), s(Node::Float(re))),
        (s(Node::Str("imag".into())), s(Node::Float(im))),
    ]
}

fn node_to_value(n: Spanned) -> Value {
    match n.node {
        Node::None => Value::Null,
        Node::Bool(b) => Value::Bool(b),
        Node::Int(i) => Value::Int(i),
        Node::BigInt(b) => Value::BigInt(b),
        Node::Float(f) => Value::Float(f),
        Node::Complex(re, im) => complex_value(re, im),
        Node::Str(s) => Value::Str(s),
        Node::Bytes(b) => Value::Bytes(b),
        Node::List(items) => Value::List(items.into_iter().map(node_to_value).collect()),
        Node::Tuple(items) => Value::Tuple(items.into_iter().map(node_to_value).collect()),
        Node::Set(items) => Value::Set(items.into_iter().map(node_to_value).collect()),
        Node::Dict(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (node_to_value(k), node_to_value(v)))
                .collect(),
        ),
    }
}
