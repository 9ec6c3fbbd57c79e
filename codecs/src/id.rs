//! Codec ids: the one byte every frame carries to name its codec.

use std::fmt;

/// The wire id of a codec, carried in every frame header.
///
/// Id ranges (fixed; documented in `codecs/README.md`):
///
/// | ids | meaning |
/// |---|---|
/// | 0 | no codec (control frames that carry no codec payload) |
/// | 1–7 | the built-in codecs, see the constants |
/// | 8–127 | reserved for future built-in codecs |
/// | 128–254 | user codecs ([`CodecId::USER_RANGE`]) |
/// | 255 | reserved |
///
/// Any byte is representable, so an id this version does not know can be carried and
/// answered with a typed error.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CodecId(u8);

impl CodecId {
    /// No codec: frames that carry no codec-encoded payload.
    pub const NONE: CodecId = CodecId(0);
    /// JSON (serde_json).
    pub const JSON: CodecId = CodecId(1);
    /// MessagePack (rmp-serde).
    pub const MSGPACK: CodecId = CodecId(2);
    /// CBOR, RFC 8949 (ciborium).
    pub const CBOR: CodecId = CodecId(3);
    /// bincode 2.x wire format (unmaintained upstream; kept for compatibility).
    pub const BINCODE: CodecId = CodecId(4);
    /// postcard 1.x wire format.
    pub const POSTCARD: CodecId = CodecId(5);
    /// RON, Rusty Object Notation.
    pub const RON: CodecId = CodecId(6);
    /// serpent: Python literal expressions, byte-compatible with Python's `serpent` 1.43.
    pub const SERPENT: CodecId = CodecId(7);
    /// The ids user codecs may be registered with.
    pub const USER_RANGE: std::ops::RangeInclusive<u8> = 128..=254;

    /// Every built-in codec id, in id order.
    pub const BUILTIN: [CodecId; 7] = [
        Self::JSON,
        Self::MSGPACK,
        Self::CBOR,
        Self::BINCODE,
        Self::POSTCARD,
        Self::RON,
        Self::SERPENT,
    ];

    /// Wraps a raw wire byte; any value is representable.
    pub const fn new(raw: u8) -> CodecId {
        CodecId(raw)
    }

    /// The raw wire byte.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// True for ids 1–7, the built-in codecs.
    pub const fn is_builtin(self) -> bool {
        self.0 >= 1 && self.0 <= 7
    }

    /// True for ids in [`CodecId::USER_RANGE`].
    pub const fn is_user(self) -> bool {
        self.0 >= 128 && self.0 <= 254
    }

    /// The fixed name of a built-in codec (`"json"`, `"msgpack"`, ...), `None` otherwise.
    pub const fn builtin_name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "json",
            2 => "msgpack",
            3 => "cbor",
            4 => "bincode",
            5 => "postcard",
            6 => "ron",
            7 => "serpent",
            _ => return None,
        })
    }

    /// The built-in codec with this name (case-insensitive), `None` otherwise.
    pub fn from_builtin_name(name: &str) -> Option<CodecId> {
        Self::BUILTIN.into_iter().find(|id| {
            id.builtin_name()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    }
}

impl fmt::Debug for CodecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.builtin_name() {
            Some(name) => write!(f, "CodecId({}, {name})", self.0),
            None => write!(f, "CodecId({})", self.0),
        }
    }
}

impl fmt::Display for CodecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.builtin_name() {
            Some(name) => f.write_str(name),
            None => write!(f, "codec#{}", self.0),
        }
    }
}
