//! Where a call's answer lands: a slot inside the call's own future, not on the heap.
//!
//! A call registers a waiter (a pointer to its pinned [`Slot`] and the waker of its task) in
//! the connection's [`Waiters`]; whoever reads the reply completes it there (removes the
//! waiter, stores the answer in the slot and marks it filled), all while holding the
//! connection's lock, and wakes the task after releasing it. The call then takes the answer
//! without any lock. [`Waiters`] is the only code that touches a waiter: insert, complete and
//! forget are its methods, so nothing outside this file can break the invariant below.
//!
//! Why not an `Arc` per call or a oneshot channel: with many calls in flight, replies are read
//! on one runtime worker and taken on another. A heap slot is then allocated on one thread and
//! freed on the other (a cross-thread free), its reference count and lock bounce between the
//! cores twice per call, and each of those showed in profiles. The slot here costs no
//! allocation and one atomic flag.
//!
//! Not a oneshot channel for a second reason: the caller that reads the connection often reads
//! its own reply, and completing a oneshot from inside the receiving task wakes that very task
//! (on a multi-thread runtime a task woken while it runs is re-queued, which also wakes an idle
//! worker that may steal it). The reader fills its own slot quietly.
//!
//! # Safety
//!
//! A waiter holds a raw pointer to a slot in some task's future. It is only dereferenced by
//! `Waiter::fill`, which [`Waiters::complete`] and [`Waiters::fail_all`] call on a waiter
//! they have just taken out of the map; every method of [`Waiters`] takes `&mut self`, and
//! the map lives inside the connection's mutex, so a filler always holds the lock. The
//! slot's owner keeps it pinned and alive until either (a) it has removed its waiter with
//! [`Waiters::forget`] (the call's guard does this when the call is cancelled, times out or
//! fails), after which no filler can reach the slot; or (b) it has seen the slot filled,
//! which `fill` marks as its very last access to the slot. So no filler ever touches a slot
//! whose memory is gone. [`Waiters::insert`] is `unsafe`: its caller promises (a) or (b).
//!
//! # Model test
//!
//! Besides the stress test below, a [loom](https://docs.rs/loom) model explores every
//! interleaving of one owner (waiting or giving up) against one filler, and checks each access
//! to the answer for a data race. In test builds with `cfg(wirecall_loom)` (loom is a
//! dev-dependency) the slot's flag and cell are loom's; otherwise they are std's, with nothing
//! in between. Run it with
//!
//! ```text
//! CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg wirecall_loom" \
//!     cargo test -p wirecall --lib --release client::slot
//! ```
//!
//! (`scripts/test.sh` does; the separate target directory keeps the normal build's cache.)
//! The cfg is not loom's usual `loom`: every crate sees a `RUSTFLAGS` cfg, and tokio compiles
//! its `net` module out under `cfg(loom)`, which the transport crate needs.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomPinned;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll, Waker};

#[cfg(all(test, wirecall_loom))]
use loom::{
    cell::UnsafeCell,
    sync::atomic::{AtomicBool, Ordering},
};
#[cfg(not(all(test, wirecall_loom)))]
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(all(test, wirecall_loom)))]
use std_cell::UnsafeCell;

use super::conn::{ConnShared, Resp};
use crate::error::Error;

/// std's `UnsafeCell` with the access API of loom's, so one code path serves both builds.
#[cfg(not(all(test, wirecall_loom)))]
mod std_cell {
    /// A `std::cell::UnsafeCell` reached through a closure, as loom's is.
    #[repr(transparent)]
    pub(super) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(super) const fn new(value: T) -> UnsafeCell<T> {
            UnsafeCell(std::cell::UnsafeCell::new(value))
        }

        /// Calls `f` with a pointer to the value; the caller's unsafe code answers for its use.
        #[inline(always)]
        pub(super) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}

/// The answer a slot holds.
pub(super) type Answer = Result<Resp, Error>;

