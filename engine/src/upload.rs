//! Client → server streams (SPEC §6.13): a handler takes a [`Streaming`] argument, the
//! caller sends its items from a [`Stream`](futures::Stream) or an [`UploadSink`].
//!
//! The wire rules (the flag, the server's window, credit, what a client that ignores its
//! credit gets) are the protocol machines'; this module drives them. On the server the
//! reader queues a call's argument items for its handler, never more than the window (the
//! machine closes a connection whose client sends more), and the handler's [`Streaming`]
//! grants the client credit back as it takes them. On the client a pump task sends the
//! caller's items while the server's credit lasts, and ends the stream when the caller's
//! stream ends; it stops when the call ends (answered, cancelled, connection lost).
//!
//! Together with a streamed result ([`ItemStream`](crate::ItemStream)) a call streams in
//! both directions at once: each direction has its own credit.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures::Stream;
use serde::de::DeserializeOwned;
use wirecall_protocol as proto;

use crate::error::Error;
use crate::io::Wire;
use crate::CodecId;

/// How many argument items a server lets a call send before its handler took them, by
/// default ([`ServerBuilder::upload_window`](crate::ServerBuilder::upload_window)).
pub const DEFAULT_UPLOAD_WINDOW: u32 = 256;

/// The sending end of a call's argument stream built with
/// [`CallBuilder::upload_sink`](crate::CallBuilder::upload_sink): a
/// [`Sink`](futures::Sink) (`SinkExt::send`) that takes items as the server's credit
/// allows. Closing or dropping it ends the stream (the server's [`Streaming`] ends).
pub type UploadSink<T> = futures::channel::mpsc::Sender<T>;

// ---------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------

/// Where a call's argument stream stands, as the handler reads it.
#[derive(Debug)]
enum State {
    /// More items may come.
    Open,
    /// The client sent STREAM_END.
    Ended,
    /// The call or the connection ended first.
    Lost(&'static str),
}

struct Queue {
    items: VecDeque<(CodecId, Bytes)>,
    state: State,
    waker: Option<Waker>,
    /// Bytes of `items`, held against `budget`.
    held: usize,
    budget: Option<Arc<crate::server::conn::Budget>>,
}

impl Drop for Queue {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.give_back(self.held);
        }
    }
}

type Shared = Arc<Mutex<Queue>>;

fn lock(q: &Shared) -> std::sync::MutexGuard<'_, Queue> {
    q.lock().unwrap_or_else(|e| e.into_inner())
}

/// The argument streams of one native server connection, by request id: the reader queues
/// items for their handlers here.
#[derive(Default)]
pub(crate) struct UploadTable {
    map: Mutex<HashMap<u64, Shared, rustc_hash::FxBuildHasher>>,
    /// The server's receive budget, which queued items count against.
    budget: std::sync::OnceLock<Arc<crate::server::conn::Budget>>,
}

impl UploadTable {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Shared, rustc_hash::FxBuildHasher>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes queued items count against the server's receive budget.
    pub(crate) fn set_budget(&self, budget: Arc<crate::server::conn::Budget>) {
        let _ = self.budget.set(budget);
    }

    /// Opens the argument stream of call `id`; the handler reads it through the returned
    /// receiver.
    pub(crate) fn open(
        self: &Arc<Self>,
        wire: Arc<Wire<proto::ServerConnection>>,
        id: u64,
        window: u32,
    ) -> UploadRx {
        let q: Shared = Arc::new(Mutex::new(Queue {
            items: VecDeque::new(),
            state: State::Open,
            waker: None,
            held: 0,
            budget: self.budget.get().cloned(),
        }));
        self.map().insert(id, q.clone());
        UploadRx {
            q,
            wire,
            table: self.clone(),
            id,
            grant_every: (window / 2).max(1),
            taken: 0,
        }
    }

    /// An argument item of call `id` arrived (the machine checked its credit). False when
    /// it does not fit the server's receive budget (the connection must go).
    pub(crate) fn item(&self, id: u64, codec: CodecId, item: Bytes) -> bool {
        let q = self.map().get(&id).cloned();
        if let Some(q) = q {
            let mut q = lock(&q);
            if let Some(b) = &q.budget {
                if !b.try_take(item.len()) {
                    return false;
                }
            }
            q.held += item.len();
            q.items.push_back((codec, item));
            if let Some(w) = q.waker.take() {
                w.wake();
            }
        }
        // No receiver: the handler dropped its stream; the item is dropped too (the call's
        // answer ends the stream, and the machine bounds what the client sends meanwhile).
        true
    }

    /// Call `id`'s argument stream ended (`None`: the client's STREAM_END) or was lost
    /// (the call was cancelled or expired, or the connection ended: `Some(why)`).
    pub(crate) fn end(&self, id: u64, lost: Option<&'static str>) {
        let q = if lost.is_some() {
            self.map().remove(&id)
        } else {
            self.map().get(&id).cloned()
        };
        if let Some(q) = q {
            finish(&q, lost);
        }
    }

    /// The connection ended: every argument stream still open is lost.
    pub(crate) fn end_all(&self) {
        let all: Vec<Shared> = self.map().drain().map(|(_, q)| q).collect();
        for q in all {
            finish(
                &q,
                Some("the caller's connection closed before its argument stream ended"),
            );
        }
    }
}

