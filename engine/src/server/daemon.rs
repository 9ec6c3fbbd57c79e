//! The built-in daemon object (provider id `0xffff`): metadata, ping and remote shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use wirecall_protocol as proto;

use super::{finalize, metadata, Inner};
use crate::config;
use crate::context::{encode_outcome, Flush, ReplySink};
use crate::error::{Fault, FaultKind};
use crate::provider::Outcome;

/// Answers a call to the daemon object.
pub(super) fn call(inner: &Arc<Inner>, call: &proto::Call, sink: ReplySink) {
    let codec = sink.codec;
    let method = call.method.as_str();
    let answer = |o| sink.answer(o, Flush::Deferred);
    match method {
        "ping" => answer(encode_outcome(codec, &())),
        "metadata" => answer(encode_outcome(codec, &metadata(inner))),
        "shutdown" => {
            if !inner.remote_shutdown.load(Ordering::Acquire) {
                answer(Outcome::Fault(Fault::new(
                    FaultKind::PermissionDenied,
                    "remote shutdown is disabled on this server (call enable_remote_shutdown() to allow it)",
                )));
                return;
            }
            if let Some(token) = &inner.shutdown_token {
                let given = call
                    .annotations
                    .user()
                    .find(|(k, _)| *k == config::SHUTDOWN_TOKEN_KEY)
                    .map(|(_, v)| v);
                if given != Some(token.as_bytes()) {
                    answer(Outcome::Fault(Fault::new(
                        FaultKind::PermissionDenied,
                        "remote shutdown refused: missing or wrong shutdown token",
                    )));
                    return;
                }
            }
            sink.answer(encode_outcome(codec, &()), Flush::Now);
            let inner = inner.clone();
            tokio::spawn(async move {
                // Let the reply reach the writer before the connections close.
                tokio::task::yield_now().await;
                finalize(inner).await;
            });
        }
        _ => {
            let mut f = Fault::new(
                FaultKind::UnknownMethod,
                format!(
                    "the daemon object has no method `{method}`; it exposes: metadata, ping, shutdown"
                ),
            );
            f.names = vec!["metadata".into(), "ping".into(), "shutdown".into()];
            answer(Outcome::Fault(f));
        }
    }
}
