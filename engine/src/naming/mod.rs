//! Naming and discovery: find a server by name (`name:NAME`, Pyro's `PYRONAME:NAME`) or by
//! metadata tags (`meta:tag1,tag2`, `PYROMETA:`) instead of by address.
//!
//! A [`NamingBackend`] stores [`Registration`]s: a name, the URI it stands for, and a set of
//! metadata tags. Backends:
//! - the embedded name server (the default; one machine, no other process);
//! - etcd (cargo feature `etcd`), when names must outlive one machine.
//!
//! Every backend answers the same operations, modelled on Pyro5's name server: register
//! (optionally refusing to overwrite), lookup, list (by prefix, regex, metadata all/any),
//! remove (by name, prefix or regex), set metadata, ping and count.
//!
//! The pieces:
//! - [`EmbeddedStore`]: the embedded backend, one [`redb`] file or in memory;
//! - [`NameServer`]: a provider that serves any backend to native clients and, as the Pyro5
//!   object `Pyro.NameServer`, to Python's `Pyro5.api.locate_ns` (host one with
//!   [`Engine::host_name_server`](crate::Engine::host_name_server), or run
//!   `wirecall ns serve`);
//! - [`RemoteNaming`]: the backend of a client, talking to a name server over the network;
//! - [`backend_from_uri`] and [`backend_from_env`] (`WIRECALL_NS`): pick a backend by URI;
//! - [`Target`]: what `name:`, `PYRONAME:`, `meta:` and `PYROMETA:` URIs ask for;
//!   [`Proxy::new`](crate::Proxy::new) takes them and resolves them on first use, and
//!   [`PyroProxy::resolve`](crate::PyroProxy::resolve) resolves them against a Python or
//!   wirecall name server.
//!
//! ```
//! use std::sync::Arc;
//! use wirecall::naming::{Announce, EmbeddedStore, NamingBackend, RemoteNaming};
//! use wirecall::{Engine, Proxy};
//!
//! #[derive(Default)]
//! struct MyProvider;
//!
//! #[wirecall::provider(service = "my_service")]
//! impl MyProvider {
//!     #[remote]
//!     fn say_hello(&self, firstname: String, lastname: String) -> String {
//!         format!("Hello, {firstname} {lastname}!")
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), wirecall::Error> {
//! // A name server (what `wirecall ns serve` runs), here in process with an in-memory store.
//! let ns = Engine::server("tcp://127.0.0.1:0").start().await?;
//! ns.host_name_server(Arc::new(EmbeddedStore::in_memory()?)).await?;
//! let names: Arc<dyn NamingBackend> = Arc::new(RemoteNaming::new(&ns.address())?);
//!
//! // A server that registers its provider 1 as `example.greeting` while it runs.
//! let server = Engine::server("tcp://127.0.0.1:0")
//!     .announce(names.clone(), [Announce::new("example.greeting", 1).service("my_service").tags(["lang.en"])])
//!     .start()
//!     .await?;
//! server.register_provider(MyProvider, 1)?;
//!
//! // A client, by name and by metadata (with WIRECALL_NS set, `.naming(..)` is not needed).
//! for uri in ["name:example.greeting", "meta:lang.en"] {
//!     let proxy = Proxy::new(uri)?.naming(names.clone());
//!     let hello: String = proxy.call_on(1, "my_service_say_hello")?.arg("Ada").arg("Lovelace").call().await?;
//!     assert_eq!(hello, "Hello, Ada Lovelace!");
//! }
//! server.finalize().await; // removes the name
//! assert!(names.lookup("example.greeting").await.is_err());
//! # ns.finalize().await;
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::Error;

/// One name and what it stands for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Registration {
    /// The name, e.g. `example.greeting`.
    pub name: String,
    /// The URI a proxy connects to: a wirecall URI (`tcp://127.0.0.1:9000/greeting#1`) or a
    /// Pyro URI (`PYRO:example.greeting@127.0.0.1:9000`).
    pub uri: String,
    /// Metadata tags (Pyro's `metadata`), e.g. `genre.rock`.
    pub metadata: BTreeSet<String>,
}

/// Which registrations a list or remove applies to. The filters combine: a registration
/// must pass every one that is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only names starting with this prefix.
    pub prefix: Option<String>,
    /// Only names matching this regular expression (the whole name, as Pyro's `re.match`
    /// anchored at both ends).
    pub regex: Option<String>,
    /// Only registrations carrying every one of these tags.
    pub meta_all: BTreeSet<String>,
    /// Only registrations carrying at least one of these tags (ignored when empty).
    pub meta_any: BTreeSet<String>,
}

