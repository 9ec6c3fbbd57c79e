//! Bad Pyro5 input against a running wirecall server: each bad client gets the answer a
//! Pyro5 client can report (a marshal CONNECTFAIL before the handshake) or a clean close, and
//! the server goes on serving Pyro5 and native clients. Raw sockets on 127.0.0.1.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wirecall::{Engine, Proxy};
use wirecall_protocol::pyro::{
    unmarshal_str, Annotations, Flags, Message, MessageDecoder, MessageType, SerializerId,
};

const LIMIT: Duration = Duration::from_secs(20);

struct Echo;

#[wirecall::provider(service = "echo")]
impl Echo {
    #[remote]
    fn echo(&self, s: String) -> String {
        s
    }
}

fn message(t: MessageType, ser: SerializerId, payload: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    Message {
        msg_type: t,
        serializer: ser,
        flags: Flags::default(),
        seq: 0,
        correlation_id: [0; 16],
        reserved: 0,
        annotations: Annotations::default(),
        payload: Bytes::copy_from_slice(payload),
    }
    .encode(&mut b)
    .unwrap();
    b.to_vec()
}

/// Sends `bytes`, ends the stream, and reads until the server closes (bounded at 5 s): what
/// came back.
async fn exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(bytes).await.unwrap();
    // Half-close: a server waiting for the rest of a cut message sees the end at once.
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    out
}

/// The CONNECTFAIL reason in `reply`, if it is one.
fn connectfail(reply: &[u8]) -> Option<String> {
    let mut buf = BytesMut::from(reply);
    let m = MessageDecoder::default().decode(&mut buf).ok()??;
    (m.msg_type == MessageType::CONNECTFAIL).then(|| unmarshal_str(&m.payload).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pyro_clients_are_answered_and_the_server_keeps_serving() {
    tokio::time::timeout(LIMIT, async {
        let engine = Engine::server("tcp://127.0.0.1:0").start().await.unwrap();
        engine.register_provider_as(Echo, 1, "echo").unwrap();
        let addr = engine.address();
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();

        // Wrong protocol version (Pyro4's 48 instead of 502).
        let mut bad_version = message(MessageType::CONNECT, SerializerId::MARSHAL, b"x");
        bad_version[4..6].copy_from_slice(&48u16.to_be_bytes());
        let r = connectfail(&exchange(port, &bad_version).await);
        assert!(r.as_deref().is_some_and(|m| m.contains("version")), "{r:?}");

        // An INVOKE before CONNECT.
        let invoke = message(MessageType::INVOKE, SerializerId::JSON, b"{}");
        let r = connectfail(&exchange(port, &invoke).await);
        assert!(r.is_some(), "INVOKE before CONNECT: {r:?}");

        // A declared length far past the limit: refused from the header alone.
        let mut huge = message(MessageType::CONNECT, SerializerId::JSON, b"{}");
        huge[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
        let r = connectfail(&exchange(port, &huge).await);
        assert!(
            r.as_deref().is_some_and(|m| m.contains("too large")),
            "{r:?}"
        );

        // An unknown serializer id: the refusal names the accepted ones.
        let unknown = message(MessageType::CONNECT, SerializerId::from(99), b"{}");
        let r = connectfail(&exchange(port, &unknown).await);
        assert!(r.as_deref().is_some_and(|m| m.contains("json")), "{r:?}");

        // Garbage after the PYRO tag, and a connection cut mid-header.
        let _ = exchange(
            port,
            b"PYRO\x01\xf6garbage garbage garbage garbage garbage!!",
        )
        .await;
        let _ = exchange(
            port,
            &message(MessageType::CONNECT, SerializerId::JSON, b"{}")[..20],
        )
        .await;

        // The server still answers a native client.
        let proxy = Proxy::new(&addr).unwrap();
        let back: String = proxy
            .call_on(1, "echo_echo")
            .unwrap()
            .arg("still here")
            .call::<String>()
            .await
            .unwrap();
        assert_eq!(back, "still here");
        engine.finalize().await;
    })
    .await
    .unwrap();
}

/// A message with `flags` and `seq`.
fn message_with(
    t: MessageType,
    ser: SerializerId,
    flags: Flags,
    seq: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = BytesMut::new();
    Message {
        msg_type: t,
        serializer: ser,
        flags,
        seq,
        correlation_id: [0; 16],
        reserved: 0,
        annotations: Annotations::default(),
        payload: Bytes::copy_from_slice(payload),
    }
    .encode(&mut b)
    .unwrap();
    b.to_vec()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(4));
    z.write_all(data).unwrap();
    z.finish().unwrap()
}

fn unzlib(data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Reads one whole message (bounded at 5 s).
async fn read_message(s: &mut TcpStream) -> Message {
    let mut buf = BytesMut::new();
    let mut dec = MessageDecoder::default();
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(m) = dec.decode(&mut buf).unwrap() {
                return m;
            }
            let n = s.read_buf(&mut buf).await.unwrap();
            assert!(n > 0, "the server closed the connection");
        }
    })
    .await
    .expect("an answer within 5 s")
}

