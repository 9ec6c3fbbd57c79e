//! CBOR (RFC 8949) through ciborium.
//!
//! Structs are maps keyed by field name; bytes (`serde_bytes`, [`Value::Bytes`]) are major
//! type 2; floats are written in their shortest lossless form (ciborium's preferred
//! serialization, `1.0` → `f93c00`), which Python's `cbor2` reads. Integers beyond 64 bits
//! use the bignum tags 2/3, and [`Value::Set`] uses tag 258 (cbor2 reads it as a Python
//! `set`). Decoding reads strings in bounded chunks and never reserves memory from a
//! declared length.

use num_bigint::{BigInt, Sign};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::encode_err;
use crate::{Codec, CodecError, CodecId, CodecInfo, Limits, Origin, Value};

/// CBOR (id 3, `"cbor"`): compact, self-describing, big integers, read by Python's `cbor2`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Cbor;

const ID: CodecId = CodecId::CBOR;
const TAG_BIGPOS: u64 = 2;
const TAG_BIGNEG: u64 = 3;
const TAG_SET: u64 = 258;
const TAG_SELF_DESCRIBE: u64 = 55799;

/// `value_path`: the target is [`Value`], so well-formed CBOR it has no form for is
/// `Unsupported` (as an unsupported tag is); for a typed target it is a `Decode` error like
/// any other input that does not match the type.
fn de_err(e: ciborium::de::Error<std::io::Error>, value_path: bool) -> CodecError {
    use ciborium::de::Error as E;
    match e {
        E::RecursionLimitExceeded => CodecError::limit(
            ID,
            "nesting depth limit exceeded (raise Limits::max_depth if the input is legitimate)",
        ),
        E::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            CodecError::decode(ID, "input ends in the middle of a value (truncated)")
        }
        E::Io(e) => CodecError::decode(ID, e),
        E::Syntax(at) => CodecError::decode(ID, format!("malformed CBOR at byte {at}")),
        // ciborium reports an unassigned simple value (major type 7, other than
        // false/true/null/undefined) read into a Value with this semantic error.
        E::Semantic(at, msg) if value_path && msg.ends_with("expected known simple value") => {
            CodecError::unsupported(
                ID,
                Origin::Peer,
                format!(
                    "CBOR simple value{} has no Value equivalent (supported: false, true, null, \
                     undefined read as null)",
                    at.map(|a| format!(" at byte {a}")).unwrap_or_default()
                ),
            )
        }
        E::Semantic(Some(at), msg) => CodecError::decode(ID, format!("{msg} at byte {at}")),
        E::Semantic(None, msg) => CodecError::decode(ID, msg),
    }
}

fn read<T: DeserializeOwned>(
    bytes: &[u8],
    limits: &Limits,
    value_path: bool,
) -> Result<T, CodecError> {
    limits.check_input(ID, bytes)?;
    let mut rd = bytes;
    let value = ciborium::de::from_reader_with_recursion_limit(&mut rd, limits.max_depth)
        .map_err(|e| de_err(e, value_path))?;
    if !rd.is_empty() {
        return Err(CodecError::decode(ID, super::trailing_msg(rd.len())));
    }
    Ok(value)
}

impl Codec for Cbor {
    const ID: CodecId = ID;
    const NAME: &'static str = "cbor";
    const INFO: CodecInfo = CodecInfo {
        id: ID,
        name: "cbor",
        self_describing: true,
        human_readable: false,
        python_interop: true,
        python_module: Some("cbor2"),
        struct_as_map: true,
        maintained: true,
        summary: "CBOR (RFC 8949) via ciborium; shortest floats, bignum tags, sets as tag 258",
    };

