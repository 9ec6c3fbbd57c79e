//! The client side: proxies, connections, remote functions and call builders.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use wirecall_protocol as proto;
use wirecall_transport::{Address, Stream};

use crate::args::{ArgList, KwList, MapOf, SeqOf};
use crate::codec::{self, from_wire, to_wire};
use crate::config;
use crate::error::{Error, Fault, FaultKind};
use crate::idhash::IdBuild;
use crate::io::{write_frames, NotSent, SharedWriter};
use crate::provider::{full_name, getter_route, setter_route, Metadata};
use crate::server::DAEMON_PROVIDER_ID;
use crate::CodecId;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Results up to this size are copied out of the read buffer rather than shared with it.
const SMALL_RESULT: usize = 1024;

/// How long connecting (TCP/unix connect plus handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A reply as the connection reader hands it to the waiting call.
enum Resp {
    Value(CodecId, Body),
    Fault(Fault),
}

/// Results up to this size travel inside the call's own answer slot.
const INLINE_RESULT: usize = 64;

/// An encoded result: small ones held inline (copied straight into the waiting call's slot,
/// so no allocation is made on the reading thread and freed on the calling one), larger ones
/// as bytes.
enum Body {
    Inline(u8, [u8; INLINE_RESULT]),
    Bytes(Bytes),
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

    fn as_slice(&self) -> &[u8] {
        match self {
            Body::Inline(n, b) => &b[..usize::from(*n)],
            Body::Bytes(b) => b,
        }
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Body::Inline(..) => Bytes::copy_from_slice(self.as_slice()),
            Body::Bytes(b) => b,
        }
    }
}

mod slot;
use slot::{Slot, SlotWait, Waiter};

struct Pending {
    /// Keyed by request ids this client chose, so the cheap id hasher is safe.
    waiters: HashMap<u64, Waiter, IdBuild>,
    /// The next request id (ids start at 1); taken with the lock that registers the call.
    next_id: u64,
    /// Set once the connection is gone; new calls fail with it.
    closed: Option<Error>,
    /// The read side while nobody reads it. Whoever reads takes it out; invariant: while
    /// any call waits for its reply, the reader is taken (a caller or the reader task is
    /// reading), so a caller that finds it here knows it must read for itself.
    reader: Option<Box<Reader>>,
}

impl Pending {
    /// A fresh request id.
    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// What a connection's callers and its reader task share.
struct ConnShared {
    pending: Mutex<Pending>,
    /// Tells the reader task that the last waiting call was cancelled, so it can stop.
    idle: tokio::sync::Notify,
    address: String,
    /// Mirrors `pending.closed.is_some()`, read without the lock before every call.
    closed: AtomicBool,
    /// Mirrors `pending.reader.is_some()`: nobody reads, so a check for a GOAWAY or close
    /// that arrived while idle is due before the next call.
    reader_idle: AtomicBool,
}

impl ConnShared {
    /// Marks the connection closed: new calls fail with `err`.
    fn set_closed(&self, p: &mut Pending, err: Error) {
        p.closed = Some(err);
        self.closed.store(true, Ordering::Release);
    }

    /// Marks the connection closed with `err` unless it already is (the first error wins).
    fn close_with(&self, p: &mut Pending, err: Error) {
        if p.closed.is_none() {
            self.set_closed(p, err);
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
}

/// One live connection to a server: the shared writer, and the calls waiting.
///
/// Reading: a call that finds nobody reading reads the connection itself until its own
/// reply comes (no task hop for a lone call). If other calls are still waiting then, it
/// hands the read side to a reader task, which keeps reading until no call waits; so with
/// many calls in flight one task reads, woken by the reactor, and each caller only waits.
struct ClientConn {
    writer: Arc<SharedWriter>,
    shared: Arc<ConnShared>,
    default_codec: CodecId,
    accepted: Vec<CodecId>,
    address: String,
}

impl Drop for ClientConn {
    fn drop(&mut self) {
        self.writer.close();
    }
}

impl ClientConn {
    /// Up, after noticing any GOAWAY or close that arrived while it was idle.
    fn is_live(&self) -> bool {
        if self.shared.reader_idle.load(Ordering::Relaxed) {
            self.refresh();
        }
        !self.is_closed()
    }

    fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire) || self.writer.is_closed()
    }