/// COMPRESSED requests (zlib, as Pyro5's `COMPRESSION` sends them) are inflated and answered
/// compressed; one that would inflate past the frame limit (a zip bomb: 64 KiB on the wire,
/// 8 MiB inflated, against a 1 MiB limit) is refused from the inflated size, with an
/// exception the client can raise, before more than the limit is inflated, and the
/// connection serves on; a payload that is not zlib gets an exception too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_requests_and_zip_bombs() {
    tokio::time::timeout(LIMIT, async {
        let engine = Engine::server("tcp://127.0.0.1:0")
            .max_frame_len(1 << 20)
            .start()
            .await
            .unwrap();
        engine.register_provider_as(Echo, 1, "echo").unwrap();
        let port: u16 = engine.address().rsplit(':').next().unwrap().parse().unwrap();
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let json = SerializerId::JSON;
        s.write_all(&message_with(
            MessageType::CONNECT,
            json,
            Flags::COMPRESSED,
            0,
            &zlib(br#"{"handshake": "hello", "object": "echo"}"#),
        ))
        .await
        .unwrap();
        let ok = read_message(&mut s).await;
        assert_eq!(ok.msg_type, MessageType::CONNECTOK);

        // A compressed call: the answer is compressed too, and says what was sent.
        let text = "compress me ".repeat(50);
        let call = format!(
            r#"{{"object": "echo", "method": "echo", "params": ["{text}"], "kwargs": {{}}}}"#
        );
        s.write_all(&message_with(
            MessageType::INVOKE,
            json,
            Flags::COMPRESSED,
            1,
            &zlib(call.as_bytes()),
        ))
        .await
        .unwrap();
        let r = read_message(&mut s).await;
        assert_eq!((r.msg_type, r.seq), (MessageType::RESULT, 1));
        assert!(r.flags.contains(Flags::COMPRESSED), "{:?}", r.flags);
        assert!(!r.flags.contains(Flags::EXCEPTION), "{:?}", r.flags);
        assert!(r.payload.len() < text.len() / 4, "{} bytes", r.payload.len());
        assert_eq!(unzlib(&r.payload), format!("\"{text}\"").into_bytes());

        // A zip bomb: 8 MiB of one string, far past the 1 MiB frame limit once inflated.
        let bomb_text = "a".repeat(8 << 20);
        let bomb = zlib(
            format!(
                r#"{{"object": "echo", "method": "echo", "params": ["{bomb_text}"], "kwargs": {{}}}}"#
            )
            .as_bytes(),
        );
        assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
        s.write_all(&message_with(MessageType::INVOKE, json, Flags::COMPRESSED, 2, &bomb))
            .await
            .unwrap();
        let r = read_message(&mut s).await;
        assert_eq!((r.msg_type, r.seq), (MessageType::RESULT, 2));
        assert!(r.flags.contains(Flags::EXCEPTION), "{:?}", r.flags);
        let ex: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(ex["__class__"], "Pyro5.errors.SerializeError", "{ex}");
        let msg = ex["args"][0].as_str().unwrap();
        assert!(msg.contains("inflates past the limit of 1048576"), "{msg}");

        // Not a zlib stream.
        s.write_all(&message_with(
            MessageType::INVOKE,
            json,
            Flags::COMPRESSED,
            3,
            b"this is not zlib",
        ))
        .await
        .unwrap();
        let r = read_message(&mut s).await;
        assert!(r.flags.contains(Flags::EXCEPTION), "{:?}", r.flags);
        let ex: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        assert!(ex["args"][0].as_str().unwrap().contains("zlib"), "{ex}");

        // The connection serves on, uncompressed.
        s.write_all(&message_with(
            MessageType::INVOKE,
            json,
            Flags::EMPTY,
            4,
            br#"{"object": "echo", "method": "echo", "params": ["still here"], "kwargs": {}}"#,
        ))
        .await
        .unwrap();
        let r = read_message(&mut s).await;
        assert_eq!((r.seq, r.flags), (4, Flags::EMPTY));
        assert_eq!(&r.payload[..], b"\"still here\"");
        engine.finalize().await;
    })
    .await
    .unwrap();
}

