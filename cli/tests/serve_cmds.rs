//! Runs the built `wirecall` binary: `serve` on port 0 (and a unix socket in a temp dir),
//! then `call` and `meta` against it. Every server is killed when its test ends.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod common;

use common::Server;

/// Runs `wirecall ARGS`, killing it after 30 s.
fn wirecall(args: &[&str]) -> Output {
    common::run_bounded(args, Duration::from_secs(30))
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf-8 stderr")
}

/// Success with exactly `expected` (plus a newline) on stdout.
fn assert_prints(o: &Output, expected: &str) {
    assert!(o.status.success(), "failed: {}", stderr(o));
    assert_eq!(stdout(o).trim_end(), expected, "stderr: {}", stderr(o));
}

/// A failure: non-zero exit, one line on stderr naming the command, nothing on stdout.
fn assert_one_line_error(o: &Output, needles: &[&str]) {
    assert!(!o.status.success(), "expected a failure: {}", stdout(o));
    let err = stderr(o);
    assert_eq!(err.lines().count(), 1, "stderr: {err:?}");
    assert!(err.starts_with("wirecall call: ") || err.starts_with("wirecall meta: "));
    for n in needles {
        assert!(err.contains(n), "stderr {err:?} lacks {n:?}");
    }
    assert!(o.stdout.is_empty(), "stdout on error: {:?}", stdout(o));
}

#[test]
fn echo_and_add_with_two_codecs() {
    let s = Server::start(&["--listen", "tcp://127.0.0.1:0"]);
    assert!(s.url().starts_with("tcp://127.0.0.1:"), "{:?}", s.urls);
    for codec in ["json", "msgpack"] {
        let o = wirecall(&[
            "call",
            s.url(),
            "echo",
            r#"{"a": [1, 2.5, null, "é"], "b": {"$bytes": "00ff"}}"#,
            "--codec",
            codec,
        ]);
        // JSON has no bytes: the json codec carries them as a list of numbers.
        let expected = if codec == "json" {
            r#"{"a":[1,2.5,null,"é"],"b":[0,255]}"#
        } else {
            r#"{"a":[1,2.5,null,"é"],"b":{"$bytes":"00ff"}}"#
        };
        assert_prints(&o, expected);
        let o = wirecall(&["call", s.url(), "demo_add", "-2", "44", "--codec", codec]);
        assert_prints(&o, "42");
    }
    // Keyword arguments, and the short name resolved through the metadata.
    let o = wirecall(&["call", s.url(), "add", "--kwarg", "b=40", "--kwarg", "a=2"]);
    assert_prints(&o, "42");
}

/// Runs `wirecall ARGS` with `input` on its stdin, killing it after 30 s.
fn wirecall_with_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(common::BIN)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start wirecall");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_string();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().expect("poll wirecall").is_some() {
            let _ = writer.join();
            return child.wait_with_output().expect("wirecall output");
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("wirecall {args:?} did not finish");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A method that takes an argument stream gets stdin, one value per line, as it is read;
/// its answer (one value, or items as they come back) is printed as for other calls; a line
/// that is not a value ends the stream with an error naming it.
#[test]
fn argument_streams_from_stdin() {
    let s = Server::start(&["--listen", "tcp://127.0.0.1:0"]);
    let meta = wirecall(&["meta", s.url()]);
    assert!(
        stdout(&meta).contains("method demo_sum() takes-stream"),
        "{}",
        stdout(&meta)
    );
    assert!(
        stdout(&meta).contains("method demo_shout() takes-stream stream"),
        "{}",
        stdout(&meta)
    );
    let numbers: String = (1..=1000).map(|n| format!("{n}\n")).collect();
    for codec in ["json", "msgpack", "cbor"] {
        let o = wirecall_with_stdin(&["call", s.url(), "sum", "--codec", codec], &numbers);
        assert_prints(&o, "500500");
        let o = wirecall_with_stdin(
            &["call", s.url(), "shout", "--codec", codec],
            "\"hello\"\n\n\"wirecall\"\n",
        );
        assert_prints(&o, "\"HELLO\"\n\"WIRECALL\"");
    }
    // Nothing on stdin: an empty stream.
    let o = wirecall_with_stdin(&["call", s.url(), "sum"], "");
    assert_prints(&o, "0");
    let o = wirecall_with_stdin(&["call", s.url(), "sum"], "1\n2\nthree\n4\n");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("`three` is not a value"),
        "{}",
        stderr(&o)
    );
}

