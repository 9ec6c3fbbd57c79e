//! One server connection: a thin driver of `wirecall_protocol::ServerConnection`. It moves
//! bytes between the socket and the machine, arms the one timer the machine asks for, hands
//! the calls the machine accepts to [`dispatch`](super::dispatch), and stops the handlers of
//! calls the machine cancelled or expired. Every wire rule (handshake, limits, cancel,
//! deadlines, GOAWAY, timeouts) is the machine's.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use bytes::BytesMut;
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirecall_protocol as proto;
use wirecall_transport::{ReadHalf, Stream};

use super::callback::CallbackLink;
use super::dispatch::Conn;
use super::{lock, read, trace, Inner};
use crate::context::ConnectionInfo;
use crate::io::{State, Wire};
use crate::provider::{Instances, Registered};

/// Receive-buffer bytes all of a server's connections may hold together: each connection
/// reserves the declared size of a frame still arriving before making room for it, so many
/// peers declaring large frames cannot pin more than this.
pub(crate) struct Budget {
    max: usize,
    used: AtomicUsize,
}

impl Budget {
    pub(crate) fn new(max: usize) -> Budget {
        Budget {
            max,
            used: AtomicUsize::new(0),
        }
    }

    /// Takes `n` bytes if they fit.
    pub(crate) fn try_take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|t| *t <= self.max)
            })
            .is_ok()
    }

    /// Moves what a connection holds from `*held` bytes to what `pending` bytes of input
    /// need ([`Budget::need`]). False, holding nothing, when that need does not fit.
    pub(super) fn hold(&self, held: &mut usize, pending: usize) -> bool {
        let need = Budget::need(pending);
        if need == *held {
            return true;
        }
        self.give_back(std::mem::take(held));
        if need > 0 {
            if !self.try_take(need) {
                return false;
            }
            *held = need;
        }
        true
    }

    /// What `pending` bytes of input hold of the budget: nothing when they fit the ordinary
    /// read buffer.
    pub(super) fn need(pending: usize) -> usize {
        if pending <= READ_CHUNK {
            0
        } else {
            pending
        }
    }

    /// The budget's size in bytes.
    pub(super) fn max(&self) -> usize {
        self.max
    }

    pub(crate) fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Room kept free at the end of the read buffer before each read.
const READ_ROOM: usize = 4096;
/// What the read buffer grows by when it needs room.
pub(super) const READ_CHUNK: usize = 16 * 1024;

/// Gives a connection's place back (see [`Inner::open`]) however its task ends.
struct OpenSlot(Arc<Inner>);

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(super) async fn serve_connection(inner: Arc<Inner>, stream: Stream, info: Arc<ConnectionInfo>) {
    let _slot = OpenSlot(inner.clone());
    let accepted_at = crate::io::now();
    let (mut rd, wr) = stream.into_split();
    // The dialect is told once, by the first bytes (SPEC §1): they are read here into the
    // buffer the native reader goes on with, so native connections pay nothing per call.
    let mut buf = BytesMut::new();
    let deadline = inner
        .timeouts
        .handshake
        .map(|t| tokio::time::Instant::from_std(accepted_at + t));
    let (dialect, first) = sniff(&mut rd, &mut buf, deadline).await;
    if dialect == Some(proto::Dialect::Pyro5) {
        super::pyro::serve(inner, rd, wr, info, buf, accepted_at).await;
        return;
    }
    let span = trace::connection_span(&info, "native");
    let mut config = inner.machine_config();
    // Room for frames is reserved here, against the server-wide budget.
    config.reserve_input = false;
    let machine = match proto::ServerConnection::new(config, accepted_at) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(parent: &span, error = %e, "cannot serve a connection: the server's limits are invalid");
            return;
        }
    };
    let wire = Wire::start(machine, wr);
    if let Some(l) = &inner.lingering {
        wire.streams.set_lingering(l.clone());
    }
    // Argument items waiting for their handlers count against the receive budget.
    wire.uploads.set_budget(inner.budget.clone());
    lock(&inner.connections).insert(info.id, wire.clone());
    let mut conn = Conn::new(inner, info, wire, span.clone());
    let mut reader = Reader {
        buf,
        reserved: 0,
        spare: BytesMut::new(),
        large: false,
        spare_armed: false,
        out: Vec::new(),
    };
    let started = Instant::now();
    tracing::debug!(parent: &span, "connection accepted");
    // Not `.instrument(span)`: entering even a disabled span on every poll costs (with
    // tracing's `log` fallback and no subscriber, a log-level check on each enter and exit);
    // the events name their parent instead.
    let end = reader.run(&mut conn, &mut rd, first).await;
    reader.release(&conn.inner);
    trace::connection_closed(&span, &conn.info, &end, started.elapsed(), conn.calls);
    conn.teardown();
}

