//! Connection state machines, client side and server side (quinn-proto style): bytes in
//! through `handle_input`, events out through `poll_event`, bytes to send out through
//! `poll_transmit`, and the current time passed in, never read.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::annotations::{find, Annotations};
use crate::compress::{self, Compression, Compressor};
use crate::decoder::FrameDecoder;
use crate::error::ProtocolError;
use crate::frame::{
    Call, CallRef, ErrorBody, ErrorFrame, ExtensionTag, Extensions, Frame, GoAway, Hello, Limits,
    Method, Refuse, Reply, StreamItem, Welcome,
};
use crate::wire::{
    CodecId, CompressionId, ErrorCode, Flags, Kind, ProviderId, RequestId, HEADER_LEN, VERSION,
};

/// Checks a frame's codec against an accepted set; the error lists the set, ready for an
/// ERROR frame ([`ErrorBody::codec_refused`]) or a message such as "codec X refused; this
/// server accepts json, msgpack".
pub fn check_codec(codec: CodecId, accepted: &[CodecId]) -> Result<(), ProtocolError> {
    if codec.is_codec() && accepted.contains(&codec) {
        Ok(())
    } else {
        Err(ProtocolError::CodecRefused {
            codec,
            accepted: accepted.to_vec(),
        })
    }
}

/// What both sides agreed in the handshake.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Session {
    /// The protocol version in use.
    pub version: u8,
    /// The default codec: the client's most preferred codec that the server accepts.
    pub codec: CodecId,
    /// The codecs the server accepts.
    pub accepted: Vec<CodecId>,
    /// The codecs the client offered, most preferred first.
    pub offered: Vec<CodecId>,
    /// The peer's limits: what this side may send.
    pub peer_limits: Limits,
    /// The handshake extensions the client offered in HELLO (SPEC §6.1.1).
    pub offered_extensions: Extensions,
    /// The extensions in force: the server's answers in WELCOME, a subset of the offered
    /// tags (SPEC §6.1.1).
    pub extensions: Extensions,
}

impl Session {
    /// The compression algorithms in force (SPEC §6.9), the client's most preferred first;
    /// empty when compression is off on this connection.
    pub fn compression(&self) -> Vec<CompressionId> {
        self.extensions
            .get(ExtensionTag::COMPRESSION)
            .map(|v| compress::parse_list(v))
            .unwrap_or_default()
    }

    /// The server's window for client → server streams (SPEC §6.13): how many argument
    /// items a call with flag UPLOAD may send before the server grants more. `None` when
    /// such streams are not in force on this connection.
    pub fn upload_window(&self) -> Option<u32> {
        self.extensions
            .get(ExtensionTag::STREAMS)
            .and_then(upload_window_value)
    }
}

/// The value of the streams extension (tag 3, SPEC §6.13) in a WELCOME: a 4-byte window
/// of at least 1.
fn upload_window_value(v: &Bytes) -> Option<u32> {
    let b: [u8; 4] = v.as_ref().try_into().ok()?;
    let n = u32::from_be_bytes(b);
    (n >= 1).then_some(n)
}

/// Sections at least this long are sent as their own chunk rather than copied into the
/// send buffer (the default of [`ClientConfig::share_sections_from`]).
const SHARE_SECTIONS_FROM: usize = 4096;

static EMPTY: Bytes = Bytes::new();

/// Longest message put in a GOAWAY or REFUSE frame this side sends.
const MAX_MESSAGE: usize = 1024;

