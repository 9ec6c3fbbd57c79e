//! One client connection: a thin driver of `wirecall_protocol::ClientConnection`.
//!
//! The machine assigns request ids, encodes calls, checks them against the server's limits,
//! matches answers to calls, enforces deadlines (a call past its deadline is failed and
//! cancelled) and handles GOAWAY; this file moves bytes, parks callers and wakes them.
//!
//! Reading: a call that finds nobody reading reads the connection itself until its own
//! reply comes (no task hop for a lone call). If other calls are still waiting then, it
//! hands the read side to a reader task, which keeps reading until no call waits; so with
//! many calls in flight one task reads, woken by the reactor, and each caller only waits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use wirecall_protocol as proto;
use wirecall_transport::{Address, Stream};

use super::callbacks::{Exposed, Serving};
use super::slot::{Slot, SlotWait, Waiters};
use crate::error::{Error, Fault};
use crate::io::{HasMachine, State, Wire};
use crate::provider::Outcome;
use crate::CodecId;

/// Results up to this size are copied out of the read buffer rather than shared with it.
const SMALL_RESULT: usize = 1024;

/// Answers handled per hold of the connection's lock before their callers are woken.
const WAKE_BATCH: usize = 8;

/// How long connecting (TCP/unix connect plus handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A reply as the connection reader hands it to the waiting call.
pub(crate) enum Resp {
    Value(CodecId, Body),
    Fault(Fault),
}

/// Results up to this size travel inside the call's own answer slot.
pub(crate) const INLINE_RESULT: usize = 64;

/// An encoded result: small ones held inline (copied straight into the waiting call's slot,
/// so no allocation is made on the reading thread and freed on the calling one), larger ones
/// as bytes.
pub(crate) enum Body {
    Inline(u8, [u8; INLINE_RESULT]),
    Bytes(Bytes),
    /// A result in bulk mode (SPEC §6.11) and its bulk values, slices of the received frame.
    Bulk(Bytes, Vec<Bytes>),
}

impl Body {
    /// The result's bytes: inline when they fit, copied out of the read buffer up to
    /// [`SMALL_RESULT`] (so the caller, often on another thread, does not share the buffer's
    /// reference count with the reader), else shared with it.
    fn from_result(result: Bytes) -> Body {
        if result.len() <= SMALL_RESULT {
            Body::copied(&result)
        } else {
            Body::Bytes(result)
        }
    }

    /// A copy of a small result (at most [`SMALL_RESULT`] bytes).
    fn copied(result: &[u8]) -> Body {
        if result.len() <= INLINE_RESULT {
            let mut b = [0u8; INLINE_RESULT];
            b[..result.len()].copy_from_slice(result);
            // Fits: at most INLINE_RESULT (64) bytes.
            Body::Inline(result.len() as u8, b)
        } else {
            Body::Bytes(Bytes::copy_from_slice(result))
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Body::Inline(n, b) => &b[..usize::from(*n)],
            Body::Bytes(b) | Body::Bulk(b, _) => b,
        }
    }

    pub(crate) fn into_bytes(self) -> Bytes {
        self.into_parts().0
    }

    /// The result's bytes and, in bulk mode, its bulk values.
    pub(crate) fn into_parts(self) -> (Bytes, Option<Vec<Bytes>>) {
        match self {
            Body::Inline(..) => (Bytes::copy_from_slice(self.as_slice()), None),
            Body::Bytes(b) => (b, None),
            Body::Bulk(b, parts) => (b, Some(parts)),
        }
    }

    /// The bulk values of a result in bulk mode (for [`crate::bulk::with_parts`]).
    pub(crate) fn bulk_parts(&self) -> Option<&[Bytes]> {
        match self {
            Body::Bulk(_, parts) => Some(parts),
            _ => None,
        }
    }
}

/// What the connection's lock guards besides the write side: the state machine, the calls
/// waiting, and the read side while nobody reads.
pub(crate) struct Pending {
    machine: proto::ClientConnection,
    /// The calls waiting for an answer, by request id.
    pub(super) waiters: Waiters,
    /// The streamed calls whose consumer is still there, by request id (SPEC §6.12):
    /// while any is open a reader task reads the connection.
    streams: std::collections::HashMap<u64, StreamSlot, rustc_hash::FxBuildHasher>,
    /// The pumps of calls streaming their arguments (SPEC §6.13), by request id: woken
    /// when the server grants credit or the call ends.
    uploads: std::collections::HashMap<u64, Arc<tokio::sync::Notify>, rustc_hash::FxBuildHasher>,
    /// Set once the connection is gone; new calls fail with it.
    closed: Option<Error>,
    /// The read side while nobody reads it. Whoever reads takes it out; invariant: while
    /// any call waits for its reply, the reader is taken (a caller or the reader task is
    /// reading), so a caller that finds it here knows it must read for itself.
    reader: Option<Box<Reader>>,
    /// A recent instant, for calls that carry no deadline (the machine needs one).
    recent: Instant,
    /// The providers this connection serves to its server (callbacks, SPEC §6.10); while
    /// there are, the read side is always read, by a reader task.
    serving: Option<Serving>,
}

impl HasMachine for Pending {
    type M = proto::ClientConnection;

    fn machine(&mut self) -> &mut proto::ClientConnection {
        &mut self.machine
    }
}

type Locked<'a> = MutexGuard<'a, State<Pending>>;

/// What a connection's callers and its reader task share.
pub(crate) struct ConnShared {
    wire: Arc<Wire<Pending>>,
    /// Tells the reader task that the last waiting call was cancelled, so it can stop.
    pub(crate) idle: tokio::sync::Notify,
    address: String,
    /// Mirrors `pending.closed.is_some()`, read without the lock before every call.
    closed: AtomicBool,
    /// Mirrors `pending.reader.is_some()`: nobody reads, so a check for a GOAWAY or close
    /// that arrived while idle is due before the next call.
    reader_idle: AtomicBool,
}

impl ConnShared {
    /// Locks the connection's state.
    pub(crate) fn pending(&self) -> Locked<'_> {
        self.wire.lock()
    }

    /// Marks the connection closed: new calls fail with `err` (the first error wins).
    fn close_with(&self, p: &mut Pending, err: Error) {
        if p.closed.is_none() {
            p.closed = Some(err);
            self.closed.store(true, Ordering::Release);
        }
    }

    /// Takes the read side if nobody is reading.
    fn take_reader(&self, p: &mut Pending) -> Option<Box<Reader>> {
        let r = p.reader.take();
        if r.is_some() {
            self.reader_idle.store(false, Ordering::Relaxed);
        }
        r
    }

    /// Puts the read side back: nobody reads now.
    fn put_reader(&self, p: &mut Pending, r: Box<Reader>) {
        p.reader = Some(r);
        self.reader_idle.store(true, Ordering::Relaxed);
    }

    /// Closes the connection with `err`: every waiting call fails with it, the socket is
    /// shut down.
    fn fail_all(&self, mut p: Locked<'_>, err: Error) {
        self.close_with(&mut p.side, err.clone());
        let mut wakers = p.side.waiters.fail_all(|| Err(err.clone()));
        for slot in p.side.streams.values_mut() {
            if !slot.ended {
                slot.push(StreamMsg::Failed(err.clone()));
                slot.ended = true;
            }
        }
        wake_streams(&mut p.side, &mut wakers);
        for (_, pump) in p.side.uploads.drain() {
            pump.notify_one();
        }
        // Dropped once the lock is released: its instances see on_disconnect.
        let serving = p.side.serving.take();
        drop(p);
        drop(serving);
        self.wire.close();
        for w in wakers {
            w.wake();
        }
    }
}

