//! TLS through the engine: `tls://` and `tls+unix://` servers and proxies, mutual TLS with
//! the client's identity visible to handlers and hooks, and the errors a user sees, over
//! real loopback sockets with certificates made at test time.

#[path = "../../transport/tests/pki/mod.rs"]
mod pki;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pki::Ca;
use wirecall::{
    CallContext, CallHook, CallInfo, ConnectionInfo, Engine, Proxy, TlsClientConfig,
    TlsServerConfig,
};

const LIMIT: Duration = Duration::from_secs(30);

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test did not finish in time")
}

#[derive(Default)]
struct Who {
    connected: Mutex<Vec<Option<String>>>,
}

#[wirecall::provider(service = "who")]
impl Who {
    #[remote]
    fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        data
    }

    /// The caller's identity as the handler sees it.
    #[remote]
    fn whoami(&self, ctx: CallContext) -> Option<String> {
        ctx.connection().peer_identity().map(|id| id.to_string())
    }

    #[remote]
    fn transport(&self, ctx: CallContext) -> (bool, String) {
        let tls = ctx.connection().tls();
        (
            tls.is_some(),
            tls.map(|t| t.protocol_version().to_owned())
                .unwrap_or_default(),
        )
    }

    #[on_connect]
    fn on_connect(&self, info: &ConnectionInfo) {
        let cn = info
            .peer_identity()
            .and_then(|id| id.common_name().map(str::to_owned));
        self.connected.lock().unwrap().push(cn);
    }
}

fn server_tls(ca: &Ca, names: &[&str]) -> TlsServerConfig {
    let pem = ca.server(names);
    TlsServerConfig::from_pem(pem.cert.as_bytes(), pem.key.as_bytes()).unwrap()
}

fn trusting(ca: &Ca) -> TlsClientConfig {
    TlsClientConfig::with_ca_pem(ca.cert_pem().as_bytes()).unwrap()
}