fn short_message(s: String) -> String {
    if s.len() <= MAX_MESSAGE {
        return s;
    }
    let mut end = MAX_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The connection-level timers both sides may configure.
#[derive(Clone, Copy, Debug, Default)]
struct Timers {
    /// A frame whose first bytes arrived must complete within this time.
    frame: Option<Duration>,
    /// With no call in flight and no frame received for this long, the connection closes
    /// with GOAWAY TIMEOUT.
    idle: Option<Duration>,
    /// With no frame received for this long after the handshake, send a PING (the ping
    /// timeout then applies), so a dead peer is noticed even while calls wait.
    keepalive: Option<Duration>,
}

/// State shared by both sides: buffers, decoder, pings, timers, fatal error.
#[derive(Debug)]
struct Core {
    decoder: FrameDecoder,
    /// Received bytes not yet decoded, for [`ClientConnection::handle_input`]; drivers that
    /// read into their own buffer use `handle_input_buf` and leave this empty.
    inbuf: BytesMut,
    /// Chunks ready to send, in order; `outbuf` follows them.
    chunks: VecDeque<Bytes>,
    outbuf: BytesMut,
    share_from: usize,
    peer_limits: Option<Limits>,
    closed: Option<ProtocolError>,
    ping_timeout: Option<Duration>,
    ping_seq: u64,
    /// Payload, send time and expiry of the outstanding ping.
    ping: Option<([u8; 8], Instant, Option<Instant>)>,
    handshake_deadline: Option<Instant>,
    timers: Timers,
    /// When the first bytes of the frame still incomplete in the input arrived.
    frame_started: Option<Instant>,
    /// When the idle timer is due to be checked (a lower bound of the idle deadline).
    idle_check: Option<Instant>,
    /// When the last frame arrived.
    last_frame: Option<Instant>,
    /// When the last frame other than PING and PONG arrived (what the idle timer counts).
    last_data: Option<Instant>,
    /// A frame other than PING and PONG arrived in the input being handled.
    data_seen: bool,
    /// The handshake completed: the keep-alive runs.
    established: bool,
    /// When the keep-alive is next checked (a lower bound of when its PING is due), so the
    /// timer the driver arms moves only when it fires, not with every frame.
    keepalive_check: Option<Instant>,
    /// A call completed since the idle timer was last checked: the connection may have
    /// become idle at any moment since, so the check restarts the idle period.
    call_completed: bool,
    /// Compression of outgoing data frames, once agreed in the handshake (SPEC §6.9).
    compressor: Option<Compressor>,
}

impl Core {
    fn new(
        limits: Limits,
        ping_timeout: Option<Duration>,
        handshake: Option<Instant>,
        share_from: usize,
        timers: Timers,
    ) -> Core {
        Core {
            decoder: FrameDecoder::new(limits),
            inbuf: BytesMut::new(),
            chunks: VecDeque::new(),
            outbuf: BytesMut::new(),
            share_from,
            peer_limits: None,
            closed: None,
            ping_timeout,
            ping_seq: 0,
            ping: None,
            handshake_deadline: handshake,
            timers,
            frame_started: None,
            idle_check: None,
            last_frame: None,
            last_data: None,
            data_seen: false,
            established: false,
            keepalive_check: None,
            call_completed: false,
            compressor: None,
        }
    }

    /// Turns compression on as agreed in the handshake (`agreed`: the algorithms in force,
    /// from the WELCOME): COMPRESSED frames are inflated from now on, and data frames this
    /// side sends are compressed with the first algorithm as `settings` say.
    fn start_compression(&mut self, agreed: Vec<CompressionId>, settings: &Compression) {
        let Some(&first) = agreed.first() else {
            return;
        };
        self.compressor = Compressor::new(first, settings);
        self.decoder.set_compression(agreed);
    }

    /// Sends a data frame compressed when compression is in force and its sections are
    /// large enough and shrink (SPEC §6.9); `Ok(false)` when it was not sent (send it as
    /// it is). The peer's limits are checked against the uncompressed frame: they apply to
    /// the decompressed size.
    fn send_compressed(&mut self, frame: &Frame, ann: usize) -> Result<bool, ProtocolError> {
        let Some(c) = self.compressor.as_mut() else {
            return Ok(false);
        };
        let (payload, kwargs) = match frame {
            Frame::Call(x) => (&x.args, &x.kwargs),
            Frame::Reply(x) => (&x.result, &EMPTY),
            Frame::StreamItem(x) => (&x.item, &EMPTY),
            _ => return Ok(false),
        };
        if !c.wants(payload.len() + kwargs.len()) {
            return Ok(false);
        }
        let len = frame.encoded_len()?;
        check_peer_limits(self.peer_limits, len, ann)?;
        let Some((p, k)) = c.compress(payload, kwargs) else {
            return Ok(false);
        };
        let packed = match frame {
            Frame::Call(x) => Frame::Call(Call {
                args: p,
                kwargs: k,
                ..x.clone()
            }),
            Frame::Reply(x) => Frame::Reply(Reply {
                result: p,
                ..x.clone()
            }),
            Frame::StreamItem(x) => Frame::StreamItem(StreamItem {
                item: p,
                ..x.clone()
            }),
            _ => return Ok(false),
        };
        let chunks = &mut self.chunks;
        packed.encode_chunks_checked(
            &mut self.outbuf,
            self.share_from,
            |b| chunks.push_back(b),
            |_| Ok(()),
            Flags::COMPRESSED,
        )?;
        Ok(true)
    }

    /// The handshake completed at `now`: its deadline is off, the idle timer starts.
    fn handshake_done(&mut self, now: Instant) {
        self.handshake_deadline = None;
        self.established = true;
        self.keepalive_check = self.timers.keepalive.map(|t| now + t);
        self.last_frame = Some(now);
        self.last_data = Some(now);
        self.idle_check = self.timers.idle.map(|t| now + t);
    }

    /// Notes what one `handle_input` left behind: `partial` when the input ends inside a
    /// frame, `decoded` when at least one frame was complete.
    fn after_input(&mut self, partial: bool, decoded: bool, now: Instant) {
        if decoded {
            self.last_frame = Some(now);
        }
        if std::mem::take(&mut self.data_seen) {
            self.last_data = Some(now);
        }
        self.frame_started = if !partial {
            None
        } else if decoded || self.frame_started.is_none() {
            // A new frame began in this input.
            Some(now)
        } else {
            self.frame_started
        };
    }

    fn frame_deadline(&self) -> Option<Instant> {
        Some(self.frame_started? + self.timers.frame?)
    }

    /// When the keep-alive must be checked: after the handshake, with no ping outstanding.
    fn keepalive_deadline(&self) -> Option<Instant> {
        if !self.established || self.ping.is_some() || self.closed.is_some() {
            return None;
        }
        self.keepalive_check
    }

    /// Checks the keep-alive: sends the PING when no frame came for the whole interval,
    /// else moves the check to when one could next be due.
    fn keepalive(&mut self, now: Instant) {
        let (Some(interval), Some(check)) = (self.timers.keepalive, self.keepalive_deadline())
        else {
            return;
        };
        if now < check {
            return;
        }
        let due = self.last_frame.map_or(now, |t| t + interval);
        if due > now {
            self.keepalive_check = Some(due);
            return;
        }
        self.keepalive_check = Some(now + interval);
        let _ = self.ping(now);
    }

    /// Checks the idle timer at `now` (when `idle_check` passed): closes when idle for the
    /// whole timeout, else moves the check to when it could next be.
    fn check_idle(&mut self, now: Instant, in_flight: usize) -> Option<ProtocolError> {
        let (Some(idle), Some(check)) = (self.timers.idle, self.idle_check) else {
            return None;
        };
        if now < check {
            return None;
        }
        if in_flight > 0 || self.call_completed {
            // Busy, or became idle at some unknown moment since the last check.
            self.call_completed = false;
            self.idle_check = Some(now + idle);
            return None;
        }
        let due = self.last_data.map_or(now, |t| t + idle);
        if due > now {
            self.idle_check = Some(due);
            return None;
        }
        Some(ProtocolError::IdleTimeout)
    }

    fn ensure_open(&self) -> Result<(), ProtocolError> {
        match self.closed {
            Some(_) => Err(ProtocolError::Closed),
            None => Ok(()),
        }
    }

    /// Encodes a frame into the send buffer after checking the peer's limits.
    fn send(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        let ann = match frame {
            Frame::Call(c) => c.annotations.as_bytes().len(),
            Frame::Reply(r) => r.annotations.as_bytes().len(),
            Frame::Error(e) => e.annotations.as_bytes().len(),
            Frame::StreamItem(s) => s.annotations.as_bytes().len(),
            _ => 0,
        };
        if self.compressor.is_some() && self.send_compressed(frame, ann)? {
            return Ok(());
        }
        let limits = self.peer_limits;
        if self.share_from == usize::MAX {
            let attachment = match frame {
                Frame::Call(c) => c.attachment.len(),
                Frame::Reply(r) => r.attachment.len(),
                Frame::StreamItem(s) => s.attachment.len(),
                _ => 0,
            };
            if attachment < SHARE_SECTIONS_FROM {
                // Everything is copied into the send buffer: the direct path.
                return frame
                    .encode_checked(&mut self.outbuf, |len| check_peer_limits(limits, len, ann));
            }
            // Bulk data is never copied: the attachment goes out as a chunk of its own.
            let attachment = frame
                .encode_head_checked(&mut self.outbuf, |len| check_peer_limits(limits, len, ann))?;
            self.queue_attachment(attachment);
            return Ok(());
        }
        let chunks = &mut self.chunks;
        frame.encode_chunks_checked(
            &mut self.outbuf,
            self.share_from,
            |b| chunks.push_back(b),
            |len| check_peer_limits(limits, len, ann),
            Flags::EMPTY,
        )
    }

    /// Encodes a plain REPLY of a borrowed result into the send buffer after checking the
    /// peer's limits. A result of at least `share_from` bytes is copied once into a chunk of
    /// its own, as [`send`](Self::send) would share it.
    fn send_reply_slice(
        &mut self,
        request_id: RequestId,
        codec: CodecId,
        result: &[u8],
    ) -> Result<(), ProtocolError> {
        let compress = self
            .compressor
            .as_ref()
            .is_some_and(|c| c.wants(result.len()));
        if compress || result.len() >= self.share_from {
            return self.send(&Frame::Reply(Reply {
                request_id,
                codec,
                stream: false,
                annotations: Annotations::new(),
                result: Bytes::copy_from_slice(result),
                attachment: Bytes::new(),
            }));
        }
        let limits = self.peer_limits;
        crate::frame::encode_reply_slice(&mut self.outbuf, request_id, codec, result, |len| {
            check_peer_limits(limits, len, 0)
        })
    }

    /// [`Core::send_reply_slice`] for a plain STREAM_ITEM.
    fn send_item_slice(
        &mut self,
        request_id: RequestId,
        codec: CodecId,
        item: &Bytes,
    ) -> Result<(), ProtocolError> {
        let compress = self
            .compressor
            .as_ref()
            .is_some_and(|c| c.wants(item.len()));
        if compress || item.len() >= self.share_from {
            return self.send(&Frame::StreamItem(StreamItem {
                request_id,
                codec,
                annotations: Annotations::new(),
                item: item.clone(),
                attachment: Bytes::new(),
            }));
        }
        let limits = self.peer_limits;
        crate::frame::encode_item_slice(&mut self.outbuf, request_id, codec, item, |len| {
            check_peer_limits(limits, len, 0)
        })
    }

    /// Encodes a borrowed CALL into the send buffer after checking the peer's limits.
    fn send_call(&mut self, call: &CallRef<'_>) -> Result<(), ProtocolError> {
        let limits = self.peer_limits;
        let ann = call.annotations.as_bytes().len();
        if let Some(c) = self.compressor.as_mut() {
            if c.wants(call.args.len() + call.kwargs.len()) {
                // The peer's limits apply to the decompressed frame.
                check_peer_limits(limits, call.encoded_len()?, ann)?;
                if let Some((p, k)) = c.compress(call.args, call.kwargs) {
                    let packed = CallRef {
                        args: &p,
                        kwargs: &k,
                        ..*call
                    };
                    return packed.encode_checked_flags(
                        &mut self.outbuf,
                        |_| Ok(()),
                        Flags::COMPRESSED,
                    );
                }
            }
        }
        call.encode_checked(&mut self.outbuf, |len| check_peer_limits(limits, len, ann))
    }

    /// Encodes a borrowed CALL whose attachment is `attachment` (shared, not copied when
    /// large) into the send buffer after checking the peer's limits.
    fn send_call_attached(
        &mut self,
        call: &CallRef<'_>,
        attachment: Bytes,
    ) -> Result<(), ProtocolError> {
        let limits = self.peer_limits;
        let ann = call.annotations.as_bytes().len();
        call.encode_head_with(&mut self.outbuf, attachment.len(), |len| {
            check_peer_limits(limits, len, ann)
        })?;
        self.queue_attachment(attachment);
        Ok(())
    }

    /// Queues an attachment right after what the send buffer holds: copied when small, else
    /// as a chunk of its own (the buffer before it becomes a chunk too, keeping the order).
    fn queue_attachment(&mut self, attachment: Bytes) {
        if attachment.len() < SHARE_SECTIONS_FROM {
            self.outbuf.extend_from_slice(&attachment);
            return;
        }
        if !self.outbuf.is_empty() {
            self.chunks.push_back(self.outbuf.split().freeze());
        }
        self.chunks.push_back(attachment);
    }

    /// Frees the empty buffers.
    fn release_buffers(&mut self) {
        if self.outbuf.is_empty() {
            self.outbuf = BytesMut::new();
        }
        if self.inbuf.is_empty() {
            self.inbuf = BytesMut::new();
        }
        if self.chunks.is_empty() {
            self.chunks = VecDeque::new();
        }
    }

    /// Moves the chunks in front of `outbuf` into it, so the bytes to send are contiguous.
    #[inline]
    fn merge_chunks(&mut self) {
        if !self.chunks.is_empty() {
            self.merge_chunks_slow();
        }
    }

    #[cold]
    fn merge_chunks_slow(&mut self) {
        let len = self.chunks.iter().map(Bytes::len).sum::<usize>() + self.outbuf.len();
        let mut all = BytesMut::with_capacity(len);
        for c in self.chunks.drain(..) {
            all.extend_from_slice(&c);
        }
        all.extend_from_slice(&self.outbuf);
        self.outbuf = all;
    }

    /// Appends everything queued to `dst`; when `dst` is empty (the usual case) the buffers
    /// are swapped instead, so nothing is copied and `dst`'s capacity is reused.
    fn take_transmit(&mut self, dst: &mut BytesMut) {
        if dst.is_empty() && self.chunks.is_empty() {
            std::mem::swap(dst, &mut self.outbuf);
            return;
        }
        for c in self.chunks.drain(..) {
            dst.extend_from_slice(&c);
        }
        dst.extend_from_slice(&self.outbuf);
        self.outbuf.clear();
    }

    /// Answers call `request_id` with an ERROR this side builds itself (codec none).
    fn send_error_control(&mut self, request_id: RequestId, body: ErrorBody) {
        self.send_control(&Frame::Error(ErrorFrame {
            request_id,
            codec: CodecId::NONE,
            annotations: Annotations::new(),
            body,
        }));
    }

    /// Sends a frame this side builds itself; such frames always fit.
    fn send_control(&mut self, frame: &Frame) {
        // Control frames are small and well-formed by construction; an error here would be
        // a bug, and dropping the frame is safer than panicking.
        let _ = frame.encode(&mut self.outbuf);
    }

    fn poll_transmit(&mut self) -> Option<Bytes> {
        if let Some(b) = self.chunks.pop_front() {
            return Some(b);
        }
        if self.outbuf.is_empty() {
            None
        } else {
            Some(self.outbuf.split().freeze())
        }
    }

    fn ping(&mut self, now: Instant) -> Result<(), ProtocolError> {
        self.ensure_open()?;
        if self.ping.is_some() {
            return Ok(());
        }
        self.ping_seq = self.ping_seq.wrapping_add(1);
        let data = self.ping_seq.to_be_bytes();
        self.send_control(&Frame::Ping(data));
        self.ping = Some((data, now, self.ping_timeout.map(|t| now + t)));
        Ok(())
    }

    /// Handles a PONG; returns the round-trip time when it answers our ping.
    fn pong(&mut self, data: [u8; 8], now: Instant) -> Option<Duration> {
        match self.ping {
            Some((d, sent, _)) if d == data => {
                self.ping = None;
                Some(now.saturating_duration_since(sent))
            }
            // An unsolicited or stale PONG is ignored, as in HTTP/2.
            _ => None,
        }
    }

    fn timeout(&self) -> Option<Instant> {
        let t = earliest(
            self.ping.and_then(|(_, _, deadline)| deadline),
            self.handshake_deadline,
        );
        let t = earliest(earliest(t, self.frame_deadline()), self.idle_check);
        earliest(t, self.keepalive_deadline())
    }

    /// When the side must next call `handle_timeout`: the connection's timers or the
    /// earliest call deadline; never once closed.
    fn next_timeout(&self, calls: Option<Instant>) -> Option<Instant> {
        if self.closed.is_some() {
            return None;
        }
        earliest(calls, self.timeout())
    }

    /// Closes on a fatal error, telling the peer with a GOAWAY naming `last_request_id`
    /// unless `tell_peer` is false (the peer closed or refused first); returns the error.
    fn fail(
        &mut self,
        e: ProtocolError,
        last_request_id: RequestId,
        tell_peer: bool,
    ) -> ProtocolError {
        if self.closed.is_none() {
            if tell_peer {
                self.send_control(&Frame::GoAway(GoAway {
                    last_request_id,
                    code: e.code(),
                    message: short_message(e.to_string()),
                }));
            }
            self.closed = Some(e.clone());
        }
        e
    }

    /// Closes at once with an error code, telling the peer.
    fn close(&mut self, code: ErrorCode, message: &str, last_request_id: RequestId) {
        if self.closed.is_none() {
            self.send_control(&Frame::GoAway(GoAway {
                last_request_id,
                code,
                message: short_message(message.to_string()),
            }));
            self.closed = Some(ProtocolError::Closed);
        }
    }

    /// The end of the byte stream: an error if it ended inside a frame, or if it was not
    /// `clean` (calls in flight without a GOAWAY). Closes either way.
    fn eof(&mut self, clean: bool, buffered: usize) -> Result<(), ProtocolError> {
        self.ensure_open()?;
        let r = if buffered != 0 {
            Err(ProtocolError::Truncated { buffered })
        } else if clean {
            Ok(())
        } else {
            Err(ProtocolError::PeerClosed {
                code: ErrorCode::PROTOCOL_ERROR,
                message: "connection closed without GOAWAY".into(),
            })
        };
        self.closed = Some(ProtocolError::Closed);
        r
    }

    /// Expired connection-level timers, as a fatal error; `in_flight` calls keep the
    /// connection from being idle.
    fn expired(&mut self, now: Instant, in_flight: usize) -> Option<ProtocolError> {
        if self.handshake_deadline.is_some_and(|d| now >= d) {
            return Some(ProtocolError::HandshakeTimeout);
        }
        if self.frame_deadline().is_some_and(|d| now >= d) {
            return Some(ProtocolError::FrameTimeout);
        }
        if self.ping.and_then(|(_, _, d)| d).is_some_and(|d| now >= d) {
            return Some(ProtocolError::PingTimeout);
        }
        self.check_idle(now, in_flight)
    }
}

/// Checks an outgoing frame of `len` bytes with `annotations` bytes of annotations against
/// the peer's announced limits (`None` before the handshake): a local error, nothing sent,
/// when over.
fn check_peer_limits(
    limits: Option<Limits>,
    len: u64,
    annotations: usize,
) -> Result<(), ProtocolError> {
    let Some(l) = limits else {
        return Ok(());
    };
    if len > u64::from(l.max_frame_len) {
        return Err(ProtocolError::TooLong {
            what: "frame (peer's max_frame_len)",
            len,
            max: u64::from(l.max_frame_len),
        });
    }
    let ann = annotations as u64;
    if ann > u64::from(l.max_annotations_len) {
        return Err(ProtocolError::TooLong {
            what: "annotations (peer's max_annotations_len)",
            len: ann,
            max: u64::from(l.max_annotations_len),
        });
    }
    Ok(())
}

/// The earlier of two optional instants.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A call in flight, as far as the timers are concerned.
trait Timed {
    /// Its deadline, if it has one.
    fn deadline(&self) -> Option<Instant>;
}

/// The calls in flight by request id, with a count of those that have a deadline, so the
/// timers skip the scan when none has.
///
/// Most calls sit in a small direct-mapped table indexed by the id's low bits (ids rise one
/// by one on most connections, so the calls in flight fall into distinct slots): an insert,
/// a lookup or a removal is one index and one compare. A call whose slot is taken (answers
/// far out of order, ids with gaps) goes to a hash map instead, so no pattern of ids costs
/// more than a hash map's operation and a slot compare. The table grows with the calls in
/// flight (kept at most half full) up to [`MAX_SLOTS`]. The map is hashed with FxHash: on a
/// server the ids are the peer's, but it never holds more than the in-flight limit, which
/// bounds what colliding ids can cost.
///
/// A call that arrives with no other in flight (a server answering each call before it
/// reads the next, the usual case for synchronous handlers) takes the `hot` place inside
/// the structure instead: the calls of such a connection then all use the same few bytes,
/// already in the cache, where the table would give each rising id a slot (a cache line)
/// of its own. On a runtime that moves the connection's task between cores, each of those
/// lines missed in the new core's cache.
#[derive(Debug)]
struct Calls<C> {
    /// The call placed when no other was in flight.
    hot: Option<(RequestId, C)>,
    /// `slots[id & (slots.len() - 1)]`; empty until the first call, then a power of two.
    slots: Vec<Option<(RequestId, C)>>,
    /// Calls in `slots`.
    in_slots: usize,
    /// The calls whose slot was taken.
    map: HashMap<RequestId, C, BuildHasherDefault<rustc_hash::FxHasher>>,
    timed: usize,
}

/// The direct-mapped table's first size.
const MIN_SLOTS: usize = 8;
/// The direct-mapped table's largest size.
const MAX_SLOTS: usize = 256;

impl<C> Default for Calls<C> {
    fn default() -> Self {
        Calls {
            hot: None,
            slots: Vec::new(),
            in_slots: 0,
            map: HashMap::default(),
            timed: 0,
        }
    }
}

impl<C: Timed> Calls<C> {
    fn slot(&self, id: RequestId) -> Option<usize> {
        let n = self.slots.len();
        (n != 0).then(|| id.0 as usize & (n - 1))
    }

    /// Inlined where called so a call placed in the empty `hot` place is built there: out
    /// of line, the call went through a copy on the stack whose wide loads waited for the
    /// narrow stores that built it (measured: the most sampled instruction of the reader).
    #[inline(always)]
    fn insert(&mut self, id: RequestId, c: C) {
        if c.deadline().is_some() {
            self.timed += 1;
        }
        if self.hot.is_none() && self.in_slots == 0 && self.map.is_empty() {
            self.hot = Some((id, c));
            return;
        }
        self.insert_placed(id, c);
    }

    /// [`Calls::insert`] when `hot` is taken or other calls are in flight.
    #[inline(never)]
    fn insert_placed(&mut self, id: RequestId, c: C) {
        if let Some(old) = self.put(id, c) {
            if old.deadline().is_some() {
                self.timed -= 1;
            }
        }
    }

    /// Inserts without the deadline count, when [`Calls::insert`] could not use the empty
    /// `hot` place; returns what `id` held.
    #[inline]
    fn put(&mut self, id: RequestId, c: C) -> Option<C> {
        if let Some((k, v)) = &mut self.hot {
            if *k == id {
                return Some(std::mem::replace(v, c));
            }
        }
        if !self.map.is_empty() {
            if let Some(v) = self.map.get_mut(&id) {
                return Some(std::mem::replace(v, c));
            }
        }
        if self.slots.len() < MAX_SLOTS && self.len() >= self.slots.len() / 2 {
            self.grow();
        }
        let i = id.0 as usize & (self.slots.len() - 1);
        match &mut self.slots[i] {
            Some((k, v)) if *k == id => Some(std::mem::replace(v, c)),
            Some(_) => self.map.insert(id, c),
            e @ None => {
                *e = Some((id, c));
                self.in_slots += 1;
                None
            }
        }
    }

    /// Doubles the table (to [`MIN_SLOTS`] at first) and places every call again.
    fn grow(&mut self) {
        let n = (self.slots.len() * 2).clamp(MIN_SLOTS, MAX_SLOTS);
        let mut slots = Vec::with_capacity(n);
        slots.resize_with(n, || None);
        let old = std::mem::replace(&mut self.slots, slots);
        let map = std::mem::take(&mut self.map);
        self.in_slots = 0;
        for (id, c) in old.into_iter().flatten().chain(map) {
            let i = id.0 as usize & (n - 1);
            match &mut self.slots[i] {
                Some(_) => {
                    self.map.insert(id, c);
                }
                e @ None => {
                    *e = Some((id, c));
                    self.in_slots += 1;
                }
            }
        }
    }

    #[inline]
    fn remove(&mut self, id: &RequestId) -> Option<C> {
        let c = self.take(*id)?;
        if c.deadline().is_some() {
            self.timed -= 1;
        }
        Some(c)
    }

    #[inline]
    fn take(&mut self, id: RequestId) -> Option<C> {
        if matches!(&self.hot, Some((k, _)) if *k == id) {
            return self.hot.take().map(|(_, c)| c);
        }
        if let Some(i) = self.slot(id) {
            if matches!(&self.slots[i], Some((k, _)) if *k == id) {
                self.in_slots -= 1;
                return self.slots[i].take().map(|(_, c)| c);
            }
        }
        if self.map.is_empty() {
            return None;
        }
        self.map.remove(&id)
    }

    fn get(&self, id: &RequestId) -> Option<&C> {
        if let Some((k, c)) = &self.hot {
            if k == id {
                return Some(c);
            }
        }
        if let Some(i) = self.slot(*id) {
            if let Some((k, c)) = &self.slots[i] {
                if k == id {
                    return Some(c);
                }
            }
        }
        if self.map.is_empty() {
            return None;
        }
        self.map.get(id)
    }

    /// Mutable access; the deadline must not change through it.
    fn get_mut(&mut self, id: &RequestId) -> Option<&mut C> {
        if matches!(&self.hot, Some((k, _)) if k == id) {
            return self.hot.as_mut().map(|(_, c)| c);
        }
        if let Some(i) = self.slot(*id) {
            if matches!(&self.slots[i], Some((k, _)) if k == id) {
                return self.slots[i].as_mut().map(|(_, c)| c);
            }
        }
        if self.map.is_empty() {
            return None;
        }
        self.map.get_mut(id)
    }

    fn contains_key(&self, id: &RequestId) -> bool {
        self.get(id).is_some()
    }

    fn len(&self) -> usize {
        usize::from(self.hot.is_some()) + self.in_slots + self.map.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every call, in no particular order.
    fn iter(&self) -> impl Iterator<Item = (&RequestId, &C)> {
        self.hot
            .iter()
            .chain(self.slots.iter().flatten())
            .map(|(k, c)| (k, c))
            .chain(self.map.iter())
    }

    /// The ids of every call, in no particular order.
    fn ids(&self) -> Vec<RequestId> {
        self.iter().map(|(id, _)| *id).collect()
    }

    /// The earliest of `deadline` over the calls (`None` without a scan when no call has a
    /// deadline).
    fn earliest(&self, deadline: impl Fn(&C) -> Option<Instant>) -> Option<Instant> {
        if self.timed == 0 {
            return None;
        }
        self.iter().map(|(_, c)| c).filter_map(deadline).min()
    }

    /// The calls whose `deadline` has passed, in id order.
    fn expired(&self, now: Instant, deadline: impl Fn(&C) -> Option<Instant>) -> Vec<RequestId> {
        if self.timed == 0 {
            return Vec::new();
        }
        let mut expired: Vec<RequestId> = self
            .iter()
            .filter(|(_, c)| deadline(c).is_some_and(|d| now >= d))
            .map(|(id, _)| *id)
            .collect();
        expired.sort();
        expired
    }
}

impl Timed for ClientCall {
    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

impl Timed for ServerCall {
    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

// ---------------------------------------------------------------------------------------
// The two roles of a connection, written once. A side that starts calls (the client; the
// server calling back, SPEC §6.10) keeps a `Calls<ClientCall>` and uses the caller's
// rules; a side that answers calls (the server; the client answering callbacks) keeps a
// `Calls<ServerCall>` and uses the answerer's rules.
// ---------------------------------------------------------------------------------------

/// The checks before this side starts a call (SPEC §10): open, not going away, under the
/// peer's in-flight limit, a valid codec (`NONE` is `default_codec`), ids left. Returns the
/// call's request id and codec.
#[allow(clippy::too_many_arguments)]
fn begin_outgoing(
    core: &Core,
    going_away: bool,
    in_flight: usize,
    peer_max_in_flight: u32,
    next_id: u64,
    oneway: bool,
    codec: CodecId,
    default_codec: CodecId,
) -> Result<(RequestId, CodecId), ProtocolError> {
    core.ensure_open()?;
    if going_away {
        return Err(ProtocolError::GoingAway);
    }
    if !oneway && in_flight >= peer_max_in_flight as usize {
        return Err(ProtocolError::InFlightLimit {
            max: peer_max_in_flight,
        });
    }
    let codec = if codec == CodecId::NONE {
        default_codec
    } else {
        codec
    };
    if !codec.is_codec() {
        return Err(ProtocolError::InvalidArgument(
            "a call's codec must be 1-254",
        ));
    }
    if next_id == u64::MAX {
        return Err(ProtocolError::InvalidState {
            operation: "start a call",
            state: "out of request ids",
        });
    }
    Ok((RequestId(next_id), codec))
}

impl Calls<ClientCall> {
    /// Records a call whose frame was queued and moves `next_id` past it.
    fn commit(
        &mut self,
        next_id: &mut u64,
        id: RequestId,
        oneway: bool,
        deadline: Option<Instant>,
        window: Option<u32>,
        upload: Option<u32>,
    ) {
        *next_id += 1;
        if !oneway {
            self.insert(
                id,
                ClientCall {
                    streaming: false,
                    credit: window,
                    upload,
                    cancelled: false,
                    deadline,
                },
            );
        }
    }

    /// The call an answer of `kind` names, checked to be in flight and streaming or not as
    /// the answer expects.
    fn expect(
        &self,
        kind: Kind,
        id: RequestId,
        streaming: bool,
    ) -> Result<ClientCall, ProtocolError> {
        let c = *self.get(&id).ok_or(ProtocolError::UnknownRequest {
            kind,
            request_id: id,
        })?;
        if c.streaming != streaming {
            let state = if c.streaming {
                "streaming a result"
            } else {
                "waiting for a reply"
            };
            return Err(ProtocolError::UnexpectedFrame { kind, state });
        }
        Ok(c)
    }

    /// Matches an answer (REPLY, STREAM_ITEM, STREAM_END or ERROR) to the call it answers
    /// and updates the call's state: returns the frame to report, `None` when the call was
    /// cancelled (its answers are swallowed). An answer to no call in flight, or of the
    /// wrong kind for the call's state, is an error.
    fn answer(&mut self, frame: Frame) -> Result<Option<Frame>, ProtocolError> {
        let kind = frame.kind();
        let cancelled = match &frame {
            Frame::Reply(r) => {
                let c = self.expect(kind, r.request_id, false)?;
                if r.stream {
                    if let Some(c) = self.get_mut(&r.request_id) {
                        c.streaming = true;
                    }
                } else {
                    self.remove(&r.request_id);
                }
                c.cancelled
            }
            Frame::StreamItem(s) => {
                let c = self.expect(kind, s.request_id, true)?;
                // Flow control (SPEC §6.12): an item beyond the credit granted is fatal.
                if let Some(credit) = c.credit {
                    let Some(left) = credit.checked_sub(1) else {
                        return Err(ProtocolError::FlowControl {
                            request_id: s.request_id,
                            problem: "a STREAM_ITEM arrived with no credit left",
                        });
                    };
                    if let Some(c) = self.get_mut(&s.request_id) {
                        c.credit = Some(left);
                    }
                }
                c.cancelled
            }
            Frame::StreamEnd(id) => {
                let c = self.expect(kind, *id, true)?;
                self.remove(id);
                c.cancelled
            }
            Frame::Error(e) => {
                self.remove(&e.request_id)
                    .ok_or(ProtocolError::UnknownRequest {
                        kind,
                        request_id: e.request_id,
                    })?
                    .cancelled
            }
            _ => {
                return Err(ProtocolError::UnexpectedFrame {
                    kind,
                    state: "waiting for answers",
                })
            }
        };
        Ok((!cancelled).then_some(frame))
    }

    /// Cancels a call: true (and the caller sends CANCEL) when it was in flight and not yet
    /// cancelled.
    fn cancel(&mut self, id: RequestId) -> bool {
        match self.get_mut(&id) {
            Some(c) if !c.cancelled => {
                c.cancelled = true;
                c.upload = None;
                true
            }
            _ => false,
        }
    }

    /// Fails the calls whose deadline passed by `now`: each is cancelled (its CANCEL
    /// queued on `core`, its late answer swallowed). Returns them in id order.
    fn expire(&mut self, core: &mut Core, now: Instant) -> Vec<RequestId> {
        let expired = self.expired(now, ClientCall::live_deadline);
        for id in &expired {
            if let Some(c) = self.get_mut(id) {
                c.cancelled = true;
                c.upload = None;
            }
            core.send_control(&Frame::Cancel(*id));
        }
        expired
    }
}

/// The fatal checks of a received CALL (SPEC §10): none after the peer's GOAWAY, and
/// request ids strictly increasing.
fn check_call_order(c: &Call, peer_goaway: bool, last: RequestId) -> Result<(), ProtocolError> {
    if peer_goaway {
        return Err(ProtocolError::AfterGoAway { kind: Kind::CALL });
    }
    if c.request_id <= last {
        return Err(ProtocolError::RequestIdNotIncreasing {
            request_id: c.request_id,
            last,
        });
    }
    Ok(())
}

/// Why a received CALL is answered ERROR without being dispatched, the connection staying
/// up (SPEC §10): this side sent GOAWAY (`shutting_down` says so), the codec is outside
/// `accepted`, or the call is over `max_in_flight`.
fn call_rejection(
    c: &Call,
    shutting_down: Option<&str>,
    accepted: &[CodecId],
    in_flight: usize,
    max_in_flight: u32,
) -> Option<(ProtocolError, ErrorBody)> {
    if let Some(message) = shutting_down {
        Some((
            ProtocolError::GoingAway,
            ErrorBody::new(ErrorCode::SHUTTING_DOWN, message),
        ))
    } else if let Err(e) = check_codec(c.codec, accepted) {
        Some((e, ErrorBody::codec_refused(c.codec, accepted)))
    } else if let Err(e) = crate::bulk::check_bulk(&c.annotations, c.attachment.len()) {
        let msg = e.to_string();
        Some((e, ErrorBody::new(ErrorCode::BAD_ARGUMENTS, msg)))
    } else if !c.oneway && in_flight >= max_in_flight as usize {
        let e = ProtocolError::TooManyInFlight { max: max_in_flight };
        let msg = e.to_string();
        Some((e, ErrorBody::new(ErrorCode::TOO_MANY_IN_FLIGHT, msg)))
    } else {
        None
    }
}

/// The ERROR a CALL whose deadline is already zero gets, without being dispatched.
fn zero_deadline_body() -> ErrorBody {
    ErrorBody::new(
        ErrorCode::DEADLINE_EXCEEDED,
        "the call's deadline passed before it was dispatched",
    )
}

impl Calls<ServerCall> {
    /// A received CANCEL (SPEC §10): the call still in flight is answered CANCELLED and
    /// returned (stop its work); one already answered crossed the CANCEL (nothing to do);
    /// an id above every call received (`last`) is an error.
    fn cancel_received(
        &mut self,
        core: &mut Core,
        id: RequestId,
        last: RequestId,
    ) -> Result<Option<ServerCall>, ProtocolError> {
        if id > last {
            return Err(ProtocolError::UnknownRequest {
                kind: Kind::CANCEL,
                request_id: id,
            });
        }
        let call = self.remove(&id);
        if call.is_some() {
            core.send_error_control(
                id,
                ErrorBody::new(ErrorCode::CANCELLED, "cancelled by the caller"),
            );
        }
        Ok(call)
    }

    /// Checks that call `id` may be answered now, with a stream item (`streaming`) or a
    /// final answer.
    fn check_answer(&self, id: RequestId, streaming: bool) -> Result<(), ProtocolError> {
        match self.get(&id) {
            Some(c) if c.streaming == streaming => Ok(()),
            Some(_) => Err(ProtocolError::InvalidState {
                operation: if streaming {
                    "send a stream item"
                } else {
                    "send a reply"
                },
                state: if streaming {
                    "the call has no stream"
                } else {
                    "the call is streaming"
                },
            }),
            None => Err(ProtocolError::NotInFlight { request_id: id }),
        }
    }
}

/// What the byte-feeding half of a connection needs from either side.
trait Side {
    fn core(&mut self) -> &mut Core;
    /// Handles one frame; an error is fatal.
    fn on_frame(&mut self, frame: Frame, now: Instant) -> Result<(), ProtocolError>;
    /// Closes on a fatal error (telling the peer) and returns it.
    fn fail(&mut self, e: ProtocolError) -> ProtocolError;
}

/// Feeds received bytes; decodes and handles every complete frame.
fn handle_input(side: &mut impl Side, data: &[u8], now: Instant) -> Result<(), ProtocolError> {
    side.core().ensure_open()?;
    let mut buf = std::mem::take(&mut side.core().inbuf);
    buf.extend_from_slice(data);
    let r = handle_input_buf(side, &mut buf, now, usize::MAX, |_, _| false);
    side.core().inbuf = buf;
    r.map(|_| ())
}

/// Decodes and handles every complete frame at the front of `buf`, consuming them and
/// leaving an unfinished frame's bytes. Before each frame, `fast` may consume it in place
/// (returning true).
fn handle_input_buf<S: Side>(
    side: &mut S,
    buf: &mut BytesMut,
    now: Instant,
    max_frames: usize,
    mut fast: impl FnMut(&mut S, &mut BytesMut) -> bool,
) -> Result<usize, ProtocolError> {
    side.core().ensure_open()?;
    let mut frames = 0;
    let mut partial = false;
    while frames < max_frames {
        if !buf.is_empty() && fast(side, buf) {
            frames += 1;
            side.core().data_seen = true;
            continue;
        }
        let core = side.core();
        match core.decoder.decode(buf) {
            Ok(Some(f)) => {
                frames += 1;
                handle_frame(side, f, now)?;
            }
            Ok(None) => {
                partial = !buf.is_empty();
                break;
            }
            Err(e) => return Err(side.fail(e)),
        }
    }
    side.core().after_input(partial, frames > 0, now);
    Ok(frames)
}

/// Handles one decoded frame; a fatal error closes the connection.
fn handle_frame(side: &mut impl Side, frame: Frame, now: Instant) -> Result<(), ProtocolError> {
    side.core().ensure_open()?;
    if !matches!(frame, Frame::Ping(_) | Frame::Pong(_)) {
        side.core().data_seen = true;
    }
    side.on_frame(frame, now).map_err(|e| side.fail(e))
}

/// The byte-moving and buffer methods both sides have alike (written once).
macro_rules! io_methods {
    () => {
        /// The next chunk of bytes to send, if any. Call until it returns `None` and send the
        /// chunks in order; large sections (payload, kwargs, attachment of 4 KiB or more) come
        /// as their own chunk, shared with the frame rather than copied.
        pub fn poll_transmit(&mut self) -> Option<Bytes> {
            self.core.poll_transmit()
        }

        /// Moves every byte queued to send into `dst`, in order (appended; when `dst` is empty
        /// the buffers are swapped, so nothing is copied). For drivers that keep their own
        /// write buffer instead of taking [`poll_transmit`](Self::poll_transmit)'s chunks.
        pub fn take_transmit(&mut self, dst: &mut BytesMut) {
            self.core.take_transmit(dst)
        }

        /// The bytes queued to send, contiguous: write a prefix, then
        /// [`advance_transmit`](Self::advance_transmit) past what was written.
        pub fn transmit_buf(&mut self) -> &[u8] {
            self.core.merge_chunks();
            &self.core.outbuf
        }

        /// Drops the first `n` bytes of [`transmit_buf`](Self::transmit_buf): they were written.
        pub fn advance_transmit(&mut self, n: usize) {
            self.core.merge_chunks();
            let n = n.min(self.core.outbuf.len());
            bytes::Buf::advance(&mut self.core.outbuf, n);
        }

        /// Whether some queued bytes wait as shared chunks (large attachments):
        /// [`transmit_buf`](Self::transmit_buf) and [`take_transmit`](Self::take_transmit)
        /// would copy them, [`poll_transmit`](Self::poll_transmit) hands them out as they are.
        pub fn has_transmit_chunks(&self) -> bool {
            !self.core.chunks.is_empty()
        }

        /// Whether bytes are queued to send.
        pub fn has_transmit(&self) -> bool {
            !self.core.chunks.is_empty() || !self.core.outbuf.is_empty()
        }

        /// Whether events wait for [`poll_event`](Self::poll_event) (e.g. `Drained` after an
        /// answer completed the last call).
        pub fn has_events(&self) -> bool {
            !self.events.is_empty()
        }

        /// Frees the memory of buffers and queues that are empty (an idle connection holds
        /// none; they grow again when used).
        pub fn release_buffers(&mut self) {
            self.core.release_buffers();
            if self.events.is_empty() {
                self.events = VecDeque::new();
            }
        }

        /// Feeds received bytes; decodes and handles every complete frame.
        pub fn handle_input(&mut self, data: &[u8], now: Instant) -> Result<(), ProtocolError> {
            handle_input(self, data, now)
        }

        /// Feeds bytes the driver read into its own buffer, in place: decodes and handles every
        /// complete frame at the front of `buf` (payloads are split off as `Bytes`, not
        /// copied) and leaves an unfinished frame's bytes there for the next read.
        pub fn handle_input_buf(
            &mut self,
            buf: &mut BytesMut,
            now: Instant,
        ) -> Result<(), ProtocolError> {
            handle_input_buf(self, buf, now, usize::MAX, |_, _| false).map(|_| ())
        }

        /// Handles one decoded frame (for drivers that decode themselves).
        pub fn handle_frame(&mut self, frame: Frame, now: Instant) -> Result<(), ProtocolError> {
            handle_frame(self, frame, now)
        }
    };
}

// ---------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------

/// Configuration of a [`ClientConnection`].
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Protocol versions offered, most preferred first.
    pub versions: Vec<u8>,
    /// Codecs offered, most preferred first.
    pub codecs: Vec<CodecId>,
    /// This side's limits, enforced on received frames and announced in HELLO.
    pub limits: Limits,
    /// Fail the connection when the handshake takes longer.
    pub handshake_timeout: Option<Duration>,
    /// Fail the connection when a PING gets no PONG within this time.
    pub ping_timeout: Option<Duration>,
    /// Fail the connection when a frame whose first bytes arrived does not complete within
    /// this time.
    pub frame_timeout: Option<Duration>,
    /// Send a PING after this long without a frame from the server (the ping timeout then
    /// applies). Off by default: the driver must call `handle_timeout` while idle.
    pub keepalive: Option<Duration>,
    /// Payload, kwargs and attachment sections at least this long are handed out by
    /// [`ClientConnection::poll_transmit`] as chunks of their own, shared rather than
    /// copied; `usize::MAX` copies every frame into one buffer (for drivers that write with
    /// [`ClientConnection::take_transmit`]).
    pub share_sections_from: usize,
    /// Handshake extensions offered in HELLO (SPEC §6.1.1); none by default. The
    /// compression tag is written from [`compression`](Self::compression).
    pub extensions: Extensions,
    /// Per-frame compression (SPEC §6.9): the algorithms offered in HELLO, and when this
    /// side compresses its calls. Off by default.
    pub compression: Compression,
}

impl ClientConfig {
    /// Offers `codecs` (most preferred first) with version 1, default limits, a 10 s
    /// handshake timeout, a 30 s ping timeout and a 30 s frame timeout.
    pub fn new(codecs: Vec<CodecId>) -> ClientConfig {
        ClientConfig {
            versions: vec![VERSION],
            codecs,
            limits: Limits::default(),
            handshake_timeout: Some(Duration::from_secs(10)),
            ping_timeout: Some(Duration::from_secs(30)),
            frame_timeout: Some(Duration::from_secs(30)),
            keepalive: None,
            share_sections_from: SHARE_SECTIONS_FROM,
            extensions: Extensions::new(),
            compression: Compression::off(),
        }
    }
}

/// A call to start with [`ClientConnection::call`].
#[derive(Clone, Debug)]
pub struct CallRequest {
    /// The provider addressed.
    pub provider: ProviderId,
    /// The method name.
    pub method: Method,
    /// Codec of `args` and `kwargs`; `None` uses the session's default codec.
    pub codec: Option<CodecId>,
    /// No reply wanted.
    pub oneway: bool,
    /// The caller streams argument items after the call (flag UPLOAD, SPEC §6.13): send
    /// them with [`ClientConnection::send_item`] as the server's credit allows, and end
    /// them with [`ClientConnection::end_upload`]. Never with `oneway`.
    pub upload: bool,
    /// Annotations; a `wc.deadline` entry also arms a local deadline for the call.
    pub annotations: Annotations,
    /// Positional arguments, already encoded.
    pub args: Bytes,
    /// Keyword arguments, already encoded; empty when there are none.
    pub kwargs: Bytes,
    /// Raw bytes sent after the payload.
    pub attachment: Bytes,
}

impl CallRequest {
    /// A call with positional arguments only, in the session's default codec.
    pub fn new(provider: ProviderId, method: Method, args: Bytes) -> CallRequest {
        CallRequest {
            provider,
            method,
            codec: None,
            oneway: false,
            upload: false,
            annotations: Annotations::new(),
            args,
            kwargs: Bytes::new(),
            attachment: Bytes::new(),
        }
    }
}

/// What a [`ClientConnection`] reports.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The handshake succeeded; calls may start.
    Connected(Session),
    /// A call's result. Final unless `stream` is set, in which case items follow.
    Reply(Reply),
    /// One item of a streamed result.
    StreamItem(StreamItem),
    /// A streamed result is complete (final).
    StreamEnd(RequestId),
    /// A call failed on the server (final).
    Error(ErrorFrame),
    /// A call failed on this side (its deadline passed); a CANCEL was sent (final).
    Failed {
        /// The call.
        request_id: RequestId,
        /// Why.
        error: ProtocolError,
    },
    /// The server granted more credit for a call's argument stream (CREDIT, SPEC §6.13):
    /// `credit` items may now be sent with [`ClientConnection::send_item`].
    Credit {
        /// The call.
        request_id: RequestId,
        /// The argument items that may be sent now (credit left after the grant).
        credit: u32,
    },
    /// Answer to [`ClientConnection::ping`].
    Pong {
        /// Round-trip time.
        rtt: Duration,
    },
    /// The server is shutting down: no new calls; calls up to `last_request_id` complete.
    GoAway(GoAway),
    /// After GOAWAY (either side), nothing is left in flight in either direction: close
    /// the transport.
    Drained,
    /// A callback from the server to dispatch (SPEC §6.10, only with the callbacks
    /// extension in force); answer with [`ClientConnection::reply`] or
    /// [`ClientConnection::error`] unless `oneway`.
    Call(Call),
    /// The server cancelled a callback; CANCELLED was sent; drop the work.
    CallCancelled(RequestId),
    /// A callback's deadline passed; DEADLINE_EXCEEDED was sent; drop the work.
    CallExpired(RequestId),
    /// A callback was refused without being dispatched (codec not offered, too many
    /// callbacks in flight, this side going away); the ERROR was sent unless it was oneway.
    CallRejected {
        /// The callback.
        request_id: RequestId,
        /// Why.
        error: ProtocolError,
    },
}

#[derive(Clone, Copy, Debug)]
struct ClientCall {
    streaming: bool,
    /// Stream items the server may still send (SPEC §6.12): the call's `wc.window` plus
    /// the CREDIT granted, minus the items received. `None`: no window, no flow control.
    credit: Option<u32>,
    /// While the call's argument stream is open (flag UPLOAD, SPEC §6.13): the argument
    /// items this side may still send (the server's window plus its CREDIT, minus the
    /// items sent). `None`: no argument stream, or it ended.
    upload: Option<u32>,
    /// Cancelled or failed locally: swallow the final frame, emit nothing.
    cancelled: bool,
    deadline: Option<Instant>,
}

impl ClientCall {
    /// The deadline still to enforce: none once the call is cancelled.
    fn live_deadline(&self) -> Option<Instant> {
        self.deadline.filter(|_| !self.cancelled)
    }
}

/// The client side of a connection.
///
/// Created with the HELLO queued: send what [`poll_transmit`](Self::poll_transmit) returns,
/// feed received bytes to [`handle_input`](Self::handle_input), and act on
/// [`poll_event`](Self::poll_event). When a method returns an error with a
/// [`Cause::Peer`](crate::Cause) or timeout cause, the connection is closed: flush
/// `poll_transmit` (it may hold a GOAWAY naming the error) and close the transport; every
/// call in flight is lost.
#[derive(Debug)]
pub struct ClientConnection {
    core: Core,
    config: ClientConfig,
    session: Option<Session>,
    next_id: u64,
    in_flight: Calls<ClientCall>,
    events: VecDeque<ClientEvent>,
    peer_goaway: Option<RequestId>,
    goaway_sent: bool,
    drained: bool,
    /// The callbacks extension is in force (SPEC §6.10): the server may call this side.
    callbacks: bool,
    /// How many callbacks may be in flight at once (what HELLO announced).
    callbacks_max: u32,
    /// The server's calls (callbacks) this side is answering, by their request ids.
    answering: Calls<ServerCall>,
    /// The highest callback request id received.
    answering_last: RequestId,
}

/// The value of the callbacks extension (tag 2, SPEC §6.10) in a HELLO: empty (callbacks
/// in flight are bounded by `max_in_flight`), or a 4-byte limit of their own (≥ 1).
/// `None` for any other value.
fn callbacks_limit(value: &[u8], max_in_flight: u32) -> Option<u32> {
    match value.len() {
        0 => Some(max_in_flight),
        4 => {
            let n = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
            (n >= 1).then_some(n)
        }
        _ => None,
    }
}

impl ClientConfig {
    /// Offers client → server streams (the streams extension, SPEC §6.13): calls may then
    /// stream their arguments ([`CallRequest::upload`]) when the server agrees.
    pub fn offer_uploads(&mut self) {
        // An empty value is always valid.
        let _ = self.extensions.set(ExtensionTag::STREAMS, Bytes::new());
    }

    /// Offers the callbacks extension (SPEC §6.10): the server may call this side back on
    /// the connection. `max_in_flight` bounds the callbacks in flight at once (`None`: the
    /// HELLO's `max_in_flight`).
    pub fn offer_callbacks(&mut self, max_in_flight: Option<u32>) -> Result<(), ProtocolError> {
        let value = match max_in_flight {
            None => Bytes::new(),
            Some(0) => {
                return Err(ProtocolError::InvalidArgument(
                    "callbacks in flight must be at least 1",
                ))
            }
            Some(n) => Bytes::copy_from_slice(&n.to_be_bytes()),
        };
        self.extensions.set(ExtensionTag::CALLBACKS, value)
    }
}

impl Session {
    /// Whether the callbacks extension is in force (SPEC §6.10): the server may call the
    /// client back on this connection.
    pub fn callbacks(&self) -> bool {
        self.offered_extensions
            .get(ExtensionTag::CALLBACKS)
            .is_some()
            && self.extensions.get(ExtensionTag::CALLBACKS).is_some()
    }
}

impl ClientConnection {
    /// Starts a connection and queues the HELLO.
    pub fn new(mut config: ClientConfig, now: Instant) -> Result<ClientConnection, ProtocolError> {
        config.limits.validate()?;
        config.compression.validate()?;
        config.compression.write_extension(&mut config.extensions)?;
        let callbacks_max = match config.extensions.get(ExtensionTag::CALLBACKS) {
            None => config.limits.max_in_flight,
            Some(v) => callbacks_limit(v, config.limits.max_in_flight).ok_or(
                ProtocolError::InvalidArgument(
                    "the callbacks extension's value is empty or a 4-byte limit of at least 1",
                ),
            )?,
        };
        let hello = Frame::Hello(Hello {
            versions: config.versions.clone(),
            codecs: config.codecs.clone(),
            limits: config.limits,
            extensions: config.extensions.clone(),
        });
        let mut core = Core::new(
            config.limits,
            config.ping_timeout,
            config.handshake_timeout.map(|t| now + t),
            config.share_sections_from,
            Timers {
                frame: config.frame_timeout,
                idle: None,
                keepalive: config.keepalive,
            },
        );
        core.send(&hello)?;
        Ok(ClientConnection {
            core,
            config,
            session: None,
            next_id: 1,
            in_flight: Calls::default(),
            events: VecDeque::new(),
            peer_goaway: None,
            goaway_sent: false,
            drained: false,
            callbacks: false,
            callbacks_max,
            answering: Calls::default(),
            answering_last: RequestId::NONE,
        })
    }

    /// The handshake's outcome, once connected.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// Number of calls in flight (cancelled ones count until the server's final frame).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Number of callbacks from the server this side has yet to answer (SPEC §6.10).
    pub fn callbacks_in_flight(&self) -> usize {
        self.answering.len()
    }

    /// The request id the next call will get: an ordered batch (SPEC §6.8) names its first
    /// call's id in every call's `wc.batch` annotation, so its caller reads it here before
    /// starting the first call.
    pub fn next_request_id(&self) -> RequestId {
        RequestId(self.next_id)
    }

    /// Whether the connection failed or was closed.
    pub fn is_closed(&self) -> bool {
        self.core.closed.is_some()
    }

    fn state(&self) -> &'static str {
        if self.core.closed.is_some() {
            "closed"
        } else if self.session.is_none() {
            "handshaking"
        } else if self.goaway_sent || self.peer_goaway.is_some() {
            "draining"
        } else {
            "connected"
        }
    }

    io_methods!();

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.next_timeout(earliest(
            self.in_flight.earliest(ClientCall::live_deadline),
            self.answering.earliest(|c| c.deadline),
        ))
    }

    /// Fires expired timers: call deadlines (a [`ClientEvent::Failed`] and a CANCEL each),
    /// the handshake timeout and the ping timeout (fatal errors).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ProtocolError> {
        self.core.ensure_open()?;
        if let Some(e) = self.core.expired(now, self.in_flight.len()) {
            return Err(self.fail(e));
        }
        self.core.keepalive(now);
        for id in self.in_flight.expire(&mut self.core, now) {
            self.events.push_back(ClientEvent::Failed {
                request_id: id,
                error: ProtocolError::DeadlineExceeded { request_id: id },
            });
        }
        let expired = self.answering.expired(now, |c| c.deadline);
        for id in expired {
            self.answering.remove(&id);
            self.core.send_error_control(
                id,
                ErrorBody::new(ErrorCode::DEADLINE_EXCEEDED, "deadline passed"),
            );
            self.events.push_back(ClientEvent::CallExpired(id));
        }
        self.check_drained();
        Ok(())
    }

    /// [`handle_input_buf`](Self::handle_input_buf), with plain replies read in place: a
    /// final REPLY with no annotations or attachment and a result of at most `max_result`
    /// bytes, for a call in flight, is handed to `on_reply(request_id, codec, result)`
    /// borrowed from `buf` instead of becoming a [`ClientEvent::Reply`] (no owned frame, no
    /// reference count on the buffer). Every rule applies as for a decoded frame; anything
    /// else (another kind, a reply for an unknown or streaming call) takes the ordinary path.
    ///
    /// Handles at most `max_frames` frames and returns how many it handled: a driver that
    /// wakes the callers of a batch of answers in smaller groups calls it again while it
    /// handled that many (the rest stays in `buf`).
    pub fn handle_input_with(
        &mut self,
        buf: &mut BytesMut,
        now: Instant,
        max_result: usize,
        max_frames: usize,
        mut on_reply: impl FnMut(RequestId, CodecId, &[u8]),
    ) -> Result<usize, ProtocolError> {
        handle_input_buf(self, buf, now, max_frames, |this, buf| {
            if this.session.is_none() {
                return false;
            }
            let Some(v) = this.core.decoder.peek_reply(buf, max_result) else {
                return false;
            };
            let id = v.request_id;
            let cancelled = match this.in_flight.get(&id) {
                Some(c) if !c.streaming => c.cancelled,
                // Unknown or streaming: the ordinary path reports the error.
                _ => return false,
            };
            this.in_flight.remove(&id);
            if !cancelled {
                on_reply(id, v.codec, v.result);
            }
            let n = v.frame_len;
            bytes::Buf::advance(buf, n);
            this.check_drained();
            true
        })
    }

    fn on_frame(&mut self, frame: Frame, now: Instant) -> Result<(), ProtocolError> {
        let kind = frame.kind();
        match frame {
            Frame::Ping(d) => {
                self.core.send_control(&Frame::Pong(d));
                return Ok(());
            }
            Frame::Pong(d) => {
                if let Some(rtt) = self.core.pong(d, now) {
                    self.events.push_back(ClientEvent::Pong { rtt });
                }
                return Ok(());
            }
            Frame::GoAway(g) => return self.on_goaway(g),
            Frame::Refuse(r) if self.session.is_none() => {
                return Err(ProtocolError::Refused {
                    code: r.code,
                    versions: r.versions,
                    accepted: r.accepted,
                    message: r.message,
                })
            }
            Frame::Welcome(w) if self.session.is_none() => return self.on_welcome(w, now),
            _ => {}
        }
        if self.session.is_none() {
            return Err(ProtocolError::UnexpectedFrame {
                kind,
                state: "waiting for WELCOME",
            });
        }
        match frame {
            Frame::Reply(_) | Frame::StreamItem(_) | Frame::StreamEnd(_) | Frame::Error(_) => {
                match self.in_flight.answer(frame)? {
                    Some(Frame::Reply(r)) => {
                        match crate::bulk::check_bulk(&r.annotations, r.attachment.len()) {
                            Ok(()) => self.events.push_back(ClientEvent::Reply(r)),
                            // The answer's bulk values are unusable: that call fails, the
                            // connection (whose framing is intact) goes on.
                            Err(e) => self.events.push_back(ClientEvent::Error(ErrorFrame {
                                request_id: r.request_id,
                                codec: CodecId::NONE,
                                annotations: Annotations::new(),
                                body: ErrorBody::new(ErrorCode::PROTOCOL_ERROR, e.to_string()),
                            })),
                        }
                    }
                    Some(Frame::StreamItem(s)) => self.events.push_back(ClientEvent::StreamItem(s)),
                    Some(Frame::StreamEnd(id)) => self.events.push_back(ClientEvent::StreamEnd(id)),
                    Some(Frame::Error(e)) => self.events.push_back(ClientEvent::Error(e)),
                    _ => {}
                }
            }
            Frame::Credit(id, items) => self.on_credit(id, items)?,
            Frame::Call(c) if self.callbacks => self.on_callback(c, now)?,
            Frame::Cancel(id) if self.callbacks => {
                if self
                    .answering
                    .cancel_received(&mut self.core, id, self.answering_last)?
                    .is_some()
                {
                    self.events.push_back(ClientEvent::CallCancelled(id));
                }
            }
            Frame::Call(_) | Frame::Cancel(_) => {
                return Err(ProtocolError::UnexpectedFrame {
                    kind,
                    state: "callbacks not in force (the callbacks extension was not negotiated)",
                })
            }
            _ => {
                return Err(ProtocolError::UnexpectedFrame {
                    kind,
                    state: self.state(),
                })
            }
        }
        self.check_drained();
        Ok(())
    }

    fn on_welcome(&mut self, w: Welcome, now: Instant) -> Result<(), ProtocolError> {
        if !self.config.versions.contains(&w.version) {
            return Err(ProtocolError::MalformedBody {
                what: "WELCOME body",
                problem: "chosen version was not offered",
            });
        }
        if !self.config.codecs.contains(&w.codec) {
            return Err(ProtocolError::MalformedBody {
                what: "WELCOME body",
                problem: "chosen codec was not offered",
            });
        }
        if w.extensions
            .iter()
            .any(|(tag, _)| self.config.extensions.get(tag).is_none())
        {
            return Err(ProtocolError::MalformedBody {
                what: "WELCOME body",
                problem: "answers an extension that was not offered",
            });
        }
        if w.extensions
            .get(ExtensionTag::STREAMS)
            .is_some_and(|v| upload_window_value(v).is_none())
        {
            return Err(ProtocolError::MalformedBody {
                what: "WELCOME body",
                problem: "the streams answer must be a 4-byte window of at least 1",
            });
        }
        let agreed = match w.extensions.get(ExtensionTag::COMPRESSION) {
            Some(v) => {
                let agreed = compress::parse_list(v);
                let offered = self
                    .config
                    .extensions
                    .get(ExtensionTag::COMPRESSION)
                    .map(|o| compress::parse_list(o))
                    .unwrap_or_default();
                if agreed.is_empty() || agreed.iter().any(|a| !offered.contains(a)) {
                    return Err(ProtocolError::MalformedBody {
                        what: "WELCOME body",
                        problem: "the compression answer is empty or names an algorithm that was not offered",
                    });
                }
                agreed
            }
            None => Vec::new(),
        };
        let session = Session {
            version: w.version,
            codec: w.codec,
            accepted: w.accepted,
            offered: self.config.codecs.clone(),
            peer_limits: w.limits,
            offered_extensions: self.config.extensions.clone(),
            extensions: w.extensions,
        };
        self.core
            .start_compression(agreed, &self.config.compression);
        self.core.peer_limits = Some(w.limits);
        self.core.handshake_done(now);
        self.callbacks = session.callbacks();
        self.session = Some(session.clone());
        self.events.push_back(ClientEvent::Connected(session));
        Ok(())
    }

    /// A CALL from the server, with the callbacks extension in force (SPEC §6.10): the
    /// answerer's rules, with the codecs this side offered as its accepted set and the
    /// callbacks limit it announced. Ordered batches are not available for callbacks.
    fn on_callback(&mut self, c: Call, now: Instant) -> Result<(), ProtocolError> {
        // The server's GOAWAY stops the client's calls, not its callbacks: they are how the
        // calls in flight finish.
        check_call_order(&c, false, self.answering_last)?;
        if c.upload {
            // Callbacks do not stream (SPEC §6.10).
            return Err(ProtocolError::BadFlags {
                kind: Kind::CALL,
                flags: Flags::UPLOAD,
            });
        }
        if c.annotations.batch().is_some() {
            return Err(ProtocolError::MalformedBody {
                what: "wc.batch annotation",
                problem: "ordered batches are not available for callbacks",
            });
        }
        let id = c.request_id;
        self.answering_last = id;
        let reject = call_rejection(
            &c,
            self.goaway_sent
                .then_some("the client is closing the connection; no more callbacks"),
            &self.config.codecs,
            self.answering.len(),
            self.callbacks_max,
        );
        let deadline = c.annotations.deadline();
        let (error, body) = match reject {
            Some(r) => r,
            None if deadline.is_some_and(|d| d.is_zero()) => (
                ProtocolError::DeadlineExceeded { request_id: id },
                zero_deadline_body(),
            ),
            None => {
                if !c.oneway {
                    self.answering.insert(
                        id,
                        ServerCall {
                            streaming: false,
                            // Callbacks carry no stream window (SPEC §6.12 covers calls
                            // to the server).
                            credit: None,
                            idle_since: None,
                            upload: None,
                            deadline: deadline.map(|d| now + d),
                            batch: None,
                        },
                    );
                }
                self.events.push_back(ClientEvent::Call(c));
                return Ok(());
            }
        };
        if !c.oneway {
            self.core.send_error_control(id, body);
        }
        self.events.push_back(ClientEvent::CallRejected {
            request_id: id,
            error,
        });
        Ok(())
    }

    fn on_goaway(&mut self, g: GoAway) -> Result<(), ProtocolError> {
        if g.code != ErrorCode::NO_ERROR {
            return Err(ProtocolError::PeerClosed {
                code: g.code,
                message: g.message,
            });
        }
        if self.session.is_none() {
            return Err(ProtocolError::PeerClosed {
                code: ErrorCode::SHUTTING_DOWN,
                message: g.message,
            });
        }
        if self.peer_goaway.is_none() {
            self.peer_goaway = Some(g.last_request_id);
            self.events.push_back(ClientEvent::GoAway(g));
        }
        self.check_drained();
        Ok(())
    }

    fn check_drained(&mut self) {
        if !self.drained
            && (self.goaway_sent || self.peer_goaway.is_some())
            && self.in_flight.is_empty()
            && self.answering.is_empty()
        {
            self.drained = true;
            self.events.push_back(ClientEvent::Drained);
        }
    }

    /// Closes on a fatal error: tells the peer (unless the peer closed) and returns the
    /// error.
    fn fail(&mut self, e: ProtocolError) -> ProtocolError {
        let tell_peer = !matches!(
            e,
            ProtocolError::PeerClosed { .. } | ProtocolError::Refused { .. }
        );
        self.core.fail(e, RequestId(self.next_id - 1), tell_peer)
    }

    /// Starts a call; returns its request id. The frame is queued for
    /// [`poll_transmit`](Self::poll_transmit).
    ///
    /// Fails without sending when not connected, after GOAWAY, at the server's in-flight
    /// limit, or when the frame exceeds the server's limits.
    pub fn call(&mut self, req: CallRequest, now: Instant) -> Result<RequestId, ProtocolError> {
        let (id, codec) = self.begin_call(req.oneway, req.codec.unwrap_or(CodecId::NONE))?;
        let upload = if req.upload {
            Some(self.begin_upload(req.oneway, &req.annotations)?)
        } else {
            None
        };
        let deadline = req.annotations.deadline().map(|d| now + d);
        let window = req.annotations.window();
        let oneway = req.oneway;
        // Owned, so that large sections can be shared rather than copied.
        self.core.send(&Frame::Call(Call {
            request_id: id,
            provider: req.provider,
            codec,
            oneway,
            upload: req.upload,
            method: req.method,
            annotations: req.annotations,
            args: req.args,
            kwargs: req.kwargs,
            attachment: req.attachment,
        }))?;
        self.in_flight
            .commit(&mut self.next_id, id, oneway, deadline, window, upload);
        Ok(id)
    }

    /// The checks before a call with an argument stream (SPEC §6.13): client → server
    /// streams in force, not oneway, not in an ordered batch. Returns the initial credit
    /// (the server's window).
    fn begin_upload(&self, oneway: bool, annotations: &Annotations) -> Result<u32, ProtocolError> {
        if oneway {
            return Err(ProtocolError::InvalidArgument(
                "a oneway call cannot stream its arguments (nothing would end the stream)",
            ));
        }
        if annotations.batch().is_some() {
            return Err(ProtocolError::InvalidArgument(
                "a call in an ordered batch cannot stream its arguments",
            ));
        }
        self.session
            .as_ref()
            .and_then(Session::upload_window)
            .ok_or(ProtocolError::InvalidState {
                operation: "stream a call's arguments",
                state: "client → server streams are not in force (the server did not agree to them in the handshake)",
            })
    }

    /// Sends one item of call `item.request_id`'s argument stream (SPEC §6.13), while the
    /// server's credit lasts: with none left it fails with [`ProtocolError::NoCredit`]
    /// (nothing sent); wait for [`ClientEvent::Credit`]. Fails with
    /// [`ProtocolError::NotInFlight`] once the call ended (answered, cancelled: nobody
    /// reads the rest), and when the call has no open argument stream.
    pub fn send_item(&mut self, item: StreamItem) -> Result<(), ProtocolError> {
        self.core.ensure_open()?;
        let id = item.request_id;
        let credit = self.upload_state(id, "send an argument item")?;
        if credit == 0 {
            return Err(ProtocolError::NoCredit { request_id: id });
        }
        self.core.send(&Frame::StreamItem(item))?;
        if let Some(c) = self.in_flight.get_mut(&id) {
            c.upload = Some(credit - 1);
        }
        Ok(())
    }

    /// Ends call `request_id`'s argument stream (sends STREAM_END, SPEC §6.13). Returns
    /// `false` when the call is no longer in flight (nothing sent).
    pub fn end_upload(&mut self, request_id: RequestId) -> Result<bool, ProtocolError> {
        self.core.ensure_open()?;
        match self.upload_state(request_id, "end an argument stream") {
            Ok(_) => {}
            Err(ProtocolError::NotInFlight { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
        self.core.send_control(&Frame::StreamEnd(request_id));
        if let Some(c) = self.in_flight.get_mut(&request_id) {
            c.upload = None;
        }
        Ok(true)
    }

    /// The argument items call `request_id` may send now: `None` when the call is not in
    /// flight or its argument stream is not open.
    pub fn upload_credit(&self, request_id: RequestId) -> Option<u32> {
        self.in_flight
            .get(&request_id)
            .filter(|c| !c.cancelled)
            .and_then(|c| c.upload)
    }

    /// The credit of call `id`'s open argument stream, or why there is none.
    fn upload_state(&self, id: RequestId, operation: &'static str) -> Result<u32, ProtocolError> {
        match self.in_flight.get(&id) {
            None => Err(ProtocolError::NotInFlight { request_id: id }),
            Some(c) if c.cancelled => Err(ProtocolError::NotInFlight { request_id: id }),
            Some(c) => c.upload.ok_or(ProtocolError::InvalidState {
                operation,
                state: "the call has no open argument stream (started without one, or ended)",
            }),
        }
    }

    /// A CREDIT from the server: more room for a call's argument stream (SPEC §6.13).
    fn on_credit(&mut self, id: RequestId, items: u32) -> Result<(), ProtocolError> {
        if self
            .session
            .as_ref()
            .and_then(Session::upload_window)
            .is_none()
        {
            return Err(ProtocolError::UnexpectedFrame {
                kind: Kind::CREDIT,
                state: "client → server streams not in force (the streams extension was not negotiated)",
            });
        }
        if id.0 >= self.next_id {
            return Err(ProtocolError::UnknownRequest {
                kind: Kind::CREDIT,
                request_id: id,
            });
        }
        // A CREDIT that crossed the call's end, or the end of its argument stream, or for a
        // call without one, changes nothing.
        if let Some(c) = self.in_flight.get_mut(&id) {
            if let (Some(credit), false) = (c.upload, c.cancelled) {
                let Some(total) = credit.checked_add(items) else {
                    return Err(ProtocolError::FlowControl {
                        request_id: id,
                        problem: "CREDIT raised the credit outstanding past 2^32-1 items",
                    });
                };
                c.upload = Some(total);
                self.events.push_back(ClientEvent::Credit {
                    request_id: id,
                    credit: total,
                });
            }
        }
        Ok(())
    }

    /// [`call`](Self::call) from borrowed parts: the frame is encoded straight into the
    /// send buffer. `call.request_id` is ignored (the connection assigns the next one and
    /// returns it); a `codec` of [`CodecId::NONE`] uses the session's default codec.
    pub fn call_ref(
        &mut self,
        mut call: CallRef<'_>,
        now: Instant,
    ) -> Result<RequestId, ProtocolError> {
        let (id, codec) = self.begin_call(call.oneway, call.codec)?;
        call.request_id = id;
        call.codec = codec;
        let deadline = call.annotations.deadline().map(|d| now + d);
        let window = call.annotations.window();
        self.core.send_call(&call)?;
        self.commit_call(id, call.oneway, deadline, window);
        Ok(id)
    }

    /// [`call_ref`](Self::call_ref) with an attachment (bulk data, SPEC §6.11) that is
    /// queued as it is, shared rather than copied into the send buffer when it is 4 KiB or
    /// more ([`poll_transmit`](Self::poll_transmit) hands it out as a chunk of its own).
    /// `call.attachment` must be empty.
    pub fn call_ref_attached(
        &mut self,
        mut call: CallRef<'_>,
        attachment: Bytes,
        now: Instant,
    ) -> Result<RequestId, ProtocolError> {
        let (id, codec) = self.begin_call(call.oneway, call.codec)?;
        call.request_id = id;
        call.codec = codec;
        let deadline = call.annotations.deadline().map(|d| now + d);
        let window = call.annotations.window();
        self.core.send_call_attached(&call, attachment)?;
        self.commit_call(id, call.oneway, deadline, window);
        Ok(id)
    }

    /// The checks before a call: returns its request id and codec (`NONE` is the session's
    /// default).
    fn begin_call(
        &self,
        oneway: bool,
        codec: CodecId,
    ) -> Result<(RequestId, CodecId), ProtocolError> {
        self.core.ensure_open()?;
        let Some(session) = &self.session else {
            return Err(ProtocolError::InvalidState {
                operation: "start a call",
                state: "handshaking",
            });
        };
        begin_outgoing(
            &self.core,
            self.goaway_sent || self.peer_goaway.is_some(),
            self.in_flight.len(),
            session.peer_limits.max_in_flight,
            self.next_id,
            oneway,
            codec,
            session.codec,
        )
    }

    /// Records a call whose frame was queued.
    fn commit_call(
        &mut self,
        id: RequestId,
        oneway: bool,
        deadline: Option<Instant>,
        window: Option<u32>,
    ) {
        self.in_flight
            .commit(&mut self.next_id, id, oneway, deadline, window, None);
    }

    /// Cancels a call: sends CANCEL; no further event is reported for it. Returns `false`
    /// when the call is not in flight (already complete or cancelled).
    pub fn cancel(&mut self, request_id: RequestId) -> Result<bool, ProtocolError> {
        self.core.ensure_open()?;
        if !self.in_flight.cancel(request_id) {
            return Ok(false);
        }
        self.core.send_control(&Frame::Cancel(request_id));
        Ok(true)
    }

    /// Answers a callback from the server ([`ClientEvent::Call`], SPEC §6.10). A callback's
    /// answer is never streamed. Fails, sending nothing, when the callback is not in flight
    /// (cancelled or past its deadline: it was answered already) or the frame exceeds the
    /// server's limits.
    pub fn reply(&mut self, reply: Reply) -> Result<(), ProtocolError> {
        if reply.stream {
            return Err(ProtocolError::InvalidArgument(
                "a callback's answer is a plain REPLY (callbacks do not stream)",
            ));
        }
        let id = reply.request_id;
        self.core.ensure_open()?;
        self.answering.check_answer(id, false)?;
        self.core.send(&Frame::Reply(reply))?;
        self.answering.remove(&id);
        self.check_drained();
        Ok(())
    }

    /// Fails a callback from the server ([`ClientEvent::Call`], SPEC §6.10); the same
    /// checks as [`reply`](Self::reply).
    pub fn error(&mut self, error: ErrorFrame) -> Result<(), ProtocolError> {
        let id = error.request_id;
        self.core.ensure_open()?;
        self.answering.check_answer(id, false)?;
        self.core.send(&Frame::Error(error))?;
        self.answering.remove(&id);
        self.check_drained();
        Ok(())
    }

    /// Grants the server `items` more stream items for call `request_id` (sends CREDIT,
    /// SPEC §6.12): a consumer calls it as it takes items, so that the server never has
    /// more than the window in flight. Returns `false` when the call is not in flight (it
    /// ended or was cancelled: nothing sent).
    ///
    /// Fails without sending for a call started without a `wc.window` annotation (it has
    /// no flow control), for `items == 0`, and when the credit outstanding would pass
    /// `u32::MAX`.
    pub fn grant(&mut self, request_id: RequestId, items: u32) -> Result<bool, ProtocolError> {
        self.core.ensure_open()?;
        if items == 0 {
            return Err(ProtocolError::InvalidArgument(
                "a CREDIT grants at least 1 item",
            ));
        }
        let Some(c) = self.in_flight.get_mut(&request_id) else {
            return Ok(false);
        };
        if c.cancelled {
            return Ok(false);
        }
        let Some(credit) = c.credit else {
            return Err(ProtocolError::InvalidState {
                operation: "grant stream credit",
                state: "the call was started without a wc.window annotation",
            });
        };
        let Some(total) = credit.checked_add(items) else {
            return Err(ProtocolError::InvalidArgument(
                "stream credit outstanding cannot pass u32::MAX items",
            ));
        };
        c.credit = Some(total);
        self.core.send_control(&Frame::Credit(request_id, items));
        Ok(true)
    }

    /// The stream items the server may still send for call `request_id` before it needs
    /// more credit: `None` when the call is not in flight or has no window.
    pub fn credit(&self, request_id: RequestId) -> Option<u32> {
        self.in_flight.get(&request_id).and_then(|c| c.credit)
    }

    /// Sends a PING unless one is outstanding; a [`ClientEvent::Pong`] reports the answer.
    pub fn ping(&mut self, now: Instant) -> Result<(), ProtocolError> {
        self.core.ping(now)
    }

    /// Graceful shutdown: sends GOAWAY; no new calls, calls in flight complete, then
    /// [`ClientEvent::Drained`].
    pub fn goaway(&mut self) -> Result<(), ProtocolError> {
        self.core.ensure_open()?;
        if self.session.is_none() {
            return Err(ProtocolError::InvalidState {
                operation: "send GOAWAY",
                state: "handshaking",
            });
        }
        if !self.goaway_sent {
            self.goaway_sent = true;
            self.core.send_control(&Frame::GoAway(GoAway {
                last_request_id: RequestId(self.next_id - 1),
                code: ErrorCode::NO_ERROR,
                message: String::new(),
            }));
        }
        self.check_drained();
        Ok(())
    }

    /// Closes at once with an error code, telling the peer.
    pub fn close(&mut self, code: ErrorCode, message: &str) {
        self.core.close(code, message, RequestId(self.next_id - 1));
    }

    /// Reports the end of the byte stream: an error if it ended inside a frame or while
    /// calls were in flight without a GOAWAY.
    pub fn handle_eof(&mut self) -> Result<(), ProtocolError> {
        self.core.eof(self.drained, self.core.inbuf.len())
    }

    /// [`handle_eof`](Self::handle_eof) for drivers that read with
    /// [`handle_input_buf`](Self::handle_input_buf): `buf` is what is left in their buffer.
    pub fn handle_eof_buf(&mut self, buf: &[u8]) -> Result<(), ProtocolError> {
        self.core.eof(self.drained, buf.len())
    }
}

impl Side for ClientConnection {
    fn core(&mut self) -> &mut Core {
        &mut self.core
    }

    fn on_frame(&mut self, frame: Frame, now: Instant) -> Result<(), ProtocolError> {
        ClientConnection::on_frame(self, frame, now)
    }

    fn fail(&mut self, e: ProtocolError) -> ProtocolError {
        ClientConnection::fail(self, e)
    }
}

// ---------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------

/// Configuration of a [`ServerConnection`].
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Protocol versions spoken.
    pub versions: Vec<u8>,
    /// Codecs accepted (ids 1-254); calls in any other codec are refused per frame.
    pub accepted: Vec<CodecId>,
    /// This side's limits, enforced on received frames and announced in WELCOME.
    pub limits: Limits,
    /// Fail the connection when no HELLO arrives in this time.
    pub handshake_timeout: Option<Duration>,
    /// Fail the connection when a PING gets no PONG within this time.
    pub ping_timeout: Option<Duration>,
    /// Fail the connection (GOAWAY TIMEOUT) when a frame whose first bytes arrived does not
    /// complete within this time, so a peer trickling bytes cannot hold it open.
    pub frame_timeout: Option<Duration>,
    /// Close the connection (GOAWAY TIMEOUT) after this long with no call in flight and no
    /// frame received (PING and PONG do not count). The check runs when the timer fires,
    /// so a connection that just finished a call may stay up to twice this long.
    pub idle_timeout: Option<Duration>,
    /// Send a PING after this long without a frame from the client (the ping timeout then
    /// applies), so a client that died during a long call is noticed.
    pub keepalive: Option<Duration>,
    /// As [`ClientConfig::share_sections_from`].
    pub share_sections_from: usize,
    /// End a streamed result whose consumer leaves it idle this long (Pyro's
    /// `ITER_STREAM_LIFETIME`): a stream that has used up its credit (SPEC §6.12) and gets no
    /// CREDIT within this time is answered ERROR DEADLINE_EXCEEDED and reported as
    /// [`ServerEvent::Expired`] (drop its producer). `None` (the default): no limit.
    pub stream_lifetime: Option<Duration>,
    /// Whether the decoder reserves room in the input buffer for a frame once its header is
    /// checked (default). A driver that budgets buffer memory turns it off and reserves
    /// [`ServerConnection::pending_input_len`] bytes itself.
    pub reserve_input: bool,
    /// The handshake extensions this server supports, with its side's values (SPEC
    /// §6.1.1); the WELCOME answers the ones the client offered. The compression tag is
    /// written from [`compression`](Self::compression).
    pub extensions: Extensions,
    /// Per-frame compression (SPEC §6.9): the algorithms accepted, and when this side
    /// compresses its answers. Off by default.
    pub compression: Compression,
}

/// The server's WELCOME answers to the extensions a client offered (SPEC §6.1.1): only
/// tags both sides know are answered, in the client's order; a tag the server does not
/// support (or does not know) is left out, which tells the client it is off.
///
/// Each tag has its own rule; a tag without one is answered with the server's value.
///
/// - compression (tag 1, SPEC §6.9): the client's algorithm ids the server accepts, in the
///   client's order; left out when none is.
/// - callbacks (tag 2, SPEC §6.10): the offer is empty or a 4-byte limit ≥ 1 (anything else
///   is `malformed_body`); the answer is always empty.
pub(crate) fn negotiate(
    offered: &Extensions,
    supported: &Extensions,
) -> Result<Extensions, ProtocolError> {
    let mut out = Extensions::new();
    for (tag, offer) in offered.iter() {
        let Some(ours) = supported.get(tag) else {
            continue;
        };
        let answer = match tag {
            ExtensionTag::COMPRESSION => match compress::negotiate(offer, ours) {
                Some(agreed) => agreed,
                None => continue,
            },
            ExtensionTag::CALLBACKS => {
                if callbacks_limit(offer, 1).is_none() {
                    return Err(ProtocolError::MalformedBody {
                        what: "callbacks extension",
                        problem: "the value must be empty or a 4-byte limit of at least 1",
                    });
                }
                Bytes::new()
            }
            _ => ours.clone(),
        };
        // `set` only fails for tag 0 or an oversized value, which neither side can hold.
        let _ = out.set(tag, answer);
    }
    Ok(out)
}

impl ServerConfig {
    /// Supports client → server streams (the streams extension, SPEC §6.13) with `window`
    /// argument items per call before this side grants more (at least 1).
    pub fn support_uploads(&mut self, window: u32) -> Result<(), ProtocolError> {
        if window == 0 {
            return Err(ProtocolError::InvalidArgument(
                "an argument stream's window is at least 1 item",
            ));
        }
        self.extensions.set(
            ExtensionTag::STREAMS,
            Bytes::copy_from_slice(&window.to_be_bytes()),
        )
    }

    /// Supports the callbacks extension (SPEC §6.10): a client that offers it may be called
    /// back on its connection.
    pub fn support_callbacks(&mut self) {
        // An empty value is always valid.
        let _ = self.extensions.set(ExtensionTag::CALLBACKS, Bytes::new());
    }

    /// Accepts `accepted` with version 1, default limits, a 10 s handshake timeout (from
    /// the moment the connection starts, not restarted by bytes), a 30 s ping timeout, a
    /// 30 s frame timeout and a 60 s idle timeout.
    pub fn new(accepted: Vec<CodecId>) -> ServerConfig {
        ServerConfig {
            versions: vec![VERSION],
            accepted,
            limits: Limits::default(),
            handshake_timeout: Some(Duration::from_secs(10)),
            ping_timeout: Some(Duration::from_secs(30)),
            frame_timeout: Some(Duration::from_secs(30)),
            idle_timeout: Some(Duration::from_secs(60)),
            keepalive: None,
            share_sections_from: SHARE_SECTIONS_FROM,
            stream_lifetime: None,
            reserve_input: true,
            extensions: Extensions::new(),
            compression: Compression::off(),
        }
    }
}

/// What a [`ServerConnection`] reports.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// The handshake succeeded.
    Connected(Session),
    /// A call to dispatch; answer with [`ServerConnection::reply`] or
    /// [`ServerConnection::error`] unless `oneway`.
    Call(Call),
    /// The client cancelled a call; CANCELLED was sent; drop the work.
    Cancelled(RequestId),
    /// A call's deadline passed; DEADLINE_EXCEEDED was sent; drop the work.
    Expired(RequestId),
    /// The client granted more stream credit for a call (CREDIT, SPEC §6.12): `credit`
    /// items may now be sent with [`ServerConnection::stream_item`].
    Credit {
        /// The call.
        request_id: RequestId,
        /// The items that may be sent now (credit left after the grant).
        credit: u32,
    },
    /// One item of a call's argument stream (SPEC §6.13). The handler takes it; grant the
    /// client more room with [`ServerConnection::grant`] as items are consumed.
    StreamItem(StreamItem),
    /// A call's argument stream is complete: the client sends no more items for it.
    StreamEnd(RequestId),
    /// A call was refused without being dispatched (codec refused, too many in flight,
    /// shutting down); the ERROR was sent unless the call was oneway.
    Rejected {
        /// The call.
        request_id: RequestId,
        /// Why.
        error: ProtocolError,
    },
    /// Answer to [`ServerConnection::ping`].
    Pong {
        /// Round-trip time.
        rtt: Duration,
    },
    /// The client sends no more calls; finish those in flight.
    GoAway(GoAway),
    /// After GOAWAY (either side), nothing is left in flight in either direction: close
    /// the transport.
    Drained,
    /// A callback's result (SPEC §6.10; final: callbacks do not stream).
    Reply(Reply),
    /// A callback failed on the client (final).
    Error(ErrorFrame),
    /// A callback failed on this side (its deadline passed, or the drain grace ended); a
    /// CANCEL was sent (final).
    Failed {
        /// The callback.
        request_id: RequestId,
        /// Why.
        error: ProtocolError,
    },
}

