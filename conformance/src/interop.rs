//! Cross-check with the Python reference implementations: a seeded, deterministic generator of
//! [`Value`]s restricted per codec to what both wirecall and the Python library carry
//! unchanged, and a driver that feeds a whole batch to one Python process per codec and
//! direction (`python/interop.py`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use wirecall_codecs::{CodecId, Value};

use crate::{codec, notation, SuiteReport};

/// SplitMix64: small, fast, and the same sequence on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Picks one element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len() as u64) as usize)
    }
}

/// What a codec and its Python counterpart both carry unchanged (the interop domain).
#[derive(Debug, Clone, Copy)]
pub struct Domain {
    /// Integers beyond 64 bits (`Int` outside i64/u64, and `BigInt`).
    pub big_ints: bool,
    /// NaN (any payload; compared as "is NaN").
    pub nan: bool,
    /// ±infinity.
    pub infinities: bool,
    /// `Bytes`.
    pub bytes: bool,
    /// `Tuple` (decodes as a tuple on both sides).
    pub tuples: bool,
    /// `Set` of scalars.
    pub sets: bool,
    /// Map keys may be ints / bytes as well as strings.
    pub int_keys: bool,
    /// Map keys may be bytes.
    pub bytes_keys: bool,
    /// Map keys may be tuples of scalars.
    pub tuple_keys: bool,
}

/// The interop domain of a codec, `None` when it has no Python counterpart.
pub fn domain(codec: CodecId) -> Option<Domain> {
    let base = Domain {
        big_ints: false,
        nan: true,
        infinities: true,
        bytes: false,
        tuples: false,
        sets: false,
        int_keys: false,
        bytes_keys: false,
        tuple_keys: false,
    };
    Some(match codec {
        // wirecall's dynamic json follows Python's json: NaN/Infinity tokens, exact big ints.
        CodecId::JSON => Domain {
            big_ints: true,
            ..base
        },
        CodecId::MSGPACK => Domain {
            bytes: true,
            int_keys: true,
            bytes_keys: true,
            ..base
        },
        CodecId::CBOR => Domain {
            big_ints: true,
            bytes: true,
            sets: true,
            int_keys: true,
            bytes_keys: true,
            ..base
        },
        // serpent writes NaN as a {'__class__': 'float', ...} dict that reads back as a dict.
        CodecId::SERPENT => Domain {
            big_ints: true,
            nan: false,
            bytes: true,
            tuples: true,
            sets: true,
            int_keys: true,
            tuple_keys: true,
            ..base
        },
        _ => return None,
    })
}

const STRINGS: &[&str] = &[
    "",
    "a",
    "hello world",
    "é",
    "€",
    "😀",
    "\u{0}",
    "\u{1f}",
    "\u{7f}",
    "\u{80}",
    "\u{a0}",
    "\u{2028}",
    "\u{fffd}",
    "\u{ffff}",
    "\u{10ffff}",
    "'",
    "\"",
    "it's \"quoted\"",
    "\\",
    "\n\r\t",
    "</script>",
    "$bytes",
    "NaN",
    "1e5",
];

fn gen_string(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => rng.pick(STRINGS).copied().unwrap_or("").to_owned(),
        1 => {
            let len = rng.below(12);
            (0..len)
                .map(|_| char::from(b' ' + rng.below(95) as u8))
                .collect()
        }
        _ => {
            let len = rng.below(8);
            (0..len)
                .filter_map(|_| {
                    let ranges: [(u32, u32); 6] = [
                        (0, 0x80),
                        (0x80, 0x800),
                        (0x800, 0xd800),
                        (0xe000, 0x10000),
                        (0x10000, 0x110000),
                        (0x1f600, 0x1f650),
                    ];
                    let (lo, hi) = ranges
                        .get(rng.below(6) as usize)
                        .copied()
                        .unwrap_or((0, 0x80));
                    char::from_u32(lo + rng.below(u64::from(hi - lo)) as u32)
                })
                .collect()
        }
    }
}

