//! Frames: the header, the twelve message kinds, their bodies, and encoding.

use bytes::{BufMut, Bytes, BytesMut};

use crate::annotations::Annotations;
use crate::error::ProtocolError;
use crate::wire::{
    CodecId, ErrorCode, Flags, Kind, ProviderId, RequestId, HEADER_LEN, MAGIC, VERSION,
};

/// The fixed 40-byte header that starts every frame (SPEC §2).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Header {
    /// Protocol version (byte 4).
    pub version: u8,
    /// Message kind (byte 5).
    pub kind: Kind,
    /// Flags (bytes 6-7).
    pub flags: Flags,
    /// Codec of the payload, kwargs and error detail (byte 8).
    pub codec: CodecId,
    /// Provider a call is addressed to (bytes 10-11).
    pub provider: ProviderId,
    /// Request id (bytes 12-19).
    pub request_id: RequestId,
    /// Length of the route section: the method name (bytes 20-21).
    pub route_len: u16,
    /// Length of the annotation section (bytes 24-27).
    pub annotations_len: u32,
    /// Length of the payload section (bytes 28-31).
    pub payload_len: u32,
    /// Length of the keyword-argument section (bytes 32-35).
    pub kwargs_len: u32,
    /// Length of the raw attachment section (bytes 36-39).
    pub attachment_len: u32,
}

impl Header {
    /// Length of the whole frame, header included. Computed in `u64`, so it cannot
    /// overflow whatever the declared lengths.
    pub fn frame_len(&self) -> u64 {
        HEADER_LEN as u64
            + u64::from(self.route_len)
            + u64::from(self.annotations_len)
            + u64::from(self.payload_len)
            + u64::from(self.kwargs_len)
            + u64::from(self.attachment_len)
    }

    /// Parses and checks a header: magic, version, kind, flags, reserved bytes and the
    /// per-kind field rules (SPEC §2-§3), in that order. Limits are not checked here.
    #[inline]
    pub fn parse(b: &[u8; HEADER_LEN]) -> Result<Header, ProtocolError> {
        if b[..4] != MAGIC {
            return Err(ProtocolError::BadMagic {
                found: b[..4].to_vec(),
            });
        }
        let h = Header {
            version: b[4],
            kind: Kind(b[5]),
            flags: Flags(u16::from_be_bytes([b[6], b[7]])),
            codec: CodecId(b[8]),
            provider: ProviderId(u16::from_be_bytes([b[10], b[11]])),
            request_id: RequestId(u64::from_be_bytes([
                b[12], b[13], b[14], b[15], b[16], b[17], b[18], b[19],
            ])),
            route_len: u16::from_be_bytes([b[20], b[21]]),
            annotations_len: u32::from_be_bytes([b[24], b[25], b[26], b[27]]),
            payload_len: u32::from_be_bytes([b[28], b[29], b[30], b[31]]),
            kwargs_len: u32::from_be_bytes([b[32], b[33], b[34], b[35]]),
            attachment_len: u32::from_be_bytes([b[36], b[37], b[38], b[39]]),
        };
        if h.version != VERSION {
            return Err(ProtocolError::UnsupportedVersion { version: h.version });
        }
        let rule = h.check_kind_flags()?;
        for offset in [9, 22, 23] {
            if b[offset] != 0 {
                return Err(ProtocolError::ReservedNotZero {
                    offset,
                    value: b[offset],
                });
            }
        }
        h.check_fields(rule)?;
        Ok(h)
    }

    /// Checks kind, flags and the per-kind field rules (SPEC §3 table).
    #[inline]
    pub(crate) fn check(&self) -> Result<(), ProtocolError> {
        let rule = self.check_kind_flags()?;
        self.check_fields(rule)
    }

    #[inline]
    fn check_kind_flags(&self) -> Result<Rule, ProtocolError> {
        let rule = Rule::of(self.kind).ok_or(ProtocolError::UnknownKind { kind: self.kind })?;
        let mut bad_flags = Flags(self.flags.0 & !rule.flags.0);
        if self.flags.contains(Flags::ONEWAY.union(Flags::UPLOAD)) {
            // A oneway call has no answer to end its argument stream (SPEC §6.13).
            bad_flags = bad_flags.union(Flags::UPLOAD);
        }
        if bad_flags.0 != 0 {
            return Err(ProtocolError::BadFlags {
                kind: self.kind,
                flags: bad_flags,
            });
        }
        Ok(rule)
    }

    #[inline]
    fn check_fields(&self, rule: Rule) -> Result<(), ProtocolError> {
        let kind = self.kind;
        let bad = |field, problem| {
            Err(ProtocolError::BadField {
                kind,
                field,
                problem,
            })
        };
        match rule.codec {
            Need::Zero if self.codec != CodecId::NONE => return bad("codec id", "must be 0"),
            Need::NonZero if self.codec == CodecId::NONE => {
                return bad("codec id", "must not be 0")
            }
            _ => {}
        }
        if self.codec == CodecId::RESERVED {
            return bad("codec id", "must not be 255 (reserved)");
        }
        match rule.request_id {
            Need::Zero if self.request_id != RequestId::NONE => {
                return bad("request id", "must be 0")
            }
            Need::NonZero if self.request_id == RequestId::NONE => {
                return bad("request id", "must not be 0")
            }
            _ => {}
        }
        if !rule.provider && self.provider != ProviderId(0) {
            return bad("provider id", "must be 0");
        }
        match rule.route {
            Need::Zero if self.route_len != 0 => return bad("route", "must be empty"),
            Need::NonZero if self.route_len == 0 => return bad("route", "must name a method"),
            _ => {}
        }
        if !rule.annotations && self.annotations_len != 0 {
            return bad("annotations", "must be empty");
        }
        match rule.payload {
            Payload::Empty if self.payload_len != 0 => return bad("payload", "must be empty"),
            Payload::Exactly8 if self.payload_len != 8 => {
                return bad("payload", "must be exactly 8 bytes")
            }
            Payload::Exactly4 if self.payload_len != 4 => {
                return bad("payload", "must be exactly 4 bytes")
            }
            _ => {}
        }
        if !rule.kwargs && self.kwargs_len != 0 {
            return bad("kwargs", "must be empty");
        }
        if !rule.attachment && self.attachment_len != 0 {
            return bad("attachment", "must be empty");
        }
        Ok(())
    }

    /// Writes the 40 header bytes.
    pub fn write(&self, dst: &mut BytesMut) {
        dst.extend_from_slice(&self.to_bytes());
    }

