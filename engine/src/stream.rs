//! Streamed results (SPEC §6.5, §6.12): a handler returns an [`ItemStream`], the caller
//! reads a [`RemoteStream`].
//!
//! The wire rules (credit, cancel, what a peer that ignores its credit gets) are the
//! protocol machines'; this module drives them. On the server a stream is pumped by a task
//! of its own that polls the handler's stream only while the caller's credit lasts, so a
//! slow consumer never makes the server hold more than the window: the items produced and
//! not yet taken by the consumer are at most the window (`wc.window`, the proxy's
//! [`CallBuilder::window`](crate::CallBuilder::window), default [`DEFAULT_WINDOW`]). On
//! the client, [`RemoteStream`] grants credit back as its consumer takes items, and
//! dropping it cancels the call: the server drops the handler's stream (its producer).
//!
//! A caller that sends no window (a peer that predates CREDIT) gets no flow control: its
//! stream is then bounded by the socket only (nothing more is produced while earlier items
//! wait to be written). A server's stream lifetime
//! ([`ServerBuilder::stream_lifetime`](crate::ServerBuilder::stream_lifetime)) ends streams
//! whose caller stopped reading. Over the Pyro5 dialect the same handlers serve remote
//! iterators (flag ITEMSTREAMRESULT): one item per `Pyro.Daemon.get_next_stream_item`,
//! dropped by `close_stream`, or kept after the connection for the linger time.
//!
//! **Resumable streams** (SPEC §6.14, Pyro's `ITER_STREAM_LINGER`). While a server's
//! [`stream_linger`](crate::ServerBuilder::stream_linger) is on (30 s by default), a stream
//! called with a window is resumable: the server keeps the items it sent that the caller has
//! not yet acknowledged with credit (at most the window), and when the connection is lost
//! without a CANCEL it pauses the producer instead of dropping it. The caller's
//! [`RemoteStream`] then opens the call again on a new connection, naming the stream and
//! how many items it received, and goes on where it stopped: no item is lost or repeated.
//! After the linger time the producer is dropped and a late resume fails with a
//! (retryable) transport error.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use wirecall_protocol as proto;

use crate::client::RawStream;
use crate::error::{Error, Fault, FaultKind};
use crate::io::Wire;
use crate::CodecId;

/// The stream window a proxy grants by default: items the server may send ahead of the
/// consumer.
pub const DEFAULT_WINDOW: u32 = 256;

/// Encoded items up to this size share blocks of [`ITEM_BLOCK`] bytes.
const SMALL_ITEM: usize = 1024;
/// The size of a block of encoded items.
const ITEM_BLOCK: usize = 64 * 1024;

/// Items sent per hold of the connection's lock (and per write) when the producer has
/// them ready.
const ITEMS_PER_WRITE: u32 = 256;

/// A stream of results a remote method returns: sent to the caller item by item, under
/// flow control. Return it from a `#[remote]` method (`fn numbers(&self) -> ItemStream<u64>`,
/// `async` or not, or inside a `Result`).
///
/// An item that is an error ends the stream: the caller reads it as the stream's last item
/// (an [`Error::Remote`]), and the connection goes on serving other calls.
pub struct ItemStream<T> {
    items: BoxStream<'static, Result<T, Fault>>,
}

impl<T> fmt::Debug for ItemStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ItemStream")
    }
}

