//! [`Address`]: where to listen or connect, written as a URL.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::TransportError;

const TCP_HINT: &str = "write tcp://HOST:PORT, e.g. tcp://127.0.0.1:4000 \
     (port 0 picks a free one; IPv6 goes in brackets: tcp://[::1]:4000)";
const UNIX_HINT: &str = "write unix:///ABSOLUTE/PATH (or unix://RELATIVE/PATH), \
     e.g. unix:///tmp/wirecall.sock";
const MEM_HINT: &str = "write mem://NAME, e.g. mem://my-service \
     (mem:// or mem://0 picks a unique name when binding)";
const SCHEMES_HINT: &str = "the known schemes are tcp, unix, mem, tls and tls+unix, \
     e.g. tcp://127.0.0.1:4000, unix:///tmp/wirecall.sock, mem://my-service or tls://example.org:4000";

/// The longest host name DNS allows.
const MAX_HOST_NAME: usize = 253;
/// A generous bound on in-process names, to keep error messages and maps sane.
const MAX_MEM_NAME: usize = 255;

/// The host part of a `tcp://` address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// A literal IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A DNS name (or `localhost`), resolved each time a listener binds or a stream
    /// connects. [`Address::from_str`] only accepts names made of letters, digits, `-`, `_`
    /// and `.`.
    Name(String),
}

impl fmt::Display for Host {
    /// IPv6 addresses are written in brackets, as they appear in a URL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Self {
        Host::Ip(ip)
    }
}

impl From<Ipv4Addr> for Host {
    fn from(ip: Ipv4Addr) -> Self {
        Host::Ip(IpAddr::V4(ip))
    }
}

impl From<Ipv6Addr> for Host {
    fn from(ip: Ipv6Addr) -> Self {
        Host::Ip(IpAddr::V6(ip))
    }
}

/// Where to listen or connect, written as a URL.
///
/// | form | meaning |
/// |---|---|
/// | `tcp://127.0.0.1:4000`, `tcp://[::1]:4000`, `tcp://example.org:4000` | TCP; host names resolve at bind/connect time; port `0` lets the OS pick a free port when binding |
/// | `unix:///run/app.sock` | a unix domain socket at an absolute path |
/// | `unix://run/app.sock` | a unix domain socket at a path relative to the working directory at bind/connect time |
/// | `mem://name` | an in-process pipe, found by name in a process-wide registry; `mem://` or `mem://0` picks a unique name when binding |
/// | `tls://example.org:4000`, `tls://127.0.0.1:4000` | TLS over TCP: same host and port rules as `tcp://`; a client checks the server's certificate against the host (see [`TlsClientConfig`](crate::TlsClientConfig)) |
/// | `tls+unix:///run/app.sock` | TLS over a unix domain socket; a client checks the certificate against `localhost` unless [`TlsClientConfig::server_name`](crate::TlsClientConfig::server_name) says otherwise |
///
/// Parsing ([`FromStr`]) trims surrounding whitespace, accepts the scheme in any case, and
/// rejects anything else (paths or queries on tcp, missing ports, IPv6 without brackets...)
/// with a [`TransportError::InvalidAddress`] that shows a valid example. [`Display`](fmt::Display)
/// writes the canonical form, which parses back to an equal `Address`.
///
/// Everything after `unix://` is the path, taken literally (no percent-decoding); only
/// UTF-8 paths survive a print/parse round trip.
///
/// ```
/// use wirecall_transport::{Address, Host};
/// let addr: Address = "tcp://[::1]:4000".parse()?;
/// assert_eq!(addr, Address::tcp(std::net::Ipv6Addr::LOCALHOST, 4000));
/// assert_eq!(addr.to_string(), "tcp://[::1]:4000");
///
/// let err = "tcp://127.0.0.1".parse::<Address>().unwrap_err();
/// assert!(err.to_string().contains("e.g. tcp://127.0.0.1:4000"));
/// # Ok::<(), wirecall_transport::TransportError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Address {
    /// `tcp://host:port`.
    Tcp {
        /// IP address or DNS name.
        host: Host,
        /// Port; `0` means "any free port" when binding.
        port: u16,
    },
    /// `unix://path`: a unix domain socket. Parsed on every platform; binding or connecting
    /// fails with [`TransportError::Unsupported`] where unix sockets do not exist.
    Unix {
        /// The socket file's path, absolute or relative to the working directory.
        path: PathBuf,
    },
    /// `mem://name`: an in-process connection, for tests and embedding.
    Mem {
        /// The listener's name; empty or `0` picks a unique name when binding.
        name: String,
    },
    /// `tls://host:port`: TLS over TCP.
    Tls {
        /// IP address or DNS name; a client verifies the server's certificate for it.
        host: Host,
        /// Port; `0` means "any free port" when binding.
        port: u16,
    },
    /// `tls+unix://path`: TLS over a unix domain socket.
    TlsUnix {
        /// The socket file's path, absolute or relative to the working directory.
        path: PathBuf,
    },
}

