//! A client of Python Pyro5 daemons: [`PyroProxy`], a thin async driver of
//! `wirecall_protocol::pyro::ClientSession` (every wire rule is the session's; this file
//! connects, encodes the CONNECT and INVOKE payloads with the chosen serializer, and decodes
//! the answers, reference §2.1-§2.6).

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;
use wirecall_codecs::Value;
use wirecall_protocol::pyro::{
    ClientConfig, ClientEvent, ClientSession, Flags, Request, Response, SerializerId, BATCH_METHOD,
    EXCEPTION_WRAPPER_CLASS,
};

use crate::error::{Error, RemoteError};
use crate::CodecId;

/// The object id of a Pyro5 daemon's own object.
const DAEMON_OBJECT_ID: &str = "Pyro.Daemon";

/// What a proxy reads into at a time.
const READ_CHUNK: usize = 16 * 1024;

/// What a Pyro5 object exposes, as its daemon's CONNECTOK lists it (sorted names).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PyroMetadata {
    /// The methods that can be called.
    pub methods: Vec<String>,
    /// The methods called without waiting for a reply (a subset of `methods`).
    pub oneway: Vec<String>,
    /// The remote attributes (Python properties) that can be read and written.
    pub attrs: Vec<String>,
}

/// Where a `PYRO:` URI points.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Location {
    Tcp { host: String, port: u16 },
    Unix(String),
}

/// A proxy of one object of a Python Pyro5 daemon, named by a `PYRO:object@host:port` (or
/// `PYRO:object@./u:/socket/path`) URI.
///
/// It connects on the first call (CONNECT, reading the object's [`PyroMetadata`]), sends one
/// request at a time as Pyro5 requires (concurrent callers wait their turn), and after the
/// connection dropped, failed or timed out, the next call connects again. Pyro5's
/// serializers are all supported: serpent (the default, as in Pyro5), json, msgpack and
/// marshal. A Python exception comes back as [`Error::Remote`] with the exception's class
/// name (`ValueError`, or `Pyro5.errors.DaemonError` outside the builtins), its message and
/// the remote traceback lines. Batch calls go through [`PyroProxy::batch`], remote
/// iterators (a Python method returning a generator) through [`PyroProxy::call_stream`], and
/// [`PyroProxy::compression`] turns on zlib compression as Pyro5's `COMPRESSION` setting
/// does (compressed answers are always accepted). `PYRONAME:` URIs go through
/// `PyroProxy::resolve` (a name server lookup), not `new`.
///
/// ```no_run
/// # async fn demo() -> Result<(), wirecall::Error> {
/// use wirecall::{PyroProxy, Value};
/// let calc = PyroProxy::new("PYRO:test.calc@127.0.0.1:9999")?;
/// let sum = calc.call("add", vec![Value::Int(2), Value::Int(3)], vec![]).await?;
/// assert_eq!(sum, Value::Int(5));
/// let sum: i64 = calc.call_typed("add", (2, 3)).await?;
/// # Ok(()) }
/// ```
pub struct PyroProxy {
    endpoint: Arc<Endpoint>,
    serializer: SerializerId,
    timeout: Option<Duration>,
    compression: bool,
    classes: PyroClasses,
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for PyroProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PyroProxy")
            .field("uri", &self.endpoint.uri)
            .field("serializer", &self.serializer)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What a proxy and its views (the Pyro mode of [`crate::Proxy`]) share: where the object
/// is.
#[derive(Debug)]
struct Endpoint {
    uri: String,
    object: String,
    location: Location,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

struct Connection {
    stream: Box<dyn Stream>,
    session: ClientSession,
    buf: Vec<u8>,
}

#[derive(Default)]
struct State {
    conn: Option<Connection>,
    /// The last sequence number used: a reconnect goes on from it, as a Python proxy does.
    seq: u16,
    meta: Option<PyroMetadata>,
}

impl PyroProxy {
    /// A proxy of the object `uri` names (`PYRO:object@host:port`, `PYRO:object@[::1]:port`
    /// or `PYRO:object@./u:/socket/path`), with the serpent serializer and no call timeout
    /// (as a Pyro5 proxy). Nothing is connected yet.
    pub fn new(uri: &str) -> Result<PyroProxy, Error> {
        let (object, location) = parse_uri(uri)?;
        Ok(PyroProxy {
            endpoint: Arc::new(Endpoint {
                uri: uri.trim().to_string(),
                object,
                location,
            }),
            serializer: SerializerId::SERPENT,
            timeout: None,
            compression: false,
            classes: PyroClasses::default(),
            state: Arc::new(Mutex::new(State::default())),
        })
    }

    /// Uses `codec` as the serializer: [`CodecId::SERPENT`], [`CodecId::JSON`],
    /// [`CodecId::MSGPACK`] or [`CodecId::MARSHAL`] (the ones Pyro5 has). Takes effect on the
    /// next connection.
    pub fn serializer(mut self, codec: CodecId) -> Result<PyroProxy, Error> {
        self.serializer = SerializerId::from_codec(codec).ok_or_else(|| {
            Error::config(format!(
                "Pyro5 has no serializer for codec {codec}; choose serpent, json, msgpack or marshal"
            ))
        })?;
        Ok(self)
    }

    /// Fails a call (connecting included) that takes longer than `timeout` with
    /// [`Error::Timeout`]; its connection is dropped and the next call opens a new one.
    pub fn timeout(mut self, timeout: Duration) -> PyroProxy {
        self.timeout = Some(timeout);
        self
    }

