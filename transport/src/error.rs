//! The crate's single error type, [`TransportError`], and its classification helpers.

use std::fmt;
use std::io;
use std::time::Duration;

/// Who caused a [`TransportError`], so callers can decide whom to blame in a message
/// (and whether to page an operator, fix a configuration, or just log and move on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Origin {
    /// The caller asked for something impossible: a malformed address, a host name that does
    /// not resolve, a path that cannot be a socket, a name or path that is already taken.
    /// Fix the configuration; retrying the same request will fail the same way.
    User,
    /// This machine or process: permissions, exhausted file descriptors or ports, an OS
    /// facility missing on this platform.
    Local,
    /// The other side or the network between: nothing listening, connection reset, timeout.
    Peer,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::User => "user",
            Origin::Local => "local",
            Origin::Peer => "peer",
        })
    }
}

/// The operation during which an OS-level error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Creating a listener ([`Listener::bind`](crate::Listener::bind)).
    Bind,
    /// Accepting a connection ([`Listener::accept`](crate::Listener::accept)).
    Accept,
    /// Opening a connection ([`Stream::connect`](crate::Stream::connect)).
    Connect,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Bind => "bind",
            Operation::Accept => "accept on",
            Operation::Connect => "connect to",
        })
    }
}

/// Every error this crate returns.
///
/// Each variant names the address involved. Use [`origin`](Self::origin) to learn who caused
/// it and [`is_retryable`](Self::is_retryable) to learn whether trying the same operation
/// again later can succeed. Variants and their fields may grow, so match with `..` and a
/// wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The address text could not be parsed; the message says what is wrong and shows a
    /// valid example.
    #[error("{problem}: {hint}")]
    #[non_exhaustive]
    InvalidAddress {
        /// The text that was parsed (after trimming surrounding whitespace).
        input: String,
        /// What is wrong with it, quoting the input.
        problem: String,
        /// How to write it correctly, with an example.
        hint: String,
    },

    /// The address is well formed but this platform cannot serve it (for example a
    /// `unix://` address on Windows).
    #[error("{address}: {what} is not supported on this platform; use a tcp:// or mem:// address instead")]
    #[non_exhaustive]
    Unsupported {
        /// The address as written.
        address: String,
        /// What is missing, e.g. "unix domain sockets".
        what: &'static str,
    },

    /// A host name did not resolve to any usable IP address.
    #[error(
        "cannot resolve the host in {address}: {source}; check the host name, or use an IP address"
    )]
    #[non_exhaustive]
    Resolve {
        /// The address as written.
        address: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },

    /// A listener could not be created because its name or path is taken, or the path holds
    /// something this crate refuses to delete. Nothing was modified.
    #[error("cannot bind {address}: {reason}")]
    #[non_exhaustive]
    AddressInUse {
        /// The address as written.
        address: String,
        /// Why, and what to do about it.
        reason: String,
    },

    /// An operating-system call failed while binding, accepting or connecting.
    #[error("{operation} {address} failed: {source}{}", hint_for(.operation, .address, .source))]
    #[non_exhaustive]
    Io {
        /// What was being done.
        operation: Operation,
        /// The address involved (for `Accept`, the listener's address).
        address: String,
        /// The underlying error; its [`kind`](io::Error::kind) drives the classification.
        #[source]
        source: io::Error,
    },

    /// A TLS handshake failed, or a TLS connection was refused: a certificate not valid for
    /// the name connected to, one signed by an unknown CA, a missing client certificate, or a
    /// server that does not speak TLS at all. The reason says which and what to do.
    #[error("TLS with {address} failed: {reason}")]
    #[non_exhaustive]
    Tls {
        /// The address as written.
        address: String,
        /// What went wrong and what to do about it.
        reason: String,
    },

    /// A TLS certificate, key or CA could not be loaded: a missing or unreadable file, PEM
    /// with no certificate or key in it, a key that does not match the certificate, or an
    /// environment variable set without its partner.
    #[error("TLS configuration: {problem}")]
    #[non_exhaustive]
    TlsConfig {
        /// What is wrong, naming the file or environment variable, and what to do.
        problem: String,
    },

    /// [`Stream::connect_timeout`](crate::Stream::connect_timeout) gave up.
    #[error("connecting to {address} timed out after {after:?}; check that the server is running and reachable, or raise the timeout")]
    #[non_exhaustive]
    Timeout {
        /// The address as written.
        address: String,
        /// The timeout that expired.
        after: Duration,
    },
}