impl Address {
    /// A `tcp://` address.
    pub fn tcp(host: impl Into<Host>, port: u16) -> Self {
        Address::Tcp {
            host: host.into(),
            port,
        }
    }

    /// A `unix://` address.
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        Address::Unix { path: path.into() }
    }

    /// A `mem://` address.
    pub fn mem(name: impl Into<String>) -> Self {
        Address::Mem { name: name.into() }
    }

    /// A `tls://` address (TLS over TCP).
    pub fn tls(host: impl Into<Host>, port: u16) -> Self {
        Address::Tls {
            host: host.into(),
            port,
        }
    }

    /// A `tls+unix://` address (TLS over a unix domain socket).
    pub fn tls_unix(path: impl Into<PathBuf>) -> Self {
        Address::TlsUnix { path: path.into() }
    }

    /// The URL scheme: `"tcp"`, `"unix"`, `"mem"`, `"tls"` or `"tls+unix"`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Address::Tcp { .. } => "tcp",
            Address::Unix { .. } => "unix",
            Address::Mem { .. } => "mem",
            Address::Tls { .. } => "tls",
            Address::TlsUnix { .. } => "tls+unix",
        }
    }

    /// Whether connections to this address use TLS (`tls://`, `tls+unix://`).
    pub fn is_tls(&self) -> bool {
        matches!(self, Address::Tls { .. } | Address::TlsUnix { .. })
    }

    /// The port of a `tcp://` or `tls://` address.
    pub fn port(&self) -> Option<u16> {
        match self {
            Address::Tcp { port, .. } | Address::Tls { port, .. } => Some(*port),
            _ => None,
        }
    }

    /// The host of a `tcp://` or `tls://` address.
    pub fn host(&self) -> Option<&Host> {
        match self {
            Address::Tcp { host, .. } | Address::Tls { host, .. } => Some(host),
            _ => None,
        }
    }

    /// The path of a `unix://` or `tls+unix://` address.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Address::Unix { path } | Address::TlsUnix { path } => Some(path),
            _ => None,
        }
    }

    /// The same place without TLS: `tls://h:p` becomes `tcp://h:p`, `tls+unix://p`
    /// becomes `unix://p`; other addresses are returned unchanged.
    pub fn without_tls(&self) -> Address {
        match self {
            Address::Tls { host, port } => Address::Tcp {
                host: host.clone(),
                port: *port,
            },
            Address::TlsUnix { path } => Address::Unix { path: path.clone() },
            other => other.clone(),
        }
    }

    /// The same place with TLS: `tcp://h:p` becomes `tls://h:p`, `unix://p` becomes
    /// `tls+unix://p`; `mem://` and TLS addresses are returned unchanged.
    pub fn with_tls(&self) -> Address {
        match self {
            Address::Tcp { host, port } => Address::Tls {
                host: host.clone(),
                port: *port,
            },
            Address::Unix { path } => Address::TlsUnix { path: path.clone() },
            other => other.clone(),
        }
    }

    /// The name of a `mem://` address.
    pub fn mem_name(&self) -> Option<&str> {
        match self {
            Address::Mem { name } => Some(name),
            _ => None,
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Self {
        Address::tcp(addr.ip(), addr.port())
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Address::Unix { path } => write!(f, "unix://{}", path.display()),
            Address::Mem { name } => write!(f, "mem://{name}"),
            Address::Tls { host, port } => write!(f, "tls://{host}:{port}"),
            Address::TlsUnix { path } => write!(f, "tls+unix://{}", path.display()),
        }
    }
}

