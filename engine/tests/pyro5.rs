//! Python Pyro5 proxies call wirecall providers: an unmodified `Pyro5.api.Proxy` (the
//! checked-in program `tests/python/pyro_client.py`) against a wirecall server on
//! 127.0.0.1 port 0, with each of Pyro5's serializers, on the listener native clients use.
//!
//! Python is `$WIRECALL_PYTHON` (`bash scripts/python-env.sh` prints the project's venv
//! interpreter, which has Pyro5 5.17), else `python3`. Without Pyro5 5.17 the tests print
//! `skipped: python reference missing (...)` and pass, unless `WIRECALL_REQUIRE_PYTHON=1`
//! (set by `scripts/test.sh`), which makes them fail.

mod pyro_common;
use pyro_common::python_or_skip;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wirecall::{CodecId, Engine, ItemStream, PyroClasses, Value};

#[derive(Debug)]
struct RootCause;

impl std::fmt::Display for RootCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("root cause")
    }
}

impl std::error::Error for RootCause {}

#[derive(Debug)]
struct Failure(String, RootCause);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.1)
    }
}

#[derive(Default)]
struct Greeting {
    notified: AtomicI64,
}

#[wirecall::provider(service = "greeting")]
impl Greeting {
    #[remote]
    fn hello(&self, name: String) -> String {
        format!("Hello, {name}!")
    }

    #[remote]
    fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    #[remote]
    async fn squares(&self, n: u32) -> Vec<u32> {
        tokio::task::yield_now().await;
        (0..n).map(|i| i * i).collect()
    }

    #[remote]
    fn fail(&self, message: String) -> Result<(), Failure> {
        Err(Failure(message, RootCause))
    }

    #[remote]
    fn parse(&self, text: String) -> Result<i64, std::num::ParseIntError> {
        text.parse()
    }

    #[remote(oneway)]
    fn notify(&self, n: i64) {
        self.notified.fetch_add(n, Ordering::SeqCst);
    }

    #[remote]
    fn notified(&self) -> i64 {
        self.notified.load(Ordering::SeqCst)
    }

    /// A remote iterator (Pyro's generator result): `n`, `n - 1`, ..., 1, item by item.
    #[remote]
    fn countdown(&self, n: u32) -> ItemStream<u32> {
        ItemStream::iter((1..=n).rev())
    }

    /// A remote iterator that fails after `good` items.
    #[remote]
    fn breaks_after(&self, good: u32) -> ItemStream<u32> {
        ItemStream::try_new(futures::stream::iter((0..=good).map(move |i| {
            if i < good {
                Ok(i)
            } else {
                Err(Failure(format!("item {i} broke"), RootCause))
            }
        })))
    }

    /// An endless remote iterator: the client stops reading and closes it.
    #[remote]
    fn naturals(&self) -> ItemStream<u64> {
        ItemStream::iter(0u64..)
    }
}

/// A Rust type with a Pyro class name: it travels as
/// `{"__class__": "mymod.Point", "x": .., "y": ..}` (what Python's
/// `register_class_to_dict` writes and `register_dict_to_class` reads).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "__class__", rename = "mymod.Point")]
struct Point {
    x: i64,
    y: i64,
}

/// Classes told apart by their Pyro class name: serde checks the tag of an internally
/// tagged enum when reading (a tagged struct's tag is only written).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "__class__")]
enum Shape {
    #[serde(rename = "mymod.Point")]
    Point { x: i64, y: i64 },
    #[serde(rename = "mymod.Circle")]
    Circle { r: f64 },
}

/// A Python exception instance as a Rust struct (Pyro5 sends exceptions as
/// `{"__class__", "__exception__", "args", "attributes"}`).
#[derive(Serialize, Deserialize, Debug)]
struct PythonError {
    #[serde(rename = "__class__")]
    class: String,
    args: Vec<Value>,
}

struct Geometry;

#[wirecall::provider(service = "geometry")]
impl Geometry {
    #[remote]
    fn translate(&self, p: Point, dx: i64, dy: i64) -> Point {
        Point {
            x: p.x + dx,
            y: p.y + dy,
        }
    }

