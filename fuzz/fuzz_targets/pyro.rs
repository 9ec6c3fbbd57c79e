//! Fuzzes the Pyro5 dialect: its message decoder and the server session with a driver that
//! answers everything. The logic lives in `pyro_logic.rs` so `protocol/tests/fuzz_pyro.rs`
//! runs it on stable.
#![no_main]

#[path = "pyro_logic.rs"]
mod pyro_logic;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pyro_logic::run(data);
});
