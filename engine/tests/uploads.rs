//! Issue 12, item 1: client → server streams and bidirectional streams (SPEC §6.13) over
//! tcp, unix sockets and the in-memory transport: typed and dynamic clients (a `Stream` and
//! a `Sink`), a slow handler that keeps the caller within the server's window, an early
//! answer that stops the caller's stream, a cancelled call that stops the handler, and a
//! peer that ignores the server's credit closed with GOAWAY FLOW_CONTROL while others are
//! served.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use wirecall::{CodecId, Engine, Error, ItemStream, Proxy, Streaming};
use wirecall_protocol as proto;

mod common;
use common::{encode, raw_connect, read_frames, SetOnDrop};

/// Bound of every test.
const LIMIT: Duration = Duration::from_secs(30);
const PROVIDER: u16 = 9;
/// The server's window in these tests.
const WINDOW: u32 = 8;

#[derive(Default)]
struct Stats {
    /// Items the `slow_sum` handler took.
    consumed: Arc<AtomicU64>,
    /// The most items produced by the caller and not yet taken, seen by `slow_sum`.
    max_ahead: Arc<AtomicU64>,
    /// Items the caller's stream produced (set by the tests).
    produced: Arc<AtomicU64>,
    /// Set when the handler of `hold` was dropped.
    dropped: Arc<AtomicBool>,
    /// What `until_error` saw: the items, then the error that ended its stream.
    seen: Arc<std::sync::Mutex<(Vec<u64>, Option<String>)>>,
}

#[wirecall::provider(service = "stats")]
impl Stats {
    /// The sum of the items.
    #[remote]
    async fn sum(&self, items: Streaming<u64>) -> Result<u64, Error> {
        let mut items = items;
        let mut total = 0;
        while let Some(v) = items.next().await {
            total += v?;
        }
        Ok(total)
    }

    /// The items scaled by `factor`, as they come (a bidirectional stream).
    #[remote]
    fn scale(&self, factor: u64, items: Streaming<u64>) -> ItemStream<u64> {
        ItemStream::try_new(items.map(move |v| v.map(|v| v * factor)))
    }

