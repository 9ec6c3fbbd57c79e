//! From measurements to a decision: per-codec totals, constraints, the ranking and the
//! recommendation, and their terminal table, JSON document and configuration lines.

use std::fmt::Write as _;

use serde_json::{json, Value as Json};
use wirecall_bench_harness::measure::Timing;
use wirecall_codecs::{CodecId, CodecInfo};

use super::losses::Loss;
use super::measure::{Cell, PathKind, PathResult, Results, RoundTrip};
use super::rpc::{Baseline, RpcCell, RpcResults};
use super::samples::{Sample, Source};
use wirecall_bench_harness::rpc::TransportKind;

/// A requirement a codec must meet to be recommended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Need {
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
pub enum Prefer {
    /// Encode + decode time plus the time to send the bytes over the link (`--link-mbps`).
    Latency,
    /// Encoded size.
    Size,
    /// Encode + decode CPU time.
    Cpu,
}

impl Prefer {
    fn as_str(self) -> &'static str {
        match self {
            Prefer::Latency => "latency",
            Prefer::Size => "size",
            Prefer::Cpu => "cpu",
        }
    }
}

/// The decision inputs.
#[derive(Debug, Clone)]
pub struct Criteria {
    /// Required properties.
    pub needs: Vec<Need>,
    /// Largest encoded sample allowed, in bytes.
    pub max_size: Option<u64>,
    /// What to optimise.
    pub prefer: Prefer,
    /// Link speed for the latency score, in Mbit/s.
    pub link_mbps: f64,
    /// Consider codecs whose format crate is unmaintained upstream (bincode).
    pub allow_unmaintained: bool,
}

/// A loss seen on one sample.
#[derive(Debug, Clone)]
pub struct SampleLoss {
    /// The sample's name.
    pub sample: String,
    /// The loss.
    pub loss: Loss,
}

/// One codec's totals over all samples and the verdict.
#[derive(Debug, Clone)]
pub struct Row {
    /// The codec.
    pub info: CodecInfo,
    /// Sum of encoded sizes (samples the codec could encode).
    pub size: usize,
    /// Sum of zstd-compressed sizes.
    pub zstd_size: usize,
    /// Largest encoded sample and its name.
    pub largest: Option<(usize, String)>,
    /// Sum of per-sample encode timings; `None` when a sample could not be encoded.
    pub encode: Option<Timing>,
    /// Sum of per-sample decode timings; `None` when any sample could not be decoded.
    pub decode: Option<Timing>,
    /// `Some(true)` every sample exact, `Some(false)` some loss or failure, `None` unknown.
    pub exact: Option<bool>,
    /// Losses on the primary path.
    pub losses: Vec<SampleLoss>,
    /// Losses on the `Value` path of built-in payloads.
    pub value_losses: Vec<SampleLoss>,
    /// Encode or decode failures and unknown round trips, one sentence each.
    pub problems: Vec<String>,
    /// Extra stage figures summed over samples, by name.
    pub metrics: Vec<(String, Timing)>,
    /// The RPC stage's figures, one per transport (tcp, then unix); empty with `--no-rpc`.
    pub rpc: Vec<RpcCell>,
    /// Why the codec cannot be recommended, if it cannot.
    pub excluded: Option<String>,
    /// The ranking figure for the preference (lower is better), when known.
    pub score: Option<f64>,
    /// Whether this is the recommendation.
    pub recommended: bool,
}

/// The whole decision.
#[derive(Debug)]
pub struct Report {
    /// Rows in ranking order.
    pub rows: Vec<Row>,
    /// The criteria used.
    pub criteria: Criteria,
    /// One line saying why the recommendation won (or why there is none).
    pub why: String,
    /// The accepted set to configure: the recommendation and the runner-up.
    pub accepted: Vec<CodecInfo>,
    /// Time per RPC figure, `None` when the RPC stage did not run (`--no-rpc`).
    pub rpc_per_measurement: Option<std::time::Duration>,
    /// Wall time of the RPC stage (zero when it did not run).
    pub rpc_elapsed: std::time::Duration,
    /// The raw socket ping-pong baselines of the RPC stage.
    pub rpc_baselines: Vec<Baseline>,
}

