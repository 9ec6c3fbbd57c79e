//! The marshal codec: exact bytes (checked against CPython 3.11's `marshal.dumps`), the
//! typed mapping, hostile input and proptest round trips. The differential test against
//! Python itself is `marshal_python.rs`.
#![cfg(feature = "marshal")]

mod common;

use std::collections::BTreeMap;

use common::{Bytes, Inner, Record, Tree, BA, E};
use proptest::prelude::*;
use wirecall_codecs::{Codec, ErrorKind, Limits, Marshal, Value};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn enc(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    Marshal::encode_value(v, &mut out).unwrap();
    out
}

fn dec(b: &[u8]) -> Result<Value, wirecall_codecs::CodecError> {
    Marshal::decode_value(b, &Limits::DEFAULT)
}

fn s(x: &str) -> Value {
    Value::Str(x.into())
}

fn i(x: i128) -> Value {
    Value::Int(x)
}

#[test]
fn bytes_match_cpython() {
    // marshal.dumps(marshal.loads(marshal.dumps(x, 2)), 4) in CPython 3.11.7 / 3.12.1.
    let cases: Vec<(Value, &str)> = vec![
        (Value::Null, "4e"),
        (Value::Bool(true), "54"),
        (i(1), "e9 01000000"),
        (i(1000), "69 e8030000"),
        (i(-6), "69 faffffff"),
        (i(1 << 40), "6c 03000000 0000 0000 0004"),
        (i(-(1 << 31)), "69 00000080"),
        (i(1 << 31), "6c 03000000 0000 0000 0200"),
        (Value::Float(1.5), "67 000000000000f83f"),
        (s(""), "da 00"),
        (s("a"), "fa 01 61"),
        (s("ab"), "7a 02 6162"),
        (s("é"), "f5 02000000 c3a9"),
        (s("€"), "75 03000000 e282ac"),
        (Value::Bytes(vec![]), "f3 00000000"),
        (Value::Bytes(b"x".to_vec()), "73 01000000 78"),
        (Value::Tuple(vec![]), "a9 00"),
        (Value::Tuple(vec![i(1)]), "29 01 e9 01000000"),
        (
            Value::List(vec![i(1), i(2), i(1)]),
            "5b 03000000 e9 01000000 e9 02000000 72 00000000",
        ),
        (
            Value::Map(vec![
                (s("k"), i(1)),
                (s("kk"), Value::List(vec![])),
                (i(7), Value::Tuple(vec![i(1), i(2)])),
            ]),
            "7b fa 01 6b e9 01000000 7a 02 6b6b 5b 00000000 e9 07000000 29 02 72 01000000 \
             e9 02000000 30",
        ),
        // Members sorted by their own dump, every member flagged.
        (
            Value::Set(vec![i(3), i(1), i(2), i(-1)]),
            "3c 04000000 e9 01000000 e9 02000000 e9 03000000 e9 ffffffff",
        ),
        (
            Value::Set(vec![i(300), s("zz")]),
            "3c 02000000 e9 2c010000 fa 02 7a7a",
        ),
        (Value::Set(vec![]), "3c 00000000"),
        (
            serpent_complex(1.0, 2.0),
            "79 000000000000f03f 0000000000000040",
        ),
    ];
    for (v, want) in cases {
        assert_eq!(enc(&v), hex(want), "{v}");
        assert!(same_unordered(&dec(&hex(want)).unwrap(), &v), "{want}");
    }
    // Long strings and tuples switch to 32-bit lengths at 256.
    let long = "x".repeat(256);
    assert_eq!(&enc(&s(&long))[..5], &hex("61 00010000")[..]);
    assert_eq!(&enc(&s(&"x".repeat(255)))[..2], &hex("7a ff")[..]);
    let t = Value::Tuple(vec![Value::Null; 256]);
    assert_eq!(&enc(&t)[..5], &hex("28 00010000")[..]);
}

fn serpent_complex(re: f64, im: f64) -> Value {
    Value::Map(vec![
        (s("__class__"), s("complex")),
        (s("real"), Value::Float(re)),
        (s("imag"), Value::Float(im)),
    ])
}

