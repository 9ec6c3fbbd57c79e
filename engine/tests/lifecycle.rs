//! Finalize hooks that still make calls, answering through a `Responder`, and the daemon's
//! metadata for attributes and oneway methods.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wirecall::{Engine, Error, Functions, Proxy, Responder};

struct Reporter {
    /// Where the prefinalize hook reports to.
    sink: Proxy,
    log: Arc<Mutex<Vec<String>>>,
}

#[wirecall::provider(service = "rep")]
impl Reporter {
    #[remote]
    async fn later(&self, x: u32, responder: Responder<u32>) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        responder.respond(&(x + 1));
    }

    #[remote]
    fn forgetful(&self, _x: u32, responder: Responder<u32>) {
        drop(responder);
    }

    #[remote]
    fn refuse(&self, responder: Responder<u32>) {
        responder.fail("my::Refusal", "not today");
    }

    #[on_prefinalize]
    async fn tell_collector(&self) {
        let r: Result<String, Error> = self
            .sink
            .call_on(1, "note")
            .unwrap()
            .arg("reporter finalizing")
            .call()
            .await;
        self.log
            .lock()
            .unwrap()
            .push(format!("prefinalize call: {r:?}"));
    }

    #[on_finalize]
    fn done(&self) {
        self.log.lock().unwrap().push("finalize".into());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefinalize_may_call_and_responders_answer() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let notes = Arc::new(Mutex::new(Vec::<String>::new()));
        let n = notes.clone();
        let collector = Engine::server("tcp://127.0.0.1:0").start().await.unwrap();
        collector
            .register_functions(
                Functions::new("").sync_fn("note", &["text"], move |(t,): (String,)| {
                    n.lock().unwrap().push(t.clone());
                    format!("noted: {t}")
                }),
                1,
            )
            .unwrap();

        let log = Arc::new(Mutex::new(Vec::new()));
        let server = Engine::server("tcp://127.0.0.1:0").start().await.unwrap();
        server
            .register_provider(
                Reporter {
                    sink: Proxy::new(&collector.address()).unwrap(),
                    log: log.clone(),
                },
                2,
            )
            .unwrap();
        let c = ReporterClient::new(&server, 2);
        assert_eq!(c.later(41).await.unwrap(), 42);
        match c.forgetful(1).await {
            Err(Error::Remote(e)) => assert!(e.message.contains("without answering"), "{e}"),
            other => panic!("expected a remote error, got {other:?}"),
        }
        match c.refuse().await {
            Err(Error::Remote(e)) => {
                assert_eq!(e.type_name, "my::Refusal");
                assert_eq!(e.message, "not today");
            }
            other => panic!("expected a remote error, got {other:?}"),
        }
        server.finalize().await;
        let log = log.lock().unwrap().clone();
        assert_eq!(log.len(), 2, "{log:?}");
        assert!(log[0].contains("noted: reporter finalizing"), "{log:?}");
        assert_eq!(log[1], "finalize");
        assert_eq!(notes.lock().unwrap().clone(), vec!["reporter finalizing"]);
        collector.finalize().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_on_tcp_and_unix_at_once() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let unix = format!("unix://{}", dir.path().join("both.sock").display());
        let server = Engine::server("tcp://127.0.0.1:0")
            .listen(unix.clone())
            .start()
            .await
            .unwrap();
        server
            .register_functions(Functions::new("").sync_fn("id", &["x"], |(x,): (u8,)| x), 1)
            .unwrap();
        let addrs = server.addresses();
        assert_eq!(addrs.len(), 2);
        assert!(addrs[0].starts_with("tcp://127.0.0.1:") && !addrs[0].ends_with(":0"));
        assert_eq!(addrs[1], unix);
        assert_eq!(server.address(), addrs[0]);
        for a in &addrs {
            let p = Proxy::new(a).unwrap();
            let r: u8 = p.call_on(1, "id").unwrap().arg(7u8).call().await.unwrap();
            assert_eq!(r, 7, "via {a}");
        }
        server.finalize().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_reconnects_after_the_server_restarts() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("unix://{}", dir.path().join("restart.sock").display());
        let f = || Functions::new("").sync_fn("id", &["x"], |(x,): (u32,)| x);
        let first = Engine::server(addr.clone()).start().await.unwrap();
        first.register_functions(f(), 1).unwrap();
        let p = Proxy::new(&addr).unwrap();
        let r: u32 = p.call_on(1, "id").unwrap().arg(1u32).call().await.unwrap();
        assert_eq!(r, 1);
        first.finalize().await;
        // Let the GOAWAY and the close reach the idle client.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = Engine::server(addr.clone()).start().await.unwrap();
        second.register_functions(f(), 1).unwrap();
        let r: u32 = p.call_on(1, "id").unwrap().arg(2u32).call().await.unwrap();
        assert_eq!(r, 2);
        second.finalize().await;
    })
    .await
    .unwrap();
}
