//! Pyro5 wire values: open newtypes with named constants (any value is representable), the
//! header constants, and the few marshal string codes the dialect needs for its own
//! refusals.

use std::fmt;

use crate::wire::CodecId;

/// The four bytes that start every Pyro5 message: `PYRO`.
pub const TAG: [u8; 4] = *b"PYRO";

/// The Pyro5 protocol version, header bytes 4-5 (502 = `01 F6`).
pub const PROTOCOL_VERSION: u16 = 502;

/// The magic that ends every Pyro5 header, bytes 38-39 (`4D C5`).
pub const HEADER_MAGIC: u16 = 0x4DC5;

/// Length of the fixed Pyro5 header in bytes.
pub const HEADER_LEN: usize = 40;

/// A Pyro5 daemon's default message size limit (data plus annotations): 1 GiB.
pub const PYRO_MAX_MESSAGE_SIZE: u32 = 1 << 30;

wire_newtype! {
    /// The message type, header byte 6 (reference §1.2). Any byte is representable; a type
    /// the connection's state does not expect is a protocol error there.
    MessageType(u8) {
        /// Client → server, always the first message: the serialized handshake dict.
        CONNECT = 1;
        /// Server → client: the handshake succeeded (`{"handshake": .., "meta": ..}`).
        CONNECTOK = 2;
        /// Server → client: the handshake failed; the payload is a serialized string, then
        /// the server closes.
        CONNECTFAIL = 3;
        /// Client → server: a call (`(objectId, method, vargs, kwargs)`, serialized).
        INVOKE = 4;
        /// Server → client: the result of a call, or an exception with flag EXCEPTION.
        RESULT = 5;
        /// Both directions: raw `ping` answered by raw `pong`, never serialized.
        PING = 6;
    }
}

/// The header flags, bytes 8-9 (reference §1.3). Any combination is representable.
#[derive(Clone, Copy, Default, Eq, Hash, PartialEq)]
pub struct Flags(pub u16);

impl Flags {
    /// No flag set.
    pub const EMPTY: Flags = Flags(0);
    /// RESULT: the payload is a serialized exception.
    pub const EXCEPTION: Flags = Flags(0x0001);
    /// The payload (not the annotations) is zlib-compressed (RFC 1950).
    pub const COMPRESSED: Flags = Flags(0x0002);
    /// INVOKE: do not reply.
    pub const ONEWAY: Flags = Flags(0x0004);
    /// INVOKE carries a list of calls; RESULT a list of results.
    pub const BATCH: Flags = Flags(0x0008);
    /// RESULT: the result is a remote iterator whose id is in annotation `STRM`.
    pub const ITEMSTREAMRESULT: Flags = Flags(0x0010);
    /// INVOKE: "blob" pass-through, routing in annotation `BLBI` (marshal).
    pub const KEEPSERIALIZED: Flags = Flags(0x0020);
    /// The correlation id field is meaningful.
    pub const CORR_ID: Flags = Flags(0x0040);
    /// Every bit Pyro5 5.17 defines.
    pub const KNOWN: Flags = Flags(0x007f);

