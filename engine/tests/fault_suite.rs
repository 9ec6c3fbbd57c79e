//! The fault suite: what peers that misbehave (or die) do to a server, over real tcp and unix
//! sockets on loopback and, for the timers, the in-memory transport under a paused clock.
//! After every fault the server must still answer a well-behaved client, and the
//! connection's entry must be gone (its `on_disconnect` ran).
//!
//! Covered elsewhere and not repeated here: one garbage request before the HELLO, garbage
//! after it, one truncated CALL and one oversized CALL (`faults.rs`, `bad_input`); idle,
//! slow-handshake and slow-frame eviction of one connection, and two peers against the
//! server-wide buffered-bytes cap (`wire_rules.rs`); 10,000 connect/close cycles
//! (`connect_cycles.rs`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirecall::{CodecId, ConnectionInfo, Engine, Proxy};
use wirecall_protocol as proto;

mod common;
use common::{decode_all, raw_connect, RawIo};

const LIMIT: Duration = Duration::from_secs(60);
const PROVIDER: u16 = 5;

/// Counts the connections that completed a handshake and those that closed again.
#[derive(Default)]
struct Svc {
    connects: AtomicUsize,
    disconnects: AtomicUsize,
}

#[wirecall::provider(service = "f")]
impl Svc {
    #[remote]
    fn echo(&self, s: String) -> String {
        s
    }

    #[remote]
    fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    #[on_connect]
    fn opened(&self, _info: &ConnectionInfo) {
        self.connects.fetch_add(1, Ordering::SeqCst);
    }

    #[on_disconnect]
    fn closed(&self, _info: &ConnectionInfo) {
        self.disconnects.fetch_add(1, Ordering::SeqCst);
    }
}

struct Server {
    engine: Engine,
    svc: Arc<Svc>,
    _dir: Option<tempfile::TempDir>,
}

/// A server on `kind` (`tcp`, `unix`, or a `mem://` address) accepting json and msgpack.
async fn start(
    kind: &str,
    f: impl FnOnce(wirecall::ServerBuilder) -> wirecall::ServerBuilder,
) -> Server {
    let (addr, dir) = listen_address(kind);
    let engine = f(Engine::server(addr).accept([CodecId::JSON, CodecId::MSGPACK]))
        .start()
        .await
        .unwrap();
    let svc = Arc::new(Svc::default());
    engine.register_arc(svc.clone(), PROVIDER).unwrap();
    Server {
        engine,
        svc,
        _dir: dir,
    }
}

fn listen_address(kind: &str) -> (String, Option<tempfile::TempDir>) {
    match kind {
        "tcp" => ("tcp://127.0.0.1:0".to_string(), None),
        "unix" => {
            let dir = tempfile::tempdir().unwrap();
            let a = format!("unix://{}", dir.path().join("f.sock").display());
            (a, Some(dir))
        }
        mem => (mem.to_string(), None),
    }
}

impl Server {
    /// A fresh proxy makes a call and gets the right answer; the open proxy `good` too.
    async fn check_healthy(&self, good: &Proxy) {
        assert_eq!(SvcClient::new(good, PROVIDER).add(2, 3).await.unwrap(), 5);
        let fresh = Proxy::new(&self.engine.address()).unwrap();
        assert_eq!(
            SvcClient::new(&fresh, PROVIDER).add(40, 2).await.unwrap(),
            42
        );
    }

