//! `perf --profile compression`: a 1 MiB compressible JSON payload (a list of user records)
//! echoed through a loopback server, without compression and with zstd at levels 1 and 3
//! (SPEC §6.9), in alternating rounds (off, level 1, level 3, off, ...) reported as medians,
//! so drift on a shared machine hits every side alike.
//!
//! Per call: wall time, and CPU time of the whole process (client and server both run in
//! it, so this is the CPU both ends spend on the call: encoding, compressing, moving bytes,
//! decompressing, decoding, both ways). Bytes on the wire: counted by a relay between the
//! proxy and the server, for one call of each kind, outside the timed rounds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirecall::{CodecId, Compression, Engine, Functions, Proxy};
use wirecall_transport::{Address, Listener, Stream};

/// How many alternating rounds each side gets.
const ROUNDS: usize = 5;

/// One record of the payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    id: u64,
    name: String,
    email: String,
    active: bool,
    score: f64,
    tags: Vec<String>,
}

/// About `bytes` of JSON: records as an application would send them (repeated keys,
/// similar values), so it compresses as real JSON does.
pub(crate) fn records(bytes: usize) -> Vec<Record> {
    let mut out = Vec::new();
    let mut len = 2;
    let tags = ["admin", "beta", "eu-west", "mobile", "trial", "vip"];
    while len < bytes {
        let i = out.len() as u64;
        let r = Record {
            id: 100_000 + i,
            name: format!("User {}", i * 7919 % 100_003),
            email: format!("user{}@example.org", i * 104_729 % 1_000_003),
            active: i % 3 != 0,
            score: (i * 37 % 1000) as f64 / 10.0,
            tags: (0..(i % 4))
                .map(|k| tags[((i + k) % 6) as usize].to_string())
                .collect(),
        };
        len += serde_json::to_vec(&r).map(|v| v.len() + 1).unwrap_or(0);
        out.push(r);
    }
    out
}

/// One setting measured.
#[derive(Clone, Debug)]
pub(crate) struct Mode {
    name: &'static str,
    compression: Compression,
}

fn modes() -> Vec<Mode> {
    let level = |l| {
        let mut c = Compression::zstd();
        c.level = l;
        c
    };
    vec![
        Mode {
            name: "none",
            compression: Compression::off(),
        },
        Mode {
            name: "zstd level 1",
            compression: level(1),
        },
        Mode {
            name: "zstd level 3 (default)",
            compression: level(3),
        },
    ]
}

/// The figures of one setting on one transport (medians of the rounds).
pub(crate) struct ModeFigures {
    name: &'static str,
    wall_us: f64,
    cpu_us: f64,
    bytes_up: u64,
    bytes_down: u64,
}