impl FromStr for Address {
    type Err = TransportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

impl TryFrom<&str> for Address {
    type Error = TransportError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        parse(s)
    }
}

fn parse(raw: &str) -> Result<Address, TransportError> {
    let input = raw.trim();
    if input.is_empty() {
        return Err(TransportError::invalid(
            input,
            "empty address",
            SCHEMES_HINT,
        ));
    }
    let Some((scheme, rest)) = input.split_once("://") else {
        return Err(missing_scheme(input));
    };
    if scheme.eq_ignore_ascii_case("tcp") {
        parse_tcp(input, rest)
    } else if scheme.eq_ignore_ascii_case("unix") {
        parse_unix(input, rest)
    } else if scheme.eq_ignore_ascii_case("mem") {
        parse_mem(input, rest)
    } else if scheme.eq_ignore_ascii_case("tls") {
        // The tcp rules and messages, with the tls scheme in the hints.
        parse_tcp(input, rest)
            .map(|a| a.with_tls())
            .map_err(|e| match e {
                TransportError::InvalidAddress {
                    input,
                    problem,
                    hint,
                } => TransportError::invalid(
                    &input,
                    problem.replace("tcp://", "tls://"),
                    hint.replace("tcp://", "tls://"),
                ),
                other => other,
            })
    } else if scheme.eq_ignore_ascii_case("tls+unix") {
        parse_unix(input, rest)
            .map(|a| a.with_tls())
            .map_err(|e| match e {
                TransportError::InvalidAddress {
                    input,
                    problem,
                    hint,
                } => {
                    TransportError::invalid(&input, problem, hint.replace("unix://", "tls+unix://"))
                }
                other => other,
            })
    } else {
        let hint = match scheme.to_ascii_lowercase().as_str() {
            "tcp4" | "tcp6" | "http" | "ws" | "grpc" => {
                format!("{SCHEMES_HINT}; for TCP write tcp://HOST:PORT")
            }
            "https" | "ssl" | "tcps" | "tcp+tls" | "wss" | "grpcs" => {
                format!("{SCHEMES_HINT}; for TLS write tls://HOST:PORT")
            }
            "unix+tls" | "unixs" => {
                format!("{SCHEMES_HINT}; for TLS over a unix socket write tls+unix:///PATH")
            }
            "ipc" | "uds" | "file" => {
                format!("{SCHEMES_HINT}; for a unix socket write unix:///PATH")
            }
            _ => SCHEMES_HINT.to_owned(),
        };
        Err(TransportError::invalid(
            input,
            format!("unknown scheme `{scheme}` in `{input}`"),
            hint,
        ))
    }
}

fn missing_scheme(input: &str) -> TransportError {
    // Suggest the likely intent: `host:port` means tcp, a path means unix.
    let suggestion = if input.starts_with('/') || input.starts_with("./") {
        format!("; did you mean unix://{input}?")
    } else if parse_tcp(input, input).is_ok() {
        format!("; did you mean tcp://{input}?")
    } else {
        String::new()
    };
    TransportError::invalid(
        input,
        format!("missing scheme in `{input}`"),
        format!("{SCHEMES_HINT}{suggestion}"),
    )
}

