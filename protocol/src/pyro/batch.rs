//! Batch calls (reference §2.5): the rule a server follows to answer an INVOKE with flag
//! BATCH, method `<batch>` and `vargs` a list of `(method, vargs, kwargs)` triples.
//!
//! Payloads stay opaque here (as everywhere in this module): the driver decodes the triples,
//! runs what [`BatchRun::next_call`] names, records each outcome, and writes the list
//! [`BatchRun::finish`] returns. The rule is Pyro5's: calls run in order; the first call
//! that raises ends the batch (its exception is the last item, wrapped as
//! [`EXCEPTION_WRAPPER_CLASS`], and the remaining calls are not run); a method that does
//! not exist fails the whole batch with a plain exception reply (Pyro5 resolves the name
//! outside its per-call `try`); a oneway batch (flags BATCH|ONEWAY) gets no reply at all.

use super::server::Reply;
use super::wire::Flags;
use bytes::Bytes;

/// The method name of a batch INVOKE.
pub const BATCH_METHOD: &str = "<batch>";

/// The class of the item that carries a batch call's exception:
/// `{"__class__": EXCEPTION_WRAPPER_CLASS, "exception": {exception dict}}`.
pub const EXCEPTION_WRAPPER_CLASS: &str = "Pyro5.core._ExceptionWrapper";

/// One item of a batch's result list.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum BatchItem<T> {
    /// A call's result.
    Value(T),
    /// The exception of the call that ended the batch; the driver writes it wrapped as
    /// [`EXCEPTION_WRAPPER_CLASS`].
    Raised(T),
}

/// How a batch ends.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum BatchEnd<T> {
    /// Answer with the list (flag BATCH, never EXCEPTION): write the items as one list in
    /// the request's serializer and send [`BatchEnd::reply`].
    Results(Vec<BatchItem<T>>),
    /// The whole batch failed (an unknown method): answer with a plain exception reply.
    Failed(T),
    /// A oneway batch: send nothing.
    Oneway,
}

impl BatchEnd<Bytes> {
    /// The reply to send for an encoded list (`Results`) or exception dict (`Failed`);
    /// `None` for a oneway batch.
    pub fn reply(&self, encoded_list: Bytes) -> Option<Reply> {
        match self {
            BatchEnd::Results(_) => Some(Reply::batch(encoded_list)),
            BatchEnd::Failed(e) => Some(Reply::exception(e.clone())),
            BatchEnd::Oneway => None,
        }
    }
}

/// The progress of one batch: which call runs next and what has been collected.
#[derive(Clone, Debug)]
pub struct BatchRun<T> {
    calls: usize,
    oneway: bool,
    items: Vec<BatchItem<T>>,
    failed: Option<T>,
    stopped: bool,
}

impl<T> BatchRun<T> {
    /// A batch of `calls` calls; `flags` are the request's (ONEWAY makes it a oneway batch).
    pub fn new(calls: usize, flags: Flags) -> BatchRun<T> {
        BatchRun {
            calls,
            oneway: flags.contains(Flags::ONEWAY),
            items: Vec::new(),
            failed: None,
            stopped: false,
        }
    }

    /// The index of the call to run next, or `None` when the batch is over.
    pub fn next_call(&self) -> Option<usize> {
        let i = self.items.len();
        (!self.stopped && i < self.calls).then_some(i)
    }

    /// Records the result of the call [`Self::next_call`] named.
    pub fn value(&mut self, v: T) {
        if self.next_call().is_some() {
            self.items.push(BatchItem::Value(v));
        }
    }

    /// Records that the call [`Self::next_call`] named raised: it is the last item, the
    /// remaining calls are not run.
    pub fn raised(&mut self, e: T) {
        if self.next_call().is_some() {
            self.items.push(BatchItem::Raised(e));
            self.stopped = true;
        }
    }

    /// The call [`Self::next_call`] named cannot be resolved (no such method): the whole
    /// batch fails with `e` as a plain exception reply.
    pub fn fail(&mut self, e: T) {
        if self.next_call().is_some() {
            self.failed = Some(e);
            self.stopped = true;
        }
    }

    /// How many calls ran.
    pub fn ran(&self) -> usize {
        self.items.len()
    }

