//! RON (Rusty Object Notation) 0.12.
//!
//! Text, self-describing, Rust-shaped: structs are written as `(a: 1, b: 2)` (a map on
//! decode into [`Value`]), enums by variant name, `Option` as `Some(x)`/`None`, unit as
//! `()`, tuples as `(1, 2)` (decoded as a list: RON's dynamic reading cannot tell tuples
//! from lists), bytes as `b"..."`, NaN/infinity as `NaN`/`inf`/`-inf`, maps with any keys.
//! Integers must fit 64 bits (the workspace builds ron without `integer128`). No Python
//! reader exists. Nesting depth is bounded with ron's own recursion limit.

use std::cell::Cell;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::depth::{limit_or, Limited};
use crate::error::encode_err;
use crate::{Codec, CodecError, CodecId, CodecInfo, Limits, Value};

/// RON (id 6, `"ron"`): human-readable Rust notation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Ron;

const ID: CodecId = CodecId::RON;

fn de_err(e: ron::error::SpannedError) -> CodecError {
    match e.code {
        ron::Error::ExceededRecursionLimit => CodecError::limit(
            ID,
            format!(
                "nesting depth limit exceeded at {} (raise Limits::max_depth if the input is legitimate)",
                e.span
            ),
        ),
        ron::Error::Eof => CodecError::decode(ID, "input ends in the middle of a value (truncated)"),
        _ => CodecError::decode(ID, e),
    }
}

fn read<T: DeserializeOwned>(bytes: &[u8], limits: &Limits) -> Result<T, CodecError> {
    limits.check_input(ID, bytes)?;
    // ron counts its recursion differently per construct (about two units per container
    // when reading dynamically); its own limit is kept as a stack guard and the exact
    // bound is ours.
    let opts = ron::Options::default()
        .with_recursion_limit(limits.max_depth.saturating_mul(2).saturating_add(2));
    let mut de = ron::Deserializer::from_bytes_with_options(bytes, &opts).map_err(de_err)?;
    let hit = Cell::new(false);
    let value = T::deserialize(Limited::<_, false>::new(&mut de, limits.max_depth, &hit))
        .map_err(|e| limit_or(&hit, de_err(de.span_error(e))))?;
    de.end().map_err(|e| de_err(de.span_error(e)))?;
    Ok(value)
}

impl Codec for Ron {
    const ID: CodecId = ID;
    const NAME: &'static str = "ron";
    const INFO: CodecInfo = CodecInfo {
        id: ID,
        name: "ron",
        self_describing: true,
        human_readable: true,
        python_interop: false,
        python_module: None,
        struct_as_map: true,
        maintained: true,
        summary: "RON 0.12; readable Rust-shaped text",
    };

    #[inline]
    fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        ron::Options::default()
            .to_io_writer(out, value)
            .map_err(|e| encode_err(ID, e))
    }

    #[inline]
    fn decode<T: DeserializeOwned>(bytes: &[u8], limits: &Limits) -> Result<T, CodecError> {
        read(bytes, limits)
    }

    fn encode_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
        crate::value::refuse_ext(ID, value)?;
        Self::encode_into(value, out)
    }

    fn decode_value(bytes: &[u8], limits: &Limits) -> Result<Value, CodecError> {
        read(bytes, limits)
    }
}
