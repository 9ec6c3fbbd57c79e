//! Batches: many calls sent together on one connection, their results read in order
//! (Pyro's `BatchProxy`). A batch that stops at its first error is an *ordered batch* of the
//! wire protocol (SPEC §6.8): the server runs its calls one at a time and answers the calls
//! after a failure `SKIPPED`; a batch that runs every call sends plain calls.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::conn::{BatchMark, Body};
use super::proxy::{check_name, may_have_run, pyro_provider};
use super::pyro::{Kind as PyroKind, PyroProxy};
use crate::args::{ArgList, SeqOf};
use crate::codec;
use crate::error::Error;
use crate::{CodecId, Proxy, Value};

/// Encodes one call's arguments with the connection's codec: positional arguments, then
/// keyword arguments; returns where the positional ones end.
type Encoder<'p> = Box<dyn FnOnce(CodecId, &mut Vec<u8>) -> Result<usize, Error> + Send + 'p>;

struct Entry<'p> {
    provider_id: u16,
    method: String,
    oneway: bool,
    encode: Encoder<'p>,
}

/// A call added to a [`Batch`]: hand it to [`BatchResults::get`] for its result, decoded as
/// `R`.
#[derive(Debug)]
pub struct BatchCall<R> {
    index: usize,
    _result: PhantomData<fn() -> R>,
}

impl<R> Clone for BatchCall<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for BatchCall<R> {}

impl<R> BatchCall<R> {
    /// The call's position in its batch (0 for the first call added).
    pub fn index(&self) -> usize {
        self.index
    }
}

/// Calls collected on a [`Proxy`] and sent together with [`Batch::send`]: one write, the
/// results in the order the calls were added.
///
/// By default the batch **stops at its first error**, as Pyro's batches do: the server runs
/// the calls one at a time, in order, and answers every call after the first failure
/// [`Error::Skipped`] without running it (a rule of the wire protocol, SPEC §6.8, so the
/// server rather than the client decides what ran). [`Batch::run_all`] sends the calls as
/// independent calls instead: the server may run them concurrently and every call runs
/// whatever the others do.
///
/// A batch that stops at its first error holds all its calls in flight at once, so it has at
/// most the server's in-flight limit of calls (128 by default, `WIRECALL_MAX_IN_FLIGHT`); a
/// batch that runs all is sent in windows of that many.
///
/// Dropping a batch before [`Batch::send`] sends nothing; dropping the future of
/// [`Batch::send`] while calls are in flight cancels them (a CANCEL each; in a batch that
/// stops at its first error the server skips the rest).
///
/// ```no_run
/// # async fn f(proxy: wirecall::Proxy) -> Result<(), wirecall::Error> {
/// use wirecall::Value;
/// let mut batch = proxy.batch();
/// let sum = batch.call::<_, i64>(1, "calc_add", (((), 2), 3));
/// let echo = batch.call_value(1, "calc_echo", vec![Value::Str("hi".into())], vec![]);
/// batch.oneway(1, "calc_log", ((), "done"));
/// let results = batch.send().await?;
/// assert_eq!(results.get(sum)?, 5);
/// let _hi: Value = results.get(echo)?;
/// # Ok(()) }
/// ```
#[must_use = "a batch does nothing until .send() is awaited"]
pub struct Batch<'p> {
    proxy: &'p Proxy,
    calls: Vec<Entry<'p>>,
    stop_at_first_error: bool,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("proxy", self.proxy)
            .field("calls", &self.calls.len())
            .field("stop_at_first_error", &self.stop_at_first_error)
            .finish()
    }
}

impl<'p> Batch<'p> {
    pub(super) fn new(proxy: &'p Proxy) -> Batch<'p> {
        Batch {
            proxy,
            calls: Vec::new(),
            stop_at_first_error: true,
            timeout: proxy.opts.timeout,
        }
    }

    /// Runs every call, whatever the others do (the calls travel as independent calls and
    /// the server may run them concurrently). The default is to stop at the first error.
    pub fn run_all(mut self) -> Self {
        self.stop_at_first_error = false;
        self
    }

    /// Stops at the first error (the default): later calls are not run and report
    /// [`Error::Skipped`].
    pub fn stop_at_first_error(mut self) -> Self {
        self.stop_at_first_error = true;
        self
    }

    /// The timeout of each call of the batch (default: the proxy's), counted from when the
    /// call is sent.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The number of calls added.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether no call was added.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    fn push(&mut self, provider_id: u16, method: &str, oneway: bool, encode: Encoder<'p>) -> usize {
        self.calls.push(Entry {
            provider_id,
            method: method.to_string(),
            oneway,
            encode,
        });
        self.calls.len() - 1
    }

