//! TLS with mutual authentication: a server on `tls://` that requires client certificates
//! from its own CA, a handler and a hook that see who calls, a client with a certificate, a
//! client without one (refused, told why), and a plaintext client on the TLS port (refused,
//! told the address to use). The certificates are made at start by rcgen; a deployment
//! points `WIRECALL_TLS_CERT`, `WIRECALL_TLS_KEY`, `WIRECALL_TLS_CLIENT_CA` (server) and
//! `WIRECALL_TLS_CA`, `WIRECALL_TLS_CLIENT_CERT`, `WIRECALL_TLS_CLIENT_KEY` (clients) at
//! PEM files instead, or passes the same configuration to the builders.
//!
//! Run with `cargo run -p wirecall --example tls [address]` (`tls://127.0.0.1:0` by
//! default; `tls+unix:///tmp/tls.sock` works too).

use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, SanType,
};
use wirecall::{CallContext, CallHook, CallInfo, Engine, Proxy, TlsClientConfig, TlsServerConfig};

/// A provider that greets its caller by the name in the caller's certificate.
#[derive(Default)]
pub(crate) struct Greeter;

#[wirecall::provider(service = "greeter")]
impl Greeter {
    /// Says hello to the certificate's common name.
    #[remote]
    fn hello(&self, ctx: CallContext) -> String {
        match ctx.connection().peer_identity() {
            Some(id) => format!("hello, {}", id.common_name().unwrap_or("(no CN)")),
            None => "hello, stranger".to_string(),
        }
    }
}

/// A hook that records who called what (an audit log; it could refuse calls too).
struct Audit(Arc<Mutex<Vec<String>>>);

impl CallHook for Audit {
    fn before(&self, call: &CallInfo<'_>) -> Result<(), String> {
        let who = call
            .peer_identity
            .map(|id| id.to_string())
            .unwrap_or_else(|| "anonymous".into());
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{who} called {}", call.method));
        Ok(())
    }
}

/// A certificate and key, PEM.
struct Pem {
    cert: String,
    key: String,
}

/// A CA, a server certificate for `localhost` and 127.0.0.1 it signs, and a client
/// certificate for `CN=alice` it signs.
fn make_certificates() -> Result<(String, Pem, Pem), rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "example CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;

    let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let server = Pem {
        cert: params.signed_by(&key, &ca)?.pem(),
        key: key.serialize_pem(),
    };

    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, "alice");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate()?;
    let client = Pem {
        cert: params.signed_by(&key, &ca)?.pem(),
        key: key.serialize_pem(),
    };
    Ok((ca.pem(), server, client))
}

/// What the seed observed.
#[derive(Debug)]
pub(crate) struct Observed {
    /// The greeting alice got.
    pub greeting: String,
    /// The audit log's lines.
    pub audit: Vec<String>,
    /// The error of a client without a certificate.
    pub without_cert: String,
    /// The error of a plaintext client on the TLS address (for tls://).
    pub plaintext: Option<String>,
}

/// Runs the seed on `address` (`tls://127.0.0.1:0` or `tls+unix:///path`).
pub(crate) async fn run(address: &str) -> Result<Observed, Box<dyn std::error::Error>> {
    let (ca, server_pem, alice) = make_certificates()?;
    // The same CA signs servers and clients here; a deployment may use two.
    let tls = TlsServerConfig::from_pem(server_pem.cert.as_bytes(), server_pem.key.as_bytes())?
        .require_client_cert_pem(ca.as_bytes())?;
    let server = Engine::server(address).tls(tls).start().await?;
    server.register_provider(Greeter, 1)?;
    let audit = Arc::new(Mutex::new(Vec::new()));
    server.add_hook(Audit(audit.clone()));
    let url = server.address();

    let trust = TlsClientConfig::with_ca_pem(ca.as_bytes())?;
    let with_cert = trust
        .clone()
        .client_cert_pem(alice.cert.as_bytes(), alice.key.as_bytes())?;
    let greeting: String = Proxy::new(&url)?
        .tls(with_cert)
        .call_on(1, "greeter_hello")?
        .call()
        .await?;

    let without_cert = match Proxy::new(&url)?.tls(trust).connect().await {
        Ok(()) => return Err("a client without a certificate was let in".into()),
        Err(e) => e.to_string(),
    };

    let plaintext = if url.starts_with("tls://") {
        let plain = url.replacen("tls://", "tcp://", 1);
        match Proxy::new(&plain)?.connect().await {
            Ok(()) => return Err("a plaintext client was let in".into()),
            Err(e) => Some(e.to_string()),
        }
    } else {
        None
    };

    server.finalize().await;
    let audit = audit.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(Observed {
        greeting,
        audit,
        without_cert,
        plaintext,
    })
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tls://127.0.0.1:0".to_string());
    let seen = run(&address).await?;
    println!("alice got: {}", seen.greeting);
    for line in &seen.audit {
        println!("audit: {line}");
    }
    println!("without a client certificate: {}", seen.without_cert);
    if let Some(p) = &seen.plaintext {
        println!("plaintext client: {p}");
    }
    Ok(())
}
