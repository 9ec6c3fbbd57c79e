//! What `wirecall pick` measures: the built-in representative payloads (typed Rust structs)
//! and the user's own samples (files in JSON or the vector notation, read as [`Value`]s).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wirecall_bench_harness::measure::{self, Budget, Measurement};
use wirecall_bench_harness::payloads;
use wirecall_codecs::{to_value, CodecError, CodecId, Value};
use wirecall_conformance::notation;

use crate::compare::{self, Comparison};

/// A payload measured through its Rust type (the typed codec path).
pub(crate) trait TypedSample {
    /// Measures the payload with codec `id` through the typed path (`encode_into` and
    /// `decode::<T>`); the decoded `T` is returned as a [`Value`] so it can be compared
    /// with [`Sample::value`].
    fn measure(&self, id: CodecId, budget: Budget) -> Result<Measurement<Value>, CodecError>;

    /// The same payload through wirecall's typed path and through the format crate called
    /// directly, timed in alternation (`wirecall bench codecs`).
    fn compare(&self, id: CodecId, budget: Budget) -> Comparison;
}

struct Typed<T>(T);

impl<T: Serialize + DeserializeOwned> TypedSample for Typed<T> {
    fn measure(&self, id: CodecId, budget: Budget) -> Result<Measurement<Value>, CodecError> {
        let m = measure::typed(id, &self.0, budget)?;
        let decoded = match m.decoded {
            Ok((t, timing)) => to_value(&t).map(|v| (v, timing)),
            Err(e) => Err(e),
        };
        Ok(Measurement {
            bytes: m.bytes,
            encode: m.encode,
            decoded,
        })
    }

    fn compare(&self, id: CodecId, budget: Budget) -> Comparison {
        compare::compare_typed(id, &self.0, budget)
    }
}

/// Where a sample came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// One of the built-in payloads.
    BuiltIn,
    /// A file given with `--sample`.
    File(PathBuf),
}

/// One payload to measure.
pub(crate) struct Sample {
    /// Short name shown in reports (the built-in name or the file name).
    pub name: String,
    /// One line saying what the payload is.
    pub description: String,
    /// Where it came from.
    pub source: Source,
    /// The payload as a dynamic value (for built-ins, `to_value` of the typed payload).
    pub value: Value,
    /// The typed form, for built-ins only.
    pub typed: Option<Box<dyn TypedSample>>,
}

impl fmt::Debug for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sample")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("typed", &self.typed.is_some())
            .finish()
    }
}

impl Sample {
    fn builtin<T: Serialize + DeserializeOwned + 'static>(
        name: &str,
        description: &str,
        payload: T,
    ) -> Result<Sample, String> {
        let value = to_value(&payload)
            .map_err(|e| format!("built-in payload {name} has no Value form: {e}"))?;
        Ok(Sample {
            name: name.to_owned(),
            description: description.to_owned(),
            source: Source::BuiltIn,
            value,
            typed: Some(Box::new(Typed(payload))),
        })
    }
}

/// Reads the user's samples: each path is a file (JSON or the vector notation) or a folder
/// whose non-hidden files are all read, in name order. Errors name the file and, for bad
/// content, the line and column.
pub(crate) fn load(paths: &[PathBuf]) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path)
                .map_err(|e| format!("cannot read sample folder {}: {e}", path.display()))?;
            let mut files = Vec::new();
            for entry in entries {
                let entry = entry
                    .map_err(|e| format!("cannot read sample folder {}: {e}", path.display()))?;
                let p = entry.path();
                let hidden = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'));
                if p.is_file() && !hidden {
                    files.push(p);
                }
            }
            if files.is_empty() {
                return Err(format!(
                    "sample folder {} holds no files; put one JSON or notation value per file",
                    path.display()
                ));
            }
            files.sort();
            for f in files {
                out.push(load_file(&f)?);
            }
        } else {
            out.push(load_file(path)?);
        }
    }
    Ok(out)
}

/// Deepest user sample accepted (codecs decode at most 128 levels by default, so deeper
/// samples already show as decode failures; far deeper ones would only exhaust the stack).
const MAX_SAMPLE_DEPTH: usize = 512;

/// Reads one sample file.
pub(crate) fn load_file(path: &Path) -> Result<Sample, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read sample {}: {e}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        format!(
            "sample {} is not UTF-8 text (byte {}); write it as JSON or the vector notation",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    let value = notation::parse(&text).map_err(|e| {
        format!(
            "sample {}:{}:{}: {}",
            path.display(),
            e.line,
            e.column,
            e.message
        )
    })?;
    let depth = value.depth();
    if depth > MAX_SAMPLE_DEPTH {
        return Err(format!(
            "sample {} nests {depth} levels deep; pick measures at most {MAX_SAMPLE_DEPTH} \
             (codecs refuse more than 128 by default)",
            path.display()
        ));
    }
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(Sample {
        description: format!("{} ({})", name, value.type_name()),
        name,
        source: Source::File(path.to_owned()),
        value,
        typed: None,
    })
}

// ---------------------------------------------------------------------------------------
// Built-in payloads. Deterministic: a fixed-seed generator, so every run measures the same
// bytes.

/// A small deterministic generator (SplitMix64).
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items
            .get(self.below(items.len() as u64) as usize)
            .copied()
            .unwrap_or("")
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Severity of a log record (a unit enum).
#[derive(Serialize, Deserialize)]
enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// One structured log record.
#[derive(Serialize, Deserialize)]
struct LogRecord {
    timestamp_us: u64,
    level: Level,
    target: String,
    message: String,
    host: String,
    fields: BTreeMap<String, String>,
}