fn gen_int(rng: &mut Rng, d: &Domain) -> Value {
    const EDGES: &[i128] = &[
        0,
        1,
        -1,
        23,
        24,
        -24,
        -25,
        31,
        32,
        -32,
        -33,
        127,
        128,
        -128,
        -129,
        255,
        256,
        65535,
        65536,
        -32768,
        -32769,
        (1 << 31) - 1,
        1 << 31,
        -(1 << 31),
        -(1 << 31) - 1,
        (1 << 32) - 1,
        1 << 32,
        (1 << 53) - 1,
        1 << 53,
        (1 << 53) + 1,
        i64::MAX as i128,
        i64::MIN as i128,
        u64::MAX as i128,
    ];
    const BIG_EDGES: &[i128] = &[
        u64::MAX as i128 + 1,
        i64::MIN as i128 - 1,
        -(u64::MAX as i128) - 1,
        -(u64::MAX as i128) - 2,
        i128::MAX,
        i128::MIN,
    ];
    match rng.below(if d.big_ints { 5 } else { 3 }) {
        0 => Value::Int(rng.pick(EDGES).copied().unwrap_or(0)),
        1 => Value::Int(i128::from(rng.next_u64() as i64) >> rng.below(64)),
        2 => Value::Int(i128::from(rng.next_u64() >> rng.below(64))),
        3 => Value::Int(rng.pick(BIG_EDGES).copied().unwrap_or(0)),
        _ => {
            let digits = 1 + rng.below(60) as usize;
            let mut s: String = (0..digits)
                .map(|_| char::from(b'0' + rng.below(10) as u8))
                .collect();
            if rng.below(2) == 0 {
                s.insert(0, '-');
            }
            let n: num_bigint::BigInt = s.parse().unwrap_or_default();
            Value::from_bigint(n)
        }
    }
}

fn gen_float(rng: &mut Rng, d: &Domain) -> f64 {
    const EDGES: &[f64] = &[
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        0.1,
        1e16,
        1e15,
        1e-4,
        1e-5,
        1e-7,
        5e-324,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        f64::EPSILON,
        65504.0,
        100000.0,
        3.4028234663852886e38,
        1.2345678901234568e20,
    ];
    loop {
        let f = match rng.below(3) {
            0 => rng.pick(EDGES).copied().unwrap_or(0.0),
            1 => f64::from_bits(rng.next_u64()),
            _ => (rng.below(2_000_001) as f64 - 1_000_000.0) / 8.0,
        };
        let f = match rng.below(40) {
            0 if d.nan => f64::NAN,
            1 if d.infinities => f64::INFINITY,
            2 if d.infinities => f64::NEG_INFINITY,
            _ => f,
        };
        if (f.is_nan() && !d.nan) || (f.is_infinite() && !d.infinities) {
            continue;
        }
        return f;
    }
}

fn gen_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(10) {
        0 => 0,
        1 => 32 + rng.below(300) as usize,
        _ => rng.below(10) as usize,
    };
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// A scalar that can be a Python set element or dict key (distinct by Python equality from
/// the others chosen, which the caller checks).
fn gen_key(rng: &mut Rng, d: &Domain) -> Value {
    match rng.below(4) {
        0 if d.int_keys => gen_int(rng, d),
        1 if d.bytes_keys => Value::Bytes(gen_bytes(rng)),
        2 if d.tuple_keys => {
            let n = rng.below(3);
            Value::Tuple(
                (0..n)
                    .map(|_| Value::Int(i128::from(rng.below(100))))
                    .collect(),
            )
        }
        _ => Value::Str(gen_string(rng)),
    }
}

