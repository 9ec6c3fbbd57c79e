//! What a handler sees of a call: its arguments, its caller, and a way to answer later.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::args::{
    clear_message, duplicate_message, missing_message, take_message, FromArgs, Keyword, ParamNames,
    Positional,
};
use crate::codec;
use crate::error::{Fault, FaultKind};
use crate::io::Wire;
use crate::provider::Outcome;
use crate::CodecId;
use wirecall_protocol as proto;

/// Facts about one connection, given to `on_connect` / `on_disconnect` hooks and to handlers
/// through [`CallContext`].
#[derive(Debug)]
pub struct ConnectionInfo {
    pub(crate) id: u64,
    pub(crate) peer: String,
    pub(crate) local: String,
    pub(crate) tls: Option<wirecall_transport::TlsInfo>,
    /// Set when the client exposed providers (the callbacks extension is in force): how
    /// handlers call it back (SPEC §6.10).
    pub(crate) callback: std::sync::OnceLock<Arc<crate::server::callback::CallbackLink>>,
}

impl ConnectionInfo {
    /// A number identifying the connection within this server.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The caller's address as a URL (`tcp://127.0.0.1:53412`, `unix://...`).
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The server address the connection came in on.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The TLS session of a connection that came in on a `tls://` or `tls+unix://` address
    /// (protocol version, cipher suite, the client's identity); `None` for plaintext ones.
    pub fn tls(&self) -> Option<&crate::TlsInfo> {
        self.tls.as_ref()
    }

    /// Whether the client exposed providers on this connection, so handlers may call it
    /// back ([`CallContext::callback`]).
    pub fn takes_callbacks(&self) -> bool {
        self.callback.get().is_some()
    }

    /// The client's identity from its verified certificate, on a server that requires
    /// client certificates (mutual TLS,
    /// [`TlsServerConfig::require_client_cert_file`](crate::TlsServerConfig::require_client_cert_file)
    /// or `WIRECALL_TLS_CLIENT_CA`):
    /// subject and subject alternative names, for hooks and handlers to authorize with.
    /// `None` on plaintext connections and when the client sent no certificate.
    pub fn peer_identity(&self) -> Option<&crate::PeerIdentity> {
        self.tls.as_ref()?.peer_identity()
    }
}

/// How an answer is written once the machine has queued it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Now, if the socket is idle (a lone answer).
    Now,
    /// By the writer task, coalesced with the answers of busy neighbours.
    Batched,
    /// Later: the connection's reader flushes after its current batch of frames.
    Deferred,
}

/// What the `after` hooks of one call need; they run once, with the call's outcome.
pub(crate) struct AfterHooks {
    pub(crate) hooks: Vec<Arc<dyn crate::hooks::CallHook>>,
    pub(crate) started: std::time::Instant,
    pub(crate) method: String,
    pub(crate) provider_id: u16,
    pub(crate) request_id: u64,
    pub(crate) conn: Arc<ConnectionInfo>,
    pub(crate) codec: CodecId,
    pub(crate) done: std::sync::atomic::AtomicBool,
}

impl AfterHooks {
    /// Runs the hooks, the first time only.
    pub(crate) fn run(&self, ok: bool) {
        if self.done.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let ci = crate::hooks::CallInfo {
            provider_id: self.provider_id,
            method: &self.method,
            peer: &self.conn.peer,
            peer_identity: self.conn.peer_identity(),
            codec: self.codec,
            request_id: self.request_id,
        };
        let elapsed = self.started.elapsed();
        for h in &self.hooks {
            h.after(&ci, ok, elapsed);
        }
    }
}

/// The connection a call's answer goes to.
#[derive(Clone)]
pub(crate) enum AnswerTo {
    /// A native connection's state machine.
    Native(Arc<Wire<proto::ServerConnection>>),
    /// A Pyro5 connection's driver, which waits for the one answer of its current call.
    Pyro(Arc<PyroAnswer>),
    /// A client connection answering a callback from its server (SPEC §6.10).
    Callback(Arc<crate::client::conn::ConnShared>),
}

/// The answer slot of a Pyro5 call: the first answer is kept, later ones are dropped.
pub(crate) struct PyroAnswer(std::sync::Mutex<Option<tokio::sync::oneshot::Sender<Outcome>>>);

