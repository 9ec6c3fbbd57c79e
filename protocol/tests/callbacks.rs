//! Callbacks over symmetric connections (SPEC §6.10): the server calls the client back on
//! the client's own connection. A client and a server state machine wired together in
//! memory, as in `pair.rs`: no sockets, no sleeps; time is a value the test advances.

mod common;
use common::Pair;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use wirecall_protocol::{
    Annotations, Call, CallRequest, ClientConfig, ClientConnection, ClientEvent, CodecId,
    ErrorBody, ErrorCode, ErrorFrame, ExtensionTag, Extensions, Frame, FrameDecoder, GoAway,
    Method, ProtocolError, ProviderId, Reply, RequestId, ServerConfig, ServerConnection,
    ServerEvent,
};

impl Pair {
    /// A connected pair; `offer`: the client offers callbacks with this limit (`Some(None)`:
    /// its max_in_flight); `support`: the server supports them.
    fn connected(offer: Option<Option<u32>>, support: bool) -> Pair {
        let mut c = ClientConfig::new(vec![CodecId::MSGPACK, CodecId::JSON]);
        if let Some(max) = offer {
            c.offer_callbacks(max).unwrap();
        }
        let mut s = ServerConfig::new(vec![CodecId::JSON, CodecId::MSGPACK]);
        if support {
            s.support_callbacks();
        }
        let mut p = Pair::new(c, s);
        p.handshake();
        p
    }

    fn with_callbacks() -> Pair {
        Pair::connected(Some(None), true)
    }

    /// The client calls the server.
    fn call(&mut self, method: &str) -> RequestId {
        self.client.call(request(method), self.now).unwrap()
    }

    /// The server calls the client back.
    fn callback(&mut self, method: &str) -> Result<RequestId, ProtocolError> {
        self.server.call(request(method), self.now)
    }
}

fn request(method: &str) -> CallRequest {
    CallRequest::new(
        ProviderId(7),
        Method::new(method.to_string()).unwrap(),
        Bytes::from_static(b"\x91\x01"),
    )
}

fn reply(id: RequestId, result: &'static [u8]) -> Reply {
    Reply {
        request_id: id,
        codec: CodecId::MSGPACK,
        stream: false,
        annotations: Annotations::new(),
        result: Bytes::from_static(result),
        attachment: Bytes::new(),
    }
}

fn app_error(id: RequestId, message: &str) -> ErrorFrame {
    ErrorFrame {
        request_id: id,
        codec: CodecId::NONE,
        annotations: Annotations::new(),
        body: ErrorBody::new(ErrorCode::APPLICATION_ERROR, message),
    }
}

/// The bytes of a CALL frame a (rogue) server sends, outside any state machine.
fn raw_call(id: u64, annotations: Annotations) -> Bytes {
    let mut buf = BytesMut::new();
    Frame::Call(Call {
        request_id: RequestId(id),
        provider: ProviderId(7),
        codec: CodecId::MSGPACK,
        oneway: false,
        upload: false,
        method: Method::new("progress").unwrap(),
        annotations,
        args: Bytes::new(),
        kwargs: Bytes::new(),
        attachment: Bytes::new(),
    })
    .encode(&mut buf)
    .unwrap();
    buf.freeze()
}

/// Every frame in `bytes`.
fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut buf = BytesMut::from(bytes);
    let mut d = FrameDecoder::default();
    std::iter::from_fn(|| d.decode(&mut buf).ok().flatten()).collect()
}

fn client_transmit(c: &mut ClientConnection) -> Vec<u8> {
    let mut out = BytesMut::new();
    c.take_transmit(&mut out);
    out.to_vec()
}

fn goaway(bytes: &[u8]) -> Option<GoAway> {
    frames(bytes).into_iter().find_map(|f| match f {
        Frame::GoAway(g) => Some(g),
        _ => None,
    })
}

fn the_call(events: Vec<ClientEvent>) -> Call {
    match events.as_slice() {
        [ClientEvent::Call(c)] => c.clone(),
        other => panic!("expected one callback, got {other:?}"),
    }
}

