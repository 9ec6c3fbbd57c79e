//! End-to-end RPC measurement shared by the `perf` binary, `wirecall bench rpc` and the RPC
//! stage of `wirecall pick`: round-trip latency (p50/p99, one call in flight) and throughput
//! (calls/s with many calls in flight) of a small echo call through the engine, beside the
//! raw socket baselines of [`crate::raw`] measured in the same run: the ping-pong of a
//! wirecall echo CALL frame's worth of bytes over the same transport (the physical limit of
//! a round trip) and, for many connections, a raw echo server of frames of the same size.
//!
//! Peer RPC crates (tarpc) are not here: they live in `wirecall-benches`, beside the `perf`
//! binary, so that the `wirecall` command line, which uses this module, does not build them.
//!
//! The async functions run on the caller's tokio runtime; [`measure_rpc`] builds its own
//! runtime and is what synchronous callers (the CLI) use.
//!
//! ```no_run
//! use std::time::Duration;
//! use wirecall_bench_harness::rpc::{self, RpcOptions, TransportKind};
//! use wirecall_codecs::CodecId;
//!
//! let opts = RpcOptions::new(TransportKind::Tcp, vec![CodecId::POSTCARD])
//!     .duration(Duration::from_millis(300));
//! let report = rpc::measure_rpc(&opts).unwrap();
//! for row in &report.rows {
//!     println!("{}: p50 {:?} ({:.2}x raw)", row.codec, row.latency.p50,
//!         row.latency.p50.as_secs_f64() / report.raw.p50.as_secs_f64());
//! }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use wirecall::{Engine, Proxy};
use wirecall_codecs::CodecId;

use crate::raw::RawSession;

/// Why a measurement failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum BenchError {
    /// A wirecall server or call failed.
    Wirecall(wirecall::Error),
    /// A socket of a baseline failed.
    Io(std::io::Error),
    /// Anything else: a subject answered something other than the echo, a task panicked,
    /// nothing to call.
    Other(String),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Wirecall(e) => e.fmt(f),
            BenchError::Io(e) => e.fmt(f),
            BenchError::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for BenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BenchError::Wirecall(e) => Some(e),
            BenchError::Io(e) => Some(e),
            BenchError::Other(_) => None,
        }
    }
}

impl From<wirecall::Error> for BenchError {
    fn from(e: wirecall::Error) -> BenchError {
        BenchError::Wirecall(e)
    }
}

impl From<std::io::Error> for BenchError {
    fn from(e: std::io::Error) -> BenchError {
        BenchError::Io(e)
    }
}

/// The payload of the echo call every measurement makes: a 32-byte string.
pub const ECHO_PAYLOAD: &str = "wirecall echo payload, 32 bytes!";

/// The provider id the benchmark server registers [`BenchEcho`] under.
pub const BENCH_PROVIDER_ID: u16 = 1;

/// The RPC name of [`BenchEcho`]'s echo method.
pub const BENCH_ECHO: &str = "bench_echo";

/// The benchmark provider: one echo method taking and returning a string.
#[derive(Debug, Default, Clone, Copy)]
pub struct BenchEcho;

#[wirecall::provider(service = "bench")]
impl BenchEcho {
    /// Returns its argument.
    #[remote]
    fn echo(&self, payload: String) -> String {
        payload
    }
}

/// The socket family a measurement runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// Loopback TCP (127.0.0.1) with `TCP_NODELAY`.
    Tcp,
    /// A unix domain socket in a temporary directory.
    Unix,
}

impl TransportKind {
    /// Both transports, tcp first.
    pub const ALL: [TransportKind; 2] = [TransportKind::Tcp, TransportKind::Unix];

    /// `"tcp"` or `"unix"`.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Tcp => "tcp",
            TransportKind::Unix => "unix",
        }
    }

    /// Parses `"tcp"` or `"unix"` (case-insensitive).
    pub fn parse(s: &str) -> Result<TransportKind, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tcp" => Ok(TransportKind::Tcp),
            "unix" | "uds" => Ok(TransportKind::Unix),
            other => Err(format!("unknown transport `{other}`; use tcp or unix")),
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Round-trip latency over one measurement, one call in flight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Median round trip.
    pub p50: Duration,
    /// 99th percentile round trip.
    pub p99: Duration,
    /// Round trips timed.
    pub samples: usize,
}

