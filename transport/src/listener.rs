//! [`Listener`]: accepts [`Stream`]s on a tcp port, a unix socket path or an in-process name,
//! with or without TLS.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::net::TcpListener;

use crate::address::{Address, Host};
use crate::error::{Operation, TransportError};
use crate::mem::MemListener;
use crate::stream::{PeerAddr, Stream};
use crate::tls::{self, Socket, TlsServerConfig};

/// TLS handshakes a listener runs at once; past this many, new connections wait in the
/// kernel's backlog until some finish (each is bounded by the handshake timeout).
const MAX_PENDING_HANDSHAKES: usize = 4096;

/// A bound listener for any [`Address`] scheme.
///
/// - `tcp://`: binds the first resolved IP that works; port `0` picks a free port, reported
///   by [`local_addr`](Self::local_addr). Accepted streams get `TCP_NODELAY`.
/// - `unix://`: if the path already exists, it is deleted only when it is a socket file that
///   nobody listens on (checked by connecting to it); a regular file, a directory or a live
///   socket is refused with [`TransportError::AddressInUse`] and left alone. The socket file
///   is removed when the listener is dropped, unless something else has replaced it.
/// - `mem://`: registers the name in this process; the name is taken until the listener is
///   dropped. `mem://` or `mem://0` picks a unique name.
/// - `tls://` and `tls+unix://`: as tcp and unix, and every accepted connection runs the
///   TLS handshake before [`accept`](Self::accept) returns it. Handshakes run side by side
///   (a slow client holds up no other) while `accept` is being awaited, each within the
///   configuration's [handshake timeout](TlsServerConfig::handshake_timeout); one that fails
///   is logged and dropped, and `accept` goes on waiting. A client that speaks plaintext is
///   sent the [plaintext reply](Self::set_plaintext_reply), if any, and closed.
pub struct Listener {
    inner: ListenerInner,
    local: Address,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

enum ListenerInner {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(unix::UnixSocketListener),
    Mem(MemListener),
    Tls(Box<TlsListener>),
}

impl Listener {
    /// Binds a listener to `address`. Must run inside a Tokio runtime with the IO and time
    /// drivers enabled (`enable_all`).
    ///
    /// A `tls://` or `tls+unix://` address takes its certificate and key from the
    /// environment ([`TlsServerConfig::from_env`]: `WIRECALL_TLS_CERT`, `WIRECALL_TLS_KEY`,
    /// and `WIRECALL_TLS_CLIENT_CA` for mutual TLS); [`bind_tls`](Self::bind_tls) takes them
    /// explicitly.
    pub async fn bind(address: &Address) -> Result<Listener, TransportError> {
        match address {
            Address::Tls { .. } | Address::TlsUnix { .. } => match TlsServerConfig::from_env()? {
                Some(config) => Listener::bind_tls(address, config).await,
                None => Err(TransportError::tls_config(format!(
                    "{address} needs a certificate and key: set WIRECALL_TLS_CERT and \
                     WIRECALL_TLS_KEY to PEM files (or pass a TlsServerConfig to \
                     Listener::bind_tls / the server builder's tls())"
                ))),
            },
            _ => Listener::bind_plain(address).await,
        }
    }

    async fn bind_plain(address: &Address) -> Result<Listener, TransportError> {
        match address {
            Address::Tcp { host, port } => bind_tcp(address, host, *port).await,
            Address::Unix { path } => bind_unix(address, path).await,
            Address::Mem { name } => {
                let listener = MemListener::bind(name)?;
                let local = Address::mem(listener.name());
                Ok(Listener {
                    inner: ListenerInner::Mem(listener),
                    local,
                })
            }
            Address::Tls { host, port } => bind_tcp(address, host, *port).await,
            Address::TlsUnix { path } => bind_unix(address, path).await,
        }
    }

