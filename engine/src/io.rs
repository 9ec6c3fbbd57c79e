//! The connection writer shared by both sides: frames are appended to one buffer; whoever
//! finds the socket idle writes the whole buffer at once without waiting (a non-blocking
//! attempt), and one writer task per connection finishes any write the socket could not take
//! at once. So a lone small call costs no task hop, and under load every frame queued while
//! a write is in progress goes out in the next single write (coalescing).
//!
//! Inline attempts never await, so a caller whose future is dropped can never leave half a
//! frame on the wire.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use wirecall_protocol as proto;
use wirecall_transport::WriteHalf;

/// Above this many buffered bytes, senders stop trying inline and leave it to the task.
const INLINE_MAX: usize = 256 * 1024;

struct State {
    /// The socket, absent while the writer task is writing.
    wr: Option<WriteHalf>,
    /// Encoded frames not yet written.
    buf: BytesMut,
    /// The writer task owns the socket and will drain `buf`.
    active: bool,
    /// No more frames: flush and shut the socket down.
    closing: bool,
    /// The socket failed or was shut down.
    closed: bool,
}

/// Something that encodes as frame bytes: an owned [`proto::Frame`] or a borrowed
/// [`proto::CallRef`].
pub(crate) trait Encode {
    /// Appends the frame's bytes, or nothing on error.
    fn encode_to(&self, dst: &mut BytesMut) -> Result<(), proto::ProtocolError>;
}

impl Encode for proto::Frame {
    fn encode_to(&self, dst: &mut BytesMut) -> Result<(), proto::ProtocolError> {
        self.encode(dst)
    }
}

impl Encode for proto::CallRef<'_> {
    fn encode_to(&self, dst: &mut BytesMut) -> Result<(), proto::ProtocolError> {
        self.encode(dst)
    }
}

/// One connection's write side.
pub(crate) struct SharedWriter {
    state: Mutex<State>,
    wake: Notify,
    /// Set with `closed` or `closing`, read without the lock.
    shut: AtomicBool,
}

/// Why a frame was not queued.
#[derive(Debug)]
pub(crate) enum NotSent {
    /// The connection is closed.
    Closed,
    /// The frame cannot be encoded (a section too long, a bad method name).
    Bad(proto::ProtocolError),
}

