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

/// A raw tokio echo server of length-prefixed frames: the baseline for calls/s over many
/// connections (issue: 8 connections with 8 calls in flight each, 256 connections with one).
///
/// A frame is a 4-byte big-endian length and that many bytes, `frame_len` bytes in all: the
/// size of the wirecall echo CALL frame it stands in for. The server runs a task per
/// connection that reads what has arrived and writes every complete frame back in one write,
/// as a server connection task answering inline does. The clients ([`RawEchoClients`]) run
/// one task per connection that keeps its frames in flight: it writes them all, then for each
/// batch of frames echoed back writes as many again in one write. No codec, no request ids,
/// no task per call: the least a tokio client and server do for that many connections and
/// frames in flight, on the same runtime as the subject.
pub struct RawEcho {
    addr: EchoAddr,
    frame_len: usize,
    server: tokio::task::JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

impl fmt::Debug for RawEcho {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawEcho")
            .field("addr", &self.addr)
            .field("frame_len", &self.frame_len)
            .finish_non_exhaustive()
    }
}

impl Drop for RawEcho {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The shortest frame: the 4-byte length and one byte.
const MIN_FRAME: usize = 5;

impl RawEcho {
    /// Starts the echo server on 127.0.0.1 port 0 (tcp) or a socket in a fresh temporary
    /// directory (unix), for frames of `frame_len` bytes (at least 5). Must run inside a
    /// tokio runtime.
    pub async fn start(transport: TransportKind, frame_len: usize) -> std::io::Result<RawEcho> {
        let frame_len = frame_len.max(MIN_FRAME);
        let (addr, server, dir) = match transport {
            TransportKind::Tcp => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                let server = tokio::spawn(async move {
                    while let Ok((s, _)) = listener.accept().await {
                        if s.set_nodelay(true).is_ok() {
                            tokio::spawn(echo_frames(s));
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
                        tokio::spawn(echo_frames(s));
                    }
                });
                (EchoAddr::Unix(path), server, Some(dir))
            }
        };
        Ok(RawEcho {
            addr,
            frame_len,
            server,
            _dir: dir,
        })
    }

    /// The size of each frame, length prefix included.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// Opens `connections` client connections (at least one).
    pub async fn connect(&self, connections: usize) -> std::io::Result<RawEchoClients> {
        let mut conns = Vec::with_capacity(connections.max(1));
        for _ in 0..connections.max(1) {
            let s: Box<dyn AsyncRw> = match &self.addr {
                EchoAddr::Tcp(a) => {
                    let s = tokio::net::TcpStream::connect(a).await?;
                    s.set_nodelay(true)?;
                    Box::new(s)
                }
                EchoAddr::Unix(p) => Box::new(tokio::net::UnixStream::connect(p).await?),
            };
            conns.push(Arc::new(tokio::sync::Mutex::new(s)));
        }
        let mut frame = Vec::with_capacity(self.frame_len);
        let body = u32::try_from(self.frame_len - 4).unwrap_or(u32::MAX);
        frame.extend_from_slice(&body.to_be_bytes());
        frame.resize(self.frame_len, 0x5a);
        Ok(RawEchoClients {
            conns,
            frame: frame.into(),
        })
    }
}

/// Client connections to a [`RawEcho`] server.
pub struct RawEchoClients {
    conns: Vec<Arc<tokio::sync::Mutex<Box<dyn AsyncRw>>>>,
    frame: Arc<[u8]>,
}

impl fmt::Debug for RawEchoClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawEchoClients")
            .field("connections", &self.conns.len())
            .field("frame_len", &self.frame.len())
            .finish_non_exhaustive()
    }
}

impl RawEchoClients {
    /// The number of connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Echoed frames with `per_conn` in flight on every connection, counted for `duration`
    /// after `warm` uncounted. Every frame sent is read back before this returns, so the
    /// connections can be sampled again.
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
            async move {
                let mut s = conn.lock().await;
                keep_in_flight(&mut **s, &frame, per_conn, &gate).await
            }
        })
        .await
    }
}

/// One client connection's loop: `per_conn` copies of `frame` in flight until the gate
/// closes, then reads the rest back. Returns the frames counted.
async fn keep_in_flight(
    s: &mut dyn AsyncRw,
    frame: &[u8],
    per_conn: usize,
    gate: &Gate,
) -> Result<u64, BenchError> {
    let len = frame.len();
    let out: Vec<u8> = frame.repeat(per_conn);
    let mut buf = vec![0u8; (len * per_conn).max(64 * 1024)];
    let (mut have, mut outstanding, mut n) = (0, per_conn, 0);
    s.write_all(&out).await?;
    let mut running = true;
    while outstanding > 0 {
        let r = s.read(&mut buf[have..]).await?;
        if r == 0 {
            return Err(BenchError::Other(
                "the raw echo server closed the connection".into(),
            ));
        }
        have += r;
        let (frames, used) = complete_frames(&buf[..have]);
        if frames == 0 {
            continue;
        }
        buf.copy_within(used..have, 0);
        have -= used;
        outstanding -= frames;
        if running {
            running = gate.record(&mut n, frames as u64);
        }
        if running {
            s.write_all(&out[..frames * len]).await?;
            outstanding += frames;
        }
    }
    Ok(n)
}

/// The number of complete length-prefixed frames at the front of `buf`, and their bytes.
fn complete_frames(buf: &[u8]) -> (usize, usize) {
    let (mut frames, mut at) = (0, 0);
    while let Some(head) = buf.get(at..at + 4) {
        let body = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let end = at + 4 + body;
        if end > buf.len() {
            break;
        }
        frames += 1;
        at = end;
    }
    (frames, at)
}

/// The server side of one [`RawEcho`] connection: reads what has arrived and writes every
/// complete frame back in one write, until the peer closes.
async fn echo_frames<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) {
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
        let (_, used) = complete_frames(&buf[..have]);
        if used == 0 {
            continue;
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

    #[test]
    fn frames_are_split_by_their_length() {
        let mut b = vec![0, 0, 0, 2, 7, 7, 0, 0, 0, 1, 9];
        assert_eq!(complete_frames(&b), (2, 11));
        b.extend_from_slice(&[0, 0, 0, 3, 1]);
        assert_eq!(complete_frames(&b), (2, 11));
        assert_eq!(complete_frames(&[0, 0]), (0, 0));
    }

    #[test]
    fn raw_echo_many_connections_both_transports() {
        let rt = crate::rpc::runtime().unwrap();
        for t in TransportKind::ALL {
            rt.block_on(async {
                let echo = RawEcho::start(t, 84).await.unwrap();
                for (conns, per) in [(3, 4), (16, 1)] {
                    let clients = echo.connect(conns).await.unwrap();
                    assert_eq!(clients.connections(), conns);
                    for _ in 0..2 {
                        // Sampled twice: the first sample leaves no frame behind.
                        let c = clients
                            .throughput_sample(per, Duration::from_millis(30), Duration::ZERO)
                            .await
                            .unwrap();
                        assert!(c.calls > 0, "{t} {conns}x{per}: {c:?}");
                    }
                }
            });
        }
    }
}
