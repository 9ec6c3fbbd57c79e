//! `wirecall serve` as a Python user meets it: the PYRO URIs it prints on stderr, called by an
//! unmodified `Pyro5.api.Proxy` with each of Pyro5's serializers, over tcp and a unix socket.
//! Needs the project's Python with Pyro5 (`WIRECALL_PYTHON`); skipped with a notice without
//! it, and failing instead under `WIRECALL_REQUIRE_PYTHON=1`, as the other interop tests.

#[allow(dead_code)] // this binary uses only `BIN`
mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::BIN;

fn python_or_skip() -> Option<String> {
    let python = std::env::var("WIRECALL_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".to_owned());
    match Command::new(&python).args(["-c", "import Pyro5"]).output() {
        Ok(o) if o.status.success() => return Some(python),
        other => {
            let why = format!("{python} cannot import Pyro5: {other:?}");
            if std::env::var("WIRECALL_REQUIRE_PYTHON").as_deref() == Ok("1") {
                panic!("WIRECALL_REQUIRE_PYTHON=1 but {why}");
            }
            let _ = writeln!(
                std::io::stderr(),
                "skipped: python reference missing ({why})"
            );
        }
    }
    None
}

const CLIENT: &str = r#"
import sys
import Pyro5.api, Pyro5.errors
Pyro5.config.COMMTIMEOUT = 10
for uri in sys.argv[1:]:
    for ser in ["serpent", "json", "msgpack", "marshal"]:
        with Pyro5.api.Proxy(uri) as p:
            p._pyroSerializer = ser
            p._pyroTimeout = 10
            assert p.echo("héllo") == "héllo", ser
            assert p.add(40, 2) == 42, ser
            try:
                p.fail("boom")
                raise SystemExit(f"{ser}: fail did not raise")
            except RuntimeError as e:
                assert "boom" in str(e), (ser, e)
            print(uri.split("@")[1].split(":")[0], ser, "ok")
"#;

/// Starts `wirecall serve` on tcp and a unix socket in `dir`; returns it and the PYRO URIs
/// it printed.
fn serve(dir: &std::path::Path) -> (std::process::Child, Vec<String>) {
    let sock = format!("unix://{}", dir.join("serve.sock").display());
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "tcp://127.0.0.1:0", "--listen", &sock])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wirecall serve");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("Python Pyro5 proxies:") {
                tx.send(line).ok();
            }
        }
    });
    let line = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(l) => l,
        Err(e) => {
            child.kill().ok();
            child.wait().ok();
            panic!("wirecall serve printed no PYRO URI: {e}");
        }
    };
    let uris: Vec<String> = line
        .split_whitespace()
        .filter(|w| w.starts_with("PYRO:"))
        .map(str::to_string)
        .collect();
    (child, uris)
}

const CONCURRENT: &str = r#"
import sys, threading, multiprocessing
import Pyro5.api
Pyro5.config.COMMTIMEOUT = 10

def work(uri, tag, n, errors):
    try:
        with Pyro5.api.Proxy(uri) as p:
            for i in range(n):
                s = f"{tag}-{i}"
                got = p.echo(s)
                if got != s:
                    errors.append(f"{s} got {got}")
    except Exception as e:
        errors.append(f"{tag}: {e!r}")

def process(uri, tag, q):
    errors = []
    threads = [threading.Thread(target=work, args=(uri, f"{tag}t{t}", 100, errors)) for t in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    q.put(errors)

if __name__ == "__main__":
    uri = sys.argv[1]
    q = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=process, args=(uri, f"p{i}", q)) for i in range(3)]
    for p in procs: p.start()
    errors = []
    threads = [threading.Thread(target=work, args=(uri, f"main{t}", 100, errors)) for t in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    for _ in procs: errors += q.get(timeout=30)
    for p in procs: p.join(timeout=30)
    if errors:
        raise SystemExit("\n".join(errors[:10]))
    print("calls", (8 + 3 * 4) * 100)
"#;

#[test]
fn many_python_clients_at_once_threads_and_processes() {
    let Some(python) = python_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (mut child, uris) = serve(dir.path());
    let script = dir.path().join("concurrent.py");
    std::fs::write(&script, CONCURRENT).unwrap();
    let out = Command::new(&python)
        .arg(&script)
        .arg(&uris[0])
        .output()
        .expect("run python");
    child.kill().ok();
    child.wait().ok();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 8 threads here and 4 in each of 3 processes, 100 checked echoes each.
    assert_eq!(stdout.trim(), "calls 2000", "{stdout}");
}

#[test]
fn python_pyro5_proxies_call_wirecall_serve_at_the_uris_it_prints() {
    let Some(python) = python_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (mut child, uris) = serve(dir.path());
    assert_eq!(uris.len(), 2, "{uris:?}");
    assert!(uris[0].starts_with("PYRO:demo@127.0.0.1:"), "{uris:?}");
    assert!(uris[1].starts_with("PYRO:demo@./u:"), "{uris:?}");
    let out = Command::new(&python)
        .arg("-c")
        .arg(CLIENT)
        .args(&uris)
        .output()
        .expect("run python");
    child.kill().ok();
    child.wait().ok();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Four serializers over each of the two URIs.
    assert_eq!(
        stdout.lines().filter(|l| l.ends_with(" ok")).count(),
        8,
        "{stdout}"
    );
}