impl PyroAnswer {
    /// A slot and the receiver its answer arrives on.
    pub(crate) fn new() -> (Arc<PyroAnswer>, tokio::sync::oneshot::Receiver<Outcome>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Arc::new(PyroAnswer(std::sync::Mutex::new(Some(tx)))), rx)
    }

    fn send(&self, outcome: Outcome) {
        // A stream is the driver's to keep (a Pyro5 remote iterator).
        let tx = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(tx) = tx {
            // The driver stopped waiting (the connection closed): nobody needs it.
            let _ = tx.send(outcome);
        }
    }
}

/// Where a call's answer goes: the connection's state machine, which checks that the call
/// is still in flight (a call cancelled or past its deadline was answered already).
#[derive(Clone)]
pub(crate) struct ReplySink {
    pub to: AnswerTo,
    pub id: u64,
    pub codec: CodecId,
    pub oneway: bool,
    /// The `after` hooks, told when the answer is given (whoever gives it).
    pub hooks: Option<Arc<AfterHooks>>,
    /// The call's span, when tracing records calls: told the outcome on the answer.
    pub trace: Option<Arc<crate::server::trace::CallTrace>>,
}

impl ReplySink {
    /// Answers the call (unless it is oneway) and runs the `after` hooks.
    pub(crate) fn answer(&self, outcome: Outcome, flush: Flush) {
        if let Some(h) = &self.hooks {
            h.run(matches!(
                outcome,
                Outcome::Value(_) | Outcome::Attached(_) | Outcome::Stream(_)
            ));
        }
        if let Some(t) = &self.trace {
            t.finish(&outcome);
        }
        if self.oneway {
            return;
        }
        let wire = match &self.to {
            AnswerTo::Native(w) => w,
            AnswerTo::Pyro(p) => return p.send(outcome),
            AnswerTo::Callback(c) => {
                return crate::client::conn::answer_callback(c, self.id, self.codec, outcome)
            }
        };
        let request_id = proto::RequestId(self.id);
        let codec = self.codec;
        let outcome = match outcome {
            Outcome::Stream(crate::stream::EncodedStream(items, resumed)) => {
                let s = wire.lock();
                // A stream the server keeps after a lost connection (SPEC §6.14): one being
                // resumed keeps its token; a new one gets a token when the server lingers
                // and the call has a window (the credit then tells what the caller took).
                let resumable = match resumed {
                    Some(r) => Some(r),
                    None => match (wire.streams.lingering(), s.side.credit(request_id)) {
                        (Some(_), Some(window)) if window != u32::MAX => {
                            Some(crate::stream::Resumable {
                                token: crate::stream::new_token(),
                                replay: proto::Replay::new(window),
                            })
                        }
                        _ => None,
                    },
                };
                let annotations = match &resumable {
                    Some(r) => proto::Annotations::builder().stream_token(r.token).build(),
                    None => proto::Annotations::new(),
                };
                send_locked(wire, s, self.id, flush, |side| {
                    side.reply(proto::Reply {
                        request_id,
                        codec,
                        stream: true,
                        annotations,
                        result: Bytes::new(),
                        attachment: Bytes::new(),
                    })
                });
                // The pump stops at once if the call is no longer in flight.
                wire.streams
                    .start(wire.clone(), self.id, codec, items, resumable);
                return;
            }
            o => o,
        };
        let s = wire.lock();
        send_locked(wire, s, self.id, flush, |side| match outcome {
            Outcome::Value(result) => side.reply(proto::Reply {
                request_id,
                codec,
                stream: false,
                annotations: proto::Annotations::new(),
                result,
                attachment: Bytes::new(),
            }),
            Outcome::Attached(a) => side.reply(proto::Reply {
                request_id,
                codec,
                stream: false,
                annotations: a.annotations,
                result: a.result,
                attachment: a.attachment,
            }),
            Outcome::Fault(fault) => side.error(proto::ErrorFrame {
                request_id,
                codec: proto::CodecId::NONE,
                annotations: proto::Annotations::new(),
                body: fault.into_body(),
            }),
            // Handled above.
            Outcome::Stream(_) => Ok(()),
        });
    }

    /// Sends the answer now (unless the call is oneway).
    pub(crate) fn send(&self, outcome: Outcome) {
        self.answer(outcome, Flush::Now)
    }
}

