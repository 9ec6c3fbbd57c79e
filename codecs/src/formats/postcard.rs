//! postcard 1.x: the maintained compact binary format with a written, stable wire spec.
//!
//! Not self-describing: bytes decode only into the Rust type that wrote them, so
//! [`Codec::decode_value`] fails with [`ErrorKind::NotSelfDescribing`](crate::ErrorKind).
//! Structs are positional, integers are varints (zigzag for signed), enums a varint
//! discriminant, `Option` a 0/1 byte, bytes and sequences length-prefixed, floats
//! little-endian IEEE 754. Decoding borrows from the input and checks each declared length
//! against the remaining input; nesting depth is bounded by [`Limits::max_depth`].

use serde::de::DeserializeOwned;
use serde::Serialize;

use std::cell::Cell;

use crate::depth::{limit_or, Limited};
use crate::error::{decode_err, encode_err};
use crate::{Codec, CodecError, CodecId, CodecInfo, Limits, Value};

/// postcard 1.x (id 5, `"postcard"`): compact positional binary, maintained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Postcard;

const ID: CodecId = CodecId::POSTCARD;

/// A postcard flavor appending to a caller's `Vec<u8>`.
///
/// It writes exactly as postcard's own fastest `Vec` API (`to_extend`, its `ExtendFlavor`)
/// does: always inlined, bytes appended through `Extend` rather than `extend_from_slice`.
/// postcard's writes are mostly 1-5 bytes (varints, short strings), where
/// `extend_from_slice`'s call to `memcpy` cost up to 1.6x postcard's own time on small
/// nested payloads (`wirecall bench codecs`, nested_doc); see `tests/postcard_perf.rs`.
struct AppendVec<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendVec<'_> {
    type Output = ();
    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend(data.iter().copied());
        Ok(())
    }
    #[inline(always)]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }
    #[inline]
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

impl Codec for Postcard {
    const ID: CodecId = ID;
    const NAME: &'static str = "postcard";
    const INFO: CodecInfo = CodecInfo {
        id: ID,
        name: "postcard",
        self_describing: false,
        human_readable: false,
        python_interop: false,
        python_module: None,
        struct_as_map: false,
        maintained: true,
        summary: "postcard 1.x; compact varint binary with a stable written spec",
    };

    #[inline]
    fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        postcard::serialize_with_flavor(value, AppendVec(out)).map_err(|e| encode_err(ID, e))
    }

    #[inline]
    fn decode<T: DeserializeOwned>(bytes: &[u8], limits: &Limits) -> Result<T, CodecError> {
        limits.check_input(ID, bytes)?;
        let mut de = postcard::Deserializer::from_bytes(bytes);
        let hit = Cell::new(false);
        let value = T::deserialize(Limited::<_, false>::new(&mut de, limits.max_depth, &hit))
            .map_err(|e| {
                limit_or(
                    &hit,
                    match e {
                        postcard::Error::DeserializeUnexpectedEnd => CodecError::decode(
                            ID,
                            "input ends in the middle of a value (truncated)",
                        ),
                        other => decode_err(ID, other),
                    },
                )
            })?;
        let rest = de.finalize().map_err(|e| decode_err(ID, e))?;
        if !rest.is_empty() {
            return Err(CodecError::decode(ID, super::trailing_msg(rest.len())));
        }
        Ok(value)
    }

    fn encode_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
        crate::value::refuse_ext(ID, value)?;
        Self::encode_into(value, out)
    }

    fn decode_value(_bytes: &[u8], _limits: &Limits) -> Result<Value, CodecError> {
        Err(CodecError::not_self_describing(ID))
    }
}
