//! Fuzzes the conformance vector notation parser (`conformance/NOTATION.md`) and checks
//! that printing is canonical (logic in `notation_logic.rs`, shared with
//! `conformance/tests/fuzz_regressions.rs`).
#![no_main]

#[path = "notation_logic.rs"]
mod notation_logic;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    notation_logic::run(data);
});
