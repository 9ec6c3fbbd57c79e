//! `wirecall serve`, `wirecall call` and `wirecall meta`: host a built-in demo provider, call
//! any method of a running server with arguments in the vector notation, and print a
//! server's metadata.
//!
//! The demo provider (service `demo`, provider id [`DEMO_PROVIDER_ID`]) has an echo, an
//! add, a oneway counter (`bump`) with its attribute (`count`), a failing method (`fail`),
//! a slow one (`sleep`), a streaming one (`ticks`), a bulk echo (`echo_bulk`) and one that
//! calls back into its caller (`work`), so every path of a call can be tried from a shell.
//! `wirecall call` prints stream items as they arrive, and exposes the [`Caller`] provider
//! on its connection, so a server's handler can report progress to it.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use wirecall::{
    Bulk, CallContext, CodecId, Engine, Error, ItemStream, Metadata, Proxy, PyroProxy, Streaming,
    DAEMON_PROVIDER_ID,
};
use wirecall_codecs::{Limits, Value};
use wirecall_conformance::notation;

/// The provider id `wirecall serve` registers the demo provider under.
pub(crate) const DEMO_PROVIDER_ID: u16 = 1;

/// The RPC name of the demo provider's echo method (what `bench rpc --connect` calls).
pub(crate) const DEMO_ECHO: &str = "demo_echo";

/// The error the demo provider's `fail` method returns.
#[derive(Debug)]
pub(crate) struct DemoError {
    message: String,
}

impl std::fmt::Display for DemoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "demo failure: {}", self.message)
    }
}

impl std::error::Error for DemoError {}

/// The demo provider `wirecall serve` hosts.
#[derive(Debug, Default)]
pub(crate) struct Demo {
    count: AtomicU64,
}

#[wirecall::provider(service = "demo")]
impl Demo {
    /// Returns its argument, whatever it is.
    #[remote]
    fn echo(&self, value: Value) -> Value {
        value
    }

    /// Adds two integers (fails on overflow).
    #[remote]
    fn add(&self, a: i64, b: i64) -> Result<i64, DemoError> {
        a.checked_add(b).ok_or_else(|| DemoError {
            message: format!("{a} + {b} overflows a 64-bit integer"),
        })
    }

    /// Adds `by` to the counter; never answered (oneway).
    #[remote(oneway)]
    fn bump(&self, by: u64) {
        self.count.fetch_add(by, Ordering::Relaxed);
    }

    /// Always fails with `message`.
    #[remote]
    fn fail(&self, message: String) -> Result<(), DemoError> {
        Err(DemoError { message })
    }

    /// Sleeps `millis` milliseconds, then returns them.
    #[remote]
    async fn sleep(&self, millis: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        millis
    }

    /// A stream of `0..n`, one item every `interval_ms` milliseconds, sent as produced
    /// (under the caller's flow-control window).
    #[remote]
    fn ticks(&self, n: u64, interval_ms: u64) -> ItemStream<u64> {
        let interval = Duration::from_millis(interval_ms);
        ItemStream::new(futures::stream::unfold(0u64, move |i| async move {
            if i >= n {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(interval).await;
            }
            Some((i, i + 1))
        }))
    }

    /// The sum of the numbers the caller streams after the call (an argument stream, SPEC
    /// §6.13; `wirecall call` reads them from stdin, one per line).
    #[remote]
    async fn sum(&self, numbers: Streaming<i64>) -> Result<i64, Error> {
        let mut numbers = numbers;
        let mut total = 0i64;
        while let Some(n) = numbers.next().await {
            total = total.wrapping_add(n?);
        }
        Ok(total)
    }

    /// Each line the caller streams, upper-cased and sent back as it arrives (a
    /// bidirectional stream).
    #[remote]
    fn shout(&self, lines: Streaming<String>) -> ItemStream<String> {
        ItemStream::try_new(lines.map(|l| l.map(|l| l.to_uppercase())))
    }

    /// Returns its bytes, which travel both ways as a bulk attachment (never encoded by the
    /// codec; SPEC §6.11).
    #[remote]
    fn echo_bulk(&self, data: Bulk) -> Bulk {
        data
    }

    /// Works through `steps` steps, calling the caller's `caller_progress(done, total)`
    /// back over the caller's own connection after each (SPEC §6.10); returns the steps
    /// done. `wirecall call` exposes that method ([`Caller`]).
    #[remote]
    async fn work(&self, ctx: CallContext, steps: u32) -> Result<u32, Error> {
        let caller = CallerClient::new(ctx.callback()?, CALLER_PROVIDER_ID);
        for done in 1..=steps {
            tokio::time::sleep(Duration::from_millis(5)).await;
            caller.progress(done, steps).await?;
        }
        Ok(steps)
    }

