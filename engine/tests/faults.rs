//! Bad input and faults: each affects only its own call or connection, produces its specific
//! error, and the next call on the same proxy succeeds. Real tcp and unix sockets.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirecall::{CallContext, CallHook, CallInfo, CodecId, Engine, Error, Proxy};
use wirecall_protocol as proto;

mod common;
use common::{decode_all, raw_connect, RawIo, SetOnDrop};

const LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Point {
    x: i32,
    y: i32,
    label: String,
}

#[derive(Default)]
struct Probe {
    cancelled: Arc<AtomicBool>,
    completed: Arc<AtomicBool>,
}

#[derive(Debug)]
struct Outer(std::io::Error);
impl std::fmt::Display for Outer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("could not load the configuration")
    }
}
impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[wirecall::provider(service = "t")]
impl Probe {
    #[remote]
    fn add(&self, a: i32, b: i32) -> i32 {
        a + b
    }

    #[remote]
    fn echo(&self, p: Point) -> Point {
        p
    }

    #[remote]
    fn greet(&self, first: String, last: String, punct: Option<String>) -> String {
        format!("{first} {last}{}", punct.unwrap_or_default())
    }

    #[remote]
    fn boom(&self) -> u32 {
        panic!("kaboom (sync)")
    }

    #[remote]
    async fn boom_async(&self) -> u32 {
        panic!("kaboom (async)")
    }

    #[remote]
    fn fail(&self) -> Result<u32, Outer> {
        Err(Outer(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "config.toml missing",
        )))
    }

    #[remote]
    async fn delayed(&self, i: u32, ms: u64, ctx: CallContext) -> (u32, u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        (i, ctx.connection().id())
    }

    #[remote]
    async fn hang(&self) -> u32 {
        let _guard = SetOnDrop(self.cancelled.clone());
        tokio::time::sleep(Duration::from_secs(60)).await;
        0
    }

    #[remote]
    async fn work(&self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.completed.store(true, Ordering::SeqCst);
        ms
    }

    #[remote]
    fn peer(&self, ctx: CallContext) -> String {
        format!(
            "{}|{}",
            ctx.peer(),
            String::from_utf8_lossy(ctx.annotation("user").unwrap_or_default())
        )
    }
}

struct Started {
    engine: Engine,
    probe: Arc<Probe>,
    _dir: Option<tempfile::TempDir>,
}

async fn start(kind: &str) -> Started {
    start_with(kind, |b| b).await
}

async fn start_with(
    kind: &str,
    f: impl FnOnce(wirecall::ServerBuilder) -> wirecall::ServerBuilder,
) -> Started {
    let (addr, dir) = match kind {
        "tcp" => ("tcp://127.0.0.1:0".to_string(), None),
        _ => {
            let dir = tempfile::tempdir().unwrap();
            let a = format!("unix://{}", dir.path().join("s.sock").display());
            (a, Some(dir))
        }
    };
    let engine = f(Engine::server(addr)).start().await.unwrap();
    let probe = Arc::new(Probe::default());
    engine.register_arc(probe.clone(), 3).unwrap();
    Started {
        engine,
        probe,
        _dir: dir,
    }
}

fn client(p: &Proxy) -> ProbeClient {
    ProbeClient::new(p, 3)
}

fn hello_bytes() -> BytesMut {
    let mut b = BytesMut::new();
    proto::Frame::Hello(proto::Hello {
        versions: vec![proto::VERSION],
        codecs: vec![proto::CodecId::JSON],
        limits: proto::Limits::default(),
        extensions: Default::default(),
    })
    .encode(&mut b)
    .unwrap();
    b
}