fn finish(q: &Shared, lost: Option<&'static str>) {
    let mut q = lock(q);
    if matches!(q.state, State::Open) {
        q.state = match lost {
            None => State::Ended,
            Some(why) => State::Lost(why),
        };
    }
    if let Some(w) = q.waker.take() {
        w.wake();
    }
}

/// A handler's end of its call's argument stream, in encoded items; grants the client
/// credit as they are taken.
pub(crate) struct UploadRx {
    q: Shared,
    wire: Arc<Wire<proto::ServerConnection>>,
    table: Arc<UploadTable>,
    id: u64,
    /// Credit is granted back in steps of this many items (half the window, as the
    /// client does for results: a CREDIT per item would cost as much as the items).
    grant_every: u32,
    /// Items taken since the last CREDIT.
    taken: u32,
}

impl fmt::Debug for UploadRx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadRx").field("id", &self.id).finish()
    }
}

impl UploadRx {
    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<(CodecId, Bytes), Error>>> {
        let next = {
            let mut q = lock(&self.q);
            match q.items.pop_front() {
                Some(item) => {
                    q.held -= item.1.len();
                    if let Some(b) = &q.budget {
                        b.give_back(item.1.len());
                    }
                    Some(Ok(item))
                }
                None => match q.state {
                    State::Open => {
                        q.waker = Some(cx.waker().clone());
                        return Poll::Pending;
                    }
                    State::Ended => None,
                    State::Lost(why) => {
                        // Reported once; then the stream is over.
                        q.state = State::Ended;
                        Some(Err(Error::transport("the caller", why)))
                    }
                },
            }
        };
        if let Some(Ok(_)) = next {
            self.taken += 1;
            if self.taken >= self.grant_every {
                let n = std::mem::take(&mut self.taken);
                let mut s = self.wire.lock();
                if !s.is_shut() {
                    // `false`: the call or its stream ended meanwhile; nothing to grant.
                    let _ = s.side.grant(proto::RequestId(self.id), n);
                    self.wire.flush_locked(s);
                }
            }
        }
        Poll::Ready(next)
    }
}

impl Drop for UploadRx {
    fn drop(&mut self) {
        // Items that come later are dropped on arrival.
        self.table.map().remove(&self.id);
    }
}

/// The items of a call's argument stream, as its handler reads them: a
/// [`Stream`](futures::Stream) of `Result<T, Error>`. Take it as a `#[remote]` method's
/// parameter (`async fn sum(&self, items: Streaming<u64>) -> u64`); the caller sends the
/// items with [`CallBuilder::upload`](crate::CallBuilder::upload) (or the generated
/// client's method, which takes a `Stream`).
///
/// The stream ends when the caller's stream ends. Reading grants the caller more credit:
/// at most the server's window
/// ([`ServerBuilder::upload_window`](crate::ServerBuilder::upload_window)) of items is ever
/// held for a call. An item that does not decode as `T` is an error item, and the stream
/// goes on. A handler is stopped when its call is cancelled or its connection closes; a
/// `Streaming` it handed to a task of its own then ends with an [`Error::Transport`]
/// item saying the caller's connection closed. The handler may answer before reading everything:
/// the answer ends the call, and the caller stops sending.
pub struct Streaming<T> {
    rx: Option<UploadRx>,
    limits: wirecall_codecs::Limits,
    _item: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Streaming<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Streaming")
    }
}

impl<T> Streaming<T> {
    pub(crate) fn new(rx: Option<UploadRx>, limits: wirecall_codecs::Limits) -> Streaming<T> {
        Streaming {
            rx,
            limits,
            _item: PhantomData,
        }
    }
}

impl<T: DeserializeOwned> Stream for Streaming<T> {
    type Item = Result<T, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(rx) = this.rx.as_mut() else {
            return Poll::Ready(None);
        };
        let limits = this.limits;
        rx.poll_item(cx).map(|o| {
            o.map(|r| {
                r.and_then(|(codec, item)| {
                    crate::codec::decode::<T>(codec, &item, &limits).map_err(|e| Error::Codec {
                        message: format!("decoding an argument stream item with {codec}: {e}"),
                    })
                })
            })
        })
    }
}

// ---------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------

/// A caller's argument stream, its items encoded as the pump pulls them (in the call's
/// codec, known once the connection is).
pub(crate) type EncodedUpload = futures::stream::BoxStream<'static, Result<Bytes, Error>>;

/// What [`CallBuilder::upload`](crate::CallBuilder::upload) keeps until the call's codec is
/// known.
pub(crate) struct UploadSource(Box<dyn FnOnce(CodecId) -> EncodedUpload + Send>);

impl fmt::Debug for UploadSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UploadSource")
    }
}

impl UploadSource {
    pub(crate) fn new<T, S>(items: S) -> UploadSource
    where
        T: serde::Serialize + Send + 'static,
        S: Stream<Item = T> + Send + 'static,
    {
        use futures::StreamExt;
        UploadSource(Box::new(move |codec| {
            let mut blocks = crate::stream::ItemBlocks::default();
            items
                .map(move |v| {
                    blocks.encode(codec, &v).map_err(|e| Error::Codec {
                        message: format!("encoding an argument stream item with {codec}: {e}"),
                    })
                })
                .boxed()
        }))
    }

    pub(crate) fn encode(self, codec: CodecId) -> EncodedUpload {
        (self.0)(codec)
    }
}