/// Reads until the first bytes tell the dialect, the peer closes, reading fails or the
/// handshake deadline passes. Returns the dialect (when told) and what the native reader
/// must handle first (the bytes read, the end of input or the read error); on a deadline
/// the native machine's own handshake timer, already past, answers.
async fn sniff(
    rd: &mut ReadHalf,
    buf: &mut BytesMut,
    deadline: Option<tokio::time::Instant>,
) -> (Option<proto::Dialect>, Option<Woke>) {
    loop {
        if let Some(d) = proto::detect_dialect(buf) {
            return (Some(d), Some(Woke::Read(Ok(buf.len()))));
        }
        buf.reserve(READ_CHUNK);
        let read = rd.read_buf(buf);
        let r = match deadline {
            Some(d) => match tokio::time::timeout_at(d, read).await {
                Ok(r) => r,
                Err(_) => {
                    let first = (!buf.is_empty()).then(|| Woke::Read(Ok(buf.len())));
                    return (None, first);
                }
            },
            None => read.await,
        };
        match r {
            Ok(0) if buf.is_empty() => return (None, Some(Woke::Read(Ok(0)))),
            // The peer closed after a few bytes: the native machine judges them, then
            // the next read sees the end.
            Ok(0) => return (None, Some(Woke::Read(Ok(buf.len())))),
            Ok(_) => {}
            Err(e) if buf.is_empty() => return (None, Some(Woke::Read(Err(e)))),
            Err(_) => return (None, Some(Woke::Read(Ok(buf.len())))),
        }
    }
}

/// At most this many refused connections are kept open at once while their GOAWAY is
/// written; past it, more are closed without one.
const MAX_REFUSING: usize = 256;

/// Turns away a connection over [`ServerBuilder::max_connections`](super::ServerBuilder::max_connections):
/// GOAWAY LIMIT_EXCEEDED with the reason (the client's connect fails with it), then close.
/// What the client already sent is read and dropped for a moment before closing, so the
/// close does not reset the connection and lose the GOAWAY.
pub(super) fn refuse_busy(inner: Arc<Inner>, stream: Stream, peer: String, open: usize) {
    let max = inner.max_connections.unwrap_or(open);
    tracing::warn!(
        peer = %peer,
        open,
        max_connections = max,
        reason = "max_connections",
        "connection refused: the server already serves {open} connections, its limit; raise max_connections (WIRECALL_MAX_CONNECTIONS) if the host can take more"
    );
    if inner.refusing.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSING {
        inner.refusing.fetch_sub(1, Ordering::AcqRel);
        drop(stream);
        return;
    }
    let message = format!(
        "server busy: it already serves {open} connections, its limit (max_connections); retry later"
    );
    let mut goaway = BytesMut::new();
    match proto::ServerConnection::new(inner.machine_config(), crate::io::now()) {
        Ok(mut m) => {
            m.close(proto::ErrorCode::LIMIT_EXCEEDED, &message);
            m.take_transmit(&mut goaway);
        }
        Err(e) => tracing::error!(error = %e, "cannot encode the refusal"),
    }
    tokio::spawn(async move {
        let (mut rd, mut wr) = stream.into_split();
        let linger = async {
            if wr.write_all(&goaway).await.is_err() {
                return;
            }
            let _ = wr.flush().await;
            let _ = wr.shutdown().await;
            // Until the client closes (it does on reading the GOAWAY), at most 64 KiB.
            let mut sink = [0u8; 4096];
            let mut total = 0;
            while total < 64 * 1024 {
                match rd.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), linger).await;
        inner.refusing.fetch_sub(1, Ordering::AcqRel);
    });
}

