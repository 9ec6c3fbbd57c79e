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
//! dropped by `close_stream` or with the connection.

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
pub struct EncodedStream(pub(crate) BoxStream<'static, Result<Bytes, Fault>>);

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
        // Items are encoded into a scratch vector, then copied into a shared block that
        // many items' bytes are cut from: no allocation per item.
        let mut scratch = Vec::new();
        let mut block = bytes::BytesMut::new();
        EncodedStream(
            items
                .items
                .map(move |r| {
                    let v = r?;
                    scratch.clear();
                    crate::codec::encode_into(codec, &v, &mut scratch).map_err(|e| {
                        Fault::new(
                            FaultKind::Internal,
                            format!("the server could not encode a stream item with {codec}: {e}"),
                        )
                    })?;
                    if scratch.len() > SMALL_ITEM {
                        return Ok(Bytes::copy_from_slice(&scratch));
                    }
                    if block.capacity() < scratch.len() {
                        block.reserve(ITEM_BLOCK);
                    }
                    block.extend_from_slice(&scratch);
                    Ok(block.split().freeze())
                })
                .boxed(),
        )
    }
}

// ---------------------------------------------------------------------------------------
// Server: one pump task per streamed call
// ---------------------------------------------------------------------------------------

/// The streams of one native server connection being pumped, by request id: the reader
/// wakes a stream's pump when the caller grants credit, and aborts it (dropping the
/// handler's stream) when the call is cancelled or expires, or the connection ends.
#[derive(Default)]
pub(crate) struct StreamTable {
    map: Mutex<HashMap<u64, (AbortHandle, Arc<Notify>), rustc_hash::FxBuildHasher>>,
}

impl StreamTable {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        HashMap<u64, (AbortHandle, Arc<Notify>), rustc_hash::FxBuildHasher>,
    > {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts pumping `items` as the stream of call `id` (its streamed REPLY is sent).
    pub(crate) fn start(
        self: &Arc<Self>,
        wire: Arc<Wire<proto::ServerConnection>>,
        id: u64,
        codec: CodecId,
        items: EncodedStream,
    ) {
        let credit = Arc::new(Notify::new());
        let table = self.clone();
        let mut m = self.lock();
        // Inserted before the task can run and remove itself.
        let task = tokio::spawn(pump(wire, id, codec, items, credit.clone(), table));
        m.insert(id, (task.abort_handle(), credit));
    }

    /// The caller granted credit for call `id`.
    pub(crate) fn credit(&self, id: u64) {
        if let Some((_, n)) = self.lock().get(&id) {
            n.notify_one();
        }
    }

    /// Call `id` ended on the wire (cancelled, expired): its producer is dropped.
    pub(crate) fn stop(&self, id: u64) {
        if let Some((t, _)) = self.lock().remove(&id) {
            t.abort();
        }
    }

    /// The connection ended: every producer is dropped.
    pub(crate) fn stop_all(&self) {
        for (_, (t, _)) in self.lock().drain() {
            t.abort();
        }
    }

    fn done(&self, id: u64) {
        self.lock().remove(&id);
    }
}

/// Sends the items of `items` as the stream of call `id`, while the caller's credit lasts.
async fn pump(
    wire: Arc<Wire<proto::ServerConnection>>,
    id: u64,
    codec: CodecId,
    mut items: EncodedStream,
    credit: Arc<Notify>,
    table: Arc<StreamTable>,
) {
    let request_id = proto::RequestId(id);
    let mut batch: Vec<Option<Result<Bytes, Fault>>> = Vec::new();
    loop {
        // Wait for credit; stop when the call is no longer in flight.
        let left = loop {
            let (n, unsent) = {
                let s = wire.lock();
                if s.is_shut() {
                    return table.done(id);
                }
                (s.side.credit(request_id), s.side.has_transmit())
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
        // The next item, then whatever else is ready within the credit, without the lock.
        batch.clear();
        let first = items.0.next().await;
        let mut end = !matches!(first, Some(Ok(_)));
        batch.push(first);
        while !end && (batch.len() as u32) < left.min(ITEMS_PER_WRITE) {
            match items.0.next().now_or_never() {
                None => break,
                Some(next) => {
                    end = !matches!(next, Some(Ok(_)));
                    batch.push(next);
                }
            }
        }
        if send_batch(&wire, request_id, codec, &mut batch, &mut end) || end {
            return table.done(id);
        }
        // A producer always ready and a consumer always granting would keep this task
        // running: it yields now and then like any task that does IO.
        tokio::task::consume_budget().await;
    }
}

/// Sends a batch of items (an error or `None` ends the stream and sets `end`); true when
/// the connection is gone.
fn send_batch(
    wire: &Wire<proto::ServerConnection>,
    request_id: proto::RequestId,
    codec: CodecId,
    batch: &mut Vec<Option<Result<Bytes, Fault>>>,
    end: &mut bool,
) -> bool {
    let id = request_id.0;
    let now = crate::io::now();
    let mut s = wire.lock();
    if s.is_shut() {
        return true;
    }
    {
        for item in batch.drain(..) {
            let sent = match item {
                Some(Ok(item)) => s.side.stream_item(
                    proto::StreamItem {
                        request_id,
                        codec,
                        annotations: proto::Annotations::new(),
                        item,
                        attachment: Bytes::new(),
                    },
                    now,
                ),
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
/// failed, or the connection was lost) is the last item. Dropping it before the end
/// cancels the call: the server drops the handler's stream.
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
