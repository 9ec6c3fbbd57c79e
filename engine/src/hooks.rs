//! Hooks that run before and after every call (metrics, authentication).

use std::time::Duration;

use crate::CodecId;

/// What a hook sees of a call.
#[derive(Debug, Clone, Copy)]
pub struct CallInfo<'a> {
    /// The provider id addressed.
    pub provider_id: u16,
    /// The RPC name called.
    pub method: &'a str,
    /// The caller's address.
    pub peer: &'a str,
    /// The caller's identity from its verified TLS client certificate (mutual TLS), if any:
    /// see [`ConnectionInfo::peer_identity`](crate::ConnectionInfo::peer_identity).
    pub peer_identity: Option<&'a crate::PeerIdentity>,
    /// The call's codec.
    pub codec: CodecId,
    /// The request id on its connection.
    pub request_id: u64,
}

/// A hook run by the server around every call it dispatches to a provider.
///
/// `before` may refuse a call (authentication, authorization, rate limiting): the caller gets
/// [`Error::PermissionDenied`](crate::Error::PermissionDenied) with the message. `after` runs
/// once the call's outcome is known, with whether it succeeded and how long it took.
pub trait CallHook: Send + Sync + 'static {
    /// Runs before the handler; return `Err(message)` to refuse the call.
    fn before(&self, call: &CallInfo<'_>) -> Result<(), String> {
        let _ = call;
        Ok(())
    }

    /// Runs after the handler finished (not for calls refused earlier).
    fn after(&self, call: &CallInfo<'_>, ok: bool, elapsed: Duration) {
        let _ = (call, ok, elapsed);
    }
}
