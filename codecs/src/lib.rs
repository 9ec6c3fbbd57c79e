//! The wirecall codec family: the `Codec` trait, codec ids and names, the built-in codecs,
//! the accepted set and a dynamic `Value`.
#![forbid(unsafe_code)]

mod id;
mod value;

pub use id::CodecId;
pub use value::Value;