    #[inline]
    fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        ciborium::ser::into_writer(value, out).map_err(|e| encode_err(ID, e))
    }

    #[inline]
    fn decode<T: DeserializeOwned>(bytes: &[u8], limits: &Limits) -> Result<T, CodecError> {
        read(bytes, limits, false)
    }

    fn encode_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let v = to_cbor(value)?;
        ciborium::ser::into_writer(&v, out).map_err(|e| encode_err(ID, e))
    }

    fn decode_value(bytes: &[u8], limits: &Limits) -> Result<Value, CodecError> {
        match read::<ciborium::Value>(bytes, limits, true) {
            Ok(v) => from_cbor(v),
            // ciborium reads a tag-3 bignum of at most 16 bytes as an i128 and gives up when
            // it is below i128::MIN (-2^128..=-2^127-1, which cbor2 writes that way); the
            // low-level reader below takes every bignum as it is.
            Err(e) if e.to_string().contains("integer too large") => ll::decode(bytes, limits),
            Err(e) => Err(e),
        }
    }
}

/// A `Value` reader over ciborium's low-level decoder, for the inputs ciborium's serde
/// reader refuses (see [`Cbor::decode_value`]). Same limits: input size, depth, declared
/// lengths checked against the input left before anything is allocated.
mod ll {
    use ciborium_ll::{simple, Decoder, Header};
    use num_bigint::{BigInt, Sign};

    use super::{ID, TAG_BIGNEG, TAG_BIGPOS, TAG_SELF_DESCRIBE, TAG_SET};
    use crate::{CodecError, Limits, Value};

    type Dec<'a> = Decoder<&'a [u8]>;

    pub(super) fn decode(bytes: &[u8], limits: &Limits) -> Result<Value, CodecError> {
        limits.check_input(ID, bytes)?;
        let mut d: Dec<'_> = Decoder::from(bytes);
        let v = value(&mut d, bytes.len(), limits.max_depth)?;
        let used = d.offset();
        if used != bytes.len() {
            return Err(CodecError::decode(
                ID,
                super::super::trailing_msg(bytes.len() - used),
            ));
        }
        Ok(v)
    }

    fn err<E: std::fmt::Debug>(e: ciborium_ll::Error<E>) -> CodecError {
        match e {
            ciborium_ll::Error::Io(_) => {
                CodecError::decode(ID, "input ends in the middle of a value (truncated)")
            }
            ciborium_ll::Error::Syntax(at) => {
                CodecError::decode(ID, format!("malformed CBOR at byte {at}"))
            }
        }
    }

    /// Bytes left after the decoder's position.
    fn left(d: &mut Dec<'_>, total: usize) -> usize {
        total.saturating_sub(d.offset())
    }

    fn bytes(d: &mut Dec<'_>, total: usize, len: Option<usize>) -> Result<Vec<u8>, CodecError> {
        if len.is_some_and(|n| n > left(d, total)) {
            return Err(CodecError::decode(
                ID,
                "input ends in the middle of a value (truncated)",
            ));
        }
        let mut out = Vec::with_capacity(len.unwrap_or(0));
        let mut buf = [0u8; 4096];
        let mut segments = d.bytes(len);
        while let Some(mut seg) = segments.pull().map_err(err)? {
            while let Some(chunk) = seg.pull(&mut buf).map_err(err)? {
                out.extend_from_slice(chunk);
            }
        }
        Ok(out)
    }

    fn text(d: &mut Dec<'_>, total: usize, len: Option<usize>) -> Result<String, CodecError> {
        if len.is_some_and(|n| n > left(d, total)) {
            return Err(CodecError::decode(
                ID,
                "input ends in the middle of a value (truncated)",
            ));
        }
        let mut out = String::with_capacity(len.unwrap_or(0));
        let mut buf = [0u8; 4096];
        let mut segments = d.text(len);
        while let Some(mut seg) = segments.pull().map_err(err)? {
            while let Some(chunk) = seg.pull(&mut buf).map_err(err)? {
                out.push_str(chunk);
            }
        }
        Ok(out)
    }

