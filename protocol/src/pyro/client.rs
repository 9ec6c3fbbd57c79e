//! The client side of a Pyro5 connection: what a Pyro5 proxy does on the wire (reference
//! §1.9, §2.1, §2.14).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::decoder::MessageLimits;
use super::io::Io;
use super::message::{Annotations, Message};
use super::wire::{unmarshal_str, Flags, MessageType, SerializerId, PYRO_MAX_MESSAGE_SIZE};
use crate::error::ProtocolError;
use crate::wire::RequestId;

/// Configuration of a [`ClientSession`].
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The serializer of CONNECT and, unless a request says otherwise, of every INVOKE.
    pub serializer: SerializerId,
    /// Limits on received messages.
    pub limits: MessageLimits,
    /// Largest data plus annotations length this side sends (Pyro5's default limit is
    /// 1 GiB).
    pub max_send_len: u32,
    /// The sequence number of the CONNECT; a Python proxy does not reset it on reconnect,
    /// so a reconnecting driver passes the last one used.
    pub initial_seq: u16,
    /// Fail the connection when the CONNECT is not answered in this time.
    pub handshake_timeout: Option<Duration>,
    /// Fail the connection when an INVOKE or PING is not answered in this time (the
    /// connection cannot be reused: a late answer would desynchronise it).
    pub call_timeout: Option<Duration>,
}

impl ClientConfig {
    /// `serializer`, default limits, sequence numbers from 0, a 10 s handshake timeout and
    /// no call timeout (Pyro5's `COMMTIMEOUT` defaults to none).
    pub fn new(serializer: SerializerId) -> ClientConfig {
        ClientConfig {
            serializer,
            limits: MessageLimits {
                max_message_len: PYRO_MAX_MESSAGE_SIZE,
                ..MessageLimits::default()
            },
            max_send_len: PYRO_MAX_MESSAGE_SIZE,
            initial_seq: 0,
            handshake_timeout: Some(Duration::from_secs(10)),
            call_timeout: None,
        }
    }
}

/// A call to send with [`ClientSession::invoke`].
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Request {
    /// The serialized `(objectId, method, vargs, kwargs)` (a json object in json).
    pub payload: Bytes,
    /// ONEWAY, BATCH, COMPRESSED (if the driver compressed the payload), KEEPSERIALIZED;
    /// CORR_ID is set from `correlation_id`.
    pub flags: Flags,
    /// Serializer of this request, when not the session's (Pyro5 picks it per message).
    pub serializer: Option<SerializerId>,
    /// A correlation id to send (flag CORR_ID).
    pub correlation_id: Option<[u8; 16]>,
    /// Annotations to send.
    pub annotations: Annotations,
}

impl Request {
    /// A normal call.
    pub fn new(payload: impl Into<Bytes>) -> Request {
        Request {
            payload: payload.into(),
            ..Request::default()
        }
    }

    /// A call that gets no reply (flag ONEWAY).
    pub fn oneway(payload: impl Into<Bytes>) -> Request {
        Request {
            payload: payload.into(),
            flags: Flags::ONEWAY,
            ..Request::default()
        }
    }
}

/// A reply from the server.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Response {
    /// Its sequence number (the request's).
    pub seq: u16,
    /// Its serializer (the request's).
    pub serializer: SerializerId,
    /// EXCEPTION, BATCH, ITEMSTREAMRESULT, COMPRESSED, CORR_ID.
    pub flags: Flags,
    /// Response annotations (`STRM` with ITEMSTREAMRESULT).
    pub annotations: Annotations,
    /// The serialized result or exception dict.
    pub payload: Bytes,
}

impl Response {
    /// The payload is a serialized exception (flag EXCEPTION without ITEMSTREAMRESULT).
    pub fn is_exception(&self) -> bool {
        self.flags.contains(Flags::EXCEPTION) && !self.flags.contains(Flags::ITEMSTREAMRESULT)
    }

    /// The stream id of a remote iterator (flag ITEMSTREAMRESULT, annotation `STRM`).
    pub fn stream_id(&self) -> Option<&Bytes> {
        if self.flags.contains(Flags::ITEMSTREAMRESULT) {
            self.annotations.get(super::AnnotationId::STRM)
        } else {
            None
        }
    }
}

