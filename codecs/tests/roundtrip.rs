//! Property tests: typed values and dynamic values round-trip through every codec, within
//! what each codec can carry.
#![cfg(all(
    feature = "json",
    feature = "msgpack",
    feature = "cbor",
    feature = "bincode",
    feature = "postcard",
    feature = "ron",
    feature = "serpent"
))]

mod common;

use std::collections::BTreeMap;

use common::{Bytes, Inner, Record, E};
use num_bigint::BigInt;
use proptest::prelude::*;
use wirecall_codecs::*;

fn arb_e() -> impl Strategy<Value = E> {
    prop_oneof![
        Just(E::A),
        any::<i32>().prop_map(E::B),
        (any::<i32>(), any::<bool>()).prop_map(|(a, b)| E::C(a, b)),
        any::<u8>().prop_map(|x| E::D { x }),
    ]
}

fn arb_record() -> impl Strategy<Value = Record> {
    (
        (
            any::<u64>(),
            any::<i8>(),
            any::<i64>(),
            any::<f64>().prop_filter("finite", |f| f.is_finite()),
        ),
        (
            any::<bool>(),
            ".{0,12}",
            prop::collection::vec("[a-z]{0,5}", 0..4),
        ),
        (prop::collection::vec(any::<u8>(), 0..40), arb_e()),
        (
            "\\PC{0,6}",
            prop::option::of(".{0,4}"),
            prop::option::of(any::<u16>()),
        ),
        (
            any::<i16>(),
            any::<char>(),
            prop::collection::btree_map("[a-z]{1,4}", any::<i32>(), 0..4),
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

/// What each codec can carry in a dynamic value.
#[derive(Clone, Copy, Debug)]
struct Caps {
    bigint: bool,
    wide_int: bool,
    bytes: bool,
    nonfinite: bool,
    nan: bool,
    any_keys: bool,
    tuples: bool,
    sets: bool,
}

fn caps(id: CodecId) -> Caps {
    let base = Caps {
        bigint: false,
        wide_int: false,
        bytes: true,
        nonfinite: true,
        nan: true,
        any_keys: true,
        tuples: false,
        sets: false,
    };
    match id {
        CodecId::JSON => Caps {
            bigint: true,
            wide_int: true,
            bytes: false,
            any_keys: false,
            ..base
        },
        CodecId::MSGPACK => base,
        CodecId::CBOR => Caps {
            bigint: true,
            wide_int: true,
            sets: true,
            ..base
        },
        CodecId::RON => base,
        // serpent writes NaN and bytes as dicts and, like Python's serpent.loads, reads them
        // back as dicts (see the README).
        CodecId::SERPENT => Caps {
            bigint: true,
            wide_int: true,
            tuples: true,
            sets: true,
            nan: false,
            bytes: false,
            ..base
        },
        _ => unreachable!(),
    }
}

fn arb_scalar(c: Caps) -> BoxedStrategy<Value> {
    let mut options: Vec<BoxedStrategy<Value>> = vec![
        Just(Value::Null).boxed(),
        any::<bool>().prop_map(Value::Bool).boxed(),
        any::<i64>().prop_map(|i| Value::Int(i.into())).boxed(),
        any::<u64>().prop_map(|i| Value::Int(i.into())).boxed(),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::Float)
            .boxed(),
        "\\PC{0,10}".prop_map(Value::Str).boxed(),
    ];
    if c.nonfinite {
        options.push(
            prop_oneof![Just(f64::INFINITY), Just(f64::NEG_INFINITY)]
                .prop_map(Value::Float)
                .boxed(),
        );
    }
    if c.nan {
        options.push(Just(Value::Float(f64::NAN)).boxed());
    }
    if c.wide_int {
        options.push(any::<i128>().prop_map(Value::Int).boxed());
    }
    if c.bigint {
        options.push(
            (any::<bool>(), prop::collection::vec(any::<u32>(), 5..8))
                .prop_map(|(neg, digits)| {
                    let n = BigInt::from_slice(
                        if neg {
                            num_bigint::Sign::Minus
                        } else {
                            num_bigint::Sign::Plus
                        },
                        &digits,
                    );
                    Value::from_bigint(n)
                })
                .boxed(),
        );
    }
    if c.bytes {
        options.push(
            prop::collection::vec(any::<u8>(), 0..16)
                .prop_map(Value::Bytes)
                .boxed(),
        );
    }
    prop::strategy::Union::new(options).boxed()
}

fn arb_key(c: Caps) -> BoxedStrategy<Value> {
    if c.any_keys {
        // Keys that every key-capable format (and Python) accepts: ints, strings, bools.
        prop_oneof![
            "[a-z]{0,6}".prop_map(Value::Str),
            any::<i32>().prop_map(|i| Value::Int(i.into())),
            any::<bool>().prop_map(Value::Bool),
        ]
        .boxed()
    } else {
        "[a-z]{0,6}".prop_map(Value::Str).boxed()
    }
}

fn arb_value(c: Caps) -> impl Strategy<Value = Value> {
    arb_scalar(c).prop_recursive(4, 48, 6, move |inner| {
        let mut options: Vec<BoxedStrategy<Value>> = vec![
            prop::collection::vec(inner.clone(), 0..6)
                .prop_map(Value::List)
                .boxed(),
            prop::collection::vec((arb_key(c), inner.clone()), 0..5)
                .prop_map(|mut m| {
                    // Unique keys: Python dicts (serpent) cannot hold duplicates.
                    let mut seen = Vec::new();
                    m.retain(|(k, _)| {
                        let dup = seen.iter().any(|s: &Value| s.same_as(k));
                        seen.push(k.clone());
                        !dup
                    });
                    Value::Map(m)
                })
                .boxed(),
        ];
        if c.tuples {
            options.push(
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(Value::Tuple)
                    .boxed(),
            );
        }
        if c.sets {
            // Set members: distinct hashable scalars.
            options.push(
                prop::collection::btree_set(any::<i32>(), 1..4)
                    .prop_map(|s| Value::Set(s.into_iter().map(|i| Value::Int(i.into())).collect()))
                    .boxed(),
            );
        }
        prop::strategy::Union::new(options).boxed()
    })
}

fn roundtrip_value(id: CodecId, v: &Value) -> Result<(), TestCaseError> {
    let mut out = Vec::new();
    encode_value(id, v, &mut out)
        .map_err(|e| TestCaseError::fail(format!("{id} encode {v}: {e}")))?;
    let back = decode_value(id, &out, &Limits::DEFAULT).map_err(|e| {
        TestCaseError::fail(format!(
            "{id} decode {v} from {:?}: {e}",
            String::from_utf8_lossy(&out)
        ))
    })?;
    prop_assert!(back.same_as(v), "{}: {} came back as {}", id, v, back);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn typed_records_roundtrip_through_every_codec(r in arb_record()) {
        for id in CodecSet::all_builtin().iter() {
            let mut out = Vec::new();
            encode_into(id, &r, &mut out).map_err(|e| TestCaseError::fail(format!("{id}: {e}")))?;
            let back: Record = decode(id, &out, &Limits::DEFAULT).map_err(|e| TestCaseError::fail(format!("{id}: {e}")))?;
            prop_assert_eq!(&back, &r, "{}", id);
            // The typed → Value → typed path the engine uses for dynamic arguments.
            let v = to_value(&r).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back: Record = from_value(v).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&back, &r);
        }
    }

    #[test]
    fn typed_records_decode_from_dynamic_values(r in arb_record()) {
        // Encode typed, decode as Value, convert to the type: what a server does with
        // arguments it first inspects dynamically.
        // RON is excluded: its dynamic reading drops enum variant names (`A`, `B(7)`), see
        // the README.
        for id in CodecSet::all_builtin().iter().filter(|id| builtin_info(*id).unwrap().self_describing && *id != CodecId::RON) {
            let mut out = Vec::new();
            encode_into(id, &r, &mut out).unwrap();
            let v = decode_value(id, &out, &Limits::DEFAULT).map_err(|e| TestCaseError::fail(format!("{id}: {e}")))?;
            let back: Record = from_value(v).map_err(|e| TestCaseError::fail(format!("{id}: {e}")))?;
            prop_assert_eq!(&back, &r, "{}", id);
        }
    }

    #[test]
    fn json_values_roundtrip(v in arb_value(caps(CodecId::JSON))) {
        roundtrip_value(CodecId::JSON, &v)?;
    }

    #[test]
    fn msgpack_values_roundtrip(v in arb_value(caps(CodecId::MSGPACK))) {
        roundtrip_value(CodecId::MSGPACK, &v)?;
    }

    #[test]
    fn cbor_values_roundtrip(v in arb_value(caps(CodecId::CBOR))) {
        roundtrip_value(CodecId::CBOR, &v)?;
    }

    #[test]
    fn ron_values_roundtrip(v in arb_value(caps(CodecId::RON))) {
        roundtrip_value(CodecId::RON, &v)?;
    }

    #[test]
    fn serpent_values_roundtrip(v in arb_value(caps(CodecId::SERPENT))) {
        roundtrip_value(CodecId::SERPENT, &v)?;
    }

    #[test]
    fn positional_codecs_encode_values_like_typed(xs in prop::collection::vec(any::<i64>(), 0..8), s in ".{0,8}") {
        // bincode/postcard cannot decode Value, but a Value encodes exactly like the typed
        // value with the same shape.
        let typed = (xs.clone(), s.clone());
        let dynamic = Value::Tuple(vec![Value::List(xs.iter().map(|x| Value::Int((*x).into())).collect()), Value::Str(s)]);
        for id in [CodecId::BINCODE, CodecId::POSTCARD] {
            let mut a = Vec::new();
            let mut b = Vec::new();
            encode_into(id, &typed, &mut a).unwrap();
            encode_value(id, &dynamic, &mut b).unwrap();
            prop_assert_eq!(&a, &b);
            let back: (Vec<i64>, String) = decode(id, &b, &Limits::DEFAULT).unwrap();
            prop_assert_eq!(&back, &typed);
        }
    }
}

#[test]
fn lossy_rows_are_what_the_readme_says() {
    // Tuples and sets become lists outside serpent (cbor keeps sets).
    let v = Value::Tuple(vec![Value::Int(1), Value::Set(vec![Value::Int(2)])]);
    let expect_list = Value::List(vec![Value::Int(1), Value::List(vec![Value::Int(2)])]);
    for id in [CodecId::JSON, CodecId::MSGPACK, CodecId::RON] {
        let mut out = Vec::new();
        encode_value(id, &v, &mut out).unwrap();
        assert_eq!(
            decode_value(id, &out, &Limits::DEFAULT).unwrap(),
            expect_list,
            "{id}"
        );
    }
    let mut out = Vec::new();
    encode_value(CodecId::CBOR, &v, &mut out).unwrap();
    assert_eq!(
        decode_value(CodecId::CBOR, &out, &Limits::DEFAULT).unwrap(),
        Value::List(vec![Value::Int(1), Value::Set(vec![Value::Int(2)])])
    );
    // JSON: bytes become int lists, keys become strings.
    let v = Value::Map(vec![(Value::Int(1), Value::Bytes(vec![7]))]);
    let mut out = Vec::new();
    encode_value(CodecId::JSON, &v, &mut out).unwrap();
    assert_eq!(
        decode_value(CodecId::JSON, &out, &Limits::DEFAULT).unwrap(),
        Value::Map(vec![(Value::from("1"), Value::List(vec![Value::Int(7)]))])
    );
    // serpent: NaN and bytes come back as the dicts serpent writes (as in Python).
    let mut out = Vec::new();
    encode_value(
        CodecId::SERPENT,
        &Value::List(vec![Value::Float(f64::NAN), Value::Bytes(vec![0, 1])]),
        &mut out,
    )
    .unwrap();
    let back = decode_value(CodecId::SERPENT, &out, &Limits::DEFAULT).unwrap();
    let items = back.as_slice().unwrap();
    assert_eq!(items[0].get("value"), Some(&Value::from("nan")));
    assert_eq!(items[1].get("data"), Some(&Value::from("AAE=")));
    // ...and typed decoding turns them back into a float and bytes.
    let (f, b): (f64, Bytes) = decode(CodecId::SERPENT, &out, &Limits::DEFAULT).unwrap();
    assert!(f.is_nan());
    assert_eq!(b.0, vec![0, 1]);
    // RON: the dynamic reading loses enum variant names.
    let mut out = Vec::new();
    encode_into(CodecId::RON, &E::A, &mut out).unwrap();
    assert_eq!(
        decode_value(CodecId::RON, &out, &Limits::DEFAULT).unwrap(),
        Value::Null
    );
    let _unused: BTreeMap<u8, u8> = BTreeMap::new();
}
