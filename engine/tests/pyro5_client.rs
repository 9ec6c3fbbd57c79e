//! A wirecall `PyroProxy` calls a plain Python Pyro5 daemon (the checked-in program
//! `tests/python/pyro_daemon.py`, serving a `Calc` object as `test.calc` on 127.0.0.1), with
//! each of Pyro5's serializers.
//!
//! Python is `$WIRECALL_PYTHON` (`bash scripts/python-env.sh` prints the project's venv
//! interpreter, which has Pyro5 5.17), else `python3`. Without Pyro5 5.17 the tests print
//! `skipped: python reference missing (...)` and pass, unless `WIRECALL_REQUIRE_PYTHON=1`
//! (set by `scripts/test.sh`), which makes them fail.

mod pyro_common;
use pyro_common::python_or_skip;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use wirecall::{CodecId, Error, PyroProxy, Value};

const SERIALIZERS: [CodecId; 4] = [
    CodecId::SERPENT,
    CodecId::JSON,
    CodecId::MSGPACK,
    CodecId::MARSHAL,
];

/// A running `pyro_daemon.py`; killed (and reaped) when dropped.
struct Daemon {
    child: Child,
    uri: String,
}

impl Daemon {
    /// Starts the daemon with `args` (`PORT` or `unix PATH`) and waits up to 30 s for the
    /// URI it prints.
    fn start(python: &str, args: &[&str]) -> Daemon {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/pyro_daemon.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the python daemon");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut daemon = Daemon {
            child,
            uri: String::new(),
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.starts_with("PYRO:") => daemon.uri = line.trim().to_string(),
            other => panic!("the python daemon printed no URI: {other:?}"),
        }
        daemon
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn int(v: i128) -> Value {
    Value::Int(v)
}

fn text(v: &str) -> Value {
    Value::Str(v.to_string())
}

/// Lists, tuples and sets compare as lists (serializers differ in which they give).
fn norm(v: Value) -> Value {
    match v {
        Value::List(l) | Value::Tuple(l) | Value::Set(l) => {
            Value::List(l.into_iter().map(norm).collect())
        }
        Value::Map(m) => Value::Map(m.into_iter().map(|(k, v)| (norm(k), norm(v))).collect()),
        other => other,
    }
}

fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    match v {
        Value::Map(m) => m
            .iter()
            .find(|(k, _)| *k == text(key))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no `{key}` in {v:?}")),
        _ => panic!("not a dict: {v:?}"),
    }
}

fn proxy(uri: &str, codec: CodecId) -> PyroProxy {
    PyroProxy::new(uri)
        .unwrap()
        .serializer(codec)
        .unwrap()
        .timeout(Duration::from_secs(20))
}

#[tokio::test]
async fn calls_with_positional_and_keyword_args_in_each_serializer() {
    let Some(python) = python_or_skip("calls_with_positional_and_keyword_args_in_each_serializer")
    else {
        return;
    };
    let daemon = Daemon::start(&python, &["0"]);
    for codec in SERIALIZERS {
        let p = proxy(&daemon.uri, codec);
        let call = |m: &'static str, a: Vec<Value>, k: Vec<(String, Value)>| {
            let p = &p;
            async move {
                p.call(m, a, k)
                    .await
                    .unwrap_or_else(|e| panic!("{codec}: {m}: {e}"))
            }
        };
        assert_eq!(
            call("echo", vec![text("héllo")], vec![]).await,
            text("héllo")
        );
        assert_eq!(call("add", vec![int(2), int(40)], vec![]).await, int(42));
        assert_eq!(
            call("add", vec![Value::Float(0.5), Value::Float(2.25)], vec![]).await,
            Value::Float(2.75)
        );
        assert_eq!(
            call(
                "add",
                vec![],
                vec![("a".into(), text("ab")), ("b".into(), text("cd"))]
            )
            .await,
            text("abcd")
        );
        assert_eq!(
            norm(
                call(
                    "add",
                    vec![Value::List(vec![int(1), int(2)])],
                    vec![("b".into(), Value::List(vec![int(3)]))]
                )
                .await
            ),
            Value::List(vec![int(1), int(2), int(3)])
        );
        let d = norm(
            call(
                "describe",
                vec![text("calc")],
                vec![
                    ("scale".into(), Value::Float(2.0)),
                    ("tags".into(), Value::List(vec![text("b"), text("a")])),
                ],
            )
            .await,
        );
        assert_eq!(field(&d, "name"), &text("calc"), "{codec}");
        assert_eq!(field(&d, "length"), &int(4), "{codec}");
        assert_eq!(
            field(&d, "scaled"),
            &Value::List(vec![Value::Float(3.0), Value::Float(4.0)]),
            "{codec}"
        );
        assert_eq!(
            field(&d, "tags"),
            &Value::List(vec![text("a"), text("b")]),
            "{codec}"
        );
        let nested = Value::Map(vec![(
            text("k"),
            Value::List(vec![int(-7), Value::Null, Value::Bool(true)]),
        )]);
        assert_eq!(
            norm(call("echo", vec![nested.clone()], vec![]).await),
            nested
        );

        // Typed: serializable arguments in, a Rust type out.
        let sum: i64 = p.call_typed("add", (20_i64, 22_i64)).await.unwrap();
        assert_eq!(sum, 42);
        let joined: Vec<String> = p
            .call_typed("add", (vec!["x"], vec!["y", "z"]))
            .await
            .unwrap();
        assert_eq!(joined, ["x", "y", "z"]);
        let bad: Result<i64, Error> = p.call_typed("echo", ("not a number",)).await;
        assert!(matches!(bad, Err(Error::Codec { .. })), "{codec}: {bad:?}");
    }
}

