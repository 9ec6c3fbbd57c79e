//! The name server: a provider that serves a [`NamingBackend`] to native wirecall clients
//! and, as the Pyro5 object `Pyro.NameServer`, to Python Pyro5 (`Pyro5.api.locate_ns`,
//! `PYRONAME:` and `PYROMETA:` URIs).
//!
//! Its methods are Pyro5's name server API with the same argument names, defaults and result
//! shapes (reference `pyro5-protocol.md` §3.3): `register(name, uri, safe=False,
//! metadata=None)`, `lookup(name, return_metadata=False)`, `list(prefix=None, regex=None,
//! return_metadata=False)`, `yplookup(meta_all=None, meta_any=None, return_metadata=True)`,
//! `remove(name=None, prefix=None, regex=None)`, `set_metadata(name, metadata)`, `ping()`,
//! `count()`. `lookup` answers a Pyro URI object (`Pyro5.core.URI`) for a `PYRO:` URI and
//! the URI string for any other; `list` and `yplookup` answer URI strings. Errors are
//! `Pyro5.errors.NamingError` (unknown name, refused overwrite, invalid regex or name),
//! `ValueError` (two filters at once) and `TypeError` (an argument of the wrong type), as
//! Pyro's.
//!
//! Three more methods serve [`RemoteNaming`](super::RemoteNaming) (every registration of a
//! name and every filter at once): `lookup_all(name)`, `list_all(prefix=None, regex=None,
//! meta_all=None, meta_any=None)` and `remove_all(prefix=None, regex=None, meta_all=None,
//! meta_any=None, uri=None)`, answering registrations as `[name, uri, [tags]]` lists.
//!
//! Arguments are read as dynamic values, so the name server answers the self-describing
//! codecs (json, msgpack, cbor, serpent, marshal, ron) and refuses bincode and postcard
//! calls with a message that says so.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use wirecall_codecs::Value;

use super::{validate_name, Filter, NamingBackend, Registration};
use crate::context::Incoming;
use crate::error::{Fault, FaultKind};
use crate::provider::{Handled, MethodKind, MethodSpec, Outcome, Provider};
use crate::{Engine, Error};

/// The provider id a name server is registered under (native clients call it there).
pub const NAME_SERVER_PROVIDER_ID: u16 = 0xfffe;

/// The name (and Pyro5 object id) of the name server itself, as in Pyro5.
pub const NAME_SERVER_NAME: &str = "Pyro.NameServer";

/// The metadata tag of the name server's own registration, as in Pyro5.
const NAME_SERVER_TAG: &str = "class:Pyro5.nameserver.NameServer";

/// The name server provider: Pyro5's name server API over any [`NamingBackend`].
///
/// Host one with [`Engine::host_name_server`]; it is then reachable by native clients at
/// provider id [`NAME_SERVER_PROVIDER_ID`] (service `ns`) and by Python Pyro5 at
/// `PYRO:Pyro.NameServer@host:port`.
pub struct NameServer {
    backend: Arc<dyn NamingBackend>,
}

impl std::fmt::Debug for NameServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameServer").finish_non_exhaustive()
    }
}

impl NameServer {
    /// A name server answering from `backend`.
    pub fn new(backend: Arc<dyn NamingBackend>) -> NameServer {
        NameServer { backend }
    }

    /// The backend it answers from.
    pub fn backend(&self) -> &Arc<dyn NamingBackend> {
        &self.backend
    }
}

