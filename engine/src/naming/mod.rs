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

use std::collections::BTreeSet;

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
#[allow(dead_code)] // the backends use it
pub(crate) fn naming_error(name: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Naming {
        name: name.into(),
        message: message.into(),
        unavailable: false,
    }
}

/// An [`Error::Naming`] for a backend that cannot be reached.
#[allow(dead_code)] // the backends use it
pub(crate) fn unavailable(name: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Naming {
        name: name.into(),
        message: message.into(),
        unavailable: true,
    }
}
