//! TLS listeners and streams over loopback, with certificates made at test time.

mod common;
mod pki;

use std::time::{Duration, Instant};

use common::within;
use pki::Ca;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirecall_transport::{
    Address, Listener, Origin, PeerIdentity, Stream, TlsClientConfig, TlsServerConfig,
    TransportError,
};

fn server_config(ca: &Ca, names: &[&str]) -> TlsServerConfig {
    let pem = ca.server(names);
    TlsServerConfig::from_pem(pem.cert.as_bytes(), pem.key.as_bytes()).unwrap()
}

fn trusting(ca: &Ca) -> TlsClientConfig {
    TlsClientConfig::with_ca_pem(ca.cert_pem().as_bytes()).unwrap()
}

async fn bind(config: TlsServerConfig) -> Listener {
    Listener::bind_tls(&"tls://127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

/// Accepts one stream and echoes it until end-of-file; returns the accepted stream's TLS
/// peer identity.
async fn echo_one(listener: &Listener) -> Option<PeerIdentity> {
    let (stream, _) = listener.accept().await.expect("accept");
    let identity = stream
        .tls()
        .expect("an accepted tls:// stream is TLS")
        .peer_identity()
        .cloned();
    let (mut rd, mut wr) = stream.into_split();
    tokio::io::copy(&mut rd, &mut wr).await.expect("echo");
    wr.shutdown().await.unwrap();
    identity
}

async fn round_trip(stream: Stream, payload: &[u8]) -> Vec<u8> {
    let (mut rd, mut wr) = stream.into_split();
    let data = payload.to_vec();
    let writer = tokio::spawn(async move {
        wr.write_all(&data).await.unwrap();
        wr.flush().await.unwrap();
        wr.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    rd.read_to_end(&mut back).await.unwrap();
    writer.await.unwrap();
    back
}

#[tokio::test]
async fn echo_over_tls_tcp_both_ways_with_the_server_identity() {
    within(async {
        let ca = Ca::new("test CA");
        let listener = bind(server_config(&ca, &["localhost", "127.0.0.1"])).await;
        let local = listener.local_addr().clone();
        assert_eq!(local.scheme(), "tls");
        assert_ne!(local.port(), Some(0));
        assert!(listener.is_tls());
        let server = tokio::spawn(async move { echo_one(&listener).await });

        let stream = Stream::connect_tls(&local, &trusting(&ca)).await.unwrap();
        assert_eq!(stream.scheme(), "tls");
        let tls = stream.tls().expect("TLS info on the client");
        assert!(tls.protocol_version().starts_with("TLSv1."));
        assert!(!tls.cipher_suite().is_empty());
        let server_id = tls.peer_identity().expect("the server's identity");
        assert_eq!(server_id.common_name(), Some("localhost"));
        assert_eq!(server_id.dns_names(), ["localhost"]);
        assert_eq!(
            server_id.ip_addresses(),
            ["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );

        // 1 MiB: more than any socket or TLS buffer, both directions at once.
        let payload = common::payload(1 << 20);
        assert_eq!(round_trip(stream, &payload).await, payload);
        // No client certificate was asked for.
        assert_eq!(server.await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn echo_over_tls_on_a_unix_socket() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("test CA");
        let address = Address::tls_unix(dir.path().join("tls.sock"));
        let listener = Listener::bind_tls(&address, server_config(&ca, &["localhost"]))
            .await
            .unwrap();
        let local = listener.local_addr().clone();
        assert_eq!(local.scheme(), "tls+unix");
        assert!(local.to_string().starts_with("tls+unix:///"));
        let server = tokio::spawn(async move { echo_one(&listener).await });
        // tls+unix verifies the certificate for `localhost`.
        let stream = Stream::connect_tls(&local, &trusting(&ca)).await.unwrap();
        assert_eq!(
            round_trip(stream, b"over a unix socket").await,
            b"over a unix socket"
        );
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused_naming_both() {
    within(async {
        let ca = Ca::new("test CA");
        let listener = bind(server_config(&ca, &["other.example"])).await;
        let local = listener.local_addr().clone();
        let _server = tokio::spawn(async move { listener.accept().await });
        let err = Stream::connect_tls(&local, &trusting(&ca))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, TransportError::Tls { .. }), "{err:?}");
        assert!(
            text.contains("certificate is for other.example and is not valid for `127.0.0.1`"),
            "{text}"
        );
        assert_eq!(err.origin(), Origin::Peer);
        assert!(!err.is_retryable());

        // The name to verify can be set: then the same server is accepted.
        let config = trusting(&ca).server_name("other.example");
        Stream::connect_tls(&local, &config).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_refused() {
    within(async {
        let ca = Ca::new("server CA");
        let other = Ca::new("some other CA");
        let listener = bind(server_config(&ca, &["127.0.0.1"])).await;
        let local = listener.local_addr().clone();
        let _server = tokio::spawn(async move { listener.accept().await });
        let err = Stream::connect_tls(&local, &trusting(&other))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("signed by an unknown CA"), "{err}");
        assert!(err.contains("WIRECALL_TLS_CA"), "says what to do: {err}");
    })
    .await;
}

#[tokio::test]
async fn mutual_tls_shows_the_client_identity_and_refuses_clients_without_a_certificate() {
    within(async {
        let server_ca = Ca::new("server CA");
        let client_ca = Ca::new("client CA");
        let config = server_config(&server_ca, &["127.0.0.1"])
            .require_client_cert_pem(client_ca.cert_pem().as_bytes())
            .unwrap();
        assert!(config.requires_client_cert());
        let listener = bind(config).await;
        let local = listener.local_addr().clone();
        let (tx, mut accepted) = tokio::sync::mpsc::channel(4);
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let id = stream.tls().unwrap().peer_identity().cloned();
                if tx.send(id).await.is_err() {
                    return;
                }
                let (mut rd, mut wr) = stream.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut rd, &mut wr).await;
                    let _ = wr.shutdown().await;
                });
            }
        });

        // No client certificate: the TLS 1.3 handshake completes on the client's side, and
        // the server's refusal arrives on the first read, saying what is missing.
        let plain = trusting(&server_ca);
        let refused = async {
            let mut stream = Stream::connect_tls(&local, &plain).await?;
            stream.write_all(b"hello").await?;
            stream.flush().await?;
            let mut buf = [0u8; 16];
            stream.read(&mut buf).await.map(|_| ())?;
            Ok::<(), std::io::Error>(())
        };
        let err = refused
            .await
            .expect_err("a client without a certificate is refused");
        assert!(
            err.to_string().contains("requires a client certificate"),
            "{err}"
        );

        // A certificate from another CA is refused too.
        let stranger = Ca::new("stranger CA").client("mallory", "Evil", &[], &[]);
        let config = trusting(&server_ca)
            .client_cert_pem(stranger.cert.as_bytes(), stranger.key.as_bytes())
            .unwrap();
        let refused = async {
            let mut stream = Stream::connect_tls(&local, &config).await?;
            stream.write_all(b"hello").await?;
            stream.flush().await?;
            let mut buf = [0u8; 16];
            stream.read(&mut buf).await.map(|_| ())?;
            Ok::<(), std::io::Error>(())
        };
        let err = refused
            .await
            .expect_err("a stranger's certificate is refused");
        assert!(
            err.to_string().contains("refused our client certificate"),
            "{err}"
        );

        // A certificate from the client CA is accepted, and the server sees who it is.
        let alice = client_ca.client(
            "alice",
            "Acme",
            &["alice.internal"],
            &["spiffe://acme/alice"],
        );
        let config = trusting(&server_ca)
            .client_cert_pem(alice.cert.as_bytes(), alice.key.as_bytes())
            .unwrap();
        assert!(config.has_client_cert());
        let stream = Stream::connect_tls(&local, &config).await.unwrap();
        assert_eq!(round_trip(stream, b"ping").await, b"ping");
        let id = accepted
            .recv()
            .await
            .unwrap()
            .expect("the client's identity");
        // RFC 4514 order: the last RDN of the certificate first (rcgen writes CN, then O).
        assert_eq!(id.subject(), "O=Acme,CN=alice");
        assert_eq!(id.common_name(), Some("alice"));
        assert_eq!(id.dns_names(), ["alice.internal"]);
        assert_eq!(id.uris(), ["spiffe://acme/alice"]);
        assert_eq!(
            id.to_string(),
            "O=Acme,CN=alice [DNS:alice.internal, URI:spiffe://acme/alice]"
        );
        // The refused clients never came out of accept.
        assert!(accepted.try_recv().is_err());
        server.abort();
    })
    .await;
}

#[tokio::test]
async fn a_plaintext_client_on_a_tls_port_gets_the_plaintext_reply_at_once() {
    within(async {
        let ca = Ca::new("test CA");
        let mut listener = bind(server_config(&ca, &["127.0.0.1"])).await;
        listener.set_plaintext_reply(b"use TLS".to_vec());
        let tls_address = listener.local_addr().clone();
        let server = tokio::spawn(async move { listener.accept().await.map(|_| ()) });

        let started = Instant::now();
        let mut plain = Stream::connect(&tls_address.without_tls()).await.unwrap();
        // wirecall's native magic, as a plaintext client sends first.
        plain
            .write_all(&[0x89, b'W', b'C', b'P', 1, 0, 0, 0])
            .await
            .unwrap();
        let mut reply = Vec::new();
        plain.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"use TLS");
        assert!(started.elapsed() < Duration::from_secs(2), "fails fast");
        // The listener handed out nothing and is still accepting.
        assert!(!server.is_finished());
        server.abort();
    })
    .await;
}

#[tokio::test]
async fn a_tls_client_on_a_plaintext_port_fails_fast_saying_so() {
    within(async {
        let ca = Ca::new("test CA");
        // A plaintext server that answers whatever comes with its own bytes.
        let listener = Listener::bind(&"tcp://127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let local = listener.local_addr().clone();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(buf[0], 0x16, "a TLS ClientHello starts with 0x16");
            s.write_all(&[0x89, b'W', b'C', b'P', 0, 0, 0, 0, 0, 0, 0, 0])
                .await
                .unwrap();
            s.shutdown().await.unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        });
        let started = Instant::now();
        let err = Stream::connect_tls(&local.with_tls(), &trusting(&ca))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("the server does not speak TLS"), "{err}");
        assert!(err.contains(&format!("connect with {local}")), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2), "fails fast");
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_silent_client_does_not_hold_up_others_and_is_dropped_at_the_handshake_timeout() {
    within(async {
        let ca = Ca::new("test CA");
        let config =
            server_config(&ca, &["127.0.0.1"]).handshake_timeout(Duration::from_millis(300));
        let listener = bind(config).await;
        let local = listener.local_addr().clone();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            drop(stream);
            // Keep accepting (and running handshakes) until the test ends.
            let _ = listener.accept().await;
        });
        // Connects and says nothing.
        let mut silent = Stream::connect(&local.without_tls()).await.unwrap();
        // Another client gets through meanwhile.
        Stream::connect_tls(&local, &trusting(&ca)).await.unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 1];
        let n = silent.read(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0, "closed without a byte");
        assert!(started.elapsed() < Duration::from_secs(3));
        server.abort();
    })
    .await;
}

