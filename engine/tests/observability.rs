//! What the server reports through `tracing`, captured by a test layer: evictions and
//! refusals are events with a `reason` and the peer, connections and calls are spans with
//! their fields. Timers run on tokio's paused clock over the in-memory transport.

use std::collections::HashMap;
use std::sync::{Mutex, Once};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use wirecall::{CodecId, Engine, Error, Functions, Proxy};

mod common;

/// One captured event: its level, fields (with `message`) and the spans it was in, root
/// first.
#[derive(Clone, Debug)]
struct Rec {
    level: Level,
    fields: HashMap<String, String>,
    spans: Vec<(String, HashMap<String, String>)>,
}

impl Rec {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    fn message(&self) -> &str {
        self.field("message").unwrap_or("")
    }

    /// A field of the enclosing span called `span`.
    fn span_field(&self, span: &str, name: &str) -> Option<&str> {
        self.spans
            .iter()
            .find(|(n, _)| n == span)
            .and_then(|(_, f)| f.get(name))
            .map(String::as_str)
    }
}

static RECORDS: Mutex<Vec<Rec>> = Mutex::new(Vec::new());

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

/// Collects every event, with its spans' fields, into [`RECORDS`].
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
        let spans = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .from_root()
                    .map(|s| {
                        let f = s
                            .extensions()
                            .get::<SpanFields>()
                            .cloned()
                            .unwrap_or_default();
                        (s.name().to_string(), f.0)
                    })
                    .collect()
            })
            .unwrap_or_default();
        RECORDS.lock().unwrap().push(Rec {
            level: *event.metadata().level(),
            fields,
            spans,
        });
    }
}

fn capture() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Capture))
            .expect("the only subscriber of this test binary");
    });
}

/// The captured events for which `f` holds.
fn events(f: impl Fn(&Rec) -> bool) -> Vec<Rec> {
    RECORDS
        .lock()
        .unwrap()
        .iter()
        .filter(|r| f(r))
        .cloned()
        .collect()
}

/// The events of connections to the server listening at `local`.
fn of_server(local: &str, reason: &str) -> Vec<Rec> {
    events(|r| {
        r.span_field("connection", "local") == Some(local) && r.field("reason") == Some(reason)
    })
}

async fn server(
    name: &str,
    f: impl FnOnce(wirecall::ServerBuilder) -> wirecall::ServerBuilder,
) -> Engine {
    capture();
    let engine = f(Engine::server(format!("mem://{name}")))
        .start()
        .await
        .unwrap();
    engine
        .register_functions(
            Functions::new("").sync_fn("double", &["x"], |(x,): (i32,)| x * 2),
            1,
        )
        .unwrap();
    engine
}

async fn double(p: &Proxy, x: i32) -> Result<i32, Error> {
    p.call_on(1, "double")?.arg(x).call().await
}