    /// The items of an array or map of `len` entries (`None`: until a break), each read by
    /// `item`. A definite count is checked against the bytes left (each entry takes one at
    /// least) before anything is reserved.
    fn items<T>(
        d: &mut Dec<'_>,
        total: usize,
        len: Option<usize>,
        per_entry: usize,
        mut item: impl FnMut(&mut Dec<'_>) -> Result<T, CodecError>,
    ) -> Result<Vec<T>, CodecError> {
        match len {
            Some(n) => {
                if n.saturating_mul(per_entry) > left(d, total) {
                    return Err(CodecError::decode(
                        ID,
                        "input ends in the middle of a value (truncated)",
                    ));
                }
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    out.push(item(d)?);
                }
                Ok(out)
            }
            None => {
                let mut out = Vec::new();
                loop {
                    match d.pull().map_err(err)? {
                        Header::Break => return Ok(out),
                        h => {
                            d.push(h);
                            out.push(item(d)?);
                        }
                    }
                }
            }
        }
    }

    fn value(d: &mut Dec<'_>, total: usize, depth: usize) -> Result<Value, CodecError> {
        let nest = |depth: usize| {
            depth.checked_sub(1).ok_or_else(|| {
                CodecError::limit(
                    ID,
                    "nesting depth limit exceeded (raise Limits::max_depth if the input is legitimate)",
                )
            })
        };
        Ok(match d.pull().map_err(err)? {
            Header::Positive(x) => Value::Int(i128::from(x)),
            Header::Negative(x) => Value::Int(-1 - i128::from(x)),
            Header::Float(f) => Value::Float(f),
            Header::Simple(simple::FALSE) => Value::Bool(false),
            Header::Simple(simple::TRUE) => Value::Bool(true),
            Header::Simple(simple::NULL) | Header::Simple(simple::UNDEFINED) => Value::Null,
            Header::Simple(x) => {
                return Err(CodecError::unsupported(
                    ID,
                    crate::Origin::Peer,
                    format!("CBOR simple value {x} has no Value equivalent"),
                ))
            }
            Header::Break => return Err(CodecError::decode(ID, "a break outside a container")),
            Header::Bytes(len) => Value::Bytes(bytes(d, total, len)?),
            Header::Text(len) => Value::Str(text(d, total, len)?),
            Header::Array(len) => {
                let depth = nest(depth)?;
                Value::List(items(d, total, len, 1, |d| value(d, total, depth))?)
            }
            Header::Map(len) => {
                let depth = nest(depth)?;
                Value::Map(items(d, total, len, 2, |d| {
                    Ok((value(d, total, depth)?, value(d, total, depth)?))
                })?)
            }
            Header::Tag(tag @ (TAG_BIGPOS | TAG_BIGNEG)) => match d.pull().map_err(err)? {
                Header::Bytes(len) => {
                    let m = BigInt::from_bytes_be(Sign::Plus, &bytes(d, total, len)?);
                    Value::from_bigint(if tag == TAG_BIGPOS { m } else { -m - 1u8 })
                }
                _ => {
                    return Err(CodecError::decode(
                        ID,
                        "a bignum tag (2 or 3) must wrap a byte string",
                    ))
                }
            },
            Header::Tag(TAG_SET) => match value(d, total, depth)? {
                Value::List(xs) => Value::Set(xs),
                _ => return Err(CodecError::decode(ID, "tag 258 (set) must wrap an array")),
            },
            Header::Tag(TAG_SELF_DESCRIBE) => value(d, total, depth)?,
            Header::Tag(tag) => {
                return Err(CodecError::unsupported(
                    ID,
                    crate::Origin::Peer,
                    format!(
                        "CBOR tag {tag} has no Value equivalent (supported: 2 and 3 bignums, 258 \
                         sets, 55799 self-describe); decode into a typed value instead"
                    ),
                ))
            }
        })
    }
}

