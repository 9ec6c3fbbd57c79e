//! The wirecall codec family: the `Codec` trait, codec ids and names, the built-in codecs,
//! the accepted set and a dynamic `Value`.
#![forbid(unsafe_code)]

mod id;
mod value;

#[cfg(feature = "serpent")]
pub mod serpent;

pub use id::CodecId;
pub use value::Value;
