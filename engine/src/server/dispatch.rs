//! Call dispatch: routes a call the connection's machine accepted to its provider's
//! handler, runs the hooks, and answers through the machine. Runs plain handlers inline on
//! the reader, sends oneway calls and blocking methods to the blocking pool
//! ([`off_reader`]), and measures inline handlers against the blocking budget (rules in
//! `crate::provider`'s module docs).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::FutureExt;
use std::future::Future;
use tokio::task::AbortHandle;
use tracing::Instrument;
use wirecall_protocol as proto;

use super::trace::CallTrace;
use super::{lock, read, Inner, DAEMON_PROVIDER_ID};
use crate::context::{AfterHooks, AnswerTo, ConnectionInfo, Flush, Incoming, ReplySink};
use crate::error::{Fault, FaultKind};
use crate::hooks::{CallHook, CallInfo};
use crate::io::Wire;
use crate::provider::{Handled, Instance, Outcome, Registered};

/// The handlers of one connection running on tasks of their own, by request id.
#[derive(Default)]
pub(crate) struct Tasks {
    map: Mutex<HashMap<u64, AbortHandle, rustc_hash::FxBuildHasher>>,
}

impl Tasks {
    /// Spawns `fut` as the task of call `id`. The map is locked until the task is in it,
    /// so the task cannot finish and look for itself before it is there.
    pub(crate) fn spawn(&self, id: u64, fut: impl Future<Output = ()> + Send + 'static) {
        let mut m = lock(&self.map);
        let task = tokio::spawn(fut);
        m.insert(id, task.abort_handle());
    }

    /// Runs `work` on tokio's blocking pool as the task of call `id` (see [`Tasks::spawn`]).
    /// Aborting it stops it only before it starts; a handler already running finishes, and
    /// its late answer is dropped by the machine.
    fn spawn_blocking(&self, id: u64, work: impl FnOnce() + Send + 'static) {
        let mut m = lock(&self.map);
        let task = tokio::task::spawn_blocking(work);
        m.insert(id, task.abort_handle());
    }

    /// Removes `id`; returns its task and whether others remain.
    pub(crate) fn remove(&self, id: u64) -> (Option<AbortHandle>, bool) {
        let mut m = lock(&self.map);
        let t = m.remove(&id);
        (t, !m.is_empty())
    }

    pub(crate) fn drain(&self) -> Vec<AbortHandle> {
        let mut m = lock(&self.map);
        m.drain().map(|(_, t)| t).collect()
    }
}

/// The longest method name [`HotRoute`] keeps.
const HOT_NAME: usize = 48;

/// A method direct calls reached, kept by the provider id and the name's bytes.
struct HotRoute {
    provider: u16,
    len: u8,
    name: [u8; HOT_NAME],
    route: crate::provider::Route,
    reg: Arc<Registered>,
    instance: Arc<dyn Instance>,
}

impl HotRoute {
    fn name(&self) -> &[u8] {
        &self.name[..usize::from(self.len)]
    }
}

/// Per-connection state of the dispatcher.
pub(super) struct Conn {
    pub(super) inner: Arc<Inner>,
    pub(super) info: Arc<ConnectionInfo>,
    pub(super) wire: Arc<Wire<proto::ServerConnection>>,
    pub(super) tasks: Arc<Tasks>,
    /// This connection's copy of the registry (no shared lock or reference count per call),
    /// and the registry generation it was copied at.
    providers: HashMap<u16, Arc<Registered>, rustc_hash::FxBuildHasher>,
    providers_gen: u64,
    /// The method the last direct call reached (see [`Conn::try_direct`]), dropped with the
    /// copy of the registry it came from.
    hot: Option<HotRoute>,
    pub(super) instances: HashMap<u16, Arc<dyn Instance>>,
    codec_limits: wirecall_codecs::Limits,
    /// The handshake completed (instances were told of the connection).
    pub(super) connected: bool,
    /// The connection's span, the parent of its calls' spans.
    pub(super) span: tracing::Span,
    /// Calls dispatched on the connection.
    pub(super) calls: u64,
    /// When the reader woke for its current batch of frames (set by the reader): the
    /// machine's `now` for the calls of the batch, from which their deadlines count.
    pub(super) woke: Instant,
    /// The reader's clock: when it woke, then when the last timed handler it ran returned.
    /// A handler's time on the reader is measured from it.
    pub(super) clock: Instant,
    /// Batches left during which every inline handler is timed against the blocking
    /// budget; set when a whole batch overran it (see [`Conn::after_batch`]). Otherwise
    /// inline handlers are not timed (no clock read per call), calls with a deadline aside.
    pub(super) timing: u32,
}

/// How many batches of a connection's calls are timed one by one after a batch overran
/// the blocking budget.
const TIMED_BATCHES: u32 = 64;