/// What a [`ClientSession`] reports.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// CONNECTOK: the payload is the serialized `{"handshake": .., "meta": ..}`.
    Connected(Response),
    /// CONNECTFAIL: the payload is the serialized reason (often marshal); the session
    /// then fails with [`ProtocolError::PyroConnectFailed`].
    ConnectFailed(Response),
    /// The RESULT of the outstanding INVOKE.
    Result(Response),
    /// The answer to [`ClientSession::ping`].
    Pong {
        /// Round-trip time.
        rtt: Duration,
    },
}

#[derive(Clone, Copy, Debug)]
enum Outstanding {
    Connect,
    Invoke {
        seq: u16,
        serializer: SerializerId,
        deadline: Option<Instant>,
    },
    Ping {
        sent: Instant,
        deadline: Option<Instant>,
    },
}

/// The client side of a Pyro5 connection, sans-IO, driven as [`super::ServerSession`] is.
///
/// One request at a time, as Pyro5 requires: [`invoke`](Self::invoke) and
/// [`ping`](Self::ping) are refused while a request awaits its answer. Sequence numbers
/// follow a Python proxy's: CONNECT carries the initial value, each INVOKE (oneway ones
/// too) the next one modulo 2¹⁶, PING 0. A RESULT with another sequence number or
/// serializer fails the session, as it makes a Python proxy drop its connection.
#[derive(Debug)]
pub struct ClientSession {
    io: Io,
    config: ClientConfig,
    seq: u16,
    connected: bool,
    outstanding: Option<Outstanding>,
    handshake_deadline: Option<Instant>,
    events: VecDeque<ClientEvent>,
}

impl ClientSession {
    /// A client session that sends nothing until [`connect`](Self::connect).
    pub fn new(config: ClientConfig) -> ClientSession {
        ClientSession {
            io: Io::new(config.limits),
            seq: config.initial_seq,
            config,
            connected: false,
            outstanding: None,
            handshake_deadline: None,
            events: VecDeque::new(),
        }
    }

    /// Sends CONNECT with the serialized `{"handshake": "hello", "object": <object id>}`.
    pub fn connect(
        &mut self,
        payload: impl Into<Bytes>,
        now: Instant,
    ) -> Result<(), ProtocolError> {
        self.io.ensure_open()?;
        if self.connected || self.outstanding.is_some() {
            return Err(ProtocolError::InvalidState {
                operation: "connect",
                state: "already connecting or connected",
            });
        }
        let m = Message::new(
            MessageType::CONNECT,
            self.config.serializer,
            self.seq,
            payload.into(),
        );
        self.send(&m)?;
        self.outstanding = Some(Outstanding::Connect);
        self.handshake_deadline = self.config.handshake_timeout.map(|t| now + t);
        Ok(())
    }

    /// Sends an INVOKE; returns its sequence number. A oneway request is done once sent;
    /// any other is answered by a [`ClientEvent::Result`].
    pub fn invoke(&mut self, req: Request, now: Instant) -> Result<u16, ProtocolError> {
        self.ready("invoke")?;
        let seq = self.seq.wrapping_add(1);
        let serializer = req.serializer.unwrap_or(self.config.serializer);
        let mut m = Message::new(MessageType::INVOKE, serializer, seq, req.payload);
        m.flags = req.flags.without(Flags::CORR_ID);
        m.annotations = req.annotations;
        if let Some(c) = req.correlation_id {
            m.flags = m.flags.union(Flags::CORR_ID);
            m.correlation_id = c;
        }
        self.send(&m)?;
        self.seq = seq;
        if !m.flags.contains(Flags::ONEWAY) {
            self.outstanding = Some(Outstanding::Invoke {
                seq,
                serializer,
                deadline: self.config.call_timeout.map(|t| now + t),
            });
        }
        Ok(seq)
    }

