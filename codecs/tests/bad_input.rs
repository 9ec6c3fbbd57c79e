//! Truncated, garbage, wrong-type, over-deep and over-size input: typed errors, no panics.
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

use common::{Bytes, Inner, Record, Tree, BA, E};
use wirecall_codecs::*;

fn record() -> Record {
    Record {
        id: 7,
        small: -3,
        delta: -1_000_000,
        ratio: 0.25,
        flag: true,
        label: "hello".into(),
        tags: vec!["a".into(), "b".into()],
        blob: Bytes(vec![1, 2, 3]),
        kind: E::D { x: 4 },
        inner: Inner {
            name: "n".into(),
            note: Some("z".into()),
        },
        maybe: None,
        pair: (-2, 'é'),
        map: [("k".to_owned(), 5)].into(),
    }
}

fn each_codec(mut f: impl FnMut(CodecId)) {
    for id in CodecSet::all_builtin().iter() {
        f(id);
    }
}

#[test]
fn truncated_input_is_a_peer_decode_error() {
    each_codec(|id| {
        let mut full = Vec::new();
        encode_into(id, &record(), &mut full).unwrap();
        for cut in 0..full.len() {
            let err = decode::<Record>(id, &full[..cut], &Limits::DEFAULT)
                .expect_err(&format!("{id}: prefix of {cut} bytes decoded"));
            assert_eq!(err.kind(), ErrorKind::Decode, "{id} cut {cut}: {err}");
            assert_eq!(err.origin(), Origin::Peer);
            assert_eq!(err.codec(), id);
            assert!(!err.is_retryable());
        }
        let back: Record = decode(id, &full, &Limits::DEFAULT).unwrap();
        assert_eq!(back, record());
    });
}

#[test]
fn trailing_bytes_are_refused() {
    each_codec(|id| {
        let mut full = Vec::new();
        encode_into(id, &BA { b: 1, a: 2 }, &mut full).unwrap();
        full.push(if id == CodecId::JSON || id == CodecId::RON {
            b'x'
        } else {
            0
        });
        let err = decode::<BA>(id, &full, &Limits::DEFAULT).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode, "{id}: {err}");
        if CodecSet::all_builtin().contains(id) && builtin_info(id).unwrap().self_describing {
            let mut v = Vec::new();
            encode_value(id, &Value::Int(1), &mut v).unwrap();
            v.push(b'x');
            let err = decode_value(id, &v, &Limits::DEFAULT).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Decode, "{id}: {err}");
        }
    });
}

#[test]
fn garbage_never_panics() {
    // A deterministic pseudo-random byte stream.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    each_codec(|id| {
        for len in 0..64usize {
            for _ in 0..40 {
                let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                if let Err(e) = decode::<Record>(id, &bytes, &Limits::DEFAULT) {
                    assert!(
                        matches!(e.kind(), ErrorKind::Decode | ErrorKind::LimitExceeded),
                        "{e}"
                    );
                }
                let _ = decode::<Tree>(id, &bytes, &Limits::DEFAULT);
                let _ = decode_value(id, &bytes, &Limits::DEFAULT);
            }
        }
    });
}

#[test]
fn wrong_type_is_a_decode_error() {
    each_codec(|id| {
        let mut bytes = Vec::new();
        encode_into(id, &"just a string", &mut bytes).unwrap();
        let err = decode::<BA>(id, &bytes, &Limits::DEFAULT).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode, "{id}: {err}");
        assert!(err.to_string().starts_with(&id.to_string()), "{err}");
    });
}

#[test]
fn over_size_input_is_refused_before_decoding() {
    let limits = Limits::DEFAULT.with_max_input(8);
    each_codec(|id| {
        let bytes = vec![0u8; 9];
        let err = decode::<BA>(id, &bytes, &limits).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{id}: {err}");
        assert!(err.to_string().contains("max_input"), "{err}");
        if builtin_info(id).unwrap().self_describing {
            let err = decode_value(id, &bytes, &limits).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::LimitExceeded);
        }
    });
}

#[test]
fn over_deep_typed_input_is_a_limit_error() {
    let limits = Limits::DEFAULT.with_max_depth(50);
    each_codec(|id| {
        let mut ok = Vec::new();
        encode_into(id, &Tree::deep(20), &mut ok).unwrap();
        let back: Tree = decode(id, &ok, &limits).unwrap();
        assert_eq!(back, Tree::deep(20));
        // Deeper than the limit (and far deeper than a stack would survive without one).
        let mut deep = Vec::new();
        encode_into(id, &Tree::deep(100), &mut deep).unwrap();
        let err = decode::<Tree>(id, &deep, &limits).expect_err(id.builtin_name().unwrap());
        assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{id}: {err}");
        assert_eq!(err.origin(), Origin::Peer);
    });
}

