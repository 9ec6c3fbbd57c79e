//! Callbacks (SPEC §6.10): a handler calls its client back over the client's own
//! connection. The machine numbers the callbacks, checks them against the client's limits
//! and matches the answers; this file parks the handler until its answer comes, and fails
//! it with a clear error when the connection closes first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use wirecall_protocol as proto;

use super::lock;
use crate::client::conn::{Body, Resp};
use crate::error::{Error, Fault};
use crate::io::Wire;
use crate::CodecId;

/// What a callback's waiter is told.
type Answer = Result<Resp, Error>;

/// The callbacks of one connection: its machine (to send them) and the handlers waiting
/// for their answers.
pub(crate) struct CallbackLink {
    wire: Arc<Wire<proto::ServerConnection>>,
    /// The client's address, for errors.
    peer: String,
    /// The connection's default codec.
    pub(crate) codec: CodecId,
    waiting: Mutex<Waiting>,
}

impl std::fmt::Debug for CallbackLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackLink")
            .field("peer", &self.peer)
            .field("codec", &self.codec)
            .finish()
    }
}

#[derive(Default)]
struct Waiting {
    /// The waiters by callback request id.
    map: HashMap<u64, oneshot::Sender<Answer>>,
    /// The connection closed: new callbacks fail at once.
    closed: bool,
}

impl CallbackLink {
    pub(super) fn new(
        wire: Arc<Wire<proto::ServerConnection>>,
        peer: String,
        codec: CodecId,
    ) -> CallbackLink {
        CallbackLink {
            wire,
            peer,
            codec,
            waiting: Mutex::new(Waiting::default()),
        }
    }

    /// The error of a callback whose connection closed before its answer came.
    fn closed_error(&self) -> Error {
        Error::transport(
            &self.peer,
            "the caller's connection closed: the callback cannot reach the client (it went away during the call)",
        )
    }

    /// Hands a callback its answer (from the connection's reader).
    pub(super) fn complete(&self, id: u64, answer: Answer) {
        if let Some(tx) = lock(&self.waiting).map.remove(&id) {
            // The handler stopped waiting (dropped its call): nobody needs it.
            let _ = tx.send(answer);
        }
    }

    /// The connection closed: every callback waiting, and every later one, fails.
    pub(super) fn close(&self) {
        let waiters: Vec<_> = {
            let mut w = lock(&self.waiting);
            w.closed = true;
            w.map.drain().map(|(_, tx)| tx).collect()
        };
        for tx in waiters {
            let _ = tx.send(Err(self.closed_error()));
        }
    }

    /// Sends one callback and waits for its answer (`None` for a oneway one). Dropping the
    /// future cancels the callback on the wire.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn call(
        &self,
        provider_id: u16,
        method: &str,
        codec: CodecId,
        annotations: &proto::Annotations,
        args: &[u8],
        kwargs: &[u8],
        oneway: bool,
        timeout: Option<Duration>,
    ) -> Result<Option<(CodecId, Body)>, Error> {
        let frame = proto::CallRef {
            request_id: proto::RequestId::NONE,
            provider: proto::ProviderId(provider_id),
            codec,
            oneway,
            method,
            annotations,
            args,
            kwargs,
            attachment: &[],
        };
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut s = self.wire.lock();
            // The waiter is in place before the frame can leave, so its answer finds it.
            let mut w = lock(&self.waiting);
            if w.closed || s.is_shut() {
                return Err(self.closed_error());
            }
            let id = s
                .side
                .call_ref(frame, crate::io::now())
                .map_err(|e| self.call_error(e))?;
            if !oneway {
                w.map.insert(id.0, tx);
            }
            drop(w);
            self.wire.flush_locked(s);
            id.0
        };
        if oneway {
            return Ok(None);
        }
        let mut guard = Pending {
            link: self,
            id,
            armed: true,
        };
        let answer = match timeout {
            Some(t) => match tokio::time::timeout(t, rx).await {
                Ok(a) => a,
                // The guard cancels it on the wire.
                Err(_) => return Err(Error::Timeout { after: t }),
            },
            None => rx.await,
        };
        guard.armed = false;
        match answer {
            Ok(Ok(Resp::Value(c, body))) => Ok(Some((c, body))),
            Ok(Ok(Resp::Fault(f))) => Err(match (f.into_error(provider_id, method), timeout) {
                (Error::Timeout { .. }, Some(t)) => Error::Timeout { after: t },
                (Error::CodecRefused { accepted, .. }, _) => Error::CodecRefused {
                    codec: codec.to_string(),
                    accepted,
                },
                (e, _) => e,
            }),
            // The machine's own deadline for the callback passed first.
            Ok(Err(Error::Timeout { .. })) if timeout.is_some() => Err(Error::Timeout {
                after: timeout.unwrap_or_default(),
            }),
            Ok(Err(e)) => Err(e),
            // The link was dropped with the connection.
            Err(_) => Err(self.closed_error()),
        }
    }

    /// The engine error for a callback the machine refused to send.
    fn call_error(&self, e: proto::ProtocolError) -> Error {
        use proto::ProtocolError as P;
        match e {
            P::GoingAway => Error::ShuttingDown {
                message: "the caller's connection is closing (GOAWAY): no more callbacks on it"
                    .into(),
            },
            P::Closed => self.closed_error(),
            e @ P::InFlightLimit { .. } => Error::Busy {
                message: format!("too many callbacks in flight to the client: {e}"),
            },
            e @ P::TooLong { .. } => Error::LimitExceeded {
                message: e.to_string(),
            },
            e => Error::Protocol(e),
        }
    }

    /// The answer of a callback as the machine reported it.
    pub(super) fn on_event(&self, ev: proto::ServerEvent) {
        match ev {
            proto::ServerEvent::Reply(r) => self.complete(
                r.request_id.0,
                Ok(Resp::Value(r.codec, Body::Bytes(r.result))),
            ),
            proto::ServerEvent::Error(e) => {
                self.complete(e.request_id.0, Ok(Resp::Fault(Fault::from_body(e.body))))
            }
            proto::ServerEvent::Failed { request_id, .. } => self.complete(
                request_id.0,
                Err(Error::Timeout {
                    after: Duration::ZERO,
                }),
            ),
            _ => {}
        }
    }
}

/// Forgets a callback and cancels it on the wire if its handler stops waiting.
struct Pending<'a> {
    link: &'a CallbackLink,
    id: u64,
    armed: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let waiting = lock(&self.link.waiting).map.remove(&self.id).is_some();
        if waiting {
            let mut s = self.link.wire.lock();
            if !s.is_shut() {
                // The machine sends CANCEL and swallows the callback's answer.
                let _ = s.side.cancel(proto::RequestId(self.id));
                self.link.wire.flush_locked(s);
            }
        }
    }
}