fn gen_value(rng: &mut Rng, d: &Domain, depth: u32) -> Value {
    let kinds = if depth >= 3 { 6 } else { 10 };
    match rng.below(kinds) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 1),
        2 => gen_int(rng, d),
        3 => Value::Float(gen_float(rng, d)),
        4 => Value::Str(gen_string(rng)),
        5 if d.bytes => Value::Bytes(gen_bytes(rng)),
        5 => Value::Str(gen_string(rng)),
        6 | 7 => {
            let n = rng.below(6);
            let items: Vec<Value> = (0..n).map(|_| gen_value(rng, d, depth + 1)).collect();
            match rng.below(3) {
                0 if d.tuples => Value::Tuple(items),
                _ => Value::List(items),
            }
        }
        8 if d.sets => {
            let n = 1 + rng.below(5);
            let mut items: Vec<Value> = Vec::new();
            for _ in 0..n {
                let k = match rng.below(2) {
                    0 => Value::Int(i128::from(rng.below(1000)) - 500),
                    _ => Value::Str(gen_string(rng)),
                };
                if !items.contains(&k) {
                    items.push(k);
                }
            }
            Value::Set(items)
        }
        _ => {
            let n = rng.below(5);
            let mut entries: Vec<(Value, Value)> = Vec::new();
            for _ in 0..n {
                let k = gen_key(rng, d);
                if !entries.iter().any(|(e, _)| e == &k) {
                    entries.push((k, gen_value(rng, d, depth + 1)));
                }
            }
            Value::Map(entries)
        }
    }
}

/// `count` values for `codec`'s interop domain, the same for the same `seed`. The first values
/// are fixed edge cases (every scalar variant and empty containers) before random ones.
pub fn generate(codec: CodecId, seed: u64, count: usize) -> Vec<Value> {
    let Some(d) = domain(codec) else {
        return Vec::new();
    };
    let mut out = vec![
        Value::Null,
        Value::Bool(true),
        Value::Bool(false),
        Value::Int(0),
        Value::Int(-1),
        Value::Int(i64::MIN.into()),
        Value::Int(u64::MAX.into()),
        Value::Float(-0.0),
        Value::Float(0.1),
        Value::Str(String::new()),
        Value::Str("é€😀\u{0}".into()),
        Value::List(vec![]),
        Value::Map(vec![]),
        Value::List(vec![Value::List(vec![Value::Map(vec![])])]),
    ];
    if d.infinities {
        out.push(Value::Float(f64::INFINITY));
        out.push(Value::Float(f64::NEG_INFINITY));
    }
    if d.nan {
        out.push(Value::Float(f64::NAN));
    }
    if d.big_ints {
        out.push(Value::Int(u64::MAX as i128 + 1));
        out.push(Value::Int(i128::MIN));
        out.push(Value::from_bigint(
            "-123456789012345678901234567890123456789012345"
                .parse()
                .unwrap_or_default(),
        ));
    }
    if d.bytes {
        out.push(Value::Bytes(vec![]));
        out.push(Value::Bytes((0..=255).collect()));
    }
    if d.tuples {
        out.push(Value::Tuple(vec![]));
        out.push(Value::Tuple(vec![Value::Int(1)]));
    }
    if d.sets {
        out.push(Value::Set(vec![Value::Int(1), Value::Str("a".into())]));
    }
    let mut rng = Rng::new(seed ^ u64::from(codec.get()).wrapping_mul(0x1000_0000_01b3));
    while out.len() < count {
        out.push(gen_value(&mut rng, &d, 0));
    }
    out.truncate(count);
    out
}

/// Equality for interop: [`notation::same`], except that set elements may come back in any
/// order (Python sets are unordered).
pub fn same_interop(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Set(x), Value::Set(y)) => {
            x.len() == y.len() && x.iter().all(|e| y.iter().any(|f| same_interop(e, f)))
        }
        (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_interop(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k1, v1), (k2, v2))| same_interop(k1, k2) && same_interop(v1, v2))
        }
        _ => notation::same(a, b),
    }
}

/// The words every Python-dependent check prints when it cannot run.
pub const PYTHON_MISSING: &str = "skipped: python reference missing";

/// True when `WIRECALL_REQUIRE_PYTHON=1` (set by `scripts/test.sh`): a missing Python
/// reference is then a failure instead of a skip.
pub fn python_required() -> bool {
    std::env::var("WIRECALL_REQUIRE_PYTHON").as_deref() == Ok("1")
}

