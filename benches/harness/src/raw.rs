//! Raw socket baselines, measured in the same run as wirecall so figures are ratios:
//!
//! * [`RawSession`]: a ping-pong of `len` bytes over std sockets with an echo thread
//!   (`TCP_NODELAY`), one round trip in flight, the approach of the `pingpong` criterion
//!   bench: the physical limit of a round trip;
//! * [`TokioRawSession`]: the same ping-pong with tokio sockets on the caller's runtime, the
//!   floor for anything built on tokio;
//! * [`RawEcho`]: a tokio echo server of length-prefixed frames with clients on many
//!   connections, each keeping several frames in flight: the floor under calls/s at a given
//!   number of connections and calls in flight.

use std::fmt;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::rpc::{
    elapsed_ns, run_workers, temp_dir, warm_up_time, BenchError, Count, Gate, Latency,
    TransportKind,
};

trait BlockingRw: Read + Write + Send {
    fn shutdown_both(&self);
}

impl BlockingRw for std::net::TcpStream {
    fn shutdown_both(&self) {
        self.shutdown(std::net::Shutdown::Both).ok();
    }
}

impl BlockingRw for std::os::unix::net::UnixStream {
    fn shutdown_both(&self) {
        self.shutdown(std::net::Shutdown::Both).ok();
    }
}

/// A raw socket ping-pong connection: std sockets, the echo side on its own thread,
/// `TCP_NODELAY` on both tcp ends. Each [`RawSession::sample`] times round trips of `len`
/// bytes, one in flight: the physical limit every wirecall latency is compared with.
/// Blocking: use it outside async code.
pub struct RawSession {
    client: Box<dyn BlockingRw>,
    server: Option<std::thread::JoinHandle<()>>,
    msg: Vec<u8>,
    buf: Vec<u8>,
    _dir: Option<tempfile::TempDir>,
}

impl fmt::Debug for RawSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawSession")
            .field("len", &self.msg.len())
            .finish_non_exhaustive()
    }
}

impl RawSession {
    /// Connects a client to a fresh echo thread over `transport`.
    pub fn start(transport: TransportKind, len: usize) -> std::io::Result<RawSession> {
        let len = len.max(1);
        let (client, server, dir): (Box<dyn BlockingRw>, _, _) = match transport {
            TransportKind::Tcp => {
                let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
                let addr = listener.local_addr()?;
                let server = std::thread::spawn(move || {
                    if let Ok((s, _)) = listener.accept() {
                        if s.set_nodelay(true).is_ok() {
                            echo_blocking(s, len);
                        }
                    }
                });
                let client = std::net::TcpStream::connect(addr)?;
                client.set_nodelay(true)?;
                (Box::new(client), server, None)
            }
            TransportKind::Unix => {
                let dir = temp_dir()?;
                let path = dir.path().join("raw.sock");
                let listener = std::os::unix::net::UnixListener::bind(&path)?;
                let server = std::thread::spawn(move || {
                    if let Ok((s, _)) = listener.accept() {
                        echo_blocking(s, len);
                    }
                });
                let client = std::os::unix::net::UnixStream::connect(&path)?;
                (Box::new(client), server, Some(dir))
            }
        };
        Ok(RawSession {
            client,
            server: Some(server),
            msg: vec![0x5a; len],
            buf: vec![0; len],
            _dir: dir,
        })
    }

    /// Times round trips for about `duration`, appending nanoseconds to `out`.
    pub fn sample(&mut self, duration: Duration, out: &mut Vec<u64>) -> std::io::Result<()> {
        let end = Instant::now() + duration;
        loop {
            let t = Instant::now();
            self.client.write_all(&self.msg)?;
            self.client.read_exact(&mut self.buf)?;
            out.push(elapsed_ns(t));
            if t >= end {
                return Ok(());
            }
        }
    }
}

impl Drop for RawSession {
    fn drop(&mut self) {
        self.client.shutdown_both();
        if let Some(s) = self.server.take() {
            s.join().ok();
        }
    }
}

/// Raw socket ping-pong of `len` bytes, one round trip in flight, for about `duration`
/// after a warm-up (see [`RawSession`]). Blocking.
pub fn raw_pingpong(
    transport: TransportKind,
    len: usize,
    duration: Duration,
) -> std::io::Result<Latency> {
    let mut s = RawSession::start(transport, len)?;
    let mut nanos = Vec::with_capacity(8192);
    s.sample(warm_up_time(duration), &mut nanos)?;
    nanos.clear();
    s.sample(duration, &mut nanos)?;
    Ok(Latency::from_nanos(&mut nanos))
}

