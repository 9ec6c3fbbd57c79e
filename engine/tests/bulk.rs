//! Bulk values (`wirecall::Bulk`, `#[serde(with = "wirecall::bulk")]`): byte arguments and
//! results that travel as raw attachments (SPEC §6.11), with every codec, over tcp and unix
//! sockets on loopback and the in-memory transport; a 64 MiB echo with raised limits; the
//! faults of a peer that lies about its attachment (each fails that call or closes that
//! connection with a clear GOAWAY, nothing else); and the Pyro5 dialect, which has no
//! attachments (a `Bulk` is plain bytes there).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirecall::{Bulk, CodecId, Engine, Proxy};
use wirecall_protocol as proto;

mod common;
use common::{decode_all, raw_connect, RawIo};

const LIMIT: Duration = Duration::from_secs(60);
const P: u16 = 9;

/// A document with bulk fields of every kind.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Doc {
    name: String,
    data: Bulk,
    #[serde(with = "wirecall::bulk")]
    raw: Vec<u8>,
    #[serde(with = "wirecall::bulk")]
    shared: Bytes,
    tags: Vec<String>,
}

struct Blob;

#[wirecall::provider(service = "blob")]
impl Blob {
    /// A synchronous echo: the answer may take the direct path.
    #[remote]
    fn echo(&self, data: Bulk) -> Bulk {
        data
    }

    #[remote]
    async fn echo_async(&self, data: Bulk) -> Bulk {
        tokio::task::yield_now().await;
        data
    }

    #[remote]
    fn len(&self, data: Bulk) -> usize {
        data.len()
    }

    /// Several values in, several out: the concatenation, the lengths, and the values
    /// back in reverse order.
    #[remote]
    fn juggle(&self, a: Bulk, b: Bulk, c: Bulk) -> (Bulk, Vec<usize>, Vec<Bulk>) {
        let mut all = a.to_vec();
        all.extend_from_slice(&b);
        all.extend_from_slice(&c);
        (
            Bulk::from(all),
            vec![a.len(), b.len(), c.len()],
            vec![c, b, a],
        )
    }

    /// The document with its byte fields rotated and its name marked.
    #[remote]
    fn rotate(&self, doc: Doc) -> Doc {
        Doc {
            name: format!("{}!", doc.name),
            data: Bulk::from(doc.shared),
            raw: doc.data.to_vec(),
            shared: Bytes::from(doc.raw),
            tags: doc.tags,
        }
    }
}

struct Server {
    engine: Engine,
    _dir: Option<tempfile::TempDir>,
}

