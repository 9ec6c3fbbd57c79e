//! Per-frame compression (SPEC §6.9) end to end, over tcp and unix sockets on loopback and
//! the in-memory transport: a proxy that asks for zstd gets its large calls and answers
//! compressed on the wire (bytes counted by a relay between proxy and server, so the test
//! fails if compression silently stays off); a server that accepts none still answers; a
//! compressed frame that inflates past the limit closes that one connection with GOAWAY
//! LIMIT_EXCEEDED and the server keeps serving.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirecall::{CodecId, Compression, Engine, Proxy};
use wirecall_protocol as proto;
use wirecall_transport::{Address, Listener, Stream};

mod common;
use common::{decode_all, raw_connect};

const LIMIT: Duration = Duration::from_secs(60);
const PROVIDER: u16 = 7;

struct Svc;

#[wirecall::provider(service = "z")]
impl Svc {
    #[remote]
    fn echo(&self, s: String) -> String {
        s
    }

    #[remote]
    fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
}

struct Server {
    engine: Engine,
    _dir: Option<tempfile::TempDir>,
}

/// An address of `kind` (`tcp`, `unix`, or a `mem://` name), and the directory a unix
/// socket lives in.
fn address(kind: &str, name: &str) -> (String, Option<tempfile::TempDir>) {
    match kind {
        "tcp" => ("tcp://127.0.0.1:0".to_string(), None),
        "unix" => {
            let dir = tempfile::tempdir().unwrap();
            let a = format!(
                "unix://{}",
                dir.path().join(format!("{name}.sock")).display()
            );
            (a, Some(dir))
        }
        mem => (format!("{mem}-{name}"), None),
    }
}

async fn start(
    kind: &str,
    f: impl FnOnce(wirecall::ServerBuilder) -> wirecall::ServerBuilder,
) -> Server {
    let (addr, dir) = address(kind, "server");
    let engine = f(Engine::server(addr).accept([CodecId::JSON, CodecId::MSGPACK]))
        .start()
        .await
        .unwrap();
    engine.register_provider(Svc, PROVIDER).unwrap();
    Server { engine, _dir: dir }
}