/// A store of names. Implementations are cheap to share (`Arc<dyn NamingBackend>`).
///
/// Errors are [`Error::Naming`]: `unavailable: true` when the backend cannot be reached.
pub trait NamingBackend: Send + Sync + 'static {
    /// Registers `reg`. With `safe`, an existing registration of the same name is not
    /// overwritten and the call fails. Backends that hold several instances per name (etcd)
    /// add `reg.uri` as one more instance unless the same URI is already there.
    fn register(&self, reg: Registration, safe: bool) -> BoxFuture<'_, Result<(), Error>>;

    /// Every registration of `name` (one for the embedded server; one per live instance for
    /// etcd). A name that is not registered is an `Error::Naming` that says so.
    fn lookup<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<Registration>, Error>>;

    /// The registrations that pass `filter`, sorted by name.
    fn list<'a>(&'a self, filter: &'a Filter) -> BoxFuture<'a, Result<Vec<Registration>, Error>>;

    /// Removes the registrations that pass `filter` (or, with `uri`, only the instance with
    /// that URI); returns how many were removed.
    fn remove<'a>(
        &'a self,
        filter: &'a Filter,
        uri: Option<&'a str>,
    ) -> BoxFuture<'a, Result<usize, Error>>;

    /// Replaces the metadata tags of `name`.
    fn set_metadata<'a>(
        &'a self,
        name: &'a str,
        metadata: BTreeSet<String>,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Number of registrations.
    fn count(&self) -> BoxFuture<'_, Result<usize, Error>>;

    /// Checks that the backend answers.
    fn ping(&self) -> BoxFuture<'_, Result<(), Error>>;

    /// Every change to `name`'s registrations as it happens, each item the full list of
    /// its registrations after the change, for backends that can push changes (etcd).
    /// `None` when the backend cannot: resolvers then re-resolve only when a cached
    /// address fails.
    fn watch(&self, name: &str) -> Option<BoxStream<'static, Vec<Registration>>> {
        let _ = name;
        None
    }
}

/// An [`Error::Naming`] for `name`.
pub(crate) fn naming_error(name: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Naming {
        name: name.into(),
        message: message.into(),
        unavailable: false,
    }
}

/// An [`Error::Naming`] for a backend that cannot be reached.
pub(crate) fn unavailable(name: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Naming {
        name: name.into(),
        message: message.into(),
        unavailable: true,
    }
}

#[cfg(feature = "etcd")]
pub mod etcd;
mod remote;
mod resolve;
mod server;
mod store;

pub use remote::RemoteNaming;
pub(crate) use resolve::NamedTarget;
pub use resolve::{default_backend, set_default_backend, Target};
pub use server::{NameServer, NAME_SERVER_NAME, NAME_SERVER_PROVIDER_ID};
pub use store::EmbeddedStore;

/// The longest name, in bytes.
pub const MAX_NAME_LEN: usize = 512;
/// The longest URI, in bytes.
pub const MAX_URI_LEN: usize = 2048;
/// The longest metadata tag, in bytes.
pub const MAX_TAG_LEN: usize = 512;
/// The most metadata tags on one registration.
pub const MAX_TAGS: usize = 256;

/// The environment variable naming the naming backend of proxies and of the `wirecall ns`
/// commands: a name server's address (`tcp://127.0.0.1:9090`), or a store ([`backend_from_uri`]).
pub const NS_ENV: &str = "WIRECALL_NS";

impl Registration {
    /// A registration of `name` for `uri`, without metadata.
    pub fn new(name: impl Into<String>, uri: impl Into<String>) -> Registration {
        Registration {
            name: name.into(),
            uri: uri.into(),
            metadata: BTreeSet::new(),
        }
    }

    /// The same registration with these metadata tags.
    #[must_use]
    pub fn with_metadata<S: Into<String>>(mut self, tags: impl IntoIterator<Item = S>) -> Self {
        self.metadata = tags.into_iter().map(Into::into).collect();
        self
    }
}

impl Filter {
    /// Exactly the name `name` (a regex matching only it).
    pub fn exact(name: &str) -> Filter {
        Filter {
            regex: Some(regex::escape(name)),
            ..Filter::default()
        }
    }

    /// Names starting with `prefix`.
    pub fn prefix(prefix: impl Into<String>) -> Filter {
        Filter {
            prefix: Some(prefix.into()),
            ..Filter::default()
        }
    }

    /// Names matching the regular expression `regex` (whole name).
    pub fn regex(regex: impl Into<String>) -> Filter {
        Filter {
            regex: Some(regex.into()),
            ..Filter::default()
        }
    }

