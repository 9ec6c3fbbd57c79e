//! The report as the `--json` document, schema `wirecall-pick/1` (fields are only ever
//! added). Every object of the document is a struct here, serialized with serde:
//!
//! * top level ([`PickDoc`]): `schema`, `prefer`, `needs[]`, `max_size`,
//!   `allow_unmaintained`, `link_mbps`, `samples[] {name, description, source, path}`,
//!   `budget_per_measurement_ms`, `wall_time_s`, `codecs[]`, `recommended` (name or null),
//!   `why`, `config[]` (the `WIRECALL_CODEC=`, `WIRECALL_CODECS_ACCEPTED=` and Rust lines);
//! * per codec, in ranking order ([`CodecDoc`]): `name`, `id`, `self_describing`,
//!   `human_readable`, `python_interop`, `maintained`, `size`, `zstd_size` (totals),
//!   `largest {size, sample}`, `encode_ns`/`decode_ns` (`{median, p10, p90, samples,
//!   batch}` summed over samples, or null), `score`, `metrics[]`, `round_trip {exact (bool
//!   or null), losses[] {sample, kind, what, count, first_at}, problems[]}`,
//!   `value_round_trip_losses[]`, `excluded` (reason or null), `recommended`, and
//!   `samples[]` with the per-sample `primary` and `value_path` figures (`size`,
//!   `zstd_size`, `encode_ns`, `decode_ns`, `round_trip {exact, losses[], problem}`,
//!   `error`);
//! * the RPC stage (null with `--no-rpc`): top-level `rpc {per_measurement_ms,
//!   wall_time_s, payload_bytes, inflight, connections, baselines {tcp, unix}}`, each
//!   baseline `{p50_ns, p99_ns, samples, bytes}` (the raw socket ping-pong of the echo
//!   frame's length); per codec `rpc {tcp, unix}`, each `{p50_ns, p99_ns, latency_samples,
//!   calls_per_sec, calls, frame_len, error}` with the figures null and `error` a sentence
//!   when the call failed over that transport.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value as Json;
use wirecall_bench_harness::measure::Timing;
use wirecall_codecs::CodecId;

use super::decision::{config_lines, Report, Row, SampleLoss};
use crate::pick::losses::Loss;
use crate::pick::measure::{Cell, PathKind, PathResult, RoundTrip};
use crate::pick::samples::{Sample, Source};

/// The whole document.
#[derive(Debug, Serialize)]
pub(crate) struct PickDoc<'a> {
    schema: &'static str,
    prefer: &'static str,
    needs: Vec<String>,
    max_size: Option<u64>,
    allow_unmaintained: bool,
    link_mbps: f64,
    samples: Vec<SampleDoc<'a>>,
    budget_per_measurement_ms: f64,
    wall_time_s: f64,
    codecs: Vec<CodecDoc<'a>>,
    recommended: Option<&'static str>,
    why: &'a str,
    config: Vec<String>,
    rpc: Option<RpcDoc>,
}

/// One sample measured.
#[derive(Debug, Serialize)]
struct SampleDoc<'a> {
    name: &'a str,
    description: &'a str,
    /// `built-in` or the file's path.
    source: String,
    /// `typed` or `value`.
    path: &'static str,
}

/// A timing: per-operation nanoseconds.
#[derive(Debug, Serialize)]
struct TimingDoc {
    median: f64,
    p10: f64,
    p90: f64,
    samples: usize,
    batch: u64,
}

impl From<Timing> for TimingDoc {
    fn from(t: Timing) -> TimingDoc {
        TimingDoc {
            median: t.median_ns,
            p10: t.p10_ns,
            p90: t.p90_ns,
            samples: t.samples,
            batch: t.batch,
        }
    }
}

/// A named extra figure (a further stage's column).
#[derive(Debug, Serialize)]
struct MetricDoc<'a> {
    name: &'a str,
    ns: TimingDoc,
}

/// A loss, with the sample it was seen on when it is part of a codec's totals.
#[derive(Debug, Serialize)]
struct LossDoc<'a> {
    #[serde(flatten)]
    loss: &'a Loss,
    #[serde(skip_serializing_if = "Option::is_none")]
    sample: Option<&'a str>,
}

impl<'a> From<&'a SampleLoss> for LossDoc<'a> {
    fn from(l: &'a SampleLoss) -> LossDoc<'a> {
        LossDoc {
            loss: &l.loss,
            sample: Some(&l.sample),
        }
    }
}

/// The largest encoded sample.
#[derive(Debug, Serialize)]
struct LargestDoc<'a> {
    size: usize,
    sample: &'a str,
}

/// A codec's round trip over all samples.
#[derive(Debug, Serialize)]
struct RowRoundTripDoc<'a> {
    exact: Option<bool>,
    losses: Vec<LossDoc<'a>>,
    problems: &'a [String],
}