/// The engine error for a protocol error on the connection to `address`.
fn conn_error(address: &str, e: proto::ProtocolError) -> Error {
    use proto::ProtocolError as P;
    match e {
        P::PeerClosed { code, message } if code == proto::ErrorCode::SHUTTING_DOWN => {
            Error::ShuttingDown { message }
        }
        P::PeerClosed { code, message } if code == proto::ErrorCode::TIMEOUT => Error::transport(
            address,
            format!("the server closed the connection: {message}"),
        ),
        P::Refused {
            code,
            versions,
            accepted,
            message,
        } => {
            if code == proto::ErrorCode::NO_COMMON_CODEC {
                Error::NoCommonCodec {
                    offered: Vec::new(),
                    accepted: accepted.iter().map(|c| c.to_string()).collect(),
                }
            } else if code == proto::ErrorCode::SHUTTING_DOWN {
                Error::ShuttingDown { message }
            } else {
                Error::Protocol(P::Refused {
                    code,
                    versions,
                    accepted,
                    message,
                })
            }
        }
        P::GoingAway => Error::ShuttingDown {
            message: "the connection is going away; the next call opens a new one".into(),
        },
        P::Closed => Error::transport(address, "the connection is closed"),
        P::HandshakeTimeout | P::PingTimeout | P::FrameTimeout | P::IdleTimeout => {
            Error::transport_source(address, e)
        }
        e @ P::TooLong { .. } => Error::LimitExceeded {
            message: e.to_string(),
        },
        e @ P::InFlightLimit { .. } => Error::Busy {
            message: e.to_string(),
        },
        e => Error::Protocol(e),
    }
}

/// One live connection to a server.
pub(crate) struct ClientConn {
    pub(crate) shared: Arc<ConnShared>,
    pub(crate) default_codec: CodecId,
    pub(crate) accepted: Vec<CodecId>,
    pub(crate) address: String,
    /// The server's limit of calls in flight on this connection.
    pub(crate) max_in_flight: u32,
    /// The compression algorithms in force (SPEC §6.9); empty when off.
    pub(crate) compression: Vec<proto::CompressionId>,
}

/// How a call joins an ordered batch (SPEC §6.8): the batch's first request id, shared by
/// its calls (0 until the first call is queued), and whether this call is the last.
pub(crate) struct BatchMark<'a> {
    pub(crate) first: &'a std::sync::atomic::AtomicU64,
    /// This call opens the batch (its id becomes the batch's).
    pub(crate) is_first: bool,
    pub(crate) last: bool,
    /// Set once this call's frame is queued (sent, as far as the batch is concerned).
    pub(crate) queued: &'a AtomicBool,
}

impl Drop for ClientConn {
    fn drop(&mut self) {
        // Graceful: GOAWAY (the server finishes nothing more: no call waits), then close.
        let mut p = self.shared.pending();
        let _ = p.side.machine.goaway();
        drop(p);
        self.shared.wire.close();
    }
}

