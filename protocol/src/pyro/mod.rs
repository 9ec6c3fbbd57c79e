//! The Pyro5 dialect (Pyro5 5.17, protocol version 502), sans-IO: `protocol/PYRO5.md`
//! beside this crate says what is supported and how it differs from a Pyro5 daemon.
//!
//! A listener tells the dialects apart by the first bytes ([`crate::detect_dialect`]
//! returns [`crate::Dialect::Pyro5`] for `PYRO`), then drives a [`ServerSession`] exactly
//! as it drives the native [`crate::ServerConnection`]: bytes in, events out, answers in,
//! bytes out, the time passed in. Payloads (the handshake dict, the
//! `(objectId, method, vargs, kwargs)` call, results and exception dicts) stay serialized:
//! events carry the raw bytes and the [`SerializerId`], and the driver decodes them with
//! the codec [`SerializerId::codec`] names. [`ClientSession`] is the proxy side.
//!
//! Layers, bottom up:
//!
//! - wire values ([`MessageType`], [`Flags`], [`SerializerId`], [`AnnotationId`]): open
//!   newtypes, so unknown values are representable;
//! - [`Header`], [`Message`] and [`Message::encode`], [`MessageDecoder`] (limits checked
//!   from the header, before allocating);
//! - [`ServerSession`] and [`ClientSession`];
//! - [`BatchRun`], the rule of a batch call's answer (run in order, stop at the first
//!   exception, no reply to a oneway batch).
//!
//! ```
//! use std::time::Instant;
//! use bytes::Bytes;
//! use wirecall_protocol::pyro::{
//!     ClientConfig, ClientEvent, ClientSession, Reply, Request, SerializerId, ServerConfig,
//!     ServerEvent, ServerSession,
//! };
//!
//! # fn main() -> Result<(), wirecall_protocol::ProtocolError> {
//! let now = Instant::now();
//! let mut server = ServerSession::new(ServerConfig::new(vec![SerializerId::JSON]), now)?;
//! let mut client = ClientSession::new(ClientConfig::new(SerializerId::JSON));
//!
//! client.connect(Bytes::from_static(br#"{"handshake": "hello", "object": "calc"}"#), now)?;
//! server.handle_input(&client.poll_transmit().unwrap(), now)?;
//! let Some(ServerEvent::Connect(c)) = server.poll_event() else { panic!() };
//! assert_eq!((c.seq, c.serializer), (0, SerializerId::JSON));
//! server.accept(Reply::new(&br#"{"handshake": "hello", "meta": {"methods": ["add"], "oneway": [], "attrs": []}}"#[..]), now)?;
//! client.handle_input(&server.poll_transmit().unwrap(), now)?;
//! assert!(matches!(client.poll_event(), Some(ClientEvent::Connected(_))));
//!
//! let seq = client.invoke(Request::new(&br#"{"object": "calc", "method": "add", "params": [1, 2], "kwargs": {}}"#[..]), now)?;
//! server.handle_input(&client.poll_transmit().unwrap(), now)?;
//! let Some(ServerEvent::Invoke(call)) = server.poll_event() else { panic!() };
//! assert_eq!(call.seq, seq);
//! server.reply(call.seq, Reply::new(&b"3"[..]), now)?;
//! client.handle_input(&server.poll_transmit().unwrap(), now)?;
//! let Some(ClientEvent::Result(r)) = client.poll_event() else { panic!() };
//! assert_eq!((r.seq, &r.payload[..]), (seq, &b"3"[..]));
//! # Ok(())
//! # }
//! ```

mod batch;
mod client;
mod decoder;
mod io;
mod message;
mod server;
mod wire;

pub use batch::{BatchEnd, BatchItem, BatchRun, BATCH_METHOD, EXCEPTION_WRAPPER_CLASS};
pub use client::{ClientConfig, ClientEvent, ClientSession, Request, Response};
pub use decoder::{MessageDecoder, MessageLimits};
pub use message::{AnnotationId, Annotations, Header, Message};
pub use server::{Connect, Invoke, Reply, ServerConfig, ServerEvent, ServerSession};
pub use wire::{
    marshal_str, unmarshal_str, Flags, MessageType, SerializerId, HEADER_LEN, HEADER_MAGIC,
    PROTOCOL_VERSION, PYRO_MAX_MESSAGE_SIZE, TAG,
};
