//! The etcd naming backend (cargo feature `etcd`): names that outlive one machine.
//!
//! Every registration is one etcd key, `<prefix><name>/<hash of the URI>`, whose value is the
//! registration as JSON (`{"name": .., "uri": .., "metadata": [..]}`). A name may have several
//! instances (one key per URI). The keys of one [`EtcdBackend`] hang on one etcd lease of
//! [`EtcdOptions::ttl`], kept alive by a background task of that backend: when the process
//! that registered a name dies, its keys disappear within the TTL. Dropping the backend, or
//! [`EtcdBackend::close`], revokes the lease and so removes its names at once. (If etcd was
//! unreachable for longer than the TTL, the backend takes a new lease and writes its
//! registrations again.) With [`EtcdOptions::lease`] off, names stay until removed.
//!
//! A name server in front of etcd (`wirecall ns serve --store etcd://...`) registers what its
//! clients send under its own lease: those names live as long as that name server. Servers
//! that should vanish with their own process register in etcd directly
//! (`WIRECALL_NS=etcd://...`).
//!
//! [`lookup`](NamingBackend::lookup) returns every live instance of a name, ordered by
//! [`Pick`] so that callers taking the first one spread across the instances;
//! [`watch`](NamingBackend::watch) follows a name with an etcd watch, which is what a proxy's
//! cache uses to drop a dead instance without waiting for a failed call.
//!
//! ```no_run
//! # async fn example() -> Result<(), wirecall::Error> {
//! use wirecall::naming::etcd::EtcdBackend;
//! use wirecall::naming::{NamingBackend, Registration};
//!
//! let ns = EtcdBackend::from_uri("etcd://127.0.0.1:2379").await?;
//! ns.register(
//!     Registration {
//!         name: "example.greeting".into(),
//!         uri: "tcp://127.0.0.1:9000/greeting#1".into(),
//!         metadata: ["lang.en".to_string()].into(),
//!     },
//!     false,
//! )
//! .await?;
//! let instances = ns.lookup("example.greeting").await?;
//! println!("connect to {}", instances[0].uri);
//! ns.close().await;
//! # Ok(())
//! # }
//! ```

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, PutOptions,
    Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::{
    naming_error, unavailable, validate_name, validate_tags, validate_uri, Filter, NamingBackend,
    Registration,
};
use crate::Error;

/// Operations per etcd transaction when removing many keys (etcd's default limit is 128).
const TXN_BATCH: usize = 100;

/// How [`NamingBackend::lookup`] orders the instances of a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pick {
    /// Each lookup starts one instance further along (instances sorted by URI), so
    /// successive lookups from one backend take the instances in turn.
    #[default]
    RoundRobin,
    /// Each lookup shuffles the instances.
    Random,
}

/// Settings of an [`EtcdBackend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Prefix of every key this backend reads and writes (default `wirecall/names/`).
    /// Backends sharing a prefix share their names.
    pub prefix: String,
    /// Lease TTL of this backend's registrations (default 10 s; etcd rounds to whole seconds,
    /// at least 1). A registering process that dies takes its names with it within this time.
    pub ttl: Duration,
    /// Whether registrations hang on this backend's lease (default `true`). Without a lease
    /// (`?lease=none` in a URI) a name stays until removed, as in Pyro's name server: for
    /// registering from a short-lived process such as `wirecall ns register --ns
    /// 'etcd://...?lease=none'`, whose lease would go when it exits.
    pub lease: bool,
    /// Order of the instances a lookup returns (default [`Pick::RoundRobin`]).
    pub pick: Pick,
    /// Bound on opening a connection to an etcd endpoint (default 3 s).
    pub connect_timeout: Duration,
    /// Bound on each request (default 5 s).
    pub request_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            prefix: "wirecall/names/".to_string(),
            ttl: Duration::from_secs(10),
            lease: true,
            pick: Pick::RoundRobin,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// The value stored under a registration's key.
#[derive(Serialize, Deserialize)]
struct Stored {
    name: String,
    uri: String,
    #[serde(default)]
    metadata: BTreeSet<String>,
}