impl ClientConn {
    /// Up, after noticing any GOAWAY or close that arrived while it was idle.
    pub(crate) fn is_live(&self) -> bool {
        if self.shared.reader_idle.load(Ordering::Relaxed) {
            self.refresh();
        }
        !self.is_closed()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire) || self.shared.wire.is_closed()
    }

    /// Connects and runs the handshake through the machine.
    pub(crate) async fn connect(
        address: &Address,
        preferred: &[CodecId],
        only: bool,
        limits: proto::Limits,
        compression: &proto::Compression,
        tls: Option<&crate::TlsClientConfig>,
        exposed: Option<Arc<Exposed>>,
    ) -> Result<ClientConn, Error> {
        let url = address.to_string();
        let connecting = async {
            match tls {
                Some(tls) => Stream::connect_tls(address, tls).await,
                None => Stream::connect(address).await,
            }
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| Error::transport(&url, "connect timed out"))?
            .map_err(|e| Error::transport_source(&url, e))?;
        let (mut rd, mut wr) = stream.into_split();
        let mut codecs: Vec<proto::CodecId> = preferred.to_vec();
        if !only {
            for c in CodecId::BUILTIN {
                if !preferred.contains(&c) {
                    codecs.push(c);
                }
            }
        }
        let offered: Vec<String> = codecs.iter().map(|c| c.to_string()).collect();
        let mut config = proto::ClientConfig::new(codecs);
        config.limits = limits;
        config.compression = compression.clone();
        config.handshake_timeout = Some(CONNECT_TIMEOUT);
        // The writer sends the transmit buffer as one contiguous run.
        config.share_sections_from = usize::MAX;
        // Calls may stream their arguments when the server agrees (SPEC §6.13).
        config.offer_uploads();
        if exposed.is_some() {
            // The server may call the exposed providers back on this connection.
            config
                .offer_callbacks(None)
                .map_err(|e| Error::config(e.to_string()))?;
        }
        let mut machine = proto::ClientConnection::new(config, crate::io::now())
            .map_err(|e| Error::config(e.to_string()))?;
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut out = BytesMut::new();
        // The handshake, driven by the machine, its deadline included.
        let session = loop {
            machine.take_transmit(&mut out);
            if !out.is_empty() {
                let mut sent = wr.write_all(&out).await;
                if sent.is_ok() {
                    // A TLS stream may hold the last bytes until flushed.
                    sent = wr.flush().await;
                }
                if let Err(e) = sent {
                    // The server closed on us: what it sent first (a TLS alert, a REFUSE)
                    // says why better than "broken pipe". Read it if it is there.
                    let why = tokio::time::timeout(Duration::from_millis(100), async {
                        loop {
                            match rd.read_buf(&mut buf).await {
                                Ok(0) => return None,
                                Ok(_) => {
                                    if let Err(pe) =
                                        machine.handle_input_buf(&mut buf, crate::io::now())
                                    {
                                        return Some(conn_error(&url, pe));
                                    }
                                }
                                // A TLS alert read back (described by the transport).
                                Err(re) if re.kind() == std::io::ErrorKind::InvalidData => {
                                    return Some(Error::transport_source(&url, re))
                                }
                                Err(_) => return None,
                            }
                        }
                    })
                    .await;
                    return Err(match why {
                        Ok(Some(better)) => better,
                        _ => Error::transport_source(&url, e),
                    });
                }
                out.clear();
            }
            if let Some(s) = std::iter::from_fn(|| machine.poll_event()).find_map(|ev| match ev {
                proto::ClientEvent::Connected(s) => Some(s),
                _ => None,
            }) {
                break s;
            }
            let deadline = machine
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + CONNECT_TIMEOUT);
            let r = tokio::select! {
                r = rd.read_buf(&mut buf) => match r {
                    Ok(0) => {
                        return Err(Error::transport(
                            &url,
                            "the server closed the connection during the handshake",
                        ))
                    }
                    Err(e) => return Err(Error::transport_source(&url, e)),
                    Ok(_) => machine.handle_input_buf(&mut buf, crate::io::now()),
                },
                () = tokio::time::sleep_until(deadline) => machine.handle_timeout(crate::io::now()),
            };
            if let Err(e) = r {
                // Tell the server why, if the machine has something to say.
                machine.take_transmit(&mut out);
                let _ = wr.write_all(&out).await;
                let _ = wr.flush().await;
                return Err(match conn_error(&url, e) {
                    Error::NoCommonCodec { accepted, .. } => Error::NoCommonCodec {
                        offered: offered.clone(),
                        accepted,
                    },
                    other => other,
                });
            }
        };
        let pending = Pending {
            machine,
            waiters: Waiters::default(),
            streams: Default::default(),
            uploads: Default::default(),
            closed: None,
            reader: Some(Box::new(Reader {
                rd,
                buf,
                done: false,
                wakers: Vec::new(),
            })),
            recent: crate::io::now(),
            serving: None,
        };
        let wire = Wire::start(pending, wr);
        let shared = Arc::new(ConnShared {
            wire,
            idle: tokio::sync::Notify::new(),
            address: url.clone(),
            closed: AtomicBool::new(false),
            reader_idle: AtomicBool::new(true),
        });
        if let (Some(exposed), true) = (exposed, session.callbacks()) {
            let serving = Serving::new(
                &exposed,
                &url,
                Arc::downgrade(&shared),
                limits.max_frame_len,
            );
            let reader = {
                let mut p = shared.pending();
                p.side.serving = Some(serving);
                shared.take_reader(&mut p.side)
            };
            // Callbacks may come at any time: the connection is read for as long as it
            // lives, not only while calls wait.
            if let Some(r) = reader {
                tokio::spawn(reader_task(shared.clone(), r));
            }
        }
        Ok(ClientConn {
            shared,
            default_codec: session.codec,
            accepted: session.accepted.clone(),
            address: url,
            max_in_flight: session.peer_limits.max_in_flight,
            compression: session.compression(),
        })
    }

    /// Notices, without waiting, a GOAWAY or close that arrived while the connection was idle.
    fn refresh(&self) {
        let Some(mut reader) = self.shared.take_reader(&mut self.shared.pending().side) else {
            // Someone is reading right now; they will notice.
            return;
        };
        if !reader.done {
            reader.poll_now(&self.shared);
        }
        release_reader(&self.shared, reader);
    }

    /// A call of a batch: queued for the writer task with the calls around it (one write),
    /// and, in an ordered batch (`mark`), annotated `wc.batch` with the batch's first
    /// request id, read and set under the connection's lock so that no other call takes it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn call_batched(
        &self,
        provider_id: u16,
        method: &str,
        codec: CodecId,
        annotations: &proto::Annotations,
        args: &[u8],
        kwargs: &[u8],
        oneway: bool,
        timeout: Option<Duration>,
        mark: Option<BatchMark<'_>>,
    ) -> Result<Option<(CodecId, Body)>, Error> {
        self.call_inner(
            provider_id,
            method,
            codec,
            annotations,
            args,
            kwargs,
            None,
            oneway,
            timeout,
            mark,
            true,
        )
        .await
    }

    /// Sends one call and waits for its answer (`None` for a oneway call). `attachment` is
    /// the call's attachment (its bulk values, listed in `annotations`), sent as it is.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn call(
        &self,
        provider_id: u16,
        method: &str,
        codec: CodecId,
        annotations: &proto::Annotations,
        args: &[u8],
        kwargs: &[u8],
        attachment: Option<Bytes>,
        oneway: bool,
        timeout: Option<Duration>,
    ) -> Result<Option<(CodecId, Body)>, Error> {
        self.call_inner(
            provider_id,
            method,
            codec,
            annotations,
            args,
            kwargs,
            attachment,
            oneway,
            timeout,
            None,
            false,
        )
        .await
    }

    /// [`call`](Self::call), optionally in an ordered batch and always queued for the
    /// writer task when `batched`.
    #[allow(clippy::too_many_arguments)]
    async fn call_inner(
        &self,
        provider_id: u16,
        method: &str,
        codec: CodecId,
        annotations: &proto::Annotations,
        args: &[u8],
        kwargs: &[u8],
        attachment: Option<Bytes>,
        oneway: bool,
        timeout: Option<Duration>,
        batch: Option<BatchMark<'_>>,
        batched: bool,
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
        let shared = &self.shared;
        if oneway {
            let mut p = shared.pending();
            if let Some(e) = &p.side.closed {
                return Err(e.clone());
            }
            if p.is_shut() {
                return Err(Error::transport(&self.address, "the connection is closed"));
            }
            let now = p.side.recent;
            let marked;
            let frame = match &batch {
                None => frame,
                Some(mark) => {
                    marked = with_batch(annotations, &p.side.machine, mark)?;
                    proto::CallRef {
                        annotations: &marked,
                        ..frame
                    }
                }
            };
            match attachment {
                None => p.side.machine.call_ref(frame, now),
                Some(a) => p.side.machine.call_ref_attached(frame, a, now),
            }
            .map_err(|e| conn_error(&self.address, e))?;
            if let Some(mark) = &batch {
                mark.queued.store(true, Ordering::Relaxed);
            }
            if batched {
                shared.wire.flush_batched(p);
            } else {
                shared.wire.flush_locked(p);
            }
            return Ok(None);
        }
        let slot = std::pin::pin!(Slot::new());
        let slot = slot.into_ref();
        let waker = std::future::poll_fn(|cx| std::task::Poll::Ready(cx.waker().clone())).await;
        // The deadline's clock: read only for calls that have one.
        let now = timeout.map(|_| crate::io::now());
        let (id, reader) = {
            let mut p = shared.pending();
            if let Some(e) = &p.side.closed {
                return Err(e.clone());
            }
            if p.is_shut() {
                return Err(Error::transport(&self.address, "the connection is closed"));
            }
            let at = now.unwrap_or(p.side.recent);
            let marked;
            let frame = match &batch {
                None => frame,
                Some(mark) => {
                    marked = with_batch(annotations, &p.side.machine, mark)?;
                    proto::CallRef {
                        annotations: &marked,
                        ..frame
                    }
                }
            };
            let id = match attachment {
                None => p.side.machine.call_ref(frame, at),
                Some(a) => p.side.machine.call_ref_attached(frame, a, at),
            }
            .map_err(|e| conn_error(&self.address, e))?;
            if let Some(mark) = &batch {
                mark.queued.store(true, Ordering::Relaxed);
                // The batch's first call is queued: its id names the batch.
                let _ = mark.first.compare_exchange(
                    0,
                    id.0,
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            // SAFETY: `slot` is pinned in this future and outlives `guard` below (declared
            // after it, so dropped before it), which forgets the waiter under the lock
            // unless the slot was filled.
            #[allow(unsafe_code)]
            unsafe {
                p.side.waiters.insert(id.0, slot, waker);
            }
            // Nobody reading (the reader is here) means no other call waits: read for
            // ourselves.
            let reader = shared.take_reader(&mut p.side);
            // A lone call is written inline (no task hop); with others in flight the
            // writer task batches them into one write.
            if p.side.waiters.len() == 1 && !batched {
                shared.wire.flush_locked(p);
            } else {
                shared.wire.flush_batched(p);
            }
            (id.0, reader)
        };
        let mut guard = CallGuard {
            shared,
            id,
            armed: true,
        };
        let mut role = ReadRole { shared, reader };
        // Wait for the answer, reading the connection meanwhile if nobody else is.
        let wait = async {
            if let Some(r) = role.reader.as_mut() {
                loop {
                    if let Some(v) = slot.take() {
                        break v;
                    }
                    if r.done {
                        break Err(Error::transport(&self.address, "the connection is closed"));
                    }
                    r.read_some(shared, id).await;
                }
            } else {
                SlotWait {
                    slot,
                    shared,
                    id,
                    polled: false,
                }
                .await
            }
        };
        let r = match (timeout, now) {
            (Some(t), Some(start)) => {
                // Boxed: the timer's state would otherwise sit inside every call's future
                // (moved and touched on every call), timed or not.
                match Box::pin(tokio::time::timeout_at(
                    tokio::time::Instant::from_std(start + t),
                    wait,
                ))
                .await
                {
                    Ok(r) => r,
                    Err(_) => {
                        // The machine's deadline for the call has passed: it fails the call
                        // and sends CANCEL.
                        expire(shared);
                        match slot.take() {
                            Some(v) => v,
                            None => Err(Error::Timeout { after: t }),
                        }
                    }
                }
            }
            _ => wait.await,
        };
        drop(role);
        // A filled slot was removed from the map by its filler: nothing left to forget.
        // (An answer that did not come through the slot leaves the guard to remove it.)
        guard.armed = !slot.is_filled();
        match r {
            Ok(Resp::Value(c, b)) => Ok(Some((c, b))),
            Ok(Resp::Fault(f)) => {
                let mut e = f.into_error(provider_id, method);
                match (&mut e, timeout) {
                    (Error::Timeout { after }, Some(t)) => *after = t,
                    // The body names the accepted set; the refused codec is the call's.
                    (Error::CodecRefused { codec: c, .. }, _) if c.is_empty() => {
                        *c = codec.to_string()
                    }
                    _ => {}
                }
                Err(e)
            }
            Err(Error::Timeout { .. }) if timeout.is_some() => Err(Error::Timeout {
                after: timeout.unwrap_or_default(),
            }),
            Err(e) => Err(e),
        }
    }
}

/// `annotations` with a `wc.batch` entry appended, read under the connection's lock: the
/// batch's first call names the id it is about to get; later calls the id the first got.
fn with_batch(
    annotations: &proto::Annotations,
    machine: &proto::ClientConnection,
    mark: &BatchMark<'_>,
) -> Result<proto::Annotations, Error> {
    let first = match mark.first.load(std::sync::atomic::Ordering::Relaxed) {
        0 if mark.is_first => machine.next_request_id(),
        0 => {
            return Err(Error::Skipped {
                message: "the first call of its batch could not be sent".into(),
            })
        }
        id => proto::RequestId(id),
    };
    let mut b = proto::Annotations::builder();
    for (k, v) in annotations.iter() {
        if k == proto::DEADLINE_KEY {
            if let Some(d) = annotations.deadline() {
                b = b.deadline(d);
            }
        } else if k == proto::CORRELATION_KEY {
            if let Some(c) = annotations.correlation_id() {
                b = b.correlation_id(c);
            }
        } else if k == proto::BULK_KEY {
            if let Some(lengths) = annotations.bulk_lengths() {
                b = b
                    .bulk(&lengths.collect::<Vec<_>>())
                    .map_err(|e| Error::config(format!("bad bulk annotation: {e}")))?;
            }
        } else if !k.starts_with(proto::RESERVED_PREFIX) {
            b = b
                .insert(k, v)
                .map_err(|e| Error::config(format!("bad annotation `{k}`: {e}")))?;
        }
    }
    Ok(b.batch(first, mark.last).build())
}

/// Fires the machine's timers now: calls past their deadline fail (their waiters are
/// answered with a timeout) and are cancelled on the wire.
fn expire(shared: &ConnShared) {
    let mut p = shared.pending();
    let now = crate::io::now();
    let r = p.side.machine.handle_timeout(now);
    let mut wakers = Vec::new();
    if let Err(e) = handle_events(shared, &mut p, 0, &mut wakers, r) {
        shared.fail_all(p, e);
    } else {
        wake_streams(&mut p.side, &mut wakers);
        shared.wire.flush_locked(p);
    }
    for w in wakers {
        w.wake();
    }
}

/// Acts on the machine's events after input or timers: answers waiters (pushing the wakers
/// to wake once the lock is released, except `mine`'s), closes on GOAWAY drained. Returns
/// the error that ends the connection, if any.
fn handle_events(
    shared: &ConnShared,
    p: &mut Locked<'_>,
    mine: u64,
    wakers: &mut Vec<std::task::Waker>,
    input: Result<(), proto::ProtocolError>,
) -> Result<(), Error> {
    let side = &mut p.side;
    let complete = |side: &mut Pending,
                    wakers: &mut Vec<std::task::Waker>,
                    id: u64,
                    v: Result<Resp, Error>| {
        if let Some(w) = side.waiters.complete(id, v) {
            if id != mine {
                wakers.push(w);
            }
        }
    };
    while let Some(ev) = side.machine.poll_event() {
        let ev = if side.streams.is_empty() {
            ev
        } else {
            match stream_event(side, ev) {
                Some(ev) => ev,
                None => continue,
            }
        };
        match ev {
            proto::ClientEvent::Reply(r) if r.stream => {
                // A streamed result for a plain call: nobody reads its items, so the call
                // is cancelled (the server drops its producer) and the caller told why.
                let _ = side.machine.cancel(r.request_id);
                complete(
                    side,
                    wakers,
                    r.request_id.0,
                    Err(Error::config(
                        "the method returns a stream: read it with CallBuilder::stream (or the generated client's method); the call was cancelled",
                    )),
                )
            }
            proto::ClientEvent::Reply(r) => {
                let body = if proto::has_bulk(&r.annotations, &r.attachment) {
                    // The machine checked the lengths: the split cannot fail.
                    let parts =
                        proto::split_bulk(&r.annotations, &r.attachment).unwrap_or_default();
                    Body::Bulk(r.result, parts)
                } else {
                    Body::from_result(r.result)
                };
                complete(side, wakers, r.request_id.0, Ok(Resp::Value(r.codec, body)))
            }
            proto::ClientEvent::Error(e) => complete(
                side,
                wakers,
                e.request_id.0,
                Ok(Resp::Fault(Fault::from_body(e.body))),
            ),
            proto::ClientEvent::Failed { request_id, .. } => complete(
                side,
                wakers,
                request_id.0,
                Err(Error::Timeout {
                    after: Duration::ZERO,
                }),
            ),
            proto::ClientEvent::GoAway(g) => {
                // No new calls here; those in flight still get their answers.
                shared.close_with(
                    side,
                    Error::ShuttingDown {
                        message: if g.message.is_empty() {
                            "the server is going away; the next call opens a new connection".into()
                        } else {
                            g.message
                        },
                    },
                );
            }
            proto::ClientEvent::Call(c) => {
                if let Some(s) = &mut side.serving {
                    s.on_call(&mut side.machine, c);
                }
            }
            proto::ClientEvent::CallCancelled(id) | proto::ClientEvent::CallExpired(id) => {
                if let Some(s) = &side.serving {
                    s.stop(id.0);
                }
            }
            proto::ClientEvent::CallRejected { request_id, error } => {
                tracing::debug!(
                    request_id = request_id.0,
                    error = %error,
                    "callback refused without running it"
                );
            }
            proto::ClientEvent::Credit { request_id, .. } => {
                if let Some(pump) = side.uploads.get(&request_id.0) {
                    pump.notify_one();
                }
            }
            proto::ClientEvent::Drained => {
                return Err(side.closed.clone().unwrap_or_else(|| {
                    Error::transport(&shared.address, "the connection was closed")
                }))
            }
            _ => {}
        }
    }
    input.map_err(|e| conn_error(&shared.address, e))
}

/// The read side of a connection.
pub(crate) struct Reader {
    rd: wirecall_transport::ReadHalf,
    buf: BytesMut,
    /// The connection failed; every waiter has been told.
    pub(crate) done: bool,
    /// Wakers of answered calls, woken after the lock is released (kept for its capacity).
    wakers: Vec<std::task::Waker>,
}

impl Reader {
    /// Feeds what was read to the machine and answers the calls it completes. `mine` is
    /// the reading caller's own request id (0 for none): its answer is stored without a
    /// wake-up.
    fn dispatch(&mut self, shared: &ConnShared, mine: u64) {
        let now = crate::io::now();
        loop {
            let mut p = shared.pending();
            p.side.recent = now;
            let wakers = &mut self.wakers;
            let Pending {
                machine,
                waiters,
                streams,
                ..
            } = &mut p.side;
            // The common reply is read in place: its small result is copied into the
            // caller's slot straight from the read buffer. At most WAKE_BATCH answers per
            // lock: their callers are woken (and start their next calls on other workers)
            // while the rest of a long batch is read.
            let r = machine.handle_input_with(
                &mut self.buf,
                now,
                SMALL_RESULT,
                WAKE_BATCH,
                |id, codec, result| {
                    let slot = if streams.is_empty() {
                        None
                    } else {
                        streams.get_mut(&id.0)
                    };
                    if let Some(slot) = slot {
                        // A plain REPLY to a streamed call: a stream of that one value.
                        slot.started = true;
                        slot.push(StreamMsg::Item(codec, Bytes::copy_from_slice(result)));
                        slot.push(StreamMsg::End);
                        slot.ended = true;
                    } else if let Some(w) =
                        waiters.complete(id.0, Ok(Resp::Value(codec, Body::copied(result))))
                    {
                        if id.0 != mine {
                            wakers.push(w);
                        }
                    }
                },
            );
            let more = matches!(r, Ok(n) if n == WAKE_BATCH);
            match handle_events(shared, &mut p, mine, wakers, r.map(|_| ())) {
                Ok(()) => {
                    if !more {
                        wake_streams(&mut p.side, wakers);
                    }
                    shared.wire.flush_batched(p)
                }
                Err(e) => {
                    self.done = true;
                    shared.fail_all(p, e);
                }
            }
            for w in self.wakers.drain(..) {
                w.wake();
            }
            if !more || self.done {
                return;
            }
        }
    }

    fn fail(&mut self, shared: &ConnShared, e: Error) {
        self.done = true;
        let mut p = shared.pending();
        let _ = p.side.machine.handle_eof_buf(&self.buf);
        shared.fail_all(p, e);
    }

    /// Reads once (waiting for data) and dispatches every complete frame.
    ///
    /// Cancel-safe: dropped while waiting it loses no bytes.
    pub(crate) async fn read_some(&mut self, shared: &ConnShared, mine: u64) {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        match self.rd.read_buf(&mut self.buf).await {
            Ok(0) => self.fail(
                shared,
                Error::transport(&shared.address, "the server closed the connection"),
            ),
            Err(e) => self.fail(shared, Error::transport_source(&shared.address, e)),
            Ok(_) => self.dispatch(shared, mine),
        }
    }

    /// Reads, without waiting, whatever has arrived (a GOAWAY or a close while the
    /// connection was idle) and dispatches it.
    fn poll_now(&mut self, shared: &ConnShared) {
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        // Uninitialised: this runs before every call, and zeroing 4 KiB each time was a fifth
        // of a small call's instructions. Almost always nothing is readable and no byte of it
        // is touched.
        let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        while !self.done {
            let mut rb = tokio::io::ReadBuf::uninit(&mut chunk);
            match std::pin::Pin::new(&mut self.rd).poll_read(&mut cx, &mut rb) {
                std::task::Poll::Ready(Ok(())) if rb.filled().is_empty() => self.fail(
                    shared,
                    Error::transport(&shared.address, "the server closed the connection"),
                ),
                std::task::Poll::Ready(Ok(())) => {
                    self.buf.extend_from_slice(rb.filled());
                    self.dispatch(shared, 0);
                }
                std::task::Poll::Ready(Err(e)) => {
                    self.fail(shared, Error::transport_source(&shared.address, e))
                }
                std::task::Poll::Pending => return,
            }
        }
    }
}

/// Puts the read side back if no call waits (or the connection is done); else returns it,
/// because somebody must go on reading.
fn park_reader(shared: &ConnShared, reader: Box<Reader>) -> Option<Box<Reader>> {
    let mut p = shared.pending();
    if reader.done
        || (p.side.waiters.is_empty() && p.side.serving.is_none() && p.side.streams.is_empty())
    {
        shared.put_reader(&mut p.side, reader);
        None
    } else {
        Some(reader)
    }
}

/// Gives the read side back: to the connection if no call waits (or the connection is
/// done), else to a reader task that reads until no call waits.
fn release_reader(shared: &Arc<ConnShared>, reader: Box<Reader>) {
    let Some(reader) = park_reader(shared, reader) else {
        return;
    };
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(reader_task(shared.clone(), reader));
        }
        Err(_) => {
            // No runtime to read on (a caller dropped outside one): nobody can read the
            // replies, so end the connection rather than leave calls waiting forever.
            let mut reader = reader;
            reader.fail(
                shared,
                Error::transport(&shared.address, "the connection's runtime is gone"),
            );
            shared.put_reader(&mut shared.pending().side, reader);
        }
    }
}

