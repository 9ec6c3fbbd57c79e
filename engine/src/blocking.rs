//! A blocking client for scripts and synchronous programs.

use std::future::Future;

use serde::de::DeserializeOwned;

use crate::args::{ArgList, KwList};
use crate::client::{CallBuilder, Proxy};
use crate::error::Error;
use crate::provider::Metadata;

/// A [`Proxy`] with its own small runtime, for code that is not `async`.
///
/// Do not use it from inside an async runtime (blocking there panics); use [`Proxy`]
/// directly.
///
/// ```no_run
/// let p = wirecall::BlockingProxy::new("tcp://127.0.0.1:4000")?;
/// let hello: String = p.call(p.proxy().call_on(42, "my_service_say_hello")?
///     .arg("Ada").kwarg("lastname", "Lovelace"))?;
/// # Ok::<(), wirecall::Error>(())
/// ```
#[derive(Debug)]
pub struct BlockingProxy {
    rt: tokio::runtime::Runtime,
    proxy: Proxy,
}

impl BlockingProxy {
    /// A blocking proxy for `uri` (see [`Proxy::new`] for the forms).
    pub fn new(uri: &str) -> Result<BlockingProxy, Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("wirecall-blocking")
            .enable_all()
            .build()
            .map_err(|e| Error::config(format!("could not start a runtime: {e}")))?;
        Ok(BlockingProxy {
            rt,
            proxy: Proxy::new(uri)?,
        })
    }

    /// Changes the proxy (codec, timeout, annotations), e.g. `.map(|p| p.codec(CodecId::CBOR))`.
    #[must_use]
    pub fn map(mut self, f: impl FnOnce(Proxy) -> Proxy) -> BlockingProxy {
        self.proxy = f(self.proxy);
        self
    }

    /// The async proxy, to build calls with.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Runs a call built on [`BlockingProxy::proxy`] and waits for its result.
    pub fn call<R: DeserializeOwned, A: ArgList, K: KwList>(
        &self,
        call: CallBuilder<'_, A, K>,
    ) -> Result<R, Error> {
        self.rt.block_on(call.call())
    }

    /// Sends a oneway call built on [`BlockingProxy::proxy`].
    pub fn send<A: ArgList, K: KwList>(&self, call: CallBuilder<'_, A, K>) -> Result<(), Error> {
        self.rt.block_on(call.send())
    }

    /// The server's metadata.
    pub fn metadata(&self) -> Result<Metadata, Error> {
        self.rt.block_on(self.proxy.metadata())
    }

    /// Runs any future on the proxy's runtime.
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.rt.block_on(fut)
    }
}