fn bignum(n: &BigInt) -> ciborium::Value {
    use ciborium::Value as C;
    // Tag 2 carries n, tag 3 carries -1 - n, both as big-endian magnitudes.
    if n.sign() == Sign::Minus {
        let m: BigInt = -(n + 1u8);
        C::Tag(TAG_BIGNEG, Box::new(C::Bytes(m.magnitude().to_bytes_be())))
    } else {
        C::Tag(TAG_BIGPOS, Box::new(C::Bytes(n.magnitude().to_bytes_be())))
    }
}

fn to_cbor(v: &Value) -> Result<ciborium::Value, CodecError> {
    use ciborium::Value as C;
    Ok(match v {
        Value::Null => C::Null,
        Value::Bool(b) => C::Bool(*b),
        Value::Int(i) => match ciborium::value::Integer::try_from(*i) {
            Ok(x) => C::Integer(x),
            Err(_) => bignum(&BigInt::from(*i)),
        },
        Value::BigInt(n) => bignum(n),
        Value::Float(f) => C::Float(*f),
        Value::Str(s) => C::Text(s.clone()),
        Value::Bytes(b) => C::Bytes(b.clone()),
        Value::List(xs) | Value::Tuple(xs) => {
            C::Array(xs.iter().map(to_cbor).collect::<Result<_, _>>()?)
        }
        Value::Set(xs) => C::Tag(
            TAG_SET,
            Box::new(C::Array(xs.iter().map(to_cbor).collect::<Result<_, _>>()?)),
        ),
        Value::Map(m) => C::Map(
            m.iter()
                .map(|(k, v)| Ok((to_cbor(k)?, to_cbor(v)?)))
                .collect::<Result<_, CodecError>>()?,
        ),
        Value::Ext { tag, data } => {
            return Err(crate::value::ext_unsupported(ID, *tag, data.len()))
        }
    })
}

fn from_cbor(v: ciborium::Value) -> Result<Value, CodecError> {
    use ciborium::Value as C;
    Ok(match v {
        C::Null => Value::Null,
        C::Bool(b) => Value::Bool(b),
        C::Integer(i) => Value::Int(i128::from(i)),
        C::Float(f) => Value::Float(f),
        C::Text(s) => Value::Str(s),
        C::Bytes(b) => Value::Bytes(b),
        C::Array(xs) => Value::List(xs.into_iter().map(from_cbor).collect::<Result<_, _>>()?),
        C::Map(m) => Value::Map(
            m.into_iter()
                .map(|(k, v)| Ok((from_cbor(k)?, from_cbor(v)?)))
                .collect::<Result<_, CodecError>>()?,
        ),
        C::Tag(TAG_BIGPOS, inner) => match *inner {
            C::Bytes(b) => Value::from_bigint(BigInt::from_bytes_be(Sign::Plus, &b)),
            _ => {
                return Err(CodecError::decode(
                    ID,
                    "tag 2 (bignum) must wrap a byte string",
                ))
            }
        },
        C::Tag(TAG_BIGNEG, inner) => match *inner {
            C::Bytes(b) => Value::from_bigint(-BigInt::from_bytes_be(Sign::Plus, &b) - 1u8),
            _ => {
                return Err(CodecError::decode(
                    ID,
                    "tag 3 (negative bignum) must wrap a byte string",
                ))
            }
        },
        C::Tag(TAG_SET, inner) => match *inner {
            C::Array(xs) => Value::Set(xs.into_iter().map(from_cbor).collect::<Result<_, _>>()?),
            _ => return Err(CodecError::decode(ID, "tag 258 (set) must wrap an array")),
        },
        C::Tag(TAG_SELF_DESCRIBE, inner) => from_cbor(*inner)?,
        C::Tag(tag, _) => {
            return Err(CodecError::unsupported(
                ID,
                Origin::Peer,
                format!(
                    "CBOR tag {tag} has no Value equivalent (supported: 2 and 3 bignums, 258 \
                     sets, 55799 self-describe); decode into a typed value instead"
                ),
            ))
        }
        other => {
            return Err(CodecError::unsupported(
                ID,
                Origin::Peer,
                format!("CBOR item {other:?} has no Value equivalent"),
            ))
        }
    })
}
