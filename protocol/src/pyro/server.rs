//! The server side of a Pyro5 connection: what a Pyro5 daemon does on the wire, without
//! the objects (reference §2).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::decoder::MessageLimits;
use super::io::Io;
use super::message::{AnnotationId, Annotations, Message};
use super::wire::{marshal_str, Flags, MessageType, SerializerId, PYRO_MAX_MESSAGE_SIZE};
use crate::error::ProtocolError;
use crate::wire::CodecId;

/// Configuration of a [`ServerSession`].
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Serializers accepted. A CONNECT in any other gets CONNECTFAIL naming these (a Pyro5
    /// daemon closes silently); an INVOKE in any other closes the connection, as a Pyro5
    /// daemon does.
    pub accepted: Vec<SerializerId>,
    /// Limits on received messages, checked from the header before allocating.
    pub limits: MessageLimits,
    /// Largest data plus annotations length this side sends (the peer's limit; Pyro5's
    /// default is 1 GiB). Replies over it are refused locally.
    pub max_send_len: u32,
    /// Fail the connection when it is not connected (CONNECT received and accepted) this
    /// long after it started.
    pub handshake_timeout: Option<Duration>,
    /// Fail the connection when a message whose first bytes arrived does not complete
    /// within this time.
    pub message_timeout: Option<Duration>,
    /// Close the connection after this long with no request outstanding and no message
    /// received (PING does not count).
    pub idle_timeout: Option<Duration>,
    /// Added to the reason of a CONNECTFAIL for a refused serializer: what else the server
    /// speaks, or how to reach it (e.g. a server whose accepted codecs include no Pyro5
    /// serializer at all names them here).
    pub refusal_hint: Option<String>,
}

impl ServerConfig {
    /// Accepts `accepted`, default limits, a 10 s handshake timeout, a 30 s message timeout
    /// and a 60 s idle timeout (the native server's defaults).
    pub fn new(accepted: Vec<SerializerId>) -> ServerConfig {
        ServerConfig {
            accepted,
            limits: MessageLimits::default(),
            max_send_len: PYRO_MAX_MESSAGE_SIZE,
            handshake_timeout: Some(Duration::from_secs(10)),
            message_timeout: Some(Duration::from_secs(30)),
            idle_timeout: Some(Duration::from_secs(60)),
            refusal_hint: None,
        }
    }

    /// [`ServerConfig::new`] with the codecs of a native accepted set that Pyro5 has a
    /// serializer id for (serpent, marshal, json, msgpack), in that set's order.
    pub fn from_codecs(codecs: &[CodecId]) -> ServerConfig {
        ServerConfig::new(
            codecs
                .iter()
                .filter_map(|&c| SerializerId::from_codec(c))
                .collect(),
        )
    }
}

/// A CONNECT to answer with [`ServerSession::accept`] or [`ServerSession::refuse`].
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Connect {
    /// The sequence number (0 on a first connect, any value on a reconnect), echoed.
    pub seq: u16,
    /// The serializer of the payload and of the reply.
    pub serializer: SerializerId,
    /// The flag bits (CORR_ID, COMPRESSED).
    pub flags: Flags,
    /// The correlation id, when the client set one.
    pub correlation_id: Option<[u8; 16]>,
    /// The client's annotations.
    pub annotations: Annotations,
    /// The serialized handshake dict `{"handshake": .., "object": <object id>}` (zlib
    /// stream when `flags` has COMPRESSED).
    pub payload: Bytes,
}

/// A call to dispatch. Unless [`Invoke::is_oneway`], answer with
/// [`ServerSession::reply`]; no further message is decoded until then.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Invoke {
    /// The sequence number, echoed in the reply.
    pub seq: u16,
    /// The serializer of the payload and of the reply.
    pub serializer: SerializerId,
    /// The flag bits (ONEWAY, BATCH, COMPRESSED, KEEPSERIALIZED, CORR_ID).
    pub flags: Flags,
    /// The correlation id, when the client set one.
    pub correlation_id: Option<[u8; 16]>,
    /// The client's annotations (`BLBI` with KEEPSERIALIZED).
    pub annotations: Annotations,
    /// The serialized `(objectId, method, vargs, kwargs)` (a json object in json), as sent:
    /// a zlib stream when `flags` has COMPRESSED.
    pub payload: Bytes,
}

