//! 10,000 connect/close cycles per transport against an in-process server leave no file
//! descriptor and no connection entry behind. The only test of its binary: it counts this
//! process's open descriptors (`/proc/self/fd`), which tests running beside it would move.
#![cfg(target_os = "linux")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirecall::{CodecId, ConnectionInfo, Engine, Proxy};
use wirecall_protocol as proto;

mod common;
use common::{raw_connect, RawIo};

const PROVIDER: u16 = 9;
const CYCLES: usize = 10_000;
const WORKERS: usize = 8;

#[derive(Default)]
struct Svc {
    connects: AtomicUsize,
    disconnects: AtomicUsize,
}

#[wirecall::provider(service = "c")]
impl Svc {
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

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

fn frames() -> (BytesMut, BytesMut) {
    let mut hello = BytesMut::new();
    proto::Frame::Hello(proto::Hello {
        versions: vec![proto::VERSION],
        codecs: vec![proto::CodecId::JSON],
        limits: proto::Limits::default(),
        extensions: Default::default(),
    })
    .encode(&mut hello)
    .unwrap();
    let mut call = BytesMut::new();
    proto::Frame::Call(proto::Call {
        request_id: proto::RequestId(1),
        provider: proto::ProviderId(PROVIDER),
        codec: proto::CodecId::JSON,
        oneway: false,
        upload: false,
        method: proto::Method::new(Bytes::from_static(b"c_add")).unwrap(),
        annotations: proto::Annotations::new(),
        args: Bytes::from_static(b"[20,22]"),
        kwargs: Bytes::new(),
        attachment: Bytes::new(),
    })
    .encode(&mut call)
    .unwrap();
    (hello, call)
}

/// Reads frames until one matches `want`; fails if the server closes first.
async fn wait_for(io: &mut Box<dyn RawIo>, want: impl Fn(&proto::Frame) -> bool) {
    let mut buf = BytesMut::new();
    let mut dec = proto::FrameDecoder::default();
    loop {
        while let Ok(Some(f)) = dec.decode(&mut buf) {
            if want(&f) {
                return;
            }
        }
        let n = io.read_buf(&mut buf).await.unwrap_or(0);
        assert!(n > 0, "the server closed before the expected frame");
    }
}

/// One cycle of shape `i % 4`: connect and close at once; a handshake; a handshake and a
/// call answered; half a HELLO. Returns whether it completed a handshake.
async fn cycle(addr: &str, i: usize, hello: &[u8], call: &[u8]) -> bool {
    let mut io = raw_connect(addr).await;
    match i % 4 {
        0 => false,
        1 => {
            io.write_all(hello).await.unwrap();
            wait_for(&mut io, |f| matches!(f, proto::Frame::Welcome(_))).await;
            true
        }
        2 => {
            io.write_all(hello).await.unwrap();
            io.write_all(call).await.unwrap();
            wait_for(&mut io, |f| match f {
                proto::Frame::Reply(r) => {
                    assert_eq!(&r.result[..], b"42");
                    true
                }
                _ => false,
            })
            .await;
            true
        }
        _ => {
            io.write_all(&hello[..hello.len() / 2]).await.unwrap();
            false
        }
    }
}

async fn cycles(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let listen = match kind {
        "tcp" => "tcp://127.0.0.1:0".to_string(),
        _ => format!("unix://{}", dir.path().join("c.sock").display()),
    };
    let engine = Engine::server(listen)
        .accept([CodecId::JSON])
        .grace_period(Duration::from_secs(30))
        .start()
        .await
        .unwrap();
    let svc = Arc::new(Svc::default());
    engine.register_arc(svc.clone(), PROVIDER).unwrap();
    let addr = engine.address();
    let (hello, call) = frames();
    // A warm-up of every shape, so that what the runtime and the server open once (timer
    // and blocking-pool threads, epoll) is in the baseline.
    for i in 0..8 {
        cycle(&addr, i, &hello, &call).await;
    }
    let settle = |n: usize| {
        let svc = svc.clone();
        async move {
            let end = Instant::now() + Duration::from_secs(5);
            while svc.disconnects.load(Ordering::SeqCst) < n && Instant::now() < end {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    settle(4).await;
    let before = open_fds();
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let (addr, hello, call) = (addr.clone(), hello.clone(), call.clone());
        set.spawn(async move {
            let mut handshakes = 0;
            for i in (w..CYCLES).step_by(WORKERS) {
                handshakes += usize::from(cycle(&addr, i, &hello, &call).await);
            }
            handshakes
        });
    }
    let mut handshakes = 0;
    while let Some(r) = set.join_next().await {
        handshakes += r.unwrap();
    }
    let took = started.elapsed();
    assert_eq!(handshakes, CYCLES / 2);
    // Every connection that completed a handshake is torn down (its entry removed,
    // on_disconnect run): the 4 of the warm-up and the 5,000 here.
    settle(4 + handshakes).await;
    assert_eq!(
        (
            svc.connects.load(Ordering::SeqCst),
            svc.disconnects.load(Ordering::SeqCst)
        ),
        (4 + handshakes, 4 + handshakes)
    );
    // The server's sockets for the other shapes close too: descriptors back to the
    // baseline.
    let end = Instant::now() + Duration::from_secs(5);
    let mut after = open_fds();
    while after > before && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(10)).await;
        after = open_fds();
    }
    eprintln!(
        "{kind}: {CYCLES} connect/close cycles in {took:?}; open descriptors {before} before, {after} after"
    );
    assert!(
        after <= before,
        "{kind}: {before} descriptors before, {after} after {CYCLES} cycles"
    );
    // The server still serves, and no entry is left for finalize to wait on: with a 30 s
    // grace period it returns at once.
    let p = Proxy::new(&addr).unwrap();
    assert_eq!(SvcClient::new(&p, PROVIDER).add(1, 2).await.unwrap(), 3);
    drop(p);
    settle(5 + handshakes).await;
    let t = Instant::now();
    engine.finalize().await;
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "finalize waited {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connect_close_cycles_leave_no_descriptor_or_entry_behind() {
    tokio::time::timeout(Duration::from_secs(120), async {
        cycles("tcp").await;
        cycles("unix").await;
    })
    .await
    .unwrap();
}