#[test]
fn reads_what_cpython_writes_in_context() {
    // Python's own dumps of shared objects: a flagged top-level list, interned strings and
    // back references to a container.
    // n = sys.intern('name'); x = [n, n]; marshal.dumps([x, x, n]) in CPython 3.11.7.
    let b = hex("5b 03000000 db 02000000 da 04 6e616d65 72 01000000 72 00000000 72 01000000");
    let inner = Value::List(vec![s("name"), s("name")]);
    assert_eq!(
        dec(&b).unwrap(),
        Value::List(vec![inner.clone(), inner, s("name")])
    );
    // Flags on constants are ignored; ASCII codes are read as Latin-1; text floats.
    assert_eq!(dec(&hex("ce")).unwrap(), Value::Null);
    assert_eq!(dec(&hex("7a 01 e9")).unwrap(), s("é"));
    assert_eq!(dec(&hex("41 02000000 6869")).unwrap(), s("hi"));
    assert_eq!(dec(&hex("74 02000000 6869")).unwrap(), s("hi"));
    assert_eq!(dec(&hex("66 03 312e35")).unwrap(), Value::Float(1.5));
    assert_eq!(
        dec(&hex("3e 01000000 e9 05000000")).unwrap(),
        Value::Set(vec![i(5)])
    );
    // A long of 9+ digits becomes a BigInt; 2**200.
    let big: num_bigint::BigInt = num_bigint::BigInt::from(1u8) << 200;
    let mut b = enc(&Value::BigInt(big.clone()));
    assert_eq!(b[0], b'l');
    assert_eq!(dec(&b).unwrap(), Value::BigInt(big.clone()));
    b = enc(&Value::BigInt(-big.clone()));
    assert_eq!(dec(&b).unwrap(), Value::BigInt(-big));
}

fn decode_err(b: &[u8]) -> wirecall_codecs::CodecError {
    match dec(b) {
        Ok(v) => panic!("{b:02x?} decoded as {v}"),
        Err(e) => e,
    }
}

#[test]
fn bad_input_is_refused() {
    let cases: &[(&str, &str)] = &[
        ("", "end of input"),
        ("30", "NULL object"),
        ("5b 01000000 30", "NULL object"),
        ("7b e9 01000000 30", "key without a value"),
        ("7b e9 01000000 e9 01000000", "unterminated dict"),
        ("63", "code object"),
        ("53", "StopIteration"),
        ("2e", "Ellipsis"),
        ("3f", "unknown type code"),
        ("e9 01000000 00", "trailing"),
        ("4e 4e", "trailing"),
        ("72 00000000", "invalid reference"),
        ("5b 01000000 72 00000000", "invalid reference"),
        ("db 01000000 72 00000000", "still being read"),
        ("5b ffffffff", "negative list size"),
        ("5b ffffff7f", "declared"),
        ("73 ffffff7f 00", "declared"),
        ("75 05000000 616263", "declared"),
        ("61 ffffff7f", "declared"),
        ("7a 05 6162", "needed"),
        ("29 05 4e", "declared"),
        ("6c 00000080", "long size out of range"),
        ("6c ffffff7f 0000", "digits declared"),
        ("6c 01000000 0080", "digit out of range"),
        ("6c 02000000 0100 0000", "unnormalized"),
        ("75 02000000 c328", "not valid UTF-8"),
        ("75 03000000 eda080", "lone surrogate"),
        ("66 03 616263", "invalid float text"),
        ("67 0000", "needed"),
    ];
    for (input, needle) in cases {
        let e = decode_err(&hex(input));
        assert_eq!(e.kind(), ErrorKind::Decode, "{input}: {e}");
        assert!(e.to_string().contains(needle), "{input}: {e}");
        assert!(e.is_peer_fault());
    }
}

#[test]
fn every_truncation_is_an_error() {
    let v = Value::Map(vec![
        (
            s("list"),
            Value::List(vec![i(1), i(1 << 40), Value::Float(2.5)]),
        ),
        (
            Value::Tuple(vec![i(1), s("é")]),
            Value::Set(vec![i(7), s("ab")]),
        ),
        (
            s("big"),
            Value::BigInt(num_bigint::BigInt::from(3u8) << 300),
        ),
        (s("b"), Value::Bytes(vec![1, 2, 3])),
    ]);
    let full = enc(&v);
    assert!(same_unordered(&dec(&full).unwrap(), &v));
    for n in 0..full.len() {
        let e = decode_err(&full[..n]);
        assert_eq!(e.kind(), ErrorKind::Decode, "prefix {n}: {e}");
    }
}

#[test]
fn depth_is_limited_and_references_count_where_expanded() {
    let mut deep = Vec::new();
    for _ in 0..200 {
        deep.extend_from_slice(&hex("29 01"));
    }
    deep.push(b'N');
    let e = decode_err(&deep);
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    assert!(dec(&deep[2 * 73..]).is_ok());
    assert!(Marshal::decode_value(&deep, &Limits::DEFAULT.with_max_depth(200)).is_ok());

    // A 100-deep flagged tuple, then 100 more levels around a reference to it: each part
    // is within 128 levels, the expanded value is not.
    let mut b = hex("29 02");
    for _ in 0..100 {
        b.extend_from_slice(&hex("a9 01"));
    }
    b.push(b'N');
    for _ in 0..100 {
        b.extend_from_slice(&hex("29 01"));
    }
    b.extend_from_slice(&hex("72 00000000"));
    let e = decode_err(&b);
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
}

