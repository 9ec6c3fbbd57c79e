//! The client engine and call builders: remote functions by name (PyMargo's
//! `engine.register(name)`), and one call put together argument by argument.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use wirecall_transport::Address;

use super::lock;
use super::proxy::{check_name, CallOpts, RpcName};
use crate::args::{ArgList, KwList};
use crate::error::Error;
use crate::{CodecId, Proxy};

/// Converts addresses and proxies into a [`Proxy`].
pub trait IntoProxy {
    /// The proxy.
    fn into_proxy(self) -> Proxy;
    /// The proxy, reusing a client's shared connection for the same URI.
    fn into_proxy_in(self, client: &Client) -> Proxy
    where
        Self: Sized,
    {
        let _ = client;
        self.into_proxy()
    }
}

impl IntoProxy for Proxy {
    fn into_proxy(self) -> Proxy {
        self
    }
}

impl IntoProxy for &Proxy {
    fn into_proxy(self) -> Proxy {
        self.clone()
    }
}

impl IntoProxy for &str {
    fn into_proxy(self) -> Proxy {
        Proxy::new(self).unwrap_or_else(|e| Proxy::broken(self, e.to_string()))
    }
    fn into_proxy_in(self, client: &Client) -> Proxy {
        client
            .proxy(self)
            .unwrap_or_else(|e| Proxy::broken(self, e.to_string()))
    }
}

impl IntoProxy for &String {
    fn into_proxy(self) -> Proxy {
        self.as_str().into_proxy()
    }
    fn into_proxy_in(self, client: &Client) -> Proxy {
        self.as_str().into_proxy_in(client)
    }
}

impl IntoProxy for String {
    fn into_proxy(self) -> Proxy {
        self.as_str().into_proxy()
    }
    fn into_proxy_in(self, client: &Client) -> Proxy {
        self.as_str().into_proxy_in(client)
    }
}

impl IntoProxy for &Address {
    fn into_proxy(self) -> Proxy {
        self.to_string().into_proxy()
    }
    fn into_proxy_in(self, client: &Client) -> Proxy {
        self.to_string().into_proxy_in(client)
    }
}

impl IntoProxy for &crate::Engine {
    fn into_proxy(self) -> Proxy {
        self.address().into_proxy()
    }
    fn into_proxy_in(self, client: &Client) -> Proxy {
        self.address().into_proxy_in(client)
    }
}

/// A client engine: hands out proxies (one shared connection per address) and remote
/// functions by name (PyMargo's `engine.register(name)`).
#[derive(Clone, Default)]
pub struct Client {
    proxies: Arc<Mutex<HashMap<String, Proxy>>>,
    tls: Option<crate::TlsClientConfig>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("proxies", &lock(&self.proxies).len())
            .finish()
    }
}

impl Client {
    /// A new client engine.
    pub fn new() -> Client {
        Client::default()
    }

    /// The proxy for `uri`, sharing one connection with earlier proxies for the same URI.
    pub fn proxy(&self, uri: &str) -> Result<Proxy, Error> {
        let mut map = lock(&self.proxies);
        if let Some(p) = map.get(uri) {
            return Ok(p.clone());
        }
        let mut p = Proxy::new(uri)?;
        if let Some(tls) = &self.tls {
            p = p.tls(tls.clone());
        }
        map.insert(uri.to_string(), p.clone());
        Ok(p)
    }

    /// A client whose proxies connect to `tls://` and `tls+unix://` addresses with this
    /// TLS configuration (see [`Proxy::tls`]); without it the environment decides.
    #[must_use]
    pub fn with_tls(config: crate::TlsClientConfig) -> Client {
        Client {
            tls: Some(config),
            ..Client::default()
        }
    }

    /// A remote function by full RPC name (`my_service_say_hello`), to call with
    /// [`RemoteFunction::on`].
    pub fn register(&self, rpc_name: &str) -> RemoteFunction {
        RemoteFunction {
            client: self.clone(),
            name: rpc_name.to_string(),
            method: check_name(rpc_name).map(|()| Arc::from(rpc_name)),
            oneway: false,
        }
    }
}

