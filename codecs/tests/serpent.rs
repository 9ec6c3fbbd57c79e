//! serpent codec tests: float repr against CPython, parser acceptance and errors, typed serde
//! round trips, and property tests (round trips, never panicking on garbage).
#![cfg(feature = "serpent")]

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use num_bigint::BigInt;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use wirecall_codecs::serpent::{
    self, complex_value, from_slice, parse_value, repr_float, repr_str, to_vec, to_writer,
    value_to_writer, SerpentErrorKind as K, SerpentOptions,
};
use wirecall_codecs::Value;

// ---------------------------------------------------------------------------------------
// helpers

fn compact() -> SerpentOptions {
    SerpentOptions::default().header(false)
}

fn enc(v: &Value) -> String {
    let mut out = Vec::new();
    value_to_writer(v, &mut out, &compact()).unwrap();
    String::from_utf8(out).unwrap()
}

fn enc_with(v: &Value, opts: &SerpentOptions) -> String {
    try_enc_with(v, opts).unwrap()
}

fn try_enc_with(v: &Value, opts: &SerpentOptions) -> Result<String, serpent::SerpentError> {
    let mut out = Vec::new();
    value_to_writer(v, &mut out, opts)?;
    Ok(String::from_utf8(out).unwrap())
}

fn parse(s: &str) -> Value {
    parse_value(s.as_bytes(), 200).unwrap_or_else(|e| panic!("parse {s:?}: {e}"))
}

fn parse_err(s: &str) -> serpent::SerpentError {
    match parse_value(s.as_bytes(), 200) {
        Ok(v) => panic!("{s:?} should not parse, got {v:?}"),
        Err(e) => e,
    }
}

fn s(x: &str) -> Value {
    Value::Str(x.to_owned())
}

fn i(x: i128) -> Value {
    Value::Int(x)
}

fn same(a: &Value, b: &Value) -> bool {
    a.same_as(b)
}

// ---------------------------------------------------------------------------------------
// float repr

#[test]
fn float_repr_table() {
    let table: &[(f64, &str)] = &[
        (1e16, "1e+16"),
        (1e15, "1000000000000000.0"),
        (1e-4, "0.0001"),
        (1e-5, "1e-05"),
        (1e-7, "1e-07"),
        (0.1, "0.1"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (5e-324, "5e-324"),
        (1.0, "1.0"),
        (-0.0, "-0.0"),
        (1.2345678901234568e20, "1.2345678901234568e+20"),
        (9999999999999998.0, "9999999999999998.0"),
        (1.5e-5, "1.5e-05"),
        (2.5e-300, "2.5e-300"),
    ];
    for &(v, want) in table {
        let mut out = String::new();
        repr_float(v, &mut out);
        assert_eq!(out, want, "repr({v:e})");
    }
    // serpent's own forms for the non-finite values.
    assert_eq!(enc(&Value::Float(f64::INFINITY)), "1e30000");
    assert_eq!(enc(&Value::Float(f64::NEG_INFINITY)), "-1e30000");
    assert_eq!(
        enc(&Value::Float(f64::NAN)),
        "{'__class__':'float','value':'nan'}"
    );
}

#[test]
fn float_repr_matches_cpython_fixture() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/serpent_floats.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut checked = 0;
    for line in text.lines() {
        let (bits, want) = line.split_once(' ').unwrap();
        let v = f64::from_bits(u64::from_str_radix(bits, 16).unwrap());
        let mut got = String::new();
        repr_float(v, &mut got);
        assert_eq!(got, want, "repr of bits {bits}");
        if v.is_finite() {
            // What serpent writes parses back to the same bits.
            let back = parse(&got);
            assert!(same(&back, &Value::Float(v)), "{got} parsed as {back:?}");
        }
        checked += 1;
    }
    assert!(checked > 5000, "fixture too small: {checked}");
}

proptest! {
    #[test]
    fn repr_float_round_trips(bits in any::<u64>()) {
        let v = f64::from_bits(bits);
        prop_assume!(v.is_finite());
        let mut text = String::new();
        repr_float(v, &mut text);
        prop_assert!(text.contains('.') || text.contains('e'), "{} lacks . or e", text);
        let back: f64 = text.parse().unwrap();
        prop_assert_eq!(back.to_bits(), v.to_bits());
        let parsed: f64 = from_slice(text.as_bytes(), 200).unwrap();
        prop_assert_eq!(parsed.to_bits(), v.to_bits());
    }
}

// ---------------------------------------------------------------------------------------
// str repr

#[test]
fn str_repr_examples() {
    let cases: &[(&str, &str)] = &[
        ("it's", "\"it's\""),
        ("say \"hi\"", "'say \"hi\"'"),
        ("it's \"q\"", "'it\\'s \"q\"'"),
        ("a\nb\tc\rd\0e\x07f\x7f", "'a\\nb\\tc\\rd\\x00e\\x07f\\x7f'"),
        (
            "\u{a0}\u{ad}\u{85}\u{2028}\u{200b}\u{feff}\u{e0001}",
            "'\\xa0\\xad\\x85\\u2028\\u200b\\ufeff\\U000e0001'",
        ),
        ("héllo €uro 日本 😀", "'héllo €uro 日本 😀'"),
        ("", "''"),
    ];
    for &(input, want) in cases {
        let mut out = String::new();
        repr_str(input, &mut out);
        assert_eq!(out, want);
    }
}