impl Invoke {
    /// The caller wants no reply (flag ONEWAY).
    pub fn is_oneway(&self) -> bool {
        self.flags.contains(Flags::ONEWAY)
    }

    /// The payload is a batch of calls; the reply is a list (flag BATCH).
    pub fn is_batch(&self) -> bool {
        self.flags.contains(Flags::BATCH)
    }

    /// The payload is zlib-compressed (flag COMPRESSED); the driver inflates it.
    pub fn is_compressed(&self) -> bool {
        self.flags.contains(Flags::COMPRESSED)
    }
}

/// What a [`ServerSession`] reports.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// The client's CONNECT: answer with [`ServerSession::accept`] or
    /// [`ServerSession::refuse`].
    Connect(Connect),
    /// A call.
    Invoke(Invoke),
    /// A PING; the PING `pong` answer was already queued.
    Ping {
        /// Its sequence number (0 from Python proxies).
        seq: u16,
        /// Its serializer id (42 from Python proxies), echoed.
        serializer: SerializerId,
    },
}

/// An answer: CONNECTOK, CONNECTFAIL or RESULT. Sequence number, serializer and
/// correlation id come from the request.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Reply {
    /// The serialized answer, in the request's serializer.
    pub payload: Bytes,
    /// EXCEPTION, BATCH, ITEMSTREAMRESULT or COMPRESSED (if the driver compressed the
    /// payload); CORR_ID is set by the session when the request had one.
    pub flags: Flags,
    /// Response annotations (`STRM` with ITEMSTREAMRESULT).
    pub annotations: Annotations,
}

impl Reply {
    /// A plain result (or CONNECTOK/CONNECTFAIL payload).
    pub fn new(payload: impl Into<Bytes>) -> Reply {
        Reply {
            payload: payload.into(),
            ..Reply::default()
        }
    }

    /// A serialized exception dict (flag EXCEPTION).
    pub fn exception(payload: impl Into<Bytes>) -> Reply {
        Reply {
            payload: payload.into(),
            flags: Flags::EXCEPTION,
            annotations: Annotations::new(),
        }
    }

    /// A list of results answering a batch (flag BATCH).
    pub fn batch(payload: impl Into<Bytes>) -> Reply {
        Reply {
            payload: payload.into(),
            flags: Flags::BATCH,
            annotations: Annotations::new(),
        }
    }

    /// A remote iterator with id `stream_id` (a UUID4 string): flags
    /// EXCEPTION|ITEMSTREAMRESULT, annotation `STRM`, and `payload` the serialized
    /// `Pyro5.errors.ProtocolError('result of call is an iterator')` older clients expect.
    pub fn stream(stream_id: &str, payload: impl Into<Bytes>) -> Reply {
        Reply {
            payload: payload.into(),
            flags: Flags::EXCEPTION.union(Flags::ITEMSTREAMRESULT),
            annotations: Annotations::new().with(
                AnnotationId::STRM,
                Bytes::copy_from_slice(stream_id.as_bytes()),
            ),
        }
    }
}

/// Flags a server may set on a reply.
const REPLY_FLAGS: Flags =
    Flags(Flags::EXCEPTION.0 | Flags::COMPRESSED.0 | Flags::BATCH.0 | Flags::ITEMSTREAMRESULT.0);