#[test]
fn negotiated_only_when_offered_and_supported() {
    for (offer, support, on) in [
        (Some(None), true, true),
        (Some(Some(3)), true, true),
        (Some(None), false, false),
        (None, true, false),
        (None, false, false),
    ] {
        let mut c = ClientConfig::new(vec![CodecId::JSON]);
        if let Some(max) = offer {
            c.offer_callbacks(max).unwrap();
        }
        let mut s = ServerConfig::new(vec![CodecId::JSON]);
        if support {
            s.support_callbacks();
        }
        let mut p = Pair::new(c, s);
        p.drive();
        let Some(ClientEvent::Connected(cs)) = p.client.poll_event() else {
            panic!("{:?}", p.client_err)
        };
        let Some(ServerEvent::Connected(ss)) = p.server.poll_event() else {
            panic!("{:?}", p.server_err)
        };
        assert_eq!(cs.callbacks(), on, "offer {offer:?} support {support}");
        assert_eq!(ss.callbacks(), on);
        if on {
            // The answer is always empty, whatever the offer.
            assert_eq!(
                cs.extensions.get(ExtensionTag::CALLBACKS).map(|v| v.len()),
                Some(0)
            );
            assert!(p.callback("progress").is_ok());
        } else {
            match p.callback("progress") {
                Err(ProtocolError::InvalidState { state, .. }) => {
                    assert!(state.contains("did not offer callbacks"), "{state}")
                }
                other => panic!("{other:?}"),
            }
            assert!(!p.server.has_transmit(), "nothing is sent");
        }
    }
}

#[test]
fn a_callback_is_answered_by_the_client() {
    let mut p = Pair::with_callbacks();
    let cb = p.callback("progress").unwrap();
    assert_eq!(cb, RequestId(1));
    assert_eq!(p.server.callbacks_in_flight(), 1);
    p.drive();
    let call = the_call(p.client_events());
    assert_eq!(call.request_id, cb);
    assert_eq!(call.provider, ProviderId(7));
    assert_eq!(call.method.as_str(), "progress");
    assert_eq!(p.client.callbacks_in_flight(), 1);
    p.client.reply(reply(cb, b"\x2a")).unwrap();
    p.drive();
    match p.server_events().as_slice() {
        [ServerEvent::Reply(r)] => {
            assert_eq!(r.request_id, cb);
            assert_eq!(&r.result[..], b"\x2a");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.server.callbacks_in_flight(), 0);
    assert_eq!(p.client.callbacks_in_flight(), 0);
    // A second answer is refused locally.
    assert!(matches!(
        p.client.reply(reply(cb, b"\x2a")),
        Err(ProtocolError::NotInFlight { .. })
    ));
    // An error answer.
    let cb2 = p.callback("progress").unwrap();
    p.drive();
    the_call(p.client_events());
    p.client.error(app_error(cb2, "no such job")).unwrap();
    p.drive();
    match p.server_events().as_slice() {
        [ServerEvent::Error(e)] => {
            assert_eq!(e.request_id, cb2);
            assert_eq!(e.body.message, "no such job");
        }
        other => panic!("{other:?}"),
    }
    assert!(p.client_err.is_none() && p.server_err.is_none());
}

#[test]
fn ids_of_the_two_directions_are_separate_and_interleave() {
    let mut p = Pair::with_callbacks();
    let c1 = p.call("work");
    let c2 = p.call("work");
    let b1 = p.callback("progress").unwrap();
    let c3 = p.call("work");
    let b2 = p.callback("progress").unwrap();
    // Each side numbers its own calls 1, 2, 3...
    assert_eq!((c1, c2, c3), (RequestId(1), RequestId(2), RequestId(3)));
    assert_eq!((b1, b2), (RequestId(1), RequestId(2)));
    p.drive();
    let incoming: Vec<RequestId> = p
        .server_events()
        .into_iter()
        .filter_map(|e| match e {
            ServerEvent::Call(c) => Some(c.request_id),
            _ => None,
        })
        .collect();
    assert_eq!(incoming, vec![c1, c2, c3]);
    let callbacks: Vec<RequestId> = p
        .client_events()
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::Call(c) => Some(c.request_id),
            _ => None,
        })
        .collect();
    assert_eq!(callbacks, vec![b1, b2]);
    // Answers in any order, in both directions: id 2 of each direction is a different call.
    p.client.reply(reply(b2, b"\x02")).unwrap();
    p.server.reply(reply(c2, b"\x12")).unwrap();
    p.client.reply(reply(b1, b"\x01")).unwrap();
    p.server.reply(reply(c1, b"\x11")).unwrap();
    p.server.reply(reply(c3, b"\x13")).unwrap();
    p.drive();
    let to_server: Vec<(RequestId, Bytes)> = p
        .server_events()
        .into_iter()
        .filter_map(|e| match e {
            ServerEvent::Reply(r) => Some((r.request_id, r.result)),
            _ => None,
        })
        .collect();
    assert_eq!(
        to_server,
        vec![
            (b2, Bytes::from_static(b"\x02")),
            (b1, Bytes::from_static(b"\x01"))
        ]
    );
    let to_client: Vec<(RequestId, Bytes)> = p
        .client_events()
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::Reply(r) => Some((r.request_id, r.result)),
            _ => None,
        })
        .collect();
    assert_eq!(
        to_client,
        vec![
            (c2, Bytes::from_static(b"\x12")),
            (c1, Bytes::from_static(b"\x11")),
            (c3, Bytes::from_static(b"\x13"))
        ]
    );
    assert_eq!(p.client.in_flight() + p.client.callbacks_in_flight(), 0);
    assert_eq!(p.server.in_flight() + p.server.callbacks_in_flight(), 0);
    assert!(p.client_err.is_none() && p.server_err.is_none());
}

