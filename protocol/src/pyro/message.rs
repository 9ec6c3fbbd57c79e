//! The Pyro5 message: 40-byte header, annotation chunks, payload (reference §1).

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::wire::{
    Flags, MessageType, SerializerId, HEADER_LEN, HEADER_MAGIC, PROTOCOL_VERSION, TAG,
};
use crate::error::ProtocolError;

/// A decoded Pyro5 header (reference §1.1). All multi-byte fields are big-endian.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | `PYRO` |
/// | 4 | 2 | version, 502 |
/// | 6 | 1 | message type |
/// | 7 | 1 | serializer id |
/// | 8 | 2 | flags |
/// | 10 | 2 | sequence number |
/// | 12 | 4 | data length (after compression) |
/// | 16 | 4 | annotations length (each chunk counted as 8 + value length) |
/// | 20 | 16 | correlation id |
/// | 36 | 2 | reserved (sent as 0, never checked) |
/// | 38 | 2 | magic `4D C5` |
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Header {
    /// The message type.
    pub msg_type: MessageType,
    /// The payload's serializer.
    pub serializer: SerializerId,
    /// The flag bits.
    pub flags: Flags,
    /// The sequence number (echoed in replies).
    pub seq: u16,
    /// Bytes of payload after the annotations.
    pub data_len: u32,
    /// Bytes of annotation chunks after the header.
    pub annotations_len: u32,
    /// The correlation id (a UUID's 16 bytes), meaningful with [`Flags::CORR_ID`].
    pub correlation_id: [u8; 16],
    /// The reserved field: sent as 0, never checked, kept for byte-identical re-encoding.
    pub reserved: u16,
}

impl Header {
    /// Parses and checks a header: the tag `PYRO`, version 502, then the closing magic, in
    /// the order a Python receiver checks them. The message type, serializer and flags are
    /// not judged here (any value is representable).
    pub fn parse(b: &[u8; HEADER_LEN]) -> Result<Header, ProtocolError> {
        let be16 = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let be32 = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if b[..4] != TAG {
            return Err(ProtocolError::PyroBadMagic {
                what: "tag",
                found: b[..4].to_vec(),
            });
        }
        let version = be16(4);
        if version != PROTOCOL_VERSION {
            return Err(ProtocolError::PyroUnsupportedVersion { version });
        }
        if be16(38) != HEADER_MAGIC {
            return Err(ProtocolError::PyroBadMagic {
                what: "magic",
                found: b[38..40].to_vec(),
            });
        }
        let mut correlation_id = [0u8; 16];
        correlation_id.copy_from_slice(&b[20..36]);
        Ok(Header {
            msg_type: MessageType(b[6]),
            serializer: SerializerId(b[7]),
            flags: Flags(be16(8)),
            seq: be16(10),
            data_len: be32(12),
            annotations_len: be32(16),
            correlation_id,
            reserved: be16(36),
        })
    }

    /// The header's 40 bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..4].copy_from_slice(&TAG);
        b[4..6].copy_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        b[6] = self.msg_type.0;
        b[7] = self.serializer.0;
        b[8..10].copy_from_slice(&self.flags.0.to_be_bytes());
        b[10..12].copy_from_slice(&self.seq.to_be_bytes());
        b[12..16].copy_from_slice(&self.data_len.to_be_bytes());
        b[16..20].copy_from_slice(&self.annotations_len.to_be_bytes());
        b[20..36].copy_from_slice(&self.correlation_id);
        b[36..38].copy_from_slice(&self.reserved.to_be_bytes());
        b[38..40].copy_from_slice(&HEADER_MAGIC.to_be_bytes());
        b
    }

    /// Data length plus annotations length: what Pyro5 checks against its message size
    /// limit, and the body length after the header.
    pub fn body_len(&self) -> u64 {
        u64::from(self.data_len) + u64::from(self.annotations_len)
    }

    /// The correlation id when [`Flags::CORR_ID`] is set.
    pub fn correlation(&self) -> Option<[u8; 16]> {
        self.flags
            .contains(Flags::CORR_ID)
            .then_some(self.correlation_id)
    }
}

/// An annotation id: exactly 4 bytes, ASCII (reference §1.5).
#[derive(Clone, Copy, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct AnnotationId(pub [u8; 4]);

impl AnnotationId {
    /// `STRM`: the id of a remote iterator, ASCII text of a UUID4 (flag ITEMSTREAMRESULT).
    pub const STRM: AnnotationId = AnnotationId(*b"STRM");
    /// `BLBI`: blob routing info of a KEEPSERIALIZED call, marshal-encoded.
    pub const BLBI: AnnotationId = AnnotationId(*b"BLBI");