    async fn connect(address: &Address, preferred: &[CodecId]) -> Result<ClientConn, Error> {
        let url = address.to_string();
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, Stream::connect(address))
            .await
            .map_err(|_| Error::transport(&url, "connect timed out"))?
            .map_err(|e| Error::transport(&url, e))?;
        let (mut rd, mut wr) = stream.into_split();
        let mut codecs: Vec<proto::CodecId> = preferred.iter().map(|c| to_wire(*c)).collect();
        for c in CodecId::BUILTIN {
            if !preferred.contains(&c) {
                codecs.push(to_wire(c));
            }
        }
        let hello = proto::Frame::Hello(proto::Hello {
            versions: vec![proto::VERSION],
            codecs: codecs.clone(),
            limits: proto::Limits::default(),
        });
        write_frames(&mut wr, &[hello])
            .await
            .map_err(|e| Error::transport(&url, e))?;
        let mut decoder = proto::FrameDecoder::new(proto::Limits::default());
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let welcome = tokio::time::timeout(CONNECT_TIMEOUT, async {
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(proto::Frame::Welcome(w))) => return Ok(w),
                    Ok(Some(proto::Frame::Refuse(r))) => {
                        let accepted: Vec<String> = r
                            .accepted
                            .iter()
                            .map(|c| from_wire(*c).to_string())
                            .collect();
                        return Err(if r.code == proto::ErrorCode::NO_COMMON_CODEC {
                            Error::NoCommonCodec {
                                offered: codecs.iter().map(|c| from_wire(*c).to_string()).collect(),
                                accepted,
                            }
                        } else if r.code == proto::ErrorCode::SHUTTING_DOWN {
                            Error::ShuttingDown { message: r.message }
                        } else {
                            Error::protocol(format!(
                                "the server refused the connection: {}",
                                r.message
                            ))
                        });
                    }
                    Ok(Some(proto::Frame::GoAway(g))) => {
                        return Err(Error::protocol(format!(
                            "the server closed the connection during the handshake: {}",
                            g.message
                        )))
                    }
                    Ok(Some(other)) => {
                        return Err(Error::protocol(format!(
                            "expected WELCOME, got {:?}",
                            other.kind()
                        )))
                    }
                    Ok(None) => {}
                    Err(e) => return Err(Error::protocol(e.to_string())),
                }
                match rd.read_buf(&mut buf).await {
                    Ok(0) => {
                        return Err(Error::transport(
                            &url,
                            "the server closed the connection during the handshake",
                        ))
                    }
                    Err(e) => return Err(Error::transport(&url, e)),
                    Ok(_) => {}
                }
            }
        })
        .await
        .map_err(|_| Error::transport(&url, "handshake timed out"))??;
        decoder.set_limits(proto::Limits::default());
        let writer = SharedWriter::start(wr);
        let shared = Arc::new(ConnShared {
            pending: Mutex::new(Pending {
                waiters: HashMap::default(),
                next_id: 1,
                closed: None,
                reader: Some(Box::new(Reader {
                    rd,
                    decoder,
                    buf,
                    done: false,
                })),
            }),
            idle: tokio::sync::Notify::new(),
            address: url.clone(),
            closed: AtomicBool::new(false),
            reader_idle: AtomicBool::new(true),
        });
        Ok(ClientConn {
            writer,
            shared,
            default_codec: from_wire(welcome.codec),
            accepted: welcome.accepted.iter().map(|c| from_wire(*c)).collect(),
            address: url,
        })
    }
}

fn fail_all(shared: &ConnShared, err: Error) {
    let wakers: Vec<std::task::Waker> = {
        let mut p = lock(&shared.pending);
        shared.close_with(&mut p, err.clone());
        let waiters: Vec<Waiter> = p.waiters.drain().map(|(_, w)| w).collect();
        waiters
            .into_iter()
            .map(|w| w.fill(&mut p, Err(err.clone())))
            .collect()
    };
    for w in wakers {
        w.wake();
    }
}

/// Gives call `id` its answer, if it still waits: stored under the pending lock, woken after
/// it (unless `id` is `mine`, the reading caller itself, which checks its slot next).
fn answer(shared: &ConnShared, id: u64, mine: u64, value: impl FnOnce() -> Result<Resp, Error>) {
    let waker = {
        let mut p = lock(&shared.pending);
        match p.waiters.remove(&id) {
            Some(w) => w.fill(&mut p, value()),
            None => return,
        }
    };
    if id != mine {
        waker.wake();
    }
}

struct Reader {
    rd: wirecall_transport::ReadHalf,
    decoder: proto::FrameDecoder,
    buf: BytesMut,
    /// The connection failed; every waiter has been told.
    done: bool,
}

impl Reader {
    /// Decodes and dispatches every complete frame, or stops the connection on a bad frame.
    /// `mine` is the reading caller's own request id (0 for none): its reply is stored
    /// without a wake-up.
    fn dispatch(&mut self, shared: &ConnShared, mine: u64) {
        loop {
            // The common reply is read in place: its small result is copied into the
            // caller's slot straight from the read buffer.
            if let Some(v) = self.decoder.peek_reply(&self.buf, SMALL_RESULT) {
                answer(shared, v.request_id.0, mine, || {
                    Ok(Resp::Value(from_wire(v.codec), Body::copied(v.result)))
                });
                let n = v.frame_len;
                self.buf.advance(n);
                continue;
            }
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(frame)) => {
                    if let Some(e) = on_frame(frame, shared, mine) {
                        self.fail(shared, e);
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    self.fail(
                        shared,
                        Error::protocol(format!("bad frame from the server: {e}")),
                    );
                    return;
                }
            }
        }
    }

    fn fail(&mut self, shared: &ConnShared, e: Error) {
        self.done = true;
        fail_all(shared, e);
    }

    /// Reads once (waiting for data) and dispatches every complete frame.
    ///
    /// Cancel-safe: dropped while waiting it loses no bytes.
    async fn read_some(&mut self, shared: &ConnShared, mine: u64) {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        match self.rd.read_buf(&mut self.buf).await {
            Ok(0) => self.fail(
                shared,
                Error::transport(&shared.address, "the server closed the connection"),
            ),
            Err(e) => self.fail(shared, Error::transport(&shared.address, e)),
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
                    self.fail(shared, Error::transport(&shared.address, e))
                }
                std::task::Poll::Pending => return,
            }
        }
    }
}