#[test]
fn a_cancelled_callback_is_answered_cancelled_and_swallowed() {
    let mut p = Pair::with_callbacks();
    let b = p.callback("progress").unwrap();
    p.drive();
    the_call(p.client_events());
    assert!(p.server.cancel(b).unwrap());
    assert!(!p.server.cancel(b).unwrap(), "cancelled once");
    p.drive();
    assert_eq!(p.client_events(), vec![ClientEvent::CallCancelled(b)]);
    // The client's answer came too late: refused locally, nothing sent.
    assert!(matches!(
        p.client.reply(reply(b, b"\x01")),
        Err(ProtocolError::NotInFlight { .. })
    ));
    // The CANCELLED answer is swallowed by the server; the callback is done.
    assert_eq!(p.server_events(), vec![]);
    assert_eq!(p.server.callbacks_in_flight(), 0);
    assert_eq!(p.client.callbacks_in_flight(), 0);
    assert!(p.client_err.is_none() && p.server_err.is_none());
}

#[test]
fn a_cancel_crossing_the_answer_is_ignored() {
    let mut p = Pair::with_callbacks();
    let b = p.callback("progress").unwrap();
    p.drive();
    the_call(p.client_events());
    p.client.reply(reply(b, b"\x01")).unwrap();
    assert!(p.server.cancel(b).unwrap());
    p.drive();
    // The reply is swallowed (cancelled), the CANCEL crossed it and is ignored.
    assert_eq!(p.server_events(), vec![]);
    assert_eq!(p.client_events(), vec![]);
    assert_eq!(p.server.callbacks_in_flight(), 0);
    assert!(p.client_err.is_none() && p.server_err.is_none());
}

#[test]
fn a_cancel_for_a_callback_never_sent_is_a_protocol_error() {
    let mut p = Pair::with_callbacks();
    let mut buf = BytesMut::new();
    Frame::Cancel(RequestId(5)).encode(&mut buf).unwrap();
    let e = p.client.handle_input(&buf, p.now).unwrap_err();
    assert!(matches!(e, ProtocolError::UnknownRequest { .. }), "{e:?}");
    let g = goaway(&client_transmit(&mut p.client)).unwrap();
    assert_eq!(g.code, ErrorCode::PROTOCOL_ERROR);
}

