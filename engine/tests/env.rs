//! Codec configuration from the environment. One test function, alone in its binary, because
//! environment variables are process-wide.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirecall::{CodecId, Engine, Error, Functions, Proxy};
use wirecall_protocol as proto;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codecs_from_environment() {
    tokio::time::timeout(Duration::from_secs(30), async {
        // SAFETY of the test: this binary has a single test, so no other thread reads the
        // environment concurrently.
        std::env::set_var("WIRECALL_CODECS_ACCEPTED", "json, msgpack");
        let engine = Engine::server("tcp://127.0.0.1:0").start().await.unwrap();
        assert_eq!(engine.accepted(), &[CodecId::JSON, CodecId::MSGPACK]);
        engine
            .register_functions(
                Functions::new("").sync_fn("double", &["x"], |(x,): (i32,)| x * 2),
                1,
            )
            .unwrap();

        // WIRECALL_CODEC picks the proxy's default codec; cbor is refused per call.
        std::env::set_var("WIRECALL_CODEC", "cbor");
        let proxy = Proxy::new(&engine.address()).unwrap();
        assert_eq!(proxy.codec_override(), Some(CodecId::CBOR));
        match proxy
            .call_on(1, "double")
            .unwrap()
            .arg(2)
            .call::<i32>()
            .await
        {
            Err(Error::CodecRefused { codec, accepted }) => {
                assert_eq!(codec, "cbor");
                assert_eq!(accepted, vec!["json", "msgpack"]);
            }
            other => panic!("expected CodecRefused, got {other:?}"),
        }
        let r: i32 = proxy
            .clone()
            .codec(CodecId::MSGPACK)
            .call_on(1, "double")
            .unwrap()
            .arg(21)
            .call()
            .await
            .unwrap();
        assert_eq!(r, 42);

        // Without WIRECALL_CODEC the negotiated default is the client's first accepted choice.
        std::env::remove_var("WIRECALL_CODEC");
        let plain = Proxy::new(&engine.address()).unwrap();
        assert_eq!(plain.codec_override(), None);
        assert_eq!(plain.effective_codec().await.unwrap(), CodecId::JSON);

        // A bad name is a configuration error that names the known codecs.
        std::env::set_var("WIRECALL_CODECS_ACCEPTED", "json,yaml");
        let err = Engine::server("tcp://127.0.0.1:0")
            .start()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("unknown codec `yaml`"), "{err}");
        assert!(err.to_string().contains("postcard"), "{err}");
        std::env::remove_var("WIRECALL_CODECS_ACCEPTED");
        engine.finalize().await;

        // Timeouts from the environment: a bad duration names the variable and the forms
        // it takes; the builder's own setting wins over the environment.
        std::env::set_var("WIRECALL_IDLE_TIMEOUT", "soon");
        let err = Engine::server("tcp://127.0.0.1:0")
            .start()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("WIRECALL_IDLE_TIMEOUT"), "{err}");
        assert!(err.to_string().contains("500ms, 30s, 2m"), "{err}");
        let e = Engine::server("tcp://127.0.0.1:0")
            .idle_timeout(Some(Duration::from_secs(5)))
            .start()
            .await
            .unwrap();
        e.finalize().await;
        std::env::remove_var("WIRECALL_IDLE_TIMEOUT");
        // The stream lifetime is read from the environment too.
        std::env::set_var("WIRECALL_STREAM_LIFETIME", "whenever");
        let err = Engine::server("tcp://127.0.0.1:0")
            .start()
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("WIRECALL_STREAM_LIFETIME"),
            "{err}"
        );
        let e = Engine::server("tcp://127.0.0.1:0")
            .stream_lifetime(Some(Duration::from_secs(5)))
            .start()
            .await
            .unwrap();
        e.finalize().await;
        std::env::remove_var("WIRECALL_STREAM_LIFETIME");
        // A short idle timeout from the environment closes an idle connection.
        std::env::set_var("WIRECALL_IDLE_TIMEOUT", "200ms");
        let e = Engine::server("tcp://127.0.0.1:0")
            .accept([CodecId::JSON])
            .start()
            .await
            .unwrap();
        std::env::remove_var("WIRECALL_IDLE_TIMEOUT");
        let mut io = tokio::net::TcpStream::connect(e.address().strip_prefix("tcp://").unwrap())
            .await
            .unwrap();
        let mut hello = bytes::BytesMut::new();
        proto::Frame::Hello(proto::Hello {
            versions: vec![proto::VERSION],
            codecs: vec![CodecId::JSON],
            limits: proto::Limits::default(),
            extensions: Default::default(),
        })
        .encode(&mut hello)
        .unwrap();
        io.write_all(&hello).await.unwrap();
        let start = std::time::Instant::now();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut got))
            .await
            .expect("the idle connection is closed")
            .unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(150),
            "{:?}",
            start.elapsed()
        );
        let mut buf = bytes::BytesMut::from(&got[..]);
        let mut dec = proto::FrameDecoder::default();
        let mut kinds = Vec::new();
        while let Ok(Some(f)) = dec.decode(&mut buf) {
            if let proto::Frame::GoAway(g) = &f {
                assert_eq!(g.code, proto::ErrorCode::TIMEOUT);
            }
            kinds.push(f.kind());
        }
        assert_eq!(kinds, vec![proto::Kind::WELCOME, proto::Kind::GOAWAY]);
        e.finalize().await;
    })
    .await
    .unwrap();
}