/// A remote function known by name; [`RemoteFunction::on`] picks the server and provider.
#[derive(Clone, Debug)]
pub struct RemoteFunction {
    client: Client,
    name: String,
    /// The wire name, validated once at registration and shared by every call.
    method: Result<Arc<str>, Error>,
    oneway: bool,
}

impl RemoteFunction {
    /// Marks the function oneway (Margo's `disable_response`): calls return once sent.
    #[must_use]
    pub fn disable_response(mut self) -> Self {
        self.oneway = true;
        self
    }

    /// The RPC name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A call of this function on provider `provider_id` at `target` (an address URI, a
    /// [`Proxy`], or a server [`Engine`](crate::Engine)); add arguments, then `.call()`.
    pub fn on(&self, target: impl IntoProxy, provider_id: u16) -> CallBuilder<'static, (), ()> {
        let proxy = target.into_proxy_in(&self.client);
        CallBuilder {
            opts: proxy.opts.clone(),
            proxy: Cow::Owned(proxy),
            provider_id,
            method: self.method.clone().map(RpcName::Shared),
            args: (),
            kwargs: (),
            oneway: self.oneway,
            upload: None,
        }
    }
}

/// One call being put together: positional arguments with [`CallBuilder::arg`], keyword
/// arguments with [`CallBuilder::kwarg`], then [`CallBuilder::call`].
///
/// A builder from [`Proxy::call`] or [`Proxy::call_on`] borrows its proxy (no reference
/// count to touch per call); to run a call on a spawned task, move a clone of the proxy into
/// the task and build the call there. [`RemoteFunction::on`] gives an owned one.
#[must_use = "a call does nothing until .call() or .send() is awaited"]
pub struct CallBuilder<'p, A, K> {
    proxy: Cow<'p, Proxy>,
    provider_id: u16,
    method: Result<RpcName<'p>, Error>,
    args: A,
    kwargs: K,
    oneway: bool,
    opts: CallOpts,
    /// The call's argument stream ([`CallBuilder::upload`]).
    upload: Option<crate::upload::UploadSource>,
}

impl<A, K> fmt::Debug for CallBuilder<'_, A, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallBuilder")
            .field("proxy", &self.proxy)
            .field("provider_id", &self.provider_id)
            .field("method", &self.method.as_ref().map(|m| m.as_str()).ok())
            .finish()
    }
}

impl<'p> CallBuilder<'p, (), ()> {
    pub(super) fn new(proxy: Cow<'p, Proxy>, provider_id: u16, method: RpcName<'p>) -> Self {
        CallBuilder {
            opts: proxy.opts.clone(),
            proxy,
            provider_id,
            method: Ok(method),
            args: (),
            kwargs: (),
            oneway: false,
            upload: None,
        }
    }
}

