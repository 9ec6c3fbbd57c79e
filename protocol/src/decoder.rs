//! The incremental frame decoder (tokio-util `Decoder` contract, without depending on it).

use bytes::{Buf, Bytes, BytesMut};

use crate::compress::Inflater;
use crate::error::ProtocolError;
use crate::frame::{assemble, Frame, Header, Limits};
use crate::wire::{CodecId, CompressionId, Flags, Kind, RequestId, HEADER_LEN, MAGIC};

/// A plain REPLY frame borrowed from the receive buffer: see [`FrameDecoder::peek_reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyView<'a> {
    /// The call answered.
    pub request_id: RequestId,
    /// Codec of `result`; never 0.
    pub codec: CodecId,
    /// The result, encoded with `codec`.
    pub result: &'a [u8],
    /// Bytes the frame takes at the front of the buffer, header included: what to consume.
    pub frame_len: usize,
}

/// Turns a byte stream into frames.
///
/// Feed it any split of the stream: [`FrameDecoder::decode`] returns `Ok(None)` when it
/// needs more bytes, `Ok(Some(frame))` for each complete frame, and `Err` when the stream is
/// corrupt (close the connection; the decoder keeps returning the error).
///
/// Declared lengths are checked against the [`Limits`] as soon as the 40-byte header is in,
/// before any buffer space is reserved for the frame. Payload sections are split from the
/// input buffer as `Bytes` without copying.
#[derive(Debug)]
pub struct FrameDecoder {
    limits: Limits,
    /// The header of the frame being received, once checked.
    pending: Option<Header>,
    /// Set after the first error: the stream cannot be resynchronised.
    failed: Option<ProtocolError>,
    /// Reserve room for a frame in the input buffer once its header is checked.
    reserve: bool,
    /// The compression in force (SPEC §6.9): COMPRESSED frames are inflated; without it
    /// they are refused.
    inflater: Option<Inflater>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(Limits::default())
    }
}

impl FrameDecoder {
    /// A decoder enforcing `limits.max_frame_len` and `limits.max_annotations_len`.
    pub fn new(limits: Limits) -> FrameDecoder {
        FrameDecoder {
            limits,
            pending: None,
            failed: None,
            reserve: true,
            inflater: None,
        }
    }

    /// Sets the compression algorithms in force (SPEC §6.9), as agreed in the handshake:
    /// from the next frame on, a frame with flag COMPRESSED has its payload and kwargs
    /// inflated (the frame limit applies to the decompressed frame, checked before
    /// decompressing) and is returned as if it had been sent uncompressed. Empty (the
    /// default) refuses COMPRESSED frames (`bad_flags`). The connections call this when
    /// their handshake completes.
    pub fn set_compression(&mut self, algorithms: Vec<CompressionId>) {
        self.inflater = (!algorithms.is_empty()).then(|| Inflater::new(algorithms));
    }

    /// Whether [`decode`](Self::decode) reserves room in the input buffer for the rest of a
    /// frame once its header is checked (the default). A driver that accounts for buffer
    /// memory itself turns this off and reserves
    /// [`pending_frame_len`](Self::pending_frame_len) bytes when its budget allows.
    pub fn set_reserve(&mut self, reserve: bool) {
        self.reserve = reserve;
    }

    /// The declared length (header included) of the frame being received, once its header
    /// has arrived and passed the limits; `None` between frames.
    pub fn pending_frame_len(&self) -> Option<usize> {
        self.pending
            .and_then(|h| usize::try_from(h.frame_len()).ok())
    }

