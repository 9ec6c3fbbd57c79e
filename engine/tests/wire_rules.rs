//! The wire rules of protocol/SPEC.md as a running engine keeps them, one named test per
//! rule the engine used to break when it had its own copy of them: tested from outside
//! with raw frames over real sockets, and with the in-memory transport and a paused tokio
//! clock for the timers (no sleeps in real time).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirecall::{CallHook, CallInfo, CodecId, Engine, Error, Proxy, Responder};
use wirecall_protocol as proto;

mod common;
use common::{decode_all, raw_connect, RawIo, SetOnDrop};

const LIMIT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Svc {
    dropped: Arc<AtomicBool>,
}

#[wirecall::provider(service = "w")]
impl Svc {
    #[remote]
    fn add(&self, a: i32, b: i32) -> i32 {
        a + b
    }

    #[remote]
    fn echo(&self, s: String) -> String {
        s
    }

    #[remote]
    async fn hang(&self) -> u32 {
        let _guard = SetOnDrop(self.dropped.clone());
        tokio::time::sleep(Duration::from_secs(3600)).await;
        0
    }

    #[remote]
    async fn work(&self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }

    #[remote]
    async fn later(&self, x: u32, responder: Responder<u32>) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        responder.respond(&(x + 1));
    }

    #[remote]
    async fn later_panics(&self, _x: u32, _responder: Responder<u32>) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        panic!("detached handler fails");
    }
}

const PROVIDER: u16 = 3;

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