    /// Compresses requests (zlib, level 4, payloads of 100 bytes or more that shrink) as a
    /// Pyro5 proxy does with `COMPRESSION` on. Compressed answers are inflated whatever this
    /// setting, up to the codec input limit (64 MiB).
    pub fn compression(mut self, on: bool) -> PyroProxy {
        self.compression = on;
        self
    }

    /// Converts the class dicts in results (Pyro5's `register_dict_to_class` for dynamic
    /// values, see [`PyroClasses`]).
    pub fn classes(mut self, classes: PyroClasses) -> PyroProxy {
        self.classes = classes;
        self
    }

    /// A batch of calls sent as one request (Pyro5's `BatchProxy`): add calls with
    /// [`PyroBatch::call`], then [`PyroBatch::send`] them.
    pub fn batch(&self) -> PyroBatch<'_> {
        PyroBatch {
            proxy: self,
            calls: Vec::new(),
        }
    }

    /// Calls `method`, a Python method that returns an iterator or generator, and gives its
    /// items as a [`PyroItemStream`] that fetches each with
    /// `Pyro.Daemon.get_next_stream_item`. A method that returns a plain value gives a
    /// stream of that one value.
    pub async fn call_stream(
        &self,
        method: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
    ) -> Result<PyroItemStream<'_>, Error> {
        let mut state = self.state.lock().await;
        let kwargs = Value::Map(
            kwargs
                .into_iter()
                .map(|(k, v)| (Value::Str(k), v))
                .collect(),
        );
        let first = self
            .bounded(self.request_inner(
                &mut state,
                method,
                args,
                kwargs,
                Kind::Method,
                true,
                false,
            ))
            .await
            .inspect_err(|e| {
                if !matches!(e, Error::Remote(_) | Error::NoSuchMethod { .. }) {
                    drop_connection(&mut state);
                }
            })?;
        drop(state);
        let (stream_id, first) = match first {
            Answer::Stream(id) => (Some(id), None),
            Answer::Value(v) => (None, Some(v)),
        };
        let close = match &stream_id {
            Some(id) => Some(self.call_payload(
                DAEMON_OBJECT_ID,
                "close_stream",
                vec![Value::Str(id.clone())],
                Value::Map(Vec::new()),
            )?),
            None => None,
        };
        let done = Arc::new(AtomicBool::new(stream_id.is_none()));
        let items = futures::stream::unfold(
            (self, stream_id, first, done.clone()),
            |(proxy, id, first, done)| async move {
                if let Some(v) = first {
                    return Some((Ok(v), (proxy, id, None, done)));
                }
                let stream = id.clone()?;
                if done.load(Ordering::Acquire) {
                    return None;
                }
                match proxy.next_item(&stream).await {
                    Ok(Some(v)) => Some((Ok(v), (proxy, id, None, done))),
                    Ok(None) => {
                        done.store(true, Ordering::Release);
                        None
                    }
                    Err(e) => {
                        done.store(true, Ordering::Release);
                        Some((Err(e), (proxy, None, None, done)))
                    }
                }
            },
        );
        Ok(PyroItemStream {
            items: Box::pin(items),
            guard: CloseGuard {
                state: self.state.clone(),
                close,
                done,
            },
        })
    }

    /// The next item of the remote iterator `stream` (`None` at its end).
    async fn next_item(&self, stream: &str) -> Result<Option<Value>, Error> {
        let mut state = self.state.lock().await;
        let state = &mut *state;
        let r = self
            .bounded(async {
                self.ensure_connected(state).await?;
                let payload = self.call_payload(
                    DAEMON_OBJECT_ID,
                    "get_next_stream_item",
                    vec![Value::Str(stream.to_string())],
                    Value::Map(Vec::new()),
                )?;
                let r = self
                    .exchange(state, payload, Flags::EMPTY)
                    .await?
                    .expect("a reply");
                let value = self.decode(&r.payload)?;
                if r.is_exception() {
                    let e = remote_error(&value);
                    if e.type_name == "StopIteration" {
                        return Ok(None);
                    }
                    return Err(Error::Remote(e));
                }
                Ok(Some(self.convert(value)?))
            })
            .await;
        if let Err(e) = &r {
            if !matches!(e, Error::Remote(_)) {
                drop_connection(state);
            }
        }
        r
    }

    /// The URI this proxy was made from.
    pub fn uri(&self) -> &str {
        &self.endpoint.uri
    }

    /// The object id the URI names.
    pub fn object_id(&self) -> &str {
        &self.endpoint.object
    }

    /// The object's metadata, connecting if needed.
    pub async fn metadata(&self) -> Result<PyroMetadata, Error> {
        let mut state = self.state.lock().await;
        let state = &mut *state;
        let r = self
            .bounded(async {
                self.ensure_connected(state).await?;
                Ok(state.meta.clone().unwrap_or_default())
            })
            .await;
        if r.is_err() {
            drop_connection(state);
        }
        r
    }

    /// Calls `method` with positional `args` and keyword `kwargs`; returns its result. A
    /// method the metadata marks oneway is sent without waiting for a reply and gives
    /// [`Value::Null`]. A method the object does not expose fails locally with
    /// [`Error::NoSuchMethod`], as in a Pyro5 proxy.
    pub async fn call(
        &self,
        method: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
    ) -> Result<Value, Error> {
        let mut state = self.state.lock().await;
        let kwargs = Value::Map(
            kwargs
                .into_iter()
                .map(|(k, v)| (Value::Str(k), v))
                .collect(),
        );
        self.request(&mut state, method, args, kwargs, Kind::Method)
            .await
    }