async fn start(kind: &str, max_frame: Option<u32>) -> Server {
    let (addr, dir) = match kind {
        "tcp" => ("tcp://127.0.0.1:0".to_string(), None),
        "unix" => {
            let dir = tempfile::tempdir().unwrap();
            let a = format!("unix://{}", dir.path().join("bulk.sock").display());
            (a, Some(dir))
        }
        mem => (mem.to_string(), None),
    };
    let mut b = Engine::server(addr).accept(CodecId::BUILTIN);
    if let Some(m) = max_frame {
        b = b.max_frame_len(m);
    }
    let engine = b.start().await.unwrap();
    engine.register_provider(Blob, P).unwrap();
    Server { engine, _dir: dir }
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Every codec: echoes (sync and async handlers, small, empty and chunk-sized values),
/// several values in one call and one result, a struct with bulk fields, keyword args.
async fn every_codec(kind: &str) {
    let s = start(kind, None).await;
    for codec in CodecId::BUILTIN {
        let p = Proxy::new(&s.engine.address())
            .unwrap()
            .codec(codec)
            .timeout(LIMIT);
        let ctx = format!("{kind} {codec}");
        for n in [0usize, 7, 5000, 300_000] {
            let v = Bulk::from(pattern(n, n as u8));
            for m in ["blob_echo", "blob_echo_async"] {
                let back: Bulk = p
                    .call_on(P, m)
                    .unwrap()
                    .arg(&v)
                    .call()
                    .await
                    .unwrap_or_else(|e| panic!("{ctx} {m} {n}: {e}"));
                assert_eq!(back, v, "{ctx} {m} {n}");
            }
            let len: usize = p
                .call_on(P, "blob_len")
                .unwrap()
                .kwarg("data", &v)
                .call()
                .await
                .unwrap_or_else(|e| panic!("{ctx} len kwarg: {e}"));
            assert_eq!(len, n, "{ctx}");
        }
        let (a, b, c) = (
            Bulk::from(pattern(6000, 1)),
            Bulk::new(),
            Bulk::from(pattern(3, 2)),
        );
        let (all, lens, rev): (Bulk, Vec<usize>, Vec<Bulk>) = p
            .call_on(P, "blob_juggle")
            .unwrap()
            .arg(&a)
            .arg(&b)
            .arg(&c)
            .call()
            .await
            .unwrap_or_else(|e| panic!("{ctx} juggle: {e}"));
        assert_eq!(lens, [6000, 0, 3], "{ctx}");
        assert_eq!(all.len(), 6003);
        assert_eq!(&all[..6000], &a[..]);
        assert_eq!(&all[6000..], &c[..]);
        assert_eq!(rev, [c.clone(), b.clone(), a.clone()], "{ctx}");
        let doc = Doc {
            name: "d".into(),
            data: Bulk::from(pattern(10_000, 3)),
            raw: pattern(20, 4),
            shared: Bytes::from(pattern(0, 5)),
            tags: vec!["x".into(), "y".into()],
        };
        let back: Doc = p
            .call_on(P, "blob_rotate")
            .unwrap()
            .arg(&doc)
            .call()
            .await
            .unwrap_or_else(|e| panic!("{ctx} rotate: {e}"));
        assert_eq!(back.name, "d!");
        assert_eq!(&back.data[..], &doc.shared[..], "{ctx}");
        assert_eq!(back.raw, doc.data.to_vec(), "{ctx}");
        assert_eq!(&back.shared[..], &doc.raw[..], "{ctx}");
        assert_eq!(back.tags, doc.tags);
    }
    s.engine.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_over_tcp() {
    tokio::time::timeout(LIMIT * 2, every_codec("tcp"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_over_unix() {
    tokio::time::timeout(LIMIT * 2, every_codec("unix"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_over_mem() {
    tokio::time::timeout(LIMIT * 2, every_codec("mem://bulk-codecs"))
        .await
        .unwrap();
}

/// A 64 MiB echo, with both sides' frame limits raised to fit it.
async fn large_echo(kind: &str) {
    const N: usize = 64 << 20;
    let max = (N + (1 << 20)) as u32;
    let s = start(kind, Some(max)).await;
    let p = Proxy::new(&s.engine.address())
        .unwrap()
        .receive_limits(proto::Limits {
            max_frame_len: max,
            ..proto::Limits::default()
        })
        .codec(CodecId::MSGPACK)
        .timeout(LIMIT);
    let v = Bulk::from(pattern(N, 9));
    let back: Bulk = p
        .call_on(P, "blob_echo")
        .unwrap()
        .arg(&v)
        .call()
        .await
        .unwrap();
    assert_eq!(back.len(), N);
    assert!(back == v, "the 64 MiB echo came back different");
    // Without the raised receive limit the client refuses the frame before allocating,
    // failing the call with a clear error; the server is unaffected.
    let small = Proxy::new(&s.engine.address()).unwrap().timeout(LIMIT);
    let e = small
        .call_on(P, "blob_echo")
        .unwrap()
        .arg(&v)
        .call::<Bulk>()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("frame"), "{e}");
    let n: usize = p
        .call_on(P, "blob_len")
        .unwrap()
        .arg(&v)
        .call()
        .await
        .unwrap();
    assert_eq!(n, N);
    s.engine.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_echo_over_tcp() {
    tokio::time::timeout(LIMIT * 2, large_echo("tcp"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_echo_over_unix() {
    tokio::time::timeout(LIMIT * 2, large_echo("unix"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_echo_over_mem() {
    tokio::time::timeout(LIMIT * 2, large_echo("mem://bulk-large"))
        .await
        .unwrap();
}

// ---- faults, with raw frames ----

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

/// A raw connection past its handshake.
async fn handshaken(addr: &str) -> Box<dyn RawIo> {
    let mut io = raw_connect(addr).await;
    io.write_all(&hello()).await.unwrap();
    let mut buf = BytesMut::new();
    loop {
        io.read_buf(&mut buf).await.unwrap();
        if decode_all(&buf)
            .iter()
            .any(|f| matches!(f, proto::Frame::Welcome(_)))
        {
            return io;
        }
    }
}

/// A CALL frame of `args` (JSON) with `annotations` and `attachment`.
fn call(
    id: u64,
    method: &str,
    args: &str,
    annotations: proto::Annotations,
    att: &[u8],
) -> BytesMut {
    let mut b = BytesMut::new();
    proto::Frame::Call(proto::Call {
        request_id: proto::RequestId(id),
        provider: proto::ProviderId(P),
        codec: proto::CodecId::JSON,
        oneway: false,
        upload: false,
        method: proto::Method::new(method.to_string()).unwrap(),
        annotations,
        args: Bytes::copy_from_slice(args.as_bytes()),
        kwargs: Bytes::new(),
        attachment: Bytes::copy_from_slice(att),
    })
    .encode(&mut b)
    .unwrap();
    b
}

/// Reads frames until one answers (or ends) call `id`; EOF gives what was read.
async fn answer(io: &mut Box<dyn RawIo>, id: u64, buf: &mut BytesMut) -> Vec<proto::Frame> {
    loop {
        let frames = decode_all(buf);
        if frames
            .iter()
            .any(|f| f.request_id() == proto::RequestId(id) || matches!(f, proto::Frame::GoAway(_)))
        {
            return frames;
        }
        if io.read_buf(buf).await.unwrap() == 0 {
            return frames;
        }
    }
}

fn bulk(lengths: &[u32]) -> proto::Annotations {
    proto::Annotations::builder().bulk(lengths).unwrap().build()
}

async fn faults(kind: &str) {
    let s = start(kind, None).await;
    let addr = s.engine.address();
    let mut io = handshaken(&addr).await;
    let mut buf = BytesMut::new();

    // A placeholder naming a value the attachment does not have: that call fails with
    // BAD_ARGUMENTS naming the placeholder.
    io.write_all(&call(1, "blob_len", "[5]", bulk(&[3]), b"abc"))
        .await
        .unwrap();
    let frames = answer(&mut io, 1, &mut buf).await;
    match frames.last() {
        Some(proto::Frame::Error(e)) => {
            assert_eq!(e.body.code, proto::ErrorCode::BAD_ARGUMENTS);
            assert!(
                e.body.message.contains("bulk placeholder 5 names no value"),
                "{}",
                e.body.message
            );
        }
        other => panic!("{kind}: expected an ERROR, got {other:?}"),
    }
    // Lengths that do not add up to the attachment: that call fails too.
    io.write_all(&call(2, "blob_len", "[0]", bulk(&[10]), b"abc"))
        .await
        .unwrap();
    buf.clear();
    let frames = answer(&mut io, 2, &mut buf).await;
    match frames.last() {
        Some(proto::Frame::Error(e)) => {
            assert_eq!(e.body.code, proto::ErrorCode::BAD_ARGUMENTS);
            assert!(
                e.body.message.contains("add up to 10 bytes"),
                "{}",
                e.body.message
            );
        }
        other => panic!("{kind}: expected an ERROR, got {other:?}"),
    }
    // An echo in bulk mode: the value comes from the attachment and goes back in one; the
    // codec payloads carry only the placeholder.
    io.write_all(&call(7, "blob_echo", "[0]", bulk(&[5]), b"hello"))
        .await
        .unwrap();
    buf.clear();
    let frames = answer(&mut io, 7, &mut buf).await;
    match frames.last() {
        Some(proto::Frame::Reply(r)) => {
            assert_eq!(&r.result[..], b"0", "{kind}");
            assert_eq!(
                r.annotations.bulk_lengths().map(|l| l.collect::<Vec<_>>()),
                Some(vec![5])
            );
            assert_eq!(&r.attachment[..], b"hello");
        }
        other => panic!("{kind}: expected a REPLY, got {other:?}"),
    }
    // The connection keeps serving: a good call on it, and a raw attachment without
    // `wc.bulk` (one value).
    io.write_all(&call(8, "blob_len", "[0]", bulk(&[3]), b"abc"))
        .await
        .unwrap();
    io.write_all(&call(
        9,
        "blob_len",
        "[0]",
        proto::Annotations::new(),
        b"abcd",
    ))
    .await
    .unwrap();
    buf.clear();
    let frames = answer(&mut io, 9, &mut buf).await;
    let replies: Vec<_> = frames
        .iter()
        .filter_map(|f| match f {
            proto::Frame::Reply(r) => Some((r.request_id.0, r.result.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        replies,
        [(8, Bytes::from_static(b"3")), (9, Bytes::from_static(b"4"))],
        "{kind}"
    );

    // An attachment over the frame limit: GOAWAY LIMIT_EXCEEDED from the header alone,
    // then the connection closes.
    let mut head = BytesMut::new();
    let h = proto::Header {
        version: proto::VERSION,
        kind: proto::Kind::CALL,
        flags: proto::Flags::EMPTY,
        codec: proto::CodecId::JSON,
        provider: proto::ProviderId(P),
        request_id: proto::RequestId(10),
        route_len: 8,
        annotations_len: 0,
        payload_len: 3,
        kwargs_len: 0,
        attachment_len: 64 << 20,
    };
    h.write(&mut head);
    io.write_all(&head).await.unwrap();
    buf.clear();
    let mut all = BytesMut::new();
    while io.read_buf(&mut all).await.unwrap_or(0) > 0 {}
    let frames = decode_all(&all);
    match frames.last() {
        Some(proto::Frame::GoAway(g)) => {
            assert_eq!(g.code, proto::ErrorCode::LIMIT_EXCEEDED, "{kind}");
            assert!(g.message.contains("frame"), "{}", g.message);
        }
        other => panic!("{kind}: expected a GOAWAY, got {other:?}"),
    }

    // An attachment cut short by the end of the stream: that connection ends (`truncated`).
    let mut io = handshaken(&addr).await;
    let frame = call(1, "blob_len", "[0]", bulk(&[1000]), &[7u8; 1000]);
    io.write_all(&frame[..frame.len() - 600]).await.unwrap();
    io.shutdown().await.unwrap();
    let mut all = BytesMut::new();
    while io.read_buf(&mut all).await.unwrap_or(0) > 0 {}
    // The server closed that connection (the read above ended) and dispatched nothing: the
    // half call got no answer (SPEC §10: at the end of the stream nobody reads a GOAWAY).
    assert!(
        decode_all(&all).is_empty(),
        "{kind}: {:?}",
        decode_all(&all)
    );

    // Nothing else was affected: the server serves new connections.
    let p = Proxy::new(&addr).unwrap().timeout(LIMIT);
    let n: usize = p
        .call_on(P, "blob_len")
        .unwrap()
        .arg(Bulk::from(vec![1u8; 10]))
        .call()
        .await
        .unwrap();
    assert_eq!(n, 10);
    s.engine.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_over_tcp() {
    tokio::time::timeout(LIMIT, faults("tcp")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_over_unix() {
    tokio::time::timeout(LIMIT, faults("unix")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_over_mem() {
    tokio::time::timeout(LIMIT, faults("mem://bulk-faults"))
        .await
        .unwrap();
}

/// A reply whose bulk lengths do not add up fails that call on the client, and the client's
/// connection goes on: a fake server answers the first call badly, the second well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reply_fails_that_call_only() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tcp://{}", listener.local_addr().unwrap());
    let fake = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut machine = proto::ServerConnection::new(
            proto::ServerConfig::new(vec![proto::CodecId::JSON]),
            std::time::Instant::now(),
        )
        .unwrap();
        let mut buf = BytesMut::new();
        let mut answered = 0;
        while answered < 2 {
            if sock.read_buf(&mut buf).await.unwrap() == 0 {
                return;
            }
            machine
                .handle_input_buf(&mut buf, std::time::Instant::now())
                .unwrap();
            while let Some(ev) = machine.poll_event() {
                if let proto::ServerEvent::Call(c) = ev {
                    // The client sent its value in the attachment, a placeholder in the
                    // payload.
                    assert_eq!(&c.args[..], b"[0]");
                    let sent: &[u8] = if answered == 0 { b"" } else { b"xyz" };
                    assert_eq!(&c.attachment[..], sent);
                    assert_eq!(
                        c.annotations.bulk_lengths().map(|l| l.collect::<Vec<_>>()),
                        Some(vec![sent.len() as u32])
                    );
                    let (annotations, attachment) = if answered == 0 {
                        (bulk(&[99]), Bytes::from_static(b"abc"))
                    } else {
                        (bulk(&[3]), Bytes::from_static(b"abc"))
                    };
                    machine
                        .reply(proto::Reply {
                            request_id: c.request_id,
                            codec: c.codec,
                            stream: false,
                            annotations,
                            result: Bytes::from_static(b"0"),
                            attachment,
                        })
                        .unwrap();
                    answered += 1;
                }
            }
            while let Some(b) = machine.poll_transmit() {
                sock.write_all(&b).await.unwrap();
            }
        }
        // Hold the connection until the client is done.
        let _ = sock.read_buf(&mut buf).await;
    });
    let p = Proxy::new(&addr)
        .unwrap()
        .codec(CodecId::JSON)
        .timeout(LIMIT);
    let run = async {
        let e = p
            .call_on(P, "blob_echo")
            .unwrap()
            .arg(Bulk::new())
            .call::<Bulk>()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("wc.bulk"), "{e}");
        let ok: Bulk = p
            .call_on(P, "blob_echo")
            .unwrap()
            .arg(Bulk::from(&b"xyz"[..]))
            .call()
            .await
            .unwrap();
        assert_eq!(&ok[..], b"abc");
    };
    tokio::time::timeout(LIMIT, run).await.unwrap();
    drop(p);
    // The fake's own assertions held (a panic there would show here).
    fake.abort();
    if let Err(e) = fake.await {
        assert!(e.is_cancelled(), "the fake server failed: {e}");
    }
}

/// Pyro5 has no attachments: over its dialect a `Bulk` is plain bytes, both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_pyro5_a_bulk_is_plain_bytes() {
    use wirecall::{PyroProxy, Value};
    let engine = Engine::server("tcp://127.0.0.1:0")
        .accept([CodecId::SERPENT, CodecId::MSGPACK, CodecId::JSON])
        .start()
        .await
        .unwrap();
    engine.register_provider_as(Blob, 1, "test.blob").unwrap();
    let port = engine.address().rsplit(':').next().unwrap().to_string();
    let uri = format!("PYRO:test.blob@127.0.0.1:{port}");
    for codec in [CodecId::SERPENT, CodecId::MSGPACK] {
        let p = PyroProxy::new(&uri)
            .unwrap()
            .serializer(codec)
            .unwrap()
            .timeout(LIMIT);
        let data = pattern(5000, 1);
        let back = tokio::time::timeout(
            LIMIT,
            p.call("echo", vec![Value::Bytes(data.clone())], vec![]),
        )
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{codec}: {e}"));
        let got = match back {
            Value::Bytes(b) => b,
            // serpent's form of bytes (what Python's `serpent.tobytes` reads).
            Value::Map(m) if codec == CodecId::SERPENT => {
                let field = |k: &str| {
                    m.iter().find_map(|(mk, v)| match (mk, v) {
                        (Value::Str(mk), Value::Str(v)) if mk == k => Some(v.clone()),
                        _ => None,
                    })
                };
                assert_eq!(field("encoding").as_deref(), Some("base64"));
                base64_decode(&field("data").unwrap())
            }
            other => panic!("{codec}: not bytes: {other:?}"),
        };
        assert_eq!(got, data, "{codec}");
    }
    engine.finalize().await;
}

/// Standard base64 with padding (enough for the test; no dependency).
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let n = chunk.iter().filter(|&&c| c != b'=').count();
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = if c == b'=' { 0 } else { u32::from(val(c)) };
            acc |= v << (18 - 6 * i);
        }
        out.extend_from_slice(&acc.to_be_bytes()[1..n]);
    }
    out
}

/// With compression in force, the payload may travel compressed and the attachment never is
/// (SPEC §6.9, §6.11): bulk values still come back intact, beside a compressible payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_values_beside_compression() {
    let s = start("tcp", None).await;
    let p = Proxy::new(&s.engine.address())
        .unwrap()
        .compression(wirecall::Compression::zstd())
        .timeout(LIMIT);
    let doc = Doc {
        name: "x".repeat(100_000),
        data: Bulk::from(vec![7u8; 300_000]),
        raw: pattern(5000, 1),
        shared: Bytes::from(pattern(70_000, 2)),
        tags: vec!["t".repeat(50_000)],
    };
    let back: Doc =
        tokio::time::timeout(LIMIT, p.call_on(P, "blob_rotate").unwrap().arg(&doc).call())
            .await
            .unwrap()
            .unwrap();
    assert_eq!(back.name.len(), 100_001);
    assert_eq!(&back.data[..], &doc.shared[..]);
    assert_eq!(back.raw, doc.data.to_vec());
    assert_eq!(&back.shared[..], &doc.raw[..]);
    assert_eq!(back.tags, doc.tags);
    s.engine.finalize().await;
}
