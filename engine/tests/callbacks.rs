//! Issue 12, item 3: callbacks over symmetric connections (SPEC §6.10). A client exposes
//! providers on its own connection; the server's handlers call them back over it (the
//! client listens on nothing). Over tcp, unix sockets and the in-memory transport (and once
//! over TLS); the client's own enforcement of a callback's deadline and cancel is checked
//! with a raw socket playing the server.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use wirecall::{CallContext, CodecId, Engine, Error, Functions, Proxy};
use wirecall_protocol as proto;

mod common;
use common::SetOnDrop;

#[path = "../../transport/tests/pki/mod.rs"]
mod pki;

/// Bound of every wait in these tests.
const LIMIT: Duration = Duration::from_secs(20);
/// The server's provider id.
const JOBS: u16 = 1;
/// The provider id the client exposes its progress reporter under.
const PROGRESS: u16 = 7;

/// The client's side: records the progress reports the server sends it.
#[derive(Default)]
struct Progress {
    steps: Mutex<Vec<u32>>,
    /// Set when a `hang` callback's handler was stopped (its future dropped).
    hang_dropped: Arc<AtomicBool>,
    /// Told when a `hang` callback started.
    hang_started: Arc<Notify>,
    /// Sets its flag when this instance is dropped.
    _dropped: Option<SetOnDrop>,
}

#[wirecall::provider(service = "progress")]
impl Progress {
    /// One progress report; answers `step * 10` so the server sees the client's answers.
    #[remote]
    fn report(&self, step: u32) -> u32 {
        self.steps.lock().unwrap().push(step);
        step * 10
    }

    /// A callback whose handler fails.
    #[remote]
    fn fail(&self, why: String) -> Result<u32, String> {
        Err(why)
    }

    /// The time the server's callback had left, as this side sees it (ms).
    #[remote]
    fn seen_deadline(&self, ctx: CallContext) -> Option<u64> {
        ctx.remaining().map(|d| d.as_millis() as u64)
    }

    /// Never answers.
    #[remote]
    async fn hang(&self) -> u32 {
        let _guard = SetOnDrop(self.hang_dropped.clone());
        self.hang_started.notify_one();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        0
    }
}

/// The server's side: long calls that report progress to their caller.
#[derive(Default)]
struct Jobs {
    /// What the last `wait_back` callback ended with.
    waited: Mutex<Option<Result<u32, Error>>>,
    waited_done: Notify,
    /// Calls served, to show the server keeps serving.
    served: AtomicU32,
}

#[wirecall::provider(service = "jobs")]
impl Jobs {
    /// A long job: reports `steps` steps to the caller's `progress_report` through its
    /// generated typed client before answering; returns the sum of the client's answers.
    #[remote]
    async fn run(&self, ctx: CallContext, steps: u32) -> Result<u32, Error> {
        self.served.fetch_add(1, Ordering::SeqCst);
        let progress = ProgressClient::new(ctx.callback()?, PROGRESS);
        let mut sum = 0;
        for step in 1..=steps {
            sum += progress.report(step).await?;
        }
        Ok(sum)
    }

    /// `run` with a pause of `ms` before each step.
    #[remote]
    async fn slow_run(&self, ctx: CallContext, steps: u32, ms: u64) -> Result<u32, Error> {
        let progress = ProgressClient::new(ctx.callback()?, PROGRESS);
        let mut sum = 0;
        for step in 1..=steps {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            sum += progress.report(step).await?;
        }
        Ok(sum)
    }

    /// The same through the untyped call builder, and a oneway report at the end.
    #[remote]
    async fn run_untyped(&self, ctx: CallContext, steps: u32) -> Result<u32, Error> {
        let back = ctx.callback()?;
        let mut sum = 0;
        for step in 1..=steps {
            sum += back
                .call_on(PROGRESS, "progress_report")?
                .arg(step)
                .call::<u32>()
                .await?;
        }
        back.call_on(PROGRESS, "progress_report")?
            .arg(1000u32)
            .send()
            .await?;
        Ok(sum)
    }

    /// Calls back a method that fails: returns the error the callback gave.
    #[remote]
    async fn fail_back(&self, ctx: CallContext) -> Result<String, Error> {
        match ProgressClient::new(ctx.callback()?, PROGRESS)
            .fail("disk full".to_string())
            .await
        {
            Ok(v) => Ok(format!("unexpected success {v}")),
            Err(Error::Remote(r)) => Ok(format!("remote: {}", r.message)),
            Err(e) => Ok(format!("other: {e:?}")),
        }
    }

