//! Issue 12, items 7 and 8: every handler kind is bounded by its caller's deadline, calls a
//! handler makes for its caller inherit the time left, and slow handlers hold up no one
//! (not the next call on their connection, not other connections). Over tcp, unix sockets
//! and the in-memory transport.
//!
//! Deadlines are checked with raw frames: the client side here has no timer at all, so a
//! DEADLINE_EXCEEDED can only come from the server's own enforcement. Handlers that block
//! sleep in real time (a blocked thread cannot run on a paused clock); the checks compare
//! against generous bounds or the order of events, never tight timings.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirecall::{CallContext, CodecId, Engine, Proxy, Responder};
use wirecall_protocol as proto;

mod common;
use common::{raw_connect, RawIo, SetOnDrop};

/// Bound of every wait in these tests.
const LIMIT: Duration = Duration::from_secs(20);
const PROVIDER: u16 = 12;

#[derive(Default)]
struct Slow {
    /// Responders kept and never answered.
    kept: Mutex<Vec<Responder<u32>>>,
    /// Set when the async Responder handler was stopped.
    detached_dropped: Arc<AtomicBool>,
    /// Set when the async handler was stopped.
    hang_dropped: Arc<AtomicBool>,
    /// Blocking calls started and finished.
    started: AtomicUsize,
    finished: AtomicUsize,
}

#[wirecall::provider(service = "slow")]
impl Slow {
    #[remote]
    fn add(&self, a: i32, b: i32) -> i32 {
        a + b
    }

    /// A synchronous method not declared blocking that sleeps: runs on the reader until the
    /// blocking budget finds it out.
    #[remote]
    fn nap(&self, ms: u64) -> u64 {
        self.started.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(ms));
        self.finished.fetch_add(1, Ordering::SeqCst);
        ms
    }

    /// Declared blocking: always off the reader.
    #[remote(blocking)]
    fn block(&self, ms: u64) -> u64 {
        self.started.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(ms));
        self.finished.fetch_add(1, Ordering::SeqCst);
        ms
    }

    #[remote(oneway)]
    fn nap_oneway(&self, ms: u64) {
        self.started.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(ms));
        self.finished.fetch_add(1, Ordering::SeqCst);
    }

    #[remote]
    async fn hang(&self) -> u32 {
        let _guard = SetOnDrop(self.hang_dropped.clone());
        tokio::time::sleep(Duration::from_secs(3600)).await;
        0
    }

    /// Keeps its Responder and never answers.
    #[remote]
    fn keep(&self, responder: Responder<u32>) {
        self.kept.lock().unwrap().push(responder);
    }

    /// Answers through its Responder after an hour.
    #[remote]
    async fn keep_async(&self, responder: Responder<u32>) {
        let _guard = SetOnDrop(self.detached_dropped.clone());
        tokio::time::sleep(Duration::from_secs(3600)).await;
        responder.respond(&1);
    }

    /// The deadline this call arrived with, in milliseconds.
    #[remote]
    fn seen_deadline(&self, ctx: CallContext) -> Option<u64> {
        ctx.deadline().map(|d| d.as_millis() as u64)
    }

    /// Waits `wait_ms`, then calls `seen_deadline` at `addr` on its caller's behalf,
    /// inheriting its remaining time or not; returns its own remaining time (ms) after the
    /// wait and what the inner call saw.
    #[remote]
    async fn relay(
        &self,
        ctx: CallContext,
        addr: String,
        inherit: bool,
        wait_ms: u64,
    ) -> Result<(Option<u64>, Option<u64>), String> {
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        let left = ctx.remaining().map(|d| d.as_millis() as u64);
        let proxy = Proxy::new(&addr).map_err(|e| e.to_string())?;
        let mut call = proxy
            .call_on(PROVIDER, "slow_seen_deadline")
            .map_err(|e| e.to_string())?;
        if inherit {
            call = call.within(&ctx);
        }
        let seen = call
            .call::<Option<u64>>()
            .await
            .map_err(|e| e.to_string())?;
        Ok((left, seen))
    }
}