impl Latency {
    /// p50 and p99 of `nanos` (sorted in place); zero for no samples.
    pub fn from_nanos(nanos: &mut [u64]) -> Latency {
        nanos.sort_unstable();
        let pick = |q: f64| -> Duration {
            if nanos.is_empty() {
                return Duration::ZERO;
            }
            let i = ((nanos.len() - 1) as f64 * q).round() as usize;
            Duration::from_nanos(nanos.get(i).copied().unwrap_or_default())
        };
        Latency {
            p50: pick(0.50),
            p99: pick(0.99),
            samples: nanos.len(),
        }
    }
}

/// Calls completed per second over one measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// Completed calls per second.
    pub calls_per_sec: f64,
    /// Completed calls.
    pub calls: u64,
    /// Calls in flight at once, over all connections.
    pub inflight: usize,
    /// Connections used.
    pub connections: usize,
}

/// A server to call: its URI, and the provider id and RPC name of an echo method taking
/// one string and returning it (as [`BenchEcho`], or the demo provider of `wirecall serve`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The server's address (`tcp://127.0.0.1:4000`, `unix:///run/x.sock`).
    pub uri: String,
    /// The provider id of the echo method.
    pub provider_id: u16,
    /// The full RPC name of the echo method.
    pub method: String,
}

/// A benchmark server started in this process: a wirecall [`Engine`] serving [`BenchEcho`]
/// over one transport, accepting every built-in codec. Finalize it with
/// [`BenchServer::finalize`]; the temporary directory of a unix socket goes with it.
#[derive(Debug)]
pub struct BenchServer {
    /// The running engine.
    pub engine: Engine,
    /// Where to reach [`BenchEcho`].
    pub target: Target,
    _dir: Option<tempfile::TempDir>,
}

impl BenchServer {
    /// Starts a server on 127.0.0.1 port 0 (tcp) or a socket in a fresh temporary directory
    /// (unix). Must run inside a tokio runtime.
    pub async fn start(transport: TransportKind) -> Result<BenchServer, BenchError> {
        let (address, dir) = match transport {
            TransportKind::Tcp => ("tcp://127.0.0.1:0".to_string(), None),
            TransportKind::Unix => {
                let dir = temp_dir().map_err(|e| {
                    BenchError::Other(format!(
                        "creating a temporary directory for a unix socket: {e}"
                    ))
                })?;
                let path = dir.path().join("bench.sock");
                (format!("unix://{}", path.display()), Some(dir))
            }
        };
        let engine = Engine::server(address).start().await?;
        engine.register_provider(BenchEcho, BENCH_PROVIDER_ID)?;
        let target = Target {
            uri: engine.address(),
            provider_id: BENCH_PROVIDER_ID,
            method: BENCH_ECHO.to_string(),
        };
        Ok(BenchServer {
            engine,
            target,
            _dir: dir,
        })
    }

    /// Stops the server.
    pub async fn finalize(self) {
        self.engine.finalize().await;
    }
}

pub(crate) fn temp_dir() -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new().prefix("wirecall-bench").tempdir()
}

/// One echo call through `proxy`, checking the reply.
async fn echo_once(proxy: &Proxy, target: &Target, payload: &str) -> Result<(), BenchError> {
    let reply: String = proxy
        .call_on(target.provider_id, &target.method)?
        .arg(payload)
        .call()
        .await?;
    if reply.len() != payload.len() {
        return Err(BenchError::Other(format!(
            "`{}` answered {} bytes for a {}-byte echo; is it an echo method?",
            target.method,
            reply.len(),
            payload.len()
        )));
    }
    Ok(())
}

/// A proxy for `target` with `codec`, connected (so connecting is never timed).
pub async fn connect(target: &Target, codec: CodecId) -> Result<Proxy, BenchError> {
    let proxy = Proxy::new(&target.uri)?.codec(codec);
    proxy.connect().await?;
    Ok(proxy)
}

