//! What the Pyro5 interop tests (`pyro5.rs`, `pyro5_client.rs`, `pyro5_proxy.rs`) share.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The Python with Pyro5 5.17, or `None` (after a notice) when it is missing and
/// `WIRECALL_REQUIRE_PYTHON` is not `1`.
pub(crate) fn python_or_skip(test: &str) -> Option<String> {
    let python = std::env::var("WIRECALL_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".to_owned());
    let check = "import Pyro5; assert Pyro5.__version__ == '5.17', Pyro5.__version__";
    let why = match Command::new(&python).args(["-c", check]).output() {
        Ok(o) if o.status.success() => return Some(python),
        Ok(o) => format!(
            "{python} has no Pyro5 5.17: {}",
            String::from_utf8_lossy(&o.stderr)
                .trim()
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(e) => format!("cannot run {python}: {e}"),
    };
    if std::env::var("WIRECALL_REQUIRE_PYTHON").as_deref() == Ok("1") {
        panic!("{test}: WIRECALL_REQUIRE_PYTHON=1 but the python reference is missing: {why}");
    }
    let notice = format!(
        "{test}: skipped: python reference missing ({why}); run `bash scripts/test.sh` to run it\n"
    );
    let _ = std::io::stderr().write_all(notice.as_bytes());
    None
}

/// A running `pyro_daemon.py`; killed (and reaped) when dropped.
#[allow(dead_code)]
pub(crate) struct Daemon {
    child: Child,
    pub(crate) uri: String,
}

#[allow(dead_code)]
impl Daemon {
    /// Starts the daemon with `args` (`PORT` or `unix PATH`) and waits up to 30 s for the
    /// URI it prints.
    pub(crate) fn start(python: &str, args: &[&str]) -> Daemon {
        Daemon::start_env(python, args, &[])
    }

    /// [`Daemon::start`] with environment variables (Pyro5 reads `PYRO_*` settings).
    pub(crate) fn start_env(python: &str, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/pyro_daemon.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(args)
            .envs(env.iter().copied())
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

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}