    /// Adds a typed call of `method` (the full RPC name) on provider `provider_id` with
    /// positional arguments `args` (nested pairs, see [`ArgList`]); its result decodes as `R`.
    pub fn call<A: ArgList + 'p, R: DeserializeOwned>(
        &mut self,
        provider_id: u16,
        method: &str,
        args: A,
    ) -> BatchCall<R> {
        let index = self.push(
            provider_id,
            method,
            false,
            Box::new(move |c, out| encode_args(c, &SeqOf(&args), out)),
        );
        BatchCall {
            index,
            _result: PhantomData,
        }
    }

    /// Adds a call with dynamic positional and keyword arguments; its result reads as a
    /// [`Value`] (or any type, with [`BatchResults::get_as`]).
    pub fn call_value(
        &mut self,
        provider_id: u16,
        method: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
    ) -> BatchCall<Value> {
        let index = self.push(
            provider_id,
            method,
            false,
            Box::new(move |c, out| encode_dynamic(c, &args, &kwargs, out)),
        );
        BatchCall {
            index,
            _result: PhantomData,
        }
    }

    /// Adds a oneway call (no answer; in a batch that stops at its first error it runs in
    /// its turn, and is dropped when an earlier call failed).
    pub fn oneway<A: ArgList + 'p>(
        &mut self,
        provider_id: u16,
        method: &str,
        args: A,
    ) -> BatchCall<()> {
        let index = self.push(
            provider_id,
            method,
            true,
            Box::new(move |c, out| encode_args(c, &SeqOf(&args), out)),
        );
        BatchCall {
            index,
            _result: PhantomData,
        }
    }

    /// Sends every call in one write and waits for all the answers; the results come in the
    /// order the calls were added. Fails as a whole only when nothing could be sent (no
    /// connection, a bad name, a batch over the in-flight limit); each call's own failure is
    /// in its result.
    pub async fn send(self) -> Result<BatchResults, Error> {
        let n = self.calls.len();
        if n == 0 {
            return Ok(BatchResults {
                results: Vec::new(),
            });
        }
        for c in &self.calls {
            check_name(&c.method)?;
        }
        self.proxy.settle().await?;
        if let Some(p) = self.proxy.pyro_client() {
            return Box::pin(self.send_pyro(p)).await;
        }
        let mut opts = self.proxy.opts.clone();
        opts.timeout = self.timeout;
        // A connection that cannot be made yet (a server restarting) is retried as for any
        // call: nothing is sent before it is up.
        let conn = self.proxy.conn_retrying(&opts, &mut 0).await?;
        let limit = conn.max_in_flight.max(1) as usize;
        let two_way = self.calls.iter().filter(|c| !c.oneway).count();
        if self.stop_at_first_error && two_way > limit {
            return Err(Error::LimitExceeded {
                message: format!(
                    "a batch that stops at its first error holds all its calls in flight: it has {two_way} calls with answers and the server accepts {limit} in flight; split the batch, use run_all(), or raise the server's max_in_flight"
                ),
            });
        }
        let annotations = opts.annotations()?;
        let codec = opts.codec.unwrap_or(conn.default_codec);
        // Encode everything first: an argument that does not encode fails the batch before
        // anything is sent.
        let mut encoded = Vec::with_capacity(n);
        for (i, c) in self.calls.into_iter().enumerate() {
            let mut out = Vec::with_capacity(32);
            let split = (c.encode)(codec, &mut out).map_err(|e| match e {
                Error::Codec { message } => Error::Codec {
                    message: format!("call {i} of the batch (`{}`): {message}", c.method),
                },
                e => e,
            })?;
            encoded.push((c.provider_id, c.method, c.oneway, Bytes::from(out), split));
        }
        let first = AtomicU64::new(0);
        let queued: Vec<AtomicBool> = (0..n).map(|_| AtomicBool::new(false)).collect();
        let queued = &queued;
        let stop = self.stop_at_first_error;
        let conn: &super::conn::ClientConn = &conn;
        let annotations = &annotations;
        let first = &first;
        let timeout = self.timeout;
        let mut futures: Vec<Option<CallFuture<'_>>> = encoded
            .iter()
            .enumerate()
            .map(|(i, (provider_id, method, oneway, bytes, split))| {
                let fut: CallFuture<'_> = Box::pin(async move {
                    let (args, kwargs) = bytes.split_at(*split);
                    let mark = stop.then_some(BatchMark {
                        first,
                        is_first: i == 0,
                        last: i + 1 == n,
                        queued: &queued[i],
                    });
                    conn.call_batched(
                        *provider_id,
                        method,
                        codec,
                        annotations,
                        args,
                        kwargs,
                        *oneway,
                        timeout,
                        mark,
                    )
                    .await
                });
                Some(fut)
            })
            .collect();
        let oneway: Vec<bool> = encoded.iter().map(|e| e.2).collect();
        let mut results: Vec<Option<CallResult>> = (0..n).map(|_| None).collect();
        // Calls are started in order (each queues its frame on its first poll, so request
        // ids follow the batch's order) while fewer than `limit` wait for answers; every
        // started call is polled on each wake-up (one of them may be reading the socket).
        let mut started = 0;
        let mut waiting = 0;
        let mut done_from = 0;
        let mut failed_locally = false;
        std::future::poll_fn(|cx| loop {
            let mut progress = false;
            for i in done_from..started {
                if let Some(f) = futures[i].as_mut() {
                    if let Poll::Ready(r) = f.as_mut().poll(cx) {
                        futures[i] = None;
                        if !oneway[i] {
                            waiting -= 1;
                        }
                        results[i] = Some(r);
                        progress = true;
                    }
                }
            }
            while started < n && waiting < limit {
                let i = started;
                started += 1;
                if stop && failed_locally {
                    // An earlier call of an ordered batch was never sent: the server would
                    // not know the batch; the rest is skipped here.
                    futures[i] = None;
                    results[i] = Some(Err(Error::Skipped {
                        message: "an earlier call of the batch could not be sent".into(),
                    }));
                    continue;
                }
                if !oneway[i] {
                    waiting += 1;
                }
                progress = true;
                if let Some(f) = futures[i].as_mut() {
                    if let Poll::Ready(r) = f.as_mut().poll(cx) {
                        futures[i] = None;
                        if !oneway[i] {
                            waiting -= 1;
                        }
                        // A call that failed before its frame was queued was not sent.
                        if r.is_err() && !queued[i].load(Ordering::Relaxed) {
                            failed_locally = true;
                        }
                        results[i] = Some(r);
                    }
                }
            }
            while done_from < n && results[done_from].is_some() {
                done_from += 1;
            }
            if done_from == n {
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        })
        .await;
        drop(futures);
        let results = results
            .into_iter()
            .zip(encoded.iter())
            .map(|(r, (provider_id, method, ..))| {
                let provider_id = *provider_id;
                let r = r.unwrap_or_else(|| {
                    Err(Error::Skipped {
                        message: "not sent".into(),
                    })
                });
                r.map(|v| v.map(|(c, b)| (c, b.into_bytes())))
                    .map_err(|e| match e {
                        Error::NoSuchProvider { message, .. } => Error::NoSuchProvider {
                            provider_id,
                            message,
                        },
                        Error::NoSuchMethod { exposed, .. } => Error::NoSuchMethod {
                            method: method.clone(),
                            exposed,
                        },
                        e => e,
                    })
            })
            .collect();
        Ok(BatchResults { results })
    }
}

