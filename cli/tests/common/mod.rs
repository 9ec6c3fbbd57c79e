//! Helpers shared by the CLI tests that run the built `wirecall` binary.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The built `wirecall` binary.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_wirecall");

/// Runs `wirecall ARGS` with no stdin, killing it (and failing the test) after `limit`.
pub(crate) fn run_bounded(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wirecall");
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("poll wirecall").is_some() {
            return child.wait_with_output().expect("wirecall output");
        }
        if Instant::now() > deadline {
            child.kill().ok();
            let out = child.wait_with_output().expect("wirecall output");
            panic!("wirecall {args:?} did not finish within {limit:?}: {out:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A running `wirecall serve`; killed on drop.
pub(crate) struct Server {
    /// The server process (tests may signal it or wait for it to exit).
    pub child: Child,
    /// The addresses the server printed on its first stdout line.
    pub urls: Vec<String>,
}

impl Server {
    /// Starts `wirecall serve EXTRA` and waits (at most 20 s) for its address line.
    pub(crate) fn start(extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start wirecall serve");
        let stdout = child.stdout.take().expect("serve stdout");
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
        let urls = line.split_whitespace().map(str::to_string).collect();
        Server { child, urls }
    }

    /// The first address.
    pub(crate) fn url(&self) -> &str {
        &self.urls[0]
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
