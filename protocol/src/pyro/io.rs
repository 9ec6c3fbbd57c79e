//! What both Pyro5 machines share: input buffer, decoder, output buffer, fatal error.

use bytes::{Bytes, BytesMut};

use super::decoder::{MessageDecoder, MessageLimits};
use super::message::Message;
use crate::error::ProtocolError;

#[derive(Debug)]
pub(super) struct Io {
    pub(super) decoder: MessageDecoder,
    /// Received bytes not yet decoded.
    pub(super) inbuf: BytesMut,
    /// Bytes to send.
    pub(super) out: BytesMut,
    /// Why the connection closed (a local close records [`ProtocolError::Closed`]).
    pub(super) closed: Option<ProtocolError>,
}

impl Io {
    pub(super) fn new(limits: MessageLimits) -> Io {
        Io {
            decoder: MessageDecoder::new(limits),
            inbuf: BytesMut::new(),
            out: BytesMut::new(),
            closed: None,
        }
    }

    pub(super) fn ensure_open(&self) -> Result<(), ProtocolError> {
        match self.closed {
            Some(_) => Err(ProtocolError::Closed),
            None => Ok(()),
        }
    }

    /// Queues a message; the caller checked its lengths (`Message::header`).
    pub(super) fn send(&mut self, m: &Message) -> Result<(), ProtocolError> {
        m.encode(&mut self.out)
    }

    pub(super) fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.split().freeze())
        }
    }

    /// Records a fatal error (the first one wins) and returns it.
    pub(super) fn fail(&mut self, e: ProtocolError) -> ProtocolError {
        if self.closed.is_none() {
            self.closed = Some(e.clone());
        }
        e
    }

    /// The stream ended: bytes of an unfinished message are [`ProtocolError::Truncated`].
    pub(super) fn eof(&mut self) -> Result<(), ProtocolError> {
        if self.closed.is_some() {
            return Ok(());
        }
        if self.inbuf.is_empty() {
            self.closed = Some(ProtocolError::Closed);
            Ok(())
        } else {
            let e = ProtocolError::Truncated {
                buffered: self.inbuf.len(),
            };
            Err(self.fail(e))
        }
    }
}
