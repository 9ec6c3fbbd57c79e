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
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomPinned;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use super::conn::{ConnShared, Resp};
use crate::error::Error;

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
        // SAFETY: `filled` was set by the filler after its last write and it never touches the
        // slot again; only the owner reads the answer, and `self` is its only handle.
        unsafe { (*self.answer.get()).take() }
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
        // slot is alive and nobody else accesses its answer.
        unsafe {
            let slot = self.slot.as_ref();
            *slot.answer.get() = Some(value);
            // The last access to the slot: from here the owner may take it and free it.
            slot.filled.store(true, Ordering::Release);
        }
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
                    Err(Error::protocol(
                        "a waiting call lost its place in the pending map",
                    ))
                }));
            }
        }
        self.polled = true;
        Poll::Pending
    }
}

#[cfg(test)]
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