    /// The 40 header bytes.
    #[inline]
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4] = self.version;
        b[5] = self.kind.0;
        b[6..8].copy_from_slice(&self.flags.0.to_be_bytes());
        b[8] = self.codec.0;
        // b[9] reserved
        b[10..12].copy_from_slice(&self.provider.0.to_be_bytes());
        b[12..20].copy_from_slice(&self.request_id.0.to_be_bytes());
        b[20..22].copy_from_slice(&self.route_len.to_be_bytes());
        // b[22..24] reserved
        b[24..28].copy_from_slice(&self.annotations_len.to_be_bytes());
        b[28..32].copy_from_slice(&self.payload_len.to_be_bytes());
        b[32..36].copy_from_slice(&self.kwargs_len.to_be_bytes());
        b[36..40].copy_from_slice(&self.attachment_len.to_be_bytes());
        b
    }
}

#[derive(Clone, Copy)]
enum Need {
    Zero,
    NonZero,
    Any,
}

#[derive(Clone, Copy)]
enum Payload {
    Empty,
    Exactly8,
    Exactly4,
    Any,
}

/// One row of the SPEC §3 table: what each kind allows.
#[derive(Clone, Copy)]
struct Rule {
    flags: Flags,
    codec: Need,
    request_id: Need,
    provider: bool,
    route: Need,
    annotations: bool,
    payload: Payload,
    kwargs: bool,
    attachment: bool,
}

impl Rule {
    #[inline]
    fn of(kind: Kind) -> Option<Rule> {
        let control = Rule {
            flags: Flags::EMPTY,
            codec: Need::Zero,
            request_id: Need::Zero,
            provider: false,
            route: Need::Zero,
            annotations: false,
            payload: Payload::Any,
            kwargs: false,
            attachment: false,
        };
        Some(match kind {
            Kind::HELLO | Kind::WELCOME | Kind::REFUSE | Kind::GOAWAY => control,
            Kind::PING | Kind::PONG => Rule {
                payload: Payload::Exactly8,
                ..control
            },
            Kind::CALL => Rule {
                flags: Flags::ONEWAY.union(Flags::COMPRESSED).union(Flags::UPLOAD),
                codec: Need::NonZero,
                request_id: Need::NonZero,
                provider: true,
                route: Need::NonZero,
                annotations: true,
                payload: Payload::Any,
                kwargs: true,
                attachment: true,
            },
            Kind::REPLY => Rule {
                flags: Flags::STREAM.union(Flags::COMPRESSED),
                codec: Need::NonZero,
                request_id: Need::NonZero,
                annotations: true,
                attachment: true,
                ..control
            },
            Kind::STREAM_ITEM => Rule {
                flags: Flags::COMPRESSED,
                codec: Need::NonZero,
                request_id: Need::NonZero,
                annotations: true,
                attachment: true,
                ..control
            },
            Kind::ERROR => Rule {
                codec: Need::Any,
                request_id: Need::NonZero,
                annotations: true,
                ..control
            },
            Kind::CREDIT => Rule {
                request_id: Need::NonZero,
                payload: Payload::Exactly4,
                ..control
            },
            Kind::CANCEL | Kind::STREAM_END => Rule {
                request_id: Need::NonZero,
                payload: Payload::Empty,
                ..control
            },
            _ => return None,
        })
    }
}

/// Limits a receiver enforces, and announces to its peer in the handshake (SPEC §8).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Limits {
    /// Largest frame accepted, header and all sections included. At least
    /// [`Limits::MIN_FRAME_LEN`].
    pub max_frame_len: u32,
    /// Largest annotation section accepted.
    pub max_annotations_len: u32,
    /// Most calls in flight at once (not counting oneway calls). At least 1.
    pub max_in_flight: u32,
}

impl Limits {
    /// The smallest `max_frame_len` a peer may announce, so that handshake, error and
    /// goaway frames always fit.
    pub const MIN_FRAME_LEN: u32 = 4096;

    /// Checks the invariants (`max_frame_len >= MIN_FRAME_LEN`, `max_in_flight >= 1`).
    pub fn validate(&self) -> Result<(), ProtocolError> {
        if self.max_frame_len < Self::MIN_FRAME_LEN {
            return Err(ProtocolError::InvalidArgument(
                "max_frame_len must be at least 4096",
            ));
        }
        if self.max_in_flight == 0 {
            return Err(ProtocolError::InvalidArgument(
                "max_in_flight must be at least 1",
            ));
        }
        Ok(())
    }
}

impl Default for Limits {
    /// 16 MiB frames, 16 KiB of annotations, 128 calls in flight.
    fn default() -> Self {
        Limits {
            max_frame_len: 16 << 20,
            max_annotations_len: 16 << 10,
            max_in_flight: 128,
        }
    }
}

/// A method name: non-empty UTF-8, at most 65535 bytes, kept as the frame's bytes.
#[derive(Clone, Eq, Hash, PartialEq)]
pub struct Method(Bytes);

impl Method {
    /// Checks and wraps a method name.
    #[inline]
    pub fn new(name: impl Into<Bytes>) -> Result<Method, ProtocolError> {
        let b = name.into();
        let Ok(name) = std::str::from_utf8(&b) else {
            return Err(ProtocolError::InvalidUtf8 {
                what: "method name",
            });
        };
        Method::check(name)?;
        Ok(Method(b))
    }

    /// Checks a name against the rules for a method name other than UTF-8 (which a `str`
    /// is): not empty, at most 65,535 bytes. For senders that keep names as `&str` and
    /// encode them with [`CallRef`].
    pub fn check(name: &str) -> Result<(), ProtocolError> {
        if name.is_empty() {
            return Err(ProtocolError::InvalidArgument(
                "method name must not be empty",
            ));
        }
        if name.len() > usize::from(u16::MAX) {
            return Err(ProtocolError::TooLong {
                what: "method name",
                len: name.len() as u64,
                max: u64::from(u16::MAX),
            });
        }
        Ok(())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // Invariant: checked UTF-8 in `new`; the fallback is never taken.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The name's bytes, as they travel.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

impl std::fmt::Debug for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// HELLO body: what the client speaks (SPEC §6.1).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Hello {
    /// Protocol versions, most preferred first (1-255 entries).
    pub versions: Vec<u8>,
    /// Codecs, most preferred first (1-255 entries, ids 1-254).
    pub codecs: Vec<CodecId>,
    /// The client's limits: what the server may send it.
    pub limits: Limits,
    /// Optional capabilities the client offers (SPEC §6.1.1); empty by default.
    pub extensions: Extensions,
}

/// WELCOME body: the handshake succeeded (SPEC §6.2).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Welcome {
    /// The chosen version.
    pub version: u8,
    /// The default codec: the client's most preferred codec the server accepts.
    pub codec: CodecId,
    /// Every codec the server accepts (1-255 entries, contains `codec`).
    pub accepted: Vec<CodecId>,
    /// The server's limits: what the client may send it.
    pub limits: Limits,
    /// The server's answers to the capabilities the client offered (SPEC §6.1.1).
    pub extensions: Extensions,
}