/// Echoes `len`-byte messages until the peer closes.
fn echo_blocking<S: Read + Write>(mut s: S, len: usize) {
    let mut buf = vec![0u8; len];
    while s.read_exact(&mut buf).is_ok() {
        if s.write_all(&buf).is_err() {
            break;
        }
    }
}

trait AsyncRw: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> AsyncRw for T {}

/// The same ping-pong as [`RawSession`] with tokio sockets on the caller's runtime (the
/// echo side a spawned task): the floor for anything built on tokio, so its difference to
/// [`RawSession`] is the runtime's wake-up cost, not wirecall's.
pub struct TokioRawSession {
    client: Box<dyn AsyncRw>,
    server: tokio::task::JoinHandle<()>,
    msg: Vec<u8>,
    buf: Vec<u8>,
    _dir: Option<tempfile::TempDir>,
}

impl fmt::Debug for TokioRawSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioRawSession")
            .field("len", &self.msg.len())
            .finish_non_exhaustive()
    }
}

impl Drop for TokioRawSession {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TokioRawSession {
    /// Connects a client to a fresh echo task over `transport`.
    pub async fn start(transport: TransportKind, len: usize) -> std::io::Result<TokioRawSession> {
        let len = len.max(1);
        let (client, server, dir): (Box<dyn AsyncRw>, _, _) = match transport {
            TransportKind::Tcp => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                let server = tokio::spawn(async move {
                    if let Ok((s, _)) = listener.accept().await {
                        if s.set_nodelay(true).is_ok() {
                            echo_tokio(s, len).await;
                        }
                    }
                });
                let c = tokio::net::TcpStream::connect(addr).await?;
                c.set_nodelay(true)?;
                (Box::new(c), server, None)
            }
            TransportKind::Unix => {
                let dir = temp_dir()?;
                let path = dir.path().join("raw-tokio.sock");
                let listener = tokio::net::UnixListener::bind(&path)?;
                let server = tokio::spawn(async move {
                    if let Ok((s, _)) = listener.accept().await {
                        echo_tokio(s, len).await;
                    }
                });
                let c = tokio::net::UnixStream::connect(&path).await?;
                (Box::new(c), server, Some(dir))
            }
        };
        Ok(TokioRawSession {
            client,
            server,
            msg: vec![0x5a; len],
            buf: vec![0; len],
            _dir: dir,
        })
    }

    /// Times round trips for about `duration`, appending nanoseconds to `out`.
    pub async fn sample(&mut self, duration: Duration, out: &mut Vec<u64>) -> std::io::Result<()> {
        let end = Instant::now() + duration;
        loop {
            let t = Instant::now();
            self.client.write_all(&self.msg).await?;
            self.client.read_exact(&mut self.buf).await?;
            out.push(elapsed_ns(t));
            if t >= end {
                return Ok(());
            }
        }
    }
}

/// [`TokioRawSession`] for about `duration` after a warm-up.
pub async fn raw_pingpong_tokio(
    transport: TransportKind,
    len: usize,
    duration: Duration,
) -> std::io::Result<Latency> {
    let mut s = TokioRawSession::start(transport, len).await?;
    let mut nanos = Vec::with_capacity(8192);
    s.sample(warm_up_time(duration), &mut nanos).await?;
    nanos.clear();
    s.sample(duration, &mut nanos).await?;
    Ok(Latency::from_nanos(&mut nanos))
}

async fn echo_tokio<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S, len: usize) {
    let mut buf = vec![0u8; len];
    while s.read_exact(&mut buf).await.is_ok() {
        if s.write_all(&buf).await.is_err() {
            break;
        }
    }
}

/// Where a [`RawEcho`] server listens.
#[derive(Debug, Clone)]
enum EchoAddr {
    Tcp(std::net::SocketAddr),
    Unix(std::path::PathBuf),
}

