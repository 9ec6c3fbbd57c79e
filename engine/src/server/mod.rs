//! The server side: the builder and the engine's lifecycle (this file), the connection
//! driver ([`conn`]), call dispatch ([`dispatch`]) and the built-in daemon object
//! ([`daemon`]).
//!
//! Where handlers run (inline on a connection's reader, on a task, or on the blocking pool
//! for `#[remote(blocking)]`, oneway and budget-overrunning methods) and how deadlines bound
//! every kind of handler: see [the provider module](crate::provider#where-handlers-run).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use wirecall_protocol as proto;
use wirecall_transport::{Address, Listener};

use crate::config::{self, accepted_from_env};
use crate::context::ConnectionInfo;
use crate::error::Error;
use crate::hooks::CallHook;
use crate::io::Wire;
use crate::provider::{Instances, Metadata, Provider, Registered};
use crate::CodecId;

pub(crate) mod callback;
pub(crate) mod conn;
mod daemon;
pub(crate) mod dispatch;
mod pyro;
pub(crate) mod trace;

/// The provider id of the built-in daemon object (metadata, ping, remote shutdown).
pub const DAEMON_PROVIDER_ID: u16 = 0xffff;

/// Builds and starts a server [`Engine`]; made by [`Engine::server`].
#[derive(Debug)]
#[must_use = "a builder does nothing until start() is awaited"]
pub struct ServerBuilder {
    addresses: Vec<String>,
    accepted: Option<Vec<CodecId>>,
    /// Set on the builder (else from the environment or the default, zstd accepted).
    compression: Option<proto::Compression>,
    limits: proto::Limits,
    /// Set on the builder (else from the environment or the defaults).
    max_in_flight: Option<u32>,
    max_frame_len: Option<u32>,
    /// `Some(None)`: explicitly unlimited.
    max_connections: Option<Option<usize>>,
    grace: Duration,
    /// Remote shutdown is enabled at start with this token.
    shutdown_token: Option<String>,
    /// Timeouts set on the builder (`Some(None)`: explicitly off); unset ones come from the
    /// environment or the defaults.
    timeouts: [Option<Option<Duration>>; 6],
    max_buffered: Option<usize>,
    /// `Some(None)`: detection explicitly off.
    blocking_budget: Option<Option<Duration>>,
    upload_window: u32,
    tls: Option<crate::TlsServerConfig>,
    /// Converters of Pyro5 class dicts in Pyro5 calls' arguments ([`Self::pyro_classes`]).
    pyro_classes: crate::PyroClasses,
    /// Names registered on start and removed at finalize.
    announce: Vec<crate::naming::Announcements>,
}

/// The connection timers a server enforces (see [`ServerBuilder::idle_timeout`] and its
/// neighbours).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) handshake: Option<Duration>,
    pub(crate) frame: Option<Duration>,
    pub(crate) idle: Option<Duration>,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) stream_lifetime: Option<Duration>,
    /// How long a resumable stream whose connection was lost is kept (SPEC §6.14).
    pub(crate) stream_linger: Option<Duration>,
}

impl ServerBuilder {
    /// Listens on one more address (`tcp://127.0.0.1:0`, `unix:///tmp/x.sock`).
    pub fn listen(mut self, address: impl Into<String>) -> Self {
        self.addresses.push(address.into());
        self
    }

    /// The codecs the server accepts (default: every built-in codec, or the list in the
    /// environment variable `WIRECALL_CODECS_ACCEPTED`, e.g. `json,msgpack`).
    pub fn accept(mut self, codecs: impl IntoIterator<Item = CodecId>) -> Self {
        self.accepted = Some(codecs.into_iter().collect());
        self
    }

    /// The compression the server accepts, and how it compresses its answers (SPEC §6.9).
    /// A client that offers an accepted algorithm gets it for the connection: its calls
    /// may come compressed, and answers whose payload is at least `threshold` bytes go back
    /// compressed at `level` (when that makes them smaller). A client that offers none, or
    /// a server set to [`Compression::off`](crate::Compression::off), talks uncompressed.
    /// The frame limit applies to the decompressed frame, so a compressed frame cannot
    /// inflate past it (the connection is closed with GOAWAY LIMIT_EXCEEDED).
    ///
    /// Default: zstd accepted (level 3, threshold 4 KiB), since accepting costs nothing
    /// until a client asks; or `WIRECALL_COMPRESSION` (`zstd`, `zstd:LEVEL`,
    /// `zstd:LEVEL:THRESHOLD`, `none`; see [`config::parse_compression`]).
    pub fn compression(mut self, compression: proto::Compression) -> Self {
        self.compression = Some(compression);
        self
    }