#[tokio::test]
async fn python_exceptions_carry_type_message_and_traceback() {
    let Some(python) = python_or_skip("python_exceptions_carry_type_message_and_traceback") else {
        return;
    };
    let daemon = Daemon::start(&python, &["0"]);
    for codec in SERIALIZERS {
        let p = proxy(&daemon.uri, codec);
        let e = p.call("fail", vec![text("bad")], vec![]).await.unwrap_err();
        let r = e
            .remote()
            .unwrap_or_else(|| panic!("{codec}: not remote: {e}"));
        assert_eq!(r.type_name, "ValueError", "{codec}");
        assert_eq!(r.message, "bad", "{codec}");
        assert!(
            r.trace.starts_with("Traceback (most recent call last):"),
            "{codec}: {}",
            r.trace
        );
        assert!(r.trace.contains("in fail"), "{codec}: {}", r.trace);
        assert!(r.trace.ends_with("ValueError: bad"), "{codec}: {}", r.trace);
        assert!(!e.is_retryable());
        // The connection stays usable.
        assert_eq!(
            p.call("add", vec![int(1), int(1)], vec![]).await.unwrap(),
            int(2)
        );
        // Arguments the method does not take: Python's TypeError.
        let e = p.call("add", vec![int(1)], vec![]).await.unwrap_err();
        assert_eq!(e.remote().map(|r| r.type_name.as_str()), Some("TypeError"));
    }
}