/// The tag of a handshake extension (SPEC §6.1.1). Unknown tags are representable and
/// ignored by the receiver.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct ExtensionTag(pub u8);

impl ExtensionTag {
    /// Per-frame compression: the algorithms offered (HELLO) or accepted (WELCOME).
    pub const COMPRESSION: ExtensionTag = ExtensionTag(1);
    /// Symmetric connections: the client serves calls from the server (callbacks).
    pub const CALLBACKS: ExtensionTag = ExtensionTag(2);
    /// Stream parameters.
    pub const STREAMS: ExtensionTag = ExtensionTag(3);
}

/// The optional extensions of a HELLO or WELCOME body (SPEC §6.1.1): at most one value per
/// tag, in the order they travel. A WELCOME answers only tags its HELLO offered.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Extensions(Vec<(ExtensionTag, Bytes)>);

impl Extensions {
    /// No extensions.
    pub fn new() -> Extensions {
        Extensions(Vec::new())
    }

    /// The value of `tag`, if present.
    pub fn get(&self, tag: ExtensionTag) -> Option<&Bytes> {
        self.0.iter().find(|(t, _)| *t == tag).map(|(_, v)| v)
    }

    /// Sets the value of `tag`, replacing an earlier one. Fails for tag 0 or a value longer
    /// than 65535 bytes.
    pub fn set(&mut self, tag: ExtensionTag, value: impl Into<Bytes>) -> Result<(), ProtocolError> {
        let value = value.into();
        if tag.0 == 0 {
            return Err(ProtocolError::InvalidArgument(
                "extension tag 0 is reserved",
            ));
        }
        if value.len() > usize::from(u16::MAX) {
            return Err(ProtocolError::InvalidArgument(
                "an extension value is at most 65535 bytes",
            ));
        }
        match self.0.iter_mut().find(|(t, _)| *t == tag) {
            Some(slot) => slot.1 = value,
            None => self.0.push((tag, value)),
        }
        Ok(())
    }

    /// Builder form of [`set`](Self::set).
    pub fn with(
        mut self,
        tag: ExtensionTag,
        value: impl Into<Bytes>,
    ) -> Result<Extensions, ProtocolError> {
        self.set(tag, value)?;
        Ok(self)
    }

    /// Removes `tag`, returning its value.
    pub fn remove(&mut self, tag: ExtensionTag) -> Option<Bytes> {
        let i = self.0.iter().position(|(t, _)| *t == tag)?;
        Some(self.0.remove(i).1)
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries, in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (ExtensionTag, &Bytes)> {
        self.0.iter().map(|(t, v)| (*t, v))
    }
}

/// REFUSE body: the handshake failed (SPEC §6.3).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Refuse {
    /// Why (UNSUPPORTED_VERSION, NO_COMMON_CODEC, PERMISSION_DENIED, SHUTTING_DOWN...).
    pub code: ErrorCode,
    /// Versions the server speaks.
    pub versions: Vec<u8>,
    /// Codecs the server accepts.
    pub accepted: Vec<CodecId>,
    /// Human-readable reason.
    pub message: String,
}

/// The fixed binary body of an ERROR frame (SPEC §7).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct ErrorBody {
    /// What kind of failure.
    pub code: ErrorCode,
    /// Type name of the remote error (`builtins.ValueError`, `my_crate::MyError`), may be
    /// empty.
    pub type_name: String,
    /// Message, may be empty.
    pub message: String,
    /// Remote trace, lines separated by `\n`, may be empty.
    pub trace: String,
    /// For CODEC_REFUSED: the codecs the server accepts. Empty otherwise.
    pub accepted: Vec<CodecId>,
    /// For UNKNOWN_METHOD and UNKNOWN_PROVIDER: what the server exposes (method names, or
    /// provider ids in decimal), so a client can say what is callable. Empty otherwise.
    pub names: Vec<String>,
    /// Optional detail value, encoded with the frame's codec. Empty when the codec is 0.
    pub detail: Bytes,
}

impl Default for ErrorCode {
    fn default() -> Self {
        ErrorCode::INTERNAL_ERROR
    }
}

impl ErrorBody {
    /// An error body with a code and message and nothing else.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code,
            message: message.into(),
            ..ErrorBody::default()
        }
    }

    /// The CODEC_REFUSED body listing the accepted codecs.
    pub fn codec_refused(codec: CodecId, accepted: &[CodecId]) -> ErrorBody {
        ErrorBody {
            code: ErrorCode::CODEC_REFUSED,
            message: format!(
                "codec {codec} refused; this server accepts {}",
                accepted
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            accepted: accepted.to_vec(),
            ..ErrorBody::default()
        }
    }
}

/// GOAWAY body (SPEC §6.6).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct GoAway {
    /// The highest request id the sender has accepted (or sent); calls above it were not
    /// and will not be processed.
    pub last_request_id: RequestId,
    /// NO_ERROR for a graceful shutdown, anything else for a fatal error.
    pub code: ErrorCode,
    /// Human-readable reason.
    pub message: String,
}

/// A CALL frame (SPEC §6.4).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Call {
    /// Matches the reply; strictly increasing per connection, never 0.
    pub request_id: RequestId,
    /// The provider addressed.
    pub provider: ProviderId,
    /// Codec of `args` and `kwargs`; never 0.
    pub codec: CodecId,
    /// No reply wanted (flag ONEWAY).
    pub oneway: bool,
    /// The caller streams argument items after the call (flag UPLOAD, SPEC §6.13).
    pub upload: bool,
    /// Method name (the route section).
    pub method: Method,
    /// Deadline, correlation id, user key/values.
    pub annotations: Annotations,
    /// Positional arguments, encoded with `codec`.
    pub args: Bytes,
    /// Keyword arguments, encoded with `codec`; empty when the call has none.
    pub kwargs: Bytes,
    /// Raw bytes after the payload (bulk data), never encoded.
    pub attachment: Bytes,
}

/// A REPLY frame (SPEC §6.4).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Reply {
    /// The call answered.
    pub request_id: RequestId,
    /// Codec of `result`; never 0.
    pub codec: CodecId,
    /// The result is a stream (flag STREAM): items follow.
    pub stream: bool,
    /// Response annotations.
    pub annotations: Annotations,
    /// The result, encoded with `codec`.
    pub result: Bytes,
    /// Raw bytes after the payload.
    pub attachment: Bytes,
}

