//! The built-in daemon object (provider id `0xffff`): metadata, ping and remote shutdown.

use std::sync::Arc;

use subtle::ConstantTimeEq;

use wirecall_protocol as proto;

use super::{finalize, metadata, read, Inner};
use crate::config;
use crate::context::{encode_outcome, ConnectionInfo, Flush, ReplySink};
use crate::error::{Fault, FaultKind};
use crate::provider::Outcome;

/// Answers a call to the daemon object.
pub(super) fn call(
    inner: &Arc<Inner>,
    conn: &ConnectionInfo,
    method: &str,
    annotations: &proto::Annotations,
    sink: ReplySink,
) {
    let codec = sink.codec;
    let answer = |o| sink.answer(o, Flush::Deferred);
    match method {
        "ping" => answer(encode_outcome(codec, &())),
        "metadata" => answer(encode_outcome(codec, &metadata(inner))),
        "shutdown" => {
            let refuse = |reason: &str, message: &str| {
                tracing::warn!(
                    peer = %conn.peer,
                    reason,
                    "remote shutdown refused: {message}"
                );
                sink.answer(
                    Outcome::Fault(Fault::new(FaultKind::PermissionDenied, message)),
                    Flush::Deferred,
                );
            };
            let Some(token) = read(&inner.shutdown_token).clone() else {
                refuse(
                    "disabled",
                    "remote shutdown is disabled on this server (its owner enables it with a token: Engine::enable_remote_shutdown(token), or `wirecall serve --shutdown-token`)",
                );
                return;
            };
            let given = annotations
                .user()
                .find(|(k, _)| *k == config::SHUTDOWN_TOKEN_KEY)
                .map(|(_, v)| v);
            let Some(given) = given else {
                refuse(
                    "no_token",
                    "remote shutdown refused: the request carries no shutdown token (pass it to Proxy::shutdown_server)",
                );
                return;
            };
            // Constant time for equal lengths: the comparison does not tell how much of a
            // guess was right.
            if !bool::from(given.ct_eq(&token[..])) {
                refuse(
                    "wrong_token",
                    "remote shutdown refused: wrong shutdown token",
                );
                return;
            }
            tracing::warn!(peer = %conn.peer, "remote shutdown accepted: finalizing the server");
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
