//! MessagePack through rmp-serde (typed) and rmpv (dynamic).
//!
//! Structs are written as maps keyed by field name (`with_struct_map()`), so Python's
//! `msgpack.unpackb` reads records as dicts. Bytes (`serde_bytes`, [`Value::Bytes`]) are
//! `bin`; a plain `Vec<u8>` is an array of ints. Integers must fit `i64`/`u64` (msgpack has
//! nothing wider; Python raises `OverflowError` too). Decoding borrows strings from the
//! input and reads `bin`/`str` only after checking the declared length against the
//! remaining input, so a tiny input declaring a 4 GiB string fails without allocating.
//!
//! Ext values (fixext 1/2/4/8/16, ext 8/16/32, timestamps as ext type -1) decode to
//! [`Value::Ext`] and encode back in the smallest form: fixext when the payload is 1, 2, 4,
//! 8 or 16 bytes, else ext 8/16/32. Through serde, [`Value::Ext`] is written as rmp-serde's
//! `_ExtStruct` newtype, i.e. a native ext as well.

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};

use std::cell::Cell;

use crate::depth::{limit_or, Limited};
use crate::error::{decode_err, encode_err};
use crate::{Codec, CodecError, CodecId, CodecInfo, Limits, Origin, Value};

/// MessagePack (id 2, `"msgpack"`): compact, self-describing, read by Python's `msgpack`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MsgPack;

const ID: CodecId = CodecId::MSGPACK;

impl Codec for MsgPack {
    const ID: CodecId = ID;
    const NAME: &'static str = "msgpack";
    const INFO: CodecInfo = CodecInfo {
        id: ID,
        name: "msgpack",
        self_describing: true,
        human_readable: false,
        python_interop: true,
        python_module: Some("msgpack"),
        struct_as_map: true,
        maintained: true,
        summary: "MessagePack via rmp-serde; structs as maps, bytes as bin",
    };

    #[inline]
    fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let mut ser = rmp_serde::Serializer::new(out).with_struct_map();
        value.serialize(&mut ser).map_err(|e| encode_err(ID, e))
    }

    #[inline]
    fn decode<T: DeserializeOwned>(bytes: &[u8], limits: &Limits) -> Result<T, CodecError> {
        limits.check_input(ID, bytes)?;
        let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
        de.set_max_depth(limits.max_depth);
        // rmp-serde's own depth count skips enum payloads (`{"Variant": ...}`), so a
        // recursive enum could still exhaust the stack: bound every level ourselves.
        let hit = Cell::new(false);
        let value = T::deserialize(Limited::<_, false>::new(&mut de, limits.max_depth, &hit))
            .map_err(|e| limit_or(&hit, decode_err(ID, e)))?;
        // Trailing bytes: reading one more value must hit the end of the input.
        match IgnoredAny::deserialize(&mut de) {
            Err(rmp_serde::decode::Error::InvalidMarkerRead(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                Ok(value)
            }
            _ => Err(CodecError::decode(
                ID,
                "trailing bytes after a complete value; the payload must hold exactly one value",
            )),
        }
    }

    fn encode_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let v = to_rmpv(value)?;
        rmpv::encode::write_value(out, &v).map_err(|e| encode_err(ID, e))
    }

    fn decode_value(bytes: &[u8], limits: &Limits) -> Result<Value, CodecError> {
        limits.check_input(ID, bytes)?;
        let mut rd = bytes;
        // rmpv spends two units per container (value + body) and one per scalar.
        let v = rmpv::decode::read_value_with_max_depth(
            &mut rd,
            limits.max_depth.saturating_mul(2).saturating_add(1),
        )
        .map_err(|e| match e {
            rmpv::decode::Error::DepthLimitExceeded => CodecError::limit(
                ID,
                "nesting depth limit exceeded (raise Limits::max_depth if the input is legitimate)",
            ),
            other => CodecError::decode(ID, other),
        })?;
        if !rd.is_empty() {
            return Err(CodecError::decode(ID, super::trailing_msg(rd.len())));
        }
        from_rmpv(v)
    }
}

fn to_rmpv(v: &Value) -> Result<rmpv::Value, CodecError> {
    use rmpv::Value as R;
    Ok(match v {
        Value::Null => R::Nil,
        Value::Bool(b) => R::Boolean(*b),
        Value::Int(i) => {
            if let Ok(x) = i64::try_from(*i) {
                R::from(x)
            } else if let Ok(x) = u64::try_from(*i) {
                R::from(x)
            } else {
                return Err(too_wide(v));
            }
        }
        Value::BigInt(_) => return Err(too_wide(v)),
        Value::Float(f) => R::F64(*f),
        Value::Str(s) => R::String(s.as_str().into()),
        Value::Bytes(b) => R::Binary(b.clone()),
        Value::List(xs) | Value::Tuple(xs) | Value::Set(xs) => {
            R::Array(xs.iter().map(to_rmpv).collect::<Result<_, _>>()?)
        }
        Value::Map(m) => R::Map(
            m.iter()
                .map(|(k, v)| Ok((to_rmpv(k)?, to_rmpv(v)?)))
                .collect::<Result<_, CodecError>>()?,
        ),
        // rmpv writes the smallest form: fixext 1/2/4/8/16 when the length matches, else
        // ext 8/16/32.
        Value::Ext { tag, data } => {
            if u32::try_from(data.len()).is_err() {
                return Err(CodecError::unsupported(
                    ID,
                    Origin::Local,
                    format!(
                        "ext payload of {} bytes exceeds msgpack's 4 GiB ext 32 limit; split it",
                        data.len()
                    ),
                ));
            }
            R::Ext(*tag, data.clone())
        }
    })
}

