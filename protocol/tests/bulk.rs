//! Bulk values in the attachment section (SPEC §6.11), through a client and a server state
//! machine wired together in memory: no sockets, no sleeps.

mod common;
use common::Pair;

use bytes::{Bytes, BytesMut};
use wirecall_protocol::{
    split_bulk, Annotations, CallRef, ClientConfig, ClientEvent, CodecId, ErrorCode, Flags, Frame,
    FrameDecoder, Header, Kind, Limits, ProtocolError, ProviderId, Reply, RequestId, ServerConfig,
    ServerEvent, VERSION,
};

impl Pair {
    fn connected(limits: Limits) -> Pair {
        let mut cc = ClientConfig::new(vec![CodecId::JSON]);
        cc.share_sections_from = usize::MAX;
        cc.limits = limits;
        let mut sc = ServerConfig::new(vec![CodecId::JSON]);
        sc.share_sections_from = usize::MAX;
        sc.limits = limits;
        let mut p = Pair::new(cc, sc);
        p.handshake();
        p
    }

    fn call(&mut self, annotations: &Annotations, attachment: Bytes) -> RequestId {
        let call = CallRef {
            request_id: RequestId::NONE,
            provider: ProviderId(1),
            codec: CodecId::NONE,
            oneway: false,
            method: "svc_echo",
            annotations,
            args: b"[0,1]",
            kwargs: b"",
            attachment: &[],
        };
        self.client
            .call_ref_attached(call, attachment, self.now)
            .unwrap()
    }
}

fn bulk(lengths: &[u32]) -> Annotations {
    Annotations::builder().bulk(lengths).unwrap().build()
}