impl EchoAddr {
    /// The address of a wirecall server's URI (`tcp://host:port`, `unix:///path`).
    fn from_uri(uri: &str) -> Result<EchoAddr, BenchError> {
        if let Some(rest) = uri.strip_prefix("tcp://") {
            return rest
                .parse()
                .map(EchoAddr::Tcp)
                .map_err(|e| BenchError::Other(format!("`{uri}`: {e}")));
        }
        if let Some(path) = uri.strip_prefix("unix://") {
            return Ok(EchoAddr::Unix(path.into()));
        }
        Err(BenchError::Other(format!(
            "`{uri}`: the pipelined client speaks tcp:// and unix:// only"
        )))
    }

    async fn connect(&self) -> std::io::Result<Box<dyn AsyncRw>> {
        Ok(match self {
            EchoAddr::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a).await?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
            EchoAddr::Unix(p) => Box::new(tokio::net::UnixStream::connect(p).await?),
        })
    }
}

/// A raw tokio echo server of wirecall-shaped frames: the baseline for calls/s over many
/// connections (issue: 8 connections with 8 calls in flight each, 256 connections with one).
///
/// It reads frames by the length rule of the wirecall frame header (40 bytes and the
/// section lengths it declares) and echoes them unchanged: a task per connection reads what
/// has arrived and writes every complete frame back in one write, as a wirecall server
/// connection answering inline does. No decoding past the lengths, no handler, no machine:
/// the least a tokio server does for that many connections and frames in flight. Driven by
/// [`PipelinedClients`], the same client loop that drives the wirecall server in the same run.
pub struct RawEcho {
    addr: EchoAddr,
    server: tokio::task::JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

impl fmt::Debug for RawEcho {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawEcho")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for RawEcho {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The wirecall frame header's size: the least a frame can be.
const HEADER: usize = 40;
/// Offset of the header's kind byte.
const KIND_AT: usize = 5;
/// Offset of the header's request id (8 bytes, big-endian).
const ID_AT: usize = 12;
/// The CALL kind (SPEC §3).
#[cfg(test)]
const KIND_CALL: u8 = 0x04;
/// The REPLY kind (SPEC §3).
const KIND_REPLY: u8 = 0x05;

impl RawEcho {
    /// Starts the echo server on 127.0.0.1 port 0 (tcp) or a socket in a fresh temporary
    /// directory (unix). Must run inside a tokio runtime.
    pub async fn start(transport: TransportKind) -> std::io::Result<RawEcho> {
        RawEcho::start_working(transport, Duration::ZERO).await
    }

    /// [`RawEcho::start`], with the echo busy for `work` per frame (by the clock, on the
    /// task that echoes it, before the write) as a server's handling would keep it: how the
    /// floor's calls/s fall with each nanosecond a server spends per call, the budget a
    /// server has for a given fraction of the raw echo (`perf --profile echo-pipelined
    /// --echo-work-ns N`).
    pub async fn start_working(
        transport: TransportKind,
        work: Duration,
    ) -> std::io::Result<RawEcho> {
        let (addr, server, dir) = match transport {
            TransportKind::Tcp => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                let server = tokio::spawn(async move {
                    while let Ok((s, _)) = listener.accept().await {
                        if s.set_nodelay(true).is_ok() {
                            tokio::spawn(echo_frames(s, work));
                        }
                    }
                });
                (EchoAddr::Tcp(addr), server, None)
            }
            TransportKind::Unix => {
                let dir = temp_dir()?;
                let path = dir.path().join("raw-echo.sock");
                let listener = tokio::net::UnixListener::bind(&path)?;
                let server = tokio::spawn(async move {
                    while let Ok((s, _)) = listener.accept().await {
                        tokio::spawn(echo_frames(s, work));
                    }
                });
                (EchoAddr::Unix(path), server, Some(dir))
            }
        };
        Ok(RawEcho {
            addr,
            server,
            _dir: dir,
        })
    }