/// The read side of a connection.
struct Reader {
    buf: BytesMut,
    /// Bytes of the server-wide budget this connection holds for a frame still arriving.
    reserved: usize,
    /// A handle on the buffer of the last large frame (see [`Reader::keep_spare`]), to
    /// receive the next large frame into once nothing else holds it: its pages are already
    /// mapped, where a fresh allocation of that size is faulted in page by page.
    spare: BytesMut,
    /// The read buffer was grown for a large frame.
    large: bool,
    /// `spare` holds such a buffer.
    spare_armed: bool,
    /// Where the direct handlers of a pass of calls answered in place encode their results
    /// (see [`Reader::handle_frames`]).
    out: Vec<u8>,
}

/// The most capacity [`Reader::out`] keeps after a large result.
const OUT_KEEP: usize = 64 * 1024;

/// The most bytes of a frame moved into the spare buffer when it becomes free while the
/// frame arrives (cheaper than faulting in a fresh buffer of a large frame's size).
const SPARE_COPY_MAX: usize = 4 << 20;

/// Why a connection's read loop ended.
pub(super) enum End {
    /// The peer closed its side.
    Eof,
    /// Reading failed.
    ReadError(std::io::Error),
    /// The machine failed the connection (a timer, a limit, a broken rule) or this
    /// driver closed it.
    Fatal(proto::ProtocolError),
    /// The connection was closed (by finalize, or after a GOAWAY exchange).
    Closed,
    /// Drained after a GOAWAY.
    Drained,
}

/// What woke the read loop.
enum Woke {
    Read(std::io::Result<usize>),
    Timer,
    /// The machine has events that did not come from input.
    Events,
}

