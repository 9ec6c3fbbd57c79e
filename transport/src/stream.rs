//! [`Stream`]: a connected byte stream over tcp, a unix socket, an in-process pipe or TLS,
//! and its owned halves.

use std::fmt;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::net::{tcp, TcpStream};
#[cfg(unix)]
use tokio::net::{unix, UnixStream};

use crate::address::{Address, Host};
use crate::error::{Operation, TransportError};
use crate::mem;
use crate::tls::{self, Socket, TlsClientConfig, TlsConn, TlsInfo};

/// The address of the other end of a [`Stream`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerAddr {
    /// A TCP peer's IP address and port.
    Tcp(SocketAddr),
    /// A unix socket peer. Clients usually do not bind a path, so on the accepting side the
    /// path is normally `None`; on the connecting side it is the server's socket path.
    Unix {
        /// The peer's socket path, if it has one.
        path: Option<PathBuf>,
    },
    /// An in-process peer: the listener's name and a process-unique connection number that
    /// both ends of the connection report alike.
    Mem {
        /// The listener's name.
        name: String,
        /// The connection number, equal on both ends.
        connection: u64,
    },
}

impl PeerAddr {
    /// The peer as an [`Address`] one could connect to, when it has one (TCP peers, unix
    /// peers with a path, and named in-process listeners; not [`Stream::mem_pair`] peers).
    pub fn to_address(&self) -> Option<Address> {
        match self {
            PeerAddr::Tcp(addr) => Some(Address::from(*addr)),
            PeerAddr::Unix { path } => path.clone().map(Address::unix),
            PeerAddr::Mem { name, .. } if name.is_empty() => None,
            PeerAddr::Mem { name, .. } => Some(Address::mem(name.as_str())),
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Tcp(addr) => write!(f, "tcp://{addr}"),
            PeerAddr::Unix { path: Some(path) } => write!(f, "unix://{}", path.display()),
            PeerAddr::Unix { path: None } => f.write_str("unix:(unnamed)"),
            PeerAddr::Mem { name, connection } => {
                write!(f, "mem://{name} (connection {connection})")
            }
        }
    }
}

/// A connected, bidirectional byte stream: TCP (with `TCP_NODELAY` set), a unix domain
/// socket, an in-process pipe, or TLS over TCP or a unix socket.
///
/// Implements [`AsyncRead`] and [`AsyncWrite`] with static dispatch (an enum inside, no
/// boxing), including vectored writes. [`poll_shutdown`](AsyncWrite::poll_shutdown) closes
/// the write direction: the peer reads end-of-file while it can still write back. Use
/// [`into_split`](Self::into_split) to read and write from two tasks.
///
/// A TLS stream may keep encrypted bytes that the socket did not take yet after a write
/// returns; [`flush`](tokio::io::AsyncWriteExt::flush) sends them (on the other transports
/// flushing costs nothing), so flush after the last write of a batch, as the
/// [`AsyncWrite`] contract asks.
#[derive(Debug)]
pub struct Stream {
    inner: StreamInner,
    peer: PeerAddr,
    tls: Option<TlsInfo>,
}

#[derive(Debug)]
enum StreamInner {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
    Mem(DuplexStream),
    Tls(Box<TlsConn>),
}

impl Stream {
    /// Connects to `address`.
    ///
    /// Host names are resolved now and each resulting IP is tried in turn; the last error is
    /// reported if all fail. TCP streams get `TCP_NODELAY`. A `mem://` address reaches a
    /// [`Listener`](crate::Listener) bound in this process; connecting succeeds once the
    /// connection is queued, before the listener accepts it (like a TCP backlog).
    ///
    /// `tls://` and `tls+unix://` addresses connect, then run the TLS handshake with the
    /// configuration in the environment ([`TlsClientConfig::from_env`]: `WIRECALL_TLS_CA` or
    /// the system roots); [`connect_tls`](Self::connect_tls) takes one explicitly.
    ///
    /// There is no time limit besides the OS's own; see
    /// [`connect_timeout`](Self::connect_timeout).
    pub async fn connect(address: &Address) -> Result<Stream, TransportError> {
        match address {
            Address::Tls { .. } | Address::TlsUnix { .. } => {
                let config = TlsClientConfig::from_env()?;
                Stream::connect_tls(address, &config).await
            }
            _ => Stream::connect_plain(address).await,
        }
    }