    /// Opens `connections` client connections (at least one) that send copies of `frame` (a
    /// wirecall frame, e.g. [`echo_call_frame`](crate::rpc::echo_call_frame)) and count the
    /// copies echoed back.
    pub async fn connect(
        &self,
        connections: usize,
        frame: &[u8],
    ) -> Result<PipelinedClients, BenchError> {
        let mut conns = Vec::with_capacity(connections.max(1));
        for _ in 0..connections.max(1) {
            conns.push(self.addr.connect().await?);
        }
        PipelinedClients::new(conns, frame, frame.get(KIND_AT).copied().unwrap_or(0))
    }
}

/// Client connections that keep copies of one frame in flight on each connection, with one
/// task per connection: [`RawEcho`]'s clients, and (after a handshake) a wirecall server's,
/// so both servers are driven by the same client loop in the same run.
///
/// Each copy gets the next request id of its connection (1, 2, 3...), as the protocol asks.
/// A frame read back must be of the expected kind (REPLY from a wirecall server, the CALL
/// itself from the echo) and answer a request id still in flight.
pub struct PipelinedClients {
    conns: Vec<Arc<tokio::sync::Mutex<ClientConn>>>,
    frame: Arc<[u8]>,
    reply_kind: u8,
}

/// One connection of [`PipelinedClients`] and its next request id.
struct ClientConn {
    s: Box<dyn AsyncRw>,
    next_id: u64,
}

impl fmt::Debug for PipelinedClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelinedClients")
            .field("connections", &self.conns.len())
            .field("frame_len", &self.frame.len())
            .finish_non_exhaustive()
    }
}

impl PipelinedClients {
    fn new(
        conns: Vec<Box<dyn AsyncRw>>,
        frame: &[u8],
        reply_kind: u8,
    ) -> Result<PipelinedClients, BenchError> {
        if frame_len(frame) != Some(frame.len()) {
            return Err(BenchError::Other(
                "the pipelined client needs one whole wirecall frame to send".into(),
            ));
        }
        Ok(PipelinedClients {
            conns: conns
                .into_iter()
                .map(|s| Arc::new(tokio::sync::Mutex::new(ClientConn { s, next_id: 1 })))
                .collect(),
            frame: frame.into(),
            reply_kind,
        })
    }

    /// Opens `connections` connections to the wirecall server at `uri` (`tcp://` or
    /// `unix://`), each with a HELLO offering `codec` and the WELCOME read back, that send
    /// copies of `call` (a CALL frame in `codec`, e.g.
    /// [`echo_call_frame`](crate::rpc::echo_call_frame)) and expect a REPLY to each.
    pub async fn connect_wirecall(
        uri: &str,
        codec: wirecall_codecs::CodecId,
        connections: usize,
        call: &[u8],
    ) -> Result<PipelinedClients, BenchError> {
        use wirecall_protocol as proto;
        let addr = EchoAddr::from_uri(uri)?;
        let mut hello = bytes::BytesMut::new();
        proto::Frame::Hello(proto::Hello {
            versions: vec![1],
            codecs: vec![codec],
            limits: proto::Limits::default(),
            extensions: Default::default(),
        })
        .encode(&mut hello)
        .map_err(|e| BenchError::Other(format!("encoding HELLO: {e}")))?;
        let mut conns = Vec::with_capacity(connections.max(1));
        for _ in 0..connections.max(1) {
            let mut s = addr.connect().await?;
            s.write_all(&hello).await?;
            let mut dec = proto::FrameDecoder::new(proto::Limits::default());
            let mut buf = bytes::BytesMut::with_capacity(256);
            let welcome = loop {
                let decoded = dec
                    .decode(&mut buf)
                    .map_err(|e| BenchError::Other(format!("reading WELCOME from {uri}: {e}")))?;
                if let Some(f) = decoded {
                    break f;
                }
                if s.read_buf(&mut buf).await? == 0 {
                    return Err(BenchError::Other(format!(
                        "{uri} closed the connection during the handshake"
                    )));
                }
            };
            match welcome {
                proto::Frame::Welcome(w) if w.codec == codec => {}
                other => {
                    return Err(BenchError::Other(format!(
                        "{uri} answered HELLO with {other:?}, not a WELCOME to {codec}"
                    )))
                }
            }
            if !buf.is_empty() {
                return Err(BenchError::Other(format!(
                    "{uri} sent more than a WELCOME before any call"
                )));
            }
            conns.push(s);
        }
        PipelinedClients::new(conns, call, KIND_REPLY)
    }

