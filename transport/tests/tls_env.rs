//! TLS configured from the environment. One test in its own binary: environment variables
//! are process-wide, so nothing else may read them while this test sets them.

mod common;
mod pki;

use common::within;
use pki::Ca;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirecall_transport::{Address, Listener, Stream, TlsClientConfig, TlsServerConfig};

const VARS: [&str; 6] = [
    "WIRECALL_TLS_CERT",
    "WIRECALL_TLS_KEY",
    "WIRECALL_TLS_CLIENT_CA",
    "WIRECALL_TLS_CA",
    "WIRECALL_TLS_CLIENT_CERT",
    "WIRECALL_TLS_CLIENT_KEY",
];

fn clear() {
    for v in VARS {
        std::env::remove_var(v);
    }
}

#[tokio::test]
async fn listeners_and_streams_take_their_tls_configuration_from_the_environment() {
    within(async {
        clear();
        let tls: Address = "tls://127.0.0.1:0".parse().unwrap();

        // Nothing set: binding says what to set.
        let err = Listener::bind(&tls).await.unwrap_err().to_string();
        assert!(err.contains("needs a certificate and key"), "{err}");
        assert!(
            err.contains("WIRECALL_TLS_CERT") && err.contains("WIRECALL_TLS_KEY"),
            "{err}"
        );
        assert!(TlsServerConfig::from_env().unwrap().is_none());

        // Half set: says which is missing.
        std::env::set_var("WIRECALL_TLS_CERT", "/nonexistent.pem");
        let err = TlsServerConfig::from_env().unwrap_err().to_string();
        assert!(err.contains("WIRECALL_TLS_KEY is not"), "{err}");

        // Files for the server (paths), inline PEM for the client CA.
        let dir = tempfile::tempdir().unwrap();
        let server_ca = Ca::new("server CA");
        let client_ca = Ca::new("client CA");
        let server = server_ca.server(&["127.0.0.1"]);
        std::env::set_var(
            "WIRECALL_TLS_CERT",
            pki::write(dir.path(), "s.pem", &server.cert),
        );
        std::env::set_var(
            "WIRECALL_TLS_KEY",
            pki::write(dir.path(), "s.key", &server.key),
        );
        std::env::set_var("WIRECALL_TLS_CLIENT_CA", client_ca.cert_pem());
        let listener = Listener::bind(&tls).await.unwrap();
        assert!(listener.is_tls());
        let local = listener.local_addr().clone();
        let accept = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let who = stream
                .tls()
                .unwrap()
                .peer_identity()
                .unwrap()
                .common_name()
                .map(str::to_owned);
            let (mut rd, mut wr) = stream.into_split();
            tokio::io::copy(&mut rd, &mut wr).await.unwrap();
            wr.shutdown().await.unwrap();
            who
        });

        // The client: CA and client certificate from the environment, through `connect`.
        let alice = client_ca.client("alice", "Acme", &[], &[]);
        std::env::set_var(
            "WIRECALL_TLS_CA",
            pki::write(dir.path(), "ca.pem", &server_ca.cert_pem()),
        );
        std::env::set_var("WIRECALL_TLS_CLIENT_CERT", alice.cert.clone());
        let err = TlsClientConfig::from_env().unwrap_err().to_string();
        assert!(
            err.contains("only one of WIRECALL_TLS_CLIENT_CERT and WIRECALL_TLS_CLIENT_KEY"),
            "{err}"
        );
        std::env::set_var("WIRECALL_TLS_CLIENT_KEY", alice.key.clone());
        let mut stream = Stream::connect(&local).await.unwrap();
        stream.write_all(b"from the environment").await.unwrap();
        stream.flush().await.unwrap();
        stream.shutdown().await.unwrap();
        let mut back = Vec::new();
        stream.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"from the environment");
        assert_eq!(accept.await.unwrap().as_deref(), Some("alice"));
        clear();
    })
    .await;
}