    /// Registrations carrying every one of `tags`.
    pub fn meta_all<S: Into<String>>(tags: impl IntoIterator<Item = S>) -> Filter {
        Filter {
            meta_all: tags.into_iter().map(Into::into).collect(),
            ..Filter::default()
        }
    }

    /// Registrations carrying at least one of `tags`.
    pub fn meta_any<S: Into<String>>(tags: impl IntoIterator<Item = S>) -> Filter {
        Filter {
            meta_any: tags.into_iter().map(Into::into).collect(),
            ..Filter::default()
        }
    }

    /// Whether no filter is set (every registration passes).
    pub fn is_empty(&self) -> bool {
        self.prefix.is_none()
            && self.regex.is_none()
            && self.meta_all.is_empty()
            && self.meta_any.is_empty()
    }

    /// Checks the filter and compiles its regex: an invalid regex is an [`Error::Naming`]
    /// that says what is wrong with it.
    pub fn compile(&self) -> Result<CompiledFilter, Error> {
        let regex = match &self.regex {
            None => None,
            Some(r) => Some(
                regex::RegexBuilder::new(&format!("^(?:{r})$"))
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| naming_error(r.clone(), format!("invalid regex: {e}")))?,
            ),
        };
        Ok(CompiledFilter {
            filter: self.clone(),
            regex,
        })
    }
}

/// A [`Filter`] ready to match (its regex compiled).
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    filter: Filter,
    regex: Option<regex::Regex>,
}

impl CompiledFilter {
    /// Whether a registration of `name` with `metadata` passes every filter that is set.
    pub fn matches(&self, name: &str, metadata: &BTreeSet<String>) -> bool {
        let f = &self.filter;
        f.prefix.as_deref().is_none_or(|p| name.starts_with(p))
            && self.regex.as_ref().is_none_or(|r| r.is_match(name))
            && f.meta_all.iter().all(|t| metadata.contains(t))
            && (f.meta_any.is_empty() || f.meta_any.iter().any(|t| metadata.contains(t)))
    }
}