    #[remote]
    fn farthest(&self, points: Vec<Point>) -> Option<Point> {
        points.into_iter().max_by_key(|p| p.x * p.x + p.y * p.y)
    }

    #[remote]
    fn area(&self, shape: Shape) -> f64 {
        match shape {
            Shape::Point { .. } => 0.0,
            Shape::Circle { r } => std::f64::consts::PI * r * r,
        }
    }

    #[remote]
    fn error_class(&self, e: PythonError) -> String {
        format!("{} with {} args", e.class, e.args.len())
    }

    /// A dynamic value: a class dict (`class{k=v,..}`) or an exception dict
    /// (`class(args)`).
    #[remote]
    fn inspect(&self, v: Value) -> String {
        let text = |v: &Value| match v {
            Value::Str(s) => format!("'{s}'"),
            Value::Int(i) => i.to_string(),
            other => format!("{other:?}"),
        };
        let class = PyroClasses::class_of(&v).unwrap_or("?").to_string();
        if PyroClasses::field(&v, "__exception__") == Some(&Value::Bool(true)) {
            let args = match PyroClasses::field(&v, "args") {
                Some(Value::List(a) | Value::Tuple(a)) => a.iter().map(text).collect(),
                _ => Vec::new(),
            };
            return format!("{class}({})", args.join(", "));
        }
        let Value::Map(m) = &v else {
            return format!("not a dict: {v:?}");
        };
        let fields: Vec<String> = m
            .iter()
            .filter(|(k, _)| *k != Value::Str("__class__".into()))
            .map(|(k, v)| match k {
                Value::Str(k) => format!("{k}={}", text(v)),
                other => format!("{other:?}={}", text(v)),
            })
            .collect();
        format!("{class}{{{}}}", fields.join(","))
    }

    /// Python `Temperature` instances arrive as floats (the server's `PyroClasses`).
    #[remote]
    fn hotter(&self, a: f64, b: f64) -> f64 {
        a.max(b)
    }
}

/// The server's class converters: a Python `Temperature` (sent as Pyro5's default class
/// dict, `vars()` plus `__class__`) becomes its `celsius`.
fn classes() -> PyroClasses {
    let mut c = PyroClasses::new();
    c.register_dict_to_class("__main__.Temperature", |d| {
        PyroClasses::field(&d, "celsius")
            .cloned()
            .ok_or_else(|| "a Temperature without `celsius`".to_string())
    });
    c
}

async fn server(accept: &[CodecId]) -> (Engine, u16) {
    let engine = Engine::server("tcp://127.0.0.1:0")
        .accept(accept.iter().copied())
        .pyro_classes(classes())
        .start()
        .await
        .expect("start the server");
    engine
        .register_provider_as(Greeting::default(), 1, "example.greeting")
        .expect("register");
    engine
        .register_provider_as(Geometry, 2, "example.geometry")
        .expect("register");
    let address = engine.address();
    let port = address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a tcp address with a port");
    (engine, port)
}

/// Runs the Python client's `scenario`; returns its stdout, or panics with its output when
/// it fails or runs past 60 s (it is killed then).
async fn run_client(python: &str, port: u16, scenario: &str, serializer: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/pyro_client.py");
    let mut child = Command::new(python)
        .args([script, &port.to_string(), scenario, serializer])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    let what = format!("{scenario} with {serializer}");
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().expect("wait for python").is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what}: the Python client ran past 60 s and was killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().expect("python output");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{what}: the Python client failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    })
    .await
    .expect("the client runner")
}

const ALL: [CodecId; 4] = [
    CodecId::SERPENT,
    CodecId::JSON,
    CodecId::MSGPACK,
    CodecId::MARSHAL,
];

