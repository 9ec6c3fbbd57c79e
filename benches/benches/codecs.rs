//! Codec layer overhead: each wirecall codec beside the format crate called directly, on a
//! representative record and on a 1 MiB byte-heavy payload.
//!
//! ```text
//! cargo bench -p wirecall-benches --bench codecs -- --warm-up-time 1 --measurement-time 2
//! ```
//!
//! Bench ids: `codecs/<payload>/<encode|decode>/<codec>/<wirecall|by-id|direct>`:
//! `wirecall` calls the codec type (`Json::encode_into`), `by-id` the runtime selection
//! (`wirecall_codecs::encode_into(id, ..)`), `direct` the format crate. For serpent
//! (no other Rust implementation) `direct` is the serpent module called without the codec
//! layer, and serde_json is the yardstick for its speed target.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use serde::de::DeserializeOwned;
use serde::Serialize;
use wirecall_benches::payloads::{Blob, Record};
use wirecall_codecs::serpent::{self, SerpentOptions};
use wirecall_codecs::{
    Bincode, Cbor, Codec, CodecId, Json, Limits, MsgPack, Postcard, Ron, Serpent,
};

type EncodeFn<T> = fn(&T, &mut Vec<u8>);
type DecodeFn<T> = fn(&[u8]) -> T;

struct Direct<T> {
    name: &'static str,
    encode: EncodeFn<T>,
    decode: DecodeFn<T>,
}

fn directs<T: Serialize + DeserializeOwned>() -> Vec<Direct<T>> {
    vec![
        Direct {
            name: "json",
            encode: |v, out| serde_json::to_writer(out, v).unwrap(),
            decode: |b| serde_json::from_slice(b).unwrap(),
        },
        Direct {
            name: "msgpack",
            encode: |v, out| rmp_serde::encode::write_named(out, v).unwrap(),
            decode: |b| rmp_serde::from_slice(b).unwrap(),
        },
        Direct {
            name: "cbor",
            encode: |v, out| ciborium::into_writer(v, out).unwrap(),
            decode: |b| ciborium::from_reader(b).unwrap(),
        },
        Direct {
            name: "bincode",
            encode: |v, out| {
                bincode::serde::encode_into_std_write(v, out, bincode::config::standard()).unwrap();
            },
            decode: |b| {
                bincode::serde::decode_from_slice(b, bincode::config::standard())
                    .unwrap()
                    .0
            },
        },
        Direct {
            name: "postcard",
            encode: |v, out| {
                let buf = std::mem::take(out);
                *out = postcard::to_extend(v, buf).unwrap();
            },
            decode: |b| postcard::from_bytes(b).unwrap(),
        },
        Direct {
            name: "ron",
            encode: |v, out| ron::Options::default().to_io_writer(out, v).unwrap(),
            decode: |b| ron::Options::default().from_bytes(b).unwrap(),
        },
        Direct {
            name: "serpent",
            encode: |v, out| serpent::to_writer(v, out, &SerpentOptions::default()).unwrap(),
            decode: |b| serpent::from_slice(b, serpent::DEFAULT_MAX_DEPTH).unwrap(),
        },
    ]
}

fn ours<T: Serialize + DeserializeOwned>(name: &str) -> (EncodeFn<T>, DecodeFn<T>) {
    fn e<C: Codec, T: Serialize>(v: &T, out: &mut Vec<u8>) {
        C::encode_into(v, out).unwrap()
    }
    fn d<C: Codec, T: DeserializeOwned>(b: &[u8]) -> T {
        C::decode(b, &Limits::DEFAULT).unwrap()
    }
    match name {
        "json" => (e::<Json, T>, d::<Json, T>),
        "msgpack" => (e::<MsgPack, T>, d::<MsgPack, T>),
        "cbor" => (e::<Cbor, T>, d::<Cbor, T>),
        "bincode" => (e::<Bincode, T>, d::<Bincode, T>),
        "postcard" => (e::<Postcard, T>, d::<Postcard, T>),
        "ron" => (e::<Ron, T>, d::<Ron, T>),
        "serpent" => (e::<Serpent, T>, d::<Serpent, T>),
        other => panic!("unknown codec {other}"),
    }
}

fn bench_payload<T>(c: &mut Criterion, label: &str, value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    for direct in directs::<T>() {
        let (enc, dec) = ours::<T>(direct.name);
        let id = CodecId::from_builtin_name(direct.name).unwrap();
        let limits = Limits::DEFAULT;
        let mut bytes = Vec::new();
        enc(value, &mut bytes);
        let mut direct_bytes = Vec::new();
        (direct.encode)(value, &mut direct_bytes);
        assert_eq!(bytes, direct_bytes, "{}: same bytes both ways", direct.name);
        assert_eq!(&dec(&bytes), value, "{}: round trip", direct.name);

        let mut g = c.benchmark_group(format!("codecs/{label}/encode"));
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        let mut buf = Vec::with_capacity(bytes.len());
        g.bench_function(BenchmarkId::new(direct.name, "wirecall"), |b| {
            b.iter(|| {
                buf.clear();
                enc(black_box(value), &mut buf);
                black_box(buf.len())
            })
        });
        g.bench_function(BenchmarkId::new(direct.name, "direct"), |b| {
            b.iter(|| {
                buf.clear();
                (direct.encode)(black_box(value), &mut buf);
                black_box(buf.len())
            })
        });
        g.bench_function(BenchmarkId::new(direct.name, "by-id"), |b| {
            b.iter(|| {
                buf.clear();
                wirecall_codecs::encode_into(black_box(id), black_box(value), &mut buf).unwrap();
                black_box(buf.len())
            })
        });
        g.finish();

        let mut g = c.benchmark_group(format!("codecs/{label}/decode"));
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(BenchmarkId::new(direct.name, "wirecall"), |b| {
            b.iter(|| black_box(dec(black_box(&bytes))))
        });
        g.bench_function(BenchmarkId::new(direct.name, "direct"), |b| {
            b.iter(|| black_box((direct.decode)(black_box(&bytes))))
        });
        g.bench_function(BenchmarkId::new(direct.name, "by-id"), |b| {
            b.iter(|| {
                let v: T =
                    wirecall_codecs::decode(black_box(id), black_box(&bytes), &limits).unwrap();
                black_box(v)
            })
        });
        g.finish();
    }
}

fn print_sizes() {
    let record = Record::representative();
    let blob = Blob::one_mib();
    eprintln!("encoded sizes (bytes): codec, record, 1 MiB blob");
    for direct in directs::<Record>() {
        let (enc_r, _) = ours::<Record>(direct.name);
        let (enc_b, _) = ours::<Blob>(direct.name);
        let mut r = Vec::new();
        enc_r(&record, &mut r);
        let mut b = Vec::new();
        enc_b(&blob, &mut b);
        eprintln!("size {:>8} {:>6} {:>9}", direct.name, r.len(), b.len());
    }
}

fn codecs(c: &mut Criterion) {
    bench_payload(c, "record", &Record::representative());
    bench_payload(c, "blob1m", &Blob::one_mib());
}

fn main() {
    print_sizes();
    let mut c = Criterion::default().configure_from_args();
    codecs(&mut c);
    c.final_summary();
}
