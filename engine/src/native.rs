//! The native dialect: engine messages to wirecall-protocol frames and back.

use bytes::Bytes;
use wirecall_protocol as proto;

use crate::codec::to_wire;
use crate::context::Out;
use crate::error::{Fault, FaultKind};
use crate::CodecId;

/// Converts an engine message to a native frame.
pub(crate) fn out_frame(out: Out) -> Option<proto::Frame> {
    Some(match out {
        Out::Reply { id, codec, body } => proto::Frame::Reply(proto::Reply {
            request_id: proto::RequestId(id),
            codec: to_wire(codec),
            stream: false,
            annotations: proto::Annotations::new(),
            result: body,
            attachment: Bytes::new(),
        }),
        Out::Fault { id, codec, fault } => proto::Frame::Error(fault_frame(id, codec, fault)),
        Out::Pong(d) => proto::Frame::Pong(d),
        Out::GoAway { last_id, message } => proto::Frame::GoAway(proto::GoAway {
            last_request_id: proto::RequestId(last_id),
            code: if message.starts_with("protocol error") {
                proto::ErrorCode::PROTOCOL_ERROR
            } else {
                proto::ErrorCode::NO_ERROR
            },
            message,
        }),
    })
}

pub(crate) fn fault_frame(id: u64, codec: CodecId, fault: Fault) -> proto::ErrorFrame {
    let code = match fault.kind {
        FaultKind::Application => proto::ErrorCode::APPLICATION_ERROR,
        FaultKind::BadArguments => proto::ErrorCode::BAD_ARGUMENTS,
        FaultKind::UnknownProvider => proto::ErrorCode::UNKNOWN_PROVIDER,
        FaultKind::UnknownMethod => proto::ErrorCode::UNKNOWN_METHOD,
        FaultKind::CodecRefused => proto::ErrorCode::CODEC_REFUSED,
        FaultKind::DeadlineExceeded => proto::ErrorCode::DEADLINE_EXCEEDED,
        FaultKind::ShuttingDown => proto::ErrorCode::SHUTTING_DOWN,
        FaultKind::PermissionDenied => proto::ErrorCode::PERMISSION_DENIED,
        FaultKind::Busy => proto::ErrorCode::TOO_MANY_IN_FLIGHT,
        FaultKind::Internal => proto::ErrorCode::INTERNAL_ERROR,
    };
    let accepted = if fault.kind == FaultKind::CodecRefused {
        fault
            .names
            .iter()
            .filter_map(|n| CodecId::from_builtin_name(n))
            .map(to_wire)
            .collect()
    } else {
        Vec::new()
    };
    // Exposed names travel in the trace of UNKNOWN_METHOD / UNKNOWN_PROVIDER errors, one per
    // line after a marker, so they need no codec.
    let trace = if matches!(
        fault.kind,
        FaultKind::UnknownMethod | FaultKind::UnknownProvider
    ) && !fault.names.is_empty()
    {
        let mut t = String::from(crate::config::EXPOSED_MARKER);
        for n in &fault.names {
            t.push('\n');
            t.push_str(n);
        }
        t
    } else {
        fault.trace
    };
    let _ = codec;
    proto::ErrorFrame {
        request_id: proto::RequestId(id),
        codec: proto::CodecId::NONE,
        annotations: proto::Annotations::new(),
        body: proto::ErrorBody {
            code,
            type_name: fault.type_name,
            message: fault.message,
            trace,
            accepted,
            detail: Bytes::new(),
        },
    }
}