    /// Sends a batch: one `<batch>` request (flag BATCH, plus ONEWAY when `oneway`).
    async fn send_batch(
        &self,
        calls: Vec<BatchCall>,
        oneway: bool,
    ) -> Result<Vec<Result<Value, Error>>, Error> {
        let mut state = self.state.lock().await;
        let state = &mut *state;
        let r = self
            .bounded(async {
                self.ensure_connected(state).await?;
                let meta = state.meta.clone().unwrap_or_default();
                let mut triples = Vec::with_capacity(calls.len());
                for (m, args, kwargs) in calls {
                    if !meta.methods.contains(&m) {
                        return Err(Error::NoSuchMethod {
                            method: m,
                            exposed: meta.methods.clone(),
                        });
                    }
                    let kwargs = kwargs
                        .into_iter()
                        .map(|(k, v)| (Value::Str(k), v))
                        .collect();
                    triples.push(Value::Tuple(vec![
                        Value::Str(m),
                        Value::Tuple(args),
                        Value::Map(kwargs),
                    ]));
                }
                let payload =
                    self.call_payload(&self.endpoint.object, BATCH_METHOD, triples, Value::Null)?;
                let flags = if oneway {
                    Flags::BATCH.union(Flags::ONEWAY)
                } else {
                    Flags::BATCH
                };
                let Some(r) = self.exchange(state, payload, flags).await? else {
                    return Ok(Vec::new());
                };
                let value = self.decode(&r.payload)?;
                if r.is_exception() {
                    return Err(Error::Remote(remote_error(&value)));
                }
                let (Value::List(items) | Value::Tuple(items)) = value else {
                    return Err(Error::Codec {
                        message: "the daemon's answer to a batch is not a list".into(),
                    });
                };
                Ok(items
                    .into_iter()
                    .map(|v| match get(&v, "__class__") {
                        Some(Value::Str(c)) if c == EXCEPTION_WRAPPER_CLASS => Err(Error::Remote(
                            remote_error(get(&v, "exception").unwrap_or(&Value::Null)),
                        )),
                        _ => self.convert(v),
                    })
                    .collect())
            })
            .await;
        if let Err(e) = &r {
            if !matches!(e, Error::Remote(_) | Error::NoSuchMethod { .. }) {
                drop_connection(state);
            }
        }
        r
    }

    /// Calls `method` with the positional arguments `args` (a tuple, array or `Vec` of
    /// serializable values; `()` for none) and converts its result to `R`.
    pub async fn call_typed<R: DeserializeOwned>(
        &self,
        method: &str,
        args: impl Serialize,
    ) -> Result<R, Error> {
        let args = match wirecall_codecs::to_value(&args).map_err(codec_error)? {
            Value::List(a) | Value::Tuple(a) => a,
            Value::Null => Vec::new(),
            other => vec![other],
        };
        let result = self.call(method, args, Vec::new()).await?;
        wirecall_codecs::from_value(result).map_err(codec_error)
    }

    /// Reads the remote attribute (Python property) `name`.
    pub async fn get_attr(&self, name: &str) -> Result<Value, Error> {
        let mut state = self.state.lock().await;
        let args = vec![Value::Str(name.to_string())];
        self.request(&mut state, name, args, Value::Null, Kind::GetAttr)
            .await
    }

    /// Writes the remote attribute (Python property) `name`.
    pub async fn set_attr(&self, name: &str, value: Value) -> Result<(), Error> {
        let mut state = self.state.lock().await;
        let args = vec![Value::Str(name.to_string()), value];
        self.request(&mut state, name, args, Value::Null, Kind::SetAttr)
            .await
            .map(drop)
    }

    /// Connects now (CONNECT, reading the object's metadata) unless a connection is up;
    /// otherwise the first call connects.
    pub async fn connect(&self) -> Result<(), Error> {
        let mut state = self.state.lock().await;
        let state = &mut *state;
        let r = self.bounded(self.ensure_connected(state)).await;
        if r.is_err() {
            drop_connection(state);
        }
        r
    }

    /// Checks that the daemon answers: a PING message and its answer (connecting first if
    /// needed).
    pub async fn ping(&self) -> Result<(), Error> {
        let mut state = self.state.lock().await;
        let state = &mut *state;
        let r = self
            .bounded(async {
                self.ensure_connected(state).await?;
                let conn = state.conn.as_mut().expect("connected");
                conn.session.ping(Instant::now())?;
                self.flush(conn).await?;
                match self.next_event(conn).await? {
                    ClientEvent::Pong { .. } => Ok(()),
                    other => Err(self.unexpected(&other)),
                }
            })
            .await;
        if r.is_err() {
            drop_connection(state);
        }
        r
    }

    /// Whether a connection is up (or in use by a call).
    pub fn is_connected(&self) -> bool {
        match self.state.try_lock() {
            Ok(s) => s.conn.as_ref().is_some_and(|c| c.session.is_connected()),
            Err(_) => true,
        }
    }

    /// The serializer requests are sent with.
    pub fn serializer_codec(&self) -> CodecId {
        self.codec()
    }

    /// A view of this proxy sharing its connection and state, with its own serializer and
    /// timeout (what the Pyro mode of [`crate::Proxy`] calls through).
    pub(crate) fn view(&self, serializer: SerializerId, timeout: Option<Duration>) -> PyroProxy {
        PyroProxy {
            endpoint: self.endpoint.clone(),
            serializer,
            timeout,
            compression: self.compression,
            classes: self.classes.clone(),
            state: self.state.clone(),
        }
    }