/// A tcp, a unix and a `mem://` address for `test`.
fn addresses(dir: &tempfile::TempDir, test: &str) -> Vec<String> {
    vec![
        "tcp://127.0.0.1:0".to_string(),
        format!(
            "unix://{}",
            dir.path().join(format!("{test}.sock")).display()
        ),
        format!("mem://handlers-{test}"),
    ]
}

async fn server(
    addr: &str,
    f: impl FnOnce(wirecall::ServerBuilder) -> wirecall::ServerBuilder,
) -> (Engine, Arc<Slow>) {
    let engine = f(Engine::server(addr).accept([CodecId::JSON, CodecId::POSTCARD]))
        .start()
        .await
        .unwrap();
    let svc = Arc::new(Slow::default());
    engine.register_arc(svc.clone(), PROVIDER).unwrap();
    (engine, svc)
}

fn hello() -> proto::Frame {
    proto::Frame::Hello(proto::Hello {
        versions: vec![proto::VERSION],
        codecs: vec![proto::CodecId::JSON],
        limits: proto::Limits::default(),
        extensions: Default::default(),
    })
}

/// Reads frames until `n` have arrived (or the peer closes).
async fn read_frames(io: &mut Box<dyn RawIo>, n: usize) -> Vec<proto::Frame> {
    let mut buf = BytesMut::new();
    let mut dec = proto::FrameDecoder::default();
    let mut out = Vec::new();
    while out.len() < n {
        while let Ok(Some(f)) = dec.decode(&mut buf) {
            out.push(f);
        }
        if out.len() >= n || io.read_buf(&mut buf).await.unwrap_or(0) == 0 {
            break;
        }
    }
    out
}

/// Calls `method` with json `args` and a deadline over a raw connection (no client-side
/// timer); returns the answer frame and how long it took.
async fn call_with_deadline(
    addr: &str,
    method: &'static str,
    args: &'static [u8],
    deadline: Duration,
) -> (proto::Frame, Duration) {
    let mut io = raw_connect(addr).await;
    let mut b = BytesMut::new();
    hello().encode(&mut b).unwrap();
    io.write_all(&b).await.unwrap();
    let welcome = read_frames(&mut io, 1).await;
    assert!(
        matches!(welcome.as_slice(), [proto::Frame::Welcome(_)]),
        "{welcome:?}"
    );
    let call = proto::Frame::Call(proto::Call {
        request_id: proto::RequestId(1),
        provider: proto::ProviderId(PROVIDER),
        codec: proto::CodecId::JSON,
        oneway: false,
        upload: false,
        method: proto::Method::new(Bytes::from_static(method.as_bytes())).unwrap(),
        annotations: proto::Annotations::builder().deadline(deadline).build(),
        args: Bytes::from_static(args),
        kwargs: Bytes::new(),
        attachment: Bytes::new(),
    });
    let mut b = BytesMut::new();
    call.encode(&mut b).unwrap();
    let sent = Instant::now();
    io.write_all(&b).await.unwrap();
    let mut answer = tokio::time::timeout(LIMIT, read_frames(&mut io, 1))
        .await
        .unwrap_or_else(|_| {
            panic!("`{method}` was never answered: the server did not enforce the deadline")
        });
    let took = sent.elapsed();
    assert_eq!(answer.len(), 1, "`{method}`: the connection closed");
    (answer.remove(0), took)
}

fn assert_deadline_exceeded(method: &str, frame: &proto::Frame) {
    match frame {
        proto::Frame::Error(e) => assert_eq!(
            e.body.code,
            proto::ErrorCode::DEADLINE_EXCEEDED,
            "`{method}`: {e:?}"
        ),
        other => panic!("`{method}` past its deadline was answered {other:?}"),
    }
}

