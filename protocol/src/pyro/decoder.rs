//! The incremental Pyro5 message decoder.

use bytes::{Buf, BytesMut};

use super::message::{Annotations, Header, Message};
use super::wire::{HEADER_LEN, PROTOCOL_VERSION, TAG};
use crate::error::ProtocolError;

/// Limits a Pyro5 receiver enforces, from the header, before allocating for the body.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct MessageLimits {
    /// Largest data length plus annotations length accepted (Pyro5's `MAX_MESSAGE_SIZE`
    /// check, which does not count the 40 header bytes).
    pub max_message_len: u32,
    /// Largest annotations length accepted.
    pub max_annotations_len: u32,
}

impl Default for MessageLimits {
    /// 16 MiB messages (Pyro5's own default is 1 GiB), 16 KiB of annotations: the native
    /// protocol's defaults.
    fn default() -> Self {
        MessageLimits {
            max_message_len: 16 << 20,
            max_annotations_len: 16 << 10,
        }
    }
}

/// Turns a byte stream into Pyro5 messages (tokio-util `Decoder` contract, without
/// depending on it).
///
/// Feed it any split of the stream: [`MessageDecoder::decode`] returns `Ok(None)` when it
/// needs more bytes, `Ok(Some(message))` for each complete message and `Err` when the stream
/// is corrupt (the decoder then keeps returning that error: Pyro5 has no way to
/// resynchronise).
///
/// The tag is checked on the first bytes as they arrive, the version as soon as 6 bytes are
/// in, and the magic and both limits once the 40-byte header is in, before any room is
/// reserved for the body. Annotation values and the payload are split from the input buffer
/// without copying.
#[derive(Debug, Default)]
pub struct MessageDecoder {
    limits: MessageLimits,
    pending: Option<Header>,
    failed: Option<ProtocolError>,
}

impl MessageDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: MessageLimits) -> MessageDecoder {
        MessageDecoder {
            limits,
            pending: None,
            failed: None,
        }
    }

    /// The limits enforced.
    pub fn limits(&self) -> &MessageLimits {
        &self.limits
    }

    /// The header of the message being received, once it arrived and passed the checks.
    pub fn pending_header(&self) -> Option<&Header> {
        self.pending.as_ref()
    }

    /// The error the decoder failed with, if it did.
    pub fn failure(&self) -> Option<&ProtocolError> {
        self.failed.as_ref()
    }

    /// Decodes the next message from the front of `src`, consuming its bytes.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.decode_inner(src);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    /// Like [`MessageDecoder::decode`], for when the stream has ended: bytes of an
    /// unfinished message are an error ([`ProtocolError::Truncated`]).
    pub fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        match self.decode(src)? {
            Some(m) => Ok(Some(m)),
            None if src.is_empty() => Ok(None),
            None => {
                let e = ProtocolError::Truncated {
                    buffered: src.len(),
                };
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Checks what of a header has arrived, without consuming: the tag on the first bytes,
    /// the version once 6 are in, everything (with the limits) once 40 are in.
    pub fn check_header(&self, src: &[u8]) -> Result<Option<Header>, ProtocolError> {
        let n = src.len().min(TAG.len());
        if src[..n] != TAG[..n] {
            return Err(ProtocolError::PyroBadMagic {
                what: "tag",
                found: src[..n].to_vec(),
            });
        }
        if let Some(v) = src.get(4..6) {
            let version = u16::from_be_bytes([v[0], v[1]]);
            if version != PROTOCOL_VERSION {
                return Err(ProtocolError::PyroUnsupportedVersion { version });
            }
        }
        let Some(head) = src.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let mut raw = [0u8; HEADER_LEN];
        raw.copy_from_slice(head);
        let h = Header::parse(&raw)?;
        let max = u64::from(self.limits.max_message_len);
        if h.body_len() > max {
            return Err(ProtocolError::PyroMessageTooLarge {
                len: h.body_len(),
                max,
            });
        }
        if h.annotations_len > self.limits.max_annotations_len {
            return Err(ProtocolError::AnnotationsTooLarge {
                len: u64::from(h.annotations_len),
                max: u64::from(self.limits.max_annotations_len),
            });
        }
        Ok(Some(h))
    }

    fn decode_inner(&mut self, src: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        let header = match self.pending {
            Some(h) => h,
            None => match self.check_header(src)? {
                Some(h) => {
                    self.pending = Some(h);
                    h
                }
                None => return Ok(None),
            },
        };
        // Fits in usize: at most max_message_len (a u32) + 40.
        let len = HEADER_LEN + header.body_len() as usize;
        if src.len() < len {
            // Only now, with the lengths checked, reserve room for the rest.
            src.reserve(len - src.len());
            return Ok(None);
        }
        self.pending = None;
        src.advance(HEADER_LEN);
        let mut body = src.split_to(len - HEADER_LEN).freeze();
        let area = body.split_to(header.annotations_len as usize);
        let annotations = Annotations::parse(area)?;
        Ok(Some(Message {
            msg_type: header.msg_type,
            serializer: header.serializer,
            flags: header.flags,
            seq: header.seq,
            correlation_id: header.correlation_id,
            reserved: header.reserved,
            annotations,
            payload: body,
        }))
    }
}