/// Puts the read side back if no call waits (or the connection is done); else returns it,
/// because somebody must go on reading.
fn park_reader(shared: &ConnShared, reader: Box<Reader>) -> Option<Box<Reader>> {
    let mut p = lock(&shared.pending);
    if reader.done || p.waiters.is_empty() {
        shared.put_reader(&mut p, reader);
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
            shared.put_reader(&mut lock(&shared.pending), reader);
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
        tokio::select! {
            biased;
            () = reader.read_some(&shared, 0) => {}
            () = shared.idle.notified() => {}
        }
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

impl ClientConn {
    /// Notices, without waiting, a GOAWAY or close that arrived while the connection was idle.
    fn refresh(&self) {
        let Some(mut reader) = self.shared.take_reader(&mut lock(&self.shared.pending)) else {
            // Someone is reading right now; they will notice.
            return;
        };
        if !reader.done {
            reader.poll_now(&self.shared);
        }
        release_reader(&self.shared, reader);
    }
}

/// Handles one frame from the server; returns an error to stop reading.
///
/// `mine` is the request id of the caller doing the reading (0 for none; ids start at 1).
fn on_frame(frame: proto::Frame, shared: &ConnShared, mine: u64) -> Option<Error> {
    let pending = &shared.pending;
    match frame {
        proto::Frame::Reply(r) => {
            answer(shared, r.request_id.0, mine, || {
                Ok(Resp::Value(from_wire(r.codec), Body::from_result(r.result)))
            });
            None
        }
        proto::Frame::Error(e) => {
            answer(shared, e.request_id.0, mine, || {
                Ok(Resp::Fault(fault_from_body(e.body)))
            });
            None
        }
        proto::Frame::GoAway(g) => {
            // Calls above the last id were not processed and never will be.
            let err = Error::ShuttingDown {
                message: g.message.clone(),
            };
            let refused: Vec<std::task::Waker> = {
                let mut p = lock(pending);
                shared.set_closed(&mut p, err.clone());
                let ids: Vec<u64> = p
                    .waiters
                    .keys()
                    .copied()
                    .filter(|id| *id > g.last_request_id.0)
                    .collect();
                let mut wakers = Vec::with_capacity(ids.len());
                for id in ids {
                    if let Some(w) = p.waiters.remove(&id) {
                        wakers.push(w.fill(&mut p, Err(err.clone())));
                    }
                }
                wakers
            };
            for w in refused {
                w.wake();
            }
            if g.code == proto::ErrorCode::NO_ERROR {
                None
            } else {
                Some(Error::protocol(format!(
                    "the server closed the connection: {}",
                    g.message
                )))
            }
        }
        proto::Frame::Ping(_) | proto::Frame::Pong(_) => None,
        other => Some(Error::protocol(format!(
            "unexpected {:?} frame from the server",
            other.kind()
        ))),
    }
}

fn fault_from_body(body: proto::ErrorBody) -> Fault {
    let kind = match body.code {
        proto::ErrorCode::APPLICATION_ERROR => FaultKind::Application,
        proto::ErrorCode::BAD_ARGUMENTS => FaultKind::BadArguments,
        proto::ErrorCode::UNKNOWN_PROVIDER => FaultKind::UnknownProvider,
        proto::ErrorCode::UNKNOWN_METHOD => FaultKind::UnknownMethod,
        proto::ErrorCode::CODEC_REFUSED => FaultKind::CodecRefused,
        proto::ErrorCode::DEADLINE_EXCEEDED | proto::ErrorCode::TIMEOUT => {
            FaultKind::DeadlineExceeded
        }
        proto::ErrorCode::SHUTTING_DOWN => FaultKind::ShuttingDown,
        proto::ErrorCode::PERMISSION_DENIED => FaultKind::PermissionDenied,
        proto::ErrorCode::TOO_MANY_IN_FLIGHT => FaultKind::Busy,
        _ => FaultKind::Internal,
    };
    let mut names = Vec::new();
    let mut trace = body.trace;
    if let Some(rest) = trace.strip_prefix(config::EXPOSED_MARKER) {
        names = rest
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        trace = String::new();
    }
    if kind == FaultKind::CodecRefused {
        names = body
            .accepted
            .iter()
            .map(|c| from_wire(*c).to_string())
            .collect();
    }
    Fault {
        kind,
        type_name: body.type_name,
        message: body.message,
        trace,
        names,
    }
}

/// Removes a call from the pending map and sends CANCEL if the caller stops waiting.
struct CallGuard<'a> {
    conn: &'a ClientConn,
    id: u64,
    armed: bool,
}

impl CallGuard<'_> {
    /// Stops waiting for the call: removes it from the pending map (so a reply that still
    /// comes is dropped) and disarms the guard. Returns whether it was still waiting.
    fn forget(&mut self) -> bool {
        self.armed = false;
        let mut p = lock(&self.conn.shared.pending);
        let was = p.waiters.remove(&self.id).is_some();
        if was && p.waiters.is_empty() && p.reader.is_none() {
            // A reader task may be waiting for replies nobody wants any more.
            self.conn.shared.idle.notify_one();
        }
        was
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if self.armed && self.forget() {
            crate::io::sent_or_log(
                self.conn
                    .writer
                    .send(&proto::Frame::Cancel(proto::RequestId(self.id))),
            );
        }
    }
}

/// Per-call options.
#[derive(Debug, Clone, Default)]
struct CallOpts {
    codec: Option<CodecId>,
    timeout: Option<Duration>,
    annotations: Vec<(String, Vec<u8>)>,
}

struct ProxyShared {
    target: Result<Address, String>,
    uri: String,
    service: Option<String>,
    provider_id: Option<u16>,
    preferred: Vec<CodecId>,
    conn: Mutex<Option<Arc<ClientConn>>>,
    connecting: tokio::sync::Mutex<()>,
    meta: Mutex<Option<Arc<Metadata>>>,
}

/// Checks an RPC name against the wire's rules for a method name, or a configuration error
/// naming it.
fn check_name(rpc_name: &str) -> Result<(), Error> {
    proto::Method::check(rpc_name)
        .map_err(|e| Error::config(format!("bad RPC name `{rpc_name}`: {e}")))
}

/// A call's RPC name: borrowed from the caller (no copy, no reference count per call), or
/// shared by a [`RemoteFunction`] and its calls.
#[derive(Clone, Debug)]
enum RpcName<'p> {
    Borrowed(&'p str),
    Shared(Arc<str>),
}

impl RpcName<'_> {
    fn as_str(&self) -> &str {
        match self {
            RpcName::Borrowed(s) => s,
            RpcName::Shared(s) => s,
        }
    }
}

/// A handle to a remote server: lazy connection, per-proxy codec and timeout.
///
/// Clones are cheap and share one connection, which carries many calls at once from any
/// number of tasks; the connection closes when the last clone is dropped. Each clone may
/// carry its own codec and timeout ([`Proxy::codec`], [`Proxy::timeout`]).
///
/// URIs: a bare address (`tcp://127.0.0.1:4000`, `unix:///tmp/s.sock`), or
/// `service@address`, or `service:provider_id@address` to bind a service name and provider
/// id for [`Proxy::call`].
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<ProxyShared>,
    opts: CallOpts,
    validate: bool,
    /// The connection this clone first used, kept so that calls borrow it instead of
    /// looking it up under the shared lock and counting a reference each time (both showed
    /// as cross-core traffic with calls from many threads). Once it has closed, calls go
    /// through the shared lookup again; clones made after a reconnect cache the new one.
    cached: std::sync::OnceLock<Arc<ClientConn>>,
}