/// The caller of a call: address, annotations and ids. Take it as a handler parameter of type
/// `CallContext`.
#[derive(Clone)]
pub struct CallContext {
    pub(crate) conn: Arc<ConnectionInfo>,
    pub(crate) annotations: wirecall_protocol::Annotations,
    pub(crate) request_id: u64,
    pub(crate) provider_id: u16,
    pub(crate) codec: CodecId,
    /// When the caller's deadline passes, on this server's clock.
    pub(crate) deadline_at: Option<std::time::Instant>,
}

impl fmt::Debug for CallContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallContext")
            .field("peer", &self.conn.peer)
            .field("request_id", &self.request_id)
            .field("provider_id", &self.provider_id)
            .field("codec", &self.codec)
            .finish()
    }
}

impl CallContext {
    /// The caller's address as a URL.
    pub fn peer(&self) -> &str {
        &self.conn.peer
    }

    /// The connection the call came on.
    pub fn connection(&self) -> &ConnectionInfo {
        &self.conn
    }

    /// The value of a user annotation sent with the call.
    pub fn annotation(&self, key: &str) -> Option<&[u8]> {
        self.annotations
            .user()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// Every user annotation sent with the call.
    pub fn annotations(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.annotations.user()
    }

    /// The time the caller had left when it sent the call, if it set a timeout.
    pub fn deadline(&self) -> Option<std::time::Duration> {
        self.annotations.deadline()
    }

    /// The time the caller has left now, if it set a timeout: its deadline counted from the
    /// call's arrival, less what has passed since (zero once past). The server answers the
    /// caller DEADLINE_EXCEEDED when it reaches zero, whatever the handler is doing.
    ///
    /// Calls a handler makes on the caller's behalf inherit it with
    /// [`CallBuilder::within`](crate::CallBuilder::within): they then time out (and their
    /// servers give up) no later than the caller would.
    pub fn remaining(&self) -> Option<std::time::Duration> {
        self.deadline_at
            .map(|at| at.saturating_duration_since(crate::io::now()))
    }

    /// A proxy that calls the client back over this call's own connection (SPEC §6.10):
    /// the client needs no listening socket, so this works wherever only the client can
    /// connect. The client must have exposed providers ([`Proxy::expose`](crate::Proxy::expose)
    /// and its neighbours); address them by the provider ids it exposed them under, with
    /// every call form of a [`Proxy`](crate::Proxy): `call_on`, generated typed clients
    /// (`ProgressClient::new(ctx.callback()?, 1)`), oneway calls.
    ///
    /// Callbacks inherit the time the caller has left ([`remaining`](Self::remaining)) as
    /// their timeout, so a callback never outlives the call it serves. When the connection
    /// closes (the client went away), callbacks waiting and later ones fail with
    /// [`Error::Transport`](crate::Error::Transport) saying the caller's connection closed.
    ///
    /// Fails with [`Error::Config`](crate::Error::Config) when the client exposed no
    /// provider (the callbacks extension is off on this connection), and on Pyro5
    /// connections.
    ///
    /// ```no_run
    /// # use wirecall::CallContext;
    /// # async fn handler(ctx: CallContext) -> Result<(), wirecall::Error> {
    /// for step in 1..=3u32 {
    ///     let _: () = ctx.callback()?.call_on(1, "progress_report")?.arg(step).call().await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn callback(&self) -> Result<crate::Proxy, crate::Error> {
        let link = self.conn.callback.get().ok_or_else(|| {
            crate::Error::config(format!(
                "the caller at {} takes no callbacks: its client exposed no provider on the connection (expose one with Proxy::expose before connecting), or it speaks Pyro5",
                self.conn.peer
            ))
        })?;
        let proxy = crate::Proxy::callback(link.clone(), &self.conn.peer);
        Ok(match self.remaining() {
            Some(left) => proxy.timeout(left),
            None => proxy,
        })
    }

    /// The request id of the call on its connection.
    pub fn request_id(&self) -> u64 {
        self.request_id
    }

    /// The provider id the call addressed.
    pub fn provider_id(&self) -> u16 {
        self.provider_id
    }

    /// The codec of the call (and of its reply).
    pub fn codec(&self) -> CodecId {
        self.codec
    }
}

