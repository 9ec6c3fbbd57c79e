//! Wire values: open newtypes with named constants, so values this version does not know
//! are still representable (as `h2::Reason` does).

use std::fmt;

macro_rules! wire_newtype {
    (
        $(#[$meta:meta])*
        $name:ident($repr:ty) {
            $( $(#[$cmeta:meta])* $cname:ident = $value:expr; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Eq, Hash, Ord, PartialEq, PartialOrd)]
        pub struct $name(pub $repr);

        impl $name {
            $( $(#[$cmeta])* pub const $cname: $name = $name($value); )*

            /// The name of a value this version knows, `None` for any other value.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $( $name::$cname => Some(stringify!($cname)), )*
                    _ => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}(0x{:x})", stringify!($name), self.0),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }

        impl From<$repr> for $name {
            fn from(v: $repr) -> Self {
                $name(v)
            }
        }

        impl From<$name> for $repr {
            fn from(v: $name) -> Self {
                v.0
            }
        }
    };
}

wire_newtype! {
    /// The message kind, header byte 5 (SPEC §3).
    Kind(u8) {
        /// Client → server, first frame: versions, codecs in preference order, limits.
        HELLO = 0x01;
        /// Server → client: the handshake succeeded (version, default codec, accepted set,
        /// limits).
        WELCOME = 0x02;
        /// Server → client: the handshake failed (code, supported versions, accepted set).
        REFUSE = 0x03;
        /// Client → server: a call (route, annotations, args, kwargs, attachment).
        CALL = 0x04;
        /// Server → client: the result of a call.
        REPLY = 0x05;
        /// Server → client: a call failed; fixed binary [`ErrorBody`](crate::ErrorBody).
        ERROR = 0x06;
        /// Client → server: stop working on a call.
        CANCEL = 0x07;
        /// Server → client: one item of a streamed result.
        STREAM_ITEM = 0x08;
        /// Server → client: a streamed result is complete.
        STREAM_END = 0x09;
        /// Either direction: liveness probe with 8 opaque bytes.
        PING = 0x0a;
        /// Either direction: answer to a PING, echoing its 8 bytes.
        PONG = 0x0b;
        /// Either direction: graceful shutdown, or a fatal connection error.
        GOAWAY = 0x0c;
        /// Either direction, for one streaming call: the sender may receive this many more
        /// stream items (a u32 increment of the flow-control window, SPEC §6.12).
        CREDIT = 0x0d;
    }
}

wire_newtype! {
    /// Header flags, bytes 6-7 (SPEC §4). Each flag is valid on one kind only; any other
    /// bit is rejected.
    Flags(u16) {
        /// No flag set.
        EMPTY = 0x0000;
        /// CALL: the caller wants no reply; the call is not counted in flight.
        ONEWAY = 0x0001;
        /// REPLY: the result is a stream; STREAM_ITEM frames follow until STREAM_END or
        /// ERROR.
        STREAM = 0x0002;
        /// CALL, REPLY, STREAM_ITEM: the payload and kwargs sections travel compressed
        /// (SPEC §6.9); only valid while compression is in force on the connection.
        COMPRESSED = 0x0004;
        /// CALL: the caller streams argument items after the call (SPEC §6.13):
        /// STREAM_ITEM frames from the caller, ended by its STREAM_END; only while
        /// client → server streams are in force on the connection, never with ONEWAY.
        UPLOAD = 0x0008;
    }
}

impl Flags {
    /// Every bit this version defines.
    pub const KNOWN: Flags = Flags(0x000F);

    /// Whether every bit of `other` is set in `self`.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of both flag sets.
    #[must_use]
    pub fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
}

wire_newtype! {
    /// A compression algorithm id (SPEC §6.9): listed in the compression extension of
    /// HELLO and WELCOME and in the first byte of every compressed section. Unknown ids are
    /// representable; a receiver only inflates the ids in force on its connection.
    CompressionId(u8) {
        /// Zstandard (RFC 8878), any level the sender likes.
        ZSTD = 0x01;
    }
}

impl CompressionId {
    /// The lower-case name of a known algorithm (`"zstd"`), `None` for any other id.
    pub fn lower_name(self) -> Option<&'static str> {
        match self {
            CompressionId::ZSTD => Some("zstd"),
            _ => None,
        }
    }
}

/// The wire id of a codec, header byte 8 of every frame (SPEC §5): the one codec id type of
/// the crate family (`wirecall-codecs` re-exports it). This crate never interprets payloads.
///
/// | ids | meaning |
/// |---|---|
/// | 0 | no codec (control frames and bodies with a fixed binary form) |
/// | 1–8 | the built-in codecs, see the constants |
/// | 9–127 | reserved for future built-in codecs |
/// | 128–254 | user codecs ([`CodecId::USER_RANGE`]) |
/// | 255 | reserved, never valid on the wire |
///
/// Any byte is representable, so an id this version does not know can be carried and
/// answered with a typed error.
#[derive(Clone, Copy, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct CodecId(pub u8);

impl CodecId {
    /// No codec: control frames and bodies with a fixed binary form.
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
    /// marshal: Python's `marshal` format, version 4 (what Pyro5's marshal serializer sends).
    pub const MARSHAL: CodecId = CodecId(8);
    /// Reserved; never valid on the wire.
    pub const RESERVED: CodecId = CodecId(255);
    /// First id of the user codec range.
    pub const USER_MIN: CodecId = CodecId(128);
    /// Last id of the user codec range.
    pub const USER_MAX: CodecId = CodecId(254);
    /// The ids user codecs may be registered with.
    pub const USER_RANGE: std::ops::RangeInclusive<u8> = 128..=254;

    /// Every built-in codec id, in id order.
    pub const BUILTIN: [CodecId; 8] = [
        Self::JSON,
        Self::MSGPACK,
        Self::CBOR,
        Self::BINCODE,
        Self::POSTCARD,
        Self::RON,
        Self::SERPENT,
        Self::MARSHAL,
    ];

    /// Wraps a raw wire byte; any value is representable.
    pub const fn new(raw: u8) -> CodecId {
        CodecId(raw)
    }

    /// The raw wire byte.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// Whether this id may name a codec in a data frame or an accepted set (1-254).
    pub const fn is_codec(self) -> bool {
        self.0 != 0 && self.0 != 255
    }

    /// True for ids 1–8, the built-in codecs.
    pub const fn is_builtin(self) -> bool {
        self.0 >= 1 && self.0 <= 8
    }

    /// Whether this id is in the user range (128-254).
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
            8 => "marshal",
            _ => return None,
        })
    }

    /// The name of a value this version knows, spelled as its constant (`"JSON"`,
    /// `"NONE"`), `None` for any other value.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "NONE",
            1 => "JSON",
            2 => "MSGPACK",
            3 => "CBOR",
            4 => "BINCODE",
            5 => "POSTCARD",
            6 => "RON",
            7 => "SERPENT",
            8 => "MARSHAL",
            255 => "RESERVED",
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

/// Built-in codecs by name (`json`), any other id as `codec#N`.
impl fmt::Display for CodecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.builtin_name() {
            Some(name) => f.write_str(name),
            None => write!(f, "codec#{}", self.0),
        }
    }
}

impl From<u8> for CodecId {
    fn from(v: u8) -> Self {
        CodecId(v)
    }
}

impl From<CodecId> for u8 {
    fn from(v: CodecId) -> Self {
        v.0
    }
}

wire_newtype! {
    /// Error codes carried by ERROR, REFUSE and GOAWAY frames (SPEC §9). Codes from
    /// `0x8000_0000` up belong to applications.
    ErrorCode(u32) {
        /// No error: graceful GOAWAY.
        NO_ERROR = 0x00;
        /// The peer broke a rule of the protocol (malformed frame, wrong order).
        PROTOCOL_ERROR = 0x01;
        /// No protocol version in common.
        UNSUPPORTED_VERSION = 0x02;
        /// No codec in common at handshake.
        NO_COMMON_CODEC = 0x03;
        /// The frame's codec is not in the server's accepted set; the body lists the set.
        CODEC_REFUSED = 0x04;
        /// A frame exceeded a configured limit (frame length, annotations).
        LIMIT_EXCEEDED = 0x05;
        /// Too many calls in flight; retry when one completes.
        TOO_MANY_IN_FLIGHT = 0x06;
        /// No provider with that provider id.
        UNKNOWN_PROVIDER = 0x07;
        /// The provider has no exposed method with that name.
        UNKNOWN_METHOD = 0x08;
        /// The caller cancelled the call.
        CANCELLED = 0x09;
        /// The call's deadline passed.
        DEADLINE_EXCEEDED = 0x0a;
        /// The server is shutting down (GOAWAY); retry on another connection.
        SHUTTING_DOWN = 0x0b;
        /// The arguments could not be decoded with the frame's codec.
        BAD_ARGUMENTS = 0x0c;
        /// The method raised or returned an error (type name, message, trace).
        APPLICATION_ERROR = 0x0d;
        /// The server failed for a reason of its own.
        INTERNAL_ERROR = 0x0e;
        /// A hook refused the call (authentication, authorization).
        PERMISSION_DENIED = 0x0f;
        /// The peer did not answer a PING, or the handshake, in time.
        TIMEOUT = 0x10;
        /// The call was not run: it belongs to an ordered batch and an earlier call of the
        /// batch failed (SPEC §6.8). Nothing of it ran, so it may be sent again.
        SKIPPED = 0x11;
        /// A peer sent stream items beyond the credit it was granted, or granted more credit
        /// than a window can hold (SPEC §6.12): fatal, sent in GOAWAY.
        FLOW_CONTROL = 0x12;
    }
}

impl ErrorCode {
    /// First code of the application range.
    pub const APPLICATION_MIN: ErrorCode = ErrorCode(0x8000_0000);

    /// Whether retrying the call (on this or another connection) can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::TOO_MANY_IN_FLIGHT | ErrorCode::SHUTTING_DOWN | ErrorCode::TIMEOUT
        )
    }
}