    /// The frame, annotation and in-flight limits the server enforces, all at once (the
    /// environment variables of [`max_frame_len`](Self::max_frame_len) and
    /// [`max_in_flight`](Self::max_in_flight) are then not read).
    pub fn limits(mut self, limits: proto::Limits) -> Self {
        self.limits = limits;
        self.max_in_flight = Some(limits.max_in_flight);
        self.max_frame_len = Some(limits.max_frame_len);
        self
    }

    /// The most calls in flight at once on one connection (oneway calls not counted); a
    /// call over it is answered `Error::Busy` (TOO_MANY_IN_FLIGHT, retryable) and the
    /// connection stays up. Default 128, or `WIRECALL_MAX_IN_FLIGHT`; at least 1.
    pub fn max_in_flight(mut self, calls: u32) -> Self {
        self.max_in_flight = Some(calls);
        self
    }

    /// The largest frame the server accepts, header and sections included: a peer that
    /// declares a larger one is closed with GOAWAY LIMIT_EXCEEDED before anything is
    /// allocated, and clients check their calls against it before sending (the call fails
    /// with `Error::LimitExceeded`, the connection stays up). Default 16 MiB, or
    /// `WIRECALL_MAX_FRAME` (`1048576`, `64KiB`, `16MiB`); at least 4096.
    pub fn max_frame_len(mut self, bytes: u32) -> Self {
        self.max_frame_len = Some(bytes);
        self
    }

    /// The most connections the server serves at once; one more is sent GOAWAY
    /// LIMIT_EXCEEDED ("server busy: ...", the client's connect fails with that message)
    /// and closed, and a warning is logged. Default 10,000, or `WIRECALL_MAX_CONNECTIONS`
    /// (`off` for no limit); `None` serves any number.
    pub fn max_connections(mut self, connections: Option<usize>) -> Self {
        self.max_connections = Some(connections);
        self
    }

