//! A server's limits and timers from the environment (`WIRECALL_MAX_CONNECTIONS`,
//! `WIRECALL_MAX_IN_FLIGHT`, `WIRECALL_MAX_FRAME`, `WIRECALL_HANDSHAKE_TIMEOUT`,
//! `WIRECALL_BLOCKING_BUDGET`), checked over
//! loopback tcp. One test function, alone in its binary, because environment variables are
//! process-wide.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirecall::{Engine, Error, Functions, Proxy};
use wirecall_protocol as proto;

mod common;
use common::{decode_all, raw_connect, RawIo};

const VARS: [&str; 5] = [
    "WIRECALL_MAX_CONNECTIONS",
    "WIRECALL_MAX_IN_FLIGHT",
    "WIRECALL_MAX_FRAME",
    "WIRECALL_HANDSHAKE_TIMEOUT",
    "WIRECALL_BLOCKING_BUDGET",
];

fn set(var: &str, value: &str) {
    // The only test of this binary: no other thread reads the environment meanwhile.
    std::env::set_var(var, value);
}

async fn start(b: wirecall::ServerBuilder) -> Result<Engine, Error> {
    let engine = b.start().await?;
    engine.register_functions(
        Functions::new("").sync_fn("double", &["x"], |(x,): (i32,)| x * 2),
        1,
    )?;
    Ok(engine)
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

/// The limits the server announces in its WELCOME.
async fn announced(addr: &str) -> proto::Limits {
    let mut raw = raw_connect(addr).await;
    raw.write_all(&hello()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = raw.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before WELCOME");
        got.extend_from_slice(&buf[..n]);
        if let Some(f) = decode_all(&got).into_iter().next() {
            match f {
                proto::Frame::Welcome(w) => return w.limits,
                other => panic!("expected WELCOME, got {other:?}"),
            }
        }
    }
}

async fn read_to_close(io: &mut Box<dyn RawIo>) -> Vec<proto::Frame> {
    let mut out = Vec::new();
    let _ = io.read_to_end(&mut out).await;
    decode_all(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_timers_from_the_environment() {
    tokio::time::timeout(Duration::from_secs(30), async {
        for v in VARS {
            std::env::remove_var(v);
        }
        // The defaults.
        let engine = start(Engine::server("tcp://127.0.0.1:0")).await.unwrap();
        assert_eq!(announced(&engine.address()).await, proto::Limits::default());
        engine.finalize().await;

        set("WIRECALL_MAX_IN_FLIGHT", "3");
        set("WIRECALL_MAX_FRAME", "64KiB");
        set("WIRECALL_MAX_CONNECTIONS", "1");
        set("WIRECALL_HANDSHAKE_TIMEOUT", "300ms");
        let engine = start(Engine::server("tcp://127.0.0.1:0")).await.unwrap();
        let addr = engine.address();
        let limits = announced(&addr).await;
        assert_eq!(limits.max_in_flight, 3);
        assert_eq!(limits.max_frame_len, 64 << 10);
        // That raw connection is closed now; one proxy fills the server...
        for _ in 0..200 {
            if engine.connection_count() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let a = Proxy::new(&addr).unwrap();
        let r: i32 = a.call_on(1, "double").unwrap().arg(2).call().await.unwrap();
        assert_eq!(r, 4);
        // ... and a second is turned away with the reason.
        let b = Proxy::new(&addr).unwrap();
        let err = b
            .call_on(1, "double")
            .unwrap()
            .arg(2)
            .call::<i32>()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("server busy"), "{err:?}");
        drop(a);
        for _ in 0..200 {
            if engine.connection_count() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A peer that connects and says nothing is closed at the handshake deadline with
        // GOAWAY TIMEOUT.
        let t = Instant::now();
        let mut silent = raw_connect(&addr).await;
        match read_to_close(&mut silent).await.as_slice() {
            [proto::Frame::GoAway(g)] => assert_eq!(g.code, proto::ErrorCode::TIMEOUT),
            other => panic!("expected GOAWAY TIMEOUT, got {other:?}"),
        }
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(5),
            "{took:?}"
        );
        engine.finalize().await;

        // The builder wins over the environment.
        let engine = start(
            Engine::server("tcp://127.0.0.1:0")
                .max_in_flight(9)
                .max_frame_len(1 << 20)
                .max_connections(None),
        )
        .await
        .unwrap();
        let limits = announced(&engine.address()).await;
        assert_eq!(limits.max_in_flight, 9);
        assert_eq!(limits.max_frame_len, 1 << 20);
        let proxies: Vec<Proxy> = (0..3)
            .map(|_| Proxy::new(&engine.address()).unwrap())
            .collect();
        for p in &proxies {
            let r: i32 = p.call_on(1, "double").unwrap().arg(5).call().await.unwrap();
            assert_eq!(r, 10);
        }
        engine.finalize().await;

        // `off` lifts the connection limit.
        set("WIRECALL_MAX_CONNECTIONS", "off");
        let engine = start(Engine::server("tcp://127.0.0.1:0")).await.unwrap();
        let proxies: Vec<Proxy> = (0..3)
            .map(|_| Proxy::new(&engine.address()).unwrap())
            .collect();
        for p in &proxies {
            let r: i32 = p.call_on(1, "double").unwrap().arg(1).call().await.unwrap();
            assert_eq!(r, 2);
        }
        engine.finalize().await;

        // The blocking budget: a method whose calls overran it three times in a row (timed
        // once a first slow call put the connection under watch) runs off the reader,
        // so a call beside its next one on the same connection is answered first.
        set("WIRECALL_MAX_CONNECTIONS", "off");
        set("WIRECALL_BLOCKING_BUDGET", "20ms");
        let engine = Engine::server("tcp://127.0.0.1:0").start().await.unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let d = done.clone();
        engine
            .register_functions(
                Functions::new("")
                    .sync_fn("nap", &["ms"], move |(ms,): (u64,)| {
                        std::thread::sleep(Duration::from_millis(ms));
                        d.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        ms
                    })
                    .sync_fn("double", &["x"], |(x,): (i32,)| x * 2),
                1,
            )
            .unwrap();
        let p = Proxy::new(&engine.address()).unwrap();
        for _ in 0..4 {
            let r: u64 = p
                .call_on(1, "nap")
                .unwrap()
                .arg(60u64)
                .call()
                .await
                .unwrap();
            assert_eq!(r, 60);
        }
        let p2 = p.clone();
        let slow = tokio::spawn(async move {
            p2.call_on(1, "nap")
                .unwrap()
                .arg(1000u64)
                .call::<u64>()
                .await
        });
        // Let the slow call reach the server (ordering only: it is checked below).
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r: i32 = p.call_on(1, "double").unwrap().arg(4).call().await.unwrap();
        assert_eq!(r, 8);
        assert_eq!(
            done.load(std::sync::atomic::Ordering::SeqCst),
            4,
            "the call waited behind a method WIRECALL_BLOCKING_BUDGET found blocking"
        );
        assert_eq!(slow.await.unwrap().unwrap(), 1000);
        engine.finalize().await;

        // Bad values name the variable and the form it takes.
        for (var, value, says) in [
            ("WIRECALL_MAX_CONNECTIONS", "0", "between 1 and"),
            ("WIRECALL_MAX_CONNECTIONS", "many", "whole number"),
            ("WIRECALL_MAX_IN_FLIGHT", "0", "between 1 and"),
            ("WIRECALL_MAX_IN_FLIGHT", "-4", "whole number"),
            ("WIRECALL_MAX_FRAME", "1KiB", "at least the handshake"),
            ("WIRECALL_MAX_FRAME", "big", "16MiB"),
            ("WIRECALL_BLOCKING_BUDGET", "soon", "500ms"),
        ] {
            for v in VARS {
                std::env::remove_var(v);
            }
            set(var, value);
            let err = Engine::server("tcp://127.0.0.1:0")
                .start()
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{err:?}");
            let text = err.to_string();
            assert!(text.contains(var), "{var}={value}: {text}");
            assert!(text.contains(says), "{var}={value}: {text}");
        }
        for v in VARS {
            std::env::remove_var(v);
        }
    })
    .await
    .unwrap();
}
