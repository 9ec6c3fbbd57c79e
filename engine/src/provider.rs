//! Providers: what `#[wirecall::provider]` generates, and how the server holds them.
//!
//! # Where handlers run
//!
//! Each native connection has one reader task: it decodes the connection's frames and
//! dispatches its calls in order. Where a call's handler runs decides who waits for it:
//!
//! | handler | runs | while it runs |
//! |---|---|---|
//! | synchronous (`fn`) | inline on the reader: no task hop, the fastest way | the connection's later calls wait |
//! | `async fn` | polled once on the reader; if it waits, on a task of its own | nobody waits (unless its code blocks the thread) |
//! | takes a [`Responder`](crate::Responder) | as above (an `async` one on a task of its own) | nobody waits once it returns |
//! | `#[remote(blocking)]` (sync or async) | on tokio's blocking pool (`spawn_blocking`; an `async` one runs to its end there) | nobody: not the connection, not the runtime's workers |
//! | `#[remote(oneway)]`, or any method called oneway | on the blocking pool, never on the reader | nobody: a oneway call never delays the caller's next call (Pyro's `ONEWAY_THREADED`), and may finish after it |
//!
//! Providers a client exposes for callbacks ([`Proxy::expose`](crate::Proxy::expose)) run
//! each callback on a task of its own (a `#[remote(blocking)]` one on the blocking pool),
//! never on the connection's reader, and stop when the server cancels the callback or its
//! deadline passes.
//!
//! A synchronous method that is not declared blocking but blocks anyway is found out by the
//! **blocking budget** ([`ServerBuilder::blocking_budget`](crate::ServerBuilder::blocking_budget),
//! `WIRECALL_BLOCKING_BUDGET`, default 10 ms): once three of its calls in a row (no call of
//! it within the budget in between, on any connection) have each held a connection's reader
//! longer than the budget, every later call of that method, on every connection of the
//! server, runs on the blocking pool, and a warning (`reason = "blocking_budget"`) names the
//! method. In a row, because on a loaded host a reader is descheduled for tens of
//! milliseconds now and then, in the middle of the fastest handler (measured: counting any
//! two overruns moved the benchmark's echo method within a second at a load average of 7 on
//! 2 cores, and cut its calls/s 27-fold); a method that blocks only now and then is not
//! found this way: declare it. Handlers are not timed one by one on the fast path: the
//! reader reads the clock once per batch of frames, and only after a batch held it longer
//! than the budget does it time each inline handler, for its next 64 batches (so a method
//! that blocks is moved after at most four slow calls in a row on one connection). The same holds for an
//! `async` method whose first poll blocks. Methods that stay within the budget keep the
//! inline path. Pyro5 connections follow the same rules (their calls run one at a time).
//!
//! # Deadlines
//!
//! A caller's timeout travels with its call (`wc.deadline`); when it passes, the server
//! answers DEADLINE_EXCEEDED, whatever kind of handler holds the call: an async handler's task
//! (and an async `Responder` handler's) is dropped, a kept `Responder`'s later answer goes
//! nowhere, a blocking handler's late result is dropped (its thread cannot be stopped: it
//! runs to its end). A synchronous handler running inline holds the reader, so the timer
//! cannot fire meanwhile: when it returns past the deadline its result is not sent and the
//! caller gets DEADLINE_EXCEEDED then (and the method is moved off the reader if it overran
//! the budget). A handler sees the time its caller has left with
//! [`CallContext::remaining`](crate::CallContext::remaining), and calls it makes on the
//! caller's behalf inherit it with [`CallBuilder::within`](crate::CallBuilder::within)
//! (explicitly: there is no ambient task-local deadline, so a handler's unrelated calls
//! keep their own timeouts).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::context::{ConnectionInfo, Incoming};
use crate::error::{Fault, FaultKind};

