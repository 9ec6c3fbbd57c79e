//! `wirecall ns serve` and the `wirecall ns` administration commands, run as processes on
//! loopback: every command, the store file kept across a restart, `WIRECALL_NS`, clear
//! errors, and `wirecall call name:...` resolving through the name server.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{run_bounded, Server, BIN};

const LIMIT: Duration = Duration::from_secs(30);

/// A running `wirecall ns serve`; killed on drop.
struct NameServer {
    child: Child,
    url: String,
}

impl NameServer {
    fn start(store: &str) -> NameServer {
        let mut child = Command::new(BIN)
            .args([
                "ns",
                "serve",
                "--listen",
                "tcp://127.0.0.1:0",
                "--store",
                store,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start wirecall ns serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let r = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            tx.send(r).ok();
        });
        let url = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(l)) if l.starts_with("tcp://") => l.trim().to_string(),
            other => {
                child.kill().ok();
                child.wait().ok();
                panic!("wirecall ns serve printed no address line: {other:?}");
            }
        };
        NameServer { child, url }
    }
}

impl Drop for NameServer {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `wirecall ns ARGS --ns URL`, which must succeed; returns stdout.
fn ns_ok(url: &str, args: &[&str]) -> String {
    let mut all = vec!["ns"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--ns", url]);
    let o = run_bounded(&all, LIMIT);
    assert!(o.status.success(), "{all:?}: {}{}", stdout(&o), stderr(&o));
    stdout(&o)
}

/// `wirecall ns ARGS --ns URL`, which must fail; returns stderr.
fn ns_fails(url: &str, args: &[&str]) -> String {
    let mut all = vec!["ns"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--ns", url]);
    let o = run_bounded(&all, LIMIT);
    assert!(!o.status.success(), "{all:?} succeeded: {}", stdout(&o));
    stderr(&o)
}

/// Runs `wirecall ARGS` with `WIRECALL_NS=ns`, bounded.
fn with_env(ns: &str, args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("WIRECALL_NS", ns)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wirecall");
    let deadline = Instant::now() + LIMIT;
    while child.try_wait().expect("poll").is_none() {
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("wirecall {args:?} did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn ns_serve_and_every_admin_command() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("names.redb");
    let store = store.to_str().unwrap();
    let ns = NameServer::start(store);
    let url = ns.url.clone();

    let out = ns_ok(&url, &["ping"]);
    assert_eq!(out.trim(), "name server ok: 1 registrations");
    let out = ns_ok(
        &url,
        &[
            "register",
            "example.greeting",
            "demo:1@tcp://127.0.0.1:4000",
            "--meta",
            "a,b",
        ],
    );
    assert_eq!(
        out.trim(),
        "registered example.greeting --> demo:1@tcp://127.0.0.1:4000"
    );
    ns_ok(
        &url,
        &[
            "register",
            "other.thing",
            "tcp://127.0.0.1:4001",
            "--meta",
            "b",
        ],
    );
    let out = ns_ok(&url, &["lookup", "example.greeting"]);
    assert_eq!(
        out,
        "example.greeting --> demo:1@tcp://127.0.0.1:4000\n    metadata: a, b\n"
    );
    // list: all (the name server's own entry too), by prefix, regex and tags.
    let out = ns_ok(&url, &["list"]);
    assert!(
        out.starts_with("Pyro.NameServer --> PYRO:Pyro.NameServer@127.0.0.1:"),
        "{out}"
    );
    assert!(
        out.contains("example.greeting --> demo:1@tcp://127.0.0.1:4000"),
        "{out}"
    );
    assert!(
        out.contains("other.thing --> tcp://127.0.0.1:4001"),
        "{out}"
    );
    let out = ns_ok(&url, &["list", "example."]);
    assert_eq!(
        out.lines().next(),
        Some("example.greeting --> demo:1@tcp://127.0.0.1:4000")
    );
    assert!(!out.contains("other.thing"), "{out}");
    let out = ns_ok(&url, &["list", "--regex", "oth.*"]);
    assert!(
        out.starts_with("other.thing") && !out.contains("example"),
        "{out}"
    );
    let out = ns_ok(&url, &["list", "--meta-all", "a,b"]);
    assert!(
        out.starts_with("example.greeting") && !out.contains("other"),
        "{out}"
    );
    let out = ns_ok(&url, &["list", "--meta-any", "b,zzz"]);
    assert!(
        out.contains("example.greeting") && out.contains("other.thing"),
        "{out}"
    );
    // Errors say what is wrong.
    let err = ns_fails(
        &url,
        &[
            "register",
            "example.greeting",
            "tcp://127.0.0.1:9",
            "--safe",
        ],
    );
    assert!(
        err.contains("name already registered: example.greeting"),
        "{err}"
    );
    let err = ns_fails(&url, &["lookup", "nope"]);
    assert!(err.contains("unknown name: nope"), "{err}");
    let err = ns_fails(&url, &["list", "--regex", "ex("]);
    assert!(err.contains("invalid regex"), "{err}");
    let err = ns_fails(&url, &["register", "bad\tname", "tcp://127.0.0.1:9"]);
    assert!(err.contains("invalid name"), "{err}");
    // meta replaces the tags.
    ns_ok(&url, &["meta", "example.greeting", "c"]);
    let out = ns_ok(&url, &["lookup", "example.greeting"]);
    assert!(out.ends_with("    metadata: c\n"), "{out}");
    // remove: by name, prefix, regex; never the name server itself.
    assert_eq!(
        ns_ok(&url, &["remove", "--prefix", "Pyro."]).trim(),
        "removed 0"
    );
    assert_eq!(ns_ok(&url, &["remove", "other.thing"]).trim(), "removed 1");
    assert_eq!(
        ns_ok(&url, &["remove", "--regex", "nothing.*"]).trim(),
        "removed 0"
    );

    // The store file keeps the registrations across a restart.
    drop(ns);
    let ns = NameServer::start(store);
    let out = ns_ok(&ns.url, &["lookup", "example.greeting"]);
    assert!(
        out.starts_with("example.greeting --> demo:1@tcp://127.0.0.1:4000"),
        "{out}"
    );
    // WIRECALL_NS instead of --ns.
    let o = with_env(&ns.url, &["ns", "ping"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "name server ok: 2 registrations");
}

#[test]
fn ns_commands_without_a_name_server() {
    let o = run_bounded(&["ns", "ping"], LIMIT);
    if std::env::var("WIRECALL_NS").is_err() {
        assert!(!o.status.success());
        assert!(stderr(&o).contains("--ns"), "{}", stderr(&o));
    }
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = ns_fails(&format!("tcp://127.0.0.1:{port}"), &["lookup", "x"]);
    assert!(err.contains("cannot be reached"), "{err}");
    // A store that cannot be opened (a directory): ns serve says so and exits.
    let dir = tempfile::tempdir().unwrap();
    let o = run_bounded(
        &[
            "ns",
            "serve",
            "--listen",
            "tcp://127.0.0.1:0",
            "--store",
            dir.path().to_str().unwrap(),
        ],
        LIMIT,
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot open the name store"),
        "{}",
        stderr(&o)
    );
    // A store file worked on directly.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("direct.redb");
    let file = file.to_str().unwrap();
    ns_ok(file, &["register", "local.name", "tcp://127.0.0.1:1"]);
    let out = ns_ok(file, &["list"]);
    assert_eq!(out, "local.name --> tcp://127.0.0.1:1\n");
}

#[test]
fn wirecall_call_resolves_names_through_the_name_server() {
    let ns = NameServer::start("mem");
    let server = Server::start(&[]);
    let uri = format!("demo:1@{}", server.url());
    ns_ok(
        &ns.url,
        &["register", "example.demo", &uri, "--meta", "kind.demo"],
    );
    for target in ["name:example.demo", "meta:kind.demo"] {
        let o = with_env(&ns.url, &["call", target, "demo_echo", "42"]);
        assert!(o.status.success(), "{target}: {}", stderr(&o));
        assert_eq!(stdout(&o).trim(), "42", "{target}");
    }
    let o = with_env(&ns.url, &["call", "name:no.such", "demo_echo", "1"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown name: no.such"),
        "{}",
        stderr(&o)
    );
}
