//! The one error type of the crate, and the server-side description of a failed call.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use wirecall_protocol::{Cause, ProtocolError};

/// Everything that can go wrong with a remote call, on either side.
///
/// Match on the variant to tell failures apart, or use the predicates
/// ([`Error::is_timeout`], [`Error::is_retryable`], ...). After any per-call error the proxy
/// stays usable: the next call on it can succeed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The connection could not be made, broke, or was closed.
    Transport {
        /// The address involved, as a URL.
        address: String,
        /// What failed.
        message: String,
        /// The underlying error (an I/O or transport error), when there is one; also
        /// reachable through [`std::error::Error::source`].
        source: Option<Source>,
    },
    /// A rule of the wire protocol was broken, by the peer (a malformed frame, a bad
    /// handshake: the connection was closed) or by this side's use of the connection. The
    /// protocol crate's error says which ([`ProtocolError::cause`]) and what to do.
    Protocol(ProtocolError),
    /// The call did not complete within its timeout (the server drops work whose deadline
    /// passed).
    Timeout {
        /// The timeout that expired.
        after: Duration,
    },
    /// The server refused the frame's codec; the connection stays usable with another codec.
    CodecRefused {
        /// The codec that was refused.
        codec: String,
        /// The codecs the server accepts.
        accepted: Vec<String>,
    },
    /// No codec in common at connect time.
    NoCommonCodec {
        /// The codecs the client offered, most preferred first.
        offered: Vec<String>,
        /// The codecs the server accepts.
        accepted: Vec<String>,
    },
    /// No provider is registered under the provider id.
    NoSuchProvider {
        /// The provider id asked for.
        provider_id: u16,
        /// The server's message (names the provider ids that exist).
        message: String,
    },
    /// The provider exposes no method (or attribute) of that name.
    NoSuchMethod {
        /// The RPC name asked for.
        method: String,
        /// The names the provider exposes.
        exposed: Vec<String>,
    },
    /// The arguments do not fit the method's parameters (count, names or types).
    BadArguments {
        /// Which argument and why.
        message: String,
    },
    /// The remote handler returned an error or panicked.
    Remote(RemoteError),
    /// The server is shutting down and refused the call; retry elsewhere or later.
    ShuttingDown {
        /// The server's message.
        message: String,
    },
    /// A hook, or the remote shutdown guard, refused the call.
    PermissionDenied {
        /// The server's message.
        message: String,
    },
    /// Too many calls in flight on the connection; retry when one completes.
    Busy {
        /// The server's message.
        message: String,
    },
    /// A value could not be encoded or decoded with the chosen codec on this side.
    Codec {
        /// The codec error's text.
        message: String,
    },
    /// Local misuse or bad configuration (an unparsable URI, an unknown codec name...).
    Config {
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The call was cancelled.
    Cancelled,
    /// The call was never run: it belongs to a batch that stops at its first error
    /// ([`Proxy::batch`](crate::Proxy::batch)) and an earlier call of the batch failed. Nothing
    /// of it ran on the server, so sending it again is safe once what failed is fixed.
    Skipped {
        /// Which earlier call failed.
        message: String,
    },
    /// A frame of the call is over a limit of the peer's or this side's (frame size,
    /// annotations): the call failed and the connection stays usable.
    LimitExceeded {
        /// Which limit, and by how much.
        message: String,
    },
    /// A name could not be registered, resolved or listed: an invalid name or pattern, a
    /// name that is not registered, a refused overwrite, or a naming backend (name server,
    /// etcd) that cannot be reached.
    Naming {
        /// The name (or pattern, or URI) involved.
        name: String,
        /// What went wrong and what to do.
        message: String,
        /// True when the backend could not be reached: the same request may succeed later.
        unavailable: bool,
    },
}

/// The underlying error of a [`Error::Transport`], shared so that errors stay cheap to
/// clone; two sources are equal when they print the same.
#[derive(Clone)]
pub struct Source(Arc<dyn std::error::Error + Send + Sync>);

impl Source {
    /// Wraps an error.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Source {
        Source(Arc::new(e))
    }

    /// The error.
    pub fn get(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl PartialEq for Source {
    fn eq(&self, other: &Source) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

/// An error raised by a remote handler: its type name, message and trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    /// The Rust type name of the error (or `"panic"` for a handler that panicked).
    pub type_name: String,
    /// The error's message.
    pub message: String,
    /// The error's source chain, one cause per line, outermost first (may be empty).
    pub trace: String,
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.type_name, self.message)?;
        if !self.trace.is_empty() {
            write!(f, "\n+--- remote trace:\n{}", self.trace)?;
        }
        Ok(())
    }
}