/// A relay between proxies and a server that counts the bytes each way: what travels on
/// the wire, whatever the transport.
struct Relay {
    address: String,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: wirecall_transport::ReadHalf,
    mut to: wirecall_transport::WriteHalf,
    n: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(k) => {
                n.fetch_add(k as u64, Ordering::SeqCst);
                if to.write_all(&buf[..k]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

async fn relay(kind: &str, target: &str) -> Relay {
    let (addr, dir) = match kind {
        // A unique name: a relay's listener lives until its task is aborted.
        k if k.starts_with("mem://") => ("mem://0".to_string(), None),
        k => address(k, "relay"),
    };
    let listener = Listener::bind(&addr.parse::<Address>().unwrap())
        .await
        .unwrap();
    let address = listener.local_addr().to_string();
    let target: Address = target.parse().unwrap();
    let (up, down) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (u, d) = (up.clone(), down.clone());
    let task = tokio::spawn(async move {
        let mut pumps = tokio::task::JoinSet::new();
        while let Ok((client, _)) = listener.accept().await {
            let server = Stream::connect(&target).await.unwrap();
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            pumps.spawn(pump(cr, sw, u.clone()));
            pumps.spawn(pump(sr, cw, d.clone()));
        }
    });
    Relay {
        address,
        up,
        down,
        task,
        _dir: dir,
    }
}

/// About `n` bytes of JSON-like text that compresses well (as real records do).
fn records(n: usize) -> String {
    let mut s = String::with_capacity(n + 100);
    let mut i = 0u64;
    while s.len() < n {
        s.push_str(&format!(
            "{{\"id\":{i},\"user\":\"user-{}\",\"score\":{},\"active\":{}}},",
            i % 977,
            (i * 7919) % 1000,
            i % 3 == 0
        ));
        i += 1;
    }
    s
}

/// Echoes `payload` through a relay with `proxy_compression`; the bytes sent up and down.
async fn echo_counted(
    kind: &str,
    server: &Server,
    proxy_compression: Compression,
    payload: &str,
) -> (u64, u64) {
    let r = relay(kind, &server.engine.address()).await;
    let proxy = Proxy::new(&r.address)
        .unwrap()
        .compression(proxy_compression);
    let back: String = proxy
        .call_on(PROVIDER, "z_echo")
        .unwrap()
        .arg(payload)
        .call()
        .await
        .unwrap();
    assert!(back == payload, "the echo came back changed");
    drop(proxy);
    (r.up.load(Ordering::SeqCst), r.down.load(Ordering::SeqCst))
}

async fn large_echo_travels_compressed(kind: &str) {
    let s = start(kind, |b| b).await;
    let payload = records(1 << 20);
    let n = payload.len() as u64;
    let (up, down) = echo_counted(kind, &s, Compression::zstd(), &payload).await;
    assert!(
        up * 4 < n && down * 4 < n,
        "{kind}: {up} bytes up and {down} down for a {n}-byte payload: not compressed"
    );
    // The control: the same call without compression moves the whole payload each way.
    let (up, down) = echo_counted(kind, &s, Compression::off(), &payload).await;
    assert!(up > n && down > n, "{kind}: {up} up, {down} down");
    // A small call is not worth compressing, and still works.
    let r = relay(kind, &s.engine.address()).await;
    let proxy = Proxy::new(&r.address)
        .unwrap()
        .compression(Compression::zstd());
    let sum: i64 = proxy
        .call_on(PROVIDER, "z_add")
        .unwrap()
        .arg(2)
        .arg(3)
        .call()
        .await
        .unwrap();
    assert_eq!(sum, 5);
    s.engine.finalize().await;
}

#[tokio::test]
async fn large_echo_travels_compressed_tcp() {
    tokio::time::timeout(LIMIT, large_echo_travels_compressed("tcp"))
        .await
        .unwrap();
}

#[tokio::test]
async fn large_echo_travels_compressed_unix() {
    tokio::time::timeout(LIMIT, large_echo_travels_compressed("unix"))
        .await
        .unwrap();
}

#[tokio::test]
async fn large_echo_travels_compressed_mem() {
    tokio::time::timeout(LIMIT, large_echo_travels_compressed("mem://z-large"))
        .await
        .unwrap();
}

/// A level and threshold of the proxy's own: a 64 KiB payload under a 128 KiB threshold
/// goes up uncompressed, while the server (default threshold) compresses its answer.
async fn the_threshold_is_the_senders(kind: &str) {
    let s = start(kind, |b| b).await;
    let payload = records(64 << 10);
    let n = payload.len() as u64;
    let mut c = Compression::zstd();
    c.level = 1;
    c.threshold = 128 << 10;
    let (up, down) = echo_counted(kind, &s, c, &payload).await;
    assert!(
        up > n,
        "{kind}: {up} bytes up: compressed under the threshold"
    );
    assert!(down * 4 < n, "{kind}: {down} bytes down: not compressed");
    s.engine.finalize().await;
}

#[tokio::test]
async fn the_threshold_is_the_senders_tcp() {
    tokio::time::timeout(LIMIT, the_threshold_is_the_senders("tcp"))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_threshold_is_the_senders_unix() {
    tokio::time::timeout(LIMIT, the_threshold_is_the_senders("unix"))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_threshold_is_the_senders_mem() {
    tokio::time::timeout(LIMIT, the_threshold_is_the_senders("mem://z-threshold"))
        .await
        .unwrap();
}

async fn a_server_accepting_none_answers_uncompressed(kind: &str) {
    let s = start(kind, |b| b.compression(Compression::off())).await;
    let payload = records(256 << 10);
    let n = payload.len() as u64;
    let (up, down) = echo_counted(kind, &s, Compression::zstd(), &payload).await;
    assert!(up > n && down > n, "{kind}: {up} up, {down} down");
    s.engine.finalize().await;
}

#[tokio::test]
async fn a_server_accepting_none_answers_uncompressed_tcp() {
    tokio::time::timeout(LIMIT, a_server_accepting_none_answers_uncompressed("tcp"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_server_accepting_none_answers_uncompressed_unix() {
    tokio::time::timeout(LIMIT, a_server_accepting_none_answers_uncompressed("unix"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_server_accepting_none_answers_uncompressed_mem() {
    tokio::time::timeout(
        LIMIT,
        a_server_accepting_none_answers_uncompressed("mem://z-none"),
    )
    .await
    .unwrap();
}

/// A compressed section: algorithm id, declared length, data.
fn section(declared: u32, data: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(1);
    b.put_u32(declared);
    b.extend_from_slice(data);
    b.freeze()
}

/// A HELLO offering zstd, and a CALL of `z_echo` whose payload is `args` with flag
/// COMPRESSED set.
fn bomb_frames(args: Bytes) -> BytesMut {
    frames_offering(&[1], args)
}

/// A HELLO offering the compression ids `offer` (none: no extension), and a CALL of
/// `z_echo` whose payload is `args` with flag COMPRESSED set.
fn frames_offering(offer: &[u8], args: Bytes) -> BytesMut {
    let mut out = BytesMut::new();
    let mut extensions = proto::Extensions::new();
    if !offer.is_empty() {
        extensions
            .set(proto::ExtensionTag::COMPRESSION, offer.to_vec())
            .unwrap();
    }
    proto::Frame::Hello(proto::Hello {
        versions: vec![proto::VERSION],
        codecs: vec![proto::CodecId::JSON],
        limits: proto::Limits::default(),
        extensions,
    })
    .encode(&mut out)
    .unwrap();
    let at = out.len();
    proto::Frame::Call(proto::Call {
        request_id: proto::RequestId(1),
        provider: proto::ProviderId(PROVIDER),
        codec: proto::CodecId::JSON,
        oneway: false,
        upload: false,
        method: proto::Method::new(Bytes::from_static(b"z_echo")).unwrap(),
        annotations: proto::Annotations::new(),
        args,
        kwargs: Bytes::new(),
        attachment: Bytes::new(),
    })
    .encode(&mut out)
    .unwrap();
    out[at + 7] |= 0x04;
    out
}

/// Sends `bytes` on a raw connection and reads until the server closes it: the GOAWAY it
/// sent last (after a WELCOME agreeing on compression).
async fn goaway_for(address: &str, bytes: &[u8]) -> proto::GoAway {
    goaway_after(address, bytes, true).await
}

/// [`goaway_for`], with compression agreed in the WELCOME or not (`agreed`).
async fn goaway_after(address: &str, bytes: &[u8], agreed: bool) -> proto::GoAway {
    let mut io = raw_connect(address).await;
    io.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), io.read_to_end(&mut out))
        .await
        .expect("the server should close the connection")
        .ok();
    let frames = decode_all(&out);
    assert!(
        matches!(frames.first(), Some(proto::Frame::Welcome(w)) if w.extensions.get(proto::ExtensionTag::COMPRESSION).is_some() == agreed),
        "a WELCOME first, compression agreed: {agreed}: {frames:?}"
    );
    assert!(
        !frames.iter().any(|f| matches!(f, proto::Frame::Reply(_))),
        "nothing dispatched: {frames:?}"
    );
    match frames.last() {
        Some(proto::Frame::GoAway(g)) => g.clone(),
        other => panic!("expected a GOAWAY last, got {other:?}"),
    }
}

async fn a_zip_bomb_closes_only_its_connection(kind: &str) {
    let s = start(kind, |b| b.max_frame_len(1 << 20)).await;
    let good = Proxy::new(&s.engine.address())
        .unwrap()
        .compression(Compression::zstd());
    good.connect().await.unwrap();
    // 64 MiB of zeros (a few KiB compressed), declared honestly: refused from the
    // declared size, before decompressing.
    let zeros = zstd::bulk::compress(&vec![0u8; 64 << 20], 19).unwrap();
    let g = goaway_for(&s.engine.address(), &bomb_frames(section(64 << 20, &zeros))).await;
    assert_eq!(g.code, proto::ErrorCode::LIMIT_EXCEEDED, "{g:?}");
    assert!(
        g.message.contains("inflate") && g.message.contains("max_frame_len"),
        "{}",
        g.message
    );
    // Declared small but inflating far past it: stopped at the declared size.
    let zeros = zstd::bulk::compress(&vec![0u8; 8 << 20], 19).unwrap();
    let g = goaway_for(&s.engine.address(), &bomb_frames(section(1000, &zeros))).await;
    assert_eq!(g.code, proto::ErrorCode::LIMIT_EXCEEDED, "{g:?}");
    assert!(g.message.contains("declared size"), "{}", g.message);
    // COMPRESSED where compression is not in force: a client that did not offer it, and
    // one that offered only an algorithm the server does not know.
    let data = records(8 << 10);
    let packed = zstd::bulk::compress(data.as_bytes(), 3).unwrap();
    for offer in [&[][..], &[9u8][..]] {
        let frames = frames_offering(offer, section(data.len() as u32, &packed));
        let g = goaway_after(&s.engine.address(), &frames, false).await;
        assert_eq!(g.code, proto::ErrorCode::PROTOCOL_ERROR, "{g:?}");
        assert!(g.message.contains("not in force"), "{}", g.message);
    }
    // The open connection and new ones are served.
    let payload = records(300 << 10);
    let back: String = good
        .call_on(PROVIDER, "z_echo")
        .unwrap()
        .arg(&payload)
        .call()
        .await
        .unwrap();
    assert!(back == payload);
    let fresh = Proxy::new(&s.engine.address()).unwrap();
    let sum: i64 = fresh
        .call_on(PROVIDER, "z_add")
        .unwrap()
        .arg(40)
        .arg(2)
        .call()
        .await
        .unwrap();
    assert_eq!(sum, 42);
    s.engine.finalize().await;
}

#[tokio::test]
async fn a_zip_bomb_closes_only_its_connection_tcp() {
    tokio::time::timeout(LIMIT, a_zip_bomb_closes_only_its_connection("tcp"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_zip_bomb_closes_only_its_connection_unix() {
    tokio::time::timeout(LIMIT, a_zip_bomb_closes_only_its_connection("unix"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_zip_bomb_closes_only_its_connection_mem() {
    tokio::time::timeout(LIMIT, a_zip_bomb_closes_only_its_connection("mem://z-bomb"))
        .await
        .unwrap();
}