    /// One request of `kind` on `name` (a method, or an attribute), sent oneway when `oneway`
    /// or when the metadata marks the method oneway (then the result is [`Value::Null`]).
    pub(crate) async fn invoke(
        &self,
        kind: Kind,
        name: &str,
        args: Vec<Value>,
        kwargs: Value,
        oneway: bool,
    ) -> Result<Value, Error> {
        let mut state = self.state.lock().await;
        let args = match kind {
            Kind::Method => args,
            Kind::GetAttr => vec![Value::Str(name.to_string())],
            Kind::SetAttr => {
                let mut a = Vec::with_capacity(2);
                a.push(Value::Str(name.to_string()));
                a.extend(args.into_iter().take(1));
                a
            }
        };
        let kwargs = match kind {
            Kind::Method => kwargs,
            _ => Value::Null,
        };
        self.request_with(&mut state, name, args, kwargs, kind, oneway)
            .await
    }

    /// Sends calls as one batch request (see [`PyroBatch`]).
    pub(crate) async fn batch_calls(
        &self,
        calls: Vec<BatchCall>,
        oneway: bool,
    ) -> Result<Vec<Result<Value, Error>>, Error> {
        self.send_batch(calls, oneway).await
    }

    /// Closes the connection, if any; the next call opens a new one.
    pub async fn close(&self) {
        drop_connection(&mut *self.state.lock().await);
    }

    async fn request(
        &self,
        state: &mut State,
        name: &str,
        args: Vec<Value>,
        kwargs: Value,
        kind: Kind,
    ) -> Result<Value, Error> {
        self.request_with(state, name, args, kwargs, kind, false)
            .await
    }

    async fn request_with(
        &self,
        state: &mut State,
        name: &str,
        args: Vec<Value>,
        kwargs: Value,
        kind: Kind,
        oneway: bool,
    ) -> Result<Value, Error> {
        self.bounded(self.request_inner(state, name, args, kwargs, kind, false, oneway))
            .await
            .map(Answer::into_value)
            .inspect_err(|e| {
                if !matches!(e, Error::Remote(_) | Error::NoSuchMethod { .. }) {
                    drop_connection(state);
                }
            })
    }

    #[allow(clippy::too_many_arguments)]
    async fn request_inner(
        &self,
        state: &mut State,
        name: &str,
        args: Vec<Value>,
        kwargs: Value,
        kind: Kind,
        streams: bool,
        force_oneway: bool,
    ) -> Result<Answer, Error> {
        self.ensure_connected(state).await?;
        let meta = state.meta.clone().unwrap_or_default();
        let (exposed, wire_method) = match kind {
            Kind::Method => (&meta.methods, name),
            Kind::GetAttr => (&meta.attrs, "__getattr__"),
            Kind::SetAttr => (&meta.attrs, "__setattr__"),
        };
        if !exposed.iter().any(|m| m == name) {
            let mut all = meta.methods.clone();
            all.extend(meta.attrs.iter().cloned());
            return Err(Error::NoSuchMethod {
                method: name.to_string(),
                exposed: all,
            });
        }
        let oneway =
            kind == Kind::Method && (force_oneway || meta.oneway.iter().any(|m| m == name));
        let payload = self.call_payload(&self.endpoint.object, wire_method, args, kwargs)?;
        let flags = if oneway { Flags::ONEWAY } else { Flags::EMPTY };
        let Some(response) = self.exchange(state, payload, flags).await? else {
            return Ok(Answer::Value(Value::Null));
        };
        if let Some(stream) = response.stream_id() {
            let stream = String::from_utf8_lossy(stream).into_owned();
            if streams {
                return Ok(Answer::Stream(stream));
            }
            // A remote iterator the caller did not ask for: close it on the daemon (oneway,
            // as a Python proxy does).
            let close = self.call_payload(
                DAEMON_OBJECT_ID,
                "close_stream",
                vec![Value::Str(stream)],
                Value::Map(Vec::new()),
            )?;
            self.exchange(state, close, Flags::ONEWAY).await?;
            return Err(Error::Codec {
                message: format!(
                    "`{name}` returned a remote iterator (Pyro5 item streaming); call it with PyroProxy::call_stream to read its items (its stream was closed)"
                ),
            });
        }
        let value = self.decode(&response.payload)?;
        if response.is_exception() {
            return Err(Error::Remote(remote_error(&value)));
        }
        Ok(Answer::Value(self.convert(value)?))
    }

    /// Sends one INVOKE (compressed if the proxy compresses) on the connected `state` and
    /// reads its answer, inflated; `None` for a oneway request.
    async fn exchange(
        &self,
        state: &mut State,
        payload: Bytes,
        flags: Flags,
    ) -> Result<Option<Response>, Error> {
        let conn = state.conn.as_mut().expect("connected");
        let mut req = Request::new(payload);
        req.flags = flags;
        // The connection may have been opened by a view with another serializer: every
        // request names its own (a Pyro5 daemon answers in the request's serializer).
        req.serializer = Some(self.serializer);
        if self.compression {
            if let Some(z) = deflate(&req.payload) {
                req.payload = z;
                req.flags = req.flags.union(Flags::COMPRESSED);
            }
        }
        let sent = conn.session.invoke(req, Instant::now());
        state.seq = conn.session.seq();
        sent?;
        self.flush(conn).await?;
        if flags.contains(Flags::ONEWAY) {
            return Ok(None);
        }
        let mut response = match self.next_event(conn).await? {
            ClientEvent::Result(r) => r,
            other => return Err(self.unexpected(&other)),
        };
        if response.flags.contains(Flags::COMPRESSED) {
            let max = wirecall_codecs::Limits::default().max_input;
            response.payload = inflate(&response.payload, max).map_err(|message| Error::Codec {
                message: format!("the daemon's compressed result: {message}"),
            })?;
            response.flags = response.flags.without(Flags::COMPRESSED);
        }
        Ok(Some(response))
    }