/// The figures of one transport.
pub(crate) struct CompressionFigures {
    transport: &'static str,
    payload_json: usize,
    modes: Vec<ModeFigures>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// CPU time of the process so far (all threads).
fn cpu_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

async fn echo(p: &Proxy, payload: &[Record]) -> Result<(), String> {
    let back: Vec<Record> = p
        .call_on(1, "bench_echo")
        .map_err(|e| e.to_string())?
        .arg(payload)
        .call()
        .await
        .map_err(|e| e.to_string())?;
    if back.len() != payload.len() || back.last() != payload.last() {
        return Err("the echo came back changed".into());
    }
    Ok(())
}

/// Calls for `budget` (at least twice); mean wall and CPU µs per call.
async fn per_call(p: &Proxy, payload: &[Record], budget: Duration) -> Result<(f64, f64), String> {
    let (start, cpu) = (Instant::now(), cpu_now());
    let mut n = 0u64;
    while start.elapsed() < budget || n < 2 {
        echo(p, payload).await?;
        n += 1;
    }
    let wall = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    let cpu = (cpu_now() - cpu).as_secs_f64() * 1e6 / n as f64;
    Ok((wall, cpu))
}

async fn pump(
    mut from: wirecall_transport::ReadHalf,
    mut to: wirecall_transport::WriteHalf,
    n: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(k) = from.read(&mut buf).await {
        if k == 0 {
            break;
        }
        n.fetch_add(k as u64, Ordering::Relaxed);
        if to.write_all(&buf[..k]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// The bytes one echo call moves up and down, counted by a relay on `listen`.
async fn wire_bytes(
    listen: &str,
    server: &str,
    mode: &Mode,
    payload: &[Record],
) -> Result<(u64, u64), String> {
    let err = |e: wirecall_transport::TransportError| e.to_string();
    let listener = Listener::bind(&listen.parse::<Address>().map_err(|e| e.to_string())?)
        .await
        .map_err(err)?;
    let relay = listener.local_addr().to_string();
    let target: Address = server.parse().map_err(|e| format!("{e}"))?;
    let (up, down) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (u, d) = (up.clone(), down.clone());
    let task = tokio::spawn(async move {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let Ok(server) = Stream::connect(&target).await else {
            return;
        };
        let (cr, cw) = client.into_split();
        let (sr, sw) = server.into_split();
        tokio::join!(pump(cr, sw, u), pump(sr, cw, d));
    });
    let proxy = Proxy::new(&relay)
        .map_err(|e| e.to_string())?
        .compression(mode.compression.clone());
    echo(&proxy, payload).await?;
    drop(proxy);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    Ok((up.load(Ordering::Relaxed), down.load(Ordering::Relaxed)))
}

/// Runs the compression figures over `transport` ("tcp" or "unix") on `rt`.
pub(crate) fn measure(
    rt: &tokio::runtime::Runtime,
    transport: &'static str,
    duration: Duration,
    progress: bool,
) -> Result<CompressionFigures, String> {
    rt.block_on(async {
        let err = |e: wirecall::Error| e.to_string();
        let dir = std::env::temp_dir();
        let pid = std::process::id();
        let sock = dir.join(format!("wirecall-zstd-{pid}.sock"));
        let relay_sock = dir.join(format!("wirecall-zstd-relay-{pid}.sock"));
        let _ = std::fs::remove_file(&sock);
        let _ = std::fs::remove_file(&relay_sock);
        let (listen, relay) = match transport {
            "unix" => (
                format!("unix://{}", sock.display()),
                format!("unix://{}", relay_sock.display()),
            ),
            _ => (
                "tcp://127.0.0.1:0".to_string(),
                "tcp://127.0.0.1:0".to_string(),
            ),
        };
        // The server's default: zstd accepted, answers compressed at level 3 from 4 KiB.
        let server = Engine::server(listen)
            .accept([CodecId::JSON])
            .start()
            .await
            .map_err(err)?;
        server
            .register_functions(
                Functions::new("bench").sync_fn("echo", &["v"], |(v,): (Vec<Record>,)| v),
                1,
            )
            .map_err(err)?;
        let payload = records(1 << 20);
        let payload_json = serde_json::to_vec(&payload).map(|v| v.len()).unwrap_or(0);
        let modes = modes();
        let mut proxies = Vec::new();
        for m in &modes {
            let p = Proxy::new(&server.address())
                .map_err(err)?
                .compression(m.compression.clone());
            echo(&p, &payload).await?;
            proxies.push(p);
        }
        if progress {
            eprintln!(
                "compression over {transport}: echo of {payload_json} bytes of JSON, {} settings...",
                modes.len()
            );
        }
        let round = duration / ROUNDS as u32;
        let mut wall = vec![Vec::new(); modes.len()];
        let mut cpu = vec![Vec::new(); modes.len()];
        for _ in 0..ROUNDS {
            for (i, p) in proxies.iter().enumerate() {
                let (w, c) = per_call(p, &payload, round).await?;
                wall[i].push(w);
                cpu[i].push(c);
            }
        }
        let mut figs = Vec::new();
        for (i, m) in modes.iter().enumerate() {
            let (up, down) = wire_bytes(&relay, &server.address(), m, &payload).await?;
            figs.push(ModeFigures {
                name: m.name,
                wall_us: median(std::mem::take(&mut wall[i])),
                cpu_us: median(std::mem::take(&mut cpu[i])),
                bytes_up: up,
                bytes_down: down,
            });
        }
        drop(proxies);
        server.finalize().await;
        let _ = std::fs::remove_file(&sock);
        let _ = std::fs::remove_file(&relay_sock);
        Ok(CompressionFigures {
            transport,
            payload_json,
            modes: figs,
        })
    })
}

/// A table of the figures, each against no compression in the same run.
pub(crate) fn table(figs: &[CompressionFigures], duration: Duration) -> String {
    let mut s = String::new();
    for f in figs {
        s += &format!(
            "echo of {} bytes of JSON (json codec) over {}, {:.1} s per setting ({ROUNDS} alternating rounds, medians); CPU = client and server together\n",
            f.payload_json,
            f.transport,
            duration.as_secs_f64()
        );
        s += "setting                 bytes up  bytes down  (vs none)  wall ms/call  (vs none)  CPU ms/call  (vs none)\n";
        let base = &f.modes[0];
        for m in &f.modes {
            s += &format!(
                "{:<22}  {:>8}  {:>10}  {:>8.3}x  {:>12.2}  {:>8.2}x  {:>11.2}  {:>8.2}x\n",
                m.name,
                m.bytes_up,
                m.bytes_down,
                (m.bytes_up + m.bytes_down) as f64 / (base.bytes_up + base.bytes_down) as f64,
                m.wall_us / 1e3,
                m.wall_us / base.wall_us,
                m.cpu_us / 1e3,
                m.cpu_us / base.cpu_us,
            );
        }
    }
    s
}

/// The figures as JSON.
pub(crate) fn to_json(figs: &[CompressionFigures]) -> serde_json::Value {
    json!(figs
        .iter()
        .map(|f| json!({
            "transport": f.transport,
            "payload_json_bytes": f.payload_json,
            "settings": f.modes.iter().map(|m| json!({
                "setting": m.name,
                "bytes_up": m.bytes_up,
                "bytes_down": m.bytes_down,
                "wall_us_per_call": m.wall_us,
                "cpu_us_per_call": m.cpu_us,
            })).collect::<Vec<_>>(),
        }))
        .collect::<Vec<_>>())
}