fn parse_tcp(input: &str, rest: &str) -> Result<Address, TransportError> {
    let bad = |problem: String| TransportError::invalid(input, problem, TCP_HINT);
    if let Some(pos) = rest.find(['/', '?', '#']) {
        return Err(bad(format!(
            "unexpected `{}` after the port in `{input}` (a tcp address has no path, query or fragment)",
            &rest[pos..]
        )));
    }
    if rest.contains('@') {
        return Err(bad(format!("unexpected user info (`@`) in `{input}`")));
    }
    if rest.is_empty() {
        return Err(bad(format!("missing host and port in `{input}`")));
    }

    let (host, port) = if let Some(after_bracket) = rest.strip_prefix('[') {
        let Some((ip, after)) = after_bracket.split_once(']') else {
            return Err(bad(format!(
                "missing `]` after the IPv6 address in `{input}`"
            )));
        };
        let ip: Ipv6Addr = ip.parse().map_err(|_| {
            bad(format!(
                "`{ip}` in `{input}` is not a valid IPv6 address (zone ids like %eth0 are not supported)"
            ))
        })?;
        let port = match after.strip_prefix(':') {
            Some(port) => port,
            None if after.is_empty() => {
                return Err(bad(format!("missing port in `{input}`")));
            }
            None => {
                return Err(bad(format!(
                    "unexpected `{after}` after the IPv6 address in `{input}`"
                )));
            }
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let Some((host, port)) = rest.rsplit_once(':') else {
            return Err(bad(format!("missing port in `{input}`")));
        };
        if host.contains(':') {
            return Err(bad(format!(
                "IPv6 address without brackets in `{input}` (did you mean tcp://[{host}]:{port}?)"
            )));
        }
        (parse_host(input, host)?, port)
    };
    if port.is_empty() {
        return Err(bad(format!("missing port in `{input}`")));
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format!(
            "invalid port `{port}` in `{input}` (a port is a number from 0 to 65535)"
        )));
    }
    let port: u16 = port.parse().map_err(|_| {
        bad(format!(
            "port `{port}` in `{input}` is out of range (a port is a number from 0 to 65535)"
        ))
    })?;
    Ok(Address::Tcp { host, port })
}

fn parse_host(input: &str, host: &str) -> Result<Host, TransportError> {
    let bad = |problem: String| TransportError::invalid(input, problem, TCP_HINT);
    if host.is_empty() {
        return Err(bad(format!(
            "missing host in `{input}` (use 127.0.0.1 for this machine, 0.0.0.0 for every interface)"
        )));
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return host
            .parse::<Ipv4Addr>()
            .map(|ip| Host::Ip(IpAddr::V4(ip)))
            .map_err(|_| bad(format!("`{host}` in `{input}` is not a valid IPv4 address")));
    }
    if host.len() > MAX_HOST_NAME {
        return Err(bad(format!(
            "host name in `{input}` is longer than {MAX_HOST_NAME} characters"
        )));
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(bad(format!(
            "invalid character {c:?} in host `{host}` of `{input}` (a host name is made of letters, digits, `-`, `_` and `.`)"
        )));
    }
    if host.trim_end_matches('.').split('.').any(str::is_empty) {
        return Err(bad(format!("empty label in host `{host}` of `{input}`")));
    }
    Ok(Host::Name(host.to_owned()))
}

fn parse_unix(input: &str, rest: &str) -> Result<Address, TransportError> {
    if rest.is_empty() {
        return Err(TransportError::invalid(
            input,
            format!("missing path in `{input}`"),
            UNIX_HINT,
        ));
    }
    if rest.contains('\0') {
        return Err(TransportError::invalid(
            input,
            format!("NUL byte in the path of `{}`", input.escape_debug()),
            UNIX_HINT,
        ));
    }
    Ok(Address::Unix {
        path: PathBuf::from(rest),
    })
}

fn parse_mem(input: &str, rest: &str) -> Result<Address, TransportError> {
    let bad = |problem: String| TransportError::invalid(input, problem, MEM_HINT);
    if rest.len() > MAX_MEM_NAME {
        return Err(bad(format!(
            "name in `{input}` is longer than {MAX_MEM_NAME} bytes"
        )));
    }
    if let Some(c) = rest
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '/')
    {
        return Err(bad(format!(
            "invalid character {c:?} in the name of `{}` (names have no `/`, spaces or control characters)",
            input.escape_debug()
        )));
    }
    Ok(Address::Mem {
        name: rest.to_owned(),
    })
}