/// The request being answered.
#[derive(Clone, Copy, Debug)]
struct Pending {
    seq: u16,
    serializer: SerializerId,
    correlation: Option<[u8; 16]>,
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum State {
    /// Nothing received yet (or the first message is incomplete).
    AwaitConnect,
    /// The CONNECT was reported; the driver has not answered.
    Connecting,
    /// Connected: INVOKE and PING.
    Ready,
}

/// The server side of a Pyro5 connection, sans-IO: bytes in through
/// [`handle_input`](Self::handle_input), [`ServerEvent`]s out through
/// [`poll_event`](Self::poll_event), answers in through [`accept`](Self::accept),
/// [`refuse`](Self::refuse) and [`reply`](Self::reply), bytes to send out through
/// [`poll_transmit`](Self::poll_transmit), and the time passed in, never read.
///
/// It follows a Pyro5 daemon's rules (reference §2): CONNECT first; one request answered
/// at a time, in order (a client that pipelines is served in order: input after a
/// request waits in the buffer until the request is answered, so
/// [`wants_input`](Self::wants_input) tells the driver when to read); sequence numbers,
/// serializer and correlation id echoed; no reply to ONEWAY; PING answered with `pong`.
///
/// A method returning `Err` has closed the session: send what
/// [`poll_transmit`](Self::poll_transmit) still has (a CONNECTFAIL before the handshake),
/// then close the transport.
#[derive(Debug)]
pub struct ServerSession {
    io: Io,
    config: ServerConfig,
    state: State,
    pending: Option<Pending>,
    events: VecDeque<ServerEvent>,
    handshake_deadline: Option<Instant>,
    /// When the first bytes of the incomplete message in the input arrived.
    message_started: Option<Instant>,
    /// When the idle period began: the last message other than PING, or the last reply.
    last_activity: Option<Instant>,
}

impl ServerSession {
    /// Starts the server side of an accepted connection at `now`.
    ///
    /// With no serializer accepted, every CONNECT is refused (CONNECTFAIL naming the empty
    /// set and the config's `refusal_hint`).
    pub fn new(config: ServerConfig, now: Instant) -> Result<ServerSession, ProtocolError> {
        Ok(ServerSession {
            io: Io::new(config.limits),
            handshake_deadline: config.handshake_timeout.map(|t| now + t),
            config,
            state: State::AwaitConnect,
            pending: None,
            events: VecDeque::new(),
            message_started: None,
            last_activity: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Whether the CONNECT was accepted.
    pub fn is_connected(&self) -> bool {
        self.state == State::Ready && self.io.closed.is_none()
    }

    /// Whether the session failed or was closed: send what is left to transmit, then close
    /// the transport.
    pub fn is_closed(&self) -> bool {
        self.io.closed.is_some()
    }

    /// Why the session closed ([`ProtocolError::Closed`] after a local close or a refusal).
    pub fn close_reason(&self) -> Option<&ProtocolError> {
        self.io.closed.as_ref()
    }

    /// The sequence number of the request awaiting an answer (a CONNECT or a non-oneway
    /// INVOKE).
    pub fn pending_seq(&self) -> Option<u16> {
        self.pending.map(|p| p.seq)
    }

    /// Whether the session decodes more input now: false while a request awaits its answer
    /// (input waits in the buffer; a driver may stop reading) and once closed.
    pub fn wants_input(&self) -> bool {
        self.pending.is_none() && self.io.closed.is_none()
    }

    /// Bytes received and not yet decoded.
    pub fn buffered_input(&self) -> usize {
        self.io.inbuf.len()
    }

    fn state_name(&self) -> &'static str {
        match self.state {
            State::AwaitConnect => "waiting for CONNECT",
            State::Connecting => "waiting for the CONNECT to be answered",
            State::Ready => "connected",
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Bytes to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.io.poll_transmit()
    }

    /// Whether there are bytes to send.
    pub fn has_transmit(&self) -> bool {
        !self.io.out.is_empty()
    }

    /// Feeds received bytes at `now`; decodes as many messages as the one-request-at-a-time
    /// rule allows.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) -> Result<(), ProtocolError> {
        self.io.ensure_open()?;
        // Input while a request is outstanding waits; a client that does not wait for its
        // answers may have at most one more whole message buffered.
        if self.pending.is_some() {
            let max = self.config.limits.max_message_len as usize + 2 * super::HEADER_LEN;
            if self.io.inbuf.len() + data.len() > max {
                let e = ProtocolError::TooManyInFlight { max: 1 };
                return Err(self.io.fail(e));
            }
        }
        self.io.inbuf.extend_from_slice(data);
        self.process(now)
    }

    /// The transport ended. Bytes of an unfinished (or not yet handled) message are
    /// [`ProtocolError::Truncated`].
    pub fn handle_eof(&mut self) -> Result<(), ProtocolError> {
        self.io.eof()
    }

    /// Closes the session locally; nothing is sent (Pyro5 has no closing message).
    pub fn close(&mut self) {
        if self.io.closed.is_none() {
            self.io.closed = Some(ProtocolError::Closed);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.io.closed.is_some() {
            return None;
        }
        [
            self.handshake_deadline,
            self.message_deadline(),
            self.idle_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn message_deadline(&self) -> Option<Instant> {
        Some(self.message_started? + self.config.message_timeout?)
    }

    fn idle_deadline(&self) -> Option<Instant> {
        if self.state != State::Ready || self.pending.is_some() {
            return None;
        }
        Some(self.last_activity? + self.config.idle_timeout?)
    }

    /// Fires expired timers: the handshake timeout (a CONNECTFAIL is queued when no CONNECT
    /// arrived), the message timeout and the idle timeout. Each closes the session.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ProtocolError> {
        self.io.ensure_open()?;
        if self.handshake_deadline.is_some_and(|d| now >= d) {
            let e = ProtocolError::HandshakeTimeout;
            if self.state == State::AwaitConnect {
                self.connect_fail_marshal(&e);
            }
            return Err(self.io.fail(e));
        }
        if self.message_deadline().is_some_and(|d| now >= d) {
            return Err(self.io.fail(ProtocolError::FrameTimeout));
        }
        if self.idle_deadline().is_some_and(|d| now >= d) {
            return Err(self.io.fail(ProtocolError::IdleTimeout));
        }
        Ok(())
    }

    /// Answers the CONNECT with CONNECTOK; `reply.payload` is the serialized
    /// `{"handshake": .., "meta": {"methods": [..], "oneway": [..], "attrs": [..]}}` (a
    /// Python client needs both keys). Then decodes the input that waited.
    pub fn accept(&mut self, reply: Reply, now: Instant) -> Result<(), ProtocolError> {
        self.io.ensure_open()?;
        self.answer(
            State::Connecting,
            "accept a CONNECT",
            MessageType::CONNECTOK,
            None,
            reply,
        )?;
        self.state = State::Ready;
        self.handshake_deadline = None;
        self.last_activity = Some(now);
        self.process(now)
    }

    /// Answers the CONNECT with CONNECTFAIL (`reply.payload`: a serialized string in the
    /// client's serializer), then the session is closed: send what is left to transmit and
    /// close the transport.
    pub fn refuse(&mut self, reply: Reply) -> Result<(), ProtocolError> {
        self.io.ensure_open()?;
        self.answer(
            State::Connecting,
            "refuse a CONNECT",
            MessageType::CONNECTFAIL,
            None,
            reply,
        )?;
        self.io.closed = Some(ProtocolError::Closed);
        Ok(())
    }

    /// [`refuse`](Self::refuse) with `reason` as a marshal string (serializer id 2), which
    /// every Python client reads whatever serializer it uses, as a Pyro5 daemon does for
    /// the errors it meets before knowing the serializer.
    pub fn refuse_with_message(&mut self, reason: &str) -> Result<(), ProtocolError> {
        self.io.ensure_open()?;
        let payload = marshal_str(reason).ok_or(ProtocolError::TooLong {
            what: "CONNECTFAIL reason",
            len: reason.len() as u64,
            max: u64::from(u32::MAX),
        })?;
        self.answer(
            State::Connecting,
            "refuse a CONNECT",
            MessageType::CONNECTFAIL,
            Some(SerializerId::MARSHAL),
            Reply::new(payload),
        )?;
        self.io.closed = Some(ProtocolError::Closed);
        Ok(())
    }

    /// Answers the outstanding INVOKE `seq` with RESULT. Then decodes the input that waited.
    pub fn reply(&mut self, seq: u16, reply: Reply, now: Instant) -> Result<(), ProtocolError> {
        self.io.ensure_open()?;
        match self.pending {
            Some(p) if self.state == State::Ready && p.seq == seq => {}
            _ => {
                return Err(ProtocolError::InvalidState {
                    operation: "reply to this sequence number",
                    state: "no INVOKE with it awaits an answer",
                })
            }
        }
        self.answer(State::Ready, "reply", MessageType::RESULT, None, reply)?;
        self.last_activity = Some(now);
        self.process(now)
    }

    /// Sends the answer to the pending request; on an error nothing is sent and the
    /// request still awaits its answer (a smaller one, an exception...).
    fn answer(
        &mut self,
        state: State,
        operation: &'static str,
        msg_type: MessageType,
        serializer: Option<SerializerId>,
        reply: Reply,
    ) -> Result<(), ProtocolError> {
        let p = match self.pending {
            Some(p) if self.state == state => p,
            _ => {
                return Err(ProtocolError::InvalidState {
                    operation,
                    state: self.state_name(),
                })
            }
        };
        let to = Pending {
            serializer: serializer.unwrap_or(p.serializer),
            ..p
        };
        self.send_reply(msg_type, to, reply)?;
        self.pending = None;
        Ok(())
    }

    fn send_reply(
        &mut self,
        msg_type: MessageType,
        p: Pending,
        reply: Reply,
    ) -> Result<(), ProtocolError> {
        if reply.flags.without(REPLY_FLAGS) != Flags::EMPTY {
            return Err(ProtocolError::InvalidArgument(
                "a Pyro5 reply may set EXCEPTION, COMPRESSED, BATCH and ITEMSTREAMRESULT only",
            ));
        }
        if reply.flags.contains(Flags::ITEMSTREAMRESULT)
            && reply.annotations.get(AnnotationId::STRM).is_none()
        {
            return Err(ProtocolError::InvalidArgument(
                "an ITEMSTREAMRESULT reply carries the stream id in annotation STRM",
            ));
        }
        let mut m = Message::new(msg_type, p.serializer, p.seq, reply.payload);
        m.flags = reply.flags;
        m.annotations = reply.annotations;
        if let Some(c) = p.correlation {
            m.flags = m.flags.union(Flags::CORR_ID);
            m.correlation_id = c;
        }
        let len = m.annotations.encoded_len() + m.payload.len() as u64;
        if len > u64::from(self.config.max_send_len) {
            return Err(ProtocolError::TooLong {
                what: "Pyro5 reply",
                len,
                max: u64::from(self.config.max_send_len),
            });
        }
        self.io.send(&m)
    }

    /// CONNECTFAIL with the error's text as a marshal string, seq 0, no correlation id: the
    /// daemon's answer to a first message it could not accept.
    fn connect_fail_marshal(&mut self, e: &ProtocolError) {
        let mut reason = e.to_string();
        if let (ProtocolError::PyroSerializerRefused { .. }, Some(hint)) =
            (e, &self.config.refusal_hint)
        {
            reason = format!("{reason}; {hint}");
        }
        if let Some(payload) = marshal_str(&reason) {
            let m = Message::new(
                MessageType::CONNECTFAIL,
                SerializerId::MARSHAL,
                0,
                Bytes::from(payload),
            );
            // A reason fits its length fields: error texts are short.
            let _ = self.io.send(&m);
        }
    }

    /// Decodes and handles messages while no request is outstanding.
    fn process(&mut self, now: Instant) -> Result<(), ProtocolError> {
        while self.pending.is_none() && self.io.closed.is_none() {
            let m = match self.io.decoder.decode(&mut self.io.inbuf) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => return Err(self.protocol_error(e)),
            };
            self.message_started = None;
            if let Err(e) = self.on_message(m, now) {
                return Err(self.protocol_error(e));
            }
        }
        self.message_started = if self.pending.is_none() && !self.io.inbuf.is_empty() {
            self.message_started.or(Some(now))
        } else {
            None
        };
        Ok(())
    }

    /// A peer error: before the handshake the daemon answers CONNECTFAIL (marshal) with
    /// the reason; after it, it closes without a word.
    fn protocol_error(&mut self, e: ProtocolError) -> ProtocolError {
        if self.state == State::AwaitConnect && self.io.closed.is_none() {
            self.connect_fail_marshal(&e);
        }
        self.io.fail(e)
    }

    fn on_message(&mut self, m: Message, now: Instant) -> Result<(), ProtocolError> {
        match self.state {
            State::AwaitConnect => {
                if m.msg_type != MessageType::CONNECT {
                    return Err(ProtocolError::PyroUnexpectedMessage {
                        msg_type: m.msg_type,
                        expected: "1",
                        state: "waiting for CONNECT",
                    });
                }
                self.check_serializer(m.serializer)?;
                let correlation = m.correlation();
                self.pending = Some(Pending {
                    seq: m.seq,
                    serializer: m.serializer,
                    correlation,
                });
                self.state = State::Connecting;
                self.events.push_back(ServerEvent::Connect(Connect {
                    seq: m.seq,
                    serializer: m.serializer,
                    flags: m.flags,
                    correlation_id: correlation,
                    annotations: m.annotations,
                    payload: m.payload,
                }));
                Ok(())
            }
            State::Ready => match m.msg_type {
                MessageType::INVOKE => {
                    // As a Pyro5 daemon: no answer, the connection closes.
                    self.check_serializer(m.serializer)?;
                    self.last_activity = Some(now);
                    let correlation = m.correlation();
                    if !m.flags.contains(Flags::ONEWAY) {
                        self.pending = Some(Pending {
                            seq: m.seq,
                            serializer: m.serializer,
                            correlation,
                        });
                    }
                    self.events.push_back(ServerEvent::Invoke(Invoke {
                        seq: m.seq,
                        serializer: m.serializer,
                        flags: m.flags,
                        correlation_id: correlation,
                        annotations: m.annotations,
                        payload: m.payload,
                    }));
                    Ok(())
                }
                MessageType::PING => {
                    // Any serializer id, never deserialized; echoed with seq.
                    let mut pong = Message::new(
                        MessageType::PING,
                        m.serializer,
                        m.seq,
                        Bytes::from_static(b"pong"),
                    );
                    if let Some(c) = m.correlation() {
                        pong.flags = Flags::CORR_ID;
                        pong.correlation_id = c;
                    }
                    self.io.send(&pong)?;
                    self.events.push_back(ServerEvent::Ping {
                        seq: m.seq,
                        serializer: m.serializer,
                    });
                    Ok(())
                }
                other => Err(ProtocolError::PyroUnexpectedMessage {
                    msg_type: other,
                    expected: "4, 6",
                    state: "connected",
                }),
            },
            // Nothing is decoded while the CONNECT awaits its answer.
            State::Connecting => Err(ProtocolError::PyroUnexpectedMessage {
                msg_type: m.msg_type,
                expected: "none",
                state: self.state_name(),
            }),
        }
    }

    fn check_serializer(&self, s: SerializerId) -> Result<(), ProtocolError> {
        if self.config.accepted.contains(&s) {
            Ok(())
        } else {
            Err(ProtocolError::PyroSerializerRefused {
                serializer: s,
                accepted: self.config.accepted.clone(),
            })
        }
    }
}
