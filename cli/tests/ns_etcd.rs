//! `wirecall ns serve --store etcd://...` (the CLI built with the `etcd` feature): name
//! servers are stateless in front of etcd, so two of them answer the same names; the admin
//! commands also work on etcd directly (`--ns etcd://...`); etcd gone gives a clear error.
//!
//! Starts its own single-member etcd on free loopback ports in a temp dir. When the `etcd`
//! binary is missing the test skips, unless `WIRECALL_REQUIRE_ETCD=1`: then it fails.
#![cfg(feature = "etcd")]

mod common;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{run_bounded, Server, BIN};

const LIMIT: Duration = Duration::from_secs(30);

/// A process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A single-member etcd and its data dir; `None` (skip) when etcd is missing and not required.
fn start_etcd() -> Option<(Killed, String, tempfile::TempDir)> {
    let found = Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("WIRECALL_REQUIRE_ETCD").as_deref() == Ok("1") {
            panic!(
                "WIRECALL_REQUIRE_ETCD=1 but the `etcd` binary is not on PATH: run \
                 scripts/system-deps.sh (installs Debian's etcd-server) or install etcd"
            );
        }
        eprintln!("skipped: the `etcd` binary is not on PATH");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
    let child = Command::new("etcd")
        .args(["--name", "cli"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("cli={peer_url}")])
        .args(["--logger", "zap", "--log-level", "warn"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting etcd");
    let etcd = Killed(child);
    let endpoint = format!("127.0.0.1:{client}");
    // healthy: `wirecall ns ping` straight on etcd answers (bounded)
    let deadline = Instant::now() + LIMIT;
    loop {
        let port_open = TcpStream::connect(&endpoint).is_ok();
        if port_open
            && ns(&format!("etcd://{endpoint}"), &["ping"])
                .status
                .success()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "etcd did not answer within {LIMIT:?}: {}",
            std::fs::read_to_string(dir.path().join("etcd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some((etcd, endpoint, dir))
}

/// `wirecall ns serve --store STORE`; its address.
fn serve(store: &str) -> (Killed, String) {
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
    let stdout = child.stdout.take().unwrap();
    let child = Killed(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let r = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        tx.send(r).ok();
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(l)) if l.starts_with("tcp://") => (child, l.trim().to_string()),
        other => panic!("wirecall ns serve --store {store} printed no address line: {other:?}"),
    }
}

/// `wirecall ARGS` with `WIRECALL_NS=ns`, killed after [`LIMIT`].
fn with_ns_env(ns: &str, args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("WIRECALL_NS", ns)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wirecall");
    let deadline = Instant::now() + LIMIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("wirecall {args:?} did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// `wirecall ns ARGS --ns URL`.
fn ns(url: &str, args: &[&str]) -> Output {
    let mut all = vec!["ns"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--ns", url]);
    run_bounded(&all, LIMIT)
}

fn ns_ok(url: &str, args: &[&str]) -> String {
    let o = ns(url, args);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "ns {args:?} --ns {url}: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

#[test]
fn name_servers_on_etcd_share_their_names() {
    let Some((etcd, endpoint, _dir)) = start_etcd() else {
        return;
    };
    let store = format!("etcd://{endpoint}");
    let (_a, url_a) = serve(&store);
    let (_b, url_b) = serve(&store);

    let out = ns_ok(
        &url_a,
        &[
            "register",
            "example.greeting",
            "demo:1@tcp://127.0.0.1:4000",
            "--meta",
            "a,b",
        ],
    );
    assert!(out.contains("registered example.greeting"), "{out}");
    // the other name server, and etcd itself, answer the same
    for url in [&url_b, &store] {
        let out = ns_ok(url, &["lookup", "example.greeting"]);
        assert!(
            out.contains("example.greeting --> demo:1@tcp://127.0.0.1:4000"),
            "{url}: {out}"
        );
        assert!(out.contains("a, b"), "{url}: {out}");
    }
    let out = ns_ok(&url_b, &["list", "--meta-all", "a,b"]);
    assert!(out.contains("example.greeting"), "{out}");
    ns_ok(&url_b, &["meta", "example.greeting", "c"]);
    let out = ns_ok(&url_a, &["lookup", "example.greeting"]);
    assert!(out.contains("metadata: c"), "{out}");
    ns_ok(&url_b, &["remove", "example.greeting"]);
    let o = ns(&url_a, &["lookup", "example.greeting"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unknown name: example.greeting"), "{err}");

    // straight on etcd from this short-lived process: without a lease the name stays
    // after the command exits
    let unleased = format!("{store}?lease=none");
    ns_ok(
        &unleased,
        &["register", "kept.name", "tcp://127.0.0.1:4002"],
    );
    std::thread::sleep(Duration::from_secs(1));
    let out = ns_ok(&url_b, &["lookup", "kept.name"]);
    assert!(out.contains("tcp://127.0.0.1:4002"), "{out}");

    // `wirecall call name:...` with WIRECALL_NS=etcd://... resolves straight through etcd
    let server = Server::start(&[]);
    let uri = format!("demo:1@{}", server.url());
    ns_ok(&url_a, &["register", "example.demo", &uri]);
    let o = with_ns_env(&store, &["call", "name:example.demo", "demo_echo", "42"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "42");

    // etcd gone: a clear error naming it, not a hang
    drop(etcd);
    let start = Instant::now();
    let o = ns(&url_a, &["lookup", "anything"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.contains("etcd") && err.contains(&endpoint), "{err}");
    assert!(start.elapsed() < LIMIT, "{:?}", start.elapsed());
}