/// A streaming method's items are printed one per line as they arrive (the first before
/// the last is produced); a method that calls back into the caller reports progress on
/// stderr through the provider `wirecall call` exposes; a bulk echo returns its bytes.
#[test]
fn streams_callbacks_and_bulk_from_the_shell() {
    let s = Server::start(&["--listen", "tcp://127.0.0.1:0"]);
    let meta = wirecall(&["meta", s.url()]);
    assert!(
        stdout(&meta).contains("method demo_ticks(n, interval_ms) stream"),
        "{}",
        stdout(&meta)
    );
    for codec in ["json", "msgpack", "cbor"] {
        let o = wirecall(&["call", s.url(), "ticks", "4", "1", "--codec", codec]);
        assert_prints(&o, "0\n1\n2\n3");
        let o = wirecall(&["call", s.url(), "work", "3", "--codec", codec]);
        assert_prints(&o, "3");
        assert_eq!(
            stderr(&o).lines().collect::<Vec<_>>(),
            ["progress: 1/3", "progress: 2/3", "progress: 3/3"],
            "{codec}"
        );
        let o = wirecall(&[
            "call",
            s.url(),
            "echo_bulk",
            r#"{"$bytes": "00ff68656c6c6f"}"#,
            "--codec",
            codec,
        ]);
        assert_prints(&o, r#"{"$bytes":"00ff68656c6c6f"}"#);
    }
    // Items are printed as they arrive: the first line is out while the call still runs
    // (the next item is produced 2 s after it).
    let mut child = std::process::Command::new(common::BIN)
        .args(["call", s.url(), "ticks", "2", "2000"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start wirecall");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        let _ = tx.send(line);
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    });
    let first = rx.recv_timeout(Duration::from_secs(20));
    let running = child.try_wait().expect("poll wirecall").is_none();
    let status = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = child.try_wait().expect("poll wirecall") {
                break st;
            }
            if Instant::now() > deadline {
                child.kill().ok();
                panic!("wirecall call ticks did not finish");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    assert_eq!(first.as_deref().map(str::trim_end), Ok("0"));
    assert!(
        running,
        "the first item was printed only when the call ended"
    );
    assert!(status.success());
}

#[test]
fn refused_codec_lists_the_accepted_ones() {
    let s = Server::start(&["--accept", "json,msgpack"]);
    let o = wirecall(&["call", s.url(), "echo", "1", "--codec", "cbor"]);
    assert_one_line_error(
        &o,
        &["refused codec cbor", "accepts: json, msgpack", "--codec"],
    );
    // The same server answers an accepted codec.
    let o = wirecall(&["call", s.url(), "echo", "1", "--codec", "msgpack"]);
    assert_prints(&o, "1");
}

#[test]
fn failing_and_unknown_methods_and_bad_arguments() {
    let s = Server::start(&[]);
    let o = wirecall(&["call", s.url(), "fail", r#""boom""#]);
    assert_one_line_error(&o, &["remote error", "DemoError", "demo failure: boom"]);

    let o = wirecall(&["call", s.url(), "nope"]);
    assert_one_line_error(&o, &["no such method `nope`", "demo_echo", "demo_add"]);

    let o = wirecall(&["call", s.url(), "add", "1"]);
    assert_one_line_error(&o, &["bad arguments"]);

    let o = wirecall(&["call", s.url(), "echo", "hi"]);
    assert_one_line_error(&o, &["argument 1 `hi`", "double quotes"]);

    let o = wirecall(&["call", s.url(), "echo", "1", "--codec", "bogus"]);
    assert_one_line_error(&o, &["unknown codec `bogus`", "msgpack"]);
}

#[test]
fn timeout_is_reported_and_bounded() {
    let s = Server::start(&[]);
    let t = Instant::now();
    let o = wirecall(&["call", s.url(), "sleep", "10000", "--timeout", "200"]);
    assert_one_line_error(&o, &["no answer within 200 ms", "--timeout"]);
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    // A fast call within its timeout succeeds.
    let o = wirecall(&["call", s.url(), "sleep", "1", "--timeout", "5000"]);
    assert_prints(&o, "1");
}

#[test]
fn oneway_counter_then_attribute_read() {
    let s = Server::start(&[]);
    let o = wirecall(&["call", s.url(), "count", "--get"]);
    assert_prints(&o, "0");
    for by in ["3", "4"] {
        let o = wirecall(&["call", s.url(), "bump", by]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(o.stdout.is_empty(), "oneway printed {:?}", stdout(&o));
        assert!(stderr(&o).contains("oneway"), "{}", stderr(&o));
    }
    let o = wirecall(&["call", s.url(), "count", "--get"]);
    assert_prints(&o, "7");
    let o = wirecall(&["call", s.url(), "count", "--set", "100"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = wirecall(&["call", s.url(), "count", "--get", "--codec", "cbor"]);
    assert_prints(&o, "100");
}

#[test]
fn meta_prints_providers_methods_attributes_and_codecs() {
    let s = Server::start(&["--accept", "json,msgpack"]);
    let o = wirecall(&["meta", s.url()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for needle in [
        "accepts: json, msgpack",
        "provider 1: demo",
        "method demo_echo(value)",
        "method demo_add(a, b)",
        "method demo_bump(by) oneway",
        "method demo_fail(message)",
        "attribute count (read/write)",
    ] {
        assert!(out.contains(needle), "{out} lacks {needle:?}");
    }
    let o = wirecall(&["meta", s.url(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("meta --json");
    assert_eq!(doc["accepted"], serde_json::json!(["json", "msgpack"]));
    let demo = doc["providers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["provider_id"] == 1))
        .expect("provider 1 in the JSON metadata");
    assert_eq!(demo["service"], "demo");
}

#[test]
fn unix_socket_listener() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("demo.sock");
    let unix = format!("unix://{}", path.display());
    let s = Server::start(&["--listen", "tcp://127.0.0.1:0", "--listen", &unix]);
    assert_eq!(s.urls.len(), 2, "{:?}", s.urls);
    assert_eq!(s.urls[1], unix);
    let o = wirecall(&["call", &s.urls[1], "add", "20", "22"]);
    assert_prints(&o, "42");
    let o = wirecall(&["call", s.url(), "add", "1", "1"]);
    assert_prints(&o, "2");
}

#[test]
fn unreachable_server_is_a_one_line_error() {
    // Bind and drop a listener so the port is very likely closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let o = wirecall(&["call", &url, "echo", "1"]);
    assert_one_line_error(&o, &[&url]);
}

/// Waits up to 10 s for the server process to exit; returns its status.
fn wait_exit(s: &mut Server) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = s.child.try_wait().expect("poll serve") {
            return st;
        }
        assert!(Instant::now() < deadline, "wirecall serve did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn shutdown(url: &str, token: Option<&str>) -> Result<(), wirecall::Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let proxy = wirecall::Proxy::new(url)?.timeout(Duration::from_secs(10));
        proxy.shutdown_server(token).await
    })
}

#[test]
fn remote_shutdown_with_token_stops_the_server() {
    let mut s = Server::start(&["--shutdown-token", "s3cret"]);
    // A wrong token is refused and the server keeps serving.
    let e = shutdown(s.url(), Some("wrong")).unwrap_err();
    assert!(
        matches!(e, wirecall::Error::PermissionDenied { .. }),
        "{e:?}"
    );
    let o = wirecall(&["call", s.url(), "add", "1", "2"]);
    assert_prints(&o, "3");
    // The right token finalizes it: the process exits cleanly.
    shutdown(s.url(), Some("s3cret")).expect("remote shutdown");
    let st = wait_exit(&mut s);
    assert!(st.success(), "{st:?}");
}

#[test]
fn a_default_server_cannot_be_shut_down_remotely() {
    let mut s = Server::start(&[]);
    // What used to stop any `wirecall serve`: refused, one line, and the server goes on.
    let o = wirecall(&["call", s.url(), "shutdown", "--provider", "65535"]);
    assert_one_line_error(&o, &["permission denied", "remote shutdown is disabled"]);
    for token in [None, Some(""), Some("guess")] {
        let e = shutdown(s.url(), token).unwrap_err();
        assert!(
            matches!(e, wirecall::Error::PermissionDenied { .. }),
            "{e:?}"
        );
    }
    let o = wirecall(&["call", s.url(), "add", "1", "2"]);
    assert_prints(&o, "3");
    assert!(
        s.child.try_wait().expect("poll serve").is_none(),
        "the server exited"
    );
}

#[test]
fn an_empty_shutdown_token_is_refused_at_start() {
    let o = wirecall(&["serve", "--shutdown-token", " "]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("shutdown token"), "{err}");
    assert!(err.contains("empty"), "{err}");
}

#[cfg(unix)]
#[test]
fn sigterm_finalizes_and_removes_the_unix_socket() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("term.sock");
    let unix = format!("unix://{}", path.display());
    let mut s = Server::start(&["--listen", &unix]);
    assert!(path.exists(), "socket file missing while serving");
    let o = wirecall(&["call", &unix, "echo", "[true]"]);
    assert_prints(&o, "[true]");
    let kill = Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let st = wait_exit(&mut s);
    assert!(st.success(), "{st:?}");
    assert!(!path.exists(), "the unix socket file was left behind");
}