impl Reader {
    async fn run(&mut self, conn: &mut Conn, rd: &mut ReadHalf, mut first: Option<Woke>) -> End {
        // Replies queue up while a batch of calls is handled and go out in one write at its
        // end. On a multi-thread runtime they also go out after every `EARLY_FLUSH_FRAMES`
        // calls of a long batch, so the peer (another worker, or another process) starts on
        // the first answers while this task handles the rest: measured on 2 workers with 64
        // calls in flight, ~18 % more calls/s. On a current-thread runtime nothing else in
        // the process runs until this task waits, and the extra writes only cost.
        let early = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let batch = if early {
            EARLY_FLUSH_FRAMES
        } else {
            usize::MAX
        };
        let mut events = VecDeque::new();
        // The reader's own handle, so the lock it holds does not borrow `conn`.
        let wire = conn.wire.clone();
        // The machine's first timer (the handshake deadline) is armed before the first
        // read: a peer that connects and sends nothing is still closed at the deadline.
        let mut armed: Option<Instant> = conn.wire.lock().side.poll_timeout();
        let timer = tokio::time::sleep_until(
            armed.map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std),
        );
        tokio::pin!(timer);
        let mut started = false;
        let readiness = rd.has_readiness();
        loop {
            let woke = if let Some(w) = first.take() {
                w
            } else if self.buf.capacity() == 0 && readiness {
                // An idle connection (its buffers released): wait for bytes without holding
                // a buffer, then read what is there without waiting. A busy one keeps its
                // buffer and reads as usual.
                let woke = tokio::select! {
                    biased;
                    r = rd.readable() => r.err().map(|e| Woke::Read(Err(e))),
                    () = &mut timer, if armed.is_some() => Some(Woke::Timer),
                    () = conn.wire.reader_woken() => Some(Woke::Events),
                };
                match woke {
                    Some(w) => w,
                    None => {
                        self.keep_spare();
                        self.buf.reserve(READ_CHUNK);
                        match rd.read_buf(&mut self.buf).now_or_never() {
                            Some(r) => Woke::Read(r),
                            None => {
                                // Spurious readiness: wait again, without the buffer.
                                self.buf = BytesMut::new();
                                continue;
                            }
                        }
                    }
                }
            } else {
                if self.buf.capacity() - self.buf.len() < READ_ROOM {
                    self.keep_spare();
                    self.buf.reserve(READ_CHUNK);
                }
                tokio::select! {
                    biased;
                    r = rd.read_buf(&mut self.buf) => Woke::Read(r),
                    () = &mut timer, if armed.is_some() => Woke::Timer,
                    () = conn.wire.reader_woken() => Woke::Events,
                }
            };
            let now = crate::io::now();
            conn.woke = now;
            conn.clock = now;
            let mut woke = Some(woke);
            // A long batch is handled `batch` frames at a time: their answers leave while
            // the rest is decoded.
            loop {
                let calls = conn.calls;
                let mut s = wire.lock();
                let mut more = false;
                let mut read_error = None;
                let mut drained = false;
                let mut frames = 0;
                let (r, eof) = match woke.take() {
                    Some(Woke::Read(Ok(0))) => (s.side.handle_eof_buf(&self.buf), true),
                    Some(Woke::Read(Err(e))) => {
                        read_error = Some(e);
                        (Ok(()), true)
                    }
                    Some(Woke::Read(Ok(_))) | None => {
                        let (h, guard) = self.handle_frames(
                            conn,
                            &wire,
                            s,
                            now,
                            batch,
                            &mut events,
                            &mut started,
                        );
                        s = guard;
                        frames = h.frames;
                        more = h.frames == batch;
                        drained = h.drained;
                        (h.result, false)
                    }
                    Some(Woke::Timer) => {
                        armed = None;
                        (s.side.handle_timeout(now), false)
                    }
                    Some(Woke::Events) => (Ok(()), false),
                };
                let mut fatal = r.err();
                if fatal.is_none() && !eof && !more {
                    if let Err(e) = self.make_room(&mut s.side, &conn.inner) {
                        fatal = Some(e);
                    }
                }
                s.side.take_events(&mut events);
                let next = s.side.poll_timeout();
                let closed = s.side.is_closed();
                // Not right after frames were handled: a connection whose calls were all
                // answered as they were read usually gets more at once, and would free and
                // allocate its buffers on every read.
                let idle = frames == 0 && s.side.in_flight() == 0 && self.buf.is_empty();
                if idle {
                    // An idle connection keeps no buffers: they come back with the next
                    // bytes.
                    s.side.release_buffers();
                }
                // Writes what the machine queued (WELCOME, PONG, refusals, a GOAWAY).
                wire.flush_locked(s);
                drained |= on_events(conn, &mut events, &mut started, &mut fatal);
                conn.after_batch(calls);
                conn.wire.flush();
                if let Some(e) = fatal {
                    return End::Fatal(e);
                }
                if let Some(e) = read_error {
                    return End::ReadError(e);
                }
                if eof {
                    return End::Eof;
                }
                if drained {
                    return End::Drained;
                }
                if closed {
                    return End::Closed;
                }
                if more {
                    continue;
                }
                if next != armed {
                    if let Some(t) = next {
                        timer.as_mut().reset(tokio::time::Instant::from_std(t));
                    }
                    armed = next;
                }
                if idle {
                    self.buf = BytesMut::new();
                    self.spare = BytesMut::new();
                    self.spare_armed = false;
                    self.large = false;
                    self.out = Vec::new();
                    events = VecDeque::new();
                }
                break;
            }
        }
    }

    /// Handles up to `max` frames of the read buffer with the machine locked (`s`).
    ///
    /// While no call of the connection is in flight (so no other task answers on it and
    /// waits for the lock) and the direct path is open, a run of plain calls to methods
    /// with direct handlers is answered in one pass under the lock
    /// ([`proto::ServerConnection::answer_calls`]): each handler decodes its arguments
    /// where they are in the read buffer and encodes its result into [`Reader::out`], from
    /// which the machine writes the REPLY into the send buffer. Any other common CALL the
    /// machine accepts in place ([`proto::ServerConnection::accept_call`]) is split off the
    /// buffer and dispatched with the lock released, with no owned frame or event in
    /// between; any other frame goes through the machine's usual decoding, and the events
    /// it reports are handled before the next frame, in order. Returns the lock again,
    /// with how many frames were handled.
    #[allow(clippy::too_many_arguments)]
    fn handle_frames<'w>(
        &mut self,
        conn: &mut Conn,
        wire: &'w Wire<proto::ServerConnection>,
        mut s: MutexGuard<'w, State<proto::ServerConnection>>,
        now: Instant,
        max: usize,
        events: &mut VecDeque<proto::ServerEvent>,
        started: &mut bool,
    ) -> (Frames, MutexGuard<'w, State<proto::ServerConnection>>) {
        let mut h = Frames {
            frames: 0,
            result: Ok(()),
            drained: false,
        };
        // Whether the next frame may start a pass (not right after one stopped at it).
        let mut pass = true;
        while h.frames < max {
            if pass && s.side.in_flight() == 0 && !s.is_writing() && conn.direct_allowed() {
                pass = false;
                let mut later = None;
                let Reader { buf, out, .. } = self;
                let done =
                    s.side
                        .answer_calls(buf, now, max - h.frames, out, |call, frame, out| {
                            conn.answer_now(call, frame, out, &mut later)
                        });
                if out.capacity() > OUT_KEEP {
                    *out = Vec::new();
                }
                if done.frames > 0 {
                    bytes::Buf::advance(buf, done.consumed);
                    h.frames += done.frames;
                    if let Some(l) = later {
                        drop(s);
                        conn.answer_later(l);
                        s = wire.lock();
                    }
                    if buf.is_empty() {
                        break;
                    }
                    continue;
                }
            }
            pass = true;
            if let Some(call) = s.side.accept_call(&self.buf, now) {
                h.frames += 1;
                drop(s);
                let len = call.frame_len();
                let direct = match conn.try_direct(&call, &self.buf[..len]) {
                    Some(direct) => {
                        bytes::Buf::advance(&mut self.buf, len);
                        direct
                    }
                    None => {
                        let frame = self.buf.split_to(len).freeze();
                        conn.on_accepted(&call, frame)
                    }
                };
                s = wire.lock();
                if let Some(d) = direct {
                    // A synchronous handler's result: answered under this lock, written
                    // with the batch's flush.
                    crate::context::answer_direct_in(wire, &mut s, d.id, d.codec);
                }
                continue;
            }
            match s.side.handle_input_frames(&mut self.buf, now, 1) {
                Ok(0) => break,
                Ok(n) => {
                    h.frames += n;
                    if s.side.has_events() {
                        s.side.take_events(events);
                        drop(s);
                        let mut fatal = None;
                        h.drained |= on_events(conn, events, started, &mut fatal);
                        s = wire.lock();
                        if let Some(e) = fatal {
                            h.result = Err(e);
                            break;
                        }
                        if h.drained {
                            break;
                        }
                    }
                }
                Err(e) => {
                    h.result = Err(e);
                    break;
                }
            }
        }
        (h, s)
    }

    /// Reserves room for the frame still arriving, against the server-wide budget; a frame
    /// that does not fit closes the connection with GOAWAY LIMIT_EXCEEDED.
    fn make_room(
        &mut self,
        machine: &mut proto::ServerConnection,
        inner: &Inner,
    ) -> Result<(), proto::ProtocolError> {
        let pending = machine.pending_input_len().unwrap_or(0);
        if !inner.budget.hold(&mut self.reserved, pending) {
            let need = Budget::need(pending);
            let message = format!(
                "the server's receive buffers are full (a {need}-byte frame does not fit); retry later"
            );
            machine.close(proto::ErrorCode::LIMIT_EXCEEDED, &message);
            return Err(proto::ProtocolError::TooLong {
                what: "frame (server-wide receive buffer budget)",
                len: need as u64,
                max: inner.budget.max as u64,
            });
        }
        let need = Budget::need(pending);
        if need > self.buf.len() && self.spare_armed {
            if self.spare.try_reclaim(need) {
                // Nothing else holds the last large frame's buffer any more (its answer was
                // written): receive this one into it, moving what has arrived of it so far.
                let mut spare = std::mem::take(&mut self.spare);
                spare.extend_from_slice(&self.buf);
                self.buf = spare;
                self.spare_armed = false;
            } else if pending == 0 || self.buf.len() > SPARE_COPY_MAX {
                // Still held, and too much of this frame arrived to move it: give up.
                self.spare = BytesMut::new();
                self.spare_armed = false;
            }
        } else if need == 0 && pending > 0 {
            // A small frame next: the spare serves nothing.
            self.spare = BytesMut::new();
            self.spare_armed = false;
        }
        if need > self.buf.len() {
            self.buf.reserve(need - self.buf.len());
            self.large = true;
        }
        Ok(())
    }

    /// Before the read buffer grows again: if it was grown for a large frame, whose bytes
    /// the handler (and its answer, a `Bulk` echoed as it is) may still hold, keep a handle
    /// on that allocation for [`make_room`](Self::make_room) to reuse. Bounded: one frame's
    /// buffer, kept only until the next frame's header (or idleness) and alive anyway while
    /// its bytes are in use.
    fn keep_spare(&mut self) {
        if std::mem::take(&mut self.large) {
            self.spare = self.buf.split_off(self.buf.len());
            self.spare_armed = true;
        }
    }

    fn release(&mut self, inner: &Inner) {
        self.spare = BytesMut::new();
        self.spare_armed = false;
        inner.budget.give_back(self.reserved);
        self.reserved = 0;
    }
}

