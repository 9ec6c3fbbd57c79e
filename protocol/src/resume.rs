//! What a server keeps of a resumable stream (SPEC §6.14): the items it sent that the
//! client may not have received, so that a client whose connection was lost can resume the
//! stream on a new call without losing or repeating an item.
//!
//! The client grants credit as its consumer takes items (§6.12), so the credit tells the
//! server which items certainly arrived: with window *W*, *S* items sent on the call and
//! credit *k* left, the client took `S + k − W` of them. Everything before that is dropped;
//! what stays is at most the window.

use std::collections::VecDeque;
use std::fmt;

/// A resume asked for items the server no longer holds, or never sent.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ResumeGap {
    /// The number of items the caller said it received.
    pub received: u64,
    /// The first item the server holds (all before it were received).
    pub held_from: u64,
    /// One past the last item the server sent.
    pub sent: u64,
}

impl fmt::Display for ResumeGap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot resume after {} items: the server holds items {} to {} of the stream",
            self.received, self.held_from, self.sent
        )
    }
}

impl std::error::Error for ResumeGap {}

/// The items of a resumable stream that were sent and not yet known to be received, and
/// after a resume, those still to send again. Sans-IO: the driver sends what
/// [`next_resend`](Self::next_resend) gives before new items, records each new item with
/// [`sent`](Self::sent), and reports the call's credit with [`credit`](Self::credit).
#[derive(Clone, Debug)]
pub struct Replay<T> {
    /// The stream index of `items[0]`.
    base: u64,
    /// Items from `base` on, sent or to send again.
    items: VecDeque<T>,
    /// How many of `items` (at the front of the tail) are to be sent again on the current
    /// call: `items[len - resend ..]` are not sent on it yet.
    resend: usize,
    /// The current call's window (`wc.window`).
    window: u32,
}

impl<T: Clone> Replay<T> {
    /// A stream that starts on a call with `window`.
    pub fn new(window: u32) -> Replay<T> {
        Replay {
            base: 0,
            items: VecDeque::new(),
            resend: 0,
            window,
        }
    }

    /// Records an item just sent (new, not a resend).
    pub fn sent(&mut self, item: T) {
        debug_assert_eq!(self.resend, 0, "items to send again go first");
        self.items.push_back(item);
    }

    /// How many items of the stream were sent on this or earlier calls, resends excluded.
    pub fn sent_count(&self) -> u64 {
        self.base + (self.items.len() - self.resend) as u64
    }

    /// How many items are held (sent and not known to be received, or to send again).
    pub fn held(&self) -> usize {
        self.items.len()
    }

    /// The current call's credit is `credit`: the items the client took are dropped.
    pub fn credit(&mut self, credit: u32) {
        let taken = (self.sent_count() + u64::from(credit)).saturating_sub(u64::from(self.window));
        while self.base < taken && self.items.len() > self.resend {
            self.items.pop_front();
            self.base += 1;
        }
    }

    /// The stream is resumed on a new call with `window` by a client that received
    /// `received` items: the items before it are dropped, the rest are to be sent again
    /// (returns how many). Fails, changing nothing, when `received` is before the items
    /// held (a client that already took them) or past the items sent.
    pub fn resume(&mut self, received: u64, window: u32) -> Result<usize, ResumeGap> {
        let end = self.base + self.items.len() as u64;
        if received < self.base || received > end {
            return Err(ResumeGap {
                received,
                held_from: self.base,
                sent: end,
            });
        }
        for _ in self.base..received {
            self.items.pop_front();
        }
        self.base = received;
        self.resend = self.items.len();
        self.window = window;
        Ok(self.resend)
    }

    /// The next item to send again after a resume, marked sent on the current call.
    pub fn next_resend(&mut self) -> Option<T> {
        if self.resend == 0 {
            return None;
        }
        let i = self.items.len() - self.resend;
        self.resend -= 1;
        self.items.get(i).cloned()
    }

    /// Items still to send again before new ones.
    pub fn resend_left(&self) -> usize {
        self.resend
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_drops_what_the_client_took() {
        let mut r = Replay::new(4);
        for i in 0..4u32 {
            r.sent(i);
        }
        // No credit back: all four may be lost.
        r.credit(0);
        assert_eq!(r.held(), 4);
        // The client took two and granted them: credit 2 left, items 0 and 1 arrived.
        r.credit(2);
        assert_eq!(r.held(), 2);
        r.sent(4);
        r.sent(5);
        r.credit(0);
        assert_eq!(r.held(), 4);
        assert_eq!(r.sent_count(), 6);
    }

    #[test]
    fn resume_sends_again_what_did_not_arrive() {
        let mut r = Replay::new(4);
        for i in 0..4u32 {
            r.sent(i);
        }
        r.credit(0);
        // The client got three items before the connection was lost.
        assert_eq!(r.resume(3, 8), Ok(1));
        assert_eq!(r.next_resend(), Some(3));
        assert_eq!(r.next_resend(), None);
        assert_eq!(r.sent_count(), 4);
        r.sent(4);
        // The new call's window is 8; two sent on it, credit 6 left: nothing taken yet.
        r.credit(6);
        assert_eq!(r.held(), 2);
        // The client took both.
        r.credit(8);
        assert_eq!(r.held(), 0);
    }

    #[test]
    fn a_resume_outside_the_items_held_changes_nothing() {
        let mut r = Replay::new(4);
        for i in 0..4u32 {
            r.sent(i);
        }
        r.credit(2); // items 0 and 1 taken
        let gap = r.resume(1, 2).unwrap_err();
        assert_eq!(
            gap,
            ResumeGap {
                received: 1,
                held_from: 2,
                sent: 4
            }
        );
        assert!(gap.to_string().contains("items 2 to 4"));
        assert!(r.resume(5, 2).is_err());
        assert_eq!(r.held(), 2);
        assert_eq!(r.resume(4, 2), Ok(0));
    }

    #[test]
    fn resends_wait_for_credit_like_new_items() {
        let mut r = Replay::new(8);
        for i in 0..6u32 {
            r.sent(i);
        }
        assert_eq!(r.resume(0, 2), Ok(6));
        // Two resent, then the credit is used up; the client takes them and grants 2.
        assert_eq!(r.next_resend(), Some(0));
        assert_eq!(r.next_resend(), Some(1));
        r.credit(0);
        assert_eq!(r.held(), 6);
        r.credit(2);
        assert_eq!(r.held(), 4);
        assert_eq!(r.resend_left(), 4);
        assert_eq!(r.next_resend(), Some(2));
    }
}