/// One codec, in ranking order.
#[derive(Debug, Serialize)]
struct CodecDoc<'a> {
    name: &'static str,
    id: u64,
    self_describing: bool,
    human_readable: bool,
    python_interop: bool,
    maintained: bool,
    size: usize,
    zstd_size: usize,
    largest: Option<LargestDoc<'a>>,
    encode_ns: Option<TimingDoc>,
    decode_ns: Option<TimingDoc>,
    score: Option<f64>,
    metrics: Vec<MetricDoc<'a>>,
    /// By transport name; null when the RPC stage did not run.
    rpc: Option<BTreeMap<&'static str, RpcCellDoc<'a>>>,
    round_trip: RowRoundTripDoc<'a>,
    value_round_trip_losses: Vec<LossDoc<'a>>,
    excluded: Option<&'a str>,
    recommended: bool,
    samples: Vec<CellDoc<'a>>,
}

/// One (codec, sample) pair.
#[derive(Debug, Serialize)]
struct CellDoc<'a> {
    sample: &'a str,
    path: &'static str,
    primary: Option<PathDoc<'a>>,
    value_path: Option<PathDoc<'a>>,
    metrics: Vec<MetricDoc<'a>>,
}

/// One path's figures for one sample, or why the codec could not encode it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum PathDoc<'a> {
    Measured {
        size: usize,
        zstd_size: usize,
        encode_ns: TimingDoc,
        decode_ns: Option<TimingDoc>,
        round_trip: PathRoundTripDoc<'a>,
        /// Always null here: the key is present in both forms.
        error: Option<&'a str>,
    },
    Failed {
        error: &'a str,
    },
}

/// One sample's round trip on one path.
#[derive(Debug, Serialize)]
struct PathRoundTripDoc<'a> {
    exact: Option<bool>,
    losses: Vec<LossDoc<'a>>,
    problem: Option<String>,
}

/// One codec's RPC figures over one transport; the figures null and `error` set when the
/// call failed.
#[derive(Debug, Default, Serialize)]
struct RpcCellDoc<'a> {
    p50_ns: Option<u64>,
    p99_ns: Option<u64>,
    latency_samples: Option<usize>,
    calls_per_sec: Option<f64>,
    calls: Option<u64>,
    frame_len: Option<usize>,
    error: Option<&'a str>,
}

/// The RPC stage's settings and baselines.
#[derive(Debug, Serialize)]
struct RpcDoc {
    per_measurement_ms: f64,
    wall_time_s: f64,
    payload_bytes: usize,
    inflight: usize,
    connections: usize,
    /// By transport name.
    baselines: BTreeMap<&'static str, BaselineDoc>,
}

/// The raw socket ping-pong of one transport.
#[derive(Debug, Serialize)]
struct BaselineDoc {
    p50_ns: u64,
    p99_ns: u64,
    samples: usize,
    bytes: usize,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn path_doc(p: &Option<Result<PathResult, String>>) -> Option<PathDoc<'_>> {
    Some(match p.as_ref()? {
        Err(e) => PathDoc::Failed { error: e },
        Ok(p) => PathDoc::Measured {
            size: p.size,
            zstd_size: p.zstd_size,
            encode_ns: p.encode.into(),
            decode_ns: p.decode.map(TimingDoc::from),
            round_trip: round_trip_doc(&p.round_trip),
            error: None,
        },
    })
}

fn round_trip_doc(rt: &RoundTrip) -> PathRoundTripDoc<'_> {
    let (losses, problem) = match rt {
        RoundTrip::Exact => (Vec::new(), None),
        RoundTrip::Lossy(l) => (
            l.iter()
                .map(|loss| LossDoc { loss, sample: None })
                .collect(),
            None,
        ),
        RoundTrip::DecodeFailed(e) => (Vec::new(), Some(format!("decode failed: {e}"))),
        RoundTrip::NeedsRustType => (
            Vec::new(),
            Some("not self-describing: round trip needs a Rust type".to_owned()),
        ),
    };
    PathRoundTripDoc {
        exact: rt.exact(),
        losses,
        problem,
    }
}

fn rpc_cells(r: &Row) -> BTreeMap<&'static str, RpcCellDoc<'_>> {
    r.rpc
        .iter()
        .map(|c| {
            let doc = match &c.result {
                Ok(f) => RpcCellDoc {
                    p50_ns: Some(nanos(f.latency.p50)),
                    p99_ns: Some(nanos(f.latency.p99)),
                    latency_samples: Some(f.latency.samples),
                    calls_per_sec: Some(f.throughput.calls_per_sec),
                    calls: Some(f.throughput.calls),
                    frame_len: Some(f.frame_len),
                    error: None,
                },
                Err(e) => RpcCellDoc {
                    error: Some(e),
                    ..RpcCellDoc::default()
                },
            };
            (c.transport.name(), doc)
        })
        .collect()
}