    /// The counter `bump` adds to.
    #[attribute]
    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Sets the counter.
    #[attribute(set)]
    fn set_count(&self, value: u64) {
        self.count.store(value, Ordering::Relaxed);
    }
}

/// The provider id `wirecall call` exposes [`Caller`] under on its connection.
pub(crate) const CALLER_PROVIDER_ID: u16 = 0;

/// What `wirecall call` exposes on its own connection (service `caller`), so that the
/// server's handler can call back: progress reports are printed on standard error as they
/// come.
#[derive(Debug, Default)]
pub(crate) struct Caller;

#[wirecall::provider(service = "caller")]
impl Caller {
    /// Prints `progress: done/total`.
    #[remote]
    fn progress(&self, done: u32, total: u32) {
        eprintln!("progress: {done}/{total}");
    }
}

/// Arguments of `wirecall serve`.
#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// Address to listen on (`tcp://127.0.0.1:0`, `unix:///path/to.sock`,
    /// `tls://127.0.0.1:4443` with --tls-cert and --tls-key). Repeatable.
    #[arg(
        long = "listen",
        value_name = "URL",
        default_value = "tcp://127.0.0.1:0"
    )]
    listen: Vec<String>,
    /// Codecs to accept, comma-separated (default: WIRECALL_CODECS_ACCEPTED or every
    /// built-in codec).
    #[arg(long, value_name = "NAMES")]
    accept: Option<String>,
    /// Provider id of the demo provider.
    #[arg(long, default_value_t = DEMO_PROVIDER_ID, value_name = "ID")]
    provider_id: u16,
    /// Enables remote shutdown (`Proxy::shutdown_server`) for requests carrying this
    /// token. Without it remote shutdown is off: nobody can stop the server over the
    /// network.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "WIRECALL_SHUTDOWN_TOKEN",
        hide_env_values = true
    )]
    shutdown_token: Option<String>,
    /// Log filter, as RUST_LOG: `info` (default), `warn`, `wirecall=debug` (every
    /// connection and call), `wirecall::server=trace`... Overrides RUST_LOG.
    #[arg(long = "log", value_name = "FILTER")]
    log: Option<String>,
    /// Log line format on stderr: `text` or `json` (one JSON object per line, with the
    /// connection and call spans).
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// Certificate chain (PEM) of the tls:// addresses; with --tls-key. Default:
    /// WIRECALL_TLS_CERT.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of --tls-cert. Default: WIRECALL_TLS_KEY.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS. Default:
    /// WIRECALL_TLS_CLIENT_CA.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<std::path::PathBuf>,
}

/// TLS options of the commands that connect to a server (`tls://host:port`).
#[derive(Args, Debug, Default)]
pub(crate) struct ClientTlsArgs {
    /// Trust this CA (PEM) for tls:// servers instead of the system roots. Default:
    /// WIRECALL_TLS_CA.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for servers that require one (mutual TLS); with
    /// --tls-client-key. Default: WIRECALL_TLS_CLIENT_CERT.
    #[arg(long, value_name = "FILE", requires = "tls_client_key")]
    tls_client_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of --tls-client-cert. Default: WIRECALL_TLS_CLIENT_KEY.
    #[arg(long, value_name = "FILE", requires = "tls_client_cert")]
    tls_client_key: Option<std::path::PathBuf>,
}

impl ClientTlsArgs {
    /// The TLS configuration the flags ask for, or `None` to leave it to the environment.
    fn config(&self) -> Result<Option<wirecall::TlsClientConfig>, String> {
        if self.tls_ca.is_none() && self.tls_client_cert.is_none() {
            return Ok(None);
        }
        let mut config = match &self.tls_ca {
            Some(ca) => wirecall::TlsClientConfig::with_ca_file(ca),
            None => wirecall::TlsClientConfig::from_env(),
        }
        .map_err(|e| e.to_string())?;
        if let (Some(cert), Some(key)) = (&self.tls_client_cert, &self.tls_client_key) {
            config = config
                .client_cert_files(cert, key)
                .map_err(|e| e.to_string())?;
        }
        Ok(Some(config))
    }
}