/// What the lease keeper and the registering calls share.
struct LeaseState {
    /// The current lease, granted at the first registration.
    id: StdMutex<Option<i64>>,
    /// Held while granting a lease and while writing under it, so that a re-grant does not
    /// race a registration.
    writing: Mutex<()>,
    /// The keys this backend registered and their values: re-put under a new lease when the
    /// old one was lost (etcd unreachable for longer than the TTL).
    owned: StdMutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

/// The etcd client, made on first use.
struct Connection {
    urls: Vec<String>,
    listed: String,
    options: ConnectOptions,
    bound: Duration,
    client: tokio::sync::OnceCell<Client>,
}

impl Connection {
    async fn client(&self) -> Result<Client, Error> {
        self.client
            .get_or_try_init(|| async {
                let connecting = Client::connect(&self.urls, Some(self.options.clone()));
                match tokio::time::timeout(self.bound, connecting).await {
                    Ok(Ok(client)) => Ok(client),
                    Ok(Err(e)) => Err(etcd_error(&self.listed, &self.listed, &e)),
                    Err(_) => Err(timeout_error(&self.listed, &self.listed, "connecting")),
                }
            })
            .await
            .cloned()
    }
}

/// A [`NamingBackend`] storing names in etcd (v3 API). See the [module docs](self).
pub struct EtcdBackend {
    conn: Arc<Connection>,
    endpoints: Vec<String>,
    options: EtcdOptions,
    lease: Arc<LeaseState>,
    keeper: StdMutex<Option<JoinHandle<()>>>,
    round_robin: AtomicU64,
}

impl std::fmt::Debug for EtcdBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdBackend")
            .field("endpoints", &self.endpoints)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl EtcdBackend {
    /// Connects to the etcd cluster at `endpoints` (`host:port`, or `http://host:port`) and
    /// checks that it answers.
    ///
    /// Fails with an `unavailable` [`Error::Naming`] naming the endpoints when none answers
    /// within [`EtcdOptions::connect_timeout`] plus [`EtcdOptions::request_timeout`].
    pub async fn connect(endpoints: &[String], options: EtcdOptions) -> Result<EtcdBackend, Error> {
        let backend = EtcdBackend::new(endpoints, options)?;
        backend.ping_inner().await?;
        Ok(backend)
    }

    /// A backend for the etcd cluster at `endpoints` that connects on first use: no request
    /// is made now, so an unreachable etcd shows up as an `unavailable` error of the first
    /// operation. For contexts that cannot wait, such as [`backend_from_uri`](super::backend_from_uri).
    pub fn new(endpoints: &[String], options: EtcdOptions) -> Result<EtcdBackend, Error> {
        if endpoints.is_empty() {
            return Err(naming_error(
                "etcd://",
                "no etcd endpoint given: write them as etcd://host:port[,host:port...]",
            ));
        }
        if options.prefix.is_empty() {
            return Err(naming_error(
                "etcd://",
                "the key prefix is empty: give one such as `wirecall/names/` so that names do \
                 not mix with other keys",
            ));
        }
        let urls: Vec<String> = endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else {
                    format!("http://{e}")
                }
            })
            .collect();
        let connect_options = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            .with_timeout(options.request_timeout)
            .with_keep_alive(Duration::from_secs(2), options.request_timeout)
            .with_keep_alive_while_idle(true)
            // a member cut off from its cluster answers with an error instead of stale data
            .with_require_leader(true);
        Ok(EtcdBackend {
            conn: Arc::new(Connection {
                urls,
                listed: endpoints.join(","),
                options: connect_options,
                bound: options.connect_timeout + options.request_timeout,
                client: tokio::sync::OnceCell::new(),
            }),
            endpoints: endpoints.to_vec(),
            options,
            lease: Arc::new(LeaseState {
                id: StdMutex::new(None),
                writing: Mutex::new(()),
                owned: StdMutex::new(BTreeMap::new()),
            }),
            keeper: StdMutex::new(None),
            round_robin: AtomicU64::new(0),
        })
    }

    /// As [`from_uri`](EtcdBackend::from_uri), connecting on first use (see
    /// [`new`](EtcdBackend::new)).
    pub fn from_uri_lazy(uri: &str) -> Result<EtcdBackend, Error> {
        let (endpoints, options) = parse_uri(uri)?;
        EtcdBackend::new(&endpoints, options)
    }

    /// Connects as given by a URI:
    /// `etcd://host:port[,host:port...][/prefix][?ttl=SECONDS&lease=none&pick=random|round-robin]`
    /// (see [`EtcdOptions`]).
    ///
    /// The path, when present, replaces the default key prefix (a trailing `/` is added when
    /// missing).
    pub async fn from_uri(uri: &str) -> Result<EtcdBackend, Error> {
        let (endpoints, options) = parse_uri(uri)?;
        EtcdBackend::connect(&endpoints, options).await
    }

    /// The endpoints this backend was given.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The settings of this backend.
    pub fn options(&self) -> &EtcdOptions {
        &self.options
    }

    /// Revokes this backend's lease: every name it registered disappears now rather than
    /// after the TTL. Registering again afterwards takes a new lease. Errors are ignored
    /// (the lease then expires by itself).
    pub async fn close(&self) {
        if let Some(task) = self.keeper.lock().unwrap().take() {
            task.abort();
        }
        let _writing = self.lease.writing.lock().await;
        let id = self.lease.id.lock().unwrap().take();
        self.lease.owned.lock().unwrap().clear();
        if let (Some(id), Some(client)) = (id, self.conn.client.get()) {
            let mut client = client.clone();
            let _ =
                tokio::time::timeout(self.options.request_timeout, client.lease_revoke(id)).await;
        }
    }

    fn listed(&self) -> String {
        self.endpoints.join(",")
    }

    /// Runs one etcd request (`make` builds it on a client) under the request timeout,
    /// mapping its errors. A request that could not even be sent (the member it went to
    /// refused the connection) is sent again, to another member when there is one.
    async fn request<T, F, Fut>(&self, name: &str, what: &str, mut make: F) -> Result<T, Error>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.options.request_timeout;
        let mut pause = Duration::from_millis(20);
        loop {
            let client = self.conn.client().await?;
            match tokio::time::timeout_at(deadline, make(client)).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if not_sent(&e) && tokio::time::Instant::now() + pause < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Ok(Err(e)) => return Err(etcd_error(name, &self.listed(), &e)),
                Err(_) => return Err(timeout_error(name, &self.listed(), what)),
            }
        }
    }

    /// A read, retried while etcd is unreachable (another member may answer) up to the
    /// request timeout in all.
    async fn get(
        &self,
        name: &str,
        key: Vec<u8>,
        options: GetOptions,
    ) -> Result<etcd_client::GetResponse, Error> {
        let deadline = tokio::time::Instant::now() + self.options.request_timeout;
        let mut pause = Duration::from_millis(20);
        loop {
            let mut client = self.conn.client().await?;
            let attempt =
                tokio::time::timeout_at(deadline, client.get(key.clone(), Some(options.clone())))
                    .await;
            match attempt {
                Ok(Ok(r)) => return Ok(r),
                Ok(Err(e)) if is_unavailable(&e) => {
                    if tokio::time::Instant::now() + pause >= deadline {
                        return Err(etcd_error(name, &self.listed(), &e));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Ok(Err(e)) => return Err(etcd_error(name, &self.listed(), &e)),
                Err(_) => return Err(timeout_error(name, &self.listed(), "reading")),
            }
        }
    }

    async fn put(
        &self,
        name: &str,
        key: &[u8],
        value: &[u8],
        options: &PutOptions,
    ) -> Result<(), Error> {
        self.request(name, "registering", |mut c| {
            let (k, v, o) = (key.to_vec(), value.to_vec(), options.clone());
            async move { c.put(k, v, Some(o)).await }
        })
        .await
        .map(|_| ())
    }

    async fn ping_inner(&self) -> Result<(), Error> {
        self.get(
            &self.listed(),
            self.options.prefix.clone().into_bytes(),
            GetOptions::new().with_prefix().with_count_only(),
        )
        .await
        .map(|_| ())
    }

    fn name_prefix(&self, name: &str) -> Vec<u8> {
        let mut key = self.options.prefix.clone();
        escape_into(name, &mut key);
        key.push('/');
        key.into_bytes()
    }

    fn key_of(&self, name: &str, uri: &str) -> Vec<u8> {
        let mut key = self.name_prefix(name);
        key.extend_from_slice(format!("{:016x}", fnv1a(uri.as_bytes())).as_bytes());
        key
    }

    /// Decodes the registrations among `kvs` (skipping, with a warning, keys that are not
    /// ours), with their keys.
    fn decode_all(&self, kvs: &[etcd_client::KeyValue]) -> Vec<(Vec<u8>, Registration)> {
        kvs.iter()
            .filter_map(|kv| decode(&self.options.prefix, kv.key(), kv.value()))
            .collect()
    }

    /// The current lease, granting one (and starting its keeper) when there is none.
    /// Returns the lock so that no re-grant happens while the caller writes under it.
    async fn lease_for_write(&self) -> Result<(tokio::sync::MutexGuard<'_, ()>, i64), Error> {
        let guard = self.lease.writing.lock().await;
        let current = *self.lease.id.lock().unwrap();
        if let Some(id) = current {
            return Ok((guard, id));
        }
        let ttl = ttl_secs(self.options.ttl);
        let granted = self
            .request(&self.listed(), "granting a lease", |mut c| async move {
                c.lease_grant(ttl, None).await
            })
            .await?;
        *self.lease.id.lock().unwrap() = Some(granted.id());
        let task = tokio::spawn(keep_alive(
            self.conn.client().await?,
            Arc::downgrade(&self.lease),
            self.options.clone(),
        ));
        if let Some(old) = self.keeper.lock().unwrap().replace(task) {
            old.abort();
        }
        Ok((guard, granted.id()))
    }

    fn order(&self, mut regs: Vec<Registration>) -> Vec<Registration> {
        regs.sort_by(|a, b| a.uri.cmp(&b.uri));
        if regs.len() > 1 {
            match self.options.pick {
                Pick::RoundRobin => {
                    let n = self.round_robin.fetch_add(1, Ordering::Relaxed);
                    let k = (n % regs.len() as u64) as usize;
                    regs.rotate_left(k);
                }
                Pick::Random => {
                    let state = RandomState::new();
                    // Fisher-Yates with a fresh std random hasher as the source
                    for i in (1..regs.len()).rev() {
                        let j = (state.hash_one(i) % (i as u64 + 1)) as usize;
                        regs.swap(i, j);
                    }
                }
            }
        }
        regs
    }

    async fn matching(&self, filter: &Filter) -> Result<Vec<(Vec<u8>, Registration)>, Error> {
        let shown = filter
            .regex
            .clone()
            .or_else(|| filter.prefix.clone())
            .unwrap_or_else(|| "*".to_string());
        // the same rules as every backend (an invalid regex is a clear error)
        let compiled = filter.compile()?;
        let mut key = self.options.prefix.clone();
        if let Some(prefix) = &filter.prefix {
            escape_into(prefix, &mut key);
        }
        let resp = self
            .get(&shown, key.into_bytes(), GetOptions::new().with_prefix())
            .await?;
        let mut out: Vec<(Vec<u8>, Registration)> = self
            .decode_all(resp.kvs())
            .into_iter()
            .filter(|(_, r)| compiled.matches(&r.name, &r.metadata))
            .collect();
        out.sort_by(|a, b| (&a.1.name, &a.1.uri).cmp(&(&b.1.name, &b.1.uri)));
        Ok(out)
    }
}

impl Drop for EtcdBackend {
    fn drop(&mut self) {
        if let Some(task) = self.keeper.get_mut().unwrap().take() {
            task.abort();
        }
        // Revoke the lease so that the names go now; without a runtime they go after the TTL.
        let id = self.lease.id.lock().unwrap().take();
        if let (Some(id), Some(client), Ok(handle)) = (
            id,
            self.conn.client.get(),
            tokio::runtime::Handle::try_current(),
        ) {
            let mut client = client.clone();
            let bound = self.options.request_timeout;
            handle.spawn(async move {
                let _ = tokio::time::timeout(bound, client.lease_revoke(id)).await;
            });
        }
    }
}

impl NamingBackend for EtcdBackend {
    fn register(&self, reg: Registration, safe: bool) -> BoxFuture<'_, Result<(), Error>> {
        async move {
            validate_name(&reg.name)?;
            validate_uri(&reg.name, &reg.uri)?;
            validate_tags(&reg.name, &reg.metadata)?;
            let key = self.key_of(&reg.name, &reg.uri);
            let value = serde_json::to_vec(&Stored {
                name: reg.name.clone(),
                uri: reg.uri.clone(),
                metadata: reg.metadata.clone(),
            })
            .map_err(|e| naming_error(reg.name.clone(), format!("cannot encode: {e}")))?;
            let (lease, lease_id) = if self.options.lease {
                let (guard, id) = self.lease_for_write().await?;
                (Some(guard), id)
            } else {
                (None, 0) // no lease: the key stays until removed
            };
            let put = PutOptions::new().with_lease(lease_id);
            if safe {
                let name_prefix = self.name_prefix(&reg.name);
                let txn = Txn::new()
                    .when([
                        Compare::create_revision(name_prefix.clone(), CompareOp::Equal, 0)
                            .with_prefix(),
                    ])
                    .and_then([TxnOp::put(key.clone(), value.clone(), Some(put.clone()))])
                    .or_else([TxnOp::get(
                        name_prefix,
                        Some(GetOptions::new().with_prefix()),
                    )]);
                let resp = self
                    .request(&reg.name, "registering", |mut c| {
                        let txn = txn.clone();
                        async move { c.txn(txn).await }
                    })
                    .await?;
                if !resp.succeeded() {
                    let mut existing = Vec::new();
                    for op in resp.op_responses() {
                        if let TxnOpResponse::Get(get) = op {
                            existing.extend(
                                self.decode_all(get.kvs())
                                    .into_iter()
                                    .filter(|(_, r)| r.name == reg.name)
                                    .map(|(_, r)| r.uri),
                            );
                        }
                    }
                    // keys of names that merely share this one's escaped prefix do not count
                    if !existing.is_empty() {
                        return Err(naming_error(
                            reg.name.clone(),
                            format!(
                                "name already registered: {} (as {}); register without safe \
                                 mode to add an instance, or remove it first",
                                reg.name,
                                existing.join(", ")
                            ),
                        ));
                    }
                    self.put(&reg.name, &key, &value, &put).await?;
                }
            } else {
                self.put(&reg.name, &key, &value, &put).await?;
            }
            if lease.is_some() {
                self.lease.owned.lock().unwrap().insert(key, value);
            }
            drop(lease);
            Ok(())
        }
        .boxed()
    }

    fn lookup<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<Registration>, Error>> {
        async move {
            validate_name(name)?;
            let resp = self
                .get(
                    name,
                    self.name_prefix(name),
                    GetOptions::new().with_prefix(),
                )
                .await?;
            let regs: Vec<Registration> = self
                .decode_all(resp.kvs())
                .into_iter()
                .map(|(_, r)| r)
                .filter(|r| r.name == name)
                .collect();
            if regs.is_empty() {
                return Err(naming_error(
                    name,
                    format!(
                        "unknown name: {name} (not registered in etcd at {} under the prefix \
                         `{}`; its server may have stopped or not registered yet)",
                        self.listed(),
                        self.options.prefix
                    ),
                ));
            }
            Ok(self.order(regs))
        }
        .boxed()
    }

    fn list<'a>(&'a self, filter: &'a Filter) -> BoxFuture<'a, Result<Vec<Registration>, Error>> {
        async move {
            Ok(self
                .matching(filter)
                .await?
                .into_iter()
                .map(|(_, r)| r)
                .collect())
        }
        .boxed()
    }

    fn remove<'a>(
        &'a self,
        filter: &'a Filter,
        uri: Option<&'a str>,
    ) -> BoxFuture<'a, Result<usize, Error>> {
        async move {
            let keys: Vec<Vec<u8>> = self
                .matching(filter)
                .await?
                .into_iter()
                .filter(|(_, r)| uri.is_none_or(|u| r.uri == u))
                .map(|(k, _)| k)
                .collect();
            let shown = filter.prefix.clone().unwrap_or_else(|| "*".to_string());
            let mut removed = 0usize;
            for chunk in keys.chunks(TXN_BATCH) {
                let ops: Vec<TxnOp> = chunk
                    .iter()
                    .map(|k| TxnOp::delete(k.clone(), None::<DeleteOptions>))
                    .collect();
                let resp = self
                    .request(&shown, "removing", |mut c| {
                        let txn = Txn::new().and_then(ops.clone());
                        async move { c.txn(txn).await }
                    })
                    .await?;
                for op in resp.op_responses() {
                    if let TxnOpResponse::Delete(d) = op {
                        removed += usize::try_from(d.deleted()).unwrap_or(0);
                    }
                }
                let mut owned = self.lease.owned.lock().unwrap();
                for k in chunk {
                    owned.remove(k);
                }
            }
            Ok(removed)
        }
        .boxed()
    }

    fn set_metadata<'a>(
        &'a self,
        name: &'a str,
        metadata: BTreeSet<String>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        async move {
            validate_name(name)?;
            validate_tags(name, &metadata)?;
            let resp = self
                .get(
                    name,
                    self.name_prefix(name),
                    GetOptions::new().with_prefix(),
                )
                .await?;
            let mut updated = 0;
            for (key, reg) in self.decode_all(resp.kvs()) {
                if reg.name != name {
                    continue;
                }
                let value = serde_json::to_vec(&Stored {
                    name: reg.name,
                    uri: reg.uri,
                    metadata: metadata.clone(),
                })
                .map_err(|e| naming_error(name, format!("cannot encode: {e}")))?;
                // keep the key's lease; fails only when the key went away meanwhile
                let txn = Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Greater, 0)])
                    .and_then([TxnOp::put(
                        key.clone(),
                        value.clone(),
                        Some(PutOptions::new().with_ignore_lease()),
                    )]);
                let resp = self
                    .request(name, "setting metadata", |mut c| {
                        let txn = txn.clone();
                        async move { c.txn(txn).await }
                    })
                    .await?;
                if resp.succeeded() {
                    updated += 1;
                    let mut owned = self.lease.owned.lock().unwrap();
                    if let Some(v) = owned.get_mut(&key) {
                        *v = value;
                    }
                }
            }
            if updated == 0 {
                return Err(naming_error(
                    name,
                    format!("unknown name: {name} (register it before setting its metadata)"),
                ));
            }
            Ok(())
        }
        .boxed()
    }

    fn count(&self) -> BoxFuture<'_, Result<usize, Error>> {
        async move {
            let resp = self
                .get(
                    &self.listed(),
                    self.options.prefix.clone().into_bytes(),
                    GetOptions::new().with_prefix().with_count_only(),
                )
                .await?;
            Ok(usize::try_from(resp.count()).unwrap_or(0))
        }
        .boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), Error>> {
        self.ping_inner().boxed()
    }

    /// An etcd watch on the name's keys. The first item is the name's current list of
    /// instances (possibly empty); then one item after each change. A watch broken by a
    /// member's death is re-established (on another member) and resumes from the last
    /// revision seen. The stream ends when dropped.
    fn watch(&self, name: &str) -> Option<BoxStream<'static, Vec<Registration>>> {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let task = watch_task(
            self.conn.clone(),
            self.options.clone(),
            name.to_string(),
            self.name_prefix(name),
            tx,
        );
        tokio::spawn(task);
        Some(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|v| (v, rx))
        })))
    }
}