/// The connection a call uses: borrowed from the proxy's cache, or its own reference.
enum ConnRef<'a> {
    Cached(&'a ClientConn),
    Owned(Arc<ClientConn>),
}

impl std::ops::Deref for ConnRef<'_> {
    type Target = ClientConn;

    fn deref(&self) -> &ClientConn {
        match self {
            ConnRef::Cached(c) => c,
            ConnRef::Owned(c) => c,
        }
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("uri", &self.shared.uri)
            .field("codec", &self.opts.codec)
            .field("timeout", &self.opts.timeout)
            .finish()
    }
}

/// Splits `service[:provider_id]@address`.
fn parse_uri(uri: &str) -> Result<(Option<String>, Option<u16>, Address), Error> {
    let uri = uri.trim();
    let (prefix, addr) = match uri.find('@') {
        Some(at) if !uri[..at].contains("://") => (Some(&uri[..at]), &uri[at + 1..]),
        _ => (None, uri),
    };
    let address: Address = addr.parse().map_err(|e| {
        Error::config(format!(
            "bad address `{addr}` in `{uri}`: {e} (expected tcp://host:port, unix:///path or mem://name, optionally prefixed by service@ or service:provider_id@)"
        ))
    })?;
    let (service, provider_id) = match prefix {
        None => (None, None),
        Some(p) => match p.split_once(':') {
            Some((s, id)) => {
                let id: u16 = id.parse().map_err(|_| {
                    Error::config(format!(
                        "bad provider id `{id}` in `{uri}`: expected a number 0-65534"
                    ))
                })?;
                (Some(s.to_string()), Some(id))
            }
            None => (Some(p.to_string()), None),
        },
    };
    Ok((service.filter(|s| !s.is_empty()), provider_id, address))
}

impl Proxy {
    /// A proxy for `uri`; connects on first use (or on [`Proxy::connect`]).
    ///
    /// The default codec is `WIRECALL_CODEC` if set, else the first codec the server
    /// accepts from the client's preference list.
    pub fn new(uri: &str) -> Result<Proxy, Error> {
        let (service, provider_id, address) = parse_uri(uri)?;
        let env_codec = config::codec_from_env()?;
        Ok(Proxy::build(
            Ok(address),
            uri,
            service,
            provider_id,
            env_codec,
        ))
    }

    fn build(
        target: Result<Address, String>,
        uri: &str,
        service: Option<String>,
        provider_id: Option<u16>,
        env_codec: Option<CodecId>,
    ) -> Proxy {
        Proxy {
            shared: Arc::new(ProxyShared {
                target,
                uri: uri.to_string(),
                service,
                provider_id,
                preferred: env_codec.into_iter().collect(),
                conn: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                meta: Mutex::new(None),
            }),
            opts: CallOpts {
                codec: env_codec,
                ..CallOpts::default()
            },
            validate: false,
            cached: std::sync::OnceLock::new(),
        }
    }

    /// A proxy that reports `err` on first use (for conversions that cannot fail).
    fn broken(uri: &str, err: String) -> Proxy {
        Proxy::build(Err(err), uri, None, None, None)
    }

    /// A clone that encodes calls with `codec` (sharing the connection).
    #[must_use]
    pub fn codec(mut self, codec: CodecId) -> Proxy {
        self.opts.codec = Some(codec);
        self
    }