proptest! {
    #[test]
    fn str_round_trips(text in any::<String>()) {
        let v = Value::Str(text.clone());
        let out = enc(&v);
        prop_assert!(!out.contains('\n') && !out.contains('\r') && !out.contains('\0'));
        prop_assert_eq!(parse(&out), v);
        let typed: String = from_slice(out.as_bytes(), 200).unwrap();
        prop_assert_eq!(typed, text);
    }
}

// ---------------------------------------------------------------------------------------
// encoder shapes (expected texts checked against Python serpent 1.43)

#[test]
fn value_shapes() {
    assert_eq!(enc(&Value::Tuple(vec![i(1)])), "(1,)");
    assert_eq!(enc(&Value::Tuple(vec![])), "()");
    assert_eq!(enc(&Value::Set(vec![])), "()");
    assert_eq!(enc(&Value::Set(vec![i(1), i(2)])), "{1,2}");
    assert_eq!(
        enc(&Value::Map(vec![(s("b"), i(1)), (s("a"), i(2))])),
        "{'b':1,'a':2}"
    );
    assert_eq!(
        enc(&Value::Map(vec![(Value::Tuple(vec![i(1), i(2)]), s("t"))])),
        "{(1,2):'t'}"
    );
    assert_eq!(
        enc(&Value::Map(vec![
            (Value::Bool(true), i(1)),
            (Value::Float(1.5), i(2))
        ])),
        "{True:1,1.5:2}"
    );
    assert_eq!(
        enc(&Value::Bytes(b"hello\x00\xff".to_vec())),
        "{'data': 'aGVsbG8A/w==', 'encoding': 'base64'}"
    );
    assert_eq!(
        enc_with(
            &Value::Bytes(b"it's\x00\xff".to_vec()),
            &compact().bytes_repr(true)
        ),
        "b\"it's\\x00\\xff\""
    );
    assert_eq!(enc(&complex_value(1.0, -0.0)), "(1.0-0.0j)");
    assert_eq!(
        enc(&Value::Tuple(vec![
            s("test.calc"),
            s("add"),
            Value::Tuple(vec![i(1), i(2)]),
            Value::Map(vec![])
        ])),
        "('test.calc','add',(1,2),{})"
    );
    let big: BigInt = "-10000000000000000000000000000000000000000"
        .parse()
        .unwrap();
    assert_eq!(
        enc(&Value::BigInt(big)),
        "-10000000000000000000000000000000000000000"
    );
    let mut with_header = Vec::new();
    value_to_writer(&Value::Null, &mut with_header, &SerpentOptions::default()).unwrap();
    assert_eq!(with_header, b"# serpent utf-8 python3.2\nNone");
}

#[test]
fn encoder_refuses_what_python_refuses() {
    for key in [
        Value::Null,
        Value::List(vec![]),
        Value::Map(vec![]),
        Value::Set(vec![]),
    ] {
        let mut out = Vec::new();
        let e = value_to_writer(&Value::Map(vec![(key.clone(), i(0))]), &mut out, &compact())
            .unwrap_err();
        assert_eq!(e.kind(), K::Unsupported, "{key:?}");
        let e = value_to_writer(&Value::Set(vec![key]), &mut out, &compact()).unwrap_err();
        assert_eq!(e.kind(), K::Unsupported);
    }
    // The literal grammar takes some of them, as `ast.literal_eval` does: what parses is not
    // always what encodes.
    for (text, v) in [
        ("{None}", Value::Set(vec![Value::Null])),
        ("{None: 1}", Value::Map(vec![(Value::Null, i(1))])),
    ] {
        assert!(same(&parse(text), &v), "{text}");
        assert_eq!(
            try_enc_with(&v, &compact()).unwrap_err().kind(),
            K::Unsupported,
            "{text}"
        );
    }
    // Nesting: levels 0..=200 are fine, a value at level 201 is not (Python's maximum_level):
    // 201 nested lists encode, 202 do not (checked with serpent 1.43).
    let mut v = Value::List(vec![]);
    for _ in 0..201 {
        v = Value::List(vec![v]);
    }
    let mut out = Vec::new();
    assert_eq!(
        value_to_writer(&v, &mut out, &compact())
            .unwrap_err()
            .kind(),
        K::TooDeep
    );
    let mut v = Value::List(vec![]);
    for _ in 0..200 {
        v = Value::List(vec![v]);
    }
    value_to_writer(&v, &mut out, &compact()).unwrap();
    // A huge hex literal parses (Python has no digit limit for power-of-two bases), but is
    // refused for writing without a slow decimal conversion, and is inf as a float.
    let hex = format!("0x{}", "f".repeat(200_000));
    let huge = parse_value(hex.as_bytes(), 200).unwrap();
    let t = std::time::Instant::now();
    assert_eq!(
        value_to_writer(&huge, &mut out, &compact())
            .unwrap_err()
            .kind(),
        K::Unsupported
    );
    let as_float: f64 = from_slice(hex.as_bytes(), 200).unwrap();
    assert_eq!(as_float, f64::INFINITY);
    let e = from_slice::<i64>(hex.as_bytes(), 200).unwrap_err();
    assert!(e.message().contains("800000 bits"), "{e}");
    assert!(t.elapsed() < std::time::Duration::from_secs(2));
    // More than 4300 digits.
    let huge = BigInt::from(10).pow(4300);
    assert_eq!(
        value_to_writer(&Value::BigInt(huge), &mut out, &compact())
            .unwrap_err()
            .kind(),
        K::Unsupported
    );
}