/// What [`Reader::handle_frames`] did.
struct Frames {
    /// Frames handled.
    frames: usize,
    /// A fatal error of the machine.
    result: Result<(), proto::ProtocolError>,
    /// The machine reported `Drained`.
    drained: bool,
}

/// Handles the machine's events, in order; true when one was `Drained`.
fn on_events(
    conn: &mut Conn,
    events: &mut VecDeque<proto::ServerEvent>,
    started: &mut bool,
    fatal: &mut Option<proto::ProtocolError>,
) -> bool {
    let mut drained = false;
    for ev in events.drain(..) {
        match ev {
            proto::ServerEvent::Connected(session) if !*started => {
                *started = true;
                trace::connected(&conn.span, &session);
                if session.callbacks() {
                    // Set before any call is dispatched: its handlers may call back.
                    let _ = conn.info.callback.set(Arc::new(CallbackLink::new(
                        conn.wire.clone(),
                        conn.info.peer.clone(),
                        session.codec,
                    )));
                }
                conn.connected();
            }
            ev @ (proto::ServerEvent::Reply(_)
            | proto::ServerEvent::Error(_)
            | proto::ServerEvent::Failed { .. }) => {
                if let Some(link) = conn.info.callback.get() {
                    link.on_event(ev);
                }
            }
            proto::ServerEvent::Call(call) => conn.on_call(call),
            proto::ServerEvent::Cancelled(id) => {
                tracing::debug!(
                    parent: &conn.span,
                    request_id = id.0,
                    "call cancelled by the caller"
                );
                conn.stop(id.0)
            }
            proto::ServerEvent::Expired(id) => {
                tracing::debug!(
                    parent: &conn.span,
                    request_id = id.0,
                    "call given up: its deadline or the shutdown grace passed"
                );
                conn.stop(id.0)
            }
            proto::ServerEvent::Credit { request_id, .. } => conn.wire.streams.credit(request_id.0),
            proto::ServerEvent::StreamItem(item) => {
                let len = item.item.len();
                if !conn
                    .wire
                    .uploads
                    .item(item.request_id.0, item.codec, item.item)
                    && fatal.is_none()
                {
                    // Argument items waiting for their handlers fill the server's receive
                    // budget: this connection goes.
                    let max = conn.inner.budget.max;
                    let mut s = conn.wire.lock();
                    s.side.close(
                        proto::ErrorCode::LIMIT_EXCEEDED,
                        "the server's receive buffers are full (argument stream items wait for their handlers); retry later",
                    );
                    conn.wire.flush_locked(s);
                    *fatal = Some(proto::ProtocolError::TooLong {
                        what: "argument stream item (server-wide receive buffer budget)",
                        len: len as u64,
                        max: max as u64,
                    });
                }
            }
            proto::ServerEvent::StreamEnd(id) => conn.wire.uploads.end(id.0, None),
            proto::ServerEvent::Drained => drained = true,
            proto::ServerEvent::Rejected { request_id, error } => {
                trace::rejected(&conn.span, &conn.info.peer, request_id.0, &error);
            }
            _ => {}
        }
    }
    drained
}