impl Batch<'_> {
    /// [`Batch::send`] in Pyro mode. A batch that stops at its first error is one Pyro5
    /// batch request (the daemon runs the calls in order and stops at the first that
    /// raises: the calls after it are [`Error::Skipped`]); a batch of oneway calls only is
    /// one oneway batch request; a batch that runs all sends its calls one by one. Oneway
    /// calls inside a batch request run in their turn (their results are dropped).
    async fn send_pyro(self, p: &PyroProxy) -> Result<BatchResults, Error> {
        let mut opts = self.proxy.opts.clone();
        opts.timeout = self.timeout;
        let view = self.proxy.pyro_view(p, &opts)?;
        let codec = view.serializer_codec();
        let limits = wirecall_codecs::Limits::default();
        let mut calls = Vec::with_capacity(self.calls.len());
        let mut oneway = Vec::with_capacity(self.calls.len());
        for (i, c) in self.calls.into_iter().enumerate() {
            pyro_provider(c.provider_id, self.proxy.uri())?;
            let bad = |message: String| Error::Codec {
                message: format!("call {i} of the batch (`{}`): {message}", c.method),
            };
            // The arguments, encoded with the serializer they travel in, read back as values.
            let mut out = Vec::with_capacity(32);
            let split = (c.encode)(codec, &mut out).map_err(|e| bad(e.to_string()))?;
            let args = match wirecall_codecs::decode_value(codec, &out[..split], &limits) {
                Ok(Value::List(a) | Value::Tuple(a)) => a,
                Ok(other) => {
                    return Err(bad(format!("the arguments are not a sequence: {other:?}")))
                }
                Err(e) => return Err(bad(e.to_string())),
            };
            let mut kwargs = Vec::new();
            if split < out.len() {
                match wirecall_codecs::decode_value(codec, &out[split..], &limits) {
                    Ok(Value::Map(m)) => {
                        for (k, v) in m {
                            match k {
                                Value::Str(k) => kwargs.push((k, v)),
                                other => {
                                    return Err(bad(format!(
                                        "a keyword argument's name is not a string: {other:?}"
                                    )))
                                }
                            }
                        }
                    }
                    Ok(other) => {
                        return Err(bad(format!(
                            "the keyword arguments are not a map: {other:?}"
                        )))
                    }
                    Err(e) => return Err(bad(e.to_string())),
                }
            }
            oneway.push(c.oneway);
            calls.push((c.method, args, kwargs));
        }
        let n = calls.len();
        self.proxy
            .pyro_connect_retrying(&view, &opts, &mut 0)
            .await?;
        let encode = |v: Value| -> Result<Option<(CodecId, Bytes)>, Error> {
            let mut out = Vec::new();
            wirecall_codecs::encode_value(codec, &v, &mut out).map_err(|e| Error::Codec {
                message: format!("re-encoding a batch result with {codec}: {e}"),
            })?;
            Ok(Some((codec, Bytes::from(out))))
        };
        if !self.stop_at_first_error {
            let mut results = Vec::with_capacity(n);
            for ((method, args, kwargs), ow) in calls.into_iter().zip(oneway) {
                let kwargs = Value::Map(
                    kwargs
                        .into_iter()
                        .map(|(k, v)| (Value::Str(k), v))
                        .collect(),
                );
                let r = view
                    .invoke(PyroKind::Method, &method, args, kwargs, ow)
                    .await
                    .and_then(|v| if ow { Ok(None) } else { encode(v) });
                results.push(r);
            }
            return Ok(BatchResults { results });
        }
        let all_oneway = oneway.iter().all(|o| *o);
        let answers = view
            .batch_calls(calls, all_oneway)
            .await
            .map_err(may_have_run)?;
        if all_oneway {
            return Ok(BatchResults {
                results: (0..n).map(|_| Ok(None)).collect(),
            });
        }
        let mut answers = answers.into_iter();
        let results = oneway
            .iter()
            .map(|ow| match answers.next() {
                Some(Ok(_)) if *ow => Ok(None),
                Some(Ok(v)) => encode(v),
                Some(Err(e)) => Err(e),
                None => Err(Error::Skipped {
                    message:
                        "an earlier call of the batch raised: the Pyro5 daemon ran no call after it"
                            .into(),
                }),
            })
            .collect();
        Ok(BatchResults { results })
    }
}

