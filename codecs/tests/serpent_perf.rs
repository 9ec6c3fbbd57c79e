//! Encode speed of serpent against serde_json on a record-like payload.
//!
//! Ignored by default (timing is only meaningful in release builds on a quiet machine):
//! `cargo test -p wirecall-codecs --release --test serpent_perf -- --ignored --nocapture`.
//! The assertion allows serpent up to 3x serde_json's time.
#![cfg(feature = "serpent")]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wirecall_codecs::serpent::{self, SerpentOptions};

#[derive(Serialize, Deserialize)]
struct Record {
    id: u64,
    name: String,
    email: String,
    score: f64,
    ratio: f64,
    active: bool,
    tags: Vec<String>,
    attrs: BTreeMap<String, i64>,
    note: Option<String>,
}

fn payload() -> Vec<Record> {
    (0..1000u64)
        .map(|i| Record {
            id: i * 7919,
            name: format!("user number {i}"),
            email: format!("user{i}@example.org"),
            score: i as f64 * 1.25 + 0.1,
            ratio: 1.0 / (i as f64 + 3.0),
            active: i % 3 == 0,
            tags: vec!["alpha".into(), format!("t{}", i % 17), "ünïcode ✓".into()],
            attrs: (0..4)
                .map(|k| (format!("k{k}"), (i as i64) * k - 50))
                .collect(),
            note: if i % 2 == 0 {
                Some("it's a \"note\"\nwith lines".into())
            } else {
                None
            },
        })
        .collect()
}

fn best_of<F: FnMut()>(mut f: F) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..15 {
        let t = Instant::now();
        for _ in 0..10 {
            f();
        }
        best = best.min(t.elapsed());
    }
    best
}

#[test]
#[ignore = "timing test; run in release with --ignored"]
fn serpent_encode_within_3x_of_serde_json() {
    let data = payload();
    let opts = SerpentOptions::default();
    let mut buf = Vec::with_capacity(1 << 20);
    let serpent_time = best_of(|| {
        buf.clear();
        serpent::to_writer(&data, &mut buf, &opts).unwrap();
        std::hint::black_box(&buf);
    });
    let serpent_len = buf.len();
    let json_time = best_of(|| {
        buf.clear();
        serde_json::to_writer(&mut buf, &data).unwrap();
        std::hint::black_box(&buf);
    });
    let ratio = serpent_time.as_secs_f64() / json_time.as_secs_f64();
    eprintln!(
        "serpent {serpent_time:?} ({serpent_len} bytes) vs serde_json {json_time:?} ({} bytes) \
         per 10 encodes: ratio {ratio:.2}",
        buf.len()
    );
    assert!(ratio < 3.0, "serpent encode is {ratio:.2}x serde_json");
}

#[test]
#[ignore = "timing test; run in release with --ignored"]
fn serpent_decode_speed_against_serde_json() {
    let data = payload();
    let serpent_doc = serpent::to_vec(&data, &SerpentOptions::default()).unwrap();
    let json_doc = serde_json::to_vec(&data).unwrap();
    let serpent_time = best_of(|| {
        let v: Vec<Record> = serpent::from_slice(&serpent_doc, 200).unwrap();
        std::hint::black_box(v);
    });
    let value_time = best_of(|| {
        let v = serpent::parse_value(&serpent_doc, 200).unwrap();
        std::hint::black_box(v);
    });
    let json_time = best_of(|| {
        let v: Vec<Record> = serde_json::from_slice(&json_doc).unwrap();
        std::hint::black_box(v);
    });
    let ratio = serpent_time.as_secs_f64() / json_time.as_secs_f64();
    eprintln!(
        "decode per 10: serpent typed {serpent_time:?}, serpent Value {value_time:?}, \
         serde_json typed {json_time:?}: ratio {ratio:.2}"
    );
    // The typed decoder parses into a tree first; keep it within 6x of serde_json.
    assert!(ratio < 6.0, "serpent decode is {ratio:.2}x serde_json");
}