#[test]
fn reference_bombs_hit_the_input_limit() {
    // L0 = a 1000-byte bytes object; L(k+1) = [ref Lk, ref Lk] flagged: 2^30 KB if expanded.
    let mut b = hex("5b 1f000000 f3 e8030000");
    b.extend(std::iter::repeat_n(0u8, 1000));
    for k in 0..30u32 {
        b.extend_from_slice(&hex("db 02000000 72"));
        b.extend_from_slice(&k.to_le_bytes());
        b.push(0x72);
        b.extend_from_slice(&k.to_le_bytes());
    }
    let e = decode_err(&b);
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    assert!(e.to_string().contains("max_input"), "{e}");
    // A few references to small objects cost nothing against the limit.
    let small = hex("5b 03000000 e9 01000000 72 00000000 72 00000000");
    let tight = Limits::DEFAULT.with_max_input(small.len());
    assert_eq!(
        Marshal::decode_value(&small, &tight).unwrap(),
        Value::List(vec![i(1), i(1), i(1)])
    );
}

#[test]
fn huge_declared_sizes_do_not_allocate() {
    // Each declares far more than the input holds and fails before reserving it.
    for input in [
        "5b feffff7f",
        "28 feffff7f",
        "3c feffff7f",
        "73 feffff7f",
        "6c feffff3f",
    ] {
        let e = decode_err(&hex(input));
        assert_eq!(e.kind(), ErrorKind::Decode, "{input}: {e}");
    }
}

#[test]
fn encoding_refusals() {
    let mut out = Vec::new();
    let list_key = Value::Map(vec![(Value::List(vec![]), Value::Null)]);
    let e = Marshal::encode_value(&list_key, &mut out).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("unhashable"), "{e}");
    let ext = Value::Ext {
        tag: 1,
        data: vec![],
    };
    assert_eq!(
        Marshal::encode_value(&ext, &mut out).unwrap_err().kind(),
        ErrorKind::Unsupported
    );
    let mut deep = Value::Null;
    for _ in 0..600 {
        deep = Value::List(vec![deep]);
    }
    let e = Marshal::encode_value(&deep, &mut out).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Encode, "{e}");
    let e = Marshal::encode(&Tree::deep(600)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Encode, "{e}");
    // A set as a dict key or set member is written as a frozenset.
    let k = Value::Map(vec![(Value::Set(vec![i(1)]), Value::Null)]);
    assert_eq!(enc(&k), hex("7b 3e 01000000 e9 01000000 4e 30"));
    // Typed: a map keyed by Vec is refused, by tuple accepted.
    let mut m = BTreeMap::new();
    m.insert(vec![1u8], 1u8);
    assert!(Marshal::encode(&m).is_err());
    let mut m = BTreeMap::new();
    m.insert((1u8, 2u8), 1u8);
    assert_eq!(
        Marshal::encode(&m).unwrap(),
        hex("7b 29 02 e9 01000000 e9 02000000 72 00000000 30")
    );
}

#[test]
fn typed_mapping() {
    assert_eq!(
        Marshal::encode(&BA { b: 1, a: 2 }).unwrap(),
        hex("7b fa 01 62 e9 01000000 fa 01 61 e9 02000000 30")
    );
    assert_eq!(Marshal::encode(&E::A).unwrap(), hex("fa 01 41"));
    assert_eq!(
        Marshal::encode(&E::B(7)).unwrap(),
        hex("7b fa 01 42 e9 07000000 30")
    );
    assert_eq!(
        Marshal::encode(&E::C(1, true)).unwrap(),
        hex("7b fa 01 43 29 02 e9 01000000 54 30")
    );
    assert_eq!(
        Marshal::encode(&E::D { x: 3 }).unwrap(),
        hex("7b fa 01 44 7b fa 01 78 e9 03000000 30 30")
    );
    assert_eq!(
        Marshal::encode(&Bytes(vec![0, 1])).unwrap(),
        hex("73 02000000 0001")
    );
    assert_eq!(
        Marshal::encode(&vec![0u8, 1]).unwrap(),
        hex("5b 02000000 e9 00000000 e9 01000000")
    );
    assert_eq!(Marshal::encode(&Option::<u8>::None).unwrap(), hex("4e"));
    assert_eq!(Marshal::encode(&()).unwrap(), hex("4e"));
    assert_eq!(Marshal::encode(&'é').unwrap(), hex("f5 02000000 c3a9"));
    assert_eq!(
        Marshal::encode(&u128::MAX).unwrap(),
        enc(&Value::from(u128::MAX))
    );
    assert_eq!(Marshal::encode(&f64::NAN).unwrap()[0], b'g');
    // An iterator without a known length: the count is patched in.
    struct Unsized;
    impl serde::Serialize for Unsized {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq((0..3).filter(|_| true))
        }
    }
    assert_eq!(
        Marshal::encode(&Unsized).unwrap(),
        hex("5b 03000000 e9 00000000 e9 01000000 e9 02000000")
    );
    // Typed decode of Python-shaped data.
    let back: BA = Marshal::decode(
        &hex("fb fa 01 61 e9 02000000 fa 01 62 e9 01000000 30"),
        &Limits::DEFAULT,
    )
    .unwrap();
    assert_eq!(back, BA { b: 1, a: 2 });
}

