//! Differential test against CPython's own `marshal` module. Python is `$WIRECALL_PYTHON`,
//! else `python3` (3.11 or later: earlier versions do not sort set members):
//!
//! `WIRECALL_PYTHON=$(bash scripts/python-env.sh) cargo test -p wirecall-codecs --test marshal_python`
//!
//! Without a suitable Python the test passes after writing `skipped: ...` to stderr, unless
//! `WIRECALL_REQUIRE_PYTHON=1` (set by `scripts/test.sh`), where it fails.
//!
//! Both directions, 5,000 random values each:
//! * Python → Rust: Python builds random objects (with shared sub-objects and interned
//!   strings, so its output carries `FLAG_REF` and back references) and dumps them with
//!   `marshal.dumps(x, 4)`; Rust decodes that and re-encodes it, and the bytes must equal
//!   CPython's dump of the same value built fresh (`dumps(loads(dumps(x, 2)), 4)`: no
//!   sharing but CPython's own singletons, see the codec's documentation).
//! * Rust → Python: Rust encodes random values; Python loads them and must re-dump them
//!   (fresh) to exactly the same bytes; Python's dump of the loaded object, flags and
//!   back references included, must decode in Rust to the original value.
#![cfg(feature = "marshal")]

use std::io::Write;
use std::process::{Command, Stdio};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use wirecall_codecs::{Codec, Limits, Marshal, Value};

const SCRIPT: &str = r#"
import marshal, math, random, sys

def gen(rng, depth, shared):
    k = rng.randrange(16 if depth < 3 else 9)
    if k == 0: return rng.choice([None, True, False])
    if k == 1:
        c = rng.randrange(4)
        if c == 0: return rng.randint(-300, 300)
        if c == 1: return rng.randint(-2**31 - 5, 2**31 + 5)
        if c == 2: return rng.randint(-2**130, 2**130)
        return rng.choice([-1, 1]) * rng.randrange(2**(rng.randrange(1, 400)))
    if k == 2:
        c = rng.randrange(4)
        if c == 0: return rng.choice([0.0, -0.0, math.inf, -math.inf, math.nan, 1e16, 5e-324])
        return rng.uniform(-10, 10) * 10 ** rng.randint(-300, 300)
    if k == 3: return complex(rng.uniform(-5, 5), rng.choice([0.0, -0.0, rng.uniform(-5, 5), math.inf]))
    if k == 4:
        n = rng.choice([0, 1, 1, 2, 5, 20, 255, 256, 300])
        pool = "abc xyz" if rng.random() < 0.6 else "aé€日😀\x00\x7f\x80\xff\u0100"
        s = "".join(rng.choice(pool) for _ in range(n))
        return sys.intern(s) if rng.random() < 0.2 else s
    if k == 5: return rng.choice(["", "a", "é", "\xff", "ab", "name", "__class__"])
    if k == 6: return bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 3, 40])))
    if k == 7 and shared: return rng.choice(shared)
    if k == 8: return rng.choice([(), (1,), ("a", 2)])
    if k in (9, 10):
        v = [gen(rng, depth + 1, shared) for _ in range(rng.randrange(5))]
        shared.append(v)
        return v
    if k == 11:
        n = rng.choice([0, 1, 2, 3, 4, 300]) if depth == 0 else rng.randrange(4)
        v = tuple(gen(rng, depth + 1, shared) for _ in range(n))
        shared.append(v)
        return v
    if k == 12:
        members = {rng.choice([rng.randint(-400, 400), "m%d" % rng.randrange(50), (rng.randrange(3), "t"), 2.5, rng.randint(2**40, 2**41)]) for _ in range(rng.randrange(6))}
        return frozenset(members) if rng.random() < 0.3 else set(members)
    if k == 13:
        d = {}
        for _ in range(rng.randrange(5)):
            key = rng.choice([rng.randint(-9, 9), "k%d" % rng.randrange(9), sys.intern("key"), (1, "t"), 2.5, None, b"bk", frozenset({1, 2})])
            d[key] = gen(rng, depth + 1, shared)
        return d
    return {"k%d" % i: gen(rng, depth + 1, shared) for i in range(rng.randrange(4))}

def fresh(b):
    # The canonical dump: the object built fresh (no sharing), dumped in one expression.
    return marshal.dumps(marshal.loads(marshal.dumps(marshal.loads(b), 2)), 4)

mode = sys.stdin.readline().strip()
if mode == "generate":
    rng = random.Random(int(sys.stdin.readline()))
    count = int(sys.stdin.readline())
    for _ in range(count):
        obj = gen(rng, 0, [])
        natural = marshal.dumps(obj, 4)
        print(natural.hex(), fresh(natural).hex())
else:
    for line in sys.stdin:
        b = bytes.fromhex(line.strip())
        try:
            obj = marshal.loads(b)
            again = marshal.dumps(marshal.loads(b), 4)
            holder = [obj, obj]  # shared: Python's dump carries flags and references
            print("OK" if again == b else "DIFF", again.hex(), marshal.dumps(holder, 4).hex())
        except Exception as e:
            print("ERR", type(e).__name__, str(e).replace(" ", "_"))
