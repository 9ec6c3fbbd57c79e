//! The engine's one door to the codec family: encode and decode by codec id.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::CodecId;

/// Appends the encoding of `value` with codec `id` to `out`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    id: CodecId,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), wirecall_codecs::CodecError> {
    wirecall_codecs::encode_into(id, value, out)
}

/// Decodes one `T` from `bytes` with codec `id`.
pub(crate) fn decode<T: DeserializeOwned>(
    id: CodecId,
    bytes: &[u8],
    limits: &wirecall_codecs::Limits,
) -> Result<T, wirecall_codecs::CodecError> {
    wirecall_codecs::decode(id, bytes, limits)
}
