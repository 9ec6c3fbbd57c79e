//! One Pyro5 connection (`protocol/PYRO5.md`): a thin driver of
//! `wirecall_protocol::pyro::ServerSession`. Pyro5 answers one request at a time per
//! connection, so the driver is a read-handle-write loop: it feeds bytes to the session,
//! answers the CONNECT (object id, metadata), decodes each INVOKE with the connection's
//! serializer, runs the provider's method through the same handlers native calls use,
//! and writes the RESULT. Every wire rule (message checks, sequence numbers, timers, the
//! refusal of a serializer the server does not accept) is the session's.
//!
//! Around that: COMPRESSED requests are inflated (bounded by the frame limit) and answered
//! compressed; BATCH requests run their calls in order by `BatchRun`'s rule; the server's
//! `PyroClasses` convert class dicts in the arguments; each call gets a tracing span; and
//! when the server finalizes, the connection closes after the call it is answering.
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
//! | a bad zlib stream, or one inflating past the frame limit | `Pyro5.errors.SerializeError` |
//! | KEEPSERIALIZED calls (not supported) | `NotImplementedError` |
//! | anything else | `Pyro5.errors.PyroError` |

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::Instrument;
use wirecall_codecs::Value;
use wirecall_protocol as proto;
use wirecall_protocol::pyro::{
    BatchEnd, BatchItem, BatchRun, Connect, Invoke, MessageLimits, Reply, SerializerId,
    ServerConfig, ServerEvent, ServerSession, BATCH_METHOD, EXCEPTION_WRAPPER_CLASS,
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
use crate::provider::{Outcome, ProviderInfo, Registered, Route};
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

impl super::ServerBuilder {
    /// Converters of Pyro5 class dicts (Pyro5's `register_dict_to_class`, see
    /// [`crate::PyroClasses`]) applied to the arguments of Pyro5 calls before the
    /// provider's method reads them: a Python instance arriving as
    /// `{"__class__": "mymod.Temperature", ...}` can reach a method as a plain value.
    pub fn pyro_classes(mut self, classes: crate::PyroClasses) -> Self {
        self.pyro_classes = classes;
        self
    }
}

/// Serves one connection whose first bytes were `PYRO`; `first` holds the bytes read so far.
pub(super) async fn serve(
    inner: Arc<Inner>,
    mut rd: ReadHalf,
    mut wr: WriteHalf,
    info: Arc<ConnectionInfo>,
    first: BytesMut,
    accepted_at: Instant,
) {
    inner.pyro_open.fetch_add(1, Ordering::AcqRel);
    let _open = PyroOpen(inner.clone());
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
        // The session refuses every CONNECT; its reason says what the server speaks.
        let names: Vec<String> = inner.accepted.iter().map(|c| c.to_string()).collect();
        config.refusal_hint = Some(format!(
            "this server accepts no Pyro5 serializer (it accepts {}); Pyro5 clients need one of serpent, marshal, json, msgpack",
            names.join(", ")
        ));
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
        reserved: 0,
        streams: HashMap::new(),
        streams_started: 0,
    };
    let started = Instant::now();
    let end = d.run(&mut session, &mut rd, &mut wr, first).await;
    d.inner.budget.give_back(std::mem::take(&mut d.reserved));
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

/// Counts a Pyro5 connection in [`Inner::pyro_open`] while it is served, and tells a
/// finalize waiting for connections to close when it ends.
struct PyroOpen(Arc<Inner>);

impl Drop for PyroOpen {
    fn drop(&mut self) {
        self.0.pyro_open.fetch_sub(1, Ordering::AcqRel);
        self.0.closed.notify_waiters();
    }
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
    /// Bytes of the server-wide receive budget this connection holds (see `hold_input`).
    reserved: usize,
    /// The remote iterators of this connection (methods that returned an
    /// [`ItemStream`](crate::ItemStream)), by stream id, with the codec their items are
    /// encoded in: read one item per `Pyro.Daemon.get_next_stream_item`, dropped by
    /// `close_stream`, at their end, or with the connection.
    streams: HashMap<String, (CodecId, crate::stream::EncodedStream)>,
    /// Streams started on this connection (names the next one).
    streams_started: u64,
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
        // Set when finalize starts: the call being answered is answered (the loop only
        // waits here between calls), then the connection closes, as Pyro5 has no message
        // to say so (the client's next call connects again and is refused).
        let mut draining = self.inner.draining.subscribe();
        let mut input = Some(std::mem::take(&mut buf));
        let mut timed_out = false;
        loop {
            let now = crate::io::now();
            let r = if let Some(bytes) = input.take() {
                let r = session
                    .handle_input(&bytes, now)
                    .and_then(|()| self.hold_input(session));
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
                buf.reserve(super::conn::READ_CHUNK);
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
                _ = draining.wait_for(|f| *f) => {
                    session.close();
                    return Ok("the server is finalizing");
                }
            }
        }
    }

    /// Holds the session's buffered input (a message still arriving, or one waiting behind
    /// the call being answered) against the server-wide receive budget that native
    /// connections reserve their large frames from: input that fits the ordinary read
    /// buffer is not counted. Past the budget the connection is closed (Pyro5 has no
    /// message to say why; the log does).
    fn hold_input(&mut self, session: &mut ServerSession) -> Result<(), proto::ProtocolError> {
        let budget = &self.inner.budget;
        let pending = session.buffered_input();
        if !budget.hold(&mut self.reserved, pending) {
            session.close();
            return Err(proto::ProtocolError::TooLong {
                what: "buffered input (server-wide receive buffer budget)",
                len: super::conn::Budget::need(pending) as u64,
                max: budget.max() as u64,
            });
        }
        Ok(())
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
        let compressed = c.flags.contains(proto::pyro::Flags::COMPRESSED);
        let payload = if compressed {
            match crate::client::pyro::inflate(&c.payload, self.codec_limits.max_input) {
                Ok(p) => p,
                Err(e) => return session.refuse_with_message(&e),
            }
        } else {
            c.payload.clone()
        };
        let object = match wirecall_codecs::decode_value(codec, &payload, &self.codec_limits) {
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
        let reply = Reply::new(payload);
        let reply = if compressed {
            compress_reply(reply)
        } else {
            reply
        };
        session.accept(reply, crate::io::now())?;
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

    fn teardown(mut self) {
        if let Some(l) = &self.inner.lingering {
            // Remote iterators stay readable from a new connection for the linger time
            // (Pyro's ITER_STREAM_LINGER).
            for (id, (codec, items)) in self.streams.drain() {
                l.park_pyro(id, codec, items);
            }
        }
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

    /// Runs one call (or batch); the reply to send (none for a oneway call). A compressed
    /// request is inflated first and answered compressed.
    async fn on_invoke(&mut self, call: Invoke) -> Option<Reply> {
        self.calls += 1;
        let oneway = call.is_oneway();
        // The session accepted the serializer, so it names a codec.
        let codec = call.serializer.codec()?;
        let fail = |f: Fault, what: &str| (!oneway).then(|| exception_reply(codec, &f, what));
        if call.flags.contains(proto::pyro::Flags::KEEPSERIALIZED) {
            let f = Fault::application(
                "NotImplementedError",
                "KEEPSERIALIZED calls (SerializedBlob) are not supported by this server; send the call's arguments as values",
                "",
            );
            return fail(f, "");
        }
        let compressed = call.is_compressed();
        let payload = if compressed {
            match crate::client::pyro::inflate(&call.payload, self.codec_limits.max_input) {
                Ok(p) => p,
                Err(e) => return fail(Fault::new(FaultKind::CodecRefused, e), ""),
            }
        } else {
            call.payload.clone()
        };
        let reply = self.on_call(&call, &payload, codec).await?;
        Some(if compressed {
            compress_reply(reply)
        } else {
            reply
        })
    }

    async fn on_call(&mut self, call: &Invoke, payload: &[u8], codec: CodecId) -> Option<Reply> {
        let oneway = call.is_oneway();
        let fail = |f: Fault, what: &str| (!oneway).then(|| exception_reply(codec, &f, what));
        let decoded = wirecall_codecs::decode_value(codec, payload, &self.codec_limits)
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
        let (vargs, kwargs) = match self.convert_args(vargs, kwargs) {
            Ok(a) => a,
            Err(f) => return fail(f, &what),
        };
        if object == DAEMON_OBJECT_ID && !call.is_batch() {
            match method.as_str() {
                "get_next_stream_item" => {
                    let r = self.next_stream_item(codec, &vargs, &what).await;
                    return (!oneway).then_some(r);
                }
                "close_stream" => {
                    // Dropping the stream drops the handler's producer.
                    if let Some(id) = vargs.first().and_then(as_str) {
                        if self.streams.remove(id).is_none() {
                            if let Some(l) = &self.inner.lingering {
                                l.take_pyro(id);
                            }
                        }
                    }
                }
                _ => {}
            }
            let o = self.daemon_call(codec, &method, &vargs);
            return match o {
                _ if oneway => None,
                Outcome::Value(b) => Some(Reply::new(b)),
                Outcome::Fault(f) => Some(exception_reply(codec, &f, &what)),
                Outcome::Attached(_) => Some(exception_reply(codec, &attached_fault(), &what)),
                // The daemon object returns no streams.
                Outcome::Stream(_) => None,
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
        if call.is_batch() || method == BATCH_METHOD {
            return self.batch(call, &reg, &object, vargs, codec).await;
        }
        let (route, route_name, vargs) = match resolve(&reg, &object, &method, vargs) {
            Ok(r) => r,
            Err(f) => return fail(f, &what),
        };
        let kwargs = kwargs.unwrap_or_default();
        let outcome = self
            .run_method(
                &reg, route, route_name, vargs, kwargs, codec, oneway, call.seq,
            )
            .await?;
        Some(match outcome {
            Outcome::Value(b) => Reply::new(b),
            Outcome::Fault(f) => exception_reply(codec, &f, &what),
            Outcome::Attached(_) => exception_reply(codec, &attached_fault(), &what),
            Outcome::Stream(items) => self.start_stream(codec, items),
        })
    }

    /// Applies the server's class converters to a call's arguments.
    #[allow(clippy::type_complexity)]
    fn convert_args(
        &self,
        vargs: Vec<Value>,
        kwargs: Option<Vec<(Value, Value)>>,
    ) -> Result<(Vec<Value>, Option<Vec<(Value, Value)>>), Fault> {
        let classes = &self.inner.pyro_classes;
        if classes.is_empty() {
            return Ok((vargs, kwargs));
        }
        let bad = |e: String| Fault::new(FaultKind::BadArguments, e);
        let vargs = match classes.convert(Value::List(vargs)).map_err(bad)? {
            Value::List(v) => v,
            other => vec![other],
        };
        let kwargs = match kwargs {
            Some(k) => match classes.convert(Value::Map(k)).map_err(bad)? {
                Value::Map(k) => Some(k),
                _ => return Err(bad("a converter replaced the keyword arguments".into())),
            },
            None => None,
        };
        Ok((vargs, kwargs))
    }

    /// A batch (reference §2.5, the rule is [`BatchRun`]'s): the `(method, vargs, kwargs)`
    /// triples run in order on `reg`'s object, stopping at the first that raises; the reply
    /// is the list of results, the exception wrapped as Pyro5's `_ExceptionWrapper`.
    async fn batch(
        &mut self,
        call: &Invoke,
        reg: &Arc<Registered>,
        object: &str,
        vargs: Vec<Value>,
        codec: CodecId,
    ) -> Option<Reply> {
        let oneway = call.is_oneway();
        let what = format!("{object}.{BATCH_METHOD}");
        let mut triples = Vec::with_capacity(vargs.len());
        for t in vargs {
            match t {
                Value::Tuple(p) | Value::List(p) if p.len() == 3 => {
                    let Ok([m, a, k]) = <[Value; 3]>::try_from(p) else {
                        return bad_batch(codec, oneway, &what);
                    };
                    let args = match a {
                        Value::Tuple(a) | Value::List(a) => a,
                        Value::Null => Vec::new(),
                        _ => return bad_batch(codec, oneway, &what),
                    };
                    let kwargs = match k {
                        Value::Map(k) => k,
                        Value::Null => Vec::new(),
                        _ => return bad_batch(codec, oneway, &what),
                    };
                    let Value::Str(m) = m else {
                        return bad_batch(codec, oneway, &what);
                    };
                    triples.push((m, args, kwargs));
                }
                _ => return bad_batch(codec, oneway, &what),
            }
        }
        let mut run = BatchRun::new(triples.len(), call.flags);
        let mut triples = triples.into_iter();
        while run.next_call().is_some() {
            let Some((method, args, kwargs)) = triples.next() else {
                break;
            };
            let call_what = format!("{object}.{method}");
            let (route, route_name, args) = match resolve(reg, object, &method, args) {
                Ok(r) => r,
                Err(f) => {
                    run.fail(exception_reply(codec, &f, &call_what).payload);
                    continue;
                }
            };
            // Each call of a batch is awaited (even in a oneway batch) so they run in order.
            let outcome = self
                .run_method(reg, route, route_name, args, kwargs, codec, false, call.seq)
                .await
                .unwrap_or_else(|| crate::context::encode_outcome(codec, &()));
            match outcome {
                Outcome::Value(b) => run.value(b),
                Outcome::Fault(f) => run.raised(exception_reply(codec, &f, &call_what).payload),
                Outcome::Attached(_) => {
                    run.raised(exception_reply(codec, &attached_fault(), &call_what).payload)
                }
                Outcome::Stream(_) => run.raised(
                    exception_reply(
                        codec,
                        &Fault::new(
                            FaultKind::Internal,
                            "a method returning a stream cannot be called in a batch; call it alone",
                        ),
                        &call_what,
                    )
                    .payload,
                ),
            }
        }
        let end = run.finish();
        let list = match &end {
            BatchEnd::Results(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let (bytes, raised) = match item {
                        BatchItem::Value(b) => (b, false),
                        BatchItem::Raised(b) => (b, true),
                    };
                    let v = match wirecall_codecs::decode_value(codec, bytes, &self.codec_limits) {
                        Ok(v) => v,
                        Err(_) => return fail_unencodable(codec, &what),
                    };
                    out.push(if raised {
                        Value::Map(vec![
                            (s("__class__"), s(EXCEPTION_WRAPPER_CLASS)),
                            (s("exception"), v),
                        ])
                    } else {
                        v
                    });
                }
                match encode(codec, &Value::List(out)) {
                    Some(b) => b,
                    None => return fail_unencodable(codec, &what),
                }
            }
            _ => Bytes::new(),
        };
        end.reply(list)
    }

    /// Runs the method `route` of `reg`'s object through the same handlers native calls use,
    /// with the server's call hooks; its outcome (none for a oneway call).
    #[allow(clippy::too_many_arguments)]
    async fn run_method(
        &mut self,
        reg: &Arc<Registered>,
        route: Route,
        route_name: String,
        vargs: Vec<Value>,
        kwargs: Vec<(Value, Value)>,
        codec: CodecId,
        oneway: bool,
        seq: u16,
    ) -> Option<Outcome> {
        if route.uploads {
            // Pyro5 has no argument streams (SPEC §6.13 is native only).
            return (!oneway).then(|| {
                Outcome::Fault(Fault::new(
                    FaultKind::BadArguments,
                    format!(
                        "`{route_name}` takes a stream of argument items, which the Pyro5 protocol cannot send: call it from a native wirecall client"
                    ),
                ))
            });
        }
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
        let request_id = u64::from(seq);
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
                    return (!oneway)
                        .then(|| Outcome::Fault(Fault::new(FaultKind::PermissionDenied, m)));
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
            None => return (!oneway).then(|| Outcome::Fault(unencodable(codec))),
        };
        let kwargs = if kwargs.is_empty() {
            Bytes::new()
        } else {
            match encode(codec, &Value::Map(kwargs)) {
                Some(k) => k,
                None => return (!oneway).then(|| Outcome::Fault(unencodable(codec))),
            }
        };
        // A span per call, as native calls have (nothing is built unless DEBUG is on for
        // the server's trace module).
        let trace = super::trace::CallTrace::start(
            &self.span,
            provider_id,
            &route_name,
            codec,
            request_id,
            oneway,
        );
        let (slot, answered) = PyroAnswer::new();
        let mut sink = ReplySink {
            to: AnswerTo::Pyro(slot),
            id: request_id,
            codec,
            oneway,
            hooks,
            trace: trace.clone(),
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
            // Pyro5 calls carry no deadline.
            deadline_at: None,
            // Pyro5 peers have no attachments: byte values are inline.
            bulk: None,
            upload: Default::default(),
        };
        // As on native connections: oneway calls and blocking methods run off the
        // connection's task, on the blocking pool (see `dispatch::off_reader`).
        if sink.oneway || reg.runs_off_reader(&route) {
            super::dispatch::off_reader(super::dispatch::OffReader {
                tasks: &Arc::default(),
                id: request_id,
                track: false,
                block: reg.runs_off_reader(&route),
                instance,
                index: route.index,
                incoming,
                sink,
                span: trace.as_ref().map(|t| t.span().clone()),
            });
            if oneway {
                return None;
            }
            return Some(answered.await.unwrap_or_else(|_| {
                Outcome::Fault(Fault::new(
                    FaultKind::Internal,
                    "the handler ended without answering",
                ))
            }));
        }
        let started = std::time::Instant::now();
        let handled = {
            let _entered = trace.as_ref().map(|t| t.span().clone().entered());
            std::panic::catch_unwind(AssertUnwindSafe(|| {
                instance.dispatch(route.index, incoming)
            }))
        };
        if let Some(budget) = self.inner.blocking_budget {
            let held = started.elapsed();
            if held <= budget {
                reg.within_budget(&route);
            } else if reg.overran(&route) {
                tracing::warn!(
                    parent: &self.span,
                    provider = provider_id,
                    method = %route_name,
                    held_ms = held.as_millis() as u64,
                    budget_ms = budget.as_millis() as u64,
                    reason = "blocking_budget",
                    "`{route_name}` of provider {provider_id} held a connection's task for {held:?}, over the blocking budget of {budget:?}: its calls now run on the blocking pool; mark it #[remote(blocking)] to say so up front, or raise the budget (blocking_budget, WIRECALL_BLOCKING_BUDGET)"
                );
            }
        }
        let span = trace
            .as_ref()
            .map(|t| t.span().clone())
            .unwrap_or_else(tracing::Span::none);
        match handled {
            Err(panic) => sink.answer(Outcome::Fault(panic_fault(panic)), Flush::Now),
            Ok(Handled::Ready(outcome)) => sink.answer(outcome, Flush::Now),
            Ok(Handled::Deferred) => {}
            Ok(Handled::Detached(fut)) => {
                drop(tokio::spawn(
                    async move {
                        let _ = AssertUnwindSafe(fut).catch_unwind().await;
                    }
                    .instrument(span),
                ));
            }
            Ok(Handled::Pending(fut)) => {
                let work = async move {
                    let outcome = AssertUnwindSafe(fut)
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|p| Outcome::Fault(panic_fault(p)));
                    sink.answer(outcome, Flush::Now);
                }
                .instrument(span);
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
        Some(answered.await.unwrap_or_else(|_| {
            Outcome::Fault(Fault::new(
                FaultKind::Internal,
                "the handler ended without answering",
            ))
        }))
    }

    /// The built-in `Pyro.Daemon` object (reference §2.9).
    /// Keeps `items` as a remote iterator of this connection and answers as a Pyro5 daemon
    /// does (flags EXCEPTION|ITEMSTREAMRESULT, annotation `STRM`, reference §2.7).
    fn start_stream(&mut self, codec: CodecId, items: crate::stream::EncodedStream) -> Reply {
        self.streams_started += 1;
        // Unguessable: a lingering stream (SPEC §6.14) is read again by whoever names it.
        let id: String = std::iter::once("wirecall-".to_string())
            .chain(
                crate::stream::new_token()
                    .iter()
                    .map(|b| format!("{b:02x}")),
            )
            .collect();
        let old = Fault::application(
            "Pyro5.errors.ProtocolError",
            "result of call is an iterator",
            "",
        );
        let payload = exception_reply(codec, &old, "").payload;
        self.streams.insert(id.clone(), (codec, items));
        Reply::stream(&id, payload)
    }

    /// `Pyro.Daemon.get_next_stream_item(streamId)`: the stream's next item, a
    /// `StopIteration` at its end, or the stream's error (which ends it).
    async fn next_stream_item(&mut self, codec: CodecId, vargs: &[Value], what: &str) -> Reply {
        use futures::StreamExt;
        let terminated = || Fault::new(FaultKind::Cancelled, "item stream terminated");
        let Some(id) = vargs.first().and_then(as_str).map(str::to_string) else {
            return exception_reply(codec, &terminated(), what);
        };
        if !self.streams.contains_key(&id) {
            // A stream of a connection that ended, kept for its client (ITER_STREAM_LINGER).
            // A client that reconnected at once can be here before the server saw its old
            // connection end: one of this server's ids is waited for, briefly.
            if let Some(l) = self.inner.lingering.clone() {
                let waits = if id.starts_with("wirecall-") { 50 } else { 0 };
                for i in 0..=waits {
                    if let Some(kept) = l.take_pyro(&id) {
                        self.streams.insert(id.clone(), kept);
                        break;
                    }
                    if i < waits {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                }
            }
        }
        let Some((items_codec, items)) = self.streams.get_mut(&id) else {
            return exception_reply(codec, &terminated(), what);
        };
        if *items_codec != codec {
            let f = Fault::new(
                FaultKind::CodecRefused,
                format!(
                    "the stream's items are encoded with {items_codec}: read it with the serializer of the call that started it"
                ),
            );
            return exception_reply(codec, &f, what);
        }
        match items.0.next().await {
            Some(Ok(item)) => Reply::new(item),
            Some(Err(f)) => {
                self.streams.remove(&id);
                exception_reply(codec, &f, what)
            }
            None => {
                self.streams.remove(&id);
                let stop = Value::Map(vec![
                    (s("__class__"), Value::Str("builtins.StopIteration".into())),
                    (s("__exception__"), Value::Bool(true)),
                    (s("args"), Value::Tuple(Vec::new())),
                    (s("attributes"), Value::Map(Vec::new())),
                ]);
                match encode(codec, &stop) {
                    Some(b) => Reply::exception(b),
                    None => exception_reply(codec, &unencodable(codec), what),
                }
            }
        }
    }

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
            // Streams are read by `next_stream_item`; what reaches here is a call of a
            // batch: Pyro5's answers for an unknown stream.
            "get_next_stream_item" => {
                Outcome::Fault(Fault::new(FaultKind::Cancelled, "item stream terminated"))
            }
            "close_stream" => value(&Value::Null),
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

/// Finds the route of `method` (or of the attribute `__getattr__`/`__setattr__` name) on
/// `reg`'s object: the route, its name and the arguments to pass.
fn resolve(
    reg: &Registered,
    object: &str,
    method: &str,
    vargs: Vec<Value>,
) -> Result<(Route, String, Vec<Value>), Fault> {
    // Remote attributes: `__getattr__(name)` and `__setattr__(name, value)`.
    let (route_name, vargs) = match (method, vargs.as_slice()) {
        ("__getattr__", [Value::Str(a)]) => (getter_route(a), Vec::new()),
        ("__setattr__", [Value::Str(a), v]) => (setter_route(a), vec![v.clone()]),
        _ => (full_name(&reg.info.service, method), vargs),
    };
    match reg.routes.get(route_name.as_str()).copied() {
        Some(route) => Ok((route, route_name, vargs)),
        None => Err(Fault::new(
            FaultKind::UnknownMethod,
            format!(
                "remote object `{object}` has no exposed method or attribute `{method}`; it exposes: {}",
                provider_names(&reg.info).join(", ")
            ),
        )),
    }
}

/// The answer to a batch whose calls are not `(method, vargs, kwargs)` triples.
fn bad_batch(codec: CodecId, oneway: bool, what: &str) -> Option<Reply> {
    let f = Fault::new(
        FaultKind::CodecRefused,
        "a batch's vargs must be a list of (method, vargs, kwargs) triples",
    );
    (!oneway).then(|| exception_reply(codec, &f, what))
}

fn fail_unencodable(codec: CodecId, what: &str) -> Option<Reply> {
    Some(exception_reply(codec, &unencodable(codec), what))
}

/// A reply to a compressed request, compressed as a Pyro5 peer with COMPRESSION on does.
fn compress_reply(mut reply: Reply) -> Reply {
    if let Some(z) = crate::client::pyro::deflate(&reply.payload) {
        reply.payload = z;
        reply.flags = reply.flags.union(proto::pyro::Flags::COMPRESSED);
    }
    reply
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

/// A result with bulk attachments reached a Pyro5 connection. Not expected: results of Pyro5
/// calls are encoded without the bulk side channel (their `Bulk` values are inline bytes,
/// Pyro5 has no attachments); failing the call says so rather than dropping the values.
fn attached_fault() -> Fault {
    Fault::new(
        FaultKind::Internal,
        "a result carrying bulk attachments cannot be sent over Pyro5, which has none",
    )
}