    /// Closes a connection that has no call in flight and has sent no frame for this long,
    /// with GOAWAY TIMEOUT (proxies reconnect on their next call). Default 60 s, or
    /// `WIRECALL_IDLE_TIMEOUT` (`500ms`, `30s`, `2m`); `None` keeps idle connections open.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeouts[0] = Some(timeout);
        self
    }

    /// How long a new connection has to complete its handshake, counted from the accept
    /// (bytes arriving do not restart it). Default 10 s, or `WIRECALL_HANDSHAKE_TIMEOUT`.
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeouts[1] = Some(timeout);
        self
    }

    /// How long a frame may take to arrive once its first bytes did, so a peer trickling
    /// bytes cannot hold a connection. Default 30 s, or `WIRECALL_FRAME_TIMEOUT`.
    pub fn frame_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeouts[2] = Some(timeout);
        self
    }

    /// Sends a PING on a connection that has been quiet this long (no frame from the
    /// client), so a client that died during a long call is noticed within the keep-alive
    /// plus the 30 s ping timeout and its calls are stopped. Default 30 s, or
    /// `WIRECALL_KEEPALIVE`; `None` turns it off.
    pub fn keepalive(mut self, interval: Option<Duration>) -> Self {
        self.timeouts[3] = Some(interval);
        self
    }

    /// Ends a streamed result ([`ItemStream`](crate::ItemStream)) whose caller stops
    /// reading it for this long (Pyro's `ITER_STREAM_LIFETIME`): once the stream has sent
    /// its window and no credit comes back within this time, the caller's stream ends with
    /// a `Timeout` error and the handler's stream is dropped. Default off, or
    /// `WIRECALL_STREAM_LIFETIME` (`30s`, `5m`).
    pub fn stream_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.timeouts[4] = Some(lifetime);
        self
    }

    /// How long a streamed result whose connection was lost (without a CANCEL) is kept for
    /// its caller to resume (Pyro's `ITER_STREAM_LINGER`, SPEC §6.14): its producer is
    /// paused, and a proxy that connects again within this time goes on reading where it
    /// stopped, without a lost or repeated item. Streams called with a window (every
    /// `RemoteStream`) are resumable; at most the window of items is kept per stream.
    /// Pyro5 remote iterators linger the same way: a Pyro5 proxy that reconnects goes on
    /// with `get_next_stream_item`. Default 30 s, Pyro's default, or
    /// `WIRECALL_STREAM_LINGER` (`off` disables it).
    pub fn stream_linger(mut self, linger: Option<Duration>) -> Self {
        self.timeouts[5] = Some(linger);
        self
    }

    /// The most bytes all connections together may hold in receive buffers, counting the
    /// full declared size of frames still arriving. A connection whose next frame does not
    /// fit is closed with GOAWAY LIMIT_EXCEEDED (its peer may retry). Default: 64 times the
    /// frame limit, at least 256 MiB; or `WIRECALL_MAX_BUFFERED` in bytes.
    pub fn max_buffered(mut self, bytes: usize) -> Self {
        self.max_buffered = Some(bytes);
        self
    }

    /// The certificate, key and (for mutual TLS) client CA of the `tls://` and
    /// `tls+unix://` addresses this server listens on. Without it they are read from
    /// `WIRECALL_TLS_CERT`, `WIRECALL_TLS_KEY` and `WIRECALL_TLS_CLIENT_CA`. A plaintext
    /// client that reaches a TLS address is refused with a message naming the TLS address.
    pub fn tls(mut self, config: crate::TlsServerConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// Registers `names` in `backend` when the server starts (each for the server's first
    /// address and its provider id: `service:id@tcp://host:port`), and removes them when it
    /// finalizes, before it stops serving (a name that meanwhile points elsewhere is left
    /// alone). `start` fails, registering nothing, when the backend refuses a name.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), wirecall::Error> {
    /// use std::sync::Arc;
    /// use wirecall::naming::{Announce, EmbeddedStore, NamingBackend};
    /// let names = Arc::new(EmbeddedStore::in_memory()?);
    /// let server = wirecall::Engine::server("tcp://127.0.0.1:0")
    ///     .announce(names.clone(), [Announce::new("example.greeting", 1).service("greeting")])
    ///     .start()
    ///     .await?;
    /// assert!(names.lookup("example.greeting").await?[0].uri.starts_with("greeting:1@tcp://"));
    /// server.finalize().await;
    /// assert!(names.lookup("example.greeting").await.is_err());
    /// # Ok(()) }
    /// ```
    pub fn announce(
        mut self,
        backend: std::sync::Arc<dyn crate::naming::NamingBackend>,
        names: impl IntoIterator<Item = crate::naming::Announce>,
    ) -> Self {
        self.announce.push(crate::naming::Announcements {
            backend,
            names: names.into_iter().collect(),
        });
        self
    }

    /// How long a synchronous handler may run on its connection's reader before its method
    /// is judged blocking. A handler runs on the reader (no task hop, the fastest way) unless
    /// its method is declared `#[remote(blocking)]`; while it runs, the connection's other
    /// calls wait. A method whose calls overran this budget three times in a row runs off the reader from
    /// then on, on tokio's blocking pool, for every connection of the server (a warning
    /// names it). Default 10 ms, or `WIRECALL_BLOCKING_BUDGET` (`50ms`, `off`); `None` turns
    /// the detection off (only declared methods then run off the reader).
    pub fn blocking_budget(mut self, budget: Option<Duration>) -> Self {
        self.blocking_budget = Some(budget);
        self
    }

    /// How many argument items a call that streams its arguments
    /// ([`Streaming`](crate::Streaming), SPEC §6.13) may send before its handler took
    /// them: the most held for one call (default [`DEFAULT_UPLOAD_WINDOW`](crate::DEFAULT_UPLOAD_WINDOW),
    /// at least 1). A handler's `Streaming` grants the caller more as it reads.
    pub fn upload_window(mut self, items: u32) -> Self {
        self.upload_window = items.max(1);
        self
    }

    /// How long `finalize` waits for in-flight calls (default 5 s).
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Allows clients presenting `token` to shut the server down remotely
    /// ([`crate::Proxy::shutdown_server`]), from the start; the same as calling
    /// [`Engine::enable_remote_shutdown`] after it. Remote shutdown is off unless enabled,
    /// and never without a token: an empty token fails `start`.
    pub fn enable_remote_shutdown(mut self, token: impl Into<String>) -> Self {
        self.shutdown_token = Some(token.into());
        self
    }

    /// Binds every address and starts serving.
    pub async fn start(self) -> Result<Engine, Error> {
        let accepted = match self.accepted {
            Some(a) => a,
            None => accepted_from_env()?,
        };
        if accepted.is_empty() {
            return Err(Error::config(
                "the accepted codec set is empty; accept at least one codec",
            ));
        }
        for c in &accepted {
            if c.builtin_name().is_none() {
                return Err(Error::config(format!(
                    "codec {c} is not a built-in codec and cannot be accepted"
                )));
            }
        }
        if self.addresses.is_empty() {
            return Err(Error::config(
                "a server needs at least one address to listen on",
            ));
        }
        let compression = match self.compression {
            Some(c) => c,
            None => config::compression_from_env()?.unwrap_or_else(proto::Compression::zstd),
        };
        compression
            .validate()
            .map_err(|e| Error::config(format!("bad server compression: {e}")))?;
        let mut limits = self.limits;
        limits.max_in_flight = match self.max_in_flight {
            Some(n) => n,
            None => config::max_in_flight_from_env()?.unwrap_or(limits.max_in_flight),
        };
        limits.max_frame_len = match self.max_frame_len {
            Some(n) => n,
            None => config::max_frame_from_env()?.unwrap_or(limits.max_frame_len),
        };
        limits
            .validate()
            .map_err(|e| Error::config(format!("bad server limits: {e}")))?;
        let max_connections = match self.max_connections {
            Some(m) => m,
            None => config::max_connections_from_env()?.unwrap_or(Some(DEFAULT_MAX_CONNECTIONS)),
        };
        if max_connections == Some(0) {
            return Err(Error::config(
                "max_connections is 0: the server could serve nobody; set at least 1, or None (`off`) for no limit",
            ));
        }
        let shutdown_token = match self.shutdown_token {
            Some(t) => Some(shutdown_token(t)?),
            None => None,
        };
        let timeouts = config::timeouts_from_env(self.timeouts)?;
        let blocking_budget = config::blocking_budget_from_env(self.blocking_budget)?;
        let max_buffered = match self.max_buffered {
            Some(b) => b,
            None => config::max_buffered_from_env()?.unwrap_or_else(|| {
                (limits.max_frame_len as usize)
                    .saturating_mul(64)
                    .max(256 << 20)
            }),
        };
        let (fin_tx, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            registry: RwLock::new(HashMap::default()),
            registry_gen: AtomicU64::new(0),
            objects: RwLock::new(HashMap::new()),
            accepted,
            compression,
            pyro_classes: self.pyro_classes.clone(),
            limits,
            timeouts,
            blocking_budget,
            upload_window: self.upload_window,
            lingering: timeouts.stream_linger.map(crate::stream::Lingering::new),
            max_connections,
            open: AtomicUsize::new(0),
            refusing: AtomicUsize::new(0),
            budget: Arc::new(conn::Budget::new(max_buffered)),
            grace: self.grace,
            finalizing: AtomicBool::new(false),
            finalized: fin_tx,
            shutdown_token: RwLock::new(shutdown_token),
            closed: Notify::new(),
            pyro_open: AtomicUsize::new(0),
            draining: watch::channel(false).0,
            connections: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            hooks: RwLock::new(Vec::new()),
            has_hooks: AtomicBool::new(false),
            listeners: Mutex::new(Vec::new()),
            addresses: Mutex::new(Vec::new()),
            announced: Mutex::new(Vec::new()),
        });
        for a in &self.addresses {
            let address: Address = a
                .parse()
                .map_err(|e| Error::config(format!("bad listen address `{a}`: {e}")))?;
            let mut listener = match &self.tls {
                Some(tls) => Listener::bind_tls(&address, tls.clone()).await,
                None => Listener::bind(&address).await,
            }
            .map_err(|e| Error::transport_source(a, e))?;
            let local = listener.local_addr().to_string();
            if listener.is_tls() {
                listener.set_plaintext_reply(plaintext_refusal(&local, inner.machine_config()));
            }
            lock(&inner.addresses).push(local.clone());
            let weak = Arc::downgrade(&inner);
            let task = tokio::spawn(accept_loop(listener, weak, local));
            lock(&inner.listeners).push(task);
        }
        if !self.announce.is_empty() {
            let address = lock(&inner.addresses).first().cloned().unwrap_or_default();
            match crate::naming::announce(&self.announce, &address).await {
                Ok(done) => *lock(&inner.announced) = done,
                Err(e) => {
                    for l in lock(&inner.listeners).drain(..) {
                        l.abort();
                    }
                    return Err(e);
                }
            }
        }
        Ok(Engine { inner })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

/// Refuses object ids a Pyro5 URI cannot carry, and the daemon's own.
fn check_object_id(object_id: &str) -> Result<(), Error> {
    if object_id.is_empty() || object_id.contains('@') || object_id.chars().any(char::is_whitespace)
    {
        return Err(Error::config(format!(
            "`{object_id}` cannot be a Pyro5 object id: it must be non-empty, without `@` or whitespace"
        )));
    }
    if object_id == pyro::DAEMON_OBJECT_ID {
        return Err(Error::config(format!(
            "`{object_id}` is the object id of the built-in daemon object"
        )));
    }
    Ok(())
}

/// The default of [`ServerBuilder::max_connections`].
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// A remote shutdown token as the daemon compares it; refuses an empty one.
fn shutdown_token(token: String) -> Result<Arc<[u8]>, Error> {
    if token.trim().is_empty() {
        return Err(Error::config(
            "the remote shutdown token is empty; remote shutdown needs a secret token (e.g. a long random string)",
        ));
    }
    Ok(Arc::from(token.into_bytes()))
}

struct Inner {
    /// Keyed by provider ids the server's owner registered, so the cheap id hasher is safe.
    registry: RwLock<HashMap<u16, Arc<Registered>, rustc_hash::FxBuildHasher>>,
    /// Bumped (under the registry's write lock) on every change, so connections know when
    /// their copy of the registry is stale.
    registry_gen: AtomicU64,
    /// Pyro5 object ids to provider ids (see [`Engine::register_provider_as`]); locked
    /// after `registry` when both are.
    objects: RwLock<HashMap<String, u16>>,
    accepted: Vec<CodecId>,
    /// The compression accepted and used for answers (SPEC §6.9).
    compression: proto::Compression,
    /// Converters of Pyro5 class dicts (`server/pyro.rs`).
    pyro_classes: crate::PyroClasses,
    limits: proto::Limits,
    timeouts: Timeouts,
    /// How long a handler may hold a connection's reader before its method is moved off it
    /// (`None`: no detection).
    blocking_budget: Option<Duration>,
    /// The window of client → server streams (SPEC §6.13).
    pub(crate) upload_window: u32,
    /// The streams kept after their connection was lost (SPEC §6.14), when
    /// `stream_linger` is on.
    pub(crate) lingering: Option<Arc<crate::stream::Lingering>>,
    /// The most connections served at once (`None`: no limit).
    max_connections: Option<usize>,
    /// Connections being served now.
    open: AtomicUsize,
    /// Connections being refused now (their GOAWAY still being written).
    refusing: AtomicUsize,
    /// Receive-buffer bytes all connections may hold together.
    budget: Arc<conn::Budget>,
    grace: Duration,
    finalizing: AtomicBool,
    finalized: watch::Sender<bool>,
    /// The token a remote shutdown must present; `None`: remote shutdown is off.
    shutdown_token: RwLock<Option<Arc<[u8]>>>,
    /// Told when a connection closes while finalizing.
    closed: Notify,
    /// Pyro5 connections being served (`pyro.rs`); finalize waits for them too.
    pyro_open: AtomicUsize,
    /// Set when finalize starts: Pyro5 connections close once the call they are answering
    /// is answered.
    draining: watch::Sender<bool>,
    connections: Mutex<HashMap<u64, Arc<Wire<proto::ServerConnection>>>>,
    next_conn: AtomicU64,
    hooks: RwLock<Vec<Arc<dyn CallHook>>>,
    /// Mirrors `!hooks.is_empty()`, read without the lock on every call.
    has_hooks: AtomicBool,
    listeners: Mutex<Vec<JoinHandle<()>>>,
    addresses: Mutex<Vec<String>>,
    /// The names registered on start ([`ServerBuilder::announce`]), removed at finalize.
    announced: Mutex<crate::naming::Announced>,
}

/// A wirecall engine in server mode: listens, serves providers, and finalizes.
///
/// Cheap to clone; every clone controls the same server. The server stops when
/// [`Engine::finalize`] runs (locally or through a remote shutdown), not when the handle is
/// dropped.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("addresses", &*lock(&self.inner.addresses))
            .field("accepted", &self.inner.accepted)
            .finish()
    }
}