    async fn connect_plain(address: &Address) -> Result<Stream, TransportError> {
        match address {
            Address::Tcp { host, port } => connect_tcp(address, host, *port).await,
            Address::Unix { path } => connect_unix(address, path).await,
            Address::Mem { name } => {
                let (stream, connection) = mem::connect(name).await?;
                tracing::debug!(%address, connection, "connected");
                Ok(Stream {
                    inner: StreamInner::Mem(stream),
                    peer: PeerAddr::Mem {
                        name: name.clone(),
                        connection,
                    },
                    tls: None,
                })
            }
            Address::Tls { host, port } => connect_tcp(address, host, *port).await,
            Address::TlsUnix { path } => connect_unix(address, path).await,
        }
    }

    /// Connects to `address`, using `tls` for `tls://` and `tls+unix://` addresses (other
    /// addresses connect as with [`connect`](Self::connect) and ignore it).
    ///
    /// A failed handshake is a [`TransportError::Tls`] that says why: the certificate is
    /// for other names, its CA is unknown, the server wants a client certificate, or the
    /// server does not speak TLS at all.
    pub async fn connect_tls(
        address: &Address,
        tls: &TlsClientConfig,
    ) -> Result<Stream, TransportError> {
        if !address.is_tls() {
            return Stream::connect_plain(address).await;
        }
        let plain = Stream::connect_plain(address).await?;
        let peer = plain.peer.clone();
        let socket = match plain.inner {
            StreamInner::Tcp(s) => Socket::tcp(s),
            #[cfg(unix)]
            StreamInner::Unix(s) => Socket::unix(s),
            // connect_tcp and connect_unix make nothing else.
            other => {
                return Err(TransportError::tls(
                    address,
                    format!("internal error: cannot run TLS over {other:?}"),
                ))
            }
        };
        let (conn, info) = tls::connect(address, socket, tls).await?;
        Ok(Stream {
            inner: StreamInner::Tls(Box::new(conn)),
            peer,
            tls: Some(info),
        })
    }

    /// Like [`connect`](Self::connect), but gives up with [`TransportError::Timeout`]
    /// (which [is retryable](TransportError::is_retryable)) after `timeout`, name
    /// resolution included. Needs a Tokio runtime with the time driver enabled.
    pub async fn connect_timeout(
        address: &Address,
        timeout: Duration,
    ) -> Result<Stream, TransportError> {
        match tokio::time::timeout(timeout, Stream::connect(address)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(TransportError::Timeout {
                address: address.to_string(),
                after: timeout,
            }),
        }
    }

    /// Two in-process streams connected to each other, without any registry name: handy
    /// for tests and for embedding. Both report `PeerAddr::Mem` with an empty name.
    pub fn mem_pair() -> (Stream, Stream) {
        let (a, b) = tokio::io::duplex(mem::MEM_BUFFER_SIZE);
        let connection = mem::next_id();
        let peer = PeerAddr::Mem {
            name: String::new(),
            connection,
        };
        (
            Stream {
                inner: StreamInner::Mem(a),
                peer: peer.clone(),
                tls: None,
            },
            Stream {
                inner: StreamInner::Mem(b),
                peer,
                tls: None,
            },
        )
    }

    pub(crate) fn from_tcp(stream: TcpStream, peer: SocketAddr) -> Stream {
        Stream {
            inner: StreamInner::Tcp(stream),
            peer: PeerAddr::Tcp(peer),
            tls: None,
        }
    }

    #[cfg(unix)]
    pub(crate) fn from_unix(stream: UnixStream, path: Option<PathBuf>) -> Stream {
        Stream {
            inner: StreamInner::Unix(stream),
            peer: PeerAddr::Unix { path },
            tls: None,
        }
    }

    pub(crate) fn from_mem(stream: DuplexStream, name: String, connection: u64) -> Stream {
        Stream {
            inner: StreamInner::Mem(stream),
            peer: PeerAddr::Mem { name, connection },
            tls: None,
        }
    }

