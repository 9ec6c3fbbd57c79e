//! Naming URIs (`name:`, `PYRONAME:`, `meta:`, `PYROMETA:`), the default backend, and the
//! resolution a proxy caches.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use futures::StreamExt;
use wirecall_codecs::Value;
use wirecall_transport::Address;

use super::server::{pick, uri_from_object};
use super::{
    backend_from_uri, naming_error, unavailable, validate_name, Filter, NamingBackend,
    Registration, RemoteNaming, NS_ENV,
};
use crate::{Error, PyroProxy};

/// Pyro5's default name server port.
const NS_PORT: u16 = 9090;

/// What a naming URI asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One name: `name:NAME`, or Pyro's `PYRONAME:NAME[@host[:port]]`.
    Name {
        /// The name.
        name: String,
        /// The name server given in the URI (`host:port`, or `./u:/socket/path`), if any;
        /// else the configured one.
        ns: Option<String>,
    },
    /// A registration carrying all these tags: `meta:tag1,tag2`, or Pyro's
    /// `PYROMETA:tag1,tag2[@host[:port]]`.
    Meta {
        /// The tags.
        tags: BTreeSet<String>,
        /// The name server given in the URI (`host:port`, or `./u:/socket/path`), if any.
        ns: Option<String>,
    },
}

impl Target {
    /// Reads a naming URI; `Ok(None)` for any other URI (a direct address).
    ///
    /// ```
    /// use wirecall::naming::Target;
    /// let t = Target::parse("PYRONAME:example.greeting@127.0.0.1:9090").unwrap().unwrap();
    /// assert_eq!(t, Target::Name { name: "example.greeting".into(), ns: Some("127.0.0.1:9090".into()) });
    /// assert!(Target::parse("tcp://127.0.0.1:4000").unwrap().is_none());
    /// ```
    pub fn parse(uri: &str) -> Result<Option<Target>, Error> {
        let uri = uri.trim();
        let Some((scheme, rest)) = uri.split_once(':') else {
            return Ok(None);
        };
        let (pyro, meta) = match scheme {
            "name" => (false, false),
            "meta" => (false, true),
            s if s.eq_ignore_ascii_case("PYRONAME") => (true, false),
            s if s.eq_ignore_ascii_case("PYROMETA") => (true, true),
            _ => return Ok(None),
        };
        // Pyro's location is optional and follows the first `@`; `name:` takes none.
        let (what, ns) = match rest.split_once('@') {
            Some((w, loc)) if pyro => (w, Some(ns_location(uri, loc)?)),
            _ => (rest, None),
        };
        if meta {
            let tags: BTreeSet<String> = what
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect();
            if tags.is_empty() {
                return Err(naming_error(
                    uri,
                    format!("`{uri}` names no metadata tag; write meta:tag1,tag2"),
                ));
            }
            return Ok(Some(Target::Meta { tags, ns }));
        }
        validate_name(what)?;
        Ok(Some(Target::Name {
            name: what.to_string(),
            ns,
        }))
    }

    /// The name server given in the URI, as a wirecall address (`tcp://host:port`, or
    /// `unix:///path` for Pyro's `./u:/path`).
    fn ns_address(&self) -> Option<String> {
        match self {
            Target::Name { ns, .. } | Target::Meta { ns, .. } => {
                ns.as_ref().map(|loc| match loc.strip_prefix("./u:") {
                    Some(path) => format!("unix://{path}"),
                    None => format!("tcp://{loc}"),
                })
            }
        }
    }

    /// What the target names, for messages.
    fn subject(&self) -> String {
        match self {
            Target::Name { name, .. } => name.clone(),
            Target::Meta { tags, .. } => {
                format!(
                    "meta:{}",
                    tags.iter().cloned().collect::<Vec<_>>().join(",")
                )
            }
        }
    }
}