fn rpc_doc(report: &Report, per: Duration) -> RpcDoc {
    let (inflight, connections) = crate::pick::rpc::load();
    RpcDoc {
        per_measurement_ms: per.as_secs_f64() * 1e3,
        wall_time_s: report.rpc_elapsed.as_secs_f64(),
        payload_bytes: wirecall_bench_harness::rpc::ECHO_PAYLOAD.len(),
        inflight,
        connections,
        baselines: report
            .rpc_baselines
            .iter()
            .map(|b| {
                let doc = BaselineDoc {
                    p50_ns: nanos(b.raw.p50),
                    p99_ns: nanos(b.raw.p99),
                    samples: b.raw.samples,
                    bytes: b.raw_len,
                };
                (b.transport.name(), doc)
            })
            .collect(),
    }
}

fn metrics_doc<'a>(named: impl Iterator<Item = (&'a str, Timing)>) -> Vec<MetricDoc<'a>> {
    named
        .map(|(name, t)| MetricDoc { name, ns: t.into() })
        .collect()
}

fn codec_doc<'a>(
    report: &'a Report,
    r: &'a Row,
    samples: &'a [Sample],
    cells: &[(CodecId, &'a [Cell])],
) -> CodecDoc<'a> {
    let per_sample = cells
        .iter()
        .find(|(id, _)| *id == r.info.id)
        .map(|(_, cs)| {
            samples
                .iter()
                .zip(cs.iter())
                .map(|(s, c)| CellDoc {
                    sample: &s.name,
                    path: c.primary_kind.as_str(),
                    primary: path_doc(&c.primary),
                    value_path: path_doc(&c.value_path),
                    metrics: metrics_doc(c.metrics.iter().map(|m| (m.name.as_str(), m.timing))),
                })
                .collect()
        })
        .unwrap_or_default();
    CodecDoc {
        name: r.info.name,
        id: u64::from(r.info.id.get()),
        self_describing: r.info.self_describing,
        human_readable: r.info.human_readable,
        python_interop: r.info.python_interop,
        maintained: r.info.maintained,
        size: r.size,
        zstd_size: r.zstd_size,
        largest: r.largest.as_ref().map(|(size, sample)| LargestDoc {
            size: *size,
            sample,
        }),
        encode_ns: r.encode.map(TimingDoc::from),
        decode_ns: r.decode.map(TimingDoc::from),
        score: r.score,
        metrics: metrics_doc(r.metrics.iter().map(|(n, t)| (n.as_str(), *t))),
        rpc: report.rpc_per_measurement.map(|_| rpc_cells(r)),
        round_trip: RowRoundTripDoc {
            exact: r.exact,
            losses: r.losses.iter().map(LossDoc::from).collect(),
            problems: &r.problems,
        },
        value_round_trip_losses: r.value_losses.iter().map(LossDoc::from).collect(),
        excluded: r.excluded.as_deref(),
        recommended: r.recommended,
        samples: per_sample,
    }
}

/// The `--json` document of `report` (see the module documentation for its fields).
pub(crate) fn document<'a>(
    report: &'a Report,
    samples: &'a [Sample],
    cells: &[(CodecId, &'a [Cell])],
    budget_ms: f64,
    wall_s: f64,
) -> PickDoc<'a> {
    let sample_docs = samples
        .iter()
        .map(|s| SampleDoc {
            name: &s.name,
            description: &s.description,
            source: match &s.source {
                Source::BuiltIn => "built-in".to_owned(),
                Source::File(p) => p.display().to_string(),
            },
            path: if s.typed.is_some() {
                PathKind::Typed.as_str()
            } else {
                PathKind::Value.as_str()
            },
        })
        .collect();
    let c = &report.criteria;
    PickDoc {
        schema: "wirecall-pick/1",
        prefer: c.prefer.as_str(),
        needs: c
            .needs
            .iter()
            .filter_map(|n| clap::ValueEnum::to_possible_value(n).map(|v| v.get_name().to_owned()))
            .collect(),
        max_size: c.max_size,
        allow_unmaintained: c.allow_unmaintained,
        link_mbps: c.link_mbps,
        samples: sample_docs,
        budget_per_measurement_ms: budget_ms,
        wall_time_s: wall_s,
        codecs: report
            .rows
            .iter()
            .map(|r| codec_doc(report, r, samples, cells))
            .collect(),
        recommended: report
            .rows
            .iter()
            .find(|r| r.recommended)
            .map(|r| r.info.name),
        why: &report.why,
        config: config_lines(&report.accepted),
        rpc: report.rpc_per_measurement.map(|per| rpc_doc(report, per)),
    }
}

/// The `--json` document as a JSON value: [`document`] serialized (objects with their keys
/// sorted, as the document has always been printed).
pub(crate) fn to_json(
    report: &Report,
    samples: &[Sample],
    cells: &[(CodecId, &[Cell])],
    budget_ms: f64,
    wall_s: f64,
) -> serde_json::Result<Json> {
    serde_json::to_value(document(report, samples, cells, budget_ms, wall_s))
}
