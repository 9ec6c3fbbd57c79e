//! Annotations: deadline, correlation id and user key/values, outside the codec payload
//! (SPEC §6.7).

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::wire::RequestId;

/// Key of the deadline annotation: 8 bytes, big-endian microseconds left when the frame was
/// sent.
pub const DEADLINE_KEY: &str = "wc.deadline";
/// Key of the correlation id annotation: 16 bytes (a UUID's bytes).
pub const CORRELATION_KEY: &str = "wc.corr";
/// Protocol key marking a call as part of an ordered batch that stops at its first error
/// (SPEC §6.8): 8 bytes, the request id of the batch's first call, then 1 flags byte
/// ([`BATCH_LAST`]).
pub const BATCH_KEY: &str = "wc.batch";
/// Protocol key of a call's initial stream window (SPEC §6.12): 4 bytes, the number of
/// stream items the server may send before the client grants more with CREDIT.
pub const WINDOW_KEY: &str = "wc.window";
/// Flag bit of a `wc.batch` value: this call is the last of its batch.
pub const BATCH_LAST: u8 = 0x01;
/// Protocol key listing the lengths of the bulk values that share the frame's attachment
/// section (SPEC §6.11): 4 bytes (big-endian) per value, in order.
pub const BULK_KEY: &str = "wc.bulk";
/// Protocol key of a resumable stream's token (SPEC §6.14), on the streamed REPLY: 16
/// bytes naming the stream on this server.
pub const STREAM_KEY: &str = "wc.stream";
/// Protocol key of a call that resumes a stream after a lost connection (SPEC §6.14): the
/// stream's 16-byte token, then 8 bytes, the number of items the caller received.
pub const RESUME_KEY: &str = "wc.resume";
/// Keys starting with this prefix belong to the protocol; users cannot insert them.
pub const RESERVED_PREFIX: &str = "wc.";

/// The annotation section of a frame: checked entries kept as the frame's bytes.
///
/// Each entry is `key_len: u8 (1-255) | key: UTF-8 | value_len: u32 | value`.
#[derive(Clone, Default, Eq, PartialEq)]
pub struct Annotations(Bytes);

fn malformed(problem: &'static str) -> ProtocolError {
    ProtocolError::MalformedBody {
        what: "annotations",
        problem,
    }
}

/// Splits one entry off the front of `rest`, returning (key, value, remaining).
fn split_entry(rest: &[u8]) -> Result<(&str, &[u8], &[u8]), ProtocolError> {
    let (&klen, rest) = rest
        .split_first()
        .ok_or_else(|| malformed("truncated entry"))?;
    let klen = usize::from(klen);
    if klen == 0 {
        return Err(malformed("empty key"));
    }
    if rest.len() < klen + 4 {
        return Err(malformed("truncated entry"));
    }
    let (key, rest) = rest.split_at(klen);
    let key = std::str::from_utf8(key).map_err(|_| ProtocolError::InvalidUtf8 {
        what: "annotation key",
    })?;
    // Cannot panic: `rest` holds at least klen + 4 bytes (checked above).
    let (vlen, rest) = rest.split_at(4);
    let vlen = u32::from_be_bytes([vlen[0], vlen[1], vlen[2], vlen[3]]) as usize;
    if rest.len() < vlen {
        return Err(malformed("value runs past the section"));
    }
    let (value, rest) = rest.split_at(vlen);
    Ok((key, value, rest))
}

/// Checks an annotation section as it arrived: the rules of [`Annotations::from_wire`], on
/// a borrowed section.
#[inline]
pub(crate) fn check_section(section: &[u8]) -> Result<(), ProtocolError> {
    let mut rest = section;
    while !rest.is_empty() {
        let (key, value, r) = split_entry(rest)?;
        match key {
            DEADLINE_KEY if value.len() != 8 => {
                return Err(malformed("wc.deadline must be 8 bytes"))
            }
            CORRELATION_KEY if value.len() != 16 => {
                return Err(malformed("wc.corr must be 16 bytes"))
            }
            WINDOW_KEY if value.len() != 4 => return Err(malformed("wc.window must be 4 bytes")),
            BATCH_KEY if value.len() != 9 => return Err(malformed("wc.batch must be 9 bytes")),
            BATCH_KEY if value[8] & !BATCH_LAST != 0 => {
                return Err(malformed("wc.batch has unknown flag bits"))
            }
            BATCH_KEY if value[..8] == [0; 8] => {
                return Err(malformed("wc.batch names request id 0"))
            }
            STREAM_KEY if value.len() != 16 => return Err(malformed("wc.stream must be 16 bytes")),
            RESUME_KEY if value.len() != 24 => return Err(malformed("wc.resume must be 24 bytes")),
            BULK_KEY if value.len() % 4 != 0 => {
                return Err(malformed("wc.bulk must be a multiple of 4 bytes"))
            }
            _ => {}
        }
        rest = r;
    }
    Ok(())
}