impl Engine {
    /// Hosts a name server answering from `backend` on this server: registers the
    /// [`NameServer`] provider under [`NAME_SERVER_PROVIDER_ID`] and the Pyro5 object id
    /// `Pyro.NameServer`, and registers the name server itself in the backend under the
    /// name `Pyro.NameServer` (with the tag `class:Pyro5.nameserver.NameServer`) at this
    /// server's first address, as Pyro5's name server does. Python finds it with
    /// `Pyro5.api.locate_ns(host, port)`; wirecall clients with `WIRECALL_NS` set to the
    /// server's address.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), wirecall::Error> {
    /// use std::sync::Arc;
    /// use wirecall::naming::{EmbeddedStore, NamingBackend, RemoteNaming};
    /// let ns = wirecall::Engine::server("tcp://127.0.0.1:0").start().await?;
    /// ns.host_name_server(Arc::new(EmbeddedStore::in_memory()?)).await?;
    /// let client = RemoteNaming::new(&ns.address())?;
    /// assert_eq!(client.count().await?, 1); // its own entry, Pyro.NameServer
    /// # ns.finalize().await;
    /// # Ok(()) }
    /// ```
    pub async fn host_name_server(&self, backend: Arc<dyn NamingBackend>) -> Result<(), Error> {
        let address = self.address();
        let own = pyro_uri_of(NAME_SERVER_NAME, &address).ok_or_else(|| {
            Error::config(format!(
                "a name server needs a tcp:// or unix:// address for Python clients to reach it; this server listens on `{address}`"
            ))
        })?;
        self.register_provider_as(
            NameServer::new(backend.clone()),
            NAME_SERVER_PROVIDER_ID,
            NAME_SERVER_NAME,
        )?;
        let reg = Registration::new(NAME_SERVER_NAME, own).with_metadata([NAME_SERVER_TAG]);
        if let Err(e) = backend.register(reg, false).await {
            self.deregister_provider(NAME_SERVER_PROVIDER_ID);
            return Err(e);
        }
        Ok(())
    }
}

/// The `PYRO:` URI of `object` at a wirecall address (`tcp://h:p` or `unix:///path`).
pub(crate) fn pyro_uri_of(object: &str, address: &str) -> Option<String> {
    if let Some(hp) = address.strip_prefix("tcp://") {
        let hp = hp.trim_end_matches('/');
        return Some(format!("PYRO:{object}@{hp}"));
    }
    if let Some(path) = address.strip_prefix("unix://") {
        return (!path.contains(':')).then(|| format!("PYRO:{object}@./u:{path}"));
    }
    None
}

impl Provider for NameServer {
    const SERVICE: &'static str = "ns";

    fn methods() -> Vec<MethodSpec<Self>> {
        macro_rules! method {
            ($name:literal, [$($p:literal),*], $f:ident) => {
                MethodSpec {
                    name: $name,
                    params: &[$($p),*],
                    kind: MethodKind::Method,
                    oneway: false,
                    blocking: false,
                    streams: false,
                    uploads: false,
                    handler: |ns, call| run(ns, call, $name, &[$($p),*], $f),
                    direct: None,
                }
            };
        }
        vec![
            method!("register", ["name", "uri", "safe", "metadata"], register),
            method!("lookup", ["name", "return_metadata"], lookup),
            method!("list", ["prefix", "regex", "return_metadata"], list),
            method!(
                "yplookup",
                ["meta_all", "meta_any", "return_metadata"],
                yplookup
            ),
            method!("remove", ["name", "prefix", "regex"], remove),
            method!("set_metadata", ["name", "metadata"], set_metadata),
            method!("ping", [], ping),
            method!("count", [], count),
            method!("lookup_all", ["name"], lookup_all),
            method!(
                "list_all",
                ["prefix", "regex", "meta_all", "meta_any"],
                list_all
            ),
            method!(
                "remove_all",
                ["prefix", "regex", "meta_all", "meta_any", "uri"],
                remove_all
            ),
        ]
    }
}

/// A method's failure, as the caller sees it.
enum Fail {
    /// `Pyro5.errors.NamingError` (or `CommunicationError` when the backend is unreachable).
    Naming(Error),
    /// `ValueError`.
    Value(String),
    /// `TypeError` (bad arguments).
    Type(String),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail::Naming(e)
    }
}

impl Fail {
    fn fault(self) -> Fault {
        match self {
            Fail::Naming(Error::Naming {
                message,
                unavailable,
                ..
            }) => {
                let class = if unavailable {
                    "Pyro5.errors.CommunicationError"
                } else {
                    "Pyro5.errors.NamingError"
                };
                Fault::application(class, message, "")
            }
            Fail::Naming(e) => Fault::application("Pyro5.errors.NamingError", e.to_string(), ""),
            Fail::Value(m) => Fault::application("ValueError", m, ""),
            Fail::Type(m) => Fault::new(FaultKind::BadArguments, m),
        }
    }
}

/// A call's arguments, positional and keyword, as dynamic values.
struct Args {
    method: &'static str,
    params: &'static [&'static str],
    positional: Vec<Value>,
    keyword: Vec<(String, Value)>,
}

