//! What the server tells operators through `tracing`: a span per connection (peer, local
//! address, dialect, codec) and per call (provider, method, codec, request id; outcome and
//! duration when it ends), and an event with its reason for every refusal and eviction.
//!
//! Levels: evictions of slow peers, refused connections and refused remote shutdowns are
//! `WARN`; idle evictions, refused codecs and peers that broke a wire rule are `INFO`;
//! connections opening and closing normally, and every call, are `DEBUG`. Nothing is built
//! per call unless `DEBUG` is enabled for this module (`tracing::enabled!`, then
//! [`tracing::Span::is_disabled`]), and the connection's span is never entered on the hot
//! path: events name it as their parent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::field::Empty;
use tracing::Span;
use wirecall_protocol as proto;

use super::conn::End;
use crate::context::ConnectionInfo;
use crate::error::FaultKind;
use crate::provider::Outcome;
use crate::CodecId;

/// The span of one connection (`dialect`: `native` or `pyro5`); its `codec` is recorded
/// when the handshake completes.
pub(super) fn connection_span(info: &ConnectionInfo, dialect: &'static str) -> Span {
    tracing::info_span!(
        "connection",
        id = info.id,
        peer = %info.peer,
        local = %info.local,
        dialect,
        codec = Empty,
    )
}

/// The handshake completed.
pub(super) fn connected(span: &Span, session: &proto::Session) {
    if span.is_disabled() {
        return;
    }
    span.record("codec", tracing::field::display(session.codec));
    let compression = session.compression();
    tracing::debug!(
        parent: span,
        codec = %session.codec,
        version = session.version,
        compression = ?compression,
        "handshake completed"
    );
}

/// The connection ended: a normal close at `DEBUG`, an eviction or a peer's fault with its
/// reason. Events at `INFO` and above name the peer themselves, so they say who even when
/// the connection's span is filtered out.
pub(super) fn connection_closed(
    span: &Span,
    info: &ConnectionInfo,
    end: &End,
    lasted: Duration,
    calls: u64,
) {
    let peer = info.peer.as_str();
    let lasted_ms = lasted.as_millis() as u64;
    match end {
        End::Eof => {
            tracing::debug!(parent: span, lasted_ms, calls, "connection closed by the peer")
        }
        End::Drained => {
            tracing::debug!(parent: span, lasted_ms, calls, "connection drained after GOAWAY")
        }
        End::Closed => tracing::debug!(parent: span, lasted_ms, calls, "connection closed"),
        End::ReadError(e) => tracing::debug!(
            parent: span,
            lasted_ms,
            calls,
            error = %e,
            "connection lost: reading failed"
        ),
        End::Fatal(e) => {
            let reason = e.kind_name();
            match e {
                proto::ProtocolError::IdleTimeout => tracing::info!(
                    parent: span,
                    peer,
                    reason,
                    lasted_ms,
                    calls,
                    "connection evicted: idle past the idle timeout (GOAWAY TIMEOUT sent)"
                ),
                proto::ProtocolError::HandshakeTimeout
                | proto::ProtocolError::FrameTimeout
                | proto::ProtocolError::PingTimeout => tracing::warn!(
                    parent: span,
                    peer,
                    reason,
                    lasted_ms,
                    calls,
                    "connection evicted: {e} (GOAWAY TIMEOUT sent)"
                ),
                proto::ProtocolError::TooLong { .. } => tracing::warn!(
                    parent: span,
                    peer,
                    reason = "max_buffered",
                    lasted_ms,
                    calls,
                    "connection evicted: {e}; the server's receive buffers are full (raise max_buffered / WIRECALL_MAX_BUFFERED if this is legitimate load)"
                ),
                proto::ProtocolError::NoCommonCodec { .. }
                | proto::ProtocolError::NoCommonVersion { .. } => tracing::info!(
                    parent: span,
                    peer,
                    reason,
                    "handshake refused: {e}"
                ),
                proto::ProtocolError::PeerClosed { code, .. } if code.is_retryable() => {
                    tracing::debug!(parent: span, reason, lasted_ms, calls, "connection closed by the peer: {e}")
                }
                _ => tracing::info!(
                    parent: span,
                    peer,
                    reason,
                    lasted_ms,
                    calls,
                    "connection closed: {e}"
                ),
            }
        }
    }
}