impl<'p, A: ArgList, K: KwList> CallBuilder<'p, A, K> {
    /// Adds the next positional argument.
    pub fn arg<T: Serialize + Send>(self, value: T) -> CallBuilder<'p, (A, T), K> {
        CallBuilder {
            proxy: self.proxy,
            provider_id: self.provider_id,
            method: self.method,
            args: (self.args, value),
            kwargs: self.kwargs,
            oneway: self.oneway,
            opts: self.opts,
            upload: self.upload,
        }
    }

    /// Adds a keyword argument, matched by parameter name on the server.
    #[allow(clippy::type_complexity)]
    pub fn kwarg<T: Serialize + Send>(
        self,
        name: impl Into<Cow<'static, str>>,
        value: T,
    ) -> CallBuilder<'p, A, (K, (Cow<'static, str>, T))> {
        CallBuilder {
            proxy: self.proxy,
            provider_id: self.provider_id,
            method: self.method,
            args: self.args,
            kwargs: (self.kwargs, (name.into(), value)),
            oneway: self.oneway,
            opts: self.opts,
            upload: self.upload,
        }
    }

    /// Overrides the codec for this call.
    pub fn codec(mut self, codec: CodecId) -> Self {
        self.opts.codec = Some(codec);
        self
    }

    /// Overrides the timeout for this call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.opts.timeout = Some(timeout);
        self
    }

    /// Marks this call idempotent with a retry budget: when the connection is lost before
    /// its answer came (a server restart), it is sent again on a new connection, up to `n`
    /// times, with a backoff of 20 ms doubling up to 1 s. Without it (or
    /// [`idempotent`](Self::idempotent)) a call that may have run is never sent twice.
    pub fn retries(mut self, n: u32) -> Self {
        self.opts.retries = Some(n);
        self
    }

    /// Marks this call idempotent: retried as [`retries`](Self::retries) with the proxy's
    /// budget ([`Proxy::max_retries`], `WIRECALL_MAX_RETRIES`, default 3).
    pub fn idempotent(mut self) -> Self {
        self.opts.retries = Some(self.opts.max_retries);
        self
    }

    /// Bounds this call by the time the caller of a handler has left
    /// ([`CallContext::remaining`](crate::CallContext::remaining)): a handler that calls on
    /// its caller's behalf passes its `CallContext` here, and the call's timeout (sent to
    /// the server as its deadline) becomes the shorter of the one it had and what is left.
    /// A caller that set no timeout changes nothing. Inheritance is explicit, not ambient:
    /// calls made without `within` keep their own timeout.
    ///
    /// ```no_run
    /// # use wirecall::{CallContext, Proxy};
    /// # async fn handler(ctx: CallContext, backend: Proxy) -> Result<u64, wirecall::Error> {
    /// let n: u64 = backend.call_on(7, "store_count")?.within(&ctx).call().await?;
    /// # Ok(n) }
    /// ```
    pub fn within(mut self, ctx: &crate::CallContext) -> Self {
        if let Some(left) = ctx.remaining() {
            self.opts.timeout = Some(match self.opts.timeout {
                Some(t) => t.min(left),
                None => left,
            });
        }
        self
    }

    /// Adds a user annotation to this call.
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.opts.annotations.push((key.into(), value.into()));
        self
    }

    /// Streams the call's arguments (SPEC §6.13): after the positional and keyword
    /// arguments, the items of `items` are sent one by one, as the server's credit allows,
    /// to a method that takes a [`Streaming`](crate::Streaming) parameter; the stream's end
    /// ends the argument stream. Then [`call`](Self::call) waits for the result (the
    /// timeout bounds the whole call), or [`stream`](Self::stream) reads a streamed result
    /// while the arguments still flow (a bidirectional stream).
    ///
    /// The server holds at most its window of items for the call; a caller whose server
    /// reads slowly waits for credit, never buffering more. Dropping the call (or its
    /// stream) cancels it and stops sending. An item that cannot be encoded fails the
    /// call.
    ///
    /// ```no_run
    /// # async fn f(proxy: wirecall::Proxy) -> Result<(), wirecall::Error> {
    /// let total: u64 = proxy
    ///     .call("stats_sum")?
    ///     .upload(futures::stream::iter(1..=100u64))
    ///     .call()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn upload<T, S>(mut self, items: S) -> Self
    where
        T: Serialize + Send + 'static,
        S: futures::Stream<Item = T> + Send + 'static,
    {
        self.upload = Some(crate::upload::UploadSource::new(items));
        self
    }

    /// [`upload`](Self::upload) from a [`Sink`](futures::Sink): returns the sending end
    /// and the call, to run side by side (the sink waits while the server has no room;
    /// closing or dropping it ends the argument stream). `buffer` items may wait in the
    /// sink beyond the server's window.
    ///
    /// ```no_run
    /// # async fn f(proxy: wirecall::Proxy) -> Result<(), wirecall::Error> {
    /// use futures::SinkExt;
    /// let (mut sink, call) = proxy.call("stats_sum")?.upload_sink::<u64>(16);
    /// let send = async move {
    ///     for n in 1..=100u64 {
    ///         sink.send(n).await.expect("the call is still running");
    ///     }
    ///     // Dropping the sink ends the argument stream.
    /// };
    /// let ((), total) = futures::join!(send, call.call::<u64>());
    /// let total = total?;
    /// # Ok(()) }
    /// ```
    pub fn upload_sink<T>(self, buffer: usize) -> (crate::UploadSink<T>, Self)
    where
        T: Serialize + Send + 'static,
    {
        let (tx, rx) = futures::channel::mpsc::channel(buffer);
        (tx, self.upload(rx))
    }

    /// Sends the call and waits for its result, decoded as `R`.
    ///
    /// Dropping the returned future before it completes cancels the call (a CANCEL frame
    /// tells the server to stop working on it).
    pub async fn call<R: DeserializeOwned>(self) -> Result<R, Error> {
        let method = self.method?;
        let method = method.as_str();
        if self.oneway {
            return Err(Error::config(
                "this function is oneway (disable_response): use .send() instead of .call()",
            ));
        }
        if let Some(items) = self.upload {
            return self
                .proxy
                .invoke_upload_value(
                    self.provider_id,
                    method,
                    &self.args,
                    &self.kwargs,
                    &self.opts,
                    items,
                )
                .await;
        }
        self.proxy
            .invoke(
                self.provider_id,
                method,
                &self.args,
                &self.kwargs,
                false,
                &self.opts,
            )
            .await?
            .ok_or_else(|| Error::Codec {
                message: "the reply carried no value".into(),
            })
    }

    /// Sets the stream window of a streamed call ([`stream`](Self::stream)): how many
    /// items the server may send ahead of what the consumer has read (at least 1; default
    /// [`DEFAULT_WINDOW`](crate::DEFAULT_WINDOW)). The server's side holds at most this
    /// many items produced and not yet read.
    pub fn window(mut self, items: u32) -> Self {
        self.opts.window = Some(items.max(1));
        self
    }

    /// Calls a method that returns a stream ([`ItemStream`](crate::ItemStream)) and returns
    /// its items, decoded as `T`, as a [`RemoteStream`](crate::RemoteStream): a
    /// [`Stream`](futures::Stream) of `Result<T, Error>`. Returns once the server answered
    /// (an error before the stream, such as an unknown method, is returned here; the
    /// timeout, if any, bounds this wait and not the stream). A method that returns a
    /// plain value gives a stream of that one value. Dropping the stream cancels the call.
    pub async fn stream<T: DeserializeOwned>(self) -> Result<crate::RemoteStream<T>, Error> {
        let method = self.method?;
        let method = method.as_str();
        if self.oneway {
            return Err(Error::config(
                "this function is oneway (disable_response): it has no stream to read",
            ));
        }
        if let Some(items) = self.upload {
            let raw = self
                .proxy
                .invoke_upload(
                    self.provider_id,
                    method,
                    &self.args,
                    &self.kwargs,
                    &self.opts,
                    items,
                    false,
                )
                .await?;
            return Ok(crate::RemoteStream::new(raw));
        }
        self.proxy
            .invoke_stream(
                self.provider_id,
                method,
                &self.args,
                &self.kwargs,
                &self.opts,
            )
            .await
    }

    /// Sends the call oneway: returns once it is queued; the server never answers.
    pub async fn send(self) -> Result<(), Error> {
        let method = self.method?;
        let method = method.as_str();
        if self.upload.is_some() {
            return Err(Error::config(
                "a oneway call cannot stream its arguments (nothing would end the stream): use .call() or .stream()",
            ));
        }
        let _: Option<()> = self
            .proxy
            .invoke(
                self.provider_id,
                method,
                &self.args,
                &self.kwargs,
                true,
                &self.opts,
            )
            .await?;
        Ok(())
    }
}
