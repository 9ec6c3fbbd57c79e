//! Retries and transparent reconnect: a server restarted on the same address in the middle
//! of a run of calls. Idempotent calls (`#[remote(idempotent)]`, `.retries(n)`) are all
//! answered (none lost); calls that are not idempotent run at most once (counted on the
//! server) and, when their connection went away under them, fail with a retryable error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wirecall::{CodecId, Engine, Error, Proxy};

const LIMIT: Duration = Duration::from_secs(60);
const P: u16 = 4;

/// Counts executions per key, across server restarts (one instance, registered on each).
#[derive(Default)]
struct Svc {
    gets: Mutex<HashMap<i64, u32>>,
    incrs: Mutex<HashMap<i64, u32>>,
}

#[wirecall::provider(service = "r")]
impl Svc {
    /// Safe to run twice.
    #[remote(idempotent)]
    async fn get(&self, i: i64) -> i64 {
        tokio::time::sleep(Duration::from_micros(200)).await;
        *self.gets.lock().unwrap().entry(i).or_default() += 1;
        i
    }

    /// Not idempotent: must never run twice for one call.
    #[remote]
    async fn incr(&self, i: i64) -> i64 {
        *self.incrs.lock().unwrap().entry(i).or_default() += 1;
        tokio::time::sleep(Duration::from_micros(200)).await;
        i
    }

    /// Runs, then takes longer than the server's drain grace.
    #[remote]
    async fn incr_slow(&self, i: i64) -> i64 {
        *self.incrs.lock().unwrap().entry(i).or_default() += 1;
        tokio::time::sleep(Duration::from_secs(5)).await;
        i
    }
}

fn listen(kind: &str) -> (String, Option<tempfile::TempDir>) {
    match kind {
        "tcp" => ("tcp://127.0.0.1:0".to_string(), None),
        "unix" => {
            let dir = tempfile::tempdir().unwrap();
            let a = format!("unix://{}", dir.path().join("r.sock").display());
            (a, Some(dir))
        }
        mem => (mem.to_string(), None),
    }
}

async fn serve(addr: &str, svc: &Arc<Svc>) -> Engine {
    // The old listener may take a moment to let go of the address.
    for _ in 0..200 {
        match Engine::server(addr)
            .accept([CodecId::MSGPACK])
            .grace_period(Duration::from_millis(100))
            .start()
            .await
        {
            Ok(e) => {
                e.register_arc(svc.clone(), P).unwrap();
                return e;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    panic!("could not listen on {addr} again");
}

async fn restart_in_the_middle(kind: &str) {
    let (addr, _dir) = listen(kind);
    let svc = Arc::new(Svc::default());
    let first = serve(&addr, &svc).await;
    let addr = first.address();
    let proxy = Proxy::new(&addr).unwrap().max_retries(50);
    let client = SvcClient::new(&proxy, P);
    const N: i64 = 300;
    let run = async {
        let mut incr_failed = Vec::new();
        for i in 0..N {
            let got = client.get(i).await;
            assert_eq!(
                got.as_ref().ok(),
                Some(&i),
                "idempotent call {i} lost: {got:?}"
            );
            // The same through the builder: `.retries(n)` marks one call idempotent.
            let again: i64 = proxy
                .call_on(P, "r_get")
                .unwrap()
                .arg(i + N)
                .retries(50)
                .call()
                .await
                .unwrap_or_else(|e| panic!("idempotent call {} lost: {e}", i + N));
            assert_eq!(again, i + N);
            match client.incr(i).await {
                Ok(v) => assert_eq!(v, i),
                Err(e) => {
                    assert!(e.is_retryable(), "{e}");
                    incr_failed.push(i);
                }
            }
        }
        incr_failed
    };
    let restarts = async {
        let mut server = first;
        for (pause, down) in [(30, 0), (60, 150)] {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            server.finalize().await;
            // Down for a while: connecting fails and is retried with backoff.
            tokio::time::sleep(Duration::from_millis(down)).await;
            server = serve(&addr, &svc).await;
        }
        server
    };
    let (incr_failed, server) = tokio::time::timeout(LIMIT, async { tokio::join!(run, restarts) })
        .await
        .expect("the run finished");
    let gets = svc.gets.lock().unwrap().clone();
    let incrs = svc.incrs.lock().unwrap().clone();
    for i in 0..2 * N {
        assert!(gets.get(&i).copied().unwrap_or(0) >= 1, "get {i} never ran");
    }
    for i in 0..N {
        let runs = incrs.get(&i).copied().unwrap_or(0);
        assert!(runs <= 1, "incr {i} ran {runs} times");
        if !incr_failed.contains(&i) {
            assert_eq!(runs, 1, "incr {i} answered but not run once");
        }
    }
    let retried = gets.values().filter(|n| **n > 1).count();
    println!(
        "{kind}: {} idempotent calls, none lost ({retried} ran twice after a lost answer); {N} non-idempotent calls, none run twice, {} failed retryable",
        2 * N,
        incr_failed.len()
    );
    server.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_in_the_middle_over_tcp() {
    restart_in_the_middle("tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_in_the_middle_over_unix() {
    restart_in_the_middle("unix").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_in_the_middle_over_mem() {
    restart_in_the_middle("mem://retries-restart").await;
}

/// A non-idempotent call that ran when its server went away is not sent again: it fails
/// with a retryable error saying it may have run; an idempotent one is sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_may_have_run_is_never_sent_twice() {
    let (addr, _dir) = listen("tcp");
    let svc = Arc::new(Svc::default());
    let server = serve(&addr, &svc).await;
    let addr = server.address();
    let proxy = Proxy::new(&addr).unwrap().max_retries(50);
    let client = SvcClient::new(&proxy, P);
    let call = tokio::spawn({
        let proxy = proxy.clone();
        async move { SvcClient::new(&proxy, P).incr_slow(7).await }
    });
    // Let it run, then restart: the drain grace (100 ms) ends before the call does.
    for _ in 0..500 {
        if svc.incrs.lock().unwrap().contains_key(&7) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.finalize().await;
    let server = serve(&addr, &svc).await;
    let e = tokio::time::timeout(LIMIT, call)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(
        matches!(e, Error::ShuttingDown { .. } | Error::Transport { .. }),
        "{e:?}"
    );
    assert_eq!(svc.incrs.lock().unwrap().get(&7), Some(&1), "ran once");
    // The proxy reconnected transparently.
    assert_eq!(client.get(1).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        svc.incrs.lock().unwrap().get(&7),
        Some(&1),
        "never sent again"
    );
    server.finalize().await;
}

#[tokio::test]
async fn max_retries_comes_from_the_environment_and_zero_turns_retries_off() {
    // A proxy to an address where nothing listens: with retries off, the first failure
    // is final and quick.
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("unix://{}", dir.path().join("none.sock").display());
    let proxy = Proxy::new(&addr).unwrap().max_retries(0);
    let started = std::time::Instant::now();
    let e = SvcClient::new(&proxy, P).get(1).await.unwrap_err();
    assert!(e.is_transport() && e.is_retryable(), "{e}");
    let quick = started.elapsed();
    // With 3 retries the backoff (20 + 40 + 80 ms) is spent first.
    let proxy = Proxy::new(&addr).unwrap().max_retries(3);
    let started = std::time::Instant::now();
    SvcClient::new(&proxy, P).get(1).await.unwrap_err();
    assert!(
        started.elapsed() >= Duration::from_millis(140) && started.elapsed() > quick,
        "{:?}",
        started.elapsed()
    );
}
