//! The client side of a name server: a [`NamingBackend`] that asks a remote
//! [`NameServer`](super::NameServer) over the native protocol.

use std::collections::BTreeSet;

use bytes::Bytes;
use futures::future::BoxFuture;
use wirecall_codecs::Value;

use super::server::NAME_SERVER_PROVIDER_ID;
use super::{naming_error, unavailable, Filter, NamingBackend, Registration};
use crate::{CodecId, Error, Proxy};

/// The codec the client speaks to name servers (self-describing, compact).
const CODEC: CodecId = CodecId::MSGPACK;

/// A [`NamingBackend`] served by a name server elsewhere (`wirecall ns serve`, or an
/// [`Engine::host_name_server`](crate::Engine::host_name_server)), reached over one shared
/// connection that reconnects when it breaks.
///
/// A name server that cannot be reached gives [`Error::Naming`] with `unavailable: true`.
#[derive(Clone, Debug)]
pub struct RemoteNaming {
    proxy: Proxy,
    address: String,
}

impl RemoteNaming {
    /// A client of the name server at `address` (`tcp://127.0.0.1:9090`); connects on first
    /// use.
    pub fn new(address: &str) -> Result<RemoteNaming, Error> {
        let proxy = Proxy::new(address)?
            .codec(CODEC)
            .offer([CODEC, CodecId::CBOR, CodecId::JSON]);
        Ok(RemoteNaming {
            proxy,
            address: address.trim().to_string(),
        })
    }

    /// The name server's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Calls `method` of the name server with dynamic arguments.
    async fn call(
        &self,
        method: &str,
        subject: &str,
        args: Vec<Value>,
        kwargs: Vec<(&str, Value)>,
    ) -> Result<Value, Error> {
        let encode = |v: &Value| -> Result<Bytes, Error> {
            let mut out = Vec::new();
            wirecall_codecs::encode_value(CODEC, v, &mut out).map_err(|e| Error::Codec {
                message: format!("encoding a name server call with {CODEC}: {e}"),
            })?;
            Ok(Bytes::from(out))
        };
        let args = encode(&Value::List(args))?;
        let kwargs = if kwargs.is_empty() {
            Bytes::new()
        } else {
            encode(&Value::Map(
                kwargs
                    .into_iter()
                    .map(|(k, v)| (Value::Str(k.to_string()), v))
                    .collect(),
            ))?
        };
        let rpc = crate::full_name("ns", method);
        let reply = self
            .proxy
            .call_raw(NAME_SERVER_PROVIDER_ID, &rpc, CODEC, args, kwargs, false)
            .await
            .map_err(|e| self.explain(subject, e))?;
        let Some((codec, body)) = reply else {
            return Ok(Value::Null);
        };
        let limits = wirecall_codecs::Limits::default().with_max_input(usize::MAX);
        wirecall_codecs::decode_value(codec, &body, &limits).map_err(|e| Error::Codec {
            message: format!("decoding the name server's answer with {codec}: {e}"),
        })
    }

    /// A call's error as the naming error it stands for.
    fn explain(&self, subject: &str, e: Error) -> Error {
        let addr = &self.address;
        match e {
            Error::Remote(r) if r.type_name == "Pyro5.errors.NamingError" => {
                naming_error(subject, r.message)
            }
            Error::Remote(r) if r.type_name == "Pyro5.errors.CommunicationError" => {
                unavailable(subject, format!("the name server at {addr}: {}", r.message))
            }
            Error::Remote(r) if r.type_name == "ValueError" => naming_error(subject, r.message),
            Error::NoSuchProvider { .. } | Error::NoSuchMethod { .. } => naming_error(
                subject,
                format!("{addr} is not a wirecall name server ({e}); start one with `wirecall ns serve --listen {addr}`"),
            ),
            Error::Transport { .. }
            | Error::Timeout { .. }
            | Error::ShuttingDown { .. }
            | Error::Protocol(_)
            | Error::Busy { .. }
            | Error::NoCommonCodec { .. } => unavailable(
                subject,
                format!(
                    "the name server at {addr} cannot be reached: {e} (is `wirecall ns serve --listen {addr}` running? is WIRECALL_NS right?)"
                ),
            ),
            other => other,
        }
    }
}

fn s(text: &str) -> Value {
    Value::Str(text.to_string())
}

