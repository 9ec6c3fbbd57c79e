//! `wirecall bench ...`: benchmarks printed as ratios against a baseline measured in the
//! same run. `bench codecs` compares each wirecall codec with its format crate called
//! directly on the same payload.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use wirecall_bench_harness::measure::{self, Budget, Timing};
use wirecall_codecs::CodecInfo;

use crate::compare::{baseline_crate, compare_value, Comparison};
use crate::pick::samples::{self, Sample};
use crate::pick::{fmt_ns, select_codecs};

/// Arguments of `wirecall bench`.
#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// What to benchmark.
    #[command(subcommand)]
    pub what: BenchCommand,
}

/// The `wirecall bench` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum BenchCommand {
    /// Each codec against its format crate called directly (serde_json, rmp-serde,
    /// ciborium, bincode, postcard, ron) on the same payloads, as ratios.
    Codecs(CodecsArgs),
    /// Round-trip latency and calls/s of an echo call through the engine, per codec, beside
    /// the raw socket ping-pong of the same bytes (against your server with --connect).
    Rpc(RpcArgs),
    /// N clients x M calls each against a `wirecall serve` child process (tcp and unix), every
    /// reply checked against its call: calls/s, p50/p99, lost, misrouted, errors, and the
    /// server's memory per connection.
    Load(crate::load::LoadArgs),
}

/// Arguments of `wirecall bench codecs`.
#[derive(Args, Debug)]
pub(crate) struct CodecsArgs {
    /// Only these codecs, comma-separated (default: every built-in codec compiled in).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    codecs: Vec<String>,
    /// A sample file (JSON or the vector notation) or folder instead of the built-in
    /// payloads; measured as a dynamic Value on both sides. Repeatable.
    #[arg(long = "sample", value_name = "FILE|DIR")]
    samples: Vec<PathBuf>,
    /// Total time to spend timing, in seconds.
    #[arg(long, default_value_t = 20.0, value_name = "SECONDS")]
    duration: f64,
}

/// Runs `wirecall bench`.
pub(crate) fn run(args: &BenchArgs) -> Result<ExitCode, String> {
    match &args.what {
        BenchCommand::Codecs(a) => codecs(a),
        BenchCommand::Rpc(a) => rpc(a),
        BenchCommand::Load(a) => crate::load::run(a),
    }
}

/// One row of `bench codecs`.
struct BenchRow {
    sample: String,
    codec: &'static str,
    crate_name: Option<&'static str>,
    cmp: Comparison,
}

fn bench_one(info: &CodecInfo, s: &Sample, budget: Budget) -> BenchRow {
    let cmp = match &s.typed {
        Some(t) => t.compare(info.id, budget),
        None => compare_value(info.id, &s.value, budget),
    };
    BenchRow {
        sample: s.name.clone(),
        codec: info.name,
        crate_name: baseline_crate(info.id),
        cmp,
    }
}

fn ratio(ours: Option<Timing>, base: Option<Timing>) -> String {
    match (ours, base) {
        (Some(o), Some(b)) if b.median_ns > 0.0 => format!("{:.2}x", o.median_ns / b.median_ns),
        _ => "-".into(),
    }
}

fn t(x: Option<Timing>) -> String {
    x.map_or_else(|| "-".into(), |t| fmt_ns(t.median_ns))
}

