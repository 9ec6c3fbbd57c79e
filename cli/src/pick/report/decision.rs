//! From measurements to a decision: per-codec totals, the constraints, the ranking, the
//! recommendation and the configuration lines that use it.

use std::fmt::Write as _;

use wirecall_bench_harness::measure::Timing;
use wirecall_bench_harness::rpc::TransportKind;
use wirecall_codecs::{CodecId, CodecInfo};

use super::units::{fmt_ns, group};
use crate::pick::losses::Loss;
use crate::pick::measure::{Cell, Results, RoundTrip};
use crate::pick::rpc::{Baseline, RpcCell, RpcResults};
use crate::pick::samples::Sample;

/// A requirement a codec must meet to be recommended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Need {
    /// Python can read and write it (json, msgpack, cbor, serpent).
    Python,
    /// Text a person can read (json, ron, serpent).
    HumanReadable,
    /// Decodes without the Rust type (everything but bincode and postcard).
    SelfDescribing,
    /// Every sample round-trips exactly.
    Exact,
}

/// What to optimise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Prefer {
    /// Encode + decode time plus the time to send the bytes over the link (`--link-mbps`).
    Latency,
    /// Encoded size.
    Size,
    /// Encode + decode CPU time.
    Cpu,
}

impl Prefer {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Prefer::Latency => "latency",
            Prefer::Size => "size",
            Prefer::Cpu => "cpu",
        }
    }
}

/// The decision inputs.
#[derive(Debug, Clone)]
pub(crate) struct Criteria {
    /// Required properties.
    pub(crate) needs: Vec<Need>,
    /// Largest encoded sample allowed, in bytes.
    pub(crate) max_size: Option<u64>,
    /// What to optimise.
    pub(crate) prefer: Prefer,
    /// Link speed for the latency score, in Mbit/s.
    pub(crate) link_mbps: f64,
    /// Consider codecs whose format crate is unmaintained upstream (bincode).
    pub(crate) allow_unmaintained: bool,
}

/// A loss seen on one sample.
#[derive(Debug, Clone)]
pub(crate) struct SampleLoss {
    /// The sample's name.
    pub(crate) sample: String,
    /// The loss.
    pub(crate) loss: Loss,
}

/// One codec's totals over all samples and the verdict.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// The codec.
    pub(crate) info: CodecInfo,
    /// Sum of encoded sizes (samples the codec could encode).
    pub(crate) size: usize,
    /// Sum of zstd-compressed sizes.
    pub(crate) zstd_size: usize,
    /// Largest encoded sample and its name.
    pub(crate) largest: Option<(usize, String)>,
    /// Sum of per-sample encode timings; `None` when a sample could not be encoded.
    pub(crate) encode: Option<Timing>,
    /// Sum of per-sample decode timings; `None` when any sample could not be decoded.
    pub(crate) decode: Option<Timing>,
    /// `Some(true)` every sample exact, `Some(false)` some loss or failure, `None` unknown.
    pub(crate) exact: Option<bool>,
    /// Losses on the primary path.
    pub(crate) losses: Vec<SampleLoss>,
    /// Losses on the `Value` path of built-in payloads.
    pub(crate) value_losses: Vec<SampleLoss>,
    /// Encode or decode failures and unknown round trips, one sentence each.
    pub(crate) problems: Vec<String>,
    /// Extra stage figures summed over samples, by name.
    pub(crate) metrics: Vec<(String, Timing)>,
    /// The RPC stage's figures, one per transport (tcp, then unix); empty with `--no-rpc`.
    pub(crate) rpc: Vec<RpcCell>,
    /// Why the codec cannot be recommended, if it cannot.
    pub(crate) excluded: Option<String>,
    /// The ranking figure for the preference (lower is better), when known.
    pub(crate) score: Option<f64>,
    /// Whether this is the recommendation.
    pub(crate) recommended: bool,
}

/// The whole decision.
#[derive(Debug)]
pub(crate) struct Report {
    /// Rows in ranking order.
    pub(crate) rows: Vec<Row>,
    /// The criteria used.
    pub(crate) criteria: Criteria,
    /// One line saying why the recommendation won (or why there is none).
    pub(crate) why: String,
    /// The accepted set to configure: the recommendation and the runner-up.
    pub(crate) accepted: Vec<CodecInfo>,
    /// Time per RPC figure, `None` when the RPC stage did not run (`--no-rpc`).
    pub(crate) rpc_per_measurement: Option<std::time::Duration>,
    /// Wall time of the RPC stage (zero when it did not run).
    pub(crate) rpc_elapsed: std::time::Duration,
    /// The raw socket ping-pong baselines of the RPC stage.
    pub(crate) rpc_baselines: Vec<Baseline>,
}

