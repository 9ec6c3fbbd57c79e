//! One Pyro5 connection (`protocol/PYRO5.md`): a thin driver of
//! `wirecall_protocol::pyro::ServerSession`. Pyro5 answers one request at a time per
//! connection, so the driver is a read-handle-write loop: it feeds bytes to the session,
//! answers the CONNECT (object id, metadata), decodes each INVOKE with the connection's
//! serializer, runs the provider's method through the same handlers native calls use,
//! and writes the RESULT. Every wire rule (message checks, sequence numbers, timers, the
//! refusal of a serializer the server does not accept) is the session's.
//!
//! Errors reach Python as the exceptions a Pyro5 daemon sends (reference §2.3): a dict
//! with `__class__`, `__exception__`, `args` (the message) and `attributes._pyroTraceback`
//! (lines naming the object, the method, the Rust error type and its cause chain). The
//! class is chosen by [`python_class`]:
//!
//! | wirecall fault | Python exception |
//! |---|---|
//! | a handler's error whose type name is a Python builtin exception (`ValueError`, `KeyError`, ... e.g. `Responder::fail("ValueError", ..)`) | that builtin |
//! | a handler's error of a Rust parse or UTF-8 error type (`ParseIntError`, `Utf8Error`, ...) | `ValueError` |
//! | a handler's `std::io::Error` | `OSError` |
//! | any other handler error, or a panic | `RuntimeError` |
//! | arguments that do not fit the method | `TypeError` |
//! | unknown method | `AttributeError` |
//! | unknown object id | `Pyro5.errors.DaemonError` |
//! | refused by a `CallHook` | `PermissionError` |
//! | deadline passed | `TimeoutError` |
//! | result too large | `Pyro5.errors.MessageTooLargeError` |
//! | undecodable call | `Pyro5.errors.SerializeError` |
//! | batch, compressed or KEEPSERIALIZED calls (not supported yet) | `NotImplementedError` |
//! | anything else | `Pyro5.errors.PyroError` |

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirecall_codecs::Value;
use wirecall_protocol as proto;
use wirecall_protocol::pyro::{
    Connect, Invoke, Message, MessageLimits, MessageType, Reply, SerializerId, ServerConfig,
    ServerEvent, ServerSession,
};
use wirecall_transport::{ReadHalf, WriteHalf};

use super::dispatch::panic_fault;
use super::{read, Inner};
use crate::context::{
    AfterHooks, AnswerTo, ConnectionInfo, Flush, Incoming, PyroAnswer, ReplySink,
};
use crate::error::{Fault, FaultKind};
use crate::hooks::{CallHook, CallInfo};
use crate::provider::{full_name, getter_route, setter_route, Handled, Instance, Instances};
use crate::provider::{Outcome, ProviderInfo, Registered};
use crate::CodecId;

/// The object id of the built-in daemon object, as in Pyro5.
pub(crate) const DAEMON_OBJECT_ID: &str = "Pyro.Daemon";

/// The methods of the built-in daemon object, as its metadata lists them.
const DAEMON_METHODS: [&str; 6] = [
    "close_stream",
    "get_metadata",
    "get_next_stream_item",
    "info",
    "ping",
    "registered",
];

/// What the read buffer grows by.
const READ_CHUNK: usize = 16 * 1024;