/// One call's answer as the connection hands it over (`None` for a oneway call).
type CallResult = Result<Option<(CodecId, Body)>, Error>;

type CallFuture<'a> = Pin<Box<dyn Future<Output = CallResult> + Send + 'a>>;

fn encode_args<T: Serialize + ?Sized>(
    codec: CodecId,
    args: &T,
    out: &mut Vec<u8>,
) -> Result<usize, Error> {
    codec::encode_into(codec, args, out).map_err(|e| Error::Codec {
        message: format!("encoding the arguments with {codec}: {e}"),
    })?;
    Ok(out.len())
}

fn encode_dynamic(
    codec: CodecId,
    args: &[Value],
    kwargs: &[(String, Value)],
    out: &mut Vec<u8>,
) -> Result<usize, Error> {
    let split = encode_args(codec, args, out)?;
    if !kwargs.is_empty() {
        let map: Vec<(Value, Value)> = kwargs
            .iter()
            .map(|(k, v)| (Value::Str(k.clone()), v.clone()))
            .collect();
        codec::encode_into(codec, &Value::Map(map), out).map_err(|e| Error::Codec {
            message: format!("encoding the keyword arguments with {codec}: {e}"),
        })?;
    }
    Ok(split)
}

/// The results of a sent [`Batch`], in the order the calls were added.
#[derive(Debug)]
pub struct BatchResults {
    results: Vec<Result<Option<(CodecId, Bytes)>, Error>>,
}

