//! The measurement stages of `wirecall pick`. Each stage measures one aspect of one
//! (codec, sample) pair and writes it into that pair's [`Cell`]; the driver runs every
//! stage over every pair within one time budget.
//!
//! Built-in stages: [`CodecStage`] (the primary path: typed for built-in payloads, `Value`
//! for user samples: size, zstd size, encode/decode time, round trip) and [`ValueStage`]
//! (the `Value` path of built-in payloads: what a dynamic or Python peer pays and sees).
//! A further per-sample stage implements [`Stage`] and records its figures as [`Metric`]s,
//! which the reports show as extra columns. The RPC round trip is not one of these: it is
//! the same call for every sample and measures all codecs interleaved, so it runs once per
//! codec in [`super::rpc`].

use wirecall_bench_harness::measure::{self, Budget, Measurement, Timing};
use wirecall_codecs::{CodecError, CodecInfo, ErrorKind, Value};

use super::losses::{self, Loss};
use super::samples::Sample;

/// How a round trip went.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RoundTrip {
    /// Decoded equal to the original (floats by bits, NaN == NaN).
    Exact,
    /// Decoded, but different: what was lost.
    Lossy(Vec<Loss>),
    /// Decoding the codec's own output failed.
    DecodeFailed(String),
    /// The codec is not self-describing and the sample has no Rust type to decode into.
    NeedsRustType,
}

impl RoundTrip {
    /// `Some(true)` exact, `Some(false)` lossy or failed, `None` unknown.
    pub(super) fn exact(&self) -> Option<bool> {
        match self {
            RoundTrip::Exact => Some(true),
            RoundTrip::Lossy(_) | RoundTrip::DecodeFailed(_) => Some(false),
            RoundTrip::NeedsRustType => None,
        }
    }
}

/// One path (typed or `Value`) of one sample through one codec.
#[derive(Debug, Clone)]
pub(super) struct PathResult {
    /// Encoded size in bytes.
    pub size: usize,
    /// Size after zstd (level 3) compression.
    pub zstd_size: usize,
    /// Encode time.
    pub encode: Timing,
    /// Decode time, when decoding worked.
    pub decode: Option<Timing>,
    /// The round trip.
    pub round_trip: RoundTrip,
}

/// Which path a [`PathResult`] measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PathKind {
    /// `encode_into::<T>` / `decode::<T>` on the Rust type.
    Typed,
    /// `encode_value` / `decode_value` on the dynamic value.
    Value,
}

impl PathKind {
    /// `typed` or `value`.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            PathKind::Typed => "typed",
            PathKind::Value => "value",
        }
    }
}

/// A named extra figure from a further stage.
#[derive(Debug, Clone)]
pub(super) struct Metric {
    /// Column name, e.g. `rpc_tcp`.
    pub name: String,
    /// Its timing.
    pub timing: Timing,
}

/// Everything measured for one (codec, sample) pair.
#[derive(Debug, Clone)]
pub(super) struct Cell {
    /// Which path `primary` measured.
    pub primary_kind: PathKind,
    /// The primary path, or why the codec could not encode the sample.
    pub primary: Option<Result<PathResult, String>>,
    /// The `Value` path of a built-in payload.
    pub value_path: Option<Result<PathResult, String>>,
    /// Figures from further stages.
    pub metrics: Vec<Metric>,
}

impl Cell {
    /// An empty cell for `sample`.
    pub(super) fn new(sample: &Sample) -> Cell {
        Cell {
            primary_kind: if sample.typed.is_some() {
                PathKind::Typed
            } else {
                PathKind::Value
            },
            primary: None,
            value_path: None,
            metrics: Vec::new(),
        }
    }
}

/// One aspect measured per (codec, sample) pair.
pub(super) trait Stage {
    /// Name shown on the progress bar.
    fn name(&self) -> &'static str;
    /// How many timed measurements this stage takes for `sample` (0: it does not apply),
    /// used to share the time budget.
    fn measurements(&self, sample: &Sample) -> usize;
    /// Measures `sample` with `codec` within `budget` per timed measurement.
    fn run(&self, codec: &CodecInfo, sample: &Sample, budget: Budget, cell: &mut Cell);
}

/// The primary path: typed for built-in payloads, `Value` for user samples.
#[derive(Debug, Clone, Copy)]
pub(super) struct CodecStage;

/// The `Value` path for built-in payloads (user samples already take it as primary).
#[derive(Debug, Clone, Copy)]
pub(super) struct ValueStage;

impl Stage for CodecStage {
    fn name(&self) -> &'static str {
        "codec"
    }
    fn measurements(&self, _: &Sample) -> usize {
        2
    }
    fn run(&self, codec: &CodecInfo, sample: &Sample, budget: Budget, cell: &mut Cell) {
        let m = match &sample.typed {
            Some(t) => t.measure(codec.id, budget),
            None => measure::value(codec.id, &sample.value, budget),
        };
        cell.primary = Some(finish(m, &sample.value));
    }
}

impl Stage for ValueStage {
    fn name(&self) -> &'static str {
        "value"
    }
    fn measurements(&self, sample: &Sample) -> usize {
        if sample.typed.is_some() {
            2
        } else {
            0
        }
    }
    fn run(&self, codec: &CodecInfo, sample: &Sample, budget: Budget, cell: &mut Cell) {
        if sample.typed.is_some() {
            let m = measure::value(codec.id, &sample.value, budget);
            cell.value_path = Some(finish(m, &sample.value));
        }
    }
}

