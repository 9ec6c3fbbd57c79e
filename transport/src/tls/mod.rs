//! TLS for `tls://` and `tls+unix://` addresses: rustls (ring provider) through
//! tokio-rustls, no OpenSSL.
//!
//! - [`TlsServerConfig`]: the server's certificate chain and key, and optionally the CA whose
//!   client certificates it requires (mutual TLS).
//! - [`TlsClientConfig`]: the CAs a client trusts (the system's roots, or a given CA), and
//!   optionally the client's own certificate for mutual TLS.
//! - [`PeerIdentity`]: the subject and subject alternative names of the verified certificate
//!   of the other end ([`Stream::tls`](crate::Stream::tls)).
//!
//! Both configs also load from the environment, so a deployment turns TLS on without code:
//!
//! | variable | side | holds |
//! |---|---|---|
//! | `WIRECALL_TLS_CERT`, `WIRECALL_TLS_KEY` | server | the certificate chain and private key (PEM file paths, or the PEM text itself) |
//! | `WIRECALL_TLS_CLIENT_CA` | server | the CA that signs client certificates: setting it requires one from every client |
//! | `WIRECALL_TLS_CA` | client | the CA to trust instead of the system roots |
//! | `WIRECALL_TLS_CLIENT_CERT`, `WIRECALL_TLS_CLIENT_KEY` | client | the client certificate and key for mutual TLS |
//!
//! The system roots are the operating system's trust store, read with `rustls-native-certs`
//! (on Linux the distribution's CA bundle, which `SSL_CERT_FILE` / `SSL_CERT_DIR` can
//! override), so CAs an administrator installed are trusted as by every other program;
//! a compiled-in bundle would have to be rebuilt to follow them.

mod identity;

use std::fmt;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, CertificateError, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
#[cfg(unix)]
use tokio::net::UnixStream;

pub use identity::PeerIdentity;

use crate::address::{Address, Host};
use crate::error::TransportError;

/// How long a server waits for a client to complete the TLS handshake, by default.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The rustls provider: ring (aws-lc-rs would need cmake and nasm to build).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

// --- loading PEM ---------------------------------------------------------------------

/// PEM text from an environment variable's value: a file path, or the PEM itself.
fn pem_from_env_value(var: &str, value: &str) -> Result<(Vec<u8>, String), TransportError> {
    if value.trim_start().starts_with("-----BEGIN") {
        Ok((value.as_bytes().to_vec(), format!("{var} (inline PEM)")))
    } else {
        let path = Path::new(value);
        Ok((
            read_file(path, var)?,
            format!("`{}` ({var})", path.display()),
        ))
    }
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, TransportError> {
    std::fs::read(path).map_err(|e| {
        TransportError::tls_config(format!(
            "cannot read {what} `{}`: {e}; check the path and its permissions",
            path.display()
        ))
    })
}

fn certs_from_pem(pem: &[u8], from: &str) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            TransportError::tls_config(format!("{from} is not valid PEM certificates: {e}"))
        })?;
    if certs.is_empty() {
        return Err(TransportError::tls_config(format!(
            "{from} holds no certificate (expected -----BEGIN CERTIFICATE----- blocks)"
        )));
    }
    Ok(certs)
}

fn key_from_pem(pem: &[u8], from: &str) -> Result<PrivateKeyDer<'static>, TransportError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        TransportError::tls_config(format!(
            "{from} holds no usable private key ({e}); expected a PKCS#8, PKCS#1 or SEC1 PEM key \
             (-----BEGIN PRIVATE KEY-----)"
        ))
    })
}

fn roots_from_pem(pem: &[u8], from: &str) -> Result<RootCertStore, TransportError> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(pem, from)? {
        roots.add(cert).map_err(|e| {
            TransportError::tls_config(format!("{from}: a CA certificate is not usable: {e}"))
        })?;
    }
    Ok(roots)
}

fn env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

// --- server --------------------------------------------------------------------------

