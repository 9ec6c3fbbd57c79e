//! The wirecall codec family: the [`Codec`] trait, codec ids and names, the built-in
//! codecs, the accepted set and a dynamic [`Value`].
//!
//! * Each built-in codec is a zero-sized type implementing [`Codec`] with generic
//!   associated functions: [`Json`], [`MsgPack`], [`Cbor`], [`Bincode`], [`Postcard`],
//!   [`Ron`], [`Serpent`] and [`Marshal`], each behind its own feature (all on by default; features only
//!   add codecs).
//! * Runtime choice by id or name goes through [`encode_into`]/[`decode`] (built-ins) or a
//!   [`Registry`] (built-ins plus user codecs in ids 128–254); both `match` on the id and
//!   call the codec's generic function directly, so the hot path has no boxing.
//! * [`CodecSet`] is what a server accepts; it parses `"json,msgpack"` and words refusals.
//! * [`Value`] is the dynamic value for tools and for user codecs; [`to_value`] and
//!   [`from_value`] convert typed values.
//! * Every decode takes [`Limits`]; bad input always gives a [`CodecError`], never a panic.
//!
//! The crate README has the id table and, per codec, how the serde data model maps onto it.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use wirecall_codecs::{Codec, CodecId, CodecSet, Limits, MsgPack, Registry};
//!
//! #[derive(Serialize, Deserialize, PartialEq, Debug)]
//! struct Point { x: i32, y: i32 }
//!
//! // Static: the codec type is known at compile time.
//! let bytes = MsgPack::encode(&Point { x: 1, y: 2 })?;
//! assert_eq!(bytes, [0x82, 0xa1, b'x', 0x01, 0xa1, b'y', 0x02]); // {"x": 1, "y": 2}
//! let p: Point = MsgPack::decode(&bytes, &Limits::DEFAULT)?;
//! assert_eq!(p, Point { x: 1, y: 2 });
//!
//! // Dynamic: the id comes from a frame or from configuration.
//! let registry = Registry::new();
//! let accepted: CodecSet = "json,msgpack".parse()?;
//! let id = registry.by_name("json").unwrap();
//! accepted.check(id)?;
//! let mut out = Vec::new();
//! registry.encode_into(id, &Point { x: 1, y: 2 }, &mut out)?;
//! assert_eq!(out, br#"{"x":1,"y":2}"#);
//! assert!(accepted.check(CodecId::CBOR).is_err());
//! # Ok::<(), wirecall_codecs::CodecError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Helpers shared by several codecs are unused when only some codecs are compiled in.
#![cfg_attr(
    not(all(
        feature = "json",
        feature = "msgpack",
        feature = "cbor",
        feature = "bincode",
        feature = "postcard",
        feature = "ron",
        feature = "serpent",
        feature = "marshal"
    )),
    allow(dead_code, unused_imports, unused_variables)
)]

/// Expands `$body` once per compiled-in built-in codec with `$C` bound to its type, in a
/// `match` on the raw id; `$other` handles every other id.
macro_rules! dispatch {
    ($id:expr, $C:ident => $body:expr, $other:expr) => {
        match $id.get() {
            #[cfg(feature = "json")]
            1 => {
                #[allow(unused)]
                type $C = $crate::Json;
                $body
            }
            #[cfg(feature = "msgpack")]
            2 => {
                #[allow(unused)]
                type $C = $crate::MsgPack;
                $body
            }
            #[cfg(feature = "cbor")]
            3 => {
                #[allow(unused)]
                type $C = $crate::Cbor;
                $body
            }
            #[cfg(feature = "bincode")]
            4 => {
                #[allow(unused)]
                type $C = $crate::Bincode;
                $body
            }
            #[cfg(feature = "postcard")]
            5 => {
                #[allow(unused)]
                type $C = $crate::Postcard;
                $body
            }
            #[cfg(feature = "ron")]
            6 => {
                #[allow(unused)]
                type $C = $crate::Ron;
                $body
            }
            #[cfg(feature = "serpent")]
            7 => {
                #[allow(unused)]
                type $C = $crate::Serpent;
                $body
            }
            #[cfg(feature = "marshal")]
            8 => {
                #[allow(unused)]
                type $C = $crate::Marshal;
                $body
            }
            _ => $other,
        }
    };
}

mod codec;
mod depth;
mod error;
mod formats;
mod id;
mod limits;
mod registry;
mod set;
mod value;

#[cfg(feature = "marshal")]
mod marshal;
#[cfg(feature = "serpent")]
pub mod serpent;

pub use codec::{AsDyn, Codec, CodecInfo, DynCodec};
pub use error::{CodecError, ErrorKind, Origin};
pub use id::CodecId;
pub use limits::Limits;
pub use registry::{
    builtin_info, builtin_infos, decode, decode_value, encode_into, encode_value, Registry,
};
pub use set::{is_compiled_in, CodecSet};
pub use value::{from_value, to_value, Value, TIMESTAMP_EXT_TAG};

#[cfg(feature = "bincode")]
pub use formats::bincode::Bincode;
#[cfg(feature = "cbor")]
pub use formats::cbor::Cbor;
#[cfg(feature = "json")]
pub use formats::json::{decode_value_strict as json_decode_value_strict, Json};
#[cfg(feature = "marshal")]
pub use formats::marshal::Marshal;
#[cfg(feature = "msgpack")]
pub use formats::msgpack::MsgPack;
#[cfg(feature = "postcard")]
pub use formats::postcard::Postcard;
#[cfg(feature = "ron")]
pub use formats::ron::Ron;
#[cfg(feature = "serpent")]
pub use formats::serpent::Serpent;