/// A short "what to do" suffix for the common OS errors.
fn hint_for(operation: &Operation, address: &str, err: &io::Error) -> &'static str {
    use io::ErrorKind as K;
    match (*operation, err.kind()) {
        (Operation::Connect, K::ConnectionRefused) => {
            " (is the server running and listening on this address?)"
        }
        (Operation::Connect, K::NotFound) => {
            " (no socket at this path: is the server running, and is the path right?)"
        }
        (Operation::Bind, K::AddrInUse) => {
            " (something already listens there: pick another port, or port 0 for a free one)"
        }
        (Operation::Bind, K::AddrNotAvailable) => {
            " (this machine has no such local address: bind 127.0.0.1, 0.0.0.0 or one of its own IPs)"
        }
        (Operation::Bind, K::PermissionDenied) => {
            " (ports below 1024 and some directories need extra privileges)"
        }
        (Operation::Bind, K::NotFound) => " (does the parent directory exist?)",
        (Operation::Bind | Operation::Connect, K::InvalidInput) if address.starts_with("unix:") => {
            " (unix socket paths are limited to about 100 bytes: use a shorter path)"
        }
        _ => "",
    }
}

impl TransportError {
    pub(crate) fn invalid(
        input: &str,
        problem: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        TransportError::InvalidAddress {
            input: input.to_owned(),
            problem: problem.into(),
            hint: hint.into(),
        }
    }

    pub(crate) fn io(operation: Operation, address: impl fmt::Display, source: io::Error) -> Self {
        TransportError::Io {
            operation,
            address: address.to_string(),
            source,
        }
    }