/// What a TLS listener needs: its certificate chain and key, and optionally the CA whose
/// client certificates it requires (mutual TLS).
///
/// Cheap to clone (the rustls configuration is shared).
///
/// ```no_run
/// use wirecall_transport::{Listener, TlsServerConfig};
/// # async fn run() -> Result<(), wirecall_transport::TransportError> {
/// let tls = TlsServerConfig::from_pem_files("server.pem", "server.key")?
///     .require_client_cert_file("clients-ca.pem")?; // optional: mutual TLS
/// let listener = Listener::bind_tls(&"tls://0.0.0.0:4443".parse()?, tls).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsServerConfig {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    client_ca: Option<Arc<RootCertStore>>,
    handshake_timeout: Duration,
    config: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServerConfig")
            .field("chain_len", &self.chain.len())
            .field("requires_client_cert", &self.client_ca.is_some())
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl TlsServerConfig {
    /// The certificate chain (leaf first) and private key, as PEM text.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<TlsServerConfig, TransportError> {
        Self::from_parts(
            certs_from_pem(cert_chain, "the certificate PEM")?,
            key_from_pem(key, "the key PEM")?,
        )
    }

    /// The certificate chain (leaf first) and private key, from PEM files.
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsServerConfig, TransportError> {
        let (cert, key) = (cert_chain.as_ref(), key.as_ref());
        let cert_from = format!("certificate file `{}`", cert.display());
        let key_from = format!("key file `{}`", key.display());
        Self::from_parts(
            certs_from_pem(&read_file(cert, "certificate file")?, &cert_from)?,
            key_from_pem(&read_file(key, "key file")?, &key_from)?,
        )
    }

    /// The configuration in `WIRECALL_TLS_CERT` and `WIRECALL_TLS_KEY` (PEM file paths, or
    /// the PEM text itself), requiring client certificates signed by `WIRECALL_TLS_CLIENT_CA`
    /// when that is set. `Ok(None)` when neither certificate nor key is set; an error when
    /// only one is.
    pub fn from_env() -> Result<Option<TlsServerConfig>, TransportError> {
        let (cert, key) = match (env("WIRECALL_TLS_CERT"), env("WIRECALL_TLS_KEY")) {
            (None, None) => return Ok(None),
            (Some(c), Some(k)) => (c, k),
            (Some(_), None) => {
                return Err(TransportError::tls_config(
                    "WIRECALL_TLS_CERT is set but WIRECALL_TLS_KEY is not: set both (the certificate chain and its private key)",
                ))
            }
            (None, Some(_)) => {
                return Err(TransportError::tls_config(
                    "WIRECALL_TLS_KEY is set but WIRECALL_TLS_CERT is not: set both (the certificate chain and its private key)",
                ))
            }
        };
        let (cert_pem, cert_from) = pem_from_env_value("WIRECALL_TLS_CERT", &cert)?;
        let (key_pem, key_from) = pem_from_env_value("WIRECALL_TLS_KEY", &key)?;
        let mut config = Self::from_parts(
            certs_from_pem(&cert_pem, &cert_from)?,
            key_from_pem(&key_pem, &key_from)?,
        )?;
        if let Some(ca) = env("WIRECALL_TLS_CLIENT_CA") {
            let (pem, from) = pem_from_env_value("WIRECALL_TLS_CLIENT_CA", &ca)?;
            config = config.require_client_cert_roots(roots_from_pem(&pem, &from)?)?;
        }
        Ok(Some(config))
    }

    fn from_parts(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<TlsServerConfig, TransportError> {
        let key = Arc::new(key);
        let config = build_server(&chain, &key, None)?;
        Ok(TlsServerConfig {
            chain,
            key,
            client_ca: None,
            handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            config,
        })
    }

    /// Requires every client to present a certificate signed by one of the CAs in `ca_pem`
    /// (mutual TLS); handshakes without one fail. The verified identity shows in
    /// [`Stream::tls`](crate::Stream::tls).
    pub fn require_client_cert_pem(self, ca_pem: &[u8]) -> Result<Self, TransportError> {
        self.require_client_cert_roots(roots_from_pem(ca_pem, "the client CA PEM")?)
    }

    /// [`require_client_cert_pem`](Self::require_client_cert_pem) with the CA read from a
    /// PEM file.
    pub fn require_client_cert_file(self, ca: impl AsRef<Path>) -> Result<Self, TransportError> {
        let ca = ca.as_ref();
        let from = format!("client CA file `{}`", ca.display());
        self.require_client_cert_roots(roots_from_pem(&read_file(ca, "client CA file")?, &from)?)
    }

    fn require_client_cert_roots(mut self, roots: RootCertStore) -> Result<Self, TransportError> {
        let roots = Arc::new(roots);
        self.config = build_server(&self.chain, &self.key, Some(&roots))?;
        self.client_ca = Some(roots);
        Ok(self)
    }

    /// How long a client has to complete the TLS handshake after connecting (default
    /// [`DEFAULT_TLS_HANDSHAKE_TIMEOUT`], 10 s); one that does not is dropped.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Whether clients must present a certificate (mutual TLS).
    pub fn requires_client_cert(&self) -> bool {
        self.client_ca.is_some()
    }

    pub(crate) fn rustls(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.handshake_timeout
    }
}

