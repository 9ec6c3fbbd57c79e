//! Fuzzes the msgpack codec's decoders with arbitrary bytes and round-trips what decoded
//! (logic in `codec_logic.rs`, shared with `codecs/tests/fuzz_regressions.rs`).
#![no_main]

#[path = "codec_logic.rs"]
mod codec_logic;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    codec_logic::run_dynamic::<wirecall_codecs::MsgPack>(data);
});
