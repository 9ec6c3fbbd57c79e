//! `perf`: end-to-end wirecall figures beside baselines measured in the same run.
//!
//! For tcp and unix sockets: the round-trip latency (p50/p99) of a small echo call with one
//! call in flight, per codec; calls/s with 64 calls in flight on one connection, and with 64
//! in flight over 8 connections. Beside them: the raw socket ping-pong of the same bytes
//! (std sockets and an echo thread, `TCP_NODELAY`; also with tokio sockets, the floor for
//! anything on tokio), and tarpc 0.38 (bincode serde transport over TCP, `TCP_NODELAY` both
//! ends) doing the same echo call.
//!
//! Many connections: calls/s of the first codec at 1 connection x 64 in flight, 8
//! connections x 8 and 256 connections x 1 of a raw tokio echo server of the same frames and
//! of the wirecall server, both driven by the same pipelined client loop, beside the wirecall
//! proxy (one caller task per call in flight) and tarpc over tcp, all in the same run;
//! `--profile many-conns` runs that set alone.
//!
//! Naming (`--profile naming`, alone): lookups/s through the embedded name server, the
//! resolution cost added to a new proxy's first call, and later calls of a resolved proxy,
//! each beside a plain call in the same run (see `perf/naming.rs`).
//!
//! Batches (`--profile batch`, alone): 1,000 small calls as one `Proxy::batch` (ordered, and
//! run-all) against the same calls one after another, per transport (see `perf/batch.rs`).
//!
//! Compression (`--profile compression`, alone): a 1 MiB compressible JSON payload echoed
//! without compression and with zstd, bytes on the wire and CPU per call, per transport
//! (see `perf/compression.rs`).
//!
//! `cargo run --release -p wirecall-benches --bin perf -- [--duration S] [--quick]
//! [--codecs json,postcard] [--transports tcp,unix] [--json]
//! [--profile many-conns|naming|batch|compression]`

#[path = "perf/batch.rs"]
mod batch;
#[path = "perf/compression.rs"]
mod compression;
#[path = "perf/naming.rs"]
mod naming;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde_json::json;
use wirecall_benches::raw::{PipelinedClients, RawEcho, RawSession, TokioRawSession};
use wirecall_benches::rpc::{
    self, fmt_us, BenchError, BenchServer, Count, Latency, Throughput, TransportKind, BENCH_ECHO,
};
use wirecall_benches::tarpc_peer::{TarpcClients, TarpcPair};
use wirecall_benches::tls::TlsFigures;
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
    /// Transports to measure, comma-separated (default: tcp,unix,tls). `tls` measures the
    /// echo call over `tls://` beside plain `tcp://` (first codec, --inflight on one
    /// connection), interleaved in the same rounds.
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
    /// Profiling aid: run only this subject's one-in-flight loop (wirecall with the first
    /// codec, tokio, std or tarpc) on the first transport for --duration, and print the
    /// round trips done; or `wirecall-throughput` (--inflight over --connections) or
    /// `tarpc-throughput` (--inflight on one connection), or `server-pipelined` /
    /// `echo-pipelined` (the wirecall server / the raw echo server driven by the pipelined
    /// client, --inflight spread over --connections). For `perf record` or `strace -c
    /// -f`. Or `many-conns`: the many-connections figures alone (wirecall with the first
    /// codec on the first transport, the raw echo server and tarpc over tcp, at 1x64, 8x8
    /// and 256x1 connections x calls in flight), for A/B runs of two builds. Or `naming`:
    /// the naming figures alone (name server lookups, first and later calls by name). Or
    /// `compression`: a 1 MiB JSON echo without and with zstd (bytes, wall and CPU per call).
    #[arg(long, value_name = "SUBJECT")]
    profile: Option<String>,
    /// Run everything on one thread (a current-thread tokio runtime) instead of two
    /// workers: no cross-thread wake-ups, one core.
    #[arg(long)]
    current_thread: bool,
    /// With `--profile echo-pipelined`: the raw echo server spends this many nanoseconds
    /// busy per frame (as a server handling each call would), to read a server's per-call
    /// budget off the raw echo's calls/s.
    #[arg(long, value_name = "NS", default_value_t = 0)]
    echo_work_ns: u64,
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

/// The shapes of the many-connections figures: (connections, calls in flight on each).
/// 1 x 64 is the one-connection figure the others are read against.
const MANY_SHAPES: [(usize, usize); 3] = [(1, 64), (8, 8), (256, 1)];

