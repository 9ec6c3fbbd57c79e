//! Proxies: a handle to one server, its lazily opened connection, and calls through it.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use wirecall_protocol as proto;
use wirecall_transport::Address;

use super::builder::CallBuilder;
use super::callbacks::Exposed;
use super::conn::{Body, ClientConn};
use super::lock;
use super::pyro::{Kind as PyroKind, PyroProxy};
use crate::args::{ArgList, KwList, MapOf, SeqOf};
use crate::codec;
use crate::config;
use crate::error::Error;
use crate::naming::{NamedTarget, NamingBackend, Target};
use crate::provider::{full_name, getter_route, setter_route, Metadata, Provider, Registered};
use crate::server::callback::CallbackLink;
use crate::server::DAEMON_PROVIDER_ID;
use crate::CodecId;
use wirecall_codecs::Value;

impl CallOpts {
    /// The annotations a call with these options carries (deadline, user entries).
    pub(super) fn annotations(&self) -> Result<proto::Annotations, Error> {
        if self.timeout.is_none() && self.annotations.is_empty() {
            return Ok(proto::Annotations::new());
        }
        let mut b = proto::Annotations::builder();
        if let Some(t) = self.timeout {
            b = b.deadline(t);
        }
        for (k, v) in &self.annotations {
            b = b
                .insert(k, v)
                .map_err(|e| Error::config(format!("bad annotation `{k}`: {e}")))?;
        }
        Ok(b.build())
    }
}

/// Per-call options.
#[derive(Debug, Clone, Default)]
pub(super) struct CallOpts {
    pub(super) codec: Option<CodecId>,
    pub(super) timeout: Option<Duration>,
    pub(super) annotations: Vec<(String, Vec<u8>)>,
    /// The exact codecs to offer at connect, most preferred first (default: the proxy's
    /// own, then every built-in).
    pub(super) offer: Option<Vec<CodecId>>,
    /// The limits announced and enforced on what the connection receives (at connect).
    pub(super) limits: Option<proto::Limits>,
    /// The compression offered at connect (SPEC §6.9); off unless set or in the
    /// environment.
    pub(super) compression: proto::Compression,
    /// The TLS configuration for `tls://` addresses (at connect; default: the environment).
    pub(super) tls: Option<crate::TlsClientConfig>,
    /// The proxy's retry budget (`Proxy::max_retries`; default `WIRECALL_MAX_RETRIES`).
    pub(super) max_retries: u32,
    /// This call may be sent again after the connection was lost, this many times
    /// (`#[remote(idempotent)]`, `CallBuilder::retries`); `None`: never once it may have run.
    pub(super) retries: Option<u32>,
    /// The stream window of a streamed call (`wc.window`); `None`:
    /// [`DEFAULT_WINDOW`](crate::DEFAULT_WINDOW).
    pub(super) window: Option<u32>,
}

/// The pause before retry number `attempt` (0-based): 20 ms doubling up to 1 s.
pub(super) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(20u64.saturating_mul(1u64 << attempt.min(6))).min(Duration::from_secs(1))
}

/// Whether `e` says the connection was lost or is going away (the call may be sent again on
/// a new connection), as opposed to an answer about the call itself.
pub(super) fn is_connection_loss(e: &Error) -> bool {
    matches!(e, Error::Transport { .. } | Error::ShuttingDown { .. })
}

/// The error of a call that is not idempotent and may have run when its connection was
/// lost: not sent again; still retryable, so the caller decides.
pub(super) fn may_have_run(e: Error) -> Error {
    match e {
        Error::Transport {
            address,
            message,
            source,
        } => Error::Transport {
            address,
            message: format!(
                "{message}; the call may have run and was not sent again (it is not idempotent: mark it #[remote(idempotent)] or use .retries(n) to let the proxy retry it)"
            ),
            source,
        },
        e => e,
    }
}

struct ProxyShared {
    target: Result<Address, String>,
    uri: String,
    service: Option<String>,
    provider_id: Option<u16>,
    preferred: Vec<CodecId>,
    conn: Mutex<Option<Arc<ClientConn>>>,
    connecting: tokio::sync::Mutex<()>,
    meta: Mutex<Option<Arc<Metadata>>>,
    /// Set for `name:` / `meta:` URIs: the address comes from the naming backend.
    named: Option<Arc<NamedTarget>>,
    /// The providers exposed to the server for callbacks (SPEC §6.10), offered on every
    /// connection the proxy opens while there is one.
    exposed: Arc<Exposed>,
    /// Set for the proxy a handler calls its client back with
    /// ([`CallContext::callback`](crate::CallContext::callback)): calls go over the
    /// caller's connection.
    back: Option<Arc<CallbackLink>>,
    /// Set for `PYRO:` URIs: the proxy's Pyro mode, whose calls go through this Pyro5
    /// client (its connection and state shared by the proxy's clones).
    pyro: Option<PyroProxy>,
    /// Set when a naming URI's first resolution finds a Pyro5 object (`PYRO:` URI): the
    /// proxy is in Pyro mode from then on.
    pyro_named: std::sync::OnceLock<PyroProxy>,
}

/// The connection a call goes over: the proxy's own, or a caller's (a callback).
enum Via<'a> {
    Conn(ConnRef<'a>),
    Back(&'a CallbackLink),
}

impl Via<'_> {
    fn default_codec(&self) -> CodecId {
        match self {
            Via::Conn(c) => c.default_codec,
            Via::Back(b) => b.codec,
        }
    }
}

/// Checks an RPC name against the wire's rules for a method name, or a configuration error
/// naming it.
pub(super) fn check_name(rpc_name: &str) -> Result<(), Error> {
    proto::Method::check(rpc_name)
        .map_err(|e| Error::config(format!("bad RPC name `{rpc_name}`: {e}")))
}

/// A call's RPC name: borrowed from the caller (no copy, no reference count per call), or
/// shared by a [`RemoteFunction`] and its calls.
#[derive(Clone, Debug)]
pub(super) enum RpcName<'p> {
    Borrowed(&'p str),
    Shared(Arc<str>),
}

impl RpcName<'_> {
    pub(super) fn as_str(&self) -> &str {
        match self {
            RpcName::Borrowed(s) => s,
            RpcName::Shared(s) => s,
        }
    }
}

/// A handle to a remote server: lazy connection, per-proxy codec and timeout.
///
/// Clones are cheap and share one connection, which carries many calls at once from any
/// number of tasks; the connection closes when the last clone is dropped. Each clone may
/// carry its own codec and timeout ([`Proxy::codec`], [`Proxy::timeout`]).
///
/// URIs: a bare address (`tcp://127.0.0.1:4000`, `unix:///tmp/s.sock`), or
/// `service@address`, or `service:provider_id@address` to bind a service name and provider
/// id for [`Proxy::call`].
///
/// Names: `name:NAME` (or Pyro's `PYRONAME:NAME[@host[:port]]`) and `meta:tag1,tag2` (or
/// `PYROMETA:tag1,tag2[@host[:port]]`, a registration carrying every tag) are resolved
/// through the naming backend (the name server the URI names, else the one given with
/// [`Proxy::naming`], else [`crate::naming::default_backend`]: `WIRECALL_NS`) when the
/// proxy first connects. The resolution is cached: later calls cost nothing more, and a
/// proxy keeps working while the name server is away. When the cached address stops
/// answering (the server moved), the next connect resolves the name again. The URI
/// registered under the name may bind a service and provider id
/// (`greeting:1@tcp://127.0.0.1:4000`), or the proxy's URI may (`greeting:1@name:NAME`).
///
/// **Pyro mode**: a `PYRO:object@host:port` (or `PYRO:object@./u:/socket/path`) URI, or a
/// naming URI whose registration is one, makes a proxy of an object of a Python Pyro5
/// daemon. Its calls go through a [`PyroProxy`](crate::PyroProxy) (one connection shared by
/// the clones, one request at a time as Pyro5 requires): [`Proxy::call`] and
/// [`Proxy::call_on`] name the Python method, the provider id must be 0, generated clients
/// call `service_method` as the Python method `method`, [`Proxy::codec`] picks serpent (the
/// default), json, msgpack or marshal, batches are Pyro5 batch requests, and a Python
/// exception is an [`Error::Remote`] with its type, message and traceback. What Pyro5 has
/// no place for (annotations, codec offers, receive limits, remote shutdown) fails with an
/// error. `protocol/PYRO5.md` has the full mapping.
///
/// ```no_run
/// # async fn demo() -> Result<(), wirecall::Error> {
/// use wirecall::{CodecId, Proxy};
/// let calc = Proxy::new("PYRO:test.calc@127.0.0.1:9999")?.codec(CodecId::MSGPACK);
/// let sum: i64 = calc.call("add")?.arg(2).arg(3).call().await?;
/// let d: wirecall::Value = calc.call("describe")?.arg("x").kwarg("scale", 2.0).call().await?;
/// let value: i64 = calc.get_attr(0, "value").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<ProxyShared>,
    pub(super) opts: CallOpts,
    validate: bool,
    /// The connection this clone first used, kept so that calls borrow it instead of
    /// looking it up under the shared lock and counting a reference each time (both showed
    /// as cross-core traffic with calls from many threads). Once it has closed, calls go
    /// through the shared lookup again; clones made after a reconnect cache the new one.
    cached: std::sync::OnceLock<Arc<ClientConn>>,
}

/// The connection a call uses: borrowed from the proxy's cache, or its own reference.
pub(super) enum ConnRef<'a> {
    Cached(&'a ClientConn),
    Owned(Arc<ClientConn>),
}

