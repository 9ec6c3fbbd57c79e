//! Addresses, listeners and streams for wirecall: tcp, unix sockets, in-memory pipes, and
//! TLS over tcp or unix sockets.
//!
//! This crate moves bytes and nothing else; framing lives in `wirecall-protocol`. It offers
//! one small abstraction so that code above it is written once for every transport:
//!
//! - [`Address`]: `tcp://host:port`, `unix:///path.sock`, `mem://name`, `tls://host:port`
//!   or `tls+unix:///path.sock`, parsed with
//!   [`str::parse`] and printed with [`Display`](std::fmt::Display) (the two round-trip).
//! - [`Listener`]: [`bind`](Listener::bind), [`local_addr`](Listener::local_addr) (the real
//!   port after binding port 0), [`accept`](Listener::accept).
//! - [`Stream`]: [`connect`](Stream::connect), [`connect_timeout`](Stream::connect_timeout),
//!   `AsyncRead + AsyncWrite + Unpin + Send`, [`into_split`](Stream::into_split) into halves
//!   for two tasks, [`peer_addr`](Stream::peer_addr).
//! - [`TransportError`]: every error, with the address in its message, who caused it
//!   ([`origin`](TransportError::origin)) and whether retrying makes sense
//!   ([`is_retryable`](TransportError::is_retryable)).
//!
//! TLS (rustls with the ring provider, no OpenSSL) is just another transport: a `tls://`
//! [`Listener`] hands out streams whose handshake is done, a `tls://` [`Stream::connect`]
//! verifies the server's certificate, and [`Stream::tls`] tells the verified identity of
//! the other end ([`PeerIdentity`], for mutual TLS). Certificates, keys and CAs come from
//! [`TlsServerConfig`] and [`TlsClientConfig`], or from the environment (the table in
//! [`TlsServerConfig::from_env`] and [`TlsClientConfig::from_env`]).
//!
//! TCP streams have `TCP_NODELAY` set on both ends. Unix listeners clean up stale socket files
//! safely and remove their own on drop. `mem://` listeners live in a process-wide registry and
//! are meant for tests and embedding; they behave like sockets (backpressure, end-of-file,
//! half-close) without touching the OS.
//!
//! # Example
//!
//! ```
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use wirecall_transport::{Address, Listener, Stream};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // "tcp://127.0.0.1:0" or "unix:///tmp/echo.sock" work the same way.
//! let address: Address = "mem://echo-example".parse()?;
//! let listener = Listener::bind(&address).await?;
//! let bound = listener.local_addr().clone();
//!
//! let server = tokio::spawn(async move {
//!     let (stream, peer) = listener.accept().await?;
//!     println!("connection from {peer}");
//!     let (mut reader, mut writer) = stream.into_split();
//!     tokio::io::copy(&mut reader, &mut writer).await?;
//!     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
//! });
//!
//! let mut client = Stream::connect(&bound).await?;
//! client.write_all(b"ping").await?;
//! client.shutdown().await?; // half-close: the server sees end-of-file
//! let mut echoed = Vec::new();
//! client.read_to_end(&mut echoed).await?;
//! assert_eq!(echoed, b"ping");
//! server.await?.map_err(|e| e.to_string())?;
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! ```
//! use wirecall_transport::{Address, Origin, Stream};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let err = "tcp://localhost".parse::<Address>().unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "missing port in `tcp://localhost`: write tcp://HOST:PORT, e.g. tcp://127.0.0.1:4000 \
//!      (port 0 picks a free one; IPv6 goes in brackets: tcp://[::1]:4000)"
//! );
//! assert!(!err.is_retryable());
//!
//! let err = Stream::connect(&Address::mem("nobody-here")).await.unwrap_err();
//! assert_eq!(err.origin(), Origin::Peer);
//! assert!(err.is_retryable()); // the listener may not be up yet
//! # }
//! ```

mod address;
mod error;
mod listener;
mod mem;
mod stream;
mod tls;

pub use address::{Address, Host};
pub use error::{Operation, Origin, Result, TransportError};
pub use listener::Listener;
pub use mem::MEM_BUFFER_SIZE;
pub use stream::{PeerAddr, ReadHalf, Stream, WriteHalf};
pub use tls::{
    PeerIdentity, TlsClientConfig, TlsInfo, TlsServerConfig, DEFAULT_TLS_HANDSHAKE_TIMEOUT,
};

use std::net::SocketAddr;

/// The socket addresses to try for a tcp `host:port`, in resolver order.
pub(crate) async fn resolve(
    address: &Address,
    host: &Host,
    port: u16,
) -> Result<Vec<SocketAddr>, TransportError> {
    match host {
        Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, port)]),
        Host::Name(name) => {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(|source| TransportError::Resolve {
                    address: address.to_string(),
                    source,
                })?
                .collect();
            if resolved.is_empty() {
                return Err(TransportError::Resolve {
                    address: address.to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("`{name}` has no IP addresses"),
                    ),
                });
            }
            Ok(resolved)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync_unpin<T: Send + Sync + Unpin + 'static>() {}

    #[test]
    fn public_types_are_send_sync_unpin() {
        assert_send_sync_unpin::<Address>();
        assert_send_sync_unpin::<Listener>();
        assert_send_sync_unpin::<Stream>();
        assert_send_sync_unpin::<ReadHalf>();
        assert_send_sync_unpin::<WriteHalf>();
        assert_send_sync_unpin::<PeerAddr>();
        assert_send_sync_unpin::<TransportError>();
        assert_send_sync_unpin::<TlsServerConfig>();
        assert_send_sync_unpin::<TlsClientConfig>();
        assert_send_sync_unpin::<PeerIdentity>();
    }
}
