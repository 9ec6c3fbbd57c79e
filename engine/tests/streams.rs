//! Issue 12, item 1: streamed results under credit flow control (SPEC §6.5, §6.12), over
//! tcp, unix sockets and the in-memory transport: typed and dynamic clients, a slow
//! consumer that keeps the producer within its window, dropping the stream drops the
//! producer, an error item ends the stream and the connection serves the next call, and
//! peers that break flow control are closed with GOAWAY FLOW_CONTROL.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirecall::{CodecId, Engine, Error, ItemStream, Proxy};
use wirecall_protocol as proto;

mod common;
use common::{encode, raw_connect, read_frames, RawIo, SetOnDrop};

/// Bound of every test.
const LIMIT: Duration = Duration::from_secs(30);
const PROVIDER: u16 = 7;

#[derive(Default)]
struct Numbers {
    /// Items the producers of `watched` yielded.
    produced: Arc<AtomicU64>,
    /// Set when the producer of `endless` or `stalls` was dropped.
    dropped: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("item {0} is unlucky")]
struct Unlucky(u64);

#[wirecall::provider(service = "numbers")]
impl Numbers {
    /// 0..n from an iterator (a synchronous method).
    #[remote]
    fn count(&self, n: u64) -> ItemStream<u64> {
        ItemStream::iter(0..n)
    }

    /// 0..n as strings, from an async method.
    #[remote]
    async fn words(&self, n: u64) -> ItemStream<String> {
        tokio::task::yield_now().await;
        ItemStream::new(futures::stream::iter((0..n).map(|i| format!("w{i}"))))
    }

    /// Counts in `produced` every item it yields.
    #[remote]
    fn watched(&self, n: u64) -> ItemStream<u64> {
        let produced = self.produced.clone();
        ItemStream::iter((0..n).inspect(move |_| {
            produced.fetch_add(1, Ordering::SeqCst);
        }))
    }

    /// Never ends; sets `dropped` when its producer is dropped.
    #[remote]
    fn endless(&self) -> ItemStream<u64> {
        let guard = SetOnDrop(self.dropped.clone());
        ItemStream::new(futures::stream::unfold(
            (0u64, guard),
            |(i, g)| async move { Some((i, (i + 1, g))) },
        ))
    }

    /// One item, then waits forever; sets `dropped` when its producer is dropped.
    #[remote]
    fn stalls(&self) -> ItemStream<u64> {
        let guard = SetOnDrop(self.dropped.clone());
        ItemStream::new(
            futures::stream::once(async { 1u64 })
                .chain(futures::stream::pending())
                .map(move |x| {
                    let _ = &guard;
                    x
                }),
        )
    }

    /// Items until `fail_at`, then an error item.
    #[remote]
    fn until(&self, fail_at: u64) -> ItemStream<u64> {
        ItemStream::try_new(futures::stream::iter((0..).map(move |i| {
            if i == fail_at {
                Err(Unlucky(i))
            } else {
                Ok(i)
            }
        })))
    }

    /// Refuses before streaming anything.
    #[remote]
    fn refuse(&self, ok: bool) -> Result<ItemStream<u64>, Unlucky> {
        if ok {
            Ok(ItemStream::iter([7u64]))
        } else {
            Err(Unlucky(13))
        }
    }

    #[remote]
    fn add(&self, a: u64, b: u64) -> u64 {
        a + b
    }
}

fn addresses(dir: &tempfile::TempDir, test: &str) -> Vec<String> {
    vec![
        "tcp://127.0.0.1:0".to_string(),
        format!(
            "unix://{}",
            dir.path().join(format!("{test}.sock")).display()
        ),
        format!("mem://streams-{test}"),
    ]
}

async fn server(addr: &str) -> (Engine, Arc<Numbers>) {
    let engine = Engine::server(addr)
        .accept([CodecId::JSON, CodecId::MSGPACK])
        .start()
        .await
        .unwrap();
    let svc = Arc::new(Numbers::default());
    engine.register_arc(svc.clone(), PROVIDER).unwrap();
    (engine, svc)
}

