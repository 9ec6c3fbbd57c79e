//! Unix domain socket listeners and streams, in temporary directories.

#![cfg(unix)]

mod common;

use std::os::unix::fs::FileTypeExt;

use common::{check_echo_both_ways, payload, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirecall_transport::{Address, Listener, Origin, PeerAddr, Stream, TransportError};

fn is_socket(path: &std::path::Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

#[tokio::test]
async fn echo_both_ways() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("echo.sock");
        let address: Address = format!("unix://{}", path.display()).parse().unwrap();
        let listener = Listener::bind(&address).await.unwrap();
        assert_eq!(listener.local_addr(), &address);
        assert!(is_socket(&path));
        check_echo_both_ways(listener, &payload(1 << 20)).await;
    })
    .await;
}

#[tokio::test]
async fn peer_addresses() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let address = Address::unix(dir.path().join("peer.sock"));
        let listener = Listener::bind(&address).await.unwrap();
        let client = Stream::connect(&address).await.unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, PeerAddr::Unix { path: None }, "clients are unnamed");
        assert_eq!(server.peer_addr().to_string(), "unix:(unnamed)");
        assert_eq!(client.peer_addr().to_address(), Some(address));
        assert_eq!(client.scheme(), "unix");
        assert_eq!(client.nodelay(), None);
    })
    .await;
}

#[tokio::test]
async fn socket_file_is_removed_on_drop() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drop.sock");
        let listener = Listener::bind(&Address::unix(&path)).await.unwrap();
        assert!(is_socket(&path));
        drop(listener);
        assert!(!path.exists(), "socket file must be gone after drop");
        let err = Stream::connect(&Address::unix(&path)).await.unwrap_err();
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound));
        assert!(err.is_retryable(), "the server may be about to start");
        assert_eq!(err.origin(), Origin::Peer);
        assert!(err.to_string().contains("is the server running"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn drop_leaves_a_replacement_file_alone() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replaced.sock");
        let listener = Listener::bind(&Address::unix(&path)).await.unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"someone else's file").unwrap();
        drop(listener);
        assert_eq!(std::fs::read(&path).unwrap(), b"someone else's file");
    })
    .await;
}

#[tokio::test]
async fn stale_socket_file_is_replaced() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stale.sock");
        // A socket file nobody listens on, as left behind by a crashed server.
        let std_listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(std_listener);
        assert!(is_socket(&path), "std leaves the file behind");
        let listener = Listener::bind(&Address::unix(&path))
            .await
            .expect("stale socket is removed and rebound");
        let server = tokio::spawn(common::echo_once(listener));
        let mut client = Stream::connect(&Address::unix(&path)).await.unwrap();
        client.write_all(b"fresh").await.unwrap();
        client.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"fresh");
        assert_eq!(server.await.unwrap(), 5);
    })
    .await;
}

#[tokio::test]
async fn regular_file_is_never_deleted() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("precious.sock");
        std::fs::write(&path, b"data").unwrap();
        let err = Listener::bind(&Address::unix(&path)).await.unwrap_err();
        assert!(
            matches!(err, TransportError::AddressInUse { .. }),
            "{err:?}"
        );
        assert_eq!(err.origin(), Origin::User);
        assert!(!err.is_retryable());
        let msg = err.to_string();
        assert!(msg.contains("a regular file, not a socket"), "{msg}");
        assert!(msg.contains("refusing to delete"), "{msg}");
        assert_eq!(std::fs::read(&path).unwrap(), b"data", "file untouched");

        let sub = dir.path().join("a-directory");
        std::fs::create_dir(&sub).unwrap();
        let err = Listener::bind(&Address::unix(&sub)).await.unwrap_err();
        assert!(
            err.to_string().contains("a directory, not a socket"),
            "{err}"
        );
        assert!(sub.is_dir());
    })
    .await;
}

#[tokio::test]
async fn live_listener_keeps_its_path() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.sock");
        let address = Address::unix(&path);
        let first = Listener::bind(&address).await.unwrap();
        let err = Listener::bind(&address).await.unwrap_err();
        assert!(
            matches!(err, TransportError::AddressInUse { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("a listener is live"), "{err}");
        assert!(!err.is_retryable());
        // The first listener still works (the probe connection it got is just an early EOF).
        let (probe, _) = first.accept().await.unwrap();
        drop(probe);
        let mut client = Stream::connect(&address).await.unwrap();
        let (mut server, _) = first.accept().await.unwrap();
        client.write_all(b"still here").await.unwrap();
        let mut buf = [0u8; 10];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"still here");
        assert!(is_socket(&path));
    })
    .await;
}

#[tokio::test]
async fn missing_parent_directory_is_explained() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let address = Address::unix(dir.path().join("no/such/dir/x.sock"));
        let err = Listener::bind(&address).await.unwrap_err();
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound), "{err:?}");
        assert_eq!(err.origin(), Origin::User);
        assert!(err.to_string().contains("parent directory"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn too_long_path_is_explained() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let address = Address::unix(dir.path().join("x".repeat(200)));
        let err = Listener::bind(&address).await.unwrap_err();
        assert_eq!(
            err.io_kind(),
            Some(std::io::ErrorKind::InvalidInput),
            "{err:?}"
        );
        assert!(err.to_string().contains("shorter path"), "{err}");
    })
    .await;
}