    const NAMES: [(Flags, &'static str); 7] = [
        (Flags::EXCEPTION, "EXCEPTION"),
        (Flags::COMPRESSED, "COMPRESSED"),
        (Flags::ONEWAY, "ONEWAY"),
        (Flags::BATCH, "BATCH"),
        (Flags::ITEMSTREAMRESULT, "ITEMSTREAMRESULT"),
        (Flags::KEEPSERIALIZED, "KEEPSERIALIZED"),
        (Flags::CORR_ID, "CORR_ID"),
    ];

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of both flag sets.
    #[must_use]
    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// `self` without the bits of `other`.
    #[must_use]
    pub const fn without(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }
}

/// `EXCEPTION|CORR_ID`, unknown bits as hex, `EMPTY` for none.
impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("EMPTY");
        }
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            if first {
                first = false;
                Ok(())
            } else {
                f.write_str("|")
            }
        };
        for (flag, name) in Flags::NAMES {
            if self.contains(flag) {
                sep(f)?;
                f.write_str(name)?;
            }
        }
        let unknown = self.without(Flags::KNOWN).0;
        if unknown != 0 {
            sep(f)?;
            write!(f, "0x{unknown:x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl From<u16> for Flags {
    fn from(v: u16) -> Self {
        Flags(v)
    }
}

impl From<Flags> for u16 {
    fn from(v: Flags) -> Self {
        v.0
    }
}

/// A Pyro5 serializer id, header byte 7 (reference §1.4). Pyro5 numbers its serializers
/// differently from wirecall's [`CodecId`]; [`SerializerId::codec`] and
/// [`SerializerId::from_codec`] map between the two. Any byte is representable.
#[derive(Clone, Copy, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct SerializerId(pub u8);

impl SerializerId {
    /// serpent, Pyro5's default (wirecall [`CodecId::SERPENT`]).
    pub const SERPENT: SerializerId = SerializerId(1);
    /// Python marshal (wirecall [`CodecId::MARSHAL`]).
    pub const MARSHAL: SerializerId = SerializerId(2);
    /// json (wirecall [`CodecId::JSON`]).
    pub const JSON: SerializerId = SerializerId(3);
    /// msgpack (wirecall [`CodecId::MSGPACK`]).
    pub const MSGPACK: SerializerId = SerializerId(4);
    /// The arbitrary id a Python proxy puts in its PING (never a serializer).
    pub const PING: SerializerId = SerializerId(42);

    /// The four serializers of Pyro5 5.17, in id order.
    pub const ALL: [SerializerId; 4] = [Self::SERPENT, Self::MARSHAL, Self::JSON, Self::MSGPACK];

    /// Pyro5's name of the serializer (`"serpent"`), `None` for any other id.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "serpent",
            2 => "marshal",
            3 => "json",
            4 => "msgpack",
            _ => return None,
        })
    }

    /// The wirecall codec that reads and writes this serializer's payloads.
    pub const fn codec(self) -> Option<CodecId> {
        Some(match self.0 {
            1 => CodecId::SERPENT,
            2 => CodecId::MARSHAL,
            3 => CodecId::JSON,
            4 => CodecId::MSGPACK,
            _ => return None,
        })
    }

    /// The Pyro5 serializer id of a wirecall codec, `None` for codecs Pyro5 has no id for
    /// (cbor, bincode, ...).
    pub const fn from_codec(codec: CodecId) -> Option<SerializerId> {
        Some(match codec {
            CodecId::SERPENT => Self::SERPENT,
            CodecId::MARSHAL => Self::MARSHAL,
            CodecId::JSON => Self::JSON,
            CodecId::MSGPACK => Self::MSGPACK,
            _ => return None,
        })
    }
}

/// `SerializerId(1, serpent)`, `SerializerId(99)`.
impl fmt::Debug for SerializerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "SerializerId({}, {n})", self.0),
            None => write!(f, "SerializerId({})", self.0),
        }
    }
}

/// `serpent (1)`, `unknown serializer 99`.
impl fmt::Display for SerializerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} ({})", self.0),
            None => write!(f, "unknown serializer {}", self.0),
        }
    }
}

impl From<u8> for SerializerId {
    fn from(v: u8) -> Self {
        SerializerId(v)
    }
}

impl From<SerializerId> for u8 {
    fn from(v: SerializerId) -> Self {
        v.0
    }
}