fn zstd_size(bytes: &[u8]) -> usize {
    // zstd on an in-memory buffer only fails on allocation failure; count it as
    // incompressible then.
    zstd::bulk::compress(bytes, 3).map_or(bytes.len(), |c| c.len())
}

fn finish(
    m: Result<Measurement<Value>, CodecError>,
    original: &Value,
) -> Result<PathResult, String> {
    let m = m.map_err(|e| e.message().to_owned())?;
    let (decode, round_trip) = match m.decoded {
        Ok((v, t)) => {
            let l = losses::diff(original, &v);
            let rt = if l.is_empty() {
                RoundTrip::Exact
            } else {
                RoundTrip::Lossy(l)
            };
            (Some(t), rt)
        }
        Err(e) if e.kind() == ErrorKind::NotSelfDescribing => (None, RoundTrip::NeedsRustType),
        Err(e) => (None, RoundTrip::DecodeFailed(e.message().to_owned())),
    };
    Ok(PathResult {
        size: m.bytes.len(),
        zstd_size: zstd_size(&m.bytes),
        encode: m.encode,
        decode,
        round_trip,
    })
}

/// The results: `cells[codec][sample]`.
#[derive(Debug)]
pub(super) struct Results {
    /// One row per codec measured, in the order given.
    pub cells: Vec<Vec<Cell>>,
    /// Budget per timed measurement.
    pub budget: Budget,
}

/// Runs every stage over every (codec, sample) pair, sharing `total` time among the timed
/// measurements; `tick` is called after each stage of each pair.
pub(super) fn run(
    codecs: &[CodecInfo],
    samples: &[Sample],
    stages: &[&dyn Stage],
    total: std::time::Duration,
    mut tick: impl FnMut(&CodecInfo, &Sample, &str),
) -> Results {
    let per_codec: usize = samples
        .iter()
        .map(|s| stages.iter().map(|st| st.measurements(s)).sum::<usize>())
        .sum();
    let count = (per_codec * codecs.len()).max(1) as u32;
    let budget = Budget::new((total / count).clamp(
        std::time::Duration::from_millis(1),
        std::time::Duration::from_secs(2),
    ));
    let cells = codecs
        .iter()
        .map(|codec| {
            samples
                .iter()
                .map(|sample| {
                    let mut cell = Cell::new(sample);
                    for st in stages {
                        if st.measurements(sample) > 0 {
                            guarded(*st, codec, sample, budget, &mut cell);
                        }
                        tick(codec, sample, st.name());
                    }
                    cell
                })
                .collect()
        })
        .collect();
    Results { cells, budget }
}

/// Runs one stage, turning a panic inside a codec into an error in the cell (reported in
/// that codec's row) instead of ending the whole run.
fn guarded(st: &dyn Stage, codec: &CodecInfo, sample: &Sample, budget: Budget, cell: &mut Cell) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        st.run(codec, sample, budget, cell)
    }));
    if let Err(payload) = result {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        let err = Some(Err(format!(
            "the codec panicked in the {} stage: {msg}",
            st.name()
        )));
        if cell.primary.is_none() {
            cell.primary = err;
        } else if cell.value_path.is_none() {
            cell.value_path = err;
        }
    }
}

/// How many `tick`s [`run`] makes.
pub(super) fn ticks(codecs: usize, samples: usize, stages: usize) -> u64 {
    (codecs * samples * stages) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pick::samples::{Sample, Source};
    use std::time::Duration;
    use wirecall_codecs::CodecId;

    fn user(value: Value) -> Sample {
        Sample {
            name: "t".into(),
            description: String::new(),
            source: Source::BuiltIn,
            value,
            typed: None,
        }
    }

    #[test]
    fn user_samples_report_losses_and_unknown_round_trips() {
        let s = user(Value::Tuple(vec![Value::Int(1)]));
        let codecs: Vec<CodecInfo> = [CodecId::JSON, CodecId::POSTCARD]
            .into_iter()
            .filter_map(measure::info)
            .collect();
        let r = run(
            &codecs,
            std::slice::from_ref(&s),
            &[&CodecStage, &ValueStage],
            Duration::from_millis(4),
            |_, _, _| {},
        );
        let json = r.cells[0][0].primary.clone().unwrap().unwrap();
        assert_eq!(json.size, 3);
        assert!(matches!(&json.round_trip, RoundTrip::Lossy(l) if l[0].kind == "tuple_to_list"));
        assert!(r.cells[0][0].value_path.is_none());
        let pc = r.cells[1][0].primary.clone().unwrap().unwrap();
        assert_eq!(pc.round_trip, RoundTrip::NeedsRustType);
        assert!(pc.decode.is_none());
    }

    #[test]
    fn unencodable_samples_are_errors_in_the_cell() {
        let s = user(Value::Int(1 << 100));
        let codecs: Vec<CodecInfo> = measure::info(CodecId::MSGPACK).into_iter().collect();
        let r = run(
            &codecs,
            std::slice::from_ref(&s),
            &[&CodecStage],
            Duration::from_millis(2),
            |_, _, _| {},
        );
        assert!(r.cells[0][0].primary.clone().unwrap().is_err());
    }
}
