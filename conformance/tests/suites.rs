//! Runs every conformance suite over the public vectors (`../shared/vectors`, or
//! `$WIRECALL_VECTORS`) and wirecall's golden vectors; each must have 0 failures.

use wirecall_conformance::{default_vectors_dir, suites, SuiteReport};

fn assert_clean(report: SuiteReport) {
    println!("{}", report.summary());
    for note in &report.notes {
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
    run("json-nativejson-benchmark");
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
    run("cbor-wg-test-vectors");
}

#[test]
fn serpent_vectors() {
    run("serpent");
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
    assert!(report.passed > 1000, "{}", report.summary());
    assert_eq!(report.failed, 0, "{}", report.summary());
}