/// An ERROR frame: a call failed (SPEC §7).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ErrorFrame {
    /// The call that failed.
    pub request_id: RequestId,
    /// Codec of `body.detail`; 0 when there is no detail.
    pub codec: CodecId,
    /// Response annotations.
    pub annotations: Annotations,
    /// Code, type name, message, trace, accepted set, detail.
    pub body: ErrorBody,
}

/// A STREAM_ITEM frame (SPEC §6.5).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct StreamItem {
    /// The streaming call.
    pub request_id: RequestId,
    /// Codec of `item`; never 0.
    pub codec: CodecId,
    /// Annotations.
    pub annotations: Annotations,
    /// The item, encoded with `codec`.
    pub item: Bytes,
    /// Raw bytes after the item.
    pub attachment: Bytes,
}

/// One decoded frame.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Frame {
    /// Client's handshake offer.
    Hello(Hello),
    /// Server's handshake acceptance.
    Welcome(Welcome),
    /// Server's handshake refusal.
    Refuse(Refuse),
    /// A call.
    Call(Call),
    /// A call's result.
    Reply(Reply),
    /// A call's failure.
    Error(ErrorFrame),
    /// Cancel a call.
    Cancel(RequestId),
    /// One item of a streamed result.
    StreamItem(StreamItem),
    /// End of a streamed result.
    StreamEnd(RequestId),
    /// More flow-control credit for a streaming call (SPEC §6.12): the call, and how many
    /// more stream items the sender of CREDIT may receive (at least 1).
    Credit(RequestId, u32),
    /// Liveness probe.
    Ping([u8; 8]),
    /// Answer to a probe.
    Pong([u8; 8]),
    /// Shutdown or fatal error.
    GoAway(GoAway),
}

/// The sections of a frame as they travel, before the header is computed.
struct Parts<'a> {
    kind: Kind,
    flags: Flags,
    codec: CodecId,
    provider: ProviderId,
    request_id: RequestId,
    route: &'a [u8],
    annotations: &'a [u8],
    payload: Section<'a>,
    kwargs: &'a Bytes,
    attachment: &'a Bytes,
}

/// A payload: shared with the frame (data frames) or built for a fixed body.
enum Section<'a> {
    Shared(&'a Bytes),
    Slice(&'a [u8]),
    Owned(BytesMut),
}

impl Section<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Section::Shared(b) => b,
            Section::Slice(b) => b,
            Section::Owned(b) => b,
        }
    }
}

impl Parts<'_> {
    fn header(&self) -> Result<Header, ProtocolError> {
        let header = Header {
            version: VERSION,
            kind: self.kind,
            flags: self.flags,
            codec: self.codec,
            provider: self.provider,
            request_id: self.request_id,
            route_len: len_u16("route", self.route.len())?,
            annotations_len: len_u32("annotations", self.annotations.len())?,
            payload_len: len_u32("payload", self.payload.as_slice().len())?,
            kwargs_len: len_u32("kwargs", self.kwargs.len())?,
            attachment_len: len_u32("attachment", self.attachment.len())?,
        };
        header.check()?;
        Ok(header)
    }
}

fn len_u32(what: &'static str, len: usize) -> Result<u32, ProtocolError> {
    u32::try_from(len).map_err(|_| ProtocolError::TooLong {
        what,
        len: len as u64,
        max: u64::from(u32::MAX),
    })
}

fn len_u8(what: &'static str, len: usize) -> Result<u8, ProtocolError> {
    u8::try_from(len).map_err(|_| ProtocolError::TooLong {
        what,
        len: len as u64,
        max: 255,
    })
}

fn len_u16(what: &'static str, len: usize) -> Result<u16, ProtocolError> {
    u16::try_from(len).map_err(|_| ProtocolError::TooLong {
        what,
        len: len as u64,
        max: u64::from(u16::MAX),
    })
}

static EMPTY: Bytes = Bytes::new();