    /// The answer, once [`Self::next_call`] is `None` (earlier, the calls not run yet are
    /// left out).
    pub fn finish(self) -> BatchEnd<T> {
        if self.oneway {
            BatchEnd::Oneway
        } else if let Some(e) = self.failed {
            BatchEnd::Failed(e)
        } else {
            BatchEnd::Results(self.items)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pyro::{
        ClientConfig, ClientEvent, ClientSession, Request, SerializerId, ServerConfig, ServerEvent,
        ServerSession,
    };
    use std::time::Instant;

    /// Runs a batch of "methods": `Ok(v)` returns v, `Err(e)` raises e, `None` is unknown.
    fn run(calls: &[Option<Result<i32, &'static str>>], flags: Flags) -> (BatchEnd<String>, usize) {
        let mut b = BatchRun::new(calls.len(), flags);
        let mut executed = 0;
        while let Some(i) = b.next_call() {
            match &calls[i] {
                None => b.fail(format!("no method {i}")),
                Some(Ok(v)) => {
                    executed += 1;
                    b.value(v.to_string())
                }
                Some(Err(e)) => {
                    executed += 1;
                    b.raised(e.to_string())
                }
            }
        }
        (b.finish(), executed)
    }

    #[test]
    fn results_in_order() {
        let (end, n) = run(&[Some(Ok(2)), Some(Ok(7)), Some(Ok(1))], Flags::EMPTY);
        assert_eq!(n, 3);
        assert_eq!(
            end,
            BatchEnd::Results(vec![
                BatchItem::Value("2".into()),
                BatchItem::Value("7".into()),
                BatchItem::Value("1".into())
            ])
        );
    }

    #[test]
    fn stops_at_the_first_exception() {
        let (end, n) = run(
            &[
                Some(Ok(2)),
                Some(Err("boom")),
                Some(Ok(4)),
                Some(Err("late")),
            ],
            Flags::EMPTY,
        );
        assert_eq!(n, 2, "the calls after the failing one must not run");
        assert_eq!(
            end,
            BatchEnd::Results(vec![
                BatchItem::Value("2".into()),
                BatchItem::Raised("boom".into())
            ])
        );
    }

    #[test]
    fn an_unknown_method_fails_the_whole_batch() {
        let (end, n) = run(&[Some(Ok(1)), None, Some(Ok(3))], Flags::EMPTY);
        assert_eq!(n, 1);
        assert_eq!(end, BatchEnd::Failed("no method 1".into()));
        assert_eq!(
            BatchEnd::<Bytes>::Failed(Bytes::from_static(b"x"))
                .reply(Bytes::new())
                .unwrap()
                .flags,
            Flags::EXCEPTION
        );
    }

    #[test]
    fn a_oneway_batch_runs_without_a_reply() {
        let (end, n) = run(
            &[Some(Ok(1)), Some(Ok(2))],
            Flags::BATCH.union(Flags::ONEWAY),
        );
        assert_eq!(n, 2);
        assert_eq!(end, BatchEnd::Oneway);
        assert!(BatchEnd::<Bytes>::Oneway.reply(Bytes::new()).is_none());
    }

    #[test]
    fn empty_batch_is_an_empty_list() {
        let (end, n) = run(&[], Flags::BATCH);
        assert_eq!((end, n), (BatchEnd::Results(vec![]), 0));
    }

    #[test]
    fn batch_through_the_sessions() {
        // A client's BATCH INVOKE reaches the server with its flag; the BATCH reply carries
        // the flag (and no EXCEPTION) back, with the sequence number; a oneway batch is
        // decoded without awaiting a reply.
        let now = Instant::now();
        let mut server =
            ServerSession::new(ServerConfig::new(vec![SerializerId::JSON]), now).unwrap();
        let mut client = ClientSession::new(ClientConfig::new(SerializerId::JSON));
        client.connect(Bytes::from_static(b"{}"), now).unwrap();
        server
            .handle_input(&client.poll_transmit().unwrap(), now)
            .unwrap();
        assert!(matches!(server.poll_event(), Some(ServerEvent::Connect(_))));
        server.accept(Reply::new(&b"{}"[..]), now).unwrap();
        client
            .handle_input(&server.poll_transmit().unwrap(), now)
            .unwrap();
        assert!(matches!(
            client.poll_event(),
            Some(ClientEvent::Connected(_))
        ));

        let mut req = Request::new(&b"[batch]"[..]);
        req.flags = Flags::BATCH;
        let seq = client.invoke(req, now).unwrap();
        server
            .handle_input(&client.poll_transmit().unwrap(), now)
            .unwrap();
        let Some(ServerEvent::Invoke(call)) = server.poll_event() else {
            panic!("no invoke")
        };
        assert!(call.is_batch() && !call.is_oneway());
        let mut b = BatchRun::new(2, call.flags);
        b.value(Bytes::from_static(b"1"));
        b.raised(Bytes::from_static(b"{}"));
        assert_eq!(b.next_call(), None);
        let reply = b.finish().reply(Bytes::from_static(b"[1,{}]")).unwrap();
        server.reply(call.seq, reply, now).unwrap();
        client
            .handle_input(&server.poll_transmit().unwrap(), now)
            .unwrap();
        let Some(ClientEvent::Result(r)) = client.poll_event() else {
            panic!("no result")
        };
        assert_eq!(r.seq, seq);
        assert!(r.flags.contains(Flags::BATCH) && !r.flags.contains(Flags::EXCEPTION));

        let mut req = Request::new(&b"[oneway batch]"[..]);
        req.flags = Flags::BATCH.union(Flags::ONEWAY);
        client.invoke(req, now).unwrap();
        server
            .handle_input(&client.poll_transmit().unwrap(), now)
            .unwrap();
        let Some(ServerEvent::Invoke(call)) = server.poll_event() else {
            panic!("no invoke")
        };
        assert!(call.is_batch() && call.is_oneway());
        assert!(server.wants_input(), "a oneway batch awaits no reply");
        assert!(server.poll_transmit().is_none());
    }
}