/// Times echo calls through `proxy`, one in flight, for about `duration`, appending each
/// round trip in nanoseconds to `out` (no warm-up: see [`warm_up_calls`]).
pub async fn latency_sample(
    proxy: &Proxy,
    target: &Target,
    duration: Duration,
    out: &mut Vec<u64>,
) -> Result<(), BenchError> {
    let end = Instant::now() + duration;
    loop {
        let t = Instant::now();
        echo_once(proxy, target, ECHO_PAYLOAD).await?;
        out.push(elapsed_ns(t));
        if t >= end {
            return Ok(());
        }
    }
}

/// Makes echo calls through `proxy` for [`warm_up_time`]`(duration)`: connections,
/// allocations and caches settle before timing.
pub async fn warm_up_calls(
    proxy: &Proxy,
    target: &Target,
    duration: Duration,
) -> Result<(), BenchError> {
    let end = Instant::now() + warm_up_time(duration);
    while Instant::now() < end {
        echo_once(proxy, target, ECHO_PAYLOAD).await?;
    }
    Ok(())
}

/// The warm-up before a measurement of `duration`: a tenth of it, within 20-500 ms.
pub fn warm_up_time(duration: Duration) -> Duration {
    (duration / 10).clamp(Duration::from_millis(20), Duration::from_millis(500))
}

/// Round-trip latency of the echo call, one in flight, for about `duration` after a short
/// warm-up.
pub async fn latency(
    target: &Target,
    codec: CodecId,
    duration: Duration,
) -> Result<Latency, BenchError> {
    let proxy = connect(target, codec).await?;
    warm_up_calls(&proxy, target, duration).await?;
    let mut nanos = Vec::with_capacity(4096);
    latency_sample(&proxy, target, duration, &mut nanos).await?;
    Ok(Latency::from_nanos(&mut nanos))
}

pub(crate) fn elapsed_ns(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Connected proxies for a throughput figure: `connections` of them, each its own
/// connection.
pub async fn connect_many(
    target: &Target,
    codec: CodecId,
    connections: usize,
) -> Result<Vec<Proxy>, BenchError> {
    let mut proxies = Vec::with_capacity(connections.max(1));
    for _ in 0..connections.max(1) {
        proxies.push(connect(target, codec).await?);
    }
    Ok(proxies)
}

/// Completed calls and the time they took.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Count {
    /// Calls completed.
    pub calls: u64,
    /// Time counted.
    pub elapsed: Duration,
}

impl Count {
    /// Adds another slice.
    pub fn add(&mut self, other: Count) {
        self.calls += other.calls;
        self.elapsed += other.elapsed;
    }

    /// As a throughput figure.
    pub fn throughput(&self, inflight: usize, connections: usize) -> Throughput {
        Throughput {
            calls_per_sec: self.calls as f64 / self.elapsed.as_secs_f64().max(1e-9),
            calls: self.calls,
            inflight,
            connections,
        }
    }
}

/// Echo calls with `inflight` calls in flight spread over `proxies` (round robin), counted
/// for `duration` after `warm` uncounted.
pub async fn throughput_sample(
    proxies: &[Proxy],
    target: &Target,
    inflight: usize,
    duration: Duration,
    warm: Duration,
) -> Result<Count, BenchError> {
    if proxies.is_empty() {
        return Err(BenchError::Other("no connection to call through".into()));
    }
    run_workers(inflight.max(1), duration, warm, |w, gate| {
        let proxy = proxies[w % proxies.len()].clone();
        let target = target.clone();
        gate.repeat(async move || echo_once(&proxy, &target, ECHO_PAYLOAD).await)
    })
    .await
}

/// Echo calls per second with `inflight` calls in flight spread over `connections`
/// connections (each its own proxy), for about `duration` after a warm-up. Must run inside
/// a multi-thread tokio runtime.
pub async fn throughput(
    target: &Target,
    codec: CodecId,
    connections: usize,
    inflight: usize,
    duration: Duration,
) -> Result<Throughput, BenchError> {
    let connections = connections.max(1);
    let inflight = inflight.max(connections);
    let proxies = connect_many(target, codec, connections).await?;
    let c = throughput_sample(&proxies, target, inflight, duration, warm_up_time(duration)).await?;
    Ok(c.throughput(inflight, connections))
}

