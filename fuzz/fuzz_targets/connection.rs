//! Fuzzes a client and a server state machine talking to each other, driven by operation
//! sequences (calls, cancels, answers, GOAWAY, shutdown, timers, faults on the pipes).
//! The logic lives in `conn_logic.rs` so `protocol/tests/fuzz_connection.rs` runs it on
//! stable.
#![no_main]

#[path = "conn_logic.rs"]
mod conn_logic;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    conn_logic::run(data);
});
