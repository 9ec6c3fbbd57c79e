//! Benchmark payloads shared by the codec benches and the `pick` command.
//!
//! * [`Record`]: a representative RPC argument — ints, a short string, 16 floats, 4 tags,
//!   a nested struct with an optional field and a small string-keyed map.
//! * [`Blob`]: a byte-heavy payload, a name plus a 1 MiB byte buffer serialized as bytes
//!   (`serialize_bytes`, what `serde_bytes` does), so binary codecs can carry it raw.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The nested part of [`Record`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// A short label.
    pub label: String,
    /// A weight.
    pub weight: f32,
    /// An optional note (present in [`Record::representative`]).
    pub note: Option<String>,
    /// An optional owner (absent in [`Record::representative`]).
    pub owner: Option<String>,
}

/// A representative RPC argument.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// A 64-bit id.
    pub id: u64,
    /// A sequence number.
    pub seq: u32,
    /// A signed offset.
    pub offset: i64,
    /// A flag.
    pub active: bool,
    /// A short string.
    pub name: String,
    /// 16 floats.
    pub samples: Vec<f64>,
    /// 4 tags.
    pub tags: Vec<String>,
    /// A nested struct with optional fields.
    pub meta: Meta,
    /// A small string-keyed map.
    pub attrs: BTreeMap<String, i64>,
}

impl Record {
    /// The record every codec bench uses.
    pub fn representative() -> Record {
        Record {
            id: 1_234_567_890_123,
            seq: 42,
            offset: -98_765,
            active: true,
            name: "sensor-17/north".to_owned(),
            samples: (0..16).map(|i| 0.1 + f64::from(i) * 1.37).collect(),
            tags: ["alpha", "beta", "gamma", "delta"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            meta: Meta {
                label: "calibrated".to_owned(),
                weight: 0.75,
                note: Some("checked 2026-11-21".to_owned()),
                owner: None,
            },
            attrs: [("min", -5), ("max", 120), ("count", 16)]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
        }
    }
}

/// A byte-heavy payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blob {
    /// A name.
    pub name: String,
    /// The bytes, serialized with `serialize_bytes`.
    #[serde(with = "as_bytes")]
    pub data: Vec<u8>,
}

impl Blob {
    /// A blob of `len` pseudo-random bytes.
    pub fn with_len(len: usize) -> Blob {
        let mut x: u32 = 0x1234_5678;
        let data = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        Blob {
            name: "chunk-0001.bin".to_owned(),
            data,
        }
    }

    /// The 1 MiB blob the codec benches use.
    pub fn one_mib() -> Blob {
        Blob::with_len(1 << 20)
    }
}

/// `#[serde(with = "as_bytes")]` for `Vec<u8>`: bytes, not a sequence (like `serde_bytes`).
pub mod as_bytes {
    use std::fmt;

    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::Serializer;

    /// Serializes with `serialize_bytes`.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    /// Deserializes from bytes, or from a sequence of integers (formats without bytes).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = a.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(V)
    }
}