/// A plain CALL that [`ServerConnection::accept_call`] accepted where it lies, at the front
/// of the driver's input buffer: the call's fields, and where its sections are within the
/// frame's bytes (the first [`frame_len`](Self::frame_len) bytes of that buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcceptedCall {
    /// Matches the reply; strictly increasing per connection, never 0.
    pub request_id: RequestId,
    /// The provider addressed.
    pub provider: ProviderId,
    /// Codec of the arguments: one the server accepts.
    pub codec: CodecId,
    /// No reply wanted (flag ONEWAY).
    pub oneway: bool,
    /// The time left for the call when it was sent (`wc.deadline`), when it carries one
    /// (never zero: such a call is refused, not accepted).
    pub deadline: Option<Duration>,
    route_len: u16,
    annotations_len: u32,
    payload_len: u32,
    kwargs_len: u32,
}

impl AcceptedCall {
    /// Bytes the frame takes at the front of the buffer, header included: what the driver
    /// consumes before anything else reaches the machine.
    pub fn frame_len(&self) -> usize {
        self.kwargs().end
    }

    /// Where the method name (the route section, checked UTF-8) is in the frame.
    pub fn route(&self) -> std::ops::Range<usize> {
        HEADER_LEN..HEADER_LEN + usize::from(self.route_len)
    }