impl<T: Send + 'static> ItemStream<T> {
    /// The items of `stream`.
    pub fn new(stream: impl Stream<Item = T> + Send + 'static) -> ItemStream<T> {
        ItemStream {
            items: stream.map(Ok).boxed(),
        }
    }

    /// The items of a fallible `stream`: its first error ends the stream, sent to the
    /// caller as an application error (type name, message and the error's chain).
    pub fn try_new<E>(stream: impl Stream<Item = Result<T, E>> + Send + 'static) -> ItemStream<T>
    where
        E: std::error::Error + 'static,
    {
        ItemStream {
            items: stream
                .map(|r| r.map_err(|e| error_fault(&e)))
                .scan(false, |failed, r| {
                    // Nothing after the first error.
                    let out = (!*failed).then_some(r);
                    *failed = out.as_ref().is_some_and(|r| r.is_err());
                    futures::future::ready(out)
                })
                .boxed(),
        }
    }

    /// The items of an iterator (Pyro's remote iterators), pulled one at a time as credit
    /// allows. The iterator runs on the stream's task: each `next` should be quick.
    pub fn iter<I>(iter: I) -> ItemStream<T>
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        ItemStream::new(futures::stream::iter(iter))
    }

    /// A stream that fails at once with `fault` (no item).
    pub fn fail(fault: Fault) -> ItemStream<T> {
        ItemStream {
            items: futures::stream::once(async move { Err(fault) }).boxed(),
        }
    }
}

fn error_fault<E: std::error::Error + 'static>(e: &E) -> Fault {
    let mut trace = String::new();
    let mut source = e.source();
    while let Some(s) = source {
        if !trace.is_empty() {
            trace.push('\n');
        }
        trace.push_str("caused by: ");
        trace.push_str(&s.to_string());
        source = s.source();
    }
    Fault::application(std::any::type_name::<E>(), e.to_string(), trace)
}

/// A handler's stream with its items encoded in the call's codec: what
/// [`Outcome::Stream`](crate::Outcome::Stream) carries.
pub struct EncodedStream(
    pub(crate) BoxStream<'static, Result<Bytes, Fault>>,
    /// Set on a stream being resumed (SPEC §6.14): its token and what it kept.
    pub(crate) Option<Resumable>,
);

impl fmt::Debug for EncodedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncodedStream")
    }
}

impl EncodedStream {
    /// Encodes the items of `items` with `codec` as they are pulled.
    pub(crate) fn encode<T: Serialize + Send + 'static>(
        codec: CodecId,
        items: ItemStream<T>,
    ) -> EncodedStream {
        let mut blocks = ItemBlocks::default();
        EncodedStream::new(
            items
                .items
                .map(move |r| {
                    blocks.encode(codec, &r?).map_err(|e| {
                        Fault::new(
                            FaultKind::Internal,
                            format!("the server could not encode a stream item with {codec}: {e}"),
                        )
                    })
                })
                .boxed(),
        )
    }

    pub(crate) fn new(items: BoxStream<'static, Result<Bytes, Fault>>) -> EncodedStream {
        EncodedStream(items, None)
    }
}

/// Encodes the items of a stream, in either direction: each into a scratch vector, then,
/// when small, copied into a shared block that many items' bytes are cut from, so that a
/// stream of small items allocates per block, not per item.
#[derive(Default)]
pub(crate) struct ItemBlocks {
    scratch: Vec<u8>,
    block: bytes::BytesMut,
}

impl ItemBlocks {
    /// The encoding of `v` with `codec`.
    pub(crate) fn encode<T: Serialize + ?Sized>(
        &mut self,
        codec: CodecId,
        v: &T,
    ) -> Result<Bytes, wirecall_codecs::CodecError> {
        self.scratch.clear();
        crate::codec::encode_into(codec, v, &mut self.scratch)?;
        if self.scratch.len() > SMALL_ITEM {
            return Ok(Bytes::copy_from_slice(&self.scratch));
        }
        if self.block.capacity() < self.scratch.len() {
            self.block.reserve(ITEM_BLOCK);
        }
        self.block.extend_from_slice(&self.scratch);
        Ok(self.block.split().freeze())
    }
}

// ---------------------------------------------------------------------------------------
// Server: resumable streams (SPEC §6.14)
// ---------------------------------------------------------------------------------------

/// A token naming a resumable stream: 16 bytes nobody outside this process can guess
/// (SipHash under the process's random keys, of a counter and the clock).
pub(crate) fn new_token() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut out = [0u8; 16];
    for (i, part) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_u64(t);
        h.write_usize(i);
        part.copy_from_slice(&h.finish().to_be_bytes());
    }
    out
}

