//! Plain functions registered without a provider type.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wirecall::{CodecId, Engine, Error, Functions, Proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_functions_with_args_kwargs_and_errors() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let engine = Engine::server("tcp://127.0.0.1:0").start().await.unwrap();
        let seen = Arc::new(AtomicU64::new(0));
        let s = seen.clone();
        let math = Functions::new("math")
            .sync_fn("add", &["a", "b"], |(a, b): (i64, i64)| a + b)
            .try_fn("div", &["a", "b"], |(a, b): (i64, i64)| {
                a.checked_div(b).ok_or("division by zero")
            })
            .async_fn("slow_neg", &["x"], |(x,): (i64,)| async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                -x
            })
            .oneway_fn("record", &["v"], move |(v,): (u64,)| {
                s.store(v, Ordering::SeqCst);
            });
        engine.register_functions(math, 5).unwrap();
        let client = Engine::client();
        let addr = engine.address();
        for codec in [CodecId::JSON, CodecId::POSTCARD, CodecId::CBOR] {
            let p = Proxy::new(&addr).unwrap().codec(codec);
            let r: i64 = client
                .register("math_add")
                .on(&p, 5)
                .arg(40)
                .kwarg("b", 2)
                .call()
                .await
                .unwrap();
            assert_eq!(r, 42, "{codec}");
            let r: i64 = client
                .register("math_div")
                .on(&p, 5)
                .kwarg("b", 4)
                .kwarg("a", 12)
                .call()
                .await
                .unwrap();
            assert_eq!(r, 3, "{codec}");
            match client
                .register("math_div")
                .on(&p, 5)
                .arg(1)
                .arg(0)
                .call::<i64>()
                .await
            {
                Err(Error::Remote(e)) => assert_eq!(e.message, "division by zero"),
                other => panic!("expected a remote error, got {other:?}"),
            }
            let r: i64 = client
                .register("math_slow_neg")
                .on(&p, 5)
                .arg(7)
                .call()
                .await
                .unwrap();
            assert_eq!(r, -7);
        }
        client
            .register("math_record")
            .disable_response()
            .on(&addr, 5)
            .arg(99u64)
            .send()
            .await
            .unwrap();
        for _ in 0..200 {
            if seen.load(Ordering::SeqCst) == 99 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(seen.load(Ordering::SeqCst), 99);
        // The metadata lists the functions and the oneway one.
        let meta = Proxy::new(&addr).unwrap().metadata().await.unwrap();
        let p = meta.provider(5).unwrap();
        assert_eq!(p.oneway().collect::<Vec<_>>(), vec!["math_record"]);
        assert_eq!(p.methods.len(), 4);
        engine.finalize().await;
    })
    .await
    .unwrap();
}

#[test]
fn blocking_proxy_calls_a_server_from_sync_code() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = rt.block_on(async {
        let e = Engine::server("tcp://127.0.0.1:0").start().await.unwrap();
        e.register_functions(
            Functions::new("").sync_fn("twice", &["s"], |(s,): (String,)| s.repeat(2)),
            9,
        )
        .unwrap();
        e
    });
    let p = wirecall::BlockingProxy::new(&engine.address())
        .unwrap()
        .map(|p| p.codec(CodecId::CBOR).timeout(Duration::from_secs(5)));
    let r: String = p
        .call(p.proxy().call_on(9, "twice").unwrap().kwarg("s", "ab"))
        .unwrap();
    assert_eq!(r, "abab");
    assert_eq!(p.metadata().unwrap().providers.len(), 1);
    match p.call::<String, _, _>(p.proxy().call_on(9, "thrice").unwrap()) {
        Err(Error::NoSuchMethod { exposed, .. }) => assert_eq!(exposed, vec!["twice"]),
        other => panic!("expected NoSuchMethod, got {other:?}"),
    }
    drop(p);
    rt.block_on(engine.finalize());
}
