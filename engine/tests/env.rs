//! Codec configuration from the environment. One test function, alone in its binary, because
//! environment variables are process-wide.

use std::time::Duration;

use wirecall::{CodecId, Engine, Error, Functions, Proxy};

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
    })
    .await
    .unwrap();
}