/// A call's answer, once a reader has stored it. Lives in the call's future; pinned.
pub(super) struct Slot<T = Answer> {
    /// Set, with `Release`, as the filler's last access to the slot.
    filled: AtomicBool,
    /// Written only by the one filler before `filled` is set; read only by the owner after
    /// it saw `filled`.
    answer: UnsafeCell<Option<T>>,
    _pinned: PhantomPinned,
}

// SAFETY: the only shared access is to `answer`, and it is ordered by `filled`: the filler
// writes it before its `Release` store, the owner reads it only after an `Acquire` load that
// saw the store, and nobody else touches it (see the module's safety section). The answer
// moves from the filler's thread to the owner's, so it must be `Send`.
unsafe impl<T: Send> Sync for Slot<T> {}

impl<T> Slot<T> {
    /// An empty slot.
    pub(super) fn new() -> Slot<T> {
        Slot {
            filled: AtomicBool::new(false),
            answer: UnsafeCell::new(None),
            _pinned: PhantomPinned,
        }
    }

    /// Whether a filler has stored the answer (and removed the waiter from the map).
    pub(super) fn is_filled(&self) -> bool {
        self.filled.load(Ordering::Acquire)
    }

    /// Takes the answer if the slot was filled (only the owner calls this).
    pub(super) fn take(&self) -> Option<T> {
        if !self.filled.load(Ordering::Acquire) {
            return None;
        }
        self.answer.with_mut(|answer| {
            // SAFETY: `filled` was set by the filler after its last write and it never touches
            // the slot again; only the owner reads the answer, and `self` is its only handle.
            unsafe { (*answer).take() }
        })
    }
}

/// A waiting call as the map holds it: where its answer goes, and whom to wake.
struct Waiter<T> {
    slot: NonNull<Slot<T>>,
    waker: Waker,
}

// SAFETY: a waiter is moved between threads only inside `Waiters` (behind the connection's
// mutex), and the slot it points to is `Sync` when the answer is `Send`; see the module's
// safety section for its lifetime.
unsafe impl<T: Send> Send for Waiter<T> {}

impl<T> Waiter<T> {
    /// Stores the answer and returns the waker to wake once the lock is released. Takes the
    /// waiter by value: it has just been removed from the map.
    fn fill(self, value: T) -> Waker {
        // SAFETY: the waiter was in the map until the caller removed it in this critical
        // section, so the slot's owner has neither forgotten it nor seen it filled: the
        // slot is alive.
        let slot = unsafe { self.slot.as_ref() };
        slot.answer.with_mut(|answer| {
            // SAFETY: as above; and until `filled` is set nobody else accesses the answer.
            unsafe { *answer = Some(value) }
        });
        // The last access to the slot: from here the owner may take it and free it.
        slot.filled.store(true, Ordering::Release);
        self.waker
    }
}

/// The calls waiting for an answer on one connection, by request id. Lives inside the
/// connection's mutex: `&mut self` on every method is the proof that the lock is held.
pub(super) struct Waiters<T = Answer> {
    map: HashMap<u64, Waiter<T>, rustc_hash::FxBuildHasher>,
}

impl<T> Default for Waiters<T> {
    fn default() -> Self {
        Waiters {
            map: HashMap::default(),
        }
    }
}

impl<T> Waiters<T> {
    /// Registers call `id`'s slot, woken through `waker`.
    ///
    /// # Safety
    ///
    /// The caller must keep `slot` alive and in place until it has removed the waiter with
    /// [`Waiters::forget`] or has seen the slot filled; see the module's safety section.
    pub(super) unsafe fn insert(&mut self, id: u64, slot: Pin<&Slot<T>>, waker: Waker) {
        self.map.insert(
            id,
            Waiter {
                slot: NonNull::from(slot.get_ref()),
                waker,
            },
        );
    }

    /// Answers call `id` if it still waits; returns the waker to wake once the lock is
    /// released.
    pub(super) fn complete(&mut self, id: u64, value: T) -> Option<Waker> {
        self.map.remove(&id).map(|w| w.fill(value))
    }

    /// Removes call `id` unanswered (its owner stopped waiting); returns whether it waited.
    pub(super) fn forget(&mut self, id: u64) -> bool {
        self.map.remove(&id).is_some()
    }

