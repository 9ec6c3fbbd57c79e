//! wirecall's codecs beside their format crates called directly on the same value, timed
//! in alternation: what `wirecall bench codecs` reports. Used by `bench` and by the typed
//! samples of `pick`, so it sits below both.

use serde::de::DeserializeOwned;
use serde::Serialize;
use wirecall_bench_harness::measure::{self, Budget, Timing};
use wirecall_codecs::{CodecError, CodecId, Value};

/// The format crate a built-in codec wraps, when there is one to call directly.
pub(crate) fn baseline_crate(id: CodecId) -> Option<&'static str> {
    Some(match id {
        CodecId::JSON => "serde_json",
        CodecId::MSGPACK => "rmp-serde",
        CodecId::CBOR => "ciborium",
        CodecId::BINCODE => "bincode",
        CodecId::POSTCARD => "postcard",
        CodecId::RON => "ron",
        _ => return None,
    })
}

type BaseResult<T> = Result<T, String>;

fn base_encode<T: Serialize + ?Sized>(id: CodecId, v: &T, out: &mut Vec<u8>) -> BaseResult<()> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    match id {
        CodecId::JSON => serde_json::to_writer(&mut *out, v).map_err(|x| e(&x)),
        CodecId::MSGPACK => v
            .serialize(&mut rmp_serde::Serializer::new(&mut *out).with_struct_map())
            .map_err(|x| e(&x)),
        CodecId::CBOR => ciborium::ser::into_writer(v, &mut *out).map_err(|x| e(&x)),
        CodecId::BINCODE => {
            bincode::serde::encode_into_std_write(v, &mut *out, bincode::config::standard())
                .map(|_| ())
                .map_err(|x| e(&x))
        }
        // As the criterion codec bench calls them (benches/benches/codecs.rs).
        CodecId::POSTCARD => {
            let buf = std::mem::take(out);
            postcard::to_extend(v, buf)
                .map(|b| *out = b)
                .map_err(|x| e(&x))
        }
        CodecId::RON => ron::Options::default()
            .to_io_writer(&mut *out, v)
            .map_err(|x| e(&x)),
        other => Err(format!("no baseline crate for {other}")),
    }
}

fn base_decode<T: DeserializeOwned>(id: CodecId, bytes: &[u8]) -> BaseResult<T> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    match id {
        CodecId::JSON => serde_json::from_slice(bytes).map_err(|x| e(&x)),
        CodecId::MSGPACK => rmp_serde::from_slice(bytes).map_err(|x| e(&x)),
        CodecId::CBOR => ciborium::de::from_reader(bytes).map_err(|x| e(&x)),
        CodecId::BINCODE => bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map(|(v, _)| v)
            .map_err(|x| e(&x)),
        CodecId::POSTCARD => postcard::from_bytes(bytes).map_err(|x| e(&x)),
        CodecId::RON => ron::Options::default().from_bytes(bytes).map_err(|x| e(&x)),
        other => Err(format!("no baseline crate for {other}")),
    }
}

/// One side of a comparison: its bytes (or why it could not encode) and its timings.
#[derive(Debug, Clone)]
pub(crate) struct Side {
    /// The encoded bytes, or the encode error.
    pub(crate) bytes: Result<Vec<u8>, String>,
    /// Encode time, when encoding works.
    pub(crate) encode: Option<Timing>,
    /// Decode time, when the side decodes its own output.
    pub(crate) decode: Option<Timing>,
}

/// wirecall's codec beside its format crate on one payload.
#[derive(Debug, Clone)]
pub(crate) struct Comparison {
    /// wirecall's codec.
    pub(crate) ours: Side,
    /// The format crate called directly (`None` when the codec has none).
    pub(crate) base: Option<Side>,
}

/// Compares wirecall's codec `id` (`ours_encode`/`ours_decode`, typed or `Value`) with its
/// format crate on the same value `v` decoded back into `T`. When both sides work, their
/// timings are taken in alternation ([`measure::time_pair`]) so the ratio is fair.
pub(crate) fn compare<T: Serialize + DeserializeOwned>(
    id: CodecId,
    v: &T,
    budget: Budget,
    mut ours_encode: impl FnMut(&mut Vec<u8>) -> Result<(), CodecError>,
    mut ours_decode: impl FnMut(&[u8]) -> bool,
) -> Comparison {
    let mut ob = Vec::new();
    let ours_bytes = ours_encode(&mut ob)
        .map(|()| ob)
        .map_err(|e| e.message().to_owned());
    let base_bytes = baseline_crate(id).map(|_| {
        let mut bb = Vec::new();
        base_encode(id, v, &mut bb).map(|()| bb)
    });
    let (mut o1, mut o2) = (Vec::new(), Vec::new());
    let mut ours_enc = |()| {
        o1.clear();
        ours_encode(&mut o1).is_ok()
    };
    let mut base_enc = |()| {
        o2.clear();
        base_encode(id, v, &mut o2).is_ok()
    };
    let (oe, be) = match (&ours_bytes, &base_bytes) {
        (Ok(_), Some(Ok(_))) => {
            let (a, b) = measure::time_pair(budget, || ours_enc(()), || base_enc(()));
            (Some(a), Some(b))
        }
        (Ok(_), _) => (Some(measure::time(budget, || ours_enc(()))), None),
        (Err(_), Some(Ok(_))) => (None, Some(measure::time(budget, || base_enc(())))),
        (Err(_), _) => (None, None),
    };
    let ours_dec_ok = ours_bytes.as_ref().is_ok_and(|b| ours_decode(b));
    let base_dec_ok = matches!(&base_bytes, Some(Ok(b)) if base_decode::<T>(id, b).is_ok());
    let (od, bd) = match (&ours_bytes, &base_bytes) {
        (Ok(ob), Some(Ok(bb))) if ours_dec_ok && base_dec_ok => {
            let (a, b) = measure::time_pair(
                budget,
                || ours_decode(ob),
                || base_decode::<T>(id, bb).is_ok(),
            );
            (Some(a), Some(b))
        }
        _ => (
            match &ours_bytes {
                Ok(ob) if ours_dec_ok => Some(measure::time(budget, || ours_decode(ob))),
                _ => None,
            },
            match &base_bytes {
                Some(Ok(bb)) if base_dec_ok => {
                    Some(measure::time(budget, || base_decode::<T>(id, bb).is_ok()))
                }
                _ => None,
            },
        ),
    };
    Comparison {
        ours: Side {
            bytes: ours_bytes,
            encode: oe,
            decode: od,
        },
        base: base_bytes.map(|bytes| Side {
            bytes,
            encode: be,
            decode: bd,
        }),
    }
}

/// Compares a typed payload: wirecall's typed path against the format crate.
pub(crate) fn compare_typed<T: Serialize + DeserializeOwned>(
    id: CodecId,
    v: &T,
    budget: Budget,
) -> Comparison {
    compare(
        id,
        v,
        budget,
        |out| measure::encode_typed(id, v, out),
        |b| measure::decode_typed::<T>(id, b).is_ok(),
    )
}

pub(crate) fn compare_value(id: CodecId, v: &Value, budget: Budget) -> Comparison {
    compare(
        id,
        v,
        budget,
        |out| measure::encode_value(id, v, out),
        |b| measure::decode_value(id, b).is_ok(),
    )
}