impl Conn {
    pub(super) fn new(
        inner: Arc<Inner>,
        info: Arc<ConnectionInfo>,
        wire: Arc<Wire<proto::ServerConnection>>,
        span: tracing::Span,
    ) -> Conn {
        Conn {
            codec_limits: wirecall_codecs::Limits::default()
                .with_max_input(inner.limits.max_frame_len as usize),
            inner,
            info,
            wire,
            tasks: Arc::new(Tasks::default()),
            providers: HashMap::default(),
            // Not a generation the registry can have yet: the first call copies it.
            providers_gen: u64::MAX,
            hot: None,
            instances: HashMap::new(),
            connected: false,
            span,
            calls: 0,
            woke: crate::io::now(),
            clock: crate::io::now(),
            timing: 0,
        }
    }

    /// After the reader handled a batch of frames in which `calls` calls were dispatched:
    /// with a blocking budget, one clock read tells whether the batch held the reader
    /// longer than the budget; if so, the next [`TIMED_BATCHES`] batches time each inline
    /// handler, to find the method that blocks.
    pub(super) fn after_batch(&mut self, calls: u64) {
        let Some(budget) = self.inner.blocking_budget else {
            return;
        };
        if self.calls == calls {
            return;
        }
        let now = crate::io::now();
        if now.saturating_duration_since(self.woke) > budget {
            self.timing = TIMED_BATCHES;
            // Calls whose deadline passed while the reader was held are answered now.
            self.expire_due(now);
        } else {
            self.timing = self.timing.saturating_sub(1);
        }
    }

    /// The machine answers DEADLINE_EXCEEDED now to every call whose deadline passed at
    /// `now` (the reader was held past it, so the machine's timer could not fire), and
    /// drops their late answers; the reader is woken to stop their handlers.
    fn expire_due(&self, now: Instant) {
        let mut s = self.wire.lock();
        if s.side.expire_calls(now) > 0 {
            drop(s);
            self.wire.wake_reader();
        }
    }

    /// Dispatches one call the machine accepted (its codec, the in-flight limit and the
    /// deadline already checked there).
    pub(super) fn on_call(&mut self, call: proto::Call) {
        let proto::Call {
            request_id,
            provider,
            codec,
            oneway,
            upload,
            method,
            annotations,
            args,
            kwargs,
            attachment,
        } = call;
        let deadline = annotations.deadline();
        let bulk = proto::has_bulk(&annotations, &attachment);
        let direct = self.dispatch(CallIn {
            request_id: request_id.0,
            provider: provider.0,
            codec,
            oneway,
            method: method.as_bytes(),
            deadline,
            bulk,
            upload,
            resumable: true,
            annotations,
            args,
            kwargs,
            attachment,
        });
        if let Some(d) = direct {
            crate::context::answer_direct(&self.wire, d.id, d.codec, Flush::Deferred);
        }
    }

    /// The shortest way for the commonest call the machine accepted in place: a two-way
    /// call with positional arguments only, to a method with a direct handler
    /// that runs on the reader, with no hooks, no DEBUG trace and the connection not under
    /// watch for the blocking budget. Its handler decodes the arguments from `frame` (the
    /// call's bytes, still in the read buffer: nothing is split off or reference-counted)
    /// and encodes its result into the direct result buffer. Returns `None`, having done
    /// nothing, for any other call, which [`Conn::on_accepted`] takes; otherwise what that
    /// returns: the direct answer the reader must send, if any (a fault or a bulk result is
    /// answered here).
    pub(super) fn try_direct(
        &mut self,
        call: &proto::AcceptedCall,
        frame: &[u8],
    ) -> Option<Option<Direct>> {
        if call.oneway || !call.kwargs().is_empty() || !self.direct_allowed() {
            return None;
        }
        if !self.direct_ready(call, frame) {
            return None;
        }
        let hot = self.hot.as_ref()?;
        let dc = crate::context::DirectCall {
            codec: call.codec,
            args: frame.get(call.args())?,
            limits: &self.codec_limits,
        };
        // The buffer in use (not expected on the reader): the handler did not run, the
        // usual way takes the call.
        let outcome = match run_direct(&hot.instance, hot.route.index, &dc)? {
            // `None`: the result waits in this thread's direct result buffer.
            Ok(outcome) => outcome,
            Err(panic) => Some(Outcome::Fault(panic_fault(panic))),
        };
        self.calls += 1;
        if let Some(d) = call.deadline {
            // As `dispatch` does: the machine's timer could not fire while the handler ran.
            let now = crate::io::now();
            self.clock = now;
            if now >= self.woke + d {
                self.expire_due(now);
            }
        }
        let (id, codec) = (call.request_id.0, call.codec);
        match outcome {
            None => Some(Some(Direct { id, codec })),
            Some(outcome) => {
                reply_sink(&self.wire, id, codec, false, &None).answer(outcome, Flush::Deferred);
                Some(None)
            }
        }
    }