#[test]
fn the_callbacks_limit_is_enforced_by_both_sides() {
    // The extension's own limit.
    let mut p = Pair::connected(Some(Some(2)), true);
    p.callback("progress").unwrap();
    p.callback("progress").unwrap();
    match p.callback("progress") {
        Err(ProtocolError::InFlightLimit { max }) => assert_eq!(max, 2),
        other => panic!("{other:?}"),
    }
    // Oneway callbacks do not count.
    let mut oneway = request("progress");
    oneway.oneway = true;
    p.server.call(oneway, p.now).unwrap();
    p.drive();
    assert_eq!(p.client_events().len(), 3);

    // A server that ignores the limit gets TOO_MANY_IN_FLIGHT from the client, and the
    // connection stays up.
    let mut p = Pair::connected(Some(Some(2)), true);
    for id in 1..=3 {
        p.client
            .handle_input(&raw_call(id, Annotations::new()), p.now)
            .unwrap();
    }
    let events = p.client_events();
    assert!(matches!(events[0], ClientEvent::Call(_)));
    assert!(matches!(events[1], ClientEvent::Call(_)));
    match &events[2] {
        ClientEvent::CallRejected { request_id, error } => {
            assert_eq!(*request_id, RequestId(3));
            assert!(matches!(error, ProtocolError::TooManyInFlight { max: 2 }));
        }
        other => panic!("{other:?}"),
    }
    let sent = frames(&client_transmit(&mut p.client));
    match sent.as_slice() {
        [Frame::Error(e)] => {
            assert_eq!(e.request_id, RequestId(3));
            assert_eq!(e.body.code, ErrorCode::TOO_MANY_IN_FLIGHT);
        }
        other => panic!("{other:?}"),
    }
    assert!(!p.client.is_closed());

    // Without a limit of its own, the HELLO's max_in_flight applies.
    let mut c = ClientConfig::new(vec![CodecId::MSGPACK]);
    c.limits.max_in_flight = 1;
    c.offer_callbacks(None).unwrap();
    let mut s = ServerConfig::new(vec![CodecId::MSGPACK]);
    s.support_callbacks();
    let mut p = Pair::new(c, s);
    p.drive();
    p.callback("progress").unwrap();
    assert!(matches!(
        p.callback("progress"),
        Err(ProtocolError::InFlightLimit { max: 1 })
    ));
}

