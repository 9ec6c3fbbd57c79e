//! `wirecall bench load`: N clients x M calls each against a server, every reply checked
//! against what its call sent.
//!
//! Each client is its own proxy (its own connection). Every call sends a payload no other
//! call sends (`CCCCCC.MMMMMMMMM.` plus a filler derived from both numbers), so a reply is
//! classified exactly: the call's own payload (ok), another call's payload (misrouted), or
//! no call's payload (corrupt). A call whose reply never comes fails at its timeout and is
//! counted lost; every other error is counted by its message.
//!
//! The server is a `wirecall serve` child process (the same binary), not a server in this
//! process: its resident memory (VmRSS from `/proc/PID/status`) is then the server's alone,
//! not mixed with the thousand proxies and the client runtime, and it runs on its own
//! runtime threads as a deployed server does. `--connect URL` loads a running server
//! instead (with `--server-pid PID` for its memory).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use clap::Args;
use wirecall::{CodecId, Error, Proxy};
use wirecall_bench_harness::rpc::{Latency, TransportKind};

use crate::pick::select_codecs;
use crate::serve_cmds::{DEMO_ECHO, DEMO_PROVIDER_ID};

/// Arguments of `wirecall bench load`.
#[derive(Args, Debug)]
pub(crate) struct LoadArgs {
    /// Clients, each with its own proxy and connection.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    clients: usize,
    /// Calls each client makes.
    #[arg(long, default_value_t = 1000, value_name = "M")]
    calls: usize,
    /// Calls each client keeps in flight on its connection.
    #[arg(long, default_value_t = 1, value_name = "K")]
    inflight: usize,
    /// Transports to run, comma-separated, one server each (ignored with --connect).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "tcp,unix",
        value_name = "tcp,unix"
    )]
    transport: Vec<String>,
    /// Codec of the calls (the echo method decodes any value, so a self-describing one).
    #[arg(long, default_value = "msgpack", value_name = "NAME")]
    codec: String,
    /// Bytes of each call's string payload (at least 17: the call's unique tag).
    #[arg(long, default_value_t = 32, value_name = "BYTES")]
    payload: usize,
    /// A call with no reply after this many milliseconds is counted lost.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    timeout: u64,
    /// Load a running server (e.g. `wirecall serve`) instead of starting one.
    #[arg(long, value_name = "URL")]
    connect: Option<String>,
    /// With --connect: the server's process id, to report its memory.
    #[arg(long, value_name = "PID", requires = "connect")]
    server_pid: Option<u32>,
    /// Print the results as JSON (one object per transport in an array).
    #[arg(long)]
    json: bool,
}

/// The unique tag at the start of every payload: `CCCCCC.MMMMMMMMM.`.
const TAG_LEN: usize = 17;

/// The payload call `call` of client `client` sends: its tag, then a filler that depends
/// on both numbers (a reply cut short or spliced from two calls matches no call).
fn payload(client: usize, call: usize, len: usize) -> String {
    let mut s = format!("{client:06}.{call:09}.");
    let seed = client.wrapping_mul(31).wrapping_add(call.wrapping_mul(7));
    s.extend((0..len.saturating_sub(TAG_LEN)).map(|j| (b'a' + ((seed + j) % 26) as u8) as char));
    s
}

/// What a reply was.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// The call's own payload.
    Own,
    /// The payload of another call of this run.
    Misrouted,
    /// No call's payload.
    Corrupt,
}