    /// Whether this connection's calls may take the direct path at all: its copy of the
    /// registry is current, no hook or DEBUG trace wants to see each call, and it is not
    /// under watch for the blocking budget.
    #[inline]
    pub(super) fn direct_allowed(&self) -> bool {
        self.timing == 0
            && self.providers_gen == self.inner.registry_gen.load(Ordering::Acquire)
            && !self.inner.has_hooks.load(Ordering::Acquire)
            && !tracing::enabled!(tracing::Level::DEBUG)
    }

    /// Whether a direct call of `call` (its frame's bytes in `frame`) may run, with the
    /// method it reaches kept in `self.hot`: not for the daemon, a method without a direct
    /// handler or one moved off the reader.
    #[inline]
    fn direct_ready(&mut self, call: &proto::AcceptedCall, frame: &[u8]) -> bool {
        if call.provider.0 == DAEMON_PROVIDER_ID {
            return false;
        }
        let Some(name) = frame.get(call.route()) else {
            return false;
        };
        // Calls in a row mostly go to one method: one comparison of its name instead of
        // two table lookups.
        let kept =
            matches!(&self.hot, Some(h) if h.provider == call.provider.0 && h.name() == name);
        if !kept {
            match self.hot_route(call.provider.0, name) {
                Some(h) => self.hot = Some(h),
                None => return false,
            }
        }
        // Moved off the reader meanwhile (by overrunning the blocking budget, here or on
        // another connection).
        self.hot
            .as_ref()
            .is_some_and(|h| !h.reg.runs_off_reader(&h.route))
    }

    /// The handler of a call [`proto::ServerConnection::answer_calls`] offers (the reader
    /// checked [`Conn::direct_allowed`] for the pass): a call [`Conn::try_direct`] would take
    /// runs here, its result encoded into `out` for the machine to send
    /// ([`proto::Answered::Reply`]). A fault or a result with bulk values is kept in `later`
    /// for the reader to answer once it lets the machine go ([`proto::Answered::Later`]:
    /// the call is in flight meanwhile). Any other call is declined, untouched.
    pub(super) fn answer_now(
        &mut self,
        call: &proto::AcceptedCall,
        frame: &[u8],
        out: &mut Vec<u8>,
        later: &mut Option<(u64, proto::CodecId, Outcome)>,
    ) -> proto::Answered {
        if !self.direct_ready(call, frame) {
            return proto::Answered::Declined;
        }
        let (Some(hot), Some(args)) = (self.hot.as_ref(), frame.get(call.args())) else {
            return proto::Answered::Declined;
        };
        let dc = crate::context::DirectCall {
            codec: call.codec,
            args,
            limits: &self.codec_limits,
        };
        let outcome = match call_direct_guarded(&hot.instance, hot.route.index, &dc, out) {
            Ok(outcome) => outcome,
            Err(panic) => Some(Outcome::Fault(panic_fault(panic))),
        };
        self.calls += 1;
        match outcome {
            None => {
                // The machine reads no clock: it is told when a call with a deadline
                // finished, and answers DEADLINE_EXCEEDED if that was too late.
                let finished = call.deadline.map(|_| {
                    let now = crate::io::now();
                    self.clock = now;
                    now
                });
                proto::Answered::Reply { finished }
            }
            Some(outcome) => {
                *later = Some((call.request_id.0, call.codec, outcome));
                proto::Answered::Later
            }
        }
    }

    /// Answers the call [`Conn::answer_now`] kept for later, with the machine unlocked.
    pub(super) fn answer_later(&self, (id, codec, outcome): (u64, proto::CodecId, Outcome)) {
        reply_sink(&self.wire, id, codec, false, &None).answer(outcome, Flush::Deferred);
    }

    /// The route of a method a direct call may take, from this connection's copy of the
    /// registry: `None` when it has no direct handler, takes an argument stream, is oneway
    /// or has a name longer than [`HOT_NAME`].
    fn hot_route(&self, provider: u16, name: &[u8]) -> Option<HotRoute> {
        let reg = self.providers.get(&provider)?;
        let route = *reg.routes.get(name)?;
        if !route.direct || route.uploads || route.oneway || name.len() > HOT_NAME {
            return None;
        }
        let instance = match &reg.instances {
            crate::provider::Instances::Shared(i) => i,
            crate::provider::Instances::PerConnection(_) => self.instances.get(&provider)?,
        };
        let mut h = HotRoute {
            provider,
            len: name.len() as u8,
            name: [0; HOT_NAME],
            route,
            reg: reg.clone(),
            instance: instance.clone(),
        };
        h.name[..name.len()].copy_from_slice(name);
        Some(h)
    }

