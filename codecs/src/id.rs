//! Codec ids: the one byte every frame carries to name its codec.
//!
//! The type is the wire protocol's ([`wirecall_protocol::CodecId`]): one id type for the
//! whole crate family, documented there with its ranges.

pub use wirecall_protocol::CodecId;