    /// The number of connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Frames answered with `per_conn` in flight on every connection, counted for
    /// `duration` after `warm` uncounted. Every frame sent is answered before this returns,
    /// so the connections can be sampled again.
    pub async fn throughput_sample(
        &self,
        per_conn: usize,
        duration: Duration,
        warm: Duration,
    ) -> Result<Count, BenchError> {
        let per_conn = per_conn.max(1);
        run_workers(self.conns.len(), duration, warm, |c, gate| {
            let conn = self.conns[c].clone();
            let frame = self.frame.clone();
            let reply_kind = self.reply_kind;
            async move {
                let mut c = conn.lock().await;
                keep_in_flight(&mut c, &frame, reply_kind, per_conn, &gate).await
            }
        })
        .await
    }
}

/// One client connection's loop: `per_conn` copies of `frame` in flight until the gate
/// closes, then reads the rest back. Returns the frames counted.
async fn keep_in_flight(
    c: &mut ClientConn,
    frame: &[u8],
    reply_kind: u8,
    per_conn: usize,
    gate: &Gate,
) -> Result<u64, BenchError> {
    let len = frame.len();
    let mut out: Vec<u8> = frame.repeat(per_conn);
    let mut buf = vec![0u8; (len * per_conn).max(64 * 1024)];
    // Request ids in flight: [oldest, c.next_id).
    let oldest = c.next_id;
    let stamp = |out: &mut [u8], frames: usize, next_id: &mut u64| {
        for f in out[..frames * len].chunks_exact_mut(len) {
            f[ID_AT..ID_AT + 8].copy_from_slice(&next_id.to_be_bytes());
            *next_id += 1;
        }
    };
    let (mut have, mut outstanding, mut n) = (0, per_conn, 0);
    stamp(&mut out, per_conn, &mut c.next_id);
    c.s.write_all(&out).await?;
    let mut running = true;
    while outstanding > 0 {
        let r = c.s.read(&mut buf[have..]).await?;
        if r == 0 {
            return Err(BenchError::Other("the server closed the connection".into()));
        }
        have += r;
        let (frames, used) = complete_frames(&buf[..have]);
        if frames == 0 {
            if have == buf.len() {
                return Err(BenchError::Other(format!(
                    "the server answered a frame larger than {have} bytes"
                )));
            }
            continue;
        }
        check_answers(&buf[..used], reply_kind, oldest, c.next_id)?;
        buf.copy_within(used..have, 0);
        have -= used;
        outstanding -= frames;
        if running {
            running = gate.record(&mut n, frames as u64);
        }
        if running {
            stamp(&mut out, frames, &mut c.next_id);
            c.s.write_all(&out[..frames * len]).await?;
            outstanding += frames;
        }
    }
    Ok(n)
}

/// Each frame of `buf` (whole frames) is of `kind` and answers a request id in
/// `[oldest, next)`.
fn check_answers(buf: &[u8], kind: u8, oldest: u64, next: u64) -> Result<(), BenchError> {
    let mut at = 0;
    while let Some(len) = buf.get(at..).and_then(frame_len) {
        let f = &buf[at..at + len];
        let mut id = [0u8; 8];
        id.copy_from_slice(&f[ID_AT..ID_AT + 8]);
        let id = u64::from_be_bytes(id);
        if f[KIND_AT] != kind || !(oldest..next).contains(&id) {
            return Err(BenchError::Other(format!(
                "expected answers of kind {kind:#04x} to ids {oldest}..{next}, got kind {:#04x} for id {id}",
                f[KIND_AT]
            )));
        }
        at += len;
    }
    Ok(())
}

/// The length of the wirecall frame at the front of `buf` (header and sections), once its
/// header has arrived and if the whole frame has.
fn frame_len(buf: &[u8]) -> Option<usize> {
    let head = buf.get(..HEADER)?;
    let u32_at = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let route = u16::from_be_bytes([head[20], head[21]]) as usize;
    let len = [24, 28, 32, 36]
        .iter()
        .fold(HEADER + route, |n, &i| n.saturating_add(u32_at(i) as usize));
    (len <= buf.len()).then_some(len)
}

/// The number of complete frames at the front of `buf`, and their bytes.
fn complete_frames(buf: &[u8]) -> (usize, usize) {
    let (mut frames, mut at) = (0, 0);
    while let Some(len) = buf.get(at..).and_then(frame_len) {
        frames += 1;
        at += len;
    }
    (frames, at)
}

