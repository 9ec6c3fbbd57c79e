//! Cross-checks wirecall's json, msgpack, cbor and serpent codecs against Python's reference
//! libraries (json, msgpack, cbor2, serpent) on 5,000 seeded values per codec, both ways.
//!
//! Python comes from `$WIRECALL_PYTHON` (set by scripts/test.sh), else `python3`. When the
//! modules are missing the test passes after writing `<test>: skipped: python reference
//! missing (...)` to stderr (directly, so `cargo test` shows it), unless
//! `WIRECALL_REQUIRE_PYTHON=1` (set by scripts/test.sh), in which case it fails.

use wirecall_codecs::CodecId;
use wirecall_conformance::interop;

const COUNT: usize = 5_000;
const SEED: u64 = 0x5eed_2026;

fn python_or_skip(codec: CodecId) -> Option<std::path::PathBuf> {
    let python = interop::python_command();
    match interop::python_available(&python) {
        Ok(()) => Some(python),
        Err(why) => {
            interop::python_missing(&format!("python interop {codec}"), &why);
            None
        }
    }
}

fn check(codec: CodecId) {
    let Some(python) = python_or_skip(codec) else {
        return;
    };
    let values = interop::generate(codec, SEED, COUNT);
    assert_eq!(values.len(), COUNT);
    let reports = interop::cross_check(&python, codec, &values);
    let mut failed = 0;
    for r in &reports {
        println!("{} ({})", r.summary(), r.notes.join(", "));
        for f in r.failures.iter().take(20) {
            println!("  FAIL {f}");
        }
        failed += r.failed;
        assert_eq!(
            r.passed + r.failed,
            COUNT,
            "{}: every value must be checked",
            r.suite
        );
    }
    assert_eq!(failed, 0, "{codec}: interop failures");
}

#[test]
fn json_with_python_json() {
    check(CodecId::JSON);
}

#[test]
fn msgpack_with_python_msgpack() {
    check(CodecId::MSGPACK);
}

#[test]
fn cbor_with_python_cbor2() {
    check(CodecId::CBOR);
}

#[test]
fn serpent_with_python_serpent() {
    check(CodecId::SERPENT);
}
