//! `mem://` transport: a process-wide registry of named in-process listeners, with streams
//! backed by [`tokio::io::duplex`].

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use tokio::io::DuplexStream;
use tokio::sync::mpsc;

use crate::address::Address;
use crate::error::{Operation, TransportError};

/// Bytes buffered in each direction of an in-process stream before a writer waits for the
/// reader. Large enough that typical frames pass without a task switch.
pub const MEM_BUFFER_SIZE: usize = 256 * 1024;

/// Connections that may wait in a listener's queue before `connect` waits for `accept`,
/// like a TCP listen backlog.
const BACKLOG: usize = 128;

/// A connection waiting to be accepted: the server's end and its connection number.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) stream: DuplexStream,
    pub(crate) connection: u64,
}

type Registry = Mutex<HashMap<String, mpsc::Sender<Pending>>>;

fn registry() -> MutexGuard<'static, HashMap<String, mpsc::Sender<Pending>>> {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    // The map stays consistent even if a holder panicked (every critical section is a single
    // insert/remove/lookup), so recover from poisoning instead of propagating a panic.
    REGISTRY
        .get_or_init(Registry::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Process-unique numbers for generated names and connection ids.
pub(crate) fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Whether a name asks for a generated one.
fn is_auto(name: &str) -> bool {
    name.is_empty() || name == "0"
}

/// The listening end: owns the queue of pending connections and its registry entry.
#[derive(Debug)]
pub(crate) struct MemListener {
    name: String,
    /// Kept to recognise our own registry entry when dropping.
    sender: mpsc::Sender<Pending>,
    receiver: tokio::sync::Mutex<mpsc::Receiver<Pending>>,
}

impl MemListener {
    pub(crate) fn bind(name: &str) -> Result<Self, TransportError> {
        let (sender, receiver) = mpsc::channel(BACKLOG);
        let mut map = registry();
        let name = if is_auto(name) {
            loop {
                let candidate = format!("auto-{}", next_id());
                if !map.contains_key(&candidate) {
                    break candidate;
                }
            }
        } else if map.contains_key(name) {
            return Err(TransportError::in_use(
                Address::mem(name),
                format!(
                    "another listener in this process is bound to the name `{name}`; \
                     drop it first, pick another name, or bind mem://0 for a unique one"
                ),
            ));
        } else {
            name.to_owned()
        };
        map.insert(name.clone(), sender.clone());
        drop(map);
        tracing::debug!(name = %name, "bound in-process listener");
        Ok(MemListener {
            name,
            sender,
            receiver: tokio::sync::Mutex::new(receiver),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Cancel-safe: a connection is only taken from the queue when `recv` completes.
    pub(crate) async fn accept(&self) -> Result<Pending, TransportError> {
        let mut receiver = self.receiver.lock().await;
        receiver.recv().await.ok_or_else(|| {
            // Unreachable while `self.sender` lives, but answer with an error, not a panic.
            TransportError::io(
                Operation::Accept,
                Address::mem(self.name.as_str()),
                io::Error::new(io::ErrorKind::NotConnected, "the listener queue is closed"),
            )
        })
    }
}

impl Drop for MemListener {
    fn drop(&mut self) {
        let mut map = registry();
        // Only remove the entry if it is still ours.
        if map
            .get(&self.name)
            .is_some_and(|sender| sender.same_channel(&self.sender))
        {
            map.remove(&self.name);
            tracing::debug!(name = %self.name, "released in-process listener name");
        }
    }
}

/// Connects to the listener named `name`; returns the client's end and the connection id.
pub(crate) async fn connect(name: &str) -> Result<(DuplexStream, u64), TransportError> {
    let address = Address::mem(name);
    if is_auto(name) {
        return Err(TransportError::invalid(
            &address.to_string(),
            format!("cannot connect to `{address}`: an empty name or `0` only means \"pick a unique name\" when binding"),
            "connect to the name the listener reports in Listener::local_addr(), e.g. mem://auto-1",
        ));
    }
    let sender = registry().get(name).cloned();
    let refused = || {
        TransportError::io(
            Operation::Connect,
            &address,
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("no in-process listener is bound to the name `{name}`; mem:// only reaches listeners of this process"),
            ),
        )
    };
    let sender = sender.ok_or_else(refused)?;
    let (client, server) = tokio::io::duplex(MEM_BUFFER_SIZE);
    let connection = next_id();
    sender
        .send(Pending {
            stream: server,
            connection,
        })
        .await
        .map_err(|_| refused())?;
    Ok((client, connection))
}