impl ServeArgs {
    /// The TLS configuration the flags ask for, or `None` to leave it to the environment.
    fn tls(&self) -> Result<Option<wirecall::TlsServerConfig>, String> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let mut config =
            wirecall::TlsServerConfig::from_pem_files(cert, key).map_err(|e| e.to_string())?;
        if let Some(ca) = &self.tls_client_ca {
            config = config
                .require_client_cert_file(ca)
                .map_err(|e| e.to_string())?;
        }
        Ok(Some(config))
    }
}

/// How `wirecall serve` writes its log lines.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the log subscriber of a long-running command: `filter` (or RUST_LOG, or
/// `info`) on stderr, as text or JSON lines.
pub(crate) fn init_logging(filter: Option<&str>, format: LogFormat) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(f) => EnvFilter::try_new(f).map_err(|e| {
            format!("--log `{f}` is not a log filter ({e}); write e.g. info, warn, wirecall=debug")
        })?,
        None => match std::env::var("RUST_LOG") {
            Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(&v).map_err(|e| {
                format!("RUST_LOG=`{v}` is not a log filter ({e}); write e.g. info, warn, wirecall=debug")
            })?,
            _ => EnvFilter::new("info"),
        },
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => {
            use std::io::IsTerminal;
            builder
                .with_ansi(std::io::stderr().is_terminal())
                .try_init()
        }
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
    installed.map_err(|e| format!("cannot install the log output: {e}"))
}

/// Arguments of `wirecall call`.
#[derive(Args, Debug)]
pub(crate) struct CallArgs {
    /// The server (`tcp://host:port`, `unix:///path`), or a Python Pyro5 object
    /// (`PYRO:object@host:port`, `PYRO:object@./u:/path`; --codec picks its serializer:
    /// serpent, the default, json, msgpack or marshal).
    url: String,
    /// The method: its full RPC name (`demo_echo`) or its name within the provider's
    /// service (`echo`); with --get/--set, an attribute name.
    method: String,
    /// Positional arguments, each a value in the vector notation or JSON (`42`, `"text"`,
    /// `[1, 2]`, `{"$bytes": "00ff"}`).
    #[arg(allow_negative_numbers = true)]
    args: Vec<String>,
    /// A keyword argument `name=value`, the value in the vector notation. Repeatable.
    #[arg(long = "kwarg", value_name = "NAME=VALUE")]
    kwargs: Vec<String>,
    /// Codec for the call (default: WIRECALL_CODEC or the one negotiated at connect).
    #[arg(long, value_name = "NAME")]
    codec: Option<String>,
    /// Provider id (default: the server's only provider, else the demo provider's id 1).
    #[arg(long = "provider", value_name = "ID")]
    provider: Option<u16>,
    /// Give up after this many milliseconds (the deadline travels with the call).
    #[arg(long, value_name = "MS")]
    timeout: Option<u64>,
    /// Treat METHOD as an attribute name and print its value.
    #[arg(long, conflicts_with_all = ["set", "args", "kwargs"])]
    get: bool,
    /// Treat METHOD as an attribute name and set it to this value (vector notation).
    #[arg(long, value_name = "VALUE", conflicts_with_all = ["args", "kwargs"])]
    set: Option<String>,
    #[command(flatten)]
    tls: ClientTlsArgs,
}

/// Arguments of `wirecall meta`.
#[derive(Args, Debug)]
pub(crate) struct MetaArgs {
    /// The server (`tcp://host:port`, `unix:///path`).
    url: String,
    /// Codec for the metadata call.
    #[arg(long, value_name = "NAME")]
    codec: Option<String>,
    /// Print the metadata as JSON.
    #[arg(long)]
    json: bool,
    /// Give up after this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    timeout: u64,
    #[command(flatten)]
    tls: ClientTlsArgs,
}

fn current_thread() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))
}

/// One line: engine errors may carry a multi-line remote trace.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// An engine error as the CLI reports it (flags instead of API names).
fn describe(e: &Error) -> String {
    match e {
        Error::CodecRefused { codec, accepted } => format!(
            "the server refused codec {codec}; it accepts: {} (choose one with --codec)",
            accepted.join(", ")
        ),
        Error::Timeout { after } => format!(
            "no answer within {} ms (raise --timeout if the method is slow)",
            after.as_millis()
        ),
        other => one_line(&other.to_string()),
    }
}

fn parse_codec(name: &str) -> Result<CodecId, String> {
    wirecall::config::parse_codec(name).map_err(|e| match e {
        Error::Config { message } => message,
        other => other.to_string(),
    })
}