    /// Waits (bounded) until every connection that completed a handshake has closed
    /// again, except `open` of them; fails with the counts otherwise.
    async fn wait_closed(&self, open: usize) {
        for _ in 0..1000 {
            let (c, d) = self.counts();
            if c == d + open {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (c, d) = self.counts();
        panic!("{c} connections opened, {d} closed, {open} expected open: an entry leaked");
    }

    fn counts(&self) -> (usize, usize) {
        (
            self.svc.connects.load(Ordering::SeqCst),
            self.svc.disconnects.load(Ordering::SeqCst),
        )
    }
}

fn encode(frames: &[proto::Frame]) -> BytesMut {
    let mut b = BytesMut::new();
    for f in frames {
        f.encode(&mut b).unwrap();
    }
    b
}

fn hello() -> proto::Frame {
    proto::Frame::Hello(proto::Hello {
        versions: vec![proto::VERSION],
        codecs: vec![proto::CodecId::JSON],
        limits: proto::Limits::default(),
        extensions: Default::default(),
    })
}

/// A CALL of `f_echo` whose JSON arguments are one string of `len` bytes.
fn echo_call(id: u64, len: usize) -> proto::Frame {
    let mut args = Vec::with_capacity(len + 4);
    args.extend_from_slice(b"[\"");
    args.extend(std::iter::repeat_n(b'x', len));
    args.extend_from_slice(b"\"]");
    proto::Frame::Call(proto::Call {
        request_id: proto::RequestId(id),
        provider: proto::ProviderId(PROVIDER),
        codec: proto::CodecId::JSON,
        oneway: false,
        upload: false,
        method: proto::Method::new(Bytes::from_static(b"f_echo")).unwrap(),
        annotations: proto::Annotations::new(),
        args: Bytes::from(args),
        kwargs: Bytes::new(),
        attachment: Bytes::new(),
    })
}

/// Reads until the server closes the connection (at most 10 s); the frames it sent.
async fn read_to_close(io: &mut Box<dyn RawIo>) -> Vec<proto::Frame> {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), io.read_to_end(&mut out))
        .await
        .expect("the server should close the connection")
        .ok();
    decode_all(&out)
}

/// Reads frames until `n` have arrived or the peer closes.
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