// ---------------------------------------------------------------------------------------
// typed serde

#[derive(Debug, Clone, PartialEq)]
struct Blob(Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Blob;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Blob, E> {
                Ok(Blob(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Rec {
    name: String,
    tags: Vec<String>,
    pos: (f64, i32),
    blob: Blob,
    opt: Option<i32>,
    n: BTreeMap<i32, String>,
}

fn rec() -> Rec {
    Rec {
        name: "x".into(),
        tags: vec!["a".into(), "b".into()],
        pos: (1.5, -2),
        blob: Blob(vec![0, 1]),
        opt: None,
        n: [(1, "one".to_owned()), (2, "two".to_owned())].into(),
    }
}

#[test]
fn typed_struct_matches_python() {
    // Python: serpent.dumps({'name':'x','tags':['a','b'],'pos':(1.5,-2),'blob':b'\x00\x01',
    //                        'opt':None,'n':{1:'one',2:'two'}})
    let out = to_vec(&rec(), &SerpentOptions::default()).unwrap();
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        "# serpent utf-8 python3.2\n{'name':'x','tags':['a','b'],'pos':(1.5,-2),\
         'blob':{'data': 'AAE=', 'encoding': 'base64'},'opt':None,'n':{1:'one',2:'two'}}"
    );
    let back: Rec = from_slice(&out, 200).unwrap();
    assert_eq!(back, rec());
    // The same dict with indent=True.
    let out = to_vec(&rec(), &SerpentOptions::default().indent(true)).unwrap();
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        "# serpent utf-8 python3.2\n{\n  'blob': {'data': 'AAE=', 'encoding': 'base64'},\n  \
         'n': {\n    1: 'one',\n    2: 'two'\n  },\n  'name': 'x',\n  'opt': None,\n  \
         'pos': (\n    1.5,\n    -2\n  ),\n  'tags': [\n    'a',\n    'b'\n  ]\n}"
    );
    let back: Rec = from_slice(&out, 200).unwrap();
    assert_eq!(back, rec());
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Cmd {
    Stop,
    Speed(f64),
    Move { x: i32, y: i32 },
    Pair(u8, String),
}

#[test]
fn typed_enums_and_units() {
    let cases = [
        (Cmd::Stop, "'Stop'"),
        (Cmd::Speed(2.0), "{'Speed':2.0}"),
        (Cmd::Move { x: 1, y: 2 }, "{'Move':{'x':1,'y':2}}"),
        (Cmd::Pair(7, "s".into()), "{'Pair':(7,'s')}"),
    ];
    for (cmd, want) in cases {
        let out = to_vec(&cmd, &compact()).unwrap();
        assert_eq!(std::str::from_utf8(&out).unwrap(), want);
        let back: Cmd = from_slice(&out, 200).unwrap();
        assert_eq!(back, cmd);
        // Indent mode parses back too.
        let out = to_vec(&cmd, &compact().indent(true)).unwrap();
        let back: Cmd = from_slice(&out, 200).unwrap();
        assert_eq!(back, cmd);
    }
    assert_eq!(to_vec(&(), &compact()).unwrap(), b"None");
    assert_eq!(to_vec(&Some(3u8), &compact()).unwrap(), b"3");
    assert_eq!(to_vec(&None::<u8>, &compact()).unwrap(), b"None");
    assert_eq!(to_vec(&(1u8,), &compact()).unwrap(), b"(1,)");
    assert_eq!(to_vec(&'q', &compact()).unwrap(), b"'q'");
    assert_eq!(to_vec(&0.1f32, &compact()).unwrap(), b"0.1");
    assert_eq!(
        to_vec(&u128::MAX, &compact()).unwrap(),
        u128::MAX.to_string().as_bytes()
    );
    assert_eq!(
        to_vec(&f64::NAN, &compact()).unwrap(),
        b"{'__class__':'float','value':'nan'}"
    );
    let x: f64 = from_slice(b"{'__class__':'float','value':'nan'}", 200).unwrap();
    assert!(x.is_nan());
    let x: f64 = from_slice(b"-1e30000", 200).unwrap();
    assert_eq!(x, f64::NEG_INFINITY);
    let x: f64 = from_slice(b"3", 200).unwrap();
    assert_eq!(x, 3.0);
    let u: () = from_slice(b"None", 200).unwrap();
    assert_eq!(u, ());
}

#[test]
fn typed_keys_refused_like_python() {
    let mut m: BTreeMap<Option<u8>, u8> = BTreeMap::new();
    m.insert(None, 1);
    let e = to_vec(&m, &compact()).unwrap_err();
    assert_eq!(e.kind(), K::Unsupported);
    let mut m: BTreeMap<Vec<u8>, u8> = BTreeMap::new();
    m.insert(vec![1], 1);
    assert_eq!(to_vec(&m, &compact()).unwrap_err().kind(), K::Unsupported);
    // Tuple keys are fine.
    let mut m: BTreeMap<(u8, u8), u8> = BTreeMap::new();
    m.insert((1, 2), 3);
    assert_eq!(to_vec(&m, &compact()).unwrap(), b"{(1,2):3}");
    let back: BTreeMap<(u8, u8), u8> = from_slice(b"{(1,2):3}", 200).unwrap();
    assert_eq!(back, m);
}

#[test]
fn typed_conversions() {
    // Python bytes arrive as the base64 dict; Vec<u8> (a seq) and bytes targets take it.
    let v: Vec<u8> = from_slice(b"{'data': 'AAE=', 'encoding': 'base64'}", 200).unwrap();
    assert_eq!(v, vec![0, 1]);
    let b: Blob = from_slice(b"b'\\x00\\x01'", 200).unwrap();
    assert_eq!(b, Blob(vec![0, 1]));
    // Sets and tuples into sequences; lists into tuples.
    let v: Vec<i32> = from_slice(b"{3,1,2}", 200).unwrap();
    assert_eq!(v, vec![3, 1, 2]);
    let t: (i32, String) = from_slice(b"[1, 'a']", 200).unwrap();
    assert_eq!(t, (1, "a".into()));
    // Big ints into i128 / u128.
    let x: i128 = from_slice(b"-170141183460469231731687303715884105728", 200).unwrap();
    assert_eq!(x, i128::MIN);
    let x: u128 = from_slice(b"340282366920938463463374607431768211455", 200).unwrap();
    assert_eq!(x, u128::MAX);
    // Type errors carry the position of the offending value.
    let e = from_slice::<Vec<u8>>(b"[1,\n 300]", 200).unwrap_err();
    let p = e.position().expect("position");
    assert_eq!((p.line, p.column), (2, 2), "{e}");
    let e = from_slice::<Rec>(b"{'name': 5}", 200).unwrap_err();
    assert_eq!(e.kind(), K::TypeMismatch);
    assert_eq!(e.position().unwrap().offset, 9, "{e}");
    let e = from_slice::<u8>(b"123456789012345678901234567890123456789012", 200).unwrap_err();
    assert!(e.position().is_some());
}

// ---------------------------------------------------------------------------------------
// parser acceptance (expected values are what ast.literal_eval gives)

#[test]
fn parser_accepts_python_literal_syntax() {
    let cases: Vec<(&str, Value)> = vec![
        ("# serpent utf-8 python3.2\n42", i(42)),
        (
            "# c1\n\n# c2\r\n  [1, # x\n 2, ]  # t\n\n",
            Value::List(vec![i(1), i(2)]),
        ),
        ("(1)", i(1)),
        ("(1,)", Value::Tuple(vec![i(1)])),
        ("( 1 , 2 , )", Value::Tuple(vec![i(1), i(2)])),
        ("1, 2", Value::Tuple(vec![i(1), i(2)])),
        ("set()", Value::Set(vec![])),
        ("{1, 2,}", Value::Set(vec![i(1), i(2)])),
        (
            "{'a': 1, 'b': (2,),}",
            Value::Map(vec![(s("a"), i(1)), (s("b"), Value::Tuple(vec![i(2)]))]),
        ),
        ("- 5", i(-5)),
        ("+5", i(5)),
        ("00", i(0)),
        ("1_000", i(1000)),
        ("0x_1f", i(31)),
        ("0o17", i(15)),
        ("0b101", i(5)),
        ("-0xFF", i(-255)),
        ("1.", Value::Float(1.0)),
        (".5", Value::Float(0.5)),
        ("1.e5", Value::Float(1e5)),
        ("01.5", Value::Float(1.5)),
        ("1E-2", Value::Float(0.01)),
        ("1e30000", Value::Float(f64::INFINITY)),
        ("-1e30000", Value::Float(f64::NEG_INFINITY)),
        ("-0.0", Value::Float(-0.0)),
        ("(1.0+2.0j)", complex_value(1.0, 2.0)),
        ("(1.0-0.0j)", complex_value(1.0, 0.0)),
        ("-1j", complex_value(-0.0, -1.0)),
        ("3J", complex_value(0.0, 3.0)),
        ("1 + 2j", complex_value(1.0, 2.0)),
        ("(1)+2j", complex_value(1.0, 2.0)),
        ("(1e30000+4.0j)", complex_value(f64::INFINITY, 4.0)),
        ("'a' \"b\"", s("ab")),
        ("u'x'", s("x")),
        ("r'\\n\\''", s("\\n\\'")),
        ("r'a\\\nb'", s("a\\\nb")),
        ("'''a\nb'c'''", s("a\nb'c")),
        ("\"\"\"x\r\ny\"\"\"", s("x\ny")),
        (
            "'\\a\\b\\f\\v\\0\\101\\777\\x41\\u20ac\\U0001F600\\q'",
            s("\x07\x08\x0c\x0b\0AǿA€😀\\q"),
        ),
        ("'line\\\ncont'", s("linecont")),
        (
            "b'\\x00\\777\\u1234'",
            Value::Bytes(b"\x00\xff\\u1234".to_vec()),
        ),
        ("Rb'\\x'", Value::Bytes(b"\\x".to_vec())),
        ("b'a' b'b'", Value::Bytes(b"ab".to_vec())),
        ("'hello€'", s("hello€")),
        (
            "{'x': [\n  None,\n  True,\n  False\n]}",
            Value::Map(vec![(
                s("x"),
                Value::List(vec![Value::Null, Value::Bool(true), Value::Bool(false)]),
            )]),
        ),
        ("\u{feff}7", i(7)),
        ("[1, \\\n 2]", Value::List(vec![i(1), i(2)])),
    ];
    for (text, want) in cases {
        let got = parse(text);
        assert!(same(&got, &want), "{text:?}: got {got:?}, want {want:?}");
    }
    // Repeated keys and members collapse as in Python (first key, last value).
    let dedup: Vec<(&str, Value)> = vec![
        (
            "{1:'a', True:'b', 1.0:'c', 2:'d', (1+0j):'e'}",
            Value::Map(vec![(i(1), s("e")), (i(2), s("d"))]),
        ),
        ("{0:1, -0.0:2, 0j:3}", Value::Map(vec![(i(0), i(3))])),
        (
            "{1, True, 1.0, 2, (1,2), (True, 2.0)}",
            Value::Set(vec![i(1), i(2), Value::Tuple(vec![i(1), i(2)])]),
        ),
        (
            "{'a':1, 'b':2, 'a':3}",
            Value::Map(vec![(s("a"), i(3)), (s("b"), i(2))]),
        ),
        (
            "{1e20: 1, 100000000000000000000: 2}",
            Value::Map(vec![(Value::Float(1e20), i(2))]),
        ),
        (
            "{1.5:1, (1.5+0j):2, 1j:3, 1j:4}",
            Value::Map(vec![
                (Value::Float(1.5), i(2)),
                (complex_value(0.0, 1.0), i(4)),
            ]),
        ),
    ];
    for (text, want) in dedup {
        let got = parse(text);
        assert!(same(&got, &want), "{text:?}: got {got:?}, want {want:?}");
    }
    let big = parse("123456789012345678901234567890123456789012345678901234567890");
    assert_eq!(
        big,
        Value::BigInt(
            "123456789012345678901234567890123456789012345678901234567890"
                .parse()
                .unwrap()
        )
    );
    assert_eq!(
        parse("-170141183460469231731687303715884105728"),
        i(i128::MIN)
    );
    assert_eq!(
        parse("170141183460469231731687303715884105728"),
        Value::BigInt("170141183460469231731687303715884105728".parse().unwrap())
    );
}

#[test]
fn parser_errors_are_typed_and_positioned() {
    let cases: &[(&str, K, (usize, usize))] = &[
        ("", K::UnexpectedEof, (1, 1)),
        ("# only a comment\n", K::UnexpectedEof, (2, 1)),
        ("[1, 2", K::UnexpectedEof, (1, 6)),
        ("{'a': 1", K::UnexpectedEof, (1, 8)),
        ("'abc", K::UnterminatedString, (1, 1)),
        ("[1,\n 'ab\ncd']", K::UnterminatedString, (2, 2)),
        ("'''abc''", K::UnterminatedString, (1, 1)),
        ("'\\x4'", K::BadEscape, (1, 2)),
        ("'ab\\U00110000'", K::BadEscape, (1, 4)),
        ("'\\N{DASH}'", K::UnsupportedEscape, (1, 2)),
        ("'\\ud800'", K::UnsupportedEscape, (1, 2)),
        ("01", K::BadNumber, (1, 1)),
        ("1__0", K::BadNumber, (1, 2)),
        ("1e", K::BadNumber, (1, 2)),
        ("12abc", K::BadNumber, (1, 3)),
        ("nan", K::Syntax, (1, 1)),
        ("foo(1)", K::Syntax, (1, 1)),
        ("1 + 2", K::Syntax, (1, 3)),
        ("1 + -2j", K::Syntax, (1, 3)),
        ("[1 2]", K::Syntax, (1, 4)),
        ("{[1]: 2}", K::Syntax, (1, 2)),
        ("{(1, [2])}", K::Syntax, (1, 2)),
        ("'a' b'b'", K::Syntax, (1, 5)),
        ("f'x'", K::Syntax, (1, 1)),
        ("b'é'", K::Syntax, (1, 3)),
        ("1\n2", K::TrailingCharacters, (2, 1)),
        ("1,\n2", K::TrailingCharacters, (2, 1)),
        ("[1] ]", K::TrailingCharacters, (1, 5)),
        ("(,)", K::Syntax, (1, 2)),
        ("'a\0'", K::NulCharacter, (1, 3)),
        ("é\u{0}", K::NulCharacter, (1, 2)),
    ];
    for &(text, kind, (line, col)) in cases {
        let e = parse_err(text);
        assert_eq!(e.kind(), kind, "{text:?}: {e}");
        let p = e
            .position()
            .unwrap_or_else(|| panic!("{text:?}: no position in {e}"));
        assert_eq!((p.line, p.column), (line, col), "{text:?}: {e}");
        assert!(e.to_string().contains("line"), "{e}");
    }
    // Invalid UTF-8.
    let e = parse_value(b"'ab\xff'", 200).unwrap_err();
    assert_eq!(e.kind(), K::InvalidUtf8);
    assert_eq!(e.position().unwrap().offset, 3);
    // Over-deep nesting: 200 brackets parse, 201 do not.
    let ok = format!("{}{}", "[".repeat(200), "]".repeat(200));
    parse_value(ok.as_bytes(), 200).unwrap();
    let deep = format!("{}{}", "[".repeat(201), "]".repeat(201));
    let e = parse_value(deep.as_bytes(), 200).unwrap_err();
    assert_eq!(e.kind(), K::TooDeep);
    assert_eq!(e.position().unwrap().offset, 200);
    let e = from_slice::<Value2>(deep.as_bytes(), 200).unwrap_err();
    assert_eq!(e.kind(), K::TooDeep);
    // A deep document with a small limit.
    let e = parse_value(b"((((1,),),),)", 3).unwrap_err();
    assert_eq!(e.kind(), K::TooDeep);
    // Too many digits (Python's 4300-digit limit).
    let e = parse_value("9".repeat(4301).as_bytes(), 200).unwrap_err();
    assert_eq!(e.kind(), K::BadNumber);
    parse_value("9".repeat(4300).as_bytes(), 200).unwrap();
}

#[test]
fn depth_is_capped_so_the_stack_cannot_overflow() {
    // Even with an unlimited request, nesting stops at MAX_DEPTH_CAP (500) levels, which
    // parse, deserialize, convert and drop fine on a 2 MiB test-thread stack in debug builds.
    assert_eq!(serpent::MAX_DEPTH_CAP, 500);
    let ok = format!("{}{}", "[".repeat(500), "]".repeat(500));
    let v = parse_value(ok.as_bytes(), usize::MAX).unwrap();
    let _typed: Value2 = from_slice(ok.as_bytes(), usize::MAX).unwrap();
    let mut out = Vec::new();
    value_to_writer(&v, &mut out, &compact().max_depth(usize::MAX)).unwrap();
    assert_eq!(out, ok.as_bytes());
    let deep = format!("{}{}", "(".repeat(100_000), ")".repeat(100_000));
    let e = parse_value(deep.as_bytes(), usize::MAX).unwrap_err();
    assert_eq!(e.kind(), K::TooDeep);
    assert_eq!(e.position().unwrap().offset, serpent::MAX_DEPTH_CAP);
    let e = from_slice::<Value2>(deep.as_bytes(), usize::MAX).unwrap_err();
    assert_eq!(e.kind(), K::TooDeep);
    let mut v = Value::List(vec![]);
    for _ in 0..100_000 {
        v = Value::List(vec![v]);
    }
    let e = value_to_writer(&v, &mut out, &compact().max_depth(usize::MAX)).unwrap_err();
    assert_eq!(e.kind(), K::TooDeep);
    // Dismantle iteratively: dropping 100k nested Vecs recursively could itself overflow.
    let mut cur = v;
    while let Value::List(mut items) = cur {
        cur = items.pop().unwrap_or(Value::Null);
    }
}

/// A recursive type for the typed depth check.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Value2(Vec<Value2>);

// ---------------------------------------------------------------------------------------
// property tests

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i128>().prop_map(Value::Int),
        (any::<bool>(), any::<[u64; 3]>()).prop_map(|(neg, limbs)| {
            let mut b = BigInt::from(limbs[0] | 1) << 130u32;
            b += BigInt::from(limbs[1]) << 64u32;
            b += BigInt::from(limbs[2]);
            Value::BigInt(if neg { -b } else { b })
        }),
        any::<f64>()
            .prop_filter("NaN becomes a dict", |f| !f.is_nan())
            .prop_map(Value::Float),
        ".{0,12}".prop_map(Value::Str),
        any::<String>().prop_map(Value::Str),
        (any::<f64>(), any::<f64>())
            // Python's literal arithmetic turns (-0.0+0.0j) into 0j: only test values that
            // survive it (no NaN, no negative zero parts).
            .prop_filter("no NaN or -0.0", |(a, b)| {
                !a.is_nan()
                    && !b.is_nan()
                    && (*a != 0.0 || a.is_sign_positive())
                    && (*b != 0.0 || b.is_sign_positive())
            })
            .prop_map(|(a, b)| complex_value(a, b)),
    ]
}

fn key() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|v| Value::Int(v.into())),
        any::<f64>()
            .prop_filter("no NaN", |f| !f.is_nan())
            .prop_map(Value::Float),
        "[a-z'\"\\\\]{0,6}".prop_map(Value::Str),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop::collection::vec(inner, 0..3).prop_map(Value::Tuple)
    })
}