#[tokio::test]
async fn configuration_errors_say_what_is_wrong() {
    let ca = Ca::new("test CA");
    let pem = ca.server(&["localhost"]);
    let other = ca.server(&["localhost"]);

    let err = TlsServerConfig::from_pem_files("/nonexistent/server.pem", "/nonexistent/key.pem")
        .unwrap_err();
    assert!(matches!(err, TransportError::TlsConfig { .. }));
    assert_eq!(err.origin(), Origin::User);
    assert!(
        err.to_string()
            .contains("cannot read certificate file `/nonexistent/server.pem`"),
        "{err}"
    );

    let err = TlsServerConfig::from_pem(pem.key.as_bytes(), pem.key.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("holds no certificate"), "{err}");

    let err = TlsServerConfig::from_pem(pem.cert.as_bytes(), pem.cert.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("no usable private key"), "{err}");

    let err = TlsServerConfig::from_pem(pem.cert.as_bytes(), other.key.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("do not go together"), "{err}");

    let err = TlsClientConfig::with_ca_pem(b"not pem").unwrap_err();
    assert!(err.to_string().contains("holds no certificate"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let cert = pki::write(dir.path(), "server.pem", &pem.cert);
    let key = pki::write(dir.path(), "server.key", &pem.key);
    TlsServerConfig::from_pem_files(&cert, &key).unwrap();
    let ca_file = pki::write(dir.path(), "ca.pem", &ca.cert_pem());
    let client = TlsClientConfig::with_ca_file(&ca_file).unwrap();
    assert!(format!("{client:?}").contains("ca.pem"));
}

#[test]
fn tls_addresses_parse_and_print() {
    let a: Address = "tls://127.0.0.1:4443".parse().unwrap();
    assert_eq!(a, Address::tls(std::net::Ipv4Addr::LOCALHOST, 4443));
    assert_eq!(a.scheme(), "tls");
    assert!(a.is_tls());
    assert_eq!(a.port(), Some(4443));
    assert_eq!(a.to_string(), "tls://127.0.0.1:4443");
    assert_eq!(a.without_tls().to_string(), "tcp://127.0.0.1:4443");
    assert_eq!(a.without_tls().with_tls(), a);

    let a: Address = "TLS://example.org:443".parse().unwrap();
    assert_eq!(a.to_string(), "tls://example.org:443");
    let a: Address = "tls://[::1]:1".parse().unwrap();
    assert_eq!(a.to_string(), "tls://[::1]:1");

    let a: Address = "tls+unix:///run/app.sock".parse().unwrap();
    assert_eq!(a, Address::tls_unix("/run/app.sock"));
    assert_eq!(a.scheme(), "tls+unix");
    assert_eq!(a.to_string(), "tls+unix:///run/app.sock");
    assert_eq!(a.without_tls(), Address::unix("/run/app.sock"));

    let err = "tls://localhost"
        .parse::<Address>()
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing port in `tls://localhost`"), "{err}");
    assert!(err.contains("write tls://HOST:PORT"), "{err}");
    assert!(!err.contains("tcp://"), "{err}");
    let err = "tls+unix://".parse::<Address>().unwrap_err().to_string();
    assert!(err.contains("write tls+unix:///ABSOLUTE/PATH"), "{err}");
    let err = "https://example.org:443"
        .parse::<Address>()
        .unwrap_err()
        .to_string();
    assert!(err.contains("for TLS write tls://HOST:PORT"), "{err}");
}

#[test]
fn peer_identity_reads_every_kind_of_name() {
    let ca = Ca::new("test CA");
    let pem = ca.server(&["a.example", "b.example", "10.1.2.3", "::1"]);
    let der = rustls_pem_to_der(&pem.cert);
    let id = PeerIdentity::from_der(&der).unwrap();
    assert_eq!(id.subject(), "CN=a.example");
    assert_eq!(id.dns_names(), ["a.example", "b.example"]);
    assert_eq!(
        id.ip_addresses(),
        [
            "10.1.2.3".parse::<std::net::IpAddr>().unwrap(),
            "::1".parse().unwrap()
        ]
    );
    assert_eq!(id.certificate_der(), der.as_slice());
    // The CA itself: a subject and no SANs.
    let ca_id = PeerIdentity::from_der(&rustls_pem_to_der(&ca.cert_pem())).unwrap();
    assert_eq!(ca_id.subject(), "CN=test CA");
    assert!(ca_id.dns_names().is_empty());
    assert_eq!(ca_id.to_string(), "CN=test CA");
    // Every truncation of a real certificate is refused without a panic.
    for n in 0..der.len() {
        assert!(
            PeerIdentity::from_der(&der[..n]).is_none(),
            "prefix of {n} bytes"
        );
    }
}

/// The DER of the first certificate in a PEM text.
fn rustls_pem_to_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64_decode(&body)
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).unwrap() as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