    pub(crate) fn from_tls(conn: TlsConn, info: TlsInfo, peer: PeerAddr) -> Stream {
        Stream {
            inner: StreamInner::Tls(Box::new(conn)),
            peer,
            tls: Some(info),
        }
    }

    /// The TLS session of a `tls://` or `tls+unix://` stream: protocol version, cipher
    /// suite, and the verified identity of the other end
    /// ([`TlsInfo::peer_identity`]). `None` for the other transports.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The address of the other end.
    pub fn peer_addr(&self) -> &PeerAddr {
        &self.peer
    }

    /// The URL scheme of this stream's transport: `"tcp"`, `"unix"`, `"mem"`, or `"tls"`
    /// for TLS over tcp and unix sockets alike.
    pub fn scheme(&self) -> &'static str {
        match &self.inner {
            StreamInner::Tcp(_) => "tcp",
            #[cfg(unix)]
            StreamInner::Unix(_) => "unix",
            StreamInner::Mem(_) => "mem",
            StreamInner::Tls(_) => "tls",
        }
    }

    /// Whether `TCP_NODELAY` is set: `Some(true)` for every TCP stream this crate creates,
    /// `None` for other transports (or if the OS query fails).
    pub fn nodelay(&self) -> Option<bool> {
        match &self.inner {
            StreamInner::Tcp(stream) => stream.nodelay().ok(),
            _ => None,
        }
    }

    /// Splits into owned halves that can move to two different tasks. TCP and unix halves
    /// are independent; in-process and TLS halves share a lock held only for the duration
    /// of each poll. Dropping the [`WriteHalf`] of a TCP or unix stream closes the write
    /// direction.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        let peer = self.peer;
        let tls = self.tls.map(Arc::new);
        let (read, write) = match self.inner {
            StreamInner::Tcp(stream) => {
                let (r, w) = stream.into_split();
                (ReadInner::Tcp(r), WriteInner::Tcp(w))
            }
            #[cfg(unix)]
            StreamInner::Unix(stream) => {
                let (r, w) = stream.into_split();
                (ReadInner::Unix(r), WriteInner::Unix(w))
            }
            StreamInner::Mem(stream) => {
                let (r, w) = tokio::io::split(stream);
                (ReadInner::Mem(r), WriteInner::Mem(w))
            }
            StreamInner::Tls(stream) => {
                let (r, w) = tokio::io::split(stream);
                (ReadInner::Tls(r), WriteInner::Tls(w))
            }
        };
        (
            ReadHalf {
                inner: read,
                peer: peer.clone(),
                tls: tls.clone(),
            },
            WriteHalf {
                inner: write,
                peer,
                tls,
            },
        )
    }
}

async fn connect_tcp(address: &Address, host: &Host, port: u16) -> Result<Stream, TransportError> {
    if port == 0 {
        return Err(TransportError::invalid(
            &address.to_string(),
            format!("cannot connect to `{address}`: port 0 only means \"pick a free port\" when binding"),
            "connect to the port the listener reports in Listener::local_addr(), e.g. tcp://127.0.0.1:4000",
        ));
    }
    let candidates = crate::resolve(address, host, port).await?;
    let mut last_error = None;
    for candidate in candidates {
        match TcpStream::connect(candidate).await {
            Ok(stream) => {
                stream
                    .set_nodelay(true)
                    .map_err(|e| TransportError::io(Operation::Connect, address, e))?;
                let peer = stream.peer_addr().unwrap_or(candidate);
                tracing::debug!(%address, %peer, "connected");
                return Ok(Stream::from_tcp(stream, peer));
            }
            Err(e) => {
                tracing::debug!(%address, %candidate, error = %e, "connect attempt failed");
                last_error = Some(e);
            }
        }
    }
    Err(TransportError::io(
        Operation::Connect,
        address,
        last_error.unwrap_or_else(|| io::Error::other("the host resolved to no addresses")),
    ))
}

#[cfg(unix)]
async fn connect_unix(address: &Address, path: &std::path::Path) -> Result<Stream, TransportError> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|e| TransportError::io(Operation::Connect, address, e))?;
    tracing::debug!(%address, "connected");
    Ok(Stream::from_unix(stream, Some(path.to_owned())))
}