/// Runs `wirecall serve`.
pub(crate) fn serve(args: &ServeArgs) -> Result<ExitCode, String> {
    let accept = match &args.accept {
        Some(list) => Some(wirecall::config::parse_codec_list(list).map_err(|e| describe(&e))?),
        None => None,
    };
    if args.provider_id == DAEMON_PROVIDER_ID {
        return Err(format!(
            "provider id {DAEMON_PROVIDER_ID} is the daemon object's; choose another --provider-id"
        ));
    }
    let shutdown_token = match args.shutdown_token.as_deref() {
        Some(t) if t.trim().is_empty() => {
            return Err(
                "the shutdown token (--shutdown-token or WIRECALL_SHUTDOWN_TOKEN) is empty; give a secret, or leave both unset to keep remote shutdown off"
                    .to_string(),
            )
        }
        other => other,
    };
    init_logging(args.log.as_deref(), args.log_format)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    rt.block_on(async {
        let mut listen = args.listen.iter();
        let first = listen.next().ok_or("give at least one --listen address")?;
        let mut builder = Engine::server(first.clone());
        for a in listen {
            builder = builder.listen(a.clone());
        }
        if let Some(codecs) = accept {
            builder = builder.accept(codecs);
        }
        if let Some(t) = shutdown_token {
            builder = builder.enable_remote_shutdown(t);
        }
        if let Some(tls) = args.tls()? {
            builder = builder.tls(tls);
        }
        let engine = builder.start().await.map_err(|e| describe(&e))?;
        engine
            .register_provider(Demo::default(), args.provider_id)
            .map_err(|e| describe(&e))?;
        // First line of stdout: the addresses, for scripts and tests.
        println!("{}", engine.addresses().join(" "));
        eprintln!(
            "serving the demo provider (id {}: echo, add, bump (oneway), fail, sleep, attribute count) accepting {}; remote shutdown {}; Ctrl-C to stop",
            args.provider_id,
            engine
                .accepted()
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if shutdown_token.is_some() {
                "enabled (token required)"
            } else {
                "off"
            }
        );
        // Python Pyro5 proxies reach the same provider on the same addresses.
        let object = engine
            .object_ids()
            .into_iter()
            .find(|(_, id)| *id == args.provider_id)
            .map(|(name, _)| name);
        if let Some(object) = object {
            let uris = pyro_uris(&engine.addresses(), &object);
            if !uris.is_empty() {
                eprintln!(
                    "Python Pyro5 proxies: {} (serializers: those of the accepted codecs among serpent, json, msgpack, marshal)",
                    uris.join(" ")
                );
            }
        }
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                if let Err(e) = r {
                    eprintln!("wirecall serve: cannot wait for Ctrl-C ({e}); stopping");
                }
                engine.finalize().await;
            }
            () = terminated() => engine.finalize().await,
            () = engine.wait_for_finalize() => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on SIGTERM (so `kill` finalizes the server and removes its unix sockets); never
/// where the signal cannot be watched.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut s) = signal(SignalKind::terminate()) {
            s.recv().await;
            return;
        }
    }
    std::future::pending::<()>().await;
}

fn parse_value(what: &str, text: &str) -> Result<Value, String> {
    notation::parse(text).map_err(|e| {
        format!(
            "{what} `{text}` is not a value in the vector notation ({}); write strings in double quotes, e.g. '\"text\"'",
            e.message
        )
    })
}

/// Which provider a call goes to, and the full RPC name and oneway flag of `method` there.
struct Resolved {
    provider_id: u16,
    method: String,
    oneway: bool,
    /// The method returns a stream (from the metadata).
    streams: bool,
    /// The method takes an argument stream (from the metadata).
    uploads: bool,
}

/// Resolves a short method name and the provider from the server's metadata; when the
/// metadata does not know the method the name is sent as given, so the server's own error
/// answers.
fn resolve(meta: &Metadata, provider: Option<u16>, method: &str) -> Resolved {
    let providers: Vec<_> = meta
        .providers
        .iter()
        .filter(|p| p.provider_id != DAEMON_PROVIDER_ID)
        .collect();
    let provider_id = provider.unwrap_or(match providers.as_slice() {
        [only] => only.provider_id,
        _ => DEMO_PROVIDER_ID,
    });
    let Some(info) = meta.provider(provider_id) else {
        return Resolved {
            provider_id,
            method: method.to_string(),
            oneway: false,
            streams: false,
            uploads: false,
        };
    };
    let full = wirecall::full_name(&info.service, method);
    let found = info
        .methods
        .iter()
        .find(|m| m.name == method)
        .or_else(|| info.methods.iter().find(|m| m.name == full));
    match found {
        Some(m) => Resolved {
            provider_id,
            method: m.name.clone(),
            oneway: m.oneway,
            streams: m.streams,
            uploads: m.uploads,
        },
        None => Resolved {
            provider_id,
            method: method.to_string(),
            oneway: false,
            streams: false,
            uploads: false,
        },
    }
}