    /// The id spelled by `s`, which must be exactly 4 ASCII characters.
    pub fn new(s: &str) -> Result<AnnotationId, ProtocolError> {
        let b: [u8; 4] = s.as_bytes().try_into().map_err(|_| {
            ProtocolError::InvalidArgument("a Pyro5 annotation id is exactly 4 ASCII characters")
        })?;
        if !s.is_ascii() {
            return Err(ProtocolError::InvalidArgument(
                "a Pyro5 annotation id is exactly 4 ASCII characters",
            ));
        }
        Ok(AnnotationId(b))
    }

    /// The id as text (always ASCII once decoded or built with [`AnnotationId::new`]).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("????")
    }
}

impl fmt::Debug for AnnotationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii() {
            write!(f, "{:?}", self.as_str())
        } else {
            write!(f, "{:02x?}", self.0)
        }
    }
}

/// The annotation chunks of a message, in wire order (duplicates kept, so a message
/// re-encodes byte for byte; [`Annotations::get`] returns the last one, as Python's dict
/// does).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Annotations {
    chunks: Vec<(AnnotationId, Bytes)>,
}

impl Annotations {
    /// No annotations.
    pub fn new() -> Annotations {
        Annotations::default()
    }

    /// Appends a chunk.
    pub fn push(&mut self, id: AnnotationId, value: impl Into<Bytes>) {
        self.chunks.push((id, value.into()));
    }

    /// Builder form of [`Annotations::push`].
    #[must_use]
    pub fn with(mut self, id: AnnotationId, value: impl Into<Bytes>) -> Annotations {
        self.push(id, value);
        self
    }

    /// The value of the last chunk with this id.
    pub fn get(&self, id: AnnotationId) -> Option<&Bytes> {
        self.chunks
            .iter()
            .rev()
            .find(|(k, _)| *k == id)
            .map(|(_, v)| v)
    }

    /// The chunks in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (AnnotationId, &Bytes)> + '_ {
        self.chunks.iter().map(|(k, v)| (*k, v))
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Whether there is no chunk.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Bytes the chunks take on the wire (8 + value length each), without overflow.
    pub fn encoded_len(&self) -> u64 {
        self.chunks.iter().map(|(_, v)| 8 + v.len() as u64).sum()
    }

    /// Splits an annotation area (exactly `annotations length` bytes) into chunks, without
    /// copying the values. A chunk that overruns the area, a truncated chunk header or a
    /// non-ASCII id is an error, as in Python.
    pub fn parse(mut area: Bytes) -> Result<Annotations, ProtocolError> {
        let mut chunks = Vec::new();
        while !area.is_empty() {
            let Some(head) = area.get(..8) else {
                return Err(ProtocolError::MalformedBody {
                    what: "Pyro5 annotations",
                    problem: "truncated chunk header",
                });
            };
            let id = AnnotationId([head[0], head[1], head[2], head[3]]);
            if !id.0.is_ascii() {
                return Err(ProtocolError::MalformedBody {
                    what: "Pyro5 annotations",
                    problem: "chunk id is not ASCII",
                });
            }
            let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as u64;
            if len > (area.len() - 8) as u64 {
                return Err(ProtocolError::MalformedBody {
                    what: "Pyro5 annotations",
                    problem: "annotation chunk length exceeds remaining data",
                });
            }
            let _ = area.split_to(8);
            // Fits: at most the remaining area.
            let value = area.split_to(len as usize);
            chunks.push((id, value));
        }
        Ok(Annotations { chunks })
    }

    fn encode(&self, dst: &mut BytesMut) {
        for (id, v) in &self.chunks {
            dst.put_slice(&id.0);
            // Lengths were checked to fit in u32 by the caller.
            dst.put_u32(v.len() as u32);
            dst.put_slice(v);
        }
    }
}

/// A whole Pyro5 message.
///
/// The payload is carried as it is on the wire: with [`Flags::COMPRESSED`] it is a zlib
/// stream this crate does not inflate (see `PYRO5.md`, "Compression").
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Message {
    /// The message type.
    pub msg_type: MessageType,
    /// The payload's serializer (echoed in replies).
    pub serializer: SerializerId,
    /// The flag bits.
    pub flags: Flags,
    /// The sequence number.
    pub seq: u16,
    /// The correlation id, meaningful with [`Flags::CORR_ID`]; zeros when unused.
    pub correlation_id: [u8; 16],
    /// The reserved header field (0 when sent by Pyro5).
    pub reserved: u16,
    /// The annotation chunks.
    pub annotations: Annotations,
    /// The payload.
    pub payload: Bytes,
}