    /// Runs `f` within the proxy's timeout.
    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        match self.timeout {
            Some(after) => tokio::time::timeout(after, f)
                .await
                .unwrap_or(Err(Error::Timeout { after })),
            None => f.await,
        }
    }

    async fn ensure_connected(&self, state: &mut State) -> Result<(), Error> {
        if let Some(c) = &mut state.conn {
            if c.session.is_connected() && !c.session.is_busy() && idle_and_open(c) {
                return Ok(());
            }
            // Closed, or left mid-request by a cancelled call: start afresh.
            drop_connection(state);
        }
        let stream: Box<dyn Stream> = match &self.endpoint.location {
            Location::Tcp { host, port } => {
                let s = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| Error::transport_source(&self.endpoint.uri, e))?;
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
            #[cfg(unix)]
            Location::Unix(path) => Box::new(
                tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| Error::transport_source(&self.endpoint.uri, e))?,
            ),
            #[cfg(not(unix))]
            Location::Unix(_) => {
                return Err(Error::config(
                    "unix socket URIs need a unix platform".to_string(),
                ))
            }
        };
        let mut config = ClientConfig::new(self.serializer);
        config.initial_seq = state.seq;
        config.handshake_timeout = None; // The proxy's own timeout bounds the handshake.
        let mut conn = Connection {
            stream,
            session: ClientSession::new(config),
            buf: vec![0; READ_CHUNK],
        };
        let hello = Value::Map(vec![
            (s("handshake"), s("hello")),
            (s("object"), Value::Str(self.endpoint.object.clone())),
        ]);
        conn.session.connect(self.encode(&hello)?, Instant::now())?;
        self.flush(&mut conn).await?;
        let ok = match self.next_event(&mut conn).await? {
            ClientEvent::Connected(ok) => ok,
            other => return Err(self.unexpected(&other)),
        };
        let payload = if ok.flags.contains(Flags::COMPRESSED) {
            let max = wirecall_codecs::Limits::default().max_input;
            inflate(&ok.payload, max).map_err(|message| Error::Codec {
                message: format!("the daemon's compressed CONNECTOK: {message}"),
            })?
        } else {
            ok.payload.clone()
        };
        let answer = self.decode(&payload)?;
        let meta = get(&answer, "meta").ok_or_else(|| Error::Codec {
            message: "the daemon's CONNECTOK has no `meta`".into(),
        })?;
        let names = |key: &str| -> Vec<String> {
            let mut v: Vec<String> = match get(meta, key) {
                Some(Value::List(l) | Value::Tuple(l) | Value::Set(l)) => l
                    .iter()
                    .filter_map(|n| match n {
                        Value::Str(n) => Some(n.clone()),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            v.sort();
            v
        };
        state.meta = Some(PyroMetadata {
            methods: names("methods"),
            oneway: names("oneway"),
            attrs: names("attrs"),
        });
        state.seq = conn.session.seq();
        state.conn = Some(conn);
        Ok(())
    }

    /// `(objectId, method, vargs, kwargs)`, a json object in json (reference §2.2).
    fn call_payload(
        &self,
        object: &str,
        method: &str,
        args: Vec<Value>,
        kwargs: Value,
    ) -> Result<Bytes, Error> {
        let object = Value::Str(object.to_string());
        let method = Value::Str(method.to_string());
        let call = if self.serializer == SerializerId::JSON {
            Value::Map(vec![
                (s("object"), object),
                (s("method"), method),
                (s("params"), Value::List(args)),
                (s("kwargs"), kwargs),
            ])
        } else {
            Value::Tuple(vec![object, method, Value::Tuple(args), kwargs])
        };
        self.encode(&call)
    }

    fn codec(&self) -> CodecId {
        self.serializer.codec().expect("a Pyro5 serializer")
    }

    fn encode(&self, v: &Value) -> Result<Bytes, Error> {
        let mut out = Vec::new();
        wirecall_codecs::encode_value(self.codec(), v, &mut out).map_err(codec_error)?;
        Ok(Bytes::from(out))
    }

    fn decode(&self, payload: &[u8]) -> Result<Value, Error> {
        let limits = wirecall_codecs::Limits::default();
        wirecall_codecs::decode_value(self.codec(), payload, &limits).map_err(codec_error)
    }

    /// A result with the registered class converters applied.
    fn convert(&self, v: Value) -> Result<Value, Error> {
        self.classes
            .convert(v)
            .map_err(|message| Error::Codec { message })
    }

    async fn flush(&self, conn: &mut Connection) -> Result<(), Error> {
        while let Some(b) = conn.session.poll_transmit() {
            conn.stream
                .write_all(&b)
                .await
                .map_err(|e| self.broken(e))?;
        }
        conn.stream.flush().await.map_err(|e| self.broken(e))
    }

    /// Reads until the session reports an event.
    async fn next_event(&self, conn: &mut Connection) -> Result<ClientEvent, Error> {
        loop {
            if let Some(ev) = conn.session.poll_event() {
                return Ok(ev);
            }
            let n = conn
                .stream
                .read(&mut conn.buf)
                .await
                .map_err(|e| self.broken(e))?;
            if n == 0 {
                let _ = conn.session.handle_eof();
                return Err(Error::transport(
                    &self.endpoint.uri,
                    "the Pyro5 daemon closed the connection before answering (the next call connects again)",
                ));
            }
            // A CONNECTFAIL, a sequence mismatch, ...: the session is closed.
            conn.session
                .handle_input(&conn.buf[..n], Instant::now())
                .map_err(Error::Protocol)?;
        }
    }

    fn broken(&self, e: std::io::Error) -> Error {
        Error::Transport {
            address: self.endpoint.uri.clone(),
            message: format!("{e} (the next call connects again)"),
            source: Some(crate::error::Source::new(e)),
        }
    }

    fn unexpected(&self, ev: &ClientEvent) -> Error {
        Error::transport(
            &self.endpoint.uri,
            format!("unexpected answer from the Pyro5 daemon: {ev:?}"),
        )
    }
}

/// A converter of one Pyro class dict (see [`PyroClasses`]).
type DictToValue = Arc<dyn Fn(Value) -> Result<Value, String> + Send + Sync>;

/// Converters of Pyro5 class dicts for dynamic values ([`Value`]), as Pyro5's
/// `register_dict_to_class` registers them in Python: a value arriving as
/// `{"__class__": "mymod.Temperature", ...}` (a Python instance of a class, or an
/// exception) is replaced by what the converter registered for its class name returns,
/// wherever it is nested. Registered on a [`PyroProxy`] ([`PyroProxy::classes`]: results,
/// batch results, stream items) or on a server (`ServerBuilder::pyro_classes`: the
/// arguments of Pyro5 calls, before a provider's method reads them).
///
/// Typed values need no registry: a Rust struct declares its Pyro class name with serde,
/// `#[serde(tag = "__class__", rename = "mymod.Point")]`, and travels as that class dict
/// with every serializer (`protocol/PYRO5.md`, "Custom classes").
///
/// ```
/// use wirecall::{PyroClasses, Value};
/// let mut classes = PyroClasses::new();
/// // A Python `Temperature(celsius=21.5)` arrives as a plain float.
/// classes.register_dict_to_class("weather.Temperature", |dict| {
///     PyroClasses::field(&dict, "celsius")
///         .cloned()
///         .ok_or_else(|| "a Temperature without `celsius`".to_string())
/// });
/// let dict = Value::Map(vec![
///     (Value::Str("__class__".into()), Value::Str("weather.Temperature".into())),
///     (Value::Str("celsius".into()), Value::Float(21.5)),
/// ]);
/// assert_eq!(classes.convert(Value::List(vec![dict])).unwrap(), Value::List(vec![Value::Float(21.5)]));
/// ```
#[derive(Clone, Default)]
pub struct PyroClasses {
    from_dict: std::collections::HashMap<String, DictToValue>,
}

impl fmt::Debug for PyroClasses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.from_dict.keys().collect();
        names.sort();
        f.debug_struct("PyroClasses")
            .field("dict_to_class", &names)
            .finish()
    }
}