    /// Dispatches a call the machine accepted in place ([`proto::ServerConnection::accept_call`]):
    /// `frame` holds its bytes, split from the read buffer. A synchronous handler's result
    /// waiting in the direct result buffer is returned for the reader to answer under the
    /// lock it takes next ([`crate::context::answer_direct_in`]), before anything else
    /// encodes on this thread.
    #[must_use]
    pub(super) fn on_accepted(
        &mut self,
        call: &proto::AcceptedCall,
        frame: bytes::Bytes,
    ) -> Option<Direct> {
        let section = |r: std::ops::Range<usize>| {
            if r.is_empty() {
                bytes::Bytes::new()
            } else {
                frame.slice(r)
            }
        };
        let annotations = section(call.annotations());
        let annotations = if annotations.is_empty() {
            proto::Annotations::new()
        } else {
            // Checked by the machine; never fails.
            proto::Annotations::from_wire(annotations).unwrap_or_default()
        };
        let kwargs = section(call.kwargs());
        let route = call.route();
        let args = call.args();
        // A short method name is copied out, and the frame itself narrowed down to the
        // arguments becomes them: no reference count taken and given back per call for a
        // slice of it.
        let mut short = [0u8; SHORT_NAME];
        let (method, args): (&[u8], bytes::Bytes) = if route.len() <= SHORT_NAME && !args.is_empty()
        {
            let n = route.len();
            short[..n].copy_from_slice(&frame[route]);
            let mut frame = frame;
            frame.truncate(args.end);
            bytes::Buf::advance(&mut frame, args.start);
            (&short[..n], frame)
        } else {
            let a = section(args);
            return self.dispatch(CallIn {
                request_id: call.request_id.0,
                provider: call.provider.0,
                codec: call.codec,
                oneway: call.oneway,
                method: &frame[route],
                deadline: call.deadline,
                bulk: false,
                upload: false,
                resumable: false,
                annotations,
                args: a,
                kwargs,
                attachment: bytes::Bytes::new(),
            });
        };
        self.dispatch(CallIn {
            request_id: call.request_id.0,
            provider: call.provider.0,
            codec: call.codec,
            oneway: call.oneway,
            method,
            // The machine accepts in place only calls without bulk values.
            deadline: call.deadline,
            bulk: false,
            upload: false,
            // Nor calls that resume a stream.
            resumable: false,
            annotations,
            args,
            kwargs,
            attachment: bytes::Bytes::new(),
        })
    }

