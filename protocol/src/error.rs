//! The crate's one error type.

use crate::pyro::{MessageType, SerializerId};
use crate::wire::{CodecId, ErrorCode, Flags, Kind, RequestId};

/// Who caused an error.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Cause {
    /// This side: the caller used the API wrongly or asked for something the peer's limits
    /// forbid. Nothing was sent; fix the call.
    Local,
    /// The peer sent bytes or frames that break the protocol, or refused us.
    Peer,
    /// A deadline passed (ping, handshake or call deadline).
    Timeout,
}

/// Everything that can go wrong in the protocol layer.
///
/// [`ProtocolError::cause`] says who caused it, [`ProtocolError::is_retryable`] whether
/// retrying (usually on a new connection) can help, and [`ProtocolError::code`] which wire
/// code reports it to the peer.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    // ---- framing (peer) ----
    /// The first four bytes of a frame are not the native magic.
    #[error("bad magic {found:02x?}: not a wirecall native frame (expected 89 57 43 50); check that the peer speaks the native protocol and not Pyro5 or TLS")]
    BadMagic {
        /// The bytes found (as many as were available, up to 4).
        found: Vec<u8>,
    },
    /// The header names a protocol version this implementation does not speak.
    #[error("unsupported protocol version {version}; this implementation speaks version 1")]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },
    /// The header names a message kind this version does not know.
    #[error("unknown message kind {kind}; the peer speaks a newer or different protocol")]
    UnknownKind {
        /// The kind found.
        kind: Kind,
    },
    /// The header sets flag bits that are unknown or not allowed on this kind.
    #[error("flags {flags} not allowed on {kind} frames")]
    BadFlags {
        /// The frame's kind.
        kind: Kind,
        /// The offending bits.
        flags: Flags,
    },
    /// A reserved header byte is not zero.
    #[error("reserved header byte at offset {offset} is {value:#04x}, must be 0")]
    ReservedNotZero {
        /// Offset of the byte in the header.
        offset: usize,
        /// The value found.
        value: u8,
    },
    /// A header field has a value this kind does not allow.
    #[error("{kind} frame: {field} {problem}")]
    BadField {
        /// The frame's kind.
        kind: Kind,
        /// The header field or section (`request id`, `provider id`, `codec id`, `route`,
        /// `annotations`, `kwargs`, `attachment`, `payload`).
        field: &'static str,
        /// What is wrong (`must be 0`, `must not be 0`, `must be empty`, ...).
        problem: &'static str,
    },
    /// The frame's declared total length is over the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes; raise max_frame_len on the receiver or send less")]
    FrameTooLarge {
        /// Declared length of the whole frame including its header.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The frame's annotation section is over the limit.
    #[error("annotations of {len} bytes exceed the limit of {max} bytes")]
    AnnotationsTooLarge {
        /// Declared annotation length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A body with a fixed binary form (handshake, error, goaway, annotations) is malformed.
    #[error("malformed {what}: {problem}")]
    MalformedBody {
        /// Which body.
        what: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A text field is not valid UTF-8.
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 {
        /// Which field.
        what: &'static str,
    },
    /// The stream ended in the middle of a frame.
    #[error("connection closed in the middle of a frame ({buffered} bytes buffered)")]
    Truncated {
        /// Bytes of the incomplete frame.
        buffered: usize,
    },

    // ---- compression (peer), SPEC §6.9 ----
    /// A data frame has flag COMPRESSED on a connection where compression is not in force
    /// (named `bad_flags`, like any flag a frame may not carry).
    #[error("{kind} frame has flag COMPRESSED, but compression is not in force on this connection (it was not agreed in the handshake); a peer compresses only after both sides agreed on an algorithm")]
    CompressionNotInForce {
        /// The frame's kind.
        kind: Kind,
    },
    /// A compressed frame declares a decompressed size over the receiver's frame limit
    /// (found before anything was decompressed).
    #[error("compressed frame would inflate to {len} bytes, over the limit of {max} bytes (max_frame_len applies to the decompressed frame); raise max_frame_len on the receiver or send less")]
    DecompressedTooLarge {
        /// Length of the whole frame once decompressed, header included.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A compressed section inflates past the size its prefix declares (decompression
    /// stopped there).
    #[error("the compressed {section} inflates past its declared size of {declared} bytes; decompression stopped there (a zip bomb or a broken sender)")]
    InflatesPastDeclared {
        /// `payload` or `kwargs`.
        section: &'static str,
        /// The size its prefix declared.
        declared: u64,
    },
    /// A compressed section is malformed: too short for its prefix, an algorithm not in
    /// force, or data that does not decompress to exactly the declared size.
    #[error("bad compressed {section}: {problem}")]
    BadCompressedData {
        /// `payload` or `kwargs`.
        section: &'static str,
        /// What is wrong.
        problem: String,
    },

    // ---- connection (peer) ----
    /// A frame arrived that the connection's state does not allow (a CALL before the
    /// handshake, a second HELLO, a REPLY sent to a server...).
    #[error("unexpected {kind} frame while {state}")]
    UnexpectedFrame {
        /// The frame's kind.
        kind: Kind,
        /// The connection's state.
        state: &'static str,
    },
    /// A frame names a request id that is not in flight.
    #[error("{kind} frame for unknown request {request_id}")]
    UnknownRequest {
        /// The frame's kind.
        kind: Kind,
        /// The request id.
        request_id: RequestId,
    },
    /// A CALL reused or lowered a request id (ids strictly increase).
    #[error("request id {request_id} is not above the last one ({last}); request ids must strictly increase")]
    RequestIdNotIncreasing {
        /// The id received.
        request_id: RequestId,
        /// The highest id seen before.
        last: RequestId,
    },
    /// Too many calls in flight: the peer went over our limit, or a local call would go over
    /// the peer's.
    #[error("too many calls in flight (limit {max}); wait for one to complete")]
    TooManyInFlight {
        /// The limit.
        max: u32,
    },
    /// The lengths a frame's `wc.bulk` annotation lists do not add up to its attachment
    /// section (SPEC §6.11): that call (or answer) fails, the connection stays up.
    #[error("the frame's bulk values (wc.bulk) add up to {declared} bytes but its attachment holds {attachment}; the sender's bulk lengths do not match what it sent")]
    BulkMismatch {
        /// The sum of the `wc.bulk` lengths.
        declared: u64,
        /// The attachment section's length.
        attachment: u64,
    },
    /// The frame's codec is not accepted; `accepted` lists the codecs that are.
    #[error("codec {codec} refused; this side accepts {}", names(accepted))]
    CodecRefused {
        /// The refused codec.
        codec: CodecId,
        /// The accepted set.
        accepted: Vec<CodecId>,
    },
    /// Handshake: no protocol version in common.
    #[error("no protocol version in common: offered {offered:?}, supported {supported:?}")]
    NoCommonVersion {
        /// Versions the client offered.
        offered: Vec<u8>,
        /// Versions the server supports.
        supported: Vec<u8>,
    },
    /// Handshake: no codec in common.
    #[error(
        "no codec in common: the client offered {}, the server accepts {}",
        names(offered),
        names(accepted)
    )]
    NoCommonCodec {
        /// Codecs the client offered.
        offered: Vec<CodecId>,
        /// Codecs the server accepts.
        accepted: Vec<CodecId>,
    },
    /// The server refused the handshake.
    #[error("server refused the handshake ({code}): {message}; it speaks versions {versions:?} and accepts {}", names(accepted))]
    Refused {
        /// Why.
        code: ErrorCode,
        /// Versions the server speaks.
        versions: Vec<u8>,
        /// Codecs the server accepts.
        accepted: Vec<CodecId>,
        /// The server's message.
        message: String,
    },
    /// The peer closed the connection with an error (GOAWAY with a code other than
    /// NO_ERROR).
    #[error("peer closed the connection ({code}): {message}")]
    PeerClosed {
        /// The peer's code.
        code: ErrorCode,
        /// The peer's message.
        message: String,
    },
    /// A CALL arrived after the sender's own GOAWAY.
    #[error("{kind} frame after the peer's GOAWAY")]
    AfterGoAway {
        /// The frame's kind.
        kind: Kind,
    },
    /// The peer broke stream flow control (SPEC §6.12): it sent a stream item it had no
    /// credit for, or granted more credit than a window holds.
    #[error("flow control violated on call {request_id}: {problem}; the peer must send stream items only while it holds credit")]
    FlowControl {
        /// The streaming call.
        request_id: RequestId,
        /// What the peer did.
        problem: &'static str,
    },

    // ---- Pyro5 dialect (peer), the `pyro` module ----
    /// A Pyro5 message does not start with `PYRO`, or its header does not end with the
    /// magic `4D C5`. The text starts as a Pyro5 daemon's does.
    #[error("invalid message or protocol version: bad Pyro5 {what} {found:02x?}; the peer does not speak Pyro5")]
    PyroBadMagic {
        /// `tag` (the first 4 bytes, expected `PYRO`) or `magic` (bytes 38-39, expected
        /// `4D C5`).
        what: &'static str,
        /// The bytes found (as many as were available).
        found: Vec<u8>,
    },
    /// A Pyro5 header names a protocol version other than 502.
    #[error("invalid protocol version: {version}; this side speaks Pyro5 protocol version 502")]
    PyroUnsupportedVersion {
        /// The version found.
        version: u16,
    },
    /// A Pyro5 message's data and annotations together are over the receiver's limit
    /// (checked from the header, before anything is allocated for the body).
    #[error(
        "message too large ({len}, max={max}); raise max_message_len on the receiver or send less"
    )]
    PyroMessageTooLarge {
        /// Declared data length plus annotations length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A Pyro5 message type the connection's state does not allow (an INVOKE before
    /// CONNECT, a CONNECTOK sent to a server, an unknown type...).
    #[error("invalid msg type {} received (expected: {expected}) while {state}", .msg_type.0)]
    PyroUnexpectedMessage {
        /// The message type found.
        msg_type: MessageType,
        /// The types allowed in this state, as Pyro5 lists them (`1`, `4, 6`).
        expected: &'static str,
        /// The connection's state.
        state: &'static str,
    },
    /// A Pyro5 message uses a serializer this side does not accept; `accepted` lists the
    /// ones it does.
    #[error(
        "serializer {serializer} refused; this server accepts {}",
        pyro_names(accepted)
    )]
    PyroSerializerRefused {
        /// The refused serializer.
        serializer: SerializerId,
        /// The accepted set.
        accepted: Vec<SerializerId>,
    },
    /// A Pyro5 RESULT carries another sequence number than the INVOKE it answers.
    #[error("invoke: reply sequence out of sync, got {got} expected {expected}")]
    PyroSequenceMismatch {
        /// The reply's sequence number.
        got: u16,
        /// The request's.
        expected: u16,
    },
    /// A Pyro5 reply uses another serializer than its request.
    #[error("invalid serializer in response: {got} (the request used {expected})")]
    PyroSerializerMismatch {
        /// The reply's serializer.
        got: SerializerId,
        /// The request's.
        expected: SerializerId,
    },
    /// A Pyro5 server answered CONNECT with CONNECTFAIL.
    #[error("connection rejected: {reason}")]
    PyroConnectFailed {
        /// The server's reason, decoded when it is a marshal, json or serpent string,
        /// else a description of the payload.
        reason: String,
    },

    // ---- timeouts ----
    /// The handshake did not complete in time.
    #[error("handshake did not complete in time")]
    HandshakeTimeout,
    /// The connection was idle (no call in flight, no frame received) for longer than the
    /// idle timeout.
    #[error("connection idle for longer than the idle timeout; closed to free its resources (reconnect to call again)")]
    IdleTimeout,
    /// A frame's bytes began to arrive but the frame did not complete in time (a slow or
    /// stalled peer).
    #[error("a frame did not complete within the frame timeout; the peer is too slow or stalled")]
    FrameTimeout,
    /// A PING got no PONG in time.
    #[error("peer did not answer a ping in time; the connection is probably dead")]
    PingTimeout,
    /// A call's deadline passed before its reply arrived.
    #[error("deadline of call {request_id} passed")]
    DeadlineExceeded {
        /// The call.
        request_id: RequestId,
    },

    // ---- local ----
    /// A section is too long for its length field, or over the peer's limit.
    #[error("cannot send: {what} is {len} bytes, over the limit of {max}")]
    TooLong {
        /// Which section or field.
        what: &'static str,
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A value given to the API is not valid (empty method name, codec 0 in a call...).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The connection is not in a state that allows this operation.
    #[error("cannot {operation} while {state}")]
    InvalidState {
        /// What was attempted.
        operation: &'static str,
        /// The connection's state.
        state: &'static str,
    },
    /// The request is not in flight here (already answered, cancelled or expired): drop
    /// the result.
    #[error("request {request_id} is not in flight (already answered, cancelled or expired); drop the result")]
    NotInFlight {
        /// The request id.
        request_id: RequestId,
    },
    /// A local call would go over the peer's in-flight limit.
    #[error("cannot start a call: {max} calls already in flight, the peer's limit; wait for one to complete")]
    InFlightLimit {
        /// The peer's limit.
        max: u32,
    },
    /// No new calls after GOAWAY (ours or the peer's); open a new connection.
    #[error("connection is going away; open a new connection for new calls")]
    GoingAway,
    /// A stream item cannot be sent yet: the receiver granted no credit for it (SPEC §6.12).
    /// Wait for its CREDIT (a [`ServerEvent::Credit`](crate::ServerEvent::Credit)).
    #[error("call {request_id} has no stream credit left; wait for the receiver's CREDIT before sending the next item")]
    NoCredit {
        /// The streaming call.
        request_id: RequestId,
    },
    /// The connection is closed.
    #[error("connection is closed")]
    Closed,
}