fn codecs(args: &CodecsArgs) -> Result<ExitCode, String> {
    let started = Instant::now();
    if !(args.duration.is_finite() && args.duration > 0.0 && args.duration <= 3600.0) {
        return Err(format!(
            "--duration must be between 0 and 3600 seconds, not {}",
            args.duration
        ));
    }
    let codecs = select_codecs(&args.codecs)?;
    let samples = if args.samples.is_empty() {
        samples::builtin()?
    } else {
        samples::load(&args.samples)?
    };
    // Paired timings run two budgets each (encode pair, decode pair).
    let measurements = (codecs.len() * samples.len() * 4).max(1) as u32;
    let budget = Budget::new(
        (Duration::from_secs_f64(args.duration) / measurements)
            .clamp(Duration::from_millis(1), Duration::from_secs(2)),
    );
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new((codecs.len() * samples.len()) as u64);
        if let Ok(s) = ProgressStyle::with_template("measuring [{bar:30}] {pos}/{len} {msg}") {
            b.set_style(s.progress_chars("=> "));
        }
        b
    });
    let mut rows = Vec::new();
    for s in &samples {
        for c in &codecs {
            if let Some(b) = &bar {
                b.set_message(format!("{} {}", c.name, s.name));
            }
            rows.push(bench_one(c, s, budget));
            if let Some(b) = &bar {
                b.inc(1);
            }
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let header = [
        "sample",
        "codec",
        "baseline",
        "bytes",
        "same bytes",
        "encode",
        "baseline",
        "ratio",
        "decode",
        "baseline",
        "ratio",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|s| (*s).to_owned()).collect()];
    let mut notes = Vec::new();
    for r in &rows {
        let ours = &r.cmp.ours;
        let bytes = match &ours.bytes {
            Ok(b) => b.len().to_string(),
            Err(e) => {
                notes.push(format!("{} {}: cannot encode: {e}", r.codec, r.sample));
                "-".into()
            }
        };
        let (enc, dec) = (ours.encode, ours.decode);
        let (same, benc, bdec) = match &r.cmp.base {
            Some(base) => {
                if let Err(e) = &base.bytes {
                    notes.push(format!(
                        "{} {}: baseline {} cannot encode: {e}",
                        r.codec,
                        r.sample,
                        r.crate_name.unwrap_or("-")
                    ));
                }
                let same = match (&ours.bytes, &base.bytes) {
                    (Ok(a), Ok(b)) if a == b => "yes",
                    (Ok(_), Ok(_)) => "no",
                    _ => "-",
                };
                (same.to_owned(), base.encode, base.decode)
            }
            None => ("-".into(), None, None),
        };
        table.push(vec![
            r.sample.clone(),
            r.codec.to_owned(),
            r.crate_name.unwrap_or("(none)").to_owned(),
            bytes,
            same,
            t(enc),
            t(benc),
            ratio(enc, benc),
            t(dec),
            t(bdec),
            ratio(dec, bdec),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            table
                .iter()
                .map(|l| l.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    println!(
        "wirecall codec vs its format crate called directly on the same payload, timed in alternation; times are medians per call; ratio = wirecall / baseline ({} path)",
        if samples.iter().all(|s| s.typed.is_some()) { "typed" } else { "Value" }
    );
    for l in &table {
        let mut line = String::new();
        for (c, cell) in l.iter().enumerate() {
            let w = widths.get(c).copied().unwrap_or(0);
            let pad = " ".repeat(w.saturating_sub(cell.chars().count()));
            if c >= 3 {
                line.push_str(&pad);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&pad);
            }
            line.push_str("  ");
        }
        println!("{}", line.trim_end());
    }
    for n in notes {
        println!("note: {n}");
    }
    println!(
        "\n{} measurement(s) in {:.1} s ({:.1} ms each).",
        rows.len(),
        started.elapsed().as_secs_f64(),
        budget.time.as_secs_f64() * 1e3
    );
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `wirecall bench rpc`.
#[derive(Args, Debug)]
pub(crate) struct RpcArgs {
    /// Socket family of the server started here: tcp or unix (with --connect, the URL's).
    #[arg(long, default_value = "tcp", value_name = "tcp|unix")]
    transport: String,
    /// Codecs to measure, comma-separated (default: every built-in codec; with --connect,
    /// the self-describing codecs the server accepts).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    codec: Vec<String>,
    /// Calls in flight for the calls/s figure.
    #[arg(long, default_value_t = 64, value_name = "N")]
    inflight: usize,
    /// Connections the in-flight calls are spread over.
    #[arg(long, default_value_t = 1, value_name = "N")]
    connections: usize,
    /// Seconds per measurement (each latency and calls/s figure, and the baseline).
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    duration: f64,
    /// Measure a running server (e.g. `wirecall serve`) instead of one started here.
    #[arg(long, value_name = "URL")]
    connect: Option<String>,
    /// With --connect: provider id of the echo method.
    #[arg(long, default_value_t = crate::serve_cmds::DEMO_PROVIDER_ID, value_name = "ID")]
    provider: u16,
    /// With --connect: full RPC name of a method that returns its one string argument.
    #[arg(long, default_value = crate::serve_cmds::DEMO_ECHO, value_name = "NAME")]
    method: String,
}

/// Runs `wirecall bench rpc`.
fn rpc(args: &RpcArgs) -> Result<ExitCode, String> {
    use wirecall_bench_harness::rpc::{self, RpcOptions, Target, TransportKind};
    if !(args.duration.is_finite() && args.duration > 0.0) {
        return Err(format!(
            "--duration must be positive seconds, got {}",
            args.duration
        ));
    }
    let duration = Duration::from_secs_f64(args.duration);
    let transport = match &args.connect {
        Some(url) => TransportKind::of_uri(url),
        None => TransportKind::parse(&args.transport)?,
    };
    let codecs = if !args.codec.is_empty() {
        select_codecs(&args.codec)?
            .into_iter()
            .map(|c| c.id)
            .collect()
    } else if let Some(url) = &args.connect {
        rpc::accepted_codecs(url)?
    } else {
        measure::codecs().into_iter().map(|c| c.id).collect()
    };
    let mut opts = RpcOptions::new(transport, codecs)
        .duration(duration)
        .inflight(args.inflight)
        .connections(args.connections);
    if let Some(url) = &args.connect {
        opts = opts.connect(Target {
            uri: url.clone(),
            provider_id: args.provider,
            method: args.method.clone(),
        });
    }
    let report = rpc::measure_rpc(&opts)?;
    print!("{}", report.render(duration));
    Ok(ExitCode::SUCCESS)
}