    /// Where the annotation section (checked) is in the frame.
    pub fn annotations(&self) -> std::ops::Range<usize> {
        let at = self.route().end;
        at..at + self.annotations_len as usize
    }

    /// Where the positional arguments are in the frame.
    pub fn args(&self) -> std::ops::Range<usize> {
        let at = self.annotations().end;
        at..at + self.payload_len as usize
    }

    /// Where the keyword arguments are in the frame (empty when the call has none).
    pub fn kwargs(&self) -> std::ops::Range<usize> {
        let at = self.args().end;
        at..at + self.kwargs_len as usize
    }
}

/// The body failing a call whose answer could not be sent because of `e`.
fn unsendable(e: &ProtocolError) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::LIMIT_EXCEEDED,
        format!("the server cannot send the result: {e}"),
    )
}

/// What a driver's handler did with a call [`ServerConnection::answer_calls`] offered it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answered {
    /// Not taken, and nothing done: the frame stays for the usual path.
    Declined,
    /// Answered now: the result, encoded with the call's codec, is in the output buffer.
    Reply {
        /// When the handler returned, for a call with a deadline (the machine reads no
        /// clock); `None` for a call without one.
        finished: Option<Instant>,
    },
    /// Taken, to be answered the usual way: the call is in flight.
    Later,
}

