//! Callbacks (SPEC §6.10), client side: the providers a proxy exposes to its server, and
//! how a connection runs the server's calls to them. The machine checks every callback
//! (its id, codec, the callbacks limit, cancel, deadline) and this file only routes it to
//! its provider and runs its handler, each on a task of its own, never on the reader.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, RwLock, Weak};

use bytes::Bytes;
use futures::FutureExt;
use wirecall_protocol as proto;

use super::conn::ConnShared;
use crate::context::{AnswerTo, ConnectionInfo, Flush, Incoming, ReplySink};
use crate::error::{Error, Fault, FaultKind};
use crate::provider::{Handled, Instance, Instances, Outcome, Registered};
use crate::server::dispatch::{panic_fault, Tasks};
use crate::server::DAEMON_PROVIDER_ID;

/// The providers a proxy exposes for callbacks, by provider id (shared by its clones).
#[derive(Default)]
pub(crate) struct Exposed(RwLock<HashMap<u16, Arc<Registered>>>);

impl Exposed {
    /// Adds a provider; fails when its id is taken or reserved.
    pub(crate) fn insert(&self, reg: Registered) -> Result<(), Error> {
        let id = reg.info.provider_id;
        if id == DAEMON_PROVIDER_ID {
            return Err(Error::config(format!(
                "provider id {DAEMON_PROVIDER_ID} is reserved for the daemon object"
            )));
        }
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = map.get(&id) {
            return Err(Error::config(format!(
                "provider id {id} is already exposed by service `{}`; pick another id",
                existing.info.service
            )));
        }
        map.insert(id, Arc::new(reg));
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.read().unwrap_or_else(|e| e.into_inner()).is_empty()
    }
}

/// What one connection serves to its server: the providers exposed when it opened, with
/// their instances (per-connection ones created for it), and the callbacks running.
/// Dropped when the connection closes: the handlers still running are stopped, the
/// instances see `on_disconnect`, and per-connection instances are dropped.
pub(crate) struct Serving {
    providers: HashMap<u16, (Arc<Registered>, Arc<dyn Instance>), rustc_hash::FxBuildHasher>,
    tasks: Arc<Tasks>,
    /// The connection as its handlers see it (the peer is the server).
    info: Arc<ConnectionInfo>,
    /// Where answers go.
    shared: Weak<ConnShared>,
    limits: wirecall_codecs::Limits,
}

impl Serving {
    pub(crate) fn new(
        exposed: &Exposed,
        server: &str,
        shared: Weak<ConnShared>,
        max_frame_len: u32,
    ) -> Serving {
        let info = Arc::new(ConnectionInfo {
            id: 0,
            peer: server.to_string(),
            local: String::new(),
            tls: None,
            callback: Default::default(),
        });
        let map = exposed.0.read().unwrap_or_else(|e| e.into_inner());
        let providers = map
            .iter()
            .map(|(id, reg)| {
                let inst = match &reg.instances {
                    Instances::Shared(i) => i.clone(),
                    Instances::PerConnection(f) => f(),
                };
                inst.connect(&info);
                (*id, (reg.clone(), inst))
            })
            .collect();
        Serving {
            providers,
            tasks: Arc::new(Tasks::default()),
            info,
            shared,
            limits: wirecall_codecs::Limits::default().with_max_input(max_frame_len as usize),
        }
    }

    /// Stops the handler of a callback the machine cancelled or expired (it answered
    /// already).
    pub(crate) fn stop(&self, id: u64) {
        if let (Some(t), _) = self.tasks.remove(id) {
            t.abort();
        }
    }

