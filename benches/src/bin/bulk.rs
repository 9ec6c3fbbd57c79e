//! Bulk transfer figures (issue 12, item 4): a 64 MiB `wirecall::Bulk` echo over tcp and
//! unix loopback against a raw tokio stream echo of the same bytes, measured in the same
//! run, and the peak memory of the echo server.
//!
//! Each server runs in a child process of its own (this binary with `--serve`), so its
//! memory high-water mark (`VmHWM` of `/proc/<pid>/status`, Linux) is its alone; the figure
//! reported is that mark less the process's resident size before the first echo.
//!
//! Subjects, each timed on the same payload and transport:
//!
//! - `wirecall`: `Proxy` call of `bulk_echo(data: Bulk) -> Bulk` (msgpack), both sides'
//!   `max_frame_len` raised to fit the payload;
//! - `copy`: a raw loopback stream copy of the same bytes: the server streams them back as
//!   they arrive (`tokio::io::copy`) while the client writes them (the issue's baseline);
//! - `raw`: the request/response shape on a plain stream: the client writes an 8-byte
//!   length and the payload, the server reads it all into one buffer, reused from echo to
//!   echo (so its pages are faulted in once), and writes it back.
//!
//! ```text
//! cargo run --release -p wirecall-benches --bin bulk -- [--mib 64] [--rounds 8]
//! ```

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirecall::{Bulk, CodecId, Engine, Functions, Proxy};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        let what = args.get(i + 1).map(String::as_str).unwrap_or("");
        let addr = args.get(i + 2).map(String::as_str).unwrap_or("");
        let mib: usize = flag(&args, "--mib").unwrap_or(64);
        serve(what, addr, mib << 20);
        return;
    }
    let mib: usize = flag(&args, "--mib").unwrap_or(64);
    let rounds: usize = flag(&args, "--rounds").unwrap_or(8);
    if let Err(e) = run(mib << 20, rounds) {
        eprintln!("bulk: {e}");
        std::process::exit(1);
    }
}

fn flag(args: &[String], name: &str) -> Option<usize> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

/// The frame limit both sides configure: the payload plus room for the frame around it.
fn max_frame(len: usize) -> u32 {
    u32::try_from(len + (1 << 20)).expect("the payload fits a frame (under 4 GiB)")
}

// ---- the child: one server ----

fn serve(what: &str, addr: &str, len: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let bound = match what {
            "wirecall" => {
                let engine = Engine::server(addr)
                    .accept([CodecId::MSGPACK])
                    .max_frame_len(max_frame(len))
                    .start()
                    .await
                    .expect("start the server");
                engine
                    .register_functions(
                        Functions::new("bulk").sync_fn("echo", &["data"], |(d,): (Bulk,)| d),
                        1,
                    )
                    .expect("register");
                let a = engine.address();
                // Kept alive until the parent kills this process.
                std::mem::forget(engine);
                a
            }
            "raw" | "copy" => raw_server(what == "copy", addr).await,
            other => panic!("unknown server `{other}`"),
        };
        println!("ADDR {bound}");
        std::io::stdout().flush().ok();
        std::future::pending::<()>().await;
    });
}

/// A plain stream echo server on `addr` (`tcp://host:port` or `unix://path`).
async fn raw_server(copy: bool, addr: &str) -> String {
    if let Some(path) = addr.strip_prefix("unix://") {
        let l = tokio::net::UnixListener::bind(path).expect("bind unix");
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(raw_conn(s, copy));
            }
        });
        addr.to_string()
    } else {
        let host = addr.strip_prefix("tcp://").unwrap_or(addr);
        let l = tokio::net::TcpListener::bind(host).await.expect("bind tcp");
        let bound = format!("tcp://{}", l.local_addr().expect("local addr"));
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                s.set_nodelay(true).ok();
                tokio::spawn(raw_conn(s, copy));
            }
        });
        bound
    }
}