/// Reads the connection while calls wait for replies, then gives the read side back.
async fn reader_task(shared: Arc<ConnShared>, mut reader: Box<Reader>) {
    loop {
        reader = match park_reader(&shared, reader) {
            Some(r) => r,
            None => return,
        };
        // A connection serving callbacks arms the machine's timer (the callbacks'
        // deadlines among others); calls fire their own deadlines (see `expire`).
        let timer = {
            let mut p = shared.pending();
            let side = &mut p.side;
            side.serving
                .as_ref()
                .and(side.machine.poll_timeout())
                .map(tokio::time::Instant::from_std)
        };
        tokio::select! {
            biased;
            () = reader.read_some(&shared, 0) => {}
            () = shared.idle.notified() => {}
            () = sleep_until(timer), if timer.is_some() => expire(&shared),
        }
    }
}

/// Sleeps until `at` (forever without one).
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The read side held by a caller reading for itself; handed on when dropped.
struct ReadRole<'a> {
    shared: &'a Arc<ConnShared>,
    reader: Option<Box<Reader>>,
}

impl Drop for ReadRole<'_> {
    fn drop(&mut self) {
        if let Some(r) = self.reader.take() {
            release_reader(self.shared, r);
        }
    }
}

/// Forgets a call and cancels it on the wire if the caller stops waiting.
struct CallGuard<'a> {
    shared: &'a ConnShared,
    id: u64,
    armed: bool,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut p = self.shared.pending();
        if p.side.waiters.forget(self.id) {
            // The machine sends CANCEL and swallows the call's answer when it comes.
            let _ = p.side.machine.cancel(proto::RequestId(self.id));
            if p.side.waiters.is_empty() && p.side.streams.is_empty() && p.side.reader.is_none() {
                // A reader task may be waiting for replies nobody wants any more.
                self.shared.idle.notify_one();
            }
            self.shared.wire.flush_locked(p);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Streamed results (SPEC §6.5, §6.12)
// ---------------------------------------------------------------------------------------

/// What a streamed call's consumer has still to take, in order.
enum StreamMsg {
    /// One item (or the value of a plain REPLY), encoded.
    Item(CodecId, Bytes),
    /// The server failed the call: the stream's last item.
    Fault(Fault),
    /// The call failed on this side (its connection closed).
    Failed(Error),
    /// STREAM_END: the stream is complete.
    End,
}

/// A streamed call's state, kept under the connection's lock.
#[derive(Default)]
struct StreamSlot {
    queue: std::collections::VecDeque<StreamMsg>,
    /// The REPLY came (with STREAM, or a plain one), or the call failed.
    started: bool,
    /// The last message (End, Fault, Failed) is queued.
    ended: bool,
    /// The consumer's waker, while it waits.
    waker: Option<std::task::Waker>,
    /// Something came since the consumer was last woken.
    notify: bool,
    /// The stream's token when the server keeps it for a resume (SPEC §6.14).
    token: Option<[u8; 16]>,
}

impl StreamSlot {
    fn push(&mut self, msg: StreamMsg) {
        self.queue.push_back(msg);
        self.notify = true;
    }
}

/// Takes the wakers of the stream consumers that have something new. The reader calls it
/// once per read, not per frame: a consumer woken once takes a whole read's items.
fn wake_streams(side: &mut Pending, wakers: &mut Vec<std::task::Waker>) {
    if side.streams.is_empty() {
        return;
    }
    for slot in side.streams.values_mut() {
        if std::mem::take(&mut slot.notify) {
            if let Some(w) = slot.waker.take() {
                wakers.push(w);
            }
        }
    }
}

/// Routes a machine event that belongs to an open stream into its slot; gives back an
/// event that is not a stream's.
fn stream_event(side: &mut Pending, ev: proto::ClientEvent) -> Option<proto::ClientEvent> {
    let id = match &ev {
        proto::ClientEvent::Reply(r) => r.request_id,
        proto::ClientEvent::StreamItem(s) => s.request_id,
        proto::ClientEvent::StreamEnd(id) => *id,
        proto::ClientEvent::Error(e) => e.request_id,
        proto::ClientEvent::Failed { request_id, .. } => *request_id,
        _ => return Some(ev),
    };
    let Some(slot) = side.streams.get_mut(&id.0) else {
        return Some(ev);
    };
    slot.started = true;
    if !matches!(ev, proto::ClientEvent::StreamItem(_))
        && !matches!(&ev, proto::ClientEvent::Reply(r) if r.stream)
    {
        // The call's end: its argument pump, if any, stops.
        if let Some(pump) = side.uploads.remove(&id.0) {
            pump.notify_one();
        }
    }
    match ev {
        proto::ClientEvent::Reply(r) if r.stream => {
            slot.token = r.annotations.stream_token();
            slot.notify = true
        }
        proto::ClientEvent::Reply(r) => {
            slot.push(StreamMsg::Item(r.codec, r.result));
            slot.push(StreamMsg::End);
            slot.ended = true;
        }
        proto::ClientEvent::StreamItem(s) => slot.push(StreamMsg::Item(s.codec, s.item)),
        proto::ClientEvent::StreamEnd(_) => {
            slot.push(StreamMsg::End);
            slot.ended = true;
        }
        proto::ClientEvent::Error(e) => {
            slot.push(StreamMsg::Fault(Fault::from_body(e.body)));
            slot.ended = true;
        }
        _ => {
            slot.push(StreamMsg::Failed(Error::Timeout {
                after: Duration::ZERO,
            }));
            slot.ended = true;
        }
    }
    None
}

/// The consumer's end of a streamed call, in encoded items: grants the server credit as
/// it takes them, and cancels the call when dropped before its end.
pub(crate) struct RawStream {
    shared: Arc<ConnShared>,
    id: u64,
    window: u32,
    provider_id: u16,
    method: String,
    /// The stream's end was taken (or it failed): nothing to cancel.
    finished: bool,
    /// What the reader queued, taken under one lock and handed out without it.
    local: std::collections::VecDeque<StreamMsg>,
    /// Items handed out since the last CREDIT.
    taken: u32,
    /// The task sending the call's argument stream (SPEC §6.13), stopped with the stream.
    pump: Option<tokio::task::AbortHandle>,
    /// Items handed out over the stream's life, resumes included.
    received: u64,
    /// The stream's token when the server keeps it for a resume (SPEC §6.14).
    token: Option<[u8; 16]>,
    /// Opens the call again to resume the stream after its connection was lost.
    resumer: Option<Resumer>,
    /// A resume under way.
    resuming: Option<futures::future::BoxFuture<'static, Result<RawStream, Error>>>,
}

/// Resumes a stream on a new connection: the stream's token and the items received.
pub(crate) type Resumer = Arc<
    dyn Fn([u8; 16], u64) -> futures::future::BoxFuture<'static, Result<RawStream, Error>>
        + Send
        + Sync,
>;

impl ClientConn {
    /// Starts a streamed call with an initial window of `window` items (`wc.window` is
    /// added to `annotations`) and waits for the server's first answer: the stream's REPLY,
    /// a plain REPLY (a stream of one value) or an ERROR (returned here).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn open_stream(
        &self,
        provider_id: u16,
        method: &str,
        codec: CodecId,
        annotations: &proto::Annotations,
        args: &[u8],
        kwargs: &[u8],
        window: u32,
        resume: Option<([u8; 16], u64)>,
    ) -> Result<RawStream, Error> {
        let annotations = stream_annotations(annotations, window, resume)?;
        let frame = proto::CallRef {
            request_id: proto::RequestId::NONE,
            provider: proto::ProviderId(provider_id),
            codec,
            oneway: false,
            method,
            annotations: &annotations,
            args,
            kwargs,
            attachment: &[],
        };
        let shared = &self.shared;
        let (id, reader) = {
            let mut p = shared.pending();
            if let Some(e) = &p.side.closed {
                return Err(e.clone());
            }
            if p.is_shut() {
                return Err(Error::transport(&self.address, "the connection is closed"));
            }
            let at = p.side.recent;
            let id = p
                .side
                .machine
                .call_ref(frame, at)
                .map_err(|e| conn_error(&self.address, e))?;
            p.side.streams.insert(id.0, StreamSlot::default());
            let reader = shared.take_reader(&mut p.side);
            shared.wire.flush_locked(p);
            (id.0, reader)
        };
        // A stream is read by the reader task for as long as it is open.
        if let Some(r) = reader {
            release_reader(shared, r);
        }
        let mut stream = RawStream::new(shared.clone(), id, window, provider_id, method, None);
        std::future::poll_fn(|cx| stream.poll_started(cx)).await?;
        Ok(stream)
    }

    /// Starts a call that streams its arguments (SPEC §6.13): `items` are sent after the
    /// CALL by a pump task, under the server's credit, then STREAM_END. The call's answer is
    /// read as a stream (`wc.window` = `window` is added to `annotations`): a plain result
    /// is a stream of one value. Waits for the server's first answer, which for a plain
    /// result comes after the argument stream ended.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn open_upload(
        &self,
        provider_id: u16,
        method: &str,
        codec: CodecId,
        annotations: &proto::Annotations,
        args: &[u8],
        kwargs: &[u8],
        window: u32,
        items: crate::upload::EncodedUpload,
    ) -> Result<RawStream, Error> {
        let annotations = stream_annotations(annotations, window, None)?;
        let method_name = proto::Method::new(Bytes::copy_from_slice(method.as_bytes()))
            .map_err(|e| Error::config(format!("bad method name: {e}")))?;
        let req = proto::CallRequest {
            provider: proto::ProviderId(provider_id),
            method: method_name,
            codec: Some(codec),
            oneway: false,
            upload: true,
            annotations,
            args: Bytes::copy_from_slice(args),
            kwargs: Bytes::copy_from_slice(kwargs),
            attachment: Bytes::new(),
        };
        let shared = &self.shared;
        let pump = Arc::new(tokio::sync::Notify::new());
        let (id, reader) = {
            let mut p = shared.pending();
            if let Some(e) = &p.side.closed {
                return Err(e.clone());
            }
            if p.is_shut() {
                return Err(Error::transport(&self.address, "the connection is closed"));
            }
            let at = crate::io::now();
            let id = p.side.machine.call(req, at).map_err(|e| match e {
                proto::ProtocolError::InvalidState { .. } => Error::config(format!(
                    "`{method}` streams its arguments, but the server at {} does not take argument streams (an older server): {e}",
                    self.address
                )),
                e => conn_error(&self.address, e),
            })?;
            p.side.streams.insert(id.0, StreamSlot::default());
            p.side.uploads.insert(id.0, pump.clone());
            let reader = shared.take_reader(&mut p.side);
            shared.wire.flush_locked(p);
            (id.0, reader)
        };
        if let Some(r) = reader {
            release_reader(shared, r);
        }
        let task = tokio::spawn(upload_pump(shared.clone(), id, codec, items, pump));
        let mut stream = RawStream::new(
            shared.clone(),
            id,
            window,
            provider_id,
            method,
            Some(task.abort_handle()),
        );
        std::future::poll_fn(|cx| stream.poll_started(cx)).await?;
        Ok(stream)
    }
}