    /// Runs one callback the machine accepted; `machine` answers at once what cannot be
    /// dispatched (the connection's lock is held: nothing here may take it).
    pub(crate) fn on_call(&mut self, machine: &mut proto::ClientConnection, call: proto::Call) {
        let id = call.request_id.0;
        let codec = call.codec;
        let provider_id = call.provider.0;
        let refuse = |machine: &mut proto::ClientConnection, f: Fault| {
            if !call.oneway {
                let _ = machine.error(proto::ErrorFrame {
                    request_id: call.request_id,
                    codec: proto::CodecId::NONE,
                    annotations: proto::Annotations::new(),
                    body: f.into_body(),
                });
            }
        };
        let Some((reg, instance)) = self.providers.get(&provider_id) else {
            let mut ids: Vec<u16> = self.providers.keys().copied().collect();
            ids.sort_unstable();
            let names: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
            let mut f = Fault::new(
                FaultKind::UnknownProvider,
                format!(
                    "the client exposes no provider with id {provider_id}; exposed ids: {}",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            );
            f.names = names;
            return refuse(machine, f);
        };
        let Some(route) = reg.routes.get(call.method.as_bytes()).copied() else {
            let mut f = Fault::new(
                FaultKind::UnknownMethod,
                format!(
                    "provider {provider_id} (`{}`) exposed by the client has no method `{}`; it exposes: {}",
                    reg.info.service,
                    call.method.as_str(),
                    reg.exposed.join(", ")
                ),
            );
            f.names = reg.exposed.clone();
            return refuse(machine, f);
        };
        if route.uploads {
            // Callbacks do not stream (SPEC §6.10): a method that takes an argument stream
            // cannot be called back.
            return refuse(
                machine,
                Fault::new(
                    FaultKind::BadArguments,
                    format!(
                        "`{}` takes a stream of argument items, which a callback cannot send (callbacks do not stream)",
                        call.method.as_str()
                    ),
                ),
            );
        }
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let mut oneway = call.oneway;
        if route.oneway && !oneway {
            // A oneway method called as a plain call: answered at once with nothing, and
            // run without an answer (as on a server).
            if let Outcome::Value(result) = crate::context::encode_outcome(codec, &()) {
                let _ = machine.reply(proto::Reply {
                    request_id: call.request_id,
                    codec,
                    stream: false,
                    annotations: proto::Annotations::new(),
                    result,
                    attachment: Bytes::new(),
                });
            }
            oneway = true;
        }
        let sink = ReplySink {
            to: AnswerTo::Callback(shared),
            id,
            codec,
            oneway,
            hooks: None,
            trace: None,
            // Callbacks do not stream (SPEC §6.10).
        };
        // Bulk values as slices of the received frame (the machine checked the lengths).
        let bulk = if proto::has_bulk(&call.annotations, &call.attachment) {
            proto::split_bulk(&call.annotations, &call.attachment).ok()
        } else {
            None
        };
        let incoming = Incoming {
            codec,
            args: call.args,
            kwargs: call.kwargs,
            conn: self.info.clone(),
            deadline_at: call.annotations.deadline().map(|d| crate::io::now() + d),
            annotations: call.annotations,
            provider_id,
            sink: sink.clone(),
            limits: self.limits,
            bulk,
            upload: Default::default(),
        };
        let instance = instance.clone();
        let tasks = self.tasks.clone();
        let work = async move {
            let index = route.index;
            let handled = if route.blocking {
                // A blocking method holds a thread of the blocking pool, not a worker.
                let inst = instance.clone();
                tokio::task::spawn_blocking(move || {
                    std::panic::catch_unwind(AssertUnwindSafe(|| inst.dispatch(index, incoming)))
                })
                .await
                .unwrap_or_else(|e| Err(Box::new(e.to_string())))
            } else {
                std::panic::catch_unwind(AssertUnwindSafe(|| instance.dispatch(index, incoming)))
            };
            let outcome = match handled {
                Err(panic) => Some(Outcome::Fault(panic_fault(panic))),
                Ok(Handled::Ready(outcome)) => Some(outcome),
                // The handler answers through its Responder.
                Ok(Handled::Deferred) => None,
                Ok(Handled::Detached(fut)) => {
                    let _ = AssertUnwindSafe(fut).catch_unwind().await;
                    None
                }
                Ok(Handled::Pending(fut)) => Some(
                    AssertUnwindSafe(fut)
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|p| Outcome::Fault(panic_fault(p))),
                ),
            };
            tasks.remove(id);
            if let Some(outcome) = outcome {
                sink.answer(outcome, Flush::Now);
            }
        };
        if oneway {
            // Not tracked: there is no answer to cancel.
            drop(tokio::spawn(work));
        } else {
            self.tasks.spawn(id, work);
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        for t in self.tasks.drain() {
            t.abort();
        }
        for (_, inst) in self.providers.values() {
            inst.disconnect(&self.info);
        }
    }
}