fn too_wide(v: &Value) -> CodecError {
    CodecError::unsupported(
        ID,
        Origin::Local,
        format!(
            "integer {v} does not fit msgpack's 64-bit integers (Python's msgpack refuses it \
             too); use cbor, json or serpent, or send it as a string"
        ),
    )
}

fn from_rmpv(v: rmpv::Value) -> Result<Value, CodecError> {
    use rmpv::Value as R;
    Ok(match v {
        R::Nil => Value::Null,
        R::Boolean(b) => Value::Bool(b),
        R::Integer(i) => match (i.as_i64(), i.as_u64()) {
            (Some(x), _) => Value::Int(x.into()),
            (None, Some(x)) => Value::Int(x.into()),
            (None, None) => return Err(CodecError::decode(ID, "integer out of range")),
        },
        R::F32(f) => Value::Float(f.into()),
        R::F64(f) => Value::Float(f),
        R::String(s) => match s.into_str() {
            Some(s) => Value::Str(s),
            None => {
                return Err(CodecError::decode(
                    ID,
                    "str value is not valid UTF-8 (a peer using the old raw format should send bytes as bin)",
                ))
            }
        },
        R::Binary(b) => Value::Bytes(b),
        R::Array(xs) => Value::List(xs.into_iter().map(from_rmpv).collect::<Result<_, _>>()?),
        R::Map(m) => Value::Map(
            m.into_iter()
                .map(|(k, v)| Ok((from_rmpv(k)?, from_rmpv(v)?)))
                .collect::<Result<_, CodecError>>()?,
        ),
        R::Ext(tag, data) => Value::Ext { tag, data },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Codec;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        MsgPack::encode_value(v, &mut out).unwrap();
        out
    }

    fn ext(tag: i8, len: usize) -> Value {
        Value::Ext {
            tag,
            data: (0..len).map(|i| i as u8).collect(),
        }
    }

    #[test]
    fn ext_uses_the_smallest_form() {
        // (payload length, marker, header length)
        for (len, marker, header) in [
            (1, 0xd4, 2),
            (2, 0xd5, 2),
            (4, 0xd6, 2),
            (8, 0xd7, 2),
            (16, 0xd8, 2),
            (0, 0xc7, 3),
            (3, 0xc7, 3),
            (17, 0xc7, 3),
            (255, 0xc7, 3),
            (256, 0xc8, 4),
            (65535, 0xc8, 4),
            (65536, 0xc9, 6),
        ] {
            let v = ext(5, len);
            let bytes = enc(&v);
            assert_eq!(bytes[0], marker, "payload of {len} bytes");
            assert_eq!(bytes.len(), header + len, "payload of {len} bytes");
            assert_eq!(bytes[header - 1], 5, "type byte for {len}");
            let back = MsgPack::decode_value(&bytes, &Limits::default()).unwrap();
            assert_eq!(back, v, "round trip of {len} bytes");
        }
        assert_eq!(enc(&ext(-1, 4)), [0xd6, 0xff, 0, 1, 2, 3]);
    }

    #[test]
    fn ext_nested_and_through_serde() {
        let v = Value::List(vec![ext(-1, 8), Value::Map(vec![(ext(1, 1), ext(2, 3))])]);
        let bytes = enc(&v);
        assert_eq!(
            MsgPack::decode_value(&bytes, &Limits::default()).unwrap(),
            v
        );
        // The serde path (`_ExtStruct`) writes the same native ext.
        let mut typed = Vec::new();
        MsgPack::encode_into(&ext(7, 2), &mut typed).unwrap();
        assert_eq!(typed, [0xd5, 7, 0, 1]);
        // Value's serde Deserialize sees rmp-serde's ext as a (tag, bytes) sequence.
        let seen: Value = MsgPack::decode(&typed, &Limits::default()).unwrap();
        assert_eq!(
            seen,
            Value::List(vec![Value::Int(7), Value::Bytes(vec![0, 1])])
        );
    }

    #[test]
    fn timestamps_decode_to_ext() {
        let v = MsgPack::decode_value(&[0xd6, 0xff, 0, 0, 0, 1], &Limits::default()).unwrap();
        assert_eq!(v.timestamp_parts(), Some((1, 0)));
    }
}