impl PyroClasses {
    /// An empty registry.
    pub fn new() -> PyroClasses {
        PyroClasses::default()
    }

    /// Converts dicts whose `__class__` is `class` with `convert` (given the whole dict,
    /// `__class__` included); an `Err` fails the call with its message.
    pub fn register_dict_to_class(
        &mut self,
        class: &str,
        convert: impl Fn(Value) -> Result<Value, String> + Send + Sync + 'static,
    ) -> &mut Self {
        self.from_dict.insert(class.to_string(), Arc::new(convert));
        self
    }

    /// No converter is registered.
    pub fn is_empty(&self) -> bool {
        self.from_dict.is_empty()
    }

    /// The class name of a class dict (its `__class__` string).
    pub fn class_of(v: &Value) -> Option<&str> {
        match get(v, "__class__") {
            Some(Value::Str(c)) => Some(c),
            _ => None,
        }
    }

    /// The entry `key` of a dict.
    pub fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
        get(v, key)
    }

    /// Replaces every class dict in `v` (at any depth) that has a converter with what the
    /// converter returns; the first converter error, naming the class.
    pub fn convert(&self, v: Value) -> Result<Value, String> {
        if self.is_empty() {
            return Ok(v);
        }
        self.walk(v, 0)
    }

    fn walk(&self, v: Value, depth: usize) -> Result<Value, String> {
        // Decoded values are depth-limited by the codecs; this bound only guards converters
        // that build deep values.
        if depth > 256 {
            return Err("class dicts nested too deeply".into());
        }
        let all = |items: Vec<Value>| -> Result<Vec<Value>, String> {
            items.into_iter().map(|x| self.walk(x, depth + 1)).collect()
        };
        Ok(match v {
            Value::List(l) => Value::List(all(l)?),
            Value::Tuple(l) => Value::Tuple(all(l)?),
            Value::Set(l) => Value::Set(all(l)?),
            Value::Map(m) => {
                let m = m
                    .into_iter()
                    .map(|(k, v)| Ok((k, self.walk(v, depth + 1)?)))
                    .collect::<Result<Vec<_>, String>>()?;
                let v = Value::Map(m);
                match PyroClasses::class_of(&v)
                    .and_then(|c| Some((c.to_string(), self.from_dict.get(c)?)))
                {
                    Some((class, f)) => {
                        f(v).map_err(|e| format!("converting a `{class}` dict: {e}"))?
                    }
                    None => v,
                }
            }
            other => other,
        })
    }
}

/// One call of a batch: method, positional and keyword arguments.
type BatchCall = (String, Vec<Value>, Vec<(String, Value)>);

/// What a call gave: a value, or the id of a remote iterator.
enum Answer {
    Value(Value),
    Stream(String),
}

impl Answer {
    fn into_value(self) -> Value {
        match self {
            Answer::Value(v) => v,
            // Only asked for by `call_stream`.
            Answer::Stream(id) => Value::Str(id),
        }
    }
}

