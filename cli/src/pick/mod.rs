//! `wirecall pick`: measures every codec on representative payloads (or the user's own
//! samples) and recommends one, with the configuration lines to use it.
//!
//! Built-in payloads are measured as typed Rust structs through the typed codec path
//! (`encode_into::<T>` / `decode::<T>`, what a Rust service pays) and, as a second stage,
//! through the `Value` path (what a dynamic or Python peer pays and sees). User samples are
//! `Value`s and are measured through the `Value` path only.
//!
//! A last stage makes a real echo call through the engine with every codec over loopback
//! tcp and a unix socket ([`rpc`]): p50/p99 latency, calls/s with 64 in flight, and the raw
//! socket ping-pong baseline; `--prefer latency` ranks on the measured tcp round trip.

mod losses;
mod measure;
mod plot;
mod report;
mod rpc;
pub(crate) mod samples;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use wirecall_bench_harness::rpc::TransportKind;
use wirecall_codecs::{CodecId, CodecInfo};

pub(crate) use report::{fmt_ns, Need, Prefer};

/// Arguments of `wirecall pick`.
#[derive(Args, Debug)]
#[command(
    after_help = "Exit status: 0 with a recommendation, 2 when no codec meets the \
constraints, 1 on bad arguments or unreadable samples.\n\nBuilt-in payloads are measured \
as typed Rust structs (what a Rust service pays) and as dynamic Values (what a Python or \
Value-based peer sees); --sample files are measured as Values. Then every codec makes a \
real echo call through the engine over loopback tcp and a unix socket (p50/p99 latency, \
calls/s with 64 in flight, beside the raw socket ping-pong); --no-rpc skips it."
)]
pub(crate) struct PickArgs {
    /// A sample to measure instead of the built-in payloads: a file holding one value in
    /// JSON or the vector notation (JSON plus `$bytes`, `$tuple`, `$set`, `$map`, `$int`,
    /// `$float` tags), or a folder whose files are all read. Repeatable.
    #[arg(long = "sample", value_name = "FILE|DIR")]
    samples: Vec<PathBuf>,
    /// Only these codecs, comma-separated (default: every built-in codec compiled in).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    codecs: Vec<String>,
    /// A property the recommended codec must have. Repeatable.
    #[arg(long = "need", value_enum, value_name = "PROPERTY")]
    needs: Vec<Need>,
    /// Largest encoded sample allowed, in bytes.
    #[arg(long, value_name = "BYTES")]
    max_size: Option<u64>,
    /// What the recommendation optimises.
    #[arg(long, value_enum, default_value_t = Prefer::Latency)]
    prefer: Prefer,
    /// Link speed used by `--prefer latency` to add the time to send the bytes, in Mbit/s.
    #[arg(long, default_value_t = 1000.0, value_name = "MBPS")]
    link_mbps: f64,
    /// Also recommend codecs whose format crate is unmaintained upstream (bincode, kept for
    /// compatibility; postcard is the maintained compact binary choice).
    #[arg(long)]
    allow_unmaintained: bool,
    /// Short measurement (about 3 s of codec timing instead of 25 s, 50 ms per RPC figure
    /// instead of 200 ms): rougher figures, same report.
    #[arg(long)]
    quick: bool,
    /// Skip the RPC stage (the echo call through the engine over tcp and unix sockets);
    /// `--prefer latency` then counts encode + decode + transfer only.
    #[arg(long)]
    no_rpc: bool,
    /// Total time to spend timing the codecs, in seconds (overrides the default and
    /// --quick; the RPC stage takes its own few seconds on top).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Print the report as JSON (schema `wirecall-pick/1`) instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write a chart of size against encode + decode time to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Write the built-in payloads as vector-notation files into this folder (a start for
    /// your own `--sample` files) and exit.
    #[arg(long, value_name = "DIR")]
    dump_samples: Option<PathBuf>,
    /// Also print one line per (sample, codec): size, times and round trip.
    #[arg(long)]
    per_sample: bool,
}

/// Default total timing budget.
const DEFAULT_TIME: Duration = Duration::from_secs(25);
/// `--quick` total timing budget.
const QUICK_TIME: Duration = Duration::from_secs(3);

/// The codecs named in `--codecs` (all compiled-in built-ins when empty).
pub(crate) fn select_codecs(names: &[String]) -> Result<Vec<CodecInfo>, String> {
    let all = wirecall_bench_harness::measure::codecs();
    if names.is_empty() {
        return Ok(all);
    }
    let known = || all.iter().map(|c| c.name).collect::<Vec<_>>().join(", ");
    let mut out: Vec<CodecInfo> = Vec::new();
    for n in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let info = CodecId::from_builtin_name(n)
            .and_then(|id| all.iter().find(|c| c.id == id))
            .ok_or_else(|| format!("unknown codec {n:?} in --codecs; known codecs: {}", known()))?;
        if !out.iter().any(|c| c.id == info.id) {
            out.push(*info);
        }
    }
    if out.is_empty() {
        return Err(format!(
            "--codecs names no codec; known codecs: {}",
            known()
        ));
    }
    Ok(out)
}