/// `host[:port]` of a Pyro URI's location (port 9090 when absent, as Pyro).
fn ns_location(uri: &str, loc: &str) -> Result<String, Error> {
    let bad = || {
        naming_error(
            uri,
            format!("bad name server location `{loc}` in `{uri}`: expected host, host:port or ./u:/socket/path"),
        )
    };
    if loc.is_empty() || loc.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    if let Some(path) = loc.strip_prefix("./u:") {
        // A unix socket, as in Pyro's URIs: a non-empty path without `:`.
        if path.is_empty() || path.contains(':') {
            return Err(bad());
        }
        return Ok(loc.to_string());
    }
    if let Some(v6) = loc.strip_prefix('[') {
        let (host, port) = v6.split_once(']').ok_or_else(bad)?;
        let port = match port.strip_prefix(':') {
            Some(p) => p.parse::<u16>().map_err(|_| bad())?,
            None if port.is_empty() => NS_PORT,
            None => return Err(bad()),
        };
        return Ok(format!("[{host}]:{port}"));
    }
    match loc.rsplit_once(':') {
        Some((host, port)) => {
            let port: u16 = port.parse().map_err(|_| bad())?;
            if host.is_empty() {
                return Err(bad());
            }
            Ok(format!("{host}:{port}"))
        }
        None => Ok(format!("{loc}:{NS_PORT}")),
    }
}

/// The backend set in code, or made from `WIRECALL_NS` (kept while the variable is unchanged).
static DEFAULT: Mutex<Option<DefaultBackend>> = Mutex::new(None);

/// The default backend and the `WIRECALL_NS` value it was made from (`None`: set in code).
type DefaultBackend = (Option<String>, Arc<dyn NamingBackend>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes `backend` the one proxies resolve `name:` and `meta:` URIs through (instead of
/// `WIRECALL_NS`), for the whole process.
pub fn set_default_backend(backend: Arc<dyn NamingBackend>) {
    *lock(&DEFAULT) = Some((None, backend));
}

/// The backend proxies resolve names through: the one set with [`set_default_backend`],
/// else the one `WIRECALL_NS` names (made once per value of the variable).
pub fn default_backend() -> Result<Arc<dyn NamingBackend>, Error> {
    let env = std::env::var(NS_ENV).ok().filter(|v| !v.trim().is_empty());
    let mut d = lock(&DEFAULT);
    match &*d {
        Some((None, b)) => return Ok(b.clone()),
        Some((Some(v), b)) if env.as_deref() == Some(v.as_str()) => return Ok(b.clone()),
        _ => {}
    }
    let Some(v) = env else {
        return Err(Error::config(format!(
            "a name: or meta: URI needs a naming backend: set {NS_ENV} (e.g. {NS_ENV}=tcp://127.0.0.1:9090, where `wirecall ns serve` listens), call naming::set_default_backend, or give the proxy one with Proxy::naming"
        )));
    };
    let b = backend_from_uri(&v)?;
    *d = Some((Some(v), b.clone()));
    Ok(b)
}

/// Where a resolved name points.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) uri: String,
    pub(crate) address: Address,
    pub(crate) service: Option<String>,
    pub(crate) provider_id: Option<u16>,
}

/// The naming side of a proxy made from a naming URI: the target, the backend and the
/// cached resolution.
pub(crate) struct NamedTarget {
    pub(crate) target: Target,
    backend: Mutex<Option<Arc<dyn NamingBackend>>>,
    cache: Mutex<Option<Resolved>>,
    /// The service and provider id of the first resolution (for `Proxy::service`).
    pub(crate) first: OnceLock<(Option<String>, Option<u16>)>,
    watching: std::sync::atomic::AtomicBool,
    /// The URI whose address last failed: not chosen again while another one is registered
    /// (with several instances, the re-resolution after a failure must not land on the dead
    /// one until its registration expires).
    avoid: Mutex<Option<String>>,
    /// Dropped with the target: stops the task that follows the backend's watch.
    stop_watch: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// The `PYRO:` URI of a Pyro5 object the target named when no native registration
    /// did (a proxy then turns to its Pyro mode).
    pyro: Mutex<Option<String>>,
}

impl std::fmt::Debug for NamedTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedTarget")
            .field("target", &self.target)
            .field("cache", &*lock(&self.cache))
            .finish_non_exhaustive()
    }
}

impl NamedTarget {
    pub(crate) fn new(target: Target) -> NamedTarget {
        NamedTarget {
            target,
            backend: Mutex::new(None),
            cache: Mutex::new(None),
            first: OnceLock::new(),
            watching: std::sync::atomic::AtomicBool::new(false),
            avoid: Mutex::new(None),
            stop_watch: Mutex::new(None),
            pyro: Mutex::new(None),
        }
    }

