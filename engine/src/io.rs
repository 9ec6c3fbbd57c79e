//! The connection's shared state, used by both sides: the protocol state machine and the
//! write side of the socket under one lock. The machine's transmit buffer *is* the write
//! buffer: a caller or handler works on the machine (start a call, answer one), and whoever
//! then finds the socket idle writes the queued bytes at once without waiting (a
//! non-blocking attempt); one writer task per connection finishes any write the socket
//! could not take at once. So a lone small call costs no task hop, and under load every
//! frame queued while a write is in progress goes out in the next single write
//! (coalescing).
//!
//! Inline attempts never await, so a caller whose future is dropped can never leave half a
//! frame on the wire. Every wire rule lives in the machine (`wirecall_protocol`); this file
//! only moves its bytes.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use wirecall_protocol as proto;
use wirecall_transport::WriteHalf;

/// Above this many queued bytes, senders stop trying inline and leave it to the task.
const INLINE_MAX: usize = 256 * 1024;

/// A protocol state machine whose transmit buffer the writer drains.
pub(crate) trait Machine: Send + 'static {
    /// Bytes are queued to send.
    fn has_transmit(&self) -> bool;
    /// The queued bytes, contiguous.
    fn transmit_buf(&mut self) -> &[u8];
    /// Drops `n` written bytes from the front.
    fn advance_transmit(&mut self, n: usize);
    /// Moves every queued byte into `dst` (swapping buffers when `dst` is empty).
    fn take_transmit(&mut self, dst: &mut BytesMut);
    /// Some queued bytes wait as shared chunks (large attachments), which the two methods
    /// above would copy.
    fn has_transmit_chunks(&self) -> bool;
    /// The next queued chunk, as it is (shared, not copied).
    fn poll_transmit(&mut self) -> Option<Bytes>;
}

macro_rules! machine {
    ($t:ty) => {
        impl Machine for $t {
            fn has_transmit(&self) -> bool {
                <$t>::has_transmit(self)
            }
            fn transmit_buf(&mut self) -> &[u8] {
                <$t>::transmit_buf(self)
            }
            fn advance_transmit(&mut self, n: usize) {
                <$t>::advance_transmit(self, n)
            }
            fn take_transmit(&mut self, dst: &mut BytesMut) {
                <$t>::take_transmit(self, dst)
            }
            fn has_transmit_chunks(&self) -> bool {
                <$t>::has_transmit_chunks(self)
            }
            fn poll_transmit(&mut self) -> Option<Bytes> {
                <$t>::poll_transmit(self)
            }
        }
    };
}
machine!(proto::ServerConnection);
machine!(proto::ClientConnection);

/// What the lock guards: the machine (with whatever the side keeps beside it) and the
/// socket's write half.
pub(crate) struct State<M> {
    /// The state machine and the side's own per-connection state.
    pub(crate) side: M,
    /// The socket, absent while the writer task is writing.
    wr: Option<WriteHalf>,
    /// The writer task owns the socket and will drain the transmit buffer.
    active: bool,
    /// No more frames: flush and shut the socket down.
    closing: bool,
    /// The socket failed or was shut down.
    closed: bool,
}

impl<M> State<M> {
    /// Whether the write side is gone or going.
    pub(crate) fn is_shut(&self) -> bool {
        self.closed || self.closing
    }

    /// Whether the writer task owns the socket (a write the socket could not take at once
    /// is being finished): it takes the lock again when done.
    pub(crate) fn is_writing(&self) -> bool {
        self.active
    }
}

/// Gives the writer the machine inside a side's state.
pub(crate) trait HasMachine: Send + 'static {
    /// The machine.
    type M: Machine;
    /// The machine, mutably.
    fn machine(&mut self) -> &mut Self::M;
}

/// One connection's machine and write side, shared by its reader, its callers or handlers,
/// and its writer task.
pub(crate) struct Wire<S> {
    state: Mutex<State<S>>,
    wake: Notify,
    /// Wakes the connection's reader when the machine has events for it that did not come
    /// from input (a `Drained` after the last answer, a shutdown): the reader's waker and a
    /// flag, cheaper to wait on in every read than a `Notify` (no lock).
    reader: futures::task::AtomicWaker,
    reader_flag: AtomicBool,
    /// Set with `closed` or `closing`, read without the lock.
    shut: AtomicBool,
    /// The streamed results a server connection is pumping (unused by clients): here
    /// rather than in every call's answer path, which reaches it through the wire.
    pub(crate) streams: Arc<crate::stream::StreamTable>,
    /// The argument streams of a server connection's calls (unused by clients).
    pub(crate) uploads: Arc<crate::upload::UploadTable>,
}

impl<S: HasMachine> Wire<S> {
    /// Wraps the side's state and the write half, and starts the writer task.
    pub(crate) fn start(side: S, wr: WriteHalf) -> Arc<Wire<S>> {
        let w = Arc::new(Wire {
            state: Mutex::new(State {
                side,
                wr: Some(wr),
                active: false,
                closing: false,
                closed: false,
            }),
            wake: Notify::new(),
            reader: futures::task::AtomicWaker::new(),
            reader_flag: AtomicBool::new(false),
            shut: AtomicBool::new(false),
            streams: Arc::default(),
            uploads: Arc::default(),
        });
        tokio::spawn(writer_task(w.clone()));
        w
    }

