//! Relative `unix://` paths. Alone in this file because it changes the working directory,
//! which is shared by every test thread of a binary.

#![cfg(unix)]

mod common;

use common::within;
use wirecall_transport::Listener;

#[tokio::test]
async fn relative_paths_resolve_against_the_working_directory() {
    within(async {
        // This test changes the process's working directory, so it lives alone in its own
        // test binary.
        let dir = tempfile::tempdir().unwrap();
        let cwd = std::env::current_dir().unwrap();
        std::env::set_current_dir(dir.path()).unwrap();
        let bound = Listener::bind(&"unix://rel.sock".parse().unwrap()).await;
        std::env::set_current_dir(&cwd).unwrap();
        let listener = bound.unwrap();
        let expected = dir.path().canonicalize().unwrap().join("rel.sock");
        let local = listener.local_addr().path().unwrap().to_owned();
        assert!(local.is_absolute(), "{local:?}");
        assert_eq!(local.canonicalize().unwrap(), expected);
        // Clean-up on drop uses the absolute path even though the cwd moved back.
        drop(listener);
        assert!(!expected.exists());
    })
    .await;
}