    /// Takes an item every millisecond, watching how far the caller got ahead.
    #[remote]
    async fn slow_sum(&self, items: Streaming<u64>) -> u64 {
        let mut items = items;
        let mut total = 0;
        while let Some(v) = items.next().await {
            total += v.unwrap();
            let taken = self.consumed.fetch_add(1, Ordering::SeqCst) + 1;
            let ahead = self.produced.load(Ordering::SeqCst).saturating_sub(taken);
            self.max_ahead.fetch_max(ahead, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        total
    }

    /// The first `n` items only: answers before the caller's stream ended.
    #[remote]
    async fn first(&self, n: u64, items: Streaming<u64>) -> Vec<u64> {
        items
            .take(n as usize)
            .map(|v| v.unwrap())
            .collect::<Vec<_>>()
            .await
    }

    /// Reads one item, then waits forever; sets `dropped` when dropped.
    #[remote]
    async fn hold(&self, items: Streaming<u64>) -> u64 {
        let _guard = SetOnDrop(self.dropped.clone());
        let mut items = items;
        let v = items.next().await;
        futures::future::pending::<()>().await;
        v.map(|r| r.unwrap()).unwrap_or(0)
    }

    /// Reads until the stream ends or fails, recording both, on a task of its own (a
    /// handler is stopped when its connection closes; a stream handed elsewhere lives on
    /// and sees why it ended).
    #[remote]
    async fn until_error(&self, items: Streaming<u64>) -> u64 {
        let seen = self.seen.clone();
        let reader = tokio::spawn(async move {
            let mut items = items;
            while let Some(v) = items.next().await {
                let mut seen = seen.lock().unwrap();
                match v {
                    Ok(v) => seen.0.push(v),
                    Err(e) => {
                        seen.1 = Some(e.to_string());
                        return 0;
                    }
                }
            }
            1
        });
        reader.await.unwrap_or(0)
    }

    #[remote]
    fn add(&self, a: u64, b: u64) -> u64 {
        a + b
    }

    /// Calls the caller's `absorb` back, which takes a stream: refused both ways (callbacks
    /// do not stream); returns the two errors.
    #[remote]
    async fn call_back(&self, ctx: wirecall::CallContext) -> Result<Vec<String>, Error> {
        let back = ctx.callback()?;
        let typed = AbsorberClient::new(back.clone(), 5)
            .absorb(futures::stream::iter([1u64]))
            .await
            .unwrap_err();
        let plain = back
            .call_on(5, "absorber_absorb")?
            .call::<u64>()
            .await
            .unwrap_err();
        Ok(vec![typed.to_string(), plain.to_string()])
    }
}

/// Exposed by a client on its own connection.
struct Absorber;

#[wirecall::provider(service = "absorber")]
impl Absorber {
    #[remote]
    async fn absorb(&self, items: Streaming<u64>) -> u64 {
        items.count().await as u64
    }
}

fn addresses(dir: &tempfile::TempDir, test: &str) -> Vec<String> {
    vec![
        "tcp://127.0.0.1:0".to_string(),
        format!(
            "unix://{}",
            dir.path().join(format!("{test}.sock")).display()
        ),
        format!("mem://uploads-{test}"),
    ]
}

async fn server(addr: &str) -> (Engine, Arc<Stats>) {
    let engine = Engine::server(addr)
        .accept([CodecId::JSON, CodecId::MSGPACK, CodecId::POSTCARD])
        .upload_window(WINDOW)
        .start()
        .await
        .unwrap();
    let svc = Arc::new(Stats::default());
    engine.register_arc(svc.clone(), PROVIDER).unwrap();
    (engine, svc)
}

async fn bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
}

async fn until_set(flag: &AtomicBool, what: &str) {
    for _ in 0..2000 {
        if flag.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_and_dynamic_argument_streams_over_every_transport() {
    let dir = tempfile::tempdir().unwrap();
    for addr in addresses(&dir, "typed") {
        bounded(&addr.clone(), async {
            let (engine, _svc) = server(&addr).await;
            let at = engine.address();
            for codec in [CodecId::JSON, CodecId::MSGPACK, CodecId::POSTCARD] {
                let proxy = Proxy::new(&at).unwrap().codec(codec);
                let client = StatsClient::new(proxy.clone(), PROVIDER);
                // Many windows' worth of items.
                let n = 10_000u64;
                let total = client.sum(futures::stream::iter(1..=n)).await.unwrap();
                assert_eq!(total, n * (n + 1) / 2, "{addr} {codec}");
                // An empty stream.
                assert_eq!(client.sum(futures::stream::empty()).await.unwrap(), 0);
                // Bidirectional: items come back while more go out.
                let back: Vec<u64> = client
                    .scale(3, futures::stream::iter(1..=1000u64))
                    .await
                    .unwrap()
                    .map(|r| r.unwrap())
                    .collect()
                    .await;
                assert_eq!(back, (1..=1000u64).map(|v| v * 3).collect::<Vec<_>>());
                // The dynamic proxy, from a stream and from a sink.
                let total: u64 = proxy
                    .call_on(PROVIDER, "stats_sum")
                    .unwrap()
                    .upload(futures::stream::iter([5u64, 6, 7]))
                    .call()
                    .await
                    .unwrap();
                assert_eq!(total, 18);
                let (mut sink, call) = proxy
                    .call_on(PROVIDER, "stats_sum")
                    .unwrap()
                    .upload_sink::<u64>(4);
                let send = async move {
                    for v in 1..=500u64 {
                        sink.send(v).await.unwrap();
                    }
                    // The sink is dropped here: the argument stream ends.
                };
                let ((), total) = futures::join!(send, call.call::<u64>());
                assert_eq!(total.unwrap(), 500 * 501 / 2);
                let back: Vec<u64> = proxy
                    .call_on(PROVIDER, "stats_scale")
                    .unwrap()
                    .arg(2u64)
                    .upload(futures::stream::iter([1u64, 2, 3]))
                    .stream::<u64>()
                    .await
                    .unwrap()
                    .map(|r| r.unwrap())
                    .collect()
                    .await;
                assert_eq!(back, [2, 4, 6]);
                // The connection serves plain calls as before.
                assert_eq!(client.add(2, 3).await.unwrap(), 5);
            }
            engine.finalize().await;
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_keeps_the_caller_within_the_servers_window() {
    let dir = tempfile::tempdir().unwrap();
    for addr in addresses(&dir, "slow") {
        bounded(&addr.clone(), async {
            let (engine, svc) = server(&addr).await;
            let client = StatsClient::new(Proxy::new(&engine.address()).unwrap(), PROVIDER);
            let produced = svc.produced.clone();
            let n = 200u64;
            // The caller's stream is always ready: only the credit holds it back.
            let items = futures::stream::iter(1..=n).inspect(move |_| {
                produced.fetch_add(1, Ordering::SeqCst);
            });
            assert_eq!(client.slow_sum(items).await.unwrap(), n * (n + 1) / 2);
            assert_eq!(svc.consumed.load(Ordering::SeqCst), n);
            // Produced and not yet taken: the window queued at the server, plus the one
            // item the caller's pump holds while it waits for credit.
            let ahead = svc.max_ahead.load(Ordering::SeqCst);
            assert!(
                ahead <= u64::from(WINDOW) + 1,
                "{addr}: the caller got {ahead} items ahead of a window of {WINDOW}"
            );
            engine.finalize().await;
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_stops_the_callers_stream() {
    let dir = tempfile::tempdir().unwrap();
    for addr in addresses(&dir, "early") {
        bounded(&addr.clone(), async {
            let (engine, _svc) = server(&addr).await;
            let client = StatsClient::new(Proxy::new(&engine.address()).unwrap(), PROVIDER);
            let dropped = Arc::new(AtomicBool::new(false));
            let guard = SetOnDrop(dropped.clone());
            // An endless stream: the handler wants 3 items and answers.
            let endless = futures::stream::iter(0u64..).map(move |v| {
                let _ = &guard;
                v
            });
            assert_eq!(client.first(3, endless).await.unwrap(), [0, 1, 2]);
            until_set(
                &dropped,
                "the caller's stream was not dropped after the answer",
            )
            .await;
            // The connection goes on.
            assert_eq!(client.add(1, 1).await.unwrap(), 2, "{addr}");
            engine.finalize().await;
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_call_stops_the_handler_and_the_callers_stream() {
    let dir = tempfile::tempdir().unwrap();
    for addr in addresses(&dir, "cancel") {
        bounded(&addr.clone(), async {
            let (engine, svc) = server(&addr).await;
            let client = StatsClient::new(Proxy::new(&engine.address()).unwrap(), PROVIDER);
            let stream_dropped = Arc::new(AtomicBool::new(false));
            let guard = SetOnDrop(stream_dropped.clone());
            let endless = futures::stream::iter(0u64..).map(move |v| {
                let _ = &guard;
                v
            });
            let call = client.hold(endless);
            assert!(tokio::time::timeout(Duration::from_millis(200), call)
                .await
                .is_err());
            until_set(&svc.dropped, "the handler was not dropped after the cancel").await;
            until_set(&stream_dropped, "the caller's stream was not dropped").await;
            assert_eq!(client.add(1, 2).await.unwrap(), 3, "{addr}");
            engine.finalize().await;
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_where_an_argument_stream_cannot_work() {
    let (engine, _svc) = server("tcp://127.0.0.1:0").await;
    let proxy = Proxy::new(&engine.address()).unwrap();
    // A method that takes a stream, called without one.
    let err = proxy
        .call_on(PROVIDER, "stats_sum")
        .unwrap()
        .call::<u64>()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::BadArguments { message, .. } if message.contains("stream of argument items")),
        "{err:?}"
    );
    // Oneway with a stream.
    let err = proxy
        .call_on(PROVIDER, "stats_sum")
        .unwrap()
        .upload(futures::stream::iter([1u64]))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    // The metadata says which methods take one.
    let meta = proxy.metadata().await.unwrap();
    let p = meta.provider(PROVIDER).unwrap();
    let sum = p.methods.iter().find(|m| m.name == "stats_sum").unwrap();
    assert!(sum.uploads && !sum.streams);
    let scale = p.methods.iter().find(|m| m.name == "stats_scale").unwrap();
    assert!(scale.uploads && scale.streams);
    assert_eq!(scale.params, ["factor"]);
    let add = p.methods.iter().find(|m| m.name == "stats_add").unwrap();
    assert!(!add.uploads);
    engine.finalize().await;
}

// ---- a peer that breaks flow control ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_ignoring_the_servers_credit_is_closed_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    for addr in addresses(&dir, "overflow") {
        bounded(&addr.clone(), async {
            let (engine, svc) = server(&addr).await;
            let at = engine.address();
            let mut io = raw_connect(&at).await;
            let mut buf = BytesMut::new();
            let mut ext = proto::Extensions::new();
            ext.set(proto::ExtensionTag::STREAMS, Bytes::new()).unwrap();
            io.write_all(&encode(&proto::Frame::Hello(proto::Hello {
                versions: vec![proto::VERSION],
                codecs: vec![proto::CodecId::JSON],
                limits: proto::Limits::default(),
                extensions: ext,
            })))
            .await
            .unwrap();
            let w = read_frames(&mut io, &mut buf, 1).await;
            let proto::Frame::Welcome(w) = &w[0] else {
                panic!("{w:?}");
            };
            // The server's window, in the streams extension's answer.
            assert_eq!(
                w.extensions
                    .get(proto::ExtensionTag::STREAMS)
                    .map(|v| v.to_vec()),
                Some(WINDOW.to_be_bytes().to_vec())
            );
            let mut out = encode(&proto::Frame::Call(proto::Call {
                request_id: proto::RequestId(1),
                provider: proto::ProviderId(PROVIDER),
                codec: proto::CodecId::JSON,
                oneway: false,
                upload: true,
                // The handler reads one item, then nothing: no credit comes back.
                method: proto::Method::new("stats_hold").unwrap(),
                annotations: proto::Annotations::new(),
                args: Bytes::from_static(b"[]"),
                kwargs: Bytes::new(),
                attachment: Bytes::new(),
            }));
            // Twice the window, all at once.
            for i in 0..2 * WINDOW {
                out.extend_from_slice(&encode(&proto::Frame::StreamItem(proto::StreamItem {
                    request_id: proto::RequestId(1),
                    codec: proto::CodecId::JSON,
                    annotations: proto::Annotations::new(),
                    item: Bytes::from(i.to_string()),
                    attachment: Bytes::new(),
                })));
            }
            io.write_all(&out).await.unwrap();
            let rest = read_frames(&mut io, &mut buf, usize::MAX).await;
            let g = rest
                .iter()
                .find_map(|f| match f {
                    proto::Frame::GoAway(g) => Some(g),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{addr}: no GOAWAY: {rest:?}"));
            assert_eq!(g.code, proto::ErrorCode::FLOW_CONTROL, "{addr}");
            assert!(g.message.contains("no credit"), "{addr}: {}", g.message);
            // The handler of the closed connection is stopped; the server serves others.
            until_set(&svc.dropped, "the handler outlived its connection").await;
            let client = StatsClient::new(Proxy::new(&at).unwrap(), PROVIDER);
            assert_eq!(client.add(1, 1).await.unwrap(), 2, "{addr}");
            assert_eq!(
                client.sum(futures::stream::iter([1u64, 2])).await.unwrap(),
                3
            );
            engine.finalize().await;
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_the_argument_streams_last_item() {
    let dir = tempfile::tempdir().unwrap();
    for addr in addresses(&dir, "lost") {
        bounded(&addr.clone(), async {
            let (engine, svc) = server(&addr).await;
            let at = engine.address();
            let mut io = raw_connect(&at).await;
            let mut buf = BytesMut::new();
            let mut ext = proto::Extensions::new();
            ext.set(proto::ExtensionTag::STREAMS, Bytes::new()).unwrap();
            io.write_all(&encode(&proto::Frame::Hello(proto::Hello {
                versions: vec![proto::VERSION],
                codecs: vec![proto::CodecId::JSON],
                limits: proto::Limits::default(),
                extensions: ext,
            })))
            .await
            .unwrap();
            read_frames(&mut io, &mut buf, 1).await;
            let mut out = encode(&proto::Frame::Call(proto::Call {
                request_id: proto::RequestId(1),
                provider: proto::ProviderId(PROVIDER),
                codec: proto::CodecId::JSON,
                oneway: false,
                upload: true,
                method: proto::Method::new("stats_until_error").unwrap(),
                annotations: proto::Annotations::new(),
                args: Bytes::from_static(b"[]"),
                kwargs: Bytes::new(),
                attachment: Bytes::new(),
            }));
            for i in 0..3u64 {
                out.extend_from_slice(&encode(&proto::Frame::StreamItem(proto::StreamItem {
                    request_id: proto::RequestId(1),
                    codec: proto::CodecId::JSON,
                    annotations: proto::Annotations::new(),
                    item: Bytes::from(i.to_string()),
                    attachment: Bytes::new(),
                })));
            }
            io.write_all(&out).await.unwrap();
            // The items arrive, then the caller goes away in the middle of its stream.
            for _ in 0..2000 {
                if svc.seen.lock().unwrap().0.len() == 3 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            drop(io);
            for _ in 0..2000 {
                if svc.seen.lock().unwrap().1.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let (items, err) = svc.seen.lock().unwrap().clone();
            assert_eq!(items, [0, 1, 2], "{addr}");
            let err = err.unwrap_or_else(|| panic!("{addr}: the handler saw no error"));
            assert!(err.contains("connection closed"), "{addr}: {err}");
            // The server serves on.
            let client = StatsClient::new(Proxy::new(&at).unwrap(), PROVIDER);
            assert_eq!(client.add(2, 2).await.unwrap(), 4, "{addr}");
            engine.finalize().await;
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_do_not_stream_their_arguments() {
    let (engine, _svc) = server("tcp://127.0.0.1:0").await;
    let proxy = Proxy::new(&engine.address())
        .unwrap()
        .expose(Absorber, 5)
        .unwrap();
    let errors: Vec<String> = StatsClient::new(proxy, PROVIDER).call_back().await.unwrap();
    assert!(errors[0].contains("calls do not stream"), "{errors:?}");
    assert!(errors[1].contains("a callback cannot send"), "{errors:?}");
    engine.finalize().await;
}

/// Argument items waiting for their handler count against the server-wide receive budget
/// (`max_buffered`): a caller that fills it while its handler does not read is closed with
/// GOAWAY LIMIT_EXCEEDED, the budget comes back when it goes, and others are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_argument_items_count_against_the_receive_budget() {
    let engine = Engine::server("tcp://127.0.0.1:0")
        .accept([CodecId::JSON, CodecId::MSGPACK])
        .upload_window(256)
        .max_buffered(64 * 1024)
        .start()
        .await
        .unwrap();
    let svc = Arc::new(Stats::default());
    engine.register_arc(svc.clone(), PROVIDER).unwrap();
    bounded("budget", async {
        let client = StatsClient::new(Proxy::new(&engine.address()).unwrap(), PROVIDER);
        // 256 items of 1 KiB fit the window but not 64 KiB of budget, since `hold` reads
        // one and waits (the items' type does not matter to the budget).
        let proxy = Proxy::new(&engine.address()).unwrap();
        let payload = "x".repeat(1024);
        let err = proxy
            .call_on(PROVIDER, "stats_hold")
            .unwrap()
            .upload(futures::stream::iter(0..256).map(move |_| payload.clone()))
            .call::<u64>()
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("receive buffers are full"),
            "{err:?}"
        );
        until_set(&svc.dropped, "the handler outlived its connection").await;
        // The budget came back: the same server takes another argument stream.
        assert_eq!(
            client.sum(futures::stream::iter(1..=100u64)).await.unwrap(),
            5050
        );
    })
    .await;
    engine.finalize().await;
}
