//! Codec layer overhead: each wirecall codec beside the format crate called directly, on a
//! representative record and on a 1 MiB byte-heavy payload.
//!
//! ```text
//! cargo bench -p wirecall-benches --bench codecs -- --warm-up-time 1 --measurement-time 2
//! # ratios robust to a busy machine: paired, interleaved batches, medians
//! WIRECALL_CODECS_PAIRED=1 cargo bench -p wirecall-benches --bench codecs -- --test
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

/// Median over rounds of (time of a batch of `a`) / (time of a batch of `b`), the two
/// batches run back to back in alternating order, so load from other processes hits both
/// sides alike. Returns (median ratio, median ns per call of `a`).
fn paired_ratio(mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    use std::time::{Duration, Instant};
    // Size a batch to about 200 µs.
    let mut batch = 1u32;
    loop {
        let t = Instant::now();
        for _ in 0..batch {
            a();
        }
        if t.elapsed() > Duration::from_micros(200) || batch >= 1 << 20 {
            break;
        }
        batch *= 2;
    }
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        t.elapsed().as_nanos() as f64
    };
    let mut ratios = Vec::new();
    let mut per_call = Vec::new();
    let start = Instant::now();
    let mut round = 0u32;
    while (start.elapsed() < Duration::from_millis(400) || ratios.len() < 21) && ratios.len() < 2001
    {
        let (ta, tb) = if round % 2 == 0 {
            let ta = time(&mut a);
            (ta, time(&mut b))
        } else {
            let tb = time(&mut b);
            (time(&mut a), tb)
        };
        ratios.push(ta / tb);
        per_call.push(ta / f64::from(batch));
        round += 1;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(&mut ratios), median(&mut per_call))
}

/// Prints the paired ratios wirecall/direct and by-id/direct for every codec and payload.
fn print_paired<T>(label: &str, value: &T)
where
    T: Serialize + DeserializeOwned,
{
    eprintln!("paired medians ({label}): codec op wirecall/direct by-id/direct ns/call");
    for direct in directs::<T>() {
        let (enc, dec) = ours::<T>(direct.name);
        let id = CodecId::from_builtin_name(direct.name).unwrap();
        let limits = Limits::DEFAULT;
        let mut bytes = Vec::new();
        enc(value, &mut bytes);
        let mut b1 = Vec::with_capacity(bytes.len());
        let mut b2 = Vec::with_capacity(bytes.len());
        let (r_enc, ns_enc) = paired_ratio(
            || {
                b1.clear();
                enc(black_box(value), &mut b1);
            },
            || {
                b2.clear();
                (direct.encode)(black_box(value), &mut b2);
            },
        );
        let (r_enc_id, _) = paired_ratio(
            || {
                b1.clear();
                wirecall_codecs::encode_into(black_box(id), black_box(value), &mut b1).unwrap();
            },
            || {
                b2.clear();
                (direct.encode)(black_box(value), &mut b2);
            },
        );
        let (r_dec, ns_dec) = paired_ratio(
            || drop(black_box(dec(black_box(&bytes)))),
            || drop(black_box((direct.decode)(black_box(&bytes)))),
        );
        let (r_dec_id, _) = paired_ratio(
            || {
                let v: T =
                    wirecall_codecs::decode(black_box(id), black_box(&bytes), &limits).unwrap();
                drop(black_box(v))
            },
            || drop(black_box((direct.decode)(black_box(&bytes)))),
        );
        eprintln!(
            "paired {label} {:>8} encode {r_enc:.3} {r_enc_id:.3} {ns_enc:.0}",
            direct.name
        );
        eprintln!(
            "paired {label} {:>8} decode {r_dec:.3} {r_dec_id:.3} {ns_dec:.0}",
            direct.name
        );
    }
    // serpent's speed target is relative to serde_json on the same payload.
    let mut b1 = Vec::new();
    let mut b2 = Vec::new();
    let (r, _) = paired_ratio(
        || {
            b1.clear();
            Serpent::encode_into(black_box(value), &mut b1).unwrap();
        },
        || {
            b2.clear();
            serde_json::to_writer(&mut b2, black_box(value)).unwrap();
        },
    );
    eprintln!("paired {label} serpent-encode/serde_json-encode {r:.3}");
    let sb = Serpent::encode(value).unwrap();
    let jb = serde_json::to_vec(value).unwrap();
    let (r, _) = paired_ratio(
        || {
            drop(black_box(
                Serpent::decode::<T>(black_box(&sb), &Limits::DEFAULT).unwrap(),
            ))
        },
        || {
            drop(black_box(
                serde_json::from_slice::<T>(black_box(&jb)).unwrap(),
            ))
        },
    );
    eprintln!("paired {label} serpent-decode/serde_json-decode {r:.3}");
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
    if std::env::var_os("WIRECALL_CODECS_PAIRED").is_some() {
        print_paired("record", &Record::representative());
        print_paired("blob1m", &Blob::one_mib());
    }
    let mut c = Criterion::default().configure_from_args();
    codecs(&mut c);
    c.final_summary();
}