fn proxy_for(
    url: &str,
    codec: Option<CodecId>,
    timeout: Option<u64>,
    tls: &ClientTlsArgs,
) -> Result<Proxy, String> {
    let mut proxy = Proxy::new(url).map_err(|e| describe(&e))?;
    if let Some(tls) = tls.config()? {
        proxy = proxy.tls(tls);
    }
    if let Some(c) = codec {
        proxy = proxy.codec(c);
    }
    if let Some(ms) = timeout {
        proxy = proxy.timeout(Duration::from_millis(ms.max(1)));
    }
    Ok(proxy)
}

/// Decodes a reply into a [`Value`]; codecs that are not self-describing cannot be read
/// without the Rust type, so say which can.
fn decode_reply(codec: CodecId, bytes: &[u8]) -> Result<Value, String> {
    if let Some(info) = wirecall_codecs::builtin_info(codec) {
        if !info.self_describing {
            return Err(format!(
                "the call succeeded, but {codec} is not self-describing: its reply cannot be decoded without the method's Rust type; use --codec json, msgpack, cbor, ron or serpent to see results"
            ));
        }
    }
    let limits = Limits::default().with_max_input(usize::MAX);
    wirecall_codecs::decode_value(codec, bytes, &limits)
        .map_err(|e| format!("decoding the reply with {codec}: {e}"))
}

/// A result with its bulk values (SPEC §6.11): a result that is one bulk value (a method
/// returning `Bulk`) is its bytes; otherwise the placeholders stay (the codec's integers)
/// and the values are listed after the result, so what travelled is all shown.
fn with_bulk(v: Value, bulk: Vec<bytes::Bytes>) -> Value {
    match (&v, bulk.as_slice()) {
        (_, []) => v,
        (Value::Int(0), [only]) => Value::Bytes(only.to_vec()),
        _ => Value::Map(vec![
            (Value::Str("result".into()), v),
            (
                Value::Str("bulk".into()),
                Value::List(bulk.iter().map(|b| Value::Bytes(b.to_vec())).collect()),
            ),
        ]),
    }
}

