//! The direct handler path: a synchronous method of plain value parameters with a value
//! result is run on calls that need nothing else (positional arguments only, no bulk
//! values, hooks or trace) without an `Incoming`, its result encoded straight into the
//! answer's buffer. Every outcome it can have must be what the usual path gives: a value, a
//! result with bulk values (which need the attachment), an application error, a panic, bad
//! arguments; and a call with keyword arguments, which takes the usual path, must agree
//! with its positional twin. Real tcp and unix sockets, every built-in codec.

use std::time::Duration;

use wirecall::{Bulk, CodecId, Engine, Error, Provider, Proxy};

const LIMIT: Duration = Duration::from_secs(30);
const P: u16 = 4;

struct Direct;

#[wirecall::provider(service = "d")]
impl Direct {
    #[remote]
    fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    /// A bulk result from plain arguments: the direct path must hand it back to be
    /// attached.
    #[remote]
    fn make(&self, n: usize) -> (String, Bulk) {
        (format!("{n} bytes"), Bulk::from(vec![7u8; n]))
    }

    #[remote]
    fn check(&self, n: u32) -> Result<u32, String> {
        if n % 2 == 0 {
            Ok(n / 2)
        } else {
            Err(format!("{n} is odd"))
        }
    }

    #[remote]
    fn boom(&self, why: String) -> u32 {
        panic!("boom: {why}")
    }

    #[remote]
    fn nothing(&self, _x: u8) {}

    #[remote]
    async fn add_async(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    #[remote]
    fn whoami(&self, ctx: wirecall::CallContext) -> u16 {
        ctx.provider_id()
    }
}

#[test]
fn direct_handlers_are_generated_for_plain_synchronous_methods_only() {
    let specs = <Direct as Provider>::methods();
    for s in &specs {
        let expect = !matches!(s.name, "add_async" | "whoami");
        assert_eq!(s.direct.is_some(), expect, "{}", s.name);
    }
}

async fn start(kind: &str) -> (Engine, Option<tempfile::TempDir>) {
    let (addr, dir) = match kind {
        "tcp" => ("tcp://127.0.0.1:0".to_string(), None),
        _ => {
            let dir = tempfile::tempdir().unwrap();
            let a = format!("unix://{}", dir.path().join("direct.sock").display());
            (a, Some(dir))
        }
    };
    let engine = Engine::server(addr)
        .accept(CodecId::BUILTIN)
        .start()
        .await
        .unwrap();
    engine.register_provider(Direct, P).unwrap();
    (engine, dir)
}

async fn every_outcome(kind: &str) {
    let (engine, _dir) = start(kind).await;
    // With a timeout every call carries a deadline, which the server's shortest path for
    // direct handlers also takes; without one, the plainest call.
    for (codec, timeout) in CodecId::BUILTIN
        .into_iter()
        .flat_map(|c| [(c, Some(LIMIT)), (c, None)])
    {
        let ctx = format!("{kind} {codec} timeout {timeout:?}");
        let p = Proxy::new(&engine.address()).unwrap().codec(codec);
        let p = match timeout {
            Some(t) => p.timeout(t),
            None => p,
        };
        let call = |m: &'static str| p.call_on(P, m).unwrap();

        // A value, positionally (the direct path) and by keyword (the usual path).
        let by_position: i64 = call("d_add").arg(&40i64).arg(&2i64).call().await.unwrap();
        let by_name: i64 = call("d_add")
            .kwarg("b", &2i64)
            .kwarg("a", &40i64)
            .call()
            .await
            .unwrap();
        assert_eq!((by_position, by_name), (42, 42), "{ctx}");
        let async_sum: i64 = call("d_add_async")
            .arg(&1i64)
            .arg(&2i64)
            .call()
            .await
            .unwrap();
        assert_eq!(async_sum, 3, "{ctx}");

        // A result with bulk values, small and large.
        for n in [0usize, 10, 200_000] {
            let (label, data): (String, Bulk) = call("d_make").arg(&n).call().await.unwrap();
            assert_eq!(label, format!("{n} bytes"), "{ctx}");
            assert_eq!(data.len(), n, "{ctx}");
            assert!(data.iter().all(|b| *b == 7), "{ctx}");
        }

        // An application error, then a value on the same connection.
        match call("d_check").arg(&3u32).call::<u32>().await {
            Err(Error::Remote(e)) => assert!(e.message.contains("3 is odd"), "{ctx}: {e:?}"),
            other => panic!("{ctx}: expected the remote error, got {other:?}"),
        }
        let half: u32 = call("d_check").arg(&8u32).call().await.unwrap();
        assert_eq!(half, 4, "{ctx}");

        // A panic fails its call only.
        match call("d_boom").arg(&"why not").call::<u32>().await {
            Err(e) => assert!(e.to_string().contains("boom: why not"), "{ctx}: {e}"),
            Ok(v) => panic!("{ctx}: a panicking handler answered {v}"),
        }
        let again: i64 = call("d_add").arg(&1i64).arg(&1i64).call().await.unwrap();
        assert_eq!(again, 2, "{ctx}");

        // Bad arguments: a clear refusal naming the argument, and the next call works.
        match call("d_add").arg(&"forty").arg(&2i64).call::<i64>().await {
            Err(Error::BadArguments { message }) => {
                assert!(message.contains("positional arguments"), "{ctx}: {message}")
            }
            other => panic!("{ctx}: expected BadArguments, got {other:?}"),
        }
        match call("d_add").arg(&1i64).call::<i64>().await {
            Err(Error::BadArguments { message }) => {
                assert!(message.contains("`b`"), "{ctx}: {message}")
            }
            other => panic!("{ctx}: expected BadArguments, got {other:?}"),
        }

        // A unit result, and a method with a context parameter (the usual path).
        call("d_nothing").arg(&1u8).call::<()>().await.unwrap();
        let id: u16 = call("d_whoami").call().await.unwrap();
        assert_eq!(id, P, "{ctx}");
    }
    engine.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_over_tcp() {
    tokio::time::timeout(LIMIT * 2, every_outcome("tcp"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_over_unix() {
    tokio::time::timeout(LIMIT * 2, every_outcome("unix"))
        .await
        .unwrap();
}