fn build_server(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    client_ca: Option<&Arc<RootCertStore>>,
) -> Result<Arc<rustls::ServerConfig>, TransportError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::tls_config(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(roots) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.clone(),
                provider(),
            )
            .build()
            .map_err(|e| TransportError::tls_config(format!("cannot use the client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain.to_vec(), key.clone_key())
        .map_err(|e| {
            TransportError::tls_config(format!(
                "the certificate and key do not go together: {e}; check that the key is the \
                 certificate's own and that the first certificate of the chain is the server's"
            ))
        })?;
    Ok(Arc::new(config))
}

// --- client --------------------------------------------------------------------------

/// What a TLS client trusts, and optionally its own certificate for mutual TLS.
///
/// Cheap to clone (the rustls configuration is shared).
///
/// ```no_run
/// use wirecall_transport::{Stream, TlsClientConfig};
/// # async fn run() -> Result<(), wirecall_transport::TransportError> {
/// // A private CA (or TlsClientConfig::system_roots() for public certificates):
/// let tls = TlsClientConfig::with_ca_file("ca.pem")?
///     .client_cert_files("client.pem", "client.key")?; // optional: mutual TLS
/// let stream = Stream::connect_tls(&"tls://server.internal:4443".parse()?, &tls).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsClientConfig {
    roots: Arc<RootCertStore>,
    /// Says which CAs were trusted, for error messages.
    roots_from: Arc<str>,
    identity: Option<ClientIdentity>,
    server_name: Option<String>,
    config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for TlsClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClientConfig")
            .field("trusts", &self.roots_from)
            .field("client_cert", &self.identity.is_some())
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// The system's trust store, read once per process.
fn system_roots() -> Result<Arc<RootCertStore>, TransportError> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let errors: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
                return Err(format!(
                    "no system root certificates found{}; install the system CA bundle \
                     (e.g. the ca-certificates package), or trust a given CA with \
                     WIRECALL_TLS_CA=ca.pem or TlsClientConfig::with_ca_file",
                    if errors.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", errors.join("; "))
                    }
                ));
            }
            Ok(Arc::new(roots))
        })
        .clone()
        .map_err(TransportError::tls_config)
}

impl TlsClientConfig {
    /// Trusts the operating system's root certificates (read with `rustls-native-certs`).
    pub fn system_roots() -> Result<TlsClientConfig, TransportError> {
        Self::from_roots(system_roots()?, "the system's root certificates".into())
    }

    /// Trusts only the CA certificates in `ca_pem` (a private CA, or a self-signed server
    /// certificate).
    pub fn with_ca_pem(ca_pem: &[u8]) -> Result<TlsClientConfig, TransportError> {
        Self::from_roots(
            Arc::new(roots_from_pem(ca_pem, "the CA PEM")?),
            "the given CA".into(),
        )
    }

    /// Trusts only the CA certificates in a PEM file.
    pub fn with_ca_file(ca: impl AsRef<Path>) -> Result<TlsClientConfig, TransportError> {
        let ca = ca.as_ref();
        let from = format!("CA file `{}`", ca.display());
        let roots = roots_from_pem(&read_file(ca, "CA file")?, &from)?;
        Self::from_roots(Arc::new(roots), from.into())
    }