/// Pyro5 serializer ids by name, comma-separated (`serpent, json`).
fn pyro_names(ids: &[SerializerId]) -> String {
    ids.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Codec ids by name, comma-separated (`json, msgpack`).
fn names(ids: &[CodecId]) -> String {
    ids.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl ProtocolError {
    /// Who caused the error.
    pub fn cause(&self) -> Cause {
        use ProtocolError::*;
        match self {
            HandshakeTimeout
            | IdleTimeout
            | FrameTimeout
            | PingTimeout
            | DeadlineExceeded { .. } => Cause::Timeout,
            TooLong { .. }
            | InvalidArgument(_)
            | InvalidState { .. }
            | InFlightLimit { .. }
            | NotInFlight { .. }
            | NoCredit { .. }
            | GoingAway
            | Closed => Cause::Local,
            _ => Cause::Peer,
        }
    }

    /// Whether retrying (the call, or connecting again) can succeed without changing
    /// anything.
    pub fn is_retryable(&self) -> bool {
        use ProtocolError::*;
        match self {
            HandshakeTimeout
            | IdleTimeout
            | FrameTimeout
            | PingTimeout
            | TooManyInFlight { .. }
            | InFlightLimit { .. }
            | GoingAway
            | Closed => true,
            PeerClosed { code, .. } | Refused { code, .. } => code.is_retryable(),
            _ => false,
        }
    }

    /// The wire code that reports this error to the peer.
    pub fn code(&self) -> ErrorCode {
        use ProtocolError::*;
        match self {
            UnsupportedVersion { .. } | NoCommonVersion { .. } | PyroUnsupportedVersion { .. } => {
                ErrorCode::UNSUPPORTED_VERSION
            }
            NoCommonCodec { .. } => ErrorCode::NO_COMMON_CODEC,
            CodecRefused { .. } | PyroSerializerRefused { .. } => ErrorCode::CODEC_REFUSED,
            FrameTooLarge { .. }
            | AnnotationsTooLarge { .. }
            | TooLong { .. }
            | DecompressedTooLarge { .. }
            | InflatesPastDeclared { .. }
            | PyroMessageTooLarge { .. } => ErrorCode::LIMIT_EXCEEDED,
            TooManyInFlight { .. } | InFlightLimit { .. } => ErrorCode::TOO_MANY_IN_FLIGHT,
            BulkMismatch { .. } => ErrorCode::BAD_ARGUMENTS,
            HandshakeTimeout | IdleTimeout | FrameTimeout | PingTimeout => ErrorCode::TIMEOUT,
            DeadlineExceeded { .. } => ErrorCode::DEADLINE_EXCEEDED,
            GoingAway => ErrorCode::SHUTTING_DOWN,
            FlowControl { .. } => ErrorCode::FLOW_CONTROL,
            Refused { code, .. } | PeerClosed { code, .. } => *code,
            InvalidArgument(_)
            | InvalidState { .. }
            | NotInFlight { .. }
            | NoCredit { .. }
            | Closed => ErrorCode::INTERNAL_ERROR,
            _ => ErrorCode::PROTOCOL_ERROR,
        }
    }

    /// A short stable name for the variant, used by the conformance vectors
    /// (`conformance/vectors/frames/README.md`).
    pub fn kind_name(&self) -> &'static str {
        use ProtocolError::*;
        match self {
            BadMagic { .. } => "bad_magic",
            UnsupportedVersion { .. } => "unsupported_version",
            UnknownKind { .. } => "unknown_kind",
            BadFlags { .. } => "bad_flags",
            ReservedNotZero { .. } => "reserved_not_zero",
            BadField { .. } => "bad_field",
            FrameTooLarge { .. } => "frame_too_large",
            AnnotationsTooLarge { .. } => "annotations_too_large",
            MalformedBody { .. } => "malformed_body",
            InvalidUtf8 { .. } => "invalid_utf8",
            Truncated { .. } => "truncated",
            CompressionNotInForce { .. } => "bad_flags",
            DecompressedTooLarge { .. } => "decompressed_too_large",
            InflatesPastDeclared { .. } => "inflates_past_declared",
            BadCompressedData { .. } => "bad_compressed_data",
            UnexpectedFrame { .. } => "unexpected_frame",
            UnknownRequest { .. } => "unknown_request",
            RequestIdNotIncreasing { .. } => "request_id_not_increasing",
            TooManyInFlight { .. } => "too_many_in_flight",
            CodecRefused { .. } => "codec_refused",
            BulkMismatch { .. } => "bulk_mismatch",
            NoCommonVersion { .. } => "no_common_version",
            NoCommonCodec { .. } => "no_common_codec",
            Refused { .. } => "refused",
            PeerClosed { .. } => "peer_closed",
            AfterGoAway { .. } => "after_goaway",
            FlowControl { .. } => "flow_control",
            PyroBadMagic { .. } => "pyro_bad_magic",
            PyroUnsupportedVersion { .. } => "pyro_unsupported_version",
            PyroMessageTooLarge { .. } => "pyro_message_too_large",
            PyroUnexpectedMessage { .. } => "pyro_unexpected_message",
            PyroSerializerRefused { .. } => "pyro_serializer_refused",
            PyroSequenceMismatch { .. } => "pyro_sequence_mismatch",
            PyroSerializerMismatch { .. } => "pyro_serializer_mismatch",
            PyroConnectFailed { .. } => "pyro_connect_failed",
            HandshakeTimeout => "handshake_timeout",
            IdleTimeout => "idle_timeout",
            FrameTimeout => "frame_timeout",
            PingTimeout => "ping_timeout",
            DeadlineExceeded { .. } => "deadline_exceeded",
            TooLong { .. } => "too_long",
            InvalidArgument(_) => "invalid_argument",
            InvalidState { .. } => "invalid_state",
            InFlightLimit { .. } => "in_flight_limit",
            NotInFlight { .. } => "not_in_flight",
            GoingAway => "going_away",
            NoCredit { .. } => "no_credit",
            Closed => "closed",
        }
    }
}