    /// Resolves through `backend` from now on (and forgets what was resolved).
    pub(crate) fn set_backend(&self, backend: Arc<dyn NamingBackend>) {
        *lock(&self.backend) = Some(backend);
        *lock(&self.cache) = None;
    }

    fn backend(&self) -> Result<Arc<dyn NamingBackend>, Error> {
        if let Some(b) = lock(&self.backend).clone() {
            return Ok(b);
        }
        let b: Arc<dyn NamingBackend> = match self.target.ns_address() {
            Some(addr) => Arc::new(RemoteNaming::new(&addr)?),
            None => default_backend()?,
        };
        *lock(&self.backend) = Some(b.clone());
        Ok(b)
    }

    /// The `PYRO:` URI the last resolution found when the target names only Pyro5 objects.
    pub(crate) fn pyro_uri(&self) -> Option<String> {
        lock(&self.pyro).clone()
    }

    /// The cached resolution, if any.
    pub(crate) fn cached(&self) -> Option<Resolved> {
        lock(&self.cache).clone()
    }

    /// Forgets `stale` (if it is still the cached resolution).
    pub(crate) fn invalidate(&self, stale: &Resolved) {
        let mut c = lock(&self.cache);
        if c.as_ref().is_some_and(|r| r.uri == stale.uri) {
            *c = None;
        }
        *lock(&self.avoid) = Some(stale.uri.clone());
    }

    /// The cached resolution, or a fresh one (`true`) through the backend.
    pub(crate) async fn resolve(self: &Arc<Self>) -> Result<(Resolved, bool), Error> {
        if let Some(r) = self.cached() {
            return Ok((r, false));
        }
        let backend = self.backend()?;
        let regs = match &self.target {
            Target::Name { name, .. } => backend.lookup(name).await?,
            Target::Meta { tags, .. } => backend.list(&Filter::meta_all(tags.clone())).await?,
        };
        let r = self.choose(&regs)?;
        *lock(&self.cache) = Some(r.clone());
        let _ = self.first.set((r.service.clone(), r.provider_id));
        if let Target::Name { name, .. } = &self.target {
            self.watch(&backend, name);
        }
        Ok((r, true))
    }

    /// One registration a native proxy can use, parsed.
    fn choose(&self, regs: &[Registration]) -> Result<Resolved, Error> {
        let subject = self.target.subject();
        let mut usable: Vec<Registration> = regs
            .iter()
            .filter(|r| !is_pyro_uri(&r.uri))
            .cloned()
            .collect();
        if let Some(avoid) = lock(&self.avoid).as_deref() {
            if usable.iter().any(|r| r.uri != avoid) {
                usable.retain(|r| r.uri != avoid);
            }
        }
        let Some(r) = pick(&usable) else {
            return Err(match regs.first() {
                None => naming_error(
                    &subject,
                    format!("no registration carries every tag of {subject}"),
                ),
                Some(p) => {
                    let pyro: Vec<Registration> = regs
                        .iter()
                        .filter(|r| is_pyro_uri(&r.uri))
                        .cloned()
                        .collect();
                    *lock(&self.pyro) = pick(&pyro).map(|r| r.uri.clone());
                    naming_error(
                        &subject,
                        format!(
                            "{subject} is registered for a Pyro5 object ({}), which has no wirecall address: a proxy made from the name calls it in Pyro mode",
                            p.uri
                        ),
                    )
                }
            });
        };
        let (service, provider_id, address) = crate::Proxy::split_uri(&r.uri).map_err(|e| {
            naming_error(
                &subject,
                format!(
                    "{subject} is registered with the URI `{}`, which a proxy cannot use: {e}",
                    r.uri
                ),
            )
        })?;
        Ok(Resolved {
            uri: r.uri.clone(),
            address,
            service,
            provider_id,
        })
    }