/// Checks `text` (a name, URI or tag) against the rules every backend applies.
fn check_text(what: &str, text: &str, max: usize, whitespace_ok: bool) -> Result<(), String> {
    if text.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if text.len() > max {
        return Err(format!(
            "the {what} is {} bytes long; the limit is {max}",
            text.len()
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|c| c.is_control() || (!whitespace_ok && c.is_whitespace()))
    {
        return Err(format!(
            "the {what} contains {c:?}; names and URIs may not contain whitespace or control characters, tags no control characters"
        ));
    }
    Ok(())
}

/// Checks a name: non-empty, at most [`MAX_NAME_LEN`] bytes, no whitespace or control
/// characters.
pub fn validate_name(name: &str) -> Result<(), Error> {
    check_text("name", name, MAX_NAME_LEN, false)
        .map_err(|m| naming_error(name, format!("invalid name {name:?}: {m}")))
}

/// Checks the URI registered for `name`: non-empty, at most [`MAX_URI_LEN`] bytes, no
/// whitespace or control characters.
pub fn validate_uri(name: &str, uri: &str) -> Result<(), Error> {
    check_text("URI", uri, MAX_URI_LEN, false)
        .map_err(|m| naming_error(name, format!("invalid URI {uri:?} for `{name}`: {m}")))
}

/// Checks the metadata tags of `name`: at most [`MAX_TAGS`], each non-empty, at most
/// [`MAX_TAG_LEN`] bytes, without control characters.
pub fn validate_tags(name: &str, tags: &BTreeSet<String>) -> Result<(), Error> {
    if tags.len() > MAX_TAGS {
        return Err(naming_error(
            name,
            format!(
                "`{name}` has {} metadata tags; the limit is {MAX_TAGS}",
                tags.len()
            ),
        ));
    }
    for t in tags {
        check_text("tag", t, MAX_TAG_LEN, true)
            .map_err(|m| naming_error(name, format!("invalid metadata tag {t:?}: {m}")))?;
    }
    Ok(())
}

/// The backend a URI names:
/// - `mem` (or `memory`): a new in-memory [`EmbeddedStore`];
/// - `file:PATH` or a plain path: the [`EmbeddedStore`] file at PATH (created if missing);
/// - `tcp://host:port`, `unix:///path` (any wirecall address): the name server there,
///   through [`RemoteNaming`];
/// - `etcd://host:port,host:port`: etcd, in builds with the cargo feature `etcd`.
pub fn backend_from_uri(uri: &str) -> Result<Arc<dyn NamingBackend>, Error> {
    let uri = uri.trim();
    if uri.is_empty() {
        return Err(Error::config(
            "the naming backend URI is empty; give a name server address (tcp://127.0.0.1:9090), a store file, or `mem`",
        ));
    }
    if uri == "mem" || uri == "memory" {
        return Ok(Arc::new(EmbeddedStore::in_memory()?));
    }
    if uri.starts_with("etcd://") {
        // connects on first use: this function cannot wait
        #[cfg(feature = "etcd")]
        return Ok(Arc::new(etcd::EtcdBackend::from_uri_lazy(uri)?));
        #[cfg(not(feature = "etcd"))]
        return Err(Error::config(format!(
            "`{uri}` needs the etcd naming backend: build wirecall with the cargo feature `etcd`"
        )));
    }
    if let Some(path) = uri.strip_prefix("file:") {
        return Ok(Arc::new(EmbeddedStore::open(path)?));
    }
    if uri.contains("://") {
        return Ok(Arc::new(RemoteNaming::new(uri)?));
    }
    Ok(Arc::new(EmbeddedStore::open(uri)?))
}

/// The backend `WIRECALL_NS` names ([`backend_from_uri`]), or a configuration error saying
/// how to set it.
pub fn backend_from_env() -> Result<Arc<dyn NamingBackend>, Error> {
    match std::env::var(NS_ENV) {
        Ok(v) if !v.trim().is_empty() => backend_from_uri(&v),
        _ => Err(Error::config(format!(
            "no naming backend: set {NS_ENV} (e.g. {NS_ENV}=tcp://127.0.0.1:9090, where `wirecall ns serve` listens), or give the proxy a backend"
        ))),
    }
}

/// A name a server registers for one of its providers when it starts, and removes when it
/// finalizes ([`ServerBuilder::announce`](crate::ServerBuilder::announce)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// The name.
    pub name: String,
    /// The provider it stands for.
    pub provider_id: u16,
    /// The service name bound in the registered URI (so `Proxy::call` works on
    /// `name:NAME`), if given.
    pub service: Option<String>,
    /// Metadata tags.
    pub metadata: BTreeSet<String>,
}

impl Announce {
    /// `name` for the provider `provider_id`.
    pub fn new(name: impl Into<String>, provider_id: u16) -> Announce {
        Announce {
            name: name.into(),
            provider_id,
            service: None,
            metadata: BTreeSet::new(),
        }
    }

    /// Binds the service name in the registered URI (`service:id@address`).
    #[must_use]
    pub fn service(mut self, service: impl Into<String>) -> Announce {
        self.service = Some(service.into());
        self
    }

    /// With these metadata tags.
    #[must_use]
    pub fn tags<S: Into<String>>(mut self, tags: impl IntoIterator<Item = S>) -> Announce {
        self.metadata = tags.into_iter().map(Into::into).collect();
        self
    }

    /// The registration of this name for a server at `address`.
    pub fn registration(&self, address: &str) -> Registration {
        let service = self.service.as_deref().unwrap_or("");
        Registration {
            name: self.name.clone(),
            uri: format!("{service}:{}@{address}", self.provider_id),
            metadata: self.metadata.clone(),
        }
    }
}

/// Names to register on start, with their backend (a builder's setting).
#[derive(Clone)]
pub(crate) struct Announcements {
    pub(crate) backend: Arc<dyn NamingBackend>,
    pub(crate) names: Vec<Announce>,
}

impl std::fmt::Debug for Announcements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcements")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// What a started server registered, to remove at finalize.
pub(crate) type Announced = Vec<(Arc<dyn NamingBackend>, Registration)>;

/// Registers every announced name for a server at `address`; on a failure, removes what was
/// registered and returns the error.
pub(crate) async fn announce(sets: &[Announcements], address: &str) -> Result<Announced, Error> {
    let mut done: Announced = Vec::new();
    for set in sets {
        for a in &set.names {
            let reg = a.registration(address);
            if let Err(e) = set.backend.register(reg.clone(), false).await {
                withdraw(&done).await;
                return Err(e);
            }
            done.push((set.backend.clone(), reg));
        }
    }
    Ok(done)
}

/// Removes what [`announce`] registered (each name only while it still points here), each
/// within 5 s; failures are logged.
pub(crate) async fn withdraw(done: &Announced) {
    for (backend, reg) in done {
        let filter = Filter::exact(&reg.name);
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            backend.remove(&filter, Some(&reg.uri)),
        )
        .await;
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(name = %reg.name, uri = %reg.uri, error = %e, "could not remove the name at finalize")
            }
            Err(_) => {
                tracing::warn!(name = %reg.name, uri = %reg.uri, "removing the name at finalize timed out after 5 s")
            }
        }
    }
}
