//! Runs the cargo-fuzz `connection` target's logic (`fuzz/fuzz_targets/conn_logic.rs`: a
//! client and a server machine driven by operation sequences, invariants checked) on stable:
//! every input the fuzzer found a bug with (`tests/fuzz_inputs/connection/`), and random
//! inputs under proptest.
//!
//! To see what a failing input does: `WIRECALL_FUZZ_VERBOSE=1 cargo test -p
//! wirecall-protocol --test fuzz_connection -- --nocapture`.

#[path = "../../fuzz/fuzz_targets/conn_logic.rs"]
mod conn_logic;

use proptest::prelude::*;

fn verbose() -> bool {
    std::env::var_os("WIRECALL_FUZZ_VERBOSE").is_some()
}

#[test]
fn regression_inputs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_inputs/connection");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        eprintln!("{}", path.display());
        conn_logic::run_with(&data, verbose());
        n += 1;
    }
    assert!(n > 0, "no regression inputs in {}", dir.display());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_operation_sequences(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
        conn_logic::run(&data);
    }
}