/// What a resumable stream carries besides its producer: its token and the items it sent
/// that the caller may not have received.
pub(crate) struct Resumable {
    pub(crate) token: [u8; 16],
    pub(crate) replay: proto::Replay<Bytes>,
}

/// A stream whose connection was lost, kept for its caller to resume.
struct Parked {
    items: BoxStream<'static, Result<Bytes, Fault>>,
    codec: CodecId,
    replay: proto::Replay<Bytes>,
    /// Tells this parking from a later one of the same token (the timer's check).
    generation: u64,
    timer: AbortHandle,
}

/// The streams a server keeps after their connection was lost (its `stream_linger`), by
/// token.
pub(crate) struct Lingering {
    linger: std::time::Duration,
    map: Mutex<HashMap<[u8; 16], Parked>>,
    generation: std::sync::atomic::AtomicU64,
    /// The server finalized: nothing is kept any more.
    closed: std::sync::atomic::AtomicBool,
    /// The resumable streams being pumped now, by token: a resume that comes before their
    /// connection was seen lost takes them over.
    active: Mutex<HashMap<[u8; 16], Arc<Handover>>>,
    /// Pyro5 remote iterators whose connection ended, by stream id: a Pyro5 proxy that
    /// reconnects goes on with `get_next_stream_item`.
    pyro: Mutex<HashMap<String, (CodecId, EncodedStream, u64, AbortHandle)>>,
}

/// Asks a pump to give its stream up for a resume on another connection.
pub(crate) struct Handover {
    wake: Arc<Notify>,
    asked: std::sync::atomic::AtomicBool,
}

/// Unregisters a pump's stream from the active ones when the pump ends.
struct ActiveGuard {
    lingering: Arc<Lingering>,
    token: [u8; 16],
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.lingering.active().remove(&self.token);
    }
}