/// Runs `wirecall call`.
pub(crate) fn call(args: &CallArgs) -> Result<ExitCode, String> {
    let codec = args.codec.as_deref().map(parse_codec).transpose()?;
    let positional = args
        .args
        .iter()
        .enumerate()
        .map(|(i, a)| parse_value(&format!("argument {}", i + 1), a))
        .collect::<Result<Vec<_>, _>>()?;
    let mut keywords = Vec::with_capacity(args.kwargs.len());
    for kv in &args.kwargs {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--kwarg `{kv}` is not NAME=VALUE"))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("--kwarg `{kv}` has an empty name"));
        }
        keywords.push((
            k.to_string(),
            parse_value(&format!("keyword argument `{k}`"), v)?,
        ));
    }
    let set_value = args
        .set
        .as_deref()
        .map(|v| parse_value("--set value", v))
        .transpose()?;
    if is_pyro_uri(&args.url) {
        if args.provider.is_some() {
            return Err(
                "--provider does not apply to a PYRO: URI (its object id names the target)".into(),
            );
        }
        let call = PyroCall {
            uri: &args.url,
            method: &args.method,
            codec,
            timeout: args.timeout.map(Duration::from_millis),
            get: args.get,
            set: set_value,
        };
        if let Some(v) = current_thread()?.block_on(call_pyro(call, positional, keywords))? {
            println!("{}", notation::print(&v));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let keywords: Vec<(Value, Value)> = keywords
        .into_iter()
        .map(|(k, v)| (Value::Str(k), v))
        .collect();
    // The caller's provider, for servers that call back (progress reports).
    let proxy = proxy_for(&args.url, codec, args.timeout, &args.tls)?
        .expose(Caller, CALLER_PROVIDER_ID)
        .map_err(|e| describe(&e))?;
    let rt = current_thread()?;
    let out = rt.block_on(async {
        let meta = proxy.metadata().await.map_err(|e| describe(&e))?;
        if args.get || set_value.is_some() {
            let provider_id = resolve(&meta, args.provider, &args.method).provider_id;
            return match set_value {
                Some(v) => proxy
                    .set_attr(provider_id, &args.method, v)
                    .await
                    .map(|()| None)
                    .map_err(|e| describe(&e)),
                None => proxy
                    .get_attr::<Value>(provider_id, &args.method)
                    .await
                    .map(Some)
                    .map_err(|e| describe(&e)),
            };
        }
        let target = resolve(&meta, args.provider, &args.method);
        let codec = proxy.effective_codec().await.map_err(|e| describe(&e))?;
        let mut encoded = Vec::with_capacity(64);
        wirecall_codecs::encode_value(codec, &Value::List(positional), &mut encoded)
            .map_err(|e| format!("encoding the arguments with {codec}: {e}"))?;
        let kw = if keywords.is_empty() {
            Vec::new()
        } else {
            let mut out = Vec::with_capacity(64);
            wirecall_codecs::encode_value(codec, &Value::Map(keywords), &mut out)
                .map_err(|e| format!("encoding the keyword arguments with {codec}: {e}"))?;
            out
        };
        if target.uploads {
            // The argument stream: one value per line of stdin (vector notation or JSON),
            // sent as read, under the server's credit; the answer (one value, or items as
            // they arrive) printed as for other calls.
            let bad_line: std::sync::Arc<std::sync::Mutex<Option<String>>> = Default::default();
            let bad = bad_line.clone();
            let lines = tokio::io::BufReader::new(tokio::io::stdin());
            let items = futures::stream::unfold((lines, bad), |(mut lines, bad)| async move {
                use tokio::io::AsyncBufReadExt as _;
                loop {
                    let mut line = String::new();
                    match lines.read_line(&mut line).await {
                        Ok(0) | Err(_) => return None,
                        Ok(_) => {}
                    }
                    let text = line.trim();
                    if text.is_empty() {
                        continue;
                    }
                    match notation::parse(text) {
                        Ok(v) => return Some((v, (lines, bad))),
                        Err(e) => {
                            *bad.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(format!("stdin: `{text}` is not a value: {e}"));
                            return None;
                        }
                    }
                }
            });
            let mut answer = proxy
                .call_raw_upload(
                    target.provider_id,
                    &target.method,
                    codec,
                    encoded.into(),
                    kw.into(),
                    items,
                )
                .await
                .map_err(|e| describe(&e))?;
            while let Some(item) = answer.next().await {
                let v = item.map_err(|e| describe(&e))?;
                println!("{}", notation::print(&v));
                use std::io::Write as _;
                let _ = std::io::stdout().flush();
            }
            if let Some(e) = bad_line.lock().unwrap_or_else(|e| e.into_inner()).take() {
                return Err(format!("{e} (the argument stream ended there)"));
            }
            return Ok(None);
        }
        if target.streams {
            // Items are printed as they arrive; the stream's window bounds what is
            // buffered here.
            let mut items = proxy
                .call_raw_stream(
                    target.provider_id,
                    &target.method,
                    codec,
                    encoded.into(),
                    kw.into(),
                )
                .await
                .map_err(|e| describe(&e))?;
            while let Some(item) = items.next().await {
                let v = item.map_err(|e| describe(&e))?;
                println!("{}", notation::print(&v));
                use std::io::Write as _;
                let _ = std::io::stdout().flush();
            }
            return Ok(None);
        }
        if !target.oneway {
            let (c, result, bulk) = proxy
                .call_raw_bulk(
                    target.provider_id,
                    &target.method,
                    codec,
                    encoded.into(),
                    kw.into(),
                )
                .await
                .map_err(|e| describe(&e))?;
            return Ok(Some(with_bulk(decode_reply(c, &result)?, bulk)));
        }
        let reply = proxy
            .call_raw(
                target.provider_id,
                &target.method,
                codec,
                encoded.into(),
                kw.into(),
                target.oneway,
            )
            .await
            .map_err(|e| describe(&e))?;
        match reply {
            Some((c, bytes)) => decode_reply(c, &bytes).map(Some),
            None => {
                // Oneway: no reply. A ping after it returns once the server has read the
                // call, so it is not lost when this process exits.
                proxy.ping().await.map_err(|e| describe(&e))?;
                eprintln!("{} is oneway: sent, no reply", target.method);
                Ok(None)
            }
        }
    })?;
    if let Some(v) = out {
        println!("{}", notation::print(&v));
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `url` is a Pyro5 `PYRO:` URI (any case, as Pyro5 reads it).
fn is_pyro_uri(url: &str) -> bool {
    url.trim()
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("PYRO:"))
}

/// A `wirecall call` of a Python Pyro5 object.
struct PyroCall<'a> {
    uri: &'a str,
    method: &'a str,
    codec: Option<CodecId>,
    timeout: Option<Duration>,
    get: bool,
    set: Option<Value>,
}

/// Calls (or reads or writes an attribute of) a Pyro5 object; returns what to print.
async fn call_pyro(
    call: PyroCall<'_>,
    positional: Vec<Value>,
    keywords: Vec<(String, Value)>,
) -> Result<Option<Value>, String> {
    let mut proxy = PyroProxy::new(call.uri).map_err(|e| describe(&e))?;
    if let Some(codec) = call.codec {
        proxy = proxy.serializer(codec).map_err(|e| describe(&e))?;
    }
    if let Some(t) = call.timeout {
        proxy = proxy.timeout(t);
    }
    if call.get {
        return proxy
            .get_attr(call.method)
            .await
            .map(Some)
            .map_err(|e| describe(&e));
    }
    if let Some(v) = call.set {
        return proxy
            .set_attr(call.method, v)
            .await
            .map(|()| None)
            .map_err(|e| describe(&e));
    }
    let meta = proxy.metadata().await.map_err(|e| describe(&e))?;
    let v = proxy
        .call(call.method, positional, keywords)
        .await
        .map_err(|e| describe(&e))?;
    if meta.oneway.iter().any(|m| m == call.method) {
        eprintln!("{} is oneway: sent, no reply", call.method);
        return Ok(None);
    }
    Ok(Some(v))
}

/// The metadata as text: one block per provider.
pub(crate) fn format_metadata(meta: &Metadata) -> String {
    let mut out = String::new();
    for p in &meta.providers {
        out.push_str(&format!("provider {}: {}", p.provider_id, p.service));
        if !p.aliases.is_empty() {
            out.push_str(&format!(" (aliases: {})", p.aliases.join(", ")));
        }
        if p.per_connection {
            out.push_str(" [one instance per connection]");
        }
        out.push('\n');
        for m in &p.methods {
            out.push_str(&format!("  method {}({})", m.name, m.params.join(", ")));
            if m.oneway {
                out.push_str(" oneway");
            }
            if m.uploads {
                out.push_str(" takes-stream");
            }
            if m.streams {
                out.push_str(" stream");
            }
            out.push('\n');
        }
        for a in &p.attributes {
            let rw = if p.writable.contains(a) {
                "read/write"
            } else {
                "read-only"
            };
            out.push_str(&format!("  attribute {a} ({rw})\n"));
        }
    }
    if meta.providers.is_empty() {
        out.push_str("no providers registered\n");
    }
    out
}

/// Runs `wirecall meta`.
pub(crate) fn meta(args: &MetaArgs) -> Result<ExitCode, String> {
    let codec = args.codec.as_deref().map(parse_codec).transpose()?;
    let proxy = proxy_for(&args.url, codec, Some(args.timeout), &args.tls)?;
    let rt = current_thread()?;
    let (meta, accepted) = rt.block_on(async {
        let meta = proxy.metadata().await.map_err(|e| describe(&e))?;
        // A Pyro5 daemon (a PYRO: URI, a proxy in Pyro mode) does not announce its
        // serializers.
        let accepted = if proxy.is_pyro() {
            Vec::new()
        } else {
            proxy.server_accepted().await.map_err(|e| describe(&e))?
        };
        Ok::<_, String>((meta, accepted))
    })?;
    if args.json {
        let doc = serde_json::json!({
            "accepted": accepted.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "providers": serde_json::to_value(&meta.providers)
                .map_err(|e| format!("writing the metadata as JSON: {e}"))?,
        });
        println!("{doc:#}");
    } else if proxy.is_pyro() {
        println!(
            "Pyro5 object {} (its daemon accepts the serializers its Python has: serpent, json, marshal, and msgpack if installed)",
            args.url
        );
        print!("{}", format_metadata(&meta));
    } else {
        println!(
            "server {} accepts: {}",
            args.url,
            accepted
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        print!("{}", format_metadata(&meta));
    }
    Ok(ExitCode::SUCCESS)
}

/// The Pyro5 URIs of `object` on the plain tcp and unix `addresses` (`PYRO:obj@host:port`,
/// `PYRO:obj@./u:/path`); TLS addresses have none (Pyro5's SSL mode is not served).
pub(crate) fn pyro_uris(addresses: &[String], object: &str) -> Vec<String> {
    addresses
        .iter()
        .filter_map(|a| {
            if let Some(hp) = a.strip_prefix("tcp://") {
                Some(format!("PYRO:{object}@{hp}"))
            } else {
                a.strip_prefix("unix://")
                    .map(|path| format!("PYRO:{object}@./u:{path}"))
            }
        })
        .collect()
}

#[cfg(test)]
mod pyro_tests {
    //! `wirecall call PYRO:...` against a plain Python Pyro5 daemon (the engine's
    //! `tests/python/pyro_daemon.py`), with the same skip/fail policy as the other Python
    //! tests: skipped without Pyro5 5.17 unless `WIRECALL_REQUIRE_PYTHON=1`.

    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;

    use super::*;

    fn python_or_skip() -> Option<String> {
        let python = std::env::var("WIRECALL_PYTHON")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "python3".to_owned());
        let check = "import Pyro5; assert Pyro5.__version__ == '5.17'";
        match Command::new(&python).args(["-c", check]).output() {
            Ok(o) if o.status.success() => Some(python),
            _ if std::env::var("WIRECALL_REQUIRE_PYTHON").as_deref() == Ok("1") => {
                panic!("WIRECALL_REQUIRE_PYTHON=1 but {python} has no Pyro5 5.17")
            }
            _ => {
                eprintln!("skipped: python reference missing ({python} has no Pyro5 5.17)");
                None
            }
        }
    }

    /// The daemon process, killed and reaped when dropped.
    struct Daemon(Child);

    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn start_daemon(python: &str) -> (Daemon, String) {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../engine/tests/python/pyro_daemon.py"
        );
        let mut child = Command::new(python)
            .args([script, "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the python daemon");
        let stdout = child.stdout.take().expect("piped stdout");
        let daemon = Daemon(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let uri = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the daemon prints its URI");
        assert!(uri.starts_with("PYRO:"), "{uri:?}");
        (daemon, uri.trim().to_string())
    }

    fn call<'a>(uri: &'a str, method: &'a str, codec: Option<CodecId>) -> PyroCall<'a> {
        PyroCall {
            uri,
            method,
            codec,
            timeout: Some(Duration::from_secs(20)),
            get: false,
            set: None,
        }
    }

    #[test]
    fn wirecall_call_reaches_a_python_pyro5_daemon() {
        let Some(python) = python_or_skip() else {
            return;
        };
        let (_daemon, uri) = start_daemon(&python);
        let rt = current_thread().unwrap();
        let run = |c: PyroCall<'_>, args: &[&str], kw: &[(&str, &str)]| {
            let args = args
                .iter()
                .map(|a| parse_value("argument", a).unwrap())
                .collect();
            let kw = kw
                .iter()
                .map(|(k, v)| (k.to_string(), parse_value("kwarg", v).unwrap()))
                .collect();
            rt.block_on(call_pyro(c, args, kw))
        };
        for codec in [
            None,
            Some(CodecId::JSON),
            Some(CodecId::MSGPACK),
            Some(CodecId::MARSHAL),
        ] {
            assert_eq!(
                run(call(&uri, "add", codec), &["2", "3"], &[]),
                Ok(Some(Value::Int(5)))
            );
            assert_eq!(
                run(
                    call(&uri, "add", codec),
                    &[],
                    &[("a", "\"x\""), ("b", "\"y\"")]
                ),
                Ok(Some(Value::Str("xy".into())))
            );
            let e = run(call(&uri, "fail", codec), &["\"bad\""], &[]).unwrap_err();
            assert!(e.starts_with("remote error: ValueError: bad"), "{e}");
            assert!(e.contains("in fail"), "{e}");
        }
        let e = run(call(&uri, "nope", None), &[], &[]).unwrap_err();
        assert!(e.contains("no such method `nope`"), "{e}");
        assert_eq!(run(call(&uri, "fire", None), &["4"], &[]), Ok(None));

        let set = PyroCall {
            set: Some(Value::Int(12)),
            ..call(&uri, "value", None)
        };
        assert_eq!(run(set, &[], &[]), Ok(None));
        let get = PyroCall {
            get: true,
            ..call(&uri, "value", Some(CodecId::JSON))
        };
        assert_eq!(run(get, &[], &[]), Ok(Some(Value::Int(12))));

        let e = run(call(&uri, "add", Some(CodecId::CBOR)), &[], &[]).unwrap_err();
        assert!(e.contains("serpent, json, msgpack or marshal"), "{e}");
        assert!(is_pyro_uri("pyro:obj@h:1") && !is_pyro_uri("tcp://h:1"));
    }
}