fn dump(dir: &std::path::Path) -> Result<ExitCode, String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create folder {}: {e}", dir.display()))?;
    for s in samples::builtin()? {
        let path = dir.join(format!("{}.json", s.name));
        let text = wirecall_conformance::notation::print(&s.value) + "\n";
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `wirecall pick`. Exit status 0 with a recommendation, 2 when no codec meets the
/// constraints; errors (bad arguments, unreadable samples) are returned as one line.
pub(crate) fn run(args: &PickArgs) -> Result<ExitCode, String> {
    if let Some(dir) = &args.dump_samples {
        return dump(dir);
    }
    let started = Instant::now();
    if !(args.link_mbps.is_finite() && args.link_mbps > 0.0) {
        return Err(format!(
            "--link-mbps must be a positive number, not {}",
            args.link_mbps
        ));
    }
    let total = match args.duration {
        Some(s) if s.is_finite() && s > 0.0 && s <= 3600.0 => Duration::from_secs_f64(s),
        Some(s) => {
            return Err(format!(
                "--duration must be between 0 and 3600 seconds, not {s}"
            ))
        }
        None if args.quick => QUICK_TIME,
        None => DEFAULT_TIME,
    };
    let codecs = select_codecs(&args.codecs)?;
    let samples = if args.samples.is_empty() {
        samples::builtin()?
    } else {
        samples::load(&args.samples)?
    };
    let stages: [&dyn measure::Stage; 2] = [&measure::CodecStage, &measure::ValueStage];
    let codec_ticks = measure::ticks(codecs.len(), samples.len(), stages.len());
    let rpc_per = if args.quick {
        rpc::QUICK_PER_MEASUREMENT
    } else {
        rpc::PER_MEASUREMENT
    };
    // The bar advances about evenly in time: each transport of the RPC stage counts for as
    // many ticks as the codec stages make in the time it takes.
    let rpc_ticks = if args.no_rpc {
        0
    } else {
        let secs = rpc::estimate(codecs.len(), rpc_per).as_secs_f64();
        ((codec_ticks as f64 * secs / total.as_secs_f64()).round() as u64).max(1)
    };
    let bar = if !args.json && std::io::stderr().is_terminal() {
        let b = ProgressBar::new(codec_ticks + rpc_ticks * TransportKind::ALL.len() as u64);
        b.enable_steady_tick(Duration::from_millis(120));
        let style = ProgressStyle::with_template(
            "{spinner} measuring [{bar:30}] {pos}/{len} {msg} (eta {eta})",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        b.set_style(style);
        Some(b)
    } else {
        None
    };
    // A panic inside a codec becomes an error in its row; keep the default hook's message
    // off the terminal while measuring.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let results = measure::run(&codecs, &samples, &stages, total, |codec, sample, stage| {
        if let Some(b) = &bar {
            b.set_message(format!("{} {} ({stage})", codec.name, sample.name));
            b.inc(1);
        }
    });
    let rpc_results = if args.no_rpc {
        None
    } else {
        let ids: Vec<CodecId> = codecs.iter().map(|c| c.id).collect();
        if let Some(b) = &bar {
            b.set_message(format!("RPC over {}", TransportKind::Tcp));
        }
        let mut transports = TransportKind::ALL.iter().skip(1);
        Some(rpc::measure(&ids, rpc_per, |_| {
            if let Some(b) = &bar {
                b.inc(rpc_ticks);
                if let Some(next) = transports.next() {
                    b.set_message(format!("RPC over {next}"));
                }
            }
        }))
    };
    std::panic::set_hook(hook);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let criteria = report::Criteria {
        needs: args.needs.clone(),
        max_size: args.max_size,
        prefer: args.prefer,
        link_mbps: args.link_mbps,
        allow_unmaintained: args.allow_unmaintained,
    };
    let rep = report::build(&codecs, &samples, &results, rpc_results.as_ref(), &criteria);
    if let Some(path) = &args.plot {
        let title = format!(
            "wirecall pick: size vs time over {} sample(s)",
            samples.len()
        );
        std::fs::write(path, plot::svg(&rep, &title))
            .map_err(|e| format!("cannot write plot {}: {e}", path.display()))?;
    }
    let wall = started.elapsed().as_secs_f64();
    let budget_ms = results.budget.time.as_secs_f64() * 1e3;
    if args.json {
        let cells: Vec<(CodecId, &[measure::Cell])> = codecs
            .iter()
            .zip(&results.cells)
            .map(|(c, cs)| (c.id, cs.as_slice()))
            .collect();
        let text = report::to_json(&rep, &samples, &cells, budget_ms, wall)
            .and_then(|doc| serde_json::to_string_pretty(&doc))
            .map_err(|e| format!("cannot write the JSON report: {e}"))?;
        println!("{text}");
    } else {
        let primary = if samples.iter().all(|s| s.typed.is_some()) {
            "built-in payloads as typed Rust structs (typed codec path)"
        } else {
            "user samples as dynamic Values (Value codec path)"
        };
        if args.per_sample {
            print!(
                "{}\n\n",
                report::per_sample_table(&codecs, &samples, &results.cells)
            );
        }
        print!("{}", report::table(&rep, &samples, primary));
        if let Some(p) = &args.plot {
            println!("\nPlot written to {}", p.display());
        }
        let rpc_note = match &rpc_results {
            Some(r) => format!(", RPC stage {:.1} s", r.elapsed.as_secs_f64()),
            None => String::new(),
        };
        println!(
            "\nMeasured {} codec(s) x {} sample(s) in {wall:.1} s ({:.1} ms per timed measurement{rpc_note}).",
            codecs.len(),
            samples.len(),
            budget_ms
        );
    }
    Ok(if rep.rows.iter().any(|r| r.recommended) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