    /// Calls back a provider id the client did not expose: returns the error.
    #[remote]
    async fn call_unknown(&self, ctx: CallContext) -> Result<String, Error> {
        let r = ctx
            .callback()?
            .call_on(99, "progress_report")?
            .arg(1u32)
            .call::<u32>()
            .await;
        Ok(format!("{r:?}"))
    }

    /// Calls back a callback of the client that never answers; keeps what it ends with.
    #[remote(oneway)]
    async fn wait_back(&self, ctx: CallContext) {
        let r = match ctx.callback() {
            Ok(p) => ProgressClient::new(p, PROGRESS).hang().await,
            Err(e) => Err(e),
        };
        *self.waited.lock().unwrap() = Some(r);
        self.waited_done.notify_one();
    }

    /// What `ctx.callback()` says (checked against what the connection says).
    #[remote]
    fn probe(&self, ctx: CallContext) -> String {
        match ctx.callback() {
            Ok(_) if ctx.connection().takes_callbacks() => "callbacks available".into(),
            Ok(_) => "callback() and takes_callbacks() disagree".into(),
            Err(e) => e.to_string(),
        }
    }

    /// The time the caller's callback saw left (its deadline inherited from this call).
    #[remote]
    async fn relay_deadline(&self, ctx: CallContext) -> Result<Option<u64>, Error> {
        ProgressClient::new(ctx.callback()?, PROGRESS)
            .seen_deadline()
            .await
    }

    /// Calls back `hang` within this call's deadline: the callback times out with it.
    #[remote]
    async fn hang_back(&self, ctx: CallContext) -> Result<u32, Error> {
        ProgressClient::new(ctx.callback()?, PROGRESS).hang().await
    }
}

struct Server {
    engine: Engine,
    jobs: Arc<Jobs>,
}

async fn start(kind: &str, test: &str, dir: &tempfile::TempDir) -> Server {
    let addr = match kind {
        "tcp" => "tcp://127.0.0.1:0".to_string(),
        "unix" => format!(
            "unix://{}",
            dir.path().join(format!("{test}.sock")).display()
        ),
        _ => format!("mem://callbacks-{test}"),
    };
    let engine = Engine::server(addr)
        .accept([CodecId::MSGPACK, CodecId::JSON])
        .start()
        .await
        .unwrap();
    let jobs = Arc::new(Jobs::default());
    engine.register_arc(jobs.clone(), JOBS).unwrap();
    Server { engine, jobs }
}

const KINDS: [&str; 3] = ["tcp", "unix", "mem"];