    /// Locks the state. Write what the work queued with [`Wire::flush_locked`] (or leave it
    /// for a later flush).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State<S>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the reader to look at the machine's events.
    pub(crate) fn wake_reader(&self) {
        self.reader_flag.store(true, Ordering::Release);
        self.reader.wake();
    }

    /// Resolves when [`Wire::wake_reader`] was called (now or since the last time).
    pub(crate) fn reader_woken(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.reader_flag.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            self.reader.register(cx.waker());
            // Set between the check and the registration: seen now.
            if self.reader_flag.swap(false, Ordering::AcqRel) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    /// Whether the connection's write side is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.shut.load(Ordering::Acquire)
    }

    fn mark_shut(&self) {
        self.shut.store(true, Ordering::Release);
    }

    /// Writes what is queued: inline if the socket takes it at once, else by the task.
    /// Releases the lock.
    pub(crate) fn flush_locked(&self, mut s: MutexGuard<'_, State<S>>) {
        if s.active || s.closed || !s.side.machine().has_transmit() {
            return;
        }
        let st = &mut *s;
        // Large attachments (bulk data) are left to the task, which writes them from where
        // they are instead of copying them into one contiguous buffer.
        if !st.side.machine().has_transmit_chunks()
            && st.side.machine().transmit_buf().len() <= INLINE_MAX
        {
            if let Some(wr) = st.wr.as_mut() {
                let waker = futures::task::noop_waker();
                let mut cx = Context::from_waker(&waker);
                let m = st.side.machine();
                loop {
                    let buf = m.transmit_buf();
                    if buf.is_empty() {
                        // Sockets take the bytes as written; a TLS stream may keep the tail
                        // of its last record until flushed, and then the task must finish.
                        match Pin::new(&mut *wr).poll_flush(&mut cx) {
                            Poll::Ready(Ok(())) => return,
                            Poll::Ready(Err(_)) | Poll::Pending => break,
                        }
                    }
                    match Pin::new(&mut *wr).poll_write(&mut cx, buf) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                            st.closed = true;
                            self.mark_shut();
                            drop(s);
                            self.wake.notify_one();
                            return;
                        }
                        Poll::Ready(Ok(n)) => m.advance_transmit(n),
                        Poll::Pending => break,
                    }
                }
            }
        }
        s.active = true;
        drop(s);
        self.wake.notify_one();
    }

    /// Leaves what is queued to the writer task, so frames queued by busy neighbours
    /// coalesce into one write. Releases the lock.
    pub(crate) fn flush_batched(&self, mut s: MutexGuard<'_, State<S>>) {
        if s.active || s.closed || !s.side.machine().has_transmit() {
            return;
        }
        s.active = true;
        drop(s);
        self.wake.notify_one();
    }

    /// Writes what is queued now if the socket is idle.
    pub(crate) fn flush(&self) {
        self.flush_locked(self.lock());
    }

    /// Flushes what is queued, then shuts the write side down.
    pub(crate) fn close(&self) {
        let mut s = self.lock();
        s.closing = true;
        self.mark_shut();
        s.active = true;
        drop(s);
        self.wake.notify_one();
    }
}

/// A written buffer larger than this is not kept for reuse.
const SPARE_MAX: usize = 1024 * 1024;

async fn writer_task<S: HasMachine>(w: Arc<Wire<S>>) {
    // Two buffers take turns: frames queue into the machine's while this one is written,
    // then they swap, so neither is reallocated or shared.
    // Empty until the first swap: a connection whose writes all go out inline (most) never
    // gives this task a buffer.
    let mut spare = BytesMut::new();
    // Shared chunks (large attachments) taken as they are, written in order before `spare`.
    let mut chunks: Vec<Bytes> = Vec::new();
    loop {
        // Take the socket and the queued bytes when there is work.
        let (mut wr, closing) = loop {
            let notified = w.wake.notified();
            {
                let mut s = w.lock();
                if s.closed && !s.closing {
                    return;
                }
                if s.active {
                    match s.wr.take() {
                        Some(wr) => {
                            let m = s.side.machine();
                            if m.has_transmit_chunks() {
                                // Every queued byte as chunks: the attachments as they
                                // are, the frames around them as the buffer they are in.
                                while let Some(c) = m.poll_transmit() {
                                    chunks.push(c);
                                }
                            } else {
                                m.take_transmit(&mut spare);
                            }
                            break (wr, s.closing);
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
        let mut ok = true;
        for c in chunks.drain(..) {
            if ok && wr.write_all(&c).await.is_err() {
                ok = false;
            }
        }
        let ok = ok
            && (spare.is_empty() || wr.write_all(&spare).await.is_ok())
            // A no-op on sockets; sends what a TLS stream still holds.
            && wr.flush().await.is_ok();
        if spare.capacity() <= SPARE_MAX {
            spare.clear();
        } else {
            spare = BytesMut::new();
        }
        let shut_down = {
            let mut s = w.lock();
            if !ok {
                s.closed = true;
                w.mark_shut();
                return;
            }
            let more = s.side.machine().has_transmit();
            if !more && (closing || s.closing) {
                s.closed = true;
                w.mark_shut();
                true
            } else {
                // Either idle again, or more frames arrived while writing and `active`
                // stays set so the loop goes round again.
                if !more {
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

impl HasMachine for proto::ServerConnection {
    type M = proto::ServerConnection;

    fn machine(&mut self) -> &mut proto::ServerConnection {
        self
    }
}

/// The time the drivers give the state machines: tokio's clock, so that tests with a paused
/// clock drive the machines' timers too.
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}
