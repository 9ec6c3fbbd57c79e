//! Fuzzes the frame decoder and both connection state machines with arbitrary bytes.
//! The logic lives in `decode_logic.rs` so `protocol/tests/fuzz_logic.rs` runs it on stable.
#![no_main]

#[path = "decode_logic.rs"]
mod decode_logic;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    decode_logic::run(data);
});
