//! bincode 2.x (serde API, `config::standard()`: little endian, varint integers).
//!
//! **Unmaintained upstream** (RUSTSEC-2025-0141); version 3.0.0 on the registry is a
//! tombstone that deliberately fails to compile, so the workspace pins `=2.0.1`. It is kept
//! for compatibility with existing peers; [`Postcard`](crate::Postcard) is the maintained
//! compact binary choice.
//!
//! Not self-describing: bytes decode only into the Rust type that wrote them, so
//! [`Codec::decode_value`] fails with [`ErrorKind::NotSelfDescribing`](crate::ErrorKind).
//! Structs are positional, enums are a varint variant index, `Option` is a 0/1 byte, bytes
//! and sequences are length-prefixed. Decoding borrows strings and bytes from the input and
//! checks every declared length against the remaining input before copying (bincode's own
//! owned path would allocate the declared length first), and bounds nesting depth.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use std::cell::Cell;

use crate::depth::{limit_or, Limited};
use crate::error::{decode_err, encode_err};
use crate::{Codec, CodecError, CodecId, CodecInfo, Limits, Value};

/// bincode 2.x (id 4, `"bincode"`): compact positional binary; unmaintained upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Bincode;

const ID: CodecId = CodecId::BINCODE;

impl Codec for Bincode {
    const ID: CodecId = ID;
    const NAME: &'static str = "bincode";
    const INFO: CodecInfo = CodecInfo {
        id: ID,
        name: "bincode",
        self_describing: false,
        human_readable: false,
        python_interop: false,
        python_module: None,
        struct_as_map: false,
        maintained: false,
        summary: "bincode 2.x standard config; unmaintained upstream (RUSTSEC-2025-0141), prefer postcard",
    };

    #[inline]
    fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
            .map(|_| ())
            .map_err(|e| encode_err(ID, e))
    }

    #[inline]
    fn decode<T: DeserializeOwned>(bytes: &[u8], limits: &Limits) -> Result<T, CodecError> {
        limits.check_input(ID, bytes)?;
        let mut dec = bincode::serde::BorrowedSerdeDecoder::from_slice(
            bytes,
            bincode::config::standard(),
            (),
        );
        let hit = Cell::new(false);
        let value = T::deserialize(Limited::<_, true>::new(
            dec.as_deserializer(),
            limits.max_depth,
            &hit,
        ))
        .map_err(|e| {
            limit_or(
                &hit,
                match e {
                    bincode::error::DecodeError::UnexpectedEnd { .. } => {
                        CodecError::decode(ID, "input ends in the middle of a value (truncated)")
                    }
                    other => decode_err(ID, other),
                },
            )
        })?;
        // Trailing bytes: there must be nothing left to read.
        match u8::deserialize(dec.as_deserializer()) {
            Err(bincode::error::DecodeError::UnexpectedEnd { .. }) => Ok(value),
            _ => Err(CodecError::decode(
                ID,
                "trailing bytes after a complete value; the payload must hold exactly one value",
            )),
        }
    }

    fn encode_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
        crate::value::refuse_ext(ID, value)?;
        Self::encode_into(value, out)
    }

    fn decode_value(_bytes: &[u8], _limits: &Limits) -> Result<Value, CodecError> {
        Err(CodecError::not_self_describing(ID))
    }
}