async fn bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_and_dynamic_streams_over_every_transport() {
    let dir = tempfile::tempdir().unwrap();
    for addr in addresses(&dir, "every") {
        bounded(&addr.clone(), async {
            let (engine, _svc) = server(&addr).await;
            let at = engine.address();
            let client = NumbersClient::new(Proxy::new(&at).unwrap(), PROVIDER);
            // More items than the window, so credit must flow back for it to finish.
            let n = 3 * wirecall::DEFAULT_WINDOW as u64 + 5;
            let got: Vec<u64> = client
                .count(n)
                .await
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
                .await;
            assert_eq!(got, (0..n).collect::<Vec<_>>(), "{addr}");
            let words: Vec<String> = client
                .words(3)
                .await
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
                .await;
            assert_eq!(words, ["w0", "w1", "w2"], "{addr}");
            // The dynamic proxy, msgpack, a small window.
            let proxy = Proxy::new(&at).unwrap().codec(CodecId::MSGPACK);
            let s = proxy
                .call_on(PROVIDER, "numbers_count")
                .unwrap()
                .arg(100u64)
                .window(3)
                .stream::<u64>()
                .await
                .unwrap();
            let sum: u64 = s
                .map(|r| r.unwrap())
                .fold(0, |a, b| async move { a + b })
                .await;
            assert_eq!(sum, 4950, "{addr}");
            // An empty stream, and a plain method read as a stream of one value.
            let empty: Vec<_> = client.count(0).await.unwrap().collect().await;
            assert!(empty.is_empty(), "{addr}");
            let one: Vec<u64> = proxy
                .call_on(PROVIDER, "numbers_add")
                .unwrap()
                .arg(2u64)
                .arg(3u64)
                .stream::<u64>()
                .await
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
                .await;
            assert_eq!(one, [5], "{addr}");
            // Many streams at once on one connection, interleaved.
            let all = futures::future::join_all((0..8u64).map(|i| {
                let client = &client;
                async move {
                    client
                        .count(50 + i)
                        .await
                        .unwrap()
                        .map(|r| r.unwrap())
                        .collect::<Vec<u64>>()
                        .await
                        .len() as u64
                }
            }))
            .await;
            assert_eq!(all, (0..8).map(|i| 50 + i).collect::<Vec<_>>());
            engine.finalize().await;
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_keeps_the_producer_within_its_window() {
    let dir = tempfile::tempdir().unwrap();
    for addr in addresses(&dir, "slow") {
        bounded(&addr.clone(), async {
            let (engine, svc) = server(&addr).await;
            let proxy = Proxy::new(&engine.address()).unwrap();
            const WINDOW: u64 = 8;
            let mut s = proxy
                .call_on(PROVIDER, "numbers_watched")
                .unwrap()
                .arg(60u64)
                .window(WINDOW as u32)
                .stream::<u64>()
                .await
                .unwrap();
            let mut taken = 0u64;
            let mut most_ahead = 0;
            while let Some(item) = s.next().await {
                assert_eq!(item.unwrap(), taken);
                taken += 1;
                // Time for a producer that ignored the window to run far ahead.
                tokio::time::sleep(Duration::from_millis(3)).await;
                let produced = svc.produced.load(Ordering::SeqCst);
                let ahead = produced - taken;
                most_ahead = most_ahead.max(ahead);
                assert!(
                    ahead <= WINDOW,
                    "{addr}: {produced} produced with {taken} taken: more than the window of {WINDOW} ahead"
                );
            }
            assert_eq!(taken, 60);
            // The window was used, not a lock-step.
            assert!(most_ahead >= WINDOW / 2, "{addr}: at most {most_ahead} ahead");
            engine.finalize().await;
        })
        .await;
    }
}

async fn until_set(flag: &AtomicBool, what: &str) {
    bounded(what, async {
        while !flag.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_drops_the_producer() {
    let dir = tempfile::tempdir().unwrap();
    for addr in addresses(&dir, "drop") {
        bounded(&addr.clone(), async {
            let (engine, svc) = server(&addr).await;
            let client = NumbersClient::new(Proxy::new(&engine.address()).unwrap(), PROVIDER);
            // A producer waiting for credit.
            let mut s = client.endless().await.unwrap();
            for i in 0..3 {
                assert_eq!(s.next().await.unwrap().unwrap(), i);
            }
            drop(s);
            until_set(&svc.dropped, "the endless producer was never dropped").await;
            // A producer waiting for its next item.
            svc.dropped.store(false, Ordering::SeqCst);
            let mut s = client.stalls().await.unwrap();
            assert_eq!(s.next().await.unwrap().unwrap(), 1);
            drop(s);
            until_set(&svc.dropped, "the stalled producer was never dropped").await;
            // The connection serves the next call.
            assert_eq!(client.add(1, 2).await.unwrap(), 3, "{addr}");
            engine.finalize().await;
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_item_ends_the_stream_and_the_connection_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    for addr in addresses(&dir, "error") {
        bounded(&addr.clone(), async {
            let (engine, _svc) = server(&addr).await;
            let client = NumbersClient::new(Proxy::new(&engine.address()).unwrap(), PROVIDER);
            let items: Vec<Result<u64, Error>> = client.until(3).await.unwrap().collect().await;
            assert_eq!(items.len(), 4, "{addr}: {items:?}");
            for (i, item) in items[..3].iter().enumerate() {
                assert_eq!(*item.as_ref().unwrap(), i as u64);
            }
            match &items[3] {
                Err(Error::Remote(r)) => {
                    assert!(r.type_name.contains("Unlucky"), "{r:?}");
                    assert_eq!(r.message, "item 3 is unlucky");
                }
                other => panic!("{addr}: {other:?}"),
            }
            // An error before the stream is returned by the call itself.
            match client.refuse(false).await {
                Err(Error::Remote(r)) => assert_eq!(r.message, "item 13 is unlucky"),
                other => panic!("{addr}: {other:?}"),
            }
            let ok: Vec<u64> = client
                .refuse(true)
                .await
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
                .await;
            assert_eq!(ok, [7]);
            // So is an unknown method.
            let proxy = Proxy::new(&engine.address()).unwrap();
            match proxy
                .call_on(PROVIDER, "numbers_nope")
                .unwrap()
                .stream::<u64>()
                .await
            {
                Err(Error::NoSuchMethod { .. }) => {}
                other => panic!("{addr}: {other:?}"),
            }
            // A streaming method called as a plain call: refused on the client, cancelled
            // on the server, and the connection serves on.
            let e = proxy
                .call_on(PROVIDER, "numbers_count")
                .unwrap()
                .arg(1_000_000u64)
                .call::<u64>()
                .await
                .unwrap_err();
            assert!(e.to_string().contains("returns a stream"), "{addr}: {e}");
            assert_eq!(client.add(2, 2).await.unwrap(), 4);
            engine.finalize().await;
        })
        .await;
    }
}

// ---- peers that break flow control ----

/// A server that answers the handshake, then streams `items` items to the first call,
/// whatever its window.
async fn credit_ignoring_server(
    listener: tokio::net::TcpListener,
    items: u64,
) -> Vec<proto::Frame> {
    let (sock, _) = listener.accept().await.unwrap();
    let mut io: Box<dyn RawIo> = Box::new(sock);
    let mut buf = BytesMut::new();
    let hello = read_frames(&mut io, &mut buf, 1).await;
    assert!(
        matches!(hello.as_slice(), [proto::Frame::Hello(_)]),
        "{hello:?}"
    );
    let welcome = proto::Frame::Welcome(proto::Welcome {
        version: proto::VERSION,
        codec: proto::CodecId::JSON,
        accepted: vec![proto::CodecId::JSON],
        limits: proto::Limits::default(),
        extensions: Default::default(),
    });
    io.write_all(&encode(&welcome)).await.unwrap();
    let call = read_frames(&mut io, &mut buf, 1).await;
    let proto::Frame::Call(call) = &call[0] else {
        panic!("{call:?}")
    };
    assert_eq!(call.annotations.window(), Some(4));
    let id = call.request_id;
    let mut out = encode(&proto::Frame::Reply(proto::Reply {
        request_id: id,
        codec: proto::CodecId::JSON,
        stream: true,
        annotations: proto::Annotations::new(),
        result: Bytes::new(),
        attachment: Bytes::new(),
    }));
    for i in 0..items {
        out.extend_from_slice(&encode(&proto::Frame::StreamItem(proto::StreamItem {
            request_id: id,
            codec: proto::CodecId::JSON,
            annotations: proto::Annotations::new(),
            item: Bytes::from(i.to_string()),
            attachment: Bytes::new(),
        })));
    }
    io.write_all(&out).await.unwrap();
    // Whatever the client sends until it closes.
    let mut rest = Vec::new();
    let more = read_frames(&mut io, &mut buf, usize::MAX).await;
    rest.extend(more);
    rest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_ignoring_credit_is_closed_with_goaway_flow_control() {
    bounded("credit-ignoring server", async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = format!("tcp://{}", listener.local_addr().unwrap());
        let peer = tokio::spawn(credit_ignoring_server(listener, 10));
        let proxy = Proxy::new(&at).unwrap().codec(CodecId::JSON);
        let s = proxy
            .call_on(PROVIDER, "numbers_count")
            .unwrap()
            .window(4)
            .stream::<u64>()
            .await;
        // The stream may start before the excess items are read; it then fails.
        if let Ok(s) = s {
            let items: Vec<Result<u64, Error>> = s.collect().await;
            assert!(items.len() <= 5, "{items:?}");
            assert!(items.last().is_some_and(|r| r.is_err()), "{items:?}");
        }
        let sent = peer.await.unwrap();
        let goaway = sent.iter().find_map(|f| match f {
            proto::Frame::GoAway(g) => Some(g),
            _ => None,
        });
        let g = goaway.unwrap_or_else(|| panic!("no GOAWAY: {sent:?}"));
        assert_eq!(g.code, proto::ErrorCode::FLOW_CONTROL);
        assert!(g.message.contains("no credit"), "{}", g.message);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_overflowing_credit_is_closed_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    for addr in addresses(&dir, "overflow") {
        bounded(&addr.clone(), async {
            let (engine, _svc) = server(&addr).await;
            let at = engine.address();
            let mut io = raw_connect(&at).await;
            let mut buf = BytesMut::new();
            io.write_all(&encode(&proto::Frame::Hello(proto::Hello {
                versions: vec![proto::VERSION],
                codecs: vec![proto::CodecId::JSON],
                limits: proto::Limits::default(),
                extensions: Default::default(),
            })))
            .await
            .unwrap();
            let w = read_frames(&mut io, &mut buf, 1).await;
            assert!(matches!(w.as_slice(), [proto::Frame::Welcome(_)]), "{w:?}");
            let call = proto::Frame::Call(proto::Call {
                request_id: proto::RequestId(1),
                provider: proto::ProviderId(PROVIDER),
                codec: proto::CodecId::JSON,
                oneway: false,
                upload: false,
                method: proto::Method::new("numbers_endless").unwrap(),
                annotations: proto::Annotations::builder().window(2).build(),
                args: Bytes::from_static(b"[]"),
                kwargs: Bytes::new(),
                attachment: Bytes::new(),
            });
            io.write_all(&encode(&call)).await.unwrap();
            // REPLY and exactly the window's two items, then nothing until credit comes.
            let got = read_frames(&mut io, &mut buf, 3).await;
            assert!(
                matches!(&got[0], proto::Frame::Reply(r) if r.stream),
                "{got:?}"
            );
            assert_eq!(got.len(), 3, "{got:?}");
            // Nothing more comes while the client grants no credit.
            let more =
                tokio::time::timeout(Duration::from_millis(100), io.read_buf(&mut buf)).await;
            assert!(
                more.is_err(),
                "{addr}: the server sent beyond the window: {more:?} {buf:?}"
            );
            // CREDIT past 2^32-1 items outstanding: the connection is closed.
            let mut credits = encode(&proto::Frame::Credit(proto::RequestId(1), u32::MAX));
            credits.extend_from_slice(&encode(&proto::Frame::Credit(
                proto::RequestId(1),
                u32::MAX,
            )));
            io.write_all(&credits).await.unwrap();
            let rest = read_frames(&mut io, &mut buf, usize::MAX).await;
            let g = rest
                .iter()
                .find_map(|f| match f {
                    proto::Frame::GoAway(g) => Some(g),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{addr}: no GOAWAY: {rest:?}"));
            assert_eq!(g.code, proto::ErrorCode::FLOW_CONTROL, "{addr}");
            assert!(g.message.contains("2^32-1"), "{addr}: {}", g.message);
            // The server serves other connections.
            let client = NumbersClient::new(Proxy::new(&at).unwrap(), PROVIDER);
            assert_eq!(client.add(1, 1).await.unwrap(), 2, "{addr}");
            engine.finalize().await;
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_left_unread_ends_after_the_servers_stream_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    for addr in addresses(&dir, "lifetime") {
        bounded(&addr.clone(), async {
            let engine = Engine::server(&addr)
                .accept([CodecId::JSON])
                .stream_lifetime(Some(Duration::from_millis(200)))
                .start()
                .await
                .unwrap();
            let svc = Arc::new(Numbers::default());
            engine.register_arc(svc.clone(), PROVIDER).unwrap();
            let proxy = Proxy::new(&engine.address()).unwrap();
            let mut s = proxy
                .call_on(PROVIDER, "numbers_endless")
                .unwrap()
                .window(4)
                .stream::<u64>()
                .await
                .unwrap();
            assert_eq!(s.next().await.unwrap().unwrap(), 0);
            // Not read for longer than the lifetime: the server gives the stream up.
            until_set(&svc.dropped, "the idle stream's producer was never dropped").await;
            let rest: Vec<Result<u64, Error>> = s.collect().await;
            assert!(rest.len() <= 4, "{addr}: {rest:?}");
            match rest.last() {
                Some(Err(Error::Timeout { .. })) => {}
                other => panic!("{addr}: {other:?}"),
            }
            // A stream read in time is not affected, however slow its producer.
            let client = NumbersClient::new(proxy.clone(), PROVIDER);
            let n: Vec<u64> = client
                .count(50)
                .await
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
                .await;
            assert_eq!(n.len(), 50);
            engine.finalize().await;
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyro5_clients_read_streams_as_remote_iterators() {
    use wirecall::{PyroProxy, Value};
    bounded("pyro5 streams", async {
        let (engine, svc) = server("tcp://127.0.0.1:0").await;
        engine.set_object_id(PROVIDER, "numbers").unwrap();
        let port = engine.address().rsplit(':').next().unwrap().to_string();
        let proxy = PyroProxy::new(&format!("PYRO:numbers@127.0.0.1:{port}"))
            .unwrap()
            .serializer(CodecId::JSON)
            .unwrap();
        // Items one `get_next_stream_item` at a time, then StopIteration.
        let items: Vec<Value> = proxy
            .call_stream("count", vec![Value::Int(4)], vec![])
            .await
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
            .await;
        assert_eq!(items, (0..4i128).map(Value::Int).collect::<Vec<_>>());
        // An error item ends the iteration with the handler's error.
        let items: Vec<Result<Value, Error>> = proxy
            .call_stream("until", vec![Value::Int(2)], vec![])
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(items.len(), 3, "{items:?}");
        let e = items[2].as_ref().unwrap_err();
        assert!(e.to_string().contains("item 2 is unlucky"), "{e}");
        // Abandoning the iterator closes the stream: the producer is dropped.
        let mut s = proxy.call_stream("endless", vec![], vec![]).await.unwrap();
        assert_eq!(s.next().await.unwrap().unwrap(), Value::Int(0));
        drop(s);
        until_set(&svc.dropped, "close_stream did not drop the producer").await;
        // The connection serves plain calls on.
        let v = proxy
            .call("add", vec![Value::Int(2), Value::Int(5)], vec![])
            .await
            .unwrap();
        assert_eq!(v, Value::Int(7));
        engine.finalize().await;
    })
    .await;
}

/// A proxy in Pyro mode reads no native stream: the error says where Pyro5 remote
/// iterators are read (no connection is tried: nothing listens on the port).
#[tokio::test]
async fn a_pyro_mode_proxy_points_streams_to_pyro_proxy() {
    let proxy = Proxy::new("PYRO:obj@127.0.0.1:9").unwrap();
    let e = proxy
        .call("count")
        .unwrap()
        .arg(3u64)
        .stream::<u64>()
        .await
        .expect_err("refused");
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    assert!(e.to_string().contains("call_stream"), "{e}");
}

/// A connection lost before a stream's first answer fails the stream at once (it used to
/// wait forever for a REPLY that could not come).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_before_the_streams_first_answer_fails_it() {
    bounded("lost before the first answer", async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = format!("tcp://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let mut io: Box<dyn RawIo> = Box::new(sock);
            let mut buf = BytesMut::new();
            read_frames(&mut io, &mut buf, 1).await;
            let welcome = proto::Frame::Welcome(proto::Welcome {
                version: proto::VERSION,
                codec: proto::CodecId::JSON,
                accepted: vec![proto::CodecId::JSON],
                limits: proto::Limits::default(),
                extensions: Default::default(),
            });
            io.write_all(&encode(&welcome)).await.unwrap();
            // The CALL arrives; the server goes away without answering.
            read_frames(&mut io, &mut buf, 1).await;
        });
        let proxy = Proxy::new(&at).unwrap().max_retries(0);
        let err = proxy
            .call_on(PROVIDER, "numbers_count")
            .unwrap()
            .arg(3u64)
            .stream::<u64>()
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
        server.await.unwrap();
    })
    .await;
}