/// What one [`ServerConnection::answer_calls`] pass did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallsAnswered {
    /// Calls taken (answered, or in flight for [`Answered::Later`]).
    pub frames: usize,
    /// Bytes of those calls' frames at the front of the input: the driver consumes them.
    pub consumed: usize,
}

#[derive(Clone, Copy, Debug)]
struct ServerCall {
    streaming: bool,
    /// Stream items this side may still send (SPEC §6.12); `None`: the call set no
    /// `wc.window`, so no flow control.
    credit: Option<u32>,
    /// When the stream used up its credit (the consumer is idle until its next CREDIT).
    idle_since: Option<Instant>,
    /// While the call's argument stream is open (SPEC §6.13): the items the client may
    /// still send (the window plus this side's CREDIT, minus the items received). `None`:
    /// no argument stream, or it ended.
    upload: Option<u32>,
    deadline: Option<Instant>,
    /// The ordered batch the call belongs to (the request id of its first call).
    batch: Option<RequestId>,
}

/// An ordered batch (SPEC §6.8) whose last call has not arrived or whose calls are not all
/// answered: its calls are dispatched one at a time, in order, and once one fails the
/// later ones are answered SKIPPED.
#[derive(Debug, Default)]
struct Batch {
    /// The call dispatched and not yet answered.
    running: Option<RequestId>,
    /// Calls received and waiting for their turn, in order.
    held: VecDeque<Call>,
    /// The first call of the batch that failed: later calls are skipped.
    failed: Option<RequestId>,
    /// The call flagged last has arrived: no more calls join.
    complete: bool,
}