/// A set of remote methods served under one provider id (Margo's provider, RPyC's service,
/// Pyro's exposed object). Implemented by `#[wirecall::provider]`; implement it by hand only
/// to build providers at runtime.
pub trait Provider: Send + Sync + Sized + 'static {
    /// The service name: RPC names are `SERVICE + "_" + method`.
    const SERVICE: &'static str;
    /// Further service names the provider answers to (RPyC's `ALIASES`).
    const ALIASES: &'static [&'static str] = &[];

    /// The remote methods and attributes.
    fn methods() -> Vec<MethodSpec<Self>>;

    /// Runs when the server finalizes, before connections close; may still make calls.
    fn on_prefinalize(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Runs last when the server finalizes.
    fn on_finalize(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Runs when a connection opens (RPyC's `on_connect`).
    fn on_connect(&self, info: &ConnectionInfo) {
        let _ = info;
    }

    /// Runs when a connection closes (RPyC's `on_disconnect`); must not block.
    fn on_disconnect(&self, info: &ConnectionInfo) {
        let _ = info;
    }
}

/// What a remote item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodKind {
    /// A method.
    Method,
    /// The getter of a remote attribute.
    Getter,
    /// The setter of a remote attribute.
    Setter,
}

/// The handler of one remote item: decodes arguments, runs the method, encodes the result.
pub type HandlerFn<P> = fn(&Arc<P>, Incoming) -> Handled;

/// The direct handler of a synchronous method whose parameters are all plain values and
/// whose result is a value (generated beside its [`HandlerFn`]): decodes the positional
/// arguments of `call`, runs the method and encodes its result into `out` (empty). Returns
/// `None` when the result is in `out`, or the outcome to answer instead (a fault, a result
/// with bulk values). The server takes this way for calls that need nothing else: see
/// [`DirectCall`](crate::context::DirectCall).
pub type DirectFn<P> =
    fn(&Arc<P>, &crate::context::DirectCall<'_>, &mut Vec<u8>) -> Option<Outcome>;

/// One remote method or attribute accessor of a provider.
pub struct MethodSpec<P> {
    /// The method name (without the service prefix), or the attribute name.
    pub name: &'static str,
    /// The names of the value parameters, in order.
    pub params: &'static [&'static str],
    /// Method, getter or setter.
    pub kind: MethodKind,
    /// Never answered, not even on error (Margo's `disable_response`).
    pub oneway: bool,
    /// The method blocks its thread (`#[remote(blocking)]`): its calls always run off the
    /// connection's reader, on tokio's blocking pool (see
    /// [`ServerBuilder::blocking_budget`](crate::ServerBuilder::blocking_budget) for the rules).
    pub blocking: bool,
    /// The method returns a stream ([`ItemStream`](crate::ItemStream)): callers read its
    /// result item by item (reported in the metadata, so dynamic callers such as
    /// `wirecall call` know).
    pub streams: bool,
    /// The method takes an argument stream ([`Streaming`](crate::Streaming), SPEC §6.13):
    /// callers send items after the call (reported in the metadata).
    pub uploads: bool,
    /// The handler.
    pub handler: HandlerFn<P>,
    /// The same method's direct handler, when it has one (see [`DirectFn`]).
    pub direct: Option<DirectFn<P>>,
}

impl<P> Clone for MethodSpec<P> {
    fn clone(&self) -> Self {
        MethodSpec {
            name: self.name,
            params: self.params,
            kind: self.kind,
            oneway: self.oneway,
            blocking: self.blocking,
            streams: self.streams,
            uploads: self.uploads,
            handler: self.handler,
            direct: self.direct,
        }
    }
}

impl<P> fmt::Debug for MethodSpec<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MethodSpec")
            .field("name", &self.name)
            .field("params", &self.params)
            .field("kind", &self.kind)
            .field("oneway", &self.oneway)
            .field("blocking", &self.blocking)
            .finish()
    }
}

/// A handler's result, encoded with the call's codec, or a fault.
#[derive(Debug)]
pub enum Outcome {
    /// The encoded result.
    Value(bytes::Bytes),
    /// An encoded result whose [`Bulk`](crate::Bulk) values travel in the frame's
    /// attachment (SPEC §6.11); only native connections give these.
    Attached(Attached),
    /// The call failed.
    Fault(Fault),
    /// The result is a stream of encoded items, sent under flow control (SPEC §6.12).
    Stream(crate::stream::EncodedStream),
}

/// A result encoded with its bulk values set aside: see [`Outcome::Attached`].
#[derive(Debug)]
pub struct Attached {
    pub(crate) result: bytes::Bytes,
    pub(crate) annotations: wirecall_protocol::Annotations,
    pub(crate) attachment: bytes::Bytes,
}

/// What a handler did with a call.
pub enum Handled {
    /// Finished synchronously.
    Ready(Outcome),
    /// Finishes when the future does (an `async` method).
    Pending(BoxFuture<'static, Outcome>),
    /// The method took a [`Responder`](crate::Responder) and answers through it.
    Deferred,
    /// An `async` method that answers through a [`Responder`](crate::Responder); the future
    /// runs to completion on its own task.
    Detached(BoxFuture<'static, ()>),
}

impl fmt::Debug for Handled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Handled::Ready(o) => f.debug_tuple("Ready").field(o).finish(),
            Handled::Pending(_) => f.write_str("Pending"),
            Handled::Deferred => f.write_str("Deferred"),
            Handled::Detached(_) => f.write_str("Detached"),
        }
    }
}

