//! Platforms without unix domain sockets still parse `unix://` addresses but refuse to use
//! them with a clear, non-retryable error.

#![cfg(not(unix))]

mod common;

use common::within;
use wirecall_transport::{Address, Listener, Origin, Stream, TransportError};

#[tokio::test]
async fn unix_addresses_are_unsupported() {
    within(async {
        let address: Address = "unix:///tmp/x.sock".parse().unwrap();
        for err in [
            Listener::bind(&address).await.unwrap_err(),
            Stream::connect(&address).await.unwrap_err(),
        ] {
            assert!(matches!(err, TransportError::Unsupported { .. }), "{err:?}");
            assert_eq!(err.origin(), Origin::Local);
            assert!(!err.is_retryable());
            assert!(
                err.to_string().contains("use a tcp:// or mem:// address"),
                "{err}"
            );
        }
    })
    .await;
}