/// The server side of a connection. Same driving pattern as [`ClientConnection`].
#[derive(Debug)]
pub struct ServerConnection {
    core: Core,
    config: ServerConfig,
    session: Option<Session>,
    last_request_id: RequestId,
    /// The highest CALL id received, refused ones included: ids must keep increasing after
    /// this side's GOAWAY too, where `last_request_id` (the last accepted) stops.
    last_seen: RequestId,
    in_flight: Calls<ServerCall>,
    events: VecDeque<ServerEvent>,
    goaway_sent: Option<RequestId>,
    peer_goaway: bool,
    drained: bool,
    /// After [`ServerConnection::shutdown`]: when the calls still in flight are given up.
    drain_deadline: Option<Instant>,
    /// The window of client → server streams when they are in force (SPEC §6.13).
    upload_window: Option<u32>,
    /// Open ordered batches by the request id of their first call (at most
    /// `max_in_flight` of them).
    batches: HashMap<RequestId, Batch, BuildHasherDefault<rustc_hash::FxHasher>>,
    /// The callbacks this side started toward the client (SPEC §6.10), by their request
    /// ids, which are numbered apart from the client's.
    calling: Calls<ClientCall>,
    /// The request id of the next callback.
    calling_next: u64,
}

impl ServerConnection {
    /// Starts the server side of an accepted connection.
    pub fn new(mut config: ServerConfig, now: Instant) -> Result<ServerConnection, ProtocolError> {
        config.limits.validate()?;
        config.compression.validate()?;
        config.compression.write_extension(&mut config.extensions)?;
        if config.accepted.is_empty() || config.accepted.iter().any(|c| !c.is_codec()) {
            return Err(ProtocolError::InvalidArgument(
                "the accepted set needs at least one codec, ids 1-254",
            ));
        }
        if config.versions.is_empty() {
            return Err(ProtocolError::InvalidArgument(
                "a server speaks at least one version",
            ));
        }
        let reserve = config.reserve_input;
        let mut conn = ServerConnection {
            core: Core::new(
                config.limits,
                config.ping_timeout,
                config.handshake_timeout.map(|t| now + t),
                config.share_sections_from,
                Timers {
                    frame: config.frame_timeout,
                    idle: config.idle_timeout,
                    keepalive: config.keepalive,
                },
            ),
            config,
            session: None,
            last_request_id: RequestId::NONE,
            last_seen: RequestId::NONE,
            in_flight: Calls::default(),
            events: VecDeque::new(),
            goaway_sent: None,
            peer_goaway: false,
            drained: false,
            drain_deadline: None,
            upload_window: None,
            batches: HashMap::default(),
            calling: Calls::default(),
            calling_next: 1,
        };
        conn.core.decoder.set_reserve(reserve);
        Ok(conn)
    }

    /// The handshake's outcome, once connected.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// Number of calls in flight (not counting oneway calls).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Number of callbacks to the client awaiting their answer (SPEC §6.10; cancelled ones
    /// count until the client's final frame).
    pub fn callbacks_in_flight(&self) -> usize {
        self.calling.len()
    }

    /// The declared length of the frame being received, once its header is in and within
    /// the limits: what the input buffer must hold before the frame completes.
    pub fn pending_input_len(&self) -> Option<usize> {
        self.core.decoder.pending_frame_len()
    }

    /// Whether the connection failed or was closed.
    pub fn is_closed(&self) -> bool {
        self.core.closed.is_some()
    }