/// Calls collected to be sent as one batch request (Pyro5's `BatchProxy`), made by
/// [`PyroProxy::batch`].
///
/// The daemon runs the calls in order and stops at the first that raises: the results
/// come back in order, the one that raised as an `Err` and last, the calls after it
/// missing.
///
/// ```no_run
/// # async fn demo() -> Result<(), wirecall::Error> {
/// use wirecall::{PyroProxy, Value};
/// let calc = PyroProxy::new("PYRO:test.calc@127.0.0.1:9999")?;
/// let mut batch = calc.batch();
/// batch.call("add", vec![Value::Int(1), Value::Int(2)], vec![]);
/// batch.call("add", vec![Value::Int(3), Value::Int(4)], vec![]);
/// let results = batch.send().await?;
/// assert_eq!(results.len(), 2);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PyroBatch<'a> {
    proxy: &'a PyroProxy,
    calls: Vec<BatchCall>,
}

impl PyroBatch<'_> {
    /// Adds a call of `method` with positional `args` and keyword `kwargs`.
    pub fn call(
        &mut self,
        method: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
    ) -> &mut Self {
        self.calls.push((method.to_string(), args, kwargs));
        self
    }

    /// How many calls were added.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// No call was added.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Sends the calls as one request and returns their results in order: an `Err`
    /// ([`Error::Remote`]) for the call that raised, which is the last one (the calls after
    /// it did not run). A method the object does not expose fails the whole batch locally
    /// with [`Error::NoSuchMethod`], before anything is sent.
    pub async fn send(self) -> Result<Vec<Result<Value, Error>>, Error> {
        self.proxy.send_batch(self.calls, false).await
    }

    /// Sends the calls as one oneway request (flags BATCH|ONEWAY): nothing is answered.
    pub async fn send_oneway(self) -> Result<(), Error> {
        self.proxy.send_batch(self.calls, true).await.map(drop)
    }
}

/// The items of a Python remote iterator (Pyro5 item streaming), made by
/// [`PyroProxy::call_stream`]: an async [`futures::Stream`] that fetches each item with
/// `Pyro.Daemon.get_next_stream_item` on the proxy's connection (one request at a time,
/// shared with the proxy's other calls). It ends at the iterator's end (`StopIteration`) or
/// after an error item; dropped before its end, it closes the remote iterator with a oneway
/// `Pyro.Daemon.close_stream`, as a Python proxy does (in a task of the current tokio
/// runtime).
pub struct PyroItemStream<'a> {
    items: futures::stream::BoxStream<'a, Result<Value, Error>>,
    guard: CloseGuard,
}

impl fmt::Debug for PyroItemStream<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PyroItemStream")
            .field("done", &self.guard.done.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl futures::Stream for PyroItemStream<'_> {
    type Item = Result<Value, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.items.as_mut().poll_next(cx)
    }
}

/// Closes a remote iterator left before its end.
struct CloseGuard {
    state: Arc<Mutex<State>>,
    /// The encoded `close_stream` call (none when there is no remote iterator).
    close: Option<Bytes>,
    done: Arc<AtomicBool>,
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        let Some(close) = self.close.take() else {
            return;
        };
        if self.done.load(Ordering::Acquire) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let state = self.state.clone();
        drop(rt.spawn(async move {
            let mut state = state.lock().await;
            let state = &mut *state;
            let Some(conn) = state.conn.as_mut() else {
                // The connection is gone, and with it the iterator (after the daemon's
                // linger time).
                return;
            };
            if !conn.session.is_connected() || conn.session.is_busy() {
                return;
            }
            let sent = conn.session.invoke(Request::oneway(close), Instant::now());
            state.seq = conn.session.seq();
            if sent.is_err() {
                return;
            }
            let mut failed = false;
            while let Some(b) = conn.session.poll_transmit() {
                if conn.stream.write_all(&b).await.is_err() {
                    failed = true;
                    break;
                }
            }
            if failed || conn.stream.flush().await.is_err() {
                drop_connection(state);
            }
        }));
    }
}

/// What a request does: call a method, read or write an attribute.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Method,
    GetAttr,
    SetAttr,
}

/// Whether an idle connection is still open: nothing is due between requests, so a read
/// that is ready at once (the daemon closed the connection, as when it restarted, or sent
/// something unasked) means the connection cannot carry the next request, and a new one is
/// opened before anything is sent. A read that would wait costs no system call when the
/// socket has not been reported readable.
fn idle_and_open(c: &mut Connection) -> bool {
    use futures::FutureExt;
    let mut probe = [0u8; 1];
    c.stream.read(&mut probe).now_or_never().is_none()
}

fn drop_connection(state: &mut State) {
    if let Some(mut c) = state.conn.take() {
        state.seq = c.session.seq();
        c.session.close();
    }
}

/// Payloads shorter than this are sent uncompressed, as Pyro5 does (reference §1.7).
const COMPRESS_MIN: usize = 100;

/// Inflates a COMPRESSED payload (a zlib stream), refusing one that inflates past `max`
/// bytes before inflating further (a small message cannot expand into a large allocation).
pub(crate) fn inflate(data: &[u8], max: usize) -> Result<Bytes, String> {
    use std::io::Read;
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(max));
    let mut z = flate2::read::ZlibDecoder::new(data).take(max as u64 + 1);
    z.read_to_end(&mut out)
        .map_err(|e| format!("the compressed payload is not a valid zlib stream: {e}"))?;
    if out.len() > max {
        return Err(format!(
            "message too large: the compressed payload inflates past the limit of {max} bytes"
        ));
    }
    Ok(Bytes::from(out))
}

/// Deflates `data` as Pyro5 does (`zlib.compress(data, 4)`); `None` when it is not worth it
/// (shorter than 100 bytes, or not smaller compressed).
pub(crate) fn deflate(data: &[u8]) -> Option<Bytes> {
    use std::io::Write;
    if data.len() < COMPRESS_MIN {
        return None;
    }
    let mut z = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(data.len() / 2),
        flate2::Compression::new(4),
    );
    z.write_all(data).ok()?;
    let out = z.finish().ok()?;
    (out.len() < data.len()).then(|| Bytes::from(out))
}