impl std::ops::Deref for ConnRef<'_> {
    type Target = ClientConn;

    fn deref(&self) -> &ClientConn {
        match self {
            ConnRef::Cached(c) => c,
            ConnRef::Owned(c) => c,
        }
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("uri", &self.shared.uri)
            .field("codec", &self.opts.codec)
            .field("timeout", &self.opts.timeout)
            .finish()
    }
}

/// Splits `service[:provider_id]@address`.
/// Encodes a call's positional then keyword arguments into `out` with `codec`; returns
/// where the keyword arguments start (`out.len()` when there are none).
#[inline]
fn encode_call_args<A: ArgList, K: KwList>(
    codec: CodecId,
    args: &A,
    kwargs: &K,
    out: &mut Vec<u8>,
) -> Result<usize, Error> {
    codec::encode_into(codec, &SeqOf(args), out).map_err(|e| Error::Codec {
        message: format!("encoding the arguments with {codec}: {e}"),
    })?;
    let n_args = out.len();
    if K::LEN != 0 {
        codec::encode_into(codec, &MapOf(kwargs), out).map_err(|e| Error::Codec {
            message: format!("encoding the keyword arguments with {codec}: {e}"),
        })?;
    }
    Ok(n_args)
}

pub(crate) fn parse_uri(uri: &str) -> Result<(Option<String>, Option<u16>, Address), Error> {
    let uri = uri.trim();
    let (prefix, addr) = match uri.find('@') {
        Some(at) if !uri[..at].contains("://") => (Some(&uri[..at]), &uri[at + 1..]),
        _ => (None, uri),
    };
    let address: Address = addr.parse().map_err(|e| {
        Error::config(format!(
            "bad address `{addr}` in `{uri}`: {e} (expected tcp://host:port, unix:///path or mem://name, optionally prefixed by service@ or service:provider_id@)"
        ))
    })?;
    let (service, provider_id) = match prefix {
        None => (None, None),
        Some(p) => match p.split_once(':') {
            Some((s, id)) => {
                let id: u16 = id.parse().map_err(|_| {
                    Error::config(format!(
                        "bad provider id `{id}` in `{uri}`: expected a number 0-65534"
                    ))
                })?;
                (Some(s.to_string()), Some(id))
            }
            None => (Some(p.to_string()), None),
        },
    };
    Ok((service.filter(|s| !s.is_empty()), provider_id, address))
}