fn call(id: u64, method: &'static str, args: &'static [u8]) -> proto::Frame {
    proto::Frame::Call(proto::Call {
        request_id: proto::RequestId(id),
        provider: proto::ProviderId(PROVIDER),
        codec: proto::CodecId::JSON,
        oneway: false,
        upload: false,
        method: proto::Method::new(Bytes::from_static(method.as_bytes())).unwrap(),
        annotations: proto::Annotations::new(),
        args: Bytes::from_static(args),
        kwargs: Bytes::new(),
        attachment: Bytes::new(),
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
        if out.len() >= n {
            break;
        }
        if io.read_buf(&mut buf).await.unwrap_or(0) == 0 {
            break;
        }
    }
    out
}

/// Reads until the server closes the connection.
async fn read_to_close(io: &mut Box<dyn RawIo>) -> Vec<proto::Frame> {
    let mut out = Vec::new();
    let _ = io.read_to_end(&mut out).await;
    decode_all(&out)
}

async fn server(
    f: impl FnOnce(wirecall::ServerBuilder) -> wirecall::ServerBuilder,
) -> (Engine, Arc<Svc>) {
    server_at("tcp://127.0.0.1:0", f).await
}

async fn server_at(
    addr: &str,
    f: impl FnOnce(wirecall::ServerBuilder) -> wirecall::ServerBuilder,
) -> (Engine, Arc<Svc>) {
    let engine = f(Engine::server(addr).accept([CodecId::JSON, CodecId::MSGPACK]))
        .start()
        .await
        .unwrap();
    let svc = Arc::new(Svc::default());
    engine.register_arc(svc.clone(), PROVIDER).unwrap();
    (engine, svc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_is_answered_cancelled_and_stops_the_handler() {
    tokio::time::timeout(LIMIT, async {
        let (engine, svc) = server(|b| b).await;
        let mut io = raw_connect(&engine.address()).await;
        io.write_all(&encode(&[hello(), call(1, "w_hang", b"[]")]))
            .await
            .unwrap();
        // Wait until the handler runs, then cancel.
        assert!(matches!(
            read_frames(&mut io, 1).await.as_slice(),
            [proto::Frame::Welcome(_)]
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        io.write_all(&encode(&[proto::Frame::Cancel(proto::RequestId(1))]))
            .await
            .unwrap();
        match read_frames(&mut io, 1).await.as_slice() {
            [proto::Frame::Error(e)] => {
                assert_eq!(e.request_id, proto::RequestId(1));
                assert_eq!(e.body.code, proto::ErrorCode::CANCELLED);
            }
            other => panic!("SPEC §10: a CANCEL gets ERROR CANCELLED, got {other:?}"),
        }
        for _ in 0..100 {
            if svc.dropped.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            svc.dropped.load(Ordering::SeqCst),
            "the handler was stopped"
        );
        // The connection goes on.
        io.write_all(&encode(&[call(2, "w_add", b"[1,2]")]))
            .await
            .unwrap();
        match read_frames(&mut io, 1).await.as_slice() {
            [proto::Frame::Reply(r)] => assert_eq!(&r.result[..], b"3"),
            other => panic!("{other:?}"),
        }
        engine.finalize().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_request_id_closes_the_connection_and_leaks_nothing() {
    tokio::time::timeout(LIMIT, async {
        let (engine, svc) = server(|b| b.grace_period(Duration::from_secs(20))).await;
        let mut io = raw_connect(&engine.address()).await;
        io.write_all(&encode(&[
            hello(),
            call(1, "w_hang", b"[]"),
            call(1, "w_add", b"[1,2]"),
        ]))
        .await
        .unwrap();
        let frames = read_to_close(&mut io).await;
        match frames.as_slice() {
            [proto::Frame::Welcome(_), proto::Frame::GoAway(g)] => {
                assert_eq!(g.code, proto::ErrorCode::PROTOCOL_ERROR);
                assert!(g.message.contains("request id"), "{}", g.message);
            }
            other => panic!("expected WELCOME, GOAWAY, got {other:?}"),
        }
        // The running call was stopped with its connection, so nothing is left in flight:
        // finalize does not wait out its 20 s grace period.
        let t = std::time::Instant::now();
        engine.finalize().await;
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(svc.dropped.load(Ordering::SeqCst));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_gets_goaway_limit_exceeded() {
    tokio::time::timeout(LIMIT, async {
        let (engine, _svc) = server(|b| b).await;
        let mut io = raw_connect(&engine.address()).await;
        let mut bytes = encode(&[hello(), call(1, "w_add", b"[1,2]")]);
        // The CALL's payload length (header offset 28) declares ~17 GB with the other
        // lengths: far over the 16 MiB limit.
        let at = bytes.len() - (40 + 5 + 5);
        bytes[at + 28..at + 32].copy_from_slice(&0xffff_ff00u32.to_be_bytes());
        bytes[at + 32..at + 36].copy_from_slice(&0xffff_ff00u32.to_be_bytes());
        io.write_all(&bytes).await.unwrap();
        match read_to_close(&mut io).await.as_slice() {
            [proto::Frame::Welcome(_), proto::Frame::GoAway(g)] => {
                assert_eq!(g.code, proto::ErrorCode::LIMIT_EXCEEDED, "{}", g.message)
            }
            other => panic!("{other:?}"),
        }
        engine.finalize().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_argument_over_the_servers_limit_fails_only_that_call() {
    tokio::time::timeout(LIMIT, async {
        let (engine, _svc) = server(|b| {
            b.limits(proto::Limits {
                max_frame_len: 4096,
                ..proto::Limits::default()
            })
        })
        .await;
        let proxy = Proxy::new(&engine.address()).unwrap();
        let c = SvcClient::new(&proxy, PROVIDER);
        assert_eq!(c.echo("small".into()).await.unwrap(), "small");
        let big = "x".repeat(10_000);
        match c.echo(big).await {
            Err(Error::LimitExceeded { message }) => {
                assert!(message.contains("max_frame_len"), "{message}")
            }
            other => panic!("expected LimitExceeded, got {other:?}"),
        }
        // Nothing was sent: the connection and the calls after it are fine.
        assert!(proxy.is_connected());
        assert_eq!(c.add(2, 3).await.unwrap(), 5);
        engine.finalize().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_before_hello_is_answered() {
    tokio::time::timeout(LIMIT, async {
        let (engine, _svc) = server(|b| b).await;
        let mut io = raw_connect(&engine.address()).await;
        io.write_all(&encode(&[proto::Frame::Ping(*b"early!!!"), hello()]))
            .await
            .unwrap();
        match read_frames(&mut io, 2).await.as_slice() {
            [proto::Frame::Pong(d), proto::Frame::Welcome(_)] => assert_eq!(d, b"early!!!"),
            other => panic!("SPEC §10: PING is answered before HELLO too, got {other:?}"),
        }
        engine.finalize().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_goaway_drains_the_calls_in_flight() {
    tokio::time::timeout(LIMIT, async {
        let (engine, _svc) = server(|b| b).await;
        let mut io = raw_connect(&engine.address()).await;
        io.write_all(&encode(&[
            hello(),
            call(1, "w_work", b"[100]"),
            proto::Frame::GoAway(proto::GoAway {
                last_request_id: proto::RequestId(1),
                code: proto::ErrorCode::NO_ERROR,
                message: String::new(),
            }),
        ]))
        .await
        .unwrap();
        // The call finishes, then the server closes the drained connection.
        match read_to_close(&mut io).await.as_slice() {
            [proto::Frame::Welcome(_), proto::Frame::Reply(r)] => {
                assert_eq!(r.request_id, proto::RequestId(1));
                assert_eq!(&r.result[..], b"100");
            }
            other => panic!("SPEC §10: the call in flight completes, got {other:?}"),
        }
        engine.finalize().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_welcome_naming_a_codec_not_offered_is_refused() {
    tokio::time::timeout(LIMIT, async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            let welcome = proto::Frame::Welcome(proto::Welcome {
                version: proto::VERSION,
                codec: proto::CodecId(200),
                accepted: vec![proto::CodecId(200)],
                limits: proto::Limits::default(),
                extensions: Default::default(),
            });
            s.write_all(&encode(&[welcome])).await.unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
            decode_all(&rest)
        });
        let proxy = Proxy::new(&format!("tcp://{addr}")).unwrap();
        match proxy.connect().await {
            Err(Error::Protocol(e)) => {
                assert_eq!(e.cause(), proto::Cause::Peer);
                assert!(e.to_string().contains("not offered"), "{e}")
            }
            other => panic!("expected a protocol error, got {other:?}"),
        }
        // The client told the server why before closing.
        let told = fake.await.unwrap();
        assert!(
            matches!(told.last(), Some(proto::Frame::GoAway(g)) if g.code == proto::ErrorCode::PROTOCOL_ERROR),
            "{told:?}"
        );
    })
    .await
    .unwrap();
}

#[derive(Default)]
struct Log {
    after: Mutex<Vec<(String, bool)>>,
    count: AtomicUsize,
}

struct Recorder(Arc<Log>);

impl std::ops::Deref for Recorder {
    type Target = Log;
    fn deref(&self) -> &Log {
        &self.0
    }
}

impl CallHook for Recorder {
    fn after(&self, call: &CallInfo<'_>, ok: bool, _elapsed: Duration) {
        self.after
            .lock()
            .unwrap()
            .push((call.method.to_string(), ok));
        self.count.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_hear_after_when_the_answer_is_given() {
    tokio::time::timeout(LIMIT, async {
        let (engine, _svc) = server(|b| b).await;
        let rec = Arc::new(Log::default());
        engine.add_hook(Recorder(rec.clone()));
        let proxy = Proxy::new(&engine.address()).unwrap();
        let c = SvcClient::new(&proxy, PROVIDER);
        // A Responder answering 50 ms later: `after` comes with the answer, not before.
        assert_eq!(c.later(1).await.unwrap(), 2);
        assert_eq!(
            rec.after.lock().unwrap().as_slice(),
            &[("w_later".to_string(), true)]
        );
        // A detached handler that panics: its Responder is dropped unanswered; the caller
        // gets an error and `after` hears a failure.
        assert!(c.later_panics(1).await.is_err());
        for _ in 0..100 {
            if rec.count.load(Ordering::SeqCst) == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            rec.after.lock().unwrap().as_slice(),
            &[
                ("w_later".to_string(), true),
                ("w_later_panics".to_string(), false)
            ]
        );
        engine.finalize().await;
    })
    .await
    .unwrap();
}

/// Sends `bytes` one a second until the server closes the connection, which must be with
/// GOAWAY TIMEOUT; returns how long it took from the first byte.
async fn trickle_until_closed(io: Box<dyn RawIo>, bytes: BytesMut) -> Duration {
    let start = tokio::time::Instant::now();
    let (mut rd, mut wr) = tokio::io::split(io);
    let writer = tokio::spawn(async move {
        for b in bytes.iter() {
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut out = Vec::new();
    let _ = rd.read_to_end(&mut out).await;
    let closed = start.elapsed();
    writer.abort();
    match decode_all(&out).as_slice() {
        [proto::Frame::GoAway(g)] => assert_eq!(g.code, proto::ErrorCode::TIMEOUT),
        other => panic!("expected GOAWAY TIMEOUT, got {other:?}"),
    }
    closed
}

/// A fresh `mem://` name per test.
fn mem_name(test: &str) -> String {
    format!("mem://wire-rules-{test}")
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_with_goaway_timeout() {
    let addr = mem_name("idle");
    let (engine, _svc) = server_at(&addr, |b| {
        b.idle_timeout(Some(Duration::from_secs(30)))
            .keepalive(None)
    })
    .await;
    let mut io = raw_connect(&engine.address()).await;
    io.write_all(&encode(&[hello(), call(1, "w_add", b"[1,2]")]))
        .await
        .unwrap();
    assert_eq!(read_frames(&mut io, 2).await.len(), 2);
    let start = tokio::time::Instant::now();
    let frames = read_to_close(&mut io).await;
    let idle = start.elapsed();
    match frames.as_slice() {
        [proto::Frame::GoAway(g)] => assert_eq!(g.code, proto::ErrorCode::TIMEOUT),
        other => panic!("expected GOAWAY TIMEOUT, got {other:?}"),
    }
    // At least the idle time; at most twice (the check restarts after the last call).
    assert!(
        idle >= Duration::from_secs(30) && idle <= Duration::from_secs(61),
        "{idle:?}"
    );
    // Proxies reconnect on their next call.
    let proxy = Proxy::new(&engine.address()).unwrap();
    assert_eq!(SvcClient::new(&proxy, PROVIDER).add(1, 1).await.unwrap(), 2);
    engine.finalize().await;
}

#[tokio::test(start_paused = true)]
async fn a_one_byte_per_second_handshake_is_closed_at_its_deadline() {
    let addr = mem_name("slow-hello");
    let (engine, _svc) =
        server_at(&addr, |b| b.handshake_timeout(Some(Duration::from_secs(5)))).await;
    let io = raw_connect(&engine.address()).await;
    let closed = trickle_until_closed(io, encode(&[hello()])).await;
    // Closed at the deadline, not restarted by each byte.
    assert!(
        closed >= Duration::from_secs(5) && closed < Duration::from_secs(6),
        "{closed:?}"
    );
    engine.finalize().await;
}

#[tokio::test(start_paused = true)]
async fn a_frame_trickled_after_the_handshake_is_closed_at_the_frame_deadline() {
    let addr = mem_name("slow-frame");
    let (engine, _svc) = server_at(&addr, |b| {
        b.frame_timeout(Some(Duration::from_secs(10)))
            .idle_timeout(None)
    })
    .await;
    let mut io = raw_connect(&engine.address()).await;
    io.write_all(&encode(&[hello()])).await.unwrap();
    assert_eq!(read_frames(&mut io, 1).await.len(), 1);
    let closed = trickle_until_closed(io, encode(&[call(1, "w_add", b"[1,2]")])).await;
    assert!(
        closed >= Duration::from_secs(10) && closed < Duration::from_secs(11),
        "{closed:?}"
    );
    engine.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_declaring_large_frames_cannot_pin_more_than_the_server_wide_budget() {
    tokio::time::timeout(LIMIT, async {
        // 3 MiB for every connection together; each peer declares a 2 MiB frame.
        let (engine, _svc) = server(|b| b.max_buffered(3 << 20)).await;
        let declared = |id: u64| {
            let args = vec![b' '; 2 << 20];
            let f = proto::Frame::Call(proto::Call {
                request_id: proto::RequestId(id),
                provider: proto::ProviderId(PROVIDER),
                codec: proto::CodecId::JSON,
                oneway: false,
                upload: false,
                method: proto::Method::new(Bytes::from_static(b"w_echo")).unwrap(),
                annotations: proto::Annotations::new(),
                args: Bytes::from(args),
                kwargs: Bytes::new(),
                attachment: Bytes::new(),
            });
            encode(&[f])
        };
        let first = declared(1);
        let mut a = raw_connect(&engine.address()).await;
        a.write_all(&encode(&[hello()])).await.unwrap();
        a.write_all(&first[..1000]).await.unwrap();
        assert_eq!(read_frames(&mut a, 1).await.len(), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The second peer's frame does not fit beside the first: its connection closes.
        let mut b = raw_connect(&engine.address()).await;
        b.write_all(&encode(&[hello()])).await.unwrap();
        b.write_all(&declared(1)[..1000]).await.unwrap();
        match read_to_close(&mut b).await.as_slice() {
            [proto::Frame::Welcome(_), proto::Frame::GoAway(g)] => {
                assert_eq!(g.code, proto::ErrorCode::LIMIT_EXCEEDED);
                assert!(g.message.contains("receive buffers"), "{}", g.message);
            }
            other => panic!("{other:?}"),
        }
        // The first completes its frame and gets its answer (a string of 2 MiB of spaces
        // is not valid JSON arguments: a BAD_ARGUMENTS error, which is an answer).
        a.write_all(&first[1000..]).await.unwrap();
        match read_frames(&mut a, 1).await.as_slice() {
            [proto::Frame::Error(e)] => assert_eq!(e.body.code, proto::ErrorCode::BAD_ARGUMENTS),
            [proto::Frame::Reply(_)] => {}
            other => panic!("{other:?}"),
        }
        engine.finalize().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_typed_keep_their_source_and_say_who_caused_them() {
    tokio::time::timeout(LIMIT, async {
        // A port nobody listens on: a transport error whose source is the I/O error.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let e = Proxy::new(&format!("tcp://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::Transport {
                    source: Some(_),
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(e.cause(), proto::Cause::Peer);
        assert!(e.is_retryable());
        // A local limit: the protocol error is kept, caused here, and the message says what
        // to do.
        let (engine, _svc) = server(|b| {
            b.limits(proto::Limits {
                max_frame_len: 4096,
                ..proto::Limits::default()
            })
        })
        .await;
        let proxy = Proxy::new(&engine.address()).unwrap();
        let e = SvcClient::new(&proxy, PROVIDER)
            .echo("y".repeat(5000))
            .await
            .unwrap_err();
        assert_eq!(e.cause(), proto::Cause::Local);
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("send less per call"), "{e}");
        engine.finalize().await;
    })
    .await
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_server_that_never_answers_the_hello_fails_the_connect_at_the_handshake_deadline() {
    let a: wirecall_transport::Address = mem_name("silent").parse().unwrap();
    let listener = wirecall_transport::Listener::bind(&a).await.unwrap();
    let addr = listener.local_addr().to_string();
    let silent = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        // Hold the connection open without answering.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(s);
    });
    let start = tokio::time::Instant::now();
    let e = Proxy::new(&addr).unwrap().connect().await.unwrap_err();
    assert!(
        matches!(&e, Error::Transport { message, .. } if message.contains("handshake")),
        "{e:?}"
    );
    assert_eq!(e.cause(), proto::Cause::Peer);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
        "{waited:?}"
    );
    silent.abort();
}

#[tokio::test(start_paused = true)]
async fn a_client_that_died_during_a_long_call_is_noticed_by_the_keepalive() {
    let addr = mem_name("keepalive");
    let (engine, svc) = server_at(&addr, |b| {
        b.keepalive(Some(Duration::from_secs(10)))
            .idle_timeout(None)
    })
    .await;
    let mut io = raw_connect(&engine.address()).await;
    io.write_all(&encode(&[hello(), call(1, "w_hang", b"[]")]))
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    // The client never answers: a PING after 10 s, then GOAWAY TIMEOUT when the 30 s ping
    // timeout passes, and the handler of the call is stopped.
    match read_to_close(&mut io).await.as_slice() {
        [proto::Frame::Welcome(_), proto::Frame::Ping(_), proto::Frame::GoAway(g)] => {
            assert_eq!(g.code, proto::ErrorCode::TIMEOUT)
        }
        other => panic!("{other:?}"),
    }
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(40) && waited < Duration::from_secs(41),
        "{waited:?}"
    );
    for _ in 0..100 {
        if svc.dropped.load(Ordering::SeqCst) {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(svc.dropped.load(Ordering::SeqCst));
    engine.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_method_error_lists_the_exposed_names_in_its_typed_field() {
    tokio::time::timeout(LIMIT, async {
        let (engine, _svc) = server(|b| b).await;
        let mut io = raw_connect(&engine.address()).await;
        io.write_all(&encode(&[hello(), call(1, "w_nope", b"[]")]))
            .await
            .unwrap();
        match read_frames(&mut io, 2).await.as_slice() {
            [proto::Frame::Welcome(_), proto::Frame::Error(e)] => {
                assert_eq!(e.body.code, proto::ErrorCode::UNKNOWN_METHOD);
                assert!(e.body.names.contains(&"w_add".to_string()), "{:?}", e.body);
                assert!(e.body.names.contains(&"w_echo".to_string()), "{:?}", e.body);
                assert!(e.body.trace.is_empty(), "names are not text in the trace");
                assert!(e.body.type_name.is_empty());
            }
            other => panic!("{other:?}"),
        }
        // And the proxy turns them into its typed error.
        let proxy = Proxy::new(&engine.address()).unwrap();
        match proxy
            .call_on(PROVIDER, "w_nope")
            .unwrap()
            .call::<()>()
            .await
        {
            Err(Error::NoSuchMethod { method, exposed }) => {
                assert_eq!(method, "w_nope");
                assert!(exposed.contains(&"w_add".to_string()), "{exposed:?}");
            }
            other => panic!("{other:?}"),
        }
        engine.finalize().await;
    })
    .await
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn finalize_drains_for_the_grace_period_then_gives_up_the_calls_left() {
    let addr = mem_name("drain");
    let (engine, svc) = server_at(&addr, |b| b.grace_period(Duration::from_secs(2))).await;
    let proxy = Proxy::new(&engine.address()).unwrap();
    let c = SvcClient::new(&proxy, PROVIDER);
    assert_eq!(c.add(1, 1).await.unwrap(), 2);
    let quick = tokio::spawn({
        let c = SvcClient::new(&proxy, PROVIDER);
        async move { c.work(500).await }
    });
    let stuck = tokio::spawn({
        let c = SvcClient::new(&proxy, PROVIDER);
        async move { c.hang().await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let start = tokio::time::Instant::now();
    engine.finalize().await;
    let took = start.elapsed();
    // The call that finishes within the grace gets its answer; the one still running at
    // its end is answered SHUTTING_DOWN (retryable elsewhere) and its handler stopped.
    assert_eq!(quick.await.unwrap().unwrap(), 500);
    match stuck.await.unwrap() {
        Err(e @ Error::ShuttingDown { .. }) => assert!(e.is_retryable()),
        other => panic!("{other:?}"),
    }
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(3),
        "{took:?}"
    );
    for _ in 0..100 {
        if svc.dropped.load(Ordering::SeqCst) {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(svc.dropped.load(Ordering::SeqCst));
}
