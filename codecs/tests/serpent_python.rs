//! Differential test against the reference Python serpent. Python is `$WIRECALL_PYTHON`, else
//! `python3`, and must have serpent 1.43 (`bash scripts/python-env.sh` prints one that does;
//! `bash scripts/test.sh` runs every test with it):
//!
//! `WIRECALL_PYTHON=$(bash scripts/python-env.sh) cargo test -p wirecall-codecs --test serpent_python`
//!
//! Without it the test passes after writing `python_differential: skipped: python reference
//! missing (...)` to stderr, unless `WIRECALL_REQUIRE_PYTHON=1` (set by `scripts/test.sh`),
//! where it fails. The notice goes straight to the stderr handle, not through `eprintln!`,
//! which the test harness captures and hides for a passing test.
//!
//! Documents come from both sides: Rust-generated values encoded by this crate, and random
//! Python objects dumped by Python (compact and indent, base64 and `bytes_repr` bytes). For
//! every document T the test checks that Rust's `encode(parse(T))` equals Python's
//! `dumps(loads(T))` byte for byte, and that Python reproduces Rust's own output exactly
//! when the value survives Python's `loads` unchanged.
#![cfg(feature = "serpent")]

use std::io::Write;
use std::process::{Command, Stdio};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use wirecall_codecs::serpent::{complex_value, parse_value, value_to_writer, SerpentOptions};
use wirecall_codecs::Value;

const SCRIPT: &str = r#"
import random, sys, serpent, math

def gen(rng, depth):
    k = rng.randrange(14 if depth < 3 else 8)
    if k == 0: return None
    if k == 1: return rng.random() < 0.5
    if k == 2: return rng.randint(-2**70, 2**70) if rng.random() < 0.3 else rng.randint(-300, 300)
    if k == 3:
        c = rng.randrange(5)
        if c == 0: return rng.choice([0.0, -0.0, math.inf, -math.inf, math.nan, 1e16, 1e-5, 5e-324])
        if c == 1: return rng.uniform(-1e20, 1e20)
        return rng.uniform(-10, 10) * 10 ** rng.randint(-30, 30)
    if k == 4: return complex(rng.uniform(-5, 5), rng.choice([0.0, -0.0, rng.uniform(-5, 5), math.inf]))
    if k == 5:
        n = rng.randrange(8)
        pool = "ab'\"\\\n\t\x00\x7f\x85\xa0é€日😀\u2028\U000e0001 "
        return "".join(rng.choice(pool) if rng.random() < 0.7 else chr(rng.randrange(0x20, 0x30000)) for _ in range(n)
                       if True).encode("utf-8", "ignore").decode("utf-8", "ignore").replace("\ud800", "")
    if k == 6: return bytes(rng.randrange(256) for _ in range(rng.randrange(6)))
    if k == 7: return rng.choice(["", "x", "it's", 'say "hi"'])
    if k in (8, 9): return [gen(rng, depth + 1) for _ in range(rng.randrange(4))]
    if k == 10: return tuple(gen(rng, depth + 1) for _ in range(rng.randrange(4)))
    if k == 11: return {rng.randint(-5, 5) for _ in range(rng.randrange(4))}
    if k == 12:
        d = {}
        for _ in range(rng.randrange(5)):
            key = rng.choice([rng.randint(-9, 9), "k%d" % rng.randrange(9), (1, "t"), True, 2.5])
            d[key] = gen(rng, depth + 1)
        return d
    return {"k%d" % i: gen(rng, depth + 1) for i in range(rng.randrange(4))}

def strip_surrogates(s):
    return "".join(c for c in s if not 0xD800 <= ord(c) <= 0xDFFF)

mode = sys.stdin.readline().strip()
if mode == "generate":
    rng = random.Random(int(sys.stdin.readline()))
    count = int(sys.stdin.readline())
    for _ in range(count):
        obj = gen(rng, 0)
        indent, bytes_repr = rng.random() < 0.4, rng.random() < 0.3
        try:
            text = serpent.dumps(obj, indent=indent, bytes_repr=bytes_repr)
        except (TypeError, ValueError):
            continue
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            continue
        print(int(indent), int(bytes_repr), text.hex(), flush=False)