/// Malformed batches get an exception the client can raise, and the connection serves on; an
/// empty batch is an empty list; a oneway batch gets no reply (the next answer is the next
/// call's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oneway_batches() {
    tokio::time::timeout(LIMIT, async {
        let engine = Engine::server("tcp://127.0.0.1:0").start().await.unwrap();
        engine.register_provider_as(Echo, 1, "echo").unwrap();
        let port: u16 = engine.address().rsplit(':').next().unwrap().parse().unwrap();
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let json = SerializerId::JSON;
        let send = |flags: Flags, seq: u16, body: &str| {
            message_with(MessageType::INVOKE, json, flags, seq, body.as_bytes())
        };
        s.write_all(&message_with(
            MessageType::CONNECT,
            json,
            Flags::EMPTY,
            0,
            br#"{"handshake": "hello", "object": "echo"}"#,
        ))
        .await
        .unwrap();
        assert_eq!(read_message(&mut s).await.msg_type, MessageType::CONNECTOK);

        for (seq, params) in [(1, r#"[["echo"]]"#), (2, r#"[7]"#), (3, r#"[[1, [], {}]]"#)] {
            let body = format!(
                r#"{{"object": "echo", "method": "<batch>", "params": {params}, "kwargs": null}}"#
            );
            s.write_all(&send(Flags::BATCH, seq, &body)).await.unwrap();
            let r = read_message(&mut s).await;
            assert_eq!(r.seq, seq);
            assert!(r.flags.contains(Flags::EXCEPTION), "{params}: {:?}", r.flags);
            let ex: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
            assert_eq!(ex["__class__"], "Pyro5.errors.SerializeError", "{params}: {ex}");
        }
        s.write_all(&send(
            Flags::BATCH,
            4,
            r#"{"object": "echo", "method": "<batch>", "params": [], "kwargs": null}"#,
        ))
        .await
        .unwrap();
        let r = read_message(&mut s).await;
        assert_eq!((r.seq, r.flags), (4, Flags::BATCH));
        assert_eq!(&r.payload[..], b"[]");

        s.write_all(&send(
            Flags::BATCH.union(Flags::ONEWAY),
            5,
            r#"{"object": "echo", "method": "<batch>", "params": [["echo", ["a"], {}]], "kwargs": null}"#,
        ))
        .await
        .unwrap();
        s.write_all(&send(
            Flags::EMPTY,
            6,
            r#"{"object": "echo", "method": "echo", "params": ["after"], "kwargs": {}}"#,
        ))
        .await
        .unwrap();
        let r = read_message(&mut s).await;
        assert_eq!(r.seq, 6, "a oneway batch must not be answered");
        assert_eq!(&r.payload[..], b"\"after\"");
        engine.finalize().await;
    })
    .await
    .unwrap();
}

