//! A server's limits set on the builder, each exercised over loopback: the most connections
//! (one more gets GOAWAY LIMIT_EXCEEDED with the reason, not a silent close), calls in
//! flight per connection, and the largest frame. Their environment variables are tested in
//! `limits_env.rs` (alone in its binary: the environment is process-wide).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirecall::{Engine, Error, Functions, Proxy};
use wirecall_protocol as proto;

mod common;
use common::{decode_all, raw_connect, RawIo};

const LIMIT: Duration = Duration::from_secs(20);

/// `double(x)` answers at once; `wait()` counts itself started and waits for a permit.
async fn server_at(
    addr: &str,
    f: impl FnOnce(wirecall::ServerBuilder) -> wirecall::ServerBuilder,
) -> (Engine, Arc<tokio::sync::Semaphore>, Arc<AtomicUsize>) {
    let engine = f(Engine::server(addr)).start().await.unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let (g, s) = (gate.clone(), started.clone());
    engine
        .register_functions(
            Functions::new("")
                .sync_fn("double", &["x"], |(x,): (i32,)| x * 2)
                .sync_fn("len", &["s"], |(s,): (String,)| s.len())
                .async_fn("wait", &[], move |(): ()| {
                    let (g, s) = (g.clone(), s.clone());
                    async move {
                        s.fetch_add(1, Ordering::SeqCst);
                        g.acquire().await.unwrap().forget();
                        true
                    }
                }),
            1,
        )
        .unwrap();
    (engine, gate, started)
}

async fn server(
    f: impl FnOnce(wirecall::ServerBuilder) -> wirecall::ServerBuilder,
) -> (Engine, Arc<tokio::sync::Semaphore>, Arc<AtomicUsize>) {
    server_at("tcp://127.0.0.1:0", f).await
}

async fn double(p: &Proxy, x: i32) -> Result<i32, Error> {
    p.call_on(1, "double")?.arg(x).call().await
}

/// Waits (bounded) until `f` holds.
async fn until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