/// One shape of the many-connections figures.
struct ShapeFigures {
    connections: usize,
    per_conn: usize,
    raw: Throughput,
    /// The wirecall server driven by the raw echo's client loop.
    server: Throughput,
    wirecall: Throughput,
    tarpc: Option<Throughput>,
}

/// The many-connections figures of one transport.
struct ManyFigures {
    transport: TransportKind,
    codec: CodecId,
    frame_len: usize,
    shapes: Vec<ShapeFigures>,
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
    let is_tls = |t: &String| t.trim().eq_ignore_ascii_case("tls");
    let want_tls = args.transports.is_empty() || args.transports.iter().any(is_tls);
    let transports = if args.transports.is_empty() {
        TransportKind::ALL.to_vec()
    } else {
        args.transports
            .iter()
            .filter(|t| !is_tls(t))
            .map(|t| TransportKind::parse(t))
            .collect::<Result<Vec<_>, _>>()?
    };
    let inflight = args.inflight.max(1);
    let connections = args.connections.max(1);
    let rt = if args.current_thread {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting a tokio runtime: {e}"))?
    } else {
        rpc::runtime()?
    };
    let progress = !args.json;
    let runtime_name = if args.current_thread {
        "one current-thread tokio runtime"
    } else {
        "a tokio runtime with 2 workers"
    };
    if args.echo_work_ns > 0 && args.profile.as_deref() != Some("echo-pipelined") {
        return Err("--echo-work-ns is for --profile echo-pipelined only".into());
    }
    if let Some(subject) = &args.profile {
        let transport = transports.first().copied().unwrap_or(TransportKind::Tcp);
        let codec = codecs.first().copied().unwrap_or(CodecId::POSTCARD);
        if subject == "batch" {
            let mut figs = Vec::new();
            for t in &transports {
                let name = match t {
                    TransportKind::Unix => "unix",
                    _ => "tcp",
                };
                figs.push(batch::measure(&rt, name, duration, progress)?);
            }
            if args.json {
                println!("{:#}", batch::to_json(&figs));
            } else {
                print!("{}", batch::table(&figs, duration));
            }
            return Ok(());
        }
        if subject == "compression" {
            let mut figs = Vec::new();
            for t in &transports {
                let name = match t {
                    TransportKind::Unix => "unix",
                    _ => "tcp",
                };
                figs.push(compression::measure(&rt, name, duration, progress)?);
            }
            if args.json {
                println!("{:#}", compression::to_json(&figs));
            } else {
                print!("{}", compression::table(&figs, duration));
            }
            return Ok(());
        }
        if subject == "naming" {
            let f = naming::measure(&rt, duration, progress)?;
            if args.json {
                println!("{:#}", naming::to_json(&f));
            } else {
                print!("{}", naming::table(&f, duration));
            }
            return Ok(());
        }
        if subject == "many-conns" {
            let many = many_conns(
                &rt,
                transport,
                codec,
                duration,
                transport == TransportKind::Tcp,
                progress,
            )?;
            if args.json {
                println!("{:#}", many_json(&many));
            } else {
                print!("{}", many_table(runtime_name, &many, duration));
            }
            return Ok(());
        }
        return profile(
            &rt,
            subject,
            transport,
            codec,
            duration,
            (inflight, connections),
            Duration::from_nanos(args.echo_work_ns),
        );
    }

    let mut figures = Vec::new();
    let mut many = Vec::new();
    let mut tarpc = None;
    for &transport in &transports {
        let with_tarpc = transport == TransportKind::Tcp;
        let f = rt_measure(
            &rt,
            transport,
            &codecs,
            duration,
            inflight,
            connections,
            with_tarpc,
            progress,
        )?;
        if let Some(t) = f.1 {
            tarpc = Some(t);
        }
        figures.push(f.0);
        let first = codecs.first().copied().unwrap_or(CodecId::POSTCARD);
        many.push(many_conns(
            &rt, transport, first, duration, with_tarpc, progress,
        )?);
    }
    let tls = if want_tls {
        let codec = codecs.first().copied().unwrap_or(CodecId::POSTCARD);
        if progress {
            eprintln!("tls: {codec} echo over tls:// and tcp://, interleaved");
        }
        // On a runtime worker, as an application's callers would run.
        let measured = rt
            .block_on(async {
                tokio::spawn(wirecall_benches::tls::tls_vs_tcp(codec, duration, inflight)).await
            })
            .map_err(|e| format!("the TLS measurement task failed: {e}"))??;
        Some(measured)
    } else {
        None
    };
    let tarpc = match tarpc {
        Some(t) => t,
        None => {
            // No tcp transport asked for: tarpc alone, for the throughput ratio.
            rt.block_on(async {
                let pair = TarpcPair::start()
                    .await
                    .map_err(|e| format!("starting tarpc: {e}"))?;
                Ok::<_, String>(TarpcFigures {
                    latency: pair.latency(duration).await.map_err(|e| e.to_string())?,
                    throughput: pair
                        .throughput(inflight, duration)
                        .await
                        .map_err(|e| e.to_string())?,
                })
            })?
        }
    };