async fn raw_conn<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: S, copy: bool) {
    let (mut rd, mut wr) = tokio::io::split(s);
    if copy {
        let _ = tokio::io::copy(&mut rd, &mut wr).await;
        return;
    }
    let mut buf = Vec::new();
    loop {
        let Ok(n) = rd.read_u64().await else { return };
        buf.resize(n as usize, 0);
        if rd.read_exact(&mut buf).await.is_err() {
            return;
        }
        if wr.write_u64(n).await.is_err() || wr.write_all(&buf).await.is_err() {
            return;
        }
    }
}

// ---- the parent: clients, timing, memory ----

struct Server {
    child: Child,
    addr: String,
    /// Resident bytes once listening, before any echo.
    base_rss: u64,
}

impl Server {
    fn start(what: &str, addr: &str, len: usize) -> Result<Server, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args(["--serve", what, addr, "--mib", &(len >> 20).to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn the {what} server: {e}"))?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let addr = line
            .trim()
            .strip_prefix("ADDR ")
            .ok_or_else(|| format!("the {what} server said `{line}`"))?
            .to_string();
        let base_rss = status_kib(child.id(), "VmRSS:")? * 1024;
        Ok(Server {
            child,
            addr,
            base_rss,
        })
    }

    /// The process's peak resident bytes above its resident size before the echoes.
    fn peak_above_base(&self) -> Result<u64, String> {
        Ok((status_kib(self.child.id(), "VmHWM:")? * 1024).saturating_sub(self.base_rss))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Minor page faults of a process so far (`/proc/<pid>/stat`, field 10).
fn minor_faults(pid: u32) -> Result<u64, String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    // Fields after the command name (which may hold spaces) start after its ')'.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    rest.split_whitespace()
        .nth(7)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "no fault count in the server's stat".into())
}

/// A `kB` field of `/proc/<pid>/status`.
fn status_kib(pid: u32, field: &str) -> Result<u64, String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading the server's memory figures (Linux only): {e}"))?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {field} in the server's status"))
}

/// Median seconds per echo over `rounds` (after one warm-up echo).
async fn time_wirecall(addr: &str, data: &Bulk, rounds: usize) -> Result<f64, String> {
    let p = Proxy::new(addr)
        .map_err(|e| e.to_string())?
        .codec(CodecId::MSGPACK)
        .receive_limits(wirecall_limits(data.len()))
        .timeout(Duration::from_secs(120));
    let mut times = Vec::new();
    for i in 0..=rounds {
        let t = Instant::now();
        let back: Bulk = p
            .call_on(1, "bulk_echo")
            .map_err(|e| e.to_string())?
            .arg(data)
            .call()
            .await
            .map_err(|e| e.to_string())?;
        let dt = t.elapsed().as_secs_f64();
        if back.len() != data.len() || back[..64] != data[..64] {
            return Err("the echo came back different".into());
        }
        if i > 0 {
            times.push(dt);
        }
    }
    Ok(median(times))
}

fn wirecall_limits(len: usize) -> wirecall_protocol::Limits {
    wirecall_protocol::Limits {
        max_frame_len: max_frame(len),
        ..Default::default()
    }
}

async fn time_raw(addr: &str, data: &[u8], rounds: usize, copy: bool) -> Result<f64, String> {
    let stream: Box<dyn RawStream> = if let Some(path) = addr.strip_prefix("unix://") {
        Box::new(
            tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| e.to_string())?,
        )
    } else {
        let s = tokio::net::TcpStream::connect(addr.strip_prefix("tcp://").unwrap_or(addr))
            .await
            .map_err(|e| e.to_string())?;
        s.set_nodelay(true).ok();
        Box::new(s)
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut back = vec![0u8; data.len()];
    let mut times = Vec::new();
    for i in 0..=rounds {
        let t = Instant::now();
        if copy {
            // Write and read at once: the server streams the bytes back as they come.
            let w = async { wr.write_all(data).await };
            let r = async { rd.read_exact(&mut back).await };
            let (w, r) = tokio::join!(w, r);
            w.map_err(|e| e.to_string())?;
            r.map_err(|e| e.to_string())?;
        } else {
            wr.write_u64(data.len() as u64)
                .await
                .map_err(|e| e.to_string())?;
            wr.write_all(data).await.map_err(|e| e.to_string())?;
            let n = rd.read_u64().await.map_err(|e| e.to_string())? as usize;
            back.resize(n, 0);
            rd.read_exact(&mut back).await.map_err(|e| e.to_string())?;
        }
        let dt = t.elapsed().as_secs_f64();
        if back[..64] != data[..64] {
            return Err("the raw echo came back different".into());
        }
        if i > 0 {
            times.push(dt);
        }
    }
    Ok(median(times))
}