impl Frame {
    /// The frame's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Frame::Hello(_) => Kind::HELLO,
            Frame::Welcome(_) => Kind::WELCOME,
            Frame::Refuse(_) => Kind::REFUSE,
            Frame::Call(_) => Kind::CALL,
            Frame::Reply(_) => Kind::REPLY,
            Frame::Error(_) => Kind::ERROR,
            Frame::Cancel(_) => Kind::CANCEL,
            Frame::StreamItem(_) => Kind::STREAM_ITEM,
            Frame::StreamEnd(_) => Kind::STREAM_END,
            Frame::Credit(..) => Kind::CREDIT,
            Frame::Ping(_) => Kind::PING,
            Frame::Pong(_) => Kind::PONG,
            Frame::GoAway(_) => Kind::GOAWAY,
        }
    }

    /// The request id the frame belongs to ([`RequestId::NONE`] for connection frames).
    pub fn request_id(&self) -> RequestId {
        match self {
            Frame::Call(c) => c.request_id,
            Frame::Reply(r) => r.request_id,
            Frame::Error(e) => e.request_id,
            Frame::StreamItem(s) => s.request_id,
            Frame::Cancel(id) | Frame::StreamEnd(id) | Frame::Credit(id, _) => *id,
            _ => RequestId::NONE,
        }
    }

    fn parts(&self) -> Result<Parts<'_>, ProtocolError> {
        let mut p = Parts {
            kind: self.kind(),
            flags: Flags::EMPTY,
            codec: CodecId::NONE,
            provider: ProviderId(0),
            request_id: self.request_id(),
            route: &[],
            annotations: &[],
            payload: Section::Slice(&[]),
            kwargs: &EMPTY,
            attachment: &EMPTY,
        };
        match self {
            Frame::Hello(h) => p.payload = Section::Owned(encode_hello(h)?),
            Frame::Welcome(w) => p.payload = Section::Owned(encode_welcome(w)?),
            Frame::Refuse(r) => p.payload = Section::Owned(encode_refuse(r)?),
            Frame::GoAway(g) => p.payload = Section::Owned(encode_goaway(g)?),
            Frame::Ping(d) | Frame::Pong(d) => p.payload = Section::Slice(d),
            Frame::Cancel(_) | Frame::StreamEnd(_) => {}
            Frame::Credit(_, n) => {
                if *n == 0 {
                    return Err(ProtocolError::InvalidArgument(
                        "a CREDIT grants at least 1 item",
                    ));
                }
                p.payload = Section::Owned(BytesMut::from(&n.to_be_bytes()[..]));
            }
            Frame::Call(c) => {
                p.flags = if c.oneway {
                    Flags::ONEWAY
                } else {
                    Flags::EMPTY
                };
                if c.upload {
                    p.flags = p.flags.union(Flags::UPLOAD);
                }
                p.codec = c.codec;
                p.provider = c.provider;
                p.route = c.method.as_bytes();
                p.annotations = c.annotations.as_bytes();
                p.payload = Section::Shared(&c.args);
                p.kwargs = &c.kwargs;
                p.attachment = &c.attachment;
            }
            Frame::Reply(r) => {
                p.flags = if r.stream {
                    Flags::STREAM
                } else {
                    Flags::EMPTY
                };
                p.codec = r.codec;
                p.annotations = r.annotations.as_bytes();
                p.payload = Section::Shared(&r.result);
                p.attachment = &r.attachment;
            }
            Frame::StreamItem(s) => {
                p.codec = s.codec;
                p.annotations = s.annotations.as_bytes();
                p.payload = Section::Shared(&s.item);
                p.attachment = &s.attachment;
            }
            Frame::Error(e) => {
                if e.codec == CodecId::NONE && !e.body.detail.is_empty() {
                    return Err(ProtocolError::InvalidArgument(
                        "an error detail needs a codec: set ErrorFrame::codec",
                    ));
                }
                p.codec = e.codec;
                p.annotations = e.annotations.as_bytes();
                p.payload = Section::Owned(encode_error_body(&e.body)?);
            }
        }
        Ok(p)
    }

    /// Appends the encoded frame to `dst`.
    ///
    /// Fails (writing nothing) when the frame breaks a rule of SPEC §3 (request id 0 on a
    /// call, codec 0 on a reply...) or a section is too long for its length field.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        let attachment = self.encode_head(dst)?;
        dst.extend_from_slice(&attachment);
        Ok(())
    }

    /// Appends everything but the attachment to `dst` and returns the attachment, so a
    /// writer can send it with a vectored write instead of copying it (bulk data).
    pub fn encode_head(&self, dst: &mut BytesMut) -> Result<Bytes, ProtocolError> {
        self.encode_head_checked(dst, |_| Ok(()))
    }

    /// [`Frame::encode`], after `check` accepted the frame's length (header included): the
    /// header is built once for both.
    pub(crate) fn encode_checked(
        &self,
        dst: &mut BytesMut,
        check: impl FnOnce(u64) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        let attachment = self.encode_head_checked(dst, check)?;
        if !attachment.is_empty() {
            dst.extend_from_slice(&attachment);
        }
        Ok(())
    }

    pub(crate) fn encode_head_checked(
        &self,
        dst: &mut BytesMut,
        check: impl FnOnce(u64) -> Result<(), ProtocolError>,
    ) -> Result<Bytes, ProtocolError> {
        // Data frames (the hot path) skip the `Parts` indirection.
        let (header, sections, attachment) = match self {
            Frame::Call(c) => {
                let r = c.borrowed();
                let mut header = r.header()?;
                if c.upload {
                    header.flags = header.flags.union(Flags::UPLOAD);
                    header.check()?;
                }
                (header, r.sections(), &c.attachment)
            }
            Frame::Reply(r) => {
                let sections = [&[][..], r.annotations.as_bytes(), &r.result, &[]];
                let header = data_header(
                    Kind::REPLY,
                    if r.stream {
                        Flags::STREAM
                    } else {
                        Flags::EMPTY
                    },
                    r.codec,
                    ProviderId(0),
                    r.request_id,
                    sections,
                    r.attachment.len(),
                )?;
                (header, sections, &r.attachment)
            }
            _ => {
                let p = self.parts()?;
                let header = p.header()?;
                check(header.frame_len())?;
                write_head(
                    dst,
                    &header,
                    [p.route, p.annotations, p.payload.as_slice(), p.kwargs],
                );
                return Ok(p.attachment.clone());
            }
        };
        check(header.frame_len())?;
        write_head(dst, &header, sections);
        Ok(attachment.clone())
    }

    /// Encodes the frame into `staging`, handing sections of at least `min_shared` bytes
    /// to `push` as shared chunks of their own, after `check` accepted the frame's length
    /// (header included): the header is built once for both. `extra` flags are set on top
    /// of the frame's own (COMPRESSED, for a frame whose sections were compressed).
    pub(crate) fn encode_chunks_checked(
        &self,
        staging: &mut BytesMut,
        min_shared: usize,
        mut push: impl FnMut(Bytes),
        check: impl FnOnce(u64) -> Result<(), ProtocolError>,
        extra: Flags,
    ) -> Result<(), ProtocolError> {
        let mut p = self.parts()?;
        p.flags = p.flags.union(extra);
        let header = p.header()?;
        check(header.frame_len())?;
        header.write(staging);
        staging.extend_from_slice(p.route);
        staging.extend_from_slice(p.annotations);
        let mut section =
            |staging: &mut BytesMut, shared: Option<&Bytes>, slice: &[u8]| match shared {
                Some(b) if b.len() >= min_shared => {
                    if !staging.is_empty() {
                        push(staging.split().freeze());
                    }
                    push(b.clone());
                }
                _ => staging.extend_from_slice(slice),
            };
        let payload_shared = match &p.payload {
            Section::Shared(b) => Some(*b),
            _ => None,
        };
        section(staging, payload_shared, p.payload.as_slice());
        section(staging, Some(p.kwargs), p.kwargs);
        section(staging, Some(p.attachment), p.attachment);
        Ok(())
    }

    /// Length of the encoded frame, header included. Fails like [`Frame::encode`].
    pub fn encoded_len(&self) -> Result<u64, ProtocolError> {
        Ok(self.parts()?.header()?.frame_len())
    }
}

/// Encodes a plain REPLY (no annotations, no attachment, not a stream) of `result` into
/// `dst`, after `check` accepted the frame's length (header included): exactly the bytes of
/// the equivalent [`Frame::Reply`], without building the owned frame. Appends nothing on
/// error.
pub(crate) fn encode_reply_slice(
    dst: &mut BytesMut,
    request_id: RequestId,
    codec: CodecId,
    result: &[u8],
    check: impl FnOnce(u64) -> Result<(), ProtocolError>,
) -> Result<(), ProtocolError> {
    encode_result_slice(dst, Kind::REPLY, request_id, codec, result, check)
}

/// [`encode_reply_slice`] for a plain STREAM_ITEM (no annotations, no attachment): exactly
/// the bytes of the equivalent [`Frame::StreamItem`].
pub(crate) fn encode_item_slice(
    dst: &mut BytesMut,
    request_id: RequestId,
    codec: CodecId,
    item: &[u8],
    check: impl FnOnce(u64) -> Result<(), ProtocolError>,
) -> Result<(), ProtocolError> {
    encode_result_slice(dst, Kind::STREAM_ITEM, request_id, codec, item, check)
}