/// For tests that need the Python references: panics when [`python_required`], else writes
/// `<test>: skipped: python reference missing (<why>)` straight to the process's stderr.
/// The direct write is deliberate: the test harness captures `println!`/`eprintln!` of a
/// passing test and shows nothing, but not writes to the stderr handle, so the line shows up
/// in `cargo test` output.
pub fn python_missing(test: &str, why: &str) {
    if python_required() {
        panic!("{test}: WIRECALL_REQUIRE_PYTHON=1 but the python reference is missing: {why}");
    }
    let line = format!("{test}: {PYTHON_MISSING} ({why}); run `bash scripts/test.sh` to run it\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
}

/// How to find Python: `$WIRECALL_PYTHON`, else `python3`.
pub fn python_command() -> PathBuf {
    match std::env::var_os("WIRECALL_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("python3"),
    }
}

/// Checks that `python` runs and has serpent, msgpack and cbor2; `Err` says what is missing.
pub fn python_available(python: &Path) -> Result<(), String> {
    let out = Command::new(python)
        .args(["-c", "import serpent, msgpack, cbor2"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} lacks the reference modules (serpent, msgpack, cbor2): {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The Python script driving the reference libraries.
pub fn interop_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/interop.py")
}

/// Runs `interop.py codec direction` once with all `lines` on stdin; returns its output lines
/// (the "ok module version" line first).
fn run_python(
    python: &Path,
    codec: &str,
    direction: &str,
    lines: Vec<String>,
) -> Result<Vec<String>, String> {
    run_script(python, &interop_script(), &[codec, direction], lines)
}

/// Runs the Python `script` with `args` once, all `lines` on stdin; returns its output lines.
pub(crate) fn run_script(
    python: &Path,
    script: &Path,
    args: &[&str],
    lines: Vec<String>,
) -> Result<Vec<String>, String> {
    let name = script
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut child = Command::new(python)
        .arg(script)
        .args(args)
        .env("PYTHONHASHSEED", "0")
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
    let mut stdin = child.stdin.take().ok_or("no stdin pipe")?;
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        for line in lines {
            stdin.write_all(line.as_bytes())?;
            stdin.write_all(b"\n")?;
        }
        Ok(())
    });
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let out: Vec<String> = BufReader::new(stdout)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let status = child.wait().map_err(|e| e.to_string())?;
    let write_result = writer
        .join()
        .map_err(|_| "writer thread panicked".to_string())?;
    if !status.success() {
        let mut err = String::new();
        if let Some(mut s) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut s, &mut err);
        }
        return Err(format!(
            "{name} {} exited with {status}: {}",
            args.join(" "),
            err.trim()
        ));
    }
    write_result.map_err(|e| format!("writing to {name}: {e}"))?;
    Ok(out)
}

/// The Python name of a codec for `interop.py`.
fn python_codec_name(codec: CodecId) -> Option<&'static str> {
    match codec {
        CodecId::JSON => Some("json"),
        CodecId::MSGPACK => Some("msgpack"),
        CodecId::CBOR => Some("cbor"),
        CodecId::SERPENT => Some("serpent"),
        _ => None,
    }
}

/// Cross-checks `values` with Python for one codec, both directions:
/// * `<codec> rust->python`: wirecall encodes, Python decodes and prints the notation, the
///   result must equal the original;
/// * `<codec> python->rust`: Python encodes the notation, wirecall decodes, the result must
///   equal the original.
pub fn cross_check(python: &Path, codec: CodecId, values: &[Value]) -> Vec<SuiteReport> {
    let Some(name) = python_codec_name(codec) else {
        let mut r = SuiteReport::new(format!("interop {codec}"));
        r.fail(format!("{codec} has no Python counterpart"));
        return vec![r];
    };
    let mut to_py = SuiteReport::new(format!("interop {name} rust->python"));
    let mut from_py = SuiteReport::new(format!("interop {name} python->rust"));

    // Rust encodes, Python decodes.
    let mut sent = Vec::new();
    let mut lines = Vec::new();
    for v in values {
        match codec::encode(codec, v) {
            Ok(bytes) => {
                lines.push(hex::encode(bytes));
                sent.push(v);
            }
            Err(e) => to_py.fail(format!(
                "wirecall cannot encode {}: {e}",
                notation::print(v)
            )),
        }
    }
    match run_python(python, name, "decode", lines) {
        Ok(out) => compare(&mut to_py, &sent, &out, |line| {
            notation::parse(line).map_err(|e| format!("Python printed bad notation {line:?}: {e}"))
        }),
        Err(e) => to_py.fail(e),
    }

    // Python encodes, Rust decodes.
    let lines: Vec<String> = values.iter().map(notation::print).collect();
    let sent: Vec<&Value> = values.iter().collect();
    match run_python(python, name, "encode", lines) {
        Ok(out) => compare(&mut from_py, &sent, &out, |line| {
            let bytes = hex::decode(line).map_err(|e| format!("Python printed bad hex: {e}"))?;
            let v = codec::decode(codec, &bytes)
                .map_err(|e| format!("wirecall cannot decode Python's {line}: {e}"))?;
            // serpent.loads (and wirecall's faithful parser) leave bytes as base64 dicts; both
            // sides apply serpent.tobytes, as Pyro does.
            Ok(if codec == CodecId::SERPENT {
                codec::serpent_tobytes_deep(v)
            } else {
                v
            })
        }),
        Err(e) => from_py.fail(e),
    }
    vec![to_py, from_py]
}