fn tags(t: &BTreeSet<String>) -> Value {
    Value::List(t.iter().map(|x| s(x)).collect())
}

fn filter_kwargs(f: &Filter) -> Vec<(&'static str, Value)> {
    let mut kw = Vec::new();
    if let Some(p) = &f.prefix {
        kw.push(("prefix", s(p)));
    }
    if let Some(r) = &f.regex {
        kw.push(("regex", s(r)));
    }
    if !f.meta_all.is_empty() {
        kw.push(("meta_all", tags(&f.meta_all)));
    }
    if !f.meta_any.is_empty() {
        kw.push(("meta_any", tags(&f.meta_any)));
    }
    kw
}

fn bad_answer(what: &str, v: &Value) -> Error {
    Error::Codec {
        message: format!(
            "the name server's answer to {what} is not what a name server answers: {v:?}"
        ),
    }
}

/// `[[name, uri, [tags]], ...]` as registrations.
fn registrations(what: &str, v: Value) -> Result<Vec<Registration>, Error> {
    let (Value::List(items) | Value::Tuple(items)) = &v else {
        return Err(bad_answer(what, &v));
    };
    items
        .iter()
        .map(|item| {
            let (Value::List(parts) | Value::Tuple(parts)) = item else {
                return Err(bad_answer(what, item));
            };
            match parts.as_slice() {
                [Value::Str(name), Value::Str(uri), Value::List(t) | Value::Set(t) | Value::Tuple(t)] => {
                    let metadata = t
                        .iter()
                        .map(|x| match x {
                            Value::Str(x) => Ok(x.clone()),
                            _ => Err(bad_answer(what, item)),
                        })
                        .collect::<Result<_, _>>()?;
                    Ok(Registration {
                        name: name.clone(),
                        uri: uri.clone(),
                        metadata,
                    })
                }
                _ => Err(bad_answer(what, item)),
            }
        })
        .collect()
}

fn count_of(what: &str, v: Value) -> Result<usize, Error> {
    match v {
        Value::Int(n) if n >= 0 => Ok(n as usize),
        other => Err(bad_answer(what, &other)),
    }
}

impl NamingBackend for RemoteNaming {
    fn register(&self, reg: Registration, safe: bool) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            self.call(
                "register",
                &reg.name,
                vec![s(&reg.name), s(&reg.uri)],
                vec![
                    ("safe", Value::Bool(safe)),
                    ("metadata", tags(&reg.metadata)),
                ],
            )
            .await
            .map(drop)
        })
    }

    fn lookup<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<Registration>, Error>> {
        Box::pin(async move {
            let v = self.call("lookup_all", name, vec![s(name)], vec![]).await?;
            registrations("lookup_all", v)
        })
    }

    fn list<'a>(&'a self, filter: &'a Filter) -> BoxFuture<'a, Result<Vec<Registration>, Error>> {
        Box::pin(async move {
            let subject = filter
                .regex
                .as_deref()
                .or(filter.prefix.as_deref())
                .unwrap_or("*");
            let v = self
                .call("list_all", subject, vec![], filter_kwargs(filter))
                .await?;
            registrations("list_all", v)
        })
    }

    fn remove<'a>(
        &'a self,
        filter: &'a Filter,
        uri: Option<&'a str>,
    ) -> BoxFuture<'a, Result<usize, Error>> {
        Box::pin(async move {
            let subject = filter
                .regex
                .as_deref()
                .or(filter.prefix.as_deref())
                .unwrap_or("*");
            let mut kw = filter_kwargs(filter);
            if let Some(u) = uri {
                kw.push(("uri", s(u)));
            }
            let v = self.call("remove_all", subject, vec![], kw).await?;
            count_of("remove_all", v)
        })
    }

    fn set_metadata<'a>(
        &'a self,
        name: &'a str,
        metadata: BTreeSet<String>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            self.call("set_metadata", name, vec![s(name), tags(&metadata)], vec![])
                .await
                .map(drop)
        })
    }

    fn count(&self) -> BoxFuture<'_, Result<usize, Error>> {
        Box::pin(async move { count_of("count", self.call("count", "*", vec![], vec![]).await?) })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move { self.call("ping", "*", vec![], vec![]).await.map(drop) })
    }
}