/// The server side of one [`RawEcho`] connection: reads what has arrived and writes every
/// complete frame back in one write, until the peer closes.
async fn echo_frames<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    work: Duration,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = 0;
    loop {
        if have == buf.len() {
            // A frame larger than the buffer: grow it to hold the frame.
            buf.resize(buf.len() * 2, 0);
        }
        match s.read(&mut buf[have..]).await {
            Ok(0) | Err(_) => return,
            Ok(r) => have += r,
        }
        let (frames, used) = complete_frames(&buf[..have]);
        if used == 0 {
            continue;
        }
        if !work.is_zero() {
            let until = Instant::now() + work * frames as u32;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        if s.write_all(&buf[..used]).await.is_err() {
            return;
        }
        buf.copy_within(used..have, 0);
        have -= used;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_pingpong_both_transports() {
        for t in TransportKind::ALL {
            let l = raw_pingpong(t, 83, Duration::from_millis(30)).unwrap();
            assert!(l.samples > 10, "{t}: {l:?}");
            assert!(l.p50 > Duration::ZERO && l.p50 <= l.p99, "{t}: {l:?}");
        }
    }

    /// A frame of `body` bytes of payload (a CALL-shaped header, kind `kind`, request id 1).
    fn frame(kind: u8, body: usize) -> Vec<u8> {
        let mut f = vec![0u8; HEADER + body];
        f[KIND_AT] = kind;
        f[ID_AT + 7] = 1;
        f[28..32].copy_from_slice(&(body as u32).to_be_bytes());
        f
    }

    #[test]
    fn frames_are_split_by_their_header_lengths() {
        let mut b = frame(KIND_CALL, 2);
        b.extend(frame(KIND_CALL, 1));
        assert_eq!(complete_frames(&b), (2, 83));
        b.extend_from_slice(&frame(KIND_CALL, 3)[..41]);
        assert_eq!(complete_frames(&b), (2, 83));
        assert_eq!(complete_frames(&[0, 0]), (0, 0));
        assert!(check_answers(&b[..83], KIND_CALL, 1, 2).is_ok());
        assert!(check_answers(&b[..83], KIND_REPLY, 1, 2).is_err());
        assert!(check_answers(&b[..83], KIND_CALL, 2, 3).is_err());
    }

    #[test]
    fn a_working_echo_spends_its_work_on_every_frame() {
        let rt = crate::rpc::runtime().unwrap();
        rt.block_on(async {
            let call = crate::rpc::echo_call_frame(
                wirecall_codecs::CodecId::POSTCARD,
                crate::rpc::BENCH_ECHO,
            );
            let echo = RawEcho::start_working(TransportKind::Unix, Duration::from_micros(100))
                .await
                .unwrap();
            let c = echo.connect(1, &call).await.unwrap();
            let n = c
                .throughput_sample(4, Duration::from_millis(30), Duration::ZERO)
                .await
                .unwrap();
            // One connection's frames are echoed by one task, 100 us each: at most one per
            // 100 us of the time counted, and the 4 in flight when counting started.
            let most = n.elapsed.as_micros() as u64 / 100 + 4;
            assert!(n.calls > 0 && n.calls <= most, "{n:?} (at most {most})");
        });
    }

    #[test]
    fn raw_echo_and_wirecall_share_the_client_loop_on_both_transports() {
        let rt = crate::rpc::runtime().unwrap();
        for t in TransportKind::ALL {
            rt.block_on(async {
                let codec = wirecall_codecs::CodecId::POSTCARD;
                let call = crate::rpc::echo_call_frame(codec, crate::rpc::BENCH_ECHO);
                let echo = RawEcho::start(t).await.unwrap();
                let server = crate::rpc::BenchServer::start(t).await.unwrap();
                for (conns, per) in [(3, 4), (16, 1)] {
                    let raw = echo.connect(conns, &call).await.unwrap();
                    let wc =
                        PipelinedClients::connect_wirecall(&server.target.uri, codec, conns, &call)
                            .await
                            .unwrap();
                    assert_eq!(raw.connections(), conns);
                    for clients in [&raw, &wc] {
                        for _ in 0..2 {
                            // Sampled twice: the first sample leaves no frame behind.
                            let c = clients
                                .throughput_sample(per, Duration::from_millis(30), Duration::ZERO)
                                .await
                                .unwrap();
                            assert!(c.calls > 0, "{t} {conns}x{per}: {c:?}");
                        }
                    }
                }
                server.finalize().await;
            });
        }
    }
}