    /// The limits enforced.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Changes the limits; applies from the next frame header.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Decodes the next frame from the front of `src`, consuming its bytes.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.decode_inner(src);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    /// The frame at the front of `src`, borrowed, if it is a complete plain REPLY: no STREAM
    /// flag, no annotations, no attachment, a result of at most `max_result` bytes (the
    /// common reply), with a header [`FrameDecoder::decode`] would accept. Consumes nothing:
    /// after using the view, drop its `frame_len` bytes from the front of the buffer.
    ///
    /// Anything else gives `None`: another kind, an unfinished frame, a frame `decode` would
    /// refuse (which `decode` then reports), or a decoder in the middle of a frame or failed.
    /// So a reader can try this first and fall back to `decode`; the two agree on every
    /// frame (tested). It saves building an owned [`Frame`] and the reference counts of
    /// sharing the buffer, for readers that copy small results out anyway.
    pub fn peek_reply<'a>(&self, src: &'a [u8], max_result: usize) -> Option<ReplyView<'a>> {
        if self.pending.is_some() || self.failed.is_some() {
            return None;
        }
        let head: &[u8; HEADER_LEN] = src.get(..HEADER_LEN)?.try_into().ok()?;
        let h = Header::parse(head).ok()?;
        if h.kind != Kind::REPLY
            || h.flags != Flags::EMPTY
            || h.annotations_len != 0
            || h.attachment_len != 0
            || h.frame_len() > u64::from(self.limits.max_frame_len)
        {
            return None;
        }
        // REPLY headers carry no route or kwargs (`Header::parse` checks), so the body is the
        // result. Fits in usize: at most max_frame_len, a u32.
        let len = usize::try_from(h.frame_len()).ok()?;
        let payload = h.payload_len as usize;
        if payload > max_result {
            return None;
        }
        Some(ReplyView {
            request_id: h.request_id,
            codec: h.codec,
            result: src.get(HEADER_LEN..len)?,
            frame_len: len,
        })
    }

    /// The checked header of the frame at the front of `src`, if it is a complete CALL
    /// without compression and without an attachment whose header, lengths and flags
    /// [`FrameDecoder::decode`] would accept. Consumes nothing; `None` for anything else
    /// (another kind, an unfinished frame, a frame `decode` would refuse, or a decoder in
    /// the middle of a frame or failed), which `decode` then handles. The sections (route,
    /// annotations) are not checked here: see `ServerConnection::accept_call`.
    #[inline]
    pub(crate) fn peek_call(&self, src: &[u8]) -> Option<Header> {
        if self.pending.is_some() || self.failed.is_some() {
            return None;
        }
        let b: &[u8; HEADER_LEN] = src.get(..HEADER_LEN)?.try_into().ok()?;
        // The SPEC §2-§3 rules of a CALL header, for the one shape taken here (no flag but
        // ONEWAY, no attachment), read straight from the bytes: anything else is left to
        // `Header::parse` through `decode`.
        let flags = u16::from_be_bytes([b[6], b[7]]);
        if b[..4] != MAGIC
            || b[4] != crate::wire::VERSION
            || Kind(b[5]) != Kind::CALL
            || flags & !Flags::ONEWAY.0 != 0
            || !CodecId(b[8]).is_codec()
            || (b[9] | b[22] | b[23]) != 0
            || b[20..22] == [0, 0]
            || b[12..20] == [0; 8]
            || b[36..40] != [0; 4]
        {
            return None;
        }
        let h = Header {
            version: b[4],
            kind: Kind::CALL,
            flags: Flags(flags),
            codec: CodecId(b[8]),
            provider: crate::wire::ProviderId(u16::from_be_bytes([b[10], b[11]])),
            request_id: RequestId(u64::from_be_bytes([
                b[12], b[13], b[14], b[15], b[16], b[17], b[18], b[19],
            ])),
            route_len: u16::from_be_bytes([b[20], b[21]]),
            annotations_len: u32::from_be_bytes([b[24], b[25], b[26], b[27]]),
            payload_len: u32::from_be_bytes([b[28], b[29], b[30], b[31]]),
            kwargs_len: u32::from_be_bytes([b[32], b[33], b[34], b[35]]),
            attachment_len: 0,
        };
        debug_assert_eq!(Header::parse(b).ok(), Some(h));
        if h.annotations_len > self.limits.max_annotations_len {
            return None;
        }
        let len = h.frame_len();
        if len > u64::from(self.limits.max_frame_len) || (src.len() as u64) < len {
            return None;
        }
        Some(h)
    }

    /// Like [`FrameDecoder::decode`], for when the stream has ended: bytes of an unfinished
    /// frame are an error ([`ProtocolError::Truncated`]).
    pub fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        match self.decode(src)? {
            Some(f) => Ok(Some(f)),
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

    #[inline]
    fn decode_inner(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        let header = match self.pending {
            Some(h) => h,
            None => {
                // Fail fast on a wrong magic, even before a whole header is in.
                let n = src.len().min(MAGIC.len());
                let prefix = src.get(..n).unwrap_or_default();
                if prefix != MAGIC.get(..n).unwrap_or_default() {
                    return Err(ProtocolError::BadMagic {
                        found: prefix.to_vec(),
                    });
                }
                let Some(head) = src.get(..HEADER_LEN) else {
                    if self.reserve {
                        src.reserve(HEADER_LEN - src.len());
                    }
                    return Ok(None);
                };
                let mut raw = [0u8; HEADER_LEN];
                raw.copy_from_slice(head);
                let h = Header::parse(&raw)?;
                let len = h.frame_len();
                if len > u64::from(self.limits.max_frame_len) {
                    return Err(ProtocolError::FrameTooLarge {
                        len,
                        max: u64::from(self.limits.max_frame_len),
                    });
                }
                if h.annotations_len > self.limits.max_annotations_len {
                    return Err(ProtocolError::AnnotationsTooLarge {
                        len: u64::from(h.annotations_len),
                        max: u64::from(self.limits.max_annotations_len),
                    });
                }
                if h.flags.contains(Flags::COMPRESSED) && self.inflater.is_none() {
                    return Err(ProtocolError::CompressionNotInForce { kind: h.kind });
                }
                self.pending = Some(h);
                h
            }
        };
        // Fits in usize: checked against max_frame_len (a u32) above.
        let len =
            usize::try_from(header.frame_len()).map_err(|_| ProtocolError::FrameTooLarge {
                len: header.frame_len(),
                max: u64::from(self.limits.max_frame_len),
            })?;
        if src.len() < len {
            // Only now, with the lengths checked, reserve room for the rest of the frame.
            if self.reserve {
                src.reserve(len - src.len());
            }
            return Ok(None);
        }
        self.pending = None;
        src.advance(HEADER_LEN);
        let mut frame = src.split_to(len - HEADER_LEN).freeze();
        // Empty sections take no share of the buffer (no reference count to move).
        let mut section = |n: usize| {
            if n == 0 {
                Bytes::new()
            } else if n == frame.len() {
                std::mem::take(&mut frame)
            } else {
                frame.split_to(n)
            }
        };
        let route = section(usize::from(header.route_len));
        let annotations = section(header.annotations_len as usize);
        let payload = section(header.payload_len as usize);
        let kwargs = section(header.kwargs_len as usize);
        let attachment = section(header.attachment_len as usize);
        let (payload, kwargs) = match &mut self.inflater {
            Some(i) if header.flags.contains(Flags::COMPRESSED) => i.inflate(
                header.frame_len(),
                self.limits.max_frame_len,
                payload,
                kwargs,
            )?,
            _ => (payload, kwargs),
        };
        assemble(&header, route, annotations, payload, kwargs, attachment).map(Some)
    }
}