/// Python `==` for the keys `key()` generates (1 == 1.0 == True, -0.0 == 0, tuples by item).
fn key_eq(a: &Value, b: &Value) -> bool {
    let int_of = |v: &Value| match v {
        Value::Bool(b) => Some(i128::from(*b)),
        Value::Int(i) => Some(*i),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e38 => Some(*f as i128),
        _ => None,
    };
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Tuple(x), Value::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| key_eq(p, q))
        }
        _ => matches!((int_of(a), int_of(b)), (Some(x), Some(y)) if x == y),
    }
}

/// Keeps the first of each group of Python-equal keys (what a Python dict or set holds).
fn dedup_by_key_eq<T>(items: &mut Vec<T>, key: impl Fn(&T) -> &Value) {
    let mut kept: Vec<T> = Vec::new();
    for item in items.drain(..) {
        if !kept.iter().any(|k| key_eq(key(k), key(&item))) {
            kept.push(item);
        }
    }
    *items = kept;
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Tuple),
            prop::collection::vec(key(), 1..5).prop_map(|mut items| {
                dedup_by_key_eq(&mut items, |v| v);
                Value::Set(items)
            }),
            prop::collection::vec((key(), inner), 0..5).prop_map(|mut entries| {
                dedup_by_key_eq(&mut entries, |e| &e.0);
                Value::Map(entries)
            }),
        ]
    })
}