    /// Answers every waiting call with `value()`; returns the wakers.
    pub(super) fn fail_all(&mut self, mut value: impl FnMut() -> T) -> Vec<Waker> {
        self.map.drain().map(|(_, w)| w.fill(value())).collect()
    }

    /// Replaces call `id`'s waker (its task changed it between polls); false when the call
    /// no longer waits (it was answered).
    pub(super) fn set_waker(&mut self, id: u64, waker: &Waker) -> bool {
        match self.map.get_mut(&id) {
            Some(w) => {
                if !w.waker.will_wake(waker) {
                    w.waker = waker.clone();
                }
                true
            }
            None => false,
        }
    }

    /// Number of calls waiting.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// No call waits.
    pub(super) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Waits until a [`Slot`] is filled and takes its answer.
///
/// The waker was registered with the waiter, in the same poll that created this future; a
/// later poll with a different waker updates it under the lock.
pub(super) struct SlotWait<'a> {
    pub(super) slot: Pin<&'a Slot>,
    pub(super) shared: &'a ConnShared,
    pub(super) id: u64,
    /// Polled before: the waker may have changed since the waiter was registered.
    pub(super) polled: bool,
}

impl Future for SlotWait<'_> {
    type Output = Answer;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(v) = self.slot.take() {
            return Poll::Ready(v);
        }
        if self.polled {
            let mut p = self.shared.pending();
            if !p.side.waiters.set_waker(self.id, cx.waker()) {
                // Removed, so filled in that same critical section (or the call was
                // forgotten, which only its own guard does after this future is gone).
                drop(p);
                return Poll::Ready(self.slot.take().unwrap_or_else(|| {
                    Err(Error::Protocol(
                        wirecall_protocol::ProtocolError::NotInFlight {
                            request_id: wirecall_protocol::RequestId(self.id),
                        },
                    ))
                }));
            }
        }
        self.polled = true;
        Poll::Pending
    }
}

#[cfg(all(test, not(wirecall_loom)))]
mod tests {
    //! The fill/forget protocol under contention, without sockets: a filler thread answers
    //! whatever waiters it finds while the owner either waits for its answer or gives up
    //! (removing its waiter) and drops the slot. Slots reuse the same stack memory round
    //! after round, so an access after a slot is gone would show as a wrong or early answer
    //! in a later round.
    use super::*;
    use crate::client::conn::{Body, INLINE_RESULT};
    use crate::CodecId;
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};

    fn answer_for(id: u64) -> Result<Resp, Error> {
        let mut b = [0u8; INLINE_RESULT];
        b[..8].copy_from_slice(&id.to_le_bytes());
        Ok(Resp::Value(CodecId::POSTCARD, Body::Inline(8, b)))
    }

    fn id_of(r: Result<Resp, Error>) -> u64 {
        match r {
            Ok(Resp::Value(_, body)) => {
                let s = body.as_slice();
                u64::from_le_bytes(s[..8].try_into().unwrap())
            }
            _ => panic!("not an answer"),
        }
    }

    #[test]
    fn fills_and_forgets_race_safely() {
        let map: Arc<Mutex<Waiters>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let filler = {
            let (map, stop) = (map.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut filled = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut m = map.lock().unwrap();
                    let ids: Vec<u64> = m.map.keys().copied().collect();
                    for id in ids {
                        if let Some(waker) = m.complete(id, answer_for(id)) {
                            drop(waker);
                            filled += 1;
                        }
                    }
                    drop(m);
                    std::hint::spin_loop();
                }
                filled
            })
        };
        let waker = futures::task::noop_waker();
        let (mut answered, mut forgotten) = (0u64, 0u64);
        for id in 1..=200_000u64 {
            let slot = std::pin::pin!(Slot::new());
            let slot = slot.into_ref();
            assert!(!slot.is_filled(), "a fresh slot looks filled in round {id}");
            {
                let mut m = map.lock().unwrap();
                // SAFETY: below, the waiter is forgotten under the lock or the slot is seen
                // filled before `slot` goes out of scope.
                unsafe { m.insert(id, slot, waker.clone()) };
            }
            if id % 3 == 0 {
                // Give up: remove the waiter unless the filler got there first.
                let removed = map.lock().unwrap().forget(id);
                if removed {
                    forgotten += 1;
                    assert!(!slot.is_filled());
                    continue;
                }
            }
            // Wait for the answer (the filler has it or will).
            let since = std::time::Instant::now();
            loop {
                if let Some(r) = slot.take() {
                    assert_eq!(id_of(r), id, "answer for another call");
                    answered += 1;
                    break;
                }
                assert!(
                    since.elapsed() < std::time::Duration::from_secs(10),
                    "no answer for call {id} (filled: {})",
                    slot.is_filled()
                );
                std::hint::spin_loop();
            }
        }
        stop.store(true, Ordering::Relaxed);
        let filled = filler.join().unwrap();
        assert_eq!(filled, answered);
        assert_eq!(answered + forgotten, 200_000);
        assert!(map.lock().unwrap().is_empty());
    }
}