/// Wraps a handler's error to pick, at compile time, the richest description available.
#[doc(hidden)]
pub struct ErrProbe<'a, E>(pub &'a E);

/// Describes errors that implement `std::error::Error`, with their source chain.
#[doc(hidden)]
pub trait ViaError {
    fn remote_fault(&self) -> Fault;
}

/// Describes errors that only implement `Display`.
#[doc(hidden)]
pub trait ViaDisplay {
    fn remote_fault(&self) -> Fault;
}

impl<E: std::error::Error + 'static> ViaError for &ErrProbe<'_, E> {
    fn remote_fault(&self) -> Fault {
        let mut trace = String::new();
        let mut source = self.0.source();
        while let Some(s) = source {
            if !trace.is_empty() {
                trace.push('\n');
            }
            trace.push_str("caused by: ");
            trace.push_str(&s.to_string());
            source = s.source();
        }
        Fault::application(std::any::type_name::<E>(), self.0.to_string(), trace)
    }
}

impl<E: fmt::Display> ViaDisplay for ErrProbe<'_, E> {
    fn remote_fault(&self) -> Fault {
        let message = self.0.to_string();
        let alternate = format!("{:#}", self.0);
        let trace = if alternate != message {
            alternate
        } else {
            String::new()
        };
        Fault::application(std::any::type_name::<E>(), message, trace)
    }
}

/// Metadata about one remote item, as the daemon object reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MethodInfo {
    /// The full RPC name (`service_method`), or the attribute name for accessors.
    pub name: String,
    /// The parameter names.
    pub params: Vec<String>,
    /// Never answered.
    pub oneway: bool,
    /// Its result is a stream, read item by item (absent from older servers' metadata:
    /// read as `false`).
    #[serde(default)]
    pub streams: bool,
    /// It takes an argument stream, sent item by item after the call (absent from older
    /// servers' metadata: read as `false`).
    #[serde(default)]
    pub uploads: bool,
}

/// Metadata about one provider, as the daemon object reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProviderInfo {
    /// The provider id.
    pub provider_id: u16,
    /// The service name.
    pub service: String,
    /// Further service names.
    pub aliases: Vec<String>,
    /// The remote methods.
    pub methods: Vec<MethodInfo>,
    /// The remote attributes (readable; `writable` lists those with a setter).
    pub attributes: Vec<String>,
    /// The remote attributes that can be set.
    pub writable: Vec<String>,
    /// One instance per connection (true) or one shared instance (false).
    pub per_connection: bool,
}

impl ProviderInfo {
    /// The full names of the oneway methods.
    pub fn oneway(&self) -> impl Iterator<Item = &str> {
        self.methods
            .iter()
            .filter(|m| m.oneway)
            .map(|m| m.name.as_str())
    }

    /// Whether the provider exposes a method with this full RPC name (under its service name
    /// or an alias).
    pub fn has_method(&self, full_name: &str) -> bool {
        self.methods.iter().any(|m| m.name == full_name)
            || self.aliases.iter().any(|a| {
                full_name
                    .strip_prefix(a.as_str())
                    .and_then(|r| r.strip_prefix('_'))
                    .is_some_and(|m| {
                        self.methods.iter().any(|x| {
                            x.name
                                .strip_prefix(&self.service)
                                .and_then(|r| r.strip_prefix('_'))
                                == Some(m)
                        })
                    })
            })
    }
}

/// Everything the server knows about the daemon's providers.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Metadata {
    /// The providers, by id.
    pub providers: Vec<ProviderInfo>,
}

impl Metadata {
    /// The provider with this id.
    pub fn provider(&self, provider_id: u16) -> Option<&ProviderInfo> {
        self.providers.iter().find(|p| p.provider_id == provider_id)
    }
}

/// Type-erased provider instance.
pub(crate) trait Instance: Send + Sync {
    fn dispatch(&self, index: usize, call: Incoming) -> Handled;
    /// Runs method `index`'s direct handler (only for routes marked `direct`).
    fn call_direct(
        &self,
        index: usize,
        call: &crate::context::DirectCall<'_>,
        out: &mut Vec<u8>,
    ) -> Option<Outcome>;
    fn prefinalize(&self) -> BoxFuture<'_, ()>;
    fn finalize(&self) -> BoxFuture<'_, ()>;
    fn connect(&self, info: &ConnectionInfo);
    fn disconnect(&self, info: &ConnectionInfo);
}