#[tokio::test(start_paused = true)]
async fn an_idle_peer_evicted_is_an_event_with_its_reason() {
    let engine = server("obs-idle", |b| {
        b.idle_timeout(Some(Duration::from_secs(5))).keepalive(None)
    })
    .await;
    let p = Proxy::new(&engine.address()).unwrap();
    assert_eq!(double(&p, 2).await.unwrap(), 4);
    assert!(of_server(&engine.address(), "idle_timeout").is_empty());
    // The paused clock runs ahead while everything waits: past twice the idle timeout.
    tokio::time::sleep(Duration::from_secs(11)).await;
    for _ in 0..100 {
        if engine.connection_count() == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(engine.connection_count(), 0);
    let evicted = of_server(&engine.address(), "idle_timeout");
    assert_eq!(evicted.len(), 1, "{evicted:?}");
    let e = &evicted[0];
    assert_eq!(e.level, Level::INFO);
    assert!(e.message().contains("evicted"), "{e:?}");
    assert!(e.message().contains("idle"), "{e:?}");
    assert!(e.field("peer").is_some_and(|p| !p.is_empty()), "{e:?}");
    assert_eq!(e.field("calls"), Some("1"), "{e:?}");
    assert_eq!(e.span_field("connection", "dialect"), Some("native"));
    engine.finalize().await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_handshake_evicted_is_a_warning() {
    let engine = server("obs-handshake", |b| {
        b.handshake_timeout(Some(Duration::from_secs(2)))
    })
    .await;
    // A peer that connects and never says HELLO.
    let _raw = common::raw_connect(&engine.address()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for _ in 0..100 {
        if !of_server(&engine.address(), "handshake_timeout").is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let evicted = of_server(&engine.address(), "handshake_timeout");
    assert_eq!(evicted.len(), 1, "{evicted:?}");
    assert_eq!(evicted[0].level, Level::WARN);
    assert!(evicted[0].message().contains("evicted"), "{:?}", evicted[0]);
    engine.finalize().await;
}

#[tokio::test]
async fn a_refused_codec_is_an_event_with_its_reason() {
    let engine = server("obs-codec", |b| b.accept([CodecId::JSON])).await;
    let p = Proxy::new(&engine.address()).unwrap().codec(CodecId::CBOR);
    assert!(matches!(
        double(&p, 1).await,
        Err(Error::CodecRefused { .. })
    ));
    let refused = of_server(&engine.address(), "codec_refused");
    assert_eq!(refused.len(), 1, "{refused:?}");
    let r = &refused[0];
    assert_eq!(r.level, Level::INFO);
    assert!(r.message().contains("cbor"), "{r:?}");
    assert!(r.field("peer").is_some(), "{r:?}");
    assert!(r.field("request_id").is_some(), "{r:?}");
    engine.finalize().await;
}

#[tokio::test]
async fn refused_shutdowns_and_connections_are_warnings_with_the_peer() {
    let engine = server("obs-refusals", |b| b.max_connections(Some(1))).await;
    let p = Proxy::new(&engine.address()).unwrap();
    assert!(p.shutdown_server(Some("guess")).await.is_err());
    engine.enable_remote_shutdown("tok").unwrap();
    assert!(p.shutdown_server(Some("guess")).await.is_err());
    assert!(p.shutdown_server(None).await.is_err());
    for reason in ["disabled", "wrong_token", "no_token"] {
        let r = of_server(&engine.address(), reason);
        assert_eq!(r.len(), 1, "{reason}: {r:?}");
        assert_eq!(r[0].level, Level::WARN);
        assert!(r[0].message().contains("remote shutdown refused"), "{r:?}");
        assert!(
            r[0].field("peer").is_some_and(|p| p.starts_with("mem://")),
            "{r:?}"
        );
    }
    // One connection over the limit.
    let q = Proxy::new(&engine.address()).unwrap();
    let err = double(&q, 1).await.unwrap_err();
    assert!(err.to_string().contains("server busy"), "{err:?}");
    let busy = events(|r| {
        r.field("reason") == Some("max_connections") && r.field("max_connections") == Some("1")
    });
    assert!(!busy.is_empty(), "no max_connections event");
    assert_eq!(busy[0].level, Level::WARN);
    assert!(busy[0].message().contains("connection refused"), "{busy:?}");
    engine.finalize().await;
}

#[tokio::test]
async fn calls_are_spans_with_outcome_and_duration() {
    let engine = server("obs-calls", |b| b).await;
    let p = Proxy::new(&engine.address()).unwrap();
    assert_eq!(double(&p, 21).await.unwrap(), 42);
    let _ = p
        .call_on(1, "nope")
        .unwrap()
        .call::<i32>()
        .await
        .unwrap_err();
    let finished = events(|r| {
        r.message() == "call finished"
            && r.span_field("connection", "local") == Some(engine.address().as_str())
    });
    let outcome = |method: &str| {
        finished
            .iter()
            .find(|r| r.span_field("call", "method") == Some(method))
            .unwrap_or_else(|| panic!("no finished call of {method}: {finished:?}"))
    };
    let ok = outcome("double");
    assert_eq!(ok.field("outcome"), Some("ok"));
    assert!(ok
        .field("duration_us")
        .is_some_and(|d| d.parse::<u64>().is_ok()));
    assert_eq!(ok.span_field("call", "provider"), Some("1"));
    assert_eq!(
        ok.span_field("call", "codec"),
        Some(ok.span_field("connection", "codec").unwrap())
    );
    assert_eq!(outcome("nope").field("outcome"), Some("unknown_method"));
    engine.finalize().await;
}

/// Refuses every call to `double` with a reason.
struct Deny;

impl wirecall::CallHook for Deny {
    fn before(&self, call: &wirecall::CallInfo<'_>) -> Result<(), String> {
        if call.method == "double" {
            Err("double is closed today".into())
        } else {
            Ok(())
        }
    }
}

#[tokio::test]
async fn a_call_refused_by_a_hook_is_an_event_with_its_reason() {
    let engine = server("obs-hook", |b| b).await;
    engine.add_hook(Deny);
    let p = Proxy::new(&engine.address()).unwrap();
    assert!(matches!(
        double(&p, 1).await,
        Err(Error::PermissionDenied { .. })
    ));
    let refused = of_server(&engine.address(), "hook");
    assert_eq!(refused.len(), 1, "{refused:?}");
    let r = &refused[0];
    assert_eq!(r.level, Level::INFO);
    assert!(r.message().contains("double is closed today"), "{r:?}");
    assert_eq!(r.field("method"), Some("double"));
    assert!(r.field("peer").is_some(), "{r:?}");
    engine.finalize().await;
}