/// Answers a call later, possibly from another task (PyMargo's `handle.respond`).
///
/// Take it as a handler parameter of type `Responder<T>`, where `T` is the result type the
/// caller receives (the generated client returns `T`); the method's own return value is then
/// ignored. Dropping a `Responder` without answering sends the caller an error, so a caller
/// never waits forever. When the caller's deadline passes first, the server answers it
/// DEADLINE_EXCEEDED and a later answer goes nowhere (an `async` handler holding the
/// `Responder` is stopped then). For oneway methods answering does nothing.
pub struct Responder<T: ?Sized = ()> {
    sink: Option<ReplySink>,
    _result: std::marker::PhantomData<fn(&T)>,
}

impl<T: ?Sized> fmt::Debug for Responder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("request_id", &self.sink.as_ref().map(|s| s.id))
            .finish()
    }
}

impl<T: Serialize + ?Sized> Responder<T> {
    /// Sends `value` as the call's result.
    pub fn respond(mut self, value: &T) {
        if let Some(sink) = self.sink.take() {
            let outcome = match sink.to {
                AnswerTo::Native(_) => encode_outcome_native(sink.codec, value),
                // Callbacks and Pyro5 answers carry byte values inline.
                AnswerTo::Pyro(_) | AnswerTo::Callback(_) => encode_outcome(sink.codec, value),
            };
            sink.send(outcome);
        }
    }

    /// Fails the call with an application error (type name and message).
    pub fn fail(mut self, type_name: &str, message: impl fmt::Display) {
        if let Some(sink) = self.sink.take() {
            sink.send(Outcome::Fault(Fault::application(
                type_name,
                message.to_string(),
                "",
            )));
        }
    }
}

impl<T: ?Sized> Drop for Responder<T> {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.take() {
            sink.send(Outcome::Fault(Fault::application(
                "wirecall::ResponderDropped",
                "the handler dropped its Responder without answering",
                "",
            )));
        }
    }
}

/// Encodes handler results with the call's codec.
#[derive(Debug, Clone, Copy)]
pub struct ReplyEncoder {
    codec: CodecId,
    /// The call, as [`arm_direct`] names it: (connection, request id).
    call: (usize, u64),
    /// The handler is synchronous: its result may be encoded for a direct answer.
    direct: bool,
    /// The call came on a native connection: [`Bulk`](crate::Bulk) values of the result
    /// travel in the attachment.
    native: bool,
}

impl ReplyEncoder {
    /// Encodes a successful result.
    pub fn value<T: Serialize + ?Sized>(&self, value: &T) -> Outcome {
        if self.direct && DIRECT.get() == Direct::Armed(self.call) {
            // Armed only for native calls: bulk values are collected.
            let encoded = DIRECT_RESULT.with(|cell| {
                let mut out = cell.try_borrow_mut().ok()?;
                out.clear();
                let (r, parts) =
                    crate::bulk::collect(|| codec::encode_into(self.codec, value, &mut out));
                Some(match parts {
                    // With bulk values the answer needs a frame of its own.
                    Some(parts) => r.map(|()| Some((Bytes::copy_from_slice(&out), parts))),
                    None => r.map(|()| None),
                })
            });
            match encoded {
                Some(Ok(None)) => {
                    DIRECT.set(Direct::Encoded(self.call));
                    // A placeholder: the dispatcher answers from the direct result buffer.
                    return Outcome::Value(Bytes::new());
                }
                Some(Ok(Some((result, parts)))) => return attached(result, parts),
                Some(Err(e)) => return encode_failed(self.codec, e),
                // Not expected (the buffer is only borrowed here and while answering).
                None => {}
            }
        }
        if self.native {
            encode_outcome_native(self.codec, value)
        } else {
            encode_outcome(self.codec, value)
        }
    }

    /// Passes a fault through.
    pub fn fault(&self, fault: Fault) -> Outcome {
        Outcome::Fault(fault)
    }

    /// A streamed result: its items are encoded as they are sent (SPEC §6.5, §6.12).
    pub fn stream<T: Serialize + Send + 'static>(
        &self,
        items: crate::stream::ItemStream<T>,
    ) -> Outcome {
        Outcome::Stream(crate::stream::EncodedStream::encode(self.codec, items))
    }
}

/// Results up to this size are copied into the per-thread result block.
const SMALL_RESULT: usize = 1024;
/// The size of a per-thread result block.
const RESULT_BLOCK: usize = 64 * 1024;