struct InstanceOf<P: Provider> {
    provider: Arc<P>,
    specs: Arc<[MethodSpec<P>]>,
}

impl<P: Provider> Instance for InstanceOf<P> {
    fn dispatch(&self, index: usize, call: Incoming) -> Handled {
        match self.specs.get(index) {
            Some(spec) => (spec.handler)(&self.provider, call),
            None => Handled::Ready(Outcome::Fault(Fault::new(
                FaultKind::Internal,
                "method table out of sync",
            ))),
        }
    }
    fn call_direct(
        &self,
        index: usize,
        call: &crate::context::DirectCall<'_>,
        out: &mut Vec<u8>,
    ) -> Option<Outcome> {
        match self.specs.get(index).and_then(|s| s.direct) {
            Some(f) => f(&self.provider, call, out),
            None => Some(Outcome::Fault(Fault::new(
                FaultKind::Internal,
                "method table out of sync",
            ))),
        }
    }
    fn prefinalize(&self) -> BoxFuture<'_, ()> {
        self.provider.on_prefinalize()
    }
    fn finalize(&self) -> BoxFuture<'_, ()> {
        self.provider.on_finalize()
    }
    fn connect(&self, info: &ConnectionInfo) {
        self.provider.on_connect(info)
    }
    fn disconnect(&self, info: &ConnectionInfo) {
        self.provider.on_disconnect(info)
    }
}

/// One entry of a provider's routing table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    pub index: usize,
    pub oneway: bool,
    /// Declared blocking: always run off the reader.
    pub blocking: bool,
    /// Takes an argument stream ([`Streaming`](crate::Streaming)): calls without one are
    /// refused.
    pub uploads: bool,
    /// Has a direct handler ([`DirectFn`]).
    pub direct: bool,
}

/// A provider's routing table: RPC names to routes, keyed by the name's bytes, so the
/// server looks up a method name as it arrived on the wire (checked UTF-8 once, by the
/// decoder) without turning it into a `str` again.
#[derive(Default)]
pub(crate) struct Routes(HashMap<Box<[u8]>, Route, rustc_hash::FxBuildHasher>);

impl Routes {
    pub(crate) fn insert(&mut self, name: String, route: Route) {
        self.0.insert(name.into_bytes().into_boxed_slice(), route);
    }

    /// The route of `name` (a `str` or the bytes of one).
    #[inline]
    pub(crate) fn get<K: AsRef<[u8]> + ?Sized>(&self, name: &K) -> Option<&Route> {
        self.0.get(name.as_ref())
    }
}

pub(crate) type Factory = Arc<dyn Fn() -> Arc<dyn Instance> + Send + Sync>;

pub(crate) enum Instances {
    Shared(Arc<dyn Instance>),
    PerConnection(Factory),
}

/// A registered provider: its routing table and its instance(s).
pub(crate) struct Registered {
    pub info: ProviderInfo,
    /// Full RPC names (with every service name) and `__get__x` / `__set__x` accessors.
    pub routes: Routes,
    pub instances: Instances,
    /// Sorted names for "no such method" messages.
    pub exposed: Vec<String>,
    /// How often each method (by route index) overran the blocking budget while running on
    /// a connection's reader; see [`Registered::runs_off_reader`].
    pub overruns: Box<[std::sync::atomic::AtomicU32]>,
}

/// After this many calls in a row of a method overran the blocking budget on a connection's
/// reader (no call of it within the budget in between, on any connection), its calls run off
/// the reader. In a row, because an overrun may be the host's, not the method's: on a loaded
/// host a reader is descheduled for tens of milliseconds now and then, in the middle of the
/// fastest handler, while the method's other calls keep finishing within the budget.
pub(crate) const OVERRUNS_TO_MOVE: u32 = 3;

/// A table of overrun counters for `n` methods, all zero.
pub(crate) fn overrun_table(n: usize) -> Box<[std::sync::atomic::AtomicU32]> {
    (0..n)
        .map(|_| std::sync::atomic::AtomicU32::new(0))
        .collect()
}

/// The route name of an attribute getter.
pub(crate) fn getter_route(attr: &str) -> String {
    format!("__get__{attr}")
}

