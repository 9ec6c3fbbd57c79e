//! The serpent codec: a thin [`Codec`] over [`crate::serpent`], which writes exactly the
//! bytes Python's `serpent` 1.43 writes (header line, Python `repr` for strings and floats,
//! tuples, sets, big integers, base64 dicts for bytes) and parses everything it emits. See
//! that module for the full mapping table.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::serpent::{self, SerpentError, SerpentErrorKind, SerpentOptions};
use crate::{Codec, CodecError, CodecId, CodecInfo, ErrorKind, Limits, Origin, Value};

/// serpent (id 7, `"serpent"`): Python literal expressions, what Pyro4/Pyro5 speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Serpent;

const ID: CodecId = CodecId::SERPENT;

#[cold]
fn map_err(e: SerpentError, decoding: bool) -> CodecError {
    let (kind, origin) = match e.kind() {
        SerpentErrorKind::TooDeep if decoding => (ErrorKind::LimitExceeded, Origin::Peer),
        SerpentErrorKind::TooDeep => (ErrorKind::Encode, Origin::Local),
        SerpentErrorKind::Unsupported if decoding => (ErrorKind::Unsupported, Origin::Peer),
        SerpentErrorKind::Unsupported => (ErrorKind::Unsupported, Origin::Local),
        SerpentErrorKind::UnsupportedEscape => (ErrorKind::Unsupported, Origin::Peer),
        _ if decoding => (ErrorKind::Decode, Origin::Peer),
        _ => (ErrorKind::Encode, Origin::Local),
    };
    CodecError::new(ID, kind, origin, e.to_string())
}

impl Codec for Serpent {
    const ID: CodecId = ID;
    const NAME: &'static str = "serpent";
    const INFO: CodecInfo = CodecInfo {
        id: ID,
        name: "serpent",
        self_describing: true,
        human_readable: true,
        python_interop: true,
        python_module: Some("serpent"),
        struct_as_map: true,
        maintained: true,
        summary: "serpent: Python literals, byte-compatible with Python's serpent 1.43 (Pyro)",
    };

    #[inline]
    fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        serpent::to_writer(value, out, &SerpentOptions::default()).map_err(|e| map_err(e, false))
    }

    #[inline]
    fn decode<T: DeserializeOwned>(bytes: &[u8], limits: &Limits) -> Result<T, CodecError> {
        limits.check_input(ID, bytes)?;
        serpent::from_slice(bytes, limits.max_depth).map_err(|e| map_err(e, true))
    }

    fn encode_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
        serpent::value_to_writer(value, out, &SerpentOptions::default())
            .map_err(|e| map_err(e, false))
    }

    fn decode_value(bytes: &[u8], limits: &Limits) -> Result<Value, CodecError> {
        limits.check_input(ID, bytes)?;
        serpent::parse_value(bytes, limits.max_depth).map_err(|e| map_err(e, true))
    }
}
