//! The seed examples' providers reachable from Python: the providers of
//! `examples/pymargo_provider.rs`, `rpyc_service.rs` and `pyro_proxy.rs` on one wirecall
//! server (default object ids: their service names), called by unmodified Pyro5 proxies
//! (the checked-in program `tests/python/pyro_seeds.py`) with each of Pyro5's serializers.
//!
//! Python is `$WIRECALL_PYTHON`; without Pyro5 5.17 the test is skipped, unless
//! `WIRECALL_REQUIRE_PYTHON=1`, which makes it fail.

mod pyro_common;
use pyro_common::python_or_skip;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wirecall::{CodecId, Engine};

#[allow(dead_code)]
#[path = "../examples/pymargo_provider.rs"]
mod pymargo_provider;
#[allow(dead_code)]
#[path = "../examples/pyro_proxy.rs"]
mod pyro_proxy;
#[allow(dead_code)]
#[path = "../examples/rpyc_service.rs"]
mod rpyc_service;

/// Runs `pyro_seeds.py` with `serializer`; its stdout, or a panic with its output when it
/// fails or runs past 60 s (it is killed then).
async fn run_python(python: &str, port: u16, serializer: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/pyro_seeds.py");
    let mut child = Command::new(python)
        .args([script, &port.to_string(), serializer])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    let what = serializer.to_string();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("wait for python").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what}: the Python client ran past 60 s and was killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().expect("python output");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{what}: the Python client failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    })
    .await
    .expect("the client runner")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_providers_from_python_in_each_serializer() {
    let Some(python) = python_or_skip("seed_providers_from_python_in_each_serializer") else {
        return;
    };
    let engine = Engine::server("tcp://127.0.0.1:0")
        .accept([
            CodecId::SERPENT,
            CodecId::JSON,
            CodecId::MSGPACK,
            CodecId::MARSHAL,
        ])
        .start()
        .await
        .expect("start the server");
    engine
        .register_provider(pymargo_provider::MyProvider::default(), 42)
        .unwrap();
    let stats = Arc::new(rpyc_service::Stats::default());
    let s = stats.clone();
    engine
        .register_provider_factory(move || rpyc_service::CounterService::new(s.clone()), 1)
        .unwrap();
    engine.register_provider(pyro_proxy::Thermostat, 7).unwrap();
    let ids: Vec<String> = engine.object_ids().into_iter().map(|(o, _)| o).collect();
    assert_eq!(ids, ["counter", "my_service", "thermostat"]);
    let port: u16 = engine
        .address()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a tcp port");
    for (serializer, checks) in [
        ("serpent", 14),
        ("json", 14),
        ("msgpack", 14),
        ("marshal", 12),
    ] {
        let out = run_python(&python, port, serializer).await;
        assert_eq!(
            out.lines().filter(|l| l.starts_with("ok ")).count(),
            checks,
            "{serializer}: {out}"
        );
    }
    // The per-connection counters saw the Python connections come and go.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.disconnects.load(std::sync::atomic::Ordering::Relaxed) < 8 {
        assert!(
            Instant::now() < deadline,
            "the counters' on_disconnect did not run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    engine.finalize().await;
}
