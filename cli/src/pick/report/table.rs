//! The report as terminal text: the ranking table, the `--per-sample` lines, the RPC legend,
//! the why line and the configuration lines.

use std::fmt::Write as _;

use wirecall_bench_harness::measure::Timing;
use wirecall_bench_harness::rpc::TransportKind;
use wirecall_codecs::CodecInfo;

use super::decision::{config_lines, loss_summary, score_text, Prefer, Report, Row};
use super::units::{group, short_ns};
use crate::pick::measure::{Cell, RoundTrip};
use crate::pick::samples::Sample;

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
pub(crate) fn per_sample_table(
    codecs: &[CodecInfo],
    samples: &[Sample],
    cells: &[Vec<Cell>],
) -> String {
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
pub(crate) fn table(report: &Report, samples: &[Sample], primary: &str) -> String {
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
    let (inflight, connections) = crate::pick::rpc::load();
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