    /// A clone whose calls time out after `timeout`; the deadline travels with each call and
    /// the server drops work whose deadline passed.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Proxy {
        self.opts.timeout = Some(timeout);
        self
    }

    /// A clone that sends a user annotation with every call.
    #[must_use]
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Proxy {
        self.opts.annotations.push((key.into(), value.into()));
        self
    }

    /// A clone that checks method names against the server's metadata before sending
    /// (Pyro's local check): unknown names fail with `NoSuchMethod` without a round trip.
    #[must_use]
    pub fn validated(mut self) -> Proxy {
        self.validate = true;
        self
    }

    /// The URI the proxy was made from.
    pub fn uri(&self) -> &str {
        &self.shared.uri
    }

    /// The service name bound in the URI, if any.
    pub fn service(&self) -> Option<&str> {
        self.shared.service.as_deref()
    }

    /// The provider id bound in the URI, if any.
    pub fn provider_id(&self) -> Option<u16> {
        self.shared.provider_id
    }

    /// The codec this proxy sets explicitly, if any (else the negotiated default is used).
    pub fn codec_override(&self) -> Option<CodecId> {
        self.opts.codec
    }

    /// Connects now (otherwise the first call connects).
    pub async fn connect(&self) -> Result<(), Error> {
        self.conn().await.map(|_| ())
    }

    /// The codec calls use: the override, or the one negotiated at connect.
    pub async fn effective_codec(&self) -> Result<CodecId, Error> {
        match self.opts.codec {
            Some(c) => Ok(c),
            None => Ok(self.conn().await?.default_codec),
        }
    }

    /// The codecs the server said it accepts (connects if needed).
    pub async fn server_accepted(&self) -> Result<Vec<CodecId>, Error> {
        Ok(self.conn().await?.accepted.clone())
    }

    /// Whether the shared connection is up.
    pub fn is_connected(&self) -> bool {
        lock(&self.shared.conn)
            .as_ref()
            .is_some_and(|c| !c.is_closed())
    }

    /// The live connection, connecting first if there is none.
    async fn conn(&self) -> Result<ConnRef<'_>, Error> {
        if let Some(c) = self.cached.get() {
            if c.is_live() {
                return Ok(ConnRef::Cached(c));
            }
        }
        let c = match self.live_conn() {
            Some(c) => c,
            // Boxed: connecting is rare, and its state would otherwise sit inside every
            // call's future (moved and touched on every call).
            None => Box::pin(self.reconnect()).await?,
        };
        if self.cached.get().is_none() {
            return Ok(ConnRef::Cached(self.cached.get_or_init(|| c)));
        }
        Ok(ConnRef::Owned(c))
    }

    /// The current shared connection if it is up.
    fn live_conn(&self) -> Option<Arc<ClientConn>> {
        let c = lock(&self.shared.conn).clone()?;
        c.is_live().then_some(c)
    }

    /// Connects (once, for all the clones waiting) and installs the new connection.
    async fn reconnect(&self) -> Result<Arc<ClientConn>, Error> {
        let _g = self.shared.connecting.lock().await;
        if let Some(c) = lock(&self.shared.conn).as_ref() {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let address = self
            .shared
            .target
            .as_ref()
            .map_err(|e| Error::config(e.clone()))?;
        let mut preferred: Vec<CodecId> = self.opts.codec.into_iter().collect();
        preferred.extend(
            self.shared
                .preferred
                .iter()
                .filter(|c| Some(**c) != self.opts.codec),
        );
        let c = Arc::new(ClientConn::connect(address, &preferred).await?);
        *lock(&self.shared.conn) = Some(c.clone());
        Ok(c)
    }

    /// Sends one call with already-encoded arguments and returns the encoded result.
    ///
    /// `args` is the codec's encoding of the positional arguments as one sequence; `kwargs`
    /// the encoding of a map from parameter name to value, or empty. Returns `None` for a
    /// oneway call.
    pub async fn call_raw(
        &self,
        provider_id: u16,
        method: &str,
        codec: CodecId,
        args: Bytes,
        kwargs: Bytes,
        oneway: bool,
    ) -> Result<Option<(CodecId, Bytes)>, Error> {
        check_name(method)?;
        let conn = self.conn().await?;
        self.send(
            &conn,
            provider_id,
            method,
            codec,
            &args,
            &kwargs,
            oneway,
            &self.opts,
        )
        .await
        .map(|r| r.map(|(c, body)| (c, body.into_bytes())))
    }

    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        conn: &ClientConn,
        provider_id: u16,
        method: &str,
        codec: CodecId,
        args: &[u8],
        kwargs: &[u8],
        oneway: bool,
        opts: &CallOpts,
    ) -> Result<Option<(CodecId, Body)>, Error> {
        let annotations = if opts.timeout.is_none() && opts.annotations.is_empty() {
            proto::Annotations::new()
        } else {
            let mut b = proto::Annotations::builder();
            if let Some(t) = opts.timeout {
                b = b.deadline(t);
            }
            for (k, v) in &opts.annotations {
                b = b
                    .insert(k, v)
                    .map_err(|e| Error::config(format!("bad annotation `{k}`: {e}")))?;
            }
            b.build()
        };
        let mut frame = proto::CallRef {
            request_id: proto::RequestId(0),
            provider: proto::ProviderId(provider_id),
            codec: to_wire(codec),
            oneway,
            method,
            annotations: &annotations,
            args,
            kwargs,
            attachment: &[],
        };
        let not_sent = |e: NotSent| match e {
            NotSent::Closed => Error::transport(&conn.address, "the connection is closed"),
            NotSent::Bad(e) => Error::config(format!("cannot send `{method}`: {e}")),
        };
        if oneway {
            frame.request_id = proto::RequestId(lock(&conn.shared.pending).take_id());
            return conn.writer.send(&frame).map(|_| None).map_err(not_sent);
        }
        let slot = std::pin::pin!(Slot::new());
        let slot = slot.into_ref();
        let waker = std::future::poll_fn(|cx| std::task::Poll::Ready(cx.waker().clone())).await;
        let (id, alone, reader) = {
            let mut p = lock(&conn.shared.pending);
            if let Some(e) = &p.closed {
                return Err(e.clone());
            }
            let id = p.take_id();
            // SAFETY: `slot` is pinned in this future and outlives `guard` below (declared
            // after it, so dropped before it), which removes the waiter from the map under
            // the pending lock unless the slot was filled.
            #[allow(unsafe_code)]
            let waiter = unsafe { Waiter::new(slot, waker) };
            p.waiters.insert(id, waiter);
            // Nobody reading (the reader is here) means no other call waits: read for
            // ourselves.
            (id, p.waiters.len() == 1, conn.shared.take_reader(&mut p))
        };
        frame.request_id = proto::RequestId(id);
        let mut guard = CallGuard {
            conn,
            id,
            armed: true,
        };
        let mut role = ReadRole {
            shared: &conn.shared,
            reader,
        };
        // A lone call is written inline (no task hop); with others in flight the writer
        // task batches them into one write.
        let queued = if alone {
            conn.writer.send(&frame)
        } else {
            conn.writer.send_batched(&frame)
        };
        if let Err(e) = queued {
            // Never sent: nothing to cancel.
            guard.forget();
            return Err(not_sent(e));
        }
        // Wait for the reply, reading the connection meanwhile if nobody else is.
        let wait = async {
            if let Some(r) = role.reader.as_mut() {
                loop {
                    if let Some(v) = slot.take() {
                        break v;
                    }
                    if r.done {
                        break Err(Error::transport(&conn.address, "the connection is closed"));
                    }
                    r.read_some(&conn.shared, id).await;
                }
            } else {
                SlotWait {
                    slot,
                    shared: &conn.shared,
                    id,
                    polled: false,
                }
                .await
            }
        };
        let r = match opts.timeout {
            Some(t) => match Box::pin(tokio::time::timeout(t, wait)).await {
                Ok(r) => r,
                Err(_) => return Err(Error::Timeout { after: t }),
            },
            None => wait.await,
        };
        drop(role);
        // A filled slot was removed from the map by its filler: nothing left to forget.
        // (An answer that did not come through the slot leaves the guard to remove it.)
        guard.armed = !slot.is_filled();
        match r {
            Ok(Resp::Value(c, b)) => Ok(Some((c, b))),
            Ok(Resp::Fault(f)) => {
                let mut e = f.into_error(provider_id, method);
                if let (Error::Timeout { after }, Some(t)) = (&mut e, opts.timeout) {
                    *after = t;
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Encodes and sends a call, decodes the result.
    async fn invoke<A: ArgList, K: KwList, R: DeserializeOwned>(
        &self,
        provider_id: u16,
        method: &str,
        args: &A,
        kwargs: &K,
        oneway: bool,
        opts: &CallOpts,
    ) -> Result<Option<R>, Error> {
        if self.validate {
            // Boxed, like connecting: only validated proxies carry its state.
            Box::pin(self.check_method(provider_id, method)).await?;
        }
        self.invoke_unchecked(provider_id, method, args, kwargs, oneway, opts)
            .await
    }

    /// [`Proxy::invoke`] without the local metadata check.
    async fn invoke_unchecked<A: ArgList, K: KwList, R: DeserializeOwned>(
        &self,
        provider_id: u16,
        method: &str,
        args: &A,
        kwargs: &K,
        oneway: bool,
        opts: &CallOpts,
    ) -> Result<Option<R>, Error> {
        let conn = self.conn().await?;
        let codec = opts.codec.unwrap_or(conn.default_codec);
        // Positional then keyword arguments in one buffer.
        let mut out = Vec::with_capacity(64);
        codec::encode_into(codec, &SeqOf(args), &mut out).map_err(|e| Error::Codec {
            message: format!("encoding the arguments with {codec}: {e}"),
        })?;
        let n_args = out.len();
        if K::LEN != 0 {
            codec::encode_into(codec, &MapOf(kwargs), &mut out).map_err(|e| Error::Codec {
                message: format!("encoding the keyword arguments with {codec}: {e}"),
            })?;
        }
        let (args, kwargs) = out.split_at(n_args);
        match self
            .send(
                &conn,
                provider_id,
                method,
                codec,
                args,
                kwargs,
                oneway,
                opts,
            )
            .await?
        {
            None => Ok(None),
            Some((c, body)) => {
                let limits = wirecall_codecs::Limits::default().with_max_input(usize::MAX);
                codec::decode::<R>(c, body.as_slice(), &limits)
                    .map(Some)
                    .map_err(|e| Error::Codec {
                        message: format!("decoding the result with {c}: {e}"),
                    })
            }
        }
    }

    async fn check_method(&self, provider_id: u16, method: &str) -> Result<(), Error> {
        if provider_id == DAEMON_PROVIDER_ID {
            return Ok(());
        }
        let meta = self.cached_metadata().await?;
        match meta.provider(provider_id) {
            None => Err(Error::NoSuchProvider {
                provider_id,
                message: format!(
                    "checked locally against the server's metadata; registered ids: {}",
                    meta.providers
                        .iter()
                        .map(|p| p.provider_id.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
            Some(p) => {
                let is_attr = method
                    .strip_prefix("__get__")
                    .or_else(|| method.strip_prefix("__set__"))
                    .is_some_and(|a| p.attributes.iter().any(|x| x == a));
                if is_attr || p.has_method(method) {
                    Ok(())
                } else {
                    Err(Error::NoSuchMethod {
                        method: method.to_string(),
                        exposed: p.methods.iter().map(|m| m.name.clone()).collect(),
                    })
                }
            }
        }
    }

    async fn cached_metadata(&self) -> Result<Arc<Metadata>, Error> {
        if let Some(m) = lock(&self.shared.meta).as_ref() {
            return Ok(m.clone());
        }
        let m = Arc::new(self.metadata().await?);
        *lock(&self.shared.meta) = Some(m.clone());
        Ok(m)
    }

    /// Asks the server's daemon object for its providers, methods and attributes.
    pub async fn metadata(&self) -> Result<Metadata, Error> {
        let r: Option<Metadata> = self
            .invoke_unchecked(DAEMON_PROVIDER_ID, "metadata", &(), &(), false, &self.opts)
            .await?;
        r.ok_or_else(|| Error::protocol("no metadata in the reply"))
    }

    /// Whether provider `provider_id` exposes the method `full_name` (`service_method`),
    /// from the server's metadata (fetched once per proxy and cached).
    pub async fn has_method(&self, provider_id: u16, full_name: &str) -> Result<bool, Error> {
        let meta = self.cached_metadata().await?;
        Ok(meta
            .provider(provider_id)
            .is_some_and(|p| p.has_method(full_name)))
    }

    /// Checks that the server answers (a round trip to the daemon object).
    pub async fn ping(&self) -> Result<(), Error> {
        let _: Option<()> = self
            .invoke_unchecked(DAEMON_PROVIDER_ID, "ping", &(), &(), false, &self.opts)
            .await?;
        Ok(())
    }

    /// Asks the server to finalize (Margo's remote shutdown). The server must have called
    /// `enable_remote_shutdown()`, and `token` must match its shutdown token if it has one.
    pub async fn shutdown_server(&self, token: Option<&str>) -> Result<(), Error> {
        let mut opts = self.opts.clone();
        if let Some(t) = token {
            opts.annotations.push((
                config::SHUTDOWN_TOKEN_KEY.to_string(),
                t.as_bytes().to_vec(),
            ));
        }
        let _: Option<()> = self
            .invoke_unchecked(DAEMON_PROVIDER_ID, "shutdown", &(), &(), false, &opts)
            .await?;
        Ok(())
    }

    /// Starts a call of `method` on the service and provider bound in the URI
    /// (`service:provider_id@address`); the RPC name is `service + "_" + method`.
    pub fn call(&self, method: &str) -> Result<CallBuilder<'_, (), ()>, Error> {
        let (Some(service), Some(pid)) = (&self.shared.service, self.shared.provider_id) else {
            return Err(Error::config(format!(
                "proxy `{}` has no service name and provider id; use a URI like my_service:42@tcp://host:port, or Client::register(name).on(..)",
                self.shared.uri
            )));
        };
        let name = full_name(service, method);
        check_name(&name)?;
        Ok(CallBuilder::new(
            Cow::Borrowed(self),
            pid,
            RpcName::Shared(name.into()),
        ))
    }

    /// Starts a call of the full RPC name `rpc_name` on provider `provider_id`.
    ///
    /// The builder borrows `rpc_name` as it borrows the proxy (no copy per call).
    pub fn call_on<'a>(
        &'a self,
        provider_id: u16,
        rpc_name: &'a str,
    ) -> Result<CallBuilder<'a, (), ()>, Error> {
        check_name(rpc_name)?;
        Ok(CallBuilder::new(
            Cow::Borrowed(self),
            provider_id,
            RpcName::Borrowed(rpc_name),
        ))
    }

    /// Reads the remote attribute `name` of provider `provider_id` (Pyro's exposed property).
    pub async fn get_attr<R: DeserializeOwned>(
        &self,
        provider_id: u16,
        name: &str,
    ) -> Result<R, Error> {
        let method = getter_route(name);
        check_name(&method)?;
        self.invoke(provider_id, &method, &(), &(), false, &self.opts)
            .await?
            .ok_or_else(|| Error::protocol("no value in the reply"))
    }

    /// Sets the remote attribute `name` of provider `provider_id`.
    pub async fn set_attr<T: Serialize + Send>(
        &self,
        provider_id: u16,
        name: &str,
        value: T,
    ) -> Result<(), Error> {
        let method = setter_route(name);
        check_name(&method)?;
        let _: Option<()> = self
            .invoke(provider_id, &method, &((), value), &(), false, &self.opts)
            .await?;
        Ok(())
    }
}

/// Converts addresses and proxies into a [`Proxy`].
pub trait IntoProxy {
    /// The proxy.
    fn into_proxy(self) -> Proxy;
    /// The proxy, reusing a client's shared connection for the same URI.
    fn into_proxy_in(self, client: &Client) -> Proxy
    where
        Self: Sized,
    {
        let _ = client;
        self.into_proxy()
    }
}

impl IntoProxy for Proxy {
    fn into_proxy(self) -> Proxy {
        self
    }
}

impl IntoProxy for &Proxy {
    fn into_proxy(self) -> Proxy {
        self.clone()
    }
}

impl IntoProxy for &str {
    fn into_proxy(self) -> Proxy {
        Proxy::new(self).unwrap_or_else(|e| Proxy::broken(self, e.to_string()))
    }
    fn into_proxy_in(self, client: &Client) -> Proxy {
        client
            .proxy(self)
            .unwrap_or_else(|e| Proxy::broken(self, e.to_string()))
    }
}

impl IntoProxy for &String {
    fn into_proxy(self) -> Proxy {
        self.as_str().into_proxy()
    }
    fn into_proxy_in(self, client: &Client) -> Proxy {
        self.as_str().into_proxy_in(client)
    }
}

impl IntoProxy for String {
    fn into_proxy(self) -> Proxy {
        self.as_str().into_proxy()
    }
    fn into_proxy_in(self, client: &Client) -> Proxy {
        self.as_str().into_proxy_in(client)
    }
}

impl IntoProxy for &Address {
    fn into_proxy(self) -> Proxy {
        self.to_string().into_proxy()
    }
    fn into_proxy_in(self, client: &Client) -> Proxy {
        self.to_string().into_proxy_in(client)
    }
}

impl IntoProxy for &crate::Engine {
    fn into_proxy(self) -> Proxy {
        self.address().into_proxy()
    }
    fn into_proxy_in(self, client: &Client) -> Proxy {
        self.address().into_proxy_in(client)
    }
}

/// A client engine: hands out proxies (one shared connection per address) and remote
/// functions by name (PyMargo's `engine.register(name)`).
#[derive(Clone, Default)]
pub struct Client {
    proxies: Arc<Mutex<HashMap<String, Proxy>>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("proxies", &lock(&self.proxies).len())
            .finish()
    }
}

impl Client {
    /// A new client engine.
    pub fn new() -> Client {
        Client::default()
    }

    /// The proxy for `uri`, sharing one connection with earlier proxies for the same URI.
    pub fn proxy(&self, uri: &str) -> Result<Proxy, Error> {
        let mut map = lock(&self.proxies);
        if let Some(p) = map.get(uri) {
            return Ok(p.clone());
        }
        let p = Proxy::new(uri)?;
        map.insert(uri.to_string(), p.clone());
        Ok(p)
    }

    /// A remote function by full RPC name (`my_service_say_hello`), to call with
    /// [`RemoteFunction::on`].
    pub fn register(&self, rpc_name: &str) -> RemoteFunction {
        RemoteFunction {
            client: self.clone(),
            name: rpc_name.to_string(),
            method: check_name(rpc_name).map(|()| Arc::from(rpc_name)),
            oneway: false,
        }
    }
}

/// A remote function known by name; [`RemoteFunction::on`] picks the server and provider.
#[derive(Clone, Debug)]
pub struct RemoteFunction {
    client: Client,
    name: String,
    /// The wire name, validated once at registration and shared by every call.
    method: Result<Arc<str>, Error>,
    oneway: bool,
}

impl RemoteFunction {
    /// Marks the function oneway (Margo's `disable_response`): calls return once sent.
    #[must_use]
    pub fn disable_response(mut self) -> Self {
        self.oneway = true;
        self
    }

    /// The RPC name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A call of this function on provider `provider_id` at `target` (an address URI, a
    /// [`Proxy`], or a server [`Engine`](crate::Engine)); add arguments, then `.call()`.
    pub fn on(&self, target: impl IntoProxy, provider_id: u16) -> CallBuilder<'static, (), ()> {
        let proxy = target.into_proxy_in(&self.client);
        CallBuilder {
            opts: proxy.opts.clone(),
            proxy: Cow::Owned(proxy),
            provider_id,
            method: self.method.clone().map(RpcName::Shared),
            args: (),
            kwargs: (),
            oneway: self.oneway,
        }
    }
}

/// One call being put together: positional arguments with [`CallBuilder::arg`], keyword
/// arguments with [`CallBuilder::kwarg`], then [`CallBuilder::call`].
///
/// A builder from [`Proxy::call`] or [`Proxy::call_on`] borrows its proxy (no reference
/// count to touch per call); to run a call on a spawned task, move a clone of the proxy into
/// the task and build the call there. [`RemoteFunction::on`] gives an owned one.
#[must_use = "a call does nothing until .call() or .send() is awaited"]
pub struct CallBuilder<'p, A, K> {
    proxy: Cow<'p, Proxy>,
    provider_id: u16,
    method: Result<RpcName<'p>, Error>,
    args: A,
    kwargs: K,
    oneway: bool,
    opts: CallOpts,
}

impl<A, K> fmt::Debug for CallBuilder<'_, A, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallBuilder")
            .field("proxy", &self.proxy)
            .field("provider_id", &self.provider_id)
            .field("method", &self.method.as_ref().map(|m| m.as_str()).ok())
            .finish()
    }
}

