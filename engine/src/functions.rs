//! Plain functions registered without a provider type (Margo's `MARGO_REGISTER` of free
//! functions).

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::args::{with_runtime_names, FromArgs, RuntimeNames};
use crate::context::{ConnectionInfo, Incoming};
use crate::error::Fault;
use crate::provider::{
    full_name, Handled, Instance, Instances, MethodInfo, Outcome, ProviderInfo, Registered, Route,
};

type DynHandler = Box<dyn Fn(Incoming) -> Handled + Send + Sync>;

struct Entry {
    name: String,
    params: &'static [&'static str],
    oneway: bool,
    blocking: bool,
    handler: DynHandler,
}

/// A set of plain functions served under one provider id.
///
/// Each function takes its parameters as one tuple, e.g. `|(a, b): (i32, i32)| a + b`, with
/// the parameter names given alongside so keyword arguments can be matched. RPC names are
/// `service + "_" + name`, or just `name` when the service is empty.
///
/// ```
/// let math = wirecall::Functions::new("math")
///     .sync_fn("add", &["a", "b"], |(a, b): (i64, i64)| a + b)
///     .try_fn("div", &["a", "b"], |(a, b): (i64, i64)| {
///         a.checked_div(b).ok_or("division by zero")
///     });
/// assert_eq!(math.names(), vec!["math_add", "math_div"]);
/// ```
#[derive(Default)]
pub struct Functions {
    service: String,
    entries: Vec<Entry>,
}

impl fmt::Debug for Functions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Functions")
            .field("service", &self.service)
            .field("names", &self.names())
            .finish()
    }
}

fn decode<T: FromArgs>(call: &Incoming, params: &'static [&'static str]) -> Result<T, Outcome> {
    with_runtime_names(params, || call.decode_args::<T, RuntimeNames>())
}

impl Functions {
    /// An empty set whose RPC names start with `service + "_"` (none when empty).
    pub fn new(service: impl Into<String>) -> Functions {
        Functions {
            service: service.into(),
            entries: Vec::new(),
        }
    }