/// Serves one connection whose first bytes were `PYRO`; `first` holds the bytes read so far.
pub(super) async fn serve(
    inner: Arc<Inner>,
    mut rd: ReadHalf,
    mut wr: WriteHalf,
    info: Arc<ConnectionInfo>,
    first: BytesMut,
    accepted_at: Instant,
) {
    let span = super::trace::connection_span(&info, "pyro5");
    tracing::debug!(parent: &span, "connection accepted");
    let mut config = ServerConfig::from_codecs(&inner.accepted);
    config.limits = MessageLimits {
        max_message_len: inner.limits.max_frame_len,
        max_annotations_len: inner.limits.max_annotations_len,
    };
    config.handshake_timeout = inner.timeouts.handshake;
    config.message_timeout = inner.timeouts.frame;
    config.idle_timeout = inner.timeouts.idle;
    if config.accepted.is_empty() {
        // The session needs a serializer to speak; say why in the form every Python client
        // reads (a marshal string), as the session does for its own refusals.
        let names: Vec<String> = inner.accepted.iter().map(|c| c.to_string()).collect();
        let reason = format!(
            "this server accepts no Pyro5 serializer (it accepts {}); Pyro5 clients need one of serpent, marshal, json, msgpack",
            names.join(", ")
        );
        tracing::info!(parent: &span, peer = %info.peer, reason = "no_common_codec", "Pyro5 connection refused: {reason}");
        if let Some(payload) = proto::pyro::marshal_str(&reason) {
            let m = Message::new(
                MessageType::CONNECTFAIL,
                SerializerId::MARSHAL,
                0,
                Bytes::from(payload),
            );
            let mut out = BytesMut::new();
            if m.encode(&mut out).is_ok() {
                let _ = wr.write_all(&out).await;
                let _ = wr.shutdown().await;
            }
        }
        return;
    }
    let mut session = match ServerSession::new(config, accepted_at) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(parent: &span, error = %e, "cannot serve a Pyro5 connection");
            return;
        }
    };
    let mut d = Driver {
        codec_limits: wirecall_codecs::Limits::default()
            .with_max_input(inner.limits.max_frame_len as usize),
        inner,
        info,
        span,
        instances: HashMap::new(),
        connected: false,
        calls: 0,
    };
    let started = Instant::now();
    let end = d.run(&mut session, &mut rd, &mut wr, first).await;
    let _ = wr.shutdown().await;
    match &end {
        Ok(why) => tracing::debug!(
            parent: &d.span,
            calls = d.calls,
            lasted_ms = started.elapsed().as_millis() as u64,
            "connection closed: {why}"
        ),
        Err(e) => tracing::info!(
            parent: &d.span,
            peer = %d.info.peer,
            reason = e.kind_name(),
            calls = d.calls,
            "Pyro5 connection closed: {e}"
        ),
    }
    d.teardown();
}

/// Per-connection state of the Pyro5 driver.
struct Driver {
    inner: Arc<Inner>,
    info: Arc<ConnectionInfo>,
    span: tracing::Span,
    /// Per-connection instances, by provider id.
    instances: HashMap<u16, Arc<dyn Instance>>,
    /// The CONNECT was accepted (instances were told of the connection).
    connected: bool,
    calls: u64,
    codec_limits: wirecall_codecs::Limits,
}

/// Why the loop ended without a peer's error.
type End = Result<&'static str, proto::ProtocolError>;