impl Lingering {
    pub(crate) fn new(linger: std::time::Duration) -> Arc<Lingering> {
        Arc::new(Lingering {
            linger,
            map: Mutex::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
            closed: std::sync::atomic::AtomicBool::new(false),
            active: Mutex::new(HashMap::new()),
            pyro: Mutex::new(HashMap::new()),
        })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 16], Parked>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 16], Arc<Handover>>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers the pump of stream `token`, woken by `wake`; unregistered when the guard
    /// drops.
    fn activate(
        self: &Arc<Self>,
        token: [u8; 16],
        wake: Arc<Notify>,
    ) -> (ActiveGuard, Arc<Handover>) {
        let h = Arc::new(Handover {
            wake,
            asked: std::sync::atomic::AtomicBool::new(false),
        });
        self.active().insert(token, h.clone());
        (
            ActiveGuard {
                lingering: self.clone(),
                token,
            },
            h,
        )
    }

    /// Takes stream `token` out to resume it: a kept one at once; one still pumped on a
    /// connection not yet seen lost is asked to give itself up, and waited for (briefly).
    async fn take_over(&self, token: &[u8; 16]) -> Option<Parked> {
        for _ in 0..200 {
            if let Some(p) = self.take(token) {
                return Some(p);
            }
            let active = self.active().get(token).cloned();
            let h = active?;
            h.asked.store(true, std::sync::atomic::Ordering::Release);
            h.wake.notify_one();
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        None
    }

    /// Keeps a stream for the linger time; then its producer is dropped.
    fn park(
        self: &Arc<Self>,
        token: [u8; 16],
        items: BoxStream<'static, Result<Bytes, Fault>>,
        codec: CodecId,
        replay: proto::Replay<Bytes>,
    ) {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let (generation, timer) = self.linger_timer(move |me, generation| {
            let mut m = me.map();
            if m.get(&token).is_some_and(|p| p.generation == generation) {
                let gone = m.remove(&token);
                drop(m);
                drop(gone);
                tracing::debug!("a stream's linger time passed: its producer is dropped");
            }
        });
        let old = self.map().insert(
            token,
            Parked {
                items,
                codec,
                replay,
                generation,
                timer,
            },
        );
        if let Some(old) = old {
            old.timer.abort();
        }
    }

    /// Takes the stream `token` out to resume it.
    fn take(&self, token: &[u8; 16]) -> Option<Parked> {
        let p = self.map().remove(token)?;
        p.timer.abort();
        Some(p)
    }

    /// How many streams are kept now (Pyro5 remote iterators included).
    pub(crate) fn len(&self) -> usize {
        self.map().len() + self.pyro_map().len()
    }

    #[allow(clippy::type_complexity)]
    fn pyro_map(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (CodecId, EncodedStream, u64, AbortHandle)>>
    {
        self.pyro.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a Pyro5 remote iterator whose connection ended for the linger time.
    pub(crate) fn park_pyro(self: &Arc<Self>, id: String, codec: CodecId, items: EncodedStream) {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let key = id.clone();
        let (generation, timer) = self.linger_timer(move |me, generation| {
            let mut m = me.pyro_map();
            if m.get(&key).is_some_and(|p| p.2 == generation) {
                let gone = m.remove(&key);
                drop(m);
                drop(gone);
            }
        });
        self.pyro_map()
            .insert(id, (codec, items, generation, timer));
    }

    /// A new parking's generation, and its timer: after the linger time `expire` runs with
    /// them (it drops what was parked, if it is still that parking).
    fn linger_timer(
        self: &Arc<Self>,
        expire: impl FnOnce(&Lingering, u64) + Send + 'static,
    ) -> (u64, AbortHandle) {
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let me = Arc::downgrade(self);
        let linger = self.linger;
        let timer = tokio::spawn(async move {
            tokio::time::sleep(linger).await;
            if let Some(me) = me.upgrade() {
                expire(&me, generation);
            }
        });
        (generation, timer.abort_handle())
    }

    /// Takes a kept Pyro5 remote iterator out for a connection that reads it again.
    pub(crate) fn take_pyro(&self, id: &str) -> Option<(CodecId, EncodedStream)> {
        let (codec, items, _, timer) = self.pyro_map().remove(id)?;
        timer.abort();
        Some((codec, items))
    }

    /// The server finalizes: every kept stream is dropped.
    pub(crate) fn clear(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        let all: Vec<Parked> = self.map().drain().map(|(_, p)| p).collect();
        for p in all {
            p.timer.abort();
        }
        let pyro: Vec<_> = self.pyro_map().drain().map(|(_, p)| p).collect();
        for p in pyro {
            p.3.abort();
        }
    }
}

/// Answers a CALL that resumes a stream (`wc.resume`, SPEC §6.14) on this connection: the
/// stream's REPLY again, what the caller did not receive, then the rest.
pub(crate) fn resume_call(
    wire: &Arc<Wire<proto::ServerConnection>>,
    annotations: &proto::Annotations,
    request_id: u64,
    token: [u8; 16],
    received: u64,
    sink: crate::context::ReplySink,
) {
    use crate::context::Flush;
    let refuse = |sink: crate::context::ReplySink, message: String, flush| {
        sink.answer(
            crate::Outcome::Fault(Fault::new(FaultKind::Cancelled, message)),
            flush,
        )
    };
    let Some(lingering) = wire.streams.lingering().cloned() else {
        return refuse(
            sink,
            "the stream cannot be resumed: this server keeps no streams after a lost connection (its stream_linger is off); call the method again".into(),
            Flush::Deferred,
        );
    };
    let Some(window) = annotations.window() else {
        return sink.answer(
            crate::Outcome::Fault(Fault::new(
                FaultKind::BadArguments,
                "a call that resumes a stream needs a window (wc.window)",
            )),
            Flush::Deferred,
        );
    };
    // Off the reader: a stream whose old connection is not yet seen lost is waited for.
    tokio::spawn(async move {
        let Some(mut parked) = lingering.take_over(&token).await else {
            return refuse(
                sink,
                format!(
                    "the stream cannot be resumed: this server does not hold it (its linger time of {:?} passed, or it ended); call the method again",
                    lingering.linger
                ),
                Flush::Now,
            );
        };
        if let Err(gap) = parked.replay.resume(received, window) {
            return refuse(
                sink,
                format!("the stream cannot be resumed: {gap}"),
                Flush::Now,
            );
        }
        tracing::debug!(
            request_id,
            received,
            resend = parked.replay.resend_left(),
            "stream resumed"
        );
        let items = EncodedStream(
            parked.items,
            Some(Resumable {
                token,
                replay: parked.replay,
            }),
        );
        // Items keep the codec they were encoded in.
        crate::context::ReplySink {
            codec: parked.codec,
            ..sink
        }
        .answer(crate::Outcome::Stream(items), Flush::Now);
    });
}

// ---------------------------------------------------------------------------------------
// Server: one pump task per streamed call
// ---------------------------------------------------------------------------------------

/// The streams of one native server connection being pumped, by request id: the reader
/// wakes a stream's pump when the caller grants credit, and aborts it (dropping the
/// handler's stream) when the call is cancelled or expires, or the connection ends; a
/// resumable stream's pump is woken instead when the connection ends, and parks the stream
/// for its caller to resume (SPEC §6.14).
#[derive(Default)]
pub(crate) struct StreamTable {
    map: Mutex<HashMap<u64, Pumped, rustc_hash::FxBuildHasher>>,
    /// The server's kept streams, when it keeps them (`stream_linger`).
    lingering: std::sync::OnceLock<Arc<Lingering>>,
}

struct Pumped {
    task: AbortHandle,
    wake: Arc<Notify>,
    resumable: bool,
}

impl StreamTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pumped, rustc_hash::FxBuildHasher>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes this connection's streams resumable, kept in `lingering`.
    pub(crate) fn set_lingering(&self, lingering: Arc<Lingering>) {
        let _ = self.lingering.set(lingering);
    }

    /// The server's kept streams, when it keeps them.
    pub(crate) fn lingering(&self) -> Option<&Arc<Lingering>> {
        self.lingering.get()
    }

    /// Starts pumping `items` as the stream of call `id` (its streamed REPLY is sent).
    pub(crate) fn start(
        self: &Arc<Self>,
        wire: Arc<Wire<proto::ServerConnection>>,
        id: u64,
        codec: CodecId,
        items: BoxStream<'static, Result<Bytes, Fault>>,
        resumable: Option<Resumable>,
    ) {
        let wake = Arc::new(Notify::new());
        let table = self.clone();
        let is_resumable = resumable.is_some();
        let mut m = self.lock();
        // Inserted before the task can run and remove itself.
        let task = tokio::spawn(pump(wire, id, codec, items, resumable, wake.clone(), table));
        m.insert(
            id,
            Pumped {
                task: task.abort_handle(),
                wake,
                resumable: is_resumable,
            },
        );
    }

    /// The caller granted credit for call `id`.
    pub(crate) fn credit(&self, id: u64) {
        if let Some(p) = self.lock().get(&id) {
            p.wake.notify_one();
        }
    }

    /// Call `id` ended on the wire (cancelled, expired): its producer is dropped.
    pub(crate) fn stop(&self, id: u64) {
        if let Some(p) = self.lock().remove(&id) {
            p.task.abort();
        }
    }

    /// The connection ended: every producer is dropped, except those of resumable streams,
    /// whose pumps park them.
    pub(crate) fn stop_all(&self) {
        for (_, p) in self.lock().drain() {
            if p.resumable {
                p.wake.notify_one();
            } else {
                p.task.abort();
            }
        }
    }

    fn done(&self, id: u64) {
        self.lock().remove(&id);
    }
}

/// What the pump does with a resumable stream whose connection is gone: keeps it for the
/// linger time (the items it took from the producer and could not send count as sent,
/// and are sent again on resume).
fn park(
    wire: &Wire<proto::ServerConnection>,
    items: BoxStream<'static, Result<Bytes, Fault>>,
    codec: CodecId,
    resumable: Option<Resumable>,
) {
    if let (Some(r), Some(l)) = (resumable, wire.streams.lingering()) {
        tracing::debug!(
            held = r.replay.held(),
            "a stream's connection was lost: it is kept for its caller to resume"
        );
        l.park(r.token, items, codec, r.replay);
    }
}

/// Sends the items of `items` as the stream of call `id`, while the caller's credit lasts.
async fn pump(
    wire: Arc<Wire<proto::ServerConnection>>,
    id: u64,
    codec: CodecId,
    mut items: BoxStream<'static, Result<Bytes, Fault>>,
    mut resumable: Option<Resumable>,
    credit: Arc<Notify>,
    table: Arc<StreamTable>,
) {
    let request_id = proto::RequestId(id);
    let mut batch: Vec<Option<Result<Bytes, Fault>>> = Vec::new();
    // A resumable stream can be taken over by a resume on another connection.
    let active = match (&resumable, wire.streams.lingering()) {
        (Some(r), Some(l)) => Some(l.activate(r.token, credit.clone())),
        _ => None,
    };
    loop {
        // Wait for credit; stop when the call is no longer in flight.
        let left = loop {
            let (n, unsent) = {
                let mut s = wire.lock();
                if s.is_shut() {
                    table.done(id);
                    return park(&wire, items, codec, resumable);
                }
                if active
                    .as_ref()
                    .is_some_and(|(_, h)| h.asked.load(std::sync::atomic::Ordering::Acquire))
                {
                    // Resumed on another connection (this one was lost, not yet seen so):
                    // this call ends here, and the stream goes to the resume.
                    let _ = s.side.error(proto::ErrorFrame {
                        request_id,
                        codec: proto::CodecId::NONE,
                        annotations: proto::Annotations::new(),
                        body: proto::ErrorBody::new(
                            proto::ErrorCode::CANCELLED,
                            "the stream was resumed on another connection",
                        ),
                    });
                    wire.flush_locked(s);
                    table.done(id);
                    return park(&wire, items, codec, resumable);
                }
                let n = s.side.credit(request_id);
                if let (Some(r), Some(k)) = (resumable.as_mut(), n) {
                    // What the caller took is no longer kept.
                    r.replay.credit(k);
                }
                (n, s.side.has_transmit())
            };
            match n {
                None => return table.done(id),
                Some(0) => credit.notified().await,
                // No window (a caller that predates CREDIT): the socket is the only bound,
                // so nothing more is produced until what was queued is written.
                Some(u32::MAX) if unsent => {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await
                }
                Some(n) => break n,
            }
        };
        batch.clear();
        let mut resent = false;
        if let Some(r) = resumable.as_mut().filter(|r| r.replay.resend_left() > 0) {
            // After a resume: what the caller did not receive goes first.
            while (batch.len() as u32) < left.min(ITEMS_PER_WRITE) {
                match r.replay.next_resend() {
                    Some(item) => batch.push(Some(Ok(item))),
                    None => break,
                }
            }
            resent = true;
        }
        let mut end = false;
        if !resent {
            // The next item, then whatever else is ready within the credit, without the
            // lock. A resumable stream also watches for its connection's end meanwhile,
            // so that a producer with nothing to say is parked, not left behind.
            let first = if resumable.is_some() {
                tokio::select! {
                    item = items.next() => item,
                    _ = credit.notified() => continue,
                }
            } else {
                items.next().await
            };
            end = !matches!(first, Some(Ok(_)));
            batch.push(first);
            while !end && (batch.len() as u32) < left.min(ITEMS_PER_WRITE) {
                match items.next().now_or_never() {
                    None => break,
                    Some(next) => {
                        end = !matches!(next, Some(Ok(_)));
                        batch.push(next);
                    }
                }
            }
        }
        let replay = resumable.as_mut().map(|r| (&mut r.replay, !resent));
        if send_batch(&wire, request_id, codec, &mut batch, &mut end, replay) {
            table.done(id);
            return park(&wire, items, codec, resumable);
        }
        if end {
            return table.done(id);
        }
        // A producer always ready and a consumer always granting would keep this task
        // running: it yields now and then like any task that does IO.
        tokio::task::consume_budget().await;
    }
}

/// Sends a batch of items (an error or `None` ends the stream and sets `end`); true when
/// the connection is gone. `replay`: a resumable stream's kept items, and whether the
/// batch's items are new (to keep) rather than sent again; new items that could not be
/// sent because the connection is gone are kept too.
fn send_batch(
    wire: &Wire<proto::ServerConnection>,
    request_id: proto::RequestId,
    codec: CodecId,
    batch: &mut Vec<Option<Result<Bytes, Fault>>>,
    end: &mut bool,
    mut replay: Option<(&mut proto::Replay<Bytes>, bool)>,
) -> bool {
    let id = request_id.0;
    let now = crate::io::now();
    let mut s = wire.lock();
    if s.is_shut() {
        if let Some((r, true)) = replay.as_mut() {
            for item in batch.drain(..) {
                if let Some(Ok(item)) = item {
                    r.sent(item);
                }
            }
        }
        return true;
    }
    {
        for item in batch.drain(..) {
            let sent = match item {
                Some(Ok(item)) => {
                    let sent = s.side.stream_item_plain(request_id, codec, &item, now);
                    if let Some((r, true)) = replay.as_mut() {
                        r.sent(item);
                    }
                    sent
                }
                Some(Err(fault)) => s.side.error(proto::ErrorFrame {
                    request_id,
                    codec: proto::CodecId::NONE,
                    annotations: proto::Annotations::new(),
                    body: fault.into_body(),
                }),
                None => s.side.stream_end(request_id),
            };
            match sent {
                Ok(()) => {}
                Err(e @ proto::ProtocolError::TooLong { .. }) => {
                    let _ = s.side.error(proto::ErrorFrame {
                        request_id,
                        codec: proto::CodecId::NONE,
                        annotations: proto::Annotations::new(),
                        body: proto::ErrorBody::new(
                            proto::ErrorCode::LIMIT_EXCEEDED,
                            format!("the server cannot send a stream item: {e}"),
                        ),
                    });
                    *end = true;
                    break;
                }
                // Cancelled, expired or closed meanwhile: nobody wants the rest.
                Err(e) => {
                    tracing::debug!(request_id = id, error = %e, "stream stopped");
                    *end = true;
                    break;
                }
            }
        }
        if s.side.has_events() {
            // The stream's end may drain a closing connection: its reader closes it.
            wire.wake_reader();
        }
    }
    if s.side.credit(request_id) == Some(0) {
        // The window is used up: the stream's lifetime may start, a timer for the reader.
        wire.wake_reader();
    }
    wire.flush_locked(s);
    false
}

// ---------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------

/// The items of a streamed result, as the caller reads them: a
/// [`Stream`](futures::Stream) of `Result<T, Error>`. The server sends at most the window
/// ahead of what was read; reading grants it more. An error item (the handler's stream
/// failed, or the connection was lost and the stream could not be resumed) is the last
/// item. A lost connection is survived when the server keeps the stream (its
/// `stream_linger`): the stream is resumed on a new connection of the same proxy, where it
/// stopped. Dropping it before the end cancels the call: the server drops the handler's
/// stream.
pub struct RemoteStream<T> {
    raw: RawStream,
    _item: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for RemoteStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RemoteStream")
    }
}

impl<T> RemoteStream<T> {
    pub(crate) fn new(raw: RawStream) -> RemoteStream<T> {
        RemoteStream {
            raw,
            _item: PhantomData,
        }
    }
}

impl<T: DeserializeOwned> Stream for RemoteStream<T> {
    type Item = Result<T, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.raw.poll_item(cx).map(|o| {
            o.map(|r| {
                r.and_then(|(codec, item)| {
                    let limits = wirecall_codecs::Limits::default().with_max_input(usize::MAX);
                    crate::codec::decode::<T>(codec, &item, &limits).map_err(|e| Error::Codec {
                        message: format!("decoding a stream item with {codec}: {e}"),
                    })
                })
            })
        })
    }
}
