//! Compression from the environment (`WIRECALL_COMPRESSION`). One test function, alone in
//! its binary, because environment variables are process-wide.

use std::time::Duration;

use wirecall::{Compression, CompressionId, Engine, Proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_from_environment() {
    tokio::time::timeout(Duration::from_secs(30), async {
        // Unset: servers accept zstd, proxies offer nothing.
        std::env::remove_var("WIRECALL_COMPRESSION");
        let zstd_server = Engine::server("tcp://127.0.0.1:0").start().await.unwrap();
        let plain = Proxy::new(&zstd_server.address()).unwrap();
        assert!(plain.compression_in_force().await.unwrap().is_empty());
        let asking = Proxy::new(&zstd_server.address())
            .unwrap()
            .compression(Compression::zstd());
        assert_eq!(
            asking.compression_in_force().await.unwrap(),
            vec![CompressionId::ZSTD]
        );

        // Set: proxies offer it (with its level and threshold).
        std::env::set_var("WIRECALL_COMPRESSION", "zstd:5:1KiB");
        let from_env = Proxy::new(&zstd_server.address()).unwrap();
        assert_eq!(
            from_env.compression_in_force().await.unwrap(),
            vec![CompressionId::ZSTD]
        );
        // A proxy's own setting wins over the environment.
        let off = Proxy::new(&zstd_server.address())
            .unwrap()
            .compression(Compression::off());
        assert!(off.compression_in_force().await.unwrap().is_empty());

        // `none` on a server: it accepts nothing, and an asking proxy talks uncompressed.
        std::env::set_var("WIRECALL_COMPRESSION", "none");
        let none_server = Engine::server("tcp://127.0.0.1:0").start().await.unwrap();
        let asking = Proxy::new(&none_server.address())
            .unwrap()
            .compression(Compression::zstd());
        assert!(asking.compression_in_force().await.unwrap().is_empty());

        // Bad values are configuration errors naming the variable and the valid forms.
        for bad in ["gzip", "zstd:99", "zstd:3:lots", "zstd:3:4KiB:x"] {
            std::env::set_var("WIRECALL_COMPRESSION", bad);
            let e = Proxy::new("tcp://127.0.0.1:1").unwrap_err().to_string();
            assert!(
                e.contains("WIRECALL_COMPRESSION")
                    && e.contains("zstd:LEVEL")
                    && e.contains("none"),
                "{bad}: {e}"
            );
            let e = match Engine::server("tcp://127.0.0.1:0").start().await {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{bad}: a server started"),
            };
            assert!(e.contains("WIRECALL_COMPRESSION"), "{bad}: {e}");
        }
        std::env::remove_var("WIRECALL_COMPRESSION");
        zstd_server.finalize().await;
        none_server.finalize().await;
    })
    .await
    .unwrap();
}