/// Sorts map entries and set members into a canonical order so indent-mode output (which
/// sorts) can be compared with the input.
fn canon(v: &Value) -> Value {
    let key_of = |v: &Value| enc(v);
    match v {
        Value::List(x) => Value::List(x.iter().map(canon).collect()),
        Value::Tuple(x) => Value::Tuple(x.iter().map(canon).collect()),
        Value::Set(x) => {
            let mut items: Vec<Value> = x.iter().map(canon).collect();
            items.sort_by_key(key_of);
            Value::Set(items)
        }
        Value::Map(x) => {
            let mut e: Vec<(Value, Value)> = x.iter().map(|(k, v)| (canon(k), canon(v))).collect();
            e.sort_by_key(|(k, v)| (key_of(k), key_of(v)));
            Value::Map(e)
        }
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn value_round_trips(v in value()) {
        let out = enc(&v);
        let back = parse_value(out.as_bytes(), 200).unwrap();
        prop_assert!(same(&back, &v), "{} parsed as {:?}", out, back);
        // Encoding is deterministic and stable.
        prop_assert_eq!(enc(&back), out);
    }

    #[test]
    fn value_round_trips_indented(v in value()) {
        let opts = SerpentOptions::default().indent(true);
        let out = enc_with(&v, &opts);
        let back = parse_value(out.as_bytes(), 200).unwrap();
        prop_assert!(same(&canon(&back), &canon(&v)), "{} parsed as {:?}", out, back);
        // Sorting is idempotent: re-encoding the parsed value gives the same text.
        prop_assert_eq!(enc_with(&back, &opts), out);
    }

    #[test]
    fn bytes_round_trip(data in prop::collection::vec(any::<u8>(), 0..64)) {
        let v = Value::Bytes(data.clone());
        let repr = enc_with(&v, &compact().bytes_repr(true));
        prop_assert_eq!(parse(&repr), v.clone());
        let b64 = enc(&v);
        prop_assert_eq!(serpent::tobytes(&parse(&b64)), Some(data.clone()));
        let typed: Blob = from_slice(b64.as_bytes(), 200).unwrap();
        prop_assert_eq!(typed.0, data);
    }

    #[test]
    fn typed_round_trips(
        name in any::<String>(),
        tags in prop::collection::vec(any::<String>(), 0..4),
        x in any::<f64>().prop_filter("no NaN", |f| !f.is_nan()),
        y in any::<i32>(),
        blob in prop::collection::vec(any::<u8>(), 0..16),
        opt in any::<Option<i32>>(),
        n in prop::collection::btree_map(any::<i32>(), any::<String>(), 0..4),
    ) {
        let r = Rec { name, tags, pos: (x, y), blob: Blob(blob), opt, n };
        for opts in [SerpentOptions::default(), SerpentOptions::default().indent(true), SerpentOptions::default().bytes_repr(true)] {
            let mut out = Vec::new();
            to_writer(&r, &mut out, &opts).unwrap();
            let back: Rec = from_slice(&out, 200).unwrap();
            prop_assert_eq!(back.pos.0.to_bits(), r.pos.0.to_bits());
            prop_assert_eq!(&back, &r);
        }
    }

    #[test]
    fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_value(&data, 200);
        let _ = from_slice::<Rec>(&data, 200);
    }

    #[test]
    fn mutated_documents_never_panic(v in value(), cuts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut doc = enc(&v).into_bytes();
        for (idx, byte) in cuts {
            if doc.is_empty() { break; }
            let at = idx.index(doc.len());
            match byte % 3 {
                0 => { doc.truncate(at); }
                1 => { doc[at] = byte; }
                _ => { doc.insert(at, b"([{'\"\\,:j#"[usize::from(byte) % 10]); }
            }
        }
        match parse_value(&doc, 200) {
            Ok(_) => {}
            Err(e) => prop_assert!(e.position().is_some(), "no position: {}", e),
        }
        let _ = from_slice::<Vec<Rec>>(&doc, 200);
    }
}

