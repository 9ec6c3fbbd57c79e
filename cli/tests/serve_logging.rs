//! `wirecall serve` logs through tracing on stderr (RUST_LOG or --log, text or JSON lines)
//! and takes its shutdown token from WIRECALL_SHUTDOWN_TOKEN.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[allow(dead_code)] // this binary uses only `BIN` and `run_bounded`
mod common;

use common::BIN;

/// A `wirecall serve` with its stderr collected; killed on drop.
struct Logged {
    child: Child,
    url: String,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Logged {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Logged {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG")
            .env_remove("WIRECALL_SHUTDOWN_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start wirecall serve");
        let mut err = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let r = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            tx.send(r).ok();
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(l)) if !l.trim().is_empty() => l,
            other => {
                child.kill().ok();
                child.wait().ok();
                panic!("wirecall serve printed no address line: {other:?}");
            }
        };
        let url = line.split_whitespace().next().unwrap().to_string();
        Logged {
            child,
            url,
            stderr: Some(stderr),
        }
    }

    /// Stops the server and returns everything it wrote on stderr.
    fn stop(mut self) -> String {
        self.child.kill().ok();
        self.child.wait().ok();
        self.stderr.take().unwrap().join().unwrap()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn wirecall(args: &[&str]) -> std::process::Output {
    common::run_bounded(args, Duration::from_secs(30))
}

#[test]
fn json_log_lines_carry_refusals_with_their_reasons() {
    let s = Logged::start(
        &[
            "--accept",
            "json",
            "--log",
            "wirecall=debug",
            "--log-format",
            "json",
        ],
        &[],
    );
    // A refused codec, a refused remote shutdown, and a call that succeeds.
    let o = wirecall(&["call", &s.url, "echo", "1", "--codec", "cbor"]);
    assert!(!o.status.success());
    let o = wirecall(&["call", &s.url, "shutdown", "--provider", "65535"]);
    assert!(!o.status.success());
    let o = wirecall(&["call", &s.url, "add", "40", "2"]);
    assert!(o.status.success());
    let log = s.stop();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let find = |reason: &str| {
        lines
            .iter()
            .find(|v| v["fields"]["reason"] == reason)
            .unwrap_or_else(|| panic!("no `{reason}` event in:\n{log}"))
    };
    let codec = find("codec_refused");
    assert_eq!(codec["level"], "INFO");
    assert!(codec["fields"]["peer"]
        .as_str()
        .unwrap()
        .starts_with("tcp://127.0.0.1:"));
    let shutdown = find("disabled");
    assert_eq!(shutdown["level"], "WARN");
    assert!(shutdown["fields"]["message"]
        .as_str()
        .unwrap()
        .contains("remote shutdown refused"));
    // The successful call: an event in its call span, inside its connection span.
    let call = lines
        .iter()
        .find(|v| v["fields"]["message"] == "call finished" && v["span"]["method"] == "demo_add")
        .unwrap_or_else(|| panic!("no finished demo_add call in:\n{log}"));
    assert_eq!(call["fields"]["outcome"], "ok");
    assert!(call["fields"]["duration_us"].is_u64(), "{call}");
    let spans = call["spans"].as_array().unwrap();
    assert_eq!(spans[0]["name"], "connection");
    assert_eq!(spans[0]["dialect"], "native");
    assert_eq!(spans[0]["codec"], "json");
}

#[test]
fn text_logs_at_info_by_default_and_rust_log_filters() {
    // RUST_LOG=warn hides the INFO refusal, keeps the WARN one.
    let s = Logged::start(&["--accept", "json"], &[("RUST_LOG", "warn")]);
    wirecall(&["call", &s.url, "echo", "1", "--codec", "cbor"]);
    wirecall(&["call", &s.url, "shutdown", "--provider", "65535"]);
    let log = s.stop();
    assert!(log.contains("remote shutdown refused"), "{log}");
    assert!(!log.contains("codec_refused"), "{log}");
    assert!(!log.contains('{'), "text, not JSON: {log}");
    // The default (no RUST_LOG, no --log) is info.
    let s = Logged::start(&["--accept", "json"], &[]);
    wirecall(&["call", &s.url, "echo", "1", "--codec", "cbor"]);
    let log = s.stop();
    assert!(log.contains("codec_refused"), "{log}");
    // A bad filter is a one-line error naming where it came from.
    let o = wirecall(&["serve", "--log", "wirecall=loud"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--log `wirecall=loud`"), "{err}");
}

#[test]
fn the_shutdown_token_comes_from_the_environment() {
    let mut s = Logged::start(&[], &[("WIRECALL_SHUTDOWN_TOKEN", "from-env")]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = s.url.clone();
    let shutdown = |token: Option<&'static str>| {
        let url = url.clone();
        rt.block_on(async move {
            wirecall::Proxy::new(&url)?
                .timeout(Duration::from_secs(10))
                .shutdown_server(token)
                .await
        })
    };
    let e = shutdown(Some("wrong")).unwrap_err();
    assert!(
        matches!(e, wirecall::Error::PermissionDenied { .. }),
        "{e:?}"
    );
    shutdown(Some("from-env")).expect("remote shutdown with the token");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(std::time::Instant::now() < deadline, "serve did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let log = s.stop();
    assert!(log.contains("wrong shutdown token"), "{log}");
    assert!(log.contains("remote shutdown accepted"), "{log}");
}