async fn serve(address: &str, tls: TlsServerConfig) -> (Engine, Arc<Who>) {
    let server = Engine::server(address).tls(tls).start().await.unwrap();
    let who = Arc::new(Who::default());
    server.register_arc(who.clone(), 1).unwrap();
    (server, who)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_tls_on_tcp_and_unix_sockets() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("test CA");
        for address in [
            "tls://127.0.0.1:0".to_owned(),
            format!("tls+unix://{}", dir.path().join("tls.sock").display()),
        ] {
            let (server, _) = serve(&address, server_tls(&ca, &["localhost", "127.0.0.1"])).await;
            let url = server.address();
            assert!(url.starts_with("tls"), "{url}");
            let proxy = Proxy::new(&url).unwrap().tls(trusting(&ca));
            let reply: Vec<u8> = proxy
                .call_on(1, "who_echo")
                .unwrap()
                .arg(b"over TLS".to_vec())
                .call()
                .await
                .unwrap();
            assert_eq!(reply, b"over TLS");
            let (tls, version): (bool, String) = proxy
                .call_on(1, "who_transport")
                .unwrap()
                .call()
                .await
                .unwrap();
            assert!(tls, "the handler sees a TLS connection on {url}");
            assert!(version.starts_with("TLSv1."), "{version}");

            // Large arguments and many calls in flight: records larger than a socket
            // buffer, and replies that must leave while others are written.
            let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
            let back: Vec<u8> = proxy
                .call_on(1, "who_echo")
                .unwrap()
                .arg(big.clone())
                .call()
                .await
                .unwrap();
            assert_eq!(back, big);
            let calls = (0..100u32).map(|i| {
                let proxy = proxy.clone();
                async move {
                    let data = vec![(i % 256) as u8; 1000 + i as usize * 50];
                    let back: Vec<u8> = proxy
                        .call_on(1, "who_echo")
                        .unwrap()
                        .arg(data.clone())
                        .call()
                        .await
                        .unwrap();
                    assert_eq!(back, data);
                }
            });
            futures::future::join_all(calls).await;

            // A client engine configured once for every proxy it makes.
            let client = wirecall::Client::with_tls(trusting(&ca));
            let reply: Vec<u8> = client
                .register("who_echo")
                .on(&url, 1)
                .arg(vec![7u8])
                .call()
                .await
                .unwrap();
            assert_eq!(reply, [7]);
            server.finalize().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_host_or_from_an_unknown_ca_is_refused_clearly() {
    within(async {
        let ca = Ca::new("test CA");
        let (server, _) = serve("tls://127.0.0.1:0", server_tls(&ca, &["other.example"])).await;
        let proxy = Proxy::new(&server.address()).unwrap().tls(trusting(&ca));
        let err = proxy.connect().await.unwrap_err().to_string();
        assert!(
            err.contains("certificate is for other.example and is not valid for `127.0.0.1`"),
            "{err}"
        );

        let stranger = Ca::new("another CA");
        let proxy = Proxy::new(&server.address())
            .unwrap()
            .tls(trusting(&stranger));
        let err = proxy.connect().await.unwrap_err().to_string();
        assert!(err.contains("signed by an unknown CA"), "{err}");
        server.finalize().await;
    })
    .await;
}

struct RecordIdentity(Arc<Mutex<Vec<String>>>);

impl CallHook for RecordIdentity {
    fn before(&self, call: &CallInfo<'_>) -> Result<(), String> {
        let who = call.peer_identity.and_then(|id| id.common_name());
        self.0.lock().unwrap().push(who.unwrap_or("-").to_owned());
        match who {
            Some("mallory") => Err("mallory may not call".into()),
            _ => Ok(()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_shows_the_client_identity_to_handlers_and_hooks() {
    within(async {
        let server_ca = Ca::new("server CA");
        let client_ca = Ca::new("client CA");
        let tls = server_tls(&server_ca, &["127.0.0.1"])
            .require_client_cert_pem(client_ca.cert_pem().as_bytes())
            .unwrap();
        let (server, who) = serve("tls://127.0.0.1:0", tls).await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        server.add_hook(RecordIdentity(seen.clone()));
        let url = server.address();

        let alice = client_ca.client("alice", "Acme", &["alice.internal"], &[]);
        let config = trusting(&server_ca)
            .client_cert_pem(alice.cert.as_bytes(), alice.key.as_bytes())
            .unwrap();
        let proxy = Proxy::new(&url).unwrap().tls(config);
        let id: Option<String> = proxy
            .call_on(1, "who_whoami")
            .unwrap()
            .call()
            .await
            .unwrap();
        assert_eq!(id.as_deref(), Some("O=Acme,CN=alice [DNS:alice.internal]"));
        assert_eq!(*seen.lock().unwrap(), ["alice"]);
        assert_eq!(*who.connected.lock().unwrap(), [Some("alice".to_owned())]);

        // A hook can refuse by identity.
        let mallory = client_ca.client("mallory", "Acme", &[], &[]);
        let config = trusting(&server_ca)
            .client_cert_pem(mallory.cert.as_bytes(), mallory.key.as_bytes())
            .unwrap();
        let proxy = Proxy::new(&url).unwrap().tls(config);
        let err = proxy
            .call_on(1, "who_whoami")
            .unwrap()
            .call::<Option<String>>()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("mallory may not call"), "{err}");
        server.finalize().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_a_client_without_a_certificate_saying_why() {
    within(async {
        let server_ca = Ca::new("server CA");
        let client_ca = Ca::new("client CA");
        let tls = server_tls(&server_ca, &["127.0.0.1"])
            .require_client_cert_pem(client_ca.cert_pem().as_bytes())
            .unwrap();
        let (server, who) = serve("tls://127.0.0.1:0", tls).await;
        let proxy = Proxy::new(&server.address())
            .unwrap()
            .tls(trusting(&server_ca));
        let started = Instant::now();
        let err = proxy.connect().await.unwrap_err().to_string();
        assert!(err.contains("requires a client certificate"), "{err}");
        assert!(
            err.contains("WIRECALL_TLS_CLIENT_CERT"),
            "says what to do: {err}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(who.connected.lock().unwrap().is_empty(), "never connected");
        server.finalize().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_and_tls_mismatches_fail_fast_saying_so() {
    within(async {
        let ca = Ca::new("test CA");
        let (tls_server, _) = serve("tls://127.0.0.1:0", server_tls(&ca, &["127.0.0.1"])).await;
        let tls_url = tls_server.address();
        let plain_url = tls_url.replacen("tls://", "tcp://", 1);

        // A plaintext client on the TLS port: refused with the TLS address to use.
        let started = Instant::now();
        let err = Proxy::new(&plain_url).unwrap().connect().await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("{tls_url} requires TLS")), "{text}");
        assert!(!err.is_retryable(), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "fails fast");

        // A TLS client on a plaintext port: told the server does not speak TLS.
        let plain_server = Engine::server("tcp://127.0.0.1:0").start().await.unwrap();
        let plain = plain_server.address();
        let started = Instant::now();
        let err = Proxy::new(&plain.replacen("tcp://", "tls://", 1))
            .unwrap()
            .tls(trusting(&ca))
            .connect()
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("the server does not speak TLS"), "{err}");
        assert!(err.contains(&format!("connect with {plain}")), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2), "fails fast");

        // Both servers still serve their own kind of client.
        let reply: Vec<u8> = Proxy::new(&tls_url)
            .unwrap()
            .tls(trusting(&ca))
            .call_on(1, "who_echo")
            .unwrap()
            .arg(vec![1u8])
            .call()
            .await
            .unwrap();
        assert_eq!(reply, [1]);
        tls_server.finalize().await;
        plain_server.finalize().await;
    })
    .await;
}