else:
    for line in sys.stdin:
        indent, bytes_repr, hexed = line.split()
        text = bytes.fromhex(hexed)
        try:
            out = serpent.dumps(serpent.loads(text), indent=indent == "1", bytes_repr=bytes_repr == "1")
            print(out.hex())
        except Exception as e:
            print("ERR", type(e).__name__)
"#;

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The Python to compare with (`$WIRECALL_PYTHON`, else `python3`) when it has serpent 1.43.
/// Otherwise: a failure under `WIRECALL_REQUIRE_PYTHON=1`, else `None` after a notice written
/// to the stderr handle directly (visible in `cargo test` output, unlike a captured
/// `eprintln!`).
fn python_or_skip(test: &str) -> Option<String> {
    let python = std::env::var("WIRECALL_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".to_owned());
    let check = "import serpent; assert serpent.__version__ == '1.43', serpent.__version__";
    let why = match Command::new(&python).args(["-c", check]).output() {
        Ok(o) if o.status.success() => return Some(python),
        Ok(o) => format!(
            "{python} has no serpent 1.43: {}",
            String::from_utf8_lossy(&o.stderr)
                .trim()
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(e) => format!("cannot run {python}: {e}"),
    };
    if std::env::var("WIRECALL_REQUIRE_PYTHON").as_deref() == Ok("1") {
        panic!("{test}: WIRECALL_REQUIRE_PYTHON=1 but the python reference is missing: {why}");
    }
    let notice = format!(
        "{test}: skipped: python reference missing ({why}); run `bash scripts/test.sh` to run it\n"
    );
    let _ = std::io::stderr().write_all(notice.as_bytes());
    None
}

fn run_python(python: &str, input: &str) -> String {
    let mut child = Command::new(python)
        .args(["-c", SCRIPT])
        .env("PYTHONHASHSEED", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python");
    // Feed stdin from a thread so a full stdout pipe cannot deadlock the exchange.
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("python output");
    writer
        .join()
        .expect("writer thread")
        .expect("write to python");
    assert!(out.status.success(), "python failed");
    String::from_utf8(out.stdout).expect("utf8")
}

fn opts(indent: bool, bytes_repr: bool) -> SerpentOptions {
    SerpentOptions::default()
        .indent(indent)
        .bytes_repr(bytes_repr)
}

/// Values whose Python `loads` gives back an object that dumps to the same text: no bytes in
/// base64 mode, no NaN, no sets with more than one member in compact mode (hash order),
/// unique dict keys, complex parts without negative zeros.
fn stable_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i128>().prop_map(Value::Int),
        any::<f64>()
            .prop_filter("finite or inf", |f| !f.is_nan())
            .prop_map(Value::Float),
        any::<String>().prop_map(Value::Str),
        (-1e9f64..1e9, 0.5f64..1e9).prop_map(|(a, b)| complex_value(a, b)),
    ];
    leaf.prop_recursive(3, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::List),
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Tuple),
            any::<i64>().prop_map(|i| Value::Set(vec![Value::Int(i.into())])),
            prop::collection::btree_map("[a-z]{0,4}", inner, 0..4).prop_map(|m| {
                Value::Map(m.into_iter().map(|(k, v)| (Value::Str(k), v)).collect())
            }),
        ]
    })
}

/// Equality where set members may come in any order (floats by bits).
fn same_sets_unordered(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => {
            (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits()
        }
        (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_sets_unordered(p, q))
        }
        (Value::Set(x), Value::Set(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|p| y.iter().any(|q| same_sets_unordered(p, q)))
                && y.iter()
                    .all(|q| x.iter().any(|p| same_sets_unordered(p, q)))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter().zip(y).all(|((k1, v1), (k2, v2))| {
                    same_sets_unordered(k1, k2) && same_sets_unordered(v1, v2)
                })
        }
        _ => a == b,
    }
}