fn classify(reply: &str, sent: &str, clients: usize, calls: usize, len: usize) -> Verdict {
    if reply == sent {
        return Verdict::Own;
    }
    let number = |s: Option<&str>, digits: usize| -> Option<usize> {
        let s = s?;
        if s.len() != digits || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let mut parts = reply.splitn(3, '.');
    match (number(parts.next(), 6), number(parts.next(), 9)) {
        (Some(c), Some(m)) if c < clients && m < calls && reply == payload(c, m, len) => {
            Verdict::Misrouted
        }
        _ => Verdict::Corrupt,
    }
}

/// What one caller task saw.
#[derive(Debug, Default)]
struct Tally {
    nanos: Vec<u64>,
    ok: u64,
    misrouted: u64,
    corrupt: u64,
    lost: u64,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.nanos.extend(other.nanos);
        self.ok += other.ok;
        self.misrouted += other.misrouted;
        self.corrupt += other.corrupt;
        self.lost += other.lost;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }

    fn errors(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Resident memory of a process, in KiB (VmRSS of `/proc/PID/status`); `None` where it
/// cannot be read.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Samples a process's resident memory every few milliseconds until stopped; keeps the
/// largest value.
struct PeakSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeakSampler {
    fn start(pid: Option<u32>) -> PeakSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let thread = pid.map(|pid| {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    if let Some(kib) = rss_kib(pid) {
                        peak.fetch_max(kib, Ordering::AcqRel);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        });
        PeakSampler { stop, peak, thread }
    }

    /// Stops sampling; the peak seen, if any.
    fn finish(mut self) -> Option<u64> {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        Some(self.peak.load(Ordering::Acquire)).filter(|p| *p > 0)
    }
}

/// The open-files limit before and after raising the soft limit to the hard one.
#[derive(Debug, Clone, Copy)]
struct FdLimit {
    before: Option<u64>,
    soft: Option<u64>,
    hard: Option<u64>,
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit (the server child inherits
/// it), and checks that `needed` descriptors fit.
#[cfg(unix)]
fn raise_fd_limit(needed: u64) -> Result<FdLimit, String> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let lim = getrlimit(Resource::Nofile);
    let before = lim.current;
    if lim.current.is_some() && lim.current != lim.maximum {
        let raised = rustix::process::Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        setrlimit(Resource::Nofile, raised).map_err(|e| {
            format!(
                "raising the open-files soft limit from {:?} to the hard limit {:?}: {e}",
                lim.current, lim.maximum
            )
        })?;
    }
    let now = getrlimit(Resource::Nofile);
    if let Some(soft) = now.current {
        if soft < needed {
            return Err(format!(
                "this run needs about {needed} open files (one per client connection in this process and in the server) but the hard limit is {soft}; raise it (`ulimit -Hn`, or LimitNOFILE in a service unit) or run fewer --clients"
            ));
        }
    }
    Ok(FdLimit {
        before,
        soft: now.current,
        hard: now.maximum,
    })
}

#[cfg(not(unix))]
fn raise_fd_limit(_needed: u64) -> Result<FdLimit, String> {
    Ok(FdLimit {
        before: None,
        soft: None,
        hard: None,
    })
}

/// A `wirecall serve` child process, stopped (SIGTERM, then killed) when dropped.
struct ServerChild {
    child: Child,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl ServerChild {
    fn start(transport: TransportKind, codec: &str) -> Result<ServerChild, String> {
        let (listen, dir) = match transport {
            TransportKind::Tcp => ("tcp://127.0.0.1:0".to_string(), None),
            TransportKind::Unix => {
                let dir = tempfile::Builder::new()
                    .prefix("wirecall-load")
                    .tempdir()
                    .map_err(|e| format!("creating a directory for the unix socket: {e}"))?;
                let url = format!("unix://{}", dir.path().join("load.sock").display());
                (url, Some(dir))
            }
        };
        let exe = std::env::current_exe()
            .map_err(|e| format!("finding the wirecall binary to start the server: {e}"))?;
        let mut child = Command::new(exe)
            .args(["serve", "--listen", &listen, "--accept", codec])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting `wirecall serve`: {e}"))?;
        let stdout = child.stdout.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            if let Some(out) = stdout {
                let _ = BufReader::new(out).read_line(&mut line);
            }
            let _ = tx.send(line);
        });
        let mut server = ServerChild {
            child,
            url: String::new(),
            _dir: dir,
        };
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if !line.trim().is_empty() => {
                server.url = line
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                Ok(server)
            }
            _ => Err(format!(
                "`wirecall serve --listen {listen}` printed no address within 20 s"
            )),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks the server to finalize (SIGTERM) and waits up to `limit`; kills it after that.
    /// Whether it exited by itself with success.
    fn stop(&mut self, limit: Duration) -> bool {
        #[cfg(unix)]
        {
            if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let end = Instant::now() + limit;
            while Instant::now() < end {
                match self.child.try_wait() {
                    Ok(Some(status)) => return status.success(),
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                    Err(_) => break,
                }
            }
        }
        let _ = limit;
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The figures of one run.
#[derive(Debug)]
struct Outcome {
    transport: &'static str,
    clients: usize,
    calls: u64,
    wall: Duration,
    tally: Tally,
    latency: Latency,
    max: Duration,
    /// Server VmRSS in KiB: before any client, with every client connected (before the
    /// calls), the peak during the calls, and after them with the connections still open.
    rss: [Option<u64>; 4],
    /// `Some(true)` when the server child finalized and exited cleanly after the run.
    clean_exit: Option<bool>,
}

impl Outcome {
    fn answered(&self) -> u64 {
        self.tally.ok + self.tally.misrouted + self.tally.corrupt
    }

    fn calls_per_sec(&self) -> f64 {
        self.answered() as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Growth over the memory before any client, per connection, in KiB.
    fn per_conn(&self, i: usize) -> Option<f64> {
        let (before, at) = (self.rss[0]?, self.rss[i]?);
        Some((at as f64 - before as f64) / self.clients.max(1) as f64)
    }

    fn failed(&self) -> bool {
        self.tally.lost + self.tally.misrouted + self.tally.corrupt + self.tally.errors() > 0
            || self.answered() + self.tally.lost + self.tally.errors() != self.calls
    }
}

struct Plan {
    clients: usize,
    calls: usize,
    inflight: usize,
    payload: usize,
    codec: CodecId,
    timeout: Duration,
}

/// Clients connected at once while opening the connections (keeps under the accept
/// backlog).
const CONNECT_WAVE: usize = 100;

async fn load(plan: &Plan, url: &str, pid: Option<u32>) -> Result<Outcome, String> {
    let rss_before = pid.and_then(rss_kib);
    // Open every connection first, in waves.
    let mut proxies = Vec::with_capacity(plan.clients);
    for wave in (0..plan.clients).collect::<Vec<_>>().chunks(CONNECT_WAVE) {
        let mut set = tokio::task::JoinSet::new();
        for &c in wave {
            let proxy = Proxy::new(url)
                .map_err(|e| format!("{url}: {e}"))?
                .codec(plan.codec)
                .timeout(plan.timeout);
            set.spawn(async move { (c, proxy.connect().await.map(|()| proxy)) });
        }
        let mut failed = None;
        while let Some(r) = set.join_next().await {
            match r {
                Ok((c, Ok(p))) => proxies.push((c, p)),
                Ok((c, Err(e))) => {
                    failed.get_or_insert_with(|| {
                        format!("connecting client {} to {url}: {e}", c + 1)
                    });
                }
                Err(e) => {
                    failed.get_or_insert_with(|| format!("a connecting task failed: {e}"));
                }
            }
        }
        if let Some(f) = failed {
            return Err(format!(
                "{f} ({} of {} clients connected)",
                proxies.len(),
                plan.clients
            ));
        }
    }
    proxies.sort_by_key(|(c, _)| *c);
    // Let the server settle (its handshakes done) before reading its memory.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_connected = pid.and_then(rss_kib);

    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let mut set = tokio::task::JoinSet::new();
    for (c, proxy) in &proxies {
        for lane in 0..plan.inflight {
            let proxy = proxy.clone();
            let mut go = go_rx.clone();
            let (c, clients, calls, len) = (*c, plan.clients, plan.calls, plan.payload);
            let lanes = plan.inflight;
            set.spawn(async move {
                let _ = go.wait_for(|g| *g).await;
                let mut t = Tally {
                    nanos: Vec::with_capacity(calls / lanes + 1),
                    ..Tally::default()
                };
                for m in (lane..calls).step_by(lanes) {
                    let sent = payload(c, m, len);
                    let start = Instant::now();
                    let r: Result<String, Error> = match proxy.call_on(DEMO_PROVIDER_ID, DEMO_ECHO)
                    {
                        Ok(b) => b.arg(&sent).call().await,
                        Err(e) => Err(e),
                    };
                    let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    match r {
                        Ok(reply) => {
                            t.nanos.push(ns);
                            match classify(&reply, &sent, clients, calls, len) {
                                Verdict::Own => t.ok += 1,
                                Verdict::Misrouted => t.misrouted += 1,
                                Verdict::Corrupt => t.corrupt += 1,
                            }
                        }
                        Err(e) if e.is_timeout() => t.lost += 1,
                        Err(e) => *t.errors.entry(e.to_string()).or_default() += 1,
                    }
                }
                t
            });
        }
    }
    let sampler = PeakSampler::start(pid);
    let started = Instant::now();
    go_tx.send_replace(true);
    let mut tally = Tally::default();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(t) => tally.merge(t),
            Err(e) => {
                *tally
                    .errors
                    .entry(format!("a caller task failed: {e}"))
                    .or_default() += 1
            }
        }
    }
    let wall = started.elapsed();
    let peak = sampler.finish();
    let rss_after = pid.and_then(rss_kib);
    drop(proxies);
    let max = Duration::from_nanos(tally.nanos.iter().copied().max().unwrap_or(0));
    let latency = Latency::from_nanos(&mut tally.nanos);
    // The peak is at least what was read at the other points.
    let peak = [peak, rss_connected, rss_after].into_iter().flatten().max();
    Ok(Outcome {
        transport: TransportKind::of_uri(url).name(),
        clients: plan.clients,
        calls: (plan.clients * plan.calls) as u64,
        wall,
        tally,
        latency,
        max,
        rss: [rss_before, rss_connected, peak, rss_after],
        clean_exit: None,
    })
}

fn kib(k: Option<u64>) -> String {
    k.map_or_else(|| "-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn per_conn(k: Option<f64>) -> String {
    k.map_or_else(|| "-".into(), |k| format!("{k:+.1} KiB"))
}

fn render(plan: &Plan, codec: &str, limit: FdLimit, server: &str, rows: &[Outcome]) -> String {
    let mut out = format!(
        "wirecall bench load: {} clients x {} calls ({} in flight per client, {} calls per transport), {codec}, a unique {}-byte string per call echoed and checked; server: {server}\n",
        plan.clients,
        plan.calls,
        plan.inflight,
        plan.clients * plan.calls,
        plan.payload
    );
    let lim = |v: Option<u64>| v.map_or_else(|| "unlimited".to_string(), |v| v.to_string());
    out.push_str(&format!(
        "open files: soft limit {} (was {}), hard {}\n",
        lim(limit.soft),
        lim(limit.before),
        lim(limit.hard)
    ));
    out.push_str(&format!(
        "{:<9} {:>9} {:>7} {:>9} {:>9} {:>9} {:>8} {:>5} {:>9} {:>7} {:>6}\n",
        "transport",
        "calls",
        "wall s",
        "calls/s",
        "p50 us",
        "p99 us",
        "max ms",
        "lost",
        "misrouted",
        "corrupt",
        "errors"
    ));
    for o in rows {
        out.push_str(&format!(
            "{:<9} {:>9} {:>7.2} {:>9.0} {:>9.1} {:>9.1} {:>8.1} {:>5} {:>9} {:>7} {:>6}\n",
            o.transport,
            o.calls,
            o.wall.as_secs_f64(),
            o.calls_per_sec(),
            o.latency.p50.as_secs_f64() * 1e6,
            o.latency.p99.as_secs_f64() * 1e6,
            o.max.as_secs_f64() * 1e3,
            o.tally.lost,
            o.tally.misrouted,
            o.tally.corrupt,
            o.tally.errors(),
        ));
    }
    for o in rows {
        out.push_str(&format!(
            "{} server memory (VmRSS): {} before the clients; per connection {} connected, {} at the peak of the calls, {} after them (connections open){}\n",
            o.transport,
            kib(o.rss[0]),
            per_conn(o.per_conn(1)),
            per_conn(o.per_conn(2)),
            per_conn(o.per_conn(3)),
            match o.clean_exit {
                Some(true) => "; the server finalized and exited cleanly",
                Some(false) => "; the server did NOT exit cleanly on SIGTERM",
                None => "",
            }
        ));
        for (msg, n) in &o.tally.errors {
            out.push_str(&format!("  {} error x{n}: {msg}\n", o.transport));
        }
    }
    out
}

fn to_json(o: &Outcome) -> serde_json::Value {
    serde_json::json!({
        "transport": o.transport,
        "clients": o.clients,
        "calls": o.calls,
        "answered": o.answered(),
        "ok": o.tally.ok,
        "lost": o.tally.lost,
        "misrouted": o.tally.misrouted,
        "corrupt": o.tally.corrupt,
        "errors": o.tally.errors(),
        "error_messages": o.tally.errors,
        "wall_s": o.wall.as_secs_f64(),
        "calls_per_sec": o.calls_per_sec(),
        "p50_us": o.latency.p50.as_secs_f64() * 1e6,
        "p99_us": o.latency.p99.as_secs_f64() * 1e6,
        "max_us": o.max.as_secs_f64() * 1e6,
        "rss_before_kib": o.rss[0],
        "rss_connected_kib": o.rss[1],
        "rss_peak_kib": o.rss[2],
        "rss_after_kib": o.rss[3],
        "rss_peak_per_conn_kib": o.per_conn(2),
        "rss_connected_per_conn_kib": o.per_conn(1),
        "server_clean_exit": o.clean_exit,
    })
}

/// Runs `wirecall bench load`.
pub(crate) fn run(args: &LoadArgs) -> Result<ExitCode, String> {
    if args.clients == 0 || args.calls == 0 || args.inflight == 0 {
        return Err("--clients, --calls and --inflight must be at least 1".into());
    }
    if args.clients > 999_999 || args.calls > 999_999_999 {
        return Err(
            "at most 999999 --clients and 999999999 --calls (the payload tag's digits)".into(),
        );
    }
    if args.payload < TAG_LEN {
        return Err(format!(
            "--payload must be at least {TAG_LEN} bytes (the call's unique tag)"
        ));
    }
    let codec = select_codecs(std::slice::from_ref(&args.codec))?
        .into_iter()
        .next()
        .ok_or("give a codec with --codec")?;
    let plan = Plan {
        clients: args.clients,
        calls: args.calls,
        inflight: args.inflight,
        payload: args.payload,
        codec: codec.id,
        timeout: Duration::from_millis(args.timeout),
    };
    // Both ends' connections live in this process and the server child (which inherits
    // the limit), plus a margin for the runtimes, pipes and libraries.
    let limit = raise_fd_limit(args.clients as u64 + 64)?;
    let rt = wirecall_bench_harness::rpc::runtime()?;
    let mut rows = Vec::new();
    let server;
    if let Some(url) = &args.connect {
        server = match args.server_pid {
            Some(pid) => format!("{url} (pid {pid})"),
            None => format!("{url} (no --server-pid: memory not measured)"),
        };
        rows.push(rt.block_on(load(&plan, url, args.server_pid))?);
    } else {
        server = "a `wirecall serve` child process per transport".into();
        for t in &args.transport {
            let kind = TransportKind::parse(t)?;
            let mut child = ServerChild::start(kind, codec.name)?;
            let mut o = rt.block_on(load(&plan, &child.url, Some(child.pid())))?;
            o.clean_exit = Some(child.stop(Duration::from_secs(15)));
            rows.push(o);
        }
    }
    if args.json {
        let arr: Vec<serde_json::Value> = rows.iter().map(to_json).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&arr).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", render(&plan, codec.name, limit, &server, &rows));
    }
    let bad: Vec<String> = rows
        .iter()
        .filter(|o| o.failed() || o.clean_exit == Some(false))
        .map(|o| {
            format!(
                "{}: {} lost, {} misrouted, {} corrupt, {} errors{}",
                o.transport,
                o.tally.lost,
                o.tally.misrouted,
                o.tally.corrupt,
                o.tally.errors(),
                if o.clean_exit == Some(false) {
                    ", server did not exit cleanly"
                } else {
                    ""
                }
            )
        })
        .collect();
    if bad.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(format!("calls went wrong: {}", bad.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_unique_and_of_the_asked_length() {
        let a = payload(1, 2, 32);
        assert_eq!(a.len(), 32);
        assert!(a.starts_with("000001.000000002."), "{a}");
        assert_ne!(a, payload(2, 1, 32));
        assert_ne!(a, payload(1, 3, 32));
        assert_eq!(payload(7, 8, 17), "000007.000000008.");
    }

    #[test]
    fn replies_are_classified_own_misrouted_or_corrupt() {
        let sent = payload(3, 4, 40);
        assert_eq!(classify(&sent, &sent, 10, 10, 40), Verdict::Own);
        // Another call's payload, of this run.
        let other = payload(4, 3, 40);
        assert_eq!(classify(&other, &sent, 10, 10, 40), Verdict::Misrouted);
        // A tag outside the run, a truncated reply, a spliced filler, garbage.
        assert_eq!(
            classify(&payload(11, 3, 40), &sent, 10, 10, 40),
            Verdict::Corrupt
        );
        assert_eq!(classify(&sent[..39], &sent, 10, 10, 40), Verdict::Corrupt);
        let spliced = format!("{}{}", &other[..TAG_LEN], &sent[TAG_LEN..]);
        assert_eq!(classify(&spliced, &sent, 10, 10, 40), Verdict::Corrupt);
        assert_eq!(classify("hello", &sent, 10, 10, 40), Verdict::Corrupt);
    }

    #[test]
    fn rss_of_this_process_is_read() {
        if cfg!(target_os = "linux") {
            let k = rss_kib(std::process::id()).expect("VmRSS of this process");
            assert!(k > 100, "{k} KiB");
        }
        assert_eq!(rss_kib(u32::MAX), None);
    }
}
