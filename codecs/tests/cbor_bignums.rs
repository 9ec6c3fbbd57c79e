//! CBOR bignums across the i128 boundaries, both ways: ciborium's serde reader refuses a
//! 16-byte tag-3 bignum below i128::MIN (found by the `codec_cbor` fuzz target; the input is
//! kept in `tests/fuzz_inputs/codec_cbor/`), which Python's cbor2 writes for
//! -2^128..=-2^127-1.

use wirecall_codecs::{Cbor, Codec, Limits, Value};

fn big(s: &str) -> Value {
    Value::from_bigint(s.parse().unwrap())
}

#[test]
fn bignums_round_trip_at_every_boundary() {
    for s in [
        "18446744073709551615",
        "18446744073709551616",
        "-18446744073709551616",
        "-18446744073709551617",
        "170141183460469231731687303715884105727",
        "170141183460469231731687303715884105728",
        "-170141183460469231731687303715884105728",
        "-170141183460469231731687303715884105729",
        "-329606841684203139119425600139791169528",
        "340282366920938463463374607431768211455",
        "-340282366920938463463374607431768211456",
        "-340282366920938463463374607431768211457",
        "-3402823669209384634633746074317682114570000",
    ] {
        let v = big(s);
        let mut b = Vec::new();
        Cbor::encode_value(&v, &mut b).unwrap();
        let back = Cbor::decode_value(&b, &Limits::default())
            .unwrap_or_else(|e| panic!("{s}: {e} ({b:02x?})"));
        assert!(back.same_as(&v), "{s}: {back:?}");
    }
}

#[test]
fn cbor2s_encoding_of_minus_two_to_the_127_minus_one_reads() {
    // cbor2.dumps(-2**127 - 1): tag 3 over the 16-byte magnitude 2^127.
    let mut b = vec![0xc3, 0x50, 0x80];
    b.extend([0u8; 15]);
    let v = Cbor::decode_value(&b, &Limits::default()).unwrap();
    assert!(
        v.same_as(&big("-170141183460469231731687303715884105729")),
        "{v:?}"
    );
    // Inside containers, with the other paths of the low-level reader: an indefinite
    // array, a map, a set, text and bytes.
    let mut doc = vec![0x9f, 0xa1, 0x61, b'k'];
    doc.extend_from_slice(&b);
    doc.extend([0xd9, 0x01, 0x02, 0x82, 0x01, 0x42, 0xaa, 0xbb, 0xff]);
    let v = Cbor::decode_value(&doc, &Limits::default()).unwrap();
    let want = Value::List(vec![
        Value::Map(vec![(
            Value::Str("k".into()),
            big("-170141183460469231731687303715884105729"),
        )]),
        Value::Set(vec![Value::Int(1), Value::Bytes(vec![0xaa, 0xbb])]),
    ]);
    assert!(v.same_as(&want), "{v:?}");
    // Truncations and a declared length past the input are errors, not panics.
    for cut in 0..doc.len() {
        assert!(Cbor::decode_value(&doc[..cut], &Limits::default()).is_err());
    }
    let mut huge = vec![0xc3, 0x5b];
    huge.extend(u64::MAX.to_be_bytes());
    assert!(Cbor::decode_value(&huge, &Limits::default()).is_err());
    // Depth is limited as on the main path.
    let mut deep = vec![0x81; 200];
    deep.extend(&b);
    assert!(Cbor::decode_value(&deep, &Limits::default().with_max_depth(16)).is_err());
}