fn same_modulo_set_order(a: &[u8], b: &[u8]) -> bool {
    match (parse_value(a, 200), parse_value(b, 200)) {
        (Ok(x), Ok(y)) => a.len() == b.len() && same_sets_unordered(&x, &y),
        _ => false,
    }
}

/// (indent, bytes_repr, document, our own text when the document is Rust's output).
type Doc = (bool, bool, Vec<u8>, Option<Vec<u8>>);

#[test]
fn python_differential() {
    let Some(python) = python_or_skip("python_differential") else {
        return;
    };

    // 1. Python-generated documents.
    let generated = run_python(&python, "generate\n20261121\n1500\n");
    let mut docs: Vec<Doc> = Vec::new();
    for line in generated.lines() {
        let mut parts = line.split(' ');
        let indent = parts.next() == Some("1");
        let bytes_repr = parts.next() == Some("1");
        docs.push((
            indent,
            bytes_repr,
            hex_decode(parts.next().unwrap_or("")),
            None,
        ));
    }
    let from_python = docs.len();
    assert!(
        from_python > 1000,
        "python generated only {from_python} documents"
    );
    assert!(docs.iter().any(|d| d.0), "no indent-mode documents");

    // 2. Rust-generated documents of values Python reproduces exactly.
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = stable_value();
    for n in 0..600 {
        let v = strategy.new_tree(&mut runner).expect("value").current();
        let o = opts(n % 3 == 0, n % 5 == 0);
        let mut text = Vec::new();
        value_to_writer(&v, &mut text, &o).expect("encode");
        docs.push((o.indent, o.bytes_repr, text.clone(), Some(text)));
    }

    // 3. Python re-dumps every document; Rust parses and re-encodes it.
    let mut input = String::from("redump\n");
    for (indent, bytes_repr, text, _) in &docs {
        input.push_str(&format!(
            "{} {} {}\n",
            u8::from(*indent),
            u8::from(*bytes_repr),
            hex_encode(text)
        ));
    }
    let redumped = run_python(&python, &input);
    let mut failures = Vec::new();
    let mut compared = 0;
    let mut set_order_only = 0;
    for ((indent, bytes_repr, text, own), line) in docs.iter().zip(redumped.lines()) {
        let shown = String::from_utf8_lossy(text);
        if line.starts_with("ERR") {
            failures.push(format!("python could not re-dump {shown:?}: {line}"));
            continue;
        }
        let want = hex_decode(line);
        if let Some(own) = own {
            if &want != own {
                failures.push(format!(
                    "python re-dumps our {:?} as {:?}",
                    shown,
                    String::from_utf8_lossy(&want)
                ));
            }
        }
        let ours = parse_value(text, 200).and_then(|v| {
            let mut out = Vec::new();
            value_to_writer(&v, &mut out, &opts(*indent, *bytes_repr)).map(|_| out)
        });
        match ours {
            Ok(out) if out == want => compared += 1,
            // Python rebuilds a set from its literal, which can change the (hash) iteration
            // order of e.g. negative ints; accept a difference in set member order only.
            Ok(out) if same_modulo_set_order(&out, &want) => set_order_only += 1,
            Ok(out) => failures.push(format!(
                "{shown:?}: python {:?}, rust {:?}",
                String::from_utf8_lossy(&want),
                String::from_utf8_lossy(&out)
            )),
            Err(e) => failures.push(format!("{shown:?}: rust error {e}")),
        }
    }
    eprintln!(
        "python differential: {compared} documents identical, {set_order_only} equal up to set \
         order ({from_python} from Python, {} from Rust), {} failures",
        docs.len() - from_python,
        failures.len()
    );
    assert_eq!(redumped.lines().count(), docs.len());
    assert!(
        set_order_only * 20 < docs.len(),
        "too many set-order-only matches"
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