const TOKENS: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "'a'",
    "\"b\"",
    "b'x'",
    "1",
    "-",
    "+",
    "2j",
    "1.5",
    "None",
    "True",
    "#c\n",
    "\n",
    " ",
    "\\\n",
    "'''q'''",
    "r'\\'",
    "0x1f",
    "_",
    "e5",
    "set()",
    ".",
    "1e30000",
    "'\\x41'",
    "'\\u20ac'",
    "0",
    "00",
    "9999999999999999999999999999999999999999",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Token soup: whatever parses re-encodes to a fixpoint (encode, parse, encode gives the
    /// same text; one step may normalise, e.g. `set()` to `()` as in Python), unless the
    /// encoder refuses it as unsupported, as Python's serpent does (the literal grammar takes
    /// `{None}`, serpent writes no `None` as a set member or dict key); whatever fails to
    /// parse must fail with a position.
    #[test]
    fn token_soup_parses_consistently(picks in prop::collection::vec(0..TOKENS.len(), 0..24)) {
        let text: String = picks.iter().map(|&i| TOKENS[i]).collect();
        match parse_value(text.as_bytes(), 200) {
            Ok(v) => {
                // bytes_repr keeps bytes as bytes (the base64 dict would parse as a dict).
                let opts = compact().bytes_repr(true);
                let out = match try_enc_with(&v, &opts) {
                    Ok(out) => out,
                    Err(e) => {
                        prop_assert_eq!(e.kind(), K::Unsupported, "{:?}: {}", text, e);
                        return Ok(());
                    }
                };
                let again = parse_value(out.as_bytes(), 200)
                    .unwrap_or_else(|e| panic!("{text:?} -> {out:?} does not parse: {e}"));
                prop_assert_eq!(enc_with(&again, &opts), out, "from {:?}", text);
            }
            Err(e) => prop_assert!(e.position().is_some(), "{}", e),
        }
        let _ = from_slice::<Vec<Option<(i64, String)>>>(text.as_bytes(), 200);
    }
}