    /// Keeps the cache fresh from the backend's pushes, when it has them (etcd): a cached
    /// resolution whose registration disappears is replaced by a remaining one.
    fn watch(self: &Arc<Self>, backend: &Arc<dyn NamingBackend>, name: &str) {
        if self
            .watching
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let Some(mut changes) = backend.watch(name) else {
            return;
        };
        let me: Weak<NamedTarget> = Arc::downgrade(self);
        // The task ends when the proxy's target is dropped (its sender with it), even if the
        // watch never sends again.
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        *lock(&self.stop_watch) = Some(stop);
        tokio::spawn(async move {
            loop {
                let regs = tokio::select! {
                    _ = &mut stopped => return,
                    next = changes.next() => match next {
                        Some(regs) => regs,
                        None => return,
                    },
                };
                let Some(me) = me.upgrade() else { return };
                let current = lock(&me.cache).clone();
                if current.is_some_and(|c| regs.iter().any(|r| r.uri == c.uri)) {
                    continue;
                }
                let fresh = me.choose(&regs).ok();
                *lock(&me.cache) = fresh;
            }
        });
    }
}

fn is_pyro_uri(uri: &str) -> bool {
    uri.split_once(':')
        .is_some_and(|(p, _)| p.eq_ignore_ascii_case("PYRO"))
}

impl PyroProxy {
    /// A proxy for `uri`, resolving `PYRONAME:name[@host[:port]]` and
    /// `PYROMETA:tag1,tag2[@host[:port]]` through a Pyro5 name server first: a Python one
    /// (`python -m Pyro5.nameserver`) or wirecall's (`wirecall ns serve`), at the URI's
    /// location, else at the address in `WIRECALL_NS`, else at `localhost:9090` as Pyro5.
    /// A `PYRO:` URI is used as it is.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), wirecall::Error> {
    /// use wirecall::PyroProxy;
    /// let calc = PyroProxy::resolve("PYRONAME:example.calc@127.0.0.1:9090").await?;
    /// let sum: i64 = calc.call_typed("add", (2, 3)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn resolve(uri: &str) -> Result<PyroProxy, Error> {
        let Some(target) = Target::parse(uri)? else {
            return PyroProxy::new(uri);
        };
        let location = match target.ns_address() {
            Some(a) => a,
            None => std::env::var(NS_ENV)
                .ok()
                .filter(|v| v.starts_with("tcp://"))
                .unwrap_or_else(|| format!("tcp://localhost:{NS_PORT}")),
        };
        let hp = match location.strip_prefix("unix://") {
            Some(path) => format!("./u:{path}"),
            None => location
                .trim_start_matches("tcp://")
                .trim_end_matches('/')
                .to_string(),
        };
        let ns = PyroProxy::new(&format!("PYRO:{}@{hp}", super::NAME_SERVER_NAME))?
            .timeout(std::time::Duration::from_secs(10));
        let subject = target.subject();
        let explain = |e: Error| match e {
            Error::Remote(r) if r.type_name.ends_with("NamingError") => {
                naming_error(&subject, r.message)
            }
            Error::Transport { .. } | Error::Timeout { .. } | Error::Protocol(_) => unavailable(
                &subject,
                format!("the Pyro5 name server at {hp} cannot be reached: {e}"),
            ),
            other => other,
        };
        let found = match &target {
            Target::Name { name, .. } => {
                let v = ns
                    .call("lookup", vec![Value::Str(name.clone())], vec![])
                    .await
                    .map_err(explain)?;
                match v {
                    Value::Str(s) => s,
                    other => uri_from_object(&other).ok_or_else(|| {
                        naming_error(
                            &subject,
                            format!("the name server at {hp} answered a lookup with {other:?}, not a URI"),
                        )
                    })?,
                }
            }
            Target::Meta { tags, .. } => {
                let tags = Value::List(tags.iter().cloned().map(Value::Str).collect());
                let v = ns
                    .call(
                        "yplookup",
                        vec![],
                        vec![
                            ("meta_all".to_string(), tags),
                            ("return_metadata".to_string(), Value::Bool(false)),
                        ],
                    )
                    .await
                    .map_err(explain)?;
                let Value::Map(m) = v else {
                    return Err(naming_error(
                        &subject,
                        "the name server's yplookup answer is not a dict",
                    ));
                };
                let uris: Vec<Registration> = m
                    .into_iter()
                    .filter_map(|(k, v)| match (k, v) {
                        (Value::Str(k), Value::Str(u)) => Some(Registration::new(k, u)),
                        _ => None,
                    })
                    .collect();
                pick(&uris).map(|r| r.uri.clone()).ok_or_else(|| {
                    naming_error(
                        &subject,
                        format!("no registration carries every tag of {subject}"),
                    )
                })?
            }
        };
        PyroProxy::new(&found)
    }
}