/// When the workers of [`run_workers`] count their calls: read by every worker after each
/// call, written only by the timer, so it costs no cross-core traffic while it stands still.
#[derive(Debug, Default)]
pub struct Gate(AtomicU8);

const WARMING: u8 = 0;
const COUNTING: u8 = 1;
const STOPPED: u8 = 2;

impl Gate {
    /// Adds `calls` just completed to `n` while the gate is counting (not while warming
    /// up); false once the run is over.
    pub fn record(&self, n: &mut u64, calls: u64) -> bool {
        match self.0.load(Ordering::Relaxed) {
            WARMING => true,
            COUNTING => {
                *n += calls;
                true
            }
            _ => false,
        }
    }

    /// Makes `call` again and again until the run is over; returns how many finished while
    /// counting, or the first error.
    pub async fn repeat(
        self: Arc<Self>,
        mut call: impl AsyncFnMut() -> Result<(), BenchError>,
    ) -> Result<u64, BenchError> {
        let mut n = 0;
        loop {
            call().await?;
            if !self.record(&mut n, 1) {
                return Ok(n);
            }
        }
    }
}

/// Spawns `workers` tasks, each running `make(worker, gate)`: a loop of calls, made with
/// [`Gate::repeat`] (or counted with [`Gate::record`]), that returns its count when the run
/// is over. Warms up for `warm`, then counts for `duration`.
///
/// Each worker keeps its own state (its proxy clone, its counter), so the harness adds no
/// shared atomic operation per call: a shared counter or a proxy clone per call would put
/// cache lines that both runtime workers write on every call's path, and slow the subject
/// with work that is not its own.
pub async fn run_workers<M, Fut>(
    workers: usize,
    duration: Duration,
    warm: Duration,
    make: M,
) -> Result<Count, BenchError>
where
    M: Fn(usize, Arc<Gate>) -> Fut,
    Fut: std::future::Future<Output = Result<u64, BenchError>> + Send + 'static,
{
    let gate = Arc::new(Gate::default());
    let tasks: Vec<_> = (0..workers)
        .map(|w| tokio::spawn(make(w, gate.clone())))
        .collect();
    if !warm.is_zero() {
        tokio::time::sleep(warm).await;
    }
    gate.0.store(COUNTING, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(duration).await;
    gate.0.store(STOPPED, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let mut done = 0;
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(Ok(n)) => done += n,
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(BenchError::Other(format!("a benchmark task failed: {e}")));
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok(Count {
        calls: done,
        elapsed,
    })
}

/// The encoded length of the CALL frame an echo call of [`ECHO_PAYLOAD`] makes with
/// `codec` to `method` (no annotations, no keywords): what the raw ping-pong sends.
pub fn echo_frame_len(codec: CodecId, method: &str) -> usize {
    echo_call_frame(codec, method).len()
}

/// The CALL frame an echo call of [`ECHO_PAYLOAD`] makes with `codec` to `method` of
/// [`BENCH_PROVIDER_ID`] (request id 1, no annotations, no keywords), as the engine encodes
/// it: what the pipelined clients of [`crate::raw`] send.
pub fn echo_call_frame(codec: CodecId, method: &str) -> Vec<u8> {
    use wirecall_protocol as proto;
    let mut args = Vec::with_capacity(64);
    // The engine encodes the positional arguments as one sequence.
    if wirecall_codecs::encode_into(codec, &[ECHO_PAYLOAD][..], &mut args).is_err() {
        args = ECHO_PAYLOAD.as_bytes().to_vec();
    }
    // A method name the protocol refuses is sent as a placeholder of the same length.
    let method = proto::Method::new(Bytes::copy_from_slice(method.as_bytes()))
        .or_else(|_| proto::Method::new(Bytes::from(vec![b'm'; method.len().clamp(1, 65535)])))
        .expect("a non-empty ASCII method name");
    let frame = proto::Frame::Call(proto::Call {
        request_id: proto::RequestId(1),
        provider: proto::ProviderId(BENCH_PROVIDER_ID),
        codec: proto::CodecId(codec.get()),
        oneway: false,
        upload: false,
        method,
        annotations: proto::Annotations::new(),
        args: Bytes::from(args),
        kwargs: Bytes::new(),
        attachment: Bytes::new(),
    });
    let mut b = BytesMut::new();
    frame
        .encode(&mut b)
        .expect("an echo CALL within the protocol's limits");
    b.to_vec()
}

/// What [`measure_rpc`] measures.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcOptions {
    /// The transport (for a started server, and the raw baseline).
    pub transport: TransportKind,
    /// The codecs to measure, one row each.
    pub codecs: Vec<CodecId>,
    /// Calls in flight for the throughput figure (on `connections` connections).
    pub inflight: usize,
    /// Connections for the throughput figure.
    pub connections: usize,
    /// Time per measurement (each latency, each throughput, the baseline).
    pub duration: Duration,
    /// Call this running server instead of starting one (its echo method must take and
    /// return one string).
    pub connect: Option<Target>,
}

impl RpcOptions {
    /// Defaults: 64 in flight on one connection, 1 s per measurement, a server started here.
    pub fn new(transport: TransportKind, codecs: Vec<CodecId>) -> RpcOptions {
        RpcOptions {
            transport,
            codecs,
            inflight: 64,
            connections: 1,
            duration: Duration::from_secs(1),
            connect: None,
        }
    }

    /// Sets the time per measurement.
    #[must_use]
    pub fn duration(mut self, duration: Duration) -> RpcOptions {
        self.duration = duration;
        self
    }

    /// Sets the calls in flight for the throughput figure.
    #[must_use]
    pub fn inflight(mut self, inflight: usize) -> RpcOptions {
        self.inflight = inflight.max(1);
        self
    }

    /// Sets the connections for the throughput figure.
    #[must_use]
    pub fn connections(mut self, connections: usize) -> RpcOptions {
        self.connections = connections.max(1);
        self
    }

    /// Calls a running server instead of starting one.
    #[must_use]
    pub fn connect(mut self, target: Target) -> RpcOptions {
        self.connect = Some(target);
        self
    }
}

/// One codec's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct CodecRpc {
    /// The codec.
    pub codec: CodecId,
    /// The echo CALL frame's length with this codec.
    pub frame_len: usize,
    /// Latency, one call in flight.
    pub latency: Latency,
    /// Throughput with the options' in-flight count and connections.
    pub throughput: Throughput,
}