impl Args {
    fn read(
        call: &Incoming,
        method: &'static str,
        params: &'static [&'static str],
    ) -> Result<Args, Fail> {
        let decode = |bytes: &Bytes, what: &str| -> Result<Option<Value>, Fail> {
            if bytes.is_empty() {
                return Ok(None);
            }
            wirecall_codecs::decode_value(call.codec, bytes, &call.limits)
                .map(Some)
                .map_err(|e| {
                    Fail::Type(format!(
                        "the name server could not read the {what} of `{method}` with {}: {e} (it reads self-describing codecs: json, msgpack, cbor, serpent, marshal, ron)",
                        call.codec
                    ))
                })
        };
        let positional = match decode(&call.args, "positional arguments")? {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::List(v) | Value::Tuple(v)) => v,
            Some(_) => {
                return Err(Fail::Type(format!(
                    "the positional arguments of `{method}` are not a sequence"
                )))
            }
        };
        if positional.len() > params.len() {
            return Err(Fail::Type(format!(
                "{method}() takes {} arguments ({}) but {} were given",
                params.len(),
                params.join(", "),
                positional.len()
            )));
        }
        let mut keyword = Vec::new();
        match decode(&call.kwargs, "keyword arguments")? {
            None | Some(Value::Null) => {}
            Some(Value::Map(m)) => {
                for (k, v) in m {
                    let Value::Str(k) = k else {
                        return Err(Fail::Type(format!("{method}() keywords must be strings")));
                    };
                    let Some(i) = params.iter().position(|p| *p == k) else {
                        return Err(Fail::Type(format!(
                            "{method}() got an unexpected keyword argument '{k}' (its parameters: {})",
                            params.join(", ")
                        )));
                    };
                    if i < positional.len() {
                        return Err(Fail::Type(format!(
                            "{method}() got multiple values for argument '{k}'"
                        )));
                    }
                    keyword.push((k, v));
                }
            }
            Some(_) => {
                return Err(Fail::Type(format!(
                    "the keyword arguments of `{method}` are not a map"
                )))
            }
        }
        Ok(Args {
            method,
            params,
            positional,
            keyword,
        })
    }

    /// The argument `name`, or `None` when absent or `None`.
    fn get(&self, name: &str) -> Option<&Value> {
        let i = self.params.iter().position(|p| *p == name)?;
        let v = match self.positional.get(i) {
            Some(v) => Some(v),
            None => self.keyword.iter().find(|(k, _)| k == name).map(|(_, v)| v),
        };
        v.filter(|v| !matches!(v, Value::Null))
    }

    fn str(&self, name: &str) -> Result<Option<String>, Fail> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s.clone())),
            Some(other) => Err(Fail::Type(format!(
                "{}(): `{name}` must be a str, not {}",
                self.method,
                type_name(other)
            ))),
        }
    }

    fn required_str(&self, name: &str) -> Result<String, Fail> {
        self.str(name)?.ok_or_else(|| {
            Fail::Type(format!(
                "{}() missing required argument: '{name}'",
                self.method
            ))
        })
    }

    /// A flag, read as Python's truth value (Pyro5's own `nameserver.lookup` helper passes
    /// its float `delay_time` where `return_metadata` goes).
    fn bool(&self, name: &str, default: bool) -> Result<bool, Fail> {
        Ok(match self.get(name) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(Value::Int(i)) => *i != 0,
            Some(Value::BigInt(_)) => true,
            Some(Value::Float(f)) => *f != 0.0,
            Some(Value::Str(s)) => !s.is_empty(),
            Some(Value::Bytes(b)) => !b.is_empty(),
            Some(Value::List(v) | Value::Tuple(v) | Value::Set(v)) => !v.is_empty(),
            Some(Value::Map(m)) => !m.is_empty(),
            Some(other) => {
                return Err(Fail::Type(format!(
                    "{}(): `{name}` must be a bool, not {}",
                    self.method,
                    type_name(other)
                )))
            }
        })
    }

    /// A set of tags: a set, list or tuple of str (not a str, as Pyro).
    fn tags(&self, name: &str) -> Result<Option<BTreeSet<String>>, Fail> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Set(v) | Value::List(v) | Value::Tuple(v)) => v
                .iter()
                .map(|t| match t {
                    Value::Str(s) => Ok(s.clone()),
                    other => Err(Fail::Type(format!(
                        "{}(): every tag of `{name}` must be a str, not {}",
                        self.method,
                        type_name(other)
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(other) => Err(Fail::Type(format!(
                "{}(): `{name}` must be a set or list of str, not {}",
                self.method,
                type_name(other)
            ))),
        }
    }

    /// The URI argument: a str, or a Pyro `Pyro5.core.URI` object.
    fn uri(&self, name: &str) -> Result<String, Fail> {
        match self.get(name) {
            Some(Value::Str(s)) => Ok(s.clone()),
            Some(v @ Value::Map(_)) => uri_from_object(v)
                .ok_or_else(|| Fail::Type("only URIs or strings can be registered".to_string())),
            Some(_) => Err(Fail::Type(
                "only URIs or strings can be registered".to_string(),
            )),
            None => Err(Fail::Type(format!(
                "{}() missing required argument: '{name}'",
                self.method
            ))),
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "None",
        Value::Bool(_) => "bool",
        Value::Int(_) | Value::BigInt(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "str",
        Value::Bytes(_) => "bytes",
        Value::List(_) => "list",
        Value::Tuple(_) => "tuple",
        Value::Set(_) => "set",
        Value::Map(_) => "dict",
        Value::Ext { .. } => "ext",
    }
}

fn s(text: &str) -> Value {
    Value::Str(text.to_string())
}

/// A `Pyro5.core.URI` object (`{'__class__':'Pyro5.core.URI','state':(...)}`) as a URI string.
pub(crate) fn uri_from_object(v: &Value) -> Option<String> {
    let Value::Map(m) = v else { return None };
    let field = |k: &str| m.iter().find(|(key, _)| *key == s(k)).map(|(_, v)| v);
    if field("__class__") != Some(&s("Pyro5.core.URI")) {
        return None;
    }
    let (Value::Tuple(state) | Value::List(state)) = field("state")? else {
        return None;
    };
    let [proto, object, sockname, host, port] = state.as_slice() else {
        return None;
    };
    let (Value::Str(proto), Value::Str(object)) = (proto, object) else {
        return None;
    };
    let location = match (sockname, host, port) {
        (Value::Str(path), _, _) => format!("./u:{path}"),
        (_, Value::Str(h), Value::Int(p)) if h.contains(':') => format!("[{h}]:{p}"),
        (_, Value::Str(h), Value::Int(p)) => format!("{h}:{p}"),
        _ => return None,
    };
    Some(format!("{proto}:{object}@{location}"))
}

/// A URI string as Pyro5 sends it back from `lookup`: a `Pyro5.core.URI` object for a
/// `PYRO:` URI, else the string itself.
fn uri_to_object(uri: &str) -> Value {
    let parts = (|| {
        let (proto, rest) = uri.split_once(':')?;
        if !proto.eq_ignore_ascii_case("PYRO") {
            return None;
        }
        let (object, location) = rest.split_once('@')?;
        if let Some(path) = location.strip_prefix("./u:") {
            return Some((
                object,
                Value::Str(path.to_string()),
                Value::Null,
                Value::Null,
            ));
        }
        let (host, port) = match location.strip_prefix('[') {
            Some(v6) => v6.split_once("]:")?,
            None => location.rsplit_once(':')?,
        };
        let port: u16 = port.parse().ok()?;
        Some((
            object,
            Value::Null,
            Value::Str(host.to_string()),
            Value::Int(i128::from(port)),
        ))
    })();
    match parts {
        Some((object, sockname, host, port)) => Value::Map(vec![
            (s("__class__"), s("Pyro5.core.URI")),
            (
                s("state"),
                Value::Tuple(vec![s("PYRO"), s(object), sockname, host, port]),
            ),
        ]),
        None => s(uri),
    }
}

fn tag_set(tags: &BTreeSet<String>) -> Value {
    Value::Set(tags.iter().map(|t| s(t)).collect())
}

fn registration_value(r: &Registration) -> Value {
    Value::List(vec![
        s(&r.name),
        s(&r.uri),
        Value::List(r.metadata.iter().map(|t| s(t)).collect()),
    ])
}

/// `name → uri` or `name → (uri, tags)`.
fn listing(regs: &[Registration], with_meta: bool) -> Value {
    Value::Map(
        regs.iter()
            .map(|r| {
                let v = if with_meta {
                    Value::Tuple(vec![s(&r.uri), tag_set(&r.metadata)])
                } else {
                    s(&r.uri)
                };
                (s(&r.name), v)
            })
            .collect(),
    )
}

type MethodFn = for<'a> fn(&'a NameServer, &'a Args) -> BoxFuture<'a, Result<Value, Fail>>;

/// Runs one method: reads the arguments, runs it, encodes the result with the call's codec.
fn run(
    ns: &Arc<NameServer>,
    call: Incoming,
    method: &'static str,
    params: &'static [&'static str],
    f: MethodFn,
) -> Handled {
    let codec = call.codec;
    let ns = ns.clone();
    let args = Args::read(&call, method, params);
    Handled::Pending(Box::pin(async move {
        let value = match args {
            Ok(args) => f(&ns, &args).await,
            Err(e) => Err(e),
        };
        match value {
            Ok(v) => {
                let mut out = Vec::new();
                match wirecall_codecs::encode_value(codec, &v, &mut out) {
                    Ok(()) => Outcome::Value(Bytes::from(out)),
                    Err(e) => Outcome::Fault(Fault::new(
                        FaultKind::Internal,
                        format!("the name server could not encode its answer with {codec}: {e}"),
                    )),
                }
            }
            Err(fail) => Outcome::Fault(fail.fault()),
        }
    }))
}

/// The filter of `list_all` / `remove_all`.
fn full_filter(a: &Args) -> Result<Filter, Fail> {
    Ok(Filter {
        prefix: a.str("prefix")?,
        regex: a.str("regex")?,
        meta_all: a.tags("meta_all")?.unwrap_or_default(),
        meta_any: a.tags("meta_any")?.unwrap_or_default(),
    })
}

fn register<'a>(ns: &'a NameServer, a: &'a Args) -> BoxFuture<'a, Result<Value, Fail>> {
    Box::pin(async move {
        let name = a.required_str("name")?;
        let uri = a.uri("uri")?;
        let safe = a.bool("safe", false)?;
        let metadata = a.tags("metadata")?.unwrap_or_default();
        let reg = Registration {
            name,
            uri,
            metadata,
        };
        ns.backend.register(reg, safe).await?;
        Ok(Value::Null)
    })
}

fn lookup<'a>(ns: &'a NameServer, a: &'a Args) -> BoxFuture<'a, Result<Value, Fail>> {
    Box::pin(async move {
        let name = a.required_str("name")?;
        let with_meta = a.bool("return_metadata", false)?;
        let regs = ns.backend.lookup(&name).await?;
        let r = pick(&regs).ok_or_else(|| {
            Fail::Naming(super::naming_error(&name, format!("unknown name: {name}")))
        })?;
        let uri = uri_to_object(&r.uri);
        Ok(if with_meta {
            Value::Tuple(vec![uri, tag_set(&r.metadata)])
        } else {
            uri
        })
    })
}

fn list<'a>(ns: &'a NameServer, a: &'a Args) -> BoxFuture<'a, Result<Value, Fail>> {
    Box::pin(async move {
        let prefix = a.str("prefix")?.filter(|p| !p.is_empty());
        let regex = a.str("regex")?.filter(|r| !r.is_empty());
        let with_meta = a.bool("return_metadata", false)?;
        if prefix.is_some() && regex.is_some() {
            return Err(Fail::Value(
                "you can only filter on one thing at a time: give prefix or regex, not both".into(),
            ));
        }
        let filter = Filter {
            prefix,
            regex,
            ..Filter::default()
        };
        let regs = ns.backend.list(&filter).await?;
        Ok(listing(&dedup(regs), with_meta))
    })
}

fn yplookup<'a>(ns: &'a NameServer, a: &'a Args) -> BoxFuture<'a, Result<Value, Fail>> {
    Box::pin(async move {
        let meta_all = a.tags("meta_all")?.filter(|t| !t.is_empty());
        let meta_any = a.tags("meta_any")?.filter(|t| !t.is_empty());
        let with_meta = a.bool("return_metadata", true)?;
        let filter = match (meta_all, meta_any) {
            (Some(_), Some(_)) => {
                return Err(Fail::Value(
                    "you can't use meta_all or meta_any at the same time".into(),
                ))
            }
            (None, None) => return Ok(Value::Map(Vec::new())),
            (Some(all), None) => Filter {
                meta_all: all,
                ..Filter::default()
            },
            (None, Some(any)) => Filter {
                meta_any: any,
                ..Filter::default()
            },
        };
        let regs = ns.backend.list(&filter).await?;
        Ok(listing(&dedup(regs), with_meta))
    })
}

fn remove<'a>(ns: &'a NameServer, a: &'a Args) -> BoxFuture<'a, Result<Value, Fail>> {
    Box::pin(async move {
        let name = a.str("name")?.filter(|n| !n.is_empty());
        let prefix = a.str("prefix")?.filter(|p| !p.is_empty());
        let regex = a.str("regex")?.filter(|r| !r.is_empty());
        let filter = if let Some(name) = name {
            validate_name(&name)?;
            Filter::exact(&name)
        } else if let Some(prefix) = prefix {
            Filter::prefix(prefix)
        } else if let Some(regex) = regex {
            Filter::regex(regex)
        } else {
            return Ok(Value::Int(0));
        };
        Ok(Value::Int(
            remove_except_self(ns, &filter, None).await? as i128,
        ))
    })
}

fn set_metadata<'a>(ns: &'a NameServer, a: &'a Args) -> BoxFuture<'a, Result<Value, Fail>> {
    Box::pin(async move {
        let name = a.required_str("name")?;
        let metadata = a.tags("metadata")?.unwrap_or_default();
        ns.backend.set_metadata(&name, metadata).await?;
        Ok(Value::Null)
    })
}

fn ping<'a>(ns: &'a NameServer, _a: &'a Args) -> BoxFuture<'a, Result<Value, Fail>> {
    Box::pin(async move {
        ns.backend.ping().await?;
        Ok(Value::Null)
    })
}

fn count<'a>(ns: &'a NameServer, _a: &'a Args) -> BoxFuture<'a, Result<Value, Fail>> {
    Box::pin(async move { Ok(Value::Int(ns.backend.count().await? as i128)) })
}

fn lookup_all<'a>(ns: &'a NameServer, a: &'a Args) -> BoxFuture<'a, Result<Value, Fail>> {
    Box::pin(async move {
        let name = a.required_str("name")?;
        let regs = ns.backend.lookup(&name).await?;
        Ok(Value::List(regs.iter().map(registration_value).collect()))
    })
}

fn list_all<'a>(ns: &'a NameServer, a: &'a Args) -> BoxFuture<'a, Result<Value, Fail>> {
    Box::pin(async move {
        let filter = full_filter(a)?;
        let regs = ns.backend.list(&filter).await?;
        Ok(Value::List(regs.iter().map(registration_value).collect()))
    })
}

fn remove_all<'a>(ns: &'a NameServer, a: &'a Args) -> BoxFuture<'a, Result<Value, Fail>> {
    Box::pin(async move {
        let filter = full_filter(a)?;
        let uri = a.str("uri")?;
        Ok(Value::Int(
            remove_except_self(ns, &filter, uri.as_deref()).await? as i128,
        ))
    })
}

/// Removes what `filter` (and `uri`) select, except the name server's own entry (as Pyro5).
async fn remove_except_self(
    ns: &NameServer,
    filter: &Filter,
    uri: Option<&str>,
) -> Result<usize, Fail> {
    let mut removed = 0;
    let mut names: Vec<String> = ns
        .backend
        .list(filter)
        .await?
        .into_iter()
        .filter(|r| r.name != NAME_SERVER_NAME && uri.is_none_or(|u| r.uri == u))
        .map(|r| r.name)
        .collect();
    names.dedup();
    for n in names {
        removed += ns.backend.remove(&Filter::exact(&n), uri).await?;
    }
    Ok(removed)
}

/// One registration per name (the first; backends with several instances per name list
/// each), for Pyro's name → uri dicts.
fn dedup(mut regs: Vec<Registration>) -> Vec<Registration> {
    regs.dedup_by(|a, b| a.name == b.name);
    regs
}

/// One of a name's registrations, spread over calls when there are several.
pub(crate) fn pick(regs: &[Registration]) -> Option<&Registration> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    match regs.len() {
        0 => None,
        1 => regs.first(),
        n => regs.get(NEXT.fetch_add(1, Ordering::Relaxed) % n),
    }
}