fn call_bytes(id: u64) -> BytesMut {
    let mut b = BytesMut::new();
    proto::Frame::Call(proto::Call {
        request_id: proto::RequestId(id),
        provider: proto::ProviderId(3),
        codec: proto::CodecId::JSON,
        oneway: false,
        upload: false,
        method: proto::Method::new(Bytes::from_static(b"t_add")).unwrap(),
        annotations: proto::Annotations::new(),
        args: Bytes::from_static(b"[1,2]"),
        kwargs: Bytes::new(),
        attachment: Bytes::new(),
    })
    .encode(&mut b)
    .unwrap();
    b
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_to_close(io: &mut Box<dyn RawIo>) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), io.read_to_end(&mut out))
        .await
        .expect("the server should close the connection");
    out
}

async fn check_healthy(engine: &Engine, proxy: &Proxy) {
    assert_eq!(client(proxy).add(2, 3).await.unwrap(), 5);
    let fresh = Proxy::new(&engine.address()).unwrap();
    assert_eq!(client(&fresh).add(20, 22).await.unwrap(), 42);
}

async fn bad_input(kind: &str) {
    let s = start(kind).await;
    let addr = s.engine.address();
    let good = Proxy::new(&addr).unwrap();
    good.connect().await.unwrap();

    // Garbage instead of a handshake: the server closes that connection only.
    let mut io = raw_connect(&addr).await;
    io.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    read_to_close(&mut io).await;
    check_healthy(&s.engine, &good).await;

    // Garbage after a good handshake: GOAWAY with a protocol error, then close.
    let mut io = raw_connect(&addr).await;
    io.write_all(&hello_bytes()).await.unwrap();
    io.write_all(&call_bytes(1)).await.unwrap();
    io.write_all(&[0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3])
        .await
        .unwrap();
    let got = read_to_close(&mut io).await;
    let frames = decode_all(&got);
    // SPEC §10: a fatal error closes the connection with GOAWAY PROTOCOL_ERROR naming the
    // last call received; calls still in flight on it are lost. The good call is answered
    // when the server read and handled it before the garbage arrived (another read), never
    // after the GOAWAY.
    match frames.as_slice() {
        [proto::Frame::Welcome(_), proto::Frame::GoAway(g)]
        | [proto::Frame::Welcome(_), proto::Frame::Reply(_), proto::Frame::GoAway(g)] => {
            assert_eq!(g.code, proto::ErrorCode::PROTOCOL_ERROR);
            assert_eq!(g.last_request_id, proto::RequestId(1));
            assert!(g.message.contains("magic"), "{}", g.message);
        }
        other => panic!("expected WELCOME then GOAWAY, got {other:?}"),
    }
    check_healthy(&s.engine, &good).await;

    // Truncated frame, then disconnect mid-frame.
    let mut io = raw_connect(&addr).await;
    io.write_all(&hello_bytes()).await.unwrap();
    let call = call_bytes(1);
    io.write_all(&call[..call.len() - 3]).await.unwrap();
    io.flush().await.unwrap();
    drop(io);
    check_healthy(&s.engine, &good).await;

    // Oversized frame: the declared payload length exceeds the limit; refused before the
    // server allocates or reads the body.
    let mut io = raw_connect(&addr).await;
    io.write_all(&hello_bytes()).await.unwrap();
    let mut call = call_bytes(1);
    call[28..32].copy_from_slice(&0xffff_0000u32.to_be_bytes());
    io.write_all(&call).await.unwrap();
    let got = read_to_close(&mut io).await;
    let mut buf = BytesMut::from(&got[..]);
    let mut dec = proto::FrameDecoder::default();
    let mut goaway = None;
    while let Ok(Some(f)) = dec.decode(&mut buf) {
        if let proto::Frame::GoAway(g) = f {
            goaway = Some(g);
        }
    }
    let g = goaway.expect("a GOAWAY before closing");
    // SPEC §8: frame_too_large is answered GOAWAY LIMIT_EXCEEDED (it was PROTOCOL_ERROR,
    // chosen by matching the message's text).
    assert_eq!(g.code, proto::ErrorCode::LIMIT_EXCEEDED, "{}", g.message);
    assert!(g.message.contains("exceeds the limit"), "{}", g.message);
    check_healthy(&s.engine, &good).await;

    // A handshake that never finishes (half a HELLO) does not hurt others either.
    let mut io = raw_connect(&addr).await;
    io.write_all(&hello_bytes()[..10]).await.unwrap();
    check_healthy(&s.engine, &good).await;
    drop(io);

    s.engine.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_affects_only_its_connection_tcp() {
    tokio::time::timeout(LIMIT, bad_input("tcp")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_affects_only_its_connection_unix() {
    tokio::time::timeout(LIMIT, bad_input("unix"))
        .await
        .unwrap();
}

async fn call_errors(kind: &str) {
    let s = start_with(kind, |b| {
        b.accept([CodecId::JSON, CodecId::MSGPACK, CodecId::POSTCARD])
    })
    .await;
    let proxy = Proxy::new(&s.engine.address()).unwrap();
    let c = client(&proxy);

    // Refused codec: names the codec and lists the accepted ones; connection stays usable.
    let cbor = client(&proxy.clone().codec(CodecId::CBOR));
    match cbor.add(1, 2).await {
        Err(Error::CodecRefused { codec, accepted }) => {
            assert_eq!(codec, "cbor");
            assert_eq!(accepted, vec!["json", "msgpack", "postcard"]);
        }
        other => panic!("expected CodecRefused, got {other:?}"),
    }
    assert_eq!(c.add(1, 2).await.unwrap(), 3);

    // Unknown method: names what is exposed.
    match proxy.call_on(3, "t_nope").unwrap().call::<u32>().await {
        Err(Error::NoSuchMethod { method, exposed }) => {
            assert_eq!(method, "t_nope");
            assert!(exposed.contains(&"t_add".to_string()), "{exposed:?}");
            assert!(exposed.contains(&"t_echo".to_string()), "{exposed:?}");
        }
        other => panic!("expected NoSuchMethod, got {other:?}"),
    }
    assert_eq!(c.add(1, 2).await.unwrap(), 3);

    // Unknown provider.
    match proxy
        .call_on(99, "t_add")
        .unwrap()
        .arg(1)
        .arg(2)
        .call::<i32>()
        .await
    {
        Err(Error::NoSuchProvider {
            provider_id,
            message,
        }) => {
            assert_eq!(provider_id, 99);
            assert!(message.contains('3'), "{message}");
        }
        other => panic!("expected NoSuchProvider, got {other:?}"),
    }

    // Wrong argument types and counts.
    match proxy
        .call_on(3, "t_add")
        .unwrap()
        .arg("one")
        .arg(2)
        .call::<i32>()
        .await
    {
        Err(Error::BadArguments { message }) => {
            assert!(message.contains("argument 1 (`a`)"), "{message}")
        }
        other => panic!("expected BadArguments, got {other:?}"),
    }
    match proxy
        .call_on(3, "t_add")
        .unwrap()
        .arg(1)
        .call::<i32>()
        .await
    {
        Err(Error::BadArguments { message }) => assert!(message.contains("`b`"), "{message}"),
        other => panic!("expected BadArguments, got {other:?}"),
    }
    match proxy
        .call_on(3, "t_add")
        .unwrap()
        .arg(1)
        .arg(2)
        .arg(3)
        .call::<i32>()
        .await
    {
        Err(Error::BadArguments { message }) => {
            assert!(message.contains("too many"), "{message}")
        }
        other => panic!("expected BadArguments, got {other:?}"),
    }
    assert_eq!(c.add(1, 2).await.unwrap(), 3);

    // Panicking handlers, sync and async: an error, and the server keeps serving.
    for r in [c.boom().await, c.boom_async().await] {
        match r {
            Err(Error::Remote(e)) => {
                assert_eq!(e.type_name, "panic");
                assert!(e.message.contains("kaboom"), "{}", e.message);
            }
            other => panic!("expected a remote panic, got {other:?}"),
        }
        assert_eq!(c.add(1, 2).await.unwrap(), 3);
    }

    // An application error with its type name and source chain.
    match c.fail().await {
        Err(Error::Remote(e)) => {
            assert!(e.type_name.ends_with("Outer"), "{}", e.type_name);
            assert_eq!(e.message, "could not load the configuration");
            assert!(e.trace.contains("config.toml missing"), "{}", e.trace);
        }
        other => panic!("expected a remote error, got {other:?}"),
    }

    // Timeout: the call fails with Timeout; the server drops the work; the proxy works next.
    let impatient = client(&proxy.clone().timeout(Duration::from_millis(50)));
    let err = impatient.work(400).await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(impatient.add(1, 2).await.unwrap(), 3);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !s.probe.completed.load(Ordering::SeqCst),
        "the server should have dropped the timed-out work"
    );

    // Keyword arguments, also with postcard (not self-describing).
    for codec in [CodecId::JSON, CodecId::MSGPACK, CodecId::POSTCARD] {
        let p = proxy.clone().codec(codec);
        let r: String = p
            .call_on(3, "t_greet")
            .unwrap()
            .kwarg("last", "Dorier")
            .arg("Matthieu")
            .kwarg("punct", Some("!"))
            .call()
            .await
            .unwrap();
        assert_eq!(r, "Matthieu Dorier!", "with {codec}");
        match p
            .call_on(3, "t_greet")
            .unwrap()
            .arg("a")
            .arg("b")
            .arg(None::<String>)
            .kwarg("first", "x")
            .call::<String>()
            .await
        {
            Err(Error::BadArguments { message }) => {
                assert!(
                    message.contains("both positionally and by keyword"),
                    "{message}"
                )
            }
            other => panic!("expected BadArguments, got {other:?}"),
        }
        match p
            .call_on(3, "t_greet")
            .unwrap()
            .arg("a")
            .kwarg("nick", "b")
            .call::<String>()
            .await
        {
            Err(Error::BadArguments { message }) => {
                assert!(
                    message.contains("unexpected keyword argument `nick`"),
                    "{message}"
                )
            }
            other => panic!("expected BadArguments, got {other:?}"),
        }
    }
    assert_eq!(c.add(1, 2).await.unwrap(), 3);
    s.engine.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_errors_are_specific_and_recoverable_tcp() {
    tokio::time::timeout(LIMIT, call_errors("tcp"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_errors_are_specific_and_recoverable_unix() {
    tokio::time::timeout(LIMIT, call_errors("unix"))
        .await
        .unwrap();
}

async fn many_in_flight(kind: &str) {
    let s = start(kind).await;
    let proxy = Proxy::new(&s.engine.address()).unwrap();
    proxy.connect().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..64u32 {
        let c = client(&proxy);
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            // Earlier calls sleep longer, so replies come back in reverse order.
            let r = c.delayed(i, u64::from(64 - i) * 3).await.unwrap();
            order.lock().unwrap().push(r.0);
            r
        }));
    }
    let mut conns = std::collections::HashSet::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let (got, conn) = t.await.unwrap();
        assert_eq!(got as usize, i);
        conns.insert(conn);
    }
    assert_eq!(conns.len(), 1, "all 64 calls shared one connection");
    let order = order.lock().unwrap().clone();
    assert_eq!(order.len(), 64);
    let sorted: Vec<u32> = (0..64).collect();
    assert_ne!(order, sorted, "replies should arrive out of order");
    assert!(order[0] > 32, "the shortest sleeps finish first: {order:?}");
    s.engine.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_in_flight_out_of_order_tcp() {
    tokio::time::timeout(LIMIT, many_in_flight("tcp"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_in_flight_out_of_order_unix() {
    tokio::time::timeout(LIMIT, many_in_flight("unix"))
        .await
        .unwrap();
}

/// Reading passes between callers and the connection's reader task: the lone caller that
/// reads for itself is cancelled while others wait, calls that all get cancelled leave
/// nobody waiting, and in every case the live calls get their replies and the next call works.
async fn cancellations_mixed_with_live_calls(kind: &str) {
    let s = start(kind).await;
    let proxy = Proxy::new(&s.engine.address()).unwrap();
    proxy.connect().await.unwrap();
    for round in 0..5u32 {
        // The first call is alone, so it reads the connection itself; it gives up (and so
        // hands reading on) while the others below still wait.
        let c = client(&proxy);
        let first = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_millis(30), c.delayed(0, 400)).await
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut live = Vec::new();
        let mut doomed = Vec::new();
        for i in 0..24u32 {
            let c = client(&proxy);
            if i % 3 == 0 {
                doomed.push(tokio::spawn(async move {
                    tokio::time::timeout(Duration::from_millis(10 + u64::from(i)), c.hang()).await
                }));
            } else {
                live.push(tokio::spawn(async move {
                    c.delayed(i, 40 + u64::from(i % 7) * 5).await
                }));
            }
        }
        assert!(
            first.await.unwrap().is_err(),
            "round {round}: the first call gives up"
        );
        for t in doomed {
            assert!(t.await.unwrap().is_err(), "round {round}: hang gives up");
        }
        for t in live {
            t.await.unwrap().unwrap();
        }
        // Every call of a burst gives up: nobody waits any more, and reading stops.
        let mut all = Vec::new();
        for _ in 0..8 {
            let c = client(&proxy);
            all.push(tokio::spawn(async move {
                tokio::time::timeout(Duration::from_millis(15), c.hang()).await
            }));
        }
        for t in all {
            assert!(t.await.unwrap().is_err());
        }
        // A lone call afterwards reads its own reply.
        assert_eq!(
            client(&proxy).add(round as i32, 1).await.unwrap(),
            round as i32 + 1
        );
    }
    s.engine.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellations_mixed_with_live_calls_tcp() {
    tokio::time::timeout(LIMIT, cancellations_mixed_with_live_calls("tcp"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn cancellations_mixed_with_live_calls_unix() {
    tokio::time::timeout(LIMIT, cancellations_mixed_with_live_calls("unix"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_future_cancels_the_call() {
    tokio::time::timeout(LIMIT, async {
        let s = start("tcp").await;
        let proxy = Proxy::new(&s.engine.address()).unwrap();
        let c = client(&proxy);
        let r = tokio::time::timeout(Duration::from_millis(100), c.hang()).await;
        assert!(r.is_err(), "the call should still be running");
        for _ in 0..200 {
            if s.probe.cancelled.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            s.probe.cancelled.load(Ordering::SeqCst),
            "the server should abort the handler on CANCEL"
        );
        assert_eq!(c.add(1, 1).await.unwrap(), 2);
        s.engine.finalize().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_builtin_codec_round_trips_a_struct() {
    tokio::time::timeout(LIMIT, async {
        let s = start("tcp").await;
        let proxy = Proxy::new(&s.engine.address()).unwrap();
        let p = Point {
            x: -3,
            y: 7,
            label: "héllo \"world\"".into(),
        };
        for codec in CodecId::BUILTIN {
            let c = client(&proxy.clone().codec(codec));
            assert_eq!(c.echo(p.clone()).await.unwrap(), p, "with {codec}");
            assert_eq!(c.add(-1, 1).await.unwrap(), 0, "with {codec}");
        }
        s.engine.finalize().await;
    })
    .await
    .unwrap();
}

struct Audit {
    after: Arc<AtomicUsize>,
}

impl CallHook for Audit {
    fn before(&self, call: &CallInfo<'_>) -> Result<(), String> {
        if call.method == "t_boom" {
            Err("t_boom is not allowed for this caller".into())
        } else {
            Ok(())
        }
    }
    fn after(&self, _call: &CallInfo<'_>, _ok: bool, _elapsed: Duration) {
        self.after.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_context_and_annotations() {
    tokio::time::timeout(LIMIT, async {
        let s = start("tcp").await;
        let after = Arc::new(AtomicUsize::new(0));
        s.engine.add_hook(Audit {
            after: after.clone(),
        });
        let proxy = Proxy::new(&s.engine.address())
            .unwrap()
            .annotation("user", "ada");
        let c = client(&proxy);
        match c.boom().await {
            Err(Error::PermissionDenied { message }) => {
                assert!(message.contains("not allowed"), "{message}")
            }
            other => panic!("expected PermissionDenied, got {other:?}"),
        }
        assert_eq!(c.add(1, 2).await.unwrap(), 3);
        assert_eq!(c.delayed(1, 1).await.unwrap().0, 1);
        let peer = c.peer().await.unwrap();
        assert!(peer.starts_with("tcp://127.0.0.1:"), "{peer}");
        assert!(peer.ends_with("|ada"), "{peer}");
        assert_eq!(after.load(Ordering::SeqCst), 3);
        s.engine.finalize().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_sends_goaway_and_refuses_new_work() {
    tokio::time::timeout(LIMIT, async {
        let s = start("tcp").await;
        let proxy = Proxy::new(&s.engine.address()).unwrap();
        let c = client(&proxy);
        // A call in flight when finalize starts completes within the grace period.
        let slow = tokio::spawn({
            let c = c.clone();
            async move { c.work(200).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.engine.finalize().await;
        assert_eq!(slow.await.unwrap().unwrap(), 200);
        s.engine.wait_for_finalize().await;
        let err = c.add(1, 2).await.unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
        // A second finalize returns at once.
        s.engine.finalize().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_shutdown_is_off_by_default() {
    tokio::time::timeout(LIMIT, async {
        let s = start("tcp").await;
        let proxy = Proxy::new(&s.engine.address()).unwrap();
        match proxy.shutdown_server(None).await {
            Err(Error::PermissionDenied { message }) => {
                assert!(message.contains("disabled"), "{message}")
            }
            other => panic!("expected PermissionDenied, got {other:?}"),
        }
        assert!(!s.engine.is_finalizing());
        s.engine.enable_remote_shutdown("t0ken").unwrap();
        proxy.shutdown_server(Some("t0ken")).await.unwrap();
        s.engine.wait_for_finalize().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_ids_and_registration_errors() {
    let s = start("tcp").await;
    let err = s.engine.register_provider(Probe::default(), 3).unwrap_err();
    assert!(err.to_string().contains("already taken"), "{err}");
    let err = s
        .engine
        .register_provider(Probe::default(), wirecall::DAEMON_PROVIDER_ID)
        .unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
    // Several instances of the same provider under different ids.
    s.engine.register_provider(Probe::default(), 4).unwrap();
    let proxy = Proxy::new(&s.engine.address()).unwrap();
    assert_eq!(ProbeClient::new(&proxy, 4).add(1, 1).await.unwrap(), 2);
    let meta = proxy.metadata().await.unwrap();
    let ids: Vec<u16> = meta.providers.iter().map(|p| p.provider_id).collect();
    assert_eq!(ids, vec![3, 4]);
    assert!(proxy.has_method(4, "t_add").await.unwrap());
    assert!(!proxy.has_method(4, "t_missing").await.unwrap());
    // Registry changes reach connections that are already open.
    assert!(s.engine.deregister_provider(4));
    assert!(!s.engine.deregister_provider(4));
    match ProbeClient::new(&proxy, 4).add(1, 1).await {
        Err(Error::NoSuchProvider { .. }) => {}
        other => panic!("expected NoSuchProvider after deregistering, got {other:?}"),
    }
    assert_eq!(client(&proxy).add(2, 2).await.unwrap(), 4);
    s.engine.register_provider(Probe::default(), 5).unwrap();
    assert_eq!(ProbeClient::new(&proxy, 5).add(2, 3).await.unwrap(), 5);
    s.engine.finalize().await;
}

/// A provider whose instances tell themselves apart.
struct Named(&'static str);

#[wirecall::provider(service = "n")]
impl Named {
    #[remote]
    fn who(&self) -> String {
        self.0.to_owned()
    }
}

/// The server keeps the method a connection's last direct call reached: calls of the same
/// name to other providers, and to a provider registered again under the same id, still
/// reach their own instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_calls_of_one_method_name_reach_each_providers_own_instance() {
    for kind in ["tcp", "unix"] {
        let s = start(kind).await;
        s.engine.register_provider(Named("ten"), 10).unwrap();
        s.engine.register_provider(Named("eleven"), 11).unwrap();
        let proxy = Proxy::new(&s.engine.address()).unwrap();
        let (ten, eleven) = (NamedClient::new(&proxy, 10), NamedClient::new(&proxy, 11));
        for _ in 0..3 {
            assert_eq!(ten.who().await.unwrap(), "ten", "{kind}");
            assert_eq!(ten.who().await.unwrap(), "ten", "{kind}");
            assert_eq!(eleven.who().await.unwrap(), "eleven", "{kind}");
        }
        // The same id, another instance, while the connection stays open.
        assert!(s.engine.deregister_provider(11));
        s.engine.register_provider(Named("new eleven"), 11).unwrap();
        // Twice: the first call after the change takes the usual way, the second the kept one.
        assert_eq!(eleven.who().await.unwrap(), "new eleven", "{kind}");
        assert_eq!(eleven.who().await.unwrap(), "new eleven", "{kind}");
        assert_eq!(ten.who().await.unwrap(), "ten", "{kind}");
        assert_eq!(eleven.who().await.unwrap(), "new eleven", "{kind}");
        s.engine.finalize().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_client_does_not_hold_up_finalize() {
    tokio::time::timeout(LIMIT, async {
        let s = start("tcp").await;
        let mut io = raw_connect(&s.engine.address()).await;
        io.write_all(&hello_bytes()).await.unwrap();
        let mut b = BytesMut::new();
        proto::Frame::Call(proto::Call {
            request_id: proto::RequestId(1),
            provider: proto::ProviderId(3),
            codec: proto::CodecId::JSON,
            oneway: false,
            upload: false,
            method: proto::Method::new(Bytes::from_static(b"t_hang")).unwrap(),
            annotations: proto::Annotations::new(),
            args: Bytes::from_static(b"[]"),
            kwargs: Bytes::new(),
            attachment: Bytes::new(),
        })
        .encode(&mut b)
        .unwrap();
        io.write_all(&b).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(io);
        // The handler is aborted with its connection...
        for _ in 0..200 {
            if s.probe.cancelled.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(s.probe.cancelled.load(Ordering::SeqCst));
        // ...and finalize does not wait out the 5 s grace period for it.
        let t = std::time::Instant::now();
        s.engine.finalize().await;
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_refusal_ping_and_wrong_direction_frames() {
    tokio::time::timeout(LIMIT, async {
        let s = start_with("tcp", |b| b.accept([CodecId::JSON, CodecId::MSGPACK])).await;
        let addr = s.engine.address();

        // No codec in common: REFUSE names the accepted set, then the server closes.
        let mut io = raw_connect(&addr).await;
        let mut b = BytesMut::new();
        proto::Frame::Hello(proto::Hello {
            versions: vec![proto::VERSION],
            codecs: vec![proto::CodecId::CBOR, proto::CodecId::POSTCARD],
            limits: proto::Limits::default(),
            extensions: Default::default(),
        })
        .encode(&mut b)
        .unwrap();
        io.write_all(&b).await.unwrap();
        let frames = decode_all(&read_to_close(&mut io).await);
        match frames.as_slice() {
            [proto::Frame::Refuse(r)] => {
                assert_eq!(r.code, proto::ErrorCode::NO_COMMON_CODEC);
                assert_eq!(
                    r.accepted,
                    vec![proto::CodecId::JSON, proto::CodecId::MSGPACK]
                );
                let m = r.message.to_lowercase();
                assert!(
                    m.contains("cbor") && m.contains("postcard"),
                    "{}",
                    r.message
                );
            }
            other => panic!("expected one REFUSE, got {other:?}"),
        }

        // PING is answered with PONG echoing the bytes; a REPLY from a client is a protocol
        // error (GOAWAY, then close).
        let mut io = raw_connect(&addr).await;
        io.write_all(&hello_bytes()).await.unwrap();
        let mut b = BytesMut::new();
        proto::Frame::Ping(*b"12345678").encode(&mut b).unwrap();
        proto::Frame::Reply(proto::Reply {
            request_id: proto::RequestId(5),
            codec: proto::CodecId::JSON,
            stream: false,
            annotations: proto::Annotations::new(),
            result: Bytes::from_static(b"1"),
            attachment: Bytes::new(),
        })
        .encode(&mut b)
        .unwrap();
        io.write_all(&b).await.unwrap();
        let frames = decode_all(&read_to_close(&mut io).await);
        assert!(
            matches!(frames.first(), Some(proto::Frame::Welcome(_))),
            "{frames:?}"
        );
        assert!(
            frames
                .iter()
                .any(|f| matches!(f, proto::Frame::Pong(d) if d == b"12345678")),
            "{frames:?}"
        );
        match frames.last() {
            Some(proto::Frame::GoAway(g)) => {
                assert_eq!(g.code, proto::ErrorCode::PROTOCOL_ERROR);
                assert!(g.message.contains("REPLY"), "{}", g.message);
            }
            other => panic!("expected a GOAWAY last, got {other:?}"),
        }
        let proxy = Proxy::new(&addr).unwrap();
        assert_eq!(client(&proxy).add(1, 1).await.unwrap(), 2);
        s.engine.finalize().await;
    })
    .await
    .unwrap();
}

/// Calls by name reuse the proxy's last wire method name; alternating names from many tasks
/// at once must still reach the method each call names, and bad names are still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_by_name_reach_the_named_method_when_names_alternate() {
    tokio::time::timeout(LIMIT, async {
        let s = start("tcp").await;
        let proxy = Proxy::new(&s.engine.address()).unwrap();
        let mut tasks = Vec::new();
        for t in 0..8u32 {
            let proxy = proxy.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50i32 {
                    if (i + t as i32) % 2 == 0 {
                        let sum: i32 = proxy
                            .call_on(3, "t_add")
                            .unwrap()
                            .arg(i)
                            .arg(1)
                            .call()
                            .await
                            .unwrap();
                        assert_eq!(sum, i + 1);
                    } else {
                        let g: String = proxy
                            .call_on(3, "t_greet")
                            .unwrap()
                            .arg("Ada")
                            .arg(format!("L{i}"))
                            .arg(None::<String>)
                            .call()
                            .await
                            .unwrap();
                        assert_eq!(g, format!("Ada L{i}"));
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // A bad name is refused before anything is sent, whether or not a name is cached.
        match proxy.call_on(3, "") {
            Err(Error::Config { message }) => assert!(message.contains("RPC name"), "{message}"),
            other => panic!("expected a configuration error, got {other:?}"),
        }
        let f = wirecall::Client::new().register("");
        match f.on(proxy.clone(), 3).call::<u32>().await {
            Err(Error::Config { message }) => assert!(message.contains("RPC name"), "{message}"),
            other => panic!("expected a configuration error, got {other:?}"),
        }
        // And the registered form of a good name works, repeatedly.
        let add = wirecall::Client::new().register("t_add");
        for i in 0..3 {
            let sum: i32 = add.on(proxy.clone(), 3).arg(i).arg(i).call().await.unwrap();
            assert_eq!(sum, 2 * i);
        }
        s.engine.finalize().await;
    })
    .await
    .unwrap();
}