impl Row {
    /// This codec's RPC figures over `t`, if the stage ran.
    pub(crate) fn rpc_on(&self, t: TransportKind) -> Option<&RpcCell> {
        self.rpc.iter().find(|c| c.transport == t)
    }
}

fn sum_timing(acc: &mut Option<Timing>, t: &Timing) {
    *acc = Some(match acc {
        Some(a) => a.plus(t),
        None => *t,
    });
}

fn losses_of(rt: &RoundTrip, sample: &str) -> Vec<SampleLoss> {
    match rt {
        RoundTrip::Lossy(l) => l
            .iter()
            .map(|loss| SampleLoss {
                sample: sample.to_owned(),
                loss: loss.clone(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn row(info: &CodecInfo, samples: &[Sample], cells: &[Cell]) -> Row {
    let mut r = Row {
        info: *info,
        size: 0,
        zstd_size: 0,
        largest: None,
        encode: None,
        decode: None,
        exact: Some(true),
        losses: Vec::new(),
        value_losses: Vec::new(),
        problems: Vec::new(),
        metrics: Vec::new(),
        rpc: Vec::new(),
        excluded: None,
        score: None,
        recommended: false,
    };
    let mut encode_ok = true;
    let mut decode_ok = true;
    let mut needs_type: Vec<&str> = Vec::new();
    for (sample, cell) in samples.iter().zip(cells) {
        let name = &sample.name;
        match &cell.primary {
            Some(Ok(p)) => {
                r.size += p.size;
                r.zstd_size += p.zstd_size;
                if r.largest.as_ref().is_none_or(|(s, _)| p.size > *s) {
                    r.largest = Some((p.size, name.clone()));
                }
                sum_timing(&mut r.encode, &p.encode);
                match &p.decode {
                    Some(t) => sum_timing(&mut r.decode, t),
                    None => decode_ok = false,
                }
                match &p.round_trip {
                    RoundTrip::Exact => {}
                    RoundTrip::Lossy(_) => r.exact = Some(false),
                    RoundTrip::DecodeFailed(e) => {
                        r.exact = Some(false);
                        r.problems
                            .push(format!("cannot decode its own output for {name}: {e}"));
                    }
                    RoundTrip::NeedsRustType => {
                        if r.exact == Some(true) {
                            r.exact = None;
                        }
                        needs_type.push(name.as_str());
                    }
                }
                r.losses.extend(losses_of(&p.round_trip, name));
            }
            Some(Err(e)) => {
                encode_ok = false;
                r.exact = Some(false);
                r.problems.push(format!("cannot encode {name}: {e}"));
            }
            None => {}
        }
        if let Some(Ok(v)) = &cell.value_path {
            r.value_losses.extend(losses_of(&v.round_trip, name));
        }
        if let Some(Err(e)) = &cell.value_path {
            r.problems
                .push(format!("{name} as a Value: cannot encode: {e}"));
        }
        for m in &cell.metrics {
            match r.metrics.iter_mut().find(|(n, _)| *n == m.name) {
                Some((_, t)) => *t = t.plus(&m.timing),
                None => r.metrics.push((m.name.clone(), m.timing)),
            }
        }
    }
    if !needs_type.is_empty() {
        r.problems.push(format!(
            "not self-describing: round trip needs a Rust type ({})",
            needs_type.join(", ")
        ));
    }
    // Partial totals would compare unfairly with complete ones.
    if !encode_ok {
        r.encode = None;
        r.decode = None;
    }
    if !decode_ok {
        r.decode = None;
    }
    r
}

fn exclusion(r: &Row, c: &Criteria) -> Option<String> {
    for need in &c.needs {
        let fails = match need {
            Need::Python if !r.info.python_interop => {
                Some("--need python: no Python library reads it".to_owned())
            }
            Need::HumanReadable if !r.info.human_readable => {
                Some("--need human-readable: binary format".to_owned())
            }
            Need::SelfDescribing if !r.info.self_describing => Some(
                "--need self-describing: the receiver needs the Rust type to decode".to_owned(),
            ),
            Need::Exact => match r.exact {
                Some(true) => None,
                Some(false) => Some(format!(
                    "--need exact: {}",
                    r.losses
                        .first()
                        .map(|l| format!("{} ({})", l.loss.what, l.sample))
                        .or_else(|| r.problems.first().cloned())
                        .unwrap_or_else(|| "round trip differs".into())
                )),
                None => Some(
                    "--need exact: not self-describing, the round trip needs a Rust type"
                        .to_owned(),
                ),
            },
            _ => None,
        };
        if fails.is_some() {
            return fails;
        }
    }
    if !r.info.maintained && !c.allow_unmaintained {
        return Some(
            "unmaintained upstream (bincode: RUSTSEC-2025-0141); --allow-unmaintained to consider it"
                .to_owned(),
        );
    }
    if let Some(p) = r.problems.iter().find(|p| p.starts_with("cannot ")) {
        return Some(p.clone());
    }
    if let Some(Err(e)) = r.rpc_on(TransportKind::Tcp).map(|c| &c.result) {
        return Some(format!("the RPC round trip over tcp failed: {e}"));
    }
    if let (Some(max), Some((size, sample))) = (c.max_size, &r.largest) {
        if *size as u64 > max {
            return Some(format!(
                "--max-size {max}: {sample} encodes to {size} bytes"
            ));
        }
    }
    None
}

/// The ranking figure. With the RPC stage, `--prefer latency` is what a call of each sample
/// costs: the measured tcp round trip through the engine (p50, once per sample) plus the
/// sample's encode + decode time and the time to send its bytes at the link speed; without
/// it (`--no-rpc`), the round trip term is left out.
fn score(r: &Row, c: &Criteria, samples: usize) -> Option<f64> {
    let time = || Some(r.encode?.median_ns + r.decode?.median_ns);
    match c.prefer {
        Prefer::Size => r.encode.map(|_| r.size as f64),
        Prefer::Cpu => time(),
        Prefer::Latency => {
            let rpc = match r.rpc_on(TransportKind::Tcp) {
                None => 0.0,
                Some(cell) => {
                    cell.result.as_ref().ok()?.latency.p50.as_secs_f64() * 1e9 * samples as f64
                }
            };
            Some(rpc + time()? + transfer_ns(r.size, c.link_mbps))
        }
    }
}

fn transfer_ns(bytes: usize, mbps: f64) -> f64 {
    bytes as f64 * 8.0 * 1000.0 / mbps.max(1e-9)
}

fn tier(r: &Row) -> u8 {
    match r.exact {
        Some(true) => 0,
        None => 1,
        Some(false) => 2,
    }
}

/// Builds the report from the measurements.
///
/// `rpc` holds the RPC stage's figures (`None` with `--no-rpc`), for the codecs of
/// `codecs` in the same order.
pub(crate) fn build(
    codecs: &[CodecInfo],
    samples: &[Sample],
    results: &Results,
    rpc: Option<&RpcResults>,
    criteria: &Criteria,
) -> Report {
    let ids: Vec<CodecId> = codecs.iter().map(|c| c.id).collect();
    let mut rows: Vec<Row> = codecs
        .iter()
        .zip(&results.cells)
        .map(|(info, cells)| {
            let mut r = row(info, samples, cells);
            if let Some(rpc) = rpc {
                r.rpc = rpc.of(&ids, info.id).to_vec();
            }
            // A Python peer sees the Value path: with --need python its losses count.
            if criteria.needs.contains(&Need::Python) && !r.value_losses.is_empty() {
                r.exact = Some(false);
                let seen_by_python = r.value_losses.iter().map(|l| SampleLoss {
                    sample: format!("{} as seen from Python", l.sample),
                    loss: l.loss.clone(),
                });
                r.losses.extend(seen_by_python.collect::<Vec<_>>());
            }
            r.excluded = exclusion(&r, criteria);
            r.score = score(&r, criteria, samples.len());
            r
        })
        .collect();
    rows.sort_by(|a, b| match (a.score, b.score) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.info.id.cmp(&b.info.id),
    });
    let mut ranked: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].excluded.is_none() && rows[i].score.is_some())
        .collect();
    ranked.sort_by(|&i, &j| {
        tier(&rows[i]).cmp(&tier(&rows[j])).then(
            rows[i]
                .score
                .unwrap_or(f64::MAX)
                .total_cmp(&rows[j].score.unwrap_or(f64::MAX)),
        )
    });
    let eligible = ranked.len();
    let why = match ranked.first() {
        None => match describe_constraints(criteria) {
            Some(c) => format!(
                "no codec meets the constraints ({c}) and carries every sample; relax them or see Excluded"
            ),
            None => "no codec meets the constraints: each one fails on at least one sample (see Excluded)".to_owned(),
        },
        Some(&best) => {
            rows[best].recommended = true;
            let b = &rows[best];
            let what = match criteria.prefer {
                Prefer::Latency if rpc.is_some() => format!(
                    "lowest measured tcp RPC round trip per sample + encode + decode + transfer time at {} Mbit/s",
                    criteria.link_mbps
                ),
                Prefer::Latency => format!(
                    "lowest encode + decode + transfer time at {} Mbit/s",
                    criteria.link_mbps
                ),
                Prefer::Size => "smallest encoding".to_owned(),
                Prefer::Cpu => "lowest encode + decode CPU time".to_owned(),
            };
            let among = match tier(b) {
                0 => format!("{eligible} eligible codec(s); it round-trips every sample exactly"),
                1 => format!(
                    "{eligible} eligible codec(s); none round-trips exactly as a Value, and {} needs the Rust type to decode",
                    b.info.name
                ),
                _ => format!(
                    "{eligible} eligible codec(s); none round-trips every sample exactly: {} loses {}",
                    b.info.name,
                    loss_summary(b)
                ),
            };
            let mut s = format!(
                "{}: {what} ({}) among {among}",
                b.info.name,
                score_text(b.score, criteria.prefer)
            );
            if let Some(&next) = ranked.get(1) {
                let n = &rows[next];
                if let (Some(x), Some(y)) = (b.score, n.score) {
                    let _ = write!(
                        s,
                        "; runner-up {} ({}, {:.2}x)",
                        n.info.name,
                        score_text(n.score, criteria.prefer),
                        if x > 0.0 { y / x } else { 1.0 }
                    );
                }
            }
            s
        }
    };
    let accepted = ranked.iter().take(2).map(|&i| rows[i].info).collect();
    Report {
        rows,
        criteria: criteria.clone(),
        why,
        accepted,
        rpc_per_measurement: rpc.map(|r| r.per_measurement),
        rpc_elapsed: rpc.map_or(std::time::Duration::ZERO, |r| r.elapsed),
        rpc_baselines: rpc.map(|r| r.baselines.clone()).unwrap_or_default(),
    }
}

fn describe_constraints(c: &Criteria) -> Option<String> {
    let mut parts: Vec<String> = c
        .needs
        .iter()
        .map(|n| {
            format!(
                "--need {}",
                clap::ValueEnum::to_possible_value(n)
                    .map_or_else(String::new, |v| v.get_name().to_owned())
            )
        })
        .collect();
    if let Some(m) = c.max_size {
        parts.push(format!("--max-size {m}"));
    }
    if !c.allow_unmaintained {
        parts.push("maintained".to_owned());
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join(", "))
    }
}

pub(super) fn loss_summary(r: &Row) -> String {
    let mut kinds: Vec<&str> = Vec::new();
    for l in &r.losses {
        if !kinds.contains(&l.loss.what.as_str()) {
            kinds.push(&l.loss.what);
        }
    }
    if kinds.is_empty() {
        r.problems.first().cloned().unwrap_or_default()
    } else {
        kinds.join(", ")
    }
}

pub(super) fn score_text(score: Option<f64>, prefer: Prefer) -> String {
    match (score, prefer) {
        (None, _) => "n/a".into(),
        (Some(s), Prefer::Size) => format!("{} bytes", group(s as usize)),
        (Some(s), _) => fmt_ns(s),
    }
}

/// The Rust builder call that makes a server accept `codecs`. The one place that names the
/// engine's builder API.
pub(crate) fn rust_builder(codecs: &[CodecInfo]) -> String {
    let ids: Vec<String> = codecs.iter().map(|c| rust_const(c.id)).collect();
    format!(
        "wirecall::Engine::server(addr).accept([{}])",
        ids.join(", ")
    )
}

fn rust_const(id: CodecId) -> String {
    match id.builtin_name() {
        Some(n) => format!("CodecId::{}", n.to_ascii_uppercase()),
        None => format!("CodecId::new({})", id.get()),
    }
}

/// `WIRECALL_CODEC=..`, `WIRECALL_CODECS_ACCEPTED=..` and the Rust builder call.
pub(crate) fn config_lines(accepted: &[CodecInfo]) -> Vec<String> {
    let Some(first) = accepted.first() else {
        return Vec::new();
    };
    let names: Vec<&str> = accepted.iter().map(|c| c.name).collect();
    vec![
        format!("{}={}", wirecall::config::ENV_CODEC, first.name),
        format!(
            "{}={}",
            wirecall::config::ENV_CODECS_ACCEPTED,
            names.join(",")
        ),
        rust_builder(accepted),
    ]
}