fn encode_result_slice(
    dst: &mut BytesMut,
    kind: Kind,
    request_id: RequestId,
    codec: CodecId,
    result: &[u8],
    check: impl FnOnce(u64) -> Result<(), ProtocolError>,
) -> Result<(), ProtocolError> {
    let header = Header {
        version: VERSION,
        kind,
        flags: Flags::EMPTY,
        codec,
        provider: ProviderId(0),
        request_id,
        route_len: 0,
        annotations_len: 0,
        payload_len: len_u32("payload", result.len())?,
        kwargs_len: 0,
        attachment_len: 0,
    };
    // A plain REPLY's header breaks a rule only by its codec or request id: the full check
    // (and its error) only then.
    if !codec.is_codec() || request_id == RequestId::NONE {
        header.check()?;
    }
    debug_assert!(header.check().is_ok());
    check(header.frame_len())?;
    dst.reserve(HEADER_LEN + result.len());
    dst.extend_from_slice(&header.to_bytes());
    dst.extend_from_slice(result);
    Ok(())
}

/// A CALL frame borrowed from its parts.
///
/// [`CallRef::encode`] writes exactly the bytes of the equivalent [`Frame::Call`], without
/// building the owned frame first: nothing to allocate, and no shared `Bytes` whose reference
/// count many sending threads would touch (a client sends many calls with one method name).
#[derive(Debug, Clone, Copy)]
pub struct CallRef<'a> {
    /// Matches the reply; strictly increasing per connection, never 0.
    pub request_id: RequestId,
    /// The provider addressed.
    pub provider: ProviderId,
    /// Codec of `args` and `kwargs`; never 0.
    pub codec: CodecId,
    /// No reply wanted (flag ONEWAY).
    pub oneway: bool,
    /// Method name (the route section); checked like [`Method::new`].
    pub method: &'a str,
    /// Deadline, correlation id, user key/values.
    pub annotations: &'a Annotations,
    /// Positional arguments, encoded with `codec`.
    pub args: &'a [u8],
    /// Keyword arguments, encoded with `codec`, or empty.
    pub kwargs: &'a [u8],
    /// Raw bytes after the sections, or empty.
    pub attachment: &'a [u8],
}

impl Call {
    /// The call's parts, borrowed.
    pub fn borrowed(&self) -> CallRef<'_> {
        CallRef {
            request_id: self.request_id,
            provider: self.provider,
            codec: self.codec,
            oneway: self.oneway,
            method: self.method.as_str(),
            annotations: &self.annotations,
            args: &self.args,
            kwargs: &self.kwargs,
            attachment: &self.attachment,
        }
    }
}

impl<'a> CallRef<'a> {
    /// Appends the encoded frame to `dst`; fails (appending nothing) like [`Frame::encode`]
    /// would for the same CALL, or for a method name [`Method::new`] refuses.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        self.encode_checked(dst, |_| Ok(()))
    }

    /// [`CallRef::encode`], after `check` accepted the frame's length (header included):
    /// the header is built once for both.
    pub(crate) fn encode_checked(
        &self,
        dst: &mut BytesMut,
        check: impl FnOnce(u64) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        self.encode_checked_flags(dst, check, Flags::EMPTY)
    }

    /// [`CallRef::encode_checked`] with `extra` flags set (COMPRESSED, for a call whose
    /// sections were compressed).
    pub(crate) fn encode_checked_flags(
        &self,
        dst: &mut BytesMut,
        check: impl FnOnce(u64) -> Result<(), ProtocolError>,
        extra: Flags,
    ) -> Result<(), ProtocolError> {
        let mut header = self.header()?;
        if extra != Flags::EMPTY {
            header.flags = header.flags.union(extra);
            header.check()?;
        }
        check(header.frame_len())?;
        write_head(dst, &header, self.sections());
        dst.extend_from_slice(self.attachment);
        Ok(())
    }

    /// Length of the encoded frame, header included. Fails like [`CallRef::encode`].
    pub fn encoded_len(&self) -> Result<u64, ProtocolError> {
        Ok(self.header()?.frame_len())
    }

    /// Appends the frame's header and sections, all but an attachment of
    /// `attachment_len` bytes that the caller sends right after (instead of
    /// `self.attachment`, which must be empty), once `check` accepted the frame's length.
    pub(crate) fn encode_head_with(
        &self,
        dst: &mut BytesMut,
        attachment_len: usize,
        check: impl FnOnce(u64) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        if !self.attachment.is_empty() {
            return Err(ProtocolError::InvalidArgument(
                "a call sent with a separate attachment must have an empty `attachment`",
            ));
        }
        Method::check(self.method)?;
        let header = data_header(
            Kind::CALL,
            if self.oneway {
                Flags::ONEWAY
            } else {
                Flags::EMPTY
            },
            self.codec,
            self.provider,
            self.request_id,
            self.sections(),
            attachment_len,
        )?;
        check(header.frame_len())?;
        write_head(dst, &header, self.sections());
        Ok(())
    }

    /// The checked header.
    fn header(&self) -> Result<Header, ProtocolError> {
        Method::check(self.method)?;
        data_header(
            Kind::CALL,
            if self.oneway {
                Flags::ONEWAY
            } else {
                Flags::EMPTY
            },
            self.codec,
            self.provider,
            self.request_id,
            self.sections(),
            self.attachment.len(),
        )
    }

    /// The sections before the attachment: route, annotations, payload, kwargs.
    fn sections(&self) -> [&'a [u8]; 4] {
        [
            self.method.as_bytes(),
            self.annotations.as_bytes(),
            self.args,
            self.kwargs,
        ]
    }
}

/// The checked header of a data frame from its fields and sections.
#[inline]
fn data_header(
    kind: Kind,
    flags: Flags,
    codec: CodecId,
    provider: ProviderId,
    request_id: RequestId,
    [route, annotations, payload, kwargs]: [&[u8]; 4],
    attachment_len: usize,
) -> Result<Header, ProtocolError> {
    let header = Header {
        version: VERSION,
        kind,
        flags,
        codec,
        provider,
        request_id,
        route_len: len_u16("route", route.len())?,
        annotations_len: len_u32("annotations", annotations.len())?,
        payload_len: len_u32("payload", payload.len())?,
        kwargs_len: len_u32("kwargs", kwargs.len())?,
        attachment_len: len_u32("attachment", attachment_len)?,
    };
    header.check()?;
    Ok(header)
}

/// Writes the header and the sections before the attachment.
#[inline]
fn write_head(dst: &mut BytesMut, header: &Header, sections: [&[u8]; 4]) {
    let len = HEADER_LEN + sections.iter().map(|s| s.len()).sum::<usize>();
    dst.reserve(len);
    dst.extend_from_slice(&header.to_bytes());
    // Empty sections are common (no annotations, no kwargs): skip the copy calls.
    for section in sections {
        if !section.is_empty() {
            dst.extend_from_slice(section);
        }
    }
}

