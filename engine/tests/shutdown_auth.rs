//! Remote shutdown is always authenticated: off by default, enabled only with a non-empty
//! token, and a request without the token or with a wrong one is refused with
//! `PermissionDenied` while the server keeps serving.

use std::time::Duration;

use wirecall::{Engine, Error, Functions, Proxy};

const LIMIT: Duration = Duration::from_secs(20);

async fn server(
    f: impl FnOnce(wirecall::ServerBuilder) -> wirecall::ServerBuilder,
) -> Result<Engine, Error> {
    let engine = f(Engine::server("tcp://127.0.0.1:0")).start().await?;
    engine.register_functions(
        Functions::new("").sync_fn("double", &["x"], |(x,): (i32,)| x * 2),
        1,
    )?;
    Ok(engine)
}

async fn still_serves(proxy: &Proxy) {
    let r: i32 = proxy
        .call_on(1, "double")
        .unwrap()
        .arg(21)
        .call()
        .await
        .unwrap();
    assert_eq!(r, 42);
}

fn denied(r: Result<(), Error>) -> String {
    match r {
        Err(Error::PermissionDenied { message }) => message,
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_default_whatever_the_request_carries() {
    tokio::time::timeout(LIMIT, async {
        let engine = server(|b| b).await.unwrap();
        let proxy = Proxy::new(&engine.address()).unwrap();
        for token in [None, Some(""), Some("guess")] {
            let m = denied(proxy.shutdown_server(token).await);
            assert!(m.contains("disabled"), "{m}");
            assert!(m.contains("token"), "says how to enable it: {m}");
        }
        assert!(!engine.is_finalizing());
        still_serves(&proxy).await;
        engine.finalize().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_required_and_compared() {
    tokio::time::timeout(LIMIT, async {
        let engine = server(|b| b).await.unwrap();
        engine.enable_remote_shutdown("correct horse").unwrap();
        let proxy = Proxy::new(&engine.address()).unwrap();
        let m = denied(proxy.shutdown_server(None).await);
        assert!(m.contains("no shutdown token"), "{m}");
        // Wrong tokens: shorter, longer, same length, a prefix.
        for wrong in ["correct", "correct horse battery", "correct horsf", ""] {
            let m = denied(proxy.shutdown_server(Some(wrong)).await);
            assert!(m.contains("wrong shutdown token"), "{wrong}: {m}");
        }
        assert!(!engine.is_finalizing());
        still_serves(&proxy).await;
        // Disabled again: even the right token is refused.
        engine.disable_remote_shutdown();
        let m = denied(proxy.shutdown_server(Some("correct horse")).await);
        assert!(m.contains("disabled"), "{m}");
        // A new token replaces the old one.
        engine.enable_remote_shutdown("staple").unwrap();
        denied(proxy.shutdown_server(Some("correct horse")).await);
        proxy.shutdown_server(Some("staple")).await.unwrap();
        engine.wait_for_finalize().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_enables_it_with_a_token() {
    tokio::time::timeout(LIMIT, async {
        let engine = server(|b| b.enable_remote_shutdown("s3cret"))
            .await
            .unwrap();
        let proxy = Proxy::new(&engine.address()).unwrap();
        denied(proxy.shutdown_server(Some("S3CRET")).await);
        proxy.shutdown_server(Some("s3cret")).await.unwrap();
        engine.wait_for_finalize().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_token_cannot_enable_it() {
    tokio::time::timeout(LIMIT, async {
        for empty in ["", "   "] {
            let err = server(|b| b.enable_remote_shutdown(empty))
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{err:?}");
            assert!(err.to_string().contains("token is empty"), "{err}");
        }
        let engine = server(|b| b).await.unwrap();
        let err = engine.enable_remote_shutdown("").unwrap_err();
        assert!(err.to_string().contains("token is empty"), "{err}");
        // Still off: the failed enable changed nothing.
        let proxy = Proxy::new(&engine.address()).unwrap();
        let m = denied(proxy.shutdown_server(Some("")).await);
        assert!(m.contains("disabled"), "{m}");
        engine.finalize().await;
    })
    .await
    .unwrap();
}
