//! The built-in codecs, one zero-sized type each.

#[cfg(feature = "bincode")]
pub(crate) mod bincode;
#[cfg(feature = "cbor")]
pub(crate) mod cbor;
#[cfg(feature = "json")]
pub(crate) mod json;
#[cfg(feature = "marshal")]
pub(crate) mod marshal;
#[cfg(feature = "msgpack")]
pub(crate) mod msgpack;
#[cfg(feature = "postcard")]
pub(crate) mod postcard;
#[cfg(feature = "ron")]
pub(crate) mod ron;
#[cfg(feature = "serpent")]
pub(crate) mod serpent;

/// Error text for trailing bytes after a complete value.
pub(crate) fn trailing_msg(extra: usize) -> String {
    format!(
        "{extra} trailing byte(s) after a complete value; the payload must hold exactly one \
         value (check the frame length and that both sides use the same codec)"
    )
}