impl Row {
    /// This codec's RPC figures over `t`, if the stage ran.
    pub fn rpc_on(&self, t: TransportKind) -> Option<&RpcCell> {
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
pub fn build(
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

fn loss_summary(r: &Row) -> String {
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

fn score_text(score: Option<f64>, prefer: Prefer) -> String {
    match (score, prefer) {
        (None, _) => "n/a".into(),
        (Some(s), Prefer::Size) => format!("{} bytes", group(s as usize)),
        (Some(s), _) => fmt_ns(s),
    }
}

/// Formats nanoseconds with a unit that keeps 3 significant digits.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1_000_000_000.0 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// Formats an integer with thousands separators.
pub fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn time_cell(t: Option<Timing>) -> String {
    match t {
        Some(t) => format!(
            "{} ({}-{})",
            short_ns(t.median_ns),
            short_ns(t.p10_ns),
            short_ns(t.p90_ns)
        ),
        None => "n/a".into(),
    }
}

/// Nanoseconds as microseconds with 3 significant digits, no unit.
fn short_ns(ns: f64) -> String {
    let us = ns / 1e3;
    if us >= 100.0 {
        format!("{us:.0}")
    } else if us >= 10.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.2}")
    }
}

fn round_trip_cell(r: &Row) -> String {
    match r.exact {
        Some(true) => "exact".into(),
        None => "needs Rust type".into(),
        Some(false) if r.problems.iter().any(|p| p.starts_with("cannot encode")) => {
            "cannot encode".into()
        }
        Some(false) if r.problems.iter().any(|p| p.starts_with("cannot decode")) => {
            "decode fails".into()
        }
        Some(false) => format!("lossy: {}", loss_summary(r)),
    }
}

fn align(lines: &[Vec<String>], left: usize) -> String {
    let cols = lines.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            lines
                .iter()
                .map(|l| l.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for l in lines {
        let mut line = String::new();
        for (c, cell) in l.iter().enumerate() {
            let pad = " ".repeat(
                widths
                    .get(c)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(cell.chars().count()),
            );
            if c < left || c + 1 == l.len() {
                line.push_str(cell);
                line.push_str(&pad);
            } else {
                line.push_str(&pad);
                line.push_str(cell);
            }
            line.push_str("  ");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

fn path_round_trip(rt: &RoundTrip) -> String {
    match rt {
        RoundTrip::Exact => "exact".into(),
        RoundTrip::Lossy(l) => format!(
            "lossy: {}",
            l.iter()
                .map(|x| x.what.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        RoundTrip::DecodeFailed(e) => format!("decode fails: {e}"),
        RoundTrip::NeedsRustType => "needs Rust type".into(),
    }
}

/// `--per-sample`: one line per (sample, codec) on the primary path.
pub fn per_sample_table(codecs: &[CodecInfo], samples: &[Sample], cells: &[Vec<Cell>]) -> String {
    let mut lines = vec![[
        "sample",
        "codec",
        "bytes",
        "zstd",
        "encode µs (p10-p90)",
        "decode µs (p10-p90)",
        "round trip",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect::<Vec<_>>()];
    for (si, s) in samples.iter().enumerate() {
        for (info, row) in codecs.iter().zip(cells) {
            let mut l = vec![s.name.clone(), info.name.to_owned()];
            match row.get(si).and_then(|c| c.primary.as_ref()) {
                Some(Ok(p)) => l.extend([
                    group(p.size),
                    group(p.zstd_size),
                    time_cell(Some(p.encode)),
                    time_cell(p.decode),
                    path_round_trip(&p.round_trip),
                ]),
                Some(Err(e)) => l.extend([
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    format!("cannot encode: {e}"),
                ]),
                None => continue,
            }
            lines.push(l);
        }
    }
    align(&lines, 2).trim_end().to_owned()
}

/// The terminal table, the why line and the configuration lines.
pub fn table(report: &Report, samples: &[Sample], primary: &str) -> String {
    let metric_names: Vec<String> = report
        .rows
        .iter()
        .flat_map(|r| r.metrics.iter().map(|(n, _)| n.clone()))
        .fold(Vec::new(), |mut acc, n| {
            if !acc.contains(&n) {
                acc.push(n);
            }
            acc
        });
    let mut header = vec![
        String::new(),
        "codec".to_owned(),
        "bytes".to_owned(),
        "zstd".to_owned(),
        "encode µs (p10-p90)".to_owned(),
        "decode µs (p10-p90)".to_owned(),
    ];
    header.extend(metric_names.iter().map(|n| format!("{n} µs")));
    let rpc = report.rpc_per_measurement.is_some();
    if rpc {
        for t in TransportKind::ALL {
            header.push(format!("{t} p50/p99 µs"));
            header.push(format!("{t} calls/s"));
        }
    }
    header.push("score".to_owned());
    header.push("round trip".to_owned());
    let mut lines: Vec<Vec<String>> = vec![header];
    for r in &report.rows {
        let mark = if r.recommended {
            "->"
        } else if r.excluded.is_some() {
            "x"
        } else {
            ""
        };
        let mut l = vec![
            mark.to_owned(),
            r.info.name.to_owned(),
            group(r.size),
            group(r.zstd_size),
            time_cell(r.encode),
            time_cell(r.decode),
        ];
        for n in &metric_names {
            l.push(
                r.metrics
                    .iter()
                    .find(|(m, _)| m == n)
                    .map_or_else(|| "n/a".into(), |(_, t)| time_cell(Some(*t))),
            );
        }
        let mut rpc_errors = Vec::new();
        if rpc {
            for t in TransportKind::ALL {
                match r.rpc_on(t).map(|c| &c.result) {
                    Some(Ok(f)) => {
                        l.push(format!(
                            "{}/{}",
                            short_ns(f.latency.p50.as_secs_f64() * 1e9),
                            short_ns(f.latency.p99.as_secs_f64() * 1e9)
                        ));
                        l.push(group(f.throughput.calls_per_sec.round() as usize));
                    }
                    Some(Err(e)) => {
                        l.push("failed".into());
                        l.push("-".into());
                        rpc_errors.push(format!("RPC over {t} failed: {e}"));
                    }
                    None => {
                        l.push("n/a".into());
                        l.push("n/a".into());
                    }
                }
            }
        }
        l.push(score_text(r.score, report.criteria.prefer));
        let mut last = round_trip_cell(r);
        for e in rpc_errors {
            last.push_str("; ");
            last.push_str(&e);
        }
        l.push(last);
        lines.push(l);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} sample(s): {}.\nTotals over all samples; times are medians per call (10th-90th percentile); score = {}.",
        samples.len(),
        primary,
        match report.criteria.prefer {
            Prefer::Latency if rpc => format!(
                "samples x tcp RPC p50 + encode + decode + bytes at {} Mbit/s",
                report.criteria.link_mbps
            ),
            Prefer::Latency => format!(
                "encode + decode + bytes at {} Mbit/s",
                report.criteria.link_mbps
            ),
            Prefer::Size => "encoded bytes".into(),
            Prefer::Cpu => "encode + decode".into(),
        }
    );
    out.push_str(&align(&lines, 2));
    if let Some(per) = report.rpc_per_measurement {
        out.push_str(&rpc_legend(report, per));
    }
    let excluded: Vec<&Row> = report
        .rows
        .iter()
        .filter(|r| r.excluded.is_some())
        .collect();
    if !excluded.is_empty() {
        let _ = writeln!(out, "\nExcluded:");
        for r in excluded {
            let _ = writeln!(
                out,
                "  {:<9} {}",
                r.info.name,
                r.excluded.as_deref().unwrap_or("")
            );
        }
    }
    let mut notes = String::new();
    for r in &report.rows {
        for l in &r.losses {
            let _ = writeln!(
                notes,
                "  {:<9} {}: {} ({}x, first at {})",
                r.info.name, l.sample, l.loss.what, l.loss.count, l.loss.first_at
            );
        }
        for p in r
            .problems
            .iter()
            .filter(|p| Some(p.as_str()) != r.excluded.as_deref())
        {
            let _ = writeln!(notes, "  {:<9} {p}", r.info.name);
        }
    }
    if !notes.is_empty() {
        let _ = write!(out, "\nRound trip:\n{notes}");
    }
    let mut vnotes = String::new();
    for r in &report.rows {
        let mut seen: Vec<&str> = Vec::new();
        for l in &r.value_losses {
            if !seen.contains(&l.loss.what.as_str()) {
                seen.push(&l.loss.what);
            }
        }
        if !seen.is_empty() {
            let _ = writeln!(vnotes, "  {:<9} {}", r.info.name, seen.join("; "));
        }
    }
    if !vnotes.is_empty() {
        let _ = write!(
            out,
            "\nAs a dynamic Value (what a Python or Value-based peer sees):\n{vnotes}"
        );
    }
    let _ = writeln!(out, "\nRecommended: {}", report.why);
    if !report.accepted.is_empty() {
        let _ = writeln!(out, "\nUse it:");
        for l in config_lines(&report.accepted) {
            let _ = writeln!(out, "  {l}");
        }
    }
    out
}

/// The lines under the table that say what the RPC columns measured and give the raw
/// ping-pong baseline they compare with.
fn rpc_legend(report: &Report, per: std::time::Duration) -> String {
    let (inflight, connections) = super::rpc::load();
    let payload = wirecall_bench_harness::rpc::ECHO_PAYLOAD.len();
    let on = if connections == 1 {
        "one connection".to_owned()
    } else {
        format!("{connections} connections")
    };
    let mut out = format!(
        "\nRPC: an echo call of a {payload}-byte string through the engine over loopback; p50/p99 with one call in flight, calls/s with {inflight} in flight on {on}, {} ms per figure.\n",
        per.as_millis()
    );
    if report.rpc_baselines.is_empty() {
        out.push_str("Raw socket ping-pong baseline: not measured (the RPC stage failed).\n");
        return out;
    }
    let parts: Vec<String> = report
        .rpc_baselines
        .iter()
        .map(|b| {
            let raw = b.raw.p50.as_secs_f64();
            let ratios: Vec<f64> = report
                .rows
                .iter()
                .filter_map(|r| r.rpc_on(b.transport)?.result.as_ref().ok())
                .filter(|_| raw > 0.0)
                .map(|f| f.latency.p50.as_secs_f64() / raw)
                .collect();
            let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = ratios.iter().copied().fold(0.0, f64::max);
            let spread = if ratios.is_empty() {
                String::new()
            } else {
                format!(" (codec p50s are {lo:.2}x-{hi:.2}x this)")
            };
            format!(
                "{} p50/p99 {}/{} µs{spread}",
                b.transport,
                short_ns(b.raw.p50.as_secs_f64() * 1e9),
                short_ns(b.raw.p99.as_secs_f64() * 1e9)
            )
        })
        .collect();
    let bytes = report.rpc_baselines.first().map_or(0, |b| b.raw_len);
    let _ = writeln!(
        out,
        "Raw socket ping-pong of the same {bytes}-byte frame (std sockets, an echo thread): {}.",
        parts.join(", ")
    );
    out
}

/// The Rust builder call that makes a server accept `codecs`. The one place that names the
/// engine's builder API.
pub fn rust_builder(codecs: &[CodecInfo]) -> String {
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
pub fn config_lines(accepted: &[CodecInfo]) -> Vec<String> {
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

fn timing_json(t: Option<Timing>) -> Json {
    match t {
        Some(t) => json!({
            "median": t.median_ns,
            "p10": t.p10_ns,
            "p90": t.p90_ns,
            "samples": t.samples,
            "batch": t.batch,
        }),
        None => Json::Null,
    }
}

fn loss_json(l: &Loss) -> Json {
    json!({"kind": l.kind, "what": l.what, "count": l.count, "first_at": l.first_at})
}

fn round_trip_json(rt: &RoundTrip) -> Json {
    let (losses, problem) = match rt {
        RoundTrip::Exact => (Vec::new(), None),
        RoundTrip::Lossy(l) => (l.iter().map(loss_json).collect(), None),
        RoundTrip::DecodeFailed(e) => (Vec::new(), Some(format!("decode failed: {e}"))),
        RoundTrip::NeedsRustType => (
            Vec::new(),
            Some("not self-describing: round trip needs a Rust type".to_owned()),
        ),
    };
    json!({"exact": rt.exact(), "losses": losses, "problem": problem})
}

fn path_json(p: &Option<Result<PathResult, String>>) -> Json {
    match p {
        None => Json::Null,
        Some(Err(e)) => json!({"error": e}),
        Some(Ok(p)) => json!({
            "size": p.size,
            "zstd_size": p.zstd_size,
            "encode_ns": timing_json(Some(p.encode)),
            "decode_ns": timing_json(p.decode),
            "round_trip": round_trip_json(&p.round_trip),
            "error": null,
        }),
    }
}

/// The `--json` document, schema `wirecall-pick/1` (fields are only ever added):
///
/// * top level: `schema`, `prefer`, `needs[]`, `max_size`, `allow_unmaintained`,
///   `link_mbps`, `samples[] {name, description, source, path}`,
///   `budget_per_measurement_ms`, `wall_time_s`, `codecs[]`, `recommended` (name or null),
///   `why`, `config[]` (the `WIRECALL_CODEC=`, `WIRECALL_CODECS_ACCEPTED=` and Rust lines);
/// * per codec, in ranking order: `name`, `id`, `self_describing`, `human_readable`,
///   `python_interop`, `maintained`, `size`, `zstd_size` (totals), `largest {size, sample}`,
///   `encode_ns`/`decode_ns` (`{median, p10, p90, samples, batch}` summed over samples, or
///   null), `score`, `metrics[]`, `round_trip {exact (bool or null), losses[] {sample,
///   kind, what, count, first_at}, problems[]}`, `value_round_trip_losses[]`, `excluded`
///   (reason or null), `recommended`, and `samples[]` with the per-sample `primary` and
///   `value_path` figures (`size`, `zstd_size`, `encode_ns`, `decode_ns`, `round_trip
///   {exact, losses[], problem}`, `error`);
/// * the RPC stage (null with `--no-rpc`): top-level `rpc {per_measurement_ms,
///   wall_time_s, payload_bytes, inflight, connections, baselines {tcp, unix}}`, each baseline
///   `{p50_ns, p99_ns, samples, bytes}` (the raw socket ping-pong of the echo frame's
///   length); per codec `rpc {tcp, unix}`, each `{p50_ns, p99_ns, latency_samples,
///   calls_per_sec, calls, frame_len, error}` with the figures null and `error` a sentence
///   when the call failed over that transport.
pub fn to_json(
    report: &Report,
    samples: &[Sample],
    cells: &[(CodecId, &[Cell])],
    budget_ms: f64,
    wall_s: f64,
) -> Json {
    let sample_json: Vec<Json> = samples
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "description": s.description,
                "source": match &s.source {
                    Source::BuiltIn => "built-in".to_owned(),
                    Source::File(p) => p.display().to_string(),
                },
                "path": if s.typed.is_some() { PathKind::Typed.as_str() } else { PathKind::Value.as_str() },
            })
        })
        .collect();
    let codecs: Vec<Json> = report
        .rows
        .iter()
        .map(|r| {
            let per_sample: Vec<Json> = cells
                .iter()
                .find(|(id, _)| *id == r.info.id)
                .map(|(_, cs)| {
                    samples
                        .iter()
                        .zip(cs.iter())
                        .map(|(s, c)| {
                            json!({
                                "sample": s.name,
                                "path": c.primary_kind.as_str(),
                                "primary": path_json(&c.primary),
                                "value_path": path_json(&c.value_path),
                                "metrics": c.metrics.iter().map(|m| json!({"name": m.name, "ns": timing_json(Some(m.timing))})).collect::<Vec<_>>(),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "name": r.info.name,
                "id": r.info.id.get(),
                "self_describing": r.info.self_describing,
                "human_readable": r.info.human_readable,
                "python_interop": r.info.python_interop,
                "maintained": r.info.maintained,
                "size": r.size,
                "zstd_size": r.zstd_size,
                "largest": r.largest.as_ref().map(|(s, n)| json!({"size": s, "sample": n})),
                "encode_ns": timing_json(r.encode),
                "decode_ns": timing_json(r.decode),
                "score": r.score,
                "metrics": r.metrics.iter().map(|(n, t)| json!({"name": n, "ns": timing_json(Some(*t))})).collect::<Vec<_>>(),
                "rpc": report.rpc_per_measurement.map(|_| rpc_row_json(r)),
                "round_trip": {
                    "exact": r.exact,
                    "losses": r.losses.iter().map(|l| {
                        let mut j = loss_json(&l.loss);
                        j["sample"] = json!(l.sample);
                        j
                    }).collect::<Vec<_>>(),
                    "problems": r.problems,
                },
                "value_round_trip_losses": r.value_losses.iter().map(|l| {
                    let mut j = loss_json(&l.loss);
                    j["sample"] = json!(l.sample);
                    j
                }).collect::<Vec<_>>(),
                "excluded": r.excluded,
                "recommended": r.recommended,
                "samples": per_sample,
            })
        })
        .collect();
    let recommended = report
        .rows
        .iter()
        .find(|r| r.recommended)
        .map(|r| r.info.name);
    json!({
        "schema": "wirecall-pick/1",
        "prefer": report.criteria.prefer.as_str(),
        "needs": report.criteria.needs.iter().filter_map(|n| clap::ValueEnum::to_possible_value(n).map(|v| v.get_name().to_owned())).collect::<Vec<_>>(),
        "max_size": report.criteria.max_size,
        "allow_unmaintained": report.criteria.allow_unmaintained,
        "link_mbps": report.criteria.link_mbps,
        "samples": sample_json,
        "budget_per_measurement_ms": budget_ms,
        "wall_time_s": wall_s,
        "codecs": codecs,
        "recommended": recommended,
        "why": report.why,
        "config": config_lines(&report.accepted),
        "rpc": report.rpc_per_measurement.map(|per| rpc_json(report, per)),
    })
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn rpc_row_json(r: &Row) -> Json {
    let mut out = serde_json::Map::new();
    for c in &r.rpc {
        let j = match &c.result {
            Ok(f) => json!({
                "p50_ns": nanos(f.latency.p50),
                "p99_ns": nanos(f.latency.p99),
                "latency_samples": f.latency.samples,
                "calls_per_sec": f.throughput.calls_per_sec,
                "calls": f.throughput.calls,
                "frame_len": f.frame_len,
                "error": null,
            }),
            Err(e) => json!({
                "p50_ns": null,
                "p99_ns": null,
                "latency_samples": null,
                "calls_per_sec": null,
                "calls": null,
                "frame_len": null,
                "error": e,
            }),
        };
        out.insert(c.transport.name().to_owned(), j);
    }
    Json::Object(out)
}

fn rpc_json(report: &Report, per: std::time::Duration) -> Json {
    let mut baselines = serde_json::Map::new();
    for b in &report.rpc_baselines {
        baselines.insert(
            b.transport.name().to_owned(),
            json!({
                "p50_ns": nanos(b.raw.p50),
                "p99_ns": nanos(b.raw.p99),
                "samples": b.raw.samples,
                "bytes": b.raw_len,
            }),
        );
    }
    json!({
        "per_measurement_ms": per.as_secs_f64() * 1e3,
        "wall_time_s": report.rpc_elapsed.as_secs_f64(),
        "payload_bytes": wirecall_bench_harness::rpc::ECHO_PAYLOAD.len(),
        "inflight": super::rpc::load().0,
        "connections": super::rpc::load().1,
        "baselines": baselines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pick::measure::{self, CodecStage};
    use crate::pick::rpc::RpcCell;
    use crate::pick::samples::{Sample, Source};
    use std::time::Duration;
    use wirecall_bench_harness::rpc::{CodecRpc, Latency, Throughput};
    use wirecall_codecs::Value;

    fn figures(codec: CodecId, p50_us: u64) -> CodecRpc {
        CodecRpc {
            codec,
            frame_len: 90,
            latency: Latency {
                p50: Duration::from_micros(p50_us),
                p99: Duration::from_micros(p50_us * 2),
                samples: 100,
            },
            throughput: Throughput {
                calls_per_sec: 100_000.0,
                calls: 1000,
                inflight: 64,
                connections: 1,
            },
        }
    }

    /// Reports one user sample through json and msgpack with the given RPC cells.
    fn report_with(
        json_tcp: Result<CodecRpc, String>,
        msgpack_tcp: Result<CodecRpc, String>,
    ) -> (Report, Vec<Sample>) {
        let samples = vec![Sample {
            name: "s".into(),
            description: String::new(),
            source: Source::BuiltIn,
            value: Value::List(vec![Value::Int(1), Value::Str("a".into())]),
            typed: None,
        }];
        let codecs: Vec<CodecInfo> = [CodecId::JSON, CodecId::MSGPACK]
            .into_iter()
            .filter_map(wirecall_bench_harness::measure::info)
            .collect();
        let results = measure::run(
            &codecs,
            &samples,
            &[&CodecStage],
            Duration::from_millis(4),
            |_, _, _| {},
        );
        let unix = |c| RpcCell {
            transport: TransportKind::Unix,
            result: Ok(figures(c, 5)),
        };
        let rpc = RpcResults {
            per_measurement: Duration::from_millis(50),
            elapsed: Duration::from_secs(1),
            cells: vec![
                vec![
                    RpcCell {
                        transport: TransportKind::Tcp,
                        result: json_tcp,
                    },
                    unix(CodecId::JSON),
                ],
                vec![
                    RpcCell {
                        transport: TransportKind::Tcp,
                        result: msgpack_tcp,
                    },
                    unix(CodecId::MSGPACK),
                ],
            ],
            baselines: Vec::new(),
        };
        let criteria = Criteria {
            needs: Vec::new(),
            max_size: None,
            prefer: Prefer::Latency,
            link_mbps: 1000.0,
            allow_unmaintained: true,
        };
        (
            build(&codecs, &samples, &results, Some(&rpc), &criteria),
            samples,
        )
    }

    #[test]
    fn a_failed_rpc_shows_in_its_row_and_excludes_the_codec() {
        let (rep, samples) = report_with(
            Err("json over tcp://127.0.0.1:1: connection refused".into()),
            Ok(figures(CodecId::MSGPACK, 20)),
        );
        let json = rep
            .rows
            .iter()
            .find(|r| r.info.id == CodecId::JSON)
            .unwrap();
        assert!(json
            .excluded
            .as_deref()
            .unwrap()
            .contains("connection refused"));
        assert!(!json.recommended);
        let text = table(&rep, &samples, "test");
        let line = text.lines().find(|l| l.contains(" json ")).unwrap();
        assert!(line.contains("failed"), "{line}");
        assert!(line.contains("RPC over tcp failed: json over"), "{line}");
        assert!(
            text.contains("echo call of a 32-byte string")
                && text.contains("64 in flight on one connection, 50 ms per figure"),
            "{text}"
        );
        let msgpack = text.lines().find(|l| l.contains(" msgpack ")).unwrap();
        assert!(
            msgpack.contains("20.0/40.0") && msgpack.contains("100,000"),
            "{msgpack}"
        );
        let doc = to_json(&rep, &samples, &[], 1.0, 1.0);
        let row = doc["codecs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "json")
            .unwrap();
        assert!(row["rpc"]["tcp"]["p50_ns"].is_null());
        assert!(row["rpc"]["tcp"]["error"]
            .as_str()
            .unwrap()
            .contains("refused"));
        assert_eq!(row["rpc"]["unix"]["p50_ns"], 5000);
    }

    #[test]
    fn latency_preference_counts_the_measured_round_trip() {
        // msgpack encodes the sample faster than json, but a slower measured round trip
        // (per sample) outweighs that: json wins.
        let (rep, _) = report_with(
            Ok(figures(CodecId::JSON, 10)),
            Ok(figures(CodecId::MSGPACK, 500)),
        );
        let json = rep
            .rows
            .iter()
            .find(|r| r.info.id == CodecId::JSON)
            .unwrap();
        let msgpack = rep
            .rows
            .iter()
            .find(|r| r.info.id == CodecId::MSGPACK)
            .unwrap();
        assert!(json.recommended, "{:?}", rep.why);
        assert!(msgpack.score.unwrap() >= 500_000.0);
        assert!(rep.why.contains("RPC round trip"), "{}", rep.why);
        let (rep, _) = report_with(
            Ok(figures(CodecId::JSON, 500)),
            Ok(figures(CodecId::MSGPACK, 10)),
        );
        assert!(rep
            .rows
            .iter()
            .any(|r| r.recommended && r.info.id == CodecId::MSGPACK));
    }
}