/// Runs `f` for each transport, bounded in time.
async fn each<F, Fut>(test: &str, f: F)
where
    F: Fn(Server) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let s = start(kind, test, &dir).await;
        let engine = s.engine.clone();
        tokio::time::timeout(LIMIT, f(s))
            .await
            .unwrap_or_else(|_| panic!("{test} over {kind} timed out"));
        engine.finalize().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_reports_during_a_long_call() {
    each("progress", |s| async move {
        let progress = Arc::new(Progress::default());
        let proxy = Proxy::new(&s.engine.address())
            .unwrap()
            .expose_arc(progress.clone(), PROGRESS)
            .unwrap();
        // Typed on both sides: the server's generated client of the client's provider.
        let jobs = JobsClient::new(&proxy, JOBS);
        assert_eq!(jobs.run(4).await.unwrap(), 10 + 20 + 30 + 40);
        assert_eq!(*progress.steps.lock().unwrap(), vec![1, 2, 3, 4]);
        // Untyped, with a oneway report last.
        progress.steps.lock().unwrap().clear();
        assert_eq!(jobs.run_untyped(3).await.unwrap(), 60);
        // The oneway report runs beside the answer: wait for it.
        let deadline = tokio::time::Instant::now() + LIMIT;
        while progress.steps.lock().unwrap().len() < 4 {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(*progress.steps.lock().unwrap(), vec![1, 2, 3, 1000]);
        // Several callers at once on one connection, each getting its own reports.
        let runs = (0..8).map(|_| jobs.run(5));
        for r in futures::future::join_all(runs).await {
            assert_eq!(r.unwrap(), 150);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_can_be_exposed_and_codecs_follow_the_proxy() {
    each("functions", |s| async move {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let functions =
            Functions::new("progress").sync_fn("report", &["step"], move |(step,): (u32,)| {
                log.lock().unwrap().push(step);
                step + 1
            });
        let proxy = Proxy::new(&s.engine.address())
            .unwrap()
            .codec(CodecId::JSON)
            .expose_functions(functions, PROGRESS)
            .unwrap();
        let jobs = JobsClient::new(&proxy, JOBS);
        assert_eq!(jobs.run(3).await.unwrap(), 2 + 3 + 4);
        assert_eq!(*seen.lock().unwrap(), vec![1, 2, 3]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_error_reaches_the_handler() {
    each("error", |s| async move {
        let proxy = Proxy::new(&s.engine.address())
            .unwrap()
            .expose(Progress::default(), PROGRESS)
            .unwrap();
        let jobs = JobsClient::new(&proxy, JOBS);
        assert_eq!(jobs.fail_back().await.unwrap(), "remote: disk full");
        // A callback to a provider the client did not expose fails naming those it did.
        let said = jobs.call_unknown().await.unwrap();
        assert!(said.contains("NoSuchProvider"), "{said}");
        assert!(said.contains("exposed ids: 7"), "{said}");
        // The connection is as good as before.
        assert_eq!(jobs.run(2).await.unwrap(), 30);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_connection_mid_callback_fails_it_clearly() {
    each("close", |s| async move {
        let progress = Arc::new(Progress::default());
        let started = progress.hang_started.clone();
        let proxy = Proxy::new(&s.engine.address())
            .unwrap()
            .expose_arc(progress.clone(), PROGRESS)
            .unwrap();
        JobsClient::new(&proxy, JOBS).wait_back().await.unwrap();
        // The server's handler waits for the client's `hang`: the client goes away.
        started.notified().await;
        drop(proxy);
        s.jobs.waited_done.notified().await;
        let r = s.jobs.waited.lock().unwrap().take().unwrap();
        match r {
            Err(Error::Transport { message, .. }) => {
                assert!(message.contains("caller's connection closed"), "{message}")
            }
            other => panic!("expected the closed connection's error, got {other:?}"),
        }
        // The client's handler was stopped with its connection.
        let deadline = tokio::time::Instant::now() + LIMIT;
        while !progress.hang_dropped.load(Ordering::SeqCst) {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The server keeps serving, callbacks included.
        let proxy = Proxy::new(&s.engine.address())
            .unwrap()
            .expose(Progress::default(), PROGRESS)
            .unwrap();
        assert_eq!(JobsClient::new(&proxy, JOBS).run(1).await.unwrap(), 10);
        assert!(s.jobs.served.load(Ordering::SeqCst) >= 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_exposed_providers_a_callback_is_a_clear_error() {
    each("none", |s| async move {
        let proxy = Proxy::new(&s.engine.address()).unwrap();
        let said = JobsClient::new(&proxy, JOBS).probe().await.unwrap();
        assert!(said.contains("exposed no provider"), "{said}");
        assert!(said.contains("Proxy::expose"), "{said}");
        // A handler that goes on anyway fails with that error.
        match JobsClient::new(&proxy, JOBS).run(1).await {
            Err(Error::Remote(r)) => assert!(r.message.contains("exposed no provider"), "{r:?}"),
            other => panic!("{other:?}"),
        }
        // Exposing on a proxy already connected fails, saying what to do.
        match proxy.clone().expose(Progress::default(), PROGRESS) {
            Err(Error::Config { message }) => {
                assert!(message.contains("before the first call"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        // A proxy in Pyro mode cannot expose (callbacks are a native feature).
        match Proxy::new("PYRO:jobs@127.0.0.1:9")
            .unwrap()
            .expose(Progress::default(), PROGRESS)
        {
            Err(Error::Config { message }) => assert!(message.contains("Pyro mode"), "{message}"),
            other => panic!("{other:?}"),
        }
        // The same id twice fails too.
        let twice = Proxy::new(&s.engine.address())
            .unwrap()
            .expose(Progress::default(), PROGRESS)
            .unwrap()
            .expose(Progress::default(), PROGRESS);
        assert!(matches!(twice, Err(Error::Config { .. })));
        // With a provider exposed, the same handler has callbacks.
        let proxy = Proxy::new(&s.engine.address())
            .unwrap()
            .expose(Progress::default(), PROGRESS)
            .unwrap();
        assert_eq!(
            JobsClient::new(&proxy, JOBS).probe().await.unwrap(),
            "callbacks available"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_inherit_the_callers_deadline() {
    each("deadline", |s| async move {
        let progress = Arc::new(Progress::default());
        let proxy = Proxy::new(&s.engine.address())
            .unwrap()
            .expose_arc(progress.clone(), PROGRESS)
            .unwrap();
        // No timeout on the call: the callback has none either.
        let jobs = JobsClient::new(&proxy, JOBS);
        assert_eq!(jobs.relay_deadline().await.unwrap(), None);
        // With one, the callback carries what is left of it.
        let timed = JobsClient::new(proxy.clone().timeout(Duration::from_secs(10)), JOBS);
        let left = timed.relay_deadline().await.unwrap().expect("inherited");
        assert!(left > 0 && left <= 10_000, "{left}");
        // A callback that outlives its caller's deadline is stopped on the client too.
        let short = JobsClient::new(proxy.clone().timeout(Duration::from_millis(300)), JOBS);
        match short.hang_back().await {
            // The server's DEADLINE_EXCEEDED, or the handler's own answer when its
            // callback (given what was left) timed out first.
            Err(e) => assert!(
                e.is_timeout() || matches!(&e, Error::Remote(r) if r.message.contains("timed out")),
                "{e:?}"
            ),
            Ok(v) => panic!("answered {v}"),
        }
        let deadline = tokio::time::Instant::now() + LIMIT;
        while !progress.hang_dropped.load(Ordering::SeqCst) {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // And the connection serves on.
        assert_eq!(jobs.run(1).await.unwrap(), 10);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_connection_providers_are_dropped_with_their_connection() {
    each("drop", |s| async move {
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = dropped.clone();
        let created = Arc::new(AtomicU32::new(0));
        let count = created.clone();
        let proxy = Proxy::new(&s.engine.address())
            .unwrap()
            .expose_factory(
                move || {
                    count.fetch_add(1, Ordering::SeqCst);
                    Progress {
                        _dropped: Some(SetOnDrop(flag.clone())),
                        ..Progress::default()
                    }
                },
                PROGRESS,
            )
            .unwrap();
        assert_eq!(JobsClient::new(&proxy, JOBS).run(2).await.unwrap(), 30);
        assert_eq!(
            created.load(Ordering::SeqCst),
            1,
            "one instance per connection"
        );
        assert!(!dropped.load(Ordering::SeqCst));
        drop(proxy);
        let deadline = tokio::time::Instant::now() + LIMIT;
        while !dropped.load(Ordering::SeqCst) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the connection's provider instance was not dropped"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_shutting_down_still_calls_back_to_finish_its_calls() {
    each("shutdown", |s| async move {
        let progress = Arc::new(Progress::default());
        let proxy = Proxy::new(&s.engine.address())
            .unwrap()
            .expose_arc(progress.clone(), PROGRESS)
            .unwrap();
        let jobs = JobsClient::new(&proxy, JOBS);
        let call = tokio::spawn(async move { jobs.slow_run(5, 40).await });
        let deadline = tokio::time::Instant::now() + LIMIT;
        while progress.steps.lock().unwrap().is_empty() {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // GOAWAY while the call reports its progress: it finishes, callbacks included.
        let engine = s.engine.clone();
        let finalizing = tokio::spawn(async move { engine.finalize().await });
        assert_eq!(call.await.unwrap().unwrap(), 150);
        assert_eq!(*progress.steps.lock().unwrap(), vec![1, 2, 3, 4, 5]);
        finalizing.await.unwrap();
        // The server is gone: a new call fails.
        assert!(JobsClient::new(&proxy, JOBS).run(1).await.is_err());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_over_tls() {
    let run = async {
        let ca = pki::Ca::new("test CA");
        let pem = ca.server(&["localhost", "127.0.0.1"]);
        let tls =
            wirecall::TlsServerConfig::from_pem(pem.cert.as_bytes(), pem.key.as_bytes()).unwrap();
        let engine = Engine::server("tls://127.0.0.1:0")
            .tls(tls)
            .start()
            .await
            .unwrap();
        engine.register_provider(Jobs::default(), JOBS).unwrap();
        let progress = Arc::new(Progress::default());
        let proxy = Proxy::new(&engine.address())
            .unwrap()
            .tls(wirecall::TlsClientConfig::with_ca_pem(ca.cert_pem().as_bytes()).unwrap())
            .expose_arc(progress.clone(), PROGRESS)
            .unwrap();
        assert_eq!(JobsClient::new(&proxy, JOBS).run(3).await.unwrap(), 60);
        assert_eq!(*progress.steps.lock().unwrap(), vec![1, 2, 3]);
        engine.finalize().await;
    };
    tokio::time::timeout(LIMIT, run).await.expect("timed out");
}

/// Reads the next frame from a raw socket.
async fn next_frame(
    sock: &mut tokio::net::TcpStream,
    buf: &mut bytes::BytesMut,
    dec: &mut proto::FrameDecoder,
) -> proto::Frame {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(f) = dec.decode(buf).unwrap() {
            return f;
        }
        let n = sock.read_buf(buf).await.unwrap();
        assert!(n > 0, "the client closed the connection");
    }
}

async fn send_frame(sock: &mut tokio::net::TcpStream, f: proto::Frame) {
    use tokio::io::AsyncWriteExt;
    let mut out = bytes::BytesMut::new();
    f.encode(&mut out).unwrap();
    sock.write_all(&out).await.unwrap();
}

fn hang_call(id: u64, codec: proto::CodecId, annotations: proto::Annotations) -> proto::Frame {
    proto::Frame::Call(proto::Call {
        request_id: proto::RequestId(id),
        provider: proto::ProviderId(PROGRESS),
        codec,
        oneway: false,
        upload: false,
        method: proto::Method::new("progress_hang").unwrap(),
        annotations,
        args: bytes::Bytes::new(),
        kwargs: bytes::Bytes::new(),
        attachment: bytes::Bytes::new(),
    })
}

/// The next ERROR the client sends, skipping PINGs and the like.
async fn next_error(
    sock: &mut tokio::net::TcpStream,
    buf: &mut bytes::BytesMut,
    dec: &mut proto::FrameDecoder,
) -> proto::ErrorFrame {
    loop {
        if let proto::Frame::Error(e) = next_frame(sock, buf, dec).await {
            return e;
        }
    }
}

async fn until_dropped(flag: &AtomicBool) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !flag.swap(false, Ordering::SeqCst) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the handler was not stopped"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A raw socket plays the server (it has no timers of its own): the client's machine
/// enforces a callback's deadline and answers a CANCEL itself, and stops the handler each
/// time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_enforces_callback_deadlines_and_cancels() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tcp://{}", listener.local_addr().unwrap());
    let progress = Arc::new(Progress::default());
    let proxy = Proxy::new(&addr)
        .unwrap()
        .expose_arc(progress.clone(), PROGRESS)
        .unwrap();
    let run = async {
        let connecting = tokio::spawn({
            let p = proxy.clone();
            async move { p.connect().await }
        });
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = bytes::BytesMut::new();
        let mut dec = proto::FrameDecoder::default();
        let proto::Frame::Hello(h) = next_frame(&mut sock, &mut buf, &mut dec).await else {
            panic!("expected HELLO")
        };
        // The proxy offers callbacks because it exposes a provider.
        assert!(h.extensions.get(proto::ExtensionTag::CALLBACKS).is_some());
        let codec = h.codecs[0];
        send_frame(
            &mut sock,
            proto::Frame::Welcome(proto::Welcome {
                version: proto::VERSION,
                codec,
                accepted: h.codecs.clone(),
                limits: proto::Limits::default(),
                extensions: proto::Extensions::new()
                    .with(proto::ExtensionTag::CALLBACKS, bytes::Bytes::new())
                    .unwrap(),
            }),
        )
        .await;
        connecting.await.unwrap().unwrap();

        // A callback with a deadline its handler cannot meet.
        let deadline = proto::Annotations::builder()
            .deadline(Duration::from_millis(100))
            .build();
        send_frame(&mut sock, hang_call(1, codec, deadline)).await;
        let e = next_error(&mut sock, &mut buf, &mut dec).await;
        assert_eq!(e.request_id, proto::RequestId(1));
        assert_eq!(e.body.code, proto::ErrorCode::DEADLINE_EXCEEDED);
        until_dropped(&progress.hang_dropped).await;
        // The handler started (and told so) before it was stopped: take that notice.
        progress.hang_started.notified().await;

        // A callback cancelled while its handler runs.
        send_frame(&mut sock, hang_call(2, codec, proto::Annotations::new())).await;
        progress.hang_started.notified().await;
        send_frame(&mut sock, proto::Frame::Cancel(proto::RequestId(2))).await;
        let e = next_error(&mut sock, &mut buf, &mut dec).await;
        assert_eq!(e.request_id, proto::RequestId(2));
        assert_eq!(e.body.code, proto::ErrorCode::CANCELLED);
        until_dropped(&progress.hang_dropped).await;
    };
    tokio::time::timeout(LIMIT, run).await.expect("timed out");
}