impl Engine {
    /// Starts building a server listening on `address` (`tcp://127.0.0.1:0` picks a free
    /// port; `unix:///path/to.sock`).
    pub fn server(address: impl Into<String>) -> ServerBuilder {
        ServerBuilder {
            addresses: vec![address.into()],
            accepted: None,
            compression: None,
            pyro_classes: crate::PyroClasses::default(),
            limits: proto::Limits::default(),
            max_in_flight: None,
            max_frame_len: None,
            max_connections: None,
            grace: Duration::from_secs(5),
            shutdown_token: None,
            timeouts: [None; 6],
            max_buffered: None,
            blocking_budget: None,
            upload_window: crate::DEFAULT_UPLOAD_WINDOW,
            tls: None,
            announce: Vec::new(),
        }
    }

    /// A client engine (no listener): makes proxies and remote functions.
    pub fn client() -> crate::Client {
        crate::Client::new()
    }

    /// The URL of the first listening address, with the real port when `:0` was asked for.
    pub fn address(&self) -> String {
        lock(&self.inner.addresses)
            .first()
            .cloned()
            .unwrap_or_default()
    }

    /// The URLs of every listening address.
    pub fn addresses(&self) -> Vec<String> {
        lock(&self.inner.addresses).clone()
    }

    /// The codecs the server accepts.
    pub fn accepted(&self) -> &[CodecId] {
        &self.inner.accepted
    }