/// An encoded result as `Bytes`. A small one is copied into a per-thread block and handed out
/// as a shared slice of it: no allocation and no free per result (the answer copies it into
/// the connection's send buffer at once, and the block is reused once every slice of it is
/// gone). A large one gets a buffer of its own, so a result kept long never pins a block.
fn result_bytes(encoded: &[u8]) -> Bytes {
    thread_local! {
        static BLOCK: std::cell::RefCell<bytes::BytesMut> = std::cell::RefCell::new(bytes::BytesMut::new());
    }
    if encoded.len() > SMALL_RESULT {
        return Bytes::copy_from_slice(encoded);
    }
    BLOCK.with(|cell| match cell.try_borrow_mut() {
        Ok(mut block) => {
            if block.capacity() < encoded.len() {
                // Reclaims the block when every slice of it was dropped, else starts anew.
                block.reserve(RESULT_BLOCK);
            }
            block.extend_from_slice(encoded);
            block.split().freeze()
        }
        Err(_) => Bytes::copy_from_slice(encoded),
    })
}

pub(crate) fn encode_outcome<T: Serialize + ?Sized>(codec: CodecId, value: &T) -> Outcome {
    thread_local! {
        /// Where results are encoded before one exact-size copy: encoding into a fresh
        /// vector grows it step by step, and turning a vector with spare room into `Bytes`
        /// allocates once more.
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let encoded = SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut out) => {
            out.clear();
            let r = codec::encode_into(codec, value, &mut out).map(|()| result_bytes(&out));
            if out.capacity() > 64 * 1024 {
                *out = Vec::new();
            }
            r
        }
        // A result whose serialization encodes another result on this thread.
        Err(_) => {
            let mut out = Vec::new();
            codec::encode_into(codec, value, &mut out).map(|()| Bytes::from(out))
        }
    });
    match encoded {
        Ok(body) => Outcome::Value(body),
        Err(e) => encode_failed(codec, e),
    }
}

/// [`encode_outcome`] for a native connection: the result's [`Bulk`](crate::Bulk) values
/// are set aside for the attachment.
pub(crate) fn encode_outcome_native<T: Serialize + ?Sized>(codec: CodecId, value: &T) -> Outcome {
    match crate::bulk::collect(|| encode_outcome(codec, value)) {
        (Outcome::Value(result), Some(parts)) => attached(result, parts),
        (outcome, _) => outcome,
    }
}

/// An encoded result with its bulk values in the attachment.
fn attached(result: Bytes, parts: Vec<Bytes>) -> Outcome {
    let r = crate::bulk::attachment(parts).and_then(|(lengths, attachment)| {
        proto::Annotations::new()
            .with_bulk(&lengths)
            .map(|annotations| (annotations, attachment))
            .map_err(|e| e.to_string())
    });
    match r {
        Ok((annotations, attachment)) => Outcome::Attached(crate::provider::Attached {
            result,
            annotations,
            attachment,
        }),
        Err(m) => Outcome::Fault(Fault::new(
            FaultKind::Internal,
            format!("the server could not attach the result's bulk values: {m}"),
        )),
    }
}

fn encode_failed(codec: CodecId, e: wirecall_codecs::CodecError) -> Outcome {
    Outcome::Fault(Fault::new(
        FaultKind::Internal,
        format!("the server could not encode the result with {codec}: {e}"),
    ))
}

/// Answers call `id` of a native connection with the result a synchronous handler encoded
/// into this thread's direct result buffer (see [`ReplyEncoder`]): written from there into
/// the connection's send buffer, without a `Bytes` or a frame in between. Only for a
/// two-way call with no hooks and no trace (what the dispatcher arms).
pub(crate) fn answer_direct(
    wire: &Arc<Wire<proto::ServerConnection>>,
    id: u64,
    codec: CodecId,
    flush: Flush,
) {
    let mut s = wire.lock();
    answer_direct_in(wire, &mut s, id, codec);
    match flush {
        Flush::Now => wire.flush_locked(s),
        Flush::Batched => wire.flush_batched(s),
        Flush::Deferred => drop(s),
    }
}

