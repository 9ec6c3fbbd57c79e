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
