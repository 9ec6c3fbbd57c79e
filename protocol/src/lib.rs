//! wirecall's native wire protocol: frame format, handshake, limits and the connection
//! state machines. Sans-IO: bytes in, frames and events out; no sockets, no clocks read.
//!
//! The wire format is specified in `SPEC.md` beside this crate; every rule there has a
//! vector in `conformance/vectors/frames/`.
//!
//! Layers, bottom up:
//!
//! - wire values ([`Kind`], [`Flags`], [`CodecId`], [`ErrorCode`], [`ProviderId`],
//!   [`RequestId`]): open newtypes with named constants;
//! - [`Frame`] and [`Frame::encode`], [`FrameDecoder`] (tokio-util `Decoder` contract);
//! - [`ClientConnection`] and [`ServerConnection`]: handshake, request matching, cancel,
//!   ping, goaway, deadlines.
//!
//! The Pyro5 dialect, told apart by [`detect_dialect`], is the [`pyro`] module: the same
//! layers for Pyro5's framing (`PYRO5.md`).
//!
//! ```
//! use std::time::Instant;
//! use bytes::Bytes;
//! use wirecall_protocol::{
//!     CallRequest, ClientConfig, ClientConnection, ClientEvent, CodecId, Method, ProviderId,
//!     Reply, ServerConfig, ServerConnection, ServerEvent,
//! };
//!
//! # fn main() -> Result<(), wirecall_protocol::ProtocolError> {
//! let now = Instant::now();
//! let mut client = ClientConnection::new(ClientConfig::new(vec![CodecId::MSGPACK, CodecId::JSON]), now)?;
//! let mut server = ServerConnection::new(ServerConfig::new(vec![CodecId::JSON]), now)?;
//!
//! // Carry bytes both ways until both sides are idle (a socket would do this).
//! fn pump(c: &mut ClientConnection, s: &mut ServerConnection, now: Instant) -> Result<(), wirecall_protocol::ProtocolError> {
//!     loop {
//!         let mut moved = false;
//!         while let Some(b) = c.poll_transmit() { s.handle_input(&b, now)?; moved = true; }
//!         while let Some(b) = s.poll_transmit() { c.handle_input(&b, now)?; moved = true; }
//!         if !moved { return Ok(()); }
//!     }
//! }
//!
//! pump(&mut client, &mut server, now)?;
//! // msgpack is not accepted, so the session's default codec is json.
//! let Some(ClientEvent::Connected(session)) = client.poll_event() else { panic!() };
//! assert_eq!(session.codec, CodecId::JSON);
//!
//! let method = Method::new("calc_add")?;
//! let id = client.call(CallRequest::new(ProviderId(42), method, Bytes::from_static(b"[1,2]")), now)?;
//! pump(&mut client, &mut server, now)?;
//!
//! assert!(matches!(server.poll_event(), Some(ServerEvent::Connected(_))));
//! let Some(ServerEvent::Call(call)) = server.poll_event() else { panic!() };
//! assert_eq!(call.method.as_str(), "calc_add");
//! server.reply(Reply {
//!     request_id: call.request_id,
//!     codec: call.codec,
//!     stream: false,
//!     annotations: Default::default(),
//!     result: Bytes::from_static(b"3"),
//!     attachment: Bytes::new(),
//! })?;
//! pump(&mut client, &mut server, now)?;
//! let Some(ClientEvent::Reply(reply)) = client.poll_event() else { panic!() };
//! assert_eq!((reply.request_id, &reply.result[..]), (id, &b"3"[..]));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod annotations;
mod bulk;
mod compress;
mod conn;
mod decoder;
mod error;
mod frame;
mod resume;
// `wire_newtype!` is shared with `pyro`, declared after it.
#[macro_use]
mod wire;
pub mod pyro;

pub use annotations::{
    Annotations, AnnotationsBuilder, Iter as AnnotationsIter, BATCH_KEY, BATCH_LAST, BULK_KEY,
    CORRELATION_KEY, DEADLINE_KEY, RESERVED_PREFIX, RESUME_KEY, STREAM_KEY, WINDOW_KEY,
};
pub use bulk::{check_bulk, has_bulk, split_bulk};
pub use compress::Compression;
pub use conn::{
    check_codec, AcceptedCall, Answered, CallRequest, CallsAnswered, ClientConfig,
    ClientConnection, ClientEvent, ServerConfig, ServerConnection, ServerEvent, Session,
};
pub use decoder::{FrameDecoder, ReplyView};
pub use error::{Cause, ProtocolError};
pub use frame::{
    Call, CallRef, ErrorBody, ErrorFrame, ExtensionTag, Extensions, Frame, GoAway, Header, Hello,
    Limits, Method, Refuse, Reply, StreamItem, Welcome,
};
pub use resume::{Replay, ResumeGap};
pub use wire::{
    detect_dialect, CodecId, CompressionId, Dialect, ErrorCode, Flags, Kind, ProviderId, RequestId,
    HEADER_LEN, MAGIC, VERSION,
};