/// [`answer_direct`] under a lock the caller holds (the connection's reader, which locks
/// the machine anyway for its next frame); the answer goes out with the reader's next flush.
pub(crate) fn answer_direct_in(
    wire: &Wire<proto::ServerConnection>,
    s: &mut crate::io::State<proto::ServerConnection>,
    id: u64,
    codec: CodecId,
) {
    let request_id = proto::RequestId(id);
    send_in(wire, s, id, |side| {
        DIRECT_RESULT.with(|cell| {
            let mut out = cell.borrow_mut();
            let r = side.reply_slice(request_id, codec, &out);
            if out.capacity() > 64 * 1024 {
                *out = Vec::new();
            }
            r
        })
    });
}

/// Sends an answer through the machine (`send`), fails the call instead when the answer
/// is over the caller's limits, and flushes as asked.
fn send_locked(
    wire: &Arc<Wire<proto::ServerConnection>>,
    mut s: std::sync::MutexGuard<'_, crate::io::State<proto::ServerConnection>>,
    id: u64,
    flush: Flush,
    send: impl FnOnce(&mut proto::ServerConnection) -> Result<(), proto::ProtocolError>,
) {
    send_in(wire, &mut s, id, send);
    match flush {
        Flush::Now => wire.flush_locked(s),
        Flush::Batched => wire.flush_batched(s),
        Flush::Deferred => drop(s),
    }
}

/// [`send_locked`] without the flush.
fn send_in(
    wire: &Wire<proto::ServerConnection>,
    s: &mut crate::io::State<proto::ServerConnection>,
    id: u64,
    send: impl FnOnce(&mut proto::ServerConnection) -> Result<(), proto::ProtocolError>,
) {
    if s.is_shut() {
        // The connection is gone; nobody waits for the answer.
        return;
    }
    let request_id = proto::RequestId(id);
    match send(&mut s.side) {
        Ok(()) => {}
        // Cancelled or past its deadline: the machine answered it already.
        Err(proto::ProtocolError::NotInFlight { .. }) | Err(proto::ProtocolError::Closed) => {}
        Err(e @ proto::ProtocolError::TooLong { .. }) => {
            // Over the caller's limits: the machine fails the call rather than leave it
            // waiting.
            let _ = s.side.fail_unsendable(request_id, &e);
        }
        Err(e) => tracing::warn!("dropping the answer to call {}: {e}", id),
    }
    if s.side.has_events() {
        // The last answer of a draining connection: its reader closes it.
        wire.wake_reader();
    }
}

/// The direct answer of a synchronous handler, on the thread that dispatches it.
///
/// A synchronous handler's result would otherwise be encoded into a `Bytes` of its own,
/// wrapped in a REPLY frame and copied from there into the connection's send buffer: an
/// allocation, a free and a frame per call. Instead the dispatcher arms the call
/// ([`arm_direct`]) just around the handler; the handler's [`ReplyEncoder`] (made by
/// [`Incoming::ready_encoder`] for synchronous handlers only) sees its own call armed and
/// encodes into a per-thread buffer; the dispatcher then answers from that buffer
/// ([`ReplySink::answer_direct`]). A call is named by its connection and request id, so
/// nothing else encoded on the thread meanwhile (another call's responder, an async handler)
/// can take its place.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Direct {
    Off,
    Armed((usize, u64)),
    Encoded((usize, u64)),
}

