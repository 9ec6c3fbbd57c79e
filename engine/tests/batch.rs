//! Batches (`Proxy::batch`) over real tcp and unix sockets on loopback and the in-memory
//! transport: results in order, typed and dynamic calls, oneway calls, stopping at the first
//! error (the server skips the rest: SPEC §6.8) or running all, and cancellation by drop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wirecall::{CodecId, Engine, Error, Proxy, Value};

mod common;
use common::SetOnDrop;

const LIMIT: Duration = Duration::from_secs(30);
const P: u16 = 3;

/// Records which calls ran, in the order they ran.
#[derive(Default)]
struct Svc {
    ran: Mutex<Vec<i64>>,
    slow_stopped: Arc<AtomicBool>,
}

#[wirecall::provider(service = "b")]
impl Svc {
    #[remote]
    fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    /// Records `i` and returns it.
    #[remote]
    async fn record(&self, i: i64) -> i64 {
        // A little work so that concurrent calls could overtake each other.
        tokio::task::yield_now().await;
        self.ran.lock().unwrap().push(i);
        i
    }

    #[remote(oneway)]
    fn note(&self, i: i64) {
        self.ran.lock().unwrap().push(i);
    }

    #[remote]
    fn fail(&self, why: String) -> Result<i64, std::io::Error> {
        Err(std::io::Error::other(why))
    }

    #[remote]
    async fn slow(&self) -> i64 {
        let _flag = SetOnDrop(self.slow_stopped.clone());
        tokio::time::sleep(Duration::from_secs(600)).await;
        0
    }
}

struct Server {
    engine: Engine,
    svc: Arc<Svc>,
    _dir: Option<tempfile::TempDir>,
}

async fn start(kind: &str) -> Server {
    let (addr, dir) = match kind {
        "tcp" => ("tcp://127.0.0.1:0".to_string(), None),
        "unix" => {
            let dir = tempfile::tempdir().unwrap();
            let a = format!("unix://{}", dir.path().join("b.sock").display());
            (a, Some(dir))
        }
        mem => (mem.to_string(), None),
    };
    let engine = Engine::server(addr)
        .accept([CodecId::MSGPACK, CodecId::JSON])
        .start()
        .await
        .unwrap();
    let svc = Arc::new(Svc::default());
    engine.register_arc(svc.clone(), P).unwrap();
    Server {
        engine,
        svc,
        _dir: dir,
    }
}

fn ran(s: &Server) -> Vec<i64> {
    s.svc.ran.lock().unwrap().clone()
}

async fn results_in_order(kind: &str) {
    let s = start(kind).await;
    let proxy = Proxy::new(&s.engine.address()).unwrap();
    let mut batch = proxy.batch();
    let sum = batch.call::<_, i64>(P, "b_add", (((), 2i64), 3i64));
    let dynamic = batch.call_value(
        P,
        "b_add",
        vec![Value::Int(40)],
        vec![("b".to_string(), Value::Int(2))],
    );
    let note = batch.oneway(P, "b_note", ((), 100i64));
    let recs: Vec<_> = (0..20i64)
        .map(|i| batch.call::<_, i64>(P, "b_record", ((), i)))
        .collect();
    assert_eq!(batch.len(), 23);
    let r = tokio::time::timeout(LIMIT, batch.send())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.len(), 23);
    assert_eq!(r.get(sum).unwrap(), 5);
    assert_eq!(r.get(dynamic).unwrap(), Value::Int(42));
    assert!(r.is_ok(note), "{:?}", r.error(note));
    r.get(note).unwrap(); // a oneway call reads as ()
    assert!(matches!(
        r.get_as::<i64>(note.index()),
        Err(Error::Codec { .. })
    ));
    for (i, c) in recs.iter().enumerate() {
        assert_eq!(r.get(*c).unwrap(), i as i64);
    }
    assert!(r.first_error().is_none() && r.skipped().is_empty());
    // An ordered batch runs its calls one at a time, in order: the oneway note first.
    let expected: Vec<i64> = std::iter::once(100).chain(0..20).collect();
    assert_eq!(ran(&s), expected);
    s.engine.finalize().await;
}

