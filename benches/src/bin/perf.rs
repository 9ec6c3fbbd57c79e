//! `perf`: end-to-end wirecall figures beside baselines measured in the same run.
//!
//! For tcp and unix sockets: the round-trip latency (p50/p99) of a small echo call with one
//! call in flight, per codec; calls/s with 64 calls in flight on one connection, and with 64
//! in flight over 8 connections. Beside them: the raw socket ping-pong of the same bytes
//! (std sockets and an echo thread, `TCP_NODELAY`; also with tokio sockets, the floor for
//! anything on tokio), and tarpc 0.38 (bincode serde transport over TCP, `TCP_NODELAY` both
//! ends) doing the same echo call.
//!
//! `cargo run --release -p wirecall-benches --bin perf -- [--duration S] [--quick]
//! [--codecs json,postcard] [--transports tcp,unix] [--json]`

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde_json::json;
use wirecall_benches::rpc::{
    self, fmt_us, tarpc_peer::TarpcPair, BenchServer, Latency, Throughput, TransportKind,
    BENCH_ECHO,
};
use wirecall_codecs::CodecId;

/// End-to-end wirecall latency and throughput against raw sockets and tarpc.
#[derive(Parser, Debug)]
#[command(name = "perf")]
struct Args {
    /// Seconds per measurement (each latency, throughput and baseline figure).
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Short run: 0.3 s per measurement (overrides --duration).
    #[arg(long)]
    quick: bool,
    /// Codecs to measure, comma-separated (default: every built-in codec).
    #[arg(long, value_delimiter = ',')]
    codecs: Vec<String>,
    /// Transports to measure, comma-separated (default: tcp,unix).
    #[arg(long, value_delimiter = ',')]
    transports: Vec<String>,
    /// Calls in flight for the throughput figures.
    #[arg(long, default_value_t = 64)]
    inflight: usize,
    /// Connections for the multi-connection throughput figure.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Print the figures as one JSON document instead of tables.
    #[arg(long)]
    json: bool,
}

/// One codec on one transport.
struct Row {
    codec: CodecId,
    frame_len: usize,
    latency: Latency,
    one_conn: Throughput,
    multi_conn: Throughput,
}

/// Everything measured on one transport.
struct TransportFigures {
    transport: TransportKind,
    raw_len: usize,
    raw: Latency,
    raw_tokio: Latency,
    rows: Vec<Row>,
}