wire_newtype! {
    /// The provider a call is addressed to, header bytes 10-11 (Margo's provider id).
    ProviderId(u16) {
        /// Margo's default provider id.
        DEFAULT = 0;
        /// The built-in daemon provider (metadata, ping, shutdown).
        DAEMON = 0xffff;
    }
}

/// The id matching a call to its reply, header bytes 12-19 (SPEC §2).
///
/// A client numbers calls from 1 upwards, strictly increasing on a connection; 0 marks
/// frames that belong to no call (handshake, ping, goaway).
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct RequestId(pub u64);

impl RequestId {
    /// The id of frames that belong to no call.
    pub const NONE: RequestId = RequestId(0);
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The protocol version this implementation speaks.
pub const VERSION: u8 = 1;

/// The four bytes that start every native frame: `0x89 'W' 'C' 'P'`.
///
/// The first byte has its high bit set, so it differs from Pyro5's `PYRO` and from any
/// ASCII text protocol (SPEC §1).
pub const MAGIC: [u8; 4] = [0x89, b'W', b'C', b'P'];

/// Length of the fixed header in bytes.
pub const HEADER_LEN: usize = 40;

/// Which protocol a byte stream speaks, judged from its first four bytes (SPEC §1).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Dialect {
    /// wirecall's native protocol ([`MAGIC`]).
    Native,
    /// Pyro5's framing (`PYRO`).
    Pyro5,
    /// Neither; close the connection.
    Unknown,
}

/// Tells the native protocol from Pyro5's by the first bytes a client sent.
///
/// Returns `None` while fewer than 4 bytes are available and the prefix still matches one of
/// the dialects.
pub fn detect_dialect(first_bytes: &[u8]) -> Option<Dialect> {
    const PYRO: &[u8; 4] = b"PYRO";
    let n = first_bytes.len().min(4);
    let head = first_bytes.get(..n).unwrap_or_default();
    if n == 4 {
        return Some(if head == MAGIC {
            Dialect::Native
        } else if head == PYRO {
            Dialect::Pyro5
        } else {
            Dialect::Unknown
        });
    }
    if MAGIC.starts_with(head) || PYRO.starts_with(head) {
        None
    } else {
        Some(Dialect::Unknown)
    }
}