    /// Registers a provider instance shared by every connection under `provider_id`.
    ///
    /// Python Pyro5 proxies reach it under its default object id: the service name
    /// (`PYRO:my_service@host:port`), or `service.ID` (`my_service.42`) when another
    /// provider already holds the service name as its object id. Use
    /// [`register_provider_as`](Self::register_provider_as) to choose the object id.
    ///
    /// Fails when the id is taken or is the daemon's reserved id.
    pub fn register_provider<P: Provider>(
        &self,
        provider: P,
        provider_id: u16,
    ) -> Result<(), Error> {
        self.register_arc(Arc::new(provider), provider_id)
    }

    /// Registers a provider like [`register_provider`](Self::register_provider), reachable
    /// by Python Pyro5 proxies under `object_id` (`PYRO:example.greeting@host:port` for
    /// `"example.greeting"`) instead of the default derived from its service name.
    ///
    /// Fails, registering nothing, when the provider id or the object id is taken, or the
    /// object id is empty, contains `@` or whitespace, or is `Pyro.Daemon`.
    pub fn register_provider_as<P: Provider>(
        &self,
        provider: P,
        provider_id: u16,
        object_id: &str,
    ) -> Result<(), Error> {
        self.insert_as(
            Registered::shared(Arc::new(provider), provider_id),
            Some(object_id),
        )
    }