impl std::error::Error for RemoteError {}

impl Error {
    /// True when the call timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// True when the same call may succeed if retried (after a reconnect, on another server,
    /// or later): transport failures, timeouts, shutting down and busy.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Protocol(e) => e.is_retryable(),
            _ => matches!(
                self,
                Error::Transport { .. }
                    | Error::Timeout { .. }
                    | Error::ShuttingDown { .. }
                    | Error::Busy { .. }
                    | Error::Naming {
                        unavailable: true,
                        ..
                    }
            ),
        }
    }

    /// True when the connection failed or closed.
    pub fn is_transport(&self) -> bool {
        matches!(self, Error::Transport { .. })
    }

    /// True when the remote handler itself failed (returned an error or panicked).
    pub fn is_remote(&self) -> bool {
        matches!(self, Error::Remote(_))
    }

    /// The remote error, if the handler failed.
    pub fn remote(&self) -> Option<&RemoteError> {
        match self {
            Error::Remote(r) => Some(r),
            _ => None,
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Error {
        Error::Config {
            message: message.into(),
        }
    }

    pub(crate) fn transport(address: impl fmt::Display, message: impl fmt::Display) -> Error {
        Error::Transport {
            address: address.to_string(),
            message: message.to_string(),
            source: None,
        }
    }

    /// A transport error that keeps `e` as its source.
    pub(crate) fn transport_source(
        address: impl fmt::Display,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Transport {
            address: address.to_string(),
            message: e.to_string(),
            source: Some(Source::new(e)),
        }
    }

    /// Who caused the error: this side ([`Cause::Local`]: configuration, encoding, the
    /// caller's arguments or names), the peer or the network ([`Cause::Peer`]: the server's
    /// answer, a broken connection, a protocol violation), or time ([`Cause::Timeout`]).
    pub fn cause(&self) -> Cause {
        match self {
            Error::Timeout { .. } => Cause::Timeout,
            Error::Protocol(e) => e.cause(),
            Error::Config { .. }
            | Error::Codec { .. }
            | Error::LimitExceeded { .. }
            | Error::BadArguments { .. }
            | Error::NoSuchMethod { .. }
            | Error::NoSuchProvider { .. }
            | Error::CodecRefused { .. }
            | Error::NoCommonCodec { .. }
            | Error::PermissionDenied { .. }
            | Error::Cancelled
            | Error::Skipped { .. } => Cause::Local,
            Error::Naming { unavailable, .. } => {
                if *unavailable {
                    Cause::Peer
                } else {
                    Cause::Local
                }
            }
            Error::Transport { .. }
            | Error::Remote(_)
            | Error::ShuttingDown { .. }
            | Error::Busy { .. } => Cause::Peer,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Transport {
                address, message, ..
            } => {
                write!(f, "connection to {address} failed: {message}")
            }
            Error::Protocol(e) => match e.cause() {
                // A deliberate refusal or close, not a broken rule: its message says why.
                _ if matches!(e, ProtocolError::Refused { .. }) => write!(f, "{e}"),
                _ if matches!(e, ProtocolError::PeerClosed { .. }) => {
                    write!(f, "{e} (the next call opens a new one)")
                }
                Cause::Peer => write!(
                    f,
                    "the peer broke the wire protocol: {e} (the connection was closed; the next call opens a new one)"
                ),
                _ => write!(f, "{e}"),
            },
            Error::Timeout { after } => write!(
                f,
                "call timed out after {} ms (raise the proxy's timeout if the method is slow)",
                after.as_millis()
            ),
            Error::CodecRefused { codec, accepted } => write!(
                f,
                "the server refused codec {codec}; it accepts: {} (choose one with Proxy::codec)",
                accepted.join(", ")
            ),
            Error::NoCommonCodec { offered, accepted } => write!(
                f,
                "no codec in common: the client offered {} but the server accepts {}",
                offered.join(", "),
                accepted.join(", ")
            ),
            Error::NoSuchProvider {
                provider_id,
                message,
            } => write!(f, "no provider with id {provider_id}: {message}"),
            Error::NoSuchMethod { method, exposed } => write!(
                f,
                "no such method `{method}`; the provider exposes: {}",
                if exposed.is_empty() {
                    "nothing".to_string()
                } else {
                    exposed.join(", ")
                }
            ),
            Error::BadArguments { message } => write!(f, "bad arguments: {message}"),
            Error::Remote(r) => write!(f, "remote error: {r}"),
            Error::ShuttingDown { message } => write!(f, "server shutting down: {message}"),
            Error::PermissionDenied { message } => write!(f, "permission denied: {message}"),
            Error::Busy { message } => write!(f, "server busy: {message}"),
            Error::Codec { message } => write!(f, "codec error: {message}"),
            Error::Config { message } => write!(f, "configuration error: {message}"),
            Error::Cancelled => f.write_str("the call was cancelled"),
            Error::Skipped { message } => write!(
                f,
                "skipped: {message} (it never ran; fix the failed call and send it again)"
            ),
            Error::LimitExceeded { message } => write!(
                f,
                "over a limit: {message} (send less per call, or raise the limit on the receiving side)"
            ),
            Error::Naming { name, message, .. } => write!(f, "naming: `{name}`: {message}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Protocol(e) => Some(e),
            Error::Transport {
                source: Some(s), ..
            } => Some(s.get()),
            Error::Remote(r) => Some(r),
            _ => None,
        }
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Error {
        Error::Protocol(e)
    }
}

/// What kind of failure a [`Fault`] reports; mapped onto the wire's error codes by a dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultKind {
    /// The handler returned an error or panicked.
    Application,
    /// The arguments could not be decoded.
    BadArguments,
    /// No provider with that id.
    UnknownProvider,
    /// No method with that name.
    UnknownMethod,
    /// The frame's codec is not accepted.
    CodecRefused,
    /// The deadline passed before the work was done.
    DeadlineExceeded,
    /// The server is finalizing.
    ShuttingDown,
    /// A hook or guard refused the call.
    PermissionDenied,
    /// Too many calls in flight.
    Busy,
    /// The server failed for a reason of its own (e.g. the result could not be encoded).
    Internal,
    /// The caller cancelled the call.
    Cancelled,
    /// A frame is over a limit (e.g. a result larger than the caller accepts).
    LimitExceeded,
    /// A call of an ordered batch not run because an earlier call of the batch failed.
    Skipped,
}

use wirecall_protocol::ErrorCode;

/// The one table between fault kinds and the wire's error codes (SPEC §9), read both ways.
const CODES: [(FaultKind, ErrorCode); 13] = [
    (FaultKind::Application, ErrorCode::APPLICATION_ERROR),
    (FaultKind::BadArguments, ErrorCode::BAD_ARGUMENTS),
    (FaultKind::UnknownProvider, ErrorCode::UNKNOWN_PROVIDER),
    (FaultKind::UnknownMethod, ErrorCode::UNKNOWN_METHOD),
    (FaultKind::CodecRefused, ErrorCode::CODEC_REFUSED),
    (FaultKind::DeadlineExceeded, ErrorCode::DEADLINE_EXCEEDED),
    (FaultKind::ShuttingDown, ErrorCode::SHUTTING_DOWN),
    (FaultKind::PermissionDenied, ErrorCode::PERMISSION_DENIED),
    (FaultKind::Busy, ErrorCode::TOO_MANY_IN_FLIGHT),
    (FaultKind::Internal, ErrorCode::INTERNAL_ERROR),
    (FaultKind::Cancelled, ErrorCode::CANCELLED),
    (FaultKind::LimitExceeded, ErrorCode::LIMIT_EXCEEDED),
    (FaultKind::Skipped, ErrorCode::SKIPPED),
];

impl FaultKind {
    /// The wire code reporting this kind.
    pub fn code(self) -> ErrorCode {
        CODES
            .iter()
            .find(|(k, _)| *k == self)
            .map_or(ErrorCode::INTERNAL_ERROR, |(_, c)| *c)
    }

    /// The kind a wire code reports; `TIMEOUT` reads as a passed deadline, and codes this
    /// version does not know as [`FaultKind::Internal`].
    pub fn from_code(code: ErrorCode) -> FaultKind {
        if code == ErrorCode::TIMEOUT {
            return FaultKind::DeadlineExceeded;
        }
        CODES
            .iter()
            .find(|(_, c)| *c == code)
            .map_or(FaultKind::Internal, |(k, _)| *k)
    }
}

/// A failed call as the server describes it, independent of any frame format.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// What kind of failure.
    pub kind: FaultKind,
    /// The error's type name (may be empty).
    pub type_name: String,
    /// The message.
    pub message: String,
    /// Remote trace, one line per cause (may be empty).
    pub trace: String,
    /// Names that help the caller: the exposed methods for `UnknownMethod`, the accepted
    /// codecs for `CodecRefused`, the provider ids for `UnknownProvider`.
    pub names: Vec<String>,
}

impl Fault {
    /// A fault with a kind and message.
    pub fn new(kind: FaultKind, message: impl Into<String>) -> Fault {
        Fault {
            kind,
            type_name: String::new(),
            message: message.into(),
            trace: String::new(),
            names: Vec::new(),
        }
    }

    /// An application error with type name, message and trace.
    pub fn application(
        type_name: impl Into<String>,
        message: impl Into<String>,
        trace: impl Into<String>,
    ) -> Fault {
        Fault {
            kind: FaultKind::Application,
            type_name: type_name.into(),
            message: message.into(),
            trace: trace.into(),
            names: Vec::new(),
        }
    }

    /// Converts the fault into the client-side error for a call of `method` on `provider_id`.
    pub fn into_error(self, provider_id: u16, method: &str) -> Error {
        match self.kind {
            FaultKind::Application => Error::Remote(RemoteError {
                type_name: self.type_name,
                message: self.message,
                trace: self.trace,
            }),
            FaultKind::BadArguments => Error::BadArguments {
                message: self.message,
            },
            FaultKind::UnknownProvider => Error::NoSuchProvider {
                provider_id,
                message: self.message,
            },
            FaultKind::UnknownMethod => Error::NoSuchMethod {
                method: method.to_string(),
                exposed: self.names,
            },
            FaultKind::CodecRefused => Error::CodecRefused {
                codec: self.type_name,
                accepted: self.names,
            },
            FaultKind::DeadlineExceeded => Error::Timeout {
                after: Duration::ZERO,
            },
            FaultKind::ShuttingDown => Error::ShuttingDown {
                message: self.message,
            },
            FaultKind::PermissionDenied => Error::PermissionDenied {
                message: self.message,
            },
            FaultKind::Busy => Error::Busy {
                message: self.message,
            },
            FaultKind::Internal => Error::Remote(RemoteError {
                type_name: "wirecall::InternalError".into(),
                message: self.message,
                trace: self.trace,
            }),
            FaultKind::Cancelled => Error::Cancelled,
            FaultKind::LimitExceeded => Error::LimitExceeded {
                message: self.message,
            },
            FaultKind::Skipped => Error::Skipped {
                message: self.message,
            },
        }
    }

    /// The fixed binary body of an ERROR frame reporting this fault (SPEC §7): the accepted
    /// codecs of a refused codec and the names a server exposes travel in typed fields.
    pub(crate) fn into_body(self) -> wirecall_protocol::ErrorBody {
        let (accepted, names) = match self.kind {
            FaultKind::CodecRefused => (
                self.names
                    .iter()
                    .filter_map(|n| crate::CodecId::from_builtin_name(n))
                    .collect(),
                Vec::new(),
            ),
            FaultKind::UnknownMethod | FaultKind::UnknownProvider => (Vec::new(), self.names),
            _ => (Vec::new(), Vec::new()),
        };
        wirecall_protocol::ErrorBody {
            code: self.kind.code(),
            type_name: self.type_name,
            message: self.message,
            trace: self.trace,
            accepted,
            names,
            detail: bytes::Bytes::new(),
        }
    }

    /// The fault an ERROR frame's body reports; the accepted codecs of a refused codec and
    /// the names exposed by the server come from the body's typed fields.
    pub(crate) fn from_body(body: wirecall_protocol::ErrorBody) -> Fault {
        let kind = FaultKind::from_code(body.code);
        let names = if kind == FaultKind::CodecRefused {
            body.accepted.iter().map(|c| c.to_string()).collect()
        } else {
            body.names
        };
        Fault {
            kind,
            type_name: body.type_name,
            message: body.message,
            trace: body.trace,
            names,
        }
    }
}
