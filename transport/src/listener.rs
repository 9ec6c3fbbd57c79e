//! [`Listener`]: accepts [`Stream`]s on a tcp port, a unix socket path or an in-process name.

use tokio::net::TcpListener;

use crate::address::{Address, Host};
use crate::error::{Operation, TransportError};
use crate::mem::MemListener;
use crate::stream::{PeerAddr, Stream};

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
#[derive(Debug)]
pub struct Listener {
    inner: ListenerInner,
    local: Address,
}

#[derive(Debug)]
enum ListenerInner {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(unix::UnixSocketListener),
    Mem(MemListener),
}

impl Listener {
    /// Binds a listener to `address`. Must run inside a Tokio runtime with the IO and time
    /// drivers enabled (`enable_all`).
    pub async fn bind(address: &Address) -> Result<Listener, TransportError> {
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
        }
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
