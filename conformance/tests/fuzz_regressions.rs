//! Runs the cargo-fuzz `notation` target's logic (`fuzz/fuzz_targets/notation_logic.rs`) on
//! stable: every input kept from a fuzzing run (`tests/fuzz_inputs/notation/`) and mutated
//! notation texts under proptest.

#[path = "../../fuzz/fuzz_targets/notation_logic.rs"]
mod notation_logic;

use proptest::prelude::*;

#[test]
fn regression_inputs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_inputs/notation");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        eprintln!("{}", path.display());
        notation_logic::run(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n > 0, "no regression inputs in {}", dir.display());
}

const SEED: &str = r#"{"a":[1,-0.0,{"$bytes":"00ff"},{"$int":"-170141183460469231731687303715884105729"}],
"b":{"$map":[[{"$tuple":[1,2]},{"$set":["x"]}],[{"$float":"nan"},{"$f64":"7ff0000000000001"}]]},
"c":{"$ext":[-1,"00000001"]},"d":"\u00e9\n","$e":{"$map":[["$bytes","not bytes"]]}}"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mutated_notation(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
    ) {
        let mut data = SEED.as_bytes().to_vec();
        for (pos, val) in flips {
            let i = pos % data.len();
            data[i] = val;
        }
        data.truncate(cut % (data.len() + 1));
        notation_logic::run(&data);
    }

    #[test]
    fn random_text(s in "[\\[\\]{}\":,0-9a-z$.eE+\\- \n\\\\u]{0,80}") {
        notation_logic::run(s.as_bytes());
    }
}