#[tokio::test]
async fn metadata_oneway_attributes_and_unknown_methods() {
    let Some(python) = python_or_skip("metadata_oneway_attributes_and_unknown_methods") else {
        return;
    };
    let daemon = Daemon::start(&python, &["0"]);
    for codec in SERIALIZERS {
        let p = proxy(&daemon.uri, codec);
        let meta = p.metadata().await.unwrap();
        assert_eq!(
            meta.methods,
            ["add", "describe", "echo", "fail", "fire", "fired", "slow"],
            "{codec}"
        );
        assert_eq!(meta.oneway, ["fire"], "{codec}");
        assert_eq!(meta.attrs, ["value"], "{codec}");

        // Oneway: no reply is awaited; the daemon runs it anyway.
        let before = match norm(p.call("fired", vec![], vec![]).await.unwrap()) {
            Value::List(l) => l.len(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            p.call("fire", vec![int(5)], vec![]).await.unwrap(),
            Value::Null
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let fired = norm(p.call("fired", vec![], vec![]).await.unwrap());
            if let Value::List(l) = &fired {
                if l.len() == before + 1 {
                    assert_eq!(l[before], int(5));
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{codec}: oneway never ran: {fired:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // Remote attributes (Python properties).
        p.set_attr("value", int(11)).await.unwrap();
        assert_eq!(p.get_attr("value").await.unwrap(), int(11), "{codec}");
        p.set_attr("value", int(7)).await.unwrap();
        assert_eq!(p.get_attr("value").await.unwrap(), int(7), "{codec}");

        // Unknown names fail locally, naming what exists.
        let e = p.call("nope", vec![], vec![]).await.unwrap_err();
        match &e {
            Error::NoSuchMethod { method, exposed } => {
                assert_eq!(method, "nope");
                assert!(exposed.iter().any(|m| m == "add"), "{exposed:?}");
            }
            other => panic!("{codec}: {other:?}"),
        }
        assert!(e.to_string().contains("no such method `nope`"), "{e}");
        assert!(matches!(
            p.get_attr("echo").await,
            Err(Error::NoSuchMethod { .. })
        ));
        assert_eq!(p.call("echo", vec![int(1)], vec![]).await.unwrap(), int(1));
    }

    // An unknown object id: the daemon's CONNECTFAIL reason.
    let other = daemon.uri.replace("test.calc", "no.such.object");
    let e = PyroProxy::new(&other)
        .unwrap()
        .timeout(Duration::from_secs(20))
        .call("echo", vec![], vec![])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("unknown object"), "{e}");
}

#[tokio::test]
async fn a_killed_daemon_gives_a_retryable_transport_error_then_the_proxy_reconnects() {
    let Some(python) = python_or_skip(
        "a_killed_daemon_gives_a_retryable_transport_error_then_the_proxy_reconnects",
    ) else {
        return;
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let port_arg = port.to_string();
    let mut daemon = Daemon::start(&python, &[&port_arg]);
    assert_eq!(daemon.uri, format!("PYRO:test.calc@127.0.0.1:{port}"));
    let p = proxy(&daemon.uri, CodecId::SERPENT);
    assert_eq!(p.call("echo", vec![int(1)], vec![]).await.unwrap(), int(1));

    daemon.kill();
    let e = p.call("echo", vec![int(2)], vec![]).await.unwrap_err();
    assert!(e.is_transport(), "{e:?}");
    assert!(e.is_retryable(), "{e:?}");
    assert!(e.to_string().contains(&daemon.uri), "{e}");
    // Nothing listens now: connecting fails the same way.
    let e = p.call("echo", vec![int(3)], vec![]).await.unwrap_err();
    assert!(e.is_transport() && e.is_retryable(), "{e:?}");

    let _daemon = Daemon::start(&python, &[&port_arg]);
    assert_eq!(p.call("echo", vec![int(4)], vec![]).await.unwrap(), int(4));
    assert_eq!(
        p.call("add", vec![int(2), int(3)], vec![]).await.unwrap(),
        int(5)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_take_turns_and_a_timeout_drops_the_connection() {
    let Some(python) =
        python_or_skip("concurrent_callers_take_turns_and_a_timeout_drops_the_connection")
    else {
        return;
    };
    let daemon = Daemon::start(&python, &["0"]);
    // Pyro5 allows one request at a time per connection: 8 tasks share one proxy.
    let p = Arc::new(proxy(&daemon.uri, CodecId::MSGPACK));
    let tasks: Vec<_> = (0..8_i128)
        .map(|t| {
            let p = p.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    let got = p.call("add", vec![int(t), int(i)], vec![]).await.unwrap();
                    assert_eq!(got, int(t + i));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }

    let quick = proxy(&daemon.uri, CodecId::SERPENT).timeout(Duration::from_millis(300));
    assert_eq!(
        quick
            .call("slow", vec![Value::Float(0.0)], vec![])
            .await
            .unwrap(),
        Value::Float(0.0)
    );
    let e = quick
        .call("slow", vec![Value::Float(3.0)], vec![])
        .await
        .unwrap_err();
    assert!(e.is_timeout() && e.is_retryable(), "{e:?}");
    // The late answer is not read as the next call's: a new connection serves it.
    assert_eq!(
        quick
            .call("echo", vec![text("after")], vec![])
            .await
            .unwrap(),
        text("after")
    );
}

#[tokio::test]
async fn unix_socket_uris() {
    let Some(python) = python_or_skip("unix_socket_uris") else {
        return;
    };
    let path = std::env::temp_dir().join(format!("wirecall-pyro-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let daemon = Daemon::start(&python, &["unix", path.to_str().unwrap()]);
    assert!(daemon.uri.contains("@./u:"), "{}", daemon.uri);
    let p = proxy(&daemon.uri, CodecId::MSGPACK);
    assert_eq!(
        p.call("add", vec![int(2), int(3)], vec![]).await.unwrap(),
        int(5)
    );
    drop(daemon);
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn bad_uris_and_serializers_are_configuration_errors() {
    for uri in ["PYRONAME:my.name", "PYRO:obj@localhost", "http://x"] {
        let e = PyroProxy::new(uri).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{uri}: {e:?}");
    }
    let e = PyroProxy::new("PYRO:obj@127.0.0.1:1")
        .unwrap()
        .serializer(CodecId::CBOR)
        .unwrap_err();
    assert!(
        e.to_string().contains("serpent, json, msgpack or marshal"),
        "{e}"
    );
}