/// A numeric time series.
#[derive(Serialize, Deserialize)]
struct Series {
    name: String,
    unit: String,
    start_us: u64,
    step_us: u32,
    values: Vec<f64>,
    min: f64,
    max: f64,
}

/// One node of a deeply nested document.
#[derive(Serialize, Deserialize)]
struct Node {
    kind: String,
    id: u32,
    weight: f64,
    attrs: BTreeMap<String, i64>,
    children: Vec<Node>,
}

const WORDS: &[&str] = &[
    "request",
    "handled",
    "cache",
    "miss",
    "user",
    "session",
    "timeout",
    "retry",
    "connection",
    "closed",
    "opened",
    "provider",
    "payload",
    "accepted",
    "refused",
    "codec",
    "frame",
    "queue",
    "worker",
    "latency",
    "shard",
    "replica",
    "snapshot",
    "commit",
];

fn log_batch(g: &mut Gen) -> Vec<LogRecord> {
    let levels = [Level::Debug, Level::Info, Level::Warn, Level::Error];
    (0..200u64)
        .map(|i| {
            let words = 6 + g.below(10) as usize;
            let message = (0..words)
                .map(|_| g.pick(WORDS))
                .collect::<Vec<_>>()
                .join(" ");
            let mut fields = BTreeMap::new();
            fields.insert("request_id".into(), format!("{:016x}", g.next()));
            fields.insert("method".into(), g.pick(WORDS).to_owned());
            if g.below(3) == 0 {
                fields.insert(
                    "peer".into(),
                    format!("10.0.{}.{}:7000", g.below(256), g.below(256)),
                );
            }
            let level = match levels.get(g.below(4) as usize) {
                Some(Level::Debug) => Level::Debug,
                Some(Level::Warn) => Level::Warn,
                Some(Level::Error) => Level::Error,
                _ => Level::Info,
            };
            LogRecord {
                timestamp_us: 1_763_700_000_000_000 + i * 1_337,
                level,
                target: format!("wirecall::{}", g.pick(WORDS)),
                message,
                host: format!("node-{:02}.cluster.local", g.below(32)),
                fields,
            }
        })
        .collect()
}

fn float_batch(g: &mut Gen) -> Series {
    let values: Vec<f64> = (0..4096)
        .map(|i| 20.0 + 5.0 * (i as f64 / 64.0).sin() + g.unit() - 0.5)
        .collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Series {
        name: "rack3.inlet_temperature".into(),
        unit: "celsius".into(),
        start_us: 1_763_700_000_000_000,
        step_us: 250_000,
        values,
        min,
        max,
    }
}

fn nested_doc(g: &mut Gen, depth: u32) -> Node {
    let mut attrs = BTreeMap::new();
    for _ in 0..3 {
        attrs.insert(
            g.pick(WORDS).to_owned(),
            g.below(1_000_000) as i64 - 500_000,
        );
    }
    let mut children: Vec<Node> = (0..2)
        .map(|k| Node {
            kind: "leaf".into(),
            id: depth * 10 + k,
            weight: g.unit(),
            attrs: BTreeMap::new(),
            children: Vec::new(),
        })
        .collect();
    if depth > 0 {
        children.push(nested_doc(g, depth - 1));
    }
    Node {
        kind: if depth % 2 == 0 { "section" } else { "group" }.into(),
        id: depth,
        weight: g.unit(),
        attrs,
        children,
    }
}

/// The built-in payloads, measured through their Rust types.
pub(crate) fn builtin() -> Result<Vec<Sample>, String> {
    let mut g = Gen(0x5eed_c0de_c0de);
    Ok(vec![
        Sample::builtin(
            "rpc_args",
            "small call arguments: the benches' representative Record (ints, strings, 16 floats, a nested struct, a map)",
            payloads::Record::representative(),
        )?,
        Sample::builtin(
            "log_batch",
            "string-heavy: 200 structured log records with string maps",
            log_batch(&mut g),
        )?,
        Sample::builtin(
            "float_batch",
            "float-heavy: a time series of 4096 f64 values",
            float_batch(&mut g),
        )?,
        Sample::builtin(
            "blob",
            "byte-heavy: the benches' Blob with 64 KiB of bytes",
            payloads::Blob::with_len(64 * 1024),
        )?,
        Sample::builtin(
            "nested_doc",
            "deeply nested: a document 24 levels deep (48 nested containers)",
            nested_doc(&mut g, 23),
        )?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_round_trip_through_every_self_describing_typed_codec() {
        let samples = builtin().unwrap();
        assert_eq!(samples.len(), 5);
        for s in &samples {
            assert!(
                s.value.depth() <= 64,
                "{} is {} deep",
                s.name,
                s.value.depth()
            );
            for info in measure::codecs() {
                let m = s
                    .typed
                    .as_ref()
                    .unwrap()
                    .measure(info.id, Budget::new(std::time::Duration::from_micros(200)))
                    .unwrap();
                let (v, _) = m
                    .decoded
                    .unwrap_or_else(|e| panic!("{} via {}: {e}", s.name, info.name));
                assert!(v.same_as(&s.value), "{} via {}", s.name, info.name);
            }
        }
    }
}