impl Driver {
    async fn run(
        &mut self,
        session: &mut ServerSession,
        rd: &mut ReadHalf,
        wr: &mut WriteHalf,
        first: BytesMut,
    ) -> End {
        let mut buf = first;
        let mut finalized = self.inner.finalized.subscribe();
        let mut input = Some(std::mem::take(&mut buf));
        let mut timed_out = false;
        loop {
            let now = crate::io::now();
            let r = if let Some(bytes) = input.take() {
                let r = session.handle_input(&bytes, now);
                buf = bytes;
                buf.clear();
                r
            } else if timed_out {
                timed_out = false;
                session.handle_timeout(now)
            } else {
                Ok(())
            };
            let r = match r {
                Ok(()) => self.handle_events(session, wr).await,
                Err(e) => Err(e),
            };
            // What is queued goes out even after an error (a CONNECTFAIL).
            let written = write_out(session, wr).await;
            r?;
            if written.is_err() {
                return Ok("writing failed");
            }
            if session.is_closed() {
                return Ok("closed");
            }
            let deadline = session.poll_timeout();
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(READ_CHUNK);
            }
            tokio::select! {
                biased;
                r = rd.read_buf(&mut buf) => match r {
                    Ok(0) => {
                        return match session.handle_eof() {
                            Ok(()) => Ok("the client closed the connection"),
                            Err(e) => Err(e),
                        };
                    }
                    Ok(_) => input = Some(std::mem::take(&mut buf)),
                    Err(_) => return Ok("reading failed"),
                },
                () = sleep_until(deadline), if deadline.is_some() => timed_out = true,
                _ = finalized.wait_for(|f| *f) => {
                    session.close();
                    return Ok("the server finalized");
                }
            }
        }
    }

    /// Answers every event the session has, awaiting each call's method in turn.
    async fn handle_events(
        &mut self,
        session: &mut ServerSession,
        wr: &mut WriteHalf,
    ) -> Result<(), proto::ProtocolError> {
        while let Some(ev) = session.poll_event() {
            match ev {
                ServerEvent::Connect(c) => self.on_connect(session, c)?,
                ServerEvent::Invoke(call) => {
                    // Replies already queued (a oneway call's neighbours) leave first.
                    if write_out(session, wr).await.is_err() {
                        session.close();
                        return Ok(());
                    }
                    let seq = call.seq;
                    let codec = call.serializer.codec();
                    if let Some(reply) = self.on_invoke(call).await {
                        let now = crate::io::now();
                        match session.reply(seq, reply, now) {
                            Err(e @ proto::ProtocolError::TooLong { .. }) if codec.is_some() => {
                                let f = Fault::new(
                                    FaultKind::LimitExceeded,
                                    format!("the server cannot send the result: {e}"),
                                );
                                let ex = exception_reply(codec.unwrap_or(CodecId::SERPENT), &f, "");
                                session.reply(seq, ex, now)?;
                            }
                            r => r?,
                        }
                    }
                }
                ServerEvent::Ping { .. } => {}
                _ => {}
            }
        }
        Ok(())
    }

    /// Answers the CONNECT: CONNECTOK with the object's metadata, or CONNECTFAIL naming
    /// the object ids served.
    fn on_connect(
        &mut self,
        session: &mut ServerSession,
        c: Connect,
    ) -> Result<(), proto::ProtocolError> {
        // The session accepted the serializer, so it names a codec.
        let Some(codec) = c.serializer.codec() else {
            return session.refuse_with_message("unknown serializer");
        };
        if c.flags.contains(proto::pyro::Flags::COMPRESSED) {
            return session.refuse_with_message(
                "compressed messages are not supported by this server yet; turn the client's COMPRESSION off",
            );
        }
        let object = match wirecall_codecs::decode_value(codec, &c.payload, &self.codec_limits) {
            Ok(v) => get(&v, "object").and_then(as_str).map(str::to_string),
            Err(_) => None,
        };
        let Some(object) = object else {
            return session.refuse_with_message(
                "the CONNECT payload is not a {'handshake': .., 'object': ..} dict",
            );
        };
        let Some(meta) = self.metadata_of(&object) else {
            let reason = format!(
                "unknown object `{object}`; this server serves: {}",
                self.served().join(", ")
            );
            return match encode(codec, &Value::Str(reason.clone())) {
                Some(payload) => session.refuse(Reply::new(payload)),
                None => session.refuse_with_message(&reason),
            };
        };
        let answer = Value::Map(vec![(s("handshake"), s("hello")), (s("meta"), meta)]);
        let Some(payload) = encode(codec, &answer) else {
            return session.refuse_with_message("the server could not encode its metadata");
        };
        session.accept(Reply::new(payload), crate::io::now())?;
        self.connected();
        Ok(())
    }

    /// The object ids served, the daemon's included, sorted.
    fn served(&self) -> Vec<String> {
        let mut ids: Vec<String> = read(&self.inner.objects).keys().cloned().collect();
        ids.push(DAEMON_OBJECT_ID.to_string());
        ids.sort();
        ids
    }

    fn registration(&self, object: &str) -> Option<Arc<Registered>> {
        let id = *read(&self.inner.objects).get(object)?;
        read(&self.inner.registry).get(&id).cloned()
    }

    /// Pyro's metadata dict of an object: `{'methods', 'oneway', 'attrs'}`.
    fn metadata_of(&self, object: &str) -> Option<Value> {
        if object == DAEMON_OBJECT_ID {
            return Some(meta_dict(
                DAEMON_METHODS.iter().map(|m| m.to_string()).collect(),
                Vec::new(),
                Vec::new(),
            ));
        }
        let reg = self.registration(object)?;
        Some(provider_meta(&reg.info))
    }

    /// Shared instances see on_connect; per-connection ones are created now.
    fn connected(&mut self) {
        let regs: Vec<Arc<Registered>> = read(&self.inner.registry).values().cloned().collect();
        for r in &regs {
            let inst = match &r.instances {
                Instances::Shared(i) => i.clone(),
                Instances::PerConnection(f) => {
                    let i = f();
                    self.instances.insert(r.info.provider_id, i.clone());
                    i
                }
            };
            inst.connect(&self.info);
        }
        self.connected = true;
    }

    fn teardown(self) {
        if !self.connected {
            return;
        }
        let regs: Vec<Arc<Registered>> = read(&self.inner.registry).values().cloned().collect();
        for r in &regs {
            let inst = match &r.instances {
                Instances::Shared(i) => Some(i.clone()),
                Instances::PerConnection(_) => self.instances.get(&r.info.provider_id).cloned(),
            };
            if let Some(i) = inst {
                i.disconnect(&self.info);
            }
        }
    }

    /// Runs one call; the reply to send (none for a oneway call).
    async fn on_invoke(&mut self, call: Invoke) -> Option<Reply> {
        self.calls += 1;
        let oneway = call.is_oneway();
        // The session accepted the serializer, so it names a codec.
        let codec = call.serializer.codec()?;
        let fail = |f: Fault, what: &str| (!oneway).then(|| exception_reply(codec, &f, what));
        let unsupported = |what: &str| {
            Fault::new(
                FaultKind::Internal,
                format!("{what} are not supported by this server yet"),
            )
        };
        if call.is_compressed() {
            let mut f = unsupported("compressed messages");
            f.type_name = "NotImplementedError".into();
            f.kind = FaultKind::Application;
            return fail(f, "");
        }
        if call.is_batch() || call.flags.contains(proto::pyro::Flags::KEEPSERIALIZED) {
            let mut f = unsupported(if call.is_batch() {
                "batch calls"
            } else {
                "KEEPSERIALIZED calls"
            });
            f.type_name = "NotImplementedError".into();
            f.kind = FaultKind::Application;
            return fail(f, "");
        }
        let decoded = wirecall_codecs::decode_value(codec, &call.payload, &self.codec_limits)
            .map_err(|e| e.to_string())
            .and_then(|v| parse_call(v, call.serializer));
        let (object, method, vargs, kwargs) = match decoded {
            Ok(c) => c,
            Err(e) => {
                let f = Fault::new(
                    FaultKind::CodecRefused,
                    format!("the call could not be decoded: {e}"),
                );
                return fail(f, "");
            }
        };
        let what = format!("{object}.{method}");
        if object == DAEMON_OBJECT_ID {
            let o = self.daemon_call(codec, &method, &vargs);
            return match o {
                _ if oneway => None,
                Outcome::Value(b) => Some(Reply::new(b)),
                Outcome::Fault(f) => Some(exception_reply(codec, &f, &what)),
            };
        }
        let Some(reg) = self.registration(&object) else {
            let f = Fault::new(
                FaultKind::UnknownProvider,
                format!(
                    "unknown object `{object}`; this server serves: {}",
                    self.served().join(", ")
                ),
            );
            return fail(f, &what);
        };
        // Remote attributes: `__getattr__(name)` and `__setattr__(name, value)`.
        let (route_name, vargs) = match (method.as_str(), vargs.as_slice()) {
            ("__getattr__", [Value::Str(a)]) => (getter_route(a), Vec::new()),
            ("__setattr__", [Value::Str(a), v]) => (setter_route(a), vec![v.clone()]),
            _ => (full_name(&reg.info.service, &method), vargs),
        };
        let Some(route) = reg.routes.get(route_name.as_str()).copied() else {
            let f = Fault::new(
                FaultKind::UnknownMethod,
                format!(
                    "remote object `{object}` has no exposed method or attribute `{method}`; it exposes: {}",
                    provider_names(&reg.info).join(", ")
                ),
            );
            return fail(f, &what);
        };
        let instance = match &reg.instances {
            Instances::Shared(i) => i.clone(),
            Instances::PerConnection(f) => self
                .instances
                .entry(reg.info.provider_id)
                .or_insert_with(|| {
                    let i = f();
                    i.connect(&self.info);
                    i
                })
                .clone(),
        };
        let provider_id = reg.info.provider_id;
        let request_id = u64::from(call.seq);
        let mut hooks = None;
        if self.inner.has_hooks.load(Ordering::Acquire) {
            let list: Vec<Arc<dyn CallHook>> = read(&self.inner.hooks).clone();
            let ci = CallInfo {
                provider_id,
                method: &route_name,
                peer: &self.info.peer,
                peer_identity: self.info.peer_identity(),
                codec,
                request_id,
            };
            for h in &list {
                if let Err(m) = h.before(&ci) {
                    tracing::info!(
                        parent: &self.span,
                        peer = %self.info.peer,
                        provider = provider_id,
                        method = %route_name,
                        reason = "hook",
                        "call refused by a hook: {m}"
                    );
                    return fail(Fault::new(FaultKind::PermissionDenied, m), &what);
                }
            }
            hooks = Some(Arc::new(AfterHooks {
                hooks: list,
                started: Instant::now(),
                method: route_name.clone(),
                provider_id,
                request_id,
                conn: self.info.clone(),
                codec,
                done: std::sync::atomic::AtomicBool::new(false),
            }));
        }
        let args = match encode(codec, &Value::List(vargs)) {
            Some(a) => a,
            None => return fail(unencodable(codec), &what),
        };
        let kwargs = match kwargs {
            Some(k) if !k.is_empty() => match encode(codec, &Value::Map(k)) {
                Some(k) => k,
                None => return fail(unencodable(codec), &what),
            },
            _ => Bytes::new(),
        };
        let (slot, answered) = PyroAnswer::new();
        let mut sink = ReplySink {
            to: AnswerTo::Pyro(slot),
            id: request_id,
            codec,
            oneway,
            hooks,
            trace: None,
        };
        if route.oneway && !oneway {
            // A oneway method called as a plain call: answered at once with None, as
            // Pyro's daemon does, and run without an answer.
            sink.answer(crate::context::encode_outcome(codec, &()), Flush::Now);
            sink.oneway = true;
        }
        let incoming = Incoming {
            codec,
            args,
            kwargs,
            conn: self.info.clone(),
            annotations: proto::Annotations::new(),
            provider_id,
            sink: sink.clone(),
            limits: self.codec_limits,
        };
        let handled = std::panic::catch_unwind(AssertUnwindSafe(|| {
            instance.dispatch(route.index, incoming)
        }));
        match handled {
            Err(panic) => sink.answer(Outcome::Fault(panic_fault(panic)), Flush::Now),
            Ok(Handled::Ready(outcome)) => sink.answer(outcome, Flush::Now),
            Ok(Handled::Deferred) => {}
            Ok(Handled::Detached(fut)) => {
                drop(tokio::spawn(async move {
                    let _ = AssertUnwindSafe(fut).catch_unwind().await;
                }));
            }
            Ok(Handled::Pending(fut)) => {
                let work = async move {
                    let outcome = AssertUnwindSafe(fut)
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|p| Outcome::Fault(panic_fault(p)));
                    sink.answer(outcome, Flush::Now);
                };
                // A oneway call runs beside the next ones, as in a Pyro5 daemon.
                if oneway {
                    drop(tokio::spawn(work));
                } else {
                    work.await;
                }
            }
        }
        if oneway {
            return None;
        }
        let outcome = answered.await.unwrap_or_else(|_| {
            Outcome::Fault(Fault::new(
                FaultKind::Internal,
                "the handler ended without answering",
            ))
        });
        Some(match outcome {
            Outcome::Value(b) => Reply::new(b),
            Outcome::Fault(f) => exception_reply(codec, &f, &what),
        })
    }

    /// The built-in `Pyro.Daemon` object (reference §2.9).
    fn daemon_call(&self, codec: CodecId, method: &str, vargs: &[Value]) -> Outcome {
        let value = |v: &Value| match encode(codec, v) {
            Some(b) => Outcome::Value(b),
            None => Outcome::Fault(unencodable(codec)),
        };
        match method {
            "ping" => value(&Value::Null),
            "registered" => value(&Value::List(
                self.served().into_iter().map(Value::Str).collect(),
            )),
            "info" => value(&Value::Str(format!(
                "{DAEMON_OBJECT_ID} of a wirecall server on {}, {} objects registered",
                self.info.local,
                read(&self.inner.objects).len() + 1
            ))),
            "get_metadata" => {
                let Some(object) = vargs.first().and_then(as_str) else {
                    return Outcome::Fault(Fault::new(
                        FaultKind::BadArguments,
                        "get_metadata takes the object id",
                    ));
                };
                match self.metadata_of(object) {
                    Some(m) => value(&m),
                    None => Outcome::Fault(Fault::new(
                        FaultKind::UnknownProvider,
                        format!("unknown object `{object}`"),
                    )),
                }
            }
            // No method returns a stream yet, so no stream id is known (Pyro5's answer to
            // an unknown one).
            "get_next_stream_item" | "close_stream" => {
                Outcome::Fault(Fault::new(FaultKind::Cancelled, "item stream terminated"))
            }
            _ => Outcome::Fault(Fault::new(
                FaultKind::UnknownMethod,
                format!(
                    "the daemon object has no method `{method}`; it exposes: {}",
                    DAEMON_METHODS.join(", ")
                ),
            )),
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await
    }
}