fn compare(
    report: &mut SuiteReport,
    sent: &[&Value],
    out: &[String],
    read: impl Fn(&str) -> Result<Value, String>,
) {
    let Some((first, rest)) = out.split_first() else {
        report.fail("interop.py printed nothing");
        return;
    };
    if let Some(missing) = first.strip_prefix("missing ") {
        report.fail(format!("Python module missing: {missing}"));
        return;
    }
    report
        .notes
        .push(first.trim_start_matches("ok ").to_owned());
    if rest.len() != sent.len() {
        report.fail(format!(
            "interop.py answered {} lines for {} values",
            rest.len(),
            sent.len()
        ));
    }
    for (v, line) in sent.iter().zip(rest) {
        if let Some(err) = line.strip_prefix('!') {
            report.fail(format!("{}: Python error {err}", notation::print(v)));
            continue;
        }
        match read(line) {
            Ok(got) => report.check(same_interop(v, &got), || {
                format!("sent {} got {}", notation::print(v), notation::print(&got))
            }),
            Err(e) => report.fail(format!("{}: {e}", notation::print(v))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_deterministic_and_covers_every_variant() {
        let a = generate(CodecId::SERPENT, 7, 3000);
        let b = generate(CodecId::SERPENT, 7, 3000);
        assert_eq!(
            notation::print(&Value::List(a.clone())),
            notation::print(&Value::List(b))
        );
        fn kinds(values: &[Value]) -> std::collections::BTreeSet<&'static str> {
            let mut seen = std::collections::BTreeSet::new();
            values.iter().for_each(|v| walk(v, &mut seen));
            seen
        }
        fn walk(v: &Value, seen: &mut std::collections::BTreeSet<&'static str>) {
            seen.insert(match v {
                Value::Null => "null",
                Value::Bool(_) => "bool",
                Value::Int(_) => "int",
                Value::BigInt(_) => "bigint",
                Value::Float(_) => "float",
                Value::Str(_) => "str",
                Value::Bytes(_) => "bytes",
                Value::List(_) => "list",
                Value::Tuple(_) => "tuple",
                Value::Set(_) => "set",
                Value::Map(_) => "map",
                // msgpack-only: the generator makes none (checked below).
                Value::Ext { .. } => "ext",
            });
            match v {
                Value::List(x) | Value::Tuple(x) | Value::Set(x) => {
                    x.iter().for_each(|e| walk(e, seen))
                }
                Value::Map(m) => m.iter().for_each(|(k, e)| {
                    walk(k, seen);
                    walk(e, seen)
                }),
                _ => {}
            }
        }
        let seen = kinds(&a);
        assert_eq!(seen.len(), 11, "{seen:?}");
        assert!(!seen.contains("ext"), "{seen:?}");
        let json = kinds(&generate(CodecId::JSON, 7, 2000));
        for absent in ["bytes", "tuple", "set"] {
            assert!(!json.contains(absent), "json domain has {absent}");
        }
        assert_eq!(json.len(), 8, "{json:?}");
    }
}
