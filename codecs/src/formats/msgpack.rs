//! MessagePack through rmp-serde (typed) and rmpv (dynamic).
//!
//! Structs are written as maps keyed by field name (`with_struct_map()`), so Python's
//! `msgpack.unpackb` reads records as dicts. Bytes (`serde_bytes`, [`Value::Bytes`]) are
//! `bin`; a plain `Vec<u8>` is an array of ints. Integers must fit `i64`/`u64` (msgpack has
//! nothing wider; Python raises `OverflowError` too). Decoding borrows strings from the
//! input and reads `bin`/`str` only after checking the declared length against the
//! remaining input, so a tiny input declaring a 4 GiB string fails without allocating.

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
        R::Ext(t, data) => {
            return Err(CodecError::unsupported(
                ID,
                Origin::Peer,
                format!(
                    "msgpack ext type {t} ({} bytes) has no Value equivalent (timestamps \
                     included); decode into a typed value or have the peer send plain types",
                    data.len()
                ),
            ))
        }
    })
}