impl BatchResults {
    /// The result of `call`, decoded as its type: the call's error if it failed,
    /// [`Error::Skipped`] if it never ran because an earlier call failed.
    pub fn get<R: DeserializeOwned>(&self, call: BatchCall<R>) -> Result<R, Error> {
        self.get_as(call.index)
    }

    /// The result of the call at `index`, decoded as `R`; a oneway call reads as `()`.
    pub fn get_as<R: DeserializeOwned>(&self, index: usize) -> Result<R, Error> {
        let r = self.results.get(index).ok_or_else(|| {
            Error::config(format!(
                "the batch has {} calls: no call {index}",
                self.results.len()
            ))
        })?;
        match r {
            Err(e) => Err(e.clone()),
            // A oneway call has no result: it reads as `()` (or any unit-like type).
            Ok(None) => {
                let unit = serde::de::value::UnitDeserializer::<serde::de::value::Error>::new();
                R::deserialize(unit).map_err(|_| Error::Codec {
                    message: format!("call {index} of the batch is oneway: it has no result"),
                })
            }
            Ok(Some((c, body))) => {
                let limits = wirecall_codecs::Limits::default().with_max_input(usize::MAX);
                codec::decode::<R>(*c, body, &limits).map_err(|e| Error::Codec {
                    message: format!("decoding the result of call {index} with {c}: {e}"),
                })
            }
        }
    }

    /// Whether `call` succeeded (a oneway call: was sent).
    pub fn is_ok<R>(&self, call: BatchCall<R>) -> bool {
        self.results.get(call.index).is_some_and(|r| r.is_ok())
    }

    /// The error of `call`, if it failed or was skipped.
    pub fn error<R>(&self, call: BatchCall<R>) -> Option<&Error> {
        self.results.get(call.index).and_then(|r| r.as_ref().err())
    }

    /// The first call that failed (not counting skipped calls), with its index.
    pub fn first_error(&self) -> Option<(usize, &Error)> {
        self.results.iter().enumerate().find_map(|(i, r)| match r {
            Err(Error::Skipped { .. }) | Ok(_) => None,
            Err(e) => Some((i, e)),
        })
    }

    /// The indexes of the calls that never ran because an earlier call failed.
    pub fn skipped(&self) -> Vec<usize> {
        self.results
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Err(Error::Skipped { .. })))
            .map(|(i, _)| i)
            .collect()
    }

    /// The number of calls.
    pub fn len(&self) -> usize {
        self.results.len()
    }

    /// Whether the batch had no call.
    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }

    /// The raw results in order: the codec and encoded bytes of each answer (`None` for a
    /// oneway call), or the call's error.
    pub fn into_raw(self) -> Vec<Result<Option<(CodecId, Bytes)>, Error>> {
        self.results
    }
}