/// The value of the first entry with `key` in a checked section.
#[inline]
pub(crate) fn find<'a>(section: &'a [u8], key: &str) -> Option<&'a [u8]> {
    // Most frames carry none: every protocol key's lookup is then one length test.
    if section.is_empty() {
        return None;
    }
    Iter { rest: section }
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// A `wc.deadline` value (checked to be 8 bytes) as the time left.
pub(crate) fn deadline_value(v: &[u8]) -> Option<Duration> {
    let a: [u8; 8] = v.try_into().ok()?;
    Some(Duration::from_micros(u64::from_be_bytes(a)))
}

/// A `wc.window` value (checked to be 4 bytes) as the items granted.
pub(crate) fn window_value(v: &[u8]) -> Option<u32> {
    let a: [u8; 4] = v.try_into().ok()?;
    Some(u32::from_be_bytes(a))
}

impl Annotations {
    /// No annotations (zero bytes on the wire).
    pub fn new() -> Annotations {
        Annotations(Bytes::new())
    }

    /// Starts building annotations.
    pub fn builder() -> AnnotationsBuilder {
        AnnotationsBuilder {
            buf: BytesMut::new(),
        }
    }

    /// Checks a section received from the wire.
    #[inline]
    pub fn from_wire(section: Bytes) -> Result<Annotations, ProtocolError> {
        check_section(&section)?;
        Ok(Annotations(section))
    }

    /// The section's bytes, as they travel.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every entry in order, protocol keys included.
    pub fn iter(&self) -> Iter<'_> {
        Iter { rest: &self.0 }
    }

    /// The value of the first entry with this key.
    #[inline]
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        // Most frames carry none: every protocol key's lookup is then one length test.
        find(&self.0, key)
    }

    /// Time left for the call when the frame was sent (`wc.deadline`).
    pub fn deadline(&self) -> Option<Duration> {
        deadline_value(self.get(DEADLINE_KEY)?)
    }

    /// The initial stream window the caller grants (`wc.window`): how many stream items
    /// the server may send before it waits for CREDIT. `None`: no flow control.
    pub fn window(&self) -> Option<u32> {
        window_value(self.get(WINDOW_KEY)?)
    }

    /// The correlation id (`wc.corr`).
    pub fn correlation_id(&self) -> Option<[u8; 16]> {
        self.get(CORRELATION_KEY)?.try_into().ok()
    }

    /// The token of a resumable stream (`wc.stream`, SPEC §6.14), on a streamed REPLY.
    pub fn stream_token(&self) -> Option<[u8; 16]> {
        self.get(STREAM_KEY)?.try_into().ok()
    }

    /// The stream a call resumes and how many of its items the caller received
    /// (`wc.resume`, SPEC §6.14).
    pub fn resume(&self) -> Option<([u8; 16], u64)> {
        let v = self.get(RESUME_KEY)?;
        let token: [u8; 16] = v.get(..16)?.try_into().ok()?;
        let received: [u8; 8] = v.get(16..24)?.try_into().ok()?;
        Some((token, u64::from_be_bytes(received)))
    }

    /// The batch this call belongs to (`wc.batch`): the request id of the batch's first
    /// call, and whether this call is the batch's last.
    pub fn batch(&self) -> Option<(RequestId, bool)> {
        let v = self.get(BATCH_KEY)?;
        let id: [u8; 8] = v.get(..8)?.try_into().ok()?;
        let flags = *v.get(8)?;
        Some((RequestId(u64::from_be_bytes(id)), flags & BATCH_LAST != 0))
    }

    /// The lengths of the frame's bulk values (`wc.bulk`, SPEC §6.11), in order; `None`
    /// when the frame has no such entry.
    pub fn bulk_lengths(&self) -> Option<impl Iterator<Item = u32> + '_> {
        let v = self.get(BULK_KEY)?;
        Some(
            v.chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])),
        )
    }

    /// These annotations with a `wc.bulk` entry listing `lengths` appended (SPEC §6.11);
    /// fails when the entry's value would not fit its 32-bit length.
    pub fn with_bulk(&self, lengths: &[u32]) -> Result<Annotations, ProtocolError> {
        let mut b = AnnotationsBuilder {
            buf: BytesMut::with_capacity(self.0.len() + 1 + BULK_KEY.len() + 4 + 4 * lengths.len()),
        };
        b.buf.put_slice(&self.0);
        Ok(b.bulk(lengths)?.build())
    }

    /// User entries: every entry whose key does not start with `wc.`.
    pub fn user(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.iter().filter(|(k, _)| !k.starts_with(RESERVED_PREFIX))
    }
}