    /// Gives the provider registered under `provider_id` the Pyro5 object id `object_id`,
    /// replacing the one it had (works for every kind of registration: factories and
    /// function sets too). Fails like [`register_provider_as`](Self::register_provider_as),
    /// or when no provider has that id.
    pub fn set_object_id(&self, provider_id: u16, object_id: &str) -> Result<(), Error> {
        check_object_id(object_id)?;
        let map = read(&self.inner.registry);
        if !map.contains_key(&provider_id) {
            return Err(Error::config(format!(
                "no provider is registered with id {provider_id}"
            )));
        }
        let mut objects = write(&self.inner.objects);
        if let Some(other) = objects.get(object_id).filter(|p| **p != provider_id) {
            return Err(Error::config(format!(
                "Pyro5 object id `{object_id}` is already taken by provider {other}"
            )));
        }
        objects.retain(|_, p| *p != provider_id);
        objects.insert(object_id.to_string(), provider_id);
        Ok(())
    }

    /// The Pyro5 object ids and the provider ids they name, sorted by object id.
    pub fn object_ids(&self) -> Vec<(String, u16)> {
        let mut v: Vec<(String, u16)> = read(&self.inner.objects)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        v.sort();
        v
    }

    /// Registers a provider already in an `Arc` (to keep a handle to it).
    pub fn register_arc<P: Provider>(
        &self,
        provider: Arc<P>,
        provider_id: u16,
    ) -> Result<(), Error> {
        self.insert(Registered::shared(provider, provider_id))
    }

    /// Registers a provider created once per connection by `factory` (RPyC's service class):
    /// each connection gets its own instance, created when the connection opens.
    pub fn register_provider_factory<P: Provider>(
        &self,
        factory: impl Fn() -> P + Send + Sync + 'static,
        provider_id: u16,
    ) -> Result<(), Error> {
        self.insert(Registered::per_connection(factory, provider_id))
    }

    /// Registers a set of plain functions under `provider_id`.
    pub fn register_functions(
        &self,
        functions: crate::Functions,
        provider_id: u16,
    ) -> Result<(), Error> {
        self.insert(functions.into_registered(provider_id))
    }

    fn insert(&self, reg: Registered) -> Result<(), Error> {
        self.insert_as(reg, None)
    }