#[cfg(not(unix))]
async fn connect_unix(
    address: &Address,
    _path: &std::path::Path,
) -> Result<Stream, TransportError> {
    Err(TransportError::Unsupported {
        address: address.to_string(),
        what: "unix domain sockets",
    })
}

/// Dispatches a method call to whichever transport is inside.
macro_rules! dispatch {
    ($inner:expr, $enum:ident, $s:ident => $call:expr) => {
        match $inner {
            $enum::Tcp($s) => $call,
            #[cfg(unix)]
            $enum::Unix($s) => $call,
            $enum::Mem($s) => $call,
            $enum::Tls($s) => $call,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        dispatch!(&mut self.get_mut().inner, StreamInner, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        dispatch!(&mut self.get_mut().inner, StreamInner, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        dispatch!(&mut self.get_mut().inner, StreamInner, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        dispatch!(&self.inner, StreamInner, s => s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        dispatch!(&mut self.get_mut().inner, StreamInner, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        dispatch!(&mut self.get_mut().inner, StreamInner, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// The reading half of a [`Stream`], from [`Stream::into_split`].
#[derive(Debug)]
pub struct ReadHalf {
    inner: ReadInner,
    peer: PeerAddr,
    tls: Option<Arc<TlsInfo>>,
}

#[derive(Debug)]
enum ReadInner {
    Tcp(tcp::OwnedReadHalf),
    #[cfg(unix)]
    Unix(unix::OwnedReadHalf),
    Mem(tokio::io::ReadHalf<DuplexStream>),
    Tls(tokio::io::ReadHalf<Box<TlsConn>>),
}

impl ReadHalf {
    /// The address of the other end.
    pub fn peer_addr(&self) -> &PeerAddr {
        &self.peer
    }

    /// The TLS session, for a TLS stream (see [`Stream::tls`]).
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_deref()
    }

    /// Whether [`ReadHalf::readable`] really waits (sockets); in-memory streams have no
    /// readiness to wait for, and their `readable` returns at once. Neither do TLS streams:
    /// decrypted bytes may wait inside the TLS session while the socket has none, so a
    /// reader must read.
    pub fn has_readiness(&self) -> bool {
        !matches!(self.inner, ReadInner::Mem(_) | ReadInner::Tls(_))
    }

    /// Waits until the stream may be readable, without a buffer: a reader that waits long
    /// (an idle connection) holds no receive buffer meanwhile and makes room only when bytes
    /// are there. Readiness can be spurious (a read then finds nothing). In-memory streams
    /// have no readiness to wait for and return at once (see [`ReadHalf::has_readiness`]).
    pub async fn readable(&self) -> io::Result<()> {
        match &self.inner {
            ReadInner::Tcp(s) => s.readable().await,
            #[cfg(unix)]
            ReadInner::Unix(s) => s.readable().await,
            ReadInner::Mem(_) | ReadInner::Tls(_) => Ok(()),
        }
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        dispatch!(&mut self.get_mut().inner, ReadInner, s => Pin::new(s).poll_read(cx, buf))
    }
}

/// The writing half of a [`Stream`], from [`Stream::into_split`].
#[derive(Debug)]
pub struct WriteHalf {
    inner: WriteInner,
    peer: PeerAddr,
    tls: Option<Arc<TlsInfo>>,
}

#[derive(Debug)]
enum WriteInner {
    Tcp(tcp::OwnedWriteHalf),
    #[cfg(unix)]
    Unix(unix::OwnedWriteHalf),
    Mem(tokio::io::WriteHalf<DuplexStream>),
    Tls(tokio::io::WriteHalf<Box<TlsConn>>),
}

impl WriteHalf {
    /// The address of the other end.
    pub fn peer_addr(&self) -> &PeerAddr {
        &self.peer
    }

    /// The TLS session, for a TLS stream (see [`Stream::tls`]).
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_deref()
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        dispatch!(&mut self.get_mut().inner, WriteInner, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        dispatch!(&mut self.get_mut().inner, WriteInner, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        dispatch!(&self.inner, WriteInner, s => s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        dispatch!(&mut self.get_mut().inner, WriteInner, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        dispatch!(&mut self.get_mut().inner, WriteInner, s => Pin::new(s).poll_shutdown(cx))
    }
}