    /// Routes one call to its handler and runs it (or sends it off the reader). Returns
    /// the direct answer the caller must send, if any (see [`Conn::on_accepted`]).
    fn dispatch(&mut self, call: CallIn<'_>) -> Option<Direct> {
        let codec = call.codec;
        let provider_id = call.provider;
        let id = call.request_id;
        // The name as it arrived (the machine checked it is UTF-8): routes are looked up by
        // its bytes, and it becomes a `str` only where one is needed (messages, hooks).
        let method = call.method;
        self.calls += 1;
        // Nothing is built here unless DEBUG is on for the server's trace module.
        let trace =
            CallTrace::start_native(&self.span, provider_id, method, codec, id, call.oneway);
        let _entered = trace.as_ref().map(|t| t.span().clone().entered());
        // The answer's sink is made only where one is needed: a call taken by a direct
        // handler is answered without one.
        let mut oneway = call.oneway;
        if let Some((token, received)) = call.resumable.then(|| call.annotations.resume()).flatten()
        {
            // A stream resumed after a lost connection (SPEC §6.14): no handler runs.
            let sink = reply_sink(&self.wire, id, codec, oneway, &trace);
            crate::stream::resume_call(&self.wire, &call.annotations, id, token, received, sink);
            return None;
        }
        if provider_id == DAEMON_PROVIDER_ID {
            let sink = reply_sink(&self.wire, id, codec, oneway, &trace);
            super::daemon::call(
                &self.inner,
                &self.info,
                name(method),
                &call.annotations,
                sink,
            );
            return None;
        }
        let gen = self.inner.registry_gen.load(Ordering::Acquire);
        if gen != self.providers_gen {
            let map = read(&self.inner.registry);
            self.providers = map.iter().map(|(k, v)| (*k, v.clone())).collect();
            self.hot = None;
            // Read under the lock that writers bump it under: matches the copy.
            self.providers_gen = self.inner.registry_gen.load(Ordering::Acquire);
        }
        let Some(reg) = self.providers.get(&provider_id) else {
            let mut ids: Vec<u16> = self.providers.keys().copied().collect();
            ids.sort_unstable();
            let mut f = Fault::new(
                FaultKind::UnknownProvider,
                format!(
                    "no provider is registered with id {provider_id}; registered ids: {}",
                    if ids.is_empty() {
                        "none".to_string()
                    } else {
                        ids.iter()
                            .map(|i| i.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            );
            f.names = ids.iter().map(|i| i.to_string()).collect();
            reply_sink(&self.wire, id, codec, oneway, &trace)
                .answer(Outcome::Fault(f), Flush::Deferred);
            return None;
        };
        let Some(route) = reg.routes.get(method).copied() else {
            let method = name(method);
            let mut f = Fault::new(
                FaultKind::UnknownMethod,
                format!(
                    "provider {provider_id} (`{}`) has no exposed method `{method}`; it exposes: {}",
                    reg.info.service,
                    reg.exposed.join(", ")
                ),
            );
            f.names = reg.exposed.clone();
            reply_sink(&self.wire, id, codec, oneway, &trace)
                .answer(Outcome::Fault(f), Flush::Deferred);
            return None;
        };
        if route.uploads && !call.upload {
            reply_sink(&self.wire, id, codec, oneway, &trace).answer(
                Outcome::Fault(Fault::new(
                    FaultKind::BadArguments,
                    format!(
                        "`{}` takes a stream of argument items: call it with an argument stream (CallBuilder::upload, or the generated client's method)",
                        name(method)
                    ),
                )),
                Flush::Deferred,
            );
            return None;
        }
        if route.oneway && !oneway {
            // A oneway method called as a plain call (the caller did not know): answered at
            // once with nothing, as Pyro's daemon does, and run without an answer.
            reply_sink(&self.wire, id, codec, oneway, &trace)
                .answer(crate::context::encode_outcome(codec, &()), Flush::Deferred);
            oneway = true;
        }
        let instance: &Arc<dyn crate::provider::Instance> = match &reg.instances {
            crate::provider::Instances::Shared(i) => i,
            crate::provider::Instances::PerConnection(f) => {
                self.instances.entry(provider_id).or_insert_with(|| {
                    let i = f();
                    i.connect(&self.info);
                    i
                })
            }
        };
        let mut hooks_after = None;
        if self.inner.has_hooks.load(Ordering::Acquire) {
            let method = name(method);
            let hooks: Vec<Arc<dyn CallHook>> = read(&self.inner.hooks).clone();
            let ci = CallInfo {
                provider_id,
                method,
                peer: &self.info.peer,
                peer_identity: self.info.peer_identity(),
                codec,
                request_id: id,
            };
            for h in &hooks {
                if let Err(m) = h.before(&ci) {
                    tracing::info!(
                        parent: &self.span,
                        peer = %self.info.peer,
                        provider = provider_id,
                        method,
                        request_id = id,
                        reason = "hook",
                        "call refused by a hook: {m}"
                    );
                    reply_sink(&self.wire, id, codec, oneway, &trace).answer(
                        Outcome::Fault(Fault::new(FaultKind::PermissionDenied, m)),
                        Flush::Deferred,
                    );
                    return None;
                }
            }
            hooks_after = Some(Arc::new(AfterHooks {
                hooks,
                started: Instant::now(),
                method: method.to_string(),
                provider_id,
                request_id: id,
                conn: self.info.clone(),
                codec,
                done: AtomicBool::new(false),
            }));
        }
        // The caller's deadline on this server's clock (the machine answers the call
        // DEADLINE_EXCEEDED when it passes): read from the reader's clock, for calls with one.
        let deadline_at = call.deadline.map(|d| self.woke + d);
        // Bulk values as slices of the received frame (the machine checked the lengths).
        let bulk = if call.bulk {
            proto::split_bulk(&call.annotations, &call.attachment).ok()
        } else {
            None
        };
        // The call's argument stream (SPEC §6.13): the reader queues its items for the
        // handler from now on.
        let mut upload = call.upload.then(|| {
            self.wire
                .uploads
                .open(self.wire.clone(), id, self.inner.upload_window)
        });
        // Calls that would hold the reader (and so every later call of the connection) run
        // off it: a oneway call (it must never delay the caller's next call), and every call
        // of a method declared or found blocking (see the provider module's docs).
        let off = if oneway {
            // Except a oneway call of an ordered batch: the machine dispatches the batch's
            // next call as soon as a oneway one is handed out (it has no answer to wait
            // for), so it runs here, in place, or later calls of the batch would overtake it.
            call.annotations.batch().is_none()
        } else {
            reg.runs_off_reader(&route)
        };
        if off {
            let mut sink = reply_sink(&self.wire, id, codec, oneway, &trace);
            sink.hooks = hooks_after;
            let incoming = Incoming {
                codec,
                args: call.args,
                kwargs: call.kwargs,
                conn: self.info.clone(),
                annotations: call.annotations,
                provider_id,
                sink: sink.clone(),
                limits: self.codec_limits,
                deadline_at,
                bulk,
                upload: std::sync::Mutex::new(upload.take()),
            };
            off_reader(OffReader {
                tasks: &self.tasks,
                id,
                track: !sink.oneway,
                block: reg.runs_off_reader(&route),
                instance: instance.clone(),
                index: route.index,
                incoming,
                sink,
                span: trace.as_ref().map(|t| t.span().clone()),
            });
            return None;
        }
        // A synchronous handler of a plain two-way call may encode its result for a direct
        // answer from this thread's buffer; hooks and traces take the usual way.
        let fast = !oneway && hooks_after.is_none() && trace.is_none();
        // A method with a direct handler, called with nothing but positional arguments:
        // no `Incoming` and no sink are made, and the result is encoded straight into the
        // buffer the answer is written from.
        let direct =
            if fast && route.direct && call.kwargs.is_empty() && bulk.is_none() && upload.is_none()
            {
                let dc = crate::context::DirectCall {
                    codec,
                    args: &call.args,
                    limits: &self.codec_limits,
                };
                // `None`: the buffer was in use (not expected on the reader), the usual way
                // below.
                run_direct(instance, route.index, &dc)
            } else {
                None
            };
        let mut kept = None;
        let handled = match direct {
            // The result waits in this thread's direct result buffer.
            Some(Ok(None)) => None,
            Some(Ok(Some(outcome))) => Some(Ok(Handled::Ready(outcome))),
            Some(Err(panic)) => Some(Err(panic)),
            None => {
                // On the fast path the handler's `Incoming` takes the sink, and one is made
                // again only for an answer that does not go the direct way (see
                // `context::arm_direct`).
                let mut sink = reply_sink(&self.wire, id, codec, oneway, &trace);
                sink.hooks = hooks_after;
                let for_handler = if fast {
                    sink
                } else {
                    kept = Some(sink.clone());
                    sink
                };
                let key = crate::context::direct_key(&for_handler);
                let incoming = Incoming {
                    codec,
                    args: call.args,
                    kwargs: call.kwargs,
                    conn: self.info.clone(),
                    annotations: call.annotations,
                    provider_id,
                    sink: for_handler,
                    limits: self.codec_limits,
                    deadline_at,
                    bulk,
                    upload: std::sync::Mutex::new(upload.take()),
                };
                let armed = fast.then(|| crate::context::arm_direct(key));
                let handled = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    instance.dispatch(route.index, incoming)
                }));
                let encoded = armed.is_some_and(|g| g.disarm(key));
                // The direct answer waits in this thread's buffer: nothing of the handler's
                // result is needed any more (its placeholder is dropped here, not wrapped
                // and matched again).
                if encoded && matches!(handled, Ok(Handled::Ready(Outcome::Value(_)))) {
                    drop(handled);
                    None
                } else {
                    Some(handled)
                }
            }
        };
        // An async handler is polled once in place: one that does not actually wait
        // finishes here, without a task spawn. One that waits is spawned below (and polled
        // again there with a real waker).
        let handled = handled.map(|handled| match handled {
            Ok(Handled::Pending(fut)) => {
                let mut fut = AssertUnwindSafe(fut).catch_unwind();
                let waker = futures::task::noop_waker();
                let mut cx = std::task::Context::from_waker(&waker);
                match std::pin::Pin::new(&mut fut).poll(&mut cx) {
                    std::task::Poll::Ready(r) => {
                        Polled::Done(r.unwrap_or_else(|p| Outcome::Fault(panic_fault(p))))
                    }
                    std::task::Poll::Pending => Polled::Waits(fut),
                }
            }
            other => Polled::Other(other),
        });
        // How long the handler held the reader (while the connection is under watch, see
        // `after_batch`), and whether the caller's deadline passed meanwhile (the
        // machine's timer could not fire while the reader was busy): the clock is read
        // only when one of them needs it.
        let budget = self.inner.blocking_budget.filter(|_| self.timing > 0);
        if budget.is_some() || deadline_at.is_some() {
            let now = crate::io::now();
            let mut overran = false;
            if let Some(budget) = budget {
                let held = now.saturating_duration_since(self.clock);
                overran = held > budget;
                if !overran {
                    reg.within_budget(&route);
                } else if reg.overran(&route) {
                    tracing::warn!(
                        parent: &self.span,
                        provider = provider_id,
                        method = name(method),
                        held_ms = held.as_millis() as u64,
                        budget_ms = budget.as_millis() as u64,
                        reason = "blocking_budget",
                        "`{}` of provider {provider_id} held a connection's reader for {held:?}, over the blocking budget of {budget:?} ({} calls in a row): its calls now run on the blocking pool; mark it #[remote(blocking)] to say so up front, or raise the budget (blocking_budget, WIRECALL_BLOCKING_BUDGET)",
                        name(method),
                        crate::provider::OVERRUNS_TO_MOVE,
                    );
                }
            }
            self.clock = now;
            if overran || deadline_at.is_some_and(|at| now >= at) {
                // Past the deadline, or the reader was held long enough for other calls'
                // deadlines to pass unseen.
                self.expire_due(now);
            }
        }
        let Some(handled) = handled else {
            return Some(Direct { id, codec });
        };
        let sink = kept.unwrap_or_else(|| ReplySink {
            to: AnswerTo::Native(self.wire.clone()),
            id,
            codec,
            oneway: false,
            hooks: None,
            trace: None,
        });
        match handled {
            Polled::Done(outcome) => sink.answer(outcome, Flush::Deferred),
            Polled::Other(Err(panic)) => {
                sink.answer(Outcome::Fault(panic_fault(panic)), Flush::Deferred)
            }
            Polled::Other(Ok(Handled::Ready(outcome))) => sink.answer(outcome, Flush::Deferred),
            // The handler holds a Responder (through the sink); the hooks run when it
            // answers, or when it is dropped unanswered. The machine answers the caller
            // DEADLINE_EXCEEDED if the deadline passes first.
            Polled::Other(Ok(Handled::Deferred)) => {}
            Polled::Other(Ok(Handled::Detached(fut))) => {
                // Tracked like an async handler: stopped when the call expires or is
                // cancelled (dropping its Responder, whose answer the machine then drops).
                let tasks = self.tasks.clone();
                let work = async move {
                    // A panic drops the Responder, which answers (and tells the hooks) with
                    // an error.
                    let _ = AssertUnwindSafe(fut).catch_unwind().await;
                    tasks.remove(id);
                };
                match &trace {
                    Some(t) => self.tasks.spawn(id, work.instrument(t.span().clone())),
                    None => self.tasks.spawn(id, work),
                }
            }
            // Not produced: `Pending` became `Done` or `Waits` above.
            Polled::Other(Ok(Handled::Pending(_))) => {}
            Polled::Waits(fut) => {
                let tasks = self.tasks.clone();
                let work = async move {
                    let outcome = fut.await.unwrap_or_else(|p| Outcome::Fault(panic_fault(p)));
                    let (ours, others) = tasks.remove(id);
                    if ours.is_some() {
                        sink.answer(outcome, if others { Flush::Batched } else { Flush::Now });
                    }
                };
                // The machine answers a call whose deadline passes (and the reader then
                // aborts this task); the handler needs no timer of its own.
                match trace {
                    Some(t) => self.tasks.spawn(id, work.instrument(t.span().clone())),
                    None => self.tasks.spawn(id, work),
                }
            }
        }
        None
    }
}