/// Python's `marshal.dumps(text)` for a `str`: what a Pyro5 daemon sends in a CONNECTFAIL
/// it raises before knowing the client's serializer, and what any Python client can read
/// whatever serializer it uses (marshal is always installed).
///
/// ASCII text under 256 bytes is a short-ASCII string (`FA len text`, as the daemon sends),
/// longer ASCII text `E1 u32le text`, anything else UTF-8 `F5 u32le text`. Returns `None`
/// when the text is longer than a u32 can count.
pub fn marshal_str(text: &str) -> Option<Vec<u8>> {
    let len = u32::try_from(text.len()).ok()?;
    let mut out = Vec::with_capacity(text.len() + 5);
    if text.is_ascii() && text.len() < 256 {
        out.push(0xFA);
        out.push(len as u8);
    } else {
        out.push(if text.is_ascii() { 0xE1 } else { 0xF5 });
        out.extend_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(text.as_bytes());
    Some(out)
}

/// Reads a payload that is one Python `marshal` string (any of the str codes, with or
/// without the reference flag, exactly filling the payload), as CONNECTFAIL reasons are.
/// `None` for anything else; never panics.
pub fn unmarshal_str(data: &[u8]) -> Option<String> {
    let (&code, rest) = data.split_first()?;
    let (len, body) = match code & 0x7f {
        // short ASCII, short ASCII interned: 1-byte length
        b'z' | b'Z' => {
            let (&n, body) = rest.split_first()?;
            (usize::from(n), body)
        }
        // ASCII, ASCII interned, unicode (UTF-8), interned unicode: 4-byte LE length
        b'a' | b'A' | b'u' | b't' => {
            let n = rest.get(..4)?;
            let n = u32::from_le_bytes([n[0], n[1], n[2], n[3]]);
            (usize::try_from(n).ok()?, rest.get(4..)?)
        }
        _ => return None,
    };
    if body.len() != len {
        return None;
    }
    String::from_utf8(body.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marshal_string_codes() {
        // The daemon's CONNECTFAIL payload of reference §2.1/§2.13.
        let reason = "invalid msg type 4 received (expected: 1)";
        let bytes = marshal_str(reason).unwrap();
        assert_eq!(&bytes[..2], &[0xFA, 0x29]);
        assert_eq!(unmarshal_str(&bytes).as_deref(), Some(reason));
        let long = "x".repeat(300);
        let b = marshal_str(&long).unwrap();
        assert_eq!(&b[..5], &[0xE1, 0x2C, 0x01, 0, 0]);
        assert_eq!(unmarshal_str(&b).as_deref(), Some(long.as_str()));
        let uni = "caf\u{e9}";
        let b = marshal_str(uni).unwrap();
        assert_eq!(b, [0xF5, 5, 0, 0, 0, b'c', b'a', b'f', 0xC3, 0xA9]);
        assert_eq!(unmarshal_str(&b).as_deref(), Some(uni));
        // without the reference flag, interned
        assert_eq!(unmarshal_str(b"Z\x02ok").as_deref(), Some("ok"));
        // wrong length, other codes, truncation
        assert_eq!(unmarshal_str(b"z\x03ok"), None);
        assert_eq!(unmarshal_str(b"i\x01\x00\x00\x00"), None);
        assert_eq!(unmarshal_str(b"\xf5\x01\x00"), None);
        assert_eq!(unmarshal_str(b""), None);
        assert_eq!(unmarshal_str(b"\xf5\x02\x00\x00\x00\xff\xfe"), None);
    }

    #[test]
    fn serializer_ids_map_to_codecs() {
        for s in SerializerId::ALL {
            let c = s.codec().unwrap();
            assert_eq!(SerializerId::from_codec(c), Some(s));
            assert_eq!(s.name(), c.builtin_name());
        }
        assert_eq!(SerializerId(99).codec(), None);
        assert_eq!(SerializerId::from_codec(CodecId::CBOR), None);
        assert_eq!(SerializerId(3).to_string(), "json (3)");
        assert_eq!(SerializerId(99).to_string(), "unknown serializer 99");
    }

    #[test]
    fn flags_debug() {
        assert_eq!(
            format!("{:?}", Flags(0x51)),
            "EXCEPTION|ITEMSTREAMRESULT|CORR_ID"
        );
        assert_eq!(format!("{:?}", Flags(0x8004)), "ONEWAY|0x8000");
        assert_eq!(format!("{:?}", Flags::EMPTY), "EMPTY");
        assert_eq!(MessageType(4).to_string(), "INVOKE");
        assert_eq!(format!("{:?}", MessageType(9)), "MessageType(0x9)");
    }
}
