//! Where a call's answer lands: a slot inside the call's own future, not on the heap.
//!
//! A call registers a [`Waiter`] (a pointer to its pinned [`Slot`] and the waker of its task)
//! in the connection's pending map; whoever reads the reply removes the waiter from the map,
//! stores the answer in the slot and marks it filled, all while holding the pending lock, and
//! wakes the task after releasing it. The call then takes the answer without any lock.
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
//! A [`Waiter`] holds a raw pointer to a slot in some task's future. It is only dereferenced
//! by [`Waiter::fill`], which takes the waiter by value out of the pending map while the
//! pending lock is held (`&mut Pending` proves it). The slot's owner keeps it pinned and alive
//! until either (a) it has removed its waiter from the map under the same lock (the call's
//! guard does this when the call is cancelled, times out or fails), after which no filler can
//! reach the slot; or (b) it has seen the slot filled, which `fill` marks as its very last
//! access to the slot. So no filler ever touches a slot whose memory is gone.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::future::Future;
use std::marker::PhantomPinned;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use super::{lock, ConnShared, Resp};
use crate::error::Error;

/// A call's answer, once a reader has stored it. Lives in the call's future; pinned.
pub(super) struct Slot {
    /// Set, with `Release`, as the filler's last access to the slot.
    filled: AtomicBool,
    /// Written only by the one filler before `filled` is set; read only by the owner after
    /// it saw `filled`.
    answer: UnsafeCell<Option<Result<Resp, Error>>>,
    _pinned: PhantomPinned,
}

// SAFETY: the only shared access is to `answer`, and it is ordered by `filled`: the filler
// writes it before its `Release` store, the owner reads it only after an `Acquire` load that
// saw the store, and nobody else touches it (see the module's safety section).
unsafe impl Sync for Slot {}

impl Slot {
    /// An empty slot.
    pub(super) fn new() -> Slot {
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
    pub(super) fn take(&self) -> Option<Result<Resp, Error>> {
        if !self.filled.load(Ordering::Acquire) {
            return None;
        }
        // SAFETY: `filled` was set by the filler after its last write and it never touches the
        // slot again; only the owner reads the answer, and `self` is its only handle.
        unsafe { (*self.answer.get()).take() }
    }
}

/// A waiting call as the pending map holds it: where its answer goes, and whom to wake.
pub(super) struct Waiter {
    slot: NonNull<Slot>,
    waker: Waker,
}

// SAFETY: a waiter is moved between threads only inside the pending map (behind its mutex),
// and the slot it points to is `Sync`; see the module's safety section for its lifetime.
unsafe impl Send for Waiter {}

impl Waiter {
    /// A waiter for `slot`, woken through `waker`.
    ///
    /// # Safety
    ///
    /// The caller must keep `slot` alive and in place until it has removed this waiter from
    /// the pending map (under the pending lock) or has seen the slot filled; see the module's
    /// safety section.
    pub(super) unsafe fn new(slot: Pin<&Slot>, waker: Waker) -> Waiter {
        Waiter {
            slot: NonNull::from(slot.get_ref()),
            waker,
        }
    }

    /// Replaces the waker (the call's task changed it between polls).
    pub(super) fn set_waker(&mut self, waker: &Waker) {
        if !self.waker.will_wake(waker) {
            self.waker = waker.clone();
        }
    }

    /// Stores the answer and returns the waker to wake once the pending lock is released.
    ///
    /// Takes the waiter by value (it has just been removed from the map) and `_held`, the
    /// locked pending state, as proof that the lock is held.
    pub(super) fn fill<P>(self, _held: &mut P, value: Result<Resp, Error>) -> Waker {
        // SAFETY: the waiter was in the pending map until the caller removed it in this
        // critical section, so the slot's owner has neither removed it nor seen it filled:
        // the slot is alive and nobody else accesses its answer.
        unsafe {
            let slot = self.slot.as_ref();
            *slot.answer.get() = Some(value);
            // The last access to the slot: from here the owner may take it and free it.
            slot.filled.store(true, Ordering::Release);
        }
        self.waker
    }
}

/// Waits until a [`Slot`] is filled and takes its answer.
///
/// The waker was registered with the waiter, in the same poll that created this future; a
/// later poll with a different waker updates it under the pending lock.
pub(super) struct SlotWait<'a> {
    pub(super) slot: Pin<&'a Slot>,
    pub(super) shared: &'a ConnShared,
    pub(super) id: u64,
    /// Polled before: the waker may have changed since the waiter was registered.
    pub(super) polled: bool,
}

impl Future for SlotWait<'_> {
    type Output = Result<Resp, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(v) = self.slot.take() {
            return Poll::Ready(v);
        }
        if self.polled {
            let mut p = lock(&self.shared.pending);
            match p.waiters.get_mut(&self.id) {
                Some(w) => w.set_waker(cx.waker()),
                None => {
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
    use crate::client::{Body, INLINE_RESULT};
    use crate::CodecId;
    use std::collections::HashMap;
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
        let map: Arc<Mutex<HashMap<u64, Waiter>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let filler = {
            let (map, stop) = (map.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut filled = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut m = map.lock().unwrap();
                    let ids: Vec<u64> = m.keys().copied().collect();
                    for id in ids {
                        if let Some(w) = m.remove(&id) {
                            let waker = w.fill(&mut *m, answer_for(id));
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
                // SAFETY: below, the waiter is removed under the lock or the slot is seen
                // filled before `slot` goes out of scope.
                #[allow(unsafe_code)]
                let w = unsafe { Waiter::new(slot, waker.clone()) };
                m.insert(id, w);
            }
            if id % 3 == 0 {
                // Give up: remove the waiter unless the filler got there first.
                let removed = map.lock().unwrap().remove(&id).is_some();
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
