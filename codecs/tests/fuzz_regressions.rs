//! Runs the cargo-fuzz codec targets' logic (`fuzz/fuzz_targets/codec_logic.rs`) on stable:
//! every input kept from a fuzzing run (`tests/fuzz_inputs/<target>/`, one folder per
//! target), and random bytes for each codec under proptest.

#[path = "../../fuzz/fuzz_targets/codec_logic.rs"]
mod codec_logic;

use proptest::prelude::*;
use wirecall_codecs::{Bincode, Cbor, MsgPack, Postcard, Ron};

/// A fuzz target's logic.
type Target = fn(&[u8]);

/// The target names and their logic, as in `fuzz/Cargo.toml`.
const TARGETS: [(&str, Target); 8] = [
    ("codec_json", codec_logic::run_json),
    ("codec_json_strict", codec_logic::run_json_strict),
    ("codec_msgpack", codec_logic::run_dynamic::<MsgPack>),
    ("codec_cbor", codec_logic::run_dynamic::<Cbor>),
    ("codec_ron", codec_logic::run_dynamic::<Ron>),
    ("codec_serpent", codec_logic::run_serpent),
    ("codec_postcard", codec_logic::run_typed::<Postcard>),
    ("codec_bincode", codec_logic::run_typed::<Bincode>),
];

#[test]
fn regression_inputs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_inputs");
    let mut n = 0;
    for (target, run) in TARGETS {
        let Ok(dir) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        for entry in dir {
            let path = entry.unwrap().path();
            eprintln!("{target}: {}", path.display());
            run(&std::fs::read(&path).unwrap());
            n += 1;
        }
    }
    assert!(n > 0, "no regression inputs under {}", root.display());
}

/// Inputs that reach past the first byte of each format: a few valid encodings, mutated.
fn seeds() -> Vec<Vec<u8>> {
    vec![
        br#"{"a":[1,2.5,"x",null,true,{"b":-3}],"c":"\u00e9"}"#.to_vec(),
        b"# serpent utf-8 python3.2\n{'a':(1,2.5,'x',None,True),'b':{1,2},'c':[b'x',-3]}".to_vec(),
        b"(a: [1, 2.5, \"x\"], b: Some(B(7)), c: {1: ()})".to_vec(),
        vec![
            0x83, 0xa1, b'a', 0x92, 0x01, 0xcb, 0x40, 0x04, 0, 0, 0, 0, 0, 0, 0xc4, 0x01, 0xff,
        ],
        vec![
            0xa2, 0x61, b'a', 0x82, 0x01, 0xf9, 0x3c, 0x00, 0xc2, 0x41, 0x05, 0xd9, 0x01, 0x02,
        ],
        vec![
            0x07, 0x03, b'a', b'b', b'c', 0x00, 0x01, 0x02, 0x03, 0x01, 0x05,
        ],
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        for (_, run) in TARGETS {
            run(&data);
        }
    }

    #[test]
    fn mutated_valid_inputs(
        seed in 0usize..6,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
    ) {
        let mut data = seeds().swap_remove(seed);
        for (pos, val) in flips {
            let i = pos % data.len();
            data[i] = val;
        }
        data.truncate(cut % (data.len() + 1));
        for (_, run) in TARGETS {
            run(&data);
        }
    }
}