/// For frames nobody waits on (replies, GOAWAY): a closed connection is fine, a frame that
/// cannot be encoded is logged and dropped.
pub(crate) fn sent_or_log(r: Result<(), NotSent>) {
    if let Err(NotSent::Bad(e)) = r {
        tracing::warn!("dropping a frame that cannot be encoded: {e}");
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SharedWriter {
    /// Wraps the write half and starts its writer task.
    pub(crate) fn start(wr: WriteHalf) -> Arc<SharedWriter> {
        let w = Arc::new(SharedWriter {
            state: Mutex::new(State {
                wr: Some(wr),
                buf: BytesMut::with_capacity(16 * 1024),
                active: false,
                closing: false,
                closed: false,
            }),
            wake: Notify::new(),
            shut: AtomicBool::new(false),
        });
        tokio::spawn(writer_task(w.clone()));
        w
    }

    /// Whether the connection's write side is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.shut.load(Ordering::Acquire)
    }

    fn mark_shut(&self) {
        self.shut.store(true, Ordering::Release);
    }

    /// Queues a frame without writing it yet; call [`SharedWriter::flush`] after a batch.
    pub(crate) fn push(&self, frame: &impl Encode) -> Result<(), NotSent> {
        let mut s = lock(&self.state);
        if s.closed || s.closing {
            return Err(NotSent::Closed);
        }
        frame.encode_to(&mut s.buf).map_err(NotSent::Bad)
    }

    /// Queues a frame and writes what is queued if the socket is idle.
    pub(crate) fn send(&self, frame: &impl Encode) -> Result<(), NotSent> {
        self.push(frame)?;
        self.flush();
        Ok(())
    }

    /// Queues a frame for the writer task, so frames queued by busy neighbours coalesce into
    /// one write; used when other calls are in flight.
    pub(crate) fn send_batched(&self, frame: &impl Encode) -> Result<(), NotSent> {
        let mut s = lock(&self.state);
        if s.closed || s.closing {
            return Err(NotSent::Closed);
        }
        frame.encode_to(&mut s.buf).map_err(NotSent::Bad)?;
        if !s.active {
            s.active = true;
            drop(s);
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Writes what is queued: inline if the socket takes it at once, else by the task.
    pub(crate) fn flush(&self) {
        let mut s = lock(&self.state);
        if s.active || s.closed || s.buf.is_empty() {
            return;
        }
        if s.buf.len() <= INLINE_MAX {
            let st = &mut *s;
            if let Some(wr) = st.wr.as_mut() {
                let waker = futures::task::noop_waker();
                let mut cx = Context::from_waker(&waker);
                while !st.buf.is_empty() {
                    match Pin::new(&mut *wr).poll_write(&mut cx, &st.buf) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                            st.closed = true;
                            self.mark_shut();
                            st.buf.clear();
                            drop(s);
                            self.wake.notify_one();
                            return;
                        }
                        Poll::Ready(Ok(n)) => st.buf.advance(n),
                        Poll::Pending => break,
                    }
                }
            }
            if s.buf.is_empty() {
                return;
            }
        }
        s.active = true;
        drop(s);
        self.wake.notify_one();
    }

    /// Flushes what is queued, then shuts the write side down.
    pub(crate) fn close(&self) {
        let mut s = lock(&self.state);
        s.closing = true;
        self.mark_shut();
        s.active = true;
        drop(s);
        self.wake.notify_one();
    }
}

/// A written buffer larger than this is not kept for reuse.
const SPARE_MAX: usize = 1024 * 1024;

async fn writer_task(w: Arc<SharedWriter>) {
    // Two buffers take turns: frames queue into one while the other is written, then they
    // swap, so neither is reallocated or shared.
    let mut spare = BytesMut::with_capacity(16 * 1024);
    loop {
        // Take the socket and the queued bytes when there is work.
        let (mut wr, mut data, closing) = loop {
            let notified = w.wake.notified();
            {
                let mut s = lock(&w.state);
                if s.closed && !s.closing {
                    return;
                }
                if s.active {
                    match s.wr.take() {
                        Some(wr) => {
                            std::mem::swap(&mut s.buf, &mut spare);
                            break (wr, std::mem::take(&mut spare), s.closing);
                        }
                        None => return,
                    }
                }
            }
            notified.await;
            // Let the tasks that are ready now queue their frames too before writing, so one
            // write carries them all (the scheduler runs a yielded task after its ready ones).
            tokio::task::yield_now().await;
        };
        let ok = data.is_empty() || wr.write_all(&data).await.is_ok();
        if data.capacity() <= SPARE_MAX {
            data.clear();
            spare = data;
        } else {
            spare = BytesMut::with_capacity(16 * 1024);
        }
        let shut_down = {
            let mut s = lock(&w.state);
            if !ok {
                s.closed = true;
                w.mark_shut();
                s.buf.clear();
                return;
            }
            if s.buf.is_empty() && (closing || s.closing) {
                s.closed = true;
                w.mark_shut();
                true
            } else {
                // Either idle again, or more frames arrived while writing and `active`
                // stays set so the loop goes round again.
                if s.buf.is_empty() {
                    s.active = false;
                }
                s.wr = Some(wr);
                continue;
            }
        };
        if shut_down {
            let _ = wr.flush().await;
            let _ = wr.shutdown().await;
            return;
        }
    }
}

/// Encodes frames and writes them in one go (handshake frames, before the writer runs).
pub(crate) async fn write_frames(
    wr: &mut WriteHalf,
    frames: &[proto::Frame],
) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    for f in frames {
        f.encode(&mut buf)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    }
    wr.write_all(&buf).await?;
    wr.flush().await
}
