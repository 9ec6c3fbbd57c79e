//! In-process `mem://` listeners and streams.

mod common;

use std::time::Duration;

use common::{check_echo_both_ways, payload, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirecall_transport::{
    Address, Listener, Origin, PeerAddr, Stream, TransportError, MEM_BUFFER_SIZE,
};

#[tokio::test]
async fn echo_both_ways() {
    within(async {
        let listener = Listener::bind(&"mem://mem-echo".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(listener.local_addr(), &Address::mem("mem-echo"));
        // Several times the pipe buffer, so backpressure is exercised in both directions.
        check_echo_both_ways(listener, &payload(4 * MEM_BUFFER_SIZE + 17)).await;
    })
    .await;
}

#[tokio::test]
async fn peers_share_a_connection_number() {
    within(async {
        let listener = Listener::bind(&Address::mem("mem-peers")).await.unwrap();
        let a = Stream::connect(&Address::mem("mem-peers")).await.unwrap();
        let b = Stream::connect(&Address::mem("mem-peers")).await.unwrap();
        let (sa, pa) = listener.accept().await.unwrap();
        let (sb, _) = listener.accept().await.unwrap();
        assert_eq!(a.peer_addr(), &pa);
        assert_eq!(sa.peer_addr(), a.peer_addr());
        assert_eq!(sb.peer_addr(), b.peer_addr());
        assert_ne!(a.peer_addr(), b.peer_addr());
        let PeerAddr::Mem { name, connection } = a.peer_addr() else {
            panic!("expected a mem peer");
        };
        assert_eq!(name, "mem-peers");
        assert_eq!(
            a.peer_addr().to_string(),
            format!("mem://mem-peers (connection {connection})")
        );
        assert_eq!(a.peer_addr().to_address(), Some(Address::mem("mem-peers")));
        assert_eq!(a.scheme(), "mem");
        assert_eq!(a.nodelay(), None);
    })
    .await;
}

#[tokio::test]
async fn taken_name_is_refused() {
    within(async {
        let _first = Listener::bind(&Address::mem("mem-taken")).await.unwrap();
        let err = Listener::bind(&Address::mem("mem-taken"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, TransportError::AddressInUse { .. }),
            "{err:?}"
        );
        assert_eq!(err.origin(), Origin::User);
        assert!(!err.is_retryable());
        let msg = err.to_string();
        assert!(msg.contains("mem://mem-taken"), "{msg}");
        assert!(msg.contains("mem://0"), "{msg}");
    })
    .await;
}

#[tokio::test]
async fn dropping_the_listener_frees_the_name() {
    within(async {
        let address = Address::mem("mem-freed");
        let first = Listener::bind(&address).await.unwrap();
        drop(first);
        let err = Stream::connect(&address).await.unwrap_err();
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::ConnectionRefused));
        let second = Listener::bind(&address).await.expect("name is free again");
        let _client = Stream::connect(&address)
            .await
            .expect("reaches the new listener");
        let (_server, _) = second.accept().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn connections_queued_at_drop_see_end_of_file() {
    within(async {
        let address = Address::mem("mem-queued");
        let listener = Listener::bind(&address).await.unwrap();
        let mut client = Stream::connect(&address).await.unwrap();
        drop(listener);
        let mut buf = Vec::new();
        assert_eq!(client.read_to_end(&mut buf).await.unwrap(), 0);
    })
    .await;
}

#[tokio::test]
async fn unknown_name_is_refused_and_retryable() {
    within(async {
        let err = Stream::connect(&Address::mem("mem-nobody"))
            .await
            .unwrap_err();
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::ConnectionRefused));
        assert!(err.is_retryable(), "the listener may not be up yet");
        assert_eq!(err.origin(), Origin::Peer);
        let msg = err.to_string();
        assert!(msg.contains("mem://mem-nobody"), "{msg}");
        assert!(msg.contains("no in-process listener"), "{msg}");
    })
    .await;
}

#[tokio::test]
async fn auto_names_are_unique_and_reachable() {
    within(async {
        let a = Listener::bind(&"mem://0".parse().unwrap()).await.unwrap();
        let b = Listener::bind(&"mem://".parse().unwrap()).await.unwrap();
        let name_a = a.local_addr().mem_name().unwrap().to_owned();
        let name_b = b.local_addr().mem_name().unwrap().to_owned();
        assert!(!name_a.is_empty() && name_a != "0");
        assert_ne!(name_a, name_b);
        let mut client = Stream::connect(a.local_addr()).await.unwrap();
        let (mut server, _) = a.accept().await.unwrap();
        client.write_all(b"x").await.unwrap();
        let mut byte = [0u8; 1];
        server.read_exact(&mut byte).await.unwrap();
        assert_eq!(&byte, b"x");
        // Connecting to the placeholder itself is a mistake, explained.
        let err = Stream::connect(&Address::mem("0")).await.unwrap_err();
        assert!(
            matches!(err, TransportError::InvalidAddress { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("local_addr"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn full_backlog_makes_connect_timeout_expire() {
    within(async {
        let address = Address::mem("mem-backlog");
        let listener = Listener::bind(&address).await.unwrap();
        let mut queued = Vec::new();
        // Fill the queue: nobody accepts.
        loop {
            match Stream::connect_timeout(&address, Duration::from_millis(200)).await {
                Ok(stream) => queued.push(stream),
                Err(err) => {
                    assert!(matches!(err, TransportError::Timeout { .. }), "{err:?}");
                    assert!(err.is_retryable());
                    assert_eq!(err.origin(), Origin::Peer);
                    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::TimedOut));
                    assert!(err.to_string().contains("timed out after 200ms"), "{err}");
                    break;
                }
            }
            assert!(queued.len() <= 10_000, "the backlog must be bounded");
        }
        assert!(!queued.is_empty());
        // Accepting one makes room again.
        let _ = listener.accept().await.unwrap();
        Stream::connect_timeout(&address, Duration::from_secs(5))
            .await
            .expect("room after an accept");
    })
    .await;
}

#[tokio::test]
async fn mem_pair_is_connected() {
    within(async {
        let (mut a, mut b) = Stream::mem_pair();
        a.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        b.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        assert_eq!(a.peer_addr(), b.peer_addr());
        assert_eq!(a.peer_addr().to_address(), None);
        drop(a);
        assert_eq!(b.read(&mut buf).await.unwrap(), 0);
    })
    .await;
}

#[tokio::test]
async fn accept_is_cancel_safe() {
    within(async {
        let address = Address::mem("mem-cancel");
        let listener = Listener::bind(&address).await.unwrap();
        // An accept that is abandoned must not swallow a connection.
        let abandoned = tokio::time::timeout(Duration::from_millis(20), listener.accept()).await;
        assert!(abandoned.is_err());
        let _client = Stream::connect(&address).await.unwrap();
        let (_server, _) = listener.accept().await.expect("connection still there");
    })
    .await;
}

#[test]
fn names_are_shared_across_runtimes() {
    // The registry is process-wide: a listener on one runtime serves a client on another.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = server_rt
        .block_on(Listener::bind(&Address::mem("mem-runtimes")))
        .unwrap();
    let server = server_rt.spawn(common::echo_once(listener));
    client_rt.block_on(within(async {
        let mut client = Stream::connect(&Address::mem("mem-runtimes"))
            .await
            .unwrap();
        client.write_all(b"across").await.unwrap();
        client.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"across");
    }));
    assert_eq!(server_rt.block_on(server).unwrap(), 6);
}