impl Proxy {
    /// A proxy for `uri`; connects on first use (or on [`Proxy::connect`]). A `PYRO:` URI
    /// gives a proxy in Pyro mode (see [`Proxy`]); a bad one is a configuration error.
    ///
    /// The default codec is `WIRECALL_CODEC` if set, else the first codec the server
    /// accepts from the client's preference list; the retry budget is
    /// `WIRECALL_MAX_RETRIES` if set (see [`Proxy::max_retries`]), and a bad value of either
    /// is an error naming the variable.
    pub fn new(uri: &str) -> Result<Proxy, Error> {
        let pyro = uri
            .trim()
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case("PYRO:"));
        if pyro {
            return Proxy::pyro_mode(uri);
        }
        if let Some(proxy) = Proxy::named(uri)? {
            return Ok(proxy);
        }
        let (service, provider_id, address) = parse_uri(uri)?;
        let env_codec = config::codec_from_env()?;
        // A bad WIRECALL_MAX_RETRIES or WIRECALL_COMPRESSION is reported here rather than
        // ignored.
        config::max_retries_from_env()?;
        config::compression_from_env()?;
        Ok(Proxy::build(
            Ok(address),
            uri,
            service,
            provider_id,
            env_codec,
        ))
    }

    /// The Pyro mode: a proxy of the Python object a `PYRO:` URI names.
    fn pyro_mode(uri: &str) -> Result<Proxy, Error> {
        let p = PyroProxy::new(uri)?;
        let env_codec = config::codec_from_env()?;
        if let Some(c) = env_codec {
            pyro_serializer(c).map_err(|e| Error::config(format!("WIRECALL_CODEC: {e}")))?;
        }
        config::max_retries_from_env()?;
        let mut proxy = Proxy::build(
            Err(format!(
                "`{uri}` names an object of a Pyro5 daemon (the proxy is in Pyro mode): this is a feature of wirecall's native protocol, which a Pyro5 daemon does not speak"
            )),
            uri,
            None,
            None,
            env_codec,
        );
        if let Some(shared) = Arc::get_mut(&mut proxy.shared) {
            shared.pyro = Some(p);
        }
        Ok(proxy)
    }

    /// Whether this proxy is in Pyro mode (made from a `PYRO:` URI, or from a naming URI
    /// that resolved to one; for a naming URI this is known once the proxy was used or
    /// [connected](Proxy::connect)): its calls go to a Pyro5 daemon's object.
    pub fn is_pyro(&self) -> bool {
        self.pyro_client().is_some()
    }

    /// A proxy made from a naming URI that has not resolved it yet.
    pub(super) fn unsettled_name(&self) -> bool {
        self.shared
            .named
            .as_ref()
            .is_some_and(|n| n.first.get().is_none() && self.shared.pyro_named.get().is_none())
    }

    /// Decides the mode of a proxy made from a naming URI on its first use: the name is
    /// resolved, and when it names a Pyro5 object the proxy turns to Pyro mode. Other
    /// failures are left to the native path (which reports or retries them).
    pub(super) async fn settle(&self) -> Result<(), Error> {
        if !self.unsettled_name() {
            return Ok(());
        }
        // Boxed: only unresolved naming proxies carry its state.
        Box::pin(async {
            let Some(named) = &self.shared.named else {
                return Ok(());
            };
            if named.resolve().await.is_err() {
                if let Some(uri) = named.pyro_uri() {
                    let p = PyroProxy::new(&uri)?;
                    tracing::debug!(uri = %self.shared.uri, pyro = %uri, "the name resolves to a Pyro5 object: Pyro mode");
                    let _ = self.shared.pyro_named.set(p);
                }
            }
            Ok(())
        })
        .await
    }

    /// In Pyro mode, a [`PyroProxy`] sharing this proxy's connection, with this proxy's
    /// serializer and timeout: for what only Pyro5 has (remote iterators with
    /// [`PyroProxy::call_stream`], [`PyroProxy::compression`], [`PyroProxy::classes`]).
    /// Fails for a native proxy, or when the proxy's codec is not one of Pyro5's.
    pub fn pyro_proxy(&self) -> Result<PyroProxy, Error> {
        match self.pyro_client() {
            Some(p) => self.pyro_view(p, &self.opts),
            None => Err(Error::config(format!(
                "proxy `{}` speaks wirecall's native protocol; only a PYRO: URI makes a proxy in Pyro mode",
                self.shared.uri
            ))),
        }
    }

    /// The Pyro5 client a call with `opts` goes through: the proxy's, with the call's
    /// serializer (default serpent, as Pyro5) and timeout. Options that have no meaning for
    /// a Pyro5 daemon fail here rather than being dropped.
    pub(super) fn pyro_view(&self, p: &PyroProxy, opts: &CallOpts) -> Result<PyroProxy, Error> {
        let serializer = match opts.codec {
            Some(c) => pyro_serializer(c)?,
            None => proto::pyro::SerializerId::SERPENT,
        };
        let refuse = |what: &str| {
            Err(Error::config(format!(
                "{what} cannot be used with a Pyro5 daemon (proxy `{}` is in Pyro mode): Pyro5 messages have no place for them",
                self.shared.uri
            )))
        };
        if !opts.annotations.is_empty() {
            return refuse("user annotations (Proxy::annotation, CallBuilder::annotation)");
        }
        if opts.offer.is_some() {
            return refuse("a codec offer (Proxy::offer; a Pyro5 connection has no handshake of codecs: choose the serializer with .codec(..))");
        }
        if opts.limits.is_some() {
            return refuse("receive limits (Proxy::receive_limits)");
        }
        Ok(p.view(serializer, opts.timeout))
    }

    /// In Pyro mode, the proxy's Pyro5 client.
    pub(super) fn pyro_client(&self) -> Option<&PyroProxy> {
        self.shared
            .pyro
            .as_ref()
            .or_else(|| self.shared.pyro_named.get())
    }

    /// One request to the Pyro5 object, with the proxy's retry rules: connecting (nothing
    /// sent) is retried up to `max_retries` times, and the request itself is sent again
    /// after a lost connection only when it is idempotent (`opts.retries`).
    #[allow(clippy::too_many_arguments)]
    async fn pyro_request(
        &self,
        p: &PyroProxy,
        provider_id: u16,
        kind: PyroKind,
        name: &str,
        mut args: Vec<Value>,
        mut kwargs: Value,
        oneway: bool,
        opts: &CallOpts,
    ) -> Result<Value, Error> {
        pyro_provider(provider_id, &self.shared.uri)?;
        let view = self.pyro_view(p, opts)?;
        let mut attempt = 0;
        loop {
            self.pyro_connect_retrying(&view, opts, &mut attempt)
                .await?;
            let (a, k) = if opts.retries.is_some() {
                (args.clone(), kwargs.clone())
            } else {
                (
                    std::mem::take(&mut args),
                    std::mem::replace(&mut kwargs, Value::Null),
                )
            };
            match view.invoke(kind, name, a, k, oneway).await {
                Err(e) if is_connection_loss(&e) => {
                    let Some(budget) = opts.retries else {
                        return Err(may_have_run(e));
                    };
                    if attempt >= budget {
                        return Err(e);
                    }
                    tracing::debug!(name, attempt, error = %e, "connection lost; retrying an idempotent call");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// Connects `view` unless it is connected, again (with backoff, counting `attempt`s
    /// against the retry budget) while the daemon cannot be reached: nothing is sent before
    /// the connection is up.
    pub(super) async fn pyro_connect_retrying(
        &self,
        view: &PyroProxy,
        opts: &CallOpts,
        attempt: &mut u32,
    ) -> Result<(), Error> {
        loop {
            match view.connect().await {
                Err(e) if e.is_transport() && *attempt < opts.max_retries => {
                    tracing::debug!(uri = %self.shared.uri, attempt = *attempt, error = %e, "connect failed; retrying");
                    tokio::time::sleep(backoff(*attempt)).await;
                    *attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// [`Proxy::invoke`] in Pyro mode: the arguments become values, the result is read from
    /// the value the daemon answered.
    #[allow(clippy::too_many_arguments)]
    async fn pyro_invoke<A: ArgList, K: KwList, R: DeserializeOwned>(
        &self,
        p: &PyroProxy,
        provider_id: u16,
        method: &str,
        args: &A,
        kwargs: &K,
        oneway: bool,
        opts: &CallOpts,
    ) -> Result<Option<R>, Error> {
        let args = match wirecall_codecs::to_value(&SeqOf(args)).map_err(|e| Error::Codec {
            message: format!("the arguments of `{method}`: {e}"),
        })? {
            Value::List(a) | Value::Tuple(a) => a,
            Value::Null => Vec::new(),
            other => vec![other],
        };
        let kwargs = if K::LEN == 0 {
            Value::Map(Vec::new())
        } else {
            wirecall_codecs::to_value(&MapOf(kwargs)).map_err(|e| Error::Codec {
                message: format!("the keyword arguments of `{method}`: {e}"),
            })?
        };
        let v = self
            .pyro_request(
                p,
                provider_id,
                PyroKind::Method,
                method,
                args,
                kwargs,
                oneway,
                opts,
            )
            .await?;
        if oneway {
            return Ok(None);
        }
        from_pyro_value(v, method).map(Some)
    }

    /// Splits a direct URI into its bound service, provider id and address.
    pub(crate) fn split_uri(uri: &str) -> Result<(Option<String>, Option<u16>, Address), Error> {
        parse_uri(uri)
    }

    /// A proxy for a naming URI (`name:`, `meta:`, `PYRONAME:`, `PYROMETA:`, optionally
    /// after `service[:provider_id]@`); `None` for any other URI.
    fn named(uri: &str) -> Result<Option<Proxy>, Error> {
        let trimmed = uri.trim();
        let (binding, target) = match Target::parse(trimmed)? {
            Some(t) => (None, t),
            None => match trimmed.split_once('@') {
                Some((prefix, rest)) if !prefix.contains("://") => match Target::parse(rest)? {
                    Some(t) => (Some(prefix), t),
                    None => return Ok(None),
                },
                _ => return Ok(None),
            },
        };
        let (service, provider_id) = match binding {
            None => (None, None),
            Some(b) => {
                let (s, id, _) = parse_uri(&format!("{b}@mem://binding"))?;
                (s, id)
            }
        };
        let env_codec = config::codec_from_env()?;
        config::max_retries_from_env()?;
        config::compression_from_env()?;
        let mut proxy = Proxy::build(Err(String::new()), uri, service, provider_id, env_codec);
        if let Some(shared) = Arc::get_mut(&mut proxy.shared) {
            shared.named = Some(Arc::new(NamedTarget::new(target)));
        }
        Ok(Some(proxy))
    }

    /// A proxy made from a naming URI resolves it through `backend` (instead of the name
    /// server in the URI or the default backend). Shared by the proxy's clones.
    #[must_use]
    pub fn naming(self, backend: Arc<dyn NamingBackend>) -> Proxy {
        if let Some(n) = &self.shared.named {
            n.set_backend(backend);
        }
        self
    }

    /// For a naming URI, the URI it resolves to now (resolving it if nothing is cached);
    /// for any other, the proxy's URI.
    pub async fn resolve(&self) -> Result<String, Error> {
        match &self.shared.named {
            None => Ok(self.shared.uri.clone()),
            Some(n) => match n.resolve().await {
                Ok(r) => Ok(r.0.uri),
                // A Pyro5 object: its `PYRO:` URI.
                Err(e) => n.pyro_uri().ok_or(e),
            },
        }
    }

    fn build(
        target: Result<Address, String>,
        uri: &str,
        service: Option<String>,
        provider_id: Option<u16>,
        env_codec: Option<CodecId>,
    ) -> Proxy {
        Proxy {
            shared: Arc::new(ProxyShared {
                target,
                uri: uri.to_string(),
                service,
                provider_id,
                preferred: env_codec.into_iter().collect(),
                conn: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                meta: Mutex::new(None),
                named: None,
                exposed: Arc::default(),
                back: None,
                pyro: None,
                pyro_named: std::sync::OnceLock::new(),
            }),
            opts: CallOpts {
                codec: env_codec,
                max_retries: config::max_retries_from_env()
                    .ok()
                    .flatten()
                    .unwrap_or(config::DEFAULT_MAX_RETRIES),
                compression: config::compression_from_env()
                    .ok()
                    .flatten()
                    .unwrap_or_default(),
                ..CallOpts::default()
            },
            validate: false,
            cached: std::sync::OnceLock::new(),
        }
    }

    /// The proxy a handler calls its client back with (see
    /// [`CallContext::callback`](crate::CallContext::callback)).
    pub(crate) fn callback(link: Arc<CallbackLink>, peer: &str) -> Proxy {
        let mut proxy = Proxy::build(
            Err(format!(
                "this proxy calls back the client at {peer} over its own connection: it has no address to connect to, and batches and connection settings do not apply"
            )),
            &format!("callback:{peer}"),
            None,
            None,
            None,
        );
        if let Some(shared) = Arc::get_mut(&mut proxy.shared) {
            shared.back = Some(link);
        }
        proxy.opts.max_retries = 0;
        proxy
    }

    /// Exposes `provider` to the server under `provider_id` for callbacks (RPyC's
    /// symmetric connections, Pyro's callback objects): the server's handlers call it over
    /// this proxy's own connection with
    /// [`CallContext::callback`](crate::CallContext::callback), so the client needs no
    /// listening socket. Shared by the proxy's clones and offered on every connection it
    /// opens. Expose before the first call: on a proxy already connected this fails, as
    /// the open connection would not serve the provider.
    ///
    /// Handlers run as on a server (`#[wirecall::provider]` types, [`Functions`](crate::Functions)),
    /// each callback on a task of its own (a blocking method on the blocking pool), and
    /// a callback the server cancels, or whose deadline passes, is stopped. Fails when the
    /// id is taken.
    pub fn expose<P: Provider>(self, provider: P, provider_id: u16) -> Result<Proxy, Error> {
        self.exposed_insert(Registered::shared(Arc::new(provider), provider_id))
    }

    /// [`expose`](Self::expose) for a provider already in an `Arc` (to keep a handle to it).
    pub fn expose_arc<P: Provider>(
        self,
        provider: Arc<P>,
        provider_id: u16,
    ) -> Result<Proxy, Error> {
        self.exposed_insert(Registered::shared(provider, provider_id))
    }

    /// [`expose`](Self::expose) with an instance created for each connection by `factory`
    /// (RPyC's per-connection service): it sees `on_connect` when the connection opens, and
    /// `on_disconnect` and is dropped when it closes.
    pub fn expose_factory<P: Provider>(
        self,
        factory: impl Fn() -> P + Send + Sync + 'static,
        provider_id: u16,
    ) -> Result<Proxy, Error> {
        self.exposed_insert(Registered::per_connection(factory, provider_id))
    }

    /// [`expose`](Self::expose) for a set of plain functions.
    pub fn expose_functions(
        self,
        functions: crate::Functions,
        provider_id: u16,
    ) -> Result<Proxy, Error> {
        self.exposed_insert(functions.into_registered(provider_id))
    }

    fn exposed_insert(self, reg: Registered) -> Result<Proxy, Error> {
        if self.shared.back.is_some() {
            return Err(Error::config(
                "a callback proxy cannot expose providers: expose them on the client's own proxy",
            ));
        }
        if self.shared.pyro.is_some() {
            return Err(Error::config(
                "a proxy in Pyro mode cannot expose providers: callbacks over the caller's connection are a wirecall native feature (SPEC §6.10)",
            ));
        }
        if self.is_connected() {
            return Err(Error::config(format!(
                "cannot expose provider {} (`{}`) on a proxy already connected to {}: its connection would not serve it; expose providers before the first call (or connect)",
                reg.info.provider_id, reg.info.service, self.shared.uri
            )));
        }
        self.shared.exposed.insert(reg)?;
        Ok(self)
    }

    /// The connection a call goes over (connecting, with the retry budget, when needed).
    async fn via(&self, opts: &CallOpts, attempt: &mut u32) -> Result<Via<'_>, Error> {
        match &self.shared.back {
            Some(b) => Ok(Via::Back(b)),
            None => self.conn_retrying(opts, attempt).await.map(Via::Conn),
        }
    }

    /// A proxy that reports `err` on first use (for conversions that cannot fail).
    pub(super) fn broken(uri: &str, err: String) -> Proxy {
        Proxy::build(Err(err), uri, None, None, None)
    }

    /// A clone that retries up to `n` times (Pyro's `MAX_RETRIES`; default
    /// `WIRECALL_MAX_RETRIES`, else 3; 0 turns retries off), with a backoff of 20 ms
    /// doubling up to 1 s:
    ///
    /// - connecting: a call whose connection cannot be made (a server restarting) tries
    ///   again; nothing was sent, so this holds for every call;
    /// - idempotent calls (`#[remote(idempotent)]`, [`CallBuilder::idempotent`]) are sent
    ///   again on a new connection when the connection was lost or went away
    ///   ([`Error::Transport`], [`Error::ShuttingDown`]) before their answer came;
    /// - any other call that may have run is never sent twice: it fails with that error
    ///   (retryable, [`Error::is_retryable`]: the caller decides).
    #[must_use]
    pub fn max_retries(mut self, n: u32) -> Proxy {
        self.opts.max_retries = n;
        self
    }

    /// A clone that encodes calls with `codec` (sharing the connection).
    #[must_use]
    pub fn codec(mut self, codec: CodecId) -> Proxy {
        self.opts.codec = Some(codec);
        self
    }

    /// A clone whose calls time out after `timeout`; the deadline travels with each call and
    /// the server drops work whose deadline passed.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Proxy {
        self.opts.timeout = Some(timeout);
        self
    }

    /// A clone that offers exactly `codecs` in the handshake, most preferred first (after
    /// its own [`codec`](Proxy::codec), if set), instead of every built-in codec; the
    /// server picks the first it accepts as the connection's default, or refuses the
    /// connection naming the codecs it accepts. Applies when the connection is opened.
    #[must_use]
    pub fn offer(mut self, codecs: impl IntoIterator<Item = CodecId>) -> Proxy {
        self.opts.offer = Some(codecs.into_iter().collect());
        self
    }

    /// A clone whose connection announces and enforces these limits on what it receives
    /// (largest frame, annotations, calls in flight); default [`proto::Limits::default`].
    /// Applies when the connection is opened.
    #[must_use]
    pub fn receive_limits(mut self, limits: proto::Limits) -> Proxy {
        self.opts.limits = Some(limits);
        self
    }

    /// A clone that offers `compression` when it opens its connection (SPEC §6.9): if the
    /// server accepts the algorithm, calls whose arguments (payload plus kwargs) are at
    /// least `threshold` bytes travel compressed at `level`, and so do the server's large
    /// answers (at the server's own threshold and level); a server that accepts none
    /// answers uncompressed and the calls still work. Raw attachments are never
    /// compressed. Applies when the connection is opened.
    ///
    /// Default: off, or `WIRECALL_COMPRESSION` (`zstd`, `zstd:LEVEL`,
    /// `zstd:LEVEL:THRESHOLD`, `none`; see [`config::parse_compression`](crate::config::parse_compression)).
    /// Off because compression trades CPU and latency for bytes: on loopback and fast LANs
    /// (where most calls run) it makes calls slower, so a demanding user turns it on for the
    /// links and payloads where bytes cost more than CPU, rather than paying for it
    /// everywhere unasked.
    ///
    /// ```
    /// # fn main() -> Result<(), wirecall::Error> {
    /// use wirecall::{Compression, Proxy};
    /// let proxy = Proxy::new("tcp://127.0.0.1:4000")?.compression(Compression::zstd());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn compression(mut self, compression: proto::Compression) -> Proxy {
        self.opts.compression = compression;
        self
    }

    /// A clone that connects to `tls://` and `tls+unix://` addresses with this TLS
    /// configuration: the CAs to trust, and a client certificate for mutual TLS. Without it
    /// the environment decides (`WIRECALL_TLS_CA`, else the system roots;
    /// `WIRECALL_TLS_CLIENT_CERT` and `WIRECALL_TLS_CLIENT_KEY`). Applies when the
    /// connection is opened.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use wirecall::{Proxy, TlsClientConfig};
    /// let tls = TlsClientConfig::with_ca_file("ca.pem")?;
    /// let proxy = Proxy::new("tls://server.internal:4443")?.tls(tls);
    /// let pong: String = proxy.call_on(1, "echo")?.arg("ping").call().await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn tls(mut self, config: crate::TlsClientConfig) -> Proxy {
        self.opts.tls = Some(config);
        self
    }

    /// A clone that sends a user annotation with every call.
    #[must_use]
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Proxy {
        self.opts.annotations.push((key.into(), value.into()));
        self
    }

    /// A clone that checks method names against the server's metadata before sending
    /// (Pyro's local check): unknown names fail with `NoSuchMethod` without a round trip.
    #[must_use]
    pub fn validated(mut self) -> Proxy {
        self.validate = true;
        self
    }

    /// The URI the proxy was made from.
    pub fn uri(&self) -> &str {
        &self.shared.uri
    }

    /// The service name bound in the URI, if any.
    pub fn service(&self) -> Option<&str> {
        self.shared.service.as_deref().or_else(|| {
            let n = self.shared.named.as_ref()?;
            n.first.get()?.0.as_deref()
        })
    }

    /// The provider id bound in the URI, if any.
    pub fn provider_id(&self) -> Option<u16> {
        self.shared.provider_id.or_else(|| {
            let n = self.shared.named.as_ref()?;
            n.first.get()?.1
        })
    }

    /// The codec this proxy sets explicitly, if any (else the negotiated default is used).
    pub fn codec_override(&self) -> Option<CodecId> {
        self.opts.codec
    }

    /// Connects now (otherwise the first call connects).
    pub async fn connect(&self) -> Result<(), Error> {
        self.settle().await?;
        if let Some(p) = self.pyro_client() {
            return self.pyro_view(p, &self.opts)?.connect().await;
        }
        self.conn().await.map(|_| ())
    }

    /// The codec calls use: the override, or the one negotiated at connect.
    ///
    /// In Pyro mode: the override, else serpent (Pyro5's default).
    pub async fn effective_codec(&self) -> Result<CodecId, Error> {
        self.settle().await?;
        if self.is_pyro() {
            return Ok(self.opts.codec.unwrap_or(CodecId::SERPENT));
        }
        match self.opts.codec {
            Some(c) => Ok(c),
            None => Ok(self.conn().await?.default_codec),
        }
    }

    /// The codecs the server said it accepts (connects if needed).
    ///
    /// In Pyro mode this fails: a Pyro5 daemon does not announce its serializers (it
    /// accepts those its Python has installed).
    pub async fn server_accepted(&self) -> Result<Vec<CodecId>, Error> {
        self.settle().await?;
        if self.is_pyro() {
            return Err(Error::config(format!(
                "proxy `{}` is in Pyro mode: a Pyro5 daemon does not announce the serializers it accepts",
                self.shared.uri
            )));
        }
        Ok(self.conn().await?.accepted.clone())
    }

    /// The compression algorithms in force on the connection (connects if needed): empty
    /// when this proxy offered none ([`Proxy::compression`]) or the server accepts none of
    /// those offered.
    pub async fn compression_in_force(&self) -> Result<Vec<crate::CompressionId>, Error> {
        Ok(self.conn().await?.compression.clone())
    }

    /// Whether the shared connection is up.
    pub fn is_connected(&self) -> bool {
        if let Some(p) = self.pyro_client() {
            return p.is_connected();
        }
        lock(&self.shared.conn)
            .as_ref()
            .is_some_and(|c| !c.is_closed())
    }

    /// The live connection, connecting first if there is none.
    pub(super) async fn conn(&self) -> Result<ConnRef<'_>, Error> {
        if let Some(c) = self.cached.get() {
            if c.is_live() {
                return Ok(ConnRef::Cached(c));
            }
        }
        let c = match self.live_conn() {
            Some(c) => c,
            // Boxed: connecting is rare, and its state would otherwise sit inside every
            // call's future (moved and touched on every call).
            None => Box::pin(self.reconnect()).await?,
        };
        if self.cached.get().is_none() {
            return Ok(ConnRef::Cached(self.cached.get_or_init(|| c)));
        }
        Ok(ConnRef::Owned(c))
    }

    /// The current shared connection if it is up.
    fn live_conn(&self) -> Option<Arc<ClientConn>> {
        let c = lock(&self.shared.conn).clone()?;
        c.is_live().then_some(c)
    }

    /// Connects (once, for all the clones waiting) and installs the new connection.
    async fn reconnect(&self) -> Result<Arc<ClientConn>, Error> {
        let _g = self.shared.connecting.lock().await;
        if let Some(c) = lock(&self.shared.conn).as_ref() {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let c = match &self.shared.named {
            None => {
                let address = self
                    .shared
                    .target
                    .as_ref()
                    .map_err(|e| Error::config(e.clone()))?;
                self.connect_to(address).await?
            }
            Some(named) => loop {
                let (resolved, fresh) = named.resolve().await?;
                match self.connect_to(&resolved.address).await {
                    Ok(c) => break c,
                    // The cached address stopped answering: resolve again.
                    Err(e) if !fresh && !matches!(e, Error::Config { .. }) => {
                        tracing::debug!(uri = %self.shared.uri, stale = %resolved.uri, error = %e, "cached resolution failed; resolving again");
                        named.invalidate(&resolved);
                    }
                    // The address just resolved does not answer: say where it came from.
                    Err(Error::Transport {
                        address,
                        message,
                        source,
                    }) => {
                        return Err(Error::Transport {
                            message: format!(
                                "{message} (the address `{}` resolved to, registered as `{}`)",
                                self.shared.uri, resolved.uri
                            ),
                            address,
                            source,
                        })
                    }
                    Err(e) => return Err(e),
                }
            },
        };
        let c = Arc::new(c);
        *lock(&self.shared.conn) = Some(c.clone());
        Ok(c)
    }

    /// Opens a connection to `address` with the proxy's codecs, limits and TLS settings.
    async fn connect_to(&self, address: &Address) -> Result<ClientConn, Error> {
        let mut preferred: Vec<CodecId> = self.opts.codec.into_iter().collect();
        let others = self.opts.offer.as_ref().unwrap_or(&self.shared.preferred);
        for c in others {
            if !preferred.contains(c) {
                preferred.push(*c);
            }
        }
        let limits = self.opts.limits.unwrap_or_default();
        let only = self.opts.offer.is_some();
        let tls = self.opts.tls.as_ref();
        let exposed = (!self.shared.exposed.is_empty()).then(|| self.shared.exposed.clone());
        let compression = &self.opts.compression;
        ClientConn::connect(address, &preferred, only, limits, compression, tls, exposed).await
    }

    /// Sends one call with already-encoded arguments and returns the encoded result.
    ///
    /// `args` is the codec's encoding of the positional arguments as one sequence; `kwargs`
    /// the encoding of a map from parameter name to value, or empty. Returns `None` for a
    /// oneway call.
    pub async fn call_raw(
        &self,
        provider_id: u16,
        method: &str,
        codec: CodecId,
        args: Bytes,
        kwargs: Bytes,
        oneway: bool,
    ) -> Result<Option<(CodecId, Bytes)>, Error> {
        check_name(method)?;
        self.settle().await?;
        if let Some(p) = self.pyro_client() {
            return Box::pin(self.pyro_call_raw(
                p,
                provider_id,
                method,
                codec,
                args,
                kwargs,
                oneway,
            ))
            .await;
        }
        self.call_raw_native(provider_id, method, codec, &args, &kwargs, oneway)
            .await
            .map(|r| r.map(|(c, body)| (c, body.into_bytes())))
    }

    /// The native path of [`Proxy::call_raw`] and [`Proxy::call_raw_bulk`]: the answer as
    /// received (with its bulk values).
    async fn call_raw_native(
        &self,
        provider_id: u16,
        method: &str,
        codec: CodecId,
        args: &[u8],
        kwargs: &[u8],
        oneway: bool,
    ) -> Result<Option<(CodecId, Body)>, Error> {
        // Connects without retrying: the attempt count starts past any budget.
        let mut attempt = u32::MAX;
        let via = self.via(&self.opts, &mut attempt).await?;
        self.send(
            &via,
            provider_id,
            method,
            codec,
            args,
            kwargs,
            None,
            oneway,
            &self.opts,
        )
        .await
    }

    /// [`Proxy::call_raw`] for a call that is answered, keeping the result's bulk values
    /// (SPEC §6.11), which `call_raw` drops: returns the result's codec, its encoding (in
    /// which each bulk value stands as a placeholder, its index, encoded with the codec) and
    /// the bulk values in order (empty when the result has none). For tools that know
    /// methods only by name and show what travelled, such as `wirecall call`.
    pub async fn call_raw_bulk(
        &self,
        provider_id: u16,
        method: &str,
        codec: CodecId,
        args: Bytes,
        kwargs: Bytes,
    ) -> Result<(CodecId, Bytes, Vec<Bytes>), Error> {
        check_name(method)?;
        self.settle().await?;
        if self.pyro_client().is_some() {
            // Pyro5 has no attachments: every value travels inline.
            return match self
                .call_raw(provider_id, method, codec, args, kwargs, false)
                .await?
            {
                Some((c, b)) => Ok((c, b, Vec::new())),
                None => Err(Error::Codec {
                    message: "the reply carried no value".into(),
                }),
            };
        }
        match self
            .call_raw_native(provider_id, method, codec, &args, &kwargs, false)
            .await?
        {
            Some((c, body)) => {
                let (result, parts) = body.into_parts();
                Ok((c, result, parts.unwrap_or_default()))
            }
            None => Err(Error::Codec {
                message: "the reply carried no value".into(),
            }),
        }
    }

    /// [`Proxy::call_raw`] in Pyro mode: the arguments are decoded with `codec` (one of
    /// Pyro5's serializers), the result encoded with it.
    #[allow(clippy::too_many_arguments)]
    async fn pyro_call_raw(
        &self,
        p: &PyroProxy,
        provider_id: u16,
        method: &str,
        codec: CodecId,
        args: Bytes,
        kwargs: Bytes,
        oneway: bool,
    ) -> Result<Option<(CodecId, Bytes)>, Error> {
        let mut opts = self.opts.clone();
        opts.codec = Some(codec);
        let limits = wirecall_codecs::Limits::default();
        let decode = |b: &[u8], what: &str| {
            wirecall_codecs::decode_value(codec, b, &limits).map_err(|e| Error::Codec {
                message: format!("decoding the {what} of `{method}` with {codec}: {e}"),
            })
        };
        let args = match decode(&args, "arguments")? {
            Value::List(a) | Value::Tuple(a) => a,
            other => {
                return Err(Error::Codec {
                    message: format!(
                        "the arguments of `{method}` must encode a sequence, not {other:?}"
                    ),
                })
            }
        };
        let kwargs = if kwargs.is_empty() {
            Value::Map(Vec::new())
        } else {
            decode(&kwargs, "keyword arguments")?
        };
        let v = self
            .pyro_request(
                p,
                provider_id,
                PyroKind::Method,
                method,
                args,
                kwargs,
                oneway,
                &opts,
            )
            .await?;
        if oneway {
            return Ok(None);
        }
        let mut out = Vec::new();
        wirecall_codecs::encode_value(codec, &v, &mut out).map_err(|e| Error::Codec {
            message: format!("encoding the result of `{method}` with {codec}: {e}"),
        })?;
        Ok(Some((codec, Bytes::from(out))))
    }

    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        via: &Via<'_>,
        provider_id: u16,
        method: &str,
        codec: CodecId,
        args: &[u8],
        kwargs: &[u8],
        bulk: Option<Vec<Bytes>>,
        oneway: bool,
        opts: &CallOpts,
    ) -> Result<Option<(CodecId, Body)>, Error> {
        let mut annotations = opts.annotations()?;
        // Bulk values travel in the attachment, listed by `wc.bulk` (SPEC §6.11).
        let attachment = match bulk {
            None => None,
            Some(parts) => {
                let (lengths, attachment) =
                    crate::bulk::attachment(parts).map_err(|m| Error::Codec {
                        message: format!("attaching the arguments' bulk values: {m}"),
                    })?;
                annotations = annotations.with_bulk(&lengths).map_err(|e| Error::Codec {
                    message: format!("attaching the arguments' bulk values: {e}"),
                })?;
                Some(attachment)
            }
        };
        match via {
            Via::Conn(conn) => {
                conn.call(
                    provider_id,
                    method,
                    codec,
                    &annotations,
                    args,
                    kwargs,
                    attachment,
                    oneway,
                    opts.timeout,
                )
                .await
            }
            Via::Back(back) => {
                // Callbacks are encoded without the bulk side channel (see `invoke_once`).
                debug_assert!(attachment.is_none());
                back.call(
                    provider_id,
                    method,
                    codec,
                    &annotations,
                    args,
                    kwargs,
                    oneway,
                    opts.timeout,
                )
                .await
            }
        }
    }

    /// Encodes and sends a call, decodes the result.
    pub(super) async fn invoke<A: ArgList, K: KwList, R: DeserializeOwned>(
        &self,
        provider_id: u16,
        method: &str,
        args: &A,
        kwargs: &K,
        oneway: bool,
        opts: &CallOpts,
    ) -> Result<Option<R>, Error> {
        self.settle().await?;
        if let Some(p) = self.pyro_client() {
            // Boxed: only Pyro-mode proxies carry its state.
            return Box::pin(self.pyro_invoke(p, provider_id, method, args, kwargs, oneway, opts))
                .await;
        }
        if self.validate {
            // Boxed, like connecting: only validated proxies carry its state.
            Box::pin(self.check_method(provider_id, method)).await?;
        }
        self.invoke_unchecked(provider_id, method, args, kwargs, oneway, opts)
            .await
    }

    /// [`Proxy::invoke`] without the local metadata check.
    async fn invoke_unchecked<A: ArgList, K: KwList, R: DeserializeOwned>(
        &self,
        provider_id: u16,
        method: &str,
        args: &A,
        kwargs: &K,
        oneway: bool,
        opts: &CallOpts,
    ) -> Result<Option<R>, Error> {
        let mut attempt = 0;
        loop {
            let r = self
                .invoke_once(
                    provider_id,
                    method,
                    args,
                    kwargs,
                    oneway,
                    opts,
                    &mut attempt,
                )
                .await;
            match r {
                // A callback's connection is its caller's: there is no other to retry on.
                Err(e) if self.shared.back.is_some() => return Err(e),
                Err(e) if is_connection_loss(&e) => {
                    let Some(budget) = opts.retries else {
                        return Err(may_have_run(e));
                    };
                    if attempt >= budget {
                        return Err(e);
                    }
                    tracing::debug!(method, attempt, error = %e, "connection lost; retrying an idempotent call");
                    // Boxed: rare, and its state would otherwise sit inside every call's future.
                    Box::pin(tokio::time::sleep(backoff(attempt))).await;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// The live connection, connecting again (with backoff, counting `attempt`s against
    /// the proxy's retry budget) while it cannot be made: nothing is sent before it is up.
    pub(super) async fn conn_retrying(
        &self,
        opts: &CallOpts,
        attempt: &mut u32,
    ) -> Result<ConnRef<'_>, Error> {
        loop {
            match self.conn().await {
                Err(e) if e.is_transport() && *attempt < opts.max_retries => {
                    tracing::debug!(uri = %self.shared.uri, attempt = *attempt, error = %e, "connect failed; retrying");
                    // Boxed: rare, and its state would otherwise sit inside every call's future.
                    Box::pin(tokio::time::sleep(backoff(*attempt))).await;
                    *attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// One attempt of [`Proxy::invoke_unchecked`].
    #[allow(clippy::too_many_arguments)]
    async fn invoke_once<A: ArgList, K: KwList, R: DeserializeOwned>(
        &self,
        provider_id: u16,
        method: &str,
        args: &A,
        kwargs: &K,
        oneway: bool,
        opts: &CallOpts,
        attempt: &mut u32,
    ) -> Result<Option<R>, Error> {
        let via = self.via(opts, attempt).await?;
        let codec = opts.codec.unwrap_or(via.default_codec());
        // Positional then keyword arguments in one buffer.
        let mut out = Vec::with_capacity(64);
        let mut encode = || encode_call_args(codec, args, kwargs, &mut out);
        // `Bulk` values are set aside for the attachment on a connection of this proxy's;
        // a callback over a server's connection sends them inline (plain bytes).
        let (encoded, bulk) = match via {
            Via::Conn(_) => crate::bulk::collect(encode),
            Via::Back(_) => (encode(), None),
        };
        let n_args = encoded?;
        let (args, kwargs) = out.split_at(n_args);
        match self
            .send(
                &via,
                provider_id,
                method,
                codec,
                args,
                kwargs,
                bulk,
                oneway,
                opts,
            )
            .await?
        {
            None => Ok(None),
            Some((c, body)) => {
                let limits = wirecall_codecs::Limits::default().with_max_input(usize::MAX);
                crate::bulk::with_parts(body.bulk_parts(), || {
                    codec::decode::<R>(c, body.as_slice(), &limits)
                })
                .map(Some)
                .map_err(|e| Error::Codec {
                    message: format!("decoding the result with {c}: {e}"),
                })
            }
        }
    }

    /// Encodes and sends a streamed call; returns its items once the server answered
    /// (an ERROR before the stream, such as an unknown method, is returned here). The
    /// call's timeout bounds that wait, not the stream.
    pub(super) async fn invoke_stream<A: ArgList, K: KwList, T: DeserializeOwned>(
        &self,
        provider_id: u16,
        method: &str,
        args: &A,
        kwargs: &K,
        opts: &CallOpts,
    ) -> Result<crate::RemoteStream<T>, Error> {
        self.no_pyro_stream(method).await?;
        if self.validate {
            Box::pin(self.check_method(provider_id, method)).await?;
        }
        let mut attempt = 0;
        let conn = self.conn_retrying(opts, &mut attempt).await?;
        let codec = opts.codec.unwrap_or(conn.default_codec);
        let mut out = Vec::with_capacity(64);
        let n_args = encode_call_args(codec, args, kwargs, &mut out)?;
        let (args, kwargs) = out.split_at(n_args);
        let resumer = self.stream_resumer(provider_id, method, codec, args, kwargs, opts);
        Self::open_stream_on(
            &conn,
            provider_id,
            method,
            codec,
            args,
            kwargs,
            opts,
            resumer,
        )
        .await
    }

    /// Opens the same streamed call again, on a connection this proxy makes, to resume its
    /// stream after a lost connection (SPEC §6.14); within the proxy's retries.
    fn stream_resumer(
        &self,
        provider_id: u16,
        method: &str,
        codec: CodecId,
        args: &[u8],
        kwargs: &[u8],
        opts: &CallOpts,
    ) -> super::conn::Resumer {
        let proxy = self.clone();
        let method: Arc<str> = method.into();
        let args = Bytes::copy_from_slice(args);
        let kwargs = Bytes::copy_from_slice(kwargs);
        let opts = opts.clone();
        Arc::new(move |token, received| {
            let proxy = proxy.clone();
            let method = method.clone();
            let args = args.clone();
            let kwargs = kwargs.clone();
            let opts = opts.clone();
            Box::pin(async move {
                let mut attempt = 0;
                let conn = proxy.conn_retrying(&opts, &mut attempt).await?;
                let annotations = CallOpts {
                    timeout: None,
                    ..opts.clone()
                }
                .annotations()?;
                let window = opts.window.unwrap_or(crate::DEFAULT_WINDOW).max(1);
                conn.open_stream(
                    provider_id,
                    &method,
                    codec,
                    &annotations,
                    &args,
                    &kwargs,
                    window,
                    Some((token, received)),
                )
                .await
            })
        })
    }

    /// Starts a call that streams its arguments (SPEC §6.13) from `items`; its answer is
    /// read as a stream (a plain result is a stream of one value). `whole`: the timeout
    /// bounds the whole call (sent as its deadline), else only the wait for the first
    /// answer (a bidirectional stream).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn invoke_upload<A: ArgList, K: KwList>(
        &self,
        provider_id: u16,
        method: &str,
        args: &A,
        kwargs: &K,
        opts: &CallOpts,
        items: crate::upload::UploadSource,
        whole: bool,
    ) -> Result<super::conn::RawStream, Error> {
        self.no_upload_here(method).await?;
        if self.validate {
            Box::pin(self.check_method(provider_id, method)).await?;
        }
        let mut attempt = 0;
        let conn = self.conn_retrying(opts, &mut attempt).await?;
        let codec = opts.codec.unwrap_or(conn.default_codec);
        let mut out = Vec::with_capacity(64);
        let n_args = encode_call_args(codec, args, kwargs, &mut out)?;
        let (args, kwargs) = out.split_at(n_args);
        Self::open_upload_on(
            &conn,
            provider_id,
            method,
            codec,
            args,
            kwargs,
            opts,
            items,
            whole,
        )
        .await
    }

    /// Refuses an argument stream where none can go: through a callback proxy, or a proxy
    /// in Pyro mode (after settling a naming proxy's mode).
    async fn no_upload_here(&self, method: &str) -> Result<(), Error> {
        self.no_callback_stream(method)?;
        self.settle().await?;
        if self.pyro_client().is_some() {
            return Err(Error::config(format!(
                "`{method}` streams its arguments, which the Pyro5 protocol cannot send: call it on a native wirecall server"
            )));
        }
        Ok(())
    }

    /// Sends a call that streams its arguments with encoded arguments on `conn` and waits
    /// for its first answer; `whole`: the timeout bounds the whole call (sent as its
    /// deadline), else only that wait.
    #[allow(clippy::too_many_arguments)]
    async fn open_upload_on(
        conn: &ClientConn,
        provider_id: u16,
        method: &str,
        codec: CodecId,
        args: &[u8],
        kwargs: &[u8],
        opts: &CallOpts,
        items: crate::upload::UploadSource,
        whole: bool,
    ) -> Result<super::conn::RawStream, Error> {
        let annotations = if whole {
            opts.annotations()?
        } else {
            CallOpts {
                timeout: None,
                ..opts.clone()
            }
            .annotations()?
        };
        let window = opts.window.unwrap_or(crate::DEFAULT_WINDOW).max(1);
        let open = conn.open_upload(
            provider_id,
            method,
            codec,
            &annotations,
            args,
            kwargs,
            window,
            items.encode(codec),
        );
        match opts.timeout {
            Some(t) => tokio::time::timeout(t, open)
                .await
                .map_err(|_| Error::Timeout { after: t })?,
            None => open.await,
        }
    }

    /// A call that streams its arguments and returns one value: the timeout bounds the
    /// whole call.
    pub(super) async fn invoke_upload_value<A: ArgList, K: KwList, R: DeserializeOwned>(
        &self,
        provider_id: u16,
        method: &str,
        args: &A,
        kwargs: &K,
        opts: &CallOpts,
        items: crate::upload::UploadSource,
    ) -> Result<R, Error> {
        let run = async {
            let raw = self
                .invoke_upload(provider_id, method, args, kwargs, opts, items, true)
                .await?;
            let mut result = crate::RemoteStream::<R>::new(raw);
            match futures::StreamExt::next(&mut result).await {
                Some(r) => r,
                None => Err(Error::Codec {
                    message: "the reply carried no value".into(),
                }),
            }
        };
        match opts.timeout {
            Some(t) => tokio::time::timeout(t, run)
                .await
                .map_err(|_| Error::Timeout { after: t })?,
            None => run.await,
        }
    }

    /// Sends a streaming call with encoded arguments on `conn` and waits for its answer.
    #[allow(clippy::too_many_arguments)]
    async fn open_stream_on<T>(
        conn: &ClientConn,
        provider_id: u16,
        method: &str,
        codec: CodecId,
        args: &[u8],
        kwargs: &[u8],
        opts: &CallOpts,
        resumer: super::conn::Resumer,
    ) -> Result<crate::RemoteStream<T>, Error> {
        let annotations = CallOpts {
            timeout: None,
            ..opts.clone()
        }
        .annotations()?;
        let window = opts.window.unwrap_or(crate::DEFAULT_WINDOW).max(1);
        let open = conn.open_stream(
            provider_id,
            method,
            codec,
            &annotations,
            args,
            kwargs,
            window,
            None,
        );
        let mut raw = match opts.timeout {
            Some(t) => tokio::time::timeout(t, open)
                .await
                .map_err(|_| Error::Timeout { after: t })??,
            None => open.await?,
        };
        raw.set_resumer(resumer);
        Ok(crate::RemoteStream::new(raw))
    }

    /// Refuses a stream, in either direction, through a callback proxy: callbacks do not
    /// stream (SPEC §6.10).
    fn no_callback_stream(&self, method: &str) -> Result<(), Error> {
        if self.shared.back.is_some() {
            return Err(Error::config(format!(
                "`{method}` streams, but this proxy calls back over its caller's connection, where calls do not stream (SPEC §6.10): call it with plain values"
            )));
        }
        Ok(())
    }

    /// Settles a naming proxy's mode, then refuses a native stream through a proxy in Pyro
    /// mode (Pyro5 remote iterators are read with [`PyroProxy::call_stream`]).
    async fn no_pyro_stream(&self, method: &str) -> Result<(), Error> {
        self.no_callback_stream(method)?;
        self.settle().await?;
        if self.pyro_client().is_some() {
            return Err(Error::config(format!(
                "`{method}` is read as a stream, but this proxy calls a Pyro5 object: read Pyro5 remote iterators with proxy.pyro_proxy()?.call_stream(..)"
            )));
        }
        Ok(())
    }

    /// Calls a method that returns a stream ([`ItemStream`](crate::ItemStream)) with
    /// already-encoded arguments (as [`Proxy::call_raw`]: `args` a sequence, `kwargs` a map
    /// or empty, both in `codec`), and returns its items as dynamic [`Value`]s as they
    /// arrive, under flow control; a method returning a plain value gives that one value.
    /// For tools that know methods only by name, such as `wirecall call`. Dropping the
    /// stream cancels the call.
    pub async fn call_raw_stream(
        &self,
        provider_id: u16,
        method: &str,
        codec: CodecId,
        args: Bytes,
        kwargs: Bytes,
    ) -> Result<crate::RemoteStream<crate::Value>, Error> {
        check_name(method)?;
        self.no_pyro_stream(method).await?;
        let mut attempt = 0;
        let conn = self.conn_retrying(&self.opts, &mut attempt).await?;
        let resumer = self.stream_resumer(provider_id, method, codec, &args, &kwargs, &self.opts);
        Self::open_stream_on(
            &conn,
            provider_id,
            method,
            codec,
            &args,
            &kwargs,
            &self.opts,
            resumer,
        )
        .await
    }

    /// Calls a method that takes an argument stream ([`Streaming`](crate::Streaming)) with
    /// already-encoded arguments (as [`Proxy::call_raw`]), sending the items of `items`
    /// after the call under the server's credit, and returns its answer as dynamic
    /// [`Value`]s: one value for a plain result, the items of a streamed one (a
    /// bidirectional stream) as they arrive. For tools that know methods only by name,
    /// such as `wirecall call`. Dropping the stream cancels the call.
    pub async fn call_raw_upload<T, S>(
        &self,
        provider_id: u16,
        method: &str,
        codec: CodecId,
        args: Bytes,
        kwargs: Bytes,
        items: S,
    ) -> Result<crate::RemoteStream<crate::Value>, Error>
    where
        T: Serialize + Send + 'static,
        S: futures::Stream<Item = T> + Send + 'static,
    {
        check_name(method)?;
        self.no_upload_here(method).await?;
        let mut attempt = 0;
        let conn = self.conn_retrying(&self.opts, &mut attempt).await?;
        let raw = Self::open_upload_on(
            &conn,
            provider_id,
            method,
            codec,
            &args,
            &kwargs,
            &self.opts,
            crate::upload::UploadSource::new(items),
            false,
        )
        .await?;
        Ok(crate::RemoteStream::new(raw))
    }

    async fn check_method(&self, provider_id: u16, method: &str) -> Result<(), Error> {
        if provider_id == DAEMON_PROVIDER_ID {
            return Ok(());
        }
        let meta = self.cached_metadata().await?;
        match meta.provider(provider_id) {
            None => Err(Error::NoSuchProvider {
                provider_id,
                message: format!(
                    "checked locally against the server's metadata; registered ids: {}",
                    meta.providers
                        .iter()
                        .map(|p| p.provider_id.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
            Some(p) => {
                let is_attr = method
                    .strip_prefix("__get__")
                    .or_else(|| method.strip_prefix("__set__"))
                    .is_some_and(|a| p.attributes.iter().any(|x| x == a));
                if is_attr || p.has_method(method) {
                    Ok(())
                } else {
                    Err(Error::NoSuchMethod {
                        method: method.to_string(),
                        exposed: p.methods.iter().map(|m| m.name.clone()).collect(),
                    })
                }
            }
        }
    }

    async fn cached_metadata(&self) -> Result<Arc<Metadata>, Error> {
        if let Some(m) = lock(&self.shared.meta).as_ref() {
            return Ok(m.clone());
        }
        let m = Arc::new(self.metadata().await?);
        *lock(&self.shared.meta) = Some(m.clone());
        Ok(m)
    }

    /// Starts a batch of calls on this proxy's connection: add calls, then
    /// [`send`](super::Batch::send) them in one write. By default the batch stops at its
    /// first error, as Pyro's batches do (the server runs the calls one at a time, in order,
    /// and skips the rest); [`run_all`](super::Batch::run_all) runs every call.
    pub fn batch(&self) -> super::Batch<'_> {
        super::Batch::new(self)
    }

    /// Asks the server's daemon object for its providers, methods and attributes.
    ///
    /// In Pyro mode: the object's metadata as its daemon lists it, as one provider (id 0,
    /// service = the object id) whose methods carry their plain Python names, oneway flags
    /// from `@oneway`, no parameter names, and whose attributes (Python properties) are all
    /// listed as writable (Pyro5 does not say which are read-only).
    pub async fn metadata(&self) -> Result<Metadata, Error> {
        self.settle().await?;
        if let Some(p) = self.pyro_client() {
            let m = self.pyro_view(p, &self.opts)?.metadata().await?;
            return Ok(pyro_metadata(p.object_id(), m));
        }
        let r: Option<Metadata> = self
            .invoke_unchecked(DAEMON_PROVIDER_ID, "metadata", &(), &(), false, &self.opts)
            .await?;
        r.ok_or_else(|| Error::Codec {
            message: "the reply carried no metadata".into(),
        })
    }

    /// Whether provider `provider_id` exposes the method `full_name` (`service_method`),
    /// from the server's metadata (fetched once per proxy and cached).
    pub async fn has_method(&self, provider_id: u16, full_name: &str) -> Result<bool, Error> {
        self.settle().await?;
        if let Some(p) = self.pyro_client() {
            pyro_provider(provider_id, &self.shared.uri)?;
            let m = self.pyro_view(p, &self.opts)?.metadata().await?;
            return Ok(m.methods.iter().any(|x| x == full_name));
        }
        let meta = self.cached_metadata().await?;
        Ok(meta
            .provider(provider_id)
            .is_some_and(|p| p.has_method(full_name)))
    }

    /// Checks that the server answers (a round trip to the daemon object; in Pyro mode, a
    /// Pyro5 PING message).
    pub async fn ping(&self) -> Result<(), Error> {
        self.settle().await?;
        if let Some(p) = self.pyro_client() {
            return self.pyro_view(p, &self.opts)?.ping().await;
        }
        let _: Option<()> = self
            .invoke_unchecked(DAEMON_PROVIDER_ID, "ping", &(), &(), false, &self.opts)
            .await?;
        Ok(())
    }

    /// Asks the server to finalize (Margo's remote shutdown). The server must have enabled
    /// it with a token (`Engine::enable_remote_shutdown(token)`) and `token` must be that
    /// token; otherwise the call fails with [`Error::PermissionDenied`] and the server goes
    /// on serving.
    pub async fn shutdown_server(&self, token: Option<&str>) -> Result<(), Error> {
        self.settle().await?;
        if self.is_pyro() {
            return Err(Error::config(format!(
                "proxy `{}` is in Pyro mode: a Pyro5 daemon has no remote shutdown",
                self.shared.uri
            )));
        }
        let mut opts = self.opts.clone();
        if let Some(t) = token {
            opts.annotations.push((
                config::SHUTDOWN_TOKEN_KEY.to_string(),
                t.as_bytes().to_vec(),
            ));
        }
        let _: Option<()> = self
            .invoke_unchecked(DAEMON_PROVIDER_ID, "shutdown", &(), &(), false, &opts)
            .await?;
        Ok(())
    }

    /// Starts a call of `method` on the service and provider bound in the URI
    /// (`service:provider_id@address`); the RPC name is `service + "_" + method`. A proxy
    /// made from a naming URI (`name:NAME`) takes them from the URI the name resolves to
    /// once it has connected ([`Proxy::connect`]), unless its own URI binds them
    /// (`service:provider_id@name:NAME`).
    ///
    /// In Pyro mode (a `PYRO:` URI) `method` is the Python method's name, called on the
    /// object the URI names.
    pub fn call(&self, method: &str) -> Result<CallBuilder<'_, (), ()>, Error> {
        if self.is_pyro() {
            check_name(method)?;
            return Ok(CallBuilder::new(
                Cow::Borrowed(self),
                PYRO_PROVIDER_ID,
                RpcName::Shared(method.into()),
            ));
        }
        let (Some(service), Some(pid)) = (self.service(), self.provider_id()) else {
            return Err(Error::config(format!(
                "proxy `{}` has no service name and provider id; use a URI like my_service:42@tcp://host:port (or my_service:42@name:NAME), or Client::register(name).on(..)",
                self.shared.uri
            )));
        };
        let name = full_name(service, method);
        check_name(&name)?;
        Ok(CallBuilder::new(
            Cow::Borrowed(self),
            pid,
            RpcName::Shared(name.into()),
        ))
    }

    /// Starts a call of the full RPC name `rpc_name` on provider `provider_id`.
    ///
    /// In Pyro mode `rpc_name` is the Python method's name and `provider_id` must be 0 (the
    /// object id in the URI names the object).
    ///
    /// The builder borrows `rpc_name` as it borrows the proxy (no copy per call).
    pub fn call_on<'a>(
        &'a self,
        provider_id: u16,
        rpc_name: &'a str,
    ) -> Result<CallBuilder<'a, (), ()>, Error> {
        check_name(rpc_name)?;
        Ok(CallBuilder::new(
            Cow::Borrowed(self),
            provider_id,
            RpcName::Borrowed(rpc_name),
        ))
    }

    /// Reads the remote attribute `name` of provider `provider_id` (Pyro's exposed property).
    pub async fn get_attr<R: DeserializeOwned>(
        &self,
        provider_id: u16,
        name: &str,
    ) -> Result<R, Error> {
        self.settle().await?;
        if let Some(p) = self.pyro_client() {
            let v = Box::pin(self.pyro_request(
                p,
                provider_id,
                PyroKind::GetAttr,
                name,
                Vec::new(),
                Value::Null,
                false,
                &self.opts,
            ))
            .await?;
            return from_pyro_value(v, name);
        }
        let method = getter_route(name);
        check_name(&method)?;
        self.invoke(provider_id, &method, &(), &(), false, &self.opts)
            .await?
            .ok_or_else(|| Error::Codec {
                message: "the reply carried no value".into(),
            })
    }

    /// Sets the remote attribute `name` of provider `provider_id`.
    pub async fn set_attr<T: Serialize + Send>(
        &self,
        provider_id: u16,
        name: &str,
        value: T,
    ) -> Result<(), Error> {
        self.settle().await?;
        if let Some(p) = self.pyro_client() {
            let v = wirecall_codecs::to_value(&value).map_err(|e| Error::Codec {
                message: format!("the value for attribute `{name}`: {e}"),
            })?;
            Box::pin(self.pyro_request(
                p,
                provider_id,
                PyroKind::SetAttr,
                name,
                vec![v],
                Value::Null,
                false,
                &self.opts,
            ))
            .await?;
            return Ok(());
        }
        let method = setter_route(name);
        check_name(&method)?;
        let _: Option<()> = self
            .invoke(provider_id, &method, &((), value), &(), false, &self.opts)
            .await?;
        Ok(())
    }
}

/// The provider id calls of a Pyro-mode proxy take (the object id in the URI names the
/// object; there is nothing else to choose).
pub(super) const PYRO_PROVIDER_ID: u16 = 0;

/// Refuses a provider id other than 0 for a Pyro-mode proxy.
pub(super) fn pyro_provider(provider_id: u16, uri: &str) -> Result<(), Error> {
    if provider_id == PYRO_PROVIDER_ID {
        return Ok(());
    }
    Err(Error::config(format!(
        "proxy `{uri}` is in Pyro mode: a Pyro5 object has no provider ids (the object id in the URI names it); pass provider id 0, not {provider_id}"
    )))
}

/// The Pyro5 serializer of `codec`, or an error naming the four Pyro5 has.
pub(super) fn pyro_serializer(codec: CodecId) -> Result<proto::pyro::SerializerId, Error> {
    proto::pyro::SerializerId::from_codec(codec).ok_or_else(|| {
        Error::config(format!(
            "codec {codec} has no Pyro5 serializer: a Pyro5 daemon speaks serpent, json, msgpack or marshal; choose one of them"
        ))
    })
}

/// A result of a Pyro5 call read as `R`.
pub(super) fn from_pyro_value<R: DeserializeOwned>(v: Value, what: &str) -> Result<R, Error> {
    wirecall_codecs::from_value(v).map_err(|e| Error::Codec {
        message: format!("decoding the result of `{what}`: {e}"),
    })
}

/// A Pyro5 object's metadata as one provider of [`Metadata`].
fn pyro_metadata(object: &str, m: super::PyroMetadata) -> Metadata {
    let methods = m
        .methods
        .iter()
        .map(|name| crate::provider::MethodInfo {
            name: name.clone(),
            params: Vec::new(),
            oneway: m.oneway.contains(name),
            // Pyro5's metadata does not tell generators apart.
            streams: false,
            uploads: false,
        })
        .collect();
    Metadata {
        providers: vec![crate::provider::ProviderInfo {
            provider_id: PYRO_PROVIDER_ID,
            service: object.to_string(),
            aliases: Vec::new(),
            methods,
            attributes: m.attrs.clone(),
            writable: m.attrs,
            per_connection: false,
        }],
    }
}

/// What a generated `<Type>Client` calls through: a proxy plus a provider id (and the
/// service name, for the Pyro mode).
///
/// Over a proxy in Pyro mode (a `PYRO:` URI) the handle calls the Python object the URI
/// names: the provider id must be 0, and a full RPC name `service_method` is called as the
/// plain method name `method` when the handle knows its service
/// ([`ProviderHandle::with_service`], which generated clients set) — the mirror image of a
/// wirecall server, which serves a Python proxy's `method` as the route `service_method`.
#[derive(Clone, Debug)]
pub struct ProviderHandle {
    proxy: Proxy,
    provider_id: u16,
    service: Option<&'static str>,
}

impl ProviderHandle {
    /// A handle on provider `provider_id` through `proxy`.
    pub fn new(proxy: Proxy, provider_id: u16) -> Self {
        ProviderHandle {
            proxy,
            provider_id,
            service: None,
        }
    }

    /// The same handle, knowing that its RPC names are `service + "_" + method`: in Pyro
    /// mode it calls the Python method `method`.
    #[must_use]
    pub fn with_service(mut self, service: &'static str) -> Self {
        self.service = Some(service);
        self
    }

    /// The service name given with [`ProviderHandle::with_service`].
    pub fn service(&self) -> Option<&'static str> {
        self.service
    }

    /// The name `rpc_name` travels as: in Pyro mode, without the service prefix.
    fn wire_name(&self, rpc_name: &'static str) -> &'static str {
        match self.service {
            Some(service) if self.proxy.is_pyro() => rpc_name
                .strip_prefix(service)
                .and_then(|r| r.strip_prefix('_'))
                .unwrap_or(rpc_name),
            _ => rpc_name,
        }
    }

    /// The proxy.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// The provider id.
    pub fn provider_id(&self) -> u16 {
        self.provider_id
    }

    /// Calls `rpc_name` with positional arguments `args` (nested pairs, see [`ArgList`]).
    pub async fn call<A: ArgList, R: DeserializeOwned>(
        &self,
        rpc_name: &'static str,
        args: A,
    ) -> Result<R, Error> {
        check_name(rpc_name)?;
        self.proxy.settle().await?;
        let rpc_name = self.wire_name(rpc_name);
        self.proxy
            .invoke(
                self.provider_id,
                rpc_name,
                &args,
                &(),
                false,
                &self.proxy.opts,
            )
            .await?
            .ok_or_else(|| Error::Codec {
                message: "the reply carried no value".into(),
            })
    }

    /// Calls `rpc_name`, which is idempotent (running it twice does no harm): after a lost
    /// connection it is sent again, up to the proxy's [`Proxy::max_retries`] times. What
    /// `#[remote(idempotent)]` methods of generated clients call.
    pub async fn call_idempotent<A: ArgList, R: DeserializeOwned>(
        &self,
        rpc_name: &'static str,
        args: A,
    ) -> Result<R, Error> {
        check_name(rpc_name)?;
        self.proxy.settle().await?;
        let rpc_name = self.wire_name(rpc_name);
        let mut opts = self.proxy.opts.clone();
        opts.retries = Some(opts.max_retries);
        self.proxy
            .invoke(self.provider_id, rpc_name, &args, &(), false, &opts)
            .await?
            .ok_or_else(|| Error::Codec {
                message: "the reply carried no value".into(),
            })
    }

    /// Calls `rpc_name` oneway.
    pub async fn call_oneway<A: ArgList>(
        &self,
        rpc_name: &'static str,
        args: A,
    ) -> Result<(), Error> {
        check_name(rpc_name)?;
        self.proxy.settle().await?;
        let rpc_name = self.wire_name(rpc_name);
        let _: Option<()> = self
            .proxy
            .invoke(
                self.provider_id,
                rpc_name,
                &args,
                &(),
                true,
                &self.proxy.opts,
            )
            .await?;
        Ok(())
    }

    /// Calls `rpc_name`, a method that returns a stream
    /// ([`ItemStream`](crate::ItemStream)), and returns its items as they come, under
    /// flow control (the proxy's default window). What generated clients call for
    /// streaming methods.
    pub async fn call_stream<A: ArgList, T: DeserializeOwned>(
        &self,
        rpc_name: &'static str,
        args: A,
    ) -> Result<crate::RemoteStream<T>, Error> {
        check_name(rpc_name)?;
        self.proxy
            .invoke_stream(self.provider_id, rpc_name, &args, &(), &self.proxy.opts)
            .await
    }

    /// Calls `rpc_name`, a method that takes an argument stream
    /// ([`Streaming`](crate::Streaming)), sending `items` after `args` under the server's
    /// credit, and waits for its result. What generated clients call for such methods.
    pub async fn call_upload<A, T, R>(
        &self,
        rpc_name: &'static str,
        args: A,
        items: impl futures::Stream<Item = T> + Send + 'static,
    ) -> Result<R, Error>
    where
        A: ArgList,
        T: Serialize + Send + 'static,
        R: DeserializeOwned,
    {
        check_name(rpc_name)?;
        self.proxy
            .invoke_upload_value(
                self.provider_id,
                rpc_name,
                &args,
                &(),
                &self.proxy.opts,
                crate::upload::UploadSource::new(items),
            )
            .await
    }

    /// Calls `rpc_name`, a method that takes an argument stream and returns a stream (a
    /// bidirectional stream): `items` are sent while the result's items are read.
    pub async fn call_upload_stream<A, T, R>(
        &self,
        rpc_name: &'static str,
        args: A,
        items: impl futures::Stream<Item = T> + Send + 'static,
    ) -> Result<crate::RemoteStream<R>, Error>
    where
        A: ArgList,
        T: Serialize + Send + 'static,
        R: DeserializeOwned,
    {
        check_name(rpc_name)?;
        let raw = self
            .proxy
            .invoke_upload(
                self.provider_id,
                rpc_name,
                &args,
                &(),
                &self.proxy.opts,
                crate::upload::UploadSource::new(items),
                false,
            )
            .await?;
        Ok(crate::RemoteStream::new(raw))
    }

    /// Reads a remote attribute.
    pub async fn get_attr<R: DeserializeOwned>(&self, name: &str) -> Result<R, Error> {
        self.proxy.get_attr(self.provider_id, name).await
    }

    /// Sets a remote attribute.
    pub async fn set_attr<T: Serialize + Send>(&self, name: &str, value: T) -> Result<(), Error> {
        self.proxy.set_attr(self.provider_id, name, value).await
    }
}