    fn insert_as(&self, reg: Registered, object_id: Option<&str>) -> Result<(), Error> {
        if let Some(o) = object_id {
            check_object_id(o)?;
        }
        let id = reg.info.provider_id;
        if id == DAEMON_PROVIDER_ID {
            return Err(Error::config(format!(
                "provider id {DAEMON_PROVIDER_ID} is reserved for the daemon object"
            )));
        }
        let mut map = write(&self.inner.registry);
        if let Some(existing) = map.get(&id) {
            return Err(Error::config(format!(
                "provider id {id} is already taken by service `{}`; pick another id",
                existing.info.service
            )));
        }
        let mut objects = write(&self.inner.objects);
        let object_id = match object_id {
            Some(o) => {
                if let Some(other) = objects.get(o) {
                    return Err(Error::config(format!(
                        "Pyro5 object id `{o}` is already taken by provider {other}"
                    )));
                }
                Some(o.to_string())
            }
            None if !objects.contains_key(&reg.info.service) => Some(reg.info.service.clone()),
            // Unless that one is taken too (by an explicit name): then none.
            None => Some(format!("{}.{id}", reg.info.service)).filter(|o| !objects.contains_key(o)),
        };
        if let Some(o) = object_id {
            objects.insert(o, id);
        }
        drop(objects);
        map.insert(id, Arc::new(reg));
        self.inner.registry_gen.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Removes the provider registered under `provider_id`; returns whether there was one.
    pub fn deregister_provider(&self, provider_id: u16) -> bool {
        let mut map = write(&self.inner.registry);
        let removed = map.remove(&provider_id).is_some();
        write(&self.inner.objects).retain(|_, p| *p != provider_id);
        self.inner.registry_gen.fetch_add(1, Ordering::Release);
        removed
    }

    /// Adds a hook run before and after every call.
    pub fn add_hook(&self, hook: impl CallHook) {
        write(&self.inner.hooks).push(Arc::new(hook));
        self.inner.has_hooks.store(true, Ordering::Release);
    }

    /// Allows clients to shut the server down remotely ([`crate::Proxy::shutdown_server`])
    /// when they present `token` (compared in constant time); replaces an earlier token.
    ///
    /// Off by default, and never without a token: an empty token is refused with
    /// [`Error::Config`]. A refused attempt (remote shutdown off, token missing or wrong)
    /// is answered [`Error::PermissionDenied`] and logged as a warning with the caller's
    /// address.
    pub fn enable_remote_shutdown(&self, token: impl Into<String>) -> Result<(), Error> {
        let token = shutdown_token(token.into())?;
        *write(&self.inner.shutdown_token) = Some(token);
        Ok(())
    }

    /// Turns remote shutdown off again.
    pub fn disable_remote_shutdown(&self) {
        *write(&self.inner.shutdown_token) = None;
    }

    /// The number of connections being served now.
    pub fn connection_count(&self) -> usize {
        self.inner.open.load(Ordering::Acquire)
    }

    /// What the daemon object reports: every provider with its methods and attributes.
    pub fn metadata(&self) -> Metadata {
        metadata(&self.inner)
    }

    /// Whether finalize has started.
    pub fn is_finalizing(&self) -> bool {
        self.inner.finalizing.load(Ordering::Acquire)
    }

    /// Waits until the server has finalized (locally or by remote shutdown).
    pub async fn wait_for_finalize(&self) {
        let mut rx = self.inner.finalized.subscribe();
        // The sender lives in `inner`, which we hold: wait_for cannot fail with a closed
        // channel.
        let _ = rx.wait_for(|done| *done).await;
    }

    /// Finalizes gracefully: stops accepting; sends GOAWAY on every connection (later calls
    /// are answered SHUTTING_DOWN, retryable elsewhere); lets the calls in flight finish
    /// within the grace period, answering those still running at its end SHUTTING_DOWN;
    /// waits for the drained connections to close; runs the prefinalize hooks (which may
    /// still make calls elsewhere), closes what is left, then runs the finalize hooks.
    ///
    /// Calling it again (or concurrently) waits for the first run to finish.
    pub async fn finalize(&self) {
        finalize(self.inner.clone()).await
    }

    /// How many streamed results whose connection was lost this server keeps now, for
    /// their callers to resume ([`ServerBuilder::stream_linger`]).
    pub fn kept_streams(&self) -> usize {
        self.inner.lingering.as_ref().map_or(0, |l| l.len())
    }
}

async fn finalize(inner: Arc<Inner>) {
    if inner.finalizing.swap(true, Ordering::SeqCst) {
        let mut rx = inner.finalized.subscribe();
        let _ = rx.wait_for(|d| *d).await;
        return;
    }
    for l in lock(&inner.listeners).drain(..) {
        l.abort();
    }
    inner.draining.send_replace(true);
    // Names first, so that no new client is sent here.
    let announced = std::mem::take(&mut *lock(&inner.announced));
    crate::naming::withdraw(&announced).await;
    // Every connection's machine sends GOAWAY (later calls are answered SHUTTING_DOWN,
    // retryable elsewhere), lets the calls in flight finish within the grace period and
    // gives up the rest at its end; each connection closes once drained.
    let now = crate::io::now();
    let conns: Vec<Arc<Wire<proto::ServerConnection>>> =
        lock(&inner.connections).values().cloned().collect();
    for w in &conns {
        let mut s = w.lock();
        let _ = s.side.shutdown("server finalizing", now, inner.grace);
        w.flush_locked(s);
        w.wake_reader();
    }
    // Wait for them to close; the machines bound it by the grace period (and a margin for
    // the answers to be written).
    let deadline = tokio::time::Instant::from_std(now + inner.grace) + Duration::from_secs(1);
    loop {
        let closed = inner.closed.notified();
        if lock(&inner.connections).is_empty() && inner.pyro_open.load(Ordering::Acquire) == 0 {
            break;
        }
        if tokio::time::timeout_at(deadline, closed).await.is_err() {
            break;
        }
    }
    let providers: Vec<Arc<Registered>> = read(&inner.registry).values().cloned().collect();
    for p in &providers {
        if let Instances::Shared(i) = &p.instances {
            i.prefinalize().await;
        }
    }
    let conns: Vec<Arc<Wire<proto::ServerConnection>>> =
        lock(&inner.connections).drain().map(|(_, c)| c).collect();
    for w in conns {
        w.close();
    }
    if let Some(l) = &inner.lingering {
        // Nobody can resume a stream any more: their producers are dropped.
        l.clear();
    }
    for p in &providers {
        if let Instances::Shared(i) = &p.instances {
            i.finalize().await;
        }
    }
    inner.finalized.send_replace(true);
}

fn metadata(inner: &Inner) -> Metadata {
    let mut providers: Vec<_> = read(&inner.registry)
        .values()
        .map(|r| r.info.clone())
        .collect();
    providers.sort_by_key(|p| p.provider_id);
    Metadata { providers }
}

/// What a TLS address answers a plaintext wirecall client: the machine's refusal before
/// HELLO, naming the TLS address, so the client learns at once why it cannot connect.
fn plaintext_refusal(local: &str, config: proto::ServerConfig) -> Vec<u8> {
    let message = format!("{local} requires TLS: connect to {local}, not to its plaintext form");
    let mut out = bytes::BytesMut::new();
    let refused = proto::ServerConnection::new(config, crate::io::now()).and_then(|mut m| {
        m.refuse(proto::ErrorCode::PERMISSION_DENIED, &message)?;
        m.take_transmit(&mut out);
        Ok(())
    });
    match refused {
        Ok(()) => out.to_vec(),
        Err(e) => {
            tracing::warn!("cannot encode the refusal for plaintext clients of {local}: {e}");
            Vec::new()
        }
    }
}

async fn accept_loop(listener: Listener, inner: std::sync::Weak<Inner>, local: String) {
    loop {
        let accepted = listener.accept().await;
        let Some(inner) = inner.upgrade() else { return };
        match accepted {
            Ok((stream, peer)) => {
                if inner.finalizing.load(Ordering::Acquire) {
                    return;
                }
                let open = inner.open.fetch_add(1, Ordering::AcqRel);
                if inner.max_connections.is_some_and(|max| open >= max) {
                    inner.open.fetch_sub(1, Ordering::AcqRel);
                    conn::refuse_busy(inner, stream, peer.to_string(), open);
                    continue;
                }
                let id = inner.next_conn.fetch_add(1, Ordering::Relaxed);
                let info = Arc::new(ConnectionInfo {
                    id,
                    peer: peer.to_string(),
                    local: local.clone(),
                    tls: stream.tls().cloned(),
                    callback: Default::default(),
                });
                tokio::spawn(conn::serve_connection(inner, stream, info));
            }
            Err(e) => {
                tracing::warn!(listener = %local, error = %e, "accepting a connection failed; retrying in 20 ms (out of file descriptors? raise `ulimit -n` or lower max_connections)");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

impl Inner {
    /// The configuration of each connection's state machine.
    fn machine_config(&self) -> proto::ServerConfig {
        let mut c = proto::ServerConfig::new(self.accepted.clone());
        c.limits = self.limits;
        c.compression = self.compression.clone();
        c.handshake_timeout = self.timeouts.handshake;
        c.frame_timeout = self.timeouts.frame;
        c.idle_timeout = self.timeouts.idle;
        c.keepalive = self.timeouts.keepalive;
        c.stream_lifetime = self.timeouts.stream_lifetime;
        // The driver writes the transmit buffer as one contiguous run.
        c.share_sections_from = usize::MAX;
        // A client that exposes providers may be called back (SPEC §6.10).
        c.support_callbacks();
        // Calls may stream their arguments (SPEC §6.13); the window is at least 1.
        let _ = c.support_uploads(self.upload_window);
        c
    }
}