    /// Sends a PING (serializer id 42, seq 0, payload `ping`, as a Python proxy does); a
    /// [`ClientEvent::Pong`] reports the answer.
    pub fn ping(&mut self, now: Instant) -> Result<(), ProtocolError> {
        self.ready("ping")?;
        let m = Message::new(
            MessageType::PING,
            SerializerId::PING,
            0,
            Bytes::from_static(b"ping"),
        );
        self.send(&m)?;
        self.outstanding = Some(Outstanding::Ping {
            sent: now,
            deadline: self.config.call_timeout.map(|t| now + t),
        });
        Ok(())
    }

    fn ready(&self, operation: &'static str) -> Result<(), ProtocolError> {
        self.io.ensure_open()?;
        if !self.connected {
            return Err(ProtocolError::InvalidState {
                operation,
                state: "not connected",
            });
        }
        if self.outstanding.is_some() {
            return Err(ProtocolError::InvalidState {
                operation,
                state: "a request awaits its answer (Pyro5 allows one at a time per connection)",
            });
        }
        Ok(())
    }

    fn send(&mut self, m: &Message) -> Result<(), ProtocolError> {
        let len = m.annotations.encoded_len() + m.payload.len() as u64;
        if len > u64::from(self.config.max_send_len) {
            return Err(ProtocolError::TooLong {
                what: "Pyro5 message",
                len,
                max: u64::from(self.config.max_send_len),
            });
        }
        self.io.send(m)
    }

    /// Whether the CONNECT was accepted and the session is open.
    pub fn is_connected(&self) -> bool {
        self.connected && self.io.closed.is_none()
    }

    /// Whether a request awaits its answer.
    pub fn is_busy(&self) -> bool {
        self.outstanding.is_some()
    }

    /// Whether the session failed or was closed.
    pub fn is_closed(&self) -> bool {
        self.io.closed.is_some()
    }

    /// The sequence number of the last message sent (CONNECT or INVOKE): what a reconnect
    /// passes as [`ClientConfig::initial_seq`].
    pub fn seq(&self) -> u16 {
        self.seq
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Bytes to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.io.poll_transmit()
    }

    /// Closes the session locally; nothing is sent.
    pub fn close(&mut self) {
        if self.io.closed.is_none() {
            self.io.closed = Some(ProtocolError::Closed);
        }
    }

    /// The transport ended: an error when a request awaited its answer or a message was
    /// incomplete.
    pub fn handle_eof(&mut self) -> Result<(), ProtocolError> {
        if self.io.closed.is_none() && self.outstanding.is_some() && self.io.inbuf.is_empty() {
            // The answer never came.
            return Err(self.io.fail(ProtocolError::Truncated { buffered: 0 }));
        }
        self.io.eof()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.io.closed.is_some() {
            return None;
        }
        match self.outstanding {
            Some(Outstanding::Connect) => self.handshake_deadline,
            Some(Outstanding::Invoke { deadline, .. } | Outstanding::Ping { deadline, .. }) => {
                deadline
            }
            None => None,
        }
    }

