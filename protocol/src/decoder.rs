//! The incremental frame decoder (tokio-util `Decoder` contract, without depending on it).

use bytes::{Buf, BytesMut};

use crate::error::ProtocolError;
use crate::frame::{assemble, Frame, Header, Limits};
use crate::wire::{HEADER_LEN, MAGIC};

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
        }
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
                    src.reserve(HEADER_LEN - src.len());
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
            src.reserve(len - src.len());
            return Ok(None);
        }
        self.pending = None;
        src.advance(HEADER_LEN);
        let mut frame = src.split_to(len - HEADER_LEN).freeze();
        let route = frame.split_to(usize::from(header.route_len));
        let annotations = frame.split_to(header.annotations_len as usize);
        let payload = frame.split_to(header.payload_len as usize);
        let kwargs = frame.split_to(header.kwargs_len as usize);
        let attachment = frame;
        assemble(&header, route, annotations, payload, kwargs, attachment).map(Some)
    }
}