/// Items sent per hold of the connection's lock when the caller's stream has them ready.
const UPLOAD_ITEMS_PER_WRITE: u32 = 256;

/// Sends the argument stream of call `id`: waits for credit, pulls the caller's items,
/// sends what is ready within the credit in one hold of the lock, and ends the stream when
/// the caller's stream ends. Stops when the call is no longer in flight (answered,
/// cancelled, connection lost). An item that cannot be encoded fails the call (it is
/// cancelled; the caller reads the error).
async fn upload_pump(
    shared: Arc<ConnShared>,
    id: u64,
    codec: CodecId,
    mut items: crate::upload::EncodedUpload,
    wake: Arc<tokio::sync::Notify>,
) {
    use futures::{FutureExt, StreamExt};
    let request_id = proto::RequestId(id);
    let mut batch: Vec<Option<Result<Bytes, Error>>> = Vec::new();
    loop {
        let left = loop {
            let credit = {
                let p = shared.pending();
                if p.is_shut() || p.side.closed.is_some() {
                    return;
                }
                p.side.machine.upload_credit(request_id)
            };
            match credit {
                None => return,
                Some(0) => wake.notified().await,
                Some(n) => break n,
            }
        };
        batch.clear();
        let first = items.next().await;
        let mut end = !matches!(first, Some(Ok(_)));
        batch.push(first);
        while !end && (batch.len() as u32) < left.min(UPLOAD_ITEMS_PER_WRITE) {
            match items.next().now_or_never() {
                None => break,
                Some(next) => {
                    end = !matches!(next, Some(Ok(_)));
                    batch.push(next);
                }
            }
        }
        let end = {
            let mut p = shared.pending();
            if p.is_shut() {
                return;
            }
            let mut wakers = Vec::new();
            for item in batch.drain(..) {
                let sent = match item {
                    Some(Ok(item)) => p.side.machine.send_item(proto::StreamItem {
                        request_id,
                        codec,
                        annotations: proto::Annotations::new(),
                        item,
                        attachment: Bytes::new(),
                    }),
                    None => p.side.machine.end_upload(request_id).map(|_| ()),
                    Some(Err(e)) => {
                        // The call cannot go on: it is cancelled, and its reader told why.
                        let _ = p.side.machine.cancel(request_id);
                        p.side.uploads.remove(&id);
                        if let Some(slot) = p.side.streams.get_mut(&id) {
                            if !slot.ended {
                                slot.push(StreamMsg::Failed(e));
                                slot.ended = true;
                            }
                        }
                        wake_streams(&mut p.side, &mut wakers);
                        end = true;
                        break;
                    }
                };
                if let Err(e) = sent {
                    // Answered or cancelled meanwhile (nobody reads the rest), or an item over
                    // the server's limits: the call fails with the error.
                    if let proto::ProtocolError::TooLong { .. } = e {
                        let _ = p.side.machine.cancel(request_id);
                        if let Some(slot) = p.side.streams.get_mut(&id) {
                            if !slot.ended {
                                slot.push(StreamMsg::Failed(Error::LimitExceeded {
                                    message: format!(
                                        "an argument stream item is over the server's limits: {e}"
                                    ),
                                }));
                                slot.ended = true;
                            }
                        }
                        wake_streams(&mut p.side, &mut wakers);
                    }
                    tracing::debug!(request_id = id, error = %e, "argument stream stopped");
                    end = true;
                    break;
                }
            }
            if end {
                p.side.uploads.remove(&id);
            }
            shared.wire.flush_locked(p);
            for w in wakers {
                w.wake();
            }
            end
        };
        if end {
            return;
        }
        tokio::task::consume_budget().await;
    }
}

