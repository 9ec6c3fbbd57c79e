//! What the Pyro5 interop tests (`pyro5.rs`, `pyro5_client.rs`) share.

use std::io::Write;
use std::process::Command;

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