/// What [`measure_rpc`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcReport {
    /// The transport measured.
    pub transport: TransportKind,
    /// Where the calls went (the started server's address, or the `connect` target's).
    pub server: String,
    /// True when the server was the caller's (`connect`), not one started here.
    pub external: bool,
    /// The raw socket ping-pong of the first codec's frame length, same transport, local.
    pub raw: Latency,
    /// The byte count the raw ping-pong sent each way.
    pub raw_len: usize,
    /// One row per codec, in the options' order.
    pub rows: Vec<CodecRpc>,
}

/// How many interleaved rounds a measurement of `duration` is split into: slices of about
/// 100 ms (at most 10 rounds), so every subject sees the same background load.
pub fn rounds_for(duration: Duration) -> u32 {
    (duration.as_millis() / 100).clamp(1, 10) as u32
}

/// Measures every codec of `opts` and the raw ping-pong baseline on a runtime of its own
/// (two worker threads). The subjects are interleaved: each round gives the baseline, then
/// each codec's latency and throughput, a slice of `duration`, so a burst of load elsewhere
/// on the machine hits them alike and the ratios hold. Returns a message naming what
/// failed.
pub fn measure_rpc(opts: &RpcOptions) -> Result<RpcReport, String> {
    if opts.codecs.is_empty() {
        return Err("no codec to measure; name at least one".into());
    }
    let rt = runtime()?;
    let first = opts.codecs.first().copied().unwrap_or(CodecId::POSTCARD);
    let method = opts
        .connect
        .as_ref()
        .map_or(BENCH_ECHO, |t| t.method.as_str())
        .to_string();
    let raw_len = echo_frame_len(first, &method);
    let mut raw = RawSession::start(opts.transport, raw_len)
        .map_err(|e| format!("raw {} ping-pong baseline: {e}", opts.transport))?;
    let started = match &opts.connect {
        Some(_) => None,
        None => Some(
            rt.block_on(BenchServer::start(opts.transport))
                .map_err(|e| format!("starting the benchmark server: {e}"))?,
        ),
    };
    let target = match (&opts.connect, &started) {
        (Some(t), _) => t.clone(),
        (None, Some(s)) => s.target.clone(),
        (None, None) => return Err("no server to call".to_string()),
    };
    let result = measure_interleaved(&rt, opts, &target, &mut raw);
    if let Some(s) = started {
        rt.block_on(s.finalize());
    }
    let (raw_nanos, rows) = result?;
    let mut raw_nanos = raw_nanos;
    Ok(RpcReport {
        transport: opts.transport,
        server: target.uri.clone(),
        external: opts.connect.is_some(),
        raw: Latency::from_nanos(&mut raw_nanos),
        raw_len,
        rows,
    })
}