/// Follows `name`'s keys and sends the full instance list after each change.
async fn watch_task(
    conn: Arc<Connection>,
    options: EtcdOptions,
    name: String,
    key: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Vec<Registration>>,
) {
    let mut pause = Duration::from_millis(50);
    let mut last_sent: Option<Vec<Registration>> = None;
    loop {
        let session = async {
            // snapshot, then the changes after it
            let client = conn.client().await.ok()?;
            let mut c = client.clone();
            let snapshot = tokio::time::timeout(
                options.request_timeout,
                c.get(key.clone(), Some(GetOptions::new().with_prefix())),
            )
            .await
            .ok()?
            .ok()?;
            let revision = snapshot.header().map(|h| h.revision()).unwrap_or(0);
            let mut current: BTreeMap<Vec<u8>, Registration> = snapshot
                .kvs()
                .iter()
                .filter_map(|kv| decode(&options.prefix, kv.key(), kv.value()))
                .filter(|(_, r)| r.name == name)
                .collect();
            let list: Vec<Registration> = current.values().cloned().collect();
            if last_sent.as_ref() != Some(&list) {
                tx.send(list.clone()).await.ok()?;
                last_sent = Some(list);
            }
            let mut w = client.clone();
            let mut stream = tokio::time::timeout(
                options.request_timeout,
                w.watch(
                    key.clone(),
                    Some(
                        WatchOptions::new()
                            .with_prefix()
                            .with_start_revision(revision + 1)
                            .with_progress_notify(),
                    ),
                ),
            )
            .await
            .ok()?
            .ok()?;
            loop {
                let msg = tokio::select! {
                    m = stream.message() => m,
                    _ = tx.closed() => return Some(()),
                };
                let resp = match msg {
                    Ok(Some(resp)) => resp,
                    _ => return None,
                };
                if resp.canceled() {
                    return None;
                }
                let mut changed = false;
                for event in resp.events() {
                    let Some(kv) = event.kv() else { continue };
                    match event.event_type() {
                        EventType::Put => {
                            if let Some((k, r)) = decode(&options.prefix, kv.key(), kv.value()) {
                                if r.name == name {
                                    current.insert(k, r);
                                    changed = true;
                                }
                            }
                        }
                        EventType::Delete => {
                            changed |= current.remove(kv.key()).is_some();
                        }
                    }
                }
                if changed {
                    let list: Vec<Registration> = current.values().cloned().collect();
                    tx.send(list.clone()).await.ok()?;
                    last_sent = Some(list);
                }
            }
        };
        match session.await {
            Some(()) => return, // the receiver went away
            None if tx.is_closed() => return,
            None => {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = tx.closed() => return,
                }
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Keeps a backend's lease alive, sending a keep-alive every third of the TTL. When the
/// lease is lost (etcd unreachable for longer than the TTL), grants a new one and writes the
/// backend's registrations again under it. Ends when the backend is gone.
async fn keep_alive(client: Client, lease: std::sync::Weak<LeaseState>, options: EtcdOptions) {
    let period = (options.ttl / 3).max(Duration::from_millis(300));
    let mut pause = Duration::from_millis(100);
    loop {
        let Some(state) = lease.upgrade() else { return };
        let Some(id) = *state.id.lock().unwrap() else {
            return;
        };
        drop(state);
        let mut c = client.clone();
        let opened = tokio::time::timeout(options.request_timeout, c.lease_keep_alive(id)).await;
        let lost = match opened {
            Ok(Ok((mut keeper, mut responses))) => {
                pause = Duration::from_millis(100);
                loop {
                    tokio::time::sleep(period).await;
                    if lease.strong_count() == 0 {
                        return;
                    }
                    if keeper.keep_alive().await.is_err() {
                        break false;
                    }
                    match tokio::time::timeout(options.request_timeout, responses.message()).await {
                        Ok(Ok(Some(r))) if r.ttl() > 0 => {}
                        Ok(Ok(Some(_))) => break true, // expired: etcd answered with TTL 0
                        _ => break false,
                    }
                }
            }
            Ok(Err(e)) => e.to_string().contains("lease not found"),
            Err(_) => false,
        };
        if lost {
            let Some(state) = lease.upgrade() else { return };
            let _writing = state.writing.lock().await;
            if *state.id.lock().unwrap() != Some(id) {
                continue; // closed or already replaced
            }
            let mut c = client.clone();
            let granted = tokio::time::timeout(
                options.request_timeout,
                c.lease_grant(ttl_secs(options.ttl), None),
            )
            .await;
            if let Ok(Ok(g)) = granted {
                *state.id.lock().unwrap() = Some(g.id());
                let owned: Vec<(Vec<u8>, Vec<u8>)> = state
                    .owned
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                for (k, v) in owned {
                    let put = PutOptions::new().with_lease(g.id());
                    let _ =
                        tokio::time::timeout(options.request_timeout, c.put(k, v, Some(put))).await;
                }
                tracing::warn!(
                    lease = g.id(),
                    "etcd lease was lost (etcd unreachable for longer than the TTL); registrations written again under a new lease"
                );
                continue;
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Parses `etcd://host:port[,host:port...][/prefix][?ttl=SECONDS&lease=none&pick=...]`.
fn parse_uri(uri: &str) -> Result<(Vec<String>, EtcdOptions), Error> {
    let rest = uri.strip_prefix("etcd://").ok_or_else(|| {
        naming_error(
            uri,
            "not an etcd URI: write etcd://host:port[,host:port...]",
        )
    })?;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (hosts, path) = match rest.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    let mut options = EtcdOptions::default();
    let mut endpoints = Vec::new();
    for host in hosts.split(',') {
        let host = host.trim();
        let valid = host
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !valid {
            return Err(naming_error(
                uri,
                format!("`{host}` is not host:port: write etcd://host:port[,host:port...]"),
            ));
        }
        endpoints.push(host.to_string());
    }
    if let Some(path) = path.filter(|p| !p.is_empty()) {
        options.prefix = if path.ends_with('/') {
            path.to_string()
        } else {
            format!("{path}/")
        };
    }
    for pair in query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("ttl", v)) => {
                let secs: u64 = v.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                    naming_error(
                        uri,
                        format!("ttl `{v}` is not a positive number of seconds"),
                    )
                })?;
                options.ttl = Duration::from_secs(secs);
            }
            Some(("lease", "none")) => options.lease = false,
            Some(("pick", "random")) => options.pick = Pick::Random,
            Some(("pick", "round-robin" | "roundrobin")) => options.pick = Pick::RoundRobin,
            _ => {
                return Err(naming_error(
                    uri,
                    format!(
                        "unknown option `{pair}`: the options are ttl=SECONDS, lease=none \
                         and pick=random|round-robin"
                    ),
                ))
            }
        }
    }
    Ok((endpoints, options))
}

/// Appends `name` to `key` with `%` and `/` escaped, so that the last `/` of a key always
/// separates the name from the instance hash. Escaping preserves prefixes.
fn escape_into(name: &str, key: &mut String) {
    for c in name.chars() {
        match c {
            '%' => key.push_str("%25"),
            '/' => key.push_str("%2F"),
            c => key.push(c),
        }
    }
}

/// Decodes one key and value of ours; `None` (with a warning) for anything else.
fn decode(prefix: &str, key: &[u8], value: &[u8]) -> Option<(Vec<u8>, Registration)> {
    let text = std::str::from_utf8(key).ok()?;
    let rest = text.strip_prefix(prefix)?;
    let (escaped, _hash) = rest.rsplit_once('/')?;
    match serde_json::from_slice::<Stored>(value) {
        Ok(stored) if unescape(escaped).as_deref() == Some(stored.name.as_str()) => Some((
            key.to_vec(),
            Registration {
                name: stored.name,
                uri: stored.uri,
                metadata: stored.metadata,
            },
        )),
        _ => {
            tracing::warn!(
                key = text,
                "skipping an etcd key under the naming prefix that is not a wirecall registration"
            );
            None
        }
    }
}

fn unescape(escaped: &str) -> Option<String> {
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("%25") => out.push('%'),
            Some("%2F") => out.push('/'),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// 64-bit FNV-1a: a stable hash of the URI for its key (the same in every version and
/// process, unlike std's hasher).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn ttl_secs(ttl: Duration) -> i64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
}

/// True when the request never reached etcd: the connection to the member was refused.
fn not_sent(e: &etcd_client::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = match e {
        etcd_client::Error::TransportError(t) => Some(t),
        etcd_client::Error::GRpcStatus(s) => Some(s),
        etcd_client::Error::IoError(io) => Some(io),
        _ => None,
    };
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        source = err.source();
    }
    false
}

/// True for errors that mean "etcd did not answer" rather than "etcd refused".
fn is_unavailable(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        // gRPC codes: 1 cancelled, 2 unknown (transport failures surface so), 4 deadline
        // exceeded, 14 unavailable (also etcd's "no leader" and "request timed out")
        etcd_client::Error::GRpcStatus(s) => matches!(s.code() as i32, 1 | 2 | 4 | 14),
        _ => false,
    }
}