async fn calls_with(serializer: &str, test: &str) {
    let Some(python) = python_or_skip(test) else {
        return;
    };
    let (engine, port) = server(&[
        CodecId::POSTCARD,
        CodecId::SERPENT,
        CodecId::JSON,
        CodecId::MSGPACK,
        CodecId::MARSHAL,
    ])
    .await;
    let out = run_client(&python, port, "call", serializer).await;
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        6,
        "{out}"
    );
    // Native clients keep using the same listener.
    let sum: i64 = Engine::client()
        .register("greeting_add")
        .on(engine.address(), 1)
        .arg(40)
        .arg(2)
        .call()
        .await
        .expect("a native call on the same listener");
    assert_eq!(sum, 42);
    engine.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_with_serpent() {
    calls_with("serpent", "calls_with_serpent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_with_json() {
    calls_with("json", "calls_with_json").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_with_msgpack() {
    calls_with("msgpack", "calls_with_msgpack").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_with_marshal() {
    calls_with("marshal", "calls_with_marshal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_daemon_object() {
    let Some(python) = python_or_skip("metadata_and_daemon_object") else {
        return;
    };
    let (engine, port) = server(&ALL).await;
    for s in ["serpent", "json", "msgpack", "marshal"] {
        let out = run_client(&python, port, "metadata", s).await;
        assert_eq!(
            out.lines().filter(|l| l.starts_with("ok ")).count(),
            5,
            "{s}: {out}"
        );
    }
    engine.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oneway_calls_run_unanswered() {
    let Some(python) = python_or_skip("oneway_calls_run_unanswered") else {
        return;
    };
    let (engine, port) = server(&ALL).await;
    for s in ["serpent", "msgpack"] {
        let out = run_client(&python, port, "oneway", s).await;
        assert_eq!(
            out.lines().filter(|l| l.starts_with("ok ")).count(),
            3,
            "{s}: {out}"
        );
    }
    engine.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_raise_python_exceptions() {
    let Some(python) = python_or_skip("errors_raise_python_exceptions") else {
        return;
    };
    let (engine, port) = server(&ALL).await;
    for s in ["serpent", "json", "msgpack", "marshal"] {
        let out = run_client(&python, port, "errors", s).await;
        assert_eq!(
            out.lines().filter(|l| l.starts_with("ok ")).count(),
            8,
            "{s}: {out}"
        );
    }
    engine.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_serializer_is_reported() {
    let Some(python) = python_or_skip("refused_serializer_is_reported") else {
        return;
    };
    let (engine, port) = server(&[CodecId::JSON, CodecId::MSGPACK]).await;
    let out = run_client(&python, port, "refused", "serpent").await;
    assert!(out.contains("ok a refused serializer is reported"), "{out}");
    assert!(out.contains("json") && out.contains("msgpack"), "{out}");
    engine.finalize().await;
}

/// Object ids: the default is the service name (then `service.ID` when taken), an explicit
/// one must be free and well-formed, and they follow the provider when it goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_ids_default_and_conflicts() {
    let engine = Engine::server("tcp://127.0.0.1:0")
        .start()
        .await
        .expect("start the server");
    engine.register_provider(Greeting::default(), 1).unwrap();
    engine.register_provider(Greeting::default(), 2).unwrap();
    engine
        .register_provider_as(Greeting::default(), 3, "example.greeting")
        .unwrap();
    assert_eq!(
        engine.object_ids(),
        vec![
            ("example.greeting".to_string(), 3),
            ("greeting".to_string(), 1),
            ("greeting.2".to_string(), 2),
        ]
    );
    for bad in ["", "a@b", "a b", "Pyro.Daemon", "example.greeting"] {
        let e = engine
            .register_provider_as(Greeting::default(), 4, bad)
            .expect_err(bad);
        assert!(!e.to_string().is_empty());
    }
    // Nothing was registered by the refusals.
    assert!(engine.metadata().provider(4).is_none());
    engine.set_object_id(1, "renamed").unwrap();
    assert!(engine.set_object_id(2, "renamed").is_err());
    assert!(engine.set_object_id(9, "nine").is_err());
    assert!(engine.deregister_provider(3));
    assert_eq!(
        engine.object_ids(),
        vec![("greeting.2".to_string(), 2), ("renamed".to_string(), 1)]
    );
    engine.finalize().await;
}

/// Runs `scenario` with each serializer of `serializers`, checking its count of passed
/// checks.
async fn scenario(test: &str, scenario: &str, serializers: &[&str], checks: usize) {
    let Some(python) = python_or_skip(test) else {
        return;
    };
    let (engine, port) = server(&ALL).await;
    for s in serializers {
        let out = run_client(&python, port, scenario, s).await;
        assert_eq!(
            out.lines().filter(|l| l.starts_with("ok ")).count(),
            checks,
            "{scenario} with {s}: {out}"
        );
    }
    engine.finalize().await;
}

/// `Pyro5.api.BatchProxy`: results in order, stop at the first error, oneway batches, an
/// unknown method failing the whole batch. Not with marshal: Pyro5's marshal serializer
/// cannot write a batch call (its `kwargs` is None, reference §2.6), a client-side bug.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_proxy_calls() {
    scenario(
        "batch_proxy_calls",
        "batch",
        &["serpent", "json", "msgpack"],
        8,
    )
    .await;
}

/// Pyro5's `COMPRESSION = True`: compressed requests and answers, with every serializer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_calls() {
    scenario(
        "compressed_calls",
        "compression",
        &["serpent", "json", "msgpack", "marshal"],
        4,
    )
    .await;
}

/// Remote iterators: a method returning an `ItemStream` is a Python iterator read item by
/// item (ITEMSTREAMRESULT, then `Pyro.Daemon.get_next_stream_item`), an error item raises
/// in Python, an endless stream closed by the client (`close_stream`) frees its producer,
/// and the connection serves on; a list result stays a plain result; the daemon object's
/// stream methods answer an unknown stream id as a Pyro5 daemon does; a remote iterator
/// outlives its connection (`ITER_STREAM_LINGER`): read again after the proxy reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_methods_of_the_daemon_object() {
    scenario(
        "stream_methods_of_the_daemon_object",
        "streams",
        &["serpent", "json", "msgpack", "marshal"],
        11,
    )
    .await;
}

/// Custom classes with Pyro5's `register_class_to_dict`/`register_dict_to_class` in Python:
/// a serde struct tagged with its Pyro class name as argument, keyword argument, list member
/// and result; Python instances and exceptions as dynamic values; the server's converter
/// registry. With every serializer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_classes() {
    scenario(
        "custom_classes",
        "classes",
        &["serpent", "json", "msgpack"],
        10,
    )
    .await;
    // Pyro5's marshal serializer writes class dicts of top-level arguments only, so the
    // list of Points is left out.
    scenario("custom_classes", "classes", &["marshal"], 9).await;
}

/// The typed path needs nothing Pyro-specific: a struct tagged
/// `#[serde(tag = "__class__", rename = "mymod.Point")]` writes and reads the class dict
/// with each Pyro5 serializer, typed and through `Value`.
#[test]
fn tagged_structs_round_trip_as_class_dicts() {
    let p = Point { x: 3, y: -4 };
    for codec in ALL {
        let mut out = Vec::new();
        wirecall_codecs::encode_into(codec, &p, &mut out).unwrap();
        let back: Point = wirecall_codecs::decode(codec, &out, &Default::default())
            .unwrap_or_else(|e| panic!("{codec}: {e}"));
        assert_eq!(back, p, "{codec}");
        let v = wirecall_codecs::decode_value(codec, &out, &Default::default()).unwrap();
        assert_eq!(
            PyroClasses::class_of(&v),
            Some("mymod.Point"),
            "{codec}: {v:?}"
        );
        assert_eq!(
            PyroClasses::field(&v, "y"),
            Some(&Value::Int(-4)),
            "{codec}"
        );
        let again: Point = wirecall_codecs::from_value(v).unwrap();
        assert_eq!(again, p, "{codec}");
    }
    // Reading, serde ignores a tagged struct's tag: a dict of another class (or none) with
    // the same fields is accepted. An internally tagged enum checks it.
    let dict = |class: Option<&str>| {
        let mut m = vec![
            (Value::Str("x".into()), Value::Int(1)),
            (Value::Str("y".into()), Value::Int(1)),
        ];
        if let Some(c) = class {
            m.insert(0, (Value::Str("__class__".into()), Value::Str(c.into())));
        }
        Value::Map(m)
    };
    assert!(wirecall_codecs::from_value::<Point>(dict(Some("mymod.Line"))).is_ok());
    assert_eq!(
        wirecall_codecs::from_value::<Shape>(dict(Some("mymod.Point"))).unwrap(),
        Shape::Point { x: 1, y: 1 }
    );
    let e = wirecall_codecs::from_value::<Shape>(dict(Some("mymod.Line"))).unwrap_err();
    assert!(e.to_string().contains("mymod.Line"), "{e}");
    let e = wirecall_codecs::from_value::<Shape>(dict(None)).unwrap_err();
    assert!(e.to_string().contains("__class__"), "{e}");
    for codec in ALL {
        let mut out = Vec::new();
        let c = Shape::Circle { r: 2.5 };
        wirecall_codecs::encode_into(codec, &c, &mut out).unwrap();
        let back: Shape = wirecall_codecs::decode(codec, &out, &Default::default()).unwrap();
        assert_eq!(back, c, "{codec}");
    }
}

/// wirecall's own `PyroProxy` against a wirecall server, with every serializer: batches
/// (the error wrapper included, which a Python client cannot request in marshal),
/// compression both ways, a list result through `call_stream` (one item: providers have no
/// streams), and the server's class converters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyro_proxy_against_a_wirecall_server() {
    use futures::StreamExt;
    use wirecall::{Error, PyroProxy};
    let (engine, port) = server(&ALL).await;
    let uri = format!("PYRO:example.greeting@127.0.0.1:{port}");
    for codec in ALL {
        let p = PyroProxy::new(&uri)
            .unwrap()
            .serializer(codec)
            .unwrap()
            .compression(true)
            .timeout(Duration::from_secs(10));
        let mut b = p.batch();
        b.call("add", vec![Value::Int(1), Value::Int(2)], vec![])
            .call("hello", vec![Value::Str("x".repeat(300))], vec![])
            .call("fail", vec![Value::Str("batch".into())], vec![])
            .call("add", vec![Value::Int(3), Value::Int(4)], vec![]);
        let r = b.send().await.unwrap_or_else(|e| panic!("{codec}: {e}"));
        assert_eq!(r.len(), 3, "{codec}: {r:?}");
        assert_eq!(r[0].as_ref().unwrap(), &Value::Int(3));
        assert_eq!(
            r[1].as_ref().unwrap(),
            &Value::Str(format!("Hello, {}!", "x".repeat(300)))
        );
        match &r[2] {
            Err(Error::Remote(e)) => {
                assert_eq!(e.type_name, "RuntimeError", "{codec}");
                assert_eq!(e.message, "batch");
                assert!(e.trace.contains("root cause"), "{}", e.trace);
            }
            other => panic!("{codec}: {other:?}"),
        }
        let items: Vec<_> = p
            .call_stream("squares", vec![Value::Int(3)], vec![])
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(items.len(), 1, "{codec}");
        let squares = match items[0].as_ref().unwrap() {
            Value::List(l) | Value::Tuple(l) => l.clone(),
            other => panic!("{codec}: {other:?}"),
        };
        assert_eq!(squares, [Value::Int(0), Value::Int(1), Value::Int(4)]);
        // A class dict the server's converters turn into a float.
        let t = Value::Map(vec![
            (
                Value::Str("__class__".into()),
                Value::Str("__main__.Temperature".into()),
            ),
            (Value::Str("celsius".into()), Value::Float(30.5)),
        ]);
        let g = PyroProxy::new(&format!("PYRO:example.geometry@127.0.0.1:{port}"))
            .unwrap()
            .serializer(codec)
            .unwrap();
        assert_eq!(
            g.call("hotter", vec![t, Value::Float(12.0)], vec![])
                .await
                .unwrap(),
            Value::Float(30.5),
            "{codec}"
        );
    }
    engine.finalize().await;
}
