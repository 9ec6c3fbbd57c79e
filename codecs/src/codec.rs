//! The `Codec` trait (static, zero-cost) and `DynCodec` (for user codecs).

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{CodecError, CodecId, Limits, Value};

/// Static facts about a codec, for users choosing one and for tools listing them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecInfo {
    /// The wire id.
    pub id: CodecId,
    /// The fixed name (`"json"`, `"msgpack"`...).
    pub name: &'static str,
    /// The bytes carry their own structure, so they decode into [`Value`] without the Rust
    /// type (false for bincode and postcard).
    pub self_describing: bool,
    /// Text a person can read and edit.
    pub human_readable: bool,
    /// A Python peer can read and write it with a common library (named in `python_module`).
    pub python_interop: bool,
    /// The Python module that interoperates, if any (`"json"`, `"msgpack"`, `"cbor2"`, `"serpent"`).
    pub python_module: Option<&'static str>,
    /// Structs travel as maps keyed by field name (true) or as positional arrays (false).
    pub struct_as_map: bool,
    /// The format crate is maintained upstream (false for bincode, RUSTSEC-2025-0141).
    pub maintained: bool,
    /// One line for listings.
    pub summary: &'static str,
}

/// A serialization format, implemented by a zero-sized type per built-in codec.
///
/// Everything is an associated function, so calling `Json::encode_into(&v, &mut out)`
/// compiles to a direct call into the format crate. Runtime selection by id goes through
/// [`Registry`](crate::Registry) or the free functions [`encode_into`](crate::encode_into)
/// and [`decode`](crate::decode), which `match` on the id and call these.
pub trait Codec: Copy + Default + Send + Sync + 'static {
    /// The wire id.
    const ID: CodecId;
    /// The fixed name.
    const NAME: &'static str;
    /// Static facts about the codec.
    const INFO: CodecInfo;

    /// Appends the encoding of `value` to `out`. On error `out` may hold a partial
    /// encoding after its original length; truncate it if you reuse the buffer.
    fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Decodes one `T` that must span all of `bytes` (trailing bytes are an error).
    fn decode<T: DeserializeOwned>(bytes: &[u8], limits: &Limits) -> Result<T, CodecError>;

    /// Appends the encoding of a dynamic value, keeping whatever the format can carry (see
    /// the mapping table in the crate README).
    fn encode_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Decodes bytes into a dynamic value; fails with
    /// [`ErrorKind::NotSelfDescribing`](crate::ErrorKind::NotSelfDescribing) for codecs
    /// whose bytes need the Rust type.
    fn decode_value(bytes: &[u8], limits: &Limits) -> Result<Value, CodecError>;

    /// Encodes `value` into a new buffer.
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::new();
        Self::encode_into(value, &mut out)?;
        Ok(out)
    }
}

/// A codec chosen at runtime, for user codecs registered with
/// [`Registry::register`](crate::Registry::register). User codecs work on [`Value`]; typed
/// values reach them through [`to_value`](crate::to_value) and [`from_value`](crate::from_value).
///
/// ```
/// use std::sync::Arc;
/// use wirecall_codecs::{CodecError, CodecId, DynCodec, Limits, Registry, Value};
///
/// struct Lines; // one string per line
/// impl DynCodec for Lines {
///     fn encode_value(&self, v: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
///         for item in v.as_slice().unwrap_or_default() {
///             out.extend_from_slice(item.as_str().unwrap_or_default().as_bytes());
///             out.push(b'\n');
///         }
///         Ok(())
///     }
///     fn decode_value(&self, b: &[u8], _: &Limits) -> Result<Value, CodecError> {
///         let text = std::str::from_utf8(b).map_err(|e| CodecError::decode(CodecId::new(200), e))?;
///         Ok(Value::List(text.lines().map(Value::from).collect()))
///     }
/// }
///
/// let mut registry = Registry::new();
/// registry.register(CodecId::new(200), "lines", Arc::new(Lines))?;
/// let bytes = registry.encode(CodecId::new(200), &vec!["a", "b"])?;
/// assert_eq!(bytes, b"a\nb\n");
/// let back: Vec<String> = registry.decode(registry.by_name("lines").unwrap(), &bytes)?;
/// assert_eq!(back, ["a", "b"]);
/// # Ok::<(), CodecError>(())
/// ```
pub trait DynCodec: Send + Sync {
    /// Appends the encoding of `value` to `out`.
    fn encode_value(&self, value: &Value, out: &mut Vec<u8>) -> Result<(), CodecError>;
    /// Decodes `bytes` (already checked against `limits.max_input`) into a value; must
    /// honour `limits.max_depth`.
    fn decode_value(&self, bytes: &[u8], limits: &Limits) -> Result<Value, CodecError>;
    /// Whether `decode_value` works without outside knowledge of the type (default true).
    fn self_describing(&self) -> bool {
        true
    }
    /// Whether the format is human-readable (default false).
    fn human_readable(&self) -> bool {
        false
    }
    /// Whether a Python peer can read it (default false).
    fn python_interop(&self) -> bool {
        false
    }
}

/// Adapts a static [`Codec`] to [`DynCodec`], e.g. to register a built-in format under a
/// user id as well.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsDyn<C: Codec>(pub C);

impl<C: Codec> DynCodec for AsDyn<C> {
    fn encode_value(&self, value: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
        C::encode_value(value, out)
    }
    fn decode_value(&self, bytes: &[u8], limits: &Limits) -> Result<Value, CodecError> {
        C::decode_value(bytes, limits)
    }
    fn self_describing(&self) -> bool {
        C::INFO.self_describing
    }
    fn human_readable(&self) -> bool {
        C::INFO.human_readable
    }
    fn python_interop(&self) -> bool {
        C::INFO.python_interop
    }
}