#[test]
fn hostile_nesting_without_encoder() {
    // Bytes crafted directly: 200k levels. None of these may overflow the stack.
    let n = 200_000;
    let cases: Vec<(CodecId, Vec<u8>)> = vec![
        (CodecId::JSON, "[".repeat(n).into_bytes()),
        (CodecId::MSGPACK, vec![0x91; n]),
        (CodecId::CBOR, vec![0x81; n]),
        (CodecId::RON, "[".repeat(n).into_bytes()),
        (CodecId::POSTCARD, vec![0x01; n]), // Tree::Node(Node(...))
        (CodecId::BINCODE, vec![0x01; n]),
        // Enum payloads {"Node": {"Node": ...}}: rmp-serde's own depth count skips these.
        (
            CodecId::MSGPACK,
            [0x81, 0xa4, b'N', b'o', b'd', b'e'].repeat(n),
        ),
        (
            CodecId::CBOR,
            [0xa1, 0x64, b'N', b'o', b'd', b'e'].repeat(n),
        ),
        (CodecId::JSON, br#"{"Node":"#.repeat(n)),
        (CodecId::RON, b"Node(".repeat(n)),
        (CodecId::SERPENT, "[".repeat(n).into_bytes()),
        (CodecId::SERPENT, "{'Node':".repeat(n).into_bytes()),
    ];
    for (id, bytes) in cases {
        if builtin_info(id).is_some_and(|i| i.self_describing) {
            let err = decode_value(id, &bytes, &Limits::DEFAULT).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{id} value: {err}");
        }
        let err = decode::<Tree>(id, &bytes, &Limits::DEFAULT).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::LimitExceeded | ErrorKind::Decode),
            "{id} typed: {err}"
        );
        let err = decode::<Value>(id, &bytes, &Limits::DEFAULT).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::LimitExceeded | ErrorKind::Decode),
            "{id} typed Value: {err}"
        );
    }
}

#[test]
fn depth_limit_on_values_is_exact_enough() {
    let limits = Limits::DEFAULT.with_max_depth(10);
    let mut v = Value::Int(1);
    for _ in 0..10 {
        v = Value::List(vec![v]);
    }
    let mut deeper = v.clone();
    deeper = Value::List(vec![deeper]);
    for id in [
        CodecId::JSON,
        CodecId::MSGPACK,
        CodecId::CBOR,
        CodecId::RON,
        CodecId::SERPENT,
    ] {
        let mut ok = Vec::new();
        encode_value(id, &v, &mut ok).unwrap();
        assert_eq!(decode_value(id, &ok, &limits).unwrap(), v, "{id}");
        let mut bad = Vec::new();
        encode_value(id, &deeper, &mut bad).unwrap();
        let err = decode_value(id, &bad, &limits).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{id}: {err}");
    }
}

#[test]
fn invalid_utf8_is_a_decode_error() {
    let cases: Vec<(CodecId, Vec<u8>)> = vec![
        (CodecId::JSON, b"\"\xff\"".to_vec()),
        (CodecId::MSGPACK, vec![0xa1, 0xff]),
        (CodecId::CBOR, vec![0x61, 0xff]),
        (CodecId::POSTCARD, vec![0x01, 0xff]),
        (CodecId::BINCODE, vec![0x01, 0xff]),
        (CodecId::RON, b"\"\xff\"".to_vec()),
        (CodecId::SERPENT, b"'\xff'".to_vec()),
    ];
    for (id, bytes) in cases {
        let err = decode::<String>(id, &bytes, &Limits::DEFAULT).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode, "{id}: {err}");
        if builtin_info(id).is_some_and(|i| i.self_describing) {
            let err = decode_value(id, &bytes, &Limits::DEFAULT).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Decode, "{id}: {err}");
        }
    }
}

#[test]
fn json_huge_integer_literal_is_limited_like_python() {
    let digits = "9".repeat(4301);
    let err = Json::decode_value(digits.as_bytes(), &Limits::DEFAULT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LimitExceeded);
    let ok = "9".repeat(4300);
    assert!(matches!(
        Json::decode_value(ok.as_bytes(), &Limits::DEFAULT),
        Ok(Value::BigInt(_))
    ));
}

mod mutations {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Valid encodings with a few bytes overwritten, inserted or cut reach deeper
        /// decoder paths than random bytes; every outcome must be a value or a typed error.
        #[test]
        fn mutated_encodings_never_panic(
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
        ) {
            for id in CodecSet::all_builtin().iter() {
                let mut bytes = Vec::new();
                encode_into(id, &record(), &mut bytes).unwrap();
                for (at, byte, op) in &edits {
                    if bytes.is_empty() {
                        break;
                    }
                    let i = at.index(bytes.len());
                    match op {
                        0 => bytes[i] = *byte,
                        1 => bytes.insert(i, *byte),
                        _ => bytes.truncate(i),
                    }
                }
                for result in [
                    decode::<Record>(id, &bytes, &Limits::DEFAULT).err(),
                    decode::<Value>(id, &bytes, &Limits::DEFAULT).err(),
                    decode::<Tree>(id, &bytes, &Limits::DEFAULT).err(),
                ]
                .into_iter()
                .flatten()
                {
                    let e = result;
                    prop_assert!(
                        matches!(e.kind(), ErrorKind::Decode | ErrorKind::LimitExceeded | ErrorKind::Unsupported),
                        "{}: {}", id, e
                    );
                    prop_assert_eq!(e.origin(), Origin::Peer);
                }
                if builtin_info(id).unwrap().self_describing {
                    if let Ok(v) = decode_value(id, &bytes, &Limits::DEFAULT) {
                        // Whatever decodes re-encodes (no partial values escape).
                        let mut out = Vec::new();
                        let _ = encode_value(id, &v, &mut out);
                    }
                }
            }
        }
    }
}