#[tokio::test]
async fn results_in_order_over_tcp() {
    results_in_order("tcp").await;
}

#[tokio::test]
async fn results_in_order_over_unix() {
    results_in_order("unix").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_in_order_over_mem() {
    results_in_order("mem://batch-order").await;
}

/// Calls 0 and 1 run, call 2 fails, calls 3 and 4 are skipped (never run on the server).
async fn stops_at_the_first_error(kind: &str) {
    let s = start(kind).await;
    let proxy = Proxy::new(&s.engine.address()).unwrap();
    let mut batch = proxy.batch();
    let a = batch.call::<_, i64>(P, "b_record", ((), 0i64));
    let b = batch.call::<_, i64>(P, "b_record", ((), 1i64));
    let bad = batch.call::<_, i64>(P, "b_fail", ((), "no luck"));
    let note = batch.oneway(P, "b_note", ((), 50i64));
    let c = batch.call::<_, i64>(P, "b_record", ((), 3i64));
    let d = batch.call::<_, i64>(P, "b_record", ((), 4i64));
    let r = tokio::time::timeout(LIMIT, batch.send())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.get(a).unwrap(), 0);
    assert_eq!(r.get(b).unwrap(), 1);
    let e = r.get(bad).unwrap_err();
    assert!(e.is_remote() && e.to_string().contains("no luck"), "{e}");
    assert_eq!(r.first_error().map(|(i, _)| i), Some(bad.index()));
    // The oneway call after the failure is dropped by the server; the client sent it.
    assert!(r.is_ok(note), "{:?}", r.error(note));
    for skipped in [c, d] {
        let e = r.get(skipped).unwrap_err();
        assert!(matches!(e, Error::Skipped { .. }), "{e:?}");
        assert!(e.to_string().contains("never ran"), "{e}");
        assert!(!e.is_retryable());
    }
    assert_eq!(r.skipped(), vec![c.index(), d.index()]);
    // Give a wrongly run call time to show up, then check what ran.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(ran(&s), vec![0, 1]);
    // The connection is fine afterwards.
    let mut again = proxy.batch();
    let x = again.call::<_, i64>(P, "b_add", (((), 1i64), 1i64));
    assert_eq!(again.send().await.unwrap().get(x).unwrap(), 2);
    s.engine.finalize().await;
}

#[tokio::test]
async fn stops_at_the_first_error_over_tcp() {
    stops_at_the_first_error("tcp").await;
}

#[tokio::test]
async fn stops_at_the_first_error_over_unix() {
    stops_at_the_first_error("unix").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_at_the_first_error_over_mem() {
    stops_at_the_first_error("mem://batch-stop").await;
}

#[tokio::test]
async fn run_all_runs_every_call_whatever_fails() {
    let s = start("tcp").await;
    let proxy = Proxy::new(&s.engine.address()).unwrap();
    let mut batch = proxy.batch().run_all();
    let a = batch.call::<_, i64>(P, "b_record", ((), 0i64));
    let bad = batch.call::<_, i64>(P, "b_fail", ((), "x"));
    let c = batch.call::<_, i64>(P, "b_record", ((), 2i64));
    let unknown = batch.call::<_, i64>(P, "b_nope", ());
    let r = tokio::time::timeout(LIMIT, batch.send())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.get(a).unwrap(), 0);
    assert!(r.get(bad).unwrap_err().is_remote());
    assert_eq!(r.get(c).unwrap(), 2);
    assert!(matches!(
        r.get(unknown).unwrap_err(),
        Error::NoSuchMethod { method, .. } if method == "b_nope"
    ));
    assert!(r.skipped().is_empty());
    let mut got = ran(&s);
    got.sort();
    assert_eq!(got, vec![0, 2]);
    s.engine.finalize().await;
}

