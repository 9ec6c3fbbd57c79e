//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirecall_transport::{Listener, Stream};

/// Upper bound for every test body: a hang is a failure, not a stuck CI job.
pub(crate) const LIMIT: Duration = Duration::from_secs(20);

/// Runs `fut` and panics if it takes longer than [`LIMIT`].
pub(crate) async fn within<F: Future>(fut: F) -> F::Output {
    match tokio::time::timeout(LIMIT, fut).await {
        Ok(output) => output,
        Err(_) => panic!("test did not finish within {LIMIT:?}"),
    }
}

/// A payload that is not all one byte value, so reordering or truncation shows.
pub(crate) fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Accepts one connection and echoes everything it reads until end-of-file, using the two
/// split halves from two different tasks. Returns the number of bytes echoed.
pub(crate) async fn echo_once(listener: Listener) -> u64 {
    let (stream, _peer) = listener.accept().await.expect("accept");
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    let read_task = tokio::spawn(async move {
        let mut total = 0u64;
        let mut buf = vec![0u8; 8192];
        loop {
            let n = reader.read(&mut buf).await.expect("server read");
            if n == 0 {
                break;
            }
            total += n as u64;
            tx.send(buf[..n].to_vec())
                .await
                .expect("forward to writer task");
        }
        total
    });
    let write_task = tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            writer.write_all(&chunk).await.expect("server write");
        }
        writer.shutdown().await.expect("server shutdown");
    });
    let total = read_task.await.expect("read task");
    write_task.await.expect("write task");
    total
}

/// Connected client side of an echo check: the server greets first (server to client),
/// then the client sends `data` and reads it back (client to server to client).
pub(crate) async fn check_echo_both_ways(listener: Listener, data: &[u8]) {
    let address = listener.local_addr().clone();
    let server = tokio::spawn(async move {
        let (mut stream, peer) = listener.accept().await.expect("accept");
        assert_eq!(stream.peer_addr(), &peer);
        stream
            .write_all(b"hello from server\n")
            .await
            .expect("greet");
        let mut received = Vec::new();
        let (mut reader, mut writer) = stream.into_split();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = reader.read(&mut buf).await.expect("server read");
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buf[..n]);
            writer.write_all(&buf[..n]).await.expect("server write");
        }
        writer.shutdown().await.expect("server shutdown");
        received
    });

    let mut client = Stream::connect(&address).await.expect("connect");
    let mut greeting = [0u8; 18];
    client
        .read_exact(&mut greeting)
        .await
        .expect("read greeting");
    assert_eq!(&greeting, b"hello from server\n");

    let (mut reader, mut writer) = client.into_split();
    let owned = data.to_vec();
    let sender = tokio::spawn(async move {
        writer.write_all(&owned).await.expect("client write");
        writer.shutdown().await.expect("client shutdown");
    });
    let mut echoed = Vec::new();
    reader.read_to_end(&mut echoed).await.expect("client read");
    sender.await.expect("sender task");
    assert_eq!(echoed.len(), data.len());
    assert!(echoed == data, "echoed bytes differ from the sent ones");
    let received = server.await.expect("server task");
    assert!(received == data, "server received different bytes");
}
