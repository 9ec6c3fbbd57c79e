//! Runs every conformance suite over the public vectors (`../shared/vectors`, or
//! `$WIRECALL_VECTORS`) and wirecall's golden vectors; each must have 0 failures.

use wirecall_conformance::{default_vectors_dir, interop, suites, SuiteReport};

fn assert_clean(report: SuiteReport) {
    println!("{}", report.summary());
    for note in &report.notes {
        // A missing Python reference must be seen, not only in captured output.
        if let Some(why) = note.strip_prefix(interop::PYTHON_MISSING) {
            interop::python_missing(&report.suite, why.trim_start_matches(": "));
        }
        println!("  note {note}");
    }
    for skip in &report.skips {
        println!("  skip {skip}");
    }
    for failure in report.failures.iter().take(40) {
        println!("  FAIL {failure}");
    }
    assert!(report.passed > 0, "{}: nothing passed", report.suite);
    assert_eq!(report.failed, 0, "{}", report.summary());
}

fn run(name: &str) {
    let dir = default_vectors_dir();
    let report = suites::run_suite(name, &dir).unwrap_or_else(|| panic!("unknown suite {name}"));
    assert_clean(report);
}

#[test]
fn json_test_suite() {
    run("json-test-suite");
}

#[test]
fn json_nativejson_benchmark() {
    let report = suites::run_suite("json-nativejson-benchmark", &default_vectors_dir())
        .expect("a known suite");
    // roundtrip27's `e+308` is a listed deviation, not a skip.
    assert_eq!(
        (report.skipped, report.deviated),
        (0, 1),
        "{}",
        report.summary()
    );
    assert_clean(report);
}

#[test]
fn msgpack_test_suite() {
    let report = suites::run_suite("msgpack-test-suite", &default_vectors_dir())
        .expect("msgpack-test-suite is a known suite");
    // Every case, ext and timestamp groups included, is checked: nothing may be skipped.
    assert_eq!(report.skipped, 0, "{}", report.summary());
    assert_clean(report);
}

#[test]
fn cbor_wg_test_vectors() {
    let report =
        suites::run_suite("cbor-wg-test-vectors", &default_vectors_dir()).expect("a known suite");
    let python_missing = report
        .notes
        .iter()
        .any(|n| n.contains(interop::PYTHON_MISSING));
    if !python_missing {
        // Every case is decided against cbor2's value: decoded, refused as Unsupported, or a
        // listed deviation (signalling NaNs, `undefined`). Nothing is skipped.
        assert_eq!(report.skipped, 0, "{:#?}", report.skips);
        assert!(report.deviated > 0, "{}", report.summary());
    }
    assert_clean(report);
}

#[test]
fn serpent_vectors() {
    let report = suites::run_suite("serpent", &default_vectors_dir()).expect("a known suite");
    // The only skips are strings a Rust String cannot hold.
    for skip in &report.skips {
        assert!(skip.contains("surrogate"), "undecidable skips only: {skip}");
    }
    assert_clean(report);
}

#[test]
fn bincode_vectors() {
    run("bincode");
}

#[test]
fn golden_vectors() {
    run("golden");
}

#[test]
fn unknown_suite_is_none() {
    assert!(suites::run_suite("no-such-suite", &default_vectors_dir()).is_none());
}

#[test]
fn run_cbor_directly_on_a_small_stack() {
    // The public runner brings its own large stack, so calling it from a default test thread
    // (2 MiB) must not overflow on the ~500-level nesting of cbor-wg `good`.
    let report = suites::run_cbor(&default_vectors_dir());
    // (Without cbor2 the decode checks are skipped, not passed.)
    assert!(
        report.passed + report.skipped > 1000,
        "{}",
        report.summary()
    );
    assert_eq!(report.failed, 0, "{}", report.summary());
}