/// Runs the direct handler `index` of `instance` on `call`, with this thread's direct
/// result buffer as its output and a panic caught. `None` when the buffer was in use (the
/// handler did not run); otherwise the handler's outcome (`None`: the result waits in the
/// buffer) or its panic.
fn run_direct(
    instance: &Arc<dyn Instance>,
    index: usize,
    call: &crate::context::DirectCall<'_>,
) -> Option<std::thread::Result<Option<Outcome>>> {
    crate::context::with_direct_buffer(|out| call_direct_guarded(instance, index, call, out))
}

/// Runs method `index`'s direct handler with `out` as its output, a panic caught: the
/// handler's outcome (`None`: the result is in `out`) or its panic.
fn call_direct_guarded(
    instance: &Arc<dyn Instance>,
    index: usize,
    call: &crate::context::DirectCall<'_>,
    out: &mut Vec<u8>,
) -> std::thread::Result<Option<Outcome>> {
    std::panic::catch_unwind(AssertUnwindSafe(|| instance.call_direct(index, call, out)))
}

/// The sink a call is answered through.
fn reply_sink(
    wire: &Arc<Wire<proto::ServerConnection>>,
    id: u64,
    codec: proto::CodecId,
    oneway: bool,
    trace: &Option<Arc<CallTrace>>,
) -> ReplySink {
    ReplySink {
        to: AnswerTo::Native(wire.clone()),
        id,
        codec,
        oneway,
        hooks: None,
        trace: trace.clone(),
    }
}