    if args.json {
        print_json(
            runtime_name,
            &figures,
            &many,
            &tarpc,
            tls.as_ref(),
            duration,
            inflight,
            connections,
        );
    } else {
        print_tables(
            runtime_name,
            &figures,
            &tarpc,
            duration,
            inflight,
            connections,
        );
        if let Some(t) = &tls {
            println!();
            print!("{}", tls_table(t, inflight));
        }
        for m in &many {
            println!();
            print!("{}", many_table(runtime_name, m, duration));
        }
    }
    Ok(())
}

/// TLS beside plain tcp.
fn tls_table(t: &TlsFigures, inflight: usize) -> String {
    let row = |name: &str, s: &wirecall_benches::tls::Side| {
        format!(
            "  {name:<5} p50 {:>8}  p99 {:>8}  {:>9.0} calls/s ({inflight} in flight, 1 connection)\n",
            rpc::fmt_us(s.latency.p50),
            rpc::fmt_us(s.latency.p99),
            s.throughput.calls_per_sec
        )
    };
    format!(
        "TLS beside plain tcp ({} echo through the engine, rounds interleaved; TLS 1.3, rustls with ring):\n{}{}  tls/tcp: p50 {:.2}x (target <= 1.3x), calls/s {:.2}x (target >= 0.7x)\n",
        t.codec,
        row("tcp", &t.tcp),
        row("tls", &t.tls),
        t.p50_ratio(),
        t.calls_ratio()
    )
}

/// One wirecall subject: a codec with its latency proxy and throughput proxies.
struct Subject {
    codec: CodecId,
    one: wirecall::Proxy,
    single: Vec<wirecall::Proxy>,
    multi: Vec<wirecall::Proxy>,
    nanos: Vec<u64>,
    single_count: Count,
    multi_count: Count,
}

/// Everything measured in rounds besides the blocking raw ping-pong.
struct Live {
    tokio_raw: TokioRawSession,
    tarpc: Option<TarpcPair>,
    subjects: Vec<Subject>,
    tokio_nanos: Vec<u64>,
    tarpc_nanos: Vec<u64>,
    tarpc_count: Count,
}