fn put_codecs(
    dst: &mut BytesMut,
    what: &'static str,
    codecs: &[CodecId],
) -> Result<(), ProtocolError> {
    dst.put_u8(len_u8(what, codecs.len())?);
    for c in codecs {
        if !c.is_codec() {
            return Err(ProtocolError::InvalidArgument(
                "codec lists hold ids 1-254 only",
            ));
        }
        dst.put_u8(c.0);
    }
    Ok(())
}

fn put_limits(dst: &mut BytesMut, l: &Limits) -> Result<(), ProtocolError> {
    l.validate()?;
    dst.put_u32(l.max_frame_len);
    dst.put_u32(l.max_annotations_len);
    dst.put_u32(l.max_in_flight);
    Ok(())
}

fn put_extensions(dst: &mut BytesMut, e: &Extensions) {
    // `Extensions::set` keeps tags non-zero, unique and values ≤ 65535 bytes.
    for (tag, value) in e.iter() {
        dst.put_u8(tag.0);
        dst.put_u16(u16::try_from(value.len()).unwrap_or(u16::MAX));
        dst.put_slice(value);
    }
}

fn encode_hello(h: &Hello) -> Result<BytesMut, ProtocolError> {
    if h.versions.is_empty() || h.codecs.is_empty() {
        return Err(ProtocolError::InvalidArgument(
            "HELLO needs at least one version and one codec",
        ));
    }
    let mut b = BytesMut::new();
    b.put_u8(len_u8("version list", h.versions.len())?);
    b.put_slice(&h.versions);
    put_codecs(&mut b, "codec list", &h.codecs)?;
    put_limits(&mut b, &h.limits)?;
    put_extensions(&mut b, &h.extensions);
    Ok(b)
}

fn encode_welcome(w: &Welcome) -> Result<BytesMut, ProtocolError> {
    if !w.accepted.contains(&w.codec) {
        return Err(ProtocolError::InvalidArgument(
            "WELCOME's codec must be in its accepted set",
        ));
    }
    let mut b = BytesMut::new();
    b.put_u8(w.version);
    b.put_u8(w.codec.0);
    put_codecs(&mut b, "accepted set", &w.accepted)?;
    put_limits(&mut b, &w.limits)?;
    put_extensions(&mut b, &w.extensions);
    Ok(b)
}

fn encode_refuse(r: &Refuse) -> Result<BytesMut, ProtocolError> {
    let mut b = BytesMut::new();
    b.put_u32(r.code.0);
    b.put_u8(len_u8("version list", r.versions.len())?);
    b.put_slice(&r.versions);
    put_codecs(&mut b, "accepted set", &r.accepted)?;
    b.put_u16(len_u16("refuse message", r.message.len())?);
    b.put_slice(r.message.as_bytes());
    Ok(b)
}

fn encode_goaway(g: &GoAway) -> Result<BytesMut, ProtocolError> {
    let mut b = BytesMut::new();
    b.put_u64(g.last_request_id.0);
    b.put_u32(g.code.0);
    b.put_u16(len_u16("goaway message", g.message.len())?);
    b.put_slice(g.message.as_bytes());
    Ok(b)
}

fn encode_error_body(e: &ErrorBody) -> Result<BytesMut, ProtocolError> {
    let mut b = BytesMut::new();
    b.put_u32(e.code.0);
    b.put_u16(len_u16("error type name", e.type_name.len())?);
    b.put_slice(e.type_name.as_bytes());
    b.put_u32(len_u32("error message", e.message.len())?);
    b.put_slice(e.message.as_bytes());
    b.put_u32(len_u32("error trace", e.trace.len())?);
    b.put_slice(e.trace.as_bytes());
    put_codecs(&mut b, "accepted set", &e.accepted)?;
    if has_names(e.code) {
        b.put_u16(len_u16("error names", e.names.len())?);
        for n in &e.names {
            b.put_u16(len_u16("error name", n.len())?);
            b.put_slice(n.as_bytes());
        }
    } else if !e.names.is_empty() {
        return Err(ProtocolError::InvalidArgument(
            "an ERROR body lists names only with UNKNOWN_METHOD or UNKNOWN_PROVIDER",
        ));
    }
    b.put_slice(&e.detail);
    Ok(b)
}

/// Whether an ERROR body with this code carries the names list (SPEC §7).
fn has_names(code: ErrorCode) -> bool {
    code == ErrorCode::UNKNOWN_METHOD || code == ErrorCode::UNKNOWN_PROVIDER
}

/// A cursor over a body, handing out sub-slices of the frame's `Bytes` without copying.
struct Reader {
    what: &'static str,
    buf: Bytes,
}

impl Reader {
    fn take(&mut self, n: usize) -> Result<Bytes, ProtocolError> {
        if self.buf.len() < n {
            return Err(ProtocolError::MalformedBody {
                what: self.what,
                problem: "truncated",
            });
        }
        Ok(self.buf.split_to(n))
    }
    fn u8(&mut self) -> Result<u8, ProtocolError> {
        let b = self.take(1)?;
        Ok(b.first().copied().unwrap_or_default())
    }
    fn u16(&mut self) -> Result<u16, ProtocolError> {
        let b = self.take(2)?;
        let mut a = [0u8; 2];
        a.copy_from_slice(&b);
        Ok(u16::from_be_bytes(a))
    }
    fn u32(&mut self) -> Result<u32, ProtocolError> {
        let b = self.take(4)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(&b);
        Ok(u32::from_be_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, ProtocolError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&b);
        Ok(u64::from_be_bytes(a))
    }
    fn string(&mut self, len: usize, what: &'static str) -> Result<String, ProtocolError> {
        let b = self.take(len)?;
        String::from_utf8(b.to_vec()).map_err(|_| ProtocolError::InvalidUtf8 { what })
    }
    fn codecs(&mut self, min: usize) -> Result<Vec<CodecId>, ProtocolError> {
        let n = usize::from(self.u8()?);
        if n < min {
            return Err(ProtocolError::MalformedBody {
                what: self.what,
                problem: "codec list is empty",
            });
        }
        let ids = self.take(n)?;
        let ids: Vec<CodecId> = ids.iter().map(|&b| CodecId(b)).collect();
        if ids.iter().any(|c| !c.is_codec()) {
            return Err(ProtocolError::MalformedBody {
                what: self.what,
                problem: "codec list holds 0 or 255",
            });
        }
        Ok(ids)
    }
    fn versions(&mut self, min: usize) -> Result<Vec<u8>, ProtocolError> {
        let n = usize::from(self.u8()?);
        if n < min {
            return Err(ProtocolError::MalformedBody {
                what: self.what,
                problem: "version list is empty",
            });
        }
        Ok(self.take(n)?.to_vec())
    }
    fn limits(&mut self) -> Result<Limits, ProtocolError> {
        let l = Limits {
            max_frame_len: self.u32()?,
            max_annotations_len: self.u32()?,
            max_in_flight: self.u32()?,
        };
        if l.validate().is_err() {
            return Err(ProtocolError::MalformedBody {
                what: self.what,
                problem: "limits below the minimum (max_frame_len < 4096 or max_in_flight = 0)",
            });
        }
        Ok(l)
    }
    /// The extension entries that fill the rest of a HELLO or WELCOME body (§6.1.1).
    fn extensions(&mut self) -> Result<Extensions, ProtocolError> {
        let mut e = Extensions::new();
        while !self.buf.is_empty() {
            let tag = ExtensionTag(self.u8()?);
            let n = usize::from(self.u16()?);
            let value = self.take(n)?;
            if tag.0 == 0 {
                return Err(ProtocolError::MalformedBody {
                    what: self.what,
                    problem: "extension tag 0",
                });
            }
            if e.get(tag).is_some() {
                return Err(ProtocolError::MalformedBody {
                    what: self.what,
                    problem: "an extension tag appears twice",
                });
            }
            e.0.push((tag, value));
        }
        Ok(e)
    }
    fn end(self) -> Result<(), ProtocolError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::MalformedBody {
                what: self.what,
                problem: "trailing bytes",
            })
        }
    }
}