/// A streamed call's annotations: the caller's user entries, correlation id and deadline,
/// the stream's window (`wc.window`), and for a resume the stream and the items received
/// (`wc.resume`, SPEC §6.14).
fn stream_annotations(
    annotations: &proto::Annotations,
    window: u32,
    resume: Option<([u8; 16], u64)>,
) -> Result<proto::Annotations, Error> {
    let mut b = proto::Annotations::builder();
    for (k, v) in annotations.user() {
        b = b
            .insert(k, v)
            .map_err(|e| Error::config(format!("bad annotation `{k}`: {e}")))?;
    }
    if let Some(c) = annotations.correlation_id() {
        b = b.correlation_id(c);
    }
    if let Some(d) = annotations.deadline() {
        b = b.deadline(d);
    }
    if let Some((token, received)) = resume {
        // Resumes a stream whose connection was lost (SPEC §6.14).
        b = b.resume(token, received);
    }
    Ok(b.window(window).build())
}

impl RawStream {
    fn new(
        shared: Arc<ConnShared>,
        id: u64,
        window: u32,
        provider_id: u16,
        method: &str,
        pump: Option<tokio::task::AbortHandle>,
    ) -> RawStream {
        RawStream {
            shared,
            id,
            window,
            provider_id,
            method: method.to_string(),
            finished: false,
            local: Default::default(),
            taken: 0,
            pump,
            received: 0,
            token: None,
            resumer: None,
            resuming: None,
        }
    }