    /// The full RPC names, in registration order.
    pub fn names(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.name.clone()).collect()
    }

    fn push(
        mut self,
        name: &str,
        params: &'static [&'static str],
        oneway: bool,
        handler: DynHandler,
    ) -> Self {
        let name = if self.service.is_empty() {
            name.to_string()
        } else {
            full_name(&self.service, name)
        };
        self.entries.push(Entry {
            name,
            params,
            oneway,
            blocking: false,
            handler,
        });
        self
    }

    /// Marks the function added last as blocking (as `#[remote(blocking)]` marks a method):
    /// its calls run on tokio's blocking pool, never on a connection's reader, so they hold
    /// up neither the connection's other calls nor the runtime's workers.
    ///
    /// ```
    /// let files = wirecall::Functions::new("files")
    ///     .try_fn("size", &["path"], |(path,): (String,)| std::fs::metadata(path).map(|m| m.len()))
    ///     .blocking();
    /// # let _ = files;
    /// ```
    pub fn blocking(mut self) -> Self {
        if let Some(e) = self.entries.last_mut() {
            e.blocking = true;
        }
        self
    }

    /// Adds a synchronous function returning a value.
    pub fn sync_fn<A, R, F>(self, name: &str, params: &'static [&'static str], f: F) -> Self
    where
        A: FromArgs + 'static,
        R: Serialize + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        self.push(
            name,
            params,
            false,
            Box::new(move |call| match decode::<A>(&call, params) {
                Ok(a) => Handled::Ready(call.ready_encoder().value(&f(a))),
                Err(o) => Handled::Ready(o),
            }),
        )
    }

    /// Adds a synchronous function returning `Result<T, E>`; errors reach the caller as
    /// [`Error::Remote`](crate::Error::Remote).
    pub fn try_fn<A, T, E, F>(self, name: &str, params: &'static [&'static str], f: F) -> Self
    where
        A: FromArgs + 'static,
        T: Serialize + 'static,
        E: fmt::Display + 'static,
        F: Fn(A) -> Result<T, E> + Send + Sync + 'static,
    {
        self.push(
            name,
            params,
            false,
            Box::new(move |call| match decode::<A>(&call, params) {
                Ok(a) => Handled::Ready(match f(a) {
                    Ok(v) => call.ready_encoder().value(&v),
                    Err(e) => Outcome::Fault(Fault::application(
                        std::any::type_name::<E>(),
                        e.to_string(),
                        "",
                    )),
                }),
                Err(o) => Handled::Ready(o),
            }),
        )
    }

    /// Adds an `async` function.
    pub fn async_fn<A, R, Fut, F>(self, name: &str, params: &'static [&'static str], f: F) -> Self
    where
        A: FromArgs + 'static,
        R: Serialize + 'static,
        Fut: Future<Output = R> + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
    {
        self.push(
            name,
            params,
            false,
            Box::new(move |call| match decode::<A>(&call, params) {
                Ok(a) => {
                    let enc = call.encoder();
                    let fut = f(a);
                    Handled::Pending(Box::pin(async move { enc.value(&fut.await) }))
                }
                Err(o) => Handled::Ready(o),
            }),
        )
    }

    /// Adds a oneway function: never answered, not even on error.
    pub fn oneway_fn<A, F>(self, name: &str, params: &'static [&'static str], f: F) -> Self
    where
        A: FromArgs + 'static,
        F: Fn(A) + Send + Sync + 'static,
    {
        self.push(
            name,
            params,
            true,
            Box::new(move |call| match decode::<A>(&call, params) {
                Ok(a) => {
                    f(a);
                    Handled::Ready(call.ready_encoder().value(&()))
                }
                Err(o) => Handled::Ready(o),
            }),
        )
    }

    pub(crate) fn into_registered(self, provider_id: u16) -> Registered {
        let mut routes = crate::provider::Routes::default();
        let mut methods = Vec::new();
        let mut handlers = Vec::new();
        for (index, e) in self.entries.into_iter().enumerate() {
            routes.insert(
                e.name.clone(),
                Route {
                    index,
                    oneway: e.oneway,
                    blocking: e.blocking,
                    uploads: false,
                    direct: false,
                },
            );
            methods.push(MethodInfo {
                name: e.name,
                params: e.params.iter().map(|p| p.to_string()).collect(),
                oneway: e.oneway,
                streams: false,
                uploads: false,
            });
            handlers.push(e.handler);
        }
        let mut exposed: Vec<String> = methods.iter().map(|m| m.name.clone()).collect();
        exposed.sort();
        Registered {
            info: ProviderInfo {
                provider_id,
                service: self.service,
                aliases: Vec::new(),
                methods,
                attributes: Vec::new(),
                writable: Vec::new(),
                per_connection: false,
            },
            routes,
            overruns: crate::provider::overrun_table(handlers.len()),
            instances: Instances::Shared(Arc::new(FnInstance { handlers })),
            exposed,
        }
    }
}

struct FnInstance {
    handlers: Vec<DynHandler>,
}

impl Instance for FnInstance {
    fn call_direct(
        &self,
        _index: usize,
        _call: &crate::context::DirectCall<'_>,
        _out: &mut Vec<u8>,
    ) -> Option<Outcome> {
        // Free functions have no direct handlers (their routes are never marked direct).
        Some(Outcome::Fault(Fault::new(
            crate::error::FaultKind::Internal,
            "method table out of sync",
        )))
    }
    fn dispatch(&self, index: usize, call: Incoming) -> Handled {
        match self.handlers.get(index) {
            Some(h) => h(call),
            None => Handled::Ready(Outcome::Fault(Fault::new(
                crate::error::FaultKind::Internal,
                "function table out of sync",
            ))),
        }
    }
    fn prefinalize(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn finalize(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn connect(&self, _info: &ConnectionInfo) {}
    fn disconnect(&self, _info: &ConnectionInfo) {}
}