impl Message {
    /// A message with no flags, correlation id or annotations.
    pub fn new(
        msg_type: MessageType,
        serializer: SerializerId,
        seq: u16,
        payload: Bytes,
    ) -> Message {
        Message {
            msg_type,
            serializer,
            flags: Flags::EMPTY,
            seq,
            correlation_id: [0; 16],
            reserved: 0,
            annotations: Annotations::new(),
            payload,
        }
    }

    /// The header this message encodes with.
    pub fn header(&self) -> Result<Header, ProtocolError> {
        let data_len = u32::try_from(self.payload.len()).map_err(|_| ProtocolError::TooLong {
            what: "Pyro5 payload",
            len: self.payload.len() as u64,
            max: u64::from(u32::MAX),
        })?;
        let ann = self.annotations.encoded_len();
        let annotations_len = u32::try_from(ann).map_err(|_| ProtocolError::TooLong {
            what: "Pyro5 annotations",
            len: ann,
            max: u64::from(u32::MAX),
        })?;
        Ok(Header {
            msg_type: self.msg_type,
            serializer: self.serializer,
            flags: self.flags,
            seq: self.seq,
            data_len,
            annotations_len,
            correlation_id: self.correlation_id,
            reserved: self.reserved,
        })
    }

    /// Bytes the message takes on the wire.
    pub fn encoded_len(&self) -> u64 {
        HEADER_LEN as u64 + self.annotations.encoded_len() + self.payload.len() as u64
    }

    /// Appends the message's bytes to `dst`. Lengths that do not fit their u32 field are
    /// an error and nothing is written.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        let header = self.header()?;
        dst.reserve(HEADER_LEN + header.body_len() as usize);
        dst.put_slice(&header.to_bytes());
        self.annotations.encode(dst);
        dst.put_slice(&self.payload);
        Ok(())
    }

    /// The message's bytes.
    pub fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let mut b = BytesMut::new();
        self.encode(&mut b)?;
        Ok(b.freeze())
    }

    /// The correlation id when [`Flags::CORR_ID`] is set.
    pub fn correlation(&self) -> Option<[u8; 16]> {
        self.flags
            .contains(Flags::CORR_ID)
            .then_some(self.correlation_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks_in_python_order() {
        let m = Message::new(
            MessageType::PING,
            SerializerId::PING,
            0,
            Bytes::from_static(b"ping"),
        );
        let good: [u8; HEADER_LEN] = m.to_bytes().unwrap()[..HEADER_LEN].try_into().unwrap();
        assert!(Header::parse(&good).is_ok());
        let mut b = good;
        b[0] = b'X';
        b[5] = 0; // a wrong version too: the tag is reported first
        assert_eq!(Header::parse(&b).unwrap_err().kind_name(), "pyro_bad_magic");
        let mut b = good;
        b[5] = 0xF5;
        b[39] = 0; // a wrong magic too: the version is reported first
        assert_eq!(
            Header::parse(&b).unwrap_err(),
            ProtocolError::PyroUnsupportedVersion { version: 501 }
        );
        let mut b = good;
        b[38] = 0x4E;
        let e = Header::parse(&b).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid message or protocol version"),
            "{e}"
        );
    }

    #[test]
    fn annotations_parse_and_limits() {
        let area = Bytes::from_static(b"ABCD\x00\x00\x00\x03\x01\x02\x03XY12\x00\x00\x00\x00");
        let a = Annotations::parse(area).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a.get(AnnotationId(*b"ABCD")).unwrap().as_ref(), &[1, 2, 3]);
        assert_eq!(a.get(AnnotationId(*b"XY12")).unwrap().len(), 0);
        assert_eq!(a.encoded_len(), 0x13);
        for bad in [
            &b"ABCD\x00\x00\x00\x04\x01\x02\x03"[..],
            &b"ABC"[..],
            &b"AB\xffD\x00\x00\x00\x00"[..],
            &b"ABCD\xff\xff\xff\xff"[..],
        ] {
            let e = Annotations::parse(Bytes::copy_from_slice(bad)).unwrap_err();
            assert_eq!(e.kind_name(), "malformed_body", "{bad:?}");
        }
        // A duplicate id: both kept, the last one wins.
        let a = Annotations::new()
            .with(AnnotationId::STRM, &b"1"[..])
            .with(AnnotationId::STRM, &b"2"[..]);
        assert_eq!(a.get(AnnotationId::STRM).unwrap().as_ref(), b"2");
        assert_eq!(a.len(), 2);
        assert!(AnnotationId::new("ABC").is_err());
        assert!(AnnotationId::new("ABCDE").is_err());
        assert!(AnnotationId::new("AB\u{e9}").is_err());
        assert_eq!(AnnotationId::new("CORR").unwrap().as_str(), "CORR");
    }
}