    /// The configuration in the environment: trusts the CA in `WIRECALL_TLS_CA` (a PEM file
    /// path, or the PEM text) if set, else the system roots; presents the client
    /// certificate in `WIRECALL_TLS_CLIENT_CERT` and `WIRECALL_TLS_CLIENT_KEY` if set.
    /// This is what [`Stream::connect`](crate::Stream::connect) uses for `tls://` addresses.
    pub fn from_env() -> Result<TlsClientConfig, TransportError> {
        let mut config = match env("WIRECALL_TLS_CA") {
            Some(ca) => {
                let (pem, from) = pem_from_env_value("WIRECALL_TLS_CA", &ca)?;
                Self::from_roots(Arc::new(roots_from_pem(&pem, &from)?), from.into())?
            }
            None => Self::system_roots()?,
        };
        match (env("WIRECALL_TLS_CLIENT_CERT"), env("WIRECALL_TLS_CLIENT_KEY")) {
            (None, None) => {}
            (Some(cert), Some(key)) => {
                let (cert_pem, cert_from) = pem_from_env_value("WIRECALL_TLS_CLIENT_CERT", &cert)?;
                let (key_pem, key_from) = pem_from_env_value("WIRECALL_TLS_CLIENT_KEY", &key)?;
                config = config.with_identity(
                    certs_from_pem(&cert_pem, &cert_from)?,
                    key_from_pem(&key_pem, &key_from)?,
                )?;
            }
            _ => {
                return Err(TransportError::tls_config(
                    "only one of WIRECALL_TLS_CLIENT_CERT and WIRECALL_TLS_CLIENT_KEY is set: set both \
                     (the client certificate and its private key) or neither",
                ))
            }
        }
        Ok(config)
    }

    fn from_roots(
        roots: Arc<RootCertStore>,
        roots_from: Arc<str>,
    ) -> Result<TlsClientConfig, TransportError> {
        let config = build_client(&roots, None)?;
        Ok(TlsClientConfig {
            roots,
            roots_from,
            identity: None,
            server_name: None,
            config,
        })
    }

    fn with_identity(
        mut self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TransportError> {
        let identity = (chain, Arc::new(key));
        self.config = build_client(&self.roots, Some(&identity))?;
        self.identity = Some(identity);
        Ok(self)
    }

    /// Presents this certificate chain (leaf first) and key to servers that ask for one
    /// (mutual TLS), as PEM text.
    pub fn client_cert_pem(self, cert_chain: &[u8], key: &[u8]) -> Result<Self, TransportError> {
        self.with_identity(
            certs_from_pem(cert_chain, "the client certificate PEM")?,
            key_from_pem(key, "the client key PEM")?,
        )
    }

    /// [`client_cert_pem`](Self::client_cert_pem) from PEM files.
    pub fn client_cert_files(
        self,
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TransportError> {
        let (cert, key) = (cert_chain.as_ref(), key.as_ref());
        let cert_from = format!("client certificate file `{}`", cert.display());
        let key_from = format!("client key file `{}`", key.display());
        self.with_identity(
            certs_from_pem(&read_file(cert, "client certificate file")?, &cert_from)?,
            key_from_pem(&read_file(key, "client key file")?, &key_from)?,
        )
    }

    /// Verifies the server's certificate for `name` instead of the host in the address
    /// (needed for `tls+unix://`, which has no host: the default there is `localhost`; also
    /// for connecting by IP to a server whose certificate names a host).
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Whether a client certificate is configured.
    pub fn has_client_cert(&self) -> bool {
        self.identity.is_some()
    }

    fn name_for(&self, address: &Address) -> Result<ServerName<'static>, TransportError> {
        let text = match (&self.server_name, address) {
            (Some(name), _) => name.clone(),
            (None, Address::Tls { host, .. }) => match host {
                Host::Ip(ip) => return Ok(ServerName::IpAddress((*ip).into())),
                Host::Name(name) => name.trim_end_matches('.').to_owned(),
            },
            (None, _) => "localhost".to_owned(),
        };
        ServerName::try_from(text.clone()).map_err(|_| {
            TransportError::tls_config(format!(
                "`{text}` is not a valid TLS server name (a DNS name or an IP address)"
            ))
        })
    }
}

type ClientIdentity = (Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>);

fn build_client(
    roots: &Arc<RootCertStore>,
    identity: Option<&ClientIdentity>,
) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::tls_config(e.to_string()))?
        .with_root_certificates(roots.clone());
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| {
                TransportError::tls_config(format!(
                    "the client certificate and key do not go together: {e}"
                ))
            })?,
    };
    Ok(Arc::new(config))
}

// --- the socket under TLS ------------------------------------------------------------

/// The byte stream under a TLS session.
#[derive(Debug)]
pub(crate) struct Socket {
    io: SocketIo,
    /// A first byte the server read itself (to tell TLS from plaintext), handed to rustls
    /// before anything else.
    replay: Option<u8>,
}