impl<'p> CallBuilder<'p, (), ()> {
    fn new(proxy: Cow<'p, Proxy>, provider_id: u16, method: RpcName<'p>) -> Self {
        CallBuilder {
            opts: proxy.opts.clone(),
            proxy,
            provider_id,
            method: Ok(method),
            args: (),
            kwargs: (),
            oneway: false,
        }
    }
}

impl<'p, A: ArgList, K: KwList> CallBuilder<'p, A, K> {
    /// Adds the next positional argument.
    pub fn arg<T: Serialize + Send>(self, value: T) -> CallBuilder<'p, (A, T), K> {
        CallBuilder {
            proxy: self.proxy,
            provider_id: self.provider_id,
            method: self.method,
            args: (self.args, value),
            kwargs: self.kwargs,
            oneway: self.oneway,
            opts: self.opts,
        }
    }

    /// Adds a keyword argument, matched by parameter name on the server.
    #[allow(clippy::type_complexity)]
    pub fn kwarg<T: Serialize + Send>(
        self,
        name: impl Into<Cow<'static, str>>,
        value: T,
    ) -> CallBuilder<'p, A, (K, (Cow<'static, str>, T))> {
        CallBuilder {
            proxy: self.proxy,
            provider_id: self.provider_id,
            method: self.method,
            args: self.args,
            kwargs: (self.kwargs, (name.into(), value)),
            oneway: self.oneway,
            opts: self.opts,
        }
    }

    /// Overrides the codec for this call.
    pub fn codec(mut self, codec: CodecId) -> Self {
        self.opts.codec = Some(codec);
        self
    }

    /// Overrides the timeout for this call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.opts.timeout = Some(timeout);
        self
    }

    /// Adds a user annotation to this call.
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.opts.annotations.push((key.into(), value.into()));
        self
    }

    /// Sends the call and waits for its result, decoded as `R`.
    ///
    /// Dropping the returned future before it completes cancels the call (a CANCEL frame
    /// tells the server to stop working on it).
    pub async fn call<R: DeserializeOwned>(self) -> Result<R, Error> {
        let method = self.method?;
        let method = method.as_str();
        if self.oneway {
            return Err(Error::config(
                "this function is oneway (disable_response): use .send() instead of .call()",
            ));
        }
        self.proxy
            .invoke(
                self.provider_id,
                method,
                &self.args,
                &self.kwargs,
                false,
                &self.opts,
            )
            .await?
            .ok_or_else(|| Error::protocol("no value in the reply"))
    }

    /// Sends the call oneway: returns once it is queued; the server never answers.
    pub async fn send(self) -> Result<(), Error> {
        let method = self.method?;
        let method = method.as_str();
        let _: Option<()> = self
            .proxy
            .invoke(
                self.provider_id,
                method,
                &self.args,
                &self.kwargs,
                true,
                &self.opts,
            )
            .await?;
        Ok(())
    }
}