    /// Binds a listener to `address`, using `tls` for `tls://` and `tls+unix://` addresses;
    /// other addresses bind as with [`bind`](Self::bind) and do not use it.
    pub async fn bind_tls(
        address: &Address,
        tls: TlsServerConfig,
    ) -> Result<Listener, TransportError> {
        let plain = match address {
            Address::Tls { .. } | Address::TlsUnix { .. } => Listener::bind_plain(address).await?,
            _ => return Listener::bind_plain(address).await,
        };
        let socket = match plain.inner {
            ListenerInner::Tcp(l) => PlainListener::Tcp(l),
            #[cfg(unix)]
            ListenerInner::Unix(l) => PlainListener::Unix(l),
            ListenerInner::Mem(_) | ListenerInner::Tls(_) => {
                return Err(TransportError::tls_config(format!(
                    "internal error: {address} did not bind a socket"
                )))
            }
        };
        let local = plain.local.with_tls();
        tracing::debug!(%address, %local, client_certs = tls.requires_client_cert(), "bound TLS listener");
        Ok(Listener {
            inner: ListenerInner::Tls(Box::new(TlsListener {
                socket,
                local_text: local.to_string().into(),
                config: tls,
                plaintext_reply: None,
                pending: Mutex::new(FuturesUnordered::new()),
            })),
            local,
        })
    }

    /// Bytes a TLS listener sends to a client that speaks plaintext to it, before closing
    /// the connection: a server puts a refusal in its own protocol here, so that a client
    /// that forgot TLS learns why at once instead of seeing the connection close. No effect
    /// on other listeners.
    pub fn set_plaintext_reply(&mut self, reply: impl Into<Vec<u8>>) {
        if let ListenerInner::Tls(l) = &mut self.inner {
            l.plaintext_reply = Some(Arc::from(reply.into()));
        }
    }

    /// Whether connections accepted here are TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.inner, ListenerInner::Tls(_))
    }

    /// The address this listener is bound to, ready to hand to [`Stream::connect`]: the real
    /// IP and port for tcp (after port `0`), the absolute socket path for unix, the actual
    /// (possibly generated) name for mem.
    pub fn local_addr(&self) -> &Address {
        &self.local
    }

    /// Waits for the next connection.
    ///
    /// Cancel-safe: if the future is dropped (say, in a `tokio::select!` with a shutdown
    /// signal), no connection is lost. An error here usually concerns one connection or a
    /// momentary shortage (see [`TransportError::is_retryable`]); the listener stays usable,
    /// so log it, back off briefly on resource exhaustion, and accept again.
    pub async fn accept(&self) -> Result<(Stream, PeerAddr), TransportError> {
        match &self.inner {
            ListenerInner::Tcp(listener) => {
                let (stream, peer) = listener
                    .accept()
                    .await
                    .map_err(|e| TransportError::io(Operation::Accept, &self.local, e))?;
                // Failing here means the peer already went away (some systems answer EINVAL);
                // the first read will say so, and the accept loop must not stop for it.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(local = %self.local, %peer, error = %e, "cannot set TCP_NODELAY on accepted stream");
                }
                tracing::trace!(local = %self.local, %peer, "accepted");
                let stream = Stream::from_tcp(stream, peer);
                let peer = stream.peer_addr().clone();
                Ok((stream, peer))
            }
            #[cfg(unix)]
            ListenerInner::Unix(listener) => {
                let stream = listener.accept(&self.local).await?;
                let peer = stream.peer_addr().clone();
                Ok((stream, peer))
            }
            ListenerInner::Mem(listener) => {
                let pending = listener.accept().await?;
                let stream = Stream::from_mem(
                    pending.stream,
                    listener.name().to_owned(),
                    pending.connection,
                );
                let peer = stream.peer_addr().clone();
                Ok((stream, peer))
            }
            ListenerInner::Tls(listener) => {
                std::future::poll_fn(|cx| listener.poll_accept(cx, &self.local)).await
            }
        }
    }
}

/// The socket listener under a TLS listener.
enum PlainListener {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(unix::UnixSocketListener),
}

