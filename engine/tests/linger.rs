//! Issue 12, item 1: resumable streams (SPEC §6.14, Pyro's `ITER_STREAM_LINGER`). A relay
//! (tcp on 127.0.0.1, or a unix socket in a temp dir) between proxy and server cuts the connection in the middle of a
//! stream (both ends see it end, as with a network failure); the proxy connects again and
//! the stream goes on where it stopped: no item lost, none repeated, the producer never
//! restarted. Without linger, or after the linger time, the caller gets an error and the
//! producer is dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::task::JoinHandle;
use wirecall::{CodecId, Engine, Error, ItemStream, Proxy};

mod common;
use common::SetOnDrop;

const LIMIT: Duration = Duration::from_secs(30);
const PROVIDER: u16 = 3;

#[derive(Default)]
struct Source {
    /// Calls of `count` (a resumed stream must not call it again).
    calls: AtomicU64,
    /// Set when a producer of `count` is dropped.
    dropped: Arc<AtomicBool>,
}

#[wirecall::provider(service = "src")]
impl Source {
    /// 0..n, each item produced as it is asked for.
    #[remote]
    fn count(&self, n: u64) -> ItemStream<u64> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let guard = SetOnDrop(self.dropped.clone());
        ItemStream::new(futures::stream::iter(0..n).map(move |i| {
            let _ = &guard;
            i
        }))
    }
}

/// A relay (tcp or unix) to the server at `target` whose connections can be cut all at
/// once.
struct Relay {
    address: String,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

async fn pipe<A, B>(mut a: A, mut b: B)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
}

