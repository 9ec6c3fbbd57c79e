//! The marshal codec: a thin [`Codec`] over [`crate::marshal`], Python's `marshal` format
//! version 4 as Pyro5's marshal serializer sends it. See that module for the mapping and
//! for exactly where the output matches CPython's byte for byte.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{from_value, marshal, Codec, CodecError, CodecId, CodecInfo, Limits, Value};

/// marshal (id 8, `"marshal"`): Python's `marshal` format, version 4 (Pyro5's serializer
/// id 2).
///
/// Typed values are written straight to bytes by a serde serializer (structs as dicts,
/// bytes as `bytes`, tuples as tuples); decoding reads a [`Value`] first (marshal's back
/// references need the objects read before) and converts it with [`from_value`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Marshal;

const ID: CodecId = CodecId::MARSHAL;

impl Codec for Marshal {
    const ID: CodecId = ID;
    const NAME: &'static str = "marshal";
    const INFO: CodecInfo = CodecInfo {
        id: ID,
        name: "marshal",
        self_describing: true,
        human_readable: false,
        python_interop: true,
        python_module: Some("marshal"),
        struct_as_map: true,
        maintained: true,
        summary: "Python's marshal format, version 4 (Pyro5's marshal serializer); our own",
    };

    #[inline]
    fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        marshal::to_writer(value, out)
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8], limits: &Limits) -> Result<T, CodecError> {
        let v = Self::decode_value(bytes, limits)?;
        from_value(v).map_err(|e| CodecError::new(ID, e.kind(), e.origin(), e.message().to_owned()))
    }

    fn encode_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
        marshal::value_to_writer(value, out)
    }

    fn decode_value(bytes: &[u8], limits: &Limits) -> Result<Value, CodecError> {
        limits.check_input(ID, bytes)?;
        marshal::read_value(bytes, limits)
    }
}