/// A deterministic pseudo-random byte stream (xorshift), so failures reproduce.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Garbage of several shapes before the HELLO: the server closes that connection (at most
/// one GOAWAY first), counts no connection, and keeps serving; the same after a handshake:
/// GOAWAY PROTOCOL_ERROR and the connection's entry removed.
async fn garbage_before_the_hello(kind: &str) {
    let s = start(kind, |b| b).await;
    let good = Proxy::new(&s.engine.address()).unwrap();
    good.connect().await.unwrap();
    let mut tls_hello = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    tls_hello.extend(noise(7, 500));
    let mut wrong_magic = encode(&[hello()]).to_vec();
    wrong_magic[0] ^= 0xff;
    let shapes: Vec<(&str, Vec<u8>)> = vec![
        ("64 zero bytes", vec![0; 64]),
        ("a TLS ClientHello", tls_hello),
        ("4 KiB of noise", noise(42, 4096)),
        ("a HELLO with a wrong magic", wrong_magic),
        ("an SSH banner", b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()),
    ];
    for (what, bytes) in shapes {
        let mut io = raw_connect(&s.engine.address()).await;
        io.write_all(&bytes).await.unwrap();
        match read_to_close(&mut io).await.as_slice() {
            [] => {}
            [proto::Frame::GoAway(g)] => {
                assert_eq!(g.code, proto::ErrorCode::PROTOCOL_ERROR, "{what}: {g:?}")
            }
            other => panic!("{what}: expected a close (or one GOAWAY), got {other:?}"),
        }
        s.check_healthy(&good).await;
    }
    // None of them got as far as a connection: only the good proxies did.
    s.wait_closed(1).await;
    // The same shapes after a good handshake: GOAWAY PROTOCOL_ERROR, then the close.
    let after: Vec<(&str, Vec<u8>)> = vec![
        ("64 zero bytes", vec![0; 64]),
        ("4 KiB of noise", noise(43, 4096)),
        ("a second HELLO with a wrong magic", {
            let mut b = encode(&[hello()]).to_vec();
            b[1] ^= 0xff;
            b
        }),
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
    ];
    for (what, bytes) in after {
        let mut io = raw_connect(&s.engine.address()).await;
        io.write_all(&encode(&[hello()])).await.unwrap();
        io.write_all(&bytes).await.unwrap();
        match read_to_close(&mut io).await.as_slice() {
            [proto::Frame::Welcome(_), proto::Frame::GoAway(g)] => {
                assert_eq!(g.code, proto::ErrorCode::PROTOCOL_ERROR, "{what}: {g:?}")
            }
            other => panic!("{what}: expected WELCOME then GOAWAY, got {other:?}"),
        }
        s.check_healthy(&good).await;
    }
    s.wait_closed(1).await;
    drop(good);
    s.wait_closed(0).await;
    s.engine.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_of_many_shapes_before_and_after_the_hello_closes_only_that_connection_tcp() {
    tokio::time::timeout(LIMIT, garbage_before_the_hello("tcp"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_of_many_shapes_before_and_after_the_hello_closes_only_that_connection_unix() {
    tokio::time::timeout(LIMIT, garbage_before_the_hello("unix"))
        .await
        .unwrap();
}

/// Writes a frame header at `at` of `bytes` declaring `len` at header offset `field`.
fn declare(bytes: &mut BytesMut, at: usize, field: usize, len: u32) {
    bytes[at + field..at + field + 4].copy_from_slice(&len.to_be_bytes());
}

/// Oversized declared lengths, before and after the handshake: answered GOAWAY
/// LIMIT_EXCEEDED (PROTOCOL_ERROR for the sections a HELLO may not have) from the 40-byte
/// header alone (the body is never sent), with nothing
/// reserved: after 64 such peers, all still connected, a frame that needs most of the
/// server-wide receive budget goes through.
async fn oversized_declarations(kind: &str) {
    // 4 MiB for all connections together; frames up to the default 16 MiB.
    let s = start(kind, |b| b.max_buffered(4 << 20)).await;
    let good = Proxy::new(&s.engine.address()).unwrap();
    good.connect().await.unwrap();
    let header_only = |before: bool, field: usize| {
        let mut b = if before {
            encode(&[hello()])
        } else {
            encode(&[echo_call(1, 3)])
        };
        declare(&mut b, 0, field, 0xffff_ff00);
        b.truncate(40);
        b
    };
    let mut held = Vec::new();
    for i in 0..64 {
        let before = i % 2 == 0;
        // payload, annotations, kwargs, attachment lengths in turn.
        let field = [28, 24, 32, 36][(i / 2) % 4];
        let mut io = raw_connect(&s.engine.address()).await;
        if !before {
            io.write_all(&encode(&[hello()])).await.unwrap();
        }
        io.write_all(&header_only(before, field)).await.unwrap();
        let frames = read_frames(&mut io, if before { 1 } else { 2 }).await;
        let g = match frames.as_slice() {
            [proto::Frame::GoAway(g)] if before => g,
            [proto::Frame::Welcome(_), proto::Frame::GoAway(g)] if !before => g,
            other => panic!("declaration {i} (before HELLO: {before}, field {field}): {other:?}"),
        };
        if before && field != 28 {
            // A HELLO carries only its payload: any other section is refused as such.
            assert_eq!(g.code, proto::ErrorCode::PROTOCOL_ERROR, "{}", g.message);
            assert!(g.message.contains("must be empty"), "{}", g.message);
        } else {
            assert_eq!(g.code, proto::ErrorCode::LIMIT_EXCEEDED, "{}", g.message);
            assert!(g.message.contains("exceeds the limit"), "{}", g.message);
        }
        // Our side stays open: the server closes.
        assert!(read_to_close(&mut io).await.is_empty());
        held.push(io);
    }
    // A 3 MiB echo needs 3 of the 4 MiB budget both ways round: nothing was reserved for
    // the refused declarations.
    let big = "y".repeat(3 << 20);
    let back = SvcClient::new(&good, PROVIDER)
        .echo(big.clone())
        .await
        .unwrap();
    assert!(back == big, "the 3 MiB echo came back different");
    s.check_healthy(&good).await;
    drop(held);
    // The 32 peers that completed a handshake were closed; the good proxy is open.
    s.wait_closed(1).await;
    s.engine.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_declared_lengths_are_refused_from_the_header_before_and_after_the_handshake_tcp()
{
    tokio::time::timeout(LIMIT, oversized_declarations("tcp"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_declared_lengths_are_refused_from_the_header_before_and_after_the_handshake_unix(
) {
    tokio::time::timeout(LIMIT, oversized_declarations("unix"))
        .await
        .unwrap();
}

/// A HELLO declaring a frame within the frame limit but larger than the server-wide budget
/// is refused before the handshake, so unauthenticated peers cannot pin receive buffers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_declaring_more_than_the_receive_budget_is_refused() {
    tokio::time::timeout(LIMIT, async {
        let s = start("tcp", |b| b.max_buffered(1 << 20)).await;
        let good = Proxy::new(&s.engine.address()).unwrap();
        good.connect().await.unwrap();
        let mut b = encode(&[hello()]);
        declare(&mut b, 0, 28, 4 << 20);
        b.truncate(40);
        let mut io = raw_connect(&s.engine.address()).await;
        io.write_all(&b).await.unwrap();
        match read_to_close(&mut io).await.as_slice() {
            [proto::Frame::GoAway(g)] => {
                assert_eq!(g.code, proto::ErrorCode::LIMIT_EXCEEDED, "{}", g.message)
            }
            other => panic!("expected GOAWAY LIMIT_EXCEEDED, got {other:?}"),
        }
        s.check_healthy(&good).await;
        s.engine.finalize().await;
    })
    .await
    .unwrap();
}

/// Half frames, cut at every interesting point of a HELLO and of a CALL, then closed by
/// the client: each connection is torn down and the server keeps serving.
async fn half_frames(kind: &str) {
    let s = start(kind, |b| b).await;
    let good = Proxy::new(&s.engine.address()).unwrap();
    good.connect().await.unwrap();
    let hello_bytes = encode(&[hello()]);
    let call_bytes = encode(&[echo_call(1, 100)]);
    let cuts = |len: usize| [1, 20, 39, 40, 41, len / 2, len - 1];
    let mut handshakes = 0;
    for after_hello in [false, true] {
        let frame = if after_hello {
            &call_bytes
        } else {
            &hello_bytes
        };
        for cut in cuts(frame.len()) {
            let mut io = raw_connect(&s.engine.address()).await;
            if after_hello {
                io.write_all(&hello_bytes).await.unwrap();
                assert_eq!(read_frames(&mut io, 1).await.len(), 1, "WELCOME");
                handshakes += 1;
            }
            io.write_all(&frame[..cut]).await.unwrap();
            io.flush().await.unwrap();
            drop(io);
            s.check_healthy(&good).await;
        }
    }
    assert_eq!(handshakes, 7);
    s.wait_closed(1).await;
    s.engine.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_frames_then_close_at_every_cut_point_tcp() {
    tokio::time::timeout(LIMIT, half_frames("tcp"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_frames_then_close_at_every_cut_point_unix() {
    tokio::time::timeout(LIMIT, half_frames("unix"))
        .await
        .unwrap();
}

/// Clients killed while writing a large frame give back the receive budget they reserved
/// and their connection entry: with a 3 MiB budget and 2 MiB frames, every round's client
/// only gets its reservation if the previous one's came back. Then a burst of clients
/// killed at once mid-frame, and a well-behaved 2 MiB call at the end.
async fn killed_mid_frame(kind: &str) {
    let s = start(kind, |b| b.max_buffered(3 << 20)).await;
    let good = Proxy::new(&s.engine.address()).unwrap();
    good.connect().await.unwrap();
    let hello_bytes = encode(&[hello()]);
    let frame = encode(&[echo_call(1, 2 << 20)]).freeze();
    let cuts = noise(99, 8);
    for (round, c) in cuts.iter().enumerate() {
        let mut io = raw_connect(&s.engine.address()).await;
        io.write_all(&hello_bytes).await.unwrap();
        assert_eq!(read_frames(&mut io, 1).await.len(), 1, "WELCOME");
        // Somewhere between just past the header and just before the end.
        let cut = 41 + (frame.len() - 42) * usize::from(*c) / 255;
        // The writer is stopped in the middle of its write, its socket dropped with it.
        let (mut rd, mut wr) = tokio::io::split(io);
        let part = frame.slice(..cut);
        let writer = tokio::spawn(async move {
            wr.write_all(&part).await.unwrap();
            wr.flush().await.unwrap();
            std::future::pending::<()>().await;
        });
        // The server reads what was sent: it answers nothing until the frame completes.
        let mut scratch = [0u8; 16];
        assert!(
            tokio::time::timeout(Duration::from_millis(50), rd.read(&mut scratch))
                .await
                .is_err(),
            "round {round}: the server answered a half frame"
        );
        writer.abort();
        let _ = writer.await;
        drop(rd);
        // Its entry goes; only the good proxy's remains.
        s.wait_closed(1).await;
        s.check_healthy(&good).await;
    }
    // A burst: 16 clients each mid-way through a 128 KiB frame, killed together.
    let small = encode(&[echo_call(1, 128 << 10)]);
    let mut burst = Vec::new();
    for i in 0..16 {
        let mut io = raw_connect(&s.engine.address()).await;
        io.write_all(&hello_bytes).await.unwrap();
        assert_eq!(read_frames(&mut io, 1).await.len(), 1, "WELCOME");
        io.write_all(&small[..small.len() / 2 + i]).await.unwrap();
        burst.push(io);
    }
    drop(burst);
    s.wait_closed(1).await;
    // Every reservation came back: the largest call the budget allows still goes through.
    let big = "z".repeat(2 << 20);
    let back = SvcClient::new(&good, PROVIDER)
        .echo(big.clone())
        .await
        .unwrap();
    assert!(back == big, "the 2 MiB echo came back different");
    s.check_healthy(&good).await;
    s.engine.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_killed_mid_frame_give_back_their_buffers_and_entries_tcp() {
    tokio::time::timeout(LIMIT, killed_mid_frame("tcp"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_killed_mid_frame_give_back_their_buffers_and_entries_unix() {
    tokio::time::timeout(LIMIT, killed_mid_frame("unix"))
        .await
        .unwrap();
}

/// Sends `bytes` one a second; stops when the server closes or the bytes run out.
async fn trickle(io: Box<dyn RawIo>, bytes: BytesMut) -> Vec<proto::Frame> {
    let (mut rd, mut wr) = tokio::io::split(io);
    let writer = tokio::spawn(async move {
        for b in bytes.iter() {
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        std::future::pending::<()>().await;
    });
    let mut out = Vec::new();
    let _ = rd.read_to_end(&mut out).await;
    writer.abort();
    decode_all(&out)
}

/// Slowloris at scale (one trickling peer is in wire_rules.rs): 200 peers sending their
/// HELLO a byte a second are all closed at the 5 s handshake deadline, while a
/// well-behaved client calls every 500 ms throughout and is never refused. Paused clock.
#[tokio::test(start_paused = true)]
async fn two_hundred_slow_handshakes_are_closed_at_the_deadline_while_others_are_served() {
    let s = start("mem://fault-suite-slowloris", |b| {
        b.handshake_timeout(Some(Duration::from_secs(5)))
    })
    .await;
    let good = Proxy::new(&s.engine.address()).unwrap();
    good.connect().await.unwrap();
    let start = tokio::time::Instant::now();
    let mut peers = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let io = raw_connect(&s.engine.address()).await;
        peers.spawn(async move {
            let frames = trickle(io, encode(&[hello()])).await;
            (frames, tokio::time::Instant::now())
        });
    }
    let caller = {
        let good = good.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            for i in 0..20 {
                assert_eq!(
                    SvcClient::new(&good, PROVIDER).add(i, 1).await.unwrap(),
                    i + 1
                );
                n += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            n
        })
    };
    while let Some(r) = peers.join_next().await {
        let (frames, closed) = r.unwrap();
        match frames.as_slice() {
            [proto::Frame::GoAway(g)] => assert_eq!(g.code, proto::ErrorCode::TIMEOUT),
            other => panic!("expected GOAWAY TIMEOUT, got {other:?}"),
        }
        let after = closed - start;
        assert!(
            after >= Duration::from_secs(5) && after < Duration::from_secs(7),
            "{after:?}"
        );
    }
    assert_eq!(caller.await.unwrap(), 20);
    // None of them completed a handshake; the good proxy did.
    s.wait_closed(1).await;
    s.engine.finalize().await;
}

/// Idle eviction at scale (one idle peer is in wire_rules.rs): 300 proxies that made one
/// call and went quiet are all closed by the 30 s idle timer, their entries removed, and
/// each reconnects on its next call. Paused clock.
#[tokio::test(start_paused = true)]
async fn three_hundred_idle_connections_are_evicted_and_reconnect() {
    let s = start("mem://fault-suite-idle", |b| {
        b.idle_timeout(Some(Duration::from_secs(30)))
            .keepalive(None)
    })
    .await;
    let mut proxies = Vec::new();
    for i in 0..300 {
        let p = Proxy::new(&s.engine.address()).unwrap();
        assert_eq!(SvcClient::new(&p, PROVIDER).add(i, 0).await.unwrap(), i);
        proxies.push(p);
    }
    assert_eq!(s.counts(), (300, 0));
    // Not before the idle time; by twice it (the check restarts after the last call).
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(s.counts(), (300, 0));
    tokio::time::sleep(Duration::from_secs(32)).await;
    s.wait_closed(0).await;
    // An idle proxy reads the GOAWAY and the close at its next call (it has no reader
    // while idle), which then opens a new connection.
    for (i, p) in proxies.iter().enumerate() {
        let i = i as i64;
        assert_eq!(SvcClient::new(p, PROVIDER).add(i, 1).await.unwrap(), i + 1);
    }
    assert_eq!(s.counts(), (600, 300));
    drop(proxies);
    s.wait_closed(0).await;
    s.engine.finalize().await;
}

/// What a caller saw across a server restart.
#[derive(Default, Debug)]
struct Seen {
    ok_before: u64,
    ok_after: u64,
    failed: u64,
    /// Failures that were not clean retryable errors, with their text.
    unclean: Vec<String>,
    /// Replies that were not the caller's own payload.
    wrong: u64,
}

/// A server restart under load: 16 proxies call in a loop, each call with its own payload;
/// the server is finalized and a new one starts on the same address; every failure during
/// the gap is a retryable error, no call gets another call's reply, and afterwards every
/// proxy object (the same ones) succeeds again.
async fn restart_under_load(kind: &str) {
    let (addr, _dir) = listen_address(kind);
    let first = Engine::server(addr)
        .accept([CodecId::JSON, CodecId::MSGPACK])
        .grace_period(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    first.register_provider(Svc::default(), PROVIDER).unwrap();
    // The same address again, with the port the first one got.
    let addr = first.address();
    let restarted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicU64::new(0));
    let mut callers = tokio::task::JoinSet::new();
    for c in 0..16u64 {
        let proxy = Proxy::new(&addr)
            .unwrap()
            .codec(CodecId::MSGPACK)
            .timeout(Duration::from_secs(5));
        let (restarted, stop) = (restarted.clone(), stop.clone());
        callers.spawn(async move {
            let svc = SvcClient::new(&proxy, PROVIDER);
            let mut seen = Seen::default();
            let mut i = 0u64;
            // Runs until told to stop, and at least until it succeeded after the restart.
            while stop.load(Ordering::SeqCst) == 0 || seen.ok_after == 0 {
                let era = restarted.load(Ordering::SeqCst);
                let sent = format!("{c}-{i}");
                i += 1;
                match svc.echo(sent.clone()).await {
                    Ok(back) if back == sent => {
                        if era == 1 {
                            seen.ok_after += 1
                        } else {
                            seen.ok_before += 1
                        }
                    }
                    Ok(_) => seen.wrong += 1,
                    Err(e) => {
                        seen.failed += 1;
                        if !e.is_retryable() {
                            seen.unclean.push(format!("{e:?}"));
                        }
                        // A client backing off before its retry.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            }
            seen
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.finalize().await;
    // The gap: callers fail (connection refused, or the GOAWAY's SHUTTING_DOWN).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = Engine::server(addr.clone())
        .accept([CodecId::JSON, CodecId::MSGPACK])
        .start()
        .await
        .unwrap();
    assert_eq!(second.address(), addr);
    let svc = Arc::new(Svc::default());
    second.register_arc(svc.clone(), PROVIDER).unwrap();
    restarted.store(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(1, Ordering::SeqCst);
    let mut total = Seen::default();
    while let Some(r) = callers.join_next().await {
        let s = r.unwrap();
        assert!(s.ok_before > 0 && s.ok_after > 0, "{s:?}");
        total.ok_before += s.ok_before;
        total.ok_after += s.ok_after;
        total.failed += s.failed;
        total.wrong += s.wrong;
        total.unclean.extend(s.unclean);
    }
    eprintln!("{kind} restart: {total:?}");
    assert_eq!(total.wrong, 0, "calls got another call's reply");
    assert!(total.unclean.is_empty(), "{:?}", total.unclean);
    // The callers saw the gap (their calls failed while no server listened).
    assert!(total.failed > 0, "{total:?}");
    // Every caller reconnected to the new server: 16 connections there.
    assert_eq!(svc.connects.load(Ordering::SeqCst), 16);
    second.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_under_load_is_survived_by_the_same_proxies_tcp() {
    tokio::time::timeout(LIMIT, restart_under_load("tcp"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_under_load_is_survived_by_the_same_proxies_unix() {
    tokio::time::timeout(LIMIT, restart_under_load("unix"))
        .await
        .unwrap();
}