/// Waits (bounded) until `n` handlers have started.
async fn until_started(svc: &Slow, n: usize) {
    tokio::time::timeout(LIMIT, async {
        while svc.started.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the handlers never started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_handler_kind_is_bounded_by_the_callers_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let deadline = Duration::from_millis(200);
    for addr in addresses(&dir, "deadline") {
        let (engine, svc) = server(&addr, |b| b).await;
        let at = engine.address();
        // Answered by the machine's timer at the deadline, the handler still running or
        // holding its Responder: async, async with a Responder, sync with a Responder, and
        // a blocking method (off the reader, so the timer fires on time).
        for (method, args) in [
            ("slow_hang", &b"[]"[..]),
            ("slow_keep_async", b"[]"),
            ("slow_keep", b"[]"),
            ("slow_block", b"[1500]"),
        ] {
            let (frame, took) = call_with_deadline(&at, method, args, deadline).await;
            assert_deadline_exceeded(method, &frame);
            assert!(
                took >= deadline && took < Duration::from_millis(1200),
                "{addr} `{method}` answered after {took:?}, deadline {deadline:?}"
            );
        }
        // A synchronous method on the reader holds the timer until it returns: its late
        // value is not sent, the caller gets DEADLINE_EXCEEDED.
        let (frame, took) = call_with_deadline(&at, "slow_nap", b"[600]", deadline).await;
        assert_deadline_exceeded("slow_nap", &frame);
        assert!(took >= Duration::from_millis(600), "{took:?}");
        // The expired handlers were stopped: the async ones dropped, the kept Responder
        // answers nobody.
        tokio::time::timeout(LIMIT, async {
            while !(svc.hang_dropped.load(Ordering::SeqCst)
                && svc.detached_dropped.load(Ordering::SeqCst))
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the expired async handlers were not stopped");
        svc.kept.lock().unwrap().clear();
        // A call within its deadline is answered as usual.
        let (frame, _) = call_with_deadline(&at, "slow_add", b"[2,3]", deadline).await;
        match frame {
            proto::Frame::Reply(r) => assert_eq!(&r.result[..], b"5"),
            other => panic!("{other:?}"),
        }
        engine.finalize().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_made_for_a_caller_inherit_its_remaining_time() {
    let dir = tempfile::tempdir().unwrap();
    for addr in addresses(&dir, "inherit") {
        let (engine, _svc) = server(&addr, |b| b).await;
        let at = engine.address();
        let proxy = Proxy::new(&at).unwrap().timeout(Duration::from_secs(10));
        let (left, seen): (Option<u64>, Option<u64>) = proxy
            .call_on(PROVIDER, "slow_relay")
            .unwrap()
            .arg(&at)
            .arg(true)
            .arg(300u64)
            .call()
            .await
            .unwrap();
        let left = left.expect("the relay saw no remaining time");
        let seen = seen.expect("the inner call carried no deadline");
        // 10 s less the 300 ms the relay waited, and less again by the time it called.
        assert!(left <= 9_700 && left > 0, "left {left} ms");
        assert!(seen <= left && seen > 0, "seen {seen} ms, left {left} ms");
        // Without `within`, the inner call keeps its own (here: none).
        let (_, seen): (Option<u64>, Option<u64>) = proxy
            .call_on(PROVIDER, "slow_relay")
            .unwrap()
            .arg(&at)
            .arg(false)
            .arg(0u64)
            .call()
            .await
            .unwrap();
        assert_eq!(seen, None);
        // A caller without a timeout passes nothing on.
        let (left, seen): (Option<u64>, Option<u64>) = Proxy::new(&at)
            .unwrap()
            .call_on(PROVIDER, "slow_relay")
            .unwrap()
            .arg(&at)
            .arg(true)
            .arg(0u64)
            .call()
            .await
            .unwrap();
        assert_eq!((left, seen), (None, None));
        engine.finalize().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_does_not_hold_up_the_next_call_on_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    for addr in addresses(&dir, "same-conn") {
        let (engine, svc) = server(&addr, |b| {
            b.blocking_budget(Some(Duration::from_millis(20)))
        })
        .await;
        let proxy = Proxy::new(&engine.address()).unwrap();
        let client = SlowClient::new(proxy.clone(), PROVIDER);
        // Declared blocking: a call beside it, on the same connection, is answered first.
        let c = client.clone();
        let slow = tokio::spawn(async move { c.block(1000).await });
        until_started(&svc, 1).await;
        assert_eq!(
            tokio::time::timeout(LIMIT, client.add(1, 2))
                .await
                .unwrap()
                .unwrap(),
            3
        );
        assert_eq!(
            svc.finished.load(Ordering::SeqCst),
            0,
            "{addr}: the call waited behind the blocking one"
        );
        assert_eq!(slow.await.unwrap().unwrap(), 1000);

        // Oneway: the caller's next call is not delayed by it.
        client.nap_oneway(1000).await.unwrap();
        until_started(&svc, 2).await;
        assert_eq!(client.add(2, 2).await.unwrap(), 4);
        assert_eq!(
            svc.finished.load(Ordering::SeqCst),
            1,
            "{addr}: the call waited behind the oneway one"
        );

        // Not declared: the first slow call puts the connection under watch (its handlers
        // are timed one by one from then on); a call within the budget clears the count, and
        // three calls in a row over the budget move the method off the reader.
        assert_eq!(client.nap(60).await.unwrap(), 60);
        assert_eq!(client.nap(60).await.unwrap(), 60);
        assert_eq!(client.nap(60).await.unwrap(), 60);
        assert_eq!(client.nap(0).await.unwrap(), 0);
        for _ in 0..3 {
            assert_eq!(client.nap(60).await.unwrap(), 60);
        }
        let base = svc.started.load(Ordering::SeqCst);
        let c = client.clone();
        let slow = tokio::spawn(async move { c.nap(1000).await });
        until_started(&svc, base + 1).await;
        let finished = svc.finished.load(Ordering::SeqCst);
        assert_eq!(client.add(3, 4).await.unwrap(), 7);
        assert_eq!(
            svc.finished.load(Ordering::SeqCst),
            finished,
            "{addr}: the call waited behind a method found blocking"
        );
        assert_eq!(slow.await.unwrap().unwrap(), 1000);
        engine.finalize().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_connections_are_served_while_blocking_handlers_would_fill_every_worker() {
    let dir = tempfile::tempdir().unwrap();
    for addr in addresses(&dir, "other-conns") {
        let (engine, svc) = server(&addr, |b| b).await;
        let at = engine.address();
        // Four connections, each running a blocking call and a oneway sleeper: on the
        // readers they would block both runtime workers (this runtime has 2).
        let mut slow = Vec::new();
        for _ in 0..4 {
            let client = SlowClient::new(Proxy::new(&at).unwrap(), PROVIDER);
            client.nap_oneway(1500).await.unwrap();
            slow.push(tokio::spawn(async move { client.block(1500).await }));
        }
        until_started(&svc, 8).await;
        let other = SlowClient::new(Proxy::new(&at).unwrap(), PROVIDER);
        assert_eq!(
            tokio::time::timeout(LIMIT, other.add(20, 22))
                .await
                .unwrap()
                .unwrap(),
            42
        );
        assert_eq!(
            svc.finished.load(Ordering::SeqCst),
            0,
            "{addr}: the other connection waited for the blocking handlers"
        );
        for s in slow {
            assert_eq!(s.await.unwrap().unwrap(), 1500);
        }
        engine.finalize().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_marked_blocking_run_off_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    for addr in addresses(&dir, "functions") {
        // No budget: only the declaration moves the function.
        let engine = Engine::server(&addr)
            .blocking_budget(None)
            .start()
            .await
            .unwrap();
        let started = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let (s, d) = (started.clone(), done.clone());
        engine
            .register_functions(
                wirecall::Functions::new("f")
                    .sync_fn("nap", &["ms"], move |(ms,): (u64,)| {
                        s.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(ms));
                        d.fetch_add(1, Ordering::SeqCst);
                        ms
                    })
                    .blocking()
                    .sync_fn("add", &["a", "b"], |(a, b): (i32, i32)| a + b),
                1,
            )
            .unwrap();
        let proxy = Proxy::new(&engine.address()).unwrap();
        let p = proxy.clone();
        let slow = tokio::spawn(async move {
            p.call_on(1, "f_nap")
                .unwrap()
                .arg(800u64)
                .call::<u64>()
                .await
        });
        tokio::time::timeout(LIMIT, async {
            while started.load(Ordering::SeqCst) < 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        let r: i32 = proxy
            .call_on(1, "f_add")
            .unwrap()
            .arg(1)
            .arg(1)
            .call()
            .await
            .unwrap();
        assert_eq!(r, 2);
        assert_eq!(
            done.load(Ordering::SeqCst),
            0,
            "{addr}: the call waited behind the blocking function"
        );
        assert_eq!(slow.await.unwrap().unwrap(), 800);
        engine.finalize().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_passing_while_another_handler_holds_the_reader_is_still_enforced() {
    let dir = tempfile::tempdir().unwrap();
    for addr in addresses(&dir, "held-reader") {
        let (engine, _svc) = server(&addr, |b| b).await;
        let mut io = raw_connect(&engine.address()).await;
        let mut b = BytesMut::new();
        hello().encode(&mut b).unwrap();
        io.write_all(&b).await.unwrap();
        assert_eq!(read_frames(&mut io, 1).await.len(), 1);
        // One write, so one batch: a sleeper on the reader (not yet found blocking), then a
        // quick call whose deadline passes while the sleeper holds the reader.
        let call = |id: u64, method: &'static str, args: &'static [u8], deadline| {
            proto::Frame::Call(proto::Call {
                request_id: proto::RequestId(id),
                provider: proto::ProviderId(PROVIDER),
                codec: proto::CodecId::JSON,
                oneway: false,
                upload: false,
                method: proto::Method::new(Bytes::from_static(method.as_bytes())).unwrap(),
                annotations: match deadline {
                    Some(d) => proto::Annotations::builder().deadline(d).build(),
                    None => proto::Annotations::new(),
                },
                args: Bytes::from_static(args),
                kwargs: Bytes::new(),
                attachment: Bytes::new(),
            })
        };
        let mut b = BytesMut::new();
        call(1, "slow_nap", b"[500]", None).encode(&mut b).unwrap();
        call(2, "slow_add", b"[1,1]", Some(Duration::from_millis(100)))
            .encode(&mut b)
            .unwrap();
        io.write_all(&b).await.unwrap();
        let frames = tokio::time::timeout(LIMIT, read_frames(&mut io, 2))
            .await
            .unwrap();
        let mut nap = None;
        let mut add = None;
        for f in &frames {
            match f {
                proto::Frame::Reply(r) if r.request_id.0 == 1 => nap = Some(f),
                proto::Frame::Error(e) if e.request_id.0 == 2 => add = Some(f),
                other => panic!("{addr}: unexpected {other:?} (all: {frames:?})"),
            }
        }
        assert!(nap.is_some() && add.is_some(), "{addr}: {frames:?}");
        assert_deadline_exceeded("slow_add", add.unwrap());
        engine.finalize().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_overruns_in_a_row_move_a_method_off_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    for addr in addresses(&dir, "in-a-row") {
        let (engine, svc) = server(&addr, |b| {
            b.blocking_budget(Some(Duration::from_millis(20)))
        })
        .await;
        let client = SlowClient::new(Proxy::new(&engine.address()).unwrap(), PROVIDER);
        // The first slow call puts the connection under watch (not counted); then two
        // overruns, a call within the budget, and two overruns again: never three in a row.
        for ms in [60, 60, 60, 0, 60, 60] {
            assert_eq!(client.nap(ms).await.unwrap(), ms);
        }
        // Still on the reader: a call beside the next slow one waits for it (the order of
        // events, not a timing). That slow one is the third in a row. (Its handler blocks a
        // worker of this very runtime, which may delay this task too: so the count is read
        // before it starts.)
        let base = svc.started.load(Ordering::SeqCst);
        let finished = svc.finished.load(Ordering::SeqCst);
        let c = client.clone();
        let slow = tokio::spawn(async move { c.nap(300).await });
        until_started(&svc, base + 1).await;
        assert_eq!(client.add(1, 1).await.unwrap(), 2);
        assert_eq!(
            svc.finished.load(Ordering::SeqCst),
            finished + 1,
            "{addr}: the method left the reader before three overruns in a row"
        );
        assert_eq!(slow.await.unwrap().unwrap(), 300);
        // Now it runs off the reader.
        let base = svc.started.load(Ordering::SeqCst);
        let c = client.clone();
        let slow = tokio::spawn(async move { c.nap(1000).await });
        until_started(&svc, base + 1).await;
        let finished = svc.finished.load(Ordering::SeqCst);
        assert_eq!(client.add(2, 2).await.unwrap(), 4);
        assert_eq!(svc.finished.load(Ordering::SeqCst), finished, "{addr}");
        assert_eq!(slow.await.unwrap().unwrap(), 1000);
        engine.finalize().await;
    }
}