fn pattern(n: usize, seed: u8) -> Bytes {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

#[test]
fn several_values_travel_both_ways_as_one_shared_attachment() {
    let mut p = Pair::connected(Limits::default());
    let a = pattern(10_000, 1);
    let b = pattern(0, 2);
    let c = pattern(5_000, 3);
    let mut att = BytesMut::new();
    for x in [&a, &b, &c] {
        att.extend_from_slice(x);
    }
    let att = att.freeze();
    let id = p.call(&bulk(&[10_000, 0, 5_000]), att.clone());
    p.drive();
    // The attachment left the machine as a chunk of its own: the caller's bytes, not a copy.
    assert!(
        p.c2s
            .iter()
            .any(|ch| ch.as_ptr() == att.as_ptr() && ch.len() == att.len()),
        "the attachment was copied into the send buffer"
    );
    let call = p.server_call();
    assert_eq!(call.request_id, id);
    assert_eq!(&call.args[..], b"[0,1]");
    let parts = split_bulk(&call.annotations, &call.attachment).unwrap();
    assert_eq!(parts, [a.clone(), b.clone(), c.clone()]);

    // Echo them back in the other order.
    let mut back = BytesMut::new();
    back.extend_from_slice(&c);
    back.extend_from_slice(&a);
    let back = back.freeze();
    p.server
        .reply(Reply {
            request_id: id,
            codec: CodecId::JSON,
            stream: false,
            annotations: bulk(&[5_000, 10_000]),
            result: Bytes::from_static(b"[0,1]"),
            attachment: back.clone(),
        })
        .unwrap();
    p.drive();
    assert!(p
        .s2c
        .iter()
        .any(|ch| ch.as_ptr() == back.as_ptr() && ch.len() == back.len()));
    let Some(ClientEvent::Reply(r)) = p.client.poll_event() else {
        panic!("no reply")
    };
    assert_eq!(split_bulk(&r.annotations, &r.attachment).unwrap(), [c, a]);
    assert!(p.client_err.is_none() && p.server_err.is_none());
}

#[test]
fn small_attachments_are_copied_and_decode_the_same() {
    let mut p = Pair::connected(Limits::default());
    let att = Bytes::from_static(b"tiny");
    p.call(&Annotations::new(), att.clone());
    p.drive();
    assert!(p.c2s.iter().all(|ch| ch.as_ptr() != att.as_ptr()));
    let call = p.server_call();
    // No `wc.bulk`: the attachment is one value.
    assert_eq!(
        split_bulk(&call.annotations, &call.attachment).unwrap(),
        [att]
    );
}

#[test]
fn lengths_that_do_not_add_up_fail_that_call_only() {
    let mut p = Pair::connected(Limits::default());
    let bad = p.call(&bulk(&[3, 9]), Bytes::from_static(b"0123456789"));
    p.drive();
    match p.server.poll_event() {
        Some(ServerEvent::Rejected { request_id, error }) => {
            assert_eq!(request_id, bad);
            assert_eq!(
                error,
                ProtocolError::BulkMismatch {
                    declared: 12,
                    attachment: 10
                }
            );
        }
        other => panic!("expected the call rejected, got {other:?}"),
    }
    match p.client.poll_event() {
        Some(ClientEvent::Error(e)) => {
            assert_eq!(e.request_id, bad);
            assert_eq!(e.body.code, ErrorCode::BAD_ARGUMENTS);
            assert!(
                e.body.message.contains("add up to 12 bytes"),
                "{}",
                e.body.message
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
    // The connection goes on.
    let good = p.call(&bulk(&[4]), Bytes::from_static(b"good"));
    p.drive();
    assert_eq!(p.server_call().request_id, good);
    assert!(p.client_err.is_none() && p.server_err.is_none());
    assert!(!p.client.is_closed() && !p.server.is_closed());
}

#[test]
fn a_reply_whose_lengths_do_not_add_up_fails_that_call_only() {
    let mut p = Pair::connected(Limits::default());
    let id = p.call(&Annotations::new(), Bytes::new());
    p.drive();
    p.server_call();
    p.server
        .reply(Reply {
            request_id: id,
            codec: CodecId::JSON,
            stream: false,
            annotations: bulk(&[100]),
            result: Bytes::from_static(b"0"),
            attachment: Bytes::from_static(b"short"),
        })
        .unwrap();
    p.drive();
    match p.client.poll_event() {
        Some(ClientEvent::Error(e)) => {
            assert_eq!(e.request_id, id);
            assert!(e.body.message.contains("wc.bulk"), "{}", e.body.message);
        }
        other => panic!("expected the call failed, got {other:?}"),
    }
    assert_eq!(p.client.in_flight(), 0);
    let next = p.call(&Annotations::new(), Bytes::new());
    p.drive();
    assert_eq!(p.server_call().request_id, next);
    assert!(p.client_err.is_none());
}

/// A CALL header declaring `attachment_len` bytes of attachment and nothing else but a
/// one-byte route.
fn call_header(request_id: u64, attachment_len: u32) -> [u8; 40] {
    Header {
        version: VERSION,
        kind: Kind::CALL,
        flags: Flags::EMPTY,
        codec: CodecId::JSON,
        provider: ProviderId(1),
        request_id: RequestId(request_id),
        route_len: 1,
        annotations_len: 0,
        payload_len: 0,
        kwargs_len: 0,
        attachment_len,
    }
    .to_bytes()
}

/// The GOAWAY among what the server sent after the handshake.
fn goaway(p: &mut Pair) -> wirecall_protocol::GoAway {
    let mut out = BytesMut::new();
    while let Some(b) = p.server.poll_transmit() {
        out.extend_from_slice(&b);
    }
    let mut d = FrameDecoder::new(Limits::default());
    while let Some(f) = d.decode(&mut out).unwrap() {
        if let Frame::GoAway(g) = f {
            return g;
        }
    }
    panic!("no GOAWAY sent")
}

#[test]
fn an_attachment_over_the_frame_limit_is_refused_from_the_header() {
    let mut p = Pair::connected(Limits::default());
    // 64 MiB declared against the default 16 MiB: refused on the 40 header bytes alone.
    let e = p
        .server
        .handle_input(&call_header(1, 64 << 20), p.now)
        .unwrap_err();
    assert_eq!(e.kind_name(), "frame_too_large");
    assert_eq!(p.server.pending_input_len(), None);
    let g = goaway(&mut p);
    assert_eq!(g.code, ErrorCode::LIMIT_EXCEEDED);
    assert!(g.message.contains("frame"), "{}", g.message);
    assert!(p.server.is_closed());
}

#[test]
fn a_64_mib_attachment_passes_when_both_sides_allow_it() {
    let limits = Limits {
        max_frame_len: 65 << 20,
        ..Limits::default()
    };
    let mut p = Pair::connected(limits);
    let big = pattern(64 << 20, 7);
    let id = p.call(&bulk(&[64 << 20]), big.clone());
    p.drive();
    let call = p.server_call();
    assert_eq!(call.request_id, id);
    assert_eq!(
        split_bulk(&call.annotations, &call.attachment).unwrap(),
        [big]
    );
}

#[test]
fn a_sender_refuses_an_attachment_over_the_peer_limit() {
    let mut p = Pair::connected(Limits::default());
    let call = CallRef {
        request_id: RequestId::NONE,
        provider: ProviderId(1),
        codec: CodecId::NONE,
        oneway: false,
        method: "svc_echo",
        annotations: &Annotations::new(),
        args: b"[]",
        kwargs: b"",
        attachment: &[],
    };
    let e = p
        .client
        .call_ref_attached(call, Bytes::from(vec![0u8; 17 << 20]), p.now)
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::LIMIT_EXCEEDED);
    assert_eq!(p.client.in_flight(), 0);
    assert!(!p.client.has_transmit());
}

#[test]
fn an_attachment_cut_short_by_eof_is_truncated() {
    let mut p = Pair::connected(Limits::default());
    let mut frame = call_header(1, 1000).to_vec();
    frame.push(b'm');
    frame.extend_from_slice(&[0u8; 400]);
    let mut buf = BytesMut::from(&frame[..]);
    p.server.handle_input_buf(&mut buf, p.now).unwrap();
    let e = p.server.handle_eof_buf(&buf).unwrap_err();
    assert_eq!(e.kind_name(), "truncated");
}

#[test]
fn bytes_beyond_the_declared_attachment_are_a_framing_error() {
    let mut p = Pair::connected(Limits::default());
    // Declares 4 bytes of attachment, sends 6: the extra 2 start the "next frame".
    let mut frame = call_header(1, 4).to_vec();
    frame.push(b'm');
    frame.extend_from_slice(b"abcdXY");
    let e = p.server.handle_input(&frame, p.now).unwrap_err();
    assert_eq!(e.kind_name(), "bad_magic");
    assert_eq!(goaway(&mut p).code, ErrorCode::PROTOCOL_ERROR);
}