#[derive(Debug)]
enum SocketIo {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
}

impl Socket {
    pub(crate) fn tcp(stream: TcpStream) -> Socket {
        Socket {
            io: SocketIo::Tcp(stream),
            replay: None,
        }
    }

    #[cfg(unix)]
    pub(crate) fn unix(stream: UnixStream) -> Socket {
        Socket {
            io: SocketIo::Unix(stream),
            replay: None,
        }
    }
}

macro_rules! socket {
    ($s:expr, $i:ident => $e:expr) => {
        match $s {
            SocketIo::Tcp($i) => $e,
            #[cfg(unix)]
            SocketIo::Unix($i) => $e,
        }
    };
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(b) = this.replay {
            if buf.remaining() > 0 {
                buf.put_slice(&[b]);
                this.replay = None;
                return Poll::Ready(Ok(()));
            }
        }
        socket!(&mut this.io, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        socket!(&mut self.get_mut().io, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        socket!(&mut self.get_mut().io, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        socket!(&self.io, s => s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        socket!(&mut self.get_mut().io, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        socket!(&mut self.get_mut().io, s => Pin::new(s).poll_shutdown(cx))
    }
}

// --- a TLS connection ----------------------------------------------------------------

/// Facts about an established TLS session.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    version: &'static str,
    cipher_suite: String,
    peer: Option<Arc<PeerIdentity>>,
}

impl TlsInfo {
    fn of(common: &rustls::CommonState) -> TlsInfo {
        let version = match common.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLS",
        };
        let cipher_suite = common
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default();
        let peer = common
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|leaf| PeerIdentity::from_der(leaf))
            .map(Arc::new);
        TlsInfo {
            version,
            cipher_suite,
            peer,
        }
    }

    /// The protocol version: `"TLSv1.3"` or `"TLSv1.2"`.
    pub fn protocol_version(&self) -> &'static str {
        self.version
    }

    /// The negotiated cipher suite, e.g. `"TLS13_AES_256_GCM_SHA384"`.
    pub fn cipher_suite(&self) -> &str {
        &self.cipher_suite
    }

    /// The verified identity of the other end: the server's on a client; on a server, the
    /// client's when it presented a certificate (mutual TLS), else `None`.
    pub fn peer_identity(&self) -> Option<&PeerIdentity> {
        self.peer.as_deref()
    }

    /// The peer identity, shared.
    pub fn peer_identity_arc(&self) -> Option<Arc<PeerIdentity>> {
        self.peer.clone()
    }
}

/// A TLS session over a [`Socket`], with errors from the TLS layer turned into messages that
/// say what happened.
pub(crate) struct TlsConn {
    io: tokio_rustls::TlsStream<Socket>,
    /// The address, for messages.
    address: Arc<str>,
    is_client: bool,
}

impl fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConn")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl TlsConn {
    /// A write failed: when the peer closed the socket (broken pipe, reset), the reason is
    /// often an alert it sent first (a TLS 1.3 server refusing the client's certificate
    /// after the client's side of the handshake completed), which is already waiting to be
    /// read. Reads what is there, without waiting, to report that alert instead of "broken
    /// pipe". Application data read here is dropped: the connection is broken anyway.
    fn write_failed(&mut self, cx: &mut Context<'_>, e: io::Error) -> io::Error {
        let peer_closed = matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        );
        if peer_closed && rustls_error(&e).is_none() {
            let mut scratch = [0u8; 512];
            for _ in 0..4 {
                let mut buf = ReadBuf::new(&mut scratch);
                match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                    Poll::Ready(Err(read)) if rustls_error(&read).is_some() => {
                        return self.map_err(read)
                    }
                    Poll::Ready(Ok(())) if !buf.filled().is_empty() => continue,
                    _ => break,
                }
            }
        }
        self.map_err(e)
    }

    fn map_err(&self, e: io::Error) -> io::Error {
        match rustls_error(&e) {
            Some(tls) => io::Error::new(
                e.kind(),
                describe(tls, self.is_client, "", None, None).unwrap_or_else(|| e.to_string()),
            ),
            None => e,
        }
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(this.map_err(e))),
            other => other,
        }
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(this.write_failed(cx, e))),
            other => other,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(this.write_failed(cx, e))),
            other => other,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(this.write_failed(cx, e))),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The rustls error inside an I/O error, if there is one.
fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// What a TLS failure means, in words, with what to do; `None` for failures that have
/// nothing to add to rustls's own message.
///
/// `name` is the server name a client verified against, `trusted` what it trusted, and
/// `plain` the address without TLS (for "does not speak TLS").
fn describe(
    e: &rustls::Error,
    is_client: bool,
    name: &str,
    trusted: Option<&str>,
    plain: Option<&Address>,
) -> Option<String> {
    use rustls::Error as E;
    let whose = if is_client {
        "the server's"
    } else {
        "the client's"
    };
    let trusted = trusted.unwrap_or("the trusted CAs");
    Some(match e {
        E::InvalidCertificate(c) => match c {
            CertificateError::NotValidForNameContext { expected, presented } => {
                let expected = server_name_text(expected);
                format!(
                    "the server's certificate is for {} and is not valid for `{expected}`: \
                     connect with a name the certificate lists (or set the name to verify, \
                     TlsClientConfig::server_name), or issue a certificate that lists `{expected}`",
                    if presented.is_empty() {
                        "no name".to_owned()
                    } else {
                        presented.iter().map(|p| presented_name(p)).collect::<Vec<_>>().join(", ")
                    }
                )
            }
            CertificateError::NotValidForName => format!(
                "the server's certificate is not valid for `{name}`: connect with a name the \
                 certificate lists, or issue a certificate for `{name}`"
            ),
            CertificateError::UnknownIssuer => {
                if is_client {
                    format!(
                        "the server's certificate is signed by an unknown CA (not one of {trusted}): \
                         trust the server's CA with WIRECALL_TLS_CA=ca.pem (wirecall --tls-ca, \
                         TlsClientConfig::with_ca_file)"
                    )
                } else {
                    "the client's certificate is signed by an unknown CA (not the client CA this \
                     server requires): issue the client certificate from that CA"
                        .to_owned()
                }
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("{whose} certificate has expired ({c}): renew it")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!("{whose} certificate is not valid yet ({c}): check the clocks")
            }
            CertificateError::Revoked => format!("{whose} certificate has been revoked"),
            CertificateError::BadSignature => {
                format!("{whose} certificate has a bad signature (is the chain complete and in order?)")
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                format!("{whose} certificate is not meant for this use ({c}): a server needs the serverAuth key usage, a client clientAuth")
            }
            other => format!("{whose} certificate is not acceptable: {other}"),
        },
        E::InvalidMessage(_) | E::InappropriateMessage { .. } if is_client => match plain {
            Some(plain) => format!(
                "the server does not speak TLS (its answer is not a TLS record): connect with \
                 {plain} if it is a plaintext server, or check the port"
            ),
            None => "the server does not speak TLS (its answer is not a TLS record)".to_owned(),
        },
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => {
            "the client does not speak TLS (its first bytes are not a TLS handshake)".to_owned()
        }
        E::NoCertificatesPresented => {
            "the client presented no certificate, and this server requires one (mutual TLS)"
                .to_owned()
        }
        E::AlertReceived(AlertDescription::CertificateRequired) => {
            "the server requires a client certificate (mutual TLS): give one with \
             WIRECALL_TLS_CLIENT_CERT and WIRECALL_TLS_CLIENT_KEY (TlsClientConfig::client_cert_files)"
                .to_owned()
        }
        E::AlertReceived(
            a @ (AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateRevoked
            | AlertDescription::UnsupportedCertificate),
        ) => {
            if is_client {
                format!(
                    "the server refused our client certificate (alert {a:?}): use a certificate \
                     signed by the CA the server trusts for clients"
                )
            } else {
                format!("the client refused the server's certificate (alert {a:?}): it does not trust this server's CA")
            }
        }
        E::AlertReceived(a) => format!("the peer ended the TLS session with alert {a:?}"),
        E::PeerIncompatible(p) => format!(
            "no TLS version or cipher suite in common ({p:?}); wirecall speaks TLS 1.2 and 1.3"
        ),
        _ => return None,
    })
}

/// A name rustls presents from a certificate (`DnsName("a.example")`, or the name alone)
/// as the name alone.
fn presented_name(p: &str) -> String {
    match (p.find('"'), p.rfind('"')) {
        (Some(a), Some(b)) if b > a => p[a + 1..b].to_owned(),
        _ => p.to_owned(),
    }
}