/// In a long batch of frames, replies are written after every this many calls
/// (multi-thread runtimes only; see `Reader::run`).
const EARLY_FLUSH_FRAMES: usize = 16;

impl Conn {
    /// The handshake succeeded: shared instances see on_connect; per-connection ones are
    /// created now.
    fn connected(&mut self) {
        let regs: Vec<Arc<Registered>> = read(&self.inner.registry).values().cloned().collect();
        for r in &regs {
            let inst = match &r.instances {
                Instances::Shared(i) => i.clone(),
                Instances::PerConnection(f) => {
                    let i = f();
                    self.instances.insert(r.info.provider_id, i.clone());
                    i
                }
            };
            inst.connect(&self.info);
        }
        self.connected = true;
    }

    /// Stops the handler of a call the machine cancelled or expired (it answered already).
    fn stop(&mut self, id: u64) {
        if let (Some(t), _) = self.tasks.remove(id) {
            t.abort();
        }
        self.wire.streams.stop(id);
        self.wire
            .uploads
            .end(id, Some("the call ended before its argument stream"));
    }

    /// After the connection ends: stop the handlers still running, run on_disconnect.
    fn teardown(self) {
        if let Some(link) = self.info.callback.get() {
            // Handlers still waiting for a callback's answer get a clear error.
            link.close();
        }
        for t in self.tasks.drain() {
            t.abort();
        }
        // Shut first: the pumps of resumable streams, woken below, see the connection
        // gone and park their streams (SPEC §6.14).
        self.wire.close();
        self.wire.streams.stop_all();
        self.wire.uploads.end_all();
        lock(&self.inner.connections).remove(&self.info.id);
        if self
            .inner
            .finalizing
            .load(std::sync::atomic::Ordering::Acquire)
        {
            // Finalize waits for the connections to drain and close.
            self.inner.closed.notify_waiters();
        }
        if self.connected {
            let regs: Vec<Arc<Registered>> = read(&self.inner.registry).values().cloned().collect();
            for r in &regs {
                let inst = match &r.instances {
                    Instances::Shared(i) => Some(i.clone()),
                    Instances::PerConnection(_) => self.instances.get(&r.info.provider_id).cloned(),
                };
                if let Some(i) = inst {
                    i.disconnect(&self.info);
                }
            }
        }
    }
}