/// One slice of every async subject.
async fn one_round(
    l: &mut Live,
    t: &rpc::Target,
    transport: TransportKind,
    slice: Duration,
    inflight: usize,
) -> Result<(), String> {
    l.tokio_raw
        .sample(slice, &mut l.tokio_nanos)
        .await
        .map_err(|e| format!("raw {transport} ping-pong on tokio: {e}"))?;
    if let Some(p) = &l.tarpc {
        p.latency_sample(slice, &mut l.tarpc_nanos)
            .await
            .map_err(|e| e.to_string())?;
        l.tarpc_count.add(
            p.throughput_sample(inflight, slice, Duration::ZERO)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    for s in &mut l.subjects {
        let codec = s.codec;
        let r = async {
            rpc::latency_sample(&s.one, t, slice, &mut s.nanos).await?;
            s.single_count
                .add(rpc::throughput_sample(&s.single, t, inflight, slice, Duration::ZERO).await?);
            s.multi_count
                .add(rpc::throughput_sample(&s.multi, t, inflight, slice, Duration::ZERO).await?);
            Ok::<_, BenchError>(())
        }
        .await;
        r.map_err(|e| format!("wirecall {codec} over {transport}: {e}"))?;
    }
    Ok(())
}

/// Measures one transport, every subject interleaved in rounds of short slices so that
/// load elsewhere on the machine hits all of them alike.
#[allow(clippy::too_many_arguments)]
fn rt_measure(
    rt: &tokio::runtime::Runtime,
    transport: TransportKind,
    codecs: &[CodecId],
    duration: Duration,
    inflight: usize,
    connections: usize,
    with_tarpc: bool,
    progress: bool,
) -> Result<(TransportFigures, Option<TarpcFigures>), String> {
    let raw_len = rpc::echo_frame_len(
        codecs.first().copied().unwrap_or(CodecId::MSGPACK),
        BENCH_ECHO,
    );
    let warm = rpc::warm_up_time(duration);
    let rounds = rpc::rounds_for(duration);
    let slice = duration / rounds;
    if progress {
        eprintln!(
            "{transport}: setting up (raw ping-pong of {raw_len} bytes, {} codecs{}), then {rounds} rounds of {:.0} ms slices",
            codecs.len(),
            if with_tarpc { ", tarpc" } else { "" },
            slice.as_secs_f64() * 1e3
        );
    }
    let mut raw = RawSession::start(transport, raw_len)
        .map_err(|e| format!("raw {transport} ping-pong: {e}"))?;
    let mut raw_nanos = Vec::with_capacity(65536);
    raw.sample(warm, &mut raw_nanos)
        .map_err(|e| format!("raw {transport} ping-pong: {e}"))?;
    raw_nanos.clear();
    let server = rt
        .block_on(BenchServer::start(transport))
        .map_err(|e| format!("starting the {transport} benchmark server: {e}"))?;
    let t = server.target.clone();
    let setup = rt.block_on(async {
        let mut tokio_raw = TokioRawSession::start(transport, raw_len)
            .await
            .map_err(|e| format!("raw {transport} ping-pong on tokio: {e}"))?;
        let mut scratch = Vec::new();
        tokio_raw
            .sample(warm, &mut scratch)
            .await
            .map_err(|e| format!("raw {transport} ping-pong on tokio: {e}"))?;
        let tarpc = if with_tarpc {
            let pair = TarpcPair::start()
                .await
                .map_err(|e| format!("starting tarpc: {e}"))?;
            pair.latency_sample(warm, &mut scratch)
                .await
                .map_err(|e| e.to_string())?;
            pair.throughput_sample(inflight, Duration::ZERO, warm)
                .await
                .map_err(|e| e.to_string())?;
            Some(pair)
        } else {
            None
        };
        let mut subjects = Vec::new();
        for &codec in codecs {
            let s = async {
                let one = rpc::connect(&t, codec).await?;
                rpc::warm_up_calls(&one, &t, duration).await?;
                let single = rpc::connect_many(&t, codec, 1).await?;
                rpc::throughput_sample(&single, &t, inflight, Duration::ZERO, warm).await?;
                let multi = rpc::connect_many(&t, codec, connections).await?;
                rpc::throughput_sample(&multi, &t, inflight, Duration::ZERO, warm).await?;
                Ok::<_, BenchError>(Subject {
                    codec,
                    one,
                    single,
                    multi,
                    nanos: Vec::with_capacity(65536),
                    single_count: Count::default(),
                    multi_count: Count::default(),
                })
            }
            .await
            .map_err(|e| format!("wirecall {codec} over {transport}: {e}"))?;
            subjects.push(s);
        }
        Ok::<_, String>((tokio_raw, tarpc, subjects))
    });
    let (tokio_raw, tarpc, subjects) = match setup {
        Ok(x) => x,
        Err(e) => {
            rt.block_on(server.finalize());
            return Err(e);
        }
    };
    let mut live = Some(Live {
        tokio_raw,
        tarpc,
        subjects,
        tokio_nanos: Vec::with_capacity(65536),
        tarpc_nanos: Vec::with_capacity(65536),
        tarpc_count: Count::default(),
    });
    let mut result = Ok(());
    for round in 0..rounds {
        if progress {
            eprint!("\r{transport}: round {}/{rounds}", round + 1);
        }
        if let Err(e) = raw.sample(slice, &mut raw_nanos) {
            result = Err(format!("raw {transport} ping-pong: {e}"));
            break;
        }
        let Some(mut l) = live.take() else {
            break;
        };
        let target = t.clone();
        // The callers run in a spawned task, on a runtime worker, as an application's
        // would; the state goes in and comes back.
        let joined = rt.block_on(async move {
            tokio::spawn(async move {
                let r = one_round(&mut l, &target, transport, slice, inflight).await;
                (l, r)
            })
            .await
        });
        match joined {
            Ok((l, r)) => {
                live = Some(l);
                if let Err(e) = r {
                    result = Err(e);
                    break;
                }
            }
            Err(e) => {
                result = Err(format!("a measurement task failed: {e}"));
                break;
            }
        }
    }
    let Some(Live {
        tokio_raw,
        tarpc,
        mut subjects,
        mut tokio_nanos,
        mut tarpc_nanos,
        tarpc_count,
    }) = live
    else {
        rt.block_on(server.finalize());
        return Err(result
            .err()
            .unwrap_or_else(|| "a measurement task failed".into()));
    };
    drop(tokio_raw);
    if progress {
        eprintln!();
    }
    let rows: Vec<Row> = subjects
        .iter_mut()
        .map(|s| Row {
            codec: s.codec,
            frame_len: rpc::echo_frame_len(s.codec, BENCH_ECHO),
            latency: Latency::from_nanos(&mut s.nanos),
            one_conn: s.single_count.throughput(inflight, 1),
            multi_conn: s.multi_count.throughput(inflight, connections),
        })
        .collect();
    drop(subjects);
    drop(tarpc);
    rt.block_on(server.finalize());
    result?;
    let tarpc_figures = with_tarpc.then(|| TarpcFigures {
        latency: Latency::from_nanos(&mut tarpc_nanos),
        throughput: tarpc_count.throughput(inflight, 1),
    });
    Ok((
        TransportFigures {
            transport,
            raw_len,
            raw: Latency::from_nanos(&mut raw_nanos),
            raw_tokio: Latency::from_nanos(&mut tokio_nanos),
            rows,
        },
        tarpc_figures,
    ))
}

/// Runs one subject's latency loop alone (see `--profile`).
fn profile(
    rt: &tokio::runtime::Runtime,
    subject: &str,
    transport: TransportKind,
    codec: CodecId,
    duration: Duration,
    (inflight, connections): (usize, usize),
    echo_work: Duration,
) -> Result<(), String> {
    let len = rpc::echo_frame_len(codec, BENCH_ECHO);
    let mut nanos = Vec::with_capacity(1 << 20);
    match subject {
        "std" => RawSession::start(transport, len)
            .and_then(|mut s| s.sample(duration, &mut nanos))
            .map_err(|e| e.to_string())?,
        "tokio" => rt
            .block_on(async {
                let mut s = TokioRawSession::start(transport, len).await?;
                s.sample(duration, &mut nanos).await
            })
            .map_err(|e| e.to_string())?,
        "tarpc" => rt.block_on(async {
            let p = TarpcPair::start().await.map_err(|e| e.to_string())?;
            p.latency_sample(duration, &mut nanos)
                .await
                .map_err(|e| e.to_string())
        })?,
        "wirecall" => rt.block_on(async {
            let server = BenchServer::start(transport)
                .await
                .map_err(|e| e.to_string())?;
            let r = async {
                let p = rpc::connect(&server.target, codec).await?;
                rpc::latency_sample(&p, &server.target, duration, &mut nanos).await
            }
            .await;
            server.finalize().await;
            r.map_err(|e| e.to_string())
        })?,
        "wirecall-task" | "tokio-task" => {
            // The same loops inside a spawned task (a worker thread) instead of the
            // block_on thread.
            let wire = subject == "wirecall-task";
            let (n, r) = rt
                .block_on(async move {
                    tokio::spawn(async move {
                        let mut nanos = Vec::with_capacity(1 << 20);
                        let r = if wire {
                            match BenchServer::start(transport).await {
                                Ok(server) => {
                                    let r = async {
                                        let p = rpc::connect(&server.target, codec).await?;
                                        rpc::latency_sample(
                                            &p,
                                            &server.target,
                                            duration,
                                            &mut nanos,
                                        )
                                        .await
                                    }
                                    .await;
                                    server.finalize().await;
                                    r.map_err(|e| e.to_string())
                                }
                                Err(e) => Err(e.to_string()),
                            }
                        } else {
                            match TokioRawSession::start(transport, len).await {
                                Ok(mut s) => s
                                    .sample(duration, &mut nanos)
                                    .await
                                    .map_err(|e| e.to_string()),
                                Err(e) => Err(e.to_string()),
                            }
                        };
                        (nanos, r)
                    })
                    .await
                })
                .map_err(|e| format!("the profiling task failed: {e}"))?;
            r?;
            nanos = n;
        }
        "wirecall-throughput" => {
            let count = rt.block_on(async {
                let server = BenchServer::start(transport)
                    .await
                    .map_err(|e| e.to_string())?;
                let r = async {
                    let ps = rpc::connect_many(&server.target, codec, connections).await?;
                    rpc::throughput_sample(&ps, &server.target, inflight, duration, Duration::ZERO)
                        .await
                }
                .await;
                server.finalize().await;
                r.map_err(|e| e.to_string())
            })?;
            let t = count.throughput(inflight, connections);
            println!(
                "wirecall over {transport}: {} calls, {:.0} calls/s with {inflight} in flight on {connections} connection(s)",
                t.calls, t.calls_per_sec
            );
            return Ok(());
        }
        "server-pipelined" | "echo-pipelined" => {
            // The wirecall server (or the raw echo server) driven by the pipelined client
            // of the many-connections figures: --inflight over --connections.
            let per_conn = (inflight / connections.max(1)).max(1);
            let call = rpc::echo_call_frame(codec, BENCH_ECHO);
            let count = rt.block_on(async {
                if subject == "echo-pipelined" {
                    let echo = RawEcho::start_working(transport, echo_work)
                        .await
                        .map_err(|e| e.to_string())?;
                    let c = echo
                        .connect(connections, &call)
                        .await
                        .map_err(|e| e.to_string())?;
                    return c
                        .throughput_sample(per_conn, duration, Duration::ZERO)
                        .await
                        .map_err(|e| e.to_string());
                }
                let server = BenchServer::start(transport)
                    .await
                    .map_err(|e| e.to_string())?;
                let r = async {
                    let c = PipelinedClients::connect_wirecall(
                        &server.target.uri,
                        codec,
                        connections,
                        &call,
                    )
                    .await?;
                    c.throughput_sample(per_conn, duration, Duration::ZERO)
                        .await
                }
                .await;
                server.finalize().await;
                r.map_err(|e| e.to_string())
            })?;
            let t = count.throughput(per_conn * connections, connections);
            println!(
                "{subject} over {transport}: {} calls, {:.0} calls/s with {per_conn} in flight on each of {connections} connection(s)",
                t.calls, t.calls_per_sec
            );
            return Ok(());
        }
        "tarpc-throughput" => {
            let count = rt.block_on(async {
                let p = TarpcPair::start().await.map_err(|e| e.to_string())?;
                p.throughput_sample(inflight, duration, Duration::ZERO)
                    .await
                    .map_err(|e| e.to_string())
            })?;
            let t = count.throughput(inflight, 1);
            println!(
                "tarpc over tcp: {} calls, {:.0} calls/s with {inflight} in flight on 1 connection",
                t.calls, t.calls_per_sec
            );
            return Ok(());
        }
        other => {
            return Err(format!(
                "unknown --profile subject `{other}`; use wirecall, wirecall-task, wirecall-throughput, server-pipelined, echo-pipelined, tokio, tokio-task, std, tarpc or tarpc-throughput"
            ))
        }
    }
    let l = Latency::from_nanos(&mut nanos);
    // tarpc runs over tcp whatever the transport.
    let transport = if subject == "tarpc" {
        TransportKind::Tcp
    } else {
        transport
    };
    println!(
        "{subject} over {transport}: {} round trips, p50 {} p99 {}",
        l.samples,
        fmt_us(l.p50),
        fmt_us(l.p99)
    );
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
    runtime: &str,
    figures: &[TransportFigures],
    tarpc: &TarpcFigures,
    duration: Duration,
    inflight: usize,
    connections: usize,
) {
    println!(
        "wirecall perf: {:.1} s per measurement, echo of a {}-byte string, client and server in one process ({runtime})",
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

#[allow(clippy::too_many_arguments)]
fn print_json(
    runtime: &str,
    figures: &[TransportFigures],
    many: &[ManyFigures],
    tarpc: &TarpcFigures,
    tls: Option<&TlsFigures>,
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
        "runtime": runtime,
        "duration_s": duration.as_secs_f64(),
        "inflight": inflight,
        "connections": connections,
        "tarpc": {"latency": lat_json(&tarpc.latency), "throughput": thr_json(&tarpc.throughput)},
        "transports": transports,
        "many_connections": many.iter().map(many_json).collect::<Vec<_>>(),
        "tls": tls.map(|t| json!({
            "codec": t.codec.to_string(),
            "tcp": {"latency": lat_json(&t.tcp.latency), "throughput": thr_json(&t.tcp.throughput)},
            "tls": {"latency": lat_json(&t.tls.latency), "throughput": thr_json(&t.tls.throughput)},
            "p50_ratio": t.p50_ratio(),
            "calls_ratio": t.calls_ratio(),
        })),
    });
    println!("{doc:#}");
}

/// One shape's subjects while the many-connections figures are measured.
struct ShapeLive {
    connections: usize,
    per_conn: usize,
    raw: PipelinedClients,
    /// The wirecall server driven by the raw echo's client loop.
    server: PipelinedClients,
    wirecall: Vec<wirecall::Proxy>,
    tarpc: Option<TarpcClients>,
    raw_count: Count,
    server_count: Count,
    wirecall_count: Count,
    tarpc_count: Count,
}

impl ShapeLive {
    /// Connects every subject of one shape and warms it up for `warm`.
    async fn start(
        (connections, per_conn): (usize, usize),
        echo: &RawEcho,
        call: &[u8],
        t: &rpc::Target,
        codec: CodecId,
        tarpc: Option<&TarpcPair>,
        warm: Duration,
    ) -> Result<ShapeLive, BenchError> {
        let inflight = connections * per_conn;
        let raw = echo.connect(connections, call).await?;
        raw.throughput_sample(per_conn, Duration::ZERO, warm)
            .await?;
        let server = PipelinedClients::connect_wirecall(&t.uri, codec, connections, call).await?;
        server
            .throughput_sample(per_conn, Duration::ZERO, warm)
            .await?;
        let wirecall = rpc::connect_many(t, codec, connections).await?;
        rpc::throughput_sample(&wirecall, t, inflight, Duration::ZERO, warm).await?;
        let tarpc = match tarpc {
            Some(p) => {
                let c = p.connect_many(connections).await?;
                c.throughput_sample(inflight, Duration::ZERO, warm).await?;
                Some(c)
            }
            None => None,
        };
        Ok(ShapeLive {
            connections,
            per_conn,
            raw,
            server,
            wirecall,
            tarpc,
            raw_count: Count::default(),
            server_count: Count::default(),
            wirecall_count: Count::default(),
            tarpc_count: Count::default(),
        })
    }

    /// One slice of each subject, raw echo first.
    async fn round(&mut self, t: &rpc::Target, slice: Duration) -> Result<(), BenchError> {
        let inflight = self.connections * self.per_conn;
        self.raw_count.add(
            self.raw
                .throughput_sample(self.per_conn, slice, Duration::ZERO)
                .await?,
        );
        self.server_count.add(
            self.server
                .throughput_sample(self.per_conn, slice, Duration::ZERO)
                .await?,
        );
        self.wirecall_count
            .add(rpc::throughput_sample(&self.wirecall, t, inflight, slice, Duration::ZERO).await?);
        if let Some(c) = &self.tarpc {
            self.tarpc_count
                .add(c.throughput_sample(inflight, slice, Duration::ZERO).await?);
        }
        Ok(())
    }

    fn figures(&self) -> ShapeFigures {
        let (c, inflight) = (self.connections, self.connections * self.per_conn);
        ShapeFigures {
            connections: c,
            per_conn: self.per_conn,
            raw: self.raw_count.throughput(inflight, c),
            server: self.server_count.throughput(inflight, c),
            wirecall: self.wirecall_count.throughput(inflight, c),
            tarpc: self
                .tarpc
                .as_ref()
                .map(|_| self.tarpc_count.throughput(inflight, c)),
        }
    }
}

/// Calls/s at each of [`MANY_SHAPES`]: wirecall with `codec`, the raw echo server of frames
/// of the same size, and tarpc (`with_tarpc`, tcp only), every subject interleaved in
/// rounds of short slices.
fn many_conns(
    rt: &tokio::runtime::Runtime,
    transport: TransportKind,
    codec: CodecId,
    duration: Duration,
    with_tarpc: bool,
    progress: bool,
) -> Result<ManyFigures, String> {
    let call = rpc::echo_call_frame(codec, BENCH_ECHO);
    let frame_len = call.len();
    let warm = rpc::warm_up_time(duration);
    let rounds = rpc::rounds_for(duration);
    let slice = duration / rounds;
    let shapes_text = MANY_SHAPES
        .iter()
        .map(|(c, p)| format!("{c}x{p}"))
        .collect::<Vec<_>>()
        .join(", ");
    if progress {
        eprintln!(
            "{transport}, many connections ({shapes_text}): setting up (raw echo of {frame_len}-byte frames, wirecall {codec}{}), then {rounds} rounds of {:.0} ms slices",
            if with_tarpc { ", tarpc" } else { "" },
            slice.as_secs_f64() * 1e3
        );
    }
    let server = rt
        .block_on(BenchServer::start(transport))
        .map_err(|e| format!("starting the {transport} benchmark server: {e}"))?;
    let t = server.target.clone();
    let fail = |e: BenchError| format!("many connections over {transport}: {e}");
    let setup = rt.block_on(async {
        let echo = RawEcho::start(transport).await?;
        let tarpc = match with_tarpc {
            true => Some(TarpcPair::start().await?),
            false => None,
        };
        let mut shapes = Vec::with_capacity(MANY_SHAPES.len());
        for shape in MANY_SHAPES {
            shapes.push(
                ShapeLive::start(shape, &echo, &call, &t, codec, tarpc.as_ref(), warm).await?,
            );
        }
        Ok::<_, BenchError>((echo, tarpc, shapes))
    });
    let (echo, tarpc, mut shapes) = match setup {
        Ok(x) => x,
        Err(e) => {
            rt.block_on(server.finalize());
            return Err(fail(e));
        }
    };
    let mut result = Ok(());
    'rounds: for round in 0..rounds {
        if progress {
            eprint!(
                "\r{transport}, many connections: round {}/{rounds}",
                round + 1
            );
        }
        for s in &mut shapes {
            if let Err(e) = rt.block_on(s.round(&t, slice)) {
                result = Err(fail(e));
                break 'rounds;
            }
        }
    }
    if progress {
        eprintln!();
    }
    let figures = shapes.iter().map(ShapeLive::figures).collect();
    rt.block_on(async move {
        drop(shapes);
        drop(tarpc);
        drop(echo);
        server.finalize().await;
    });
    result?;
    Ok(ManyFigures {
        transport,
        codec,
        frame_len,
        shapes: figures,
    })
}

/// The many-connections figures as a table: calls/s and ratios to the raw echo server.
fn many_table(runtime: &str, m: &ManyFigures, duration: Duration) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "many connections over {}, {:.1} s per figure ({runtime}): wirecall {} (CALL frame {} bytes); \
         `raw echo` and `wc server` are a raw tokio echo server of those frames and the wirecall \
         server, driven by the same pipelined client (one task per connection); `wc proxy` is the \
         wirecall proxy with one caller task per call in flight{}",
        m.transport,
        duration.as_secs_f64(),
        m.codec,
        m.frame_len,
        if m.shapes.iter().any(|s| s.tarpc.is_some()) {
            ", as is tarpc 0.38 (bincode, tcp)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "{:<10} {:>12} {:>12} {:>7} {:>12} {:>7} {:>12} {:>7} {:>10}",
        "conns x n",
        "raw echo",
        "wc server",
        "/raw",
        "wc proxy",
        "/raw",
        "tarpc",
        "/raw",
        "proxy/1x64"
    );
    let one = m
        .shapes
        .iter()
        .find(|s| s.connections == 1)
        .map(|s| s.wirecall.calls_per_sec);
    for s in &m.shapes {
        let (tarpc, tarpc_ratio) = match &s.tarpc {
            Some(t) => (
                format!("{:.0}", t.calls_per_sec),
                format!("{:.2}x", ratio(t.calls_per_sec, s.raw.calls_per_sec)),
            ),
            None => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            out,
            "{:<10} {:>12.0} {:>12.0} {:>6.2}x {:>12.0} {:>6.2}x {:>12} {:>7} {:>9.2}x",
            format!("{} x {}", s.connections, s.per_conn),
            s.raw.calls_per_sec,
            s.server.calls_per_sec,
            ratio(s.server.calls_per_sec, s.raw.calls_per_sec),
            s.wirecall.calls_per_sec,
            ratio(s.wirecall.calls_per_sec, s.raw.calls_per_sec),
            tarpc,
            tarpc_ratio,
            one.map_or(f64::NAN, |o| ratio(s.wirecall.calls_per_sec, o)),
        );
    }
    let _ = writeln!(
        out,
        "target: the wirecall server >= 0.80x the raw echo server at 8 x 8 and 256 x 1 (same client loop)"
    );
    out
}

fn many_json(m: &ManyFigures) -> serde_json::Value {
    let shapes: Vec<_> = m
        .shapes
        .iter()
        .map(|s| {
            json!({
                "connections": s.connections,
                "inflight_per_connection": s.per_conn,
                "raw_echo": thr_json(&s.raw),
                "wirecall_server": thr_json(&s.server),
                "wirecall_server_over_raw": ratio(s.server.calls_per_sec, s.raw.calls_per_sec),
                "wirecall": thr_json(&s.wirecall),
                "wirecall_over_raw": ratio(s.wirecall.calls_per_sec, s.raw.calls_per_sec),
                "tarpc": s.tarpc.as_ref().map(thr_json),
                "tarpc_over_raw": s.tarpc.as_ref().map(|t| ratio(t.calls_per_sec, s.raw.calls_per_sec)),
            })
        })
        .collect();
    json!({
        "transport": m.transport.name(),
        "codec": m.codec.to_string(),
        "frame_len": m.frame_len,
        "shapes": shapes,
    })
}