/// Writes what the session queued.
async fn write_out(session: &mut ServerSession, wr: &mut WriteHalf) -> std::io::Result<()> {
    let mut wrote = false;
    while let Some(b) = session.poll_transmit() {
        wr.write_all(&b).await?;
        wrote = true;
    }
    if wrote {
        wr.flush().await?;
    }
    Ok(())
}

fn s(text: &str) -> Value {
    Value::Str(text.to_string())
}

fn encode(codec: CodecId, v: &Value) -> Option<Bytes> {
    let mut out = Vec::new();
    wirecall_codecs::encode_value(codec, v, &mut out).ok()?;
    Some(Bytes::from(out))
}

fn unencodable(codec: CodecId) -> Fault {
    Fault::new(
        FaultKind::Internal,
        format!("the server could not encode a value with {codec}"),
    )
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Map(entries) => entries
            .iter()
            .rev()
            .find(|(k, _)| as_str(k) == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn as_str(v: &Value) -> Option<&str> {
    match v {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

/// A decoded call: object id, method, positional and keyword arguments.
type Call = (String, String, Vec<Value>, Option<Vec<(Value, Value)>>);

/// Reads `(objectId, method, vargs, kwargs)` (json: `{"object", "method", "params",
/// "kwargs"}`, reference §2.2).
fn parse_call(v: Value, serializer: SerializerId) -> Result<Call, String> {
    let parts = if serializer == SerializerId::JSON {
        let field = |k: &str| get(&v, k).cloned().unwrap_or(Value::Null);
        vec![
            field("object"),
            field("method"),
            field("params"),
            field("kwargs"),
        ]
    } else {
        match v {
            Value::Tuple(p) | Value::List(p) => p,
            _ => return Err("the call is not a (object, method, vargs, kwargs) tuple".into()),
        }
    };
    let [object, method, vargs, kwargs]: [Value; 4] = parts
        .try_into()
        .map_err(|_| "the call is not a 4-tuple (object, method, vargs, kwargs)".to_string())?;
    let (Value::Str(object), Value::Str(method)) = (object, method) else {
        return Err("the object id and method name must be strings".into());
    };
    let vargs = match vargs {
        Value::Tuple(a) | Value::List(a) => a,
        Value::Null => Vec::new(),
        _ => return Err("vargs must be a tuple or a list".into()),
    };
    let kwargs = match kwargs {
        Value::Map(k) => Some(k),
        Value::Null => None,
        _ => return Err("kwargs must be a dict or None".into()),
    };
    Ok((object, method, vargs, kwargs))
}

fn meta_dict(methods: Vec<String>, oneway: Vec<String>, attrs: Vec<String>) -> Value {
    let list = |v: Vec<String>| Value::List(v.into_iter().map(Value::Str).collect());
    Value::Map(vec![
        (s("methods"), list(methods)),
        (s("oneway"), list(oneway)),
        (s("attrs"), list(attrs)),
    ])
}

/// A method's name without its service prefix, as Python proxies call it.
fn short_name<'a>(info: &ProviderInfo, full: &'a str) -> &'a str {
    full.strip_prefix(info.service.as_str())
        .and_then(|r| r.strip_prefix('_'))
        .unwrap_or(full)
}

fn provider_meta(info: &ProviderInfo) -> Value {
    let methods = info
        .methods
        .iter()
        .map(|m| short_name(info, &m.name).to_string())
        .collect();
    let oneway = info
        .oneway()
        .map(|m| short_name(info, m).to_string())
        .collect();
    meta_dict(methods, oneway, info.attributes.clone())
}

fn provider_names(info: &ProviderInfo) -> Vec<String> {
    let mut v: Vec<String> = info
        .methods
        .iter()
        .map(|m| short_name(info, &m.name).to_string())
        .chain(info.attributes.iter().map(|a| format!("attribute {a}")))
        .collect();
    v.sort();
    v
}

/// Python's builtin exception classes a Python client rebuilds from `builtins.NAME` with
/// the message as the only argument.
const PYTHON_BUILTINS: &[&str] = &[
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "BufferError",
    "ConnectionError",
    "EOFError",
    "Exception",
    "FileExistsError",
    "FileNotFoundError",
    "FloatingPointError",
    "IndexError",
    "IOError",
    "KeyError",
    "LookupError",
    "MemoryError",
    "NotImplementedError",
    "OSError",
    "OverflowError",
    "PermissionError",
    "RecursionError",
    "RuntimeError",
    "TimeoutError",
    "TypeError",
    "ValueError",
    "ZeroDivisionError",
];

/// The Pyro5 errors a handler may raise by naming them as its error type
/// (`Pyro5.errors.NamingError`: the name server's "unknown name"), passed through as is.
const PYRO_ERRORS: &[&str] = &[
    "PyroError",
    "CommunicationError",
    "ConnectionClosedError",
    "TimeoutError",
    "ProtocolError",
    "MessageTooLargeError",
    "SerializeError",
    "NamingError",
    "DaemonError",
    "SecurityError",
];

/// The Python class a fault is raised as (the table in this module's documentation).
pub(crate) fn python_class(f: &Fault) -> String {
    let builtin = |n: &str| format!("builtins.{n}");
    match f.kind {
        FaultKind::Application => {
            let t = f.type_name.as_str();
            let bare = t.strip_prefix("builtins.").unwrap_or(t);
            if PYTHON_BUILTINS.contains(&bare) {
                builtin(bare)
            } else if t
                .strip_prefix("Pyro5.errors.")
                .is_some_and(|e| PYRO_ERRORS.contains(&e))
            {
                t.to_string()
            } else if [
                "ParseIntError",
                "ParseFloatError",
                "ParseBoolError",
                "ParseCharError",
                "Utf8Error",
                "FromUtf8Error",
                "TryFromIntError",
            ]
            .iter()
            .any(|e| t.ends_with(e))
            {
                builtin("ValueError")
            } else if t.ends_with("io::error::Error") || t == "std::io::Error" {
                builtin("OSError")
            } else {
                builtin("RuntimeError")
            }
        }
        FaultKind::BadArguments => builtin("TypeError"),
        FaultKind::UnknownMethod => builtin("AttributeError"),
        FaultKind::UnknownProvider => "Pyro5.errors.DaemonError".into(),
        FaultKind::PermissionDenied => builtin("PermissionError"),
        FaultKind::DeadlineExceeded => builtin("TimeoutError"),
        FaultKind::LimitExceeded => "Pyro5.errors.MessageTooLargeError".into(),
        FaultKind::CodecRefused => "Pyro5.errors.SerializeError".into(),
        _ => "Pyro5.errors.PyroError".into(),
    }
}

/// The exception dict of a fault (reference §2.3), flag EXCEPTION, in `codec`. `what` is
/// `object.method` (empty when the call could not be read).
fn exception_reply(codec: CodecId, f: &Fault, what: &str) -> Reply {
    let class = python_class(f);
    let mut lines = vec![if what.is_empty() {
        "wirecall (Rust) remote error:\n".to_string()
    } else {
        format!("wirecall (Rust) remote error in {what}:\n")
    }];
    if !f.type_name.is_empty() {
        lines.push(format!("  error type: {}\n", f.type_name));
    }
    for l in f.trace.lines().filter(|l| !l.is_empty()) {
        lines.push(format!("  {l}\n"));
    }
    let short = class.rsplit('.').next().unwrap_or(&class);
    lines.push(format!("{short}: {}\n", f.message));
    let dict = Value::Map(vec![
        (s("__class__"), Value::Str(class.clone())),
        (s("__exception__"), Value::Bool(true)),
        (s("args"), Value::Tuple(vec![Value::Str(f.message.clone())])),
        (
            s("attributes"),
            Value::Map(vec![(
                s("_pyroTraceback"),
                Value::List(lines.into_iter().map(Value::Str).collect()),
            )]),
        ),
    ]);
    let payload = encode(codec, &dict).unwrap_or_else(|| {
        // Every Pyro codec writes strings, bools, tuples and dicts; a message that is
        // not valid for the codec is replaced by a plain one.
        let plain = Value::Map(vec![
            (s("__class__"), s("Pyro5.errors.PyroError")),
            (s("__exception__"), Value::Bool(true)),
            (
                s("args"),
                Value::Tuple(vec![s("the server could not encode its error")]),
            ),
            (
                s("attributes"),
                Value::Map(vec![(s("_pyroTraceback"), Value::Null)]),
            ),
        ]);
        encode(codec, &plain).unwrap_or_default()
    });
    Reply::exception(payload)
}