trait RawStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> RawStream for T {}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn run(len: usize, rounds: usize) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31)).collect();
    let bulk = Bulk::from(data.clone());
    let mib = len as f64 / f64::from(1 << 20);
    println!(
        "{mib:.0} MiB echo, median of {rounds} rounds; server peak = its resident high-water mark above its size before the echoes"
    );
    println!(
        "| transport | wirecall Bulk echo | raw stream copy | ratio to the copy | raw store-and-forward echo | ratio to it | wirecall server peak | peak / payload |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for transport in ["tcp", "unix"] {
        let sock = std::env::temp_dir().join(format!("wirecall-bulk-{}.sock", std::process::id()));
        let addr = |what: &str| match transport {
            "tcp" => "tcp://127.0.0.1:0".to_string(),
            _ => {
                let p = sock.with_extension(format!("{what}.sock"));
                let _ = std::fs::remove_file(&p);
                format!("unix://{}", p.display())
            }
        };
        let raw = Server::start("raw", &addr("raw"), len)?;
        let copy = Server::start("copy", &addr("copy"), len)?;
        let wc = Server::start("wirecall", &addr("wirecall"), len)?;
        // Interleaved, so load from other processes falls on all subjects alike.
        let (mut t_raw, mut t_copy, mut t_wc) = (Vec::new(), Vec::new(), Vec::new());
        let faults_before = minor_faults(wc.child.id())?;
        let mut client_faults = 0u64;
        for _ in 0..3 {
            rt.block_on(async {
                t_raw.push(time_raw(&raw.addr, &data, rounds, false).await?);
                t_copy.push(time_raw(&copy.addr, &data, rounds, true).await?);
                let before = minor_faults(std::process::id())?;
                t_wc.push(time_wirecall(&wc.addr, &bulk, rounds).await?);
                client_faults += minor_faults(std::process::id())? - before;
                Ok::<_, String>(())
            })?;
        }
        let (t_raw, t_copy, t_wc) = (median(t_raw), median(t_copy), median(t_wc));
        let peak = wc.peak_above_base()?;
        // Pages the wirecall server faulted in per echo (4 KiB pages; 3 runs of rounds + 1).
        let faults =
            (minor_faults(wc.child.id())? - faults_before) as f64 / (3 * (rounds + 1)) as f64;
        let client = client_faults as f64 / (3 * (rounds + 1)) as f64;
        eprintln!(
            "{transport}: page faults per wirecall echo: server {faults:.0} ({:.1} MiB of fresh pages), client {client:.0} ({:.1} MiB)",
            faults * 4096.0 / f64::from(1 << 20),
            client * 4096.0 / f64::from(1 << 20)
        );
        let gbps = |t: f64| format!("{:.2} GB/s ({:.1} ms)", 2.0 * len as f64 / t / 1e9, t * 1e3);
        println!(
            "| {transport} | {} | {} | **{:.2}x** | {} | {:.2}x | {:.1} MiB | **{:.2}x** |",
            gbps(t_wc),
            gbps(t_copy),
            t_copy / t_wc,
            gbps(t_raw),
            t_raw / t_wc,
            peak as f64 / f64::from(1 << 20),
            peak as f64 / len as f64,
        );
        for what in ["raw", "copy", "wirecall"] {
            if transport == "unix" {
                let _ = std::fs::remove_file(sock.with_extension(format!("{what}.sock")));
            }
        }
    }
    Ok(())
}