"#;

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Hex for failure messages: the first 200 bytes.
fn shown(b: &[u8]) -> String {
    let mut s: String = b.iter().take(200).map(|x| format!("{x:02x}")).collect();
    if b.len() > 200 {
        s.push_str("...");
    }
    s
}

/// The Python to compare with when it is 3.11 or later; else a failure under
/// `WIRECALL_REQUIRE_PYTHON=1`, or `None` after a notice on the stderr handle.
fn python_or_skip(test: &str) -> Option<String> {
    let python = std::env::var("WIRECALL_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".to_owned());
    let check = "import sys, marshal; assert sys.version_info >= (3, 11), sys.version";
    let why = match Command::new(&python).args(["-c", check]).output() {
        Ok(o) if o.status.success() => return Some(python),
        Ok(o) => format!(
            "{python} is not Python 3.11+: {}",
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

fn run_python(python: &str, input: String) -> String {
    let mut child = Command::new(python)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("python output");
    writer
        .join()
        .expect("writer thread")
        .expect("write to python");
    assert!(out.status.success(), "python failed");
    String::from_utf8(out.stdout).expect("utf8")
}

/// `b` with the interned string codes (`Z`, `A`, `t`) replaced by their plain forms (`z`,
/// `a`, `u`) and frozensets by sets, flags kept. Whether CPython writes a one-character string as interned depends
/// on the identifiers the process has interned (a module naming a variable `u` interns the
/// shared 'u'), so the comparison ignores that bit; everything else must match exactly.
fn uninterned(b: &[u8]) -> Vec<u8> {
    fn walk(b: &[u8], i: &mut usize, out: &mut Vec<u8>) -> Option<()> {
        let code = *b.get(*i)?;
        let (flag, ty) = (code & 0x80, code & 0x7f);
        let plain = match ty {
            b'Z' => b'z',
            b'A' => b'a',
            b't' => b'u',
            // A Value has one set type: a frozenset outside a dict key or set member reads
            // back as a set.
            b'>' => b'<',
            other => other,
        };
        out.push(plain | flag);
        *i += 1;
        let copy = |n: usize, i: &mut usize, out: &mut Vec<u8>| -> Option<()> {
            out.extend_from_slice(b.get(*i..*i + n)?);
            *i += n;
            Some(())
        };
        let u32_at = |i: usize| -> Option<usize> {
            Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?) as usize)
        };
        match plain {
            b'N' | b'T' | b'F' | b'0' => {}
            b'i' | b'r' => copy(4, i, out)?,
            b'g' => copy(8, i, out)?,
            b'y' => copy(16, i, out)?,
            b'l' => {
                let n = i32::from_le_bytes(b.get(*i..*i + 4)?.try_into().ok()?);
                copy(4 + 2 * n.unsigned_abs() as usize, i, out)?;
            }
            b's' | b'u' | b'a' => {
                let n = u32_at(*i)?;
                copy(4 + n, i, out)?;
            }
            b'z' => {
                let n = usize::from(*b.get(*i)?);
                copy(1 + n, i, out)?;
            }
            b')' => {
                let n = usize::from(*b.get(*i)?);
                copy(1, i, out)?;
                for _ in 0..n {
                    walk(b, i, out)?;
                }
            }
            b'(' | b'[' | b'<' | b'>' => {
                let n = u32_at(*i)?;
                copy(4, i, out)?;
                for _ in 0..n {
                    walk(b, i, out)?;
                }
            }
            b'{' => loop {
                if *b.get(*i)? & 0x7f == b'0' {
                    walk(b, i, out)?;
                    break;
                }
                walk(b, i, out)?;
                walk(b, i, out)?;
            },
            _ => return None,
        }
        Some(())
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    match walk(b, &mut i, &mut out) {
        Some(()) if i == b.len() => out,
        _ => panic!("cannot walk {}", shown(b)),
    }
}

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    Marshal::encode_value(v, &mut out).expect("encode");
    out
}

fn decode(b: &[u8]) -> Value {
    Marshal::decode_value(b, &Limits::DEFAULT)
        .unwrap_or_else(|e| panic!("decode {}: {e}", shown(b)))
}

/// Equality where set members may come in any order (floats by bits, NaN equal to NaN).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Set(x), Value::Set(y)) => {
            x.len() == y.len()
                && x.iter().all(|p| y.iter().any(|q| same(p, q)))
                && y.iter().all(|q| x.iter().any(|p| same(p, q)))
        }
        (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k1, v1), (k2, v2))| same(k1, k2) && same(v1, v2))
        }
        _ => a.same_as(b),
    }
}

