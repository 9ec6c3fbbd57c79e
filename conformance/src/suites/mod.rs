//! Runners over the public vector suites. Each `run_<suite>(vectors_dir)` returns a
//! [`SuiteReport`]; `vectors_dir` is the folder holding the suite folders
//! (see [`crate::default_vectors_dir`]).

mod bincode;
mod cbor;
mod json;
mod msgpack;
mod serpent;

use std::path::{Path, PathBuf};

pub use self::bincode::{run_bincode, STANDARD_COLUMN};
pub use self::json::{run_json_test_suite, run_nativejson};
pub use self::msgpack::run_msgpack;
pub use self::serpent::run_serpent;

use crate::json::Json;
use crate::SuiteReport;

/// The names accepted by [`run_suite`], in the order [`run_all`] runs them.
pub const SUITES: [&str; 7] = [
    "json-test-suite",
    "json-nativejson-benchmark",
    "msgpack-test-suite",
    "cbor-wg-test-vectors",
    "serpent",
    "bincode",
    "golden",
];

/// Stack for the suite threads: the deepest vectors nest about 500 levels and every
/// decoder, comparison and printer on the way is recursive.
const SUITE_STACK: usize = 256 << 20;

/// Runs `f(vectors_dir)` on a thread with a [`SUITE_STACK`] stack; a panic becomes a failure.
fn on_big_stack(
    name: &str,
    vectors_dir: &Path,
    f: fn(&Path) -> Option<SuiteReport>,
) -> Option<SuiteReport> {
    let dir = vectors_dir.to_owned();
    let joined = std::thread::Builder::new()
        .name(format!("suite {name}"))
        .stack_size(SUITE_STACK)
        .spawn(move || f(&dir))
        .map_err(|e| e.to_string())
        .and_then(|h| h.join().map_err(|_| "the suite panicked".to_string()));
    match joined {
        Ok(report) => report,
        Err(e) => {
            let mut r = SuiteReport::new(name);
            r.fail(format!("{name}: {e}"));
            Some(r)
        }
    }
}

/// Runs the cbor-wg vectors (RFC 8949 Appendix A, good, bad, spike) from
/// `cbor-wg-test-vectors/derived/vectors.json`: each good test's `encoded` must decode to the
/// value of its `decoded_cbor`, round trips must reproduce `encoded` where the flag says so,
/// every `bad` test must be rejected; each skip carries its reason. Runs on its own thread
/// with a large stack (the deepest vectors nest about 500 levels).
pub fn run_cbor(vectors_dir: &Path) -> SuiteReport {
    on_big_stack("cbor-wg-test-vectors", vectors_dir, |d| {
        Some(cbor::run_cbor_here(d))
    })
    .unwrap_or_else(|| SuiteReport::new("cbor-wg-test-vectors"))
}

/// Runs one suite by name (see [`SUITES`]); `None` for an unknown name. The `golden` suite
/// reads this crate's own vectors and ignores `vectors_dir`. The suite runs on its own thread
/// with a large stack (deeply nested vectors); a panic inside it is reported as a failure.
pub fn run_suite(name: &str, vectors_dir: &Path) -> Option<SuiteReport> {
    if !SUITES.contains(&name) {
        return None;
    }
    let run: fn(&Path) -> Option<SuiteReport> = match name {
        "json-test-suite" => |d| Some(run_json_test_suite(d)),
        "json-nativejson-benchmark" => |d| Some(run_nativejson(d)),
        "msgpack-test-suite" => |d| Some(run_msgpack(d)),
        "cbor-wg-test-vectors" => |d| Some(cbor::run_cbor_here(d)),
        "serpent" => |d| Some(run_serpent(d)),
        "bincode" => |d| Some(run_bincode(d)),
        "golden" => |_| Some(crate::golden::run_golden(&crate::own_vectors_dir())),
        _ => return None,
    };
    on_big_stack(name, vectors_dir, run)
}

/// Runs every suite in [`SUITES`] order.
pub fn run_all(vectors_dir: &Path) -> Vec<SuiteReport> {
    SUITES
        .iter()
        .filter_map(|name| run_suite(name, vectors_dir))
        .collect()
}

/// Reads a file as bytes, with an error that names it.
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        format!(
            "cannot read {}: {e} (set WIRECALL_VECTORS to the folder holding the suites)",
            path.display()
        )
    })
}

/// Reads a UTF-8 text file, with an error that names it.
pub(crate) fn read_text(path: &Path) -> Result<String, String> {
    let bytes = read_bytes(path)?;
    String::from_utf8(bytes).map_err(|e| format!("{} is not UTF-8: {e}", path.display()))
}

/// Reads and parses a JSON file, with an error that names it.
pub(crate) fn read_json(path: &Path) -> Result<Json, String> {
    read_text(path)
        .and_then(|t| crate::json::parse(&t).map_err(|e| format!("{}: {e}", path.display())))
}

/// The list under `key` of a suite's JSON document, or an error naming the file.
pub(crate) fn json_list<'a>(doc: &'a Json, key: &str, path: &Path) -> Result<&'a [Json], String> {
    doc.get(key)
        .and_then(Json::as_array)
        .ok_or_else(|| format!("{}: no `{key}` list", path.display()))
}

/// The `*.ext` files of `dir` in name order, each as (file name, contents). A folder that
/// cannot be listed is recorded as one failure and gives `None`; a file that cannot be read
/// is recorded as a failure and left out.
pub(crate) fn vector_files(
    report: &mut SuiteReport,
    dir: &Path,
    ext: &str,
) -> Option<Vec<(String, Vec<u8>)>> {
    let files = match list_files(dir, ext) {
        Ok(files) => files,
        Err(e) => {
            report.fail(e);
            return None;
        }
    };
    let mut out = Vec::with_capacity(files.len());
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match read_bytes(&path) {
            Ok(bytes) => out.push((name, bytes)),
            Err(e) => report.fail(e),
        }
    }
    Some(out)
}

/// The files in `dir` ending in `.ext`, sorted by name.
pub(crate) fn list_files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "cannot list {}: {e} (set WIRECALL_VECTORS to the folder holding the suites)",
            dir.display()
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    Ok(files)
}