thread_local! {
    static DIRECT: std::cell::Cell<Direct> = const { std::cell::Cell::new(Direct::Off) };
    /// The encoded result of the armed call.
    static DIRECT_RESULT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The key of a native call for [`arm_direct`]: its connection's address and request id.
pub(crate) fn direct_key(sink: &ReplySink) -> (usize, u64) {
    match &sink.to {
        AnswerTo::Native(w) => (Arc::as_ptr(w) as usize, sink.id),
        AnswerTo::Pyro(p) => (Arc::as_ptr(p) as usize, sink.id),
        AnswerTo::Callback(c) => (Arc::as_ptr(c) as usize, sink.id),
    }
}

/// Arms the direct answer of the call `key` on this thread; returns what to restore.
pub(crate) fn arm_direct(key: (usize, u64)) -> DirectGuard {
    DirectGuard(DIRECT.replace(Direct::Armed(key)))
}

/// What was armed before (restored by [`DirectGuard::disarm`]).
pub(crate) struct DirectGuard(Direct);

impl DirectGuard {
    /// Disarms; true when the armed call's result waits in the direct result buffer.
    pub(crate) fn disarm(self, key: (usize, u64)) -> bool {
        DIRECT.replace(self.0) == Direct::Encoded(key)
    }
}

/// The `BadArguments` outcome for a missing parameter `i`.
#[cold]
fn missing_fault<N: ParamNames>(i: usize) -> Outcome {
    Outcome::Fault(Fault::new(
        FaultKind::BadArguments,
        missing_message(N::names(), i),
    ))
}

/// The `BadArguments` outcome for positional arguments that did not decode.
#[cold]
fn positional_fault(e: wirecall_codecs::CodecError) -> Outcome {
    Outcome::Fault(Fault::new(
        FaultKind::BadArguments,
        format!("positional arguments: {}", explain(e)),
    ))
}

/// What went wrong decoding arguments: our own message when the codec dropped it (postcard
/// does), else the codec's.
#[cold]
fn explain(e: wirecall_codecs::CodecError) -> String {
    match take_message() {
        Some(m) if !e.to_string().contains(&m) => format!("{m} ({e})"),
        _ => e.to_string(),
    }
}

/// Decodes a call's positional arguments into the handler's parameter slots (none filled
/// when there are none).
#[inline]
fn positional_slots<T: FromArgs, N: ParamNames>(
    codec: CodecId,
    args: &[u8],
    limits: &wirecall_codecs::Limits,
) -> Result<T::Slots, Outcome> {
    if args.is_empty() {
        return Ok(T::Slots::default());
    }
    match codec::decode::<Positional<T, N>>(codec, args, limits) {
        Ok(p) => Ok(p.0),
        Err(e) => Err(positional_fault(e)),
    }
}

/// Decodes a call's arguments into a handler's parameter tuple, matching keyword
/// arguments by name; on failure returns the `BadArguments` outcome to send back.
fn decode_call_args<T: FromArgs, N: ParamNames>(
    codec: CodecId,
    args: &[u8],
    kwargs: &[u8],
    limits: &wirecall_codecs::Limits,
    parts: Option<&[Bytes]>,
) -> Result<T, Outcome> {
    let bad = |m: String| Outcome::Fault(Fault::new(FaultKind::BadArguments, m));
    clear_message();
    let mut slots =
        crate::bulk::with_parts(parts, || positional_slots::<T, N>(codec, args, limits))?;
    if !kwargs.is_empty() {
        let kw = crate::bulk::with_parts(parts, || {
            codec::decode::<Keyword<T, N>>(codec, kwargs, limits)
        })
        .map_err(|e| bad(format!("keyword arguments: {}", explain(e))))?
        .0;
        T::merge(&mut slots, kw).map_err(|i| bad(duplicate_message(N::names(), i)))?;
    }
    T::finish(slots).map_err(missing_fault::<N>)
}

/// A call as a synchronous method's direct handler sees it
/// ([`DirectFn`](crate::provider::DirectFn)): its positional arguments where they arrived
/// and its codec. The server hands a call this way when nothing else of it is needed (no
/// keyword arguments, bulk values or argument stream, no hooks or trace): no [`Incoming`]
/// is built, and the result is encoded straight into the buffer the answer is written
/// from. For generated code.
#[doc(hidden)]
pub struct DirectCall<'a> {
    pub(crate) codec: CodecId,
    pub(crate) args: &'a [u8],
    pub(crate) limits: &'a wirecall_codecs::Limits,
}

impl fmt::Debug for DirectCall<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectCall")
            .field("codec", &self.codec)
            .field("args_len", &self.args.len())
            .finish()
    }
}

impl DirectCall<'_> {
    /// Decodes the positional arguments into the handler's parameter tuple, as
    /// [`Incoming::decode_args`] does; on failure returns the `BadArguments` outcome to send
    /// back.
    pub fn decode_args<T: FromArgs, N: ParamNames>(&self) -> Result<T, Outcome> {
        // Positional arguments only, no bulk values: `decode_call_args` without the keyword
        // and bulk branches.
        clear_message();
        let slots = positional_slots::<T, N>(self.codec, self.args, self.limits)?;
        T::finish(slots).map_err(missing_fault::<N>)
    }

    /// Encodes a successful result into `out` (empty); returns the outcome to answer
    /// instead when it does not go out from `out`: a result with [`Bulk`](crate::Bulk)
    /// values (they travel in the attachment) or one that failed to encode.
    pub fn value<T: Serialize + ?Sized>(&self, value: &T, out: &mut Vec<u8>) -> Option<Outcome> {
        let (r, parts) = crate::bulk::collect(|| codec::encode_into(self.codec, value, out));
        match (r, parts) {
            (Err(e), _) => Some(encode_failed(self.codec, e)),
            (Ok(()), Some(parts)) => Some(attached(Bytes::copy_from_slice(out), parts)),
            (Ok(()), None) => None,
        }
    }

    /// Passes a fault through.
    pub fn fault(&self, fault: Fault) -> Option<Outcome> {
        Some(Outcome::Fault(fault))
    }
}