/// A call the machine refused without dispatching it.
pub(super) fn rejected(span: &Span, peer: &str, request_id: u64, error: &proto::ProtocolError) {
    let reason = error.kind_name();
    match error {
        proto::ProtocolError::CodecRefused { .. } => {
            tracing::info!(parent: span, peer, request_id, reason, "call refused: {error}")
        }
        proto::ProtocolError::TooManyInFlight { .. } => tracing::warn!(
            parent: span,
            peer,
            request_id,
            reason,
            "call refused (answered TOO_MANY_IN_FLIGHT): {error}; the client may retry, or raise max_in_flight (WIRECALL_MAX_IN_FLIGHT)"
        ),
        _ => tracing::debug!(parent: span, request_id, reason, "call refused: {error}"),
    }
}

/// The span of one call, kept only when it is enabled; the `after` part of its life is
/// recorded once, by whoever answers.
pub(crate) struct CallTrace {
    span: Span,
    started: Instant,
    done: AtomicBool,
}

impl CallTrace {
    /// The call's span under its connection's, or `None` (at the cost of a level check)
    /// when `DEBUG` is off for this module.
    pub(super) fn start(
        conn: &Span,
        provider_id: u16,
        method: &str,
        codec: CodecId,
        request_id: u64,
        oneway: bool,
    ) -> Option<Arc<CallTrace>> {
        // The cheap check first (a level compare while DEBUG is off): making a disabled
        // span still costs, e.g. tracing's `log` fallback when no subscriber was ever set.
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return None;
        }
        let span = tracing::debug_span!(
            parent: conn,
            "call",
            provider = provider_id,
            method,
            codec = %codec,
            request_id,
            oneway,
            outcome = Empty,
            duration_us = Empty,
        );
        if span.is_disabled() {
            return None;
        }
        Some(Arc::new(CallTrace {
            span,
            started: Instant::now(),
            done: AtomicBool::new(false),
        }))
    }

    /// [`CallTrace::start`] for a native call: its wire method name becomes a `str` only
    /// when calls are traced.
    pub(super) fn start_native(
        conn: &Span,
        provider_id: u16,
        method: &[u8],
        codec: CodecId,
        request_id: u64,
        oneway: bool,
    ) -> Option<Arc<CallTrace>> {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return None;
        }
        Self::start(
            conn,
            provider_id,
            // Checked UTF-8 by the machine; the fallback is never taken.
            std::str::from_utf8(method).unwrap_or_default(),
            codec,
            request_id,
            oneway,
        )
    }

    /// The call's span, to run its handler in.
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// Records the outcome (the first time only).
    pub(crate) fn finish(&self, outcome: &Outcome) {
        if self.done.swap(true, Ordering::AcqRel) {
            return;
        }
        let duration_us = self.started.elapsed().as_micros() as u64;
        let outcome = match outcome {
            Outcome::Value(_) | Outcome::Attached(_) => "ok",
            Outcome::Stream(_) => "stream",
            Outcome::Fault(f) => fault_name(f.kind),
        };
        self.span.record("outcome", outcome);
        self.span.record("duration_us", duration_us);
        tracing::debug!(parent: &self.span, outcome, duration_us, "call finished");
    }
}

impl Drop for CallTrace {
    fn drop(&mut self) {
        if !self.done.load(Ordering::Acquire) {
            let duration_us = self.started.elapsed().as_micros() as u64;
            self.span.record("outcome", "abandoned");
            self.span.record("duration_us", duration_us);
            tracing::debug!(
                parent: &self.span,
                outcome = "abandoned",
                duration_us,
                "call ended without an answer from its handler (cancelled, past its deadline, or its connection closed)"
            );
        }
    }
}

/// A short stable name for a fault kind, as the `outcome` field shows it.
fn fault_name(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::Application => "application_error",
        FaultKind::BadArguments => "bad_arguments",
        FaultKind::UnknownProvider => "unknown_provider",
        FaultKind::UnknownMethod => "unknown_method",
        FaultKind::CodecRefused => "codec_refused",
        FaultKind::DeadlineExceeded => "deadline_exceeded",
        FaultKind::ShuttingDown => "shutting_down",
        FaultKind::PermissionDenied => "permission_denied",
        FaultKind::Busy => "busy",
        FaultKind::Internal => "internal_error",
        FaultKind::Cancelled => "cancelled",
        FaultKind::LimitExceeded => "limit_exceeded",
        FaultKind::Skipped => "skipped",
    }
}