/// Builds a frame from a checked header and its sections (split from one `Bytes`).
#[inline]
pub(crate) fn assemble(
    h: &Header,
    route: Bytes,
    annotations: Bytes,
    payload: Bytes,
    kwargs: Bytes,
    attachment: Bytes,
) -> Result<Frame, ProtocolError> {
    let annotations = Annotations::from_wire(annotations)?;
    let body = |what| Reader {
        what,
        buf: payload.clone(),
    };
    Ok(match h.kind {
        Kind::HELLO => {
            let mut r = body("HELLO body");
            let f = Hello {
                versions: r.versions(1)?,
                codecs: r.codecs(1)?,
                limits: r.limits()?,
                extensions: r.extensions()?,
            };
            r.end()?;
            Frame::Hello(f)
        }
        Kind::WELCOME => {
            let mut r = body("WELCOME body");
            let version = r.u8()?;
            let codec = CodecId(r.u8()?);
            let accepted = r.codecs(1)?;
            let limits = r.limits()?;
            let extensions = r.extensions()?;
            r.end()?;
            if !accepted.contains(&codec) {
                return Err(ProtocolError::MalformedBody {
                    what: "WELCOME body",
                    problem: "chosen codec is not in the accepted set",
                });
            }
            Frame::Welcome(Welcome {
                version,
                codec,
                accepted,
                limits,
                extensions,
            })
        }
        Kind::REFUSE => {
            let mut r = body("REFUSE body");
            let code = ErrorCode(r.u32()?);
            let versions = r.versions(0)?;
            let accepted = r.codecs(0)?;
            let n = usize::from(r.u16()?);
            let message = r.string(n, "REFUSE message")?;
            r.end()?;
            Frame::Refuse(Refuse {
                code,
                versions,
                accepted,
                message,
            })
        }
        Kind::GOAWAY => {
            let mut r = body("GOAWAY body");
            let last_request_id = RequestId(r.u64()?);
            let code = ErrorCode(r.u32()?);
            let n = usize::from(r.u16()?);
            let message = r.string(n, "GOAWAY message")?;
            r.end()?;
            Frame::GoAway(GoAway {
                last_request_id,
                code,
                message,
            })
        }
        Kind::ERROR => {
            let mut r = body("ERROR body");
            let code = ErrorCode(r.u32()?);
            let n = usize::from(r.u16()?);
            let type_name = r.string(n, "error type name")?;
            let n = r.u32()? as usize;
            let message = r.string(n, "error message")?;
            let n = r.u32()? as usize;
            let trace = r.string(n, "error trace")?;
            let accepted = r.codecs(0)?;
            let mut names = Vec::new();
            if has_names(code) {
                // Read one by one: each is checked against what the body holds before it
                // takes any memory.
                for _ in 0..r.u16()? {
                    let n = usize::from(r.u16()?);
                    names.push(r.string(n, "error name")?);
                }
            }
            let detail = r.buf;
            if h.codec == CodecId::NONE && !detail.is_empty() {
                return Err(ProtocolError::MalformedBody {
                    what: "ERROR body",
                    problem: "detail bytes but codec id 0",
                });
            }
            Frame::Error(ErrorFrame {
                request_id: h.request_id,
                codec: h.codec,
                annotations,
                body: ErrorBody {
                    code,
                    type_name,
                    message,
                    trace,
                    accepted,
                    names,
                    detail,
                },
            })
        }
        Kind::PING | Kind::PONG => {
            let mut d = [0u8; 8];
            if payload.len() != 8 {
                return Err(ProtocolError::BadField {
                    kind: h.kind,
                    field: "payload",
                    problem: "must be exactly 8 bytes",
                });
            }
            d.copy_from_slice(&payload);
            if h.kind == Kind::PING {
                Frame::Ping(d)
            } else {
                Frame::Pong(d)
            }
        }
        Kind::CANCEL => Frame::Cancel(h.request_id),
        Kind::STREAM_END => Frame::StreamEnd(h.request_id),
        Kind::CREDIT => {
            let mut r = body("CREDIT body");
            let n = r.u32()?;
            r.end()?;
            if n == 0 {
                return Err(ProtocolError::MalformedBody {
                    what: "CREDIT body",
                    problem: "grants 0 items (a credit is at least 1)",
                });
            }
            Frame::Credit(h.request_id, n)
        }
        Kind::CALL => {
            let method = Method::new(route).map_err(|e| match e {
                ProtocolError::InvalidUtf8 { .. } => ProtocolError::InvalidUtf8 { what: "route" },
                other => other,
            })?;
            Frame::Call(Call {
                request_id: h.request_id,
                provider: h.provider,
                codec: h.codec,
                oneway: h.flags.contains(Flags::ONEWAY),
                upload: h.flags.contains(Flags::UPLOAD),
                method,
                annotations,
                args: payload,
                kwargs,
                attachment,
            })
        }
        Kind::REPLY => Frame::Reply(Reply {
            request_id: h.request_id,
            codec: h.codec,
            stream: h.flags.contains(Flags::STREAM),
            annotations,
            result: payload,
            attachment,
        }),
        Kind::STREAM_ITEM => Frame::StreamItem(StreamItem {
            request_id: h.request_id,
            codec: h.codec,
            annotations,
            item: payload,
            attachment,
        }),
        kind => return Err(ProtocolError::UnknownKind { kind }),
    })
}
