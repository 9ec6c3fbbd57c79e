//! Runs each example's seed over real tcp and unix sockets, bounded in time.

use std::time::Duration;

#[path = "../examples/callbacks.rs"]
mod callbacks;
#[path = "../examples/name_server.rs"]
mod name_server;
#[path = "../examples/pymargo_provider.rs"]
mod pymargo_provider;
#[path = "../examples/pyro_proxy.rs"]
mod pyro_proxy;
#[path = "../examples/rpyc_service.rs"]
mod rpyc_service;
#[path = "../examples/streams.rs"]
mod streams;
#[path = "../examples/tls.rs"]
mod tls_example;

const LIMIT: Duration = Duration::from_secs(30);

fn unix_address(dir: &tempfile::TempDir, name: &str) -> String {
    format!("unix://{}", dir.path().join(name).display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymargo_seed_over_tcp_and_unix() {
    let dir = tempfile::tempdir().unwrap();
    for addr in [
        "tcp://127.0.0.1:0".to_string(),
        unix_address(&dir, "margo.sock"),
    ] {
        let hooks = tokio::time::timeout(LIMIT, pymargo_provider::run(&addr))
            .await
            .expect("seed timed out")
            .unwrap_or_else(|e| panic!("seed failed on {addr}: {e}"));
        assert_eq!(hooks, vec!["prefinalize", "finalize"], "on {addr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_seed_over_tcp_unix_and_mem() {
    let dir = tempfile::tempdir().unwrap();
    for addr in [
        "tcp://127.0.0.1:0".to_string(),
        unix_address(&dir, "streams.sock"),
        "mem://examples-streams".to_string(),
    ] {
        let seen = tokio::time::timeout(LIMIT, streams::run(&addr))
            .await
            .expect("seed timed out")
            .unwrap_or_else(|e| panic!("seed failed on {addr}: {e}"));
        assert_eq!(
            seen.fibonacci,
            [0, 1, 1, 2, 3, 5, 8, 13, 21, 34],
            "on {addr}"
        );
        assert_eq!(seen.mean, 2.5, "on {addr}");
        assert_eq!(seen.totals, [5, 3, 13], "on {addr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_seed_over_tcp_unix_and_mem() {
    let dir = tempfile::tempdir().unwrap();
    for addr in [
        "tcp://127.0.0.1:0".to_string(),
        unix_address(&dir, "callbacks.sock"),
        "mem://examples-callbacks".to_string(),
    ] {
        let seen = tokio::time::timeout(LIMIT, callbacks::run(&addr))
            .await
            .expect("seed timed out")
            .unwrap_or_else(|e| panic!("seed failed on {addr}: {e}"));
        assert_eq!(
            seen.progress,
            vec![(1, 4), (2, 4), (3, 4), (4, 4)],
            "on {addr}"
        );
        assert_eq!(seen.result, 10, "on {addr}");
        assert_eq!(seen.done, Some(10), "on {addr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpyc_seed_over_tcp_and_unix() {
    let dir = tempfile::tempdir().unwrap();
    for addr in [
        "tcp://127.0.0.1:0".to_string(),
        unix_address(&dir, "rpyc.sock"),
    ] {
        let seen = tokio::time::timeout(LIMIT, rpyc_service::run(&addr))
            .await
            .expect("seed timed out")
            .unwrap_or_else(|e| panic!("seed failed on {addr}: {e}"));
        assert_eq!(seen.per_connection, (2, 10), "on {addr}");
        assert_eq!(seen.shared, (1, 2), "on {addr}");
        assert!(
            seen.not_exposed.contains("counter_reset"),
            "{}",
            seen.not_exposed
        );
        assert!(
            seen.not_exposed.contains("counter_increment"),
            "{}",
            seen.not_exposed
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyro_seed_over_tcp_and_unix() {
    let dir = tempfile::tempdir().unwrap();
    for addr in [
        "tcp://127.0.0.1:0".to_string(),
        unix_address(&dir, "pyro.sock"),
    ] {
        let seen = tokio::time::timeout(LIMIT, pyro_proxy::run(&addr))
            .await
            .expect("seed timed out")
            .unwrap_or_else(|e| panic!("seed failed on {addr}: {e}"));
        assert!(seen.refusal.contains("cbor"), "{}", seen.refusal);
        assert!(seen.refusal.contains("json, msgpack"), "{}", seen.refusal);
        assert_eq!(seen.converted, 212.0);
        assert!(
            seen.timed_out,
            "the slow call should have timed out on {addr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_seed_over_tcp_and_unix() {
    let dir = tempfile::tempdir().unwrap();
    for addr in [
        "tls://127.0.0.1:0".to_string(),
        format!("tls+unix://{}", dir.path().join("tls.sock").display()),
    ] {
        let seen = tokio::time::timeout(LIMIT, tls_example::run(&addr))
            .await
            .expect("seed timed out")
            .unwrap_or_else(|e| panic!("seed failed on {addr}: {e}"));
        assert_eq!(seen.greeting, "hello, alice", "on {addr}");
        assert_eq!(seen.audit.len(), 1, "{:?}", seen.audit);
        assert!(
            seen.audit[0].starts_with("CN=alice")
                && seen.audit[0].ends_with("called greeter_hello"),
            "{:?}",
            seen.audit
        );
        assert!(
            seen.without_cert.contains("requires a client certificate"),
            "{}",
            seen.without_cert
        );
        if addr.starts_with("tls://") {
            let p = seen.plaintext.expect("a plaintext attempt on tls://");
            assert!(p.contains("requires TLS"), "{p}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_server_seed_in_memory_and_in_a_store_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("names.redb");
    for store in ["mem".to_string(), file.display().to_string()] {
        let seen = tokio::time::timeout(LIMIT, name_server::run(&store))
            .await
            .expect("seed timed out")
            .unwrap_or_else(|e| panic!("seed failed over {store}: {e}"));
        assert_eq!(seen.by_name, "Hello, Ada!", "over {store}");
        assert_eq!(seen.by_metadata, "Bonjour, Ada !", "over {store}");
        assert_eq!(
            seen.greeters,
            ["example.greeting", "example.greeting.fr"],
            "over {store}"
        );
        // The servers removed their names when they stopped.
        assert_eq!(seen.left, ["Pyro.NameServer"], "over {store}");
    }
}