/// A call to dispatch, from the machine's owned [`proto::Call`] or from a frame it accepted
/// in place.
pub(super) struct CallIn<'a> {
    request_id: u64,
    provider: u16,
    codec: proto::CodecId,
    oneway: bool,
    /// The method name's bytes, checked UTF-8 by the machine.
    method: &'a [u8],
    /// The caller's deadline (`wc.deadline`).
    deadline: Option<std::time::Duration>,
    /// The call carries bulk values.
    bulk: bool,
    /// The caller streams argument items after the call (flag UPLOAD, SPEC §6.13).
    upload: bool,
    /// The call may resume a stream (`wc.resume`): false for calls the machine accepted in
    /// place, which it never does with that annotation.
    resumable: bool,
    annotations: proto::Annotations,
    args: bytes::Bytes,
    kwargs: bytes::Bytes,
    attachment: bytes::Bytes,
}

/// A synchronous handler's result waiting in this thread's direct result buffer: the
/// answer to send for call `id`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Direct {
    pub(super) id: u64,
    pub(super) codec: proto::CodecId,
}

/// Method names up to this length are copied out of an accepted CALL (see
/// [`Conn::on_accepted`]).
const SHORT_NAME: usize = 64;

/// A method name's bytes as a `str`.
fn name(method: &[u8]) -> &str {
    // Checked UTF-8 by the machine; the fallback is never taken.
    std::str::from_utf8(method).unwrap_or_default()
}