    /// Ready once the call's first answer came; an ERROR before any item is returned.
    fn poll_started(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Error>> {
        let mut p = self.shared.pending();
        let Some(slot) = p.side.streams.get_mut(&self.id) else {
            return std::task::Poll::Ready(Ok(()));
        };
        // A connection lost before the first answer ends the slot without starting it.
        if !slot.started && !slot.ended {
            slot.waker = Some(cx.waker().clone());
            return std::task::Poll::Pending;
        }
        let first_is_error = matches!(
            slot.queue.front(),
            Some(StreamMsg::Fault(_) | StreamMsg::Failed(_))
        );
        drop(p);
        if first_is_error {
            return match self.poll_item(cx) {
                std::task::Poll::Ready(Some(Err(e))) => std::task::Poll::Ready(Err(e)),
                _ => std::task::Poll::Ready(Ok(())),
            };
        }
        std::task::Poll::Ready(Ok(()))
    }

    /// Resumes the stream with `resumer` (SPEC §6.14) after its connection was lost.
    pub(crate) fn set_resumer(&mut self, resumer: Resumer) {
        self.resumer = Some(resumer);
    }

    /// Takes over the connection-side state of `new`, the same stream resumed on a new
    /// connection; what the caller saw (items received, the resumer) stays.
    fn adopt(&mut self, mut new: RawStream) {
        std::mem::swap(&mut self.shared, &mut new.shared);
        std::mem::swap(&mut self.id, &mut new.id);
        std::mem::swap(&mut self.local, &mut new.local);
        self.window = new.window;
        self.taken = new.taken;
        self.finished = new.finished;
        // The old state, now in `new`, was ended by its lost connection: nothing to cancel.
        new.finished = true;
        new.pump = None;
    }

    /// The next encoded item; `None` after the stream's end.
    pub(crate) fn poll_item(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<(CodecId, Bytes), Error>>> {
        use std::task::Poll;
        if let Some(resuming) = self.resuming.as_mut() {
            match resuming.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(new)) => {
                    self.resuming = None;
                    tracing::debug!(
                        received = self.received,
                        "stream resumed on a new connection"
                    );
                    self.adopt(new);
                }
                Poll::Ready(Err(e)) => {
                    self.resuming = None;
                    self.finished = true;
                    let e = match e {
                        // The server answered the resume CANCELLED: it no longer holds the
                        // stream.
                        Error::Cancelled => Error::transport(
                            &self.shared.address,
                            format!(
                                "the connection was lost after {} items of the stream, and the server no longer holds it (its linger time passed, or it keeps no streams): call the method again",
                                self.received
                            ),
                        ),
                        e => e,
                    };
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
        if self.finished {
            return Poll::Ready(None);
        }
        if self.local.is_empty() {
            // Everything the reader queued is taken at once: one lock per batch of items,
            // not per item.
            let mut p = self.shared.pending();
            let Some(slot) = p.side.streams.get_mut(&self.id) else {
                self.finished = true;
                return Poll::Ready(None);
            };
            if self.token.is_none() {
                self.token = slot.token;
            }
            if slot.queue.is_empty() {
                if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    slot.waker = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            std::mem::swap(&mut slot.queue, &mut self.local);
        }
        let out = match self.local.pop_front() {
            Some(StreamMsg::Item(codec, item)) => {
                self.received += 1;
                self.taken += 1;
                // Credit goes back as the consumer takes items (so the server is never
                // more than the window ahead of it), in batches of half the window: a
                // CREDIT frame per item would cost as much as the items.
                if self.taken >= (self.window / 2).max(1) {
                    let taken = std::mem::take(&mut self.taken);
                    let mut p = self.shared.pending();
                    let id = proto::RequestId(self.id);
                    // Not in flight any more (its end is queued): nothing is sent.
                    if let Err(e) = p.side.machine.grant(id, taken) {
                        tracing::debug!(request_id = self.id, error = %e, "stream credit not sent");
                    }
                    self.shared.wire.flush_locked(p);
                }
                return Poll::Ready(Some(Ok((codec, item))));
            }
            Some(StreamMsg::Fault(f)) => Some(Err(f.into_error(self.provider_id, &self.method))),
            Some(StreamMsg::Failed(e @ Error::Transport { .. })) => {
                match (self.token, self.resumer.clone()) {
                    // The connection was lost and the server keeps the stream: it is
                    // resumed on a new connection, where it stopped (SPEC §6.14).
                    (Some(token), Some(resumer)) => {
                        tracing::debug!(error = %e, received = self.received, "a stream's connection was lost: resuming it");
                        let mut p = self.shared.pending();
                        p.side.streams.remove(&self.id);
                        drop(p);
                        self.local.clear();
                        self.resuming = Some(resumer(token, self.received));
                        return self.poll_item(cx);
                    }
                    _ => Some(Err(e)),
                }
            }
            Some(StreamMsg::Failed(e)) => Some(Err(e)),
            Some(StreamMsg::End) | None => None,
        };
        // The stream ended: nothing more comes for it.
        self.finished = true;
        let mut p = self.shared.pending();
        p.side.streams.remove(&self.id);
        let idle =
            p.side.waiters.is_empty() && p.side.streams.is_empty() && p.side.reader.is_none();
        drop(p);
        if idle {
            self.shared.idle.notify_one();
        }
        Poll::Ready(out)
    }
}

impl Drop for RawStream {
    fn drop(&mut self) {
        if let Some(pump) = self.pump.take() {
            pump.abort();
        }
        if self.finished {
            return;
        }
        let mut p = self.shared.pending();
        if p.side.streams.remove(&self.id).is_some() {
            // The machine sends CANCEL and swallows what the server sends until its answer.
            let _ = p.side.machine.cancel(proto::RequestId(self.id));
            let idle =
                p.side.waiters.is_empty() && p.side.streams.is_empty() && p.side.reader.is_none();
            self.shared.wire.flush_locked(p);
            if idle {
                self.shared.idle.notify_one();
            }
        }
    }
}

/// Answers callback `id` from the server through the connection's machine (SPEC §6.10),
/// unless it was cancelled or expired meanwhile (the machine answered it then).
pub(crate) fn answer_callback(shared: &ConnShared, id: u64, codec: CodecId, outcome: Outcome) {
    let mut p = shared.pending();
    if p.is_shut() {
        // The connection is gone; nobody waits for the answer.
        return;
    }
    let request_id = proto::RequestId(id);
    let error = |body| proto::ErrorFrame {
        request_id,
        codec: proto::CodecId::NONE,
        annotations: proto::Annotations::new(),
        body,
    };
    let sent = match outcome {
        Outcome::Value(result) => p.side.machine.reply(proto::Reply {
            request_id,
            codec,
            stream: false,
            annotations: proto::Annotations::new(),
            result,
            attachment: Bytes::new(),
        }),
        Outcome::Attached(a) => p.side.machine.reply(proto::Reply {
            request_id,
            codec,
            stream: false,
            annotations: a.annotations,
            result: a.result,
            attachment: a.attachment,
        }),
        Outcome::Fault(f) => p.side.machine.error(error(f.into_body())),
        Outcome::Stream(_) => p.side.machine.error(error(
            Fault::new(
                crate::error::FaultKind::Internal,
                "the callback returned a stream; callbacks do not stream (SPEC §6.10)",
            )
            .into_body(),
        )),
    };
    match sent {
        Ok(()) => {}
        // Cancelled or past its deadline: the machine answered it already.
        Err(proto::ProtocolError::NotInFlight { .. }) | Err(proto::ProtocolError::Closed) => {}
        Err(e @ proto::ProtocolError::TooLong { .. }) => {
            // Over the server's limits: fail the callback rather than leave it waiting.
            let body = proto::ErrorBody::new(
                proto::ErrorCode::LIMIT_EXCEEDED,
                format!("the client cannot send the callback's result: {e}"),
            );
            let _ = p.side.machine.error(error(body));
        }
        Err(e) => tracing::warn!("dropping the answer to callback {id}: {e}"),
    }
    shared.wire.flush_locked(p);
}