fn etcd_error(name: &str, endpoints: &str, e: &etcd_client::Error) -> Error {
    if is_unavailable(e) {
        unavailable(
            name,
            format!(
                "etcd at {endpoints} is unavailable ({e}): check that etcd runs and that these \
                 endpoints are right (`etcdctl --endpoints={endpoints} endpoint health`); \
                 proxies keep using the addresses they already resolved"
            ),
        )
    } else {
        naming_error(
            name,
            format!("etcd at {endpoints} refused the request: {e}"),
        )
    }
}

fn timeout_error(name: &str, endpoints: &str, what: &str) -> Error {
    unavailable(
        name,
        format!(
            "etcd at {endpoints} did not answer in time while {what}: check that etcd runs and \
             that these endpoints are right (`etcdctl --endpoints={endpoints} endpoint health`); \
             proxies keep using the addresses they already resolved"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse() {
        let (eps, o) = parse_uri("etcd://127.0.0.1:2379,127.0.0.1:22379").unwrap();
        assert_eq!(eps, ["127.0.0.1:2379", "127.0.0.1:22379"]);
        assert_eq!(o, EtcdOptions::default());
        let (eps, o) = parse_uri("etcd://localhost:1/team/names?ttl=3&pick=random").unwrap();
        assert_eq!(eps, ["localhost:1"]);
        assert!(o.lease);
        assert!(!parse_uri("etcd://localhost:1?lease=none").unwrap().1.lease);
        assert_eq!(o.prefix, "team/names/");
        assert_eq!(o.ttl, Duration::from_secs(3));
        assert_eq!(o.pick, Pick::Random);
        for bad in [
            "http://127.0.0.1:2379",
            "etcd://",
            "etcd://127.0.0.1",
            "etcd://127.0.0.1:99999",
            "etcd://127.0.0.1:2379?ttl=0",
            "etcd://127.0.0.1:2379?color=red",
        ] {
            let e = parse_uri(bad).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::Naming {
                        unavailable: false,
                        ..
                    }
                ),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn escaping_round_trips_and_keeps_prefixes() {
        for name in ["a", "a/b", "50%/x", "%2F", "plain.name"] {
            let mut k = String::new();
            escape_into(name, &mut k);
            assert!(!k.contains('/'));
            assert_eq!(unescape(&k).as_deref(), Some(name));
        }
        let (mut a, mut ab) = (String::new(), String::new());
        escape_into("a/", &mut a);
        escape_into("a/b", &mut ab);
        assert!(ab.starts_with(&a));
        assert_eq!(unescape("bad%2"), None);
    }

    #[test]
    fn keys_decode_only_when_name_matches() {
        let v = br#"{"name":"x/y","uri":"tcp://h:1","metadata":["t"]}"#;
        let (_, r) = decode("p/", b"p/x%2Fy/00", v).unwrap();
        assert_eq!(r.name, "x/y");
        assert!(decode("p/", b"p/other/00", v).is_none());
        assert!(decode("p/", b"p/x%2Fy/00", b"not json").is_none());
        assert!(decode("q/", b"p/x%2Fy/00", v).is_none());
    }

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_secs(Duration::from_millis(1)), 1);
        assert_eq!(ttl_secs(Duration::from_millis(2500)), 3);
        assert_eq!(ttl_secs(Duration::from_secs(10)), 10);
    }
}