fn hello() -> BytesMut {
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

async fn read_to_close(io: &mut Box<dyn RawIo>) -> Vec<proto::Frame> {
    let mut out = Vec::new();
    let _ = io.read_to_end(&mut out).await;
    decode_all(&out)
}

fn busy_goaway(frames: &[proto::Frame], max: usize) {
    match frames {
        [proto::Frame::GoAway(g)] => {
            assert_eq!(g.code, proto::ErrorCode::LIMIT_EXCEEDED, "{}", g.message);
            assert!(g.message.contains("server busy"), "{}", g.message);
            assert!(
                g.message.contains(&format!("{max} connections")),
                "{}",
                g.message
            );
        }
        other => panic!("expected one GOAWAY LIMIT_EXCEEDED, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_over_the_limit_gets_goaway_with_the_reason() {
    tokio::time::timeout(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let unix = format!("unix://{}", dir.path().join("s.sock").display());
        let (engine, _gate, _) = server(|b| b.listen(unix.clone()).max_connections(Some(2))).await;
        let tcp = engine.address();
        // Two proxies fill the server (one on each listener: the limit is the server's).
        let a = Proxy::new(&tcp).unwrap();
        let b = Proxy::new(&unix).unwrap();
        assert_eq!(double(&a, 1).await.unwrap(), 2);
        assert_eq!(double(&b, 2).await.unwrap(), 4);
        assert_eq!(engine.connection_count(), 2);

        // A third is told why, on either listener: the connect fails with the reason.
        for addr in [&tcp, &unix] {
            let c = Proxy::new(addr).unwrap();
            let err = double(&c, 3).await.unwrap_err();
            let text = err.to_string();
            assert!(text.contains("server busy"), "{err:?}");
            assert!(text.contains("2 connections"), "{err:?}");
            // The raw bytes: a GOAWAY LIMIT_EXCEEDED, then the close; sent before the
            // client's HELLO is read, and the HELLO does not reset the connection.
            let mut raw = raw_connect(addr).await;
            raw.write_all(&hello()).await.unwrap();
            busy_goaway(&read_to_close(&mut raw).await, 2);
        }
        // The connections served were not disturbed.
        assert_eq!(double(&a, 5).await.unwrap(), 10);
        assert_eq!(engine.connection_count(), 2);

        // Once one closes, a new one is served.
        drop(b);
        until("a connection closed", || engine.connection_count() == 1).await;
        let c = Proxy::new(&unix).unwrap();
        assert_eq!(double(&c, 21).await.unwrap(), 42);
        engine.finalize().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_refused_connections_leave_the_count_at_the_limit() {
    tokio::time::timeout(LIMIT, async {
        let (engine, _gate, _) = server(|b| b.max_connections(Some(1))).await;
        let a = Proxy::new(&engine.address()).unwrap();
        assert_eq!(double(&a, 1).await.unwrap(), 2);
        let refused: Vec<_> = (0..50)
            .map(|_| {
                let addr = engine.address();
                tokio::spawn(async move { double(&Proxy::new(&addr).unwrap(), 1).await })
            })
            .collect();
        for r in refused {
            let err = r.await.unwrap().unwrap_err();
            assert!(err.to_string().contains("server busy"), "{err:?}");
        }
        assert_eq!(engine.connection_count(), 1);
        assert_eq!(double(&a, 2).await.unwrap(), 4);
        drop(a);
        until("the connection closed", || engine.connection_count() == 0).await;
        let b = Proxy::new(&engine.address()).unwrap();
        assert_eq!(double(&b, 3).await.unwrap(), 6);
        engine.finalize().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_connection_limit_when_off() {
    tokio::time::timeout(LIMIT, async {
        let (engine, _gate, _) = server(|b| b.max_connections(None)).await;
        let proxies: Vec<Proxy> = (0..20)
            .map(|_| Proxy::new(&engine.address()).unwrap())
            .collect();
        for (i, p) in proxies.iter().enumerate() {
            assert_eq!(double(p, i as i32).await.unwrap(), 2 * i as i32);
        }
        assert_eq!(engine.connection_count(), 20);
        let err = Engine::server("tcp://127.0.0.1:0")
            .max_connections(Some(0))
            .start()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("max_connections is 0"), "{err}");
        engine.finalize().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_max_in_flight_are_answered_busy() {
    tokio::time::timeout(LIMIT, async {
        let (engine, gate, started) = server(|b| b.max_in_flight(2)).await;
        let p = Proxy::new(&engine.address()).unwrap();
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let p = p.clone();
                tokio::spawn(async move { p.call_on(1, "wait")?.call::<bool>().await })
            })
            .collect();
        until("two calls run", || started.load(Ordering::SeqCst) == 2).await;
        // A third on the same connection is refused, retryable; the connection stays up.
        match p.call_on(1, "wait").unwrap().call::<bool>().await {
            Err(e @ Error::Busy { .. }) => {
                assert!(e.is_retryable(), "{e:?}");
                assert!(e.to_string().contains('2'), "names the limit: {e}");
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        // Another connection has its own budget.
        let q = Proxy::new(&engine.address()).unwrap();
        assert_eq!(double(&q, 4).await.unwrap(), 8);
        gate.add_permits(2);
        for w in waiting {
            assert!(w.await.unwrap().unwrap());
        }
        assert_eq!(
            started.load(Ordering::SeqCst),
            2,
            "the refused call never ran"
        );
        assert_eq!(double(&p, 5).await.unwrap(), 10);
        engine.finalize().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_over_max_frame_len_are_refused() {
    tokio::time::timeout(LIMIT, async {
        let (engine, _gate, _) = server(|b| b.max_frame_len(8192)).await;
        // The WELCOME announces it, so a client refuses to send a larger call: that call
        // fails, the connection stays usable.
        let p = Proxy::new(&engine.address()).unwrap();
        let r: Result<usize, Error> = p
            .call_on(1, "len")
            .unwrap()
            .arg("x".repeat(10_000))
            .call()
            .await;
        match r {
            Err(Error::LimitExceeded { message }) => {
                assert!(message.contains("8192"), "{message}")
            }
            other => panic!("expected LimitExceeded, got {other:?}"),
        }
        let n: usize = p
            .call_on(1, "len")
            .unwrap()
            .arg("x".repeat(4000))
            .call()
            .await
            .unwrap();
        assert_eq!(n, 4000);

        // A raw peer ignoring the announcement is closed with GOAWAY LIMIT_EXCEEDED.
        let mut raw = raw_connect(&engine.address()).await;
        let mut bytes = hello();
        proto::Frame::Call(proto::Call {
            request_id: proto::RequestId(1),
            provider: proto::ProviderId(1),
            codec: proto::CodecId::JSON,
            oneway: false,
            upload: false,
            method: proto::Method::new(Bytes::from_static(b"len")).unwrap(),
            annotations: proto::Annotations::new(),
            args: Bytes::from(format!("[\"{}\"]", "x".repeat(9000))),
            kwargs: Bytes::new(),
            attachment: Bytes::new(),
        })
        .encode(&mut bytes)
        .unwrap();
        raw.write_all(&bytes).await.unwrap();
        match read_to_close(&mut raw).await.as_slice() {
            [proto::Frame::Welcome(w), proto::Frame::GoAway(g)] => {
                assert_eq!(w.limits.max_frame_len, 8192);
                assert_eq!(g.code, proto::ErrorCode::LIMIT_EXCEEDED, "{}", g.message);
            }
            other => panic!("expected WELCOME, GOAWAY, got {other:?}"),
        }
        engine.finalize().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_specific_setters_win_over_limits() {
    tokio::time::timeout(LIMIT, async {
        let limits = proto::Limits {
            max_frame_len: 1 << 20,
            max_annotations_len: 2048,
            max_in_flight: 7,
        };
        let (engine, _gate, _) =
            server(|b| b.max_in_flight(9).limits(limits).max_in_flight(5)).await;
        let mut raw = raw_connect(&engine.address()).await;
        raw.write_all(&hello()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        let welcome = loop {
            let n = raw.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before WELCOME");
            got.extend_from_slice(&buf[..n]);
            if let Some(proto::Frame::Welcome(w)) = decode_all(&got).into_iter().next() {
                break w;
            }
        };
        assert_eq!(welcome.limits.max_in_flight, 5);
        assert_eq!(welcome.limits.max_frame_len, 1 << 20);
        assert_eq!(welcome.limits.max_annotations_len, 2048);
        let zero = Engine::server("tcp://127.0.0.1:0").max_in_flight(0);
        let tiny = Engine::server("tcp://127.0.0.1:0").max_frame_len(100);
        for (builder, says) in [(zero, "max_in_flight"), (tiny, "max_frame_len")] {
            let err = builder.start().await.unwrap_err();
            assert!(err.to_string().contains("bad server limits"), "{err}");
            assert!(err.to_string().contains(says), "{err}");
        }
        engine.finalize().await;
    })
    .await
    .unwrap();
}