/// Sends the first `sent` bytes of a CONNECT whose payload is `declared` bytes, and waits
/// (bounded) to see whether the server closes the connection: true when it did.
async fn partial_connect(port: u16, declared: usize, sent: usize) -> (TcpStream, bool) {
    let whole = message(
        MessageType::CONNECT,
        SerializerId::JSON,
        &vec![b' '; declared],
    );
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // The server may close while this is still being written: that is an answer too.
    if s.write_all(&whole[..whole.len() - declared + sent])
        .await
        .is_err()
    {
        return (s, true);
    }
    let mut b = [0u8; 64];
    let closed = matches!(
        tokio::time::timeout(Duration::from_millis(800), s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    );
    (s, closed)
}

/// Pyro5 connections hold their buffered input against the server-wide receive budget
/// that native connections reserve large frames from: two clients each holding most of a
/// large message cannot both be buffered past the budget; the second is closed, and the
/// bytes come back when the first goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyro_input_counts_against_the_receive_budget() {
    tokio::time::timeout(LIMIT, async {
        let engine = Engine::server("tcp://127.0.0.1:0")
            .max_frame_len(4 << 20)
            .max_buffered(1 << 20)
            .start()
            .await
            .unwrap();
        engine.register_provider_as(Echo, 1, "echo").unwrap();
        let port: u16 = engine
            .address()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let (a, a_closed) = partial_connect(port, 800 << 10, 700 << 10).await;
        assert!(!a_closed, "700 KiB held of a 1 MiB budget");
        let (_b, b_closed) = partial_connect(port, 800 << 10, 700 << 10).await;
        assert!(b_closed, "a second 700 KiB does not fit the 1 MiB budget");
        drop(a);
        // The first connection's bytes come back once the server sees it gone.
        let mut fits = false;
        for _ in 0..20 {
            let (_c, c_closed) = partial_connect(port, 800 << 10, 700 << 10).await;
            if !c_closed {
                fits = true;
                break;
            }
        }
        assert!(fits, "the budget was not given back");
        // Native clients are served meanwhile.
        let p = Proxy::new(&engine.address()).unwrap();
        let r: String = p
            .call_on(1, "echo_echo")
            .unwrap()
            .arg("hi")
            .call::<String>()
            .await
            .unwrap();
        assert_eq!(r, "hi");
        engine.finalize().await;
    })
    .await
    .expect("test timed out");
}

/// A server whose accepted codecs include no Pyro5 serializer answers a Pyro5 CONNECT with
/// a CONNECTFAIL naming what it does accept, and goes on serving native clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_pyro_serializers_names_what_it_accepts() {
    tokio::time::timeout(LIMIT, async {
        let engine = Engine::server("tcp://127.0.0.1:0")
            .accept([wirecall::CodecId::POSTCARD])
            .start()
            .await
            .unwrap();
        engine.register_provider_as(Echo, 1, "echo").unwrap();
        let port: u16 = engine
            .address()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let connect = message(MessageType::CONNECT, SerializerId::JSON, b"{}");
        let r = connectfail(&exchange(port, &connect).await);
        assert!(
            r.as_deref()
                .is_some_and(|m| m.contains("no Pyro5 serializer") && m.contains("postcard")),
            "{r:?}"
        );
        let p = Proxy::new(&engine.address()).unwrap();
        let back: String = p
            .call_on(1, "echo_echo")
            .unwrap()
            .arg("native")
            .call::<String>()
            .await
            .unwrap();
        assert_eq!(back, "native");
        engine.finalize().await;
    })
    .await
    .expect("test timed out");
}