type CaughtOutcome =
    futures::future::CatchUnwind<AssertUnwindSafe<futures::future::BoxFuture<'static, Outcome>>>;

/// A handler's result after the one poll in place of an async handler.
enum Polled {
    /// The async handler finished in its first poll.
    Done(Outcome),
    /// The async handler waits: it goes on on a task of its own.
    Waits(CaughtOutcome),
    /// Whatever else the handler did (never `Pending`).
    Other(std::thread::Result<Handled>),
}

/// A call to run off the connection's reader (see [`off_reader`]).
pub(super) struct OffReader<'a> {
    pub(super) tasks: &'a Arc<Tasks>,
    pub(super) id: u64,
    /// A two-way call: its task is tracked, so the reader drops it when the machine
    /// expires or cancels the call.
    pub(super) track: bool,
    /// The method blocks: an async one runs to its end on the blocking thread too
    /// (`block_on`), rather than on a runtime worker.
    pub(super) block: bool,
    pub(super) instance: Arc<dyn crate::provider::Instance>,
    pub(super) index: usize,
    pub(super) incoming: Incoming,
    pub(super) sink: ReplySink,
    pub(super) span: Option<tracing::Span>,
}

/// Runs a handler on tokio's blocking pool, so neither the connection's reader (its later
/// calls) nor a runtime worker (other connections) waits for it, and answers through the
/// sink at once. Only the handler's own thread waits for a blocking method.
pub(super) fn off_reader(call: OffReader<'_>) {
    let OffReader {
        tasks,
        id,
        track,
        block,
        instance,
        index,
        incoming,
        sink,
        span,
    } = call;
    let handle = tokio::runtime::Handle::current();
    let t = tasks.clone();
    let work = move || {
        let _entered = span.as_ref().map(|s| s.enter());
        let handled =
            std::panic::catch_unwind(AssertUnwindSafe(|| instance.dispatch(index, incoming)));
        match handled {
            Err(panic) => finish(&t, track, id, &sink, Outcome::Fault(panic_fault(panic))),
            Ok(Handled::Ready(outcome)) => finish(&t, track, id, &sink, outcome),
            Ok(Handled::Deferred) => {
                if track {
                    t.remove(id);
                }
            }
            Ok(Handled::Detached(fut)) => {
                let work = async move {
                    let _ = AssertUnwindSafe(fut).catch_unwind().await;
                };
                if block {
                    handle.block_on(work);
                } else {
                    drop(handle.spawn(work));
                }
                if track {
                    t.remove(id);
                }
            }
            Ok(Handled::Pending(fut)) => {
                let work = async move {
                    let outcome = AssertUnwindSafe(fut)
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|p| Outcome::Fault(panic_fault(p)));
                    finish(&t, track, id, &sink, outcome);
                };
                if block {
                    handle.block_on(work);
                } else {
                    drop(handle.spawn(work));
                }
            }
        }
    };
    if track {
        tasks.spawn_blocking(id, work);
    } else {
        drop(tokio::task::spawn_blocking(work));
    }
}

/// Answers a call run off the reader, unless the machine gave it up meanwhile (then its
/// task is gone from `tasks` and nobody waits for the answer).
fn finish(tasks: &Tasks, track: bool, id: u64, sink: &ReplySink, outcome: Outcome) {
    if !track || tasks.remove(id).0.is_some() {
        sink.answer(outcome, Flush::Now);
    }
}

pub(crate) fn panic_fault(panic: Box<dyn std::any::Any + Send>) -> Fault {
    let message = if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "the handler panicked".to_string()
    };
    Fault::application(
        "panic",
        message,
        "the remote handler panicked; the server keeps serving",
    )
}