fn s(text: &str) -> Value {
    Value::Str(text.to_string())
}

fn codec_error(e: wirecall_codecs::CodecError) -> Error {
    Error::Codec {
        message: e.to_string(),
    }
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Map(entries) => entries
            .iter()
            .rev()
            .find(|(k, _)| matches!(k, Value::Str(k) if k == key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// The error of a serialized Python exception (reference §2.3): `__class__` without a
/// `builtins.` prefix, the args (one string as is, else their values joined), and the
/// `_pyroTraceback` lines.
fn remote_error(v: &Value) -> RemoteError {
    let class = match get(v, "__class__") {
        Some(Value::Str(c)) => c.as_str(),
        _ => "Pyro5.errors.PyroError",
    };
    let type_name = class
        .strip_prefix("builtins.")
        .or_else(|| class.strip_prefix("exceptions."))
        .unwrap_or(class)
        .to_string();
    let message = match get(v, "args") {
        Some(Value::List(a) | Value::Tuple(a)) => a
            .iter()
            .map(|x| match x {
                Value::Str(t) => t.clone(),
                other => format!("{other:?}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Some(Value::Str(t)) => t.clone(),
        _ => String::new(),
    };
    let trace = match get(v, "attributes").and_then(|a| get(a, "_pyroTraceback")) {
        Some(Value::List(l) | Value::Tuple(l)) => l
            .iter()
            .filter_map(|x| match x {
                Value::Str(t) => Some(t.as_str()),
                _ => None,
            })
            .collect::<String>()
            .trim_end()
            .to_string(),
        Some(Value::Str(t)) => t.trim_end().to_string(),
        _ => String::new(),
    };
    RemoteError {
        type_name,
        message,
        trace,
    }
}

/// Splits a `PYRO:` URI into the object id and the location (reference §3.1).
fn parse_uri(uri: &str) -> Result<(String, Location), Error> {
    let bad = |why: &str| {
        Error::config(format!(
            "bad Pyro5 URI `{uri}`: {why} (expected PYRO:object@host:port or PYRO:object@./u:/socket/path)"
        ))
    };
    let uri = uri.trim();
    let (protocol, rest) = uri.split_once(':').ok_or_else(|| bad("no `PYRO:`"))?;
    if !protocol.eq_ignore_ascii_case("PYRO") {
        return Err(bad(&format!(
            "protocol `{protocol}` is not supported here (only PYRO): resolve PYRONAME: and PYROMETA: URIs through a name server with PyroProxy::resolve"
        )));
    }
    let (object, location) = rest.split_once('@').ok_or_else(|| bad("no `@location`"))?;
    if object.is_empty() || object.chars().any(char::is_whitespace) {
        return Err(bad("the object id is empty or has whitespace"));
    }
    if let Some(path) = location.strip_prefix("./u:") {
        if path.is_empty() || path.contains(':') {
            return Err(bad("the unix socket path is empty or has a `:`"));
        }
        return Ok((object.to_string(), Location::Unix(path.to_string())));
    }
    let (host, port) = if let Some(v6) = location.strip_prefix('[') {
        let (host, port) = v6.split_once("]:").ok_or_else(|| bad("no port"))?;
        (host, port)
    } else {
        location.rsplit_once(':').ok_or_else(|| bad("no port"))?
    };
    if host.is_empty() || host.contains(['[', ']']) {
        return Err(bad("bad host"));
    }
    let port: u16 = port.parse().map_err(|_| bad("invalid port"))?;
    Ok((
        object.to_string(),
        Location::Tcp {
            host: host.to_string(),
            port,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(
            parse_uri("PYRO:test.calc@127.0.0.1:9999").unwrap(),
            (
                "test.calc".into(),
                Location::Tcp {
                    host: "127.0.0.1".into(),
                    port: 9999
                }
            )
        );
        assert_eq!(
            parse_uri("pyro:o@[::1]:80").unwrap().1,
            Location::Tcp {
                host: "::1".into(),
                port: 80
            }
        );
        assert_eq!(
            parse_uri("PYRO:x.obj@./u:/run/pyro/test.sock").unwrap().1,
            Location::Unix("/run/pyro/test.sock".into())
        );
        for bad in [
            "PYRO:obj@localhost",
            "PYRONAME:my.name",
            "PYRO:@h:1",
            "PYRO:obj@h:99999",
            "PYRO:obj@./u:",
            "obj@h:1",
        ] {
            let e = parse_uri(bad).unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{bad}: {e}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn exception_dicts() {
        let dict = Value::Map(vec![
            (s("__class__"), s("builtins.ValueError")),
            (s("__exception__"), Value::Bool(true)),
            (s("args"), Value::Tuple(vec![s("bad")])),
            (
                s("attributes"),
                Value::Map(vec![(
                    s("_pyroTraceback"),
                    Value::List(vec![
                        s("Traceback (most recent call last):\n"),
                        s("ValueError: bad\n"),
                    ]),
                )]),
            ),
        ]);
        assert_eq!(
            remote_error(&dict),
            RemoteError {
                type_name: "ValueError".into(),
                message: "bad".into(),
                trace: "Traceback (most recent call last):\nValueError: bad".into(),
            }
        );
        let pyro = Value::Map(vec![(s("__class__"), s("Pyro5.errors.DaemonError"))]);
        assert_eq!(remote_error(&pyro).type_name, "Pyro5.errors.DaemonError");
    }
}