impl std::fmt::Debug for Annotations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Iterator over annotation entries `(key, value)`.
#[derive(Debug)]
pub struct Iter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        // Checked in `from_wire`/the builder; on a broken invariant, stop instead of panic.
        match split_entry(self.rest) {
            Ok((k, v, r)) => {
                self.rest = r;
                Some((k, v))
            }
            Err(_) => {
                self.rest = &[];
                None
            }
        }
    }
}

/// Builds an [`Annotations`] section.
#[derive(Debug)]
pub struct AnnotationsBuilder {
    buf: BytesMut,
}

impl AnnotationsBuilder {
    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), ProtocolError> {
        let klen = u8::try_from(key.len()).map_err(|_| ProtocolError::TooLong {
            what: "annotation key",
            len: key.len() as u64,
            max: 255,
        })?;
        if klen == 0 {
            return Err(ProtocolError::InvalidArgument(
                "annotation keys must not be empty",
            ));
        }
        let vlen = u32::try_from(value.len()).map_err(|_| ProtocolError::TooLong {
            what: "annotation value",
            len: value.len() as u64,
            max: u64::from(u32::MAX),
        })?;
        self.buf.put_u8(klen);
        self.buf.put_slice(key.as_bytes());
        self.buf.put_u32(vlen);
        self.buf.put_slice(value);
        Ok(())
    }

    /// Sets the time left for the call (`wc.deadline`, microsecond precision, saturating).
    pub fn deadline(mut self, left: Duration) -> Self {
        let micros = u64::try_from(left.as_micros()).unwrap_or(u64::MAX);
        // Cannot fail: fixed key and an 8-byte value.
        let _ = self.put(DEADLINE_KEY, &micros.to_be_bytes());
        self
    }

    /// Sets the initial stream window of a call (`wc.window`, SPEC §6.12).
    pub fn window(mut self, items: u32) -> Self {
        // Cannot fail: fixed key and a 4-byte value.
        let _ = self.put(WINDOW_KEY, &items.to_be_bytes());
        self
    }

    /// Names a resumable stream (`wc.stream`, SPEC §6.14): on a streamed REPLY.
    pub fn stream_token(mut self, token: [u8; 16]) -> Self {
        // Cannot fail: fixed key and a 16-byte value.
        let _ = self.put(STREAM_KEY, &token);
        self
    }

    /// Resumes the stream `token` of which `received` items arrived (`wc.resume`, SPEC
    /// §6.14): on a CALL.
    pub fn resume(mut self, token: [u8; 16], received: u64) -> Self {
        let mut v = [0u8; 24];
        v[..16].copy_from_slice(&token);
        v[16..].copy_from_slice(&received.to_be_bytes());
        // Cannot fail: fixed key and a 24-byte value.
        let _ = self.put(RESUME_KEY, &v);
        self
    }

    /// Sets the correlation id (`wc.corr`).
    pub fn correlation_id(mut self, id: [u8; 16]) -> Self {
        // Cannot fail: fixed key and a 16-byte value.
        let _ = self.put(CORRELATION_KEY, &id);
        self
    }

    /// Marks the call as part of the ordered batch whose first call has request id
    /// `first` (`wc.batch`), `last` on the batch's last call (SPEC §6.8).
    pub fn batch(mut self, first: RequestId, last: bool) -> Self {
        let mut v = [0u8; 9];
        v[..8].copy_from_slice(&first.0.to_be_bytes());
        v[8] = if last { BATCH_LAST } else { 0 };
        // Cannot fail: fixed key and a 9-byte value.
        let _ = self.put(BATCH_KEY, &v);
        self
    }

    /// Lists the lengths of the bulk values that share the frame's attachment section
    /// (`wc.bulk`, SPEC §6.11), in order; fails when the entry's value would not fit its
    /// 32-bit length.
    pub fn bulk(mut self, lengths: &[u32]) -> Result<Self, ProtocolError> {
        let mut v = Vec::with_capacity(4 * lengths.len());
        for l in lengths {
            v.extend_from_slice(&l.to_be_bytes());
        }
        self.put(BULK_KEY, &v)?;
        Ok(self)
    }

    /// Adds a user entry. Keys are 1-255 bytes and must not start with `wc.`.
    pub fn insert(mut self, key: &str, value: &[u8]) -> Result<Self, ProtocolError> {
        if key.starts_with(RESERVED_PREFIX) {
            return Err(ProtocolError::InvalidArgument(
                "annotation keys starting with `wc.` are reserved for the protocol",
            ));
        }
        self.put(key, value)?;
        Ok(self)
    }

    /// Finishes the section.
    pub fn build(self) -> Annotations {
        Annotations(self.buf.freeze())
    }
}