/// What a generated `<Type>Client` calls through: a proxy plus a provider id.
#[derive(Clone, Debug)]
pub struct ProviderHandle {
    proxy: Proxy,
    provider_id: u16,
}

impl ProviderHandle {
    /// A handle on provider `provider_id` through `proxy`.
    pub fn new(proxy: Proxy, provider_id: u16) -> Self {
        ProviderHandle { proxy, provider_id }
    }

    /// The proxy.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// The provider id.
    pub fn provider_id(&self) -> u16 {
        self.provider_id
    }

    /// Calls `rpc_name` with positional arguments `args` (nested pairs, see [`ArgList`]).
    pub async fn call<A: ArgList, R: DeserializeOwned>(
        &self,
        rpc_name: &'static str,
        args: A,
    ) -> Result<R, Error> {
        check_name(rpc_name)?;
        self.proxy
            .invoke(
                self.provider_id,
                rpc_name,
                &args,
                &(),
                false,
                &self.proxy.opts,
            )
            .await?
            .ok_or_else(|| Error::protocol("no value in the reply"))
    }

    /// Calls `rpc_name` oneway.
    pub async fn call_oneway<A: ArgList>(
        &self,
        rpc_name: &'static str,
        args: A,
    ) -> Result<(), Error> {
        check_name(rpc_name)?;
        let _: Option<()> = self
            .proxy
            .invoke(
                self.provider_id,
                rpc_name,
                &args,
                &(),
                true,
                &self.proxy.opts,
            )
            .await?;
        Ok(())
    }

    /// Reads a remote attribute.
    pub async fn get_attr<R: DeserializeOwned>(&self, name: &str) -> Result<R, Error> {
        self.proxy.get_attr(self.provider_id, name).await
    }

    /// Sets a remote attribute.
    pub async fn set_attr<T: Serialize + Send>(&self, name: &str, value: T) -> Result<(), Error> {
        self.proxy.set_attr(self.provider_id, name, value).await
    }
}