    fn state(&self) -> &'static str {
        if self.core.closed.is_some() {
            "closed"
        } else if self.session.is_none() {
            "waiting for HELLO"
        } else if self.goaway_sent.is_some() || self.peer_goaway {
            "draining"
        } else {
            "connected"
        }
    }

    io_methods!();

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Moves every pending event to the back of `into`, in order: when `into` is empty the
    /// queues are swapped, so no event is moved one by one. For drivers that handle events
    /// in batches, after releasing what guards the machine.
    pub fn take_events(&mut self, into: &mut VecDeque<ServerEvent>) {
        if into.is_empty() {
            std::mem::swap(into, &mut self.events);
        } else {
            into.append(&mut self.events);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.next_timeout(earliest(
            earliest(
                earliest(self.in_flight.earliest(|c| c.deadline), self.idle_expiry()),
                self.calling.earliest(ClientCall::live_deadline),
            ),
            self.drain_deadline.filter(|_| !self.drained),
        ))
    }

    /// Fires expired timers: call deadlines (DEADLINE_EXCEEDED sent, [`ServerEvent::Expired`]),
    /// the handshake timeout and the ping timeout (fatal errors).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ProtocolError> {
        self.core.ensure_open()?;
        let busy = self.in_flight.len() + self.calling.len();
        if let Some(e) = self.core.expired(now, busy) {
            return Err(self.fail(e));
        }
        self.core.keepalive(now);
        for id in self.calling.expire(&mut self.core, now) {
            self.events.push_back(ServerEvent::Failed {
                request_id: id,
                error: ProtocolError::DeadlineExceeded { request_id: id },
            });
        }
        if self.drain_deadline.is_some_and(|d| now >= d) && !self.in_flight.is_empty() {
            // The drain grace is over: the calls still running are given up.
            let mut ids: Vec<RequestId> = self.in_flight.ids();
            ids.sort();
            for id in ids {
                // A call of a batch may have been answered SKIPPED by an earlier one here.
                let Some(call) = self.in_flight.remove(&id) else {
                    continue;
                };
                self.send_error_control(
                    id,
                    ErrorBody::new(
                        ErrorCode::SHUTTING_DOWN,
                        "the server shut down before the call completed; retry elsewhere",
                    ),
                );
                self.events.push_back(ServerEvent::Expired(id));
                self.batch_done(id, Some(call), false);
            }
            self.check_drained();
            return Ok(());
        }
        self.expire_calls(now);
        Ok(())
    }

    /// When the first idle stream's lifetime ends (scanned only with a stream lifetime).
    fn idle_expiry(&self) -> Option<Instant> {
        let l = self.config.stream_lifetime?;
        self.in_flight
            .iter()
            .filter_map(|(_, c)| c.idle_since.map(|t| t + l))
            .min()
    }

    /// Gives up the calls whose deadline passed by `now`: each is answered
    /// DEADLINE_EXCEEDED and reported as [`ServerEvent::Expired`], and a later
    /// [`reply`](Self::reply) or [`error`](Self::error) for it is refused with
    /// [`ProtocolError::NotInFlight`] (not sent). Returns how many expired.
    ///
    /// [`handle_timeout`](Self::handle_timeout) does this with the connection's other
    /// timers; a driver calls it alone before answering a call whose handler ran so long
    /// that its timer could not fire meanwhile (a handler that held the driver's task), so
    /// a late result is never sent in place of the DEADLINE_EXCEEDED the caller is owed.
    pub fn expire_calls(&mut self, now: Instant) -> usize {
        if self.core.closed.is_some() {
            return 0;
        }
        let lifetime = self.config.stream_lifetime;
        let mut expired = self.in_flight.expired(now, |c| c.deadline);
        if let Some(l) = lifetime {
            // Only servers with a stream lifetime scan for idle streams.
            expired.extend(
                self.in_flight
                    .iter()
                    .filter(|(_, c)| c.idle_since.is_some_and(|t| now >= t + l))
                    .map(|(id, _)| *id),
            );
            expired.sort();
            expired.dedup();
        }
        if expired.is_empty() {
            return 0;
        }
        let n = expired.len();
        for id in expired {
            // A call of a batch may have been answered SKIPPED by an earlier one here.
            let Some(call) = self.in_flight.remove(&id) else {
                continue;
            };
            let message = if call.deadline.is_some_and(|d| now >= d) {
                "deadline passed".to_string()
            } else {
                format!(
                    "the stream was idle (no CREDIT) for longer than its lifetime of {:?}; read it sooner or raise the server's stream lifetime",
                    lifetime.unwrap_or_default()
                )
            };
            let call = Some(call);
            self.send_error_control(id, ErrorBody::new(ErrorCode::DEADLINE_EXCEEDED, message));
            self.events.push_back(ServerEvent::Expired(id));
            self.batch_done(id, call, false);
        }
        self.check_drained();
        n
    }

    /// [`handle_input_buf`](Self::handle_input_buf) for at most `max_frames` frames;
    /// returns how many it handled (the rest stays in `buf`). A driver that answers calls
    /// as it goes handles a long batch a few frames at a time, so the first answers leave
    /// before the last calls are decoded.
    pub fn handle_input_frames(
        &mut self,
        buf: &mut BytesMut,
        now: Instant,
        max_frames: usize,
    ) -> Result<usize, ProtocolError> {
        handle_input_buf(self, buf, now, max_frames, |_, _| false)
    }

    /// The borrowed path for the common CALL: when the front of `src` (the driver's input
    /// buffer) is a complete CALL that [`handle_input_buf`](Self::handle_input_buf) would
    /// hand out as [`ServerEvent::Call`] and nothing else (no compression, no argument
    /// stream, no attachment, no ordered batch, no bulk values, no stream resume; every check passed: header, limits, method name and
    /// annotations, request id order, no GOAWAY either way, an accepted codec, the in-flight
    /// limit, a deadline not already zero), accepts it as `handle_input_buf` would (the call
    /// in flight with its deadline from `now`, the connection's timers told of the frame)
    /// and describes it, without building the owned [`Call`] or any event. The driver then
    /// dispatches it from its buffer and must consume its
    /// [`frame_len`](AcceptedCall::frame_len) bytes before feeding the machine again.
    ///
    /// `None` changes nothing: feed the frame the usual way (`handle_input_frames`), which
    /// applies the same rules and reports what they decide (a refusal, a fatal error, a
    /// frame of another kind, or more bytes needed).
    pub fn accept_call(&mut self, src: &[u8], now: Instant) -> Option<AcceptedCall> {
        let (call, window) = self.check_call(src)?;
        self.record_call(&call, window, now);
        Some(call)
    }

    /// [`accept_call`](Self::accept_call)'s checks, changing nothing: the call and its
    /// `wc.window`.
    #[inline]
    fn check_call(&self, src: &[u8]) -> Option<(AcceptedCall, Option<u32>)> {
        if self.core.closed.is_some()
            || self.session.is_none()
            || self.peer_goaway
            || self.goaway_sent.is_some()
        {
            return None;
        }
        let h = self.core.decoder.peek_call(src)?;
        let id = h.request_id;
        if id <= self.last_seen || !h.codec.is_codec() || !self.config.accepted.contains(&h.codec) {
            return None;
        }
        let oneway = h.flags.contains(Flags::ONEWAY);
        if !oneway && self.in_flight.len() >= self.config.limits.max_in_flight as usize {
            return None;
        }
        let call = AcceptedCall {
            request_id: id,
            provider: h.provider,
            codec: h.codec,
            oneway,
            deadline: None,
            route_len: h.route_len,
            annotations_len: h.annotations_len,
            payload_len: h.payload_len,
            kwargs_len: h.kwargs_len,
        };
        // In bounds: `peek_call` checked that the whole frame is in `src`.
        let route = src.get(call.route())?;
        // Most names are ASCII: one pass over a few bytes, without `from_utf8`'s setup.
        if !route.is_ascii() {
            std::str::from_utf8(route).ok()?;
        }
        let ann = src.get(call.annotations())?;
        let (mut deadline, mut window) = (None, None);
        if !ann.is_empty() {
            crate::annotations::check_section(ann).ok()?;
            if find(ann, crate::annotations::BATCH_KEY).is_some()
                || find(ann, crate::annotations::BULK_KEY).is_some()
                || find(ann, crate::annotations::RESUME_KEY).is_some()
            {
                return None;
            }
            deadline = find(ann, crate::annotations::DEADLINE_KEY)
                .and_then(crate::annotations::deadline_value);
            if deadline.is_some_and(|d| d.is_zero()) {
                return None;
            }
            window = find(ann, crate::annotations::WINDOW_KEY)
                .and_then(crate::annotations::window_value);
        }
        Some((AcceptedCall { deadline, ..call }, window))
    }

    /// What `on_call` does for a call it dispatches, for one that
    /// [`check_call`](Self::check_call) passed: in flight (unless oneway) with its deadline
    /// from `now`, the connection's timers told of the frame.
    #[inline]
    fn record_call(&mut self, call: &AcceptedCall, window: Option<u32>, now: Instant) {
        self.frame_taken(call.request_id, now);
        if !call.oneway {
            self.in_flight.insert(
                call.request_id,
                ServerCall {
                    streaming: false,
                    credit: window,
                    idle_since: None,
                    upload: None,
                    deadline: call.deadline.map(|d| now + d),
                    batch: None,
                },
            );
        }
    }

    /// A call's frame was taken: its id is the last seen, the timers are told.
    #[inline]
    fn frame_taken(&mut self, id: RequestId, now: Instant) {
        self.last_request_id = id;
        self.last_seen = id;
        self.core.data_seen = true;
        self.core.after_input(false, true, now);
    }

    /// Answers the plain calls at the front of `src` in one pass, each before the next is
    /// read, without putting them in flight: the path of a driver whose handlers answer at
    /// once (a synchronous method run on the reader).
    ///
    /// Each complete two-way CALL that [`accept_call`](Self::accept_call) would accept and
    /// that has no keyword arguments is offered to `handler` with its frame's bytes, and
    /// `out` emptied. What the handler returns decides:
    ///
    /// * [`Answered::Reply`]: the result, encoded with the call's codec, is in `out`; it
    ///   is sent as the call's REPLY, checked against the peer's limits as
    ///   [`reply_slice`](Self::reply_slice) checks it (over them, the call is answered
    ///   ERROR LIMIT_EXCEEDED instead). A call whose deadline (`wc.deadline`, counted from
    ///   `now`) had passed by `finished` is answered ERROR DEADLINE_EXCEEDED instead, as
    ///   its timer would have answered it: a late result is never sent.
    /// * [`Answered::Later`]: the call is taken, to be answered the usual way
    ///   ([`reply`](Self::reply), [`error`](Self::error), ...): it is in flight as
    ///   `accept_call` leaves it. The pass stops after it.
    /// * [`Answered::Declined`]: the handler did nothing; the frame stays for the usual
    ///   path, and the pass stops.
    ///
    /// The pass also stops after `max_frames` calls, at the end of the complete frames,
    /// and at the first frame that is not such a call (it goes the usual way:
    /// [`handle_input_frames`](Self::handle_input_frames), which applies the same rules).
    /// The driver consumes [`consumed`](CallsAnswered::consumed) bytes of `src` before
    /// feeding the machine again.
    pub fn answer_calls<F>(
        &mut self,
        src: &[u8],
        now: Instant,
        max_frames: usize,
        out: &mut Vec<u8>,
        mut handler: F,
    ) -> CallsAnswered
    where
        F: FnMut(&AcceptedCall, &[u8], &mut Vec<u8>) -> Answered,
    {
        let mut done = CallsAnswered {
            frames: 0,
            consumed: 0,
        };
        while done.frames < max_frames {
            let Some(rest) = src.get(done.consumed..) else {
                break;
            };
            let Some((call, window)) = self.check_call(rest) else {
                break;
            };
            let len = call.frame_len();
            let Some(frame) = rest.get(..len) else {
                break;
            };
            if call.oneway || call.kwargs_len != 0 {
                break;
            }
            out.clear();
            match handler(&call, frame, out) {
                Answered::Declined => break,
                Answered::Later => {
                    self.record_call(&call, window, now);
                    done.frames += 1;
                    done.consumed += len;
                    break;
                }
                Answered::Reply { finished } => {
                    let id = call.request_id;
                    self.frame_taken(id, now);
                    done.frames += 1;
                    done.consumed += len;
                    let late = match (call.deadline, finished) {
                        (Some(d), Some(at)) => at >= now + d,
                        _ => false,
                    };
                    if late {
                        self.send_error_control(
                            id,
                            ErrorBody::new(ErrorCode::DEADLINE_EXCEEDED, "deadline passed"),
                        );
                    } else if let Err(e) = self.core.send_reply_slice(id, call.codec, out) {
                        // Over the peer's limits (nothing else fails on an open
                        // connection): the call fails rather than be left unanswered.
                        self.send_error_control(id, unsendable(&e));
                    }
                    // A call completed: the idle timer restarts from here.
                    self.core.call_completed = true;
                }
            }
        }
        done
    }

    fn on_frame(&mut self, frame: Frame, now: Instant) -> Result<(), ProtocolError> {
        let kind = frame.kind();
        match frame {
            Frame::Hello(h) if self.session.is_none() => return self.on_hello(h, now),
            Frame::Ping(d) => {
                self.core.send_control(&Frame::Pong(d));
                return Ok(());
            }
            Frame::Pong(d) => {
                if let Some(rtt) = self.core.pong(d, now) {
                    self.events.push_back(ServerEvent::Pong { rtt });
                }
                return Ok(());
            }
            _ => {}
        }
        if self.session.is_none() {
            return Err(ProtocolError::UnexpectedFrame {
                kind,
                state: "waiting for HELLO",
            });
        }
        match frame {
            Frame::Call(c) => self.on_call(c, now),
            Frame::Reply(ref r) if self.callbacks() && !r.stream => self.on_callback_answer(frame),
            Frame::Error(_) if self.callbacks() => self.on_callback_answer(frame),
            Frame::Cancel(id) => {
                let last = self.last_seen;
                if let Some(call) = self.in_flight.cancel_received(&mut self.core, id, last)? {
                    self.events.push_back(ServerEvent::Cancelled(id));
                    self.batch_done(id, Some(call), false);
                    self.check_drained();
                }
                // A CANCEL for a call already answered crossed the answer: ignore it.
                Ok(())
            }
            Frame::StreamItem(item) => self.on_upload(item.request_id, Some(item)),
            Frame::StreamEnd(id) => self.on_upload(id, None),
            Frame::Credit(id, items) => {
                if id > self.last_seen {
                    return Err(ProtocolError::UnknownRequest {
                        kind,
                        request_id: id,
                    });
                }
                // A CREDIT for a call already ended crossed its end; one for a call
                // without a window changes nothing: both are ignored.
                if let Some(c) = self.in_flight.get_mut(&id) {
                    if let Some(credit) = c.credit {
                        let Some(total) = credit.checked_add(items) else {
                            return Err(ProtocolError::FlowControl {
                                request_id: id,
                                problem: "CREDIT raised the credit outstanding past 2^32-1 items",
                            });
                        };
                        c.credit = Some(total);
                        c.idle_since = None;
                        self.events.push_back(ServerEvent::Credit {
                            request_id: id,
                            credit: total,
                        });
                    }
                }
                Ok(())
            }
            Frame::GoAway(g) => {
                if g.code != ErrorCode::NO_ERROR {
                    return Err(ProtocolError::PeerClosed {
                        code: g.code,
                        message: g.message,
                    });
                }
                if !self.peer_goaway {
                    self.peer_goaway = true;
                    self.events.push_back(ServerEvent::GoAway(g));
                }
                self.check_drained();
                Ok(())
            }
            _ => Err(ProtocolError::UnexpectedFrame {
                kind,
                state: self.state(),
            }),
        }
    }

    /// A STREAM_ITEM (`Some`) or STREAM_END (`None`) from the client: a call's argument
    /// stream (SPEC §6.13).
    fn on_upload(&mut self, id: RequestId, item: Option<StreamItem>) -> Result<(), ProtocolError> {
        let kind = if item.is_some() {
            Kind::STREAM_ITEM
        } else {
            Kind::STREAM_END
        };
        if self.upload_window.is_none() {
            return Err(ProtocolError::UnexpectedFrame {
                kind,
                state: "client → server streams not in force (the streams extension was not negotiated)",
            });
        }
        if id > self.last_seen {
            return Err(ProtocolError::UnknownRequest {
                kind,
                request_id: id,
            });
        }
        // A call no longer in flight (answered, cancelled, expired, refused) crossed these
        // frames: nobody reads them.
        let Some(c) = self.in_flight.get_mut(&id) else {
            return Ok(());
        };
        let Some(credit) = c.upload else {
            return Err(ProtocolError::UnexpectedFrame {
                kind,
                state: "the call has no open argument stream (sent without flag UPLOAD, or its STREAM_END came)",
            });
        };
        match item {
            Some(item) => {
                let Some(left) = credit.checked_sub(1) else {
                    return Err(ProtocolError::FlowControl {
                        request_id: id,
                        problem: "an argument STREAM_ITEM arrived with no credit left",
                    });
                };
                c.upload = Some(left);
                self.events.push_back(ServerEvent::StreamItem(item));
            }
            None => {
                c.upload = None;
                self.events.push_back(ServerEvent::StreamEnd(id));
            }
        }
        Ok(())
    }

    /// Grants the client `items` more argument items for call `request_id` (sends CREDIT,
    /// SPEC §6.13); a handler's reader calls it as it takes items, so that the client never
    /// has more than the window in flight. Returns `false` (nothing sent) when the call is
    /// not in flight or its argument stream ended.
    ///
    /// Fails without sending for `items == 0` and when the credit outstanding would pass
    /// `u32::MAX`.
    pub fn grant(&mut self, request_id: RequestId, items: u32) -> Result<bool, ProtocolError> {
        self.core.ensure_open()?;
        if items == 0 {
            return Err(ProtocolError::InvalidArgument(
                "a CREDIT grants at least 1 item",
            ));
        }
        let Some(c) = self.in_flight.get_mut(&request_id) else {
            return Ok(false);
        };
        let Some(credit) = c.upload else {
            return Ok(false);
        };
        let Some(total) = credit.checked_add(items) else {
            return Err(ProtocolError::InvalidArgument(
                "argument credit outstanding cannot pass u32::MAX items",
            ));
        };
        c.upload = Some(total);
        self.core.send_control(&Frame::Credit(request_id, items));
        Ok(true)
    }

    /// The argument items the client may still send for call `request_id` before it needs
    /// more credit: `None` when the call is not in flight or its argument stream is closed.
    pub fn upload_credit(&self, request_id: RequestId) -> Option<u32> {
        self.in_flight.get(&request_id).and_then(|c| c.upload)
    }

    fn on_hello(&mut self, h: Hello, now: Instant) -> Result<(), ProtocolError> {
        let refuse = |code, e: ProtocolError, this: &mut Self| {
            this.core.send_control(&Frame::Refuse(Refuse {
                code,
                versions: this.config.versions.clone(),
                accepted: this.config.accepted.clone(),
                message: short_message(e.to_string()),
            }));
            this.core.closed = Some(e.clone());
            Err(e)
        };
        let Some(&version) = h.versions.iter().find(|v| self.config.versions.contains(v)) else {
            let e = ProtocolError::NoCommonVersion {
                offered: h.versions,
                supported: self.config.versions.clone(),
            };
            return refuse(ErrorCode::UNSUPPORTED_VERSION, e, self);
        };
        let Some(&codec) = h.codecs.iter().find(|c| self.config.accepted.contains(c)) else {
            let e = ProtocolError::NoCommonCodec {
                offered: h.codecs,
                accepted: self.config.accepted.clone(),
            };
            return refuse(ErrorCode::NO_COMMON_CODEC, e, self);
        };
        let extensions = negotiate(&h.extensions, &self.config.extensions)?;
        self.core.send_control(&Frame::Welcome(Welcome {
            version,
            codec,
            accepted: self.config.accepted.clone(),
            limits: self.config.limits,
            extensions: extensions.clone(),
        }));
        let session = Session {
            version,
            codec,
            accepted: self.config.accepted.clone(),
            offered: h.codecs,
            peer_limits: h.limits,
            offered_extensions: h.extensions,
            extensions,
        };
        self.core
            .start_compression(session.compression(), &self.config.compression);
        self.core.peer_limits = Some(h.limits);
        self.core.handshake_done(now);
        self.upload_window = session.upload_window();
        self.session = Some(session.clone());
        self.events.push_back(ServerEvent::Connected(session));
        Ok(())
    }

    /// Whether the callbacks extension is in force (SPEC §6.10).
    fn callbacks(&self) -> bool {
        self.session.as_ref().is_some_and(Session::callbacks)
    }

    /// A REPLY or ERROR from the client: the answer to one of this side's callbacks.
    fn on_callback_answer(&mut self, frame: Frame) -> Result<(), ProtocolError> {
        match self.calling.answer(frame)? {
            Some(Frame::Reply(r)) => self.events.push_back(ServerEvent::Reply(r)),
            Some(Frame::Error(e)) => self.events.push_back(ServerEvent::Error(e)),
            _ => {}
        }
        self.check_drained();
        Ok(())
    }

    fn on_call(&mut self, c: Call, now: Instant) -> Result<(), ProtocolError> {
        check_call_order(&c, self.peer_goaway, self.last_seen)?;
        self.last_seen = c.request_id;
        if c.upload {
            if self.upload_window.is_none() {
                // Not agreed in the handshake (SPEC §6.13).
                return Err(ProtocolError::BadFlags {
                    kind: Kind::CALL,
                    flags: Flags::UPLOAD,
                });
            }
            if c.annotations.batch().is_some() {
                return Err(ProtocolError::MalformedBody {
                    what: "wc.batch annotation",
                    problem: "a call that streams its arguments cannot be in an ordered batch",
                });
            }
        }
        let id = c.request_id;
        // `Some(None)`: the call names a batch that closed (failed or evicted): skipped.
        let batch = match c.annotations.batch() {
            Some((first, last)) => Some(self.join_batch(id, first, last)?),
            None => None,
        };
        let reject = call_rejection(
            &c,
            self.goaway_sent
                .map(|_| "server is shutting down; retry on a new connection"),
            &self.config.accepted,
            self.in_flight.len(),
            self.config.limits.max_in_flight,
        );
        // Calls refused after our GOAWAY do not move the last accepted id.
        if self.goaway_sent.is_none() {
            self.last_request_id = id;
        }
        if let Some((error, body)) = reject {
            if !c.oneway {
                self.send_error_control(id, body);
            }
            self.events.push_back(ServerEvent::Rejected {
                request_id: id,
                error,
            });
            if let Some(Some(b)) = batch {
                self.batch_failed(b, id);
            }
            return Ok(());
        }
        if let Some(None) = batch {
            self.skip(id, c.oneway, None);
            return Ok(());
        }
        let batch = batch.flatten();
        let deadline = c.annotations.deadline();
        if deadline.is_some_and(|d| d.is_zero()) {
            // Already past: answered without dispatching (nothing to run it for).
            if !c.oneway {
                self.send_error_control(id, zero_deadline_body());
            }
            self.events.push_back(ServerEvent::Rejected {
                request_id: id,
                error: ProtocolError::DeadlineExceeded { request_id: id },
            });
            if let Some(b) = batch {
                self.batch_failed(b, id);
            }
            return Ok(());
        }
        if let Some(b) = batch {
            return self.batch_call(b, c, deadline.map(|d| now + d));
        }
        if !c.oneway {
            let deadline = deadline.map(|d| now + d);
            self.in_flight.insert(
                id,
                ServerCall {
                    streaming: false,
                    credit: c.annotations.window(),
                    idle_since: None,
                    upload: if c.upload { self.upload_window } else { None },
                    deadline,
                    batch: None,
                },
            );
        }
        self.events.push_back(ServerEvent::Call(c));
        Ok(())
    }

    /// Checks a call's `wc.batch` annotation: `first` is the call itself (a new batch), an
    /// open batch that has not seen its last call, or a lower id whose batch is closed
    /// (`None`: the call is skipped). Returns the batch's id.
    fn join_batch(
        &mut self,
        id: RequestId,
        first: RequestId,
        last: bool,
    ) -> Result<Option<RequestId>, ProtocolError> {
        let bad = |problem| ProtocolError::MalformedBody {
            what: "wc.batch annotation",
            problem,
        };
        if first == id {
            if self.batches.len() >= self.config.limits.max_in_flight as usize {
                // Make room: the oldest batch with nothing running or waiting is closed
                // (a client that never sent its last call); its later calls are skipped.
                let idle = self
                    .batches
                    .iter()
                    .filter(|(_, b)| b.running.is_none() && b.held.is_empty())
                    .map(|(k, _)| *k)
                    .min();
                match idle {
                    Some(k) => {
                        self.batches.remove(&k);
                    }
                    None => return Err(bad("more ordered batches running than max_in_flight")),
                }
            }
            self.batches.insert(
                id,
                Batch {
                    complete: last,
                    ..Batch::default()
                },
            );
            return Ok(Some(id));
        }
        if first > id {
            return Err(bad(
                "names a later request id (a batch is named by its first call)",
            ));
        }
        match self.batches.get_mut(&first) {
            Some(b) if !b.complete => {
                b.complete = last;
                Ok(Some(first))
            }
            Some(_) => Err(bad("names a batch whose last call already came")),
            None => Ok(None),
        }
    }

    /// A call of batch `b` that passed every check: skipped when an earlier call failed,
    /// dispatched when its turn has come, else held.
    fn batch_call(
        &mut self,
        b: RequestId,
        c: Call,
        deadline: Option<Instant>,
    ) -> Result<(), ProtocolError> {
        let id = c.request_id;
        let Some(batch) = self.batches.get_mut(&b) else {
            return Ok(());
        };
        if let Some(failed) = batch.failed {
            self.skip(id, c.oneway, Some(failed));
            self.close_batch_if_done(b);
            return Ok(());
        }
        if !c.oneway {
            self.in_flight.insert(
                id,
                ServerCall {
                    streaming: false,
                    credit: c.annotations.window(),
                    idle_since: None,
                    upload: None,
                    deadline,
                    batch: Some(b),
                },
            );
        }
        batch.held.push_back(c);
        self.batch_advance(b);
        Ok(())
    }

    /// Answers a call of a failed batch SKIPPED (nothing for a oneway call) without
    /// dispatching it; `failed` names the call that failed, `None` a batch already closed.
    fn skip(&mut self, id: RequestId, oneway: bool, failed: Option<RequestId>) {
        let msg = match failed {
            Some(f) => format!(
                "not run: call {} of its ordered batch failed first; nothing of this call ran",
                f.0
            ),
            None => "not run: its ordered batch is closed (an earlier call failed, or the \
                     batch was left unfinished); nothing of this call ran"
                .to_string(),
        };
        if !oneway {
            self.in_flight.remove(&id);
            self.send_error_control(id, ErrorBody::new(ErrorCode::SKIPPED, msg.clone()));
        }
        self.events.push_back(ServerEvent::Rejected {
            request_id: id,
            error: ProtocolError::InvalidState {
                operation: "run a call of a batch",
                state: "an earlier call of the batch failed",
            },
        });
    }

    /// Batch `b` failed at call `id`: held calls after it are skipped now.
    fn batch_failed(&mut self, b: RequestId, id: RequestId) {
        let Some(batch) = self.batches.get_mut(&b) else {
            return;
        };
        let failed = *batch.failed.get_or_insert(id);
        let later: Vec<Call> = {
            let keep = batch
                .held
                .iter()
                .take_while(|c| c.request_id < failed)
                .count();
            batch.held.drain(keep..).collect()
        };
        for c in later {
            self.skip(c.request_id, c.oneway, Some(failed));
        }
        self.batch_advance(b);
    }

    /// A call left the in-flight set (answered, cancelled, expired): when it belongs to an
    /// ordered batch, the batch moves on (or fails when `ok` is false).
    fn batch_done(&mut self, id: RequestId, call: Option<ServerCall>, ok: bool) {
        let Some(b) = call.and_then(|c| c.batch) else {
            return;
        };
        let Some(batch) = self.batches.get_mut(&b) else {
            return;
        };
        if batch.running == Some(id) {
            batch.running = None;
        } else {
            // Still held (cancelled or expired before its turn): it never runs.
            batch.held.retain(|c| c.request_id != id);
        }
        if ok {
            self.batch_advance(b);
        } else {
            self.batch_failed(b, id);
        }
    }

    /// Dispatches batch `b`'s next calls while none runs: oneway calls go at once (they
    /// have no answer to wait for), a call with an answer runs alone until answered.
    fn batch_advance(&mut self, b: RequestId) {
        while let Some(batch) = self.batches.get_mut(&b) {
            if batch.running.is_some() {
                break;
            }
            let Some(c) = batch.held.pop_front() else {
                break;
            };
            if !c.oneway {
                batch.running = Some(c.request_id);
            }
            self.events.push_back(ServerEvent::Call(c));
        }
        self.close_batch_if_done(b);
    }

    /// Forgets batch `b` once nothing of it runs or waits and its last call came or it
    /// failed (its later calls are then skipped as calls of a closed batch).
    fn close_batch_if_done(&mut self, b: RequestId) {
        if self.batches.get(&b).is_some_and(|x| {
            (x.complete || x.failed.is_some()) && x.running.is_none() && x.held.is_empty()
        }) {
            self.batches.remove(&b);
        }
    }

    fn send_error_control(&mut self, request_id: RequestId, body: ErrorBody) {
        self.core.send_error_control(request_id, body);
    }

    fn check_drained(&mut self) {
        // Called after every call that completes: the idle timer restarts from here.
        self.core.call_completed = true;
        if !self.drained
            && (self.goaway_sent.is_some() || self.peer_goaway)
            && self.in_flight.is_empty()
            && self.calling.is_empty()
        {
            self.drained = true;
            self.events.push_back(ServerEvent::Drained);
        }
    }

    fn fail(&mut self, e: ProtocolError) -> ProtocolError {
        let tell_peer = !matches!(e, ProtocolError::PeerClosed { .. });
        self.core.fail(e, self.last_request_id, tell_peer)
    }

    fn answer(&mut self, id: RequestId, streaming: bool) -> Result<(), ProtocolError> {
        self.core.ensure_open()?;
        self.in_flight.check_answer(id, streaming)
    }

    /// Answers a call. With `reply.stream` set, the call stays open for
    /// [`stream_item`](Self::stream_item) and [`stream_end`](Self::stream_end).
    pub fn reply(&mut self, reply: Reply) -> Result<(), ProtocolError> {
        let id = reply.request_id;
        self.answer(id, false)?;
        let stream = reply.stream;
        self.core.send(&Frame::Reply(reply))?;
        if stream {
            if let Some(c) = self.in_flight.get_mut(&id) {
                c.streaming = true;
            }
        } else {
            let call = self.in_flight.remove(&id);
            self.batch_done(id, call, true);
            self.check_drained();
        }
        Ok(())
    }

    /// Answers a call with a plain result borrowed from the caller (no annotations, no
    /// attachment, not a stream): the same rules and bytes as [`reply`](Self::reply) of the
    /// equivalent [`Reply`], without building it, for drivers that encode results into a
    /// scratch buffer of their own.
    pub fn reply_slice(
        &mut self,
        request_id: RequestId,
        codec: CodecId,
        result: &[u8],
    ) -> Result<(), ProtocolError> {
        // One lookup on the hot path: the call is taken out, and put back if it cannot be
        // answered this way (streaming) or the reply cannot be sent (over the peer's limits).
        self.core.ensure_open()?;
        let Some(call) = self.in_flight.remove(&request_id) else {
            return Err(ProtocolError::NotInFlight { request_id });
        };
        let sent = if call.streaming {
            Err(ProtocolError::InvalidState {
                operation: "send a reply",
                state: "the call is streaming",
            })
        } else {
            self.core.send_reply_slice(request_id, codec, result)
        };
        if let Err(e) = sent {
            self.in_flight.insert(request_id, call);
            return Err(e);
        }
        if call.batch.is_some() {
            self.batch_done(request_id, Some(call), true);
        }
        self.check_drained();
        Ok(())
    }

    /// Sends one item of a streamed result. With a window (the call's `wc.window`), only
    /// while the client's credit lasts: with none left it fails with
    /// [`ProtocolError::NoCredit`] (nothing sent); wait for [`ServerEvent::Credit`].
    ///
    /// `now` starts the stream's lifetime ([`ServerConfig::stream_lifetime`]) when this item
    /// uses up the credit.
    pub fn stream_item(&mut self, item: StreamItem, now: Instant) -> Result<(), ProtocolError> {
        let id = item.request_id;
        self.answer(id, true)?;
        let credit = self.in_flight.get(&id).and_then(|c| c.credit);
        if credit == Some(0) {
            return Err(ProtocolError::NoCredit { request_id: id });
        }
        self.core.send(&Frame::StreamItem(item))?;
        if let (Some(n), Some(c)) = (credit, self.in_flight.get_mut(&id)) {
            c.credit = Some(n - 1);
            if n == 1 {
                c.idle_since = Some(now);
            }
        }
        Ok(())
    }

    /// [`stream_item`](Self::stream_item) of a plain item (no annotations, no attachment):
    /// the same rules and bytes, with one lookup of the call and no owned frame built, for
    /// a driver pumping many items.
    pub fn stream_item_plain(
        &mut self,
        request_id: RequestId,
        codec: CodecId,
        item: &Bytes,
        now: Instant,
    ) -> Result<(), ProtocolError> {
        self.core.ensure_open()?;
        let Some(c) = self.in_flight.get_mut(&request_id) else {
            return Err(ProtocolError::NotInFlight { request_id });
        };
        if !c.streaming {
            return Err(ProtocolError::InvalidState {
                operation: "send a stream item",
                state: "the call has no stream",
            });
        }
        if c.credit == Some(0) {
            return Err(ProtocolError::NoCredit { request_id });
        }
        self.core.send_item_slice(request_id, codec, item)?;
        if let Some(n) = c.credit {
            c.credit = Some(n - 1);
            if n == 1 {
                c.idle_since = Some(now);
            }
        }
        Ok(())
    }

    /// The stream items call `request_id` may send now: `None` when the call is not in
    /// flight, `u32::MAX` when the caller set no window (no flow control).
    pub fn credit(&self, request_id: RequestId) -> Option<u32> {
        self.in_flight
            .get(&request_id)
            .map(|c| c.credit.unwrap_or(u32::MAX))
    }

    /// Ends a streamed result.
    pub fn stream_end(&mut self, request_id: RequestId) -> Result<(), ProtocolError> {
        self.answer(request_id, true)?;
        self.core.send(&Frame::StreamEnd(request_id))?;
        let call = self.in_flight.remove(&request_id);
        self.batch_done(request_id, call, true);
        self.check_drained();
        Ok(())
    }

    /// Fails call `request_id` whose answer could not be sent because of `e` (over the
    /// peer's limits, [`ProtocolError::TooLong`]): ERROR LIMIT_EXCEEDED naming `e`, so the
    /// caller is not left waiting. [`answer_calls`](Self::answer_calls) does the same for
    /// the calls it answers.
    pub fn fail_unsendable(
        &mut self,
        request_id: RequestId,
        e: &ProtocolError,
    ) -> Result<(), ProtocolError> {
        self.error(ErrorFrame {
            request_id,
            codec: CodecId::NONE,
            annotations: Annotations::new(),
            body: unsendable(e),
        })
    }

    /// Fails a call (also ends a stream).
    pub fn error(&mut self, error: ErrorFrame) -> Result<(), ProtocolError> {
        self.core.ensure_open()?;
        let id = error.request_id;
        if !self.in_flight.contains_key(&id) {
            return Err(ProtocolError::NotInFlight { request_id: id });
        }
        self.core.send(&Frame::Error(error))?;
        let call = self.in_flight.remove(&id);
        self.batch_done(id, call, false);
        self.check_drained();
        Ok(())
    }

    /// Calls the client back (SPEC §6.10); returns the callback's request id (numbered
    /// apart from the client's calls). The frame is queued for
    /// [`poll_transmit`](Self::poll_transmit); a [`ServerEvent::Reply`],
    /// [`ServerEvent::Error`] or [`ServerEvent::Failed`] ends it.
    ///
    /// Fails without sending when the callbacks extension is not in force, after the
    /// client's GOAWAY (this side's own GOAWAY does not stop callbacks: they finish the
    /// calls in flight), at the client's callbacks limit, or when the frame exceeds the
    /// client's limits.
    pub fn call(&mut self, req: CallRequest, now: Instant) -> Result<RequestId, ProtocolError> {
        let (id, codec) = self.begin_callback(req.oneway, req.codec.unwrap_or(CodecId::NONE))?;
        let deadline = req.annotations.deadline().map(|d| now + d);
        let oneway = req.oneway;
        self.core.send(&Frame::Call(Call {
            request_id: id,
            provider: req.provider,
            codec,
            oneway,
            upload: false,
            method: req.method,
            annotations: req.annotations,
            args: req.args,
            kwargs: req.kwargs,
            attachment: req.attachment,
        }))?;
        self.calling
            .commit(&mut self.calling_next, id, oneway, deadline, None, None);
        Ok(id)
    }

    /// [`call`](Self::call) from borrowed parts, as [`ClientConnection::call_ref`].
    pub fn call_ref(
        &mut self,
        mut call: CallRef<'_>,
        now: Instant,
    ) -> Result<RequestId, ProtocolError> {
        let (id, codec) = self.begin_callback(call.oneway, call.codec)?;
        call.request_id = id;
        call.codec = codec;
        let deadline = call.annotations.deadline().map(|d| now + d);
        self.core.send_call(&call)?;
        self.calling.commit(
            &mut self.calling_next,
            id,
            call.oneway,
            deadline,
            None,
            None,
        );
        Ok(id)
    }

    /// The caller's checks before a callback (the same as a client's before a call).
    fn begin_callback(
        &self,
        oneway: bool,
        codec: CodecId,
    ) -> Result<(RequestId, CodecId), ProtocolError> {
        self.core.ensure_open()?;
        let Some(session) = &self.session else {
            return Err(ProtocolError::InvalidState {
                operation: "call the client back",
                state: "waiting for HELLO",
            });
        };
        if !session.callbacks() {
            return Err(ProtocolError::InvalidState {
                operation: "call the client back",
                state: "the client did not offer callbacks (the callbacks extension is off)",
            });
        }
        let max = session
            .offered_extensions
            .get(ExtensionTag::CALLBACKS)
            .and_then(|v| callbacks_limit(v, session.peer_limits.max_in_flight))
            .unwrap_or(session.peer_limits.max_in_flight);
        begin_outgoing(
            &self.core,
            // Only the client's GOAWAY stops callbacks: after its own, the server still calls
            // back to finish the calls in flight.
            self.peer_goaway,
            self.calling.len(),
            max,
            self.calling_next,
            oneway,
            codec,
            session.codec,
        )
    }

    /// Cancels a callback: sends CANCEL; no further event is reported for it. Returns
    /// `false` when it is not in flight (already answered or cancelled).
    pub fn cancel(&mut self, request_id: RequestId) -> Result<bool, ProtocolError> {
        self.core.ensure_open()?;
        if !self.calling.cancel(request_id) {
            return Ok(false);
        }
        self.core.send_control(&Frame::Cancel(request_id));
        Ok(true)
    }

    /// Sends a PING unless one is outstanding; a [`ServerEvent::Pong`] reports the answer.
    /// Not before the handshake: the server's first frame is WELCOME or REFUSE (SPEC §10).
    pub fn ping(&mut self, now: Instant) -> Result<(), ProtocolError> {
        self.core.ensure_open()?;
        if self.session.is_none() {
            return Err(ProtocolError::InvalidState {
                operation: "send PING",
                state: "waiting for HELLO",
            });
        }
        self.core.ping(now)
    }

    /// Graceful shutdown: sends GOAWAY naming the last call accepted; later calls are
    /// answered SHUTTING_DOWN; calls in flight complete, then [`ServerEvent::Drained`].
    pub fn goaway(&mut self, message: &str) -> Result<(), ProtocolError> {
        self.core.ensure_open()?;
        if self.session.is_none() {
            return Err(ProtocolError::InvalidState {
                operation: "send GOAWAY",
                state: "waiting for HELLO",
            });
        }
        if self.goaway_sent.is_none() {
            self.goaway_sent = Some(self.last_request_id);
            self.core.send_control(&Frame::GoAway(GoAway {
                last_request_id: self.last_request_id,
                code: ErrorCode::NO_ERROR,
                message: short_message(message.to_string()),
            }));
        }
        self.check_drained();
        Ok(())
    }

    /// [`goaway`](Self::goaway) with a drain grace: calls still in flight `grace` after
    /// `now` are answered ERROR SHUTTING_DOWN and reported as [`ServerEvent::Expired`] (stop
    /// their work), then the connection is [`ServerEvent::Drained`]. Before the handshake
    /// completed there is nothing to drain: the connection closes at once (GOAWAY
    /// SHUTTING_DOWN).
    pub fn shutdown(
        &mut self,
        message: &str,
        now: Instant,
        grace: Duration,
    ) -> Result<(), ProtocolError> {
        self.core.ensure_open()?;
        if self.session.is_none() {
            self.core
                .close(ErrorCode::SHUTTING_DOWN, message, self.last_request_id);
            return Ok(());
        }
        self.goaway(message)?;
        if self.drain_deadline.is_none() {
            self.drain_deadline = Some(now + grace);
        }
        Ok(())
    }

    /// Reports the end of the byte stream: an error if it ended inside a frame, or while
    /// calls were in flight without a GOAWAY; the calls in flight are lost.
    pub fn handle_eof(&mut self) -> Result<(), ProtocolError> {
        self.core.eof(self.idle_or_drained(), self.core.inbuf.len())
    }

    /// Nothing in flight in either direction, or drained after GOAWAY: the end of the
    /// byte stream is clean.
    fn idle_or_drained(&self) -> bool {
        self.drained || (self.in_flight.is_empty() && self.calling.is_empty())
    }

    /// [`handle_eof`](Self::handle_eof) for drivers that read with
    /// [`handle_input_buf`](Self::handle_input_buf): `buf` is what is left in their buffer.
    pub fn handle_eof_buf(&mut self, buf: &[u8]) -> Result<(), ProtocolError> {
        self.core.eof(self.idle_or_drained(), buf.len())
    }

    /// Closes at once with an error code, telling the peer.
    pub fn close(&mut self, code: ErrorCode, message: &str) {
        self.core.close(code, message, self.last_request_id);
    }

    /// Refuses the connection before its HELLO, for a peer the server will not serve on
    /// this address (e.g. a plaintext client of a TLS address): queues the REFUSE a HELLO
    /// would have got, with `code`, the server's versions and accepted codecs and
    /// `message`, and closes. Only while waiting for HELLO.
    pub fn refuse(&mut self, code: ErrorCode, message: &str) -> Result<(), ProtocolError> {
        self.core.ensure_open()?;
        if self.session.is_some() {
            return Err(ProtocolError::InvalidState {
                operation: "refuse the connection",
                state: "connected",
            });
        }
        let message = short_message(message.to_string());
        self.core.send_control(&Frame::Refuse(Refuse {
            code,
            versions: self.config.versions.clone(),
            accepted: self.config.accepted.clone(),
            message: message.clone(),
        }));
        self.core.closed = Some(ProtocolError::Refused {
            code,
            versions: self.config.versions.clone(),
            accepted: self.config.accepted.clone(),
            message,
        });
        Ok(())
    }
}