/// Values Python loads back unchanged: set members distinct ints or strings, map keys
/// distinct strings or ints (Python merges equal keys and members, and `1 == True`).
fn python_stable() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-300i128..300).prop_map(Value::Int),
        any::<i64>().prop_map(|i| Value::Int(i.into())),
        any::<i128>().prop_map(Value::Int),
        prop::collection::vec(any::<u32>(), 4..12).prop_map(|w| {
            let n = num_bigint::BigInt::from(num_bigint::BigUint::new(w));
            Value::from_bigint(-n)
        }),
        any::<f64>().prop_map(Value::Float),
        prop_oneof![
            any::<String>(),
            "[a-z]{0,3}",
            "[\\x00-\\xff]",
            "[a-z]{250,260}",
            "[é€a]{250,260}",
        ]
        .prop_map(Value::Str),
        prop::collection::vec(any::<u8>(), 0..4).prop_map(Value::Bytes),
        (any::<f64>(), any::<f64>()).prop_map(|(re, im)| Value::Map(vec![
            (Value::Str("__class__".into()), Value::Str("complex".into())),
            (Value::Str("real".into()), Value::Float(re)),
            (Value::Str("imag".into()), Value::Float(im)),
        ])),
    ];
    leaf.prop_recursive(3, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Tuple),
            prop::collection::btree_set(-400i64..400, 0..6)
                .prop_map(|s| Value::Set(s.into_iter().map(|i| Value::Int(i.into())).collect())),
            // No one-character strings: CPython sorts set members by their dump, which for
            // those depends on whether the process interned them.
            prop::collection::btree_set("|[a-z]{2,3}", 0..5)
                .prop_map(|s| Value::Set(s.into_iter().map(Value::Str).collect())),
            prop::collection::btree_map("[a-z]{0,4}", inner.clone(), 0..5).prop_map(|m| {
                Value::Map(m.into_iter().map(|(k, v)| (Value::Str(k), v)).collect())
            }),
            prop::collection::btree_map(-9i64..9, inner, 0..4).prop_map(|m| {
                Value::Map(
                    m.into_iter()
                        .map(|(k, v)| (Value::Tuple(vec![Value::Int(k.into())]), v))
                        .collect(),
                )
            }),
        ]
    })
}

const COUNT: usize = 5000;

#[test]
fn python_to_rust() {
    let Some(python) = python_or_skip("python_to_rust") else {
        return;
    };
    let out = run_python(&python, format!("generate\n20260511\n{COUNT}\n"));
    let mut failures = Vec::new();
    let (mut with_refs, mut lines, mut interned) = (0, 0, 0);
    for line in out.lines() {
        lines += 1;
        let (natural, fresh) = line.split_once(' ').expect("two fields");
        let (natural, fresh) = (hex_decode(natural), hex_decode(fresh));
        if uninterned(&natural) != uninterned(&fresh) {
            with_refs += 1;
        }
        let v = match Marshal::decode_value(&natural, &Limits::DEFAULT) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{}: {e}", shown(&natural)));
                continue;
            }
        };
        let ours = encode(&v);
        if ours != fresh {
            interned += 1;
        }
        if uninterned(&ours) != uninterned(&fresh) {
            failures.push(format!(
                "python {} (fresh {}), rust {}",
                shown(&natural),
                shown(&fresh),
                shown(&ours)
            ));
        }
        if !same(&decode(&fresh), &v) {
            failures.push(format!(
                "{}: the fresh dump reads differently",
                shown(&natural)
            ));
        }
    }
    eprintln!(
        "python_to_rust: {lines} values, {with_refs} with shared objects, {interned} differing \
         only in interned one-character strings, {} failures",
        failures.len()
    );
    assert_eq!(lines, COUNT);
    assert!(
        with_refs > COUNT / 20,
        "too few values exercise references: {with_refs}"
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
}

#[test]
fn rust_to_python() {
    let Some(python) = python_or_skip("rust_to_python") else {
        return;
    };
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[11; 32]),
    );
    let strategy = python_stable();
    let mut values = Vec::with_capacity(COUNT);
    let mut input = String::from("check\n");
    for _ in 0..COUNT {
        let v = strategy.new_tree(&mut runner).expect("value").current();
        input.push_str(&hex_encode(&encode(&v)));
        input.push('\n');
        values.push(v);
    }
    let out = run_python(&python, input);
    let mut failures = Vec::new();
    let (mut lines, mut interned) = (0, 0);
    for (v, line) in values.iter().zip(out.lines()) {
        lines += 1;
        let ours = encode(v);
        let fields: Vec<&str> = line.split(' ').collect();
        let [status, again, shared] = fields[..] else {
            failures.push(format!("{v}: python cannot load {}: {line}", shown(&ours)));
            continue;
        };
        if status != "OK" {
            let again = hex_decode(again);
            if uninterned(&again) == uninterned(&ours) {
                interned += 1;
            } else {
                failures.push(format!(
                    "{v}: rust {}, python re-dumps {}",
                    shown(&ours),
                    shown(&again)
                ));
            }
        }
        let shared = hex_decode(shared);
        match Marshal::decode_value(&shared, &Limits::DEFAULT) {
            Ok(Value::List(two)) if two.len() == 2 && same(&two[0], v) && same(&two[1], v) => {}
            Ok(other) => failures.push(format!("{v}: python's shared dump reads as {other}")),
            Err(e) => failures.push(format!("{v}: python's shared dump: {e}")),
        }
    }
    eprintln!(
        "rust_to_python: {lines} values, {interned} differing only in interned one-character \
         strings, {} failures",
        failures.len()
    );
    assert_eq!(lines, COUNT);
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
}
