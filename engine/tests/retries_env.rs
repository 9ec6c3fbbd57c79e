//! `WIRECALL_MAX_RETRIES`. One test function, alone in its binary, because environment
//! variables are process-wide.

use std::time::{Duration, Instant};

use wirecall::{Error, Proxy};

#[tokio::test]
async fn max_retries_from_environment() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        // Nothing listens here: every connect fails at once.
        let addr = format!("unix://{}", dir.path().join("none.sock").display());
        let call = |p: Proxy| async move {
            let started = Instant::now();
            let e = p
                .call_on(1, "x_get")
                .unwrap()
                .idempotent()
                .call::<i64>()
                .await
                .unwrap_err();
            assert!(e.is_transport() && e.is_retryable(), "{e}");
            started.elapsed()
        };
        // SAFETY of the test: this binary has a single test, so no other thread reads the
        // environment concurrently.
        std::env::set_var("WIRECALL_MAX_RETRIES", "0");
        let off = call(Proxy::new(&addr).unwrap()).await;
        std::env::set_var("WIRECALL_MAX_RETRIES", "4");
        // 20 + 40 + 80 + 160 ms of backoff before giving up.
        let four = call(Proxy::new(&addr).unwrap()).await;
        assert!(
            four >= Duration::from_millis(300) && four > off,
            "{off:?} {four:?}"
        );
        // The builder wins over the environment.
        let zero = call(Proxy::new(&addr).unwrap().max_retries(0)).await;
        assert!(zero < Duration::from_millis(300), "{zero:?}");
        std::env::set_var("WIRECALL_MAX_RETRIES", "many");
        match Proxy::new(&addr) {
            Err(Error::Config { message }) => {
                assert!(message.contains("WIRECALL_MAX_RETRIES"), "{message}")
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
        std::env::remove_var("WIRECALL_MAX_RETRIES");
    })
    .await
    .unwrap();
}