fn server_name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

/// What a failed TLS handshake means, as a [`TransportError::Tls`].
fn handshake_error(
    address: &Address,
    e: io::Error,
    is_client: bool,
    name: &str,
    trusted: Option<&str>,
) -> TransportError {
    let plain = address.without_tls();
    if let Some(tls) = rustls_error(&e) {
        let reason = describe(tls, is_client, name, trusted, Some(&plain))
            .unwrap_or_else(|| tls.to_string());
        return TransportError::tls(address, reason);
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset if is_client => {
            TransportError::tls(
                address,
                format!(
                    "the server closed the connection during the TLS handshake: it may not speak \
                     TLS (then connect with {plain}), or it refused this client"
                ),
            )
        }
        _ => TransportError::tls(address, format!("the TLS handshake failed: {e}")),
    }
}

/// Runs the client side of the handshake over a connected socket.
pub(crate) async fn connect(
    address: &Address,
    socket: Socket,
    config: &TlsClientConfig,
) -> Result<(TlsConn, TlsInfo), TransportError> {
    let name = config.name_for(address)?;
    let name_text = server_name_text(&name);
    let connector = tokio_rustls::TlsConnector::from(config.config.clone());
    let io = connector
        .connect(name, socket)
        .await
        .map_err(|e| handshake_error(address, e, true, &name_text, Some(&config.roots_from)))?;
    let info = TlsInfo::of(io.get_ref().1);
    tracing::debug!(%address, version = info.version, suite = %info.cipher_suite, "TLS established");
    Ok((
        TlsConn {
            io: tokio_rustls::TlsStream::Client(io),
            address: address.to_string().into(),
            is_client: true,
        },
        info,
    ))
}

/// Runs the server side of the handshake over an accepted socket, within the configured
/// timeout. A client whose first byte is not a TLS handshake record gets `plaintext_reply`
/// (if any) before the connection closes. Failures are logged and give `None`: they concern
/// one client.
pub(crate) async fn accept(
    local: Arc<str>,
    peer: String,
    mut socket: Socket,
    config: Arc<rustls::ServerConfig>,
    timeout: Duration,
    plaintext_reply: Option<Arc<[u8]>>,
) -> Option<(TlsConn, TlsInfo)> {
    let run = async {
        // Every TLS connection starts with a handshake record (0x16). Anything else is a
        // plaintext client on a TLS port: it gets the plaintext reply, not a TLS alert it
        // cannot read.
        let mut first = [0u8; 1];
        match tokio::io::AsyncReadExt::read(&mut socket, &mut first).await {
            Ok(1) => {}
            Ok(_) => {
                tracing::debug!(%local, %peer, "closed before the TLS handshake");
                return None;
            }
            Err(e) => {
                tracing::debug!(%local, %peer, "reading the TLS handshake: {e}");
                return None;
            }
        }
        if first[0] != 0x16 {
            tracing::info!(
                %local, %peer, first_byte = first[0],
                "refused a client that does not speak TLS on a TLS listener (it should connect with tls://)"
            );
            if let Some(reply) = &plaintext_reply {
                let _ = socket.write_all(reply).await;
            }
            let _ = socket.shutdown().await;
            return None;
        }
        socket.replay = Some(first[0]);
        match tokio_rustls::TlsAcceptor::from(config).accept(socket).await {
            Ok(io) => Some(io),
            Err(e) => {
                let reason = rustls_error(&e)
                    .and_then(|tls| describe(tls, false, "", None, None))
                    .unwrap_or_else(|| e.to_string());
                tracing::info!(%local, %peer, "TLS handshake failed: {reason}");
                None
            }
        }
    };
    let io = match tokio::time::timeout(timeout, run).await {
        Ok(io) => io?,
        Err(_) => {
            tracing::info!(%local, %peer, "TLS handshake not completed within {timeout:?}; closed");
            return None;
        }
    };
    let info = TlsInfo::of(io.get_ref().1);
    tracing::debug!(%local, %peer, version = info.version, suite = %info.cipher_suite,
        client = ?info.peer.as_ref().map(|p| p.to_string()), "TLS established");
    Some((
        TlsConn {
            io: tokio_rustls::TlsStream::Server(io),
            address: local,
            is_client: false,
        },
        info,
    ))
}