impl Side for ServerConnection {
    fn core(&mut self) -> &mut Core {
        &mut self.core
    }

    fn on_frame(&mut self, frame: Frame, now: Instant) -> Result<(), ProtocolError> {
        ServerConnection::on_frame(self, frame, now)
    }

    fn fail(&mut self, e: ProtocolError) -> ProtocolError {
        ServerConnection::fail(self, e)
    }
}

#[cfg(test)]
mod calls_tests {
    use super::{Calls, RequestId, Timed};
    use std::collections::HashMap;
    use std::time::Instant;

    #[derive(Debug, Clone, Copy, PartialEq)]
    struct C(u64, Option<Instant>);

    impl Timed for C {
        fn deadline(&self) -> Option<Instant> {
            self.1
        }
    }

    /// The direct-mapped table with its overflow map agrees with a plain map under random
    /// inserts, replacements, lookups and removals: ids rising one by one, with gaps, far out
    /// of order, and colliding on their low bits.
    #[test]
    fn calls_agree_with_a_map() {
        let t0 = Instant::now();
        for pattern in 0..6u64 {
            let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ pattern;
            let mut rnd = move || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            let mut calls: Calls<C> = Calls::default();
            let mut model: HashMap<RequestId, C> = HashMap::new();
            let mut next = 1u64;
            for step in 0..20_000u64 {
                let r = rnd();
                match r % 4 {
                    0 | 1 => {
                        let id = match pattern {
                            0 => next,
                            1 => next + r % 7,
                            2 => next * 256,
                            3 => r % 1024 + 1,
                            4 => next,
                            _ => r % 64 + 1,
                        };
                        next += 1;
                        // Patterns 4 and 5 keep few calls in flight, so the `hot`
                        // place is taken and freed often, beside the table.
                        let cap = match pattern {
                            4 => 1,
                            5 => 3,
                            _ => 600,
                        };
                        if model.len() < cap {
                            let c = C(step, (r % 3 == 0).then_some(t0));
                            calls.insert(RequestId(id), c);
                            model.insert(RequestId(id), c);
                        }
                    }
                    2 => {
                        // Oldest-first and random removals.
                        let id = if r % 2 == 0 {
                            model.keys().min().copied()
                        } else {
                            model
                                .keys()
                                .nth((r as usize / 4) % model.len().max(1))
                                .copied()
                        }
                        .unwrap_or(RequestId(r % 2048));
                        assert_eq!(calls.remove(&id), model.remove(&id));
                    }
                    _ => {
                        let id = RequestId(r % (next * 256 + 2));
                        assert_eq!(calls.get(&id), model.get(&id));
                        assert_eq!(calls.contains_key(&id), model.contains_key(&id));
                        if let (Some(a), Some(b)) = (calls.get_mut(&id), model.get_mut(&id)) {
                            a.0 += 1;
                            b.0 += 1;
                        }
                    }
                }
                assert_eq!(calls.len(), model.len());
                assert_eq!(calls.is_empty(), model.is_empty());
                assert_eq!(
                    calls.timed,
                    model.values().filter(|c| c.1.is_some()).count()
                );
            }
            let mut ids = calls.ids();
            ids.sort();
            let mut want: Vec<RequestId> = model.keys().copied().collect();
            want.sort();
            assert_eq!(ids, want);
        }
    }
}
