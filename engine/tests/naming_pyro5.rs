//! The wirecall name server and Python Pyro5, both ways, with the real Pyro5 5.17:
//! `Pyro5.api.locate_ns(host, port)` finds the wirecall name server and its
//! register/lookup/list/yplookup/remove/set_metadata work in each serializer; Python
//! `PYRONAME:` and `PYROMETA:` proxies call a wirecall provider through it; and wirecall's
//! `PyroProxy::resolve` resolves `PYRONAME:` / `PYROMETA:` against a Python name server
//! (`python -m Pyro5.nameserver`, a child process killed on drop) and against wirecall's.
//!
//! Python is `$WIRECALL_PYTHON` (see `pyro_common`); without Pyro5 5.17 the tests skip,
//! unless `WIRECALL_REQUIRE_PYTHON=1`, which makes them fail.

mod pyro_common;
use pyro_common::python_or_skip;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wirecall::naming::{EmbeddedStore, NamingBackend, Registration, RemoteNaming};
use wirecall::{Engine, Error, Functions, PyroProxy, Value};

const LIMIT: Duration = Duration::from_secs(60);

fn port_of(address: &str) -> u16 {
    address.rsplit(':').next().unwrap().parse().unwrap()
}

/// A name server (in-memory store) on 127.0.0.1.
async fn name_server() -> Engine {
    let ns = Engine::server("tcp://127.0.0.1:0")
        .grace_period(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    ns.host_name_server(Arc::new(EmbeddedStore::in_memory().unwrap()))
        .await
        .unwrap();
    ns
}

/// A server whose provider answers Pyro5's `hello(name)` as the object `example.greeting`.
async fn greeter() -> Engine {
    let server = Engine::server("tcp://127.0.0.1:0")
        .grace_period(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    server
        .register_functions(
            Functions::new("greeting").sync_fn("hello", &["name"], |(n,): (String,)| {
                format!("wirecall: hello {n}")
            }),
            1,
        )
        .unwrap();
    server.set_object_id(1, "example.greeting").unwrap();
    server
}

/// Runs `naming_client.py NS_PORT SCENARIO SERIALIZER`; returns its stdout, failing the
/// test with its output when it fails or runs past the limit.
async fn run_client(python: &str, port: u16, scenario: &str, serializer: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/naming_client.py");
    let mut child = Command::new(python)
        .args([script, &port.to_string(), scenario, serializer])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    let what = format!("{scenario} with {serializer}");
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + LIMIT;
        while child.try_wait().expect("wait for python").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what}: the Python client ran past {LIMIT:?} and was killed");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locate_ns_finds_the_wirecall_name_server_in_each_serializer() {
    let Some(python) =
        python_or_skip("locate_ns_finds_the_wirecall_name_server_in_each_serializer")
    else {
        return;
    };
    for serializer in ["serpent", "json", "msgpack", "marshal"] {
        let ns = name_server().await;
        let out = run_client(&python, port_of(&ns.address()), "ns", serializer).await;
        assert!(out.contains("ok locate_ns found it; ping"), "{out}");
        assert!(out.contains("ok count at the end"), "{serializer}: {out}");
        assert_eq!(
            out.lines().count(),
            26,
            "{serializer}: every check ran:\n{out}"
        );
        ns.finalize().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_pyroname_proxies_call_wirecall_providers() {
    let Some(python) = python_or_skip("python_pyroname_proxies_call_wirecall_providers") else {
        return;
    };
    let ns = name_server().await;
    let server = greeter().await;
    let names = RemoteNaming::new(&ns.address()).unwrap();
    let uri = format!(
        "PYRO:example.greeting@127.0.0.1:{}",
        port_of(&server.address())
    );
    names
        .register(
            Registration::new("example.greeting", &uri).with_metadata(["kind.greeter"]),
            true,
        )
        .await
        .unwrap();
    let out = run_client(&python, port_of(&ns.address()), "call", "serpent").await;
    assert_eq!(out.lines().count(), 4, "{out}");
    // What Python registered is there for wirecall too.
    let r = names.lookup("from.python").await.unwrap();
    assert_eq!(r[0].uri, uri);
    assert_eq!(r[0].metadata, ["py".to_string()].into());
    server.finalize().await;
    ns.finalize().await;
}

/// `python -m Pyro5.nameserver` on 127.0.0.1; killed (and reaped) when dropped.
struct PythonNameServer {
    child: Child,
    port: u16,
}

impl PythonNameServer {
    async fn start(python: &str) -> PythonNameServer {
        // A free port: bound and released (the name server binds it right after).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(python)
            .args(["-m", "Pyro5.nameserver", "-n", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .arg("-x") // no broadcast responder
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the Python name server");
        let ns = PythonNameServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the Python name server did not listen on {port} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ns
    }
}

impl Drop for PythonNameServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Registers the greeter in the Pyro5 name server at `ns_port`, through its Pyro API.
async fn register_in(ns_port: u16, object_uri: &str) {
    let ns = PyroProxy::new(&format!("PYRO:Pyro.NameServer@127.0.0.1:{ns_port}"))
        .unwrap()
        .timeout(Duration::from_secs(10));
    ns.call(
        "register",
        vec![
            Value::Str("example.greeting".into()),
            Value::Str(object_uri.into()),
        ],
        vec![(
            "metadata".into(),
            Value::Set(vec![Value::Str("kind.greeter".into())]),
        )],
    )
    .await
    .unwrap();
}

async fn resolve_and_call(ns_port: u16) {
    for uri in [
        format!("PYRONAME:example.greeting@127.0.0.1:{ns_port}"),
        format!("PYROMETA:kind.greeter@127.0.0.1:{ns_port}"),
    ] {
        let p = PyroProxy::resolve(&uri).await.unwrap();
        let r: String = p.call_typed("hello", ("Rust",)).await.unwrap();
        assert_eq!(r, "wirecall: hello Rust", "{uri}");
    }
    let e = PyroProxy::resolve(&format!("PYRONAME:no.such.name@127.0.0.1:{ns_port}"))
        .await
        .unwrap_err();
    match e {
        Error::Naming {
            message,
            unavailable,
            ..
        } => {
            assert!(!unavailable);
            assert!(message.contains("unknown name"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyro_proxy_resolves_pyroname_against_python_and_wirecall_name_servers() {
    let Some(python) =
        python_or_skip("pyro_proxy_resolves_pyroname_against_python_and_wirecall_name_servers")
    else {
        return;
    };
    let server = greeter().await;
    let object = format!(
        "PYRO:example.greeting@127.0.0.1:{}",
        port_of(&server.address())
    );
    tokio::time::timeout(LIMIT, async {
        // Python's name server.
        let py = PythonNameServer::start(&python).await;
        register_in(py.port, &object).await;
        resolve_and_call(py.port).await;
        drop(py);
        // wirecall's, through the same Pyro API.
        let ns = name_server().await;
        let port = port_of(&ns.address());
        register_in(port, &object).await;
        resolve_and_call(port).await;
        ns.finalize().await;
        // A name server that is not there.
        let e = PyroProxy::resolve(&format!("PYRONAME:example.greeting@127.0.0.1:{port}"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::Naming {
                    unavailable: true,
                    ..
                }
            ),
            "{e:?}"
        );
    })
    .await
    .expect("timed out");
    server.finalize().await;
}