/// The route name of an attribute setter.
pub(crate) fn setter_route(attr: &str) -> String {
    format!("__set__{attr}")
}

impl Registered {
    fn build<P: Provider>(provider_id: u16, per_connection: bool, instances: Instances) -> Self {
        let specs = P::methods();
        let mut routes = Routes::default();
        let mut methods = Vec::new();
        let mut attributes = Vec::new();
        let mut writable = Vec::new();
        let services: Vec<&str> = std::iter::once(P::SERVICE)
            .chain(P::ALIASES.iter().copied())
            .collect();
        for (index, spec) in specs.iter().enumerate() {
            let route = Route {
                index,
                oneway: spec.oneway,
                blocking: spec.blocking,
                uploads: spec.uploads,
                direct: spec.direct.is_some(),
            };
            match spec.kind {
                MethodKind::Method => {
                    for s in &services {
                        routes.insert(full_name(s, spec.name), route);
                    }
                    methods.push(MethodInfo {
                        name: full_name(P::SERVICE, spec.name),
                        params: spec.params.iter().map(|p| p.to_string()).collect(),
                        oneway: spec.oneway,
                        streams: spec.streams,
                        uploads: spec.uploads,
                    });
                }
                MethodKind::Getter => {
                    routes.insert(getter_route(spec.name), route);
                    attributes.push(spec.name.to_string());
                }
                MethodKind::Setter => {
                    routes.insert(setter_route(spec.name), route);
                    writable.push(spec.name.to_string());
                    if !attributes.iter().any(|a| a == spec.name) {
                        attributes.push(spec.name.to_string());
                    }
                }
            }
        }
        let mut exposed: Vec<String> = methods.iter().map(|m| m.name.clone()).collect();
        exposed.extend(attributes.iter().map(|a| format!("attribute {a}")));
        exposed.sort();
        Registered {
            info: ProviderInfo {
                provider_id,
                service: P::SERVICE.to_string(),
                aliases: P::ALIASES.iter().map(|a| a.to_string()).collect(),
                methods,
                attributes,
                writable,
                per_connection,
            },
            routes,
            instances,
            exposed,
            overruns: overrun_table(specs.len()),
        }
    }

    /// Whether calls of the method at `route` run off the connection's reader: declared
    /// blocking, or seen to overrun the blocking budget [`OVERRUNS_TO_MOVE`] times in a row.
    #[inline]
    pub(crate) fn runs_off_reader(&self, route: &Route) -> bool {
        route.blocking
            || self
                .overruns
                .get(route.index)
                .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed) >= OVERRUNS_TO_MOVE)
    }

    /// Counts one overrun of the budget by the method at `route`; true when this one moves
    /// it off the reader.
    pub(crate) fn overran(&self, route: &Route) -> bool {
        self.overruns.get(route.index).is_some_and(|c| {
            c.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 == OVERRUNS_TO_MOVE
        })
    }

    /// A call of the method at `route` finished within the budget: its overruns so far were
    /// not in a row. Writes only when there is something to clear, so the fast path of a
    /// method called from many connections reads the counter and never bounces its line.
    #[inline]
    pub(crate) fn within_budget(&self, route: &Route) {
        if let Some(c) = self.overruns.get(route.index) {
            let n = c.load(std::sync::atomic::Ordering::Relaxed);
            if n != 0 && n < OVERRUNS_TO_MOVE {
                c.store(0, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn shared<P: Provider>(provider: Arc<P>, provider_id: u16) -> Self {
        let specs: Arc<[MethodSpec<P>]> = P::methods().into();
        let inst: Arc<dyn Instance> = Arc::new(InstanceOf { provider, specs });
        Self::build::<P>(provider_id, false, Instances::Shared(inst))
    }

    pub(crate) fn per_connection<P: Provider>(
        factory: impl Fn() -> P + Send + Sync + 'static,
        provider_id: u16,
    ) -> Self {
        let specs: Arc<[MethodSpec<P>]> = P::methods().into();
        let f: Factory = Arc::new(move || {
            let inst: Arc<dyn Instance> = Arc::new(InstanceOf {
                provider: Arc::new(factory()),
                specs: specs.clone(),
            });
            inst
        });
        Self::build::<P>(provider_id, true, Instances::PerConnection(f))
    }
}

/// The full RPC name of a method: `service + "_" + method`.
pub fn full_name(service: &str, method: &str) -> String {
    let mut s = String::with_capacity(service.len() + 1 + method.len());
    s.push_str(service);
    s.push('_');
    s.push_str(method);
    s
}