struct TarpcFigures {
    latency: Latency,
    throughput: Throughput,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perf: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_codecs(names: &[String]) -> Result<Vec<CodecId>, String> {
    if names.is_empty() {
        return Ok(wirecall_codecs::builtin_infos().map(|i| i.id).collect());
    }
    names
        .iter()
        .map(|n| {
            CodecId::from_builtin_name(n.trim()).ok_or_else(|| {
                format!(
                    "unknown codec `{n}`; the built-in codecs are {}",
                    CodecId::BUILTIN
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
        })
        .collect()
}

fn run(args: &Args) -> Result<(), String> {
    let duration = if args.quick {
        Duration::from_millis(300)
    } else if args.duration.is_finite() && args.duration > 0.0 {
        Duration::from_secs_f64(args.duration)
    } else {
        return Err(format!(
            "--duration must be a positive number of seconds, got {}",
            args.duration
        ));
    };
    let codecs = parse_codecs(&args.codecs)?;
    let transports = if args.transports.is_empty() {
        TransportKind::ALL.to_vec()
    } else {
        args.transports
            .iter()
            .map(|t| TransportKind::parse(t))
            .collect::<Result<Vec<_>, _>>()?
    };
    let inflight = args.inflight.max(1);
    let connections = args.connections.max(1);
    let rt = rpc::runtime()?;
    let progress = !args.json;

    let mut figures = Vec::new();
    for &transport in &transports {
        let raw_len = rpc::echo_frame_len(
            codecs.first().copied().unwrap_or(CodecId::MSGPACK),
            BENCH_ECHO,
        );
        if progress {
            eprintln!("{transport}: raw ping-pong of {raw_len} bytes...");
        }
        let raw = rpc::raw_pingpong(transport, raw_len, duration)
            .map_err(|e| format!("raw {transport} ping-pong: {e}"))?;
        let raw_tokio = rt
            .block_on(rpc::raw_pingpong_tokio(transport, raw_len, duration))
            .map_err(|e| format!("raw {transport} ping-pong on tokio: {e}"))?;
        let rows = rt.block_on(async {
            let server = BenchServer::start(transport)
                .await
                .map_err(|e| format!("starting the {transport} benchmark server: {e}"))?;
            let mut rows = Vec::new();
            for &codec in &codecs {
                if progress {
                    eprintln!("{transport}: wirecall with {codec}...");
                }
                let t = &server.target;
                let r = async {
                    let latency = rpc::latency(t, codec, duration).await?;
                    let one_conn = rpc::throughput(t, codec, 1, inflight, duration).await?;
                    let multi_conn =
                        rpc::throughput(t, codec, connections, inflight, duration).await?;
                    Ok::<_, wirecall::Error>(Row {
                        codec,
                        frame_len: rpc::echo_frame_len(codec, BENCH_ECHO),
                        latency,
                        one_conn,
                        multi_conn,
                    })
                }
                .await
                .map_err(|e| format!("wirecall {codec} over {transport}: {e}"));
                match r {
                    Ok(row) => rows.push(row),
                    Err(e) => {
                        server.finalize().await;
                        return Err(e);
                    }
                }
            }
            server.finalize().await;
            Ok::<_, String>(rows)
        })?;
        figures.push(TransportFigures {
            transport,
            raw_len,
            raw,
            raw_tokio,
            rows,
        });
    }

    if progress {
        eprintln!("tcp: tarpc...");
    }
    let tarpc = rt.block_on(async {
        let pair = TarpcPair::start()
            .await
            .map_err(|e| format!("starting tarpc: {e}"))?;
        let latency = pair.latency(duration).await.map_err(|e| e.to_string())?;
        let throughput = pair
            .throughput(inflight, duration)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(TarpcFigures {
            latency,
            throughput,
        })
    })?;

    if args.json {
        print_json(&figures, &tarpc, duration, inflight, connections);
    } else {
        print_tables(&figures, &tarpc, duration, inflight, connections);
    }
    Ok(())
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

fn print_tables(
    figures: &[TransportFigures],
    tarpc: &TarpcFigures,
    duration: Duration,
    inflight: usize,
    connections: usize,
) {
    println!(
        "wirecall perf: {:.1} s per measurement, echo of a {}-byte string, client and server in one process (2 tokio workers)",
        duration.as_secs_f64(),
        rpc::ECHO_PAYLOAD.len()
    );
    println!(
        "tarpc 0.38 (bincode, tcp, nodelay): p50 {}  p99 {}  {:.0} calls/s with {inflight} in flight on 1 connection",
        fmt_us(tarpc.latency.p50),
        fmt_us(tarpc.latency.p99),
        tarpc.throughput.calls_per_sec
    );
    for f in figures {
        println!();
        println!(
            "{}: raw ping-pong of {} bytes: std p50 {} p99 {}; tokio p50 {} p99 {}",
            f.transport,
            f.raw_len,
            fmt_us(f.raw.p50),
            fmt_us(f.raw.p99),
            fmt_us(f.raw_tokio.p50),
            fmt_us(f.raw_tokio.p99)
        );
        println!(
            "{:<9} {:>6} {:>11} {:>11} {:>8} {:>10} {:>12} {:>9} {:>12}",
            "codec",
            "frame",
            "p50",
            "p99",
            "p50/raw",
            "p50/tokio",
            "calls/s 1c",
            "/tarpc",
            format!("calls/s {connections}c"),
        );
        for r in &f.rows {
            println!(
                "{:<9} {:>6} {:>11} {:>11} {:>7.2}x {:>9.2}x {:>12.0} {:>8.2}x {:>12.0}",
                r.codec.to_string(),
                r.frame_len,
                fmt_us(r.latency.p50),
                fmt_us(r.latency.p99),
                ratio(r.latency.p50.as_secs_f64(), f.raw.p50.as_secs_f64()),
                ratio(r.latency.p50.as_secs_f64(), f.raw_tokio.p50.as_secs_f64()),
                r.one_conn.calls_per_sec,
                ratio(r.one_conn.calls_per_sec, tarpc.throughput.calls_per_sec),
                r.multi_conn.calls_per_sec,
            );
        }
    }
    if let Some(tcp) = figures.iter().find(|f| f.transport == TransportKind::Tcp) {
        println!();
        println!(
            "tarpc p50 / raw tcp p50: {:.2}x",
            ratio(tarpc.latency.p50.as_secs_f64(), tcp.raw.p50.as_secs_f64())
        );
    }
    println!(
        "targets: p50 <= 1.30x raw ping-pong of the same transport; calls/s on 1 connection with {inflight} in flight >= 2.00x tarpc"
    );
}

fn lat_json(l: &Latency) -> serde_json::Value {
    json!({"p50_ns": l.p50.as_nanos() as u64, "p99_ns": l.p99.as_nanos() as u64, "samples": l.samples})
}

fn thr_json(t: &Throughput) -> serde_json::Value {
    json!({"calls_per_sec": t.calls_per_sec, "calls": t.calls, "inflight": t.inflight, "connections": t.connections})
}

fn print_json(
    figures: &[TransportFigures],
    tarpc: &TarpcFigures,
    duration: Duration,
    inflight: usize,
    connections: usize,
) {
    let transports: Vec<_> = figures
        .iter()
        .map(|f| {
            let rows: Vec<_> = f
                .rows
                .iter()
                .map(|r| {
                    json!({
                        "codec": r.codec.to_string(),
                        "frame_len": r.frame_len,
                        "latency": lat_json(&r.latency),
                        "throughput_1conn": thr_json(&r.one_conn),
                        "throughput_multi": thr_json(&r.multi_conn),
                        "p50_over_raw": ratio(r.latency.p50.as_secs_f64(), f.raw.p50.as_secs_f64()),
                        "p50_over_raw_tokio": ratio(r.latency.p50.as_secs_f64(), f.raw_tokio.p50.as_secs_f64()),
                        "calls_over_tarpc": ratio(r.one_conn.calls_per_sec, tarpc.throughput.calls_per_sec),
                    })
                })
                .collect();
            json!({
                "transport": f.transport.name(),
                "raw_len": f.raw_len,
                "raw": lat_json(&f.raw),
                "raw_tokio": lat_json(&f.raw_tokio),
                "codecs": rows,
            })
        })
        .collect();
    let doc = json!({
        "duration_s": duration.as_secs_f64(),
        "inflight": inflight,
        "connections": connections,
        "tarpc": {"latency": lat_json(&tarpc.latency), "throughput": thr_json(&tarpc.throughput)},
        "transports": transports,
    });
    println!("{doc:#}");
}