    /// Fires the handshake or call timeout; either closes the session.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ProtocolError> {
        self.io.ensure_open()?;
        if self.poll_timeout().is_none_or(|d| now < d) {
            return Ok(());
        }
        let e = match self.outstanding {
            Some(Outstanding::Connect) => ProtocolError::HandshakeTimeout,
            Some(Outstanding::Ping { .. }) => ProtocolError::PingTimeout,
            Some(Outstanding::Invoke { seq, .. }) => ProtocolError::DeadlineExceeded {
                request_id: RequestId(u64::from(seq)),
            },
            None => return Ok(()),
        };
        Err(self.io.fail(e))
    }

    /// Feeds received bytes at `now`.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) -> Result<(), ProtocolError> {
        self.io.ensure_open()?;
        self.io.inbuf.extend_from_slice(data);
        loop {
            let m = match self.io.decoder.decode(&mut self.io.inbuf) {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.io.fail(e)),
            };
            if let Err(e) = self.on_message(m, now) {
                return Err(self.io.fail(e));
            }
            if self.io.closed.is_some() {
                return Ok(());
            }
        }
    }

    fn on_message(&mut self, m: Message, now: Instant) -> Result<(), ProtocolError> {
        let response = |m: Message| Response {
            seq: m.seq,
            serializer: m.serializer,
            flags: m.flags,
            annotations: m.annotations,
            payload: m.payload,
        };
        match (self.outstanding, m.msg_type) {
            (Some(Outstanding::Connect), MessageType::CONNECTOK) => {
                self.outstanding = None;
                self.connected = true;
                self.handshake_deadline = None;
                self.events.push_back(ClientEvent::Connected(response(m)));
                Ok(())
            }
            (Some(Outstanding::Connect), MessageType::CONNECTFAIL) => {
                self.outstanding = None;
                let reason = connect_fail_reason(m.serializer, m.flags, &m.payload);
                self.events
                    .push_back(ClientEvent::ConnectFailed(response(m)));
                Err(ProtocolError::PyroConnectFailed { reason })
            }
            (
                Some(Outstanding::Invoke {
                    seq, serializer, ..
                }),
                MessageType::RESULT,
            ) => {
                if m.seq != seq {
                    return Err(ProtocolError::PyroSequenceMismatch {
                        got: m.seq,
                        expected: seq,
                    });
                }
                if m.serializer != serializer {
                    return Err(ProtocolError::PyroSerializerMismatch {
                        got: m.serializer,
                        expected: serializer,
                    });
                }
                self.outstanding = None;
                self.events.push_back(ClientEvent::Result(response(m)));
                Ok(())
            }
            (Some(Outstanding::Ping { sent, .. }), MessageType::PING) => {
                self.outstanding = None;
                self.events.push_back(ClientEvent::Pong {
                    rtt: now.saturating_duration_since(sent),
                });
                Ok(())
            }
            (o, t) => Err(ProtocolError::PyroUnexpectedMessage {
                msg_type: t,
                expected: match o {
                    Some(Outstanding::Connect) => "2, 3",
                    Some(Outstanding::Invoke { .. }) => "5",
                    Some(Outstanding::Ping { .. }) => "6",
                    None => "none",
                },
                state: match o {
                    Some(Outstanding::Connect) => "waiting for CONNECTOK",
                    Some(Outstanding::Invoke { .. }) => "waiting for RESULT",
                    Some(Outstanding::Ping { .. }) => "waiting for PING",
                    None => "no request outstanding",
                },
            }),
        }
    }
}

/// The reason of a CONNECTFAIL, best effort without the codecs: a marshal string as Pyro5
/// daemons send it, a json or serpent string literal without escapes, else a description.
fn connect_fail_reason(serializer: SerializerId, flags: Flags, payload: &[u8]) -> String {
    if flags.contains(Flags::COMPRESSED) {
        return format!("({} bytes, compressed, in {serializer})", payload.len());
    }
    if serializer == SerializerId::MARSHAL {
        if let Some(s) = unmarshal_str(payload) {
            return s;
        }
    }
    let text = std::str::from_utf8(payload).ok().map(|t| {
        // serpent's header line
        let t = match t.strip_prefix('#') {
            Some(rest) => rest.split_once('\n').map_or("", |(_, body)| body),
            None => t,
        };
        t.trim()
    });
    if let Some(t) = text {
        for q in ['"', '\''] {
            if let Some(inner) = t.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
                if !inner.contains(['\\', q]) {
                    return inner.to_string();
                }
            }
        }
    }
    format!("({} bytes in {serializer})", payload.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_fail_reasons() {
        let m = super::super::wire::marshal_str("unknown object").unwrap();
        let r = |s, p: &[u8]| connect_fail_reason(s, Flags::EMPTY, p);
        assert_eq!(r(SerializerId::MARSHAL, &m), "unknown object");
        assert_eq!(
            r(SerializerId::JSON, b"\"unknown object\""),
            "unknown object"
        );
        assert_eq!(
            r(
                SerializerId::SERPENT,
                b"# serpent utf-8 python3.2\n'unknown object'"
            ),
            "unknown object"
        );
        assert_eq!(
            r(SerializerId::MSGPACK, b"\xaeunknown object"),
            "(15 bytes in msgpack (4))"
        );
        assert_eq!(
            r(SerializerId::JSON, b"\"a\\\"b\""),
            "(6 bytes in json (3))"
        );
        assert_eq!(
            connect_fail_reason(SerializerId::JSON, Flags::COMPRESSED, b"xx"),
            "(2 bytes, compressed, in json (3))"
        );
    }
}