fn record() -> impl Strategy<Value = Record> {
    (
        (
            any::<u64>(),
            any::<i8>(),
            any::<i64>(),
            any::<f64>().prop_filter("not NaN", |f| !f.is_nan()),
        ),
        (
            any::<bool>(),
            ".{0,20}",
            prop::collection::vec(".{0,3}", 0..4),
        ),
        (
            prop::collection::vec(any::<u8>(), 0..10),
            prop_oneof![
                Just(E::A),
                any::<i32>().prop_map(E::B),
                (any::<i32>(), any::<bool>()).prop_map(|(a, b)| E::C(a, b)),
                any::<u8>().prop_map(|x| E::D { x }),
            ],
        ),
        (
            ".{0,5}",
            proptest::option::of(".{0,5}"),
            proptest::option::of(any::<u16>()),
        ),
        (
            any::<i16>(),
            any::<char>(),
            prop::collection::btree_map(".{0,4}", any::<i32>(), 0..4),
        ),
    )
        .prop_map(
            |(
                (id, small, delta, ratio),
                (flag, label, tags),
                (blob, kind),
                (name, note, maybe),
                (p0, p1, map),
            )| Record {
                id,
                small,
                delta,
                ratio,
                flag,
                label,
                tags,
                blob: Bytes(blob),
                kind,
                inner: Inner { name, note },
                maybe,
                pair: (p0, p1),
                map,
            },
        )
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i128>().prop_map(Value::Int),
        (-10i128..300).prop_map(Value::Int),
        prop::collection::vec(any::<u32>(), 4..8)
            .prop_map(|w| Value::from_bigint(num_bigint::BigUint::new(w).into())),
        any::<f64>().prop_map(Value::Float),
        ".{0,8}".prop_map(Value::Str),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(Value::Bytes),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Tuple),
            prop::collection::vec(any::<i64>().prop_map(|x| Value::Int(x.into())), 0..5)
                .prop_map(Value::Set),
            prop::collection::vec((".{0,3}".prop_map(Value::Str), inner), 0..5)
                .prop_map(Value::Map),
        ]
    })
}

/// Set members come back in the writer's sorted order.
fn same_unordered(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Set(x), Value::Set(y)) => {
            let mut x: Vec<_> = x.iter().map(enc).collect();
            let mut y: Vec<_> = y.iter().map(enc).collect();
            x.sort();
            y.sort();
            x == y
        }
        (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_unordered(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k1, v1), (k2, v2))| same_unordered(k1, k2) && same_unordered(v1, v2))
        }
        _ => a.same_as(b),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn typed_round_trip(r in record()) {
        let bytes = Marshal::encode(&r).unwrap();
        let back: Record = Marshal::decode(&bytes, &Limits::DEFAULT).unwrap();
        prop_assert_eq!(back, r);
    }

    #[test]
    fn value_round_trip(v in value()) {
        let bytes = enc(&v);
        let back = dec(&bytes).unwrap();
        prop_assert!(same_unordered(&back, &v), "{} vs {}", back, v);
        // Re-encoding what was read gives the same bytes.
        prop_assert_eq!(enc(&back), bytes);
    }

    #[test]
    fn typed_and_value_paths_agree(r in record()) {
        let typed = Marshal::encode(&r).unwrap();
        let v = wirecall_codecs::to_value(&r).unwrap();
        prop_assert_eq!(enc(&v), typed);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = dec(&b);
        let _ = Marshal::decode::<Record>(&b, &Limits::DEFAULT);
    }

    #[test]
    fn mutated_encodings_never_panic(v in value(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut b = enc(&v);
        if !b.is_empty() {
            let i = at.index(b.len());
            b[i] = byte;
        }
        let _ = dec(&b);
    }
}