/// Runs a direct handler (`f`) with this thread's direct result buffer, emptied, as its
/// output; `None` when the buffer is in use (never on the reader's path). What `f` left
/// in the buffer is answered with [`answer_direct_in`].
pub(crate) fn with_direct_buffer<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> Option<R> {
    DIRECT_RESULT.with(|cell| {
        let mut out = cell.try_borrow_mut().ok()?;
        out.clear();
        Some(f(&mut out))
    })
}

/// One incoming call, handed to a provider's handler.
pub struct Incoming {
    pub(crate) codec: CodecId,
    pub(crate) args: Bytes,
    pub(crate) kwargs: Bytes,
    pub(crate) conn: Arc<ConnectionInfo>,
    pub(crate) annotations: wirecall_protocol::Annotations,
    pub(crate) provider_id: u16,
    pub(crate) sink: ReplySink,
    pub(crate) limits: wirecall_codecs::Limits,
    /// When the caller's deadline passes (read from the clock only for calls with one).
    pub(crate) deadline_at: Option<std::time::Instant>,
    /// The call's bulk values when it is in bulk mode (SPEC §6.11).
    pub(crate) bulk: Option<Vec<Bytes>>,
    /// The call's argument stream when it sent one (SPEC §6.13), until the handler takes
    /// it.
    pub(crate) upload: std::sync::Mutex<Option<crate::upload::UploadRx>>,
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("request_id", &self.sink.id)
            .field("codec", &self.codec)
            .field("args_len", &self.args.len())
            .field("kwargs_len", &self.kwargs.len())
            .finish()
    }
}

impl Incoming {
    /// Decodes the arguments into the handler's parameter tuple, matching keyword arguments
    /// by name; on failure returns the `BadArguments` outcome to send back.
    pub fn decode_args<T: FromArgs, N: ParamNames>(&self) -> Result<T, Outcome> {
        decode_call_args::<T, N>(
            self.codec,
            &self.args,
            &self.kwargs,
            &self.limits,
            self.bulk.as_deref(),
        )
    }

    /// The call's argument stream (SPEC §6.13), decoded as `T`: what a `Streaming<T>`
    /// parameter receives. A call that sent none gives an empty stream (the route refuses
    /// such calls to methods that take one before they are dispatched).
    pub fn upload<T>(&self) -> crate::Streaming<T> {
        let rx = self.upload.lock().unwrap_or_else(|e| e.into_inner()).take();
        crate::Streaming::new(rx, self.limits)
    }

    /// The call's context (caller, annotations).
    pub fn context(&self) -> CallContext {
        CallContext {
            conn: self.conn.clone(),
            annotations: self.annotations.clone(),
            request_id: self.sink.id,
            provider_id: self.provider_id,
            codec: self.codec,
            deadline_at: self.deadline_at,
        }
    }

    /// A responder to answer the call later.
    pub fn responder<T: ?Sized>(&self) -> Responder<T> {
        Responder {
            sink: Some(self.sink.clone()),
            _result: std::marker::PhantomData,
        }
    }

    /// The encoder for the call's result.
    pub fn encoder(&self) -> ReplyEncoder {
        ReplyEncoder {
            codec: self.codec,
            call: direct_key(&self.sink),
            direct: false,
            native: matches!(self.sink.to, AnswerTo::Native(_)),
        }
    }

    /// The encoder for the result of a synchronous handler, which returns it at once as
    /// [`Handled::Ready`](crate::Handled::Ready): the dispatcher may answer it without an
    /// intermediate buffer. For generated code.
    #[doc(hidden)]
    pub fn ready_encoder(&self) -> ReplyEncoder {
        ReplyEncoder {
            codec: self.codec,
            call: direct_key(&self.sink),
            direct: true,
            native: matches!(self.sink.to, AnswerTo::Native(_)),
        }
    }
}