#[test]
fn encode_errors_name_the_path() {
    let v = Value::Map(vec![(
        s("items"),
        Value::List(vec![i(1), Value::Map(vec![(Value::Null, i(1))])]),
    )]);
    for opts in [compact(), compact().indent(true)] {
        let mut out = Vec::new();
        let e = value_to_writer(&v, &mut out, &opts).unwrap_err();
        assert_eq!(e.kind(), K::Unsupported);
        assert_eq!(e.path().as_deref(), Some("$['items'][1]{key 0}"), "{e}");
        assert!(e.to_string().contains("at $['items'][1]{key 0}"), "{e}");
    }

    #[derive(Serialize)]
    struct Outer {
        name: String,
        maps: Vec<BTreeMap<Option<u8>, u8>>,
    }
    let bad = Outer {
        name: "x".into(),
        maps: vec![[(None, 1)].into()],
    };
    let e = to_vec(&bad, &compact()).unwrap_err();
    assert_eq!(e.path().as_deref(), Some("$.maps[0]{key 0}"), "{e}");
    let e = to_vec(&bad, &compact().indent(true)).unwrap_err();
    assert_eq!(e.kind(), K::Unsupported, "{e}");
    // Too deep: the path shows where.
    let mut deep = Value::Null;
    for _ in 0..3 {
        deep = Value::List(vec![deep]);
    }
    let e = value_to_writer(&deep, &mut Vec::new(), &compact().max_depth(2)).unwrap_err();
    assert_eq!(e.kind(), K::TooDeep);
    assert_eq!(e.path().as_deref(), Some("$[0][0][0]"), "{e}");
}
