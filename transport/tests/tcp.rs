//! TCP listeners and streams on loopback.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use common::{check_echo_both_ways, echo_once, payload, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirecall_transport::{
    Address, Host, Listener, Operation, Origin, PeerAddr, Stream, TransportError,
};

#[tokio::test]
async fn port_zero_binds_a_real_port_and_echoes_both_ways() {
    within(async {
        let listener = Listener::bind(&"tcp://127.0.0.1:0".parse().unwrap())
            .await
            .expect("bind");
        let local = listener.local_addr().clone();
        assert_eq!(local.scheme(), "tcp");
        let port = local.port().expect("tcp port");
        assert_ne!(port, 0, "port 0 must be replaced by the real port");
        assert_eq!(
            local,
            Address::tcp(Ipv4Addr::LOCALHOST, port),
            "local_addr is the real address"
        );
        // 1 MiB: more than any socket buffer, so both directions must make progress together.
        check_echo_both_ways(listener, &payload(1 << 20)).await;
    })
    .await;
}

#[tokio::test]
async fn peer_addresses_match_on_both_ends() {
    within(async {
        let listener = Listener::bind(&"tcp://127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let local = listener.local_addr().clone();
        let client = Stream::connect(&local).await.unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        // The client sees the server's listening address...
        assert_eq!(client.peer_addr().to_address().as_ref(), Some(&local));
        // ...and the server sees the client's ephemeral loopback port.
        let PeerAddr::Tcp(client_addr) = peer else {
            panic!("expected a tcp peer, got {peer:?}");
        };
        assert_eq!(client_addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_ne!(client_addr.port(), 0);
        assert_eq!(server.peer_addr(), &PeerAddr::Tcp(client_addr));
        assert_eq!(
            server.peer_addr().to_string(),
            format!("tcp://{client_addr}")
        );
        assert_eq!(server.scheme(), "tcp");
        assert_eq!(client.scheme(), "tcp");
    })
    .await;
}

#[tokio::test]
async fn nodelay_is_set_on_both_ends() {
    within(async {
        let listener = Listener::bind(&"tcp://127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let client = Stream::connect(listener.local_addr()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        assert_eq!(client.nodelay(), Some(true), "connected stream");
        assert_eq!(server.nodelay(), Some(true), "accepted stream");
    })
    .await;
}

#[tokio::test]
async fn ipv6_loopback_when_available() {
    within(async {
        let address = Address::tcp(Ipv6Addr::LOCALHOST, 0);
        let listener = match Listener::bind(&address).await {
            Ok(listener) => listener,
            Err(e) => {
                println!("skipping: cannot bind {address} on this machine: {e}");
                return;
            }
        };
        let local = listener.local_addr().clone();
        assert_eq!(
            local.to_string(),
            format!("tcp://[::1]:{}", local.port().unwrap())
        );
        let reparsed: Address = local.to_string().parse().unwrap();
        assert_eq!(reparsed, local);
        check_echo_both_ways(listener, &payload(64 * 1024)).await;
    })
    .await;
}

#[tokio::test]
async fn host_names_resolve_at_bind_and_connect() {
    within(async {
        let address = Address::tcp(Host::Name("localhost".into()), 0);
        let listener = match Listener::bind(&address).await {
            Ok(listener) => listener,
            Err(e) => {
                println!("skipping: `localhost` does not resolve here: {e}");
                return;
            }
        };
        // local_addr reports the IP that was bound, not the name.
        let local = listener.local_addr().clone();
        let Address::Tcp {
            host: Host::Ip(ip),
            port,
        } = &local
        else {
            panic!("expected an IP in {local:?}");
        };
        assert!(ip.is_loopback());
        // Connecting by name tries each resolved IP until one answers.
        let by_name = Address::tcp(Host::Name("localhost".into()), *port);
        let server = tokio::spawn(echo_once(listener));
        let mut client = Stream::connect(&by_name).await.expect("connect by name");
        client.write_all(b"by name").await.unwrap();
        client.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"by name");
        assert_eq!(server.await.unwrap(), 7);
    })
    .await;
}

#[tokio::test]
async fn unresolvable_host_is_a_user_error() {
    within(async {
        let address: Address = "tcp://no-such-host.invalid:4000".parse().unwrap();
        let err = Stream::connect(&address).await.unwrap_err();
        assert!(matches!(err, TransportError::Resolve { .. }), "{err:?}");
        assert_eq!(err.origin(), Origin::User);
        assert!(!err.is_retryable());
        let msg = err.to_string();
        assert!(msg.contains("tcp://no-such-host.invalid:4000"), "{msg}");
        assert!(msg.contains("check the host name"), "{msg}");
    })
    .await;
}

/// A port that was just free: bind port 0, note the port, close the listener.
async fn free_port() -> u16 {
    let listener = Listener::bind(&"tcp://127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    listener.local_addr().port().unwrap()
}

#[tokio::test]
async fn connection_refused_is_retryable_and_blames_the_peer() {
    within(async {
        let address = Address::tcp(Ipv4Addr::LOCALHOST, free_port().await);
        let err = Stream::connect(&address).await.unwrap_err();
        assert_eq!(
            err.io_kind(),
            Some(std::io::ErrorKind::ConnectionRefused),
            "{err:?}"
        );
        assert!(matches!(
            err,
            TransportError::Io {
                operation: Operation::Connect,
                ..
            }
        ));
        assert!(err.is_retryable());
        assert_eq!(err.origin(), Origin::Peer);
        let msg = err.to_string();
        assert!(msg.contains(&address.to_string()), "{msg}");
        assert!(msg.contains("is the server running"), "{msg}");
        let io: std::io::Error = err.into();
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    })
    .await;
}

#[tokio::test]
async fn connect_timeout_succeeds_within_the_limit() {
    within(async {
        let listener = Listener::bind(&"tcp://127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let stream = Stream::connect_timeout(listener.local_addr(), Duration::from_secs(5))
            .await
            .expect("connect within timeout");
        assert_eq!(stream.nodelay(), Some(true));
        // A refused connection is reported as such, not as a timeout.
        let refused = Address::tcp(Ipv4Addr::LOCALHOST, free_port().await);
        let err = Stream::connect_timeout(&refused, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::ConnectionRefused));
    })
    .await;
}

#[tokio::test]
async fn port_in_use_is_a_clear_bind_error() {
    within(async {
        let first = Listener::bind(&"tcp://127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let err = Listener::bind(first.local_addr()).await.unwrap_err();
        assert_eq!(
            err.io_kind(),
            Some(std::io::ErrorKind::AddrInUse),
            "{err:?}"
        );
        assert!(!err.is_retryable());
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("bind {} failed", first.local_addr())),
            "{msg}"
        );
        assert!(msg.contains("port 0"), "{msg}");
    })
    .await;
}

#[tokio::test]
async fn many_concurrent_connections() {
    within(async {
        let listener = Listener::bind(&"tcp://127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let address = listener.local_addr().clone();
        let server = tokio::spawn(async move {
            let mut tasks = Vec::new();
            for _ in 0..32 {
                let (mut stream, _) = listener.accept().await.unwrap();
                tasks.push(tokio::spawn(async move {
                    let mut buf = Vec::new();
                    stream.read_to_end(&mut buf).await.unwrap();
                    stream.write_all(&buf).await.unwrap();
                    stream.shutdown().await.unwrap();
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
        });
        let mut clients = Vec::new();
        for i in 0..32u8 {
            let address = address.clone();
            clients.push(tokio::spawn(async move {
                let mut stream = Stream::connect(&address).await.unwrap();
                let data = vec![i; 1000 + usize::from(i)];
                stream.write_all(&data).await.unwrap();
                stream.shutdown().await.unwrap();
                let mut back = Vec::new();
                stream.read_to_end(&mut back).await.unwrap();
                assert_eq!(back, data);
            }));
        }
        for client in clients {
            client.await.unwrap();
        }
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn connecting_to_port_zero_is_explained() {
    within(async {
        let err = Stream::connect(&"tcp://127.0.0.1:0".parse().unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(err, TransportError::InvalidAddress { .. }),
            "{err:?}"
        );
        assert_eq!(err.origin(), Origin::User);
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("local_addr"), "{err}");
    })
    .await;
}