#[tokio::test]
async fn a_large_run_all_batch_goes_in_windows_and_an_ordered_one_is_bounded() {
    let s = start("unix").await;
    let proxy = Proxy::new(&s.engine.address()).unwrap();
    let mut batch = proxy.batch().run_all();
    let calls: Vec<_> = (0..1000i64)
        .map(|i| batch.call::<_, i64>(P, "b_add", (((), i), 1i64)))
        .collect();
    let r = tokio::time::timeout(LIMIT, batch.send())
        .await
        .unwrap()
        .unwrap();
    for (i, c) in calls.iter().enumerate() {
        assert_eq!(r.get(*c).unwrap(), i as i64 + 1);
    }
    // Over the server's in-flight limit (128), an ordered batch fails before sending.
    let mut batch = proxy.batch();
    for i in 0..129i64 {
        batch.call::<_, i64>(P, "b_record", ((), i));
    }
    let e = batch.send().await.unwrap_err();
    assert!(matches!(e, Error::LimitExceeded { .. }), "{e:?}");
    assert!(e.to_string().contains("run_all"), "{e}");
    assert!(ran(&s).is_empty(), "nothing was sent");
    s.engine.finalize().await;
}

#[tokio::test]
async fn dropping_a_batch_before_send_sends_nothing() {
    let s = start("tcp").await;
    let proxy = Proxy::new(&s.engine.address()).unwrap();
    proxy.connect().await.unwrap();
    {
        let mut batch = proxy.batch();
        batch.call::<_, i64>(P, "b_record", ((), 1i64));
        batch.oneway(P, "b_note", ((), 2i64));
    }
    // A call after it travels on the same connection: had the batch sent anything, it
    // would have arrived first.
    let mut b = proxy.batch();
    let x = b.call::<_, i64>(P, "b_add", (((), 1i64), 2i64));
    assert_eq!(b.send().await.unwrap().get(x).unwrap(), 3);
    assert!(ran(&s).is_empty());
    s.engine.finalize().await;
}

async fn dropping_a_batch_in_flight_cancels_the_rest(kind: &str) {
    let s = start(kind).await;
    let proxy = Proxy::new(&s.engine.address()).unwrap();
    let mut batch = proxy.batch();
    batch.call::<_, i64>(P, "b_record", ((), 0i64));
    batch.call::<_, i64>(P, "b_slow", ());
    for i in 2..10i64 {
        batch.call::<_, i64>(P, "b_record", ((), i));
    }
    let sent = tokio::time::timeout(Duration::from_millis(300), batch.send()).await;
    assert!(sent.is_err(), "the slow call holds the batch");
    // The slow handler was stopped by the CANCEL; the calls after it never ran.
    for _ in 0..500 {
        if s.svc.slow_stopped.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(s.svc.slow_stopped.load(Ordering::SeqCst));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(ran(&s), vec![0]);
    // The proxy goes on working.
    let mut b = proxy.batch();
    let x = b.call::<_, i64>(P, "b_add", (((), 2i64), 2i64));
    assert_eq!(b.send().await.unwrap().get(x).unwrap(), 4);
    s.engine.finalize().await;
}

#[tokio::test]
async fn dropping_a_batch_in_flight_cancels_the_rest_over_tcp() {
    dropping_a_batch_in_flight_cancels_the_rest("tcp").await;
}

#[tokio::test]
async fn dropping_a_batch_in_flight_cancels_the_rest_over_unix() {
    dropping_a_batch_in_flight_cancels_the_rest("unix").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_batch_in_flight_cancels_the_rest_over_mem() {
    dropping_a_batch_in_flight_cancels_the_rest("mem://batch-drop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ordered_batches_on_one_connection() {
    let s = start("tcp").await;
    let proxy = Proxy::new(&s.engine.address()).unwrap();
    proxy.connect().await.unwrap();
    // 6 x 20 calls: within the server's 128 calls in flight.
    let tasks: Vec<_> = (0..6i64)
        .map(|t| {
            let proxy = proxy.clone();
            tokio::spawn(async move {
                let mut batch = proxy.batch();
                let calls: Vec<_> = (0..20i64)
                    .map(|i| batch.call::<_, i64>(P, "b_add", (((), t * 100), i)))
                    .collect();
                let r = batch.send().await.unwrap();
                for (i, c) in calls.iter().enumerate() {
                    assert_eq!(r.get(*c).unwrap(), t * 100 + i as i64);
                }
            })
        })
        .collect();
    for t in tasks {
        tokio::time::timeout(LIMIT, t).await.unwrap().unwrap();
    }
    s.engine.finalize().await;
}
