//! Property tests: every `Value` prints to notation that parses back to the same value, and
//! printing is canonical (print ∘ parse ∘ print = print).

use num_bigint::BigInt;
use proptest::prelude::*;
use wirecall_codecs::Value;
use wirecall_conformance::notation;

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| Value::Int(i.into())),
        any::<i128>().prop_map(Value::Int),
        (any::<i128>(), 1u32..4)
            .prop_map(|(i, k)| Value::from_bigint(BigInt::from(i) * BigInt::from(u64::MAX).pow(k))),
        any::<u64>().prop_map(|b| Value::Float(f64::from_bits(b))),
        prop_oneof![
            Just(0.0),
            Just(-0.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(5e-324)
        ]
        .prop_map(Value::Float),
        any::<String>().prop_map(Value::Str),
        "[$a-z\"\\\\\u{0}-\u{1f}\u{7f}é😀]{0,8}".prop_map(Value::Str),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(Value::Bytes),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Tuple),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Set),
            proptest::collection::vec((inner.clone(), inner.clone()), 0..5).prop_map(Value::Map),
            proptest::collection::vec(("[$a-z]{0,4}".prop_map(Value::Str), inner), 0..5)
                .prop_map(Value::Map),
        ]
    })
}

/// Bit-exact equality (NaN payloads included), stricter than `notation::same`.
fn identical(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::List(x), Value::List(y))
        | (Value::Tuple(x), Value::Tuple(y))
        | (Value::Set(x), Value::Set(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| identical(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k1, v1), (k2, v2))| identical(k1, k2) && identical(v1, v2))
        }
        _ => a == b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn print_then_parse_is_identity(v in value()) {
        let text = notation::print(&v);
        let back = notation::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert!(identical(&v, &back), "{:?} -> {} -> {:?}", v, text, back);
        prop_assert_eq!(notation::print(&back), text);
    }

    #[test]
    fn parse_never_panics(s in "\\PC{0,40}") {
        let _ = notation::parse(&s);
    }
}