impl Relay {
    async fn start(target: String, dir: &tempfile::TempDir) -> Relay {
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let list = conns.clone();
        let (address, accept) = if let Some(path) = target.strip_prefix("unix://") {
            let here = dir.path().join("relay.sock");
            let listener = UnixListener::bind(&here).unwrap();
            let path = path.to_string();
            let accept = tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    let path = path.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(outbound) = UnixStream::connect(&path).await {
                            pipe(inbound, outbound).await;
                        }
                    });
                    list.lock().unwrap().push(task);
                }
            });
            (format!("unix://{}", here.display()), accept)
        } else {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = format!("tcp://{}", listener.local_addr().unwrap());
            let target = target.trim_start_matches("tcp://").to_string();
            let accept = tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    let target = target.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(outbound) = TcpStream::connect(&target).await {
                            pipe(inbound, outbound).await;
                        }
                    });
                    list.lock().unwrap().push(task);
                }
            });
            (address, accept)
        };
        Relay {
            address,
            conns,
            accept,
        }
    }

    /// Drops every relayed connection: both ends see their socket closed.
    fn cut(&self) {
        for t in self.conns.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

async fn server_on(
    addr: &str,
    linger: Option<Duration>,
    dir: &tempfile::TempDir,
) -> (Engine, Arc<Source>, Relay) {
    let engine = Engine::server(addr)
        .accept([CodecId::POSTCARD, CodecId::JSON])
        .stream_linger(linger)
        .start()
        .await
        .unwrap();
    let src = Arc::new(Source::default());
    engine.register_arc(src.clone(), PROVIDER).unwrap();
    let relay = Relay::start(engine.address(), dir).await;
    (engine, src, relay)
}

async fn server(linger: Option<Duration>) -> (Engine, Arc<Source>, Relay) {
    let dir = tempfile::tempdir().unwrap();
    server_on("tcp://127.0.0.1:0", linger, &dir).await
}

async fn until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumes_where_it_stopped_after_its_connection_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let unix = format!("unix://{}", dir.path().join("server.sock").display());
    for addr in ["tcp://127.0.0.1:0", unix.as_str()] {
        tokio::time::timeout(LIMIT, async {
            let (engine, src, relay) = server_on(addr, Some(Duration::from_secs(10)), &dir).await;
            let proxy = Proxy::new(&relay.address).unwrap().codec(CodecId::POSTCARD);
            let n = 5_000u64;
            let mut s = proxy
                .call_on(PROVIDER, "src_count")
                .unwrap()
                .arg(n)
                .window(16)
                .stream::<u64>()
                .await
                .unwrap();
            let mut got = Vec::new();
            // Three cuts at different points of the stream.
            for cut_at in [100u64, 1_000, 3_333] {
                while (got.len() as u64) < cut_at {
                    got.push(s.next().await.unwrap().unwrap());
                }
                relay.cut();
            }
            while let Some(item) = s.next().await {
                got.push(item.unwrap());
            }
            assert_eq!(
                got,
                (0..n).collect::<Vec<_>>(),
                "{addr}: no item lost or repeated"
            );
            assert_eq!(
                src.calls.load(Ordering::SeqCst),
                1,
                "{addr}: the producer ran once"
            );
            // The stream ended: nothing is kept.
            until("a finished stream stayed kept", || {
                engine.kept_streams() == 0
            })
            .await;
            assert!(src.dropped.load(Ordering::SeqCst));
            engine.finalize().await;
            drop(relay);
            let _ = std::fs::remove_file(dir.path().join("relay.sock"));
        })
        .await
        .expect("bounded");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_stream_is_kept_for_the_linger_time_then_dropped() {
    tokio::time::timeout(LIMIT, async {
        let (engine, src, relay) = server(Some(Duration::from_millis(300))).await;
        // A proxy that never reconnects in time: it reads, the connection is cut, and
        // nobody resumes.
        let proxy = Proxy::new(&relay.address).unwrap();
        let mut s = proxy
            .call_on(PROVIDER, "src_count")
            .unwrap()
            .arg(1_000_000u64)
            .window(8)
            .stream::<u64>()
            .await
            .unwrap();
        assert_eq!(s.next().await.unwrap().unwrap(), 0);
        relay.cut();
        until("the stream was not kept", || engine.kept_streams() == 1).await;
        assert!(!src.dropped.load(Ordering::SeqCst), "paused, not dropped");
        // After the linger time the producer is dropped.
        until("the producer outlived the linger time", || {
            src.dropped.load(Ordering::SeqCst)
        })
        .await;
        assert_eq!(engine.kept_streams(), 0);
        // A resume now is refused: the caller is told the stream is gone.
        let mut rest = Vec::new();
        while let Some(item) = s.next().await {
            match item {
                Ok(v) => rest.push(v),
                Err(e) => {
                    assert!(
                        matches!(&e, Error::Transport { message, .. } if message.contains("no longer holds it")),
                        "{e:?}"
                    );
                    assert!(e.is_retryable());
                    break;
                }
            }
        }
        engine.finalize().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_linger_a_lost_stream_fails_and_its_producer_is_dropped() {
    tokio::time::timeout(LIMIT, async {
        let (engine, src, relay) = server(None).await;
        let proxy = Proxy::new(&relay.address).unwrap();
        let mut s = proxy
            .call_on(PROVIDER, "src_count")
            .unwrap()
            .arg(1_000_000u64)
            .window(8)
            .stream::<u64>()
            .await
            .unwrap();
        assert_eq!(s.next().await.unwrap().unwrap(), 0);
        relay.cut();
        let err = loop {
            match s.next().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => break e,
                None => panic!("the stream ended cleanly"),
            }
        };
        assert!(matches!(err, Error::Transport { .. }), "{err:?}");
        until("the producer was not dropped", || {
            src.dropped.load(Ordering::SeqCst)
        })
        .await;
        assert_eq!(engine.kept_streams(), 0);
        engine.finalize().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_drops_the_kept_streams() {
    tokio::time::timeout(LIMIT, async {
        let (engine, src, relay) = server(Some(Duration::from_secs(60))).await;
        let proxy = Proxy::new(&relay.address).unwrap();
        let mut s = proxy
            .call_on(PROVIDER, "src_count")
            .unwrap()
            .arg(1_000_000u64)
            .window(8)
            .stream::<u64>()
            .await
            .unwrap();
        assert_eq!(s.next().await.unwrap().unwrap(), 0);
        relay.cut();
        until("the stream was not kept", || engine.kept_streams() == 1).await;
        engine.finalize().await;
        assert_eq!(engine.kept_streams(), 0);
        until("finalize left a producer behind", || {
            src.dropped.load(Ordering::SeqCst)
        })
        .await;
        drop(s);
    })
    .await
    .expect("bounded");
}