impl PlainListener {
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<(Socket, PeerAddr)>> {
        match self {
            PlainListener::Tcp(l) => l.poll_accept(cx).map_ok(|(stream, peer)| {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY on accepted stream");
                }
                (Socket::tcp(stream), PeerAddr::Tcp(peer))
            }),
            #[cfg(unix)]
            PlainListener::Unix(l) => l
                .poll_accept(cx)
                .map_ok(|(stream, path)| (Socket::unix(stream), PeerAddr::Unix { path })),
        }
    }
}

type Handshake = Pin<Box<dyn Future<Output = Option<(Stream, PeerAddr)>> + Send>>;

/// A socket listener whose connections run the TLS handshake before they are handed out.
struct TlsListener {
    socket: PlainListener,
    local_text: Arc<str>,
    config: TlsServerConfig,
    plaintext_reply: Option<Arc<[u8]>>,
    /// Handshakes under way, polled by whoever awaits `accept`.
    pending: Mutex<FuturesUnordered<Handshake>>,
}

impl TlsListener {
    fn poll_accept(
        &self,
        cx: &mut Context<'_>,
        local: &Address,
    ) -> Poll<Result<(Stream, PeerAddr), TransportError>> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        while pending.len() < MAX_PENDING_HANDSHAKES {
            match self.socket.poll_accept(cx) {
                Poll::Ready(Ok((socket, peer))) => {
                    tracing::trace!(%local, %peer, "accepted, TLS handshake next");
                    let (config, timeout) = (self.config.rustls(), self.config.timeout());
                    let (local, reply) = (self.local_text.clone(), self.plaintext_reply.clone());
                    pending.push(Box::pin(async move {
                        let (conn, info) =
                            tls::accept(local, peer.to_string(), socket, config, timeout, reply)
                                .await?;
                        let stream = Stream::from_tls(conn, info, peer.clone());
                        Some((stream, peer))
                    }));
                }
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Err(TransportError::io(Operation::Accept, local, e)))
                }
                Poll::Pending => break,
            }
        }
        loop {
            match pending.poll_next_unpin(cx) {
                Poll::Ready(Some(Some(accepted))) => return Poll::Ready(Ok(accepted)),
                // A failed handshake (logged): wait for the others.
                Poll::Ready(Some(None)) => continue,
                // None under way: the socket's accept will wake us.
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

async fn bind_tcp(address: &Address, host: &Host, port: u16) -> Result<Listener, TransportError> {
    let candidates = crate::resolve(address, host, port).await?;
    let mut last_error = None;
    for candidate in candidates {
        match TcpListener::bind(candidate).await {
            Ok(listener) => {
                let bound = listener
                    .local_addr()
                    .map_err(|e| TransportError::io(Operation::Bind, address, e))?;
                let local = Address::from(bound);
                tracing::debug!(%address, %local, "bound tcp listener");
                return Ok(Listener {
                    inner: ListenerInner::Tcp(listener),
                    local,
                });
            }
            Err(e) => {
                tracing::debug!(%address, %candidate, error = %e, "bind attempt failed");
                last_error = Some(e);
            }
        }
    }
    Err(TransportError::io(
        Operation::Bind,
        address,
        last_error.unwrap_or_else(|| std::io::Error::other("the host resolved to no addresses")),
    ))
}

#[cfg(unix)]
async fn bind_unix(address: &Address, path: &std::path::Path) -> Result<Listener, TransportError> {
    let listener = unix::UnixSocketListener::bind(address, path).await?;
    let local = Address::unix(listener.path());
    Ok(Listener {
        inner: ListenerInner::Unix(listener),
        local,
    })
}

#[cfg(not(unix))]
async fn bind_unix(address: &Address, _path: &std::path::Path) -> Result<Listener, TransportError> {
    Err(TransportError::Unsupported {
        address: address.to_string(),
        what: "unix domain sockets",
    })
}

#[cfg(unix)]
mod unix {
    use std::io;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use tokio::net::{UnixListener, UnixStream};

    use crate::address::Address;
    use crate::error::{Operation, TransportError};
    use crate::stream::Stream;

    /// How long the liveness probe of an existing socket file may take. A live listener
    /// answers at once; only one with a full backlog makes the probe wait, and that one is
    /// live too.
    const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

    /// A unix listener that removes its socket file when dropped.
    #[derive(Debug)]
    pub(super) struct UnixSocketListener {
        listener: UnixListener,
        path: PathBuf,
        /// Device and inode of the socket file we created, to avoid deleting a file that
        /// someone else put in its place.
        identity: Option<(u64, u64)>,
    }

    impl UnixSocketListener {
        pub(super) async fn bind(address: &Address, path: &Path) -> Result<Self, TransportError> {
            let path = if path.is_absolute() {
                path.to_owned()
            } else {
                std::env::current_dir()
                    .map_err(|e| TransportError::io(Operation::Bind, address, e))?
                    .join(path)
            };
            remove_stale_socket(address, &path).await?;
            let listener = UnixListener::bind(&path)
                .map_err(|e| TransportError::io(Operation::Bind, address, e))?;
            let identity = std::fs::symlink_metadata(&path)
                .ok()
                .map(|meta| (meta.dev(), meta.ino()));
            tracing::debug!(%address, path = %path.display(), "bound unix listener");
            Ok(UnixSocketListener {
                listener,
                path,
                identity,
            })
        }

        pub(super) fn path(&self) -> &Path {
            &self.path
        }

        pub(super) fn poll_accept(
            &self,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<(UnixStream, Option<PathBuf>)>> {
            self.listener
                .poll_accept(cx)
                .map_ok(|(stream, peer)| (stream, peer.as_pathname().map(Path::to_owned)))
        }

        pub(super) async fn accept(&self, local: &Address) -> Result<Stream, TransportError> {
            let (stream, peer) = self
                .listener
                .accept()
                .await
                .map_err(|e| TransportError::io(Operation::Accept, local, e))?;
            tracing::trace!(%local, "accepted");
            Ok(Stream::from_unix(
                stream,
                peer.as_pathname().map(Path::to_owned),
            ))
        }
    }

    impl Drop for UnixSocketListener {
        fn drop(&mut self) {
            let Some(identity) = self.identity else {
                return;
            };
            let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|meta| {
                meta.file_type().is_socket() && (meta.dev(), meta.ino()) == identity
            });
            if ours {
                match std::fs::remove_file(&self.path) {
                    Ok(()) => tracing::debug!(path = %self.path.display(), "removed socket file"),
                    Err(e) => {
                        tracing::warn!(path = %self.path.display(), error = %e, "cannot remove socket file")
                    }
                }
            }
        }
    }

    /// Deletes `path` if it is a socket file nobody listens on; refuses anything else.
    async fn remove_stale_socket(address: &Address, path: &Path) -> Result<(), TransportError> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(TransportError::io(Operation::Bind, address, e)),
        };
        let file_type = meta.file_type();
        if !file_type.is_socket() {
            let what = if file_type.is_dir() {
                "a directory"
            } else if file_type.is_symlink() {
                "a symbolic link"
            } else if file_type.is_file() {
                "a regular file"
            } else {
                "not a socket"
            };
            return Err(TransportError::in_use(
                address,
                format!(
                    "`{}` already exists and is {what}, not a socket; refusing to delete it: \
                     choose another path, or remove it yourself if it is yours",
                    path.display()
                ),
            ));
        }
        match tokio::time::timeout(PROBE_TIMEOUT, UnixStream::connect(path)).await {
            Ok(Ok(_)) | Err(_) => Err(TransportError::in_use(
                address,
                format!(
                    "a listener is live on `{}`; stop it first, or choose another path",
                    path.display()
                ),
            )),
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path)
                    .map_err(|e| TransportError::io(Operation::Bind, address, e))?;
                tracing::info!(path = %path.display(), "removed stale socket file nobody listened on");
                Ok(())
            }
            // Removed by someone else in the meantime: nothing left to clean up.
            Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Ok(Err(e)) => Err(TransportError::io(Operation::Bind, address, e)),
        }
    }
}
