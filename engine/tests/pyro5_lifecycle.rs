//! A wirecall server's finalize drains Pyro5 connections as it drains native ones: a call
//! in flight is answered before the providers' finalize hooks run, idle Pyro5 connections
//! close at once (finalize does not wait out its grace period for them), and Pyro5 calls
//! get a tracing span each, as native calls do. `PyroProxy` is the Pyro5 client (no Python
//! needed); everything on 127.0.0.1, bounded in time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use wirecall::{Engine, PyroProxy, Value};

const LIMIT: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Slow {
    log: Arc<Mutex<Vec<String>>>,
}

#[wirecall::provider(service = "slow")]
impl Slow {
    #[remote]
    async fn wait(&self, millis: u64) -> u64 {
        self.log
            .lock()
            .unwrap()
            .push(format!("wait {millis} started"));
        tokio::time::sleep(Duration::from_millis(millis)).await;
        self.log.lock().unwrap().push(format!("wait {millis} done"));
        millis
    }

    #[remote]
    fn echo(&self, v: String) -> String {
        v
    }

    #[on_finalize]
    fn finalize(&self) {
        self.log.lock().unwrap().push("finalize".into());
    }
}

fn pyro_uri(engine: &Engine) -> String {
    let addr = engine.address();
    format!("PYRO:slow@{}", addr.strip_prefix("tcp://").unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_answers_pyro_calls_in_flight_then_closes_pyro_connections() {
    tokio::time::timeout(LIMIT, async {
        let log = Arc::new(Mutex::new(Vec::new()));
        let engine = Engine::server("tcp://127.0.0.1:0")
            .grace_period(Duration::from_secs(10))
            .start()
            .await
            .unwrap();
        engine
            .register_provider(Slow { log: log.clone() }, 1)
            .unwrap();
        let uri = pyro_uri(&engine);

        // An idle Pyro5 connection: it must not hold finalize for the grace period.
        let idle = PyroProxy::new(&uri).unwrap();
        assert_eq!(
            idle.call("echo", vec![Value::Str("x".into())], vec![])
                .await
                .unwrap(),
            Value::Str("x".into())
        );

        // A call in flight when finalize starts.
        let busy = Arc::new(PyroProxy::new(&uri).unwrap());
        let b = busy.clone();
        let call = tokio::spawn(async move { b.call("wait", vec![Value::Int(500)], vec![]).await });
        // Finalize once the call runs on the server.
        while !log.lock().unwrap().iter().any(|l| l == "wait 500 started") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = Instant::now();
        engine.finalize().await;
        let took = started.elapsed();
        assert_eq!(call.await.unwrap().unwrap(), Value::Int(500));
        assert_eq!(
            *log.lock().unwrap(),
            ["wait 500 started", "wait 500 done", "finalize"],
            "the Pyro5 call must be answered before the providers finalize"
        );
        assert!(
            took < Duration::from_secs(5),
            "finalize waited {took:?}: the idle Pyro5 connection was not closed"
        );
        // Both connections were closed: the next call cannot connect.
        assert!(idle
            .call("echo", vec![Value::Str("x".into())], vec![])
            .await
            .is_err());
    })
    .await
    .unwrap();
}

/// The fields of the `call` and `connection` spans around each "call finished" event.
type Finished = (HashMap<String, String>, HashMap<String, String>);

static FINISHED: Mutex<Vec<Finished>> = Mutex::new(Vec::new());

#[derive(Clone, Default)]
struct SpanFields(HashMap<String, String>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

struct Capture;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut f = SpanFields::default();
        attrs.record(&mut Fields(&mut f.0));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(f);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(f) = span.extensions_mut().get_mut::<SpanFields>() {
                values.record(&mut Fields(&mut f.0));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        if fields.get("message").map(String::as_str) != Some("call finished") {
            return;
        }
        let mut call = HashMap::new();
        let mut conn = HashMap::new();
        if let Some(scope) = ctx.event_scope(event) {
            for s in scope.from_root() {
                let f = s
                    .extensions()
                    .get::<SpanFields>()
                    .cloned()
                    .unwrap_or_default();
                match s.name() {
                    "call" => call = f.0,
                    "connection" => conn = f.0,
                    _ => {}
                }
            }
        }
        FINISHED.lock().unwrap().push((call, conn));
    }
}

/// Pyro5 calls get the span native calls get (`call`, under the connection's span with
/// dialect `pyro5`), with method, codec, outcome and duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyro_calls_have_call_spans() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Capture))
            .expect("the only subscriber of this test binary");
    });
    tokio::time::timeout(LIMIT, async {
        let engine = Engine::server("tcp://127.0.0.1:0").start().await.unwrap();
        engine.register_provider(Slow::default(), 1).unwrap();
        let local = engine.address();
        let p = PyroProxy::new(&pyro_uri(&engine)).unwrap();
        p.call("echo", vec![Value::Str("traced".into())], vec![])
            .await
            .unwrap();
        p.call("wait", vec![Value::Int(1)], vec![]).await.unwrap();
        p.close().await;
        engine.finalize().await;
        let seen: Vec<Finished> = FINISHED
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, conn)| conn.get("local").map(String::as_str) == Some(local.as_str()))
            .cloned()
            .collect();
        let methods: Vec<&str> = seen
            .iter()
            .map(|(call, _)| call.get("method").map(String::as_str).unwrap_or(""))
            .collect();
        assert_eq!(methods, ["slow_echo", "slow_wait"], "{seen:?}");
        for (call, conn) in &seen {
            assert_eq!(
                conn.get("dialect").map(String::as_str),
                Some("pyro5"),
                "{conn:?}"
            );
            assert_eq!(
                call.get("codec").map(String::as_str),
                Some("serpent"),
                "{call:?}"
            );
            assert_eq!(
                call.get("outcome").map(String::as_str),
                Some("ok"),
                "{call:?}"
            );
            assert!(call.contains_key("duration_us"), "{call:?}");
        }
    })
    .await
    .unwrap();
}