#[cfg(all(test, wirecall_loom))]
mod loom_tests {
    //! The fill/forget protocol as a loom model: one owner thread registers a slot on its
    //! stack and then waits for the answer or gives up; one filler thread answers the waiter
    //! if it is still in the map. Loom runs every interleaving (and every outcome the memory
    //! orderings allow) and reports any access to the answer that races with another.
    use super::*;
    use loom::sync::{Arc, Mutex};
    use loom::thread;

    const ID: u64 = 7;
    const ANSWER: u64 = 42;

    /// How the filler reaches the waiter.
    #[derive(Clone, Copy)]
    enum Filler {
        /// `complete`, as a reply arrives.
        Complete,
        /// `fail_all`, as the connection fails.
        FailAll,
    }

    /// One owner against one filler; `give_up`: the owner forgets its waiter instead of
    /// waiting.
    fn model(filler: Filler, give_up: bool) {
        loom::model(move || {
            let map: Arc<Mutex<Waiters<u64>>> = Arc::new(Mutex::new(Waiters::default()));
            let slot = std::pin::pin!(Slot::new());
            let slot = slot.into_ref();
            // SAFETY: below, the waiter is forgotten under the lock or the slot is seen filled
            // before `slot` goes out of scope.
            unsafe {
                map.lock()
                    .unwrap()
                    .insert(ID, slot, futures::task::noop_waker())
            };
            let filler = {
                let map = map.clone();
                thread::spawn(move || {
                    let mut m = map.lock().unwrap();
                    match filler {
                        Filler::Complete => m.complete(ID, ANSWER).is_some(),
                        Filler::FailAll => m.fail_all(|| ANSWER).len() == 1,
                    }
                })
            };
            if give_up && map.lock().unwrap().forget(ID) {
                // No filler can reach the slot any more: its answer is read here, racing
                // with the filler thread, which loom would report if the filler could write.
                assert!(!slot.is_filled());
                slot.answer.with_mut(|answer| {
                    // SAFETY: the waiter is out of the map, so the filler never touches the
                    // slot; this read is the model's check of that claim.
                    let empty = unsafe { (*answer).is_none() };
                    assert!(empty, "an answer in a forgotten slot");
                });
                assert!(
                    !filler.join().unwrap(),
                    "the filler answered a forgotten call"
                );
                return;
            }
            // The filler has the waiter or will: wait for the answer.
            let answer = loop {
                if let Some(v) = slot.take() {
                    break v;
                }
                thread::yield_now();
            };
            assert_eq!(answer, ANSWER);
            assert!(filler.join().unwrap(), "an answer nobody gave");
            assert!(map.lock().unwrap().is_empty());
        });
    }

    #[test]
    fn complete_vs_wait() {
        model(Filler::Complete, false);
    }

    #[test]
    fn complete_vs_forget() {
        model(Filler::Complete, true);
    }

    #[test]
    fn fail_all_vs_forget() {
        model(Filler::FailAll, true);
    }
}