type Interleaved = (Vec<u64>, Vec<CodecRpc>);

fn measure_interleaved(
    rt: &tokio::runtime::Runtime,
    opts: &RpcOptions,
    target: &Target,
    raw: &mut RawSession,
) -> Result<Interleaved, String> {
    let connections = opts.connections.max(1);
    let inflight = opts.inflight.max(connections);
    let warm = warm_up_time(opts.duration);
    let rounds = rounds_for(opts.duration);
    let slice = opts.duration / rounds;
    let fail = |codec: CodecId, e: BenchError| format!("{codec} over {}: {e}", target.uri);

    // Connect and warm every subject once.
    let mut raw_nanos = Vec::with_capacity(8192);
    raw.sample(warm, &mut raw_nanos)
        .map_err(|e| format!("raw {} ping-pong baseline: {e}", opts.transport))?;
    raw_nanos.clear();
    struct Subject {
        codec: CodecId,
        one: Proxy,
        many: Vec<Proxy>,
        nanos: Vec<u64>,
        count: Count,
    }
    let mut subjects = Vec::with_capacity(opts.codecs.len());
    for &codec in &opts.codecs {
        let s = rt
            .block_on(async {
                let one = connect(target, codec).await?;
                warm_up_calls(&one, target, opts.duration).await?;
                let many = connect_many(target, codec, connections).await?;
                throughput_sample(&many, target, inflight, Duration::ZERO, warm).await?;
                Ok::<_, BenchError>(Subject {
                    codec,
                    one,
                    many,
                    nanos: Vec::with_capacity(4096),
                    count: Count::default(),
                })
            })
            .map_err(|e| fail(codec, e))?;
        subjects.push(s);
    }
    for _ in 0..rounds {
        raw.sample(slice, &mut raw_nanos)
            .map_err(|e| format!("raw {} ping-pong baseline: {e}", opts.transport))?;
        for s in &mut subjects {
            // The caller runs in a spawned task, on a runtime worker, as an application's
            // would (a caller blocked in `block_on` pays a cross-thread wake-up per call).
            let (one, target2) = (s.one.clone(), target.clone());
            let nanos = std::mem::take(&mut s.nanos);
            let joined = rt.block_on(async move {
                tokio::spawn(async move {
                    let mut nanos = nanos;
                    let r = latency_sample(&one, &target2, slice, &mut nanos).await;
                    (nanos, r)
                })
                .await
            });
            let (nanos, r) = joined.map_err(|e| format!("a measurement task failed: {e}"))?;
            s.nanos = nanos;
            r.map_err(|e| fail(s.codec, e))?;
            let c = rt
                .block_on(throughput_sample(
                    &s.many,
                    target,
                    inflight,
                    slice,
                    Duration::ZERO,
                ))
                .map_err(|e| fail(s.codec, e))?;
            s.count.add(c);
        }
    }
    let rows = subjects
        .into_iter()
        .map(|mut s| CodecRpc {
            codec: s.codec,
            frame_len: echo_frame_len(s.codec, &target.method),
            latency: Latency::from_nanos(&mut s.nanos),
            throughput: s.count.throughput(inflight, connections),
        })
        .collect();
    Ok((raw_nanos, rows))
}