    pub(crate) fn tls(address: impl fmt::Display, reason: impl Into<String>) -> Self {
        TransportError::Tls {
            address: address.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn tls_config(problem: impl Into<String>) -> Self {
        TransportError::TlsConfig {
            problem: problem.into(),
        }
    }

    pub(crate) fn in_use(address: impl fmt::Display, reason: impl Into<String>) -> Self {
        TransportError::AddressInUse {
            address: address.to_string(),
            reason: reason.into(),
        }
    }

    /// Who caused this error.
    ///
    /// ```
    /// use wirecall_transport::{Address, Origin};
    /// let err = "tcp://127.0.0.1".parse::<Address>().unwrap_err();
    /// assert_eq!(err.origin(), Origin::User);
    /// ```
    pub fn origin(&self) -> Origin {
        use io::ErrorKind as K;
        match self {
            TransportError::InvalidAddress { .. }
            | TransportError::Resolve { .. }
            | TransportError::AddressInUse { .. }
            | TransportError::TlsConfig { .. } => Origin::User,
            TransportError::Tls { .. } => Origin::Peer,
            TransportError::Unsupported { .. } => Origin::Local,
            TransportError::Timeout { .. } => Origin::Peer,
            TransportError::Io {
                operation, source, ..
            } => match (operation, source.kind()) {
                (
                    _,
                    K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::BrokenPipe
                    | K::UnexpectedEof
                    | K::NotConnected,
                ) => Origin::Peer,
                (
                    Operation::Connect,
                    K::TimedOut | K::HostUnreachable | K::NetworkUnreachable | K::NotFound,
                ) => Origin::Peer,
                (Operation::Bind, K::AddrNotAvailable | K::InvalidInput | K::NotFound) => {
                    Origin::User
                }
                (Operation::Connect, K::InvalidInput) => Origin::User,
                _ => Origin::Local,
            },
        }
    }

    /// Whether repeating the same operation later can reasonably succeed.
    ///
    /// True for transient conditions: connection refused (the server may be starting),
    /// reset or aborted connections, timeouts, unreachable networks, a missing unix socket
    /// file on connect, and exhausted descriptors or memory (the usual per-connection
    /// failures of `accept`, after which the listener stays usable: back off briefly and
    /// accept again). False for everything that needs a configuration change: malformed
    /// addresses, unresolvable hosts, taken names and ports, missing permissions.
    pub fn is_retryable(&self) -> bool {
        use io::ErrorKind as K;
        match self {
            TransportError::InvalidAddress { .. }
            | TransportError::Unsupported { .. }
            | TransportError::Resolve { .. }
            | TransportError::AddressInUse { .. }
            | TransportError::Tls { .. }
            | TransportError::TlsConfig { .. } => false,
            TransportError::Timeout { .. } => true,
            TransportError::Io {
                operation, source, ..
            } => match source.kind() {
                K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::BrokenPipe
                | K::UnexpectedEof
                | K::NotConnected
                | K::TimedOut
                | K::Interrupted
                | K::WouldBlock
                | K::HostUnreachable
                | K::NetworkUnreachable
                | K::NetworkDown
                | K::ResourceBusy
                | K::OutOfMemory => true,
                // A unix socket file that does not exist yet: the server may still be starting.
                K::NotFound => *operation == Operation::Connect,
                // Ephemeral ports exhausted on connect.
                K::AddrNotAvailable => *operation == Operation::Connect,
                _ => is_descriptor_exhaustion(source),
            },
        }
    }

    /// The [`io::ErrorKind`] of the underlying OS error, if there is one. Timeouts report
    /// [`io::ErrorKind::TimedOut`].
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            TransportError::Io { source, .. } | TransportError::Resolve { source, .. } => {
                Some(source.kind())
            }
            TransportError::Timeout { .. } => Some(io::ErrorKind::TimedOut),
            _ => None,
        }
    }

    /// The address this error is about, as written (for `InvalidAddress`, the input text;
    /// empty for `TlsConfig`).
    pub fn address(&self) -> &str {
        match self {
            TransportError::InvalidAddress { input, .. } => input,
            TransportError::Unsupported { address, .. }
            | TransportError::Resolve { address, .. }
            | TransportError::AddressInUse { address, .. }
            | TransportError::Io { address, .. }
            | TransportError::Tls { address, .. }
            | TransportError::Timeout { address, .. } => address,
            TransportError::TlsConfig { .. } => "",
        }
    }
}

/// EMFILE / ENFILE: the process or system ran out of file descriptors. These numbers are the
/// same on Linux, the BSDs and macOS; std has no dedicated `ErrorKind` for them.
fn is_descriptor_exhaustion(err: &io::Error) -> bool {
    cfg!(unix) && matches!(err.raw_os_error(), Some(23 | 24))
}

impl From<TransportError> for io::Error {
    /// Converts into an [`io::Error`] that keeps the kind of the underlying error (or
    /// `InvalidInput` for address problems, `AddrInUse` for taken names, `Unsupported`,
    /// `TimedOut`) and the full message, for code that works in `io::Result`.
    fn from(err: TransportError) -> io::Error {
        let kind = match &err {
            TransportError::InvalidAddress { .. } => io::ErrorKind::InvalidInput,
            TransportError::Unsupported { .. } => io::ErrorKind::Unsupported,
            TransportError::AddressInUse { .. } => io::ErrorKind::AddrInUse,
            TransportError::Timeout { .. } => io::ErrorKind::TimedOut,
            TransportError::Tls { .. } => io::ErrorKind::InvalidData,
            TransportError::TlsConfig { .. } => io::ErrorKind::InvalidInput,
            TransportError::Resolve { source, .. } | TransportError::Io { source, .. } => {
                source.kind()
            }
        };
        io::Error::new(kind, err)
    }
}

/// A `Result` with [`TransportError`] as its error.
pub type Result<T, E = TransportError> = std::result::Result<T, E>;