#[test]
fn a_callback_in_a_codec_the_client_did_not_offer_is_refused() {
    let mut p = Pair::with_callbacks();
    let mut req = request("progress");
    req.codec = Some(CodecId::CBOR);
    let b = p.server.call(req, p.now).unwrap();
    p.drive();
    assert!(matches!(
        p.client_events().as_slice(),
        [ClientEvent::CallRejected {
            error: ProtocolError::CodecRefused { .. },
            ..
        }]
    ));
    match p.server_events().as_slice() {
        [ServerEvent::Error(e)] => {
            assert_eq!(e.request_id, b);
            assert_eq!(e.body.code, ErrorCode::CODEC_REFUSED);
            assert_eq!(e.body.accepted, vec![CodecId::MSGPACK, CodecId::JSON]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_callback_without_the_extension_is_a_protocol_error() {
    // The client did not offer callbacks: a CALL from the server breaks the protocol.
    let mut p = Pair::connected(None, true);
    let e = p
        .client
        .handle_input(&raw_call(1, Annotations::new()), p.now)
        .unwrap_err();
    match &e {
        ProtocolError::UnexpectedFrame { state, .. } => {
            assert!(state.contains("callbacks"), "{state}")
        }
        other => panic!("{other:?}"),
    }
    assert!(p.client.is_closed());
    let g = goaway(&client_transmit(&mut p.client)).unwrap();
    assert_eq!(g.code, ErrorCode::PROTOCOL_ERROR);
    assert!(g.message.contains("callbacks"), "{}", g.message);

    // Nor may the client answer what it was never asked: a REPLY c→s without the
    // extension is a protocol error on the server.
    let mut p = Pair::connected(Some(None), false);
    let mut buf = BytesMut::new();
    Frame::Reply(reply(RequestId(1), b"\x01"))
        .encode(&mut buf)
        .unwrap();
    assert!(matches!(
        p.server.handle_input(&buf, p.now),
        Err(ProtocolError::UnexpectedFrame { .. })
    ));
}

#[test]
fn callbacks_follow_the_callers_rules_for_ids_and_batches() {
    let mut p = Pair::with_callbacks();
    p.client
        .handle_input(&raw_call(4, Annotations::new()), p.now)
        .unwrap();
    assert!(matches!(
        p.client
            .handle_input(&raw_call(4, Annotations::new()), p.now),
        Err(ProtocolError::RequestIdNotIncreasing { .. })
    ));
    let mut p = Pair::with_callbacks();
    let batch = Annotations::builder().batch(RequestId(1), true).build();
    assert!(matches!(
        p.client.handle_input(&raw_call(1, batch), p.now),
        Err(ProtocolError::MalformedBody { .. })
    ));
}

#[test]
fn an_answer_the_server_did_not_ask_for_is_a_protocol_error() {
    let mut p = Pair::with_callbacks();
    p.client
        .handle_input(&raw_call(1, Annotations::new()), p.now)
        .unwrap();
    // The client answers callback 1, but the server never sent it (a rogue raw frame).
    p.client.reply(reply(RequestId(1), b"\x01")).unwrap();
    p.drive();
    assert!(matches!(
        p.server_err,
        Some(ProtocolError::UnknownRequest { .. })
    ));
    // A streamed answer to a callback is refused locally.
    let mut p = Pair::with_callbacks();
    let b = p.callback("progress").unwrap();
    p.drive();
    let mut r = reply(b, b"\x01");
    r.stream = true;
    assert!(matches!(
        p.client.reply(r),
        Err(ProtocolError::InvalidArgument(_))
    ));
}

#[test]
fn a_callback_deadline_fails_it_on_both_sides() {
    let mut p = Pair::with_callbacks();
    let mut req = request("progress");
    req.annotations = Annotations::builder()
        .deadline(Duration::from_millis(100))
        .build();
    let b = p.server.call(req, p.now).unwrap();
    p.drive();
    the_call(p.client_events());
    assert!(p.server.poll_timeout().is_some());
    assert!(p.client.poll_timeout().is_some());
    p.advance(Duration::from_millis(100));
    assert_eq!(
        p.server_events(),
        vec![ServerEvent::Failed {
            request_id: b,
            error: ProtocolError::DeadlineExceeded { request_id: b }
        }]
    );
    assert_eq!(p.client_events(), vec![ClientEvent::CallExpired(b)]);
    p.drive();
    // The CANCEL crossed the DEADLINE_EXCEEDED: both ignored, nothing left in flight.
    assert_eq!(p.server_events(), vec![]);
    assert_eq!(p.client_events(), vec![]);
    assert_eq!(p.server.callbacks_in_flight(), 0);
    assert_eq!(p.client.callbacks_in_flight(), 0);
    assert!(p.client_err.is_none() && p.server_err.is_none());

    // A zero deadline: answered at once, never dispatched.
    let zero = Annotations::builder().deadline(Duration::ZERO).build();
    p.client.handle_input(&raw_call(9, zero), p.now).unwrap();
    assert!(matches!(
        p.client_events().as_slice(),
        [ClientEvent::CallRejected {
            error: ProtocolError::DeadlineExceeded { .. },
            ..
        }]
    ));
}

#[test]
fn a_clients_goaway_stops_callbacks_and_drains_both_directions() {
    let mut p = Pair::with_callbacks();
    let c = p.call("work");
    let b = p.callback("progress").unwrap();
    p.drive();
    the_call(p.client_events());
    p.server_events();
    p.client.goaway().unwrap();
    p.drive();
    assert!(matches!(
        p.server_events().as_slice(),
        [ServerEvent::GoAway(_)]
    ));
    // No new callbacks after the client's GOAWAY.
    assert!(matches!(
        p.callback("progress"),
        Err(ProtocolError::GoingAway)
    ));
    // The call finishes; the connection is not drained while the callback is in flight.
    p.server.reply(reply(c, b"\x01")).unwrap();
    p.drive();
    let ev = p.client_events();
    assert!(matches!(ev.as_slice(), [ClientEvent::Reply(_)]), "{ev:?}");
    assert!(p.server_events().is_empty());
    p.client.reply(reply(b, b"\x02")).unwrap();
    p.drive();
    assert_eq!(p.client_events(), vec![ClientEvent::Drained]);
    let ev = p.server_events();
    assert!(
        matches!(ev.as_slice(), [ServerEvent::Reply(_), ServerEvent::Drained]),
        "{ev:?}"
    );
    assert!(p.client.handle_eof().is_ok());
    assert!(p.server.handle_eof().is_ok());
}

#[test]
fn a_callback_crossing_the_clients_goaway_is_answered_shutting_down() {
    let mut p = Pair::with_callbacks();
    // Both queued before either side sees the other's frame.
    p.client.goaway().unwrap();
    let b = p.callback("progress").unwrap();
    p.drive();
    assert!(matches!(
        p.client_events().as_slice(),
        [
            ClientEvent::Drained,
            ClientEvent::CallRejected {
                error: ProtocolError::GoingAway,
                ..
            }
        ]
    ));
    let ev = p.server_events();
    match ev.as_slice() {
        [ServerEvent::GoAway(_), ServerEvent::Error(e), ServerEvent::Drained] => {
            assert_eq!(e.request_id, b);
            assert_eq!(e.body.code, ErrorCode::SHUTTING_DOWN);
        }
        other => panic!("{other:?}"),
    }
    assert!(p.client_err.is_none() && p.server_err.is_none());
}

#[test]
fn a_servers_goaway_lets_it_call_back_to_finish_its_calls() {
    let mut p = Pair::with_callbacks();
    let c = p.call("work");
    let b1 = p.callback("progress").unwrap();
    p.drive();
    p.server_events();
    the_call(p.client_events());
    p.server.goaway("restarting").unwrap();
    p.drive();
    assert!(matches!(
        p.client_events().as_slice(),
        [ClientEvent::GoAway(_)]
    ));
    // The client starts no call, but the server still calls back to finish its call.
    assert!(matches!(
        p.client.call(request("work"), p.now),
        Err(ProtocolError::GoingAway)
    ));
    let b2 = p.callback("progress").unwrap();
    p.drive();
    assert_eq!(the_call(p.client_events()).request_id, b2);
    p.client.reply(reply(b1, b"\x01")).unwrap();
    p.client.reply(reply(b2, b"\x02")).unwrap();
    p.drive();
    assert_eq!(p.server_events().len(), 2);
    // Not drained while the call is in flight; drained in both directions once answered.
    assert!(p.client_events().is_empty());
    p.server.reply(reply(c, b"\x03")).unwrap();
    p.drive();
    let ev = p.client_events();
    assert!(
        matches!(ev.as_slice(), [ClientEvent::Reply(_), ClientEvent::Drained]),
        "{ev:?}"
    );
    assert_eq!(p.server_events(), vec![ServerEvent::Drained]);
    assert!(p.client_err.is_none() && p.server_err.is_none());
}

#[test]
fn the_end_of_the_stream_with_a_callback_in_flight_is_not_clean() {
    let mut p = Pair::with_callbacks();
    p.callback("progress").unwrap();
    p.drive();
    assert!(matches!(
        p.server.handle_eof(),
        Err(ProtocolError::PeerClosed { .. })
    ));
}

#[test]
fn a_bad_callbacks_offer_is_rejected() {
    // Locally.
    let mut c = ClientConfig::new(vec![CodecId::JSON]);
    assert!(c.offer_callbacks(Some(0)).is_err());
    c.extensions = Extensions::new()
        .with(ExtensionTag::CALLBACKS, &[1u8, 2][..])
        .unwrap();
    assert!(ClientConnection::new(c.clone(), Instant::now()).is_err());
    // By the server, from a HELLO built by hand.
    let mut s = ServerConfig::new(vec![CodecId::JSON]);
    s.support_callbacks();
    let now = Instant::now();
    let mut server = ServerConnection::new(s, now).unwrap();
    let mut buf = BytesMut::new();
    Frame::Hello(wirecall_protocol::Hello {
        versions: vec![1],
        codecs: vec![CodecId::JSON],
        limits: Default::default(),
        extensions: c.extensions,
    })
    .encode(&mut buf)
    .unwrap();
    assert!(matches!(
        server.handle_input(&buf, now),
        Err(ProtocolError::MalformedBody { .. })
    ));
}

// ---- peer input never panics, with callbacks in force on both sides ----

use proptest::prelude::*;

/// A well-formed frame of a kind that carries a call's id, built from fuzz input: decoding
/// passes, so the connection rules are what gets exercised.
fn fuzz_frame(kind: u8, id: u64, flag: bool, deadline_ms: Option<u8>) -> Frame {
    let id = RequestId(id % 6);
    let ann = match deadline_ms {
        Some(ms) => Annotations::builder()
            .deadline(Duration::from_millis(u64::from(ms)))
            .build(),
        None => Annotations::new(),
    };
    match kind % 7 {
        0 => Frame::Call(Call {
            request_id: RequestId(id.0.max(1)),
            provider: ProviderId(7),
            codec: CodecId::MSGPACK,
            oneway: flag,
            upload: false,
            method: Method::new("progress").unwrap(),
            annotations: ann,
            args: Bytes::new(),
            kwargs: Bytes::new(),
            attachment: Bytes::new(),
        }),
        1 => {
            let mut r = reply(RequestId(id.0.max(1)), b"\x01");
            r.stream = flag;
            Frame::Reply(r)
        }
        2 => Frame::Error(app_error(RequestId(id.0.max(1)), "x")),
        3 => Frame::Cancel(RequestId(id.0.max(1))),
        4 => Frame::StreamEnd(RequestId(id.0.max(1))),
        5 => Frame::GoAway(GoAway {
            last_request_id: id,
            code: if flag {
                ErrorCode::NO_ERROR
            } else {
                ErrorCode::PROTOCOL_ERROR
            },
            message: String::new(),
        }),
        _ => Frame::Ping([0; 8]),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Frames in any order, to either side of a connection with callbacks in force, mixed
    /// with the side's own operations (answers, calls, cancels, timers): never a panic,
    /// and an error always leaves the side closed for good.
    #[test]
    fn callbacks_in_any_order_never_panic(
        ops in proptest::collection::vec(
            (any::<u8>(), any::<u64>(), any::<bool>(), proptest::option::of(any::<u8>()), 0u8..6),
            0..60,
        ),
        to_client in any::<bool>(),
    ) {
        let mut p = Pair::connected(Some(Some(3)), true);
        for (kind, id, flag, deadline, op) in ops {
            let rid = RequestId(id % 6);
            match op {
                // A frame from the peer.
                0 | 1 => {
                    let mut buf = BytesMut::new();
                    fuzz_frame(kind, id, flag, deadline).encode(&mut buf).unwrap();
                    let r = if to_client {
                        p.client.handle_input(&buf, p.now)
                    } else {
                        p.server.handle_input(&buf, p.now)
                    };
                    if r.is_err() {
                        let closed = if to_client {
                            p.client.is_closed()
                        } else {
                            p.server.is_closed()
                        };
                        prop_assert!(closed, "an error left the side open");
                    }
                }
                // The side's own answers and calls (errors are fine, panics are not).
                2 => {
                    let _ = p.client.reply(reply(rid, b"\x01"));
                    let _ = p.server.reply(reply(rid, b"\x01"));
                }
                3 => {
                    let _ = p.client.error(app_error(rid, "e"));
                    let _ = p.server.cancel(rid);
                    let _ = p.client.cancel(rid);
                }
                4 => {
                    let _ = p.server.call(request("progress"), p.now);
                    let _ = p.client.call(request("work"), p.now);
                }
                _ => {
                    p.now += Duration::from_millis(u64::from(kind));
                    let _ = p.client.handle_timeout(p.now);
                    let _ = p.server.handle_timeout(p.now);
                }
            }
            // What each side queued decodes to the end (whole frames only).
            for out in [client_transmit(&mut p.client), {
                let mut b = BytesMut::new();
                p.server.take_transmit(&mut b);
                b.to_vec()
            }] {
                let mut buf = BytesMut::from(&out[..]);
                let mut d = FrameDecoder::default();
                while let Some(f) = d.decode(&mut buf).unwrap() {
                    drop(f);
                }
                prop_assert!(buf.is_empty());
            }
            p.client_events();
            p.server_events();
        }
        if p.client.is_closed() {
            prop_assert!(p.client.reply(reply(RequestId(1), b"\x01")).is_err());
        }
        if p.server.is_closed() {
            prop_assert!(p.server.call(request("progress"), p.now).is_err());
        }
    }
}