/// The runtime the measurements use: multi-threaded with two workers (client and server
/// tasks share them, as in one process on a two-core machine).
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("starting a tokio runtime: {e}"))
}

/// `d` in microseconds with two decimals (`"23.41 us"`).
pub fn fmt_us(d: Duration) -> String {
    format!("{:.2} us", d.as_secs_f64() * 1e6)
}

impl TransportKind {
    /// The transport of a server URI: `unix://...` is [`TransportKind::Unix`], anything
    /// else tcp.
    pub fn of_uri(uri: &str) -> TransportKind {
        if uri.trim_start().starts_with("unix:") {
            TransportKind::Unix
        } else {
            TransportKind::Tcp
        }
    }
}

/// The codecs worth measuring against a running server: those it accepts that decode into
/// a dynamic value (an echo of any value needs a self-describing codec on the server side),
/// in the server's order. Connects once.
pub fn accepted_codecs(uri: &str) -> Result<Vec<CodecId>, String> {
    let rt = runtime()?;
    let accepted = rt.block_on(async {
        let proxy = Proxy::new(uri)?;
        proxy.server_accepted().await
    });
    let accepted = accepted.map_err(|e| format!("asking {uri} for its codecs: {e}"))?;
    let usable: Vec<CodecId> = accepted
        .iter()
        .copied()
        .filter(|c| wirecall_codecs::builtin_info(*c).is_some_and(|i| i.self_describing))
        .collect();
    if usable.is_empty() {
        return Err(format!(
            "{uri} accepts only {}, which cannot carry a dynamic echo; name a codec with --codec",
            accepted
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(usable)
}

impl RpcReport {
    /// The report as a table, each figure beside its ratio to the raw ping-pong.
    pub fn render(&self, duration: Duration) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let (inflight, connections) = self.rows.first().map_or((0, 0), |r| {
            (r.throughput.inflight, r.throughput.connections)
        });
        let _ = writeln!(
            out,
            "rpc over {}: server {} ({}), {:.2} s per measurement, echo of a {}-byte string",
            self.transport,
            self.server,
            if self.external {
                "yours, from --connect"
            } else {
                "started here, in this process"
            },
            duration.as_secs_f64(),
            ECHO_PAYLOAD.len()
        );
        let _ = writeln!(
            out,
            "baseline: raw {} socket ping-pong of {} bytes{}: p50 {}  p99 {}",
            self.transport,
            self.raw_len,
            if self.external {
                " to a local echo socket on this machine (not your server: the ratio is to this machine's socket floor)"
            } else {
                ", std sockets and an echo thread"
            },
            fmt_us(self.raw.p50),
            fmt_us(self.raw.p99)
        );
        let _ = writeln!(
            out,
            "{:<9} {:>6} {:>11} {:>11} {:>9} {:>14}",
            "codec", "frame", "p50", "p99", "p50/raw", "calls/s"
        );
        for r in &self.rows {
            let ratio = if self.raw.p50.is_zero() {
                f64::NAN
            } else {
                r.latency.p50.as_secs_f64() / self.raw.p50.as_secs_f64()
            };
            let _ = writeln!(
                out,
                "{:<9} {:>6} {:>11} {:>11} {:>8.2}x {:>14.0}",
                r.codec.to_string(),
                r.frame_len,
                fmt_us(r.latency.p50),
                fmt_us(r.latency.p99),
                ratio,
                r.throughput.calls_per_sec
            );
        }
        let _ = writeln!(
            out,
            "latency: one call in flight; calls/s: {inflight} in flight on {connections} connection(s)"
        );
        out
    }
}

/// The RPC figures `wirecall pick` shows: for each transport (tcp, then unix) one
/// [`RpcReport`] with every codec of `codecs` (p50/p99 with one call in flight, calls/s with
/// 64 in flight on one connection) and the raw ping-pong baseline, `per_measurement` each.
///
/// Time taken, per transport, is about `(2 * codecs.len() + 1) * per_measurement` plus a
/// warm-up of [`warm_up_time`]`(per_measurement)` (at least 20 ms) for each of those
/// figures: measured with the seven built-in codecs, 50 ms per measurement takes about
/// 1.1 s per transport (2.2 s for both) and 200 ms about 3.4 s per transport.
pub fn measure_rpc_all(
    codecs: &[CodecId],
    per_measurement: Duration,
) -> Result<Vec<RpcReport>, String> {
    TransportKind::ALL
        .iter()
        .map(|&t| measure_rpc(&RpcOptions::new(t, codecs.to_vec()).duration(per_measurement)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_known_samples() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        let l = Latency::from_nanos(&mut v);
        assert_eq!(l.samples, 100);
        // Index round(99 * 0.5) = 50 (0-based) of 1..=100 is 51; round(99 * 0.99) = 98 is 99.
        assert_eq!(l.p50, Duration::from_nanos(51));
        assert_eq!(l.p99, Duration::from_nanos(99));
        let empty = Latency::from_nanos(&mut []);
        assert_eq!((empty.p50, empty.samples), (Duration::ZERO, 0));
    }

    #[test]
    fn transport_names() {
        assert_eq!(TransportKind::parse(" TCP "), Ok(TransportKind::Tcp));
        assert_eq!(TransportKind::parse("unix"), Ok(TransportKind::Unix));
        let e = TransportKind::parse("quic").unwrap_err();
        assert!(e.contains("quic") && e.contains("tcp or unix"), "{e}");
        assert_eq!(
            TransportKind::of_uri("unix:///tmp/x.sock"),
            TransportKind::Unix
        );
        assert_eq!(
            TransportKind::of_uri("tcp://127.0.0.1:1"),
            TransportKind::Tcp
        );
    }

    #[test]
    fn frame_len_grows_with_the_encoding() {
        let postcard = echo_frame_len(CodecId::POSTCARD, BENCH_ECHO);
        let json = echo_frame_len(CodecId::JSON, BENCH_ECHO);
        // Both carry the 32-byte payload and the method name; json adds quotes and brackets
        // (4 bytes) where postcard adds two length bytes.
        assert!(postcard > ECHO_PAYLOAD.len() + BENCH_ECHO.len());
        assert_eq!(json, postcard + 2);
        // A longer method name makes a longer frame, byte for byte.
        assert_eq!(
            echo_frame_len(CodecId::POSTCARD, "demo_echo_x"),
            postcard + 1
        );
    }

    #[test]
    fn measure_rpc_over_both_transports() {
        let reports = measure_rpc_all(
            &[CodecId::MSGPACK, CodecId::POSTCARD],
            Duration::from_millis(40),
        )
        .unwrap();
        assert_eq!(reports.len(), 2);
        for (r, t) in reports.iter().zip(TransportKind::ALL) {
            assert_eq!(r.transport, t);
            assert!(!r.external);
            assert_eq!(
                r.rows.iter().map(|c| c.codec).collect::<Vec<_>>(),
                [CodecId::MSGPACK, CodecId::POSTCARD]
            );
            for row in &r.rows {
                assert!(row.latency.samples > 5, "{row:?}");
                assert!(row.latency.p50 <= row.latency.p99, "{row:?}");
                assert!(row.throughput.calls > 0, "{row:?}");
                assert_eq!(
                    (row.throughput.inflight, row.throughput.connections),
                    (64, 1)
                );
            }
            let text = r.render(Duration::from_millis(40));
            assert!(
                text.contains("msgpack") && text.contains("p50/raw"),
                "{text}"
            );
        }
    }

    #[test]
    fn external_target_that_is_not_an_echo_fails_clearly() {
        let rt = runtime().unwrap();
        let server = rt.block_on(BenchServer::start(TransportKind::Tcp)).unwrap();
        let target = Target {
            method: "bench_missing".into(),
            ..server.target.clone()
        };
        let opts = RpcOptions::new(TransportKind::Tcp, vec![CodecId::JSON])
            .duration(Duration::from_millis(20))
            .connect(target);
        let e = measure_rpc(&opts).unwrap_err();
        assert!(e.contains("bench_missing") && e.contains("json"), "{e}");
        rt.block_on(server.finalize());
    }
}
