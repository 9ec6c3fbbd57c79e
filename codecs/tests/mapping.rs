//! The mapping table, row by row, with exact bytes where the format fixes them.
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

use common::{Bytes, BA, E};
use num_bigint::BigInt;
use wirecall_codecs::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn enc<C: Codec, T: serde::Serialize>(v: &T) -> Vec<u8> {
    C::encode(v).unwrap()
}

fn encv<C: Codec>(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    C::encode_value(v, &mut out).unwrap();
    out
}

fn text<C: Codec, T: serde::Serialize>(v: &T) -> String {
    String::from_utf8(enc::<C, T>(v)).unwrap()
}

fn big(s: &str) -> Value {
    Value::from_bigint(s.parse::<BigInt>().unwrap())
}

fn python_keys() -> Value {
    Value::Map(vec![
        (Value::Int(10), Value::Int(0)),
        (Value::Int(-1), Value::Int(0)),
        (Value::from("a"), Value::Int(0)),
        (Value::Int(100), Value::Int(0)),
    ])
}

// ---------------------------------------------------------------- json

#[test]
fn json_typed_rows() {
    assert_eq!(text::<Json, _>(&BA { b: 1, a: 2 }), r#"{"b":1,"a":2}"#);
    assert_eq!(text::<Json, _>(&E::A), r#""A""#);
    assert_eq!(text::<Json, _>(&E::B(7)), r#"{"B":7}"#);
    assert_eq!(text::<Json, _>(&E::C(1, true)), r#"{"C":[1,true]}"#);
    assert_eq!(text::<Json, _>(&E::D { x: 3 }), r#"{"D":{"x":3}}"#);
    assert_eq!(text::<Json, _>(&Bytes(vec![0, 1])), "[0,1]");
    assert_eq!(text::<Json, _>(&(1, 2)), "[1,2]");
    assert_eq!(text::<Json, _>(&None::<u8>), "null");
    assert_eq!(text::<Json, _>(&()), "null");
    assert_eq!(
        text::<Json, _>(&u128::MAX),
        "340282366920938463463374607431768211455"
    );
    assert_eq!(text::<Json, _>(&1e16), "1e+16");
    // Documented lossy row: serde_json writes non-finite floats as null.
    assert_eq!(text::<Json, _>(&f64::NAN), "null");
    let m: BTreeMap<i32, i32> = [(10, 0)].into();
    assert_eq!(text::<Json, _>(&m), r#"{"10":0}"#);
    let back: BTreeMap<i32, i32> = Json::decode(br#"{"10":0}"#, &Limits::DEFAULT).unwrap();
    assert_eq!(back, m);
    let back: u128 =
        Json::decode(b"340282366920938463463374607431768211455", &Limits::DEFAULT).unwrap();
    assert_eq!(back, u128::MAX);
}

#[test]
fn json_value_rows_follow_python() {
    let v = Value::List(vec![
        Value::Float(f64::NAN),
        Value::Float(f64::INFINITY),
        Value::Float(f64::NEG_INFINITY),
        big("18446744073709551616"),
        big("-1606938044258990275541962092341162602522202993782792835301376"),
        Value::Float(1.0),
        Value::Float(-0.0),
    ]);
    let out = encv::<Json>(&v);
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        "[NaN,Infinity,-Infinity,18446744073709551616,-1606938044258990275541962092341162602522202993782792835301376,1.0,-0.0]"
    );
    let back = Json::decode_value(&out, &Limits::DEFAULT).unwrap();
    assert!(back.same_as(&v), "{back} vs {v}");

    // Non-string keys become strings as in json.dumps.
    let out = encv::<Json>(&python_keys());
    assert_eq!(out, br#"{"10":0,"-1":0,"a":0,"100":0}"#);
    let keys = Value::Map(vec![
        (Value::Null, Value::Int(1)),
        (Value::Bool(true), Value::Int(2)),
        (Value::Float(1.5), Value::Int(3)),
    ]);
    assert_eq!(encv::<Json>(&keys), br#"{"null":1,"true":2,"1.5":3}"#);
    let bad = Value::Map(vec![(Value::List(vec![]), Value::Null)]);
    let mut sink = Vec::new();
    let err = Json::encode_value(&bad, &mut sink).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert_eq!(err.origin(), Origin::Local);

    // Bytes, tuples and sets travel as arrays.
    let v = Value::Tuple(vec![
        Value::Bytes(vec![1, 2]),
        Value::Set(vec![Value::Int(3)]),
    ]);
    assert_eq!(encv::<Json>(&v), b"[[1,2],[3]]");

    // Escapes and surrogate pairs on the reading side; duplicate keys are kept.
    let v = Json::decode_value(br#" {"a\u00e9\ud83d\ude00\n": [1, 2.5e0, "x", null, true], "a\u00e9\ud83d\ude00\n": false} "#, &Limits::DEFAULT).unwrap();
    assert_eq!(
        v,
        Value::Map(vec![
            (
                Value::from("aé😀\n"),
                Value::List(vec![
                    Value::Int(1),
                    Value::Float(2.5),
                    Value::from("x"),
                    Value::Null,
                    Value::Bool(true)
                ])
            ),
            (Value::from("aé😀\n"), Value::Bool(false)),
        ])
    );
}

#[test]
fn json_parser_rejects_what_rfc_8259_rejects() {
    for bad in [
        &b"[1,]"[..],
        b"{\"a\" 1}",
        b"01",
        b"1.",
        b".5",
        b"+1",
        b"\"\\x\"",
        b"\"\x01\"",
        b"[1",
        b"{\"a\":",
        b"tru",
        b"\"\\ud800\"",
        b"nan",
        b"[1] x",
        b"",
        b"\xef\xbb\xbf1",
        b"\"\xff\"",
        b"{1:2}",
        b"-",
        b"1e",
    ] {
        let err = Json::decode_value(bad, &Limits::DEFAULT).unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::Decode,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
        assert_eq!(err.origin(), Origin::Peer);
    }
}

// ---------------------------------------------------------------- msgpack

#[test]
fn msgpack_typed_rows() {
    assert_eq!(
        hex(&enc::<MsgPack, _>(&BA { b: 1, a: 2 })),
        "82a16201a16102"
    );
    assert_eq!(hex(&enc::<MsgPack, _>(&E::A)), "a141");
    assert_eq!(hex(&enc::<MsgPack, _>(&E::B(7))), "81a14207");
    assert_eq!(hex(&enc::<MsgPack, _>(&E::D { x: 3 })), "81a14481a17803");
    assert_eq!(hex(&enc::<MsgPack, _>(&Bytes(vec![0, 1]))), "c4020001");
    assert_eq!(hex(&enc::<MsgPack, _>(&vec![1u8, 2])), "920102");
    assert_eq!(hex(&enc::<MsgPack, _>(&1.0f64)), "cb3ff0000000000000");
    assert_eq!(hex(&enc::<MsgPack, _>(&None::<u8>)), "c0");
    assert_eq!(hex(&enc::<MsgPack, _>(&u64::MAX)), "cfffffffffffffffff");
    assert_eq!(hex(&enc::<MsgPack, _>(&-33i32)), "d0df");
    assert_eq!(hex(&enc::<MsgPack, _>(&(1, 2))), "920102");
    // Documented trap: rmp-serde writes 128-bit integers as 16-byte bin.
    assert_eq!(
        hex(&enc::<MsgPack, _>(&5u128)),
        "c41000000000000000000000000000000005"
    );
    let back: BA =
        MsgPack::decode(&[0x82, 0xa1, b'b', 1, 0xa1, b'a', 2], &Limits::DEFAULT).unwrap();
    assert_eq!(back, BA { b: 1, a: 2 });
    // A positional struct (rmp-serde's default elsewhere) still decodes.
    let back: BA = MsgPack::decode(&[0x92, 1, 2], &Limits::DEFAULT).unwrap();
    assert_eq!(back, BA { b: 1, a: 2 });
}

#[test]
fn msgpack_value_rows() {
    assert_eq!(
        hex(&encv::<MsgPack>(&python_keys())),
        "840a00ff00a161006400"
    );
    assert_eq!(hex(&encv::<MsgPack>(&Value::Bytes(vec![0, 1]))), "c4020001");
    assert_eq!(
        hex(&encv::<MsgPack>(&Value::Float(f64::NAN))),
        "cb7ff8000000000000"
    );
    assert_eq!(
        hex(&encv::<MsgPack>(&Value::Tuple(vec![
            Value::Int(1),
            Value::Int(2)
        ]))),
        "920102"
    );
    assert_eq!(
        hex(&encv::<MsgPack>(&Value::Int(u64::MAX.into()))),
        "cfffffffffffffffff"
    );
    let mut sink = Vec::new();
    let err = MsgPack::encode_value(&Value::Int(1 << 64), &mut sink).unwrap_err();
    assert_eq!(
        (err.kind(), err.origin()),
        (ErrorKind::Unsupported, Origin::Local)
    );
    assert!(err.to_string().contains("64-bit"), "{err}");
    // Ext values (e.g. timestamps) read as Value::Ext and write back unchanged.
    let ts = MsgPack::decode_value(&[0xd6, 0xff, 0, 0, 0, 1], &Limits::DEFAULT).unwrap();
    assert_eq!(
        ts,
        Value::Ext {
            tag: -1,
            data: vec![0, 0, 0, 1]
        }
    );
    assert_eq!(hex(&encv::<MsgPack>(&ts)), "d6ff00000001");
    // float32 reads as Float.
    assert_eq!(
        MsgPack::decode_value(&[0xca, 0x3f, 0x80, 0, 0], &Limits::DEFAULT).unwrap(),
        Value::Float(1.0)
    );
}

// ---------------------------------------------------------------- cbor

#[test]
fn cbor_typed_rows() {
    assert_eq!(hex(&enc::<Cbor, _>(&BA { b: 1, a: 2 })), "a2616201616102");
    assert_eq!(hex(&enc::<Cbor, _>(&E::A)), "6141");
    assert_eq!(hex(&enc::<Cbor, _>(&E::B(7))), "a1614207");
    assert_eq!(hex(&enc::<Cbor, _>(&Bytes(vec![0, 1]))), "420001");
    assert_eq!(hex(&enc::<Cbor, _>(&vec![1u8, 2])), "820102");
    assert_eq!(hex(&enc::<Cbor, _>(&1.0f64)), "f93c00");
    assert_eq!(hex(&enc::<Cbor, _>(&0.1f64)), "fb3fb999999999999a");
    assert_eq!(hex(&enc::<Cbor, _>(&f64::NAN)), "f97e00");
    assert_eq!(hex(&enc::<Cbor, _>(&None::<u8>)), "f6");
    assert_eq!(
        hex(&enc::<Cbor, _>(&(1u128 << 64))),
        "c249010000000000000000"
    );
    let back: u128 =
        Cbor::decode(&[0xc2, 0x49, 1, 0, 0, 0, 0, 0, 0, 0, 0], &Limits::DEFAULT).unwrap();
    assert_eq!(back, 1 << 64);
}

#[test]
fn cbor_value_rows() {
    assert_eq!(hex(&encv::<Cbor>(&python_keys())), "a40a002000616100186400");
    assert_eq!(
        hex(&encv::<Cbor>(&big("18446744073709551616"))),
        "c249010000000000000000"
    );
    assert_eq!(
        hex(&encv::<Cbor>(&big("-9223372036854775809"))),
        "3b8000000000000000"
    );
    assert_eq!(
        hex(&encv::<Cbor>(&big("-18446744073709551617"))),
        "c349010000000000000000"
    );
    let huge = big("1606938044258990275541962092341162602522202993782792835301376"); // 2**200
    let out = encv::<Cbor>(&huge);
    assert_eq!(Cbor::decode_value(&out, &Limits::DEFAULT).unwrap(), huge);
    let set = Value::Set(vec![Value::Int(1), Value::Int(2)]);
    assert_eq!(hex(&encv::<Cbor>(&set)), "d90102820102");
    assert_eq!(
        Cbor::decode_value(&encv::<Cbor>(&set), &Limits::DEFAULT).unwrap(),
        set
    );
    // Tag 1 (epoch time) has no Value equivalent.
    let err = Cbor::decode_value(&[0xc1, 0x00], &Limits::DEFAULT).unwrap_err();
    assert_eq!(
        (err.kind(), err.origin()),
        (ErrorKind::Unsupported, Origin::Peer)
    );
    // Unassigned simple values (well-formed, no Value form) are refused the same way, not
    // reported as malformed input: simple(16) `f0`, simple(255) `f8ff`, nested in an array.
    for bytes in [&[0xf0][..], &[0xf8, 0xff], &[0x82, 0x01, 0xf3]] {
        let err = Cbor::decode_value(bytes, &Limits::DEFAULT).unwrap_err();
        assert_eq!(
            (err.kind(), err.origin()),
            (ErrorKind::Unsupported, Origin::Peer),
            "{bytes:02x?}: {err}"
        );
    }
    // Self-describe tag is transparent.
    assert_eq!(
        Cbor::decode_value(&[0xd9, 0xd9, 0xf7, 0x01], &Limits::DEFAULT).unwrap(),
        Value::Int(1)
    );
}

// ---------------------------------------------------------------- bincode / postcard

#[test]
fn bincode_rows() {
    assert_eq!(hex(&enc::<Bincode, _>(&BA { b: 1, a: 2 })), "0102");
    assert_eq!(hex(&enc::<Bincode, _>(&"hi")), "026869");
    assert_eq!(hex(&enc::<Bincode, _>(&Some(1u8))), "0101");
    assert_eq!(hex(&enc::<Bincode, _>(&E::B(7))), "010e");
    assert_eq!(hex(&enc::<Bincode, _>(&300u64)), "fb2c01");
    assert_eq!(hex(&enc::<Bincode, _>(&Bytes(vec![0, 1]))), "020001");
    let err = Bincode::decode_value(&[1], &Limits::DEFAULT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotSelfDescribing);
    assert!(err.to_string().contains("decode::<T>"), "{err}");
    // encode_value works.
    assert_eq!(
        hex(&encv::<Bincode>(&Value::List(vec![Value::Int(1)]))),
        "0102"
    );
}

#[test]
fn postcard_rows() {
    assert_eq!(hex(&enc::<Postcard, _>(&BA { b: 1, a: 2 })), "0102");
    assert_eq!(hex(&enc::<Postcard, _>(&300u32)), "ac02");
    assert_eq!(hex(&enc::<Postcard, _>(&-1i32)), "01");
    assert_eq!(hex(&enc::<Postcard, _>(&"hi")), "026869");
    assert_eq!(hex(&enc::<Postcard, _>(&Some(1u8))), "0101");
    assert_eq!(hex(&enc::<Postcard, _>(&E::B(7))), "010e");
    assert_eq!(hex(&enc::<Postcard, _>(&1.0f32)), "0000803f");
    let err = Postcard::decode_value(&[1], &Limits::DEFAULT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotSelfDescribing);
}

// ---------------------------------------------------------------- ron

#[test]
fn ron_rows() {
    assert_eq!(text::<Ron, _>(&BA { b: 1, a: 2 }), "(b:1,a:2)");
    assert_eq!(text::<Ron, _>(&E::A), "A");
    assert_eq!(text::<Ron, _>(&E::B(7)), "B(7)");
    assert_eq!(text::<Ron, _>(&Some(1)), "Some(1)");
    assert_eq!(text::<Ron, _>(&(1, 2)), "(1,2)");
    assert_eq!(text::<Ron, _>(&()), "()");
    assert_eq!(text::<Ron, _>(&E::C(1, true)), "C(1,true)");
    assert_eq!(text::<Ron, _>(&E::D { x: 3 }), "D(x:3)");
    assert_eq!(text::<Ron, _>(&Bytes(vec![0, 1])), r#"b"\x00\x01""#);
    assert_eq!(text::<Ron, _>(&f64::NAN), "NaN");
    let err = Ron::encode(&1u128).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Encode);
    let v = Value::List(vec![
        Value::Float(f64::NAN),
        Value::Bytes(vec![0, 65]),
        Value::Null,
        python_keys(),
    ]);
    let out = encv::<Ron>(&v);
    let back = Ron::decode_value(&out, &Limits::DEFAULT).unwrap();
    assert!(
        back.same_as(&v),
        "{} -> {back}",
        String::from_utf8_lossy(&out)
    );
}

// ---------------------------------------------------------------- all

#[test]
fn info_is_consistent() {
    let infos: Vec<CodecInfo> = builtin_infos().collect();
    assert!(infos.len() >= 6);
    for info in &infos {
        assert_eq!(Some(info.name), info.id.builtin_name());
        assert_eq!(
            info.self_describing,
            !matches!(info.name, "bincode" | "postcard")
        );
    }
    assert_eq!(
        builtin_info(CodecId::BINCODE).map(|i| i.maintained),
        Some(false)
    );
    assert_eq!(Cbor::INFO.python_module, Some("cbor2"));
}

#[test]
fn to_value_and_from_value_mapping() {
    let v = to_value(&common::Record {
        id: 1,
        small: -1,
        delta: -5,
        ratio: 0.5,
        flag: true,
        label: "x".into(),
        tags: vec!["t".into()],
        blob: Bytes(vec![9]),
        kind: E::C(1, false),
        inner: common::Inner {
            name: "n".into(),
            note: None,
        },
        maybe: Some(3),
        pair: (2, 'c'),
        map: [("k".to_owned(), 1)].into(),
    })
    .unwrap();
    assert_eq!(v.get("blob"), Some(&Value::Bytes(vec![9])));
    assert_eq!(
        v.get("pair"),
        Some(&Value::Tuple(vec![Value::Int(2), Value::from("c")]))
    );
    assert_eq!(
        v.get("kind"),
        Some(&Value::Map(vec![(
            Value::from("C"),
            Value::Tuple(vec![Value::Int(1), Value::Bool(false)])
        )]))
    );
    assert_eq!(
        v.get("inner").and_then(|i| i.get("note")),
        Some(&Value::Null)
    );
    let back: common::Record = from_value(v).unwrap();
    assert_eq!(back.kind, E::C(1, false));

    // Leniency: bytes accept int lists; structs accept positional lists; floats accept ints.
    let b: Bytes = from_value(Value::List(vec![Value::Int(1), Value::Int(2)])).unwrap();
    assert_eq!(b.0, vec![1, 2]);
    let v8: Vec<u8> = from_value(Value::Bytes(vec![3, 4])).unwrap();
    assert_eq!(v8, vec![3, 4]);
    let ba: BA = from_value(Value::List(vec![Value::Int(1), Value::Int(2)])).unwrap();
    assert_eq!(ba, BA { b: 1, a: 2 });
    let f: f64 = from_value(Value::Int(3)).unwrap();
    assert_eq!(f, 3.0);
    let e: E = from_value(Value::from("A")).unwrap();
    assert_eq!(e, E::A);
    let big: u128 = from_value(Value::from(u128::MAX)).unwrap();
    assert_eq!(big, u128::MAX);
    let err = from_value::<u64>(Value::Int(-1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode);
    let err = from_value::<u128>(big_val()).unwrap_err();
    assert!(err.to_string().contains("128 bits"), "{err}");
    let err = from_value::<BA>(Value::List(vec![Value::Int(1)])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode);
}

fn big_val() -> Value {
    big("1606938044258990275541962092341162602522202993782792835301376")
}

#[test]
fn value_serialize_through_serde_json() {
    // Value implements Serialize/Deserialize for any serde format.
    let v = Value::Map(vec![(
        Value::from("a"),
        Value::List(vec![Value::Int(1), Value::Null]),
    )]);
    assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"a":[1,null]}"#);
    let back: Value = serde_json::from_str(r#"{"a":[1,null]}"#).unwrap();
    assert_eq!(back, v);
}

// ---------------------------------------------------------------- ext values

/// Every codec but msgpack refuses `Value::Ext`, anywhere in the value, with an
/// `Unsupported` error that points at msgpack.
#[test]
fn ext_refused_outside_msgpack() {
    let ext = Value::Ext {
        tag: 5,
        data: vec![1, 2, 3],
    };
    let values = [
        ext.clone(),
        Value::List(vec![Value::Int(1), ext.clone()]),
        Value::Map(vec![(Value::Str("k".into()), ext.clone())]),
    ];
    for v in &values {
        let results: [(&str, Result<(), CodecError>); 6] = [
            ("json", Json::encode_value(v, &mut Vec::new())),
            ("cbor", Cbor::encode_value(v, &mut Vec::new())),
            ("serpent", Serpent::encode_value(v, &mut Vec::new())),
            ("ron", Ron::encode_value(v, &mut Vec::new())),
            ("bincode", Bincode::encode_value(v, &mut Vec::new())),
            ("postcard", Postcard::encode_value(v, &mut Vec::new())),
        ];
        for (name, r) in results {
            let err = r.expect_err(name);
            assert_eq!(
                (err.kind(), err.origin()),
                (ErrorKind::Unsupported, Origin::Local),
                "{name}: {err}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains("ext type 5") && msg.contains("msgpack"),
                "{name}: {msg}"
            );
        }
        assert!(MsgPack::encode_value(v, &mut Vec::new()).is_ok());
    }
}
